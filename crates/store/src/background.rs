//! The exposure index built on a thread of its own while `ingest` appends.
//!
//! The parsing thread, which also normalizes, pseudonymises, chains and
//! compresses every event, is what limits ingest; building the index there
//! too made ingest 2.6 times slower. Here the parsing thread only hands each
//! exposing access to this thread in batches, as the reader's dense ids
//! ([`Exposure`]: nothing allocated, nothing hashed) with the value bytes of
//! each id the first time it is used ([`NameDim`]), in ledger order, with the
//! blocks the ledger sealed and the commits it made; this thread applies them
//! to the index in that same order.
//! An index commit may finish after the ledger's: that is the lag
//! [`crate::Store::open`] already catches up on after a crash, so nothing
//! waits for it except [`Background::finish`], which `ingest` calls before
//! it reports.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use std::ops::Range;

use crate::Error;
use crate::StoredEvent;
use crate::index::{ExposedSubject, Exposure, NameDim, Writer};
use crate::ledger::BlockRef;

/// Items sent in one message.
const BATCH: usize = 4096;

enum Item {
    /// An owned event and its subjects' dense ids ([`crate::Store::append`]).
    Event(Box<StoredEvent>, Vec<u32>),
    /// The value of an id: a range of [`Batch::bytes`].
    Name(NameDim, u32, Range<u32>),
    /// An exposing access: its subjects are a range of [`Batch::subjects`].
    Exposure(Exposure, Range<u32>),
    Sealed(Vec<BlockRef>),
    /// A commit covering this many records; durable when the flag says so.
    Commit(u64, bool),
}

/// One message: items, and the bytes and subjects they refer to.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    subjects: Vec<ExposedSubject>,
}

fn range(start: usize, end: usize) -> Range<u32> {
    start as u32..end as u32
}

/// The index writer thread and what is batched for it.
pub struct Background {
    tx: Option<SyncSender<Batch>>,
    /// Batches the thread has applied, emptied, to fill again.
    recycled: Receiver<Batch>,
    batch: Batch,
    handle: Option<JoinHandle<Result<(), Error>>>,
    /// The last commit queued, and whether it was durable.
    last: Option<(u64, bool)>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").field("batched", &self.batch.items.len()).finish()
    }
}

fn run(mut index: Writer, rx: Receiver<Batch>, recycle: SyncSender<Batch>) -> Result<(), Error> {
    for mut batch in rx {
        let bytes = |r: Range<u32>| batch.bytes.get(r.start as usize..r.end as usize).unwrap_or_default();
        for item in &batch.items {
            match item {
                Item::Event(e, ids) => index.add_ids(e, ids)?,
                Item::Name(dim, id, value) => index.name(*dim, *id, bytes(value.clone())),
                Item::Exposure(x, subjects) => {
                    let subjects =
                        batch.subjects.get(subjects.start as usize..subjects.end as usize).unwrap_or_default();
                    index.add_exposure(x, subjects)?;
                }
                Item::Sealed(blocks) => index.sealed(blocks),
                Item::Commit(records, true) => index.commit(*records)?,
                Item::Commit(records, false) => index.commit_lazy(*records)?,
            }
        }
        batch.items.clear();
        batch.bytes.clear();
        batch.subjects.clear();
        let _ = recycle.try_send(batch);
    }
    Ok(())
}

impl Background {
    /// Starts the thread, which owns `index` from now on.
    pub fn start(index: Writer) -> Result<Self, Error> {
        let (tx, rx) = sync_channel::<Batch>(8);
        let (recycle, recycled) = sync_channel::<Batch>(4);
        let handle = std::thread::Builder::new()
            .name("piiwatch-index".into())
            .spawn(move || run(index, rx, recycle))
            .map_err(|e| Error::Io { what: "cannot start the index thread".into(), source: e })?;
        Ok(Self { tx: Some(tx), recycled, batch: Batch::default(), handle: Some(handle), last: None })
    }

    fn push(&mut self, item: Item) -> Result<(), Error> {
        self.batch.items.push(item);
        if self.batch.items.len() >= BATCH { self.send() } else { Ok(()) }
    }

    fn send(&mut self) -> Result<(), Error> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let next = self.recycled.try_recv().unwrap_or_else(|_| Batch {
            items: Vec::with_capacity(BATCH),
            bytes: Vec::with_capacity(self.batch.bytes.len()),
            subjects: Vec::with_capacity(self.batch.subjects.len()),
        });
        let batch = std::mem::replace(&mut self.batch, next);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent { Ok(()) } else { self.join() }
    }

    /// Joins the thread: its error, or an error saying it stopped.
    fn join(&mut self) -> Result<(), Error> {
        self.tx = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(Error::Stopped("the index thread failed".into())),
        }
    }

    /// Queues an event, with its subjects' dense ids.
    pub fn event(&mut self, e: StoredEvent, ids: Vec<u32>) -> Result<(), Error> {
        self.push(Item::Event(Box::new(e), ids))
    }

    /// Queues the value bytes of an id (before the first exposure that uses it).
    pub fn name(&mut self, dim: NameDim, id: u32, value: &[u8]) -> Result<(), Error> {
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(value);
        let r = range(start, self.batch.bytes.len());
        self.push(Item::Name(dim, id, r))
    }

    /// Queues an exposing access and its subjects.
    pub fn exposure(&mut self, x: Exposure, subjects: &[ExposedSubject]) -> Result<(), Error> {
        let start = self.batch.subjects.len();
        self.batch.subjects.extend_from_slice(subjects);
        let r = range(start, self.batch.subjects.len());
        self.push(Item::Exposure(x, r))
    }

    /// Queues the blocks the ledger just sealed.
    pub fn sealed(&mut self, blocks: Vec<BlockRef>) -> Result<(), Error> {
        self.push(Item::Sealed(blocks))
    }

    /// Queues an index commit covering `records` ledger records (not
    /// necessarily durable: see [`Writer::commit_lazy`]).
    pub fn commit(&mut self, records: u64) -> Result<(), Error> {
        self.last = Some((records, false));
        self.push(Item::Commit(records, false))?;
        self.send()
    }

    /// Sends what is queued, makes the last commit durable, waits until the
    /// thread has applied it all, and returns its first error.
    pub fn finish(&mut self) -> Result<(), Error> {
        if let Some((records, false)) = self.last {
            self.last = Some((records, true));
            self.push(Item::Commit(records, true))?;
        }
        self.send()?;
        self.join()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // What was queued is applied; an error was the caller's to ask for.
        let _ = self.finish();
    }
}
