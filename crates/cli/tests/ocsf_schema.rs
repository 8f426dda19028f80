//! OCSF schema checks: the test validator itself against a hand-made
//! Detection Finding (2004) and mutations of it, and what it says about an
//! API Activity (6003) line as the input contract describes it and about
//! the simulator's output. Each test skips when `../shared/ocsf` is absent
//! (unless `PIIWATCH_REQUIRE_SHARED=1`).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a report for people

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::ocsf::Schema;

const T: i64 = 1_767_225_600_000;

/// A Detection Finding as piiwatch means to write one.
fn detection_finding() -> Value {
    json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": 4,
        "severity": "High",
        "time": T,
        "status_id": 1,
        "status": "New",
        "count": 42,
        "message": "forged tokens signed with auth-key-2019 read 42 customers",
        "is_alert": true,
        "confidence_id": 3,
        "risk_score": 80,
        "start_time": T - 3_600_000,
        "end_time": T,
        "metadata": {
            "product": {"name": "piiwatch", "vendor_name": "piiwatch", "version": "0.1.0"},
            "version": "1.9.0-dev",
            "log_name": "alerts",
            "uid": "a1b2"
        },
        "finding_info": {
            "uid": "pw-0001",
            "title": "Forged token: auth-key-2019 signed a token that was never issued",
            "desc": "Tokens signed by a key whose custodian has left were used to read customer data.",
            "types": ["forged_token"],
            "first_seen_time": T - 3_600_000,
            "last_seen_time": T,
            "created_time": T,
            "modified_time": T,
            "analytic": {"name": "forged-token", "uid": "forged-token", "type_id": 1, "type": "Rule"}
        },
        "observables": [
            {"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "1.2.3.4"},
            {"name": "actor.session.issuer", "type_id": 99, "type": "Other", "value": "k"}
        ],
        "evidences": [
            {
                "src_endpoint": {"ip": "1.2.3.4"},
                "actor": {"user": {"uid": "cust-1"}, "session": {"uid": "jti-1", "issuer": "k"}},
                "api": {"operation": "GET /v1/address-book"}
            }
        ],
        "resources": [{"uid": "cust-1", "type": "customer", "labels": ["name", "phone"]}],
        "unmapped": {"anything": {"goes": [1, "two", null]}, "piiwatch": {"rule_version": 3}}
    })
}

/// The value at a dotted path (numbers index arrays).
fn at<'a>(event: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.').fold(event, |v, k| match k.parse::<usize>() {
        Ok(i) => &mut v[i],
        Err(_) => &mut v[k],
    })
}

fn parent_and_key(path: &str) -> (&str, &str) {
    path.rsplit_once('.').unwrap_or(("", path))
}

fn set(event: &mut Value, path: &str, value: Value) {
    let (parent, key) = parent_and_key(path);
    let target = if parent.is_empty() { event } else { at(event, parent) };
    target.as_object_mut().expect("object").insert(key.to_owned(), value);
}

fn remove(event: &mut Value, path: &str) {
    let (parent, key) = parent_and_key(path);
    let target = if parent.is_empty() { event } else { at(event, parent) };
    assert!(target.as_object_mut().expect("object").remove(key).is_some(), "{path} was there");
}

#[test]
fn hand_made_detection_finding_is_valid() {
    let Some(schema) = Schema::from_shared() else { return };
    let event = detection_finding();
    let errors = schema.validate(&event);
    assert!(errors.is_empty(), "{errors:#?}");

    // What the OCSF server's validator would add: observable names that are not paths of the class.
    eprintln!("observable name check: {:#?}", schema.observable_name_errors(&event));
    let class = schema.class(2004).expect("2004 is defined");
    assert_eq!(class.name, "detection_finding");
    eprintln!("{}", schema.describe(class));
    for name in ["finding_info", "analytic", "observable", "metadata", "product", "evidences", "resource_details"] {
        eprintln!("{}", schema.describe(schema.object(name).expect("object is defined")));
    }
}

#[test]
fn mutations_are_reported() {
    let Some(schema) = Schema::from_shared() else { return };
    type Mutation = fn(&mut Value);
    let cases: &[(&str, Mutation, &str)] = &[
        ("analytic.type_id removed", |e| remove(e, "finding_info.analytic.type_id"), "finding_info.analytic.type_id"),
        ("metadata.product removed", |e| remove(e, "metadata.product"), "metadata.product"),
        ("metadata.version removed", |e| remove(e, "metadata.version"), "metadata.version"),
        ("finding_info.uid removed", |e| remove(e, "finding_info.uid"), "finding_info.uid"),
        ("finding_info removed", |e| remove(e, "finding_info"), "finding_info: required"),
        ("severity_id removed", |e| remove(e, "severity_id"), "severity_id"),
        ("observable type_id removed", |e| remove(e, "observables.0.type_id"), "observables[0].type_id"),
        ("unknown top-level attribute", |e| set(e, "bogus", json!(1)), "bogus: unknown"),
        (
            "src_endpoint is not a finding attribute",
            |e| set(e, "src_endpoint", json!({"ip": "1.2.3.4"})),
            "src_endpoint",
        ),
        (
            "unknown nested attribute",
            |e| set(e, "finding_info.analytic.bogus", json!("x")),
            "finding_info.analytic.bogus",
        ),
        ("string for an integer", |e| set(e, "severity_id", json!("4")), "severity_id: expected integer_t"),
        ("float for an integer", |e| set(e, "count", json!(1.5)), "count: expected integer_t"),
        ("string for a timestamp", |e| set(e, "time", json!("2026-01-01T00:00:00Z")), "time: expected timestamp_t"),
        ("number for a string", |e| set(e, "finding_info.title", json!(7)), "finding_info.title: expected string_t"),
        ("scalar for an array", |e| set(e, "finding_info.types", json!("x")), "finding_info.types: expected an array"),
        (
            "analytic.type_id out of range",
            |e| set(e, "finding_info.analytic.type_id", json!(42)),
            "analytic.type_id: enum",
        ),
        ("severity_id out of range", |e| set(e, "severity_id", json!(7)), "severity_id: enum"),
        ("status_id out of range", |e| set(e, "status_id", json!(7)), "status_id: enum"),
        ("observable type_id out of range", |e| set(e, "observables.1.type_id", json!(1000)), "observables[1].type_id"),
        ("wrong type_uid", |e| set(e, "type_uid", json!(200402)), "type_uid: 200402"),
        ("wrong category_uid", |e| set(e, "category_uid", json!(3)), "category_uid: 3"),
        ("unknown class_uid", |e| set(e, "class_uid", json!(2999)), "class_uid: no class"),
        ("bad ip", |e| set(e, "evidences.0.src_endpoint.ip", json!("1.2.3")), "evidences[0].src_endpoint.ip"),
        ("bad version", |e| set(e, "metadata.version", json!("1.9")), "metadata.version"),
        ("unknown profile", |e| set(e, "metadata.profiles", json!(["nope"])), "metadata.profiles[0]"),
        (
            "host profile attribute undeclared",
            |e| set(e, "actor", json!({"user": {"uid": "u"}})),
            "actor: attribute of profile",
        ),
        ("_dt without the datetime profile", |e| set(e, "time_dt", json!("2026-01-01T00:00:00Z")), "time_dt: unknown"),
        ("product without name or uid", |e| remove(e, "metadata.product.name"), "metadata.product: constraint"),
    ];
    let mut missed = Vec::new();
    for (what, mutate, expected) in cases {
        let mut event = detection_finding();
        mutate(&mut event);
        let errors = schema.validate(&event);
        eprintln!("{what}: {errors:?}");
        if !errors.iter().any(|e| e.contains(expected)) {
            missed.push(format!("{what}: expected an error containing {expected:?}, got {errors:?}"));
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");

    // What stays valid: free-form `unmapped`, profile attributes once the profile is declared.
    let mut event = detection_finding();
    set(&mut event, "unmapped", json!({"x": {"y": [{"z": 1}]}, "src_endpoint": "anything"}));
    set(&mut event, "metadata.profiles", json!(["host", "datetime"]));
    set(&mut event, "time_dt", json!("2026-01-01T00:00:00Z"));
    set(&mut event, "finding_info.created_time_dt", json!("2026-01-01T00:00:00Z"));
    set(&mut event, "actor", json!({"user": {"uid": "cust-1"}, "session": {"uid": "jti-1", "issuer": "k"}}));
    let errors = schema.validate(&event);
    assert!(errors.is_empty(), "{errors:#?}");
    eprintln!("with host profile, observable name check: {:?}", schema.observable_name_errors(&event));
}

/// An API Activity line with the input contract's fields; reported, not asserted.
#[test]
fn contract_api_activity_line_is_checked() {
    let Some(schema) = Schema::from_shared() else { return };
    let line = json!({
        "class_uid": 6003,
        "category_uid": 6,
        "type_uid": 600302,
        "activity_id": 2,
        "time": T,
        "status_id": 1,
        "actor": {
            "user": {"uid": "cust-1", "type": "customer"},
            "session": {"uid": "jti-1", "issuer": "auth-key-2019"}
        },
        "src_endpoint": {
            "ip": "203.0.113.7",
            "location": {"country": "KR"},
            "autonomous_system": {"number": 20473, "name": "AS-CHOOPA"}
        },
        "http_request": {"user_agent": "okhttp/4.12"},
        "api": {"operation": "GET /v1/address-book", "service": {"name": "address"}},
        "resources": [
            {"uid": "cust-1", "type": "customer", "labels": ["name", "phone", "address"]},
            {"uid": "rcp-9", "type": "recipient"}
        ]
    });
    eprintln!("API Activity per the contract: {:#?}", schema.validate(&line));
    eprintln!("{}", schema.describe(schema.class(6003).expect("6003 is defined")));
    for name in ["user", "session", "api", "resource_details", "network_endpoint"] {
        eprintln!("{}", schema.describe(schema.object(name).expect("object is defined")));
    }
}

/// The simulator's lines, summarised by error; reported, not asserted.
#[test]
fn simulator_output_is_checked() {
    let Some(schema) = Schema::from_shared() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["simulate", "--scenario", "coupang", "--customers", "200", "--days", "1", "--seed", "1", "--out"])
        .arg(tmp.path())
        .output()
        .expect("piiwatch runs");
    assert!(out.status.success(), "simulate failed: {}", String::from_utf8_lossy(&out.stderr));

    let mut summary: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let mut lines = BTreeMap::<i64, usize>::new();
    for entry in std::fs::read_dir(tmp.path()).expect("dir reads") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !name.contains(".jsonl") {
            continue;
        }
        // The simulator writes malformed lines on purpose (bad UTF-8 among them): skip what does not parse.
        for line in open(&path).split(b'\n') {
            let line = line.expect("line reads");
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let Some(class_uid) = event.get("class_uid").and_then(Value::as_i64) else { continue };
            if schema.class(class_uid).is_none() {
                continue;
            }
            *lines.entry(class_uid).or_default() += 1;
            for error in schema.validate(&event) {
                *summary.entry((class_uid, normalise(&error))).or_default() += 1;
            }
        }
    }
    eprintln!("simulator lines by class: {lines:?}");
    for ((class_uid, error), n) in &summary {
        eprintln!("{class_uid} x{n}: {error}");
    }
}

fn open(path: &Path) -> Box<dyn BufRead> {
    let file = std::fs::File::open(path).expect("file opens");
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    }
}

/// An error with array indices and quoted values blanked, to group like errors.
fn normalise(error: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in error.chars() {
        match c {
            '[' if !in_index => {
                in_index = true;
                out.push('[');
            }
            ']' if in_index => {
                in_index = false;
                out.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => {
                if in_index {
                    in_index = false;
                }
                out.push(c);
            }
        }
    }
    match out.split_once(" string \"") {
        Some((head, _)) => format!("{head} string"),
        None => out,
    }
}
