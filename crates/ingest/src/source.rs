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

/// Decompressed bytes of one input, chunk by chunk, from a helper thread.
pub struct Chunks {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    recycle: SyncSender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Chunks {
    /// Opens `input` and starts reading it. Opening errors (no such file) are
    /// returned here so a command can fail before it starts.
    pub fn open(input: &Input, progress: Progress) -> io::Result<Self> {
        Self::open_with(input, progress, false)
    }

    /// Like [`Chunks::open`]; with `follow`, data is passed on as soon as it
    /// is read, and a plain file that reaches its end is polled for more
    /// (`tail -f`). A gzip file or standard input ends where it ends.
    pub fn open_with(input: &Input, progress: Progress, follow: bool) -> io::Result<Self> {
        let source = input.open()?;
        let poll_at_end = follow && matches!(input, Input::Path(_));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let thread = std::thread::Builder::new().name("piiwatch-read".into()).spawn({
            let stop = stop.clone();
            move || pump(source, progress, &tx, &recycled, follow, poll_at_end, &stop)
        })?;
        Ok(Self { rx: Some(rx), recycle, thread: Some(thread), stop })
    }

    /// The next chunk; `None` at the end. An error ends the stream.
    pub fn next_chunk(&mut self) -> Option<io::Result<Vec<u8>>> {
        self.rx.as_ref()?.recv().ok()
    }

    /// The next chunk, waiting at most `idle` when given: `Err(())` when
    /// that time passed with nothing new.
    #[allow(clippy::result_unit_err)]
    pub fn next_chunk_within(&mut self, idle: Option<Duration>) -> Result<Option<io::Result<Vec<u8>>>, ()> {
        let Some(rx) = self.rx.as_ref() else { return Ok(None) };
        match idle {
            None => Ok(rx.recv().ok()),
            Some(d) => match rx.recv_timeout(d) {
                Ok(c) => Ok(Some(c)),
                Err(RecvTimeoutError::Timeout) => Err(()),
                Err(RecvTimeoutError::Disconnected) => Ok(None),
            },
        }
    }

    /// Hands a buffer back for reuse.
    pub fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.recycle.try_send(buf);
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // Closing our end makes the helper's next send fail, so it stops;
        // a helper polling a followed file checks the flag.
        self.stop.store(true, Ordering::Relaxed);
        drop(self.rx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump(
    source: Box<dyn Read + Send>,
    progress: Progress,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
    follow: bool,
    poll_at_end: bool,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::with_capacity(256 << 10, Counting { inner: source, progress });
    let gzip = match reader.fill_buf() {
        Ok(head) => head.starts_with(&[0x1f, 0x8b]),
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let poll_at_end = poll_at_end && !gzip;
    let mut reader: Box<dyn Read> = if gzip { Box::new(MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
        buf.resize(CHUNK_BYTES, 0);
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
        let done = (filled < CHUNK_BYTES && !follow) || (follow && filled == 0) || result.is_err();
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if let Err(e) = result {
            let _ = tx.send(Err(e));
            return;
        }
        if done {
            return;
        }
    }
}
