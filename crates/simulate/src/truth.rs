//! Ground truth: what each injected attack did and exposed, and an
//! independent tally of everything written, for tests to compare against.
//!
//! Both are counted from the simulator's own events as they are written, not
//! by reading the output back, so a test that compares `piiwatch stats` or
//! `piiwatch scope` with them checks the reader against a second account.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Write};
use std::net::IpAddr;

use fixedbitset::FixedBitSet;
use foldhash::fast::FixedState;
use roaring::RoaringBitmap;
use serde_json::json;

use crate::event::{Body, FIELD_NAMES, Fields, OPS, SimEvent};
use crate::platform::{KEYS, Platform, SERVICES, Who};

/// What a scenario says about one of its attacks up front.
#[derive(Clone, Debug)]
pub struct AttackInfo {
    /// Short name.
    pub name: String,
    /// Technique (`forged-token-crawl`, `insider-snooping`, ...).
    pub kind: &'static str,
    /// One paragraph for people.
    pub description: String,
    /// Which contract field paths identify the attacker (`src_endpoint.ip`, ...).
    pub indicator_fields: &'static [&'static str],
    /// The attack's planned phases: name, start, end (ms). Detection latency
    /// is measured from a phase's start (the `coupang` crawl, say).
    pub phases: Vec<(&'static str, i64, i64)>,
}

/// One attack's accumulated truth.
pub struct AttackTruth {
    info: AttackInfo,
    start: Option<i64>,
    end: Option<i64>,
    events: u64,
    exposing_events: u64,
    ips: HashSet<IpAddr, FixedState>,
    asns: BTreeSet<u32>,
    /// Bit `k` set when key `KEYS[k]` was used.
    keys: u8,
    /// Collected only when `actor.user.uid` is an indicator (a crawl names a
    /// million victims as principals; they are not indicators).
    principals: BTreeSet<Who>,
    tokens: HashSet<u64, FixedState>,
    subjects: FixedBitSet,
    fields: Vec<FixedBitSet>,
}

/// Sets bit `i`, growing the set geometrically (subject indices are dense).
fn set(bits: &mut FixedBitSet, i: u32) {
    let i = i as usize;
    if i >= bits.len() {
        bits.grow((i + 1).next_power_of_two());
    }
    bits.insert(i);
}

impl AttackTruth {
    /// Starts accounting for an attack.
    pub fn new(info: AttackInfo) -> Self {
        Self {
            info,
            start: None,
            end: None,
            events: 0,
            exposing_events: 0,
            ips: HashSet::default(),
            asns: BTreeSet::new(),
            keys: 0,
            principals: BTreeSet::new(),
            tokens: HashSet::default(),
            subjects: FixedBitSet::new(),
            fields: vec![FixedBitSet::new(); FIELD_NAMES.len()],
        }
    }
}

/// Counts of everything written, in the terms `piiwatch stats` reports.
#[derive(Default)]
pub struct Tally {
    /// Events per class, in [`CLASSES`] order.
    by_class: [u64; CLASSES.len()],
    by_op: Vec<u64>,
    successful: u64,
    exposing: u64,
    customers: FixedBitSet,
    staff: BTreeSet<u16>,
    services: BTreeSet<u8>,
    subjects: FixedBitSet,
    v4: RoaringBitmap,
    v6: HashSet<u128, FixedState>,
    first: Option<i64>,
    last: Option<i64>,
    /// Line numbers and kinds of the malformed lines.
    pub malformed: Vec<(u64, u8)>,
    lines: u64,
}

/// The classes the simulator writes (`None`: a JSON object of no OCSF class).
const CLASSES: [Option<i64>; 5] = [Some(6003), Some(3002), Some(3001), Some(4002), None];

/// Truth for the whole run.
pub struct Truth {
    /// Per attack.
    pub attacks: Vec<AttackTruth>,
    /// Whole-output tally.
    pub tally: Tally,
}

impl Truth {
    /// Truth for these attacks.
    pub fn new(attacks: Vec<AttackInfo>) -> Self {
        Self {
            attacks: attacks.into_iter().map(AttackTruth::new).collect(),
            tally: Tally { by_op: vec![0; OPS.len()], ..Tally::default() },
        }
    }

    /// Accounts for one written event; `exposed` lists what its line carried.
    pub fn record(&mut self, ev: &SimEvent, exposed: &[(u32, Fields)]) {
        let t = &mut self.tally;
        t.lines += 1;
        let time = match &ev.body {
            Body::Malformed(kind) => {
                t.malformed.push((t.lines, *kind));
                return;
            }
            Body::WindowsLogon => None,
            _ => Some(ev.time),
        };
        if let Some(time) = time {
            t.first = Some(t.first.map_or(time, |f| f.min(time)));
            t.last = Some(t.last.map_or(time, |l| l.max(time)));
        }
        let class = match &ev.body {
            Body::Call(_) => 0,
            Body::Login { .. } => 1,
            Body::Offboard(_) => 2,
            Body::HealthCheck => 3,
            Body::WindowsLogon | Body::Malformed(_) => 4,
        };
        t.by_class[class] += 1;
        let principal = |t: &mut Tally, who: Who| match who {
            Who::Customer(c) => set(&mut t.customers, c),
            Who::Staff(s) => {
                t.staff.insert(s);
            }
            Who::Service(s) => {
                t.services.insert(s);
            }
        };
        match &ev.body {
            Body::Call(call) => {
                t.by_op[call.op as usize] += 1;
                t.successful += u64::from(call.ok);
                t.exposing += u64::from(!exposed.is_empty());
                principal(t, call.who);
                match call.net.ip {
                    IpAddr::V4(ip) => {
                        t.v4.insert(u32::from(ip));
                    }
                    IpAddr::V6(ip) => {
                        t.v6.insert(u128::from(ip));
                    }
                }
                for &(s, _) in exposed {
                    set(&mut t.subjects, s);
                }
            }
            Body::Login { who, ok: true, .. } => principal(t, *who),
            Body::Offboard(s) => principal(t, Who::Staff(*s)),
            _ => {}
        }
        let Some(a) = ev.attack.and_then(|a| self.attacks.get_mut(usize::from(a))) else { return };
        a.events += 1;
        a.start = Some(a.start.map_or(ev.time, |s| s.min(ev.time)));
        a.end = Some(a.end.map_or(ev.time, |e| e.max(ev.time)));
        if let Body::Call(call) = &ev.body {
            a.exposing_events += u64::from(!exposed.is_empty());
            a.ips.insert(call.net.ip);
            if let Some(asys) = call.net.asn {
                a.asns.insert(asys.number);
            }
            a.keys |= 1 << call.key as u8;
            if a.info.indicator_fields.contains(&"actor.user.uid") {
                a.principals.insert(call.who);
            }
            if call.token != 0 {
                a.tokens.insert(call.token);
            }
            for &(s, fields) in exposed {
                set(&mut a.subjects, s);
                for (bit, bm) in a.fields.iter_mut().enumerate() {
                    if fields & (1 << bit) != 0 {
                        set(bm, s);
                    }
                }
            }
        }
    }

    /// Writes `truth.json`.
    pub fn write(&self, p: &Platform, scenario: &str, out: &mut impl Write) -> io::Result<()> {
        let t = &self.tally;
        let ops: BTreeMap<&str, u64> =
            OPS.iter().zip(&t.by_op).filter(|(_, n)| **n > 0).map(|(o, n)| (o.name, *n)).collect();
        let classes: BTreeMap<String, u64> = CLASSES
            .iter()
            .zip(t.by_class)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.map_or("none".to_owned(), |c| c.to_string()), n))
            .collect();
        let tally = json!({
            "lines": t.lines,
            "events": t.by_class.iter().sum::<u64>(),
            "events_by_class": classes,
            "events_by_operation": ops,
            "successful_api_events": t.successful,
            "exposing_api_events": t.exposing,
            "distinct_principals": t.customers.count_ones(..) + t.staff.len() + t.services.len(),
            "distinct_subjects": t.subjects.count_ones(..),
            "distinct_sources": t.v4.len() + t.v6.len() as u64,
            "first_time": t.first,
            "last_time": t.last,
            "malformed_lines": t.malformed.iter().map(|(l, k)| json!({"line": l, "kind": k})).collect::<Vec<_>>(),
        });
        let header = json!({
            "scenario": scenario,
            "seed": p.seed,
            "customers": p.customers,
            "days": p.days,
            "start": crate::platform::T0,
            "end": p.end(),
            "tally": tally,
        });
        let mut header = serde_json::to_string_pretty(&header)?;
        header.truncate(header.trim_end().len() - 1); // reopen the object
        out.write_all(header.as_bytes())?;
        out.write_all(b",\n  \"attacks\": [")?;
        for (i, a) in self.attacks.iter().enumerate() {
            out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
            self.write_attack(p, a, out)?;
        }
        out.write_all(b"\n  ]\n}\n")
    }

    fn write_attack(&self, p: &Platform, a: &AttackTruth, out: &mut impl Write) -> io::Result<()> {
        let mut indicators = serde_json::Map::new();
        for field in a.info.indicator_fields {
            let values: Vec<String> = match *field {
                "src_endpoint.ip" => a.ips.iter().collect::<BTreeSet<_>>().iter().map(ToString::to_string).collect(),
                "src_endpoint.autonomous_system.number" => a.asns.iter().map(ToString::to_string).collect(),
                "actor.session.issuer" => KEYS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| a.keys & (1 << i) != 0)
                    .map(|(_, k)| k.id.to_owned())
                    .collect(),
                "actor.user.uid" => a.principals.iter().map(|&w| principal_uid(p, w)).collect(),
                _ => Vec::new(),
            };
            indicators.insert((*field).to_owned(), json!(values));
        }
        let total = a.subjects.count_ones(..) as u64;
        let recipients = a.subjects.ones().filter(|&s| p.is_recipient(s as u32)).count() as u64;
        let head = json!({
            "name": a.info.name,
            "kind": a.info.kind,
            "description": a.info.description,
            "indicators": indicators,
            "start": a.start,
            "end": a.end,
            "phases": a.info.phases.iter().map(|(n, s, e)| json!({"name": n, "start": s, "end": e})).collect::<Vec<_>>(),
            "events": a.events,
            "exposing_events": a.exposing_events,
            "tokens": a.tokens.len(),
            "subjects": total,
            "subjects_by_type": {"customer": total - recipients, "recipient": recipients},
            "fields": FIELD_NAMES.iter().zip(&a.fields).filter(|(_, b)| !b.is_clear()).map(|(n, b)| (n.to_string(), json!(b.count_ones(..)))).collect::<serde_json::Map<_, _>>(),
        });
        let head = serde_json::to_string(&head)?;
        out.write_all(b"    ")?;
        out.write_all(&head.as_bytes()[..head.len() - 1])?;
        out.write_all(b",\n      \"exposed_subjects\": ")?;
        write_uids(p, &a.subjects, out)?;
        out.write_all(b",\n      \"exposed_by_field\": {")?;
        let mut first = true;
        for (name, bm) in FIELD_NAMES.iter().zip(&a.fields).filter(|(_, b)| !b.is_clear()) {
            out.write_all(if first { b"\n        \"" } else { b",\n        \"" })?;
            first = false;
            out.write_all(name.as_bytes())?;
            out.write_all(b"\": ")?;
            write_uids(p, bm, out)?;
        }
        out.write_all(b"\n      }\n    }")
    }
}

fn write_uids(p: &Platform, set: &FixedBitSet, out: &mut impl Write) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    buf.push(b'[');
    for (i, s) in set.ones().map(|s| s as u32).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.push(b'"');
        p.subject_uid(s, &mut buf);
        buf.push(b'"');
        if buf.len() > 60_000 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    buf.push(b']');
    out.write_all(&buf)
}

/// A principal's uid as logged.
pub fn principal_uid(p: &Platform, who: Who) -> String {
    match who {
        Who::Customer(c) => {
            let mut v = Vec::new();
            p.customer_uid(c, &mut v);
            String::from_utf8_lossy(&v).into_owned()
        }
        Who::Staff(s) => p.staff[usize::from(s)].uid.clone(),
        Who::Service(s) => SERVICES[usize::from(s)].0.to_owned(),
    }
}
