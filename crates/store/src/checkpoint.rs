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

use crate::ledger::{self, Error, Hash, Report};

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

// ---------------------------------------------------------------------------
// Hashes

/// The leaf data of a record: `kind | len u32 LE | payload`.
pub fn leaf_data(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The RFC 6962 leaf hash of a record: `SHA-256(0x00 | kind | len | payload)`.
pub fn leaf_hash(kind: u8, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8, kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

/// The RFC 6962 leaf hash of leaf data: `SHA-256(0x00 | data)`.
pub fn leaf_hash_of(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// An RFC 6962 interior node: `SHA-256(0x01 | left | right)`.
fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of a Merkle tree being appended to: the roots of the
/// perfect subtrees that make it up, largest (leftmost) first, one per bit
/// of its size. Enough to append a leaf and to compute the RFC 6962 root,
/// in memory logarithmic in the size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        // Each trailing one of the size is a perfect subtree the new leaf completes.
        while n & 1 == 1 {
            if let Some(left) = self.stack.pop() {
                h = node(&left, &h);
            }
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The RFC 6962 Merkle tree hash (`SHA-256("")` for the empty tree).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(mut r) = it.next().copied() else { return Sha256::digest([]).into() };
        for left in it {
            r = node(left, &r);
        }
        r
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + 32 * self.stack.len() + 32);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.push(self.stack.len() as u8);
        for h in &self.stack {
            v.extend_from_slice(h);
        }
        let sum: Hash = Sha256::digest(&v).into();
        v.extend_from_slice(&sum);
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let body = b.get(..b.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != &b[body.len()..] || body.len() < 9 {
            return None;
        }
        let size = u64::from_le_bytes(body[..8].try_into().ok()?);
        let n = body[8] as usize;
        if n != size.count_ones() as usize || body.len() != 9 + 32 * n {
            return None;
        }
        let stack = body[9..].chunks_exact(32).map(|c| c.try_into().unwrap_or_default()).collect();
        Some(Self { size, stack })
    }
}

// ---------------------------------------------------------------------------
// Signed notes and checkpoints

/// The key id of an Ed25519 key in a signed note:
/// `SHA-256(name | 0x0A | 0x01 | public key)[..4]`, big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` may name a key: non-empty, no white space, no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// A verifier key (C2SP signed note): a name, a key id and an Ed25519
/// public key; written `name+hex id+base64(0x01 | public key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key named `name` for `key`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, Invalid> {
        if !valid_name(name) {
            return Err(invalid("a key name must be non-empty, without spaces or '+'"));
        }
        Ok(Self { name: name.to_owned(), id: key_id(name, key.as_bytes()), key })
    }

    /// Parses `name+id+key` (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("a verifier key is name+id+key"));
        };
        if !valid_name(name) {
            return Err(invalid("the verifier key's name is empty or has spaces or '+'"));
        }
        let id = parse_id(id).ok_or_else(|| invalid("the verifier key's id is not 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| invalid("the verifier key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, k)) => k.try_into().map_err(|_| invalid("the verifier key is not 32 bytes"))?,
            Some(_) => return Err(invalid("the verifier key is not an Ed25519 key")),
            None => return Err(invalid("the verifier key is empty")),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|_| invalid("the verifier key is not a valid point"))?;
        if id != key_id(name, &public) {
            return Err(invalid("the verifier key's id does not match its name and key"));
        }
        Ok(Self { name: name.to_owned(), id, key })
    }

    /// The key's name (the origin of its checkpoints).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether `sig` is this key's Ed25519 signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else { return false };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }
}

fn parse_id(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// A signing key for notes. Its `Debug` shows the name and id only.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.id)
    }
}

impl NoteSigner {
    /// The signer named `name` with the Ed25519 secret key `seed`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Invalid> {
        if !valid_name(name) {
            return Err(invalid("a key name must be non-empty, without spaces or '+'"));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Self { name: name.to_owned(), id: key_id(name, key.verifying_key().as_bytes()), key })
    }

    /// Parses `PRIVATE+KEY+name+id+base64(0x01 | secret key)` (Go's
    /// `note.NewSigner` form). Errors never repeat the text.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| invalid("not a PRIVATE+KEY signer key"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("a signer key is PRIVATE+KEY+name+id+key"));
        };
        let id = parse_id(id).ok_or_else(|| invalid("the signer key's id is not 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| invalid("the signer key is not base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, k)) => k.try_into().map_err(|_| invalid("the signer key is not 32 bytes"))?,
            _ => return Err(invalid("the signer key is not an Ed25519 key")),
        };
        let s = Self::from_seed(name, &seed)?;
        if s.id != id {
            return Err(invalid("the signer key's id does not match its name and key"));
        }
        Ok(s)
    }

    fn encode_private(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text` (which must end in a newline): the signed note.
    pub fn sign(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut b = self.id.to_be_bytes().to_vec();
        b.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(b))
    }
}

/// One signature line of a note, not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key's name.
    pub name: String,
    /// The key id.
    pub id: u32,
    /// The signature bytes (after the key id).
    pub sig: Vec<u8>,
}

/// A signed note as parsed, not verified: its text and signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note: UTF-8 text ending in a newline, a blank line,
    /// and one or more lines `— name base64(key id | signature)`; no
    /// control characters but newlines.
    pub fn parse(msg: &str) -> Result<Self, Invalid> {
        if msg.len() > MAX_NOTE {
            return Err(invalid(format!("the note is longer than {MAX_NOTE} bytes")));
        }
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(invalid("the note has control characters"));
        }
        let split = msg.rfind("\n\n").ok_or_else(|| invalid("the note has no signature block"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        let sigs = sigs.strip_suffix('\n').ok_or_else(|| invalid("the note does not end with a newline"))?;
        let mut out = Vec::new();
        for line in sigs.split('\n') {
            if out.len() == MAX_SIGNATURES {
                return Err(invalid(format!("the note has more than {MAX_SIGNATURES} signatures")));
            }
            out.push(parse_signature(line)?);
        }
        Ok(Self { text: text.to_owned(), sigs: out })
    }

    /// The signed text (ending in a newline).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.sigs
    }

    /// The text, when a signature by `key` verifies. A signature that names
    /// the key but does not verify is an error even if another does.
    pub fn verify(&self, key: &VerifierKey) -> Result<&str, Invalid> {
        let mut ok = false;
        for s in self.sigs.iter().filter(|s| s.name == key.name && s.id == key.id) {
            if !key.verify(self.text.as_bytes(), &s.sig) {
                return Err(invalid(format!(
                    "the signature by {}+{:08x} does not verify: the note was altered",
                    key.name, key.id
                )));
            }
            ok = true;
        }
        if ok {
            Ok(&self.text)
        } else {
            Err(invalid(format!("the note has no signature by {}+{:08x}", key.name, key.id)))
        }
    }

    /// The note as written.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.sigs {
            let mut b = sig.id.to_be_bytes().to_vec();
            b.extend_from_slice(&sig.sig);
            s.push_str(&format!("\u{2014} {} {}\n", sig.name, B64.encode(b)));
        }
        s
    }
}

fn parse_signature(line: &str) -> Result<NoteSignature, Invalid> {
    let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| invalid("a signature line does not start with '— '"))?;
    let (name, b64) = rest.split_once(' ').ok_or_else(|| invalid("a signature line is '— name signature'"))?;
    if !valid_name(name) {
        return Err(invalid("a signature names an invalid key name"));
    }
    let raw = B64.decode(b64).map_err(|_| invalid("a signature is not base64"))?;
    if raw.len() < 5 {
        return Err(invalid("a signature is too short"));
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        sig: raw[4..].to_vec(),
    })
}

/// Splits a file of notes written one after another into the notes (each
/// ending with its last signature line) and what follows the last whole
/// note (empty unless a write was cut short).
pub fn split_notes(text: &str) -> (Vec<&str>, &str) {
    let mut notes = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    // Within a note: before its blank line, or in its signature lines.
    let mut in_sigs = false;
    while pos < text.len() {
        let Some(nl) = text[pos..].find('\n') else { break };
        let line = &text[pos..pos + nl];
        let next = pos + nl + 1;
        if in_sigs {
            if line.starts_with('\u{2014}') {
                pos = next;
                // The note ends here unless another signature line follows.
                if !text[next..].starts_with('\u{2014}') {
                    notes.push(&text[start..next]);
                    start = next;
                    in_sigs = false;
                }
                continue;
            }
            // A blank line followed by text: the blank line was inside the text.
            in_sigs = false;
        }
        if line.is_empty() && text[next..].starts_with('\u{2014}') {
            in_sigs = true;
        }
        pos = next;
    }
    (notes, &text[start..])
}

/// A checkpoint (C2SP tlog-checkpoint): the log's origin, its size and
/// root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (the key's name).
    pub origin: String,
    /// Records in the tree.
    pub size: u64,
    /// Its RFC 6962 root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a checkpoint's text (three lines; piiwatch writes no
    /// extension lines and accepts none).
    pub fn parse_body(text: &str) -> Result<Self, Invalid> {
        let body = text.strip_suffix('\n').ok_or_else(|| invalid("the checkpoint does not end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(invalid(format!("the checkpoint has {} lines, not 3 (origin, size, root)", lines.len())));
        };
        if origin.is_empty() {
            return Err(invalid("the checkpoint's origin is empty"));
        }
        let canonical =
            !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| invalid("the checkpoint's size is not a decimal number"))?;
        let root = decode_hash(root).map_err(|_| invalid("the checkpoint's root is not a base64 SHA-256"))?;
        Ok(Self { origin: origin.to_owned(), size, root })
    }

    /// Parses a signed checkpoint note and checks it: signed by `key`,
    /// origin the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, Invalid> {
        let n = Note::parse(note)?;
        let cp = Self::parse_body(n.verify(key)?)?;
        if cp.origin != key.name {
            return Err(invalid(format!("the checkpoint is for origin {}, the key for {}", cp.origin, key.name)));
        }
        Ok(cp)
    }
}

/// Base64 of a hash.
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h)
}

/// A base64 SHA-256.
pub fn decode_hash(s: &str) -> Result<Hash, Invalid> {
    let v = B64.decode(s).map_err(|_| invalid("not base64"))?;
    v.try_into().map_err(|_| invalid("not 32 bytes"))
}

// ---------------------------------------------------------------------------
// Proofs

/// An inclusion proof as `piiwatch proof inclusion` writes it: record
/// `record` (from 0) is in the tree of `tree_size` records with root `root`.
/// Hashes are base64; `leaf_data` is the record (`kind | len | payload`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inclusion {
    /// The log's origin.
    pub origin: String,
    /// The record's index, from 0.
    pub record: u64,
    /// The tree the proof is for.
    pub tree_size: u64,
    /// Its root.
    pub root: String,
    /// The record's leaf hash.
    pub leaf_hash: String,
    /// The record's leaf data: `kind | len u32 LE | payload`, base64.
    pub leaf_data: String,
    /// The audit path, leaf to root.
    pub audit_path: Vec<String>,
}

/// A consistency proof as `piiwatch proof consistency` writes it: the tree
/// of `old_size` records is a prefix of the tree of `new_size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    /// The log's origin.
    pub origin: String,
    /// The older tree's size.
    pub old_size: u64,
    /// Its root.
    pub old_root: String,
    /// The newer tree's size.
    pub new_size: u64,
    /// Its root.
    pub new_root: String,
    /// The proof's hashes (RFC 6962 `PROOF(m, D[n])`).
    pub proof: Vec<String>,
}

fn root_hash(cp: &Checkpoint) -> Result<RootHash<Sha256>, Invalid> {
    if cp.size > MAX_TREE {
        return Err(invalid(format!("a tree of {} records is beyond what piiwatch checks", cp.size)));
    }
    Ok(RootHash::new(cp.root.into(), cp.size))
}

fn decode_path(path: &[String]) -> Result<Vec<u8>, Invalid> {
    if path.len() > 64 {
        return Err(invalid("the proof has more than 64 hashes"));
    }
    let mut out = Vec::with_capacity(32 * path.len());
    for (i, h) in path.iter().enumerate() {
        out.extend_from_slice(&decode_hash(h).map_err(|e| invalid(format!("proof hash {i}: {e}")))?);
    }
    Ok(out)
}

impl Inclusion {
    /// Checks the proof against a checkpoint (already opened with its key):
    /// same origin, size and root, the leaf hash is the leaf data's, and the
    /// audit path leads from the leaf to the checkpoint's root.
    pub fn check(&self, cp: &Checkpoint) -> Result<(), Invalid> {
        if self.origin != cp.origin {
            return Err(invalid(format!("the proof is for origin {}, the checkpoint for {}", self.origin, cp.origin)));
        }
        if self.tree_size != cp.size {
            return Err(invalid(format!(
                "the proof is for a tree of {} records, the checkpoint signs {}",
                self.tree_size, cp.size
            )));
        }
        if decode_hash(&self.root).map_err(|e| invalid(format!("root: {e}")))? != cp.root {
            return Err(invalid("the proof's root is not the checkpoint's"));
        }
        let data = B64.decode(&self.leaf_data).map_err(|_| invalid("leaf_data is not base64"))?;
        if decode_hash(&self.leaf_hash).map_err(|e| invalid(format!("leaf_hash: {e}")))? != leaf_hash_of(&data) {
            return Err(invalid("leaf_hash is not the hash of leaf_data"));
        }
        let proof = InclusionProof::<Sha256>::try_from_bytes(decode_path(&self.audit_path)?)
            .map_err(|e| invalid(format!("the audit path is malformed: {e}")))?;
        root_hash(cp)?.verify_inclusion(&data, self.record, &proof).map_err(|e| match e {
            ct_merkle::InclusionVerifError::IncorrectHash => {
                invalid(format!("record {} with this leaf data is not in the checkpoint's tree", self.record))
            }
            e => invalid(format!("the inclusion proof does not verify: {e}")),
        })
    }
}

impl Consistency {
    /// Checks the proof against two checkpoints (already opened with their
    /// key): same origin, sizes and roots, and the older tree a prefix of
    /// the newer one.
    pub fn check(&self, old: &Checkpoint, new: &Checkpoint) -> Result<(), Invalid> {
        for (what, cp) in [("older", old), ("newer", new)] {
            if self.origin != cp.origin {
                return Err(invalid(format!(
                    "the proof is for origin {}, the {what} checkpoint for {}",
                    self.origin, cp.origin
                )));
            }
        }
        if (self.old_size, self.new_size) != (old.size, new.size) {
            return Err(invalid(format!(
                "the proof is from {} to {} records, the checkpoints from {} to {}",
                self.old_size, self.new_size, old.size, new.size
            )));
        }
        if decode_hash(&self.old_root).map_err(|e| invalid(format!("old_root: {e}")))? != old.root {
            return Err(invalid("the proof's old root is not the older checkpoint's"));
        }
        if decode_hash(&self.new_root).map_err(|e| invalid(format!("new_root: {e}")))? != new.root {
            return Err(invalid("the proof's new root is not the newer checkpoint's"));
        }
        if old.size > new.size {
            return Err(invalid("the older checkpoint is larger than the newer one"));
        }
        let bytes = decode_path(&self.proof)?;
        if old.size == 0 {
            // Every tree extends the empty one (RFC 6962 defines no proof for it).
            return if bytes.is_empty() { Ok(()) } else { Err(invalid("a proof from the empty tree has no hashes")) };
        }
        let proof = ConsistencyProof::<Sha256>::try_from_bytes(bytes)
            .map_err(|e| invalid(format!("the consistency proof is malformed: {e}")))?;
        root_hash(new)?.verify_consistency(&root_hash(old)?, &proof).map_err(|e| match e {
            ct_merkle::ConsistencyVerifError::VerificationFailure => invalid(format!(
                "the tree of {} records is not a prefix of the tree of {}: the log was rewritten",
                old.size, new.size
            )),
            e => invalid(format!("the consistency proof does not verify: {e}")),
        })
    }
}

/// The leaf hashes of a store (`merkle/leaves`), read-only: roots and
/// proofs for any size up to what it holds.
#[derive(Debug)]
pub struct Leaves {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Leaves {
    /// Opens the leaf hashes of the store in `store_dir`.
    pub fn open(store_dir: &Path) -> Result<Self, Error> {
        let path = store_dir.join(MERKLE_DIR).join(LEAVES_FILE);
        let file = File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
        let len = file.metadata().map_err(io_err(format!("cannot stat {}", path.display())))?.len() / 32;
        Ok(Self { path, file, len })
    }

    /// Leaf hashes held.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `each` with the leaf hashes `start..end`, in order.
    fn read(&self, start: u64, end: u64, mut each: impl FnMut(Hash)) -> Result<(), Error> {
        let what = || format!("cannot read {}", self.path.display());
        let mut f = &self.file;
        f.seek(SeekFrom::Start(start * 32)).map_err(io_err(what()))?;
        let mut buf = vec![0u8; 32 * CHUNK];
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            f.read_exact(&mut buf[..32 * n]).map_err(io_err(what()))?;
            for c in buf[..32 * n].chunks_exact(32) {
                each(c.try_into().unwrap_or_default());
            }
            at += n as u64;
        }
        Ok(())
    }

    /// Leaf hash `i`.
    pub fn get(&self, i: u64) -> Result<Hash, ProofError> {
        if i >= self.len {
            return Err(ProofError::Range(format!("record {i} is past the {} leaves held", self.len)));
        }
        let mut out = [0u8; 32];
        self.read(i, i + 1, |h| out = h)?;
        Ok(out)
    }

    /// The Merkle tree hash of the leaves `start..end`.
    fn range_root(&self, start: u64, end: u64) -> Result<Hash, Error> {
        let mut f = Frontier::new();
        self.read(start, end, |h| f.push(h))?;
        Ok(f.root())
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len {
            return Err(ProofError::Range(format!("a tree of {size} records: only {} leaves are held", self.len)));
        }
        Ok(())
    }

    /// The root of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.range_root(0, size)?)
    }

    /// The hash of node `idx` (`ct-merkle`'s array layout: leaf `i` at `2i`,
    /// a node of level `k`, `k` trailing ones, over `2^k` leaves) in the
    /// tree of `size` leaves: the tree hash of the leaves it spans.
    fn node_hash(&self, idx: u64, size: u64) -> Result<Hash, Error> {
        let k = idx.trailing_ones();
        let start = (idx >> (k + 1)) << k;
        let end = start.saturating_add(1u64 << k).min(size);
        self.range_root(start, end)
    }

    /// The audit path of record `index` in the tree of `size` records.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::Range(format!("record {index} is not in a tree of {size} records")));
        }
        ct_merkle::indices_for_inclusion_proof(size, index).into_iter().map(|i| Ok(self.node_hash(i, size)?)).collect()
    }

    /// The proof that the tree of `old` records is a prefix of the tree of `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        if old == 0 || old > new {
            return Err(ProofError::Range(format!(
                "a consistency proof goes from 1 record or more to as many or more (asked: {old} to {new})"
            )));
        }
        ct_merkle::indices_for_consistency_proof(old, new - old)
            .into_iter()
            .map(|i| Ok(self.node_hash(i, new)?))
            .collect()
    }

    /// The inclusion proof of record `index` in the tree of `size`, with the
    /// record's leaf data (read from the ledger).
    pub fn prove_inclusion(
        &self,
        store_dir: &Path,
        origin: &str,
        index: u64,
        size: u64,
    ) -> Result<Inclusion, ProofError> {
        let path = self.inclusion(index, size)?;
        let data =
            record(store_dir, index)?.ok_or_else(|| ProofError::Range(format!("the ledger has no record {index}")))?;
        let leaf = self.get(index)?;
        if leaf_hash_of(&data) != leaf {
            return Err(ProofError::Store(Error::Corrupt(format!(
                "merkle/leaves does not match ledger record {index}"
            ))));
        }
        Ok(Inclusion {
            origin: origin.to_owned(),
            record: index,
            tree_size: size,
            root: encode_hash(&self.root(size)?),
            leaf_hash: encode_hash(&leaf),
            leaf_data: B64.encode(&data),
            audit_path: path.iter().map(encode_hash).collect(),
        })
    }

    /// The consistency proof from the tree of `old` records to the tree of `new`.
    pub fn prove_consistency(&self, origin: &str, old: u64, new: u64) -> Result<Consistency, ProofError> {
        let proof = self.consistency(old, new)?;
        Ok(Consistency {
            origin: origin.to_owned(),
            old_size: old,
            old_root: encode_hash(&self.root(old)?),
            new_size: new,
            new_root: encode_hash(&self.root(new)?),
            proof: proof.iter().map(encode_hash).collect(),
        })
    }
}

/// The leaf data of ledger record `index` (from 0), when there is one.
pub fn record(store_dir: &Path, index: u64) -> Result<Option<Vec<u8>>, Error> {
    let mut n = 0u64;
    let mut found = None;
    ledger::scan(&store_dir.join("ledger"), |r| {
        if n == index {
            found = Some(leaf_data(r.kind, r.payload));
        }
        n += 1;
    })?;
    Ok(found)
}

/// The store's verifier key (`checkpoint.pub`).
pub fn verifier_key(store_dir: &Path) -> Result<VerifierKey, Error> {
    let path = store_dir.join(PUB_FILE);
    let text = fs::read_to_string(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
    VerifierKey::parse(&text).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}

/// The latest signed checkpoint of the store: the note as written, and the
/// checkpoint (its signature checked with `checkpoint.pub`).
pub fn latest(store_dir: &Path) -> Result<(String, Checkpoint), Error> {
    let key = verifier_key(store_dir)?;
    let path = store_dir.join(MERKLE_DIR).join(LATEST_FILE);
    let note = fs::read_to_string(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
    let cp = Checkpoint::open(&note, &key).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    Ok((note, cp))
}

/// The signed checkpoint of `size` records in the store's history, when
/// there is one (the last such, its signature checked with `checkpoint.pub`).
pub fn signed(store_dir: &Path, size: u64) -> Result<Option<(String, Checkpoint)>, Error> {
    let key = verifier_key(store_dir)?;
    let path = store_dir.join(MERKLE_DIR).join(HISTORY_FILE);
    let bytes = fs::read(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let (notes, _) = split_notes(&text);
    Ok(notes
        .iter()
        .rev()
        .find_map(|n| Checkpoint::open(n, &key).ok().filter(|c| c.size == size).map(|c| ((*n).to_owned(), c))))
}

// ---------------------------------------------------------------------------
// Keeping checkpoints: what the ledger calls

/// Keeps the leaf hashes and signs a checkpoint at every commit; attached
/// to the [`ledger::Ledger`] (see [`ledger::Ledger::attach`]).
pub struct Checkpointer {
    dir: PathBuf,
    leaves: BufWriter<File>,
    frontier: Frontier,
    /// Leaves known durable.
    synced: u64,
    /// Size of the latest checkpoint written.
    signed: Option<u64>,
    signer: NoteSigner,
    /// A write to the leaves that failed (reported at the next commit).
    failed: Option<io::Error>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("dir", &self.dir)
            .field("size", &self.frontier.size())
            .field("signer", &self.signer)
            .finish()
    }
}

impl Checkpointer {
    /// Opens (creating on first use) the key, the leaf hashes and the
    /// checkpoints of the store in `store_dir`, whose ledger in `ledger_dir`
    /// has `head_records` committed records: cuts back leaves after them,
    /// catches up leaves that are missing from the ledger (checking those
    /// held against it first), and signs a checkpoint for `HEAD` if the
    /// latest does not cover it (a crash after the ledger's commit). Refuses
    /// a store whose latest checkpoint signs more records than `HEAD` holds,
    /// or a different root: it does not sign over a rewritten past.
    pub fn open(store_dir: &Path, ledger_dir: &Path, head_records: u64) -> Result<Self, Error> {
        let dir = store_dir.join(MERKLE_DIR);
        fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let signer = load_or_create_signer(store_dir)?;
        let key = signer.verifier();

        let latest = match fs::read_to_string(dir.join(LATEST_FILE)) {
            Ok(note) => Some(
                Checkpoint::open(&note, &key)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", dir.join(LATEST_FILE).display())))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("cannot read {}", dir.join(LATEST_FILE).display()))(e)),
        };
        if let Some(cp) = &latest
            && cp.size > head_records
        {
            return Err(Error::Corrupt(format!(
                "the latest checkpoint signs {} records but HEAD acknowledges {head_records}: the ledger was truncated or replaced",
                cp.size
            )));
        }
        repair_history(&dir)?;

        // Leaves: cut back to HEAD; the right edge from the cache, extended from the file.
        let path = dir.join(LEAVES_FILE);
        let what = format!("cannot write {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(what.clone()))?;
        let len = file.metadata().map_err(io_err(what.clone()))?.len();
        let have = (len / 32).min(head_records);
        if len != have * 32 {
            file.set_len(have * 32).map_err(io_err(format!("cannot cut back {}", path.display())))?;
            file.sync_all().map_err(io_err(what.clone()))?;
        }
        let mut watch = Watch { size: latest.as_ref().map(|c| c.size), root: None };
        let mut frontier = fs::read(dir.join(FRONTIER_FILE))
            .ok()
            .and_then(|b| Frontier::decode(&b))
            .filter(|f| f.size() <= have && watch.size.is_none_or(|s| f.size() <= s))
            .unwrap_or_default();
        let cached = frontier.size() == head_records;
        watch.see(&frontier);
        {
            let leaves =
                Leaves { path: path.clone(), file: File::open(&path).map_err(io_err(what.clone()))?, len: have };
            leaves.read(frontier.size(), have, |h| {
                frontier.push(h);
                watch.see(&frontier);
            })?;
        }
        if have < head_records {
            catch_up(ledger_dir, &path, &file, have, head_records, &mut frontier, &mut watch)?;
        }
        if let (Some(cp), Some(root)) = (&latest, watch.root)
            && cp.root != root
        {
            return Err(Error::Corrupt(format!(
                "{} does not match the latest checkpoint (the leaves or the ledger were altered)",
                path.display()
            )));
        }
        file.seek(SeekFrom::End(0)).map_err(io_err(what))?;
        let mut cp = Self {
            dir,
            leaves: BufWriter::with_capacity(64 << 10, file),
            frontier,
            synced: head_records,
            signed: latest.map(|c| c.size),
            signer,
            failed: None,
        };
        if cp.signed != Some(head_records) {
            cp.commit(head_records)?;
        } else if !cached {
            save_frontier(&cp.dir, &cp.frontier);
        }
        Ok(cp)
    }

    /// The verifier key of the store's checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        self.signer.verifier()
    }

    /// Records pushed (committed or not).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Adds the leaf of a record just appended to the ledger. A write error
    /// is reported by the next [`Checkpointer::commit`].
    pub fn push(&mut self, kind: u8, payload: &[u8]) {
        let h = leaf_hash(kind, payload);
        if self.failed.is_none()
            && let Err(e) = self.leaves.write_all(&h)
        {
            self.failed = Some(e);
        }
        self.frontier.push(h);
    }

    /// Makes the leaves pushed durable (the ledger calls it before `HEAD`
    /// names their records).
    pub fn sync_leaves(&mut self) -> Result<(), Error> {
        let what = || format!("cannot write {}", self.dir.join(LEAVES_FILE).display());
        if let Some(e) = self.failed.take() {
            return Err(io_err(what())(e));
        }
        if self.synced != self.frontier.size() {
            self.leaves.flush().map_err(io_err(what()))?;
            self.leaves.get_ref().sync_data().map_err(io_err(what()))?;
            self.synced = self.frontier.size();
        }
        Ok(())
    }

    /// Signs the tree of `records` records, the ledger's new `HEAD` (every
    /// record pushed): appends the note to `merkle/checkpoints` and replaces
    /// `merkle/checkpoint`. Called right after the ledger's commit.
    pub fn commit(&mut self, records: u64) -> Result<(), Error> {
        if records != self.frontier.size() {
            return Err(Error::Corrupt(format!(
                "checkpoint: the ledger commits {records} records but {} leaves were pushed",
                self.frontier.size()
            )));
        }
        self.sync_leaves()?;
        if self.signed == Some(records) {
            return Ok(());
        }
        let cp = Checkpoint { origin: self.signer.name().to_owned(), size: records, root: self.frontier.root() };
        let note = self.signer.sign(&cp.body());
        let history = self.dir.join(HISTORY_FILE);
        let what = format!("cannot append to {}", history.display());
        let mut f = OpenOptions::new().create(true).append(true).open(&history).map_err(io_err(what.clone()))?;
        f.write_all(note.as_bytes()).and_then(|()| f.sync_data()).map_err(io_err(what))?;
        ledger::write_atomic(&self.dir, LATEST_FILE, note.as_bytes())?;
        save_frontier(&self.dir, &self.frontier);
        self.signed = Some(records);
        Ok(())
    }
}

/// Writes the right edge's cache (not synced: a lost or stale one is
/// rebuilt from the leaves at open).
fn save_frontier(dir: &Path, frontier: &Frontier) {
    let tmp = dir.join(format!(".{FRONTIER_FILE}.tmp"));
    if fs::write(&tmp, frontier.encode()).and_then(|()| fs::rename(&tmp, dir.join(FRONTIER_FILE))).is_err() {
        let _ = fs::remove_file(dir.join(FRONTIER_FILE));
    }
}

/// The root of the tree at one size, caught while the tree grows.
struct Watch {
    size: Option<u64>,
    root: Option<Hash>,
}

impl Watch {
    fn see(&mut self, f: &Frontier) {
        if self.size == Some(f.size()) {
            self.root = Some(f.root());
        }
    }
}

/// Appends to `file` (holding `have` leaves) the leaves of records
/// `have..head` from the ledger, after checking the `have` it holds against
/// the ledger's first records.
fn catch_up(
    ledger_dir: &Path,
    path: &Path,
    file: &File,
    have: u64,
    head: u64,
    frontier: &mut Frontier,
    watch: &mut Watch,
) -> Result<(), Error> {
    let what = format!("cannot write {}", path.display());
    // Its own open file: its own offset.
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err(what.clone()))?);
    let mut writer = file.try_clone().map_err(io_err(what.clone()))?;
    writer.seek(SeekFrom::Start(have * 32)).map_err(io_err(what.clone()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, writer);
    let mut n = 0u64;
    let mut differs = None;
    let mut failed = None;
    ledger::scan(ledger_dir, |r| {
        let h = leaf_hash(r.kind, r.payload);
        if n < have {
            let mut held = [0u8; 32];
            match reader.read_exact(&mut held) {
                Ok(()) if held != h => {
                    differs.get_or_insert(n);
                }
                Ok(()) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        } else if n < head && failed.is_none() {
            if let Err(e) = writer.write_all(&h) {
                failed = Some(e);
            }
            frontier.push(h);
            watch.see(frontier);
        }
        n += 1;
    })?;
    if let Some(e) = failed {
        return Err(io_err(what)(e));
    }
    if let Some(i) = differs {
        return Err(Error::Corrupt(format!(
            "{}: the leaf of record {i} does not match the ledger (the leaves or the ledger were altered)",
            path.display()
        )));
    }
    if n < head {
        return Err(Error::Corrupt(format!("the ledger holds {n} records but HEAD acknowledges {head}")));
    }
    writer.flush().map_err(io_err(what.clone()))?;
    writer.get_ref().sync_data().map_err(io_err(what))
}

/// Cuts a note torn by a crash off the end of the history.
fn repair_history(dir: &Path) -> Result<(), Error> {
    let path = dir.join(HISTORY_FILE);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    };
    // Whole when it ends with a signature line.
    let last = text.strip_suffix(b"\n").map(|t| t.rsplit(|&b| b == b'\n').next().unwrap_or(t));
    if text.is_empty() || last.is_some_and(|l| l.starts_with("\u{2014} ".as_bytes())) {
        return Ok(());
    }
    // Notes are UTF-8: whatever follows the first byte that is not is torn too.
    let valid = match std::str::from_utf8(&text) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
    };
    let (_, torn) = split_notes(valid);
    let keep = (valid.len() - torn.len()) as u64;
    let f = OpenOptions::new().write(true).open(&path).map_err(io_err(format!("cannot repair {}", path.display())))?;
    f.set_len(keep).and_then(|()| f.sync_all()).map_err(io_err(format!("cannot cut back {}", path.display())))
}

fn load_or_create_signer(store_dir: &Path) -> Result<NoteSigner, Error> {
    let key_path = store_dir.join(KEY_FILE);
    let pub_path = store_dir.join(PUB_FILE);
    let signer = match fs::read_to_string(&key_path) {
        Ok(text) => NoteSigner::parse(&text).map_err(|e| Error::Corrupt(format!("{}: {e}", key_path.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if pub_path.exists() {
                return Err(Error::Corrupt(format!(
                    "{} is missing but {} exists: restore the key (a new one would not match the checkpoints already given out)",
                    key_path.display(),
                    pub_path.display()
                )));
            }
            let mut id = [0u8; 8];
            let mut seed = [0u8; 32];
            getrandom::fill(&mut id).and_then(|()| getrandom::fill(&mut seed)).map_err(|e| Error::Io {
                what: "no randomness for the checkpoint key".into(),
                source: io::Error::other(e.to_string()),
            })?;
            let signer = NoteSigner::from_seed(&format!("piiwatch/{}", hex::encode(id)), &seed)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            seed.fill(0);
            write_private(store_dir, KEY_FILE, signer.encode_private().as_bytes())?;
            signer
        }
        Err(e) => return Err(io_err(format!("cannot read {}", key_path.display()))(e)),
    };
    let verifier = signer.verifier();
    match fs::read_to_string(&pub_path) {
        Ok(text) => {
            if VerifierKey::parse(&text).ok().as_ref() != Some(&verifier) {
                return Err(Error::Corrupt(format!(
                    "{} does not match {} (replaced?)",
                    pub_path.display(),
                    key_path.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ledger::write_atomic(store_dir, PUB_FILE, format!("{verifier}\n").as_bytes())?;
        }
        Err(e) => return Err(io_err(format!("cannot read {}", pub_path.display()))(e)),
    }
    Ok(signer)
}

/// Writes a file readable by its owner only, atomically.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let what = format!("cannot write {}", tmp.display());
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io_err(what.clone()))?;
    f.write_all(bytes).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all()).map_err(io_err(what))?;
    fs::rename(&tmp, &path).map_err(io_err(format!("cannot replace {}", path.display())))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("cannot sync {}", dir.display())))
}

// ---------------------------------------------------------------------------
// Verifying a store

/// Checks the checkpoints of the store in `store_dir` against its ledger,
/// adding to `report`: the latest checkpoint's and every historical
/// checkpoint's signature (with `checkpoint.pub`, which must match
/// `checkpoint.key`), that the first `size` records of the ledger hash to
/// each one's root (so each is consistent with the tree the ledger is now),
/// that the latest covers `HEAD` and that `merkle/leaves` holds the records'
/// leaf hashes. A store without any checkpoint files (older than them) gets
/// a note; a crash's leftovers (a checkpoint behind `HEAD`, leaves past it, a
/// torn last note) are notes too.
pub fn verify(store_dir: &Path, report: &mut Report) {
    let dir = store_dir.join(MERKLE_DIR);
    let (key_path, pub_path) = (store_dir.join(KEY_FILE), store_dir.join(PUB_FILE));
    if [&key_path, &pub_path, &dir.join(LATEST_FILE), &dir.join(HISTORY_FILE)].iter().all(|p| !p.exists()) {
        report.notes.push("no checkpoints (the store predates them: signed when it is next opened)".into());
        return;
    }
    let problems = &mut report.problems;
    // The key third parties hold.
    let from_key = fs::read_to_string(&key_path).ok().and_then(|t| NoteSigner::parse(&t).ok()).map(|s| s.verifier());
    let key = match fs::read_to_string(&pub_path) {
        Ok(t) => match VerifierKey::parse(&t) {
            Ok(k) => {
                if from_key.as_ref().is_some_and(|f| *f != k) {
                    problems.push(format!("{PUB_FILE} does not match {KEY_FILE}: one of them was replaced"));
                }
                Some(k)
            }
            Err(e) => {
                problems.push(format!("{PUB_FILE}: {e}"));
                from_key
            }
        },
        Err(_) => {
            problems.push(format!("{PUB_FILE} is missing: the checkpoints cannot be checked by anyone else"));
            from_key
        }
    };
    if !key_path.exists() {
        problems.push(format!("{KEY_FILE} is missing: the store can sign no more checkpoints"));
    }
    let Some(key) = key else { return };

    // The latest checkpoint and the history.
    let latest = match fs::read_to_string(dir.join(LATEST_FILE)) {
        Ok(note) => match Checkpoint::open(&note, &key) {
            Ok(cp) => Some(cp),
            Err(e) => {
                problems.push(format!("merkle/{LATEST_FILE}: {e}"));
                None
            }
        },
        Err(_) => {
            problems.push(format!("merkle/{LATEST_FILE} is missing"));
            None
        }
    };
    let mut history: Vec<Checkpoint> = Vec::new();
    match fs::read(dir.join(HISTORY_FILE)) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let (notes, torn) = split_notes(&text);
            if !torn.is_empty() {
                report.notes.push(format!(
                    "merkle/{HISTORY_FILE} ends with {} bytes of a note cut short (a crash: cut back when the store is next opened)",
                    torn.len()
                ));
            }
            let mut bad = 0usize;
            let mut first_bad = None;
            for (i, n) in notes.iter().enumerate() {
                match Checkpoint::open(n, &key) {
                    Ok(cp) => history.push(cp),
                    Err(e) => {
                        bad += 1;
                        first_bad.get_or_insert(format!("checkpoint {} (from 1): {e}", i + 1));
                    }
                }
            }
            if let Some(first) = first_bad {
                problems.push(format!("merkle/{HISTORY_FILE}: {bad} checkpoint(s) do not open, first {first}"));
            }
            if let Some(w) = history.windows(2).position(|w| w[1].size < w[0].size) {
                problems.push(format!(
                    "merkle/{HISTORY_FILE}: checkpoint {} signs {} records after one of {}: the log went back",
                    w + 2,
                    history[w + 1].size,
                    history[w].size
                ));
            }
        }
        Err(_) => problems.push(format!("merkle/{HISTORY_FILE} is missing")),
    }

    // The tree the ledger is, with its root at every checkpoint's size.
    let mut sizes: Vec<u64> = history.iter().map(|c| c.size).chain(latest.as_ref().map(|c| c.size)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut roots: std::collections::HashMap<u64, Hash> = std::collections::HashMap::new();
    let mut frontier = Frontier::new();
    let mut want = sizes.iter().copied().peekable();
    let mut see = |f: &Frontier, roots: &mut std::collections::HashMap<u64, Hash>| {
        while want.peek().is_some_and(|&s| s <= f.size()) {
            if want.next() == Some(f.size()) {
                roots.insert(f.size(), f.root());
            }
        }
    };
    see(&frontier, &mut roots);
    let leaves = Leaves::open(store_dir).ok();
    if leaves.is_none() {
        problems.push(format!("merkle/{LEAVES_FILE} is missing"));
    }
    let held = leaves.as_ref().map_or(0, Leaves::len);
    let mut reader =
        leaves.as_ref().and_then(|l| l.file.try_clone().ok()).map(|f| BufReader::with_capacity(1 << 20, f));
    let mut differ = 0u64;
    let mut first_differ = None;
    let scanned = ledger::scan(&store_dir.join("ledger"), |r| {
        let h = leaf_hash(r.kind, r.payload);
        if let Some(rd) = reader.as_mut().filter(|_| frontier.size() < held) {
            let mut b = [0u8; 32];
            if rd.read_exact(&mut b).is_err() || b != h {
                differ += 1;
                first_differ.get_or_insert(frontier.size());
            }
        }
        frontier.push(h);
        see(&frontier, &mut roots);
    });
    let records = match scanned {
        Ok(n) => n,
        Err(e) => {
            problems.push(format!("cannot recompute the Merkle tree from the ledger: {e}"));
            return;
        }
    };
    if let Some(i) = first_differ {
        problems.push(format!(
            "merkle/{LEAVES_FILE}: {differ} leaf hash(es) do not match the ledger's records, first record {i} (altered)"
        ));
    }
    if leaves.is_some() && held < records {
        report.notes.push(format!(
            "merkle/{LEAVES_FILE} holds {held} of {records} records (caught up when the store is next opened)"
        ));
    } else if held > records {
        report.notes.push(format!(
            "merkle/{LEAVES_FILE} holds {} leaves after the last commit (cut back when the store is next opened)",
            held - records
        ));
    }
    let consistent = |cp: &Checkpoint| roots.get(&cp.size).is_some_and(|r| *r == cp.root);
    if let Some(cp) = &latest {
        if cp.size > records {
            problems.push(format!(
                "merkle/{LATEST_FILE} signs {} records but the ledger holds {records}: records removed or the ledger replaced",
                cp.size
            ));
        } else if !consistent(cp) {
            problems.push(format!(
                "merkle/{LATEST_FILE}: the ledger's first {} records do not hash to the signed root: the ledger was rewritten or replaced",
                cp.size
            ));
        } else if cp.size < records {
            report.notes.push(format!(
                "the latest checkpoint covers {} of {records} records (a crash before it was signed: signed when the store is next opened)",
                cp.size
            ));
        }
    }
    let inconsistent: Vec<(usize, &Checkpoint)> =
        history.iter().enumerate().filter(|(_, c)| c.size > records || !consistent(c)).collect();
    if let Some((i, c)) = inconsistent.first() {
        problems.push(format!(
            "merkle/{HISTORY_FILE}: {} of {} signed checkpoints are not consistent with the ledger, first checkpoint {} (of {} records): the ledger was rewritten or replaced",
            inconsistent.len(),
            history.len(),
            i + 1,
            c.size
        ));
    }
}

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
