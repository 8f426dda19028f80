//! Where lines come from: files (plain or gzip, by magic bytes) and standard
//! input, read on a helper thread in large chunks.
//!
//! The helper thread does the reading and, for gzip, the inflating, so on a
//! two-core machine decompression overlaps with parsing. Chunks travel over a
//! bounded channel (memory stays bounded whatever the input size) and their
//! buffers come back over a second channel to be reused.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::bufread::MultiGzDecoder;

use crate::pre::{Annotator, Pre};

/// Size of one chunk handed from the reading thread to the parser.
pub const CHUNK_BYTES: usize = 1 << 20;
/// How often a followed file that reached its end is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Chunks in flight between the threads.
const IN_FLIGHT: usize = 4;

/// One input named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file, plain or gzip-compressed.
    Path(PathBuf),
    /// Standard input (`-`), plain or gzip-compressed.
    Stdin,
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" { Self::Stdin } else { Self::Path(PathBuf::from(arg)) }
    }

    /// How quarantine records and messages name this input.
    pub fn name(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Stdin => "-".to_owned(),
        }
    }

    /// Size on disk when known (for progress bars).
    pub fn size(&self) -> Option<u64> {
        match self {
            Self::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Self::Stdin => None,
        }
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Self::Path(p) => open_path(p),
            Self::Stdin => Ok(Box::new(io::stdin())),
        }
    }
}

fn open_path(p: &Path) -> io::Result<Box<dyn Read + Send>> {
    File::open(p).map(|f| Box::new(f) as Box<dyn Read + Send>)
}

/// Counts bytes as they are read from the underlying source (compressed
/// bytes for gzip), shared with whoever draws a progress bar.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Bytes read so far across all inputs.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// One chunk of an input's bytes, with its lines extracted ahead when
/// parsing workers are on ([`crate::pre`]).
#[derive(Debug, Default)]
pub struct Chunk {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Its complete lines, extracted (empty without workers).
    pub pre: Pre,
}

/// How [`Chunks`] reads.
#[derive(Clone)]
pub struct ChunkOptions {
    /// Pass data on as soon as it is read, and poll a plain file at its end.
    pub follow: bool,
    /// Parsing workers extracting lines ahead (0: lines are parsed on the reading side).
    pub workers: usize,
    /// Longest line the workers extract.
    pub max_line: usize,
    /// Bytes per chunk.
    pub chunk_bytes: usize,
    /// Run on every line the workers extract, after the extractor.
    pub annotate: Option<Annotator>,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { follow: false, workers: 0, max_line: usize::MAX, chunk_bytes: CHUNK_BYTES, annotate: None }
    }
}

type Sent = io::Result<Chunk>;

/// Decompressed bytes of one input, chunk by chunk, from a helper thread
/// (and, with workers, extracted on a pool: chunk `k` goes to worker
/// `k mod n` and is taken back from it in turn, so order needs no sorting).
pub struct Chunks {
    rx: Vec<Receiver<Sent>>,
    next: usize,
    recycle: SyncSender<Chunk>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Chunks {
    /// Opens `input` and starts reading it. Opening errors (no such file) are
    /// returned here so a command can fail before it starts.
    pub fn open(input: &Input, progress: Progress) -> io::Result<Self> {
        Self::open_with(input, progress, ChunkOptions::default())
    }

    /// Like [`Chunks::open`]; with `follow`, data is passed on as soon as it
    /// is read, and a plain file that reaches its end is polled for more
    /// (`tail -f`). A gzip file or standard input ends where it ends.
    pub fn open_with(input: &Input, progress: Progress, opts: ChunkOptions) -> io::Result<Self> {
        let source = input.open()?;
        let poll_at_end = opts.follow && matches!(input, Input::Path(_));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = opts.workers;
        let (recycle, recycled) = sync_channel::<Chunk>(IN_FLIGHT + 2 + 2 * workers);
        let mut threads = Vec::new();
        let mut rx = Vec::new();
        let mut to_workers = Vec::new();
        if workers == 0 {
            let (tx, r) = sync_channel::<Sent>(IN_FLIGHT);
            rx.push(r);
            to_workers.push(tx);
        } else {
            for w in 0..workers {
                let (tx, work) = sync_channel::<Sent>(2);
                let (done, r) = sync_channel::<Sent>(2);
                to_workers.push(tx);
                rx.push(r);
                let max_line = opts.max_line;
                let annotate = opts.annotate.clone();
                threads.push(std::thread::Builder::new().name(format!("piiwatch-parse-{w}")).spawn(move || {
                    for mut sent in work {
                        if let Ok(chunk) = &mut sent {
                            chunk.pre.fill(&chunk.bytes, max_line, annotate.as_deref());
                        }
                        if done.send(sent).is_err() {
                            return;
                        }
                    }
                })?);
            }
        }
        let pump = std::thread::Builder::new().name("piiwatch-read".into()).spawn({
            let stop = stop.clone();
            let (follow, chunk_bytes) = (opts.follow, opts.chunk_bytes.max(1));
            move || pump(source, progress, &to_workers, &recycled, (follow, poll_at_end, chunk_bytes), &stop)
        })?;
        threads.push(pump);
        Ok(Self { rx, next: 0, recycle, threads, stop })
    }

    /// The next chunk; `None` at the end. An error ends the stream.
    pub fn next_chunk(&mut self) -> Option<io::Result<Chunk>> {
        self.next_chunk_within(None).ok().flatten()
    }

    /// The next chunk, waiting at most `idle` when given: `Err(())` when
    /// that time passed with nothing new.
    #[allow(clippy::result_unit_err)]
    pub fn next_chunk_within(&mut self, idle: Option<Duration>) -> Result<Option<io::Result<Chunk>>, ()> {
        if self.rx.is_empty() {
            return Ok(None);
        }
        let rx = &self.rx[self.next % self.rx.len()];
        let got = match idle {
            None => rx.recv().ok(),
            Some(d) => match rx.recv_timeout(d) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => return Err(()),
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        if got.is_some() {
            self.next += 1;
        }
        Ok(got)
    }

    /// Hands a chunk back for its buffers to be reused.
    pub fn give_back(&self, chunk: Chunk) {
        // Kept at its length: refilling it then costs no zeroing.
        let _ = self.recycle.try_send(chunk);
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // Closing our ends makes the helpers' next send fail, so they stop;
        // a helper polling a followed file checks the flag.
        self.stop.store(true, Ordering::Relaxed);
        self.rx.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn pump(
    source: Box<dyn Read + Send>,
    progress: Progress,
    to: &[SyncSender<Sent>],
    recycled: &Receiver<Chunk>,
    (follow, poll_at_end, chunk_bytes): (bool, bool, usize),
    stop: &AtomicBool,
) {
    let mut seq = 0usize;
    let mut send = |sent: Sent| {
        let ok = to[seq % to.len()].send(sent).is_ok();
        seq += 1;
        ok
    };
    let mut reader = BufReader::with_capacity(256 << 10, Counting { inner: source, progress });
    let gzip = match reader.fill_buf() {
        Ok(head) => head.starts_with(&[0x1f, 0x8b]),
        Err(e) => {
            let _ = send(Err(e));
            return;
        }
    };
    let poll_at_end = poll_at_end && !gzip;
    let mut reader: Box<dyn Read> = if gzip { Box::new(MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    loop {
        let mut chunk = recycled
            .try_recv()
            .unwrap_or_else(|_| Chunk { bytes: Vec::with_capacity(chunk_bytes), pre: Pre::default() });
        let buf = &mut chunk.bytes;
        // A recycled buffer comes back at its length (its bytes are
        // overwritten before they are read); only a new one is zeroed.
        buf.resize(chunk_bytes, 0);
        let mut filled = 0;
        let result = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) if poll_at_end && filled == 0 => {
                    // Wait for the file to grow; stop when the consumer has gone.
                    std::thread::sleep(FOLLOW_POLL);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() || follow {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        let done = (filled < chunk_bytes && !follow) || (follow && filled == 0) || result.is_err();
        if filled > 0 && !send(Ok(chunk)) {
            return;
        }
        if let Err(e) = result {
            let _ = send(Err(e));
            return;
        }
        if done {
            return;
        }
    }
}
