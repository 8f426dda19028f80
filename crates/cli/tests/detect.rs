//! `piiwatch detect` driven as a user drives it: every simulated attack is
//! found, the benign platform stays quiet, every finding is valid OCSF, and
//! `--follow` reports as lines arrive.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::findings::{is_posture, names_indicator};
use support::{ok, piiwatch};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Simulates a scenario and runs detect over it; returns truth and findings.
fn scenario(dir: &Path, name: &str, customers: u32) -> (Value, Vec<Value>, String) {
    std::fs::create_dir_all(dir).expect("test dir");
    let sim = support::simulation(name, customers, 3);
    let d = path(&sim);
    let alerts = dir.join("alerts.jsonl");
    let q = dir.join("q.jsonl");
    let out = ok(&[
        "detect",
        "--directory",
        &format!("{d}/directory.json"),
        "--out",
        path(&alerts),
        "--quarantine",
        path(&q),
        &format!("{d}/events.jsonl.gz"),
    ]);
    let truth: Value = serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("json");
    let text = std::fs::read_to_string(&alerts).expect("alerts");
    let findings = text.lines().map(|l| serde_json::from_str(l).expect("each finding is one JSON object")).collect();
    (truth, findings, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn is_ato(f: &Value) -> bool {
    f["finding_info"]["analytic"]["name"] == "account-takeover"
}

fn check_findings_shape(findings: &[Value]) {
    let schema = support::ocsf::Schema::from_shared();
    for f in findings {
        if let Some(s) = &schema {
            let errors = s.validate(f);
            assert!(errors.is_empty(), "invalid OCSF finding: {errors:?}\n{f}");
        }
        let t = f["time"].as_i64().expect("time");
        let first = f["finding_info"]["first_seen_time"].as_i64().expect("first_seen_time");
        let last = f["finding_info"]["last_seen_time"].as_i64().expect("last_seen_time");
        assert!(first <= t && t <= last, "time outside the finding's span: {f}");
        assert!(f["finding_info"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(f["count"].as_u64().is_some());
        for o in f["observables"].as_array().expect("observables") {
            let name = o["name"].as_str().expect("name");
            assert!(
                [
                    "src_endpoint.ip",
                    "actor.session.issuer",
                    "actor.session.uid",
                    "actor.user.uid",
                    "src_endpoint.autonomous_system.number",
                    "http_request.user_agent",
                    "api.service.name",
                    "class_uid",
                    "metadata.log_name",
                ]
                .contains(&name),
                "observable {name} is not an input field path"
            );
        }
    }
}

#[test]
fn every_attack_is_detected_and_the_benign_platform_stays_quiet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for name in support::scenarios() {
        let dir = tmp.path().join(name);
        let (truth, findings, stderr) = scenario(&dir, name, 20_000);
        check_findings_shape(&findings);
        assert!(stderr.contains("detector") && stderr.contains("events"), "summary table on stderr: {stderr}");
        let attacks = truth["attacks"].as_array().expect("attacks");
        let activity: Vec<&Value> = findings.iter().filter(|f| !is_posture(f)).collect();
        for attack in attacks {
            let start = attack["start"].as_i64().expect("start");
            let hits: Vec<&&Value> = activity
                .iter()
                .filter(|f| names_indicator(f, attack) && f["time"].as_i64().is_some_and(|t| t >= start))
                .collect();
            assert!(!hits.is_empty(), "{name}: no finding names an indicator of {}", attack["name"]);
            if name == "coupang" {
                // Known no later than five minutes (event time) after the
                // crawl starts; the forged tokens of the low-rate test phase
                // usually give it away hours before.
                let crawl = attack["phases"]
                    .as_array()
                    .and_then(|p| p.iter().find(|p| p["name"] == "crawl"))
                    .and_then(|p| p["start"].as_i64())
                    .expect("crawl phase");
                let first =
                    hits.iter().filter_map(|f| f["finding_info"]["created_time"].as_i64()).min().expect("a finding");
                assert!(
                    first - crawl <= 5 * 60_000,
                    "first finding {}s after the crawl started",
                    (first - crawl) / 1000
                );
            }
        }
        if name == "ato" {
            // One campaign finding within fifteen minutes (event time) of
            // the rate rising, before 200 accounts were taken over.
            let campaign = attacks[0]["phases"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "campaign"))
                .and_then(|p| p["start"].as_i64())
                .expect("campaign phase");
            let takeovers: Vec<&&Value> = activity.iter().filter(|f| is_ato(f)).collect();
            let creates: Vec<&&&Value> = takeovers.iter().filter(|f| f["activity_id"] == 1).collect();
            assert_eq!(creates.len(), 1, "one campaign, one finding: {creates:#?}");
            let f = creates[0];
            assert!(names_indicator(f, &attacks[0]), "the campaign finding names the proxies: {f}");
            let at = f["finding_info"]["created_time"].as_i64().expect("created_time");
            assert!(at - campaign <= 15 * 60_000, "campaign found {}s after the rate rose", (at - campaign) / 1000);
            let victims: std::collections::HashSet<&str> = attacks[0]["indicators"]["actor.user.uid"]
                .as_array()
                .expect("victims")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(victims.len() >= 200, "{} accounts taken over", victims.len());
            let named: Vec<&str> = f["observables"]
                .as_array()
                .expect("observables")
                .iter()
                .filter(|o| o["name"] == "actor.user.uid")
                .filter_map(|o| o["value"].as_str())
                .collect();
            assert!(!named.is_empty() && named.iter().all(|a| victims.contains(a)), "accounts named: {named:?}");
            assert!(f["count"].as_u64().is_some_and(|n| n as usize >= named.len() && n <= 200), "{f}");
        }
        // Nothing fires that names no attacker: fewer than one per million events.
        let benign: Vec<&&Value> = activity.iter().filter(|f| !attacks.iter().any(|a| names_indicator(f, a))).collect();
        assert!(benign.is_empty(), "{name}: findings naming no attacker: {benign:#?}");
        // Posture findings are about the directory, the same in every scenario.
        let posture: Vec<&Value> = findings.iter().filter(|f| is_posture(f)).collect();
        assert!(
            posture.iter().any(|f| f["finding_info"]["title"].as_str().is_some_and(|t| t.contains("auth-key-2019"))),
            "{name}: the unrotated key of a departed custodian is a posture finding"
        );
    }
}

#[test]
fn the_default_configuration_prints_and_reads_back_and_bad_ones_fail_in_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let printed = ok(&["detect", "--print-config"]).stdout;
    let cfg = tmp.path().join("detect.toml");
    std::fs::write(&cfg, &printed).expect("write");
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    ok(&["detect", "--config", path(&cfg), path(&empty)]);
    std::fs::write(&cfg, "[fan_out]\nmultiplyer = 2\n").expect("write");
    let out = piiwatch(&["detect", "--config", path(&cfg), path(&empty)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("multiplyer") && err.lines().count() == 1, "{err}");
    // Sections that count per dimension reject a misspelt one, through the CLI too.
    std::fs::write(&cfg, "[sensitive_fields]\ndimensions = [\"principle\"]\n").expect("write");
    let out = piiwatch(&["detect", "--config", path(&cfg), path(&empty)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sensitive_fields.dimensions[0]") && err.contains("principle"), "{err}");
    assert!(err.lines().count() == 1, "{err}");
    let out = piiwatch(&["detect", "--no-such-flag", path(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    for bad in ["inf", "NaN", "-1", "0", "1e300", "soon"] {
        let flag = format!("--idle-flush={bad}");
        let out = piiwatch(&["detect", "--follow", &flag, path(&empty)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--idle-flush {bad}: {err}");
        assert!(!err.contains("panicked") && err.contains("idle-flush"), "--idle-flush {bad}: {err}");
    }
    let out = piiwatch(&["detect", path(&tmp.path().join("missing.jsonl"))]);
    assert_eq!(out.status.code(), Some(1));
}

fn call(t: i64, token: &str, ip: &str, uid: &str) -> String {
    json!({"class_uid": 6003, "activity_id": 2, "status_id": 1, "time": t,
        "actor": {"user": {"uid": uid, "type": "customer"}, "session": {"uid": token, "issuer": "k1"}},
        "src_endpoint": {"ip": ip}, "api": {"operation": "GET /v1/me"},
        "resources": [{"uid": uid, "type": "customer"}]})
    .to_string()
}

#[test]
fn follow_reports_findings_while_the_file_is_still_growing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("live.jsonl");
    let t0 = 1_743_433_200_000i64;
    // A token nobody issued, then ten minutes of ordinary traffic to move event time on.
    let mut lines = vec![call(t0, "forged-1", "45.77.21.9", "c1")];
    for i in 1..=10 {
        let tok = format!("ok-{i}");
        lines.push(
            json!({"class_uid": 3002, "activity_id": 1, "status_id": 1, "time": t0 + i * 60_000,
            "user": {"uid": "c2"}, "session": {"uid": tok, "issuer": "k1"}})
            .to_string(),
        );
        lines.push(call(t0 + i * 60_000 + 1, &tok, "121.128.0.1", "c2"));
    }
    std::fs::write(&log, format!("{}\n", lines.join("\n"))).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args([
            "detect",
            "--follow",
            "--idle-flush",
            "0.2",
            "--quarantine",
            path(&tmp.path().join("q.jsonl")),
            path(&log),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("a finding while the file is still open");
    let f: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(f["finding_info"]["analytic"]["name"], "forged-token");
    assert_eq!(f["time"], t0);
    // More lines appended later are read too: a departed principal's call.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
    let off = json!({"class_uid": 3001, "activity_id": 6, "status_id": 1, "time": t0 + 11 * 60_000, "user": {"uid": "emp-9"}});
    writeln!(file, "{off}").expect("append");
    writeln!(file, "{}", call(t0 + 12 * 60_000, "ok-10", "121.128.0.1", "emp-9")).expect("append");
    drop(file);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut names = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&line).expect("json");
            names.push(v["finding_info"]["analytic"]["name"].as_str().unwrap_or_default().to_owned());
            if names.iter().any(|n| n == "departed-principal") {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(names.iter().any(|n| n == "departed-principal"), "appended lines were not detected: {names:?}");
}
