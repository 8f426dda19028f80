//! The map from pseudonyms back to real subject ids, encrypted at rest.
//!
//! `DIR/subjects.map` is append-only: each entry is
//!
//! ```text
//! pseudonym: 16 bytes | nonce: 12 bytes | len: u16 LE | AES-256-GCM(uid): len bytes
//! ```
//!
//! under a key derived from the store's secret (HMAC-SHA-256 of a fixed
//! label), with the pseudonym as associated data, so an entry cannot be
//! moved to another pseudonym. Pseudonyms are not secret (the ledger is full
//! of them); the ids are, and are read only when a command asks for real ids
//! (`scope --subjects-out`), which the ledger then records. The map is
//! flushed and fsynced before every ledger commit, so every pseudonym the
//! ledger acknowledges can be resolved; a torn last entry is cut back.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadInOut, Nonce, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};

use crate::Error;
use crate::secret::Secret;

const HEAD: usize = 16 + 12 + 2;

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Dense subject ids by pseudonym, shareable between threads.
#[derive(Clone, Copy)]
pub struct SubjectIds<'a>(&'a HashMap<[u8; 16], u32, foldhash::fast::RandomState>);

impl SubjectIds<'_> {
    /// A pseudonym's dense id, given in hex.
    pub fn dense(&self, hex_pseudonym: &str) -> Option<u32> {
        dense_of(self.0, hex_pseudonym)
    }
}

/// The dense id of a pseudonym given in hex, in a map keyed by its bytes.
fn dense_of(known: &HashMap<[u8; 16], u32, foldhash::fast::RandomState>, hex_pseudonym: &str) -> Option<u32> {
    let mut p = [0u8; 16];
    hex::decode_to_slice(hex_pseudonym, &mut p).ok()?;
    known.get(&p).copied()
}

/// Appends new pseudonym → id pairs.
pub struct MapWriter {
    path: PathBuf,
    out: BufWriter<File>,
    cipher: Aes256Gcm,
    /// The map's pseudonyms, read on first need (a query answered from the
    /// index never needs them).
    loaded: std::cell::OnceCell<Loaded>,
    dirty: bool,
}

#[derive(Default)]
struct Loaded {
    /// Each pseudonym's dense id: its position in the map.
    known: HashMap<[u8; 16], u32, foldhash::fast::RandomState>,
    /// Pseudonyms by dense id.
    order: Vec<[u8; 16]>,
}

impl std::fmt::Debug for MapWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapWriter").field("path", &self.path).finish()
    }
}

fn cipher(secret: &Secret) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(&secret.derive(b"piiwatch subject map v1")).expect("a 32-byte key")
}

/// Reads entries: (pseudonym, nonce, ciphertext); stops at a torn tail, returning its offset.
fn entries(bytes: &[u8], mut each: impl FnMut(&[u8; 16], &[u8], &[u8])) -> usize {
    let mut pos = 0;
    while pos + HEAD <= bytes.len() {
        let len = usize::from(u16::from_le_bytes([bytes[pos + 28], bytes[pos + 29]]));
        if pos + HEAD + len > bytes.len() {
            break;
        }
        let p: [u8; 16] = bytes[pos..pos + 16].try_into().unwrap_or_default();
        each(&p, &bytes[pos + 16..pos + 28], &bytes[pos + HEAD..pos + HEAD + len]);
        pos += HEAD + len;
    }
    pos
}

impl MapWriter {
    /// Opens `DIR/subjects.map` for appending. Its entries are read, and a
    /// torn last entry cut back, on first need.
    pub fn open(dir: &Path, secret: &Secret) -> Result<Self, Error> {
        let path = dir.join("subjects.map");
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        Ok(Self {
            path,
            out: BufWriter::new(f),
            cipher: cipher(secret),
            loaded: std::cell::OnceCell::new(),
            dirty: false,
        })
    }

    fn loaded(&self) -> Result<&Loaded, Error> {
        if let Some(l) = self.loaded.get() {
            return Ok(l);
        }
        let mut bytes = Vec::new();
        File::open(&self.path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(format!("cannot read {}", self.path.display())))?;
        let mut l = Loaded::default();
        let whole = entries(&bytes, |p, _, _| {
            if let std::collections::hash_map::Entry::Vacant(v) = l.known.entry(*p) {
                v.insert(l.order.len() as u32);
                l.order.push(*p);
            }
        });
        if whole < bytes.len() {
            // A torn last entry (a crash while writing it): appends go after the cut.
            OpenOptions::new()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_len(whole as u64))
                .map_err(io(format!("cannot cut back {}", self.path.display())))?;
        }
        Ok(self.loaded.get_or_init(|| l))
    }

    /// The map's dense ids by pseudonym.
    pub fn ids(&self) -> Result<SubjectIds<'_>, Error> {
        Ok(SubjectIds(&self.loaded()?.known))
    }

    /// A pseudonym's dense id (its position in the map), given in hex.
    pub fn dense(&self, hex_pseudonym: &str) -> Option<u32> {
        dense_of(&self.loaded().ok()?.known, hex_pseudonym)
    }

    /// The pseudonym (hex) with this dense id.
    pub fn pseudonym(&self, dense: u32) -> Option<String> {
        self.loaded().ok()?.order.get(dense as usize).map(hex::encode)
    }

    /// The pseudonym with this dense id.
    pub fn pseudonym_bytes(&self, dense: u32) -> Option<[u8; 16]> {
        self.loaded().ok()?.order.get(dense as usize).copied()
    }

    /// Records that `pseudonym` stands for `id` (once per pseudonym);
    /// returns its dense id.
    pub fn note(&mut self, pseudonym: [u8; 16], id: &str) -> Result<u32, Error> {
        self.loaded()?;
        let Some(l) = self.loaded.get_mut() else { return Err(Error::Corrupt("subject map not loaded".into())) };
        if let Some(&dense) = l.known.get(&pseudonym) {
            return Ok(dense);
        }
        let dense = l.order.len() as u32;
        l.known.insert(pseudonym, dense);
        l.order.push(pseudonym);
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(format!("no randomness: {e}")))?;
        let n =
            Nonce::<Aes256Gcm>::try_from(&nonce[..]).map_err(|_| Error::Crypto("a nonce of the wrong size".into()))?;
        let ct = self
            .cipher
            .encrypt(&n, Payload { msg: id.as_bytes(), aad: &pseudonym })
            .map_err(|_| Error::Crypto("cannot encrypt a subject id".into()))?;
        let len = u16::try_from(ct.len()).map_err(|_| Error::TooLarge(ct.len()))?;
        let w = &mut self.out;
        (|| {
            w.write_all(&pseudonym)?;
            w.write_all(&nonce)?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(&ct)
        })()
        .map_err(io(format!("cannot write {}", self.path.display())))?;
        self.dirty = true;
        Ok(dense)
    }

    /// Makes every entry durable (before the ledger acknowledges events that use them).
    pub fn sync(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        self.out.flush().map_err(io(format!("cannot write {}", self.path.display())))?;
        self.out.get_ref().sync_data().map_err(io(format!("cannot sync {}", self.path.display())))?;
        self.dirty = false;
        Ok(())
    }
}

/// Each pseudonym's dense id (its position in the map), without decrypting anything.
pub fn dense_ids(dir: &Path) -> Result<DenseIds, Error> {
    let (_, bytes) = read_file(dir)?;
    let mut out = DenseIds::default();
    entries(&bytes, |p, _, _| {
        let n = out.0.len() as u32;
        out.0.entry(*p).or_insert(n);
    });
    Ok(out)
}

/// Pseudonyms (their 16 bytes) → dense ids, as [`dense_ids`] reads them.
#[derive(Debug, Default)]
pub struct DenseIds(HashMap<[u8; 16], u32, foldhash::fast::RandomState>);

impl DenseIds {
    /// The dense id of a pseudonym written as 32 lowercase hex digits (as
    /// the store writes them; any other spelling is not one of its pseudonyms).
    pub fn get(&self, hex_pseudonym: &str) -> Option<u32> {
        if hex_pseudonym.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        dense_of(&self.0, hex_pseudonym)
    }

    /// How many pseudonyms.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The map file's bytes, and its path (for messages).
fn read_file(dir: &Path) -> Result<(PathBuf, Vec<u8>), Error> {
    let path = dir.join("subjects.map");
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(format!("cannot read {}", path.display())))?;
    Ok((path, bytes))
}

/// Decrypts every entry of the map, handing each pseudonym and subject id
/// to `each`: how many entries; an entry that does not decrypt (altered, or
/// from another store) is an error.
fn decrypt_each(dir: &Path, secret: &Secret, mut each: impl FnMut(&[u8; 16], &str)) -> Result<u64, Error> {
    let (path, bytes) = read_file(dir)?;
    let c = cipher(secret);
    let (mut good, mut bad) = (0u64, 0u64);
    let mut buf: Vec<u8> = Vec::new();
    entries(&bytes, |p, nonce, ct| {
        let Ok(n) = Nonce::<Aes256Gcm>::try_from(nonce) else {
            bad += 1;
            return;
        };
        buf.clear();
        buf.extend_from_slice(ct);
        match c.decrypt_in_place(&n, p, &mut buf).ok().and_then(|()| std::str::from_utf8(&buf).ok()) {
            Some(id) => {
                each(p, id);
                good += 1;
            }
            None => bad += 1,
        }
    });
    if bad > 0 {
        return Err(Error::Corrupt(format!("{}: {bad} entries do not decrypt", path.display())));
    }
    Ok(good)
}

/// Decrypts every entry of the map without keeping what it holds (`verify`:
/// the store's owner can re-identify every subject, and nothing
/// re-identified stays in memory): how many entries; an entry that does not
/// decrypt is an error.
pub fn check_map(dir: &Path, secret: &Secret) -> Result<u64, Error> {
    decrypt_each(dir, secret, |_, _| {})
}

/// Decrypts the whole map: pseudonym (hex) → subject id. An entry that does
/// not decrypt (altered, or from another store) is an error.
pub fn read_map(dir: &Path, secret: &Secret) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    decrypt_each(dir, secret, |p, id| {
        out.insert(hex::encode(p), id.to_owned());
    })?;
    Ok(out)
}
