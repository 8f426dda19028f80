//! Event time, not arrival: the same findings whether a stream arrives
//! sorted or shuffled within the allowed lateness.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use proptest::prelude::*;

/// Lines with their event time, and the findings for them in sorted order.
type Baseline = (Vec<(i64, Vec<u8>)>, String);

/// Default `engine.lateness` (3 minutes); shuffles stay strictly inside it.
const LATENESS_MS: i64 = 180_000;

fn lines_of_simulation() -> Vec<(i64, Vec<u8>)> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8").to_owned();
    let status = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["simulate", "--scenario", "coupang", "--customers", "3000", "--days", "2", "--seed", "5", "--out", &dir])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("simulate");
    assert!(status.success());
    let gz = std::fs::File::open(tmp.path().join("events.jsonl.gz")).expect("events");
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut bytes).expect("gunzip");
    let mut last = 0;
    bytes
        .split(|&b| b == b'\n')
        .map(|l| {
            // Lines without a time (foreign or broken on purpose) travel with their neighbours.
            let t =
                serde_json::from_slice::<serde_json::Value>(l).ok().and_then(|v| v["time"].as_i64()).unwrap_or(last);
            last = t;
            (t, l.to_vec())
        })
        .collect()
}

fn detect(lines: &[&[u8]]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = tmp.path().join("q.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["detect", "--quarantine", q.to_str().expect("utf-8"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = lines.join(&b'\n');
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().expect("detect");
    writer.join().expect("writer").expect("write stdin");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn shuffled_within_the_lateness_gives_the_same_findings(seed in any::<u64>()) {
        static SORTED: std::sync::OnceLock<Baseline> = std::sync::OnceLock::new();
        let (lines, expected) = SORTED.get_or_init(|| {
            let mut lines = lines_of_simulation();
            lines.sort_by_key(|l| l.0);
            let text: Vec<&[u8]> = lines.iter().map(|l| l.1.as_slice()).collect();
            let expected = detect(&text);
            (lines, expected)
        });
        prop_assert!(expected.lines().count() > 5, "the simulation should produce findings");
        // Each line moves to a random arrival time less than the lateness after its event time.
        let mut state = seed | 1;
        let mut keyed: Vec<(i64, &[u8])> = lines
            .iter()
            .map(|(t, l)| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (t + (state % (LATENESS_MS as u64 - 1)) as i64, l.as_slice())
            })
            .collect();
        keyed.sort_by_key(|k| k.0);
        let shuffled: Vec<&[u8]> = keyed.iter().map(|k| k.1).collect();
        let got = detect(&shuffled);
        prop_assert!(got == *expected, "findings differ between sorted and shuffled input");
    }
}
