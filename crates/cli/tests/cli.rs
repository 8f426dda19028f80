//! The `piiwatch` binary driven as a user drives it.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{ok, piiwatch};

fn simulate(dir: &Path, scenario: &str, customers: u32, days: u32, seed: u64) {
    let out = dir.to_str().expect("utf-8 path");
    ok(&[
        "simulate",
        "--scenario",
        scenario,
        "--out",
        out,
        "--customers",
        &customers.to_string(),
        "--days",
        &days.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file reads")).expect("valid json")
}

#[test]
fn simulate_is_deterministic_by_seed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    simulate(&a, "coupang", 1500, 3, 7);
    simulate(&b, "coupang", 1500, 3, 7);
    simulate(&c, "coupang", 1500, 3, 8);
    for f in ["events.jsonl.gz", "directory.json", "truth.json"] {
        let (x, y) = (std::fs::read(a.join(f)).expect("a"), std::fs::read(b.join(f)).expect("b"));
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    assert_ne!(std::fs::read(a.join("events.jsonl.gz")).ok(), std::fs::read(c.join("events.jsonl.gz")).ok());
}

/// `stats` reads the simulator's output back and must agree exactly with
/// the simulator's own tally, kept as it wrote each line.
#[test]
fn stats_agrees_with_the_simulators_tally_for_every_scenario() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for scenario in simulate::scenarios::SCENARIOS.map(|s| s.0) {
        let dir = tmp.path().join(scenario);
        simulate(&dir, scenario, 3000, 5, 3);
        let truth = json_file(&dir.join("truth.json"));
        let quarantine = dir.join("q.jsonl");
        let events = dir.join("events.jsonl.gz");
        let out = ok(&[
            "stats",
            events.to_str().expect("path"),
            "--format",
            "json",
            "--quarantine",
            quarantine.to_str().expect("path"),
        ]);
        let stats: Value = serde_json::from_slice(&out.stdout).expect("stats json");
        let tally = &truth["tally"];
        for key in [
            "events",
            "successful_api_events",
            "exposing_api_events",
            "distinct_principals",
            "distinct_subjects",
            "distinct_sources",
            "first_time",
            "last_time",
        ] {
            assert_eq!(stats[key], tally[key], "{scenario}: {key}");
        }
        assert_eq!(stats["events_by_operation"], tally["events_by_operation"], "{scenario}: operations");
        for (class, n) in tally["events_by_class"].as_object().expect("classes") {
            let name = match class.as_str() {
                "6003" => "api_activity (6003)".to_owned(),
                "3002" => "authentication (3002)".to_owned(),
                "3001" => "account_change (3001)".to_owned(),
                "none" => "no class".to_owned(),
                other => format!("other ({other})"),
            };
            assert_eq!(&stats["events_by_class"][&name], n, "{scenario}: class {class}");
        }
        // Every malformed line is quarantined, with its line number.
        let malformed: Vec<u64> = tally["malformed_lines"]
            .as_array()
            .expect("list")
            .iter()
            .map(|m| m["line"].as_u64().expect("line"))
            .collect();
        assert!(malformed.len() >= 5, "{scenario}: the simulator writes every kind of bad line");
        assert_eq!(stats["quarantined"], malformed.len(), "{scenario}: quarantined");
        let text = std::fs::read_to_string(&quarantine).expect("quarantine written");
        let lines: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json")["line"].as_u64().expect("line"))
            .collect();
        assert_eq!(lines, malformed, "{scenario}: quarantined line numbers");
        if scenario != "benign" {
            assert!(
                truth["attacks"][0]["subjects"].as_u64().expect("count") > 0,
                "{scenario}: the attack exposed someone"
            );
        }
    }
}

#[test]
fn the_simulators_directory_is_a_valid_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    simulate(tmp.path(), "coupang", 500, 1, 1);
    let text = std::fs::read_to_string(tmp.path().join("directory.json")).expect("directory");
    let dir = model::Directory::parse(&text).expect("parses");
    let departed = dir.principal("emp-1042").expect("the departed engineer is listed");
    assert!(departed.left.is_some());
    let key = dir.key("auth-key-2019").expect("the live customer key is listed");
    assert!(key.custodians.iter().any(|c| c == "emp-1042") && key.retired.is_none());
}

#[test]
fn stats_reads_plain_gzip_stdin_and_several_inputs_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = concat!(
        r#"{"class_uid":6003,"activity_id":2,"status_id":1,"time":2000,"actor":{"user":{"uid":"c1"}},"src_endpoint":{"ip":"10.0.0.1"},"api":{"operation":"GET /v1/me"},"resources":[{"uid":"c1","type":"customer"}]}"#,
        "\n",
        "garbage\n",
        r#"{"class_uid":3002,"activity_id":1,"status_id":1,"time":1000,"user":{"uid":"c1"},"session":{"uid":"t1"}}"#,
        "\n"
    );
    let plain = tmp.path().join("a.jsonl");
    std::fs::write(&plain, lines).expect("write");
    let gz = tmp.path().join("b.jsonl.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).expect("create"), flate2::Compression::default());
    enc.write_all(lines.as_bytes()).expect("gz");
    enc.finish().expect("gz");
    let q = tmp.path().join("q.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args([
            "stats",
            plain.to_str().expect("p"),
            "-",
            gz.to_str().expect("p"),
            "--format",
            "json",
            "--quarantine",
            q.to_str().expect("p"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["events"], 6);
    assert_eq!(stats["quarantined"], 3);
    assert_eq!(stats["distinct_principals"], 1);
    assert_eq!(stats["first_time"], 1000);
    let q = std::fs::read_to_string(&q).expect("quarantine");
    let sources: Vec<(String, u64)> = q
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (v["source"].as_str().expect("s").to_owned(), v["line"].as_u64().expect("l"))
        })
        .collect();
    assert_eq!(sources, [(plain.display().to_string(), 2), ("-".to_owned(), 2), (gz.display().to_string(), 2)]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("q.jsonl")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the quarantine may hold identifiers");
    }
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1_with_one_line() {
    let out = piiwatch(&["stats"]);
    assert_eq!(out.status.code(), Some(2));
    let out = piiwatch(&["simulate", "--out", "/tmp/x", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = piiwatch(&["stats", "/nonexistent/events.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/events.jsonl"), "{err}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = piiwatch(&["simulate", "--scenario", "nope", "--out", tmp.path().to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("coupang"), "names the known scenarios");
    for cmd in [&["--help"][..], &["simulate", "--help"], &["stats", "--help"]] {
        assert!(piiwatch(cmd).status.success(), "{cmd:?}");
    }
}

#[test]
fn a_second_stats_run_replaces_its_quarantine_rather_than_doubling_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "not json\n{\"class_uid\":4002,\"time\":1}\n").expect("write");
    let q = tmp.path().join("q.jsonl");
    for _ in 0..2 {
        ok(&["stats", input.to_str().expect("p"), "--quarantine", q.to_str().expect("p")]);
    }
    assert_eq!(std::fs::read_to_string(&q).expect("quarantine").lines().count(), 1);
}
