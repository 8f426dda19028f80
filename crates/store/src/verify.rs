//! `verify` on every core: the ledger's chain and hashes are checked on one
//! thread (reading, inflating, hashing each segment), its event records
//! parsed on others, and the caller rebuilds the index from them in ledger
//! order on its own. Batch `k` goes to parsing worker `k mod n` and is taken
//! back from it in turn, so the caller sees the records in ledger order
//! whatever the number of workers.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::checkpoint;
use crate::index::ExposureKeys;
use crate::ledger::{self, Hash, RecordRef, Report};
use crate::subjects::DenseIds;
use crate::{Error, StoredAccess, StoredEvent, kind};

/// Records per batch handed between the threads.
const BATCH: usize = 8192;

/// Consecutive ledger records, with their events parsed.
#[derive(Default)]
pub(crate) struct Batch {
    /// Per record: segment, offset, kind, and its payload's range in `bytes`.
    meta: Vec<(u64, u64, u8, usize, usize)>,
    bytes: Vec<u8>,
    /// Per record: its event (or why it does not parse); `None` for other kinds.
    parsed: Vec<Option<Result<StoredEvent, String>>>,
    /// Per record: the range in `dense` of an access's subjects' dense ids,
    /// when the map names every one of them (looked up here, on the parsing
    /// worker, rather than on the thread that rebuilds the index).
    ids: Vec<Option<(u32, u32)>>,
    dense: Vec<u32>,
    /// Per record: the index keys of an access whose subjects have dense
    /// ids (made here too; empty for the others).
    keys: Vec<ExposureKeys>,
}

/// What an event record parsed to: the event, or why it did not parse.
pub(crate) type Parsed<'a> = Option<Result<&'a StoredEvent, &'a str>>;

impl Batch {
    /// Empties the records read, keeping what they parsed to: the parsed
    /// events (millions of small allocations per run) are dropped by the
    /// parsing worker when it parses the batch's next records, not by the
    /// thread that rebuilds the index.
    fn clear_read(&mut self) {
        self.meta.clear();
        self.bytes.clear();
    }

    fn push(&mut self, r: &RecordRef<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(r.payload);
        self.meta.push((r.segment, r.offset, r.kind, start, self.bytes.len()));
    }

    fn parse(&mut self, names: &DenseIds, hasher: &foldhash::fast::RandomState) {
        let bytes = &self.bytes;
        self.parsed.clear();
        self.parsed.extend(self.meta.iter().map(|&(_, _, k, a, b)| {
            (k == kind::EVENT).then(|| StoredEvent::from_json(&bytes[a..b]).map_err(|e| e.to_string()))
        }));
        self.ids.clear();
        self.dense.clear();
        for p in &self.parsed {
            let mut range = None;
            if let Some(Ok(StoredEvent::Access(StoredAccess { subjects, .. }))) = p {
                let start = self.dense.len();
                for s in subjects {
                    match names.get(&s.id) {
                        Some(d) => self.dense.push(d),
                        None => break,
                    }
                }
                if self.dense.len() - start == subjects.len() {
                    range = Some((start as u32, self.dense.len() as u32));
                } else {
                    self.dense.truncate(start);
                }
            }
            self.ids.push(range);
        }
        if self.keys.len() < self.parsed.len() {
            self.keys.resize_with(self.parsed.len(), ExposureKeys::default);
        }
        for ((p, range), keys) in self.parsed.iter().zip(&self.ids).zip(&mut self.keys) {
            match (p, range) {
                (Some(Ok(e)), Some(_)) => keys.build(e, hasher),
                _ => keys.clear(),
            }
        }
    }

    /// The records in ledger order, each with its parsed event and, for an
    /// access whose subjects the map all names, their dense ids in order
    /// and the event's index keys.
    pub(crate) fn records(&self) -> impl Iterator<Item = (RecordRef<'_>, Parsed<'_>, Option<(&[u32], &ExposureKeys)>)> {
        self.meta.iter().zip(&self.parsed).zip(&self.ids).zip(&self.keys).map(
            |(((&(segment, offset, kind, a, b), p), ids), keys)| {
                let r = RecordRef { segment, offset, kind, payload: &self.bytes[a..b] };
                let ids = ids.map(|(x, y)| (&self.dense[x as usize..y as usize], keys));
                (r, p.as_ref().map(|p| p.as_ref().map_err(String::as_str)), ids)
            },
        )
    }
}

/// What the ledger's reading thread tells the signed-checkpoint check.
pub(crate) enum Leaves {
    /// The next records' leaf hashes, in ledger order.
    Hashes(Vec<Hash>),
    /// The ledger is read: how many records, and whether it had no problem
    /// (only then are these leaves the tree the checks compare; otherwise
    /// the check reads the ledger itself, as a third party would).
    End {
        /// Records read up to `HEAD`.
        records: u64,
        /// No problem found.
        intact: bool,
    },
}

/// The signed checkpoints checked against the leaves the ledger's reading
/// thread sends (one reading of the ledger for both), or, when the ledger
/// has problems or says nothing, by [`checkpoint::verify`] reading it again.
///
/// The checkpoints are read before `started` is signalled, and the caller
/// reads the ledger's `HEAD` only after that: a writer still running (a
/// `serve` holding the store) signs only what it committed, so every
/// checkpoint read is within the ledger verify then checks.
pub(crate) fn signed(store: &Path, leaves: Receiver<Leaves>, started: SyncSender<()>) -> Report {
    let mut r = Report::default();
    let check = checkpoint::Check::start(store, &mut r);
    let _ = started.send(());
    let Some(mut check) = check else {
        return r;
    };
    for msg in leaves {
        match msg {
            Leaves::Hashes(hashes) => hashes.into_iter().for_each(|h| check.leaf(h)),
            Leaves::End { records, intact: true } => {
                check.finish(records, &mut r);
                return r;
            }
            Leaves::End { intact: false, .. } => break,
        }
    }
    let mut again = Report::default();
    checkpoint::verify(store, &mut again);
    again
}

/// [`ledger::verify_leaves`] with the records' events parsed on other
/// threads and handed to `each` in ledger order, batch by batch, and the
/// leaf hashes sent to `leaves`.
pub(crate) fn pipelined(
    dir: &Path,
    names: &DenseIds,
    hasher: &foldhash::fast::RandomState,
    leaves: Option<SyncSender<Leaves>>,
    mut each: impl FnMut(&Batch),
) -> Result<Report, Error> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
    std::thread::scope(|scope| {
        // Emptied batches go back to be filled again: fresh multi-megabyte
        // buffers per batch cost more in page faults than the parsing.
        let (recycle, recycled) = sync_channel::<Batch>(2 * workers + 2);
        let mut to_workers: Vec<SyncSender<Batch>> = Vec::new();
        let mut from_workers: Vec<Receiver<Batch>> = Vec::new();
        for _ in 0..workers {
            let (tx, work) = sync_channel::<Batch>(2);
            let (done, rx) = sync_channel::<Batch>(2);
            to_workers.push(tx);
            from_workers.push(rx);
            let spawned =
                std::thread::Builder::new().name("piiwatch-verify-parse".into()).spawn_scoped(scope, move || {
                    for mut b in work {
                        b.parse(names, hasher);
                        if done.send(b).is_err() {
                            return;
                        }
                    }
                });
            spawned.map_err(|e| Error::Io { what: "cannot start a verify thread".into(), source: e })?;
        }
        let chain = std::thread::Builder::new().name("piiwatch-verify-chain".into()).spawn_scoped(scope, move || {
            let mut seq = 0usize;
            let mut batch = Batch::default();
            let mut send = |b: Batch| {
                // A worker gone means the caller has gone: nothing more to do.
                let _ = to_workers[seq % to_workers.len()].send(b);
                seq += 1;
            };
            let mut hashes: Vec<Hash> = Vec::with_capacity(BATCH);
            let give = |hashes: &mut Vec<Hash>| {
                if let Some(tx) = &leaves {
                    // The check gone (no checkpoints to check): nothing to give.
                    let _ = tx.send(Leaves::Hashes(std::mem::replace(hashes, Vec::with_capacity(BATCH))));
                } else {
                    hashes.clear();
                }
            };
            let report = ledger::verify_leaves(dir, |r, leaf| {
                batch.push(r);
                hashes.push(*leaf);
                if batch.meta.len() >= BATCH {
                    let next = recycled.try_recv().map(|mut b| {
                        b.clear_read();
                        b
                    });
                    let next = next.unwrap_or_default();
                    send(std::mem::replace(&mut batch, next));
                    give(&mut hashes);
                }
            });
            if !batch.meta.is_empty() {
                send(batch);
                give(&mut hashes);
            }
            if let Some(tx) = &leaves {
                let end = match &report {
                    Ok(r) => Leaves::End { records: r.records, intact: r.problems.is_empty() },
                    Err(_) => Leaves::End { records: 0, intact: false },
                };
                let _ = tx.send(end);
            }
            report
        });
        let chain = chain.map_err(|e| Error::Io { what: "cannot start a verify thread".into(), source: e })?;
        let mut k = 0usize;
        while let Ok(b) = from_workers[k % from_workers.len()].recv() {
            each(&b);
            let _ = recycle.try_send(b);
            k += 1;
        }
        match chain.join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
