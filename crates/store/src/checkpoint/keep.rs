//! Keeping checkpoints: what the ledger calls at each append and commit.

use super::*;

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
        self.push_leaf(leaf_hash(kind, payload));
    }

    /// As [`Checkpointer::push`], with the record's leaf hash already computed.
    pub fn push_leaf(&mut self, h: Hash) {
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
