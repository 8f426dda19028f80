//! Signed Merkle checkpoints of the ledger, so that a third party can hold
//! the store to its past.
//!
//! The hash chain proves that the ledger is intact *given* `HEAD`; someone
//! who rewrites every record and `HEAD` consistently goes unnoticed by it.
//! So the ledger is also an RFC 6962 Merkle tree (as a Certificate
//! Transparency log is), and at every commit the store signs its root:
//!
//! - **Leaves.** One per ledger record, in ledger order. The leaf data is
//!   `kind: u8 | len: u32 LE | payload` (exactly the bytes the chain hash
//!   covers after the previous hash), the leaf hash `SHA-256(0x00 | leaf data)`.
//!   `merkle/leaves` keeps the leaf hashes, 32 bytes per record, append-only,
//!   so proofs never reread the ledger. It is made durable *before* `HEAD`
//!   names the records, so after a crash it can only be ahead (cut back when
//!   the store is next opened); if it is behind (lost), it is caught up from
//!   the ledger, and the leaves it had are checked against the records first.
//! - **Checkpoints.** A [C2SP tlog-checkpoint] body (`origin\nsize\nbase64(root)\n`)
//!   signed as a [C2SP signed note] with Ed25519 (`\n— name base64(key id | signature)\n`).
//!   After every ledger commit the note is appended to `merkle/checkpoints`
//!   (the history, one note after another) and replaces `merkle/checkpoint`
//!   (atomically). A checkpoint a third party holds can be proven consistent
//!   with any later one, and any record proven included in it.
//! - **Key.** `checkpoint.key` (mode 0600, never printed) holds the signing
//!   key in Go's `PRIVATE+KEY+name+id+key` form, created on first use;
//!   `checkpoint.pub` the verifier key (`name+id+base64(0x01 | public key)`),
//!   the one to hand out. The key name, and every checkpoint's origin, is
//!   `piiwatch/<16 hex digits>`, random once per store and kept in the key
//!   files. The store refuses to make a new key when `checkpoint.pub` exists
//!   without `checkpoint.key`: checkpoints already given out would no longer
//!   match it.
//!
//! [`Checkpointer`] is what the ledger calls (it is attached to
//! [`ledger::Ledger`]: every append is pushed, every commit signed); [`verify`]
//! recomputes the tree from the ledger's records and checks the latest
//! checkpoint and every checkpoint of the history against it (a checkpoint of
//! `m` records is consistent with the ledger exactly when the first `m`
//! records hash to its root, which is what is compared). [`Leaves`] builds
//! inclusion and consistency proofs, [`Inclusion::check`] and
//! [`Consistency::check`] verify them as a third party does, with nothing but
//! the verifier key and the checkpoints.
//!
//! What is ours and what is not: proof verification, and which tree nodes a
//! proof needs, are `ct-merkle`'s; signatures `ed25519-dalek`'s; base64 the
//! `base64` crate's. `ct-merkle`'s tree is in memory and holds every leaf's
//! value, so it cannot serve a store's millions of records; instead its
//! `indices_for_*_proof` name the nodes and this module computes each node's
//! hash (the RFC 6962 Merkle tree hash of a range of leaf hashes) from
//! `merkle/leaves` ([`Frontier`]; tests compare it with `ct-merkle`'s tree).
//! A proof reads the leaf hashes up to its tree size once (32 bytes per
//! record). The note format is written here (a small strict parser, fuzzed
//! and tested against the Go implementation's vectors): the crates that
//! implement it pull a second, older Ed25519 and SHA-2 stack.
//!
//! What a checkpoint does not prove: it binds the store to what it signed,
//! for whoever holds the checkpoint. Someone who can rewrite the ledger, the
//! leaves, the history and sign with the store's key, or who deletes `merkle/`
//! and the key files, gets a store that verifies locally; checkpoints handed
//! to a third party earlier then fail `piiwatch proof check`.
//!
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [C2SP signed note]: https://c2sp.org/signed-note

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::ledger::{self, Hash, Report};

/// The directory of the store holding the tree and the checkpoints.
pub const MERKLE_DIR: &str = "merkle";
/// The signing key, in the store directory (mode 0600).
pub const KEY_FILE: &str = "checkpoint.key";
/// The verifier key, in the store directory: what third parties check with.
pub const PUB_FILE: &str = "checkpoint.pub";
/// Leaf hashes, 32 bytes per record, in [`MERKLE_DIR`].
pub const LEAVES_FILE: &str = "leaves";
/// The latest signed checkpoint, in [`MERKLE_DIR`].
pub const LATEST_FILE: &str = "checkpoint";
/// Every signed checkpoint, one note after another, in [`MERKLE_DIR`].
pub const HISTORY_FILE: &str = "checkpoints";
/// A cache of the tree's right edge at the last commit (rebuilt when stale).
const FRONTIER_FILE: &str = "frontier";

/// The signed-note algorithm byte of Ed25519.
const ALG_ED25519: u8 = 1;
/// Notes larger than this are not parsed.
pub const MAX_NOTE: usize = 1 << 20;
/// Notes with more signatures than this are not parsed.
const MAX_SIGNATURES: usize = 100;
/// Tree sizes beyond this are refused before `ct-merkle` sees them (its
/// index arithmetic assumes fewer than 2^63 leaves).
pub const MAX_TREE: u64 = 1 << 62;
/// Leaf hashes read at once.
const CHUNK: usize = 1 << 15;

/// Why a note, key, checkpoint or proof is not accepted: one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// Errors building a proof.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The tree does not have what was asked for (a record or size past its end).
    #[error("{0}")]
    Range(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

mod check;
mod keep;
mod note;
mod proof;
mod tree;

pub use check::*;
pub use keep::*;
pub use note::*;
pub use proof::*;
pub use tree::*;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    // Go's golang.org/x/mod/sumdb/note test vectors.
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn note_format_matches_the_go_vectors() {
        let signer = NoteSigner::parse(PETER_SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        assert_eq!(signer.encode_private(), PETER_SKEY);
        assert_eq!(signer.sign(PETER_TEXT), PETER_NOTE);
        let key = VerifierKey::parse(PETER_VKEY).unwrap();
        let note = Note::parse(PETER_NOTE).unwrap();
        assert_eq!(note.verify(&key).unwrap(), PETER_TEXT);
        assert_eq!(note.encode(), PETER_NOTE);
        // Two signatures: each key verifies its own, neither the other's.
        let both = format!("{PETER_NOTE}{ENOCH_SIG}");
        let note = Note::parse(&both).unwrap();
        assert_eq!(note.signatures().len(), 2);
        assert!(note.verify(&VerifierKey::parse(ENOCH_VKEY).unwrap()).is_ok());
        assert!(note.verify(&key).is_ok());
        // Any flipped character of the text or signature fails.
        for i in [0, 10, PETER_TEXT.len() - 2] {
            let mut b = PETER_NOTE.as_bytes().to_vec();
            b[i] ^= 1;
            let s = String::from_utf8(b).unwrap();
            assert!(Note::parse(&s).map(|n| n.verify(&key).is_err()).unwrap_or(true), "flip at {i}");
        }
        let sig_at = PETER_NOTE.find("x08go").unwrap();
        for i in [sig_at + 5, sig_at + 40, PETER_NOTE.len() - 4] {
            let mut b = PETER_NOTE.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).unwrap();
            assert!(Note::parse(&s).map(|n| n.verify(&key).is_err()).unwrap_or(true), "flip at {i}");
        }
        // Malformed notes.
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "text\n\n\u{2014} PeterNeumann x08go\n",
            "text\n\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            "te\txt\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VerifierKey::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteSigner::parse(PETER_VKEY).is_err());
    }

    #[test]
    fn checkpoint_body_round_trips_and_is_strict() {
        // The C2SP tlog-checkpoint example body.
        let text = "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
        let cp = Checkpoint::parse_body(text).unwrap();
        assert_eq!((cp.origin.as_str(), cp.size), ("example.com/origin", 123));
        assert_eq!(cp.body(), text);
        for bad in [
            "example.com/origin\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "example.com/origin\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40Hmuw\n",
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=",
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\next\n",
            "\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
        let signer = NoteSigner::from_seed("piiwatch/00", &[7; 32]).unwrap();
        let cp = Checkpoint { origin: "piiwatch/00".into(), size: 5, root: [9; 32] };
        let note = signer.sign(&cp.body());
        assert_eq!(Checkpoint::open(&note, &signer.verifier()).unwrap(), cp);
        let other = NoteSigner::from_seed("piiwatch/01", &[7; 32]).unwrap();
        let wrong_origin = other.sign(&cp.body());
        assert!(Checkpoint::open(&wrong_origin, &other.verifier()).unwrap_err().0.contains("origin"));
    }

    #[test]
    fn notes_split_one_after_another() {
        let s = NoteSigner::from_seed("a", &[1; 32]).unwrap();
        let n1 = s.sign("one\n");
        let n2 = s.sign("two\n\nwith a blank line\n");
        let n3 = format!("{}{ENOCH_SIG}", s.sign("three\n"));
        let all = format!("{n1}{n2}{n3}");
        let (notes, torn) = split_notes(&all);
        assert_eq!(notes, vec![n1.as_str(), n2.as_str(), n3.as_str()]);
        assert_eq!(torn, "");
        for cut in 1..n3.len() {
            let Some(part) = all.get(..n1.len() + n2.len() + cut) else { continue };
            let (notes, torn) = split_notes(part);
            if cut == n3.len() - ENOCH_SIG.len() {
                // A whole note with one signature, the second not begun.
                assert_eq!(notes.len(), 3);
            } else {
                assert_eq!(notes.len(), 2, "cut {cut}");
                assert_eq!(torn.len(), cut);
            }
        }
    }

    fn tree(n: u64) -> (Frontier, MemoryBackedTree<Sha256, Vec<u8>>, Vec<Hash>) {
        let mut f = Frontier::new();
        let mut t = MemoryBackedTree::new();
        let mut hashes = Vec::new();
        for i in 0..n {
            let payload = format!("record {i}").into_bytes();
            let h = leaf_hash(1 + (i % 3) as u8, &payload);
            assert_eq!(h, leaf_hash_of(&leaf_data(1 + (i % 3) as u8, &payload)));
            f.push(h);
            t.push(leaf_data(1 + (i % 3) as u8, &payload));
            hashes.push(h);
        }
        (f, t, hashes)
    }

    fn leaves_file(dir: &Path, hashes: &[Hash]) -> Leaves {
        fs::create_dir_all(dir.join(MERKLE_DIR)).unwrap();
        fs::write(dir.join(MERKLE_DIR).join(LEAVES_FILE), hashes.concat()).unwrap();
        Leaves::open(dir).unwrap()
    }

    #[test]
    fn roots_and_proofs_from_the_leaves_file_equal_ct_merkle() {
        // RFC 6962: the empty tree's root is SHA-256 of nothing.
        assert_eq!(
            hex::encode(Frontier::new().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let dir = tempfile::tempdir().unwrap();
        let (_, _, all) = tree(70);
        let leaves = leaves_file(dir.path(), &all);
        for n in 1..=70u64 {
            let (f, t, _) = tree(n);
            assert_eq!(f.root(), <[u8; 32]>::from(*t.root().as_bytes()), "size {n}");
            assert_eq!(leaves.root(n).unwrap(), f.root(), "size {n}");
            for i in 0..n {
                let ours = leaves.inclusion(i, n).unwrap().concat();
                assert_eq!(ours, t.prove_inclusion(i as usize).as_bytes(), "inclusion {i} of {n}");
            }
            for old in 1..=n {
                let ours = leaves.consistency(old, n).unwrap().concat();
                assert_eq!(ours, t.prove_consistency((n - old) as usize).as_bytes(), "consistency {old} to {n}");
            }
        }
        assert!(matches!(leaves.inclusion(70, 70), Err(ProofError::Range(_))));
        assert!(matches!(leaves.root(71), Err(ProofError::Range(_))));
        assert!(matches!(leaves.consistency(0, 5), Err(ProofError::Range(_))));
        let f = tree(37).0;
        assert_eq!(Frontier::decode(&f.encode()), Some(f.clone()));
        let mut bad = f.encode();
        bad[3] ^= 1;
        assert_eq!(Frontier::decode(&bad), None);
    }

    #[test]
    fn proofs_check_and_fail_as_a_third_party_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, all) = tree(40);
        let leaves = leaves_file(dir.path(), &all);
        let cp = |n| Checkpoint { origin: "o".into(), size: n, root: leaves.root(n).unwrap() };
        for (i, n) in [(0u64, 1u64), (3, 7), (39, 40), (16, 33)] {
            let data = leaf_data(1 + (i % 3) as u8, format!("record {i}").as_bytes());
            let p = Inclusion {
                origin: "o".into(),
                record: i,
                tree_size: n,
                root: encode_hash(&leaves.root(n).unwrap()),
                leaf_hash: encode_hash(&leaf_hash_of(&data)),
                leaf_data: B64.encode(&data),
                audit_path: leaves.inclusion(i, n).unwrap().iter().map(encode_hash).collect(),
            };
            p.check(&cp(n)).unwrap();
            // Another record's data, with its own (correct) leaf hash.
            let other = leaf_data(1, b"record X");
            let wrong =
                Inclusion { leaf_data: B64.encode(&other), leaf_hash: encode_hash(&leaf_hash_of(&other)), ..p.clone() };
            assert!(wrong.check(&cp(n)).unwrap_err().0.contains("not in the checkpoint's tree"), "{i} {n}");
            assert!(Inclusion { record: i ^ 1, ..p.clone() }.check(&cp(n)).is_err() || n == 1);
            assert!(Inclusion { leaf_hash: encode_hash(&[0; 32]), ..p.clone() }.check(&cp(n)).is_err());
            assert!(p.check(&Checkpoint { size: n + 1, ..cp(n) }).is_err());
            if !p.audit_path.is_empty() {
                let mut q = p.clone();
                q.audit_path[0] = encode_hash(&[1; 32]);
                assert!(q.check(&cp(n)).is_err());
            }
        }
        for (old, new) in [(1u64, 1u64), (1, 40), (7, 8), (8, 40), (13, 29)] {
            let c = leaves.prove_consistency("o", old, new).unwrap();
            c.check(&cp(old), &cp(new)).unwrap();
            // An older tree that was rewritten.
            let forged = Checkpoint { root: [5; 32], ..cp(old) };
            let c2 = Consistency { old_root: encode_hash(&forged.root), ..c.clone() };
            assert!(c2.check(&forged, &cp(new)).is_err(), "{old} {new}");
            if !c.proof.is_empty() {
                let mut c3 = c.clone();
                c3.proof[0] = encode_hash(&[2; 32]);
                assert!(c3.check(&cp(old), &cp(new)).is_err(), "{old} {new}");
            }
        }
        // Huge sizes are refused before ct-merkle's arithmetic.
        let huge = Checkpoint { origin: "o".into(), size: u64::MAX, root: [0; 32] };
        let p = Inclusion {
            origin: "o".into(),
            record: u64::MAX - 1,
            tree_size: u64::MAX,
            root: encode_hash(&[0; 32]),
            leaf_hash: encode_hash(&leaf_hash_of(b"")),
            leaf_data: String::new(),
            audit_path: vec![],
        };
        assert!(p.check(&huge).is_err());
    }

    #[test]
    fn checkpointer_signs_each_commit_and_reconciles_its_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let mut l = ledger::Ledger::open(&store.join("ledger"), 1 << 20).unwrap();
        let cp = Checkpointer::open(store, &store.join("ledger"), 0).unwrap();
        l.attach(cp);
        for i in 0..100u32 {
            l.append(1, format!("r{i}").as_bytes()).unwrap();
            if i % 30 == 29 {
                l.commit().unwrap();
            }
        }
        l.commit().unwrap();
        drop(l);
        let (_, latest) = latest(store).unwrap();
        assert_eq!(latest.size, 100);
        let hist = fs::read_to_string(store.join(MERKLE_DIR).join(HISTORY_FILE)).unwrap();
        let sizes: Vec<u64> = split_notes(&hist)
            .0
            .iter()
            .map(|n| Checkpoint::parse_body(Note::parse(n).unwrap().text()).unwrap().size)
            .collect();
        assert_eq!(sizes, vec![0, 30, 60, 90, 100]);
        let mut r = Report::default();
        verify(store, &mut r);
        assert!(r.problems.is_empty() && r.notes.is_empty(), "{r:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(store.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        }

        // Leaves cut short (lost) and with a torn tail: caught up at open.
        let lp = store.join(MERKLE_DIR).join(LEAVES_FILE);
        let f = OpenOptions::new().write(true).open(&lp).unwrap();
        f.set_len(32 * 41 + 7).unwrap();
        drop(f);
        let _ = fs::remove_file(store.join(MERKLE_DIR).join(FRONTIER_FILE));
        let mut r = Report::default();
        verify(store, &mut r);
        assert!(r.problems.is_empty(), "{r:?}");
        assert!(r.notes.iter().any(|n| n.contains("holds 41 of 100")), "{r:?}");
        let c = Checkpointer::open(store, &store.join("ledger"), 100).unwrap();
        assert_eq!(c.size(), 100);
        assert_eq!(fs::metadata(&lp).unwrap().len(), 3200);
        let mut r = Report::default();
        verify(store, &mut r);
        assert!(r.problems.is_empty() && r.notes.is_empty(), "{r:?}");

        // A leaf altered: verify names it; an open that rebuilds the right
        // edge (no cache) refuses to sign over it.
        let mut b = fs::read(&lp).unwrap();
        b[32 * 7] ^= 1;
        fs::write(&lp, &b).unwrap();
        let mut r = Report::default();
        verify(store, &mut r);
        assert!(r.problems.iter().any(|p| p.contains("first record 7")), "{r:?}");
        fs::remove_file(store.join(MERKLE_DIR).join(FRONTIER_FILE)).unwrap();
        let err = Checkpointer::open(store, &store.join("ledger"), 100).unwrap_err().to_string();
        assert!(err.contains("does not match the latest checkpoint"), "{err}");
        b[32 * 7] ^= 1;
        fs::write(&lp, &b).unwrap();

        // A torn note at the end of the history: a note, cut at open.
        let hp = store.join(MERKLE_DIR).join(HISTORY_FILE);
        let mut h = fs::read(&hp).unwrap();
        let whole = h.len();
        h.extend_from_slice(b"piiwatch/x\n12\n");
        fs::write(&hp, &h).unwrap();
        let mut r = Report::default();
        verify(store, &mut r);
        assert!(r.problems.is_empty() && r.notes.iter().any(|n| n.contains("cut short")), "{r:?}");
        Checkpointer::open(store, &store.join("ledger"), 100).unwrap();
        assert_eq!(fs::metadata(&hp).unwrap().len() as usize, whole);

        // A new key while checkpoint.pub remains: refused.
        fs::rename(store.join(KEY_FILE), store.join("key.bak")).unwrap();
        assert!(Checkpointer::open(store, &store.join("ledger"), 100).unwrap_err().to_string().contains("restore"));
        fs::rename(store.join("key.bak"), store.join(KEY_FILE)).unwrap();
    }
}
