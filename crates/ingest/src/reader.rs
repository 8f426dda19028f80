//! Drives the parser over inputs: splits chunks into lines, bounds their
//! length, numbers them, and hands each event or quarantined line to a
//! [`Visitor`].

use std::io;

use model::{DataMap, Event, Symbols};

use crate::parse::{LineParser, Reason};
use crate::source::{Chunks, Input, Progress};

/// Lines longer than this are quarantined by default (1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Where a line came from.
#[derive(Copy, Clone, Debug)]
pub struct LineRef<'a> {
    /// The input's name (`-` for standard input).
    pub source: &'a str,
    /// 1-based line number within that input.
    pub line: u64,
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
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self { datamap: DataMap::builtin(), max_line: DEFAULT_MAX_LINE }
    }
}

/// Reads inputs into events.
#[derive(Debug)]
pub struct Reader {
    parser: LineParser,
    max_line: usize,
    /// A line split across chunks, being reassembled.
    carry: Vec<u8>,
    /// Bytes of an over-long line skipped so far (0 when not skipping).
    skipping: usize,
    progress: Progress,
}

impl Reader {
    /// A reader with these options.
    pub fn new(opts: ReaderOptions) -> Self {
        Self {
            parser: LineParser::new(opts.datamap),
            max_line: opts.max_line.max(1),
            carry: Vec::new(),
            skipping: 0,
            progress: Progress::default(),
        }
    }

    /// Shared byte counter for progress bars.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Reads one input to its end. Returns an error only when the input
    /// cannot be opened; a stream that fails midway is reported as one
    /// quarantined entry and the read ends there.
    pub fn read(&mut self, input: &Input, symbols: &mut Symbols, visitor: &mut dyn Visitor) -> io::Result<ReadSummary> {
        let name = input.name();
        let mut chunks = Chunks::open(input, self.progress.clone())?;
        let mut sum = ReadSummary::default();
        self.carry.clear();
        self.skipping = 0;
        while let Some(chunk) = chunks.next_chunk() {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    self.flush_carry(&name, symbols, visitor, &mut sum);
                    sum.lines += 1;
                    sum.quarantined += 1;
                    let reason = Reason::input_error(e);
                    let at = LineRef { source: &name, line: sum.lines };
                    visitor.quarantined(&Quarantined { at, reason: &reason, excerpt: b"" });
                    return Ok(sum);
                }
            };
            self.feed(&chunk, &name, symbols, visitor, &mut sum);
            chunks.give_back(chunk);
        }
        self.flush_carry(&name, symbols, visitor, &mut sum);
        Ok(sum)
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
        let mut sum = ReadSummary::default();
        self.carry.clear();
        self.skipping = 0;
        for chunk in chunks {
            self.feed(chunk, name, symbols, visitor, &mut sum);
        }
        self.flush_carry(name, symbols, visitor, &mut sum);
        sum
    }

    fn feed(
        &mut self,
        mut chunk: &[u8],
        name: &str,
        symbols: &mut Symbols,
        visitor: &mut dyn Visitor,
        sum: &mut ReadSummary,
    ) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            if self.skipping > 0 {
                let len = self.skipping + line.len();
                self.skipping = 0;
                self.too_long(len, name, visitor, sum);
            } else if self.carry.is_empty() {
                self.line(line, name, symbols, visitor, sum);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(line);
                self.line(&carry, name, symbols, visitor, sum);
                carry.clear();
                self.carry = carry;
            }
        }
        if chunk.is_empty() {
            return;
        }
        if self.skipping > 0 {
            self.skipping += chunk.len();
        } else if self.carry.len() + chunk.len() > self.max_line {
            self.skipping = self.carry.len() + chunk.len();
            self.carry.clear();
        } else {
            self.carry.extend_from_slice(chunk);
        }
    }

    fn flush_carry(&mut self, name: &str, symbols: &mut Symbols, visitor: &mut dyn Visitor, sum: &mut ReadSummary) {
        if self.skipping > 0 {
            let len = self.skipping;
            self.skipping = 0;
            self.too_long(len, name, visitor, sum);
        } else if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.line(&carry, name, symbols, visitor, sum);
        }
    }

    fn too_long(&mut self, len: usize, name: &str, visitor: &mut dyn Visitor, sum: &mut ReadSummary) {
        sum.lines += 1;
        sum.quarantined += 1;
        let reason = Reason::too_long(len, self.max_line);
        visitor.quarantined(&Quarantined {
            at: LineRef { source: name, line: sum.lines },
            reason: &reason,
            excerpt: b"",
        });
    }

    #[inline]
    fn line(
        &mut self,
        mut line: &[u8],
        name: &str,
        symbols: &mut Symbols,
        visitor: &mut dyn Visitor,
        sum: &mut ReadSummary,
    ) {
        sum.lines += 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let at = LineRef { source: name, line: sum.lines };
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
        match self.parser.parse(text, symbols) {
            Ok(event) => {
                sum.events += 1;
                visitor.event(at, &event, symbols);
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
