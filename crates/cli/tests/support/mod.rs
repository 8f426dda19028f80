//! Helpers shared by the integration tests (`mod support;`).

pub mod findings;
pub mod ledger;
pub mod ocsf;

use std::process::{Command, Output};

/// Whether the slow suites run in full: `PIIWATCH_SLOW=1` (set by
/// `.ci/run`). Without it they run a smaller sample of the same checks, so
/// `cargo test` stays quick on a laptop.
#[allow(dead_code)]
pub fn slow() -> bool {
    std::env::var("PIIWATCH_SLOW").is_ok_and(|v| v == "1")
}

/// The scenarios the end-to-end suites run: every one with
/// `PIIWATCH_SLOW=1`; otherwise the breach, account takeover and the
/// benign platform (the attacks each detector family catches, and the
/// false alarms).
#[allow(dead_code)]
pub fn scenarios() -> Vec<&'static str> {
    let all = simulate::scenarios::SCENARIOS.map(|s| s.0);
    if slow() { all.to_vec() } else { all.into_iter().filter(|s| ["coupang", "ato", "benign"].contains(s)).collect() }
}

/// Runs the `piiwatch` binary built for these tests.
#[allow(dead_code)]
pub fn piiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_piiwatch")).args(args).output().expect("piiwatch runs")
}

/// Runs `piiwatch` and insists that it succeeds.
#[allow(dead_code)]
pub fn ok(args: &[&str]) -> Output {
    let out = piiwatch(args);
    assert!(out.status.success(), "piiwatch {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Simulates a scenario into `dir/sim` and ingests it (with its directory)
/// into `dir/store`; returns (simulation dir, store dir).
#[allow(dead_code)]
pub fn simulated_store(
    dir: &std::path::Path,
    scenario: &str,
    customers: u32,
    days: u32,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let sim = dir.join(format!("{scenario}-sim"));
    let store = dir.join(format!("{scenario}-store"));
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
    ok(&[
        "simulate",
        "--scenario",
        scenario,
        "--out",
        &path(&sim),
        "--customers",
        &customers.to_string(),
        "--days",
        &days.to_string(),
    ]);
    ok(&[
        "ingest",
        "--store",
        &path(&store),
        "--directory",
        &path(&sim.join("directory.json")),
        "--quarantine",
        &path(&dir.join(format!("{scenario}-quarantine.jsonl"))),
        "--out",
        &path(&dir.join(format!("{scenario}-findings.jsonl"))),
        &path(&sim.join("events.jsonl.gz")),
    ]);
    (sim, store)
}
