//! `piiwatch incident` driven as a privacy officer drives it: open an
//! incident from a finding on the simulated breach, record awareness and
//! materiality, read each regime's clock, record what was sent; the
//! numbers equal `scope` on the same store, every change is in the
//! ledger (and `verify` still passes), bad requests fail with one line.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{ok, piiwatch};

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().expect("RFC 3339").as_millisecond()
}

fn show(store: &str, id: &str, extra: &[&str]) -> Value {
    let mut args = vec!["incident", "show", "--store", store, id, "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_slice(&ok(&args).stdout).expect("show prints JSON")
}

fn clock<'v>(shown: &'v Value, regime: &str, id: &str) -> &'v Value {
    shown["clocks"]
        .as_array()
        .expect("clocks")
        .iter()
        .find(|c| c["regime"] == regime && c["clock"] == id)
        .unwrap_or_else(|| panic!("no clock {regime}/{id} in {:#}", shown["clocks"]))
}

fn findings(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("coupang-findings.jsonl"))
        .expect("findings")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

#[test]
fn an_incident_runs_from_finding_to_clocks_with_scope_equal_to_scope() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store_dir) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let all = findings(tmp.path());
    let forged = all
        .iter()
        .find(|f| f["finding_info"]["analytic"]["name"] == "forged-token")
        .expect("the breach's forged tokens are found");
    let uid = forged["finding_info"]["uid"].as_str().expect("uid");

    // Open: one line, the id.
    let o = ok(&["incident", "open", "--store", store, "--from-alert", uid, "--title", "Forged tokens"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "INC-1\n");

    // Before awareness: the clocks wait for it and say so.
    let s = show(store, "INC-1", &[]);
    assert_eq!(s["id"], "INC-1");
    assert!(s["aware_time"].is_null());
    let pipa = clock(&s, "kr-pipa-notice", "subjects");
    assert!(pipa["due_time"].is_null());
    assert_eq!(pipa["status"], "open");
    assert!(pipa["missing"][0].as_str().expect("missing").contains("incident aware"), "{pipa}");

    // Every linked finding shares an indicator with another linked one (or is the first).
    let alerts: Vec<&str> = s["alerts"].as_array().expect("alerts").iter().map(|a| a.as_str().expect("uid")).collect();
    assert!(alerts.contains(&uid));

    // Awareness on 2026-12-07 (after PIPA's 2026 amendment), materiality on a Saturday.
    let aware = ms("2026-12-07T12:00:00Z");
    ok(&["incident", "aware", "--store", store, "INC-1", "--at", "2026-12-07T12:00:00Z"]);
    ok(&["incident", "material", "--store", store, "inc-1", "--at", "2026-12-05T15:00:00Z"]);
    let now = "2026-12-07T13:00:00Z";
    let s = show(store, "INC-1", &["--now", now]);
    assert_eq!(s["aware_time"], aware);

    // The numbers are one scope, reproducible by the command shown.
    let q = &s["scope_query"];
    let scoped = ok(&[
        "scope",
        "--store",
        store,
        "--format",
        "json",
        "--where",
        q["where"].as_str().expect("where"),
        "--from",
        &q["from"].to_string(),
    ]);
    let scoped: Value = serde_json::from_slice(&scoped.stdout).expect("JSON");
    assert_eq!(s["scope"], scoped, "the incident's numbers are scope's");
    // They cover the breach's truth: every subject it exposed, per type. The key-hygiene finding
    // linked beside the forged tokens also names customers of the same key on the same hosting
    // networks reading their own accounts, so a field class may count a few more.
    let truth: Value = serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("JSON");
    let attack = &truth["attacks"][0];
    assert_eq!(s["scope"]["subjects"], attack["subjects"]);
    assert_eq!(s["scope"]["subjects_by_type"], attack["subjects_by_type"]);
    for (class, n) in attack["fields"].as_object().expect("fields") {
        assert!(s["scope"]["fields"][class].as_u64() >= n.as_u64(), "{class}: {} < {n}", s["scope"]["fields"][class]);
    }
    // An investigator unlinks what is not the attack: the forged tokens alone are exactly the truth.
    let others: Vec<&str> = s["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["analytic"] != "forged-token")
        .map(|f| f["uid"].as_str().expect("uid"))
        .collect();
    assert!(!others.is_empty(), "the key's hygiene findings are linked: {}", s["findings"]);
    let mut unlink = vec!["incident", "unlink", "--store", store, "INC-1"];
    unlink.extend(&others);
    ok(&unlink);
    let s = show(store, "INC-1", &["--now", now]);
    assert_eq!(s["scope"]["subjects"], attack["subjects"]);
    assert_eq!(s["scope"]["subjects_by_type"], attack["subjects_by_type"]);
    assert_eq!(s["scope"]["fields"], attack["fields"]);
    assert_eq!(s["scope"]["events"], attack["exposing_events"]);
    assert_eq!(s["scope"]["first_seen_time"], attack["start"]);
    assert_eq!(s["scope"]["last_seen_time"], attack["end"]);
    assert!(s["scope_command"].as_str().expect("command").starts_with("piiwatch scope --store "));

    // Each regime's clock, computed from its rule.
    let h = 3_600_000;
    let c = clock(&s, "kr-network-act", "initial");
    assert_eq!((c["due_time"].as_i64(), &c["status"]), (Some(aware + 24 * h), &Value::from("open")));
    assert_eq!(c["remaining_ms"], 23 * h);
    assert_eq!(clock(&s, "kr-pipa-notice", "subjects")["due_time"], aware + 72 * h);
    assert_eq!(clock(&s, "gdpr-art33", "authority")["due_time"], aware + 72 * h);
    // PIPC's report: a forged-token finding is unlawful access from outside.
    let report = clock(&s, "kr-pipa-report", "report");
    assert_eq!(report["applies"], "yes");
    assert!(report["because"].to_string().contains("unlawful access from outside"), "{report}");
    // The amended PIPA (aware after 2026-09-11) needs the subjects' legal rights and remedies.
    assert_eq!(report["rules_from"], "2026-09-11");
    assert!(report["missing"].to_string().contains("legal_rights_and_remedies"), "{report}");
    // SEC: material on Saturday 2026-12-05: Monday is day 1, due Thursday 17:30 in New York (EST).
    assert_eq!(clock(&s, "sec-8k", "8-k")["due_time"], ms("2026-12-10T22:30:00Z"));
    // California: 30 calendar days in Los Angeles, to the end of the day.
    assert_eq!(clock(&s, "us-ca-1798.82", "residents")["due_time"], ms("2027-01-07T08:00:00Z") - 1);
    // The Attorney General's clock waits for the residents' notice, and its threshold for the count.
    let ag = clock(&s, "us-ca-1798.82", "attorney-general");
    assert!(ag["due_time"].is_null());
    assert_eq!(ag["applies"], "unknown");
    // GDPR Art. 34: no deadline in law, an internal target, and a risk assessment missing.
    let a34 = clock(&s, "gdpr-art34", "subjects");
    assert_eq!(a34["legal_deadline"], false);
    assert_eq!(a34["applies"], "unknown");

    // Notices sent: one late, one on time, the California residents with a count.
    ok(&[
        "incident",
        "sent",
        "--store",
        store,
        "INC-1",
        "--regime",
        "kr-network-act",
        "--clock",
        "initial",
        "--at",
        "2026-12-08T18:00:00Z",
    ]);
    ok(&["incident", "sent", "--store", store, "INC-1", "--regime", "kr-pipa-report", "--at", "2026-12-09T12:00:00Z"]);
    ok(&[
        "incident",
        "sent",
        "--store",
        store,
        "INC-1",
        "--regime",
        "us-ca-1798.82",
        "--clock",
        "residents",
        "--at",
        "2026-12-20T12:00:00Z",
        "--count",
        "501",
    ]);
    ok(&[
        "incident",
        "assess",
        "--store",
        store,
        "INC-1",
        "--high-risk",
        "no",
        "--why",
        "tokens revoked, no misuse seen",
    ]);
    ok(&["incident", "fact", "--store", store, "INC-1", "--at", "2026-12-08T09:00:00Z", "entrance codes read too"]);
    let s = show(store, "INC-1", &["--now", "2026-12-11T00:00:00Z"]);
    assert_eq!(clock(&s, "kr-network-act", "initial")["status"], "missed");
    assert_eq!(clock(&s, "kr-pipa-report", "report")["status"], "met");
    // Unsent and past 72 hours.
    assert_eq!(clock(&s, "gdpr-art33", "authority")["status"], "missed");
    // Past due, GDPR wants the reasons for the delay.
    assert!(clock(&s, "gdpr-art33", "authority")["missing"].to_string().contains("reasons_for_delay"));
    // A fact confirmed starts the Network Act's supplementary 24 hours, and the phased reports
    // of GDPR Art. 33(4) and PIPA (no deadline in law: a target).
    assert_eq!(clock(&s, "kr-network-act", "supplementary-1")["due_time"], ms("2026-12-09T09:00:00Z"));
    let phase = clock(&s, "gdpr-art33", "phase-1");
    assert_eq!(
        (phase["legal_deadline"].as_bool(), phase["due_time"].as_i64()),
        (Some(false), Some(ms("2026-12-11T09:00:00Z")))
    );
    assert_eq!(clock(&s, "kr-pipa-report", "phase-1")["conf"], "single_source");
    // More than 500 residents: the Attorney General's 15 days run from their notice.
    let ag = clock(&s, "us-ca-1798.82", "attorney-general");
    assert_eq!(ag["applies"], "yes");
    assert_eq!(ag["due_time"], ms("2027-01-05T08:00:00Z") - 1);
    // A possible leak (PIPA Art. 34(2), from 2026-09-11): 72 hours to tell every subject possibly affected.
    ok(&["incident", "possible", "--store", store, "INC-1", "--at", "2026-12-09T00:00:00Z"]);
    let s = show(store, "INC-1", &["--now", "2026-12-11T00:00:00Z"]);
    let p = clock(&s, "kr-pipa-notice", "possibility");
    assert_eq!((p["due_time"].as_i64(), p["conf"].as_str()), (Some(ms("2026-12-12T00:00:00Z")), Some("single_source")));
    assert!(!p["missing"].to_string().contains("followup_commitment"), "drafted from the store: {p}");
    // Assessed not high risk: Art. 34 does not apply, and says why.
    assert!(s["clocks"].as_array().expect("clocks").iter().all(|c| c["regime"] != "gdpr-art34"));
    assert!(s["not_applicable"].to_string().contains("assessed not high risk"));

    // An organisation profile narrows the regimes and answers the organisation's facts.
    let org = tmp.path().join("org.toml");
    std::fs::write(
        &org,
        "name = \"Example Shop\"\nregimes = [\"kr-network-act\", \"sec-8k\"]\ncontact_point = \"privacy@example.com\"\nict_service_provider = true\nsec_registrant = false\n",
    )
    .expect("org");
    let s = show(store, "INC-1", &["--org", org.to_str().expect("utf-8"), "--now", now]);
    let regimes: std::collections::BTreeSet<&str> =
        s["clocks"].as_array().expect("clocks").iter().map(|c| c["regime"].as_str().expect("regime")).collect();
    assert_eq!(regimes.into_iter().collect::<Vec<_>>(), ["kr-network-act"]);
    assert!(s["not_applicable"].to_string().contains("sec_registrant = false"));
    // The contact point comes from the profile: no longer missing.
    assert!(!clock(&s, "kr-network-act", "supplementary-1")["missing"].to_string().contains("contact_point"));

    // Every change is in the ledger with who and when, and the store still verifies.
    let history = s["history"].as_array().expect("history");
    let names: Vec<&str> = history
        .iter()
        .map(|r| r["change"].as_object().expect("change").keys().next().expect("name").as_str())
        .collect();
    assert_eq!(names, ["open", "aware", "material", "unlink", "sent", "sent", "sent", "assess", "fact", "possible"]);
    assert!(history.iter().all(|r| r["by"].as_str().is_some_and(|b| !b.is_empty()) && r["at"].as_i64().is_some()));
    ok(&["verify", "--store", store]);
    // Each show's scope is an audited query.
    let ledger = support::ledger::ledger_text(&store_dir);
    assert!(ledger.contains("\"command\":\"incident show\""), "incident show is recorded in the audit chain");

    // The list, for people and machines.
    let l = ok(&["incident", "list", "--store", store, "--format", "json"]);
    let line: Value = serde_json::from_slice(&l.stdout).expect("one JSON line");
    assert_eq!((line["id"].as_str(), line["state"].as_str()), (Some("INC-1"), Some("open")));
    ok(&["incident", "close", "--store", store, "INC-1", "--why", "notified; keys rotated"]);
    assert!(String::from_utf8_lossy(&ok(&["incident", "list", "--store", store]).stdout).contains("closed"));
}

#[test]
fn bad_incident_requests_fail_with_one_line_and_the_contracts_exit_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store_dir) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let one_line = |o: &std::process::Output, code: i32, has: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(has), "{err}");
    };
    one_line(
        &piiwatch(&["incident", "open", "--store", store, "--from-alert", "pw-nope"]),
        1,
        "no finding with uid pw-nope",
    );
    one_line(
        &piiwatch(&["incident", "aware", "--store", store, "INC-9", "--at", "2026-12-07T12:00:00Z"]),
        1,
        "no incident INC-9",
    );
    let uid = findings(tmp.path())[0]["finding_info"]["uid"].as_str().expect("uid").to_owned();
    ok(&["incident", "open", "--store", store, "--from-alert", &uid]);
    // clap's own usage errors: exit code 2, the reason named.
    let o = piiwatch(&["incident", "aware", "--store", store, "INC-1", "--at", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither RFC 3339"));
    one_line(
        &piiwatch(&["incident", "sent", "--store", store, "INC-1", "--regime", "gdpr-art99", "--at", "0"]),
        2,
        "no regime \"gdpr-art99\"",
    );
    one_line(
        &piiwatch(&["incident", "sent", "--store", store, "INC-1", "--regime", "us-ca-1798.82", "--at", "0"]),
        2,
        "name one with --clock",
    );
    one_line(&piiwatch(&["incident", "unlink", "--store", store, "INC-1", "pw-other"]), 2, "is not linked");
    // A regime file with a mistake: file, line, reason; nothing computed.
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).expect("dir");
    std::fs::write(
        rules.join("gdpr-art33.toml"),
        "id = \"gdpr-art33\"\ntitle = \"x\"\nlaw = \"x\"\n[[version]]\nfrom = \"someday\"\n",
    )
    .expect("write");
    one_line(
        &piiwatch(&["incident", "show", "--store", store, "INC-1", "--regimes", rules.to_str().expect("utf-8")]),
        2,
        "gdpr-art33.toml: line 5",
    );
    // Nothing there is a store.
    one_line(
        &piiwatch(&["incident", "list", "--store", tmp.path().to_str().expect("utf-8")]),
        1,
        "not a piiwatch store",
    );
}

/// `piiwatch report` on the simulated breach: the report page and every
/// applicable regime's drafts, every item the regime requires present by
/// id, every count equal to `scope` on the same store, the drafts pinned
/// as snapshots (`UPDATE_EXPECT=1 cargo test -p cli --test incident` rewrites them).
#[test]
fn report_writes_drafts_with_every_item_and_scopes_numbers_and_a_self_contained_page() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, store_dir) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let uid = support::first_finding(tmp.path(), "coupang", "forged-token");
    ok(&["incident", "open", "--store", store, "--from-alert", &uid]);
    ok(&["incident", "aware", "--store", store, "INC-1", "--at", "2026-12-07T12:00:00Z"]);
    ok(&["incident", "material", "--store", store, "INC-1", "--at", "2026-12-08T12:00:00Z"]);
    ok(&[
        "incident",
        "fill",
        "--store",
        store,
        "INC-1",
        "--item",
        "measures_taken",
        "--text",
        "Key auth-key-2019 revoked.",
    ]);
    ok(&["incident", "fact", "--store", store, "INC-1", "--at", "2026-12-08T09:00:00Z", "entrance codes read too"]);
    let out = tmp.path().join("out");
    let o = ok(&[
        "report",
        "--store",
        store,
        "--incident",
        "INC-1",
        "--out",
        out.to_str().expect("utf-8"),
        "--now",
        "2026-12-08T20:00:00Z",
        "--format",
        "json",
        "--notices",
    ]);
    let written: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(written["missing"]["kr-network-act"], serde_json::json!(["response_status", "contact_point"]));

    // Every applicable regime has a JSON draft with every item of its rules, and Markdown per language.
    let regimes = incident::Regimes::built_in().expect("regimes");
    let mut scope_checked = false;
    for (id, regime) in &regimes.regimes {
        let json = out.join("drafts").join(format!("{id}.json"));
        let draft: Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap_or_else(|_| panic!("{} missing", json.display())))
                .expect("JSON");
        let version = regime.version_for(Some(jiff::civil::date(2026, 12, 7)));
        for item in &version.item {
            let it = &draft["items"][&item.id];
            assert!(it.is_object(), "{id}: item {} missing from the draft", item.id);
            assert!(
                ["store", "org", "person", "not_applicable", "missing"]
                    .contains(&it["source"].as_str().expect("source"))
            );
        }
        for lang in &regime.languages {
            assert!(out.join("drafts").join(format!("{id}.{lang}.md")).exists(), "{id}.{lang}.md");
        }
        // The numbers are scope's, by the command the draft names.
        let cmd = draft["scope_command"].as_str().expect("command");
        let expr = cmd.split("--where '").nth(1).and_then(|r| r.split("' --from ").next()).expect("expression");
        if !scope_checked {
            let from = cmd.split("--from ").nth(1).and_then(|r| r.split(' ').next()).expect("from");
            let scoped = ok(&["scope", "--store", store, "--where", expr, "--from", from, "--format", "json"]);
            assert_eq!(draft["scope"], serde_json::from_slice::<Value>(&scoped.stdout).expect("JSON"));
            scope_checked = true;
        }
        if let Some(n) = draft["items"]["approx_number_of_subjects"]["value"].as_str() {
            let subjects = draft["scope"]["subjects"].as_u64().expect("subjects");
            assert!(n.replace(',', "").starts_with(&subjects.to_string()), "{id}: {n} is not {subjects}");
        }
        // The snapshot: the store's temporary path is the only thing that changes run to run.
        for lang in &regime.languages {
            let md = std::fs::read_to_string(out.join("drafts").join(format!("{id}.{lang}.md"))).expect("md");
            let md = md.replace(store, "STORE");
            expect_test::expect_file![format!("snapshots/drafts/{id}.{lang}.md")].assert_eq(&md);
        }
    }
    // Person-written text and the profile-less blanks.
    let net: Value =
        serde_json::from_slice(&std::fs::read(out.join("drafts/kr-network-act.json")).expect("json")).expect("JSON");
    assert_eq!(net["items"]["measures_taken"]["source"], "person");
    assert_eq!(net["items"]["contact_point"]["source"], "missing");
    assert_eq!(net["follow_ups"][0]["text"], "entrance codes read too");
    assert!(net["translations"]["ko"]["measures_taken"]["label"].as_str().is_some_and(|l| l.contains("조치")));

    // The page: self-contained, with its charts and evidence.
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.matches("<svg").count() >= 4, "charts: exposure, findings, sources, deadlines");
    for external in ["src=\"http", "href=\"http", "<script src", "<link", "@import", "url("] {
        assert!(!html.contains(external), "report.html loads {external}");
    }
    assert!(html.contains("— piiwatch") || html.contains("piiwatch"), "signed checkpoint shown");
    assert!(html.contains("intact:"), "verify's result is in the evidence");
    assert!(html.contains("piiwatch scope --store"), "the commands behind the numbers");
    assert!(html.contains("@media print"));
    assert!(html.contains("Sources by country and network") && html.contains("<h3>Country</h3>"), "sources by country");
    // The report's breakdowns are recorded in the audit chain.
    let ledger = support::ledger::ledger_text(&store_dir);
    assert!(ledger.contains("\"command\":\"report\""));

    // Per-person notices: one per exposed subject (the simulator's truth), entrance codes named,
    // files only their owner reads, the re-identification recorded.
    let truth: Value = serde_json::from_slice(&std::fs::read(sim.join("truth.json")).expect("truth")).expect("JSON");
    let attack = &truth["attacks"][0];
    let rows: Vec<Value> = std::fs::read_to_string(out.join("notices.jsonl"))
        .expect("notices.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["subject"].as_str().expect("id")).collect();
    let exposed: std::collections::BTreeSet<&str> =
        attack["exposed_subjects"].as_array().expect("subjects").iter().map(|v| v.as_str().expect("id")).collect();
    assert_eq!(ids, exposed);
    let codes: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["fields"].as_array().expect("fields").iter().any(|f| f == "entrance_code"))
        .map(|r| r["subject"].as_str().expect("id"))
        .collect();
    let truth_codes: std::collections::BTreeSet<&str> = attack["exposed_by_field"]["entrance_code"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|v| v.as_str().expect("id"))
        .collect();
    assert!(codes.is_superset(&truth_codes), "every subject whose entrance code was read is told so");
    assert!(rows.iter().all(|r| r["notice_ko"].as_str().is_some_and(|t| t.contains("발급되지 않은"))));
    let csv = std::fs::read_to_string(out.join("notices.csv")).expect("csv");
    assert_eq!(csv.lines().count(), rows.len() + 1);
    #[cfg(unix)]
    for f in ["notices.csv", "notices.jsonl"] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(out.join(f)).expect("meta").permissions().mode() & 0o777, 0o600, "{f}");
    }
    let ledger = support::ledger::ledger_text(&store_dir);
    assert!(ledger.contains("\"command\":\"report (notices)\"") && ledger.contains("\"reidentified\":true"));

    // With the organisation's revenue, the fine estimate: labelled, computed from the regimes' ceilings.
    let org = tmp.path().join("org.toml");
    std::fs::write(&org, "name = \"Example Shop\"\nrevenue = { amount = 41000000000000, currency = \"KRW\" }\n")
        .expect("org");
    let out2 = tmp.path().join("out2");
    ok(&[
        "report",
        "--store",
        store,
        "--incident",
        "INC-1",
        "--out",
        out2.to_str().expect("utf-8"),
        "--org",
        org.to_str().expect("utf-8"),
    ]);
    let html = std::fs::read_to_string(out2.join("report.html")).expect("report.html");
    assert!(html.contains("Fine estimate") && html.contains("not legal advice"));
    assert!(html.contains("KRW 1,230,000,000,000 (3 % of revenue)"), "PIPA's 3 %");
    assert!(html.contains("KRW 4,100,000,000,000 (10 % of revenue)"), "PIPA's 10 % from 2026-09-11");
    assert!(html.contains("EUR 10,000,000"), "GDPR's fixed ceiling");
    let us: Value =
        serde_json::from_slice(&std::fs::read(out2.join("drafts/us-ca-1798.82.json")).expect("json")).expect("JSON");
    assert_eq!(
        (us["items"]["notifier_identity"]["value"].as_str(), us["items"]["notifier_identity"]["source"].as_str()),
        (Some("Example Shop"), Some("org"))
    );
}
