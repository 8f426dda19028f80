//! Helpers shared by the integration tests (`mod support;`).

pub mod findings;
pub mod ledger;
pub mod ocsf;
pub mod serve;

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

/// A simulation shared by every test (and every test binary) of this build:
/// simulated once into `CARGO_TARGET_TMPDIR`, under a name that includes
/// the binary's build time, so a rebuilt simulator never serves stale
/// output. Read-only: tests write their stores and outputs elsewhere.
#[allow(dead_code)]
pub fn simulation(scenario: &str, customers: u32, days: u32) -> std::path::PathBuf {
    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_piiwatch")).expect("the binary exists");
    let built = bin.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("simulations");
    let dir = root.join(format!("{scenario}-{customers}x{days}-{}-{}", built.as_nanos(), bin.len()));
    if dir.join("truth.json").exists() {
        return dir;
    }
    // Simulated aside and renamed into place: tests running at once each
    // see a whole simulation or none.
    let id = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let tmp = root.join(format!(".{scenario}-{customers}x{days}-{}-{id}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    ok(&[
        "simulate",
        "--scenario",
        scenario,
        "--out",
        tmp.to_str().expect("utf-8 path"),
        "--customers",
        &customers.to_string(),
        "--days",
        &days.to_string(),
    ]);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test got there first: theirs is the same bytes.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dir.join("truth.json").exists(), "simulation {} missing", dir.display());
    dir
}

/// Ingests a shared simulation of a scenario ([`simulation`]), with its
/// directory, into `dir/{scenario}-store`; returns (simulation dir, store dir).
#[allow(dead_code)]
pub fn simulated_store(
    dir: &std::path::Path,
    scenario: &str,
    customers: u32,
    days: u32,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let sim = simulation(scenario, customers, days);
    let store = dir.join(format!("{scenario}-store"));
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
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

/// The uid of the first finding of detector `analytic` among those
/// [`simulated_store`] wrote for `scenario` into `dir`.
#[allow(dead_code)]
pub fn first_finding(dir: &std::path::Path, scenario: &str, analytic: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{scenario}-findings.jsonl"))).expect("findings");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|f| f["finding_info"]["analytic"]["name"] == analytic)
        .and_then(|f| f["finding_info"]["uid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {analytic} finding for {scenario}"))
}
