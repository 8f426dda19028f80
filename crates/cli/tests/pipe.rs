//! `piiwatch ... | head`: every command whose reader goes away exits 0,
//! quietly, without a panic; `detect` stops, `ingest` keeps storing.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::ok;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Starts piiwatch with its standard output and error piped.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("piiwatch starts")
}

/// Runs piiwatch with its standard output a pipe whose reading end is
/// closed before it writes anything (what `head -0` does; `head -1` closes
/// only later, so this is the harder case).
fn closed_stdout(args: &[&str]) -> Output {
    let mut child = spawn(args);
    drop(child.stdout.take());
    child.wait_with_output().expect("piiwatch ends")
}

/// Runs piiwatch with its output read up to the first line, then closed
/// (`| head -1`).
fn head_1(args: &[&str]) -> Output {
    let mut child = spawn(args);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).map(|n| n == 1 && byte[0] != b'\n').unwrap_or(false) {}
    drop(stdout);
    child.wait_with_output().expect("piiwatch ends")
}

fn assert_quiet(args: &[&str], out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "piiwatch {args:?} panicked on a closed pipe: {err}");
    assert!(!err.contains("Broken pipe"), "piiwatch {args:?} reported the closed pipe as an error: {err}");
    assert!(out.status.success(), "piiwatch {args:?} exited {:?} on a closed pipe: {err}", out.status.code());
}

#[test]
fn every_command_exits_quietly_when_its_reader_goes_away() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store) = support::simulated_store(tmp.path(), "bola", 1500, 2);
    let events = sim.join("events.jsonl.gz");
    let directory = sim.join("directory.json");
    let q = tmp.path().join("q.jsonl");
    let cp = tmp.path().join("cp");
    std::fs::write(&cp, ok(&["proof", "checkpoint", "--store", s(&store)]).stdout).expect("write");
    let key = tmp.path().join("key");
    std::fs::write(&key, ok(&["proof", "checkpoint", "--store", s(&store), "--key"]).stdout).expect("write");
    let cp_json: serde_json::Value =
        serde_json::from_slice(&ok(&["proof", "checkpoint", "--store", s(&store), "--format", "json"]).stdout)
            .expect("json");
    let size = cp_json["size"].as_u64().expect("a checkpoint size").to_string();
    let incl = tmp.path().join("incl");
    std::fs::write(&incl, ok(&["proof", "inclusion", "--store", s(&store), "--record", "3"]).stdout).expect("write");
    let findings = std::fs::read_to_string(tmp.path().join("bola-findings.jsonl")).expect("findings");
    let first: serde_json::Value = serde_json::from_str(findings.lines().next().expect("a finding")).expect("json");
    ok(&[
        "incident",
        "open",
        "--store",
        s(&store),
        "--from-alert",
        first["finding_info"]["uid"].as_str().expect("uid"),
    ]);
    ok(&["incident", "aware", "--store", s(&store), "INC-1", "--at", "2026-12-07T12:00:00Z"]);
    let report = tmp.path().join("report");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let staff = rules.join("staff-access.yml");
    let plain = tmp.path().join("events.jsonl");
    {
        let mut bytes = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&events).expect("events"))
            .read_to_end(&mut bytes)
            .expect("gzip");
        std::fs::write(&plain, bytes).expect("write");
    }
    let all: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["scope", "--help"],
        vec!["stats", s(&events), "--quarantine", s(&q)],
        vec!["stats", s(&events), "--quarantine", s(&q), "--format", "json"],
        vec!["detect", s(&events), "--directory", s(&directory), "--quarantine", s(&q)],
        vec!["detect", "--print-config"],
        vec!["ingest", "--store", s(&store), "--print-config"],
        vec!["verify", "--store", s(&store)],
        vec!["verify", "--store", s(&store), "--format", "json"],
        vec!["proof", "checkpoint", "--store", s(&store)],
        vec!["proof", "checkpoint", "--store", s(&store), "--key"],
        vec!["proof", "inclusion", "--store", s(&store), "--record", "3"],
        vec!["proof", "consistency", "--store", s(&store), "--from", &size, "--to", &size],
        vec!["proof", "check", "--key", s(&key), "--checkpoint", s(&cp)],
        vec!["proof", "check", "--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&incl)],
        vec!["scope", "--store", s(&store), "--where", "actor.user.type = \"customer\""],
        vec!["scope", "--store", s(&store), "--where", "not actor.user.type = \"x\"", "--format", "json"],
        vec!["incident", "--help"],
        vec!["incident", "list", "--store", s(&store)],
        vec!["incident", "show", "--store", s(&store), "INC-1"],
        vec!["incident", "show", "--store", s(&store), "INC-1", "--format", "json"],
        vec!["report", "--store", s(&store), "--incident", "INC-1", "--out", s(&report)],
        vec!["scope", "--store", s(&store), "--where", "actor.user.type = \"customer\"", "--group-by", "api.operation"],
        vec!["audit", "--store", s(&store), "--directory", s(&directory)],
        vec!["audit", "--store", s(&store), "--format", "json"],
        vec!["rules", "check", s(&rules)],
        vec!["rules", "check", s(&rules), "--format", "json"],
        vec!["rules", "test", s(&staff), s(&plain), "--explain", "3"],
    ];
    for args in &all {
        assert_quiet(args, &closed_stdout(args));
        assert_quiet(args, &head_1(args));
    }
    // `detect` stops when nobody reads its findings: no summary, which it
    // writes only after reading every input.
    let args = ["detect", s(&events), "--directory", s(&directory), "--quarantine", s(&q)];
    let out = closed_stdout(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("events/s"), "detect read on after its findings output closed: {err}");
}

#[test]
fn ingest_keeps_storing_when_its_findings_output_closes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = support::simulation("bola", 1500, 2);
    let events = sim.join("events.jsonl.gz");
    let directory = sim.join("directory.json");
    let q = tmp.path().join("q.jsonl");
    let ingest = |store: &Path, closed: bool| {
        let args = ["ingest", "--store", s(store), "--directory", s(&directory), "--quarantine", s(&q), s(&events)];
        if closed { closed_stdout(&args) } else { support::piiwatch(&args) }
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let open = ingest(&a, false);
    assert!(open.status.success());
    assert!(!open.stdout.is_empty(), "bola produced no findings to write");
    let closed = ingest(&b, true);
    assert_quiet(&["ingest"], &closed);
    let err = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(err.matches("cannot write findings").count(), 1, "one warning, once: {err}");
    // The same store either way: every event and every finding.
    let head = |store: &Path| {
        let v: serde_json::Value =
            serde_json::from_slice(&ok(&["verify", "--store", s(store), "--format", "json"]).stdout).expect("json");
        v["records"].clone()
    };
    assert!(head(&a).as_u64().is_some_and(|n| n > 0), "verify reports records");
    assert_eq!(head(&a), head(&b), "ingest stored less when its findings output closed");
}
