//! Lines extracted ahead of the interning thread.
//!
//! A worker thread takes a chunk as read, finds its complete lines (those
//! that start at its beginning or after a newline and end at a newline
//! within it) and runs the extractor ([`crate::fast`]) over each. The
//! reader then takes each line's [`Flat`] by the line's offset instead of
//! parsing it, and interns on its own thread in input order, so ids,
//! events and quarantine records are the same whatever the number of
//! workers and wherever the chunks were cut. A line the worker did not
//! see (cut by the chunk's end, reassembled from two chunks) is parsed
//! inline as before.

use crate::fast::Flat;

/// One chunk's extracted lines, by start offset.
#[derive(Debug, Default)]
pub struct Pre {
    starts: Vec<u32>,
    /// `None`: the extractor was unsure (serde_json decides) or the line is not UTF-8.
    flats: Vec<Option<Flat>>,
}

impl Pre {
    /// Extracts every complete line of `chunk` no longer than `max_line`.
    pub fn fill(&mut self, chunk: &[u8], max_line: usize) {
        self.starts.clear();
        self.flats.clear();
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
                self.flats.push(std::str::from_utf8(line).ok().and_then(Flat::extract));
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

    /// The extraction of the line starting at `start`, if this chunk has one:
    /// `Some(None)` when the extractor left it to serde_json. `next` is the
    /// caller's position, moved past what it looked up (lines are looked up
    /// in increasing order).
    pub(crate) fn find(&self, start: usize, next: &mut usize) -> Option<Option<&Flat>> {
        while self.starts.get(*next).is_some_and(|&s| (s as usize) < start) {
            *next += 1;
        }
        if self.starts.get(*next).is_some_and(|&s| s as usize == start) {
            let flat = self.flats[*next].as_ref();
            *next += 1;
            Some(flat)
        } else {
            None
        }
    }
}
