//! Scope: what the accesses matching a query exposed, exactly: which
//! subjects (pseudonymous), of which kinds, and which field classes of each.
//!
//! A query is planned against the store's exposure index (see
//! [`store::index`]):
//!
//! - **index**: an expression over one indexed dimension (`=`, `in`, `cidr`
//!   and `or` of those) is answered from the index's hourly bitmaps for
//!   every whole hour of the range; the partial hours at its edges, if any,
//!   are read from the few ledger blocks that hold them;
//! - **narrowed scan**: an `and` with such a part reads only the blocks of
//!   the hours in which that part matched, and evaluates the whole
//!   expression there;
//! - **scan**: anything else (`not`, `!=`, `resources.uid`, user agents, ...)
//!   reads the blocks of the time range.
//!
//! Every plan gives the same answer as a scan of the whole ledger, which
//! `Query::no_index` forces (tests compare the two).

pub mod expr;
pub mod plan;
pub mod request;

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use store::Store;

pub use expr::{Expr, Field, ParseError, parse};
pub use plan::Plan;
pub use request::{GroupLine, Outcome, Request, RunError};

/// What to scope.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Which accesses (`None`: all).
    pub expr: Option<Expr>,
    /// From this event time (ms, inclusive).
    pub from: Option<i64>,
    /// To this event time (ms, inclusive).
    pub to: Option<i64>,
    /// Parse every record, even those the expression's necessary condition
    /// rules out from their bytes (to check that shortcut).
    pub no_prefilter: bool,
    /// Ignore the index: scan the whole ledger (to check the index).
    pub no_index: bool,
    /// Also break the answer down by each value of these fields (a scan of
    /// the hours the expression can match: the index does not keep groups).
    /// `resources.uid` is refused: a breakdown by subject is re-identification.
    pub group_by: Vec<Field>,
}

/// One value's share of a grouped answer.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// Matching accesses with this value.
    pub events: u64,
    /// Distinct subjects they exposed.
    pub subjects: RoaringBitmap,
}

/// The answer.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// Matching successful accesses.
    pub events: u64,
    /// Exposed subjects, by dense id (see [`Store::pseudonym`]).
    pub subjects: RoaringBitmap,
    /// Exposed subjects per field class.
    pub fields: BTreeMap<String, RoaringBitmap>,
    /// Exposed subjects per kind (the kind the store first saw them as).
    pub kinds: BTreeMap<String, u64>,
    /// Event time of the first and last matching access.
    pub span: Option<(i64, i64)>,
    /// How it was answered.
    pub plan: Plan,
    /// Ledger blocks read.
    pub blocks_read: u64,
    /// With [`Query::group_by`]: per (field path, value); an access without
    /// the field counts under the value `""`.
    pub groups: BTreeMap<(String, String), Group>,
}

/// The answer as the contract's `--format json` has it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// Matching accesses.
    pub events: u64,
    /// Distinct subjects.
    pub subjects: u64,
    /// Distinct subjects per kind.
    pub subjects_by_type: BTreeMap<String, u64>,
    /// Distinct subjects per field class.
    pub fields: BTreeMap<String, u64>,
    /// First matching access, ms.
    pub first_seen_time: Option<i64>,
    /// Last matching access, ms.
    pub last_seen_time: Option<i64>,
}

impl Answer {
    /// Counts per kind and per field class.
    pub fn summary(&self) -> Summary {
        Summary {
            events: self.events,
            subjects: self.subjects.len(),
            subjects_by_type: self.kinds.clone(),
            fields: self.fields.iter().map(|(k, b)| (k.clone(), b.len())).collect(),
            first_seen_time: self.span.map(|s| s.0),
            last_seen_time: self.span.map(|s| s.1),
        }
    }

    fn widen(&mut self, first: i64, last: i64) {
        self.span = Some(match self.span {
            None => (first, last),
            Some((f, l)) => (f.min(first), l.max(last)),
        });
    }

    /// Adds a partial answer over other records.
    fn merge(&mut self, other: Answer) {
        self.events += other.events;
        if let Some((f, l)) = other.span {
            self.widen(f, l);
        }
        self.subjects |= other.subjects;
        for (k, b) in other.fields {
            *self.fields.entry(k).or_default() |= b;
        }
        for (k, g) in other.groups {
            let mine = self.groups.entry(k).or_default();
            mine.events += g.events;
            mine.subjects |= g.subjects;
        }
    }

    fn absorb(&mut self, found: store::index::Found) {
        self.events += found.events;
        if let Some((f, l)) = found.span {
            self.widen(f, l);
        }
        self.subjects |= found.subjects;
        for (k, b) in found.fields {
            *self.fields.entry(k).or_default() |= b;
        }
    }
}

/// Answers a query over the store. Only successful accesses that returned
/// subjects expose anything; failed calls and other classes do not.
pub fn scope(st: &Store, q: &Query) -> Result<Answer, store::Error> {
    let mut a = Answer::default();
    let index = st.index();
    let ledger = st.dir().join("ledger");
    let from = q.from.unwrap_or(i64::MIN);
    let to = q.to.unwrap_or(i64::MAX);
    let plan =
        if q.no_index || index.covered() != st.head().records { Plan::FullScan } else { Plan::of(q.expr.as_ref()) };
    // Groups need every matching access read: an exact index answer becomes
    // a scan of the hours in which it matched.
    let plan = match plan {
        Plan::Index(ranges) if !q.group_by.is_empty() => Plan::Narrowed(vec![ranges]),
        p => p,
    };
    a.plan = plan.clone();
    if from > to {
        return finish(st, a);
    }
    match &plan {
        Plan::FullScan => {
            let ids = st.subject_ids()?;
            let scanner = Scanner::new(q, ids);
            store::ledger::scan(&ledger, |r| scanner.record(r, &[(from, to)], &mut a))?;
            if let Some(e) = scanner.failed.take() {
                return Err(e);
            }
        }
        Plan::Index(ranges) => {
            let (whole, edges) = plan::split_hours(from, to);
            if let Some(hours) = whole {
                a.absorb(index.lookup(ranges, hours)?);
            }
            if !edges.is_empty() {
                let blocks = index.blocks(&edges)?;
                scan_blocks(st, q, &blocks, &edges, &mut a)?;
            }
        }
        Plan::Narrowed(parts) => {
            // An access matching the whole `and` lies in an hour where every part matched.
            let range = store::index::hour_of(from)..=store::index::hour_of(to);
            let mut hours: Option<Vec<u32>> = None;
            for part in parts {
                let h = index.hours(part, range.clone())?;
                hours = Some(match hours {
                    None => h,
                    Some(prev) => prev.into_iter().filter(|x| h.binary_search(x).is_ok()).collect(),
                });
            }
            let spans = plan::hour_spans(&hours.unwrap_or_default(), from, to);
            let blocks = index.blocks(&spans)?;
            scan_blocks(st, q, &blocks, &spans, &mut a)?;
        }
        Plan::Scan => {
            let blocks = index.blocks(&[(from, to)])?;
            scan_blocks(st, q, &blocks, &[(from, to)], &mut a)?;
        }
    }
    finish(st, a)
}

/// Reads `blocks` (in ledger order) and adds their matching accesses to
/// `a`: on as many threads as the machine has cores, each over a run of
/// consecutive blocks; the partial answers are unions and sums, so the
/// split changes nothing.
fn scan_blocks(
    st: &Store,
    q: &Query,
    blocks: &[store::ledger::BlockRef],
    spans: &[(i64, i64)],
    a: &mut Answer,
) -> Result<(), store::Error> {
    a.blocks_read += blocks.len() as u64;
    if blocks.is_empty() {
        return Ok(());
    }
    let ids = st.subject_ids()?;
    let ledger = st.dir().join("ledger");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = blocks.len().div_ceil(threads).max(64);
    let parts: Vec<Result<Answer, store::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(chunk)
            .map(|c| {
                let ledger = &ledger;
                s.spawn(move || {
                    let scanner = Scanner::new(q, ids);
                    let mut part = Answer::default();
                    store::ledger::scan_blocks(ledger, c, |r| scanner.record(r, spans, &mut part))?;
                    match scanner.failed.take() {
                        Some(e) => Err(e),
                        None => Ok(part),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(store::Error::Stopped("a scan thread failed".into()))))
            .collect()
    });
    for part in parts {
        a.merge(part?);
    }
    Ok(())
}

fn finish(st: &Store, mut a: Answer) -> Result<Answer, store::Error> {
    for (kind, b) in st.index().kinds()? {
        let n = a.subjects.intersection_len(&b);
        if n > 0 {
            a.kinds.insert(kind, n);
        }
    }
    Ok(a)
}

/// Evaluates the query on ledger records.
struct Scanner<'q> {
    q: &'q Query,
    ids: store::subjects::SubjectIds<'q>,
    /// Every group must find something in a record's bytes.
    finders: Vec<Vec<memchr::memmem::Finder<'static>>>,
    failed: std::cell::Cell<Option<store::Error>>,
}

impl<'q> Scanner<'q> {
    fn new(q: &'q Query, ids: store::subjects::SubjectIds<'q>) -> Self {
        // Records that cannot match (the values a match needs are not in
        // their bytes) are skipped without parsing.
        let finders = match (&q.expr, q.no_prefilter) {
            (Some(x), false) => x
                .needles()
                .into_iter()
                .map(|g| g.into_iter().map(|b| memchr::memmem::Finder::new(&b).into_owned()).collect())
                .collect(),
            _ => Vec::new(),
        };
        Self { q, ids, finders, failed: std::cell::Cell::new(None) }
    }

    /// Adds the record to the answer if it is an exposing access at a time
    /// in one of `spans` that the expression matches.
    fn record(&self, r: &store::ledger::RecordRef<'_>, spans: &[(i64, i64)], a: &mut Answer) {
        if r.kind != store::kind::EVENT {
            return;
        }
        if !self.finders.iter().all(|g| g.iter().any(|f| f.find(r.payload).is_some())) {
            return;
        }
        let e = match store::view::access(r.payload) {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                self.fail(store::Error::Corrupt(format!("an event record does not parse: {e}")));
                return;
            }
        };
        if !e.success || e.subjects.is_empty() || !spans.iter().any(|&(f, t)| f <= e.time && e.time <= t) {
            return;
        }
        let asn =
            if self.q.expr.is_some() || !self.q.group_by.is_empty() { e.asn.map(|n| n.to_string()) } else { None };
        if let Some(x) = &self.q.expr {
            let get = |f: Field, m: &mut dyn FnMut(&str) -> bool| -> bool {
                if f == Field::Subject {
                    return e.subjects.iter().any(|s| m(&s.id));
                }
                let v = field_value(&e, asn.as_deref(), f);
                v.is_some_and(m)
            };
            if !x.eval(&get) {
                return;
            }
        }
        a.events += 1;
        a.widen(e.time, e.time);
        // Groups: one key per grouped field (an access without the field under ""), each
        // given the record's subjects once they are known.
        let keys: Vec<(String, String)> = self
            .q
            .group_by
            .iter()
            .filter(|f| **f != Field::Subject)
            .map(|f| (f.path().to_owned(), field_value(&e, asn.as_deref(), *f).unwrap_or_default().to_owned()))
            .collect();
        let mut ids = Vec::with_capacity(if keys.is_empty() { 0 } else { e.subjects.len() });
        for s in &e.subjects {
            let Some(id) = self.ids.dense(&s.id) else {
                self.fail(store::Error::Corrupt(format!("subject {} is not in the subject map", s.id)));
                return;
            };
            a.subjects.insert(id);
            if !keys.is_empty() {
                ids.push(id);
            }
            for f in &s.fields {
                match a.fields.get_mut(f.as_ref()) {
                    Some(b) => {
                        b.insert(id);
                    }
                    None => {
                        a.fields.entry(f.to_string()).or_default().insert(id);
                    }
                }
            }
        }
        for k in keys {
            let g = a.groups.entry(k).or_default();
            g.events += 1;
            g.subjects.extend(ids.iter().copied());
        }
    }

    fn fail(&self, e: store::Error) {
        let prev = self.failed.take();
        self.failed.set(Some(prev.unwrap_or(e)));
    }
}

/// The value of field `f` in an access (`asn`: its AS number as text);
/// `None` for `resources.uid`, which has one value per subject.
fn field_value<'e>(e: &'e store::view::AccessView<'_>, asn: Option<&'e str>, f: Field) -> Option<&'e str> {
    match f {
        Field::SrcIp => Some(&e.ip),
        Field::Principal => Some(&e.principal),
        Field::PrincipalKind => Some(&e.principal_kind),
        Field::Token => e.token.as_deref(),
        Field::Key => e.key.as_deref(),
        Field::Asn => asn,
        Field::Country => e.country.as_deref(),
        Field::UserAgent => e.user_agent.as_deref(),
        Field::Operation => Some(&e.operation),
        Field::Service => e.service.as_deref(),
        Field::Subject => None,
    }
}

/// A value of `actor.user.uid` or `resources.uid` as the store may record
/// it: a pseudonym, unless it is one already or is a principal the store
/// keeps in clear (the directory's staff and services, which the index
/// holds by name).
pub fn as_stored(st: &Store, f: Field, v: &str) -> String {
    let hex = v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && st.dense(v).is_some() {
        return v.to_owned();
    }
    if f == Field::Principal {
        let key = store::index::string_value(v);
        let range = store::index::ValueRange { dim: store::index::Dim::Principal, lo: key.clone(), hi: key };
        if st.index().hours(&[range], 0..=u32::MAX).is_ok_and(|h| !h.is_empty()) {
            return v.to_owned();
        }
    }
    st.secret().pseudonym(v)
}
