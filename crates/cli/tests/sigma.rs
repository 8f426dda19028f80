//! Sigma rules driven as a detection engineer drives them: `detect --rules`
//! with every correlation type over hand-made sequences (window edges,
//! group-by, chains, shuffled input), SigmaHQ's regression cases through
//! `detect`, SigmaHQ's whole rule set through `rules check`, and
//! `rules test` explaining a miss.

#![allow(clippy::print_stderr)] // skips and counts, for people reading the test log

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{ok, piiwatch};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `../shared/sigma`, or `None` (skipped, unless `PIIWATCH_REQUIRE_SHARED=1`).
fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/sigma");
    if dir.join("regression/manifest.jsonl").is_file() {
        return Some(dir);
    }
    let required = std::env::var("PIIWATCH_REQUIRE_SHARED").is_ok_and(|v| v == "1");
    assert!(!required, "PIIWATCH_REQUIRE_SHARED=1 but the Sigma material is missing at {}", dir.display());
    eprintln!("SKIPPED: Sigma material not found at {} (set PIIWATCH_REQUIRE_SHARED=1 to fail)", dir.display());
    None
}

fn findings(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a finding is JSON")).collect()
}

/// Per analytic uid: the groups (as `name=value` joined) it reported, each with its largest count.
fn by_rule(fs: &[Value]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for f in fs {
        let uid = f["finding_info"]["analytic"]["uid"].as_str().unwrap_or_default().to_owned();
        let group: Vec<String> = f["observables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["name"] == "user")
            .map(|o| o["value"].as_str().unwrap_or_default().to_owned())
            .collect();
        let e = out.entry(uid).or_default().entry(group.join(",")).or_default();
        *e = (*e).max(f["count"].as_u64().unwrap_or_default());
    }
    out
}

const RULES: &str = r#"
title: Login
id: r-login
name: login
logsource: {product: ocsf, category: http_activity}
detection:
    sel: {kind: login}
    condition: sel
---
title: Read
id: r-read
name: read
logsource: {product: ocsf, category: http_activity}
detection:
    sel: {kind: read}
    condition: sel
---
title: Transfer
id: r-transfer
name: transfer
logsource: {product: ocsf, category: http_activity}
detection:
    sel: {kind: transfer}
    condition: sel
---
title: Five logins in ten minutes
id: c-count
name: many_logins
correlation:
    type: event_count
    rules: [login]
    group-by: [user]
    timespan: 10m
    condition: {gte: 5}
---
title: Three subjects read in an hour
id: c-distinct
correlation:
    type: value_count
    rules: [read]
    group-by: [user]
    timespan: 1h
    condition: {field: subject, gte: 3}
---
title: Login and read
id: c-temporal
correlation:
    type: temporal
    rules: [login, read]
    group-by: [user]
    timespan: 5m
---
title: Login then read
id: c-ordered
correlation:
    type: temporal_ordered
    rules: [login, read]
    group-by: [user]
    timespan: 5m
---
title: Transferred a thousand
id: c-sum
correlation:
    type: value_sum
    rules: [transfer]
    group-by: [user]
    timespan: 1h
    condition: {field: amount, gte: 1000}
---
title: Average transfer over 400
id: c-avg
correlation:
    type: value_avg
    rules: [transfer]
    group-by: [user]
    timespan: 1h
    condition: {field: amount, gt: 400}
---
title: Ninetieth percentile over 800
id: c-pct
correlation:
    type: value_percentile
    rules: [transfer]
    group-by: [user]
    timespan: 1h
    condition: {field: amount, percentile: 90, gt: 800}
---
title: Median over 450
id: c-median
correlation:
    type: value_median
    rules: [transfer]
    group-by: [user]
    timespan: 1h
    condition: {field: amount, gt: 450}
---
title: Bursts of logins twice in an hour
id: c-chain
correlation:
    type: event_count
    rules: [many_logins]
    group-by: [user]
    timespan: 1h
    condition: {gte: 2}
"#;

/// The events: each user does something that should fire (or just miss) one correlation.
fn events() -> Vec<Value> {
    let t0: i64 = 1_750_000_000_000;
    let min = 60_000;
    let mut v = Vec::new();
    let mut ev = |t: i64, user: &str, kind: &str, extra: Value| {
        let mut e = json!({"class_uid": 4002, "time": t0 + t, "user": user, "kind": kind});
        if let (Some(m), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            m.extend(x.clone());
        }
        v.push(e);
    };
    // alice: five logins within 10 minutes (fires c-count); bob: five logins over 10 minutes exactly (misses: the first leaves the window).
    for i in 0..5 {
        ev(i * min, "alice", "login", json!({}));
        ev(i * 150_000, "bob", "login", json!({}));
    }
    // carol: two bursts of five logins within the hour (fires c-count twice, so c-chain).
    for i in 0..5 {
        ev(i * 1000, "carol", "login", json!({}));
        ev(30 * min + i * 1000, "carol", "login", json!({}));
    }
    // dave: three distinct subjects in an hour (fires c-distinct); erin: the same subject three times (misses).
    for (i, s) in ["s1", "s2", "s3"].iter().enumerate() {
        ev(i as i64 * 10 * min, "dave", "read", json!({"subject": s}));
        ev(i as i64 * 10 * min, "erin", "read", json!({"subject": "s1"}));
    }
    // frank: read then login within 5 minutes (temporal yes, ordered no); gina: login then read (both).
    ev(2 * min, "frank", "read", json!({"subject": "x"}));
    ev(3 * min, "frank", "login", json!({}));
    ev(2 * min, "gina", "login", json!({}));
    ev(4 * min, "gina", "read", json!({"subject": "y"}));
    // hank: login, then a read six minutes later (neither).
    ev(0, "hank", "login", json!({}));
    ev(6 * min, "hank", "read", json!({"subject": "z"}));
    // ivan: transfers 100, 200, 900 (sum 1200 fires c-sum; avg 400 misses c-avg; p90 740 misses; median 200 misses).
    // judy: transfers 500, 500, 950 (sum 1950, avg 650, p90 860, median 500: all four).
    for (i, (a, b)) in [(100, 500), (200, 500), (900, 950)].iter().enumerate() {
        ev(i as i64 * min, "ivan", "transfer", json!({"amount": a}));
        ev(i as i64 * min, "judy", "transfer", json!({"amount": b}));
    }
    v
}

fn run_detect(dir: &Path, rules: &Path, lines: &[Value], name: &str) -> Vec<Value> {
    let input = dir.join(format!("{name}.jsonl"));
    let text: String = lines.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&input, text).expect("write events");
    detect_file(rules, &input, &dir.join(format!("{name}.q")))
}

/// `detect` with only these rules (all must load), its findings.
fn detect_file(rules: &Path, input: &Path, quarantine: &Path) -> Vec<Value> {
    let out = ok(&[
        "detect",
        "--no-default-rules",
        "--strict",
        "--rules",
        path(rules),
        "--quarantine",
        path(quarantine),
        path(input),
    ]);
    findings(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn every_correlation_type_fires_for_its_group_and_not_for_the_near_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut evs = events();
    evs.sort_by_key(|e| e["time"].as_i64());
    let fs = run_detect(dir.path(), &rules, &evs, "sorted");
    let got = by_rule(&fs);
    let users =
        |uid: &str| -> BTreeSet<String> { got.get(uid).map(|g| g.keys().cloned().collect()).unwrap_or_default() };
    let set = |xs: &[&str]| -> BTreeSet<String> { xs.iter().map(|s| s.to_string()).collect() };
    assert_eq!(users("c-count"), set(&["alice", "carol"]), "{got:#?}");
    assert_eq!(users("c-distinct"), set(&["dave"]));
    assert_eq!(users("c-temporal"), set(&["frank", "gina"]));
    assert_eq!(users("c-ordered"), set(&["gina"]));
    assert_eq!(users("c-sum"), set(&["ivan", "judy"]));
    assert_eq!(users("c-avg"), set(&["judy"]));
    assert_eq!(users("c-pct"), set(&["judy"]));
    assert_eq!(users("c-median"), set(&["judy"]));
    assert_eq!(users("c-chain"), set(&["carol"]));
    // Carol's two bursts are two windows: two findings, not one per event.
    let carol: Vec<&Value> = fs
        .iter()
        .filter(|f| f["finding_info"]["analytic"]["uid"] == "c-count" && f["activity_id"] == 1)
        .filter(|f| f["observables"].as_array().is_some_and(|o| o.iter().any(|o| o["value"] == "carol")))
        .collect();
    assert_eq!(carol.len(), 2, "one finding per window");
    // Rules referenced by a correlation without `generate` report nothing of their own.
    assert!(!got.contains_key("r-login") && !got.contains_key("r-read"), "{:?}", got.keys());
    // A correlation's finding: the rule's id and title, the group among the observables, severity from level.
    let f = fs.iter().find(|f| f["finding_info"]["analytic"]["uid"] == "c-distinct").expect("c-distinct");
    assert_eq!(f["finding_info"]["analytic"]["name"], "Three subjects read in an hour");
    assert_eq!(f["severity_id"], 3);
    assert_eq!(f["unmapped"]["sigma"]["value"], 3.0);

    // Shuffled within the lateness (3 minutes): the same findings, byte for byte.
    let mut shuffled = evs.clone();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..shuffled.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        let (a, b) = (shuffled[i]["time"].as_i64().unwrap_or(0), shuffled[j]["time"].as_i64().unwrap_or(0));
        if (a - b).abs() < 120_000 {
            shuffled.swap(i, j);
        }
    }
    assert_ne!(shuffled, evs, "the shuffle moved something");
    let again = run_detect(dir.path(), &rules, &shuffled, "shuffled");
    let lines = |v: &[Value]| -> Vec<String> {
        let mut l: Vec<String> = v.iter().map(Value::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(lines(&fs), lines(&again));
}

#[test]
fn a_rule_reports_its_matches_per_hour_with_the_final_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("r.yml");
    std::fs::write(&rules, "title: Transfer\nid: r-t\nlevel: high\nlogsource: {product: ocsf, category: http_activity}\ndetection:\n  sel: {kind: transfer}\n  condition: sel\n").expect("rules");
    let t0: i64 = 1_750_000_000_000 - 1_750_000_000_000 % 3_600_000;
    // 7 in the first hour (reported at 1, 2, 4 and finally 7), 2 in the next.
    let mut evs: Vec<Value> =
        (0..7).map(|i| json!({"class_uid": 4002, "time": t0 + i * 1000, "kind": "transfer"})).collect();
    evs.extend((0..2).map(|i| json!({"class_uid": 4002, "time": t0 + 3_600_000 + i, "kind": "transfer"})));
    evs.push(json!({"class_uid": 4002, "time": t0 + 5, "kind": "other"}));
    evs.sort_by_key(|e| e["time"].as_i64());
    let fs = run_detect(dir.path(), &rules, &evs, "hours");
    let counts: BTreeMap<String, u64> = fs.iter().fold(BTreeMap::new(), |mut m, f| {
        let e = m.entry(f["finding_info"]["uid"].as_str().unwrap_or_default().to_owned()).or_default();
        *e = (*e).max(f["count"].as_u64().unwrap_or(0));
        m
    });
    let mut got: Vec<u64> = counts.values().copied().collect();
    got.sort_unstable();
    assert_eq!(got, vec![2, 7], "{fs:#?}");
    assert!(fs.iter().all(|f| f["severity_id"] == 4 && f["finding_info"]["analytic"]["uid"] == "r-t"));
    assert!(fs.len() < 9, "not one finding per event");
}

#[test]
fn bad_rules_are_named_and_the_others_run_unless_strict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("sub")).expect("dirs");
    std::fs::write(rules.join("sub/good.yaml"), "title: Good\nid: good\nlogsource: {product: ocsf, category: http_activity}\ndetection:\n  sel: {kind: x}\n  condition: sel\n").expect("good");
    std::fs::write(rules.join("bad.yml"), "title: Bad\nid: bad\nlogsource: {product: ocsf}\ndetection:\n  sel: {kind|nosuchmodifier: x}\n  condition: sel\n---\ntitle: Broken\ndetection: [\n").expect("bad");
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, format!("{}\n", json!({"class_uid": 4002, "time": 1_750_000_000_000_i64, "kind": "x"})))
        .expect("events");
    let q = dir.path().join("q");
    let out = ok(&["detect", "--no-default-rules", "--rules", path(&rules), "--quarantine", path(&q), path(&input)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml"), "the bad file is named: {err}");
    assert!(
        findings(&String::from_utf8_lossy(&out.stdout)).iter().any(|f| f["finding_info"]["analytic"]["uid"] == "good")
    );
    let strict = piiwatch(&[
        "detect",
        "--no-default-rules",
        "--strict",
        "--rules",
        path(&rules),
        "--quarantine",
        path(&q),
        path(&input),
    ]);
    assert_eq!(strict.status.code(), Some(1));
    let check = piiwatch(&["rules", "check", "--format", "json", path(&rules)]);
    assert_eq!(check.status.code(), Some(1), "a rule that does not load fails the check");
    let v: Value = serde_json::from_slice(&check.stdout).expect("json");
    assert_eq!(v["rules"], 1);
    let problems = v["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["rule"] == "Bad" && p["line"] == 1), "{problems:#?}");
    assert!(
        problems.iter().any(|p| p["line"].as_u64().is_some_and(|l| l >= 7)),
        "the broken document's line: {problems:#?}"
    );
}

#[test]
fn rules_test_lists_matches_and_explains_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rule = dir.path().join("r.yml");
    std::fs::write(&rule, "title: Whoami\nid: w\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel\n").expect("rule");
    let ev = |image: &str| {
        json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
            "TimeCreated": {"#attributes": {"SystemTime": "2025-10-25T13:44:33.440907Z"}}},
            "EventData": {"Image": image}}})
    };
    let events = dir.path().join("e.jsonl");
    std::fs::write(
        &events,
        format!("{}\n{}\nnot json\n", ev("C:\\Windows\\System32\\whoami.exe"), ev("C:\\x\\cmd.exe")),
    )
    .expect("events");
    let out = ok(&["rules", "test", path(&rule), path(&events), "--explain", "2", "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["matched_lines"], json!([1]));
    assert_eq!(v["not_json"], 1);
    assert_eq!(v["explain"]["matched"], false);
    assert_eq!(v["explain"]["log_source_admits"], true);
    let table = ok(&["rules", "test", path(&rule), path(&events), "--explain", "2"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("1 of 2 events matched") && text.contains("value_mismatch"), "{text}");
}

#[test]
fn sigmahq_regression_cases_fire_through_detect() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    let manifest = std::fs::read_to_string(shared.join("regression/manifest.jsonl")).expect("manifest");
    let mut cases = Vec::new();
    let mut events = String::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let m: Value = serde_json::from_str(line).expect("manifest line");
        let id = m["rule_id"].as_str().expect("rule_id").to_owned();
        let rule = shared.join(m["rule"].as_str().expect("rule"));
        std::fs::copy(&rule, rules.join(format!("{id}.yml"))).expect("copy rule");
        events.push_str(
            &std::fs::read_to_string(shared.join("regression").join(m["events"].as_str().expect("events")))
                .expect("events"),
        );
        if !events.ends_with('\n') {
            events.push('\n');
        }
        cases.push((id, m["match_count"].as_u64().unwrap_or(1)));
    }
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events).expect("events");
    let fs = detect_file(&rules, &input, &dir.path().join("q"));
    let mut per: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for f in &fs {
        let rule = f["finding_info"]["analytic"]["uid"].as_str().unwrap_or_default().to_owned();
        let e = per
            .entry(rule)
            .or_default()
            .entry(f["finding_info"]["uid"].as_str().unwrap_or_default().to_owned())
            .or_default();
        *e = (*e).max(f["count"].as_u64().unwrap_or(0));
    }
    let missed: Vec<String> = cases
        .iter()
        .filter_map(|(id, want)| {
            let got: u64 = per.get(id).map(|m| m.values().sum()).unwrap_or(0);
            (got < *want).then(|| format!("{id}: {got} < {want}"))
        })
        .collect();
    assert!(missed.is_empty(), "{} of {} cases missed: {missed:#?}", missed.len(), cases.len());
}

#[test]
fn every_sigmahq_rule_loads_or_is_reported_with_its_reason() {
    let Some(shared) = shared() else { return };
    let out = piiwatch(&["rules", "check", "--no-lint", "--format", "json", path(&shared.join("sigmahq"))]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let loaded = v["rules"].as_u64().unwrap_or(0) + v["correlations"].as_u64().unwrap_or(0);
    let problems = v["problems"].as_array().expect("problems");
    let not_loaded = problems.iter().filter(|p| p["severity"] == "error").count() as u64;
    eprintln!("SigmaHQ: {} files, {loaded} rules load, {not_loaded} do not", v["files"]);
    assert!(v["files"].as_u64().unwrap_or(0) >= 3700);
    assert!(loaded + not_loaded >= 3777, "every rule is accounted for: {loaded} + {not_loaded}");
    assert!(loaded >= 3600, "most of SigmaHQ loads: {loaded}");
    for p in problems {
        assert!(p["file"].as_str().is_some_and(|f| f.ends_with(".yml")), "{p}");
        assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    }
}

#[test]
fn a_processing_pipeline_maps_a_rules_fields_and_log_source_to_ours() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A rule written for another log shape: its own field name and log source.
    let rule = dir.path().join("r.yml");
    std::fs::write(&rule, "title: From the lab\nid: lab\nlogsource: {product: proxy}\ndetection:\n  sel:\n    SourceIp|cidr: '198.51.100.0/24'\n  condition: sel\n").expect("rule");
    let pipeline = dir.path().join("p.yml");
    std::fs::write(
        &pipeline,
        "name: to-ocsf\npriority: 10\ntransformations:\n  - id: fields\n    type: field_name_mapping\n    mapping:\n      SourceIp: src_endpoint.ip\n  - id: source\n    type: change_logsource\n    product: ocsf\n    category: http_activity\n",
    )
    .expect("pipeline");
    let input = dir.path().join("e.jsonl");
    let ev = |ip: &str, t: i64| json!({"class_uid": 4002, "time": t, "src_endpoint": {"ip": ip}});
    std::fs::write(
        &input,
        format!("{}\n{}\n", ev("198.51.100.9", 1_750_000_000_000), ev("203.0.113.9", 1_750_000_000_001)),
    )
    .expect("events");
    let q = dir.path().join("q");
    let run = |extra: &[&str]| -> Vec<Value> {
        let mut args =
            vec!["detect", "--no-default-rules", "--strict", "--rules", path(&rule), "--quarantine", path(&q)];
        args.extend_from_slice(extra);
        args.push(path(&input));
        findings(&String::from_utf8_lossy(&ok(&args).stdout))
    };
    assert!(
        run(&[]).iter().all(|f| f["finding_info"]["analytic"]["uid"] != "lab"),
        "without the pipeline the rule's field and source are not ours"
    );
    let with = run(&["--pipeline", path(&pipeline)]);
    let lab: Vec<&Value> = with.iter().filter(|f| f["finding_info"]["analytic"]["uid"] == "lab").collect();
    assert_eq!(lab.len(), 1, "{with:#?}");
    assert_eq!(lab[0]["count"], 1, "only the address in the range");
    // A pipeline that is not one is a one-line error naming its file.
    std::fs::write(&pipeline, "transformations: 7\n").expect("bad pipeline");
    let bad = piiwatch(&[
        "detect",
        "--no-default-rules",
        "--rules",
        path(&rule),
        "--pipeline",
        path(&pipeline),
        "--quarantine",
        path(&q),
        path(&input),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("p.yml"));
}
