//! `piiwatch ingest` and `piiwatch verify` driven as a user drives them:
//! what is stored, that an input is never counted twice, that any tampering
//! with the ledger is named, and that `kill -9` loses nothing acknowledged.

// The helpers below panic on unexpected I/O the way tests do: as a failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::ledger::{blocks, ledger_text, segments};
use support::{ok, piiwatch};

/// A small simulation, decompressed to a plain file (so tests can cut it).
fn sample(dir: &Path, customers: u32) -> PathBuf {
    let sim = dir.join("sim");
    let d = sim.to_str().unwrap();
    ok(&["simulate", "--scenario", "coupang", "--out", d, "--customers", &customers.to_string(), "--days", "2"]);
    let gz = fs::read(sim.join("events.jsonl.gz")).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut text).unwrap();
    let plain = dir.join("events.jsonl");
    fs::write(&plain, text).unwrap();
    plain
}

/// `ingest` with small segments, returning its JSON summary.
fn ingest(store: &Path, input: &Path, extra: &[&str]) -> Value {
    let q = store.with_extension("quarantine.jsonl");
    let out = store.with_extension("findings.jsonl");
    let mut args = vec![
        "ingest",
        "--store",
        store.to_str().unwrap(),
        "--segment-bytes",
        "20000",
        "--format",
        "json",
        "--quarantine",
        q.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(input.to_str().unwrap());
    let o = ok(&args);
    summary(&o.stderr)
}

fn summary(stderr: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary in {text}"));
    serde_json::from_str(line).unwrap()
}

fn verify(store: &Path) -> (bool, Value) {
    let o = piiwatch(&["verify", "--store", store.to_str().unwrap(), "--format", "json"]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.success(), v["ok"].as_bool().unwrap(), "{v}");
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    }
    (o.status.success(), v)
}

fn problems(v: &Value) -> String {
    v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>().join(" | ")
}

/// Record frames inside a block's records: (offset, length of the whole frame).
fn frames(raw: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 37 <= raw.len() {
        let len = u32::from_le_bytes(raw[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, 37 + len));
        pos += 37 + len;
    }
    out
}

/// Rewrites the records of block `i` of the segment at `path` (recompressing
/// it with a valid header, as someone covering their tracks would).
fn rewrite_block(path: &Path, i: usize, edit: impl FnOnce(&mut Vec<u8>)) {
    let seg = fs::read(path).unwrap();
    let (off, len, mut raw) = blocks(&seg).swap_remove(i);
    edit(&mut raw);
    let codec = store::ledger::Codec::of_header(&seg).unwrap();
    let mut out = seg[..off].to_vec();
    out.extend_from_slice(&store::ledger::encode_block(codec, &raw).unwrap());
    out.extend_from_slice(&seg[off + len..]);
    fs::write(path, out).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("ledger")).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    for sub in ["ledger", "merkle"] {
        fs::create_dir_all(to.join(sub)).unwrap();
        for e in fs::read_dir(from.join(sub)).unwrap() {
            let p = e.unwrap().path();
            fs::copy(&p, to.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn ingest_stores_every_event_pseudonymised_and_never_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample(tmp.path(), 500);
    let store = tmp.path().join("store");
    let first = ingest(&store, &input, &[]);
    let stored = first["store"]["stored"].as_u64().unwrap();
    // Every event the reader produced (timed or not) is stored.
    let stats = ok(&["stats", "--format", "json", input.to_str().unwrap()]);
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stored, stats["events"].as_u64().unwrap(), "{first}\n{stats}");
    assert_eq!(stored, first["events"].as_u64().unwrap() + first["untimed"].as_u64().unwrap());
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    assert_eq!(v["events"].as_u64().unwrap(), stored);
    assert!(segments(&store).len() > 3, "small segments roll over");

    // No subject id appears in the ledger; pseudonyms do.
    let text = ledger_text(&store);
    let raw = String::from_utf8_lossy(&fs::read(&input).unwrap()).into_owned();
    let subject = raw.split("\"resources\":[{\"uid\":\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(!text.contains(&format!("\"{subject}\"")), "subject id {subject} stored in clear");
    assert!(text.contains("\"subjects\":[{\"id\":\""));
    // The map back to real ids is encrypted: no id in clear there either.
    let map = fs::read(store.join("subjects.map")).unwrap();
    assert!(map.len() > 1000);
    assert!(!String::from_utf8_lossy(&map).contains(subject), "subject id {subject} in the map in clear");

    // The same input again (under another name, too): nothing new.
    let again = ingest(&store, &input, &[]);
    assert_eq!(again["store"]["stored"].as_u64(), Some(0), "{again}");
    let renamed = tmp.path().join("renamed.jsonl");
    fs::copy(&input, &renamed).unwrap();
    assert_eq!(ingest(&store, &renamed, &[])["store"]["stored"].as_u64(), Some(0));
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    assert_eq!(v["events"].as_u64().unwrap(), stored);

    // An input that grew: only its new lines are stored.
    let grown_store = tmp.path().join("grown");
    let bytes = fs::read(&input).unwrap();
    let cut = bytes[..bytes.len() / 2].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let half = tmp.path().join("growing.jsonl");
    fs::write(&half, &bytes[..cut]).unwrap();
    let a = ingest(&grown_store, &half, &[])["store"]["stored"].as_u64().unwrap();
    fs::write(&half, &bytes).unwrap();
    let b = ingest(&grown_store, &half, &[])["store"]["stored"].as_u64().unwrap();
    assert!(a > 0 && b > 0);
    assert_eq!(a + b, stored);
    assert!(verify(&grown_store).0);
}

#[test]
fn verify_names_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample(tmp.path(), 500);
    let store = tmp.path().join("store");
    ingest(&store, &input, &[]);
    assert!(verify(&store).0);
    let segs = segments(&store);
    assert!(segs.len() >= 4);

    let mut case = 0;
    let mut damaged = |what: &str, expect: &str, tamper: &dyn Fn(&Path)| {
        case += 1;
        let copy = tmp.path().join(format!("case{case}"));
        copy_dir(&store, &copy);
        tamper(&copy);
        let (intact, v) = verify(&copy);
        assert!(!intact, "{what}: not detected");
        let p = problems(&v);
        assert!(p.contains(expect), "{what}: expected {expect:?} in {p}");
    };
    let seg = |store: &Path, i: usize| segments(store)[i].clone();

    damaged("a flipped byte in a record", "00000002.seg: record 3 (block at byte 48)", &|s| {
        rewrite_block(&seg(s, 1), 0, |raw| {
            let (off, len) = frames(raw)[3];
            raw[off + len / 2] ^= 0x20;
        });
    });
    damaged("a record removed", "00000002.seg: record 5", &|s| {
        rewrite_block(&seg(s, 1), 0, |raw| {
            let (off, len) = frames(raw)[5];
            raw.drain(off..off + len);
        });
    });
    damaged("two records swapped", "00000003.seg: record 7", &|s| {
        rewrite_block(&seg(s, 2), 0, |raw| {
            let f = frames(raw);
            let ((o1, l1), (o2, l2)) = (f[7], f[8]);
            let mut out = raw[..o1].to_vec();
            out.extend_from_slice(&raw[o2..o2 + l2]);
            out.extend_from_slice(&raw[o1..o1 + l1]);
            out.extend_from_slice(&raw[o2 + l2..]);
            *raw = out;
        });
    });
    damaged("a block's compressed bytes altered", "00000002.seg: block at byte 48 does not match its checksum", &|s| {
        let p = seg(s, 1);
        let mut b = fs::read(&p).unwrap();
        b[48 + 40] ^= 0x04;
        fs::write(&p, b).unwrap();
    });
    damaged("a segment cut inside a block", "truncated", &|s| {
        let p = seg(s, 1);
        let b = fs::read(&p).unwrap();
        fs::write(&p, &b[..b.len() - 10]).unwrap();
    });
    damaged("the last block cut at a block boundary", "HEAD acknowledges", &|s| {
        let segs = segments(s);
        let p = segs.last().unwrap();
        let b = fs::read(p).unwrap();
        let (off, _, _) = *blocks(&b).last().unwrap();
        fs::write(p, &b[..off]).unwrap();
    });
    damaged("the last segment removed", "HEAD acknowledges", &|s| {
        fs::remove_file(segments(s).last().unwrap()).unwrap();
    });
    damaged("a segment removed", "00000002.seg is missing", &|s| {
        fs::remove_file(seg(s, 1)).unwrap();
    });
    damaged("two segments swapped", "renamed or reordered", &|s| {
        let (a, b) = (seg(s, 1), seg(s, 2));
        let tmp = a.with_extension("x");
        fs::rename(&a, &tmp).unwrap();
        fs::rename(&b, &a).unwrap();
        fs::rename(&tmp, &b).unwrap();
    });
    damaged("a segment header altered", "does not continue", &|s| {
        let p = seg(s, 2);
        let mut b = fs::read(&p).unwrap();
        b[20] ^= 1;
        fs::write(&p, b).unwrap();
    });
    damaged("HEAD removed", "HEAD is missing", &|s| {
        fs::remove_file(s.join("ledger/HEAD")).unwrap();
    });
    damaged("an entry of the subject map altered", "entries do not decrypt", &|s| {
        let p = s.join("subjects.map");
        let mut b = fs::read(&p).unwrap();
        b[40] ^= 1;
        fs::write(&p, b).unwrap();
    });
    damaged("the subject map cut short", "have no entry", &|s| {
        let p = s.join("subjects.map");
        let b = fs::read(&p).unwrap();
        fs::write(&p, &b[..b.len() / 2]).unwrap();
    });
    damaged("the secret removed", "secret", &|s| {
        fs::remove_file(s.join("secret")).unwrap();
    });

    // Any single flipped byte, anywhere in any segment, is named.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let copy = tmp.path().join("flips");
    copy_dir(&store, &copy);
    for _ in 0..if support::slow() { 60 } else { 12 } {
        let segs = segments(&copy);
        let p = &segs[(next() % segs.len() as u64) as usize];
        let original = fs::read(p).unwrap();
        let mut b = original.clone();
        let at = (next() % b.len() as u64) as usize;
        b[at] ^= 1 << (next() % 8);
        fs::write(p, &b).unwrap();
        assert!(!verify(&copy).0, "flip at byte {at} of {} not detected", p.display());
        fs::write(p, &original).unwrap();
    }
    assert!(verify(&copy).0);
}

#[test]
fn kill_9_during_ingest_loses_nothing_acknowledged_and_counts_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    // About 130 K lines: an ingest runs long enough to be interrupted.
    let input = sample(tmp.path(), 20_000);
    let clean = tmp.path().join("clean");
    let expected = ingest(&clean, &input, &[])["store"]["stored"].as_u64().unwrap();

    let store = tmp.path().join("store");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    let mut acknowledged = 0u64;
    for round in 0..if support::slow() { 8 } else { 3 } {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
            .args(["ingest", "--store", store.to_str().unwrap(), "--segment-bytes", "20000", "--commit-every", "5000"])
            .args(["--quarantine", tmp.path().join("q.jsonl").to_str().unwrap()])
            .args(["--out", tmp.path().join(format!("f{round}.jsonl")).to_str().unwrap()])
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng % 900));
        if child.try_wait().unwrap().is_none() {
            // SIGKILL: no destructor, no flush.
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // What HEAD acknowledged is there, whole, and intact.
        let (intact, v) = verify(&store);
        assert!(intact, "round {round}: {v}");
        let now = v["acknowledged"].as_u64().unwrap_or(0);
        assert!(now >= acknowledged, "round {round}: acknowledged records went back from {acknowledged} to {now}");
        acknowledged = now;
    }
    assert!(killed > 0, "no run was interrupted: the test proves nothing");
    // A last run to the end: exactly the clean count, nothing twice.
    ingest(&store, &input, &[]);
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    assert_eq!(v["events"].as_u64().unwrap(), expected, "{v}");
}

#[test]
fn ingest_follow_commits_when_its_input_goes_quiet_and_keeps_it_through_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample(tmp.path(), 200);
    // Bytes: the simulation writes some malformed lines on purpose, not all UTF-8.
    let text = fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let (first, rest) = lines.split_at(lines.len() / 2);
    let joined = |ls: &[&[u8]]| ls.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect::<Vec<u8>>();
    let live = tmp.path().join("live.jsonl");
    fs::write(&live, joined(first)).unwrap();
    let store = tmp.path().join("store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["ingest", "--store", store.to_str().unwrap(), "--follow", "--idle-flush", "0.2"])
        .args(["--quarantine", tmp.path().join("q.jsonl").to_str().unwrap()])
        .args(["--out", tmp.path().join("f.jsonl").to_str().unwrap()])
        .arg(&live)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Far fewer lines than a commit's worth: only going quiet commits them.
    let head = || -> u64 {
        fs::read_to_string(store.join("ledger/HEAD"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["records"].as_u64())
            .unwrap_or(0)
    };
    let wait_for = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while head() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        head()
    };
    let half = first.len() as u64 - 20;
    assert!(wait_for(half) >= half, "the first half was not committed: HEAD {}", head());
    // While the service holds the store, a query and an export (which the
    // store must record, and only its writer can) say so: a lock, not damage
    // (no "run verify", nothing "altered"), exit 1 rather than a usage
    // error, and the service goes on (checked below). `verify` reads: it
    // checks what was committed when it started and says the index was not
    // compared.
    let st = store.to_str().unwrap();
    let out_dir = tmp.path().join("export");
    let held_by: [&[&str]; 2] = [
        &["scope", "--store", st, "--where", r#"api.operation = "x""#],
        &["export", "--store", st, "--format", "parquet", "--out", out_dir.to_str().unwrap()],
    ];
    let verified = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["verify", "--store", st, "--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap_or_default();
    assert!(
        verified.status.success() && report["ok"] == true,
        "verify of a held store: {report} {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(report["records"].as_u64().unwrap_or(0) >= half, "{report}");
    assert!(report["notes"].to_string().contains("held by a running piiwatch"), "{report}");
    for args in held_by {
        let held = Command::new(env!("CARGO_BIN_EXE_piiwatch")).args(args).output().unwrap();
        let said = String::from_utf8_lossy(&held.stderr);
        assert_eq!(held.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("held by another piiwatch process"), "{args:?}: {said}");
        assert!(!said.contains("verify") && !said.contains("altered"), "{args:?}: a held store is not damage: {said}");
        assert_eq!(said.trim_end().lines().count(), 1, "{args:?}: one line: {said}");
    }
    // More lines later: committed in their turn, then the service is killed.
    let mut f = fs::OpenOptions::new().append(true).open(&live).unwrap();
    std::io::Write::write_all(&mut f, &joined(rest)).unwrap();
    drop(f);
    let all = lines.len() as u64 - 40;
    assert!(wait_for(all) >= all, "the appended lines were not committed: HEAD {}", head());
    child.kill().unwrap();
    child.wait().unwrap();
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    // Ingesting the whole file again adds nothing: every line was acknowledged.
    let again = ingest(&store, &live, &[]);
    assert_eq!(again["store"]["stored"].as_u64(), Some(0), "{again}");
}
