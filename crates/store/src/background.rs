//! The exposure index built on a thread of its own while `ingest` appends.
//!
//! The parsing thread, which also normalizes, pseudonymises, chains and
//! compresses every event, is what limits ingest; building the index there
//! too made ingest 2.6 times slower. Here the parsing thread only hands each
//! event (already owned, with its subjects' dense ids) to this thread in
//! batches, in ledger order, with the blocks the ledger sealed and the
//! commits it made; this thread applies them to the index in that same order.
//! An index commit may finish after the ledger's: that is the lag
//! [`crate::Store::open`] already catches up on after a crash, so nothing
//! waits for it except [`Background::finish`], which `ingest` calls before
//! it reports.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::StoredEvent;
use crate::index::Index;
use crate::ledger::{BlockRef, Error};

/// Items sent in one message.
const BATCH: usize = 2048;

enum Item {
    Event(Box<StoredEvent>, Vec<u32>),
    Sealed(Vec<BlockRef>),
    Commit(u64),
}

/// The index writer thread and what is batched for it.
pub struct Background {
    tx: Option<SyncSender<Vec<Item>>>,
    batch: Vec<Item>,
    handle: Option<JoinHandle<Result<(), Error>>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").field("batched", &self.batch.len()).finish()
    }
}

fn run(mut index: Index, rx: Receiver<Vec<Item>>) -> Result<(), Error> {
    for batch in rx {
        for item in batch {
            match item {
                Item::Event(e, ids) => index.add_ids(&e, &ids)?,
                Item::Sealed(blocks) => index.sealed(&blocks),
                Item::Commit(records) => index.commit(records)?,
            }
        }
    }
    Ok(())
}

impl Background {
    /// Starts the thread, which owns `index` from now on.
    pub fn start(index: Index) -> Result<Self, Error> {
        let (tx, rx) = sync_channel::<Vec<Item>>(8);
        let handle = std::thread::Builder::new()
            .name("piiwatch-index".into())
            .spawn(move || run(index, rx))
            .map_err(|e| Error::Io { what: "cannot start the index thread".into(), source: e })?;
        Ok(Self { tx: Some(tx), batch: Vec::with_capacity(BATCH), handle: Some(handle) })
    }

    fn push(&mut self, item: Item) -> Result<(), Error> {
        self.batch.push(item);
        if self.batch.len() >= BATCH { self.send() } else { Ok(()) }
    }

    fn send(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent { Ok(()) } else { self.join() }
    }

    /// Joins the thread: its error, or an error saying it stopped.
    fn join(&mut self) -> Result<(), Error> {
        self.tx = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(Error::Corrupt("the index thread failed".into())),
        }
    }

    /// Queues an event, with its subjects' dense ids.
    pub fn event(&mut self, e: StoredEvent, ids: Vec<u32>) -> Result<(), Error> {
        self.push(Item::Event(Box::new(e), ids))
    }

    /// Queues the blocks the ledger just sealed.
    pub fn sealed(&mut self, blocks: Vec<BlockRef>) -> Result<(), Error> {
        self.push(Item::Sealed(blocks))
    }

    /// Queues an index commit covering `records` ledger records.
    pub fn commit(&mut self, records: u64) -> Result<(), Error> {
        self.push(Item::Commit(records))?;
        self.send()
    }

    /// Sends what is queued, waits until the thread has applied it all, and
    /// returns its first error.
    pub fn finish(&mut self) -> Result<(), Error> {
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
