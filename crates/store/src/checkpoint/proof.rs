//! Inclusion and consistency proofs: built from the leaf hashes, checked as a third party checks them.

use super::*;

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
            return Err(invalid(format!(
                "the proof is for origin {:?}, the checkpoint for {:?}",
                self.origin, cp.origin
            )));
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
                    "the proof is for origin {:?}, the {what} checkpoint for {:?}",
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
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) len: u64,
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
    pub(super) fn read(&self, start: u64, end: u64, mut each: impl FnMut(Hash)) -> Result<(), Error> {
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
