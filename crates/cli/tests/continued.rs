//! `ingest` run again on new files continues where the last run left the
//! detectors: the store's events are replayed through the engine first,
//! so three runs over three consecutive files find exactly what one run
//! over the whole stream finds, written once and stored once.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use support::{ok, simulation};

/// Each finding report (uid, activity, count, time) and how often it occurs.
type Reports = BTreeMap<(String, u64, u64, i64), u32>;

fn reports(lines: &[u8], into: &mut Reports) {
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).expect("a finding is JSON");
        let key = (
            v["finding_info"]["uid"].as_str().expect("uid").to_owned(),
            v["activity_id"].as_u64().expect("activity"),
            v["count"].as_u64().unwrap_or(0),
            v["time"].as_i64().expect("time"),
        );
        *into.entry(key).or_default() += 1;
    }
}

fn stored(store: &Path) -> Reports {
    let mut r = Reports::new();
    store::alerts(store, |line| reports(line, &mut r)).expect("stored findings");
    r
}

/// The simulation's lines, in three consecutive parts.
fn thirds(sim: &Path) -> [Vec<u8>; 3] {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(sim.join("events.jsonl.gz")).expect("events"))
        .read_to_end(&mut bytes)
        .expect("gzip");
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let t = lines.len() / 3;
    [&lines[..t], &lines[t..2 * t], &lines[2 * t..]].map(|part| part.concat())
}

#[test]
fn three_runs_find_what_one_run_finds() {
    // `insider` and `ato` have a token first used in the last minutes of a
    // part and issued in the next: a run that decided at its end that the
    // token was never issued would report a forgery the whole stream does not have.
    for scenario in ["insider", "ato", "coupang"] {
        let sim = simulation(scenario, 3000, 4);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = sim.join("directory.json");
        let d = dir.to_str().expect("utf-8");
        let parts = thirds(&sim);
        let whole = tmp.path().join("whole.jsonl");
        std::fs::write(&whole, parts.concat()).expect("write");
        let q = tmp.path().join("q.jsonl");
        let qq = q.to_str().expect("utf-8");
        let (once, split) = (tmp.path().join("once"), tmp.path().join("split"));
        let ingest = |store: &Path, input: &Path| {
            let (s, i) = (store.to_str().expect("utf-8"), input.to_str().expect("utf-8"));
            ok(&["ingest", "--store", s, "--directory", d, "--quarantine", qq, i])
        };
        let out = ingest(&once, &whole);
        let mut expected = Reports::new();
        reports(&out.stdout, &mut expected);
        assert!(!expected.is_empty(), "{scenario}: no findings at all");
        let mut written = Reports::new();
        for (i, part) in parts.iter().enumerate() {
            let file = tmp.path().join(format!("part{i}.jsonl"));
            std::fs::write(&file, part).expect("write");
            let out = ingest(&split, &file);
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(i > 0, said.contains("continued from the"), "{scenario} run {i}: {said}");
            reports(&out.stdout, &mut written);
        }
        assert_eq!(written, expected, "{scenario}: the findings written over three runs differ from one run's");
        assert_eq!(stored(&split), stored(&once), "{scenario}: the findings stored differ");
        assert_eq!(stored(&split), expected, "{scenario}: every report stored once");
        ok(&["verify", "--store", split.to_str().expect("utf-8")]);
    }
}
