//! `piiwatch scope` driven as an investigator drives it: for every attack
//! of every scenario, scoping by the attack's indicators gives exactly the
//! simulator's truth; every scope is recorded in the store.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{ok, piiwatch};

fn scope_json(store: &Path, expr: &str) -> Value {
    let o = ok(&["scope", "--store", store.to_str().expect("utf-8 path"), "--format", "json", "--where", expr]);
    serde_json::from_slice(&o.stdout).expect("scope prints JSON")
}

/// `f1 in (...) and f2 in (...)`: every indicator field must match, as an investigator would ask.
fn indicators_expr(indicators: &Value) -> String {
    let mut parts = Vec::new();
    for (field, vals) in indicators.as_object().expect("indicators object") {
        let vals: Vec<String> = vals
            .as_array()
            .expect("indicator values")
            .iter()
            .map(|v| format!("{:?}", v.as_str().expect("string")))
            .collect();
        parts.push(format!("{field} in ({})", vals.join(", ")));
    }
    parts.join(" and ")
}

#[test]
fn scope_by_indicators_equals_the_simulated_truth_for_every_attack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut attacks = 0;
    for scenario in ["coupang", "insider", "bola"] {
        let (sim, store) = support::simulated_store(tmp.path(), scenario, 3000, 3);
        let truth: Value =
            serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("truth is JSON");
        for a in truth["attacks"].as_array().expect("attacks") {
            attacks += 1;
            let name = a["name"].as_str().expect("name");
            let mut expr = indicators_expr(&a["indicators"]);
            // An attacker who is a customer also uses the shop normally from
            // the same address: reading their own account is not an exposure
            // (the truth does not count it), so an investigator leaves it out.
            if let Some(own) = a["indicators"]["actor.user.uid"].as_array() {
                let own: Vec<String> = own.iter().map(|v| format!("{:?}", v.as_str().expect("uid"))).collect();
                expr = format!("({expr}) and not resources.uid in ({})", own.join(", "));
            }
            let out = tmp.path().join(format!("{name}.subjects"));
            let o = ok(&[
                "scope",
                "--store",
                store.to_str().expect("utf-8"),
                "--format",
                "json",
                "--where",
                &expr,
                "--subjects-out",
                out.to_str().expect("utf-8"),
            ]);
            let got: Value = serde_json::from_slice(&o.stdout).expect("scope prints JSON");
            // The index (narrowing the scan to the indicators' hours) and a
            // scan of the whole ledger agree, and so does each indicator
            // field alone, answered from the index.
            let st = store.to_str().expect("utf-8");
            let scan = ok(&["scope", "--store", st, "--format", "json", "--no-index", "--where", &expr]);
            assert_eq!(got, serde_json::from_slice::<Value>(&scan.stdout).expect("json"), "{name}: index vs scan");
            for (field, vals) in a["indicators"].as_object().expect("indicators") {
                let vals: Vec<String> =
                    vals.as_array().expect("values").iter().map(|v| format!("{:?}", v.as_str().expect("s"))).collect();
                let one = format!("{field} in ({})", vals.join(", "));
                let by_index = ok(&["scope", "--store", st, "--format", "json", "--where", &one]);
                let by_scan = ok(&["scope", "--store", st, "--format", "json", "--no-index", "--where", &one]);
                assert_eq!(by_index.stdout, by_scan.stdout, "{name}: {one}");
            }
            // The real ids, decrypted from the store's map, are exactly the truth's.
            let listed: Vec<String> =
                std::fs::read_to_string(&out).expect("subjects file").lines().map(str::to_owned).collect();
            let mut expected: Vec<String> = a["exposed_subjects"]
                .as_array()
                .expect("exposed_subjects")
                .iter()
                .map(|v| v.as_str().expect("id").to_owned())
                .collect();
            expected.sort();
            assert_eq!(listed, expected, "{name}: subject list");
            assert_eq!(got["subjects"], a["subjects"], "{name}: subjects\n{got}");
            assert_eq!(got["subjects_by_type"], a["subjects_by_type"], "{name}");
            assert_eq!(got["fields"], a["fields"], "{name}: per field class");
            assert_eq!(got["events"], a["exposing_events"], "{name}: events");
            // The attack's schedule bounds its first and last exposing access.
            let (first, last) =
                (got["first_seen_time"].as_i64().expect("first"), got["last_seen_time"].as_i64().expect("last"));
            assert!(
                a["start"].as_i64().expect("start") <= first && last <= a["end"].as_i64().expect("end"),
                "{name}: {got}"
            );
        }
    }
    assert!(attacks >= 3, "every scenario has an attack");
}

#[test]
fn scope_is_recorded_in_the_store_and_bad_expressions_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 300, 1);
    let st = store.to_str().expect("utf-8");
    let records = |_: ()| -> u64 {
        let o = ok(&["verify", "--store", st, "--format", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        v["records"].as_u64().expect("records")
    };
    let before = records(());
    let all = scope_json(&store, r#"src_endpoint.ip cidr "0.0.0.0/0" or src_endpoint.ip cidr "::/0""#);
    assert!(all["subjects"].as_u64().expect("n") > 0, "{all}");
    let none = scope_json(&store, r#"src_endpoint.ip = "192.0.2.255""#);
    assert_eq!(none["subjects"], 0);
    assert_eq!(records(()), before + 2, "each scope appends one audit record");
    // The audit record says what was asked, and no subject id.
    let ledger = support::ledger::ledger_text(&store);
    assert!(ledger.contains(r#"192.0.2.255"#), "the query is in the ledger");
    assert!(ledger.contains(r#""command":"scope""#));

    for bad in [r#"src_endpoint.ip ~ "x""#, r#"nope = "x""#, "(", r#"src_endpoint.ip cidr "300.1.1.1/8""#] {
        let o = piiwatch(&["scope", "--store", st, "--where", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("at byte"), "{err}");
    }
    let o = piiwatch(&[
        "scope",
        "--store",
        tmp.path().join("none").to_str().expect("utf-8"),
        "--where",
        r#"api.operation = "x""#,
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn scope_of_a_stored_finding_is_its_indicators_over_its_span() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let st = store.to_str().expect("utf-8");
    let findings = tmp.path().join("coupang-findings.jsonl");
    // The forged-token finding as last updated.
    let text = std::fs::read_to_string(&findings).expect("findings");
    let finding: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("finding JSON"))
        .rfind(|f| f["finding_info"]["analytic"]["name"] == "forged-token")
        .expect("a forged-token finding");
    let uid = finding["finding_info"]["uid"].as_str().expect("uid");
    let by_alert: Value =
        serde_json::from_slice(&ok(&["scope", "--store", st, "--format", "json", "--alert", uid]).stdout)
            .expect("json");
    // The same, asked by hand: every indicator field, any of its values, over the span.
    let mut fields: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for o in finding["observables"].as_array().expect("observables") {
        let name = o["name"].as_str().expect("name").to_owned();
        let v = format!("{:?}", o["value"].as_str().expect("value"));
        let e = fields.entry(name).or_default();
        if !e.contains(&v) {
            e.push(v);
        }
    }
    let expr: Vec<String> = fields.iter().map(|(f, v)| format!("{f} in ({})", v.join(", "))).collect();
    let from = finding["finding_info"]["first_seen_time"].to_string();
    let to = finding["finding_info"]["last_seen_time"].to_string();
    let by_hand: Value = serde_json::from_slice(
        &ok(&[
            "scope",
            "--store",
            st,
            "--format",
            "json",
            "--where",
            &expr.join(" and "),
            "--from",
            &from,
            "--to",
            &to,
        ])
        .stdout,
    )
    .expect("json");
    assert_eq!(by_alert, by_hand);
    assert!(by_alert["events"].as_u64().expect("events") > 0, "{by_alert}");
    // Over all time it can only grow.
    let all: Value =
        serde_json::from_slice(&ok(&["scope", "--store", st, "--format", "json", "--alert", uid, "--all-time"]).stdout)
            .expect("json");
    assert!(all["subjects"].as_u64() >= by_alert["subjects"].as_u64());

    assert_eq!(piiwatch(&["scope", "--store", st, "--alert", "pw-none-0"]).status.code(), Some(1));
    assert_eq!(
        piiwatch(&["scope", "--store", st, "--alert", uid, "--where", "api.operation = \"x\""]).status.code(),
        Some(2)
    );
}

#[test]
fn ruling_records_out_by_their_bytes_never_changes_an_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store) = support::simulated_store(tmp.path(), "coupang", 1000, 2);
    let st = store.to_str().expect("utf-8");
    let truth: Value =
        serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("truth is JSON");
    let indicators = indicators_expr(&truth["attacks"][0]["indicators"]);
    let exprs = [
        indicators.clone(),
        format!("not ({indicators})"),
        r#"actor.session.issuer = "auth-key-2019""#.to_owned(),
        r#"actor.user.uid = "c00000001" or actor.user.uid = "c00000002""#.to_owned(),
        r#"resources.uid in ("c00000003", "c00000004")"#.to_owned(),
        r#"src_endpoint.autonomous_system.number in ("4766", "9318") and api.operation != "GET /v1/search""#.to_owned(),
        r#"src_endpoint.location.country = "KR" and src_endpoint.ip cidr "10.0.0.0/8""#.to_owned(),
        r#"src_endpoint.ip cidr "10.0.0.0/8" or actor.user.type = "service""#.to_owned(),
        r#"api.service.name = "logistics" or actor.session.issuer = "svc-key-2023""#.to_owned(),
    ];
    let mut nonempty = 0;
    for e in &exprs {
        let run = |extra: &[&str]| -> Value {
            let mut args = vec!["scope", "--store", st, "--format", "json", "--where", e.as_str()];
            args.extend_from_slice(extra);
            serde_json::from_slice(&ok(&args).stdout).expect("json")
        };
        let fast = run(&[]);
        assert_eq!(fast, run(&["--no-prefilter"]), "{e}");
        nonempty += usize::from(fast["subjects"].as_u64().expect("n") > 0);
    }
    assert!(nonempty >= 6, "the expressions select something");
}

/// `scope --group-by`: each value's share equals the scope of that value
/// alone; the shares of one field add up to the whole; a breakdown by
/// subject is refused (it would be re-identification).
#[test]
fn group_by_breaks_the_answer_down_exactly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let s = store.to_str().expect("utf-8");
    let expr = r#"actor.session.issuer = "auth-key-2019""#;
    let fields = ["src_endpoint.location.country", "src_endpoint.autonomous_system.number", "api.operation"];
    let mut args = vec!["scope", "--store", s, "--where", expr, "--format", "json"];
    for f in fields {
        args.extend(["--group-by", f]);
    }
    let whole: Value = serde_json::from_slice(&ok(&args).stdout).expect("JSON");
    assert_eq!(whole["subjects"], scope_json(&store, expr)["subjects"], "grouping does not change the answer");
    let groups = whole["groups"].as_array().expect("groups");
    for f in fields {
        let mine: Vec<&Value> = groups.iter().filter(|g| g["field"] == f).collect();
        assert!(!mine.is_empty(), "{f}");
        let events: u64 = mine.iter().map(|g| g["events"].as_u64().expect("events")).sum();
        assert_eq!(Some(events), whole["events"].as_u64(), "{f}: the shares add up to the whole");
        for g in mine.iter().take(3) {
            let v = g["value"].as_str().expect("value");
            let alone = scope_json(&store, &format!("{expr} and {f} = {v:?}"));
            assert_eq!((&g["events"], &g["subjects"]), (&alone["events"], &alone["subjects"]), "{f} = {v}");
        }
    }
    let refused = piiwatch(&["scope", "--store", s, "--where", expr, "--group-by", "resources.uid"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("re-identification"));
}
