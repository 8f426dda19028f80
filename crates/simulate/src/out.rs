//! Ordering and writing: events of an hour are sorted by arrival; those
//! arriving after the hour wait for the next one, so the file is in arrival
//! order (event time plus a little collector delay) with bounded memory.
//! Bytes go through a pool of gzip workers, each compressing one block as an
//! independent gzip member; members are written in order, so the output is
//! byte-identical for a seed however the threads are scheduled.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::event::{Body, SimEvent};

/// Events waiting to be written, with the next sequence number.
#[derive(Default)]
pub struct Out {
    /// Pending events.
    pub events: Vec<SimEvent>,
    seq: u64,
}

impl Out {
    /// Adds an event; `attack` names the injected attack it belongs to.
    pub fn push(&mut self, arrival: i64, time: i64, body: Body, attack: Option<u8>) {
        self.seq += 1;
        self.events.push(SimEvent { arrival: arrival.max(time), time, seq: self.seq, body, attack });
    }

    /// Sorts pending events and moves those arriving before `until` to `ready`.
    pub fn drain_before(&mut self, until: i64, ready: &mut Vec<SimEvent>) {
        self.events.sort_unstable_by_key(|e| (e.arrival, e.seq));
        let cut = self.events.partition_point(|e| e.arrival < until);
        ready.extend(self.events.drain(..cut));
    }
}

/// Bytes of JSON per compressed block.
pub const BLOCK: usize = 4 << 20;

/// Where event lines go: a plain file or parallel gzip.
pub enum Sink {
    /// Uncompressed.
    Plain(BufWriter<File>),
    /// Gzip members compressed by workers.
    Gzip(GzipPool),
}

impl Sink {
    /// Opens `path`; gzip when `gzip`.
    pub fn create(path: &Path, gzip: bool) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(if gzip { Sink::Gzip(GzipPool::new(file)?) } else { Sink::Plain(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// Writes a block of whole lines.
    pub fn write_block(&mut self, block: Vec<u8>) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(&block),
            Sink::Gzip(p) => p.submit(block),
        }
    }

    /// Flushes and closes; reports any write error.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => {
                w.flush()?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()
            }
            Sink::Gzip(p) => p.finish(),
        }
    }
}

type Job = (u64, Vec<u8>);

/// Parallel gzip of ordered blocks.
pub struct GzipPool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    next: u64,
}

impl GzipPool {
    fn new(file: File) -> io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        let (jobs, job_rx) = sync_channel::<Job>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = sync_channel::<io::Result<Job>>(threads * 2);
        let mut workers = Vec::new();
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            workers.push(std::thread::Builder::new().name("piiwatch-gzip".into()).spawn(move || compress(&rx, &tx))?);
        }
        drop(done_tx);
        let writer =
            std::thread::Builder::new().name("piiwatch-write".into()).spawn(move || write_in_order(file, &done_rx))?;
        Ok(Self { jobs: Some(jobs), workers, writer: Some(writer), next: 0 })
    }

    fn submit(&mut self, block: Vec<u8>) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("gzip pool closed"))?;
        jobs.send((self.next, block)).map_err(|_| io::Error::other("gzip writer stopped"))?;
        self.next += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            w.join().map_err(|_| io::Error::other("gzip worker panicked"))?;
        }
        match self.writer.take() {
            Some(w) => w.join().map_err(|_| io::Error::other("gzip writer panicked"))?,
            None => Ok(()),
        }
    }
}

fn compress(rx: &Mutex<Receiver<Job>>, tx: &SyncSender<io::Result<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, block)) = job else { return };
        let mut enc = GzEncoder::new(Vec::with_capacity(block.len() / 6), Compression::new(1));
        let result = enc.write_all(&block).and_then(|()| enc.finish()).map(|gz| (seq, gz));
        if tx.send(result).is_err() {
            return;
        }
    }
}

fn write_in_order(file: File, rx: &Receiver<io::Result<Job>>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for done in rx {
        let (seq, gz) = done?;
        pending.insert(seq, gz);
        while let Some(gz) = pending.remove(&next) {
            out.write_all(&gz)?;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("gzip block missing"));
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}
