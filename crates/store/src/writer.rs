//! The ledger writer thread.
//!
//! Chaining, leaf hashing, compressing and writing records took a third of
//! the parsing thread's time, which is the thread that limits `ingest`. So
//! [`crate::Store`] hands records here in batches, already serialized, with
//! the index's items (values and exposures) between them in ledger order.
//! This thread owns the [`Ledger`] and the index thread ([`Background`]): it
//! appends each record, tells the index which blocks it sealed, forwards the
//! index items, and on a commit makes the ledger durable, moves `HEAD` and
//! answers with it. The order of everything (records, blocks, index items)
//! is the order [`crate::Store`] gave, so the index sees exactly what it
//! would on one thread.

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::Error;
use crate::StoredEvent;
use crate::background::Background;
use crate::index::{ExposedSubject, Exposure, NameDim};
use crate::ledger::{Head, Ledger};

/// Items in one message.
const BATCH_ITEMS: usize = 4096;
/// Record bytes in one message.
const BATCH_BYTES: usize = 1 << 20;

enum Item {
    /// A record: kind and payload (a range of [`Batch::bytes`]).
    Record(u8, Range<u32>),
    /// An owned event for the index, with its subjects' dense ids.
    Event(Box<StoredEvent>, Vec<u32>),
    /// The value of an id, for the index.
    Name(NameDim, u32, Range<u32>),
    /// An exposing access, for the index (its subjects: a range of [`Batch::subjects`]).
    Exposure(Exposure, Range<u32>),
    /// Commit the ledger (and, lazily, the index) and answer with the new head.
    Commit(SyncSender<Result<Head, Error>>),
    /// Make the index durable and wait for it; answer when done.
    Finish(SyncSender<Result<(), Error>>),
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    subjects: Vec<ExposedSubject>,
}

fn range(start: usize, end: usize) -> Range<u32> {
    start as u32..end as u32
}

/// The ledger writer thread, and what is batched for it.
pub(crate) struct Writer {
    tx: Option<SyncSender<Batch>>,
    /// Batches the thread has applied, emptied, to fill again (fresh
    /// megabyte buffers cost page faults every time).
    recycled: Receiver<Batch>,
    batch: Batch,
    handle: Option<JoinHandle<()>>,
    /// The last head a commit answered with.
    head: Head,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("head", &self.head).field("batched", &self.batch.items.len()).finish()
    }
}

/// The thread's state.
struct State {
    ledger: Ledger,
    index: Background,
    /// The first error met; every later commit answers with it.
    failed: Option<String>,
}

impl State {
    fn apply(&mut self, item: Item, bytes: &[u8], subjects: &[ExposedSubject]) -> Result<(), Error> {
        let slice = |r: &Range<u32>| bytes.get(r.start as usize..r.end as usize).unwrap_or_default();
        match item {
            Item::Record(kind, r) => {
                self.ledger.append(kind, slice(&r))?;
                self.sealed()
            }
            Item::Event(e, ids) => self.index.event(*e, ids),
            Item::Name(dim, id, r) => self.index.name(dim, id, slice(&r)),
            Item::Exposure(x, r) => {
                self.index.exposure(x, subjects.get(r.start as usize..r.end as usize).unwrap_or_default())
            }
            Item::Commit(reply) => {
                let _ = reply.send(self.commit());
                Ok(())
            }
            Item::Finish(reply) => {
                let _ = reply.send(self.finish());
                Ok(())
            }
        }
    }

    /// Tells the index which blocks were just written.
    fn sealed(&mut self) -> Result<(), Error> {
        let sealed = self.ledger.take_sealed();
        if sealed.is_empty() { Ok(()) } else { self.index.sealed(sealed) }
    }

    fn failure(&self) -> Result<(), Error> {
        match &self.failed {
            Some(why) => Err(Error::Stopped(format!("an earlier write failed: {why}"))),
            None => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<Head, Error> {
        self.failure()?;
        let head = self.ledger.commit()?;
        self.sealed()?;
        // The index follows the ledger (a crash in between: caught up at open).
        self.index.commit(head.records)?;
        Ok(head)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.failure()?;
        self.index.finish()
    }
}

fn run(mut state: State, rx: Receiver<Batch>, recycle: SyncSender<Batch>) {
    for Batch { mut items, mut bytes, mut subjects } in rx {
        for item in items.drain(..) {
            let failed = state.failed.is_some();
            match item {
                // Commits and finishes are answered even after a failure (with it).
                Item::Commit(_) | Item::Finish(_) => {
                    let _ = state.apply(item, &bytes, &subjects);
                }
                _ if failed => {}
                _ => {
                    if let Err(e) = state.apply(item, &bytes, &subjects) {
                        state.failed = Some(e.to_string());
                    }
                }
            }
        }
        bytes.clear();
        subjects.clear();
        // When the other side has enough spare batches, this one is freed.
        let _ = recycle.try_send(Batch { items, bytes, subjects });
    }
}

impl Writer {
    /// Starts the thread, which owns `ledger` and `index` from now on.
    pub(crate) fn start(ledger: Ledger, index: Background) -> Result<Self, Error> {
        let head = ledger.head();
        let (tx, rx) = sync_channel::<Batch>(8);
        let (recycle, recycled) = sync_channel::<Batch>(4);
        let state = State { ledger, index, failed: None };
        let handle = std::thread::Builder::new()
            .name("piiwatch-ledger".into())
            .spawn(move || run(state, rx, recycle))
            .map_err(|e| Error::Io { what: "cannot start the ledger thread".into(), source: e })?;
        Ok(Self { tx: Some(tx), recycled, batch: Batch::default(), handle: Some(handle), head })
    }

    /// The committed end of the ledger, as of the last commit.
    pub(crate) fn head(&self) -> Head {
        self.head
    }

    fn push(&mut self, item: Item) -> Result<(), Error> {
        self.batch.items.push(item);
        if self.batch.items.len() >= BATCH_ITEMS || self.batch.bytes.len() >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Error> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let next = self.recycled.try_recv().unwrap_or_else(|_| Batch {
            items: Vec::with_capacity(BATCH_ITEMS),
            bytes: Vec::with_capacity(BATCH_BYTES + (64 << 10)),
            subjects: Vec::with_capacity(BATCH_ITEMS * 2),
        });
        let batch = std::mem::replace(&mut self.batch, next);
        if self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok()) {
            Ok(())
        } else {
            Err(Error::Stopped("the ledger thread has stopped".into()))
        }
    }

    /// Queues a record (durable at the next [`Writer::commit`]).
    pub(crate) fn record(&mut self, kind: u8, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > crate::ledger::MAX_PAYLOAD {
            return Err(Error::TooLarge(payload.len()));
        }
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(payload);
        let r = range(start, self.batch.bytes.len());
        self.push(Item::Record(kind, r))
    }

    /// Queues an owned event for the index.
    pub(crate) fn event(&mut self, e: StoredEvent, ids: Vec<u32>) -> Result<(), Error> {
        self.push(Item::Event(Box::new(e), ids))
    }

    /// Queues the value of an id for the index.
    pub(crate) fn name(&mut self, dim: NameDim, id: u32, value: &[u8]) -> Result<(), Error> {
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(value);
        let r = range(start, self.batch.bytes.len());
        self.push(Item::Name(dim, id, r))
    }

    /// Queues an exposing access for the index.
    pub(crate) fn exposure(&mut self, x: Exposure, subjects: &[ExposedSubject]) -> Result<(), Error> {
        let start = self.batch.subjects.len();
        self.batch.subjects.extend_from_slice(subjects);
        let r = range(start, self.batch.subjects.len());
        self.push(Item::Exposure(x, r))
    }

    /// Makes every record queued durable and moves `HEAD`; returns the new head.
    pub(crate) fn commit(&mut self) -> Result<Head, Error> {
        let (reply, answer) = sync_channel(1);
        self.push(Item::Commit(reply))?;
        self.send()?;
        let head = answer.recv().map_err(|_| Error::Stopped("the ledger thread has stopped".into()))??;
        self.head = head;
        Ok(head)
    }

    /// Waits until the index has everything committed so far, durably.
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        let (reply, answer) = sync_channel(1);
        self.push(Item::Finish(reply))?;
        self.send()?;
        answer.recv().map_err(|_| Error::Stopped("the ledger thread has stopped".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Records not committed are dropped (cut back at the next open);
        // the thread ends once it has applied what it was sent.
        let _ = self.send();
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
