//! The simulator's ground truth, recomputed from its events as an
//! investigator would see them: the exposure of each attack's indicators
//! must equal the truth exactly, subject by subject and field by field.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;

use ingest::{Input, LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Event, Symbols};
use serde_json::Value;

type Exposure = BTreeMap<String, BTreeSet<String>>;

/// One successful access as an investigator sees it.
struct Seen {
    ip: String,
    token: String,
    op: String,
    /// Subject uid and field classes.
    subjects: Vec<(String, Vec<String>)>,
}

/// Collects issued tokens and, per access, what a predicate selects.
struct Collect<F> {
    issued: HashSet<String>,
    accesses: Vec<Seen>,
    select: F,
}

impl<F: FnMut(&str, &str, &str) -> bool> Visitor for Collect<F> {
    fn event(&mut self, _at: LineRef<'_>, ev: &Event<'_>, sy: &Symbols) {
        match ev {
            Event::Issuance(i) => {
                self.issued.insert(sy.token_name(i.token).to_owned());
            }
            Event::Access(a) if a.success => {
                let principal = sy.principal_name(a.principal);
                let ip = sy.addrs.resolve(a.src).to_string();
                let token = a.token.map_or("", |t| sy.token_name(t));
                if !(self.select)(principal, &ip, token) {
                    return;
                }
                let subjects = a
                    .subjects
                    .iter()
                    .map(|s| (sy.subject_name(s.id).to_owned(), sy.fields.names(s.fields).map(str::to_owned).collect()))
                    .collect();
                self.accesses.push(Seen {
                    ip,
                    token: token.to_owned(),
                    op: sy.operation_name(a.operation).to_owned(),
                    subjects,
                });
            }
            _ => {}
        }
    }
    fn quarantined(&mut self, _q: &Quarantined<'_>) {}
}

fn simulate(dir: &Path, scenario: &str) -> Value {
    let status = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args([
            "simulate",
            "--scenario",
            scenario,
            "--out",
            dir.to_str().expect("p"),
            "--customers",
            "2500",
            "--days",
            "6",
            "--seed",
            "11",
        ])
        .status()
        .expect("simulate runs");
    assert!(status.success());
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).expect("truth")).expect("json")
}

fn read<F: FnMut(&str, &str, &str) -> bool>(dir: &Path, select: F) -> Collect<F> {
    let mut c = Collect { issued: HashSet::new(), accesses: Vec::new(), select };
    let mut reader = Reader::new(ReaderOptions::default());
    let mut sy = Symbols::default();
    reader.read(&Input::Path(dir.join("events.jsonl.gz")), &mut sy, &mut c).expect("reads");
    c
}

fn exposure<'a>(accesses: impl Iterator<Item = &'a Vec<(String, Vec<String>)>>) -> (BTreeSet<String>, Exposure) {
    let mut all = BTreeSet::new();
    let mut by_field = Exposure::new();
    for subjects in accesses {
        for (s, fields) in subjects {
            all.insert(s.clone());
            for f in fields {
                by_field.entry(f.clone()).or_default().insert(s.clone());
            }
        }
    }
    (all, by_field)
}

fn truth_exposure(attack: &Value) -> (BTreeSet<String>, Exposure) {
    let set = |v: &Value| {
        v.as_array().expect("list").iter().map(|s| s.as_str().expect("uid").to_owned()).collect::<BTreeSet<_>>()
    };
    let by_field =
        attack["exposed_by_field"].as_object().expect("fields").iter().map(|(k, v)| (k.clone(), set(v))).collect();
    (set(&attack["exposed_subjects"]), by_field)
}

#[test]
fn coupang_truth_is_exactly_what_the_never_issued_tokens_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let truth = simulate(tmp.path(), "coupang");
    let c = read(tmp.path(), |_, _, _| true);
    let forged: Vec<_> = c.accesses.iter().filter(|a| !a.token.is_empty() && !c.issued.contains(&a.token)).collect();
    let attack = &truth["attacks"][0];
    assert_eq!(exposure(forged.iter().map(|a| &a.subjects)), truth_exposure(attack));
    assert_eq!(attack["tokens"].as_u64(), Some(forged.iter().map(|a| &a.token).collect::<BTreeSet<_>>().len() as u64));
    // The crawl reached (almost) every customer and their address books.
    let customers = attack["subjects_by_type"]["customer"].as_u64().expect("n");
    assert!(customers >= 2400, "{customers}");
    assert!(attack["subjects_by_type"]["recipient"].as_u64().expect("n") > 1000);
    let ips: BTreeSet<String> = forged.iter().map(|a| a.ip.clone()).collect();
    let truth_ips: BTreeSet<String> = attack["indicators"]["src_endpoint.ip"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|v| v.as_str().expect("ip").to_owned())
        .collect();
    assert_eq!(ips, truth_ips);
}

#[test]
fn insider_truth_is_exactly_what_the_agent_read_from_home() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let truth = simulate(tmp.path(), "insider");
    let c = read(tmp.path(), |p, ip, _| p == "agent-007" && ip == "10.8.3.77");
    let attack = &truth["attacks"][0];
    assert!(c.accesses.len() > 100);
    assert_eq!(exposure(c.accesses.iter().map(|a| &a.subjects)), truth_exposure(attack));
    assert!(c.accesses.iter().all(|a| c.issued.contains(&a.token)), "the insider's tokens are genuine");
}

#[test]
fn bola_truth_is_exactly_the_other_customers_the_attacker_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let truth = simulate(tmp.path(), "bola");
    let attack = &truth["attacks"][0];
    let attacker = attack["indicators"]["actor.user.uid"][0].as_str().expect("uid").to_owned();
    let ip = attack["indicators"]["src_endpoint.ip"][0].as_str().expect("ip").to_owned();
    let c = read(tmp.path(), |p, i, _| p == attacker && i == ip);
    let foreign: Vec<_> = c
        .accesses
        .iter()
        .filter(|a| a.op == "GET /v1/orders/{id}" && a.subjects.first().is_some_and(|s| s.0 != attacker))
        .collect();
    assert_eq!(exposure(foreign.iter().map(|a| &a.subjects)), truth_exposure(attack));
    assert!(c.accesses.iter().all(|a| c.issued.contains(&a.token)), "the attacker's tokens are genuinely issued");
}
