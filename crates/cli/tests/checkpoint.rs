//! Signed Merkle checkpoints driven through `piiwatch` as a store's owner
//! and a third party drive them: a checkpoint and its proofs check with the
//! verifier key alone and fail when anything is altered; a ledger rewritten
//! consistently (chain and `HEAD` recomputed) is named by `verify`; leaves
//! lost in a crash are caught up by the next ingest.

// The helpers below panic on unexpected I/O the way tests do: as a failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{ok, piiwatch};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A simulation decompressed to a plain file.
fn sample(dir: &Path, customers: u32, seed: u64) -> PathBuf {
    let sim = dir.join(format!("sim{seed}"));
    ok(&[
        "simulate",
        "--scenario",
        "coupang",
        "--out",
        s(&sim),
        "--customers",
        &customers.to_string(),
        "--days",
        "1",
        "--seed",
        &seed.to_string(),
    ]);
    let gz = fs::read(sim.join("events.jsonl.gz")).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut text).unwrap();
    let plain = dir.join(format!("events{seed}.jsonl"));
    fs::write(&plain, text).unwrap();
    plain
}

fn ingest(store: &Path, input: &Path) {
    let q = store.with_extension("quarantine.jsonl");
    let out = store.with_extension("findings.jsonl");
    ok(&["ingest", "--store", s(store), "--segment-bytes", "20000", "--quarantine", s(&q), "--out", s(&out), s(input)]);
}

/// `verify --format json`: (intact, report).
fn verify(store: &Path) -> (bool, Value) {
    let o = piiwatch(&["verify", "--store", s(store), "--format", "json"]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.success(), v["ok"].as_bool().unwrap(), "{v}");
    (o.status.success(), v)
}

fn joined(v: &Value, what: &str) -> String {
    v[what].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>().join(" | ")
}

/// Writes `text` to `dir/name` and returns the path.
fn save(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

/// The store's latest checkpoint and verifier key, saved as a third party keeps them.
fn hand_out(store: &Path, dir: &Path, tag: &str) -> (PathBuf, PathBuf, u64) {
    let note = ok(&["proof", "checkpoint", "--store", s(store)]).stdout;
    let key = ok(&["proof", "checkpoint", "--store", s(store), "--key"]).stdout;
    let size: u64 = String::from_utf8_lossy(&note).lines().nth(1).unwrap().parse().unwrap();
    (save(dir, &format!("{tag}.checkpoint"), &note), save(dir, &format!("{tag}.pub"), &key), size)
}

/// `proof check` with `args`: Ok(stdout) or Err(the one-line reason).
fn check(args: &[&str]) -> Result<String, String> {
    let mut all = vec!["proof", "check"];
    all.extend_from_slice(args);
    let o = piiwatch(&all);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
        Err(err)
    }
}

#[test]
fn a_signed_checkpoint_checks_with_its_key_and_fails_when_altered() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 400, 1);
    let (cp, key, size) = hand_out(&store, tmp.path(), "a");
    let head: Value = serde_json::from_str(&fs::read_to_string(store.join("ledger/HEAD")).unwrap()).unwrap();
    assert_eq!(size, head["records"].as_u64().unwrap());
    let out = check(&["--key", s(&key), "--checkpoint", s(&cp)]).unwrap();
    assert!(out.starts_with("ok: piiwatch/") && out.contains(&format!("at {size} records")), "{out}");
    // The same in JSON, with the verifier key beside the note.
    let j: Value =
        serde_json::from_slice(&ok(&["proof", "checkpoint", "--store", s(&store), "--format", "json"]).stdout).unwrap();
    assert_eq!(j["size"].as_u64(), Some(size));
    assert_eq!(j["key"].as_str().unwrap(), fs::read_to_string(&key).unwrap().trim());
    // The signing key never shows.
    let private = fs::read_to_string(store.join("checkpoint.key")).unwrap();
    // `PRIVATE+KEY+name+hash+key data`: the key data is base64, which may
    // itself hold a '+' (splitting at the last one made this test flaky).
    let secret = private.trim().splitn(5, '+').nth(4).unwrap();
    assert!(secret.len() > 40, "{secret}");
    assert!(!String::from_utf8_lossy(&j.to_string().into_bytes()).contains(secret));

    let note = fs::read(&cp).unwrap();
    let text = String::from_utf8(note.clone()).unwrap();
    // A flipped byte in the body: the size, the root, the origin.
    let root_at = text.find('\n').unwrap() + 1 + size.to_string().len() + 1;
    for (what, at) in [("origin", 3), ("size", text.find('\n').unwrap() + 1), ("root", root_at + 5)] {
        let mut b = note.clone();
        b[at] = if b[at] == b'1' { b'2' } else { b'1' };
        let err = check(&["--key", s(&key), "--checkpoint", s(&save(tmp.path(), "bad", &b))]).unwrap_err();
        assert!(err.contains("does not check"), "{what}: {err}");
    }
    // A flipped byte in the signature.
    let sig_at = text.rfind(' ').unwrap() + 10;
    let mut b = note.clone();
    b[sig_at] = if b[sig_at] == b'A' { b'B' } else { b'A' };
    let err = check(&["--key", s(&key), "--checkpoint", s(&save(tmp.path(), "bad", &b))]).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
    // Another store's key: its name and id differ.
    let (_, other) = support::simulated_store(tmp.path(), "insider", 100, 1);
    let (_, other_key, _) = hand_out(&other, tmp.path(), "other");
    let err = check(&["--key", s(&other_key), "--checkpoint", s(&cp)]).unwrap_err();
    assert!(err.contains("has no signature by"), "{err}");
    // Not a key at all.
    assert!(check(&["--key", s(&cp), "--checkpoint", s(&cp)]).unwrap_err().contains("not a verifier key"));
}

#[test]
fn inclusion_proofs_check_and_fail_for_a_wrong_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 400, 1);
    let (cp, key, size) = hand_out(&store, tmp.path(), "a");
    let mut proofs = Vec::new();
    for record in [0, 1, 2, size / 3, size / 2 + 1, size - 2, size - 1] {
        let out = ok(&["proof", "inclusion", "--store", s(&store), "--record", &record.to_string()]).stdout;
        let p: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((p["record"].as_u64(), p["tree_size"].as_u64()), (Some(record), Some(size)));
        assert!(!p["audit_path"].as_array().unwrap().is_empty(), "{p}");
        let file = save(tmp.path(), &format!("inc{record}.json"), &out);
        let got = check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&file)]).unwrap();
        assert!(got.contains(&format!("record {record} is in it")), "{got}");
        proofs.push(p);
    }
    // A wrong leaf: another record's data and hash under this record's path.
    let mut wrong = proofs[3].clone();
    wrong["leaf_data"] = proofs[4]["leaf_data"].clone();
    wrong["leaf_hash"] = proofs[4]["leaf_hash"].clone();
    let file = save(tmp.path(), "wrong.json", wrong.to_string().as_bytes());
    let err = check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&file)]).unwrap_err();
    assert!(err.contains("is not in the checkpoint's tree"), "{err}");
    // A record's bytes altered, its leaf hash recomputed to match.
    let mut data = base64_decode(proofs[2]["leaf_data"].as_str().unwrap());
    let at = data.len() / 2;
    data[at] ^= 1;
    let mut altered = proofs[2].clone();
    altered["leaf_data"] = base64_encode(&data).into();
    altered["leaf_hash"] = store::checkpoint::encode_hash(&store::checkpoint::leaf_hash_of(&data)).into();
    let file = save(tmp.path(), "altered.json", altered.to_string().as_bytes());
    assert!(check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&file)]).is_err());
    // The right leaf at another position.
    let mut moved = proofs[0].clone();
    moved["record"] = 1.into();
    let file = save(tmp.path(), "moved.json", moved.to_string().as_bytes());
    assert!(check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&file)]).is_err());
    // A path hash altered.
    let mut path = proofs[5].clone();
    path["audit_path"][3] = proofs[5]["audit_path"][4].clone();
    let file = save(tmp.path(), "path.json", path.to_string().as_bytes());
    assert!(check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&file)]).is_err());
    // The leaf data is the ledger record: kind 1 (an event), JSON with pseudonyms.
    let data = base64_decode(proofs[1]["leaf_data"].as_str().unwrap());
    assert_eq!(u32::from_le_bytes(data[1..5].try_into().unwrap()) as usize, data.len() - 5);
    assert!(data[5..].starts_with(b"{\"class\":"), "{}", String::from_utf8_lossy(&data));

    // Usage errors exit 2 with one line; --help works on each subcommand.
    for args in [
        vec!["proof", "inclusion", "--store", s(&store), "--record", &size.to_string()],
        vec!["proof", "inclusion", "--store", s(&store), "--record", "0", "--size", "7"],
        vec!["proof", "consistency", "--store", s(&store), "--from", "0"],
        vec!["proof", "check", "--key", s(&key), "--checkpoint", s(&cp), "--consistency", s(&cp)],
        vec!["proof", "nonsense"],
    ] {
        let o = piiwatch(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        if !args.contains(&"nonsense") && !args.contains(&"--consistency") {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
    for sub in ["checkpoint", "inclusion", "consistency", "check"] {
        let o = ok(&["proof", sub, "--help"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("--format"), "{sub}");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn an_older_checkpoint_is_proven_consistent_with_a_newer_one_after_another_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample(tmp.path(), 300, 1);
    let bytes = fs::read(&input).unwrap();
    let cut = bytes[..bytes.len() / 2].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let growing = save(tmp.path(), "growing.jsonl", &bytes[..cut]);
    let store = tmp.path().join("store");
    ingest(&store, &growing);
    let (old, key, old_size) = hand_out(&store, tmp.path(), "old");
    fs::write(&growing, &bytes).unwrap();
    ingest(&store, &growing);
    let (new, _, new_size) = hand_out(&store, tmp.path(), "new");
    assert!(new_size > old_size + 100, "{old_size} -> {new_size}");

    let out = ok(&["proof", "consistency", "--store", s(&store), "--from", &old_size.to_string()]).stdout;
    let proof: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((proof["old_size"].as_u64(), proof["new_size"].as_u64()), (Some(old_size), Some(new_size)));
    let file = save(tmp.path(), "consistency.json", &out);
    let got =
        check(&["--key", s(&key), "--checkpoint", s(&new), "--consistency", s(&file), "--old-checkpoint", s(&old)])
            .unwrap();
    assert!(got.contains(&format!("extends the signed tree of {old_size} records")), "{got}");
    // The checkpoints swapped: refused.
    assert!(
        check(&["--key", s(&key), "--checkpoint", s(&old), "--consistency", s(&file), "--old-checkpoint", s(&new)])
            .is_err()
    );
    // A proof hash altered.
    let mut bad = proof.clone();
    bad["proof"][0] = proof["proof"][1].clone();
    let bad = save(tmp.path(), "bad.json", bad.to_string().as_bytes());
    let err =
        check(&["--key", s(&key), "--checkpoint", s(&new), "--consistency", s(&bad), "--old-checkpoint", s(&old)])
            .unwrap_err();
    assert!(err.contains("does not check"), "{err}");
    // The old checkpoint is still in the store's history, and proofs between
    // any two signed sizes come from the same leaves.
    let again = ok(&["proof", "checkpoint", "--store", s(&store), "--size", &old_size.to_string()]).stdout;
    assert_eq!(again, fs::read(&old).unwrap());
    let mid =
        ok(&["proof", "inclusion", "--store", s(&store), "--record", "3", "--size", &old_size.to_string()]).stdout;
    let mid = save(tmp.path(), "mid.json", &mid);
    check(&["--key", s(&key), "--checkpoint", s(&old), "--inclusion", s(&mid)]).unwrap();
    assert!(check(&["--key", s(&key), "--checkpoint", s(&new), "--inclusion", s(&mid)]).is_err());

    // The owner rewrites the past, keeping the key, and starts the history
    // afresh: the store verifies on its own, but the checkpoint the third
    // party holds is no prefix of anything it now signs.
    let mut records = Vec::new();
    store::ledger::scan(&store.join("ledger"), |r| records.push((r.kind, r.payload.to_vec()))).unwrap();
    records.truncate(old_size as usize);
    let input_at = records.iter().rposition(|(k, _)| *k == store::kind::INPUT).unwrap();
    let mut mark: Value = serde_json::from_slice(&records[input_at].1).unwrap();
    mark["lines"] = (mark["lines"].as_u64().unwrap() - 1).into();
    records[input_at].1 = serde_json::to_vec(&mark).unwrap();
    forge_ledger(&store, &records);
    for f in ["merkle", "index.redb", "inputs.json"] {
        let p = store.join(f);
        if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) }.unwrap();
    }
    ingest(&store, &growing);
    assert!(verify(&store).0);
    let (rewritten, _, size) = hand_out(&store, tmp.path(), "rewritten");
    let out = ok(&["proof", "consistency", "--store", s(&store), "--from", &old_size.to_string()]).stdout;
    let file = save(tmp.path(), "rewritten.json", &out);
    let err = check(&[
        "--key",
        s(&key),
        "--checkpoint",
        s(&rewritten),
        "--consistency",
        s(&file),
        "--old-checkpoint",
        s(&old),
    ])
    .unwrap_err();
    assert!(err.contains("old root is not the older checkpoint's"), "{size}: {err}");
}

/// Replaces the store's ledger with one holding `records`, hash chain,
/// segment links and `HEAD` recomputed (as someone covering their tracks
/// would, with the store's own code).
fn forge_ledger(store: &Path, records: &[(u8, Vec<u8>)]) {
    let forged = store.join("forged-ledger");
    let mut l = store::ledger::Ledger::open(&forged, 20_000).unwrap();
    for (k, p) in records {
        l.append(*k, p).unwrap();
    }
    l.commit().unwrap();
    drop(l);
    fs::remove_dir_all(store.join("ledger")).unwrap();
    fs::rename(&forged, store.join("ledger")).unwrap();
}

/// Copies a store's files (top level, `ledger/`, `merkle/`), leaving out `skip`.
fn copy_store(from: &Path, to: &Path, skip: &[&str]) {
    for sub in ["", "ledger", "merkle"] {
        if !from.join(sub).is_dir() || skip.contains(&sub) {
            continue;
        }
        fs::create_dir_all(to.join(sub)).unwrap();
        for e in fs::read_dir(from.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let rel = if sub.is_empty() { name.clone() } else { format!("{sub}/{name}") };
            if p.is_file() && !skip.iter().any(|s| rel == *s || rel.starts_with(&format!("{s}/"))) {
                fs::copy(&p, to.join(&rel)).unwrap();
            }
        }
    }
}

#[test]
fn verify_names_a_ledger_rewritten_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 400, 1);
    assert!(verify(&store).0);

    // A record altered, the whole chain and HEAD recomputed, the index
    // dropped (it is rebuilt at the next open): only the checkpoints tell.
    let forged = tmp.path().join("forged");
    copy_store(&store, &forged, &[]);
    let mut records = Vec::new();
    store::ledger::scan(&forged.join("ledger"), |r| records.push((r.kind, r.payload.to_vec()))).unwrap();
    let at = records.iter().position(|(k, _)| *k == store::kind::INPUT).unwrap();
    let mut mark: Value = serde_json::from_slice(&records[at].1).unwrap();
    mark["input"] = "something-else.jsonl".into();
    records[at].1 = serde_json::to_vec(&mark).unwrap();
    forge_ledger(&forged, &records);
    fs::remove_file(forged.join("index.redb")).unwrap();
    let (intact, v) = verify(&forged);
    assert!(!intact, "a rewritten ledger verifies: {v}");
    let p = joined(&v, "problems");
    assert!(p.contains("do not hash to the signed root: the ledger was rewritten"), "{p}");
    assert!(p.contains(&format!("first record {at}")), "{p}");
    assert!(p.contains("signed checkpoints are not consistent with the ledger"), "{p}");
    assert!(!p.contains(".seg"), "the chain itself is consistent: {p}");
    // Without its checkpoints the same store verifies: they are what caught it.
    let bare = tmp.path().join("bare");
    copy_store(&forged, &bare, &["merkle", "checkpoint.key", "checkpoint.pub"]);
    let (intact, v) = verify(&bare);
    assert!(intact, "{v}");
    assert!(joined(&v, "notes").contains("no checkpoints"), "{v}");
    // Using the rewritten store (a scope, recorded and signed) hides nothing:
    // what it signs extends the checkpoints, not the rewritten ledger.
    ok(&["scope", "--store", s(&forged), "--where", "api.operation = \"x\""]);
    let (intact, v) = verify(&forged);
    assert!(!intact && joined(&v, "problems").contains("do not hash to the signed root"), "{v}");

    // Another store's ledger, HEAD, index, subject map and secret in place
    // of this one's (same shape, other content): named too.
    let (_, other) = support::simulated_store(tmp.path(), "insider", 400, 1);
    let swapped = tmp.path().join("swapped");
    copy_store(&store, &swapped, &[]);
    fs::remove_dir_all(swapped.join("ledger")).unwrap();
    copy_store(&other, &swapped, &["merkle", "checkpoint.key", "checkpoint.pub"]);
    let (intact, v) = verify(&swapped);
    assert!(!intact, "{v}");
    let p = joined(&v, "problems");
    assert!(p.contains("checkpoint"), "{p}");
    assert!(!p.contains("index.redb") && !p.contains("subjects.map"), "only the checkpoints differ: {p}");
}

#[test]
fn leaves_lost_or_torn_in_a_crash_are_reconciled_by_the_next_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sample(tmp.path(), 300, 2);
    let store = tmp.path().join("store");
    ingest(&store, &input);
    let leaves = store.join("merkle/leaves");
    let records = fs::metadata(&leaves).unwrap().len() / 32;
    assert!(records > 1000);

    // Cut short mid-leaf (and its cache gone): a note, not damage.
    let f = fs::OpenOptions::new().write(true).open(&leaves).unwrap();
    f.set_len(32 * (records / 3) + 17).unwrap();
    drop(f);
    fs::remove_file(store.join("merkle/frontier")).unwrap();
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    assert!(joined(&v, "notes").contains(&format!("holds {} of {records} records", records / 3)), "{v}");
    // The next ingest (of nothing new) catches up and signs again.
    ingest(&store, &input);
    let (intact, v) = verify(&store);
    assert!(intact && joined(&v, "notes").is_empty(), "{v}");
    let now = v["acknowledged"].as_u64().unwrap();
    assert!(now > records);
    assert_eq!(fs::metadata(&leaves).unwrap().len(), 32 * now);
    let (cp, key, size) = hand_out(&store, tmp.path(), "after");
    assert_eq!(size, now);
    let p = ok(&["proof", "inclusion", "--store", s(&store), "--record", &(records / 2).to_string()]).stdout;
    let p = save(tmp.path(), "p.json", &p);
    check(&["--key", s(&key), "--checkpoint", s(&cp), "--inclusion", s(&p)]).unwrap();

    // Leaves past HEAD (appended, never committed) and a checkpoint behind
    // it (a crash between HEAD and signing): notes, put right by the next open.
    let mut b = fs::read(&leaves).unwrap();
    b.extend_from_slice(&[7; 70]);
    fs::write(&leaves, &b).unwrap();
    let history = fs::read_to_string(store.join("merkle/checkpoints")).unwrap();
    let (notes, _) = store::checkpoint::split_notes(&history);
    let older = notes[notes.len() - 2];
    fs::write(store.join("merkle/checkpoint"), older).unwrap();
    let (intact, v) = verify(&store);
    assert!(intact, "{v}");
    let n = joined(&v, "notes");
    assert!(n.contains("leaves after the last commit") && n.contains("the latest checkpoint covers"), "{n}");
    ingest(&store, &input);
    let (intact, v) = verify(&store);
    assert!(intact && joined(&v, "notes").is_empty(), "{v}");

    // The leaves altered (not a crash): damage.
    let mut b = fs::read(&leaves).unwrap();
    b[32 * 5 + 1] ^= 1;
    fs::write(&leaves, &b).unwrap();
    let (intact, v) = verify(&store);
    assert!(!intact && joined(&v, "problems").contains("first record 5"), "{v}");
}
