//! Detection quality per simulated scenario: time to detect, subjects
//! exposed before detection, and alerts that name no attacker.
//!
//!     cargo bench -p cli --bench quality                                  # 20 000 customers, 3 days
//!     PIIWATCH_QUALITY_CUSTOMERS=1000000 cargo bench -p cli --bench quality
//!
//! For each scenario it simulates (reusing `bench-data/quality/<scenario>-<customers>x<days>/`
//! when present), runs `piiwatch detect` over the gzip output under
//! `/usr/bin/time -v`, and compares the findings with `truth.json`:
//! - a finding is the attacker's when it is not a posture finding and one of
//!   its observables equals one of the attack's indicators;
//! - time to detect is the first such finding's `finding_info.created_time`
//!   (the event time the engine had reached when it reported) minus the
//!   attack's start, and minus each later phase's start (negative: before it);
//! - subjects exposed before detection are the distinct subjects returned by
//!   the attack's calls (selected by its indicators, every indicator field
//!   matching, as an investigator would) with event time before that moment;
//! - accounts taken over before detection (account takeover): the distinct
//!   principals of those calls before that moment;
//! - unmatched findings name no indicator of any attack: distinct finding
//!   uids, with their updates counted separately, and per million events.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a report for people

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ingest::{Input, LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Event, Symbols};
use serde_json::Value;

#[path = "../tests/support/findings.rs"]
mod findings;
use findings::{is_posture, names_indicator};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Exposure<'a> {
    attack: &'a Value,
    /// Event time and subject uid of every subject an attack call returned.
    reads: Vec<(i64, String)>,
    /// Event time and principal of every attack call.
    principals: Vec<(i64, String)>,
}

impl Visitor for Exposure<'_> {
    fn event(&mut self, _at: LineRef<'_>, ev: &Event<'_>, sy: &Symbols) {
        let Event::Access(a) = ev else { return };
        if !a.success || a.subjects.is_empty() {
            return;
        }
        let ind = &self.attack["indicators"];
        let matches = |field: &str, value: Option<String>| match ind[field].as_array() {
            None => true,
            Some(vals) => value.is_some_and(|v| vals.iter().any(|x| x.as_str() == Some(v.as_str()))),
        };
        if matches("src_endpoint.ip", Some(sy.addrs.resolve(a.src).to_string()))
            && matches("actor.user.uid", Some(sy.principal_name(a.principal).to_owned()))
            && matches("actor.session.issuer", a.key.map(|k| sy.key_name(k).to_owned()))
            && matches("src_endpoint.autonomous_system.number", a.asn.map(|n| n.to_string()))
        {
            self.principals.push((a.time, sy.principal_name(a.principal).to_owned()));
            for s in a.subjects {
                self.reads.push((a.time, sy.subject_name(s.id).to_owned()));
            }
        }
    }
    fn quarantined(&mut self, _q: &Quarantined<'_>) {}
}

fn rss_kib(time_report: &str) -> Option<u64> {
    time_report.lines().find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): ")?.parse().ok())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let customers = env_u32("PIIWATCH_QUALITY_CUSTOMERS", 20_000);
    let days = env_u32("PIIWATCH_QUALITY_DAYS", 3);
    let bin = env!("CARGO_BIN_EXE_piiwatch");
    println!("quality: {customers} customers, {days} days, seed 1; piiwatch {bin}");
    println!(
        "{:<9} {:>10} {:>8} {:>8} {:>44} {:>8} {:>8} {:>9} {:>7} {:>6} {:>7} {:>8}",
        "scenario",
        "events",
        "detect s",
        "events/s",
        "time to detect (from)",
        "exposed",
        "accounts",
        "unmatched",
        "updates",
        "per M",
        "posture",
        "max RSS"
    );
    for scenario in simulate::scenarios::SCENARIOS.map(|s| s.0) {
        let dir = root().join(format!("bench-data/quality/{scenario}-{customers}x{days}"));
        if !dir.join("truth.json").exists() {
            let ok = Command::new(bin)
                .args(["simulate", "--scenario", scenario, "--customers", &customers.to_string(), "--days"])
                .arg(days.to_string())
                .arg("--out")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "simulate {scenario} failed");
        }
        let alerts = dir.join("alerts.jsonl");
        let timing = dir.join("detect.time");
        let started = Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(&timing)
            .arg(bin)
            .args(["detect", "--format", "json", "--directory"])
            .arg(dir.join("directory.json"))
            .arg("--out")
            .arg(&alerts)
            .arg("--quarantine")
            .arg(dir.join("quarantine.jsonl"))
            .arg(dir.join("events.jsonl.gz"))
            .output()
            .expect("detect runs");
        let secs = started.elapsed().as_secs_f64();
        assert!(out.status.success(), "detect failed: {}", String::from_utf8_lossy(&out.stderr));
        let summary: Value = String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .expect("json summary on stderr");
        let events = summary["events"].as_u64().unwrap_or(0);
        let rss = std::fs::read_to_string(&timing).ok().as_deref().and_then(rss_kib);
        let truth: Value =
            serde_json::from_slice(&std::fs::read(dir.join("truth.json")).expect("truth")).expect("json");
        let findings: Vec<Value> = std::fs::read_to_string(&alerts)
            .expect("alerts")
            .lines()
            .map(|l| serde_json::from_str(l).expect("finding"))
            .collect();
        let attacks = truth["attacks"].as_array().cloned().unwrap_or_default();
        let activity: Vec<&Value> = findings.iter().filter(|f| !is_posture(f)).collect();
        // A finding counts once (its updates carry the same uid); updates apart.
        let unmatched: Vec<&&Value> =
            activity.iter().filter(|f| !attacks.iter().any(|a| names_indicator(f, a))).collect();
        let uids: HashSet<&str> = unmatched.iter().filter_map(|f| f["finding_info"]["uid"].as_str()).collect();
        let benign = uids.len();
        let updates = unmatched.len() - unmatched.iter().filter(|f| f["activity_id"] == 1).count();
        let posture = findings.iter().filter(|f| is_posture(f) && f["activity_id"] == 1).count();
        let per_m = benign as f64 * 1e6 / events.max(1) as f64;
        let rss = rss.map_or("-".to_owned(), |k| format!("{} MiB", k / 1024));
        let rate = events as f64 / secs;
        if attacks.is_empty() {
            println!(
                "{scenario:<9} {events:>10} {secs:>8.1} {rate:>8.0} {:>44} {:>8} {:>8} {benign:>9} {updates:>7} {per_m:>6.2} {posture:>7} {rss:>8}",
                "(no attack)", "-", "-"
            );
        }
        for attack in &attacks {
            let start = attack["start"].as_i64().unwrap_or(0);
            let detected = activity
                .iter()
                .filter(|f| names_indicator(f, attack))
                .filter_map(|f| f["finding_info"]["created_time"].as_i64())
                .filter(|&t| t >= start)
                .min();
            let mut exposure = Exposure { attack, reads: Vec::new(), principals: Vec::new() };
            let mut reader = Reader::new(ReaderOptions::default());
            let mut sy = Symbols::default();
            reader.read(&Input::Path(dir.join("events.jsonl.gz")), &mut sy, &mut exposure).expect("reads events");
            let takeover = attack["kind"] == "account-takeover";
            let (ttd, exposed, accounts) = match detected {
                Some(at) => {
                    let before: HashSet<&str> =
                        exposure.reads.iter().filter(|r| r.0 < at).map(|r| r.1.as_str()).collect();
                    let taken: HashSet<&str> =
                        exposure.principals.iter().filter(|r| r.0 < at).map(|r| r.1.as_str()).collect();
                    let mut from = vec![format!("{:.1} min (start)", (at - start) as f64 / 60_000.0)];
                    for p in attack["phases"].as_array().into_iter().flatten().skip(1) {
                        let ps = p["start"].as_i64().unwrap_or(start);
                        let name = p["name"].as_str().unwrap_or("");
                        from.push(format!("{:.1} min ({name})", (at - ps) as f64 / 60_000.0));
                    }
                    let accounts = if takeover { taken.len().to_string() } else { "-".to_owned() };
                    (from.join(", "), before.len().to_string(), accounts)
                }
                None => ("NOT DETECTED".to_owned(), "all".to_owned(), "all".to_owned()),
            };
            println!(
                "{scenario:<9} {events:>10} {secs:>8.1} {rate:>8.0} {ttd:>44} {exposed:>8} {accounts:>8} {benign:>9} {updates:>7} {per_m:>6.2} {posture:>7} {rss:>8}"
            );
        }
    }
}
