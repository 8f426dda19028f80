//! Lines extracted ahead of the interning thread.
//!
//! A worker thread takes a chunk as read, finds its complete lines (those
//! that start at its beginning or after a newline and end at a newline
//! within it) and runs the extractor ([`crate::fast`]) over each, and the
//! caller's [`Annotate`] (Sigma rules) after it. The reader then takes
//! each line's [`Flat`] (and note) by the line's offset instead of
//! parsing it, and interns on its own thread in input order, so ids,
//! events and quarantine records are the same whatever the number of
//! workers and wherever the chunks were cut. A line the worker did not
//! see (cut by the chunk's end, reassembled from two chunks) is parsed
//! inline as before, and its visitor annotates it itself.

use std::any::Any;
use std::sync::Arc;

use crate::fast::Flat;

/// What a caller's [`Annotate`] made of a line (downcast it to its type).
pub type Note = Box<dyn Any + Send>;

/// Work done on every line on the parsing workers, next to the extractor,
/// whose result rides with the line to the visitor
/// ([`crate::Visitor::event_noted`]).
pub trait Annotate: Send + Sync {
    /// A note on `text` (valid UTF-8, not blank), given the extractor's
    /// reading of it (`None`: the extractor left it to serde_json).
    fn annotate(&self, text: &str, flat: Option<&Flat>) -> Option<Note>;
}

/// An annotator, shared by the workers.
pub type Annotator = Arc<dyn Annotate>;

/// What the workers made of one line, for the visitor.
#[derive(Default)]
pub enum Noted {
    /// No annotator saw the line: the visitor annotates it itself if it must.
    #[default]
    Unseen,
    /// The annotator's note (`None`: nothing to say).
    Seen(Option<Note>),
}

impl std::fmt::Debug for Noted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Noted::Unseen => f.write_str("Unseen"),
            Noted::Seen(n) => write!(f, "Seen({})", if n.is_some() { "note" } else { "none" }),
        }
    }
}

/// One chunk's extracted lines, by start offset.
#[derive(Debug, Default)]
pub struct Pre {
    starts: Vec<u32>,
    /// `None`: the extractor was unsure (serde_json decides) or the line is not UTF-8.
    flats: Vec<Option<Flat>>,
    /// With an annotator: each line's note (`None` for a line not UTF-8).
    notes: Vec<Option<Noted>>,
}

impl Pre {
    /// Extracts every complete line of `chunk` no longer than `max_line`
    /// (and annotates it, with `annotate`).
    pub fn fill(&mut self, chunk: &[u8], max_line: usize, annotate: Option<&dyn Annotate>) {
        self.starts.clear();
        self.flats.clear();
        self.notes.clear();
        if u32::try_from(chunk.len()).is_err() {
            return;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            let mut line = &chunk[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if !line.is_empty() && line.len() <= max_line {
                self.starts.push(start as u32);
                let text = std::str::from_utf8(line).ok();
                let flat = text.and_then(Flat::extract);
                if let Some(a) = annotate {
                    let blank = || line.iter().all(u8::is_ascii_whitespace);
                    self.notes.push(text.filter(|_| !blank()).map(|t| Noted::Seen(a.annotate(t, flat.as_ref()))));
                }
                self.flats.push(flat);
            }
            start = end + 1;
        }
    }

    /// Lines extracted.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The index of the line starting at `start`, if this chunk extracted
    /// it. `next` is the caller's position, moved past what it looked up
    /// (lines are looked up in increasing order).
    pub(crate) fn find(&self, start: usize, next: &mut usize) -> Option<usize> {
        while self.starts.get(*next).is_some_and(|&s| (s as usize) < start) {
            *next += 1;
        }
        if self.starts.get(*next).is_some_and(|&s| s as usize == start) {
            *next += 1;
            Some(*next - 1)
        } else {
            None
        }
    }

    /// Line `i`'s extraction: `None` when the extractor left it to serde_json.
    pub(crate) fn flat(&self, i: usize) -> Option<&Flat> {
        self.flats[i].as_ref()
    }

    /// Line `i`'s note, taken.
    pub(crate) fn take_note(&mut self, i: usize) -> Noted {
        self.notes.get_mut(i).and_then(Option::take).unwrap_or_default()
    }
}
