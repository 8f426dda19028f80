//! No subject id in clear anywhere in the store: after `ingest` of every
//! scenario (as the simulator writes it, and as a platform writes it whose
//! Authentication and API events do not say "customer"), and after `scope`
//! and `export` commands that name customers, no id the simulator wrote
//! (every subject, every customer principal) appears in any file of the
//! store, decompressed, nor in the export.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use arrow_array::{Array, ListArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use support::ok;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The input's lines (lossy).
fn lines(path: &Path) -> Vec<String> {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(path).unwrap()).read_to_end(&mut bytes).unwrap();
    // The simulator writes some malformed lines, invalid UTF-8 among them.
    String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
}

/// Every id that must never be stored in clear: the truth's exposed
/// subjects, every `resources[].uid`, and every principal the directory
/// does not list as staff or a service.
fn secret_ids(sim: &Path, input: &[String]) -> HashSet<String> {
    let dir: Value = serde_json::from_str(&fs::read_to_string(sim.join("directory.json")).unwrap()).unwrap();
    let staff: HashSet<&str> = dir["principals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "employee" || p["kind"] == "service")
        .map(|p| p["uid"].as_str().unwrap())
        .collect();
    let mut ids = HashSet::new();
    let truth: Value = serde_json::from_str(&fs::read_to_string(sim.join("truth.json")).unwrap()).unwrap();
    for a in truth["attacks"].as_array().unwrap() {
        for id in a["exposed_subjects"].as_array().unwrap() {
            ids.insert(id.as_str().unwrap().to_owned());
        }
    }
    for line in input {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for r in v["resources"].as_array().into_iter().flatten() {
            if let Some(id) = r["uid"].as_str() {
                ids.insert(id.to_owned());
            }
        }
        for p in [&v["actor"]["user"]["uid"], &v["user"]["uid"]] {
            if let Some(id) = p.as_str()
                && !staff.contains(id)
            {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// Every file under `dir` (or `dir`, a file).
fn files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_owned()];
    }
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

/// Every string of every column of a Parquet file, one per line.
fn parquet_text(path: &Path) -> Vec<u8> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    let mut push = |a: &dyn Array| {
        if let Some(x) = a.as_any().downcast_ref::<StringArray>() {
            for v in x.iter().flatten() {
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
        }
    };
    for batch in reader {
        let batch = batch.unwrap();
        for col in batch.columns() {
            push(col.as_ref());
            if let Some(l) = col.as_any().downcast_ref::<ListArray>() {
                push(l.values().as_ref());
            }
        }
    }
    out
}

/// What a file holds, as the store's reader sees it: ledger segments'
/// blocks decompressed, Parquet columns read out; every file's raw bytes too.
fn contents(path: &Path) -> Vec<Vec<u8>> {
    let raw = fs::read(path).unwrap();
    let mut out = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("seg") => out.extend(support::ledger::blocks(&raw).into_iter().map(|b| b.2)),
        Some("parquet") => out.push(parquet_text(path)),
        _ => {}
    }
    out.push(raw);
    out
}

/// An id's bytes that stand alone: no id character just before or after
/// (so a customer id is not "found" inside a hex pseudonym).
fn stands_alone(hay: &[u8], start: usize, end: usize) -> bool {
    let id = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (start == 0 || !id(hay[start - 1])) && hay.get(end).is_none_or(|&b| !id(b))
}

/// (file, id, context) of every id found in clear under `dirs`.
fn leaks(dirs: &[&Path], ids: &HashSet<String>) -> Vec<(String, String, String)> {
    let ids: Vec<&String> = ids.iter().collect();
    let ac = AhoCorasick::new(&ids).unwrap();
    let mut found = Vec::new();
    for dir in dirs {
        for f in files(dir) {
            for hay in contents(&f) {
                for m in ac.find_overlapping_iter(&hay) {
                    if stands_alone(&hay, m.start(), m.end()) {
                        let ctx =
                            String::from_utf8_lossy(&hay[m.start().saturating_sub(60)..(m.end() + 60).min(hay.len())])
                                .into_owned();
                        found.push((f.display().to_string(), ids[m.pattern().as_usize()].clone(), ctx));
                    }
                }
            }
        }
    }
    found
}

/// The input as a platform writes it whose events say `User`, as OCSF's
/// user types do, never "customer".
fn ocsf_typed(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| l.replace(r#","type":"customer"}"#, r#","type":"User"}"#)).collect()
}

#[test]
fn no_subject_id_in_clear_in_any_file_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for scenario in simulate::scenarios::SCENARIOS.iter().map(|s| s.0) {
        let sim = support::simulation(scenario, 2500, 3);
        let input = lines(&sim.join("events.jsonl.gz"));
        let ids = secret_ids(&sim, &input);
        assert!(ids.len() > 1000, "{scenario}: {} ids", ids.len());
        let plain = tmp.path().join(format!("{scenario}-ocsf.jsonl"));
        fs::write(&plain, ocsf_typed(&input).join("\n") + "\n").unwrap();
        for (name, path) in [("as simulated", sim.join("events.jsonl.gz")), ("OCSF user types", plain.clone())] {
            let store = tmp.path().join(format!("{scenario}-{}", name.replace(' ', "-")));
            let findings = tmp.path().join(format!("{scenario}-findings.jsonl"));
            ok(&[
                "ingest",
                "--store",
                s(&store),
                "--directory",
                s(&sim.join("directory.json")),
                "--quarantine",
                s(&tmp.path().join("q.jsonl")),
                "--out",
                s(&findings),
                s(&path),
            ]);
            // Questions that name customers and subjects, and scopes of every
            // finding that names a principal, re-identifying.
            let customer = input
                .iter()
                .find_map(|l| {
                    l.split(r#""actor":{"user":{"uid":"c"#).nth(1).map(|r| format!("c{}", r.split('"').next().unwrap()))
                })
                .unwrap();
            let subject = input
                .iter()
                .find_map(|l| {
                    l.split(r#""resources":[{"uid":""#).nth(1).map(|r| r.split('"').next().unwrap().to_owned())
                })
                .unwrap();
            let expr = format!(r#"actor.user.uid = "{customer}" or resources.uid in ("{subject}", "c99999999")"#);
            ok(&[
                "scope",
                "--store",
                s(&store),
                "--where",
                &expr,
                "--subjects-out",
                s(&tmp.path().join("subjects.txt")),
            ]);
            ok(&["scope", "--store", s(&store), "--where", &format!(r#"not actor.user.uid = "{customer}""#)]);
            let text = fs::read_to_string(&findings).unwrap();
            let mut uids: Vec<String> = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|f| f["observables"].as_array().unwrap().iter().any(|o| o["name"] == "actor.user.uid"))
                .map(|f| f["finding_info"]["uid"].as_str().unwrap().to_owned())
                .collect();
            uids.dedup();
            for uid in uids.iter().take(5) {
                ok(&["scope", "--store", s(&store), "--alert", uid]);
            }
            // An incident from a finding that names a customer, run to its report and notices
            // (written outside the store), and the posture audit: what they record in the store
            // names nobody in clear either.
            let first = text.lines().next().map(|l| serde_json::from_str::<Value>(l).unwrap());
            if let Some(uid) =
                uids.first().cloned().or_else(|| first.map(|f| f["finding_info"]["uid"].as_str().unwrap().to_owned()))
            {
                ok(&["incident", "open", "--store", s(&store), "--from-alert", &uid]);
                ok(&["incident", "aware", "--store", s(&store), "INC-1", "--at", "2026-12-07T12:00:00Z"]);
                ok(&["incident", "note", "--store", s(&store), "INC-1", "scoped and reported"]);
                let out = tmp.path().join(format!("{scenario}-{}-report", name.replace(' ', "-")));
                ok(&["report", "--store", s(&store), "--incident", "INC-1", "--out", s(&out), "--notices"]);
            }
            ok(&["audit", "--store", s(&store), "--directory", s(&sim.join("directory.json"))]);
            let lake = tmp.path().join(format!("{scenario}-lake"));
            ok(&["export", "--store", s(&store), "--format", "parquet", "--out", s(&lake)]);
            let found = leaks(&[&store, &lake], &ids);
            if !found.is_empty() {
                // What kind of record each leak is in (an event, a finding, an audit...).
                let mut kinds: Vec<&str> = found
                    .iter()
                    .map(|(_, _, ctx)| {
                        ["\"class\":\"access", "\"class\":\"issuance", "\"command\":", "finding_info", "observables"]
                            .into_iter()
                            .find(|k| ctx.contains(k))
                            .unwrap_or("other")
                    })
                    .collect();
                kinds.sort_unstable();
                kinds.dedup();
                failures.push(format!(
                    "{scenario} ({name}): {} ids in clear (in {kinds:?}), for example {:?}",
                    found.len(),
                    &found[..found.len().min(2)]
                ));
            }
            // The responder's own output still names real ids.
            if scenario == "bola" && name == "as simulated" {
                assert!(text.contains("\"actor.user.uid\""), "{text}");
                assert!(!leaks(&[&findings], &ids).is_empty(), "findings on stdout/--out name the real customer");
            }
            fs::remove_dir_all(&store).unwrap();
            fs::remove_dir_all(&lake).unwrap();
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 2 * simulate::scenarios::SCENARIOS.len());
}
