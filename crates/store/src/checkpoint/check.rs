//! Verifying a store against its checkpoints.

use super::*;

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
    let Some(mut check) = Check::start(store_dir, report) else { return };
    let scanned = ledger::scan(&store_dir.join("ledger"), |r| check.leaf(leaf_hash(r.kind, r.payload)));
    match scanned {
        Ok(records) => check.finish(records, report),
        Err(e) => report.problems.push(format!("cannot recompute the Merkle tree from the ledger: {e}")),
    }
}

/// [`verify`] in steps: what the store signed, read first; then the
/// ledger's leaf hashes in order, from whoever reads the ledger (the store's
/// `verify` hands over those `ledger::verify_leaves` computed, so the
/// ledger is read once); then the roots compared.
pub struct Check {
    latest: Option<Checkpoint>,
    history: Vec<Checkpoint>,
    /// The checkpoints' sizes, ascending, and the next one to reach.
    sizes: Vec<u64>,
    next: usize,
    roots: std::collections::HashMap<u64, Hash>,
    frontier: Frontier,
    leaves: bool,
    held: u64,
    reader: Option<BufReader<File>>,
    differ: u64,
    first_differ: Option<u64>,
}

impl Check {
    /// Reads the keys, the latest checkpoint and the history (their problems
    /// go to `report`); `None` when there is nothing to check against.
    pub fn start(store_dir: &Path, report: &mut Report) -> Option<Self> {
        let dir = store_dir.join(MERKLE_DIR);
        let (key_path, pub_path) = (store_dir.join(KEY_FILE), store_dir.join(PUB_FILE));
        if [&key_path, &pub_path, &dir.join(LATEST_FILE), &dir.join(HISTORY_FILE)].iter().all(|p| !p.exists()) {
            report.notes.push("no checkpoints (the store predates them: signed when it is next opened)".into());
            return None;
        }
        let problems = &mut report.problems;
        // The key third parties hold.
        let from_key =
            fs::read_to_string(&key_path).ok().and_then(|t| NoteSigner::parse(&t).ok()).map(|s| s.verifier());
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
        let key = key?;

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
        let leaves = Leaves::open(store_dir).ok();
        if leaves.is_none() {
            problems.push(format!("merkle/{LEAVES_FILE} is missing"));
        }
        let held = leaves.as_ref().map_or(0, Leaves::len);
        let reader =
            leaves.as_ref().and_then(|l| l.file.try_clone().ok()).map(|f| BufReader::with_capacity(1 << 20, f));
        let mut check = Self {
            latest,
            history,
            sizes,
            next: 0,
            roots: std::collections::HashMap::new(),
            frontier: Frontier::new(),
            leaves: leaves.is_some(),
            held,
            reader,
            differ: 0,
            first_differ: None,
        };
        check.see();
        Some(check)
    }

    /// Notes the roots at the checkpoints' sizes the tree has reached.
    fn see(&mut self) {
        let size = self.frontier.size();
        while self.sizes.get(self.next).is_some_and(|&s| s <= size) {
            if self.sizes[self.next] == size {
                self.roots.insert(size, self.frontier.root());
            }
            self.next += 1;
        }
    }

    /// The next record's leaf hash, in ledger order.
    pub fn leaf(&mut self, h: Hash) {
        if let Some(rd) = self.reader.as_mut().filter(|_| self.frontier.size() < self.held) {
            let mut b = [0u8; 32];
            if rd.read_exact(&mut b).is_err() || b != h {
                self.differ += 1;
                self.first_differ.get_or_insert(self.frontier.size());
            }
        }
        self.frontier.push(h);
        self.see();
    }

    /// Compares, once the ledger's `records` leaves were given.
    pub fn finish(self, records: u64, report: &mut Report) {
        let Self { latest, history, roots, leaves, held, differ, first_differ, .. } = self;
        let problems = &mut report.problems;
        if let Some(i) = first_differ {
            problems.push(format!(
                "merkle/{LEAVES_FILE}: {differ} leaf hash(es) do not match the ledger's records, first record {i} (altered)"
            ));
        }
        if leaves && held < records {
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
}
