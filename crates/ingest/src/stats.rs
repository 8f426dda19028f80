//! What `piiwatch stats` reports: the first look at a set of logs.
//!
//! Counts per class and per operation, distinct principals, subjects and
//! source addresses (exact, with bitmaps over interned ids), the event-time
//! span, and the quarantine by kind with the first few bad lines.

use std::collections::BTreeMap;

use model::{Event, Symbols};
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::parse::ReasonKind;
use crate::reader::{LineRef, Quarantined, Visitor};

/// How many bad lines to keep verbatim for the summary.
pub const SAMPLES: usize = 10;

/// A running tally of what was read.
#[derive(Debug, Default)]
pub struct Tally {
    /// Events by `class_uid` (`None`: no class).
    pub by_class: BTreeMap<Option<i64>, u64>,
    /// API Activity events by operation id.
    pub by_operation: Vec<u64>,
    /// Successful API Activity events.
    pub successful: u64,
    /// Events carrying at least one subject.
    pub exposing: u64,
    /// Principals seen acting, issued tokens or offboarded.
    pub principals: RoaringBitmap,
    /// Subjects in any response.
    pub subjects: RoaringBitmap,
    /// Source addresses of API Activity.
    pub sources: RoaringBitmap,
    /// Earliest event time.
    pub first_time: Option<i64>,
    /// Latest event time.
    pub last_time: Option<i64>,
    /// Quarantined lines by kind.
    pub quarantined: BTreeMap<ReasonKind, u64>,
    /// The first few quarantined lines: source, line, reason.
    pub samples: Vec<(String, u64, String)>,
}

impl Tally {
    fn time(&mut self, t: i64) {
        self.first_time = Some(self.first_time.map_or(t, |f| f.min(t)));
        self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
    }

    /// Total events.
    pub fn events(&self) -> u64 {
        self.by_class.values().sum()
    }

    /// Total quarantined lines.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// The report, with names resolved.
    pub fn report(&self, symbols: &Symbols) -> StatsReport {
        let class_name = |c: &Option<i64>| match c {
            Some(6003) => "api_activity (6003)".to_owned(),
            Some(3002) => "authentication (3002)".to_owned(),
            Some(3001) => "account_change (3001)".to_owned(),
            Some(c) => format!("other ({c})"),
            None => "no class".to_owned(),
        };
        let operations = self
            .by_operation
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (symbols.operations.resolve(i as u32).to_owned(), *n));
        StatsReport {
            events: self.events(),
            events_by_class: self.by_class.iter().map(|(c, n)| (class_name(c), *n)).collect(),
            events_by_operation: operations.collect(),
            successful_api_events: self.successful,
            exposing_api_events: self.exposing,
            distinct_principals: self.principals.len(),
            distinct_subjects: self.subjects.len(),
            distinct_sources: self.sources.len(),
            first_time: self.first_time,
            last_time: self.last_time,
            quarantined: self.quarantined_total(),
            quarantined_by_kind: self.quarantined.iter().map(|(k, n)| (k.as_str().to_owned(), *n)).collect(),
            quarantine_samples: self
                .samples
                .iter()
                .map(|(s, l, r)| QuarantineSample { source: s.clone(), line: *l, reason: r.clone() })
                .collect(),
        }
    }
}

impl Visitor for Tally {
    fn event(&mut self, _at: LineRef<'_>, event: &Event<'_>, _symbols: &Symbols) {
        *self.by_class.entry(event.class_uid()).or_default() += 1;
        if let Some(t) = event.time() {
            self.time(t);
        }
        match event {
            Event::Access(a) => {
                let op = a.operation.index();
                if self.by_operation.len() <= op {
                    self.by_operation.resize(op + 1, 0);
                }
                self.by_operation[op] += 1;
                self.successful += u64::from(a.success);
                self.exposing += u64::from(!a.subjects.is_empty());
                self.principals.insert(a.principal.0);
                self.sources.insert(a.src.0);
                for s in a.subjects {
                    self.subjects.insert(s.id.0);
                }
            }
            Event::Issuance(i) => {
                self.principals.insert(i.principal.0);
            }
            Event::Offboarding(o) => {
                self.principals.insert(o.principal.0);
            }
            Event::Other(_) => {}
        }
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        *self.quarantined.entry(q.reason.kind).or_default() += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push((q.at.source.to_owned(), q.at.line, q.reason.detail.clone()));
        }
    }
}

/// `piiwatch stats --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct StatsReport {
    /// Events read (quarantined lines excluded).
    pub events: u64,
    /// By class.
    pub events_by_class: BTreeMap<String, u64>,
    /// API Activity by operation.
    pub events_by_operation: BTreeMap<String, u64>,
    /// API Activity with `status_id` 1.
    pub successful_api_events: u64,
    /// API Activity carrying at least one subject.
    pub exposing_api_events: u64,
    /// Distinct principals (API actors, token holders, offboarded).
    pub distinct_principals: u64,
    /// Distinct data subjects in responses.
    pub distinct_subjects: u64,
    /// Distinct source addresses of API Activity.
    pub distinct_sources: u64,
    /// Earliest event time, epoch ms.
    pub first_time: Option<i64>,
    /// Latest event time, epoch ms.
    pub last_time: Option<i64>,
    /// Quarantined lines.
    pub quarantined: u64,
    /// Quarantined lines by kind.
    pub quarantined_by_kind: BTreeMap<String, u64>,
    /// The first few quarantined lines.
    pub quarantine_samples: Vec<QuarantineSample>,
}

/// One quarantined line in the summary.
#[derive(Debug, Serialize, PartialEq)]
pub struct QuarantineSample {
    /// Input.
    pub source: String,
    /// Line number.
    pub line: u64,
    /// Reason.
    pub reason: String,
}
