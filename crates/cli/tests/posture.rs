//! `piiwatch audit`, the posture audit, on simulated platforms: the
//! departed custodian's unrotated key of the breach, keys older than
//! policy, an offboarded principal still active (made so by editing the
//! directory), staff reading beyond the usual; each risk's reach equal to
//! `scope`, the page self-contained, the audit recorded.

mod support;

use serde_json::Value;
use support::ok;

fn risks(store: &str, directory: Option<&str>, now: &str, out: Option<&str>) -> Vec<Value> {
    let mut args = vec!["audit", "--store", store, "--now", now, "--format", "json"];
    if let Some(d) = directory {
        args.extend(["--directory", d]);
    }
    if let Some(o) = out {
        args.extend(["--out", o]);
    }
    String::from_utf8(ok(&args).stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

fn scope(store: &str, cmd: &str) -> Value {
    // The command the risk names, run as a person would.
    let expr = cmd.split("--where '").nth(1).and_then(|r| r.split('\'').next()).expect("expression");
    let mut args = vec!["scope", "--store", store, "--where", expr, "--format", "json"];
    let from = cmd.split("--from ").nth(1).and_then(|r| r.split(' ').next()).map(str::to_owned);
    if let Some(f) = &from {
        args.extend(["--from", f.as_str()]);
    }
    serde_json::from_slice(&ok(&args).stdout).expect("JSON")
}

#[test]
fn the_breach_s_standing_risks_are_named_with_their_evidence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store_dir) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let directory = sim.join("directory.json");
    let out = tmp.path().join("audit");
    let all = risks(
        store,
        Some(directory.to_str().expect("utf-8")),
        "2025-04-04T00:00:00Z",
        Some(out.to_str().expect("utf-8")),
    );
    // The breach's root: the departed custodian's key, first and critical.
    let first = &all[0];
    assert_eq!(
        (first["kind"].as_str(), first["subject"].as_str(), first["severity"].as_u64()),
        (Some("key_custodian_left"), Some("auth-key-2019"), Some(5))
    );
    assert!(first["evidence"][0].as_str().expect("evidence").contains("emp-1042 left on 2024-12-31"), "{first}");
    assert_eq!(first["reach"], scope(store, first["command"].as_str().expect("command")));
    assert!(first["reach"]["subjects"].as_u64().unwrap_or(0) > 1000);
    // Every key older than policy and not retired, from the directory.
    let dir: Value = serde_json::from_slice(&std::fs::read(&directory).expect("directory")).expect("JSON");
    let now = "2025-04-04T00:00:00Z".parse::<jiff::Timestamp>().expect("time").as_millisecond();
    let old: std::collections::BTreeSet<&str> = dir["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["retired"].is_null())
        .filter(|k| {
            let created =
                k["created"].as_str().expect("created").parse::<jiff::Timestamp>().expect("time").as_millisecond();
            (now - created) / 86_400_000 > 365
        })
        .map(|k| k["id"].as_str().expect("id"))
        .collect();
    let flagged: std::collections::BTreeSet<&str> =
        all.iter().filter(|r| r["kind"] == "key_not_rotated").map(|r| r["subject"].as_str().expect("key")).collect();
    assert_eq!(flagged, old);
    // The page, self-contained; the audit recorded.
    let html = std::fs::read_to_string(out.join("audit.html")).expect("audit.html");
    assert!(html.contains("<svg") && html.contains("auth-key-2019") && !html.contains("src=\"http"));
    assert!(support::ledger::ledger_text(&store_dir).contains("\"command\":\"audit (posture)\""));
    // Without the directory, the stored key findings stand in.
    let bare = risks(store, None, "2025-04-04T00:00:00Z", None);
    assert!(bare.iter().any(|r| r["kind"] == "key_custodian_left" && r["subject"] == "auth-key-2019"), "{bare:?}");
}

#[test]
fn an_offboarded_principal_still_reading_and_staff_beyond_the_usual_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store_dir) = support::simulated_store(tmp.path(), "insider", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let truth: Value = serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("JSON");
    let agent = truth["attacks"][0]["indicators"]["actor.user.uid"][0].as_str().expect("the insider").to_owned();
    // The same platform, had the agent been offboarded the day the attack started.
    let mut dir: Value =
        serde_json::from_slice(&std::fs::read(sim.join("directory.json")).expect("dir")).expect("JSON");
    let start = truth["attacks"][0]["start"].as_i64().expect("start");
    let left = jiff::Timestamp::from_millisecond(start - start.rem_euclid(86_400_000)).expect("time").to_string();
    for p in dir["principals"].as_array_mut().expect("principals") {
        if p["uid"] == agent.as_str() {
            p["left"] = Value::from(left.clone());
        }
    }
    let edited = tmp.path().join("directory-offboarded.json");
    std::fs::write(&edited, dir.to_string()).expect("write");
    let all = risks(store, Some(edited.to_str().expect("utf-8")), "2026-01-01T00:00:00Z", None);
    let off = all
        .iter()
        .find(|r| r["kind"] == "offboarded_still_active" && r["subject"] == agent.as_str())
        .unwrap_or_else(|| panic!("{agent} not named: {all:?}"));
    assert_eq!(off["severity"], 4);
    assert_eq!(off["reach"], scope(store, off["command"].as_str().expect("command")));
    assert!(off["reach"]["events"].as_u64().unwrap_or(0) > 0);
    // The insider's night reading is among the risks of reading beyond the usual.
    assert!(
        all.iter()
            .any(|r| r["kind"] == "reading_beyond_usual" && r["subject"].as_str().is_some_and(|s| s.contains(&agent))),
        "{all:?}"
    );
    // With the real directory, nobody who left is active.
    let real = risks(store, Some(sim.join("directory.json").to_str().expect("utf-8")), "2026-01-01T00:00:00Z", None);
    assert!(!real.iter().any(|r| r["kind"] == "offboarded_still_active" && r["subject"] == agent.as_str()));
}
