//! The starter pack (`rules/`, loaded by default): each rule fires on the
//! simulated attack it is for and stays silent on the benign platform.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::ok;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const ADDRESS: &str = "7d3f5d0e-5b1a-4c55-9a0e-0c4f7f2e1a02";
const TOKEN: &str = "7d3f5d0e-5b1a-4c55-9a0e-0c4f7f2e1a03";
const ENTRANCE: &str = "7d3f5d0e-5b1a-4c55-9a0e-0c4f7f2e1a12";
const OUTSIDE: &str = "7d3f5d0e-5b1a-4c55-9a0e-0c4f7f2e1a21";
const SCRIPTED: &str = "7d3f5d0e-5b1a-4c55-9a0e-0c4f7f2e1a22";

/// New findings per starter rule over `input`, with the simulation's directory.
fn starter_findings(sim: &Path, input: &Path, out: &Path) -> BTreeMap<String, Vec<Value>> {
    let o = ok(&[
        "detect",
        "--directory",
        path(&sim.join("directory.json")),
        "--quarantine",
        path(&out.join("q.jsonl")),
        path(input),
    ]);
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let f: Value = serde_json::from_str(line).expect("a finding is JSON");
        let uid = f["finding_info"]["analytic"]["uid"].as_str().unwrap_or_default().to_owned();
        if uid.starts_with("7d3f5d0e-") && f["activity_id"] == 1 {
            m.entry(uid).or_default().push(f);
        }
    }
    m
}

fn scenario(name: &str) -> BTreeMap<String, Vec<Value>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = support::simulation(name, 20_000, 3);
    starter_findings(&sim, &sim.join("events.jsonl.gz"), dir.path())
}

#[test]
fn the_benign_platform_raises_no_starter_finding() {
    let got = scenario("benign");
    assert!(got.is_empty(), "false alarms: {:#?}", got.keys().collect::<Vec<_>>());
}

#[test]
fn the_breach_crawl_reads_entrance_codes_from_abroad() {
    let got = scenario("coupang");
    let entrance = got.get(ENTRANCE).map_or(0, Vec::len);
    assert!(entrance > 0, "entrance codes: {:?}", got.keys().collect::<Vec<_>>());
    // Grouped by the network abroad, with the figure in the finding.
    let f = &got[ENTRANCE][0];
    assert!(
        f["observables"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["name"] == "src_endpoint.autonomous_system.number"))
    );
    assert!(f["unmapped"]["sigma"]["value"].as_f64().is_some_and(|v| v >= 30.0));
    assert_eq!(f["severity_id"], 5);
}

#[test]
fn an_insider_and_a_bola_enumeration_read_many_people_per_address_and_token() {
    let names: &[&str] = if support::slow() { &["insider", "bola"] } else { &["insider"] };
    for name in names {
        let got = scenario(name);
        for rule in [ADDRESS, TOKEN] {
            assert!(got.contains_key(rule), "{name}: {rule} did not fire: {:?}", got.keys().collect::<Vec<_>>());
        }
        // Per address: the value counted is distinct people, at least the threshold.
        assert!(got[ADDRESS].iter().all(|f| f["unmapped"]["sigma"]["value"].as_f64().is_some_and(|v| v >= 150.0)));
    }
}

#[test]
fn staff_calls_from_outside_the_office_or_by_a_script_are_flagged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = support::simulation("benign", 20_000, 3);
    let bytes = {
        use std::io::Read;
        let mut b = Vec::new();
        let f = std::fs::File::open(sim.join("events.jsonl.gz")).expect("events");
        flate2::read::MultiGzDecoder::new(f).read_to_end(&mut b).expect("gzip");
        b
    };
    // A customer-service agent's read, as the platform logs it.
    let staff: Value = bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .find(|e| e["class_uid"] == 6003 && e["actor"]["user"]["type"] == "employee" && e["activity_id"] == 2)
        .expect("a staff read in the simulation");
    let mut outside = staff.clone();
    outside["src_endpoint"]["ip"] = "198.51.100.7".into();
    outside["time"] = (staff["time"].as_i64().unwrap_or(0) + 1000).into();
    let mut scripted = staff.clone();
    scripted["http_request"]["user_agent"] = "python-requests/2.32.3".into();
    scripted["time"] = (staff["time"].as_i64().unwrap_or(0) + 2000).into();
    let input = dir.path().join("staff.jsonl");
    std::fs::write(&input, format!("{staff}\n{outside}\n{scripted}\n")).expect("write");
    let got = starter_findings(&sim, &input, dir.path());
    let counts: BTreeMap<&str, u64> =
        got.iter().map(|(k, v)| (k.as_str(), v.iter().map(|f| f["count"].as_u64().unwrap_or(0)).sum())).collect();
    assert_eq!(counts.get(OUTSIDE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(SCRIPTED), Some(&1), "{counts:?}");
    assert_eq!(got[OUTSIDE][0]["observables"][0]["value"], "198.51.100.7");
}
