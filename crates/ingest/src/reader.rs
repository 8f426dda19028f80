//! Drives the parser over inputs: splits chunks into lines, bounds their
//! length, numbers them, and hands each event or quarantined line to a
//! [`Visitor`].

use std::io;

use model::{DataMap, Event, Symbols};

use crate::parse::{LineParser, Reason};
use crate::pre::{Annotator, Noted};
use crate::source::{Chunk, ChunkOptions, Chunks, Input, Progress};

/// Lines longer than this are quarantined by default (1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Where a line came from.
#[derive(Copy, Clone, Debug)]
pub struct LineRef<'a> {
    /// The input's name (`-` for standard input).
    pub source: &'a str,
    /// 1-based line number within that input.
    pub line: u64,
    /// The line's bytes, without its newline; empty for a line never read
    /// whole (too long, or the stream failed).
    pub text: &'a [u8],
}

/// A line that could not be read as an event.
#[derive(Debug)]
pub struct Quarantined<'a> {
    /// Where.
    pub at: LineRef<'a>,
    /// Why.
    pub reason: &'a Reason,
    /// The start of the line (at most [`Quarantined::EXCERPT`] bytes).
    pub excerpt: &'a [u8],
}

impl Quarantined<'_> {
    /// Bytes of a bad line kept for the person fixing the pipeline.
    pub const EXCERPT: usize = 512;
}

/// Receives what the reader makes of each line.
pub trait Visitor {
    /// One event, with the symbol tables that resolve its ids.
    fn event(&mut self, at: LineRef<'_>, event: &Event<'_>, symbols: &Symbols);
    /// One event with what the reader's annotator ([`Reader::set_annotator`])
    /// made of its line on a parsing worker ([`Noted::Unseen`] when no
    /// worker saw it).
    fn event_noted(&mut self, at: LineRef<'_>, event: &Event<'_>, symbols: &Symbols, note: Noted) {
        let _ = note;
        self.event(at, event, symbols);
    }
    /// One quarantined line.
    fn quarantined(&mut self, q: &Quarantined<'_>);
}

/// Totals for one input.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Lines seen, including blank and bad ones.
    pub lines: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// Events handed to the visitor.
    pub events: u64,
    /// Lines quarantined.
    pub quarantined: u64,
}

impl std::ops::AddAssign for ReadSummary {
    fn add_assign(&mut self, o: Self) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.events += o.events;
        self.quarantined += o.quarantined;
    }
}

/// Reader options.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// Data map for subjects without labels.
    pub datamap: DataMap,
    /// Longest accepted line in bytes.
    pub max_line: usize,
    /// Parsing workers per input, extracting lines ahead of the thread that
    /// interns them (0: that thread parses everything itself). Events, ids
    /// and quarantine records are the same whatever the number.
    pub parse_threads: usize,
    /// Bytes read per chunk (tests cut inputs small to move chunk boundaries).
    pub chunk_bytes: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            datamap: DataMap::builtin(),
            max_line: DEFAULT_MAX_LINE,
            parse_threads: 0,
            chunk_bytes: crate::source::CHUNK_BYTES,
        }
    }
}

/// Reads inputs into events.
pub struct Reader {
    parser: LineParser,
    max_line: usize,
    parse_threads: usize,
    chunk_bytes: usize,
    progress: Progress,
    annotate: Option<Annotator>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("max_line", &self.max_line)
            .field("parse_threads", &self.parse_threads)
            .field("annotated", &self.annotate.is_some())
            .finish()
    }
}

/// What one [`Reader::step`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// One line was handed to the visitor (as an event or quarantined) or skipped as blank.
    Line,
    /// A following cursor waited its idle time and no new line arrived.
    Idle,
    /// The input has ended.
    End,
}

enum Feed<'c> {
    Thread(Chunks),
    Slices(std::vec::IntoIter<&'c [u8]>),
}

enum Held<'c> {
    Owned(Chunk),
    Borrowed(&'c [u8]),
}

impl Held<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Owned(c) => &c.bytes,
            Held::Borrowed(b) => b,
        }
    }

    /// The index of the worker's extraction of the line at `start`, if it made one.
    fn find(&self, start: usize, next: &mut usize) -> Option<usize> {
        match self {
            Held::Owned(c) => c.pre.find(start, next),
            Held::Borrowed(_) => None,
        }
    }

    /// Extraction `i`'s line, read (`None`: the extractor left it to serde_json).
    fn flat(&self, i: usize) -> Option<&crate::fast::Flat> {
        match self {
            Held::Owned(c) => c.pre.flat(i),
            Held::Borrowed(_) => None,
        }
    }

    /// Extraction `i`'s note, taken.
    fn take_note(&mut self, i: usize) -> Noted {
        match self {
            Held::Owned(c) => c.pre.take_note(i),
            Held::Borrowed(_) => Noted::Unseen,
        }
    }
}

/// One input being read, line by line: where it is, what it has left.
///
/// A cursor lets a caller interleave several inputs (`detect` merges its
/// inputs by event time by always stepping the one that is furthest behind).
pub struct Cursor<'c> {
    name: String,
    feed: Feed<'c>,
    held: Held<'c>,
    pos: usize,
    /// Where the next lookup in the held chunk's extracted lines starts.
    pre_next: usize,
    /// A line split across chunks, being reassembled.
    carry: Vec<u8>,
    /// Bytes of an over-long line skipped so far (0 when not skipping).
    skipping: usize,
    idle: Option<std::time::Duration>,
    failed: bool,
    ended: bool,
    summary: ReadSummary,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("name", &self.name).field("summary", &self.summary).finish()
    }
}

impl<'c> Cursor<'c> {
    /// The input's name, as quarantine records give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Totals so far.
    pub fn summary(&self) -> ReadSummary {
        self.summary
    }

    /// Whether the input has ended.
    pub fn is_done(&self) -> bool {
        self.ended
    }

    fn slices(name: &str, chunks: Vec<&'c [u8]>) -> Self {
        Self::new(name.to_owned(), Feed::Slices(chunks.into_iter()), None)
    }

    fn new(name: String, feed: Feed<'c>, idle: Option<std::time::Duration>) -> Self {
        Self {
            name,
            feed,
            held: Held::Borrowed(&[]),
            pos: 0,
            pre_next: 0,
            carry: Vec::new(),
            skipping: 0,
            idle,
            failed: false,
            ended: false,
            summary: ReadSummary::default(),
        }
    }
}

/// How [`Reader::open`] reads an input.
#[derive(Copy, Clone, Debug, Default)]
pub struct OpenOptions {
    /// Keep reading a file as it grows (`tail -f`); standard input is read until it closes.
    pub follow: bool,
    /// When set, [`Reader::step`] returns [`Step::Idle`] after waiting this long for data.
    pub idle: Option<std::time::Duration>,
}

impl Reader {
    /// A reader with these options.
    pub fn new(opts: ReaderOptions) -> Self {
        Self {
            parser: LineParser::new(opts.datamap),
            max_line: opts.max_line.max(1),
            parse_threads: opts.parse_threads,
            chunk_bytes: opts.chunk_bytes.max(1),
            progress: Progress::default(),
            annotate: None,
        }
    }

    /// Runs `annotate` on every line on the parsing workers (with
    /// `parse_threads` above 0); its note reaches the visitor with the
    /// line's event ([`Visitor::event_noted`]). Lines no worker saw reach
    /// it as [`Noted::Unseen`].
    pub fn set_annotator(&mut self, annotate: Option<Annotator>) {
        self.annotate = annotate;
    }

    /// Shared byte counter for progress bars.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Opens an input for stepping line by line. Fails only when the input
    /// cannot be opened.
    pub fn open(&self, input: &Input, opts: OpenOptions) -> io::Result<Cursor<'static>> {
        let chunk = ChunkOptions {
            follow: opts.follow,
            workers: self.parse_threads,
            max_line: self.max_line,
            chunk_bytes: self.chunk_bytes,
            annotate: self.annotate.clone(),
        };
        let chunks = Chunks::open_with(input, self.progress.clone(), chunk)?;
        Ok(Cursor::new(input.name(), Feed::Thread(chunks), opts.idle))
    }

    /// Reads one input to its end. Returns an error only when the input
    /// cannot be opened; a stream that fails midway is reported as one
    /// quarantined entry and the read ends there.
    pub fn read(&mut self, input: &Input, symbols: &mut Symbols, visitor: &mut dyn Visitor) -> io::Result<ReadSummary> {
        let mut cursor = self.open(input, OpenOptions::default())?;
        Ok(self.drain(&mut cursor, symbols, visitor))
    }

    /// Reads lines from an in-memory buffer (tests, fuzzing, benchmarks).
    pub fn read_bytes(
        &mut self,
        name: &str,
        bytes: &[u8],
        symbols: &mut Symbols,
        visitor: &mut dyn Visitor,
    ) -> ReadSummary {
        self.read_chunks(name, [bytes], symbols, visitor)
    }

    /// Reads lines from in-memory chunks split anywhere, as a stream arrives.
    pub fn read_chunks<'c>(
        &mut self,
        name: &str,
        chunks: impl IntoIterator<Item = &'c [u8]>,
        symbols: &mut Symbols,
        visitor: &mut dyn Visitor,
    ) -> ReadSummary {
        let mut cursor = Cursor::slices(name, chunks.into_iter().collect());
        self.drain(&mut cursor, symbols, visitor)
    }

    /// A cursor over in-memory chunks, for callers that step several inputs.
    pub fn cursor_over<'c>(&self, name: &str, chunks: impl IntoIterator<Item = &'c [u8]>) -> Cursor<'c> {
        Cursor::slices(name, chunks.into_iter().collect())
    }

    fn drain(&mut self, cursor: &mut Cursor<'_>, symbols: &mut Symbols, visitor: &mut dyn Visitor) -> ReadSummary {
        while self.step(cursor, symbols, visitor) != Step::End {}
        cursor.summary
    }

    /// Reads the next line of `cursor` and hands it to `visitor`.
    pub fn step(&mut self, c: &mut Cursor<'_>, symbols: &mut Symbols, visitor: &mut dyn Visitor) -> Step {
        loop {
            if c.ended {
                return Step::End;
            }
            let rest = &c.held.bytes()[c.pos..];
            if let Some(nl) = memchr::memchr(b'\n', rest) {
                c.pos += nl + 1;
                if c.skipping > 0 {
                    let len = c.skipping + nl;
                    c.skipping = 0;
                    self.too_long(len, c, visitor);
                } else if c.carry.is_empty() {
                    let start = c.pos - nl - 1;
                    let found = c.held.find(start, &mut c.pre_next);
                    let note = found.map(|i| c.held.take_note(i)).unwrap_or_default();
                    let line = &c.held.bytes()[start..c.pos - 1];
                    let pre = found.map(|i| c.held.flat(i));
                    self.line(line, (pre, note), &c.name, &mut c.summary, symbols, visitor);
                } else {
                    let mut carry = std::mem::take(&mut c.carry);
                    carry.extend_from_slice(&c.held.bytes()[c.pos - nl - 1..c.pos - 1]);
                    self.line(&carry, (None, Noted::Unseen), &c.name, &mut c.summary, symbols, visitor);
                    carry.clear();
                    c.carry = carry;
                }
                return Step::Line;
            }
            // The rest of this chunk is the start of a line that goes on in the next.
            if !rest.is_empty() {
                if c.skipping > 0 {
                    c.skipping += rest.len();
                } else if c.carry.len() + rest.len() > self.max_line {
                    c.skipping = c.carry.len() + rest.len();
                    c.carry.clear();
                } else {
                    c.carry.extend_from_slice(rest);
                }
            }
            let old = std::mem::replace(&mut c.held, Held::Borrowed(&[]));
            c.pos = 0;
            c.pre_next = 0;
            let next = match &mut c.feed {
                Feed::Slices(it) => it.next().map(|s| Ok(Held::Borrowed(s))),
                Feed::Thread(chunks) => {
                    if let Held::Owned(buf) = old {
                        chunks.give_back(buf);
                    }
                    if c.failed {
                        None
                    } else {
                        match chunks.next_chunk_within(c.idle) {
                            Ok(next) => next.map(|r| r.map(Held::Owned)),
                            Err(()) => return Step::Idle,
                        }
                    }
                }
            };
            match next {
                Some(Ok(held)) => c.held = held,
                Some(Err(e)) => {
                    // The stream broke: what was read so far stands, the failure is recorded.
                    c.failed = true;
                    self.flush_carry(c, symbols, visitor);
                    c.summary.lines += 1;
                    c.summary.quarantined += 1;
                    let reason = Reason::input_error(e);
                    let at = LineRef { source: &c.name, line: c.summary.lines, text: b"" };
                    visitor.quarantined(&Quarantined { at, reason: &reason, excerpt: b"" });
                    c.ended = true;
                    return Step::Line;
                }
                None => {
                    let had = c.skipping > 0 || !c.carry.is_empty();
                    self.flush_carry(c, symbols, visitor);
                    c.ended = true;
                    return if had { Step::Line } else { Step::End };
                }
            }
        }
    }

    fn flush_carry(&mut self, c: &mut Cursor<'_>, symbols: &mut Symbols, visitor: &mut dyn Visitor) {
        if c.skipping > 0 {
            let len = c.skipping;
            c.skipping = 0;
            self.too_long(len, c, visitor);
        } else if !c.carry.is_empty() {
            let carry = std::mem::take(&mut c.carry);
            self.line(&carry, (None, Noted::Unseen), &c.name, &mut c.summary, symbols, visitor);
        }
    }

    fn too_long(&mut self, len: usize, c: &mut Cursor<'_>, visitor: &mut dyn Visitor) {
        c.summary.lines += 1;
        c.summary.quarantined += 1;
        let reason = Reason::too_long(len, self.max_line);
        visitor.quarantined(&Quarantined {
            at: LineRef { source: &c.name, line: c.summary.lines, text: b"" },
            reason: &reason,
            excerpt: b"",
        });
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        mut line: &[u8],
        (pre, note): (Option<Option<&crate::fast::Flat>>, Noted),
        name: &str,
        sum: &mut ReadSummary,
        symbols: &mut Symbols,
        visitor: &mut dyn Visitor,
    ) {
        sum.lines += 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let at = LineRef { source: name, line: sum.lines, text: line };
        if line.len() > self.max_line {
            sum.quarantined += 1;
            let reason = Reason::too_long(line.len(), self.max_line);
            visitor.quarantined(&Quarantined { at, reason: &reason, excerpt: excerpt(line) });
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            sum.blank += 1;
            return;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                sum.quarantined += 1;
                let reason = Reason {
                    kind: crate::parse::ReasonKind::NotUtf8,
                    detail: format!("invalid utf-8 at byte {}", e.valid_up_to()),
                };
                visitor.quarantined(&Quarantined { at, reason: &reason, excerpt: excerpt(line) });
                return;
            }
        };
        match self.parser.parse_pre(text, pre, symbols) {
            Ok(event) => {
                sum.events += 1;
                visitor.event_noted(at, &event, symbols, note);
            }
            Err(reason) => {
                sum.quarantined += 1;
                visitor.quarantined(&Quarantined { at, reason: &reason, excerpt: excerpt(line) });
            }
        }
    }
}

fn excerpt(line: &[u8]) -> &[u8] {
    &line[..line.len().min(Quarantined::EXCERPT)]
}
