//! The quarantine file: one JSON object per bad line, with its input, line
//! number, reason and the start of the line.
//!
//! The file is created only when the first bad line arrives, with mode 0600
//! on Unix: a bad line may still carry identifiers.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::reader::Quarantined;

/// Appends quarantined lines to a file.
#[derive(Debug)]
pub struct QuarantineFile {
    path: PathBuf,
    append: bool,
    out: Option<BufWriter<File>>,
    written: u64,
    error: Option<io::Error>,
}

#[derive(Serialize)]
struct Record<'a> {
    source: &'a str,
    line: u64,
    kind: &'static str,
    reason: &'a str,
    excerpt: std::borrow::Cow<'a, str>,
}

impl QuarantineFile {
    /// A quarantine for one run at `path`: an existing file is replaced
    /// when the first bad line arrives (and left alone if none does).
    pub fn create(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), append: false, out: None, written: 0, error: None }
    }

    /// A quarantine that accumulates across runs (a store's).
    pub fn append(path: impl Into<PathBuf>) -> Self {
        Self { append: true, ..Self::create(path) }
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one record. The first write error is kept for [`Self::finish`]
    /// rather than stopping the read.
    pub fn write(&mut self, q: &Quarantined<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.try_write(q) {
            self.error = Some(e);
        }
    }

    fn try_write(&mut self, q: &Quarantined<'_>) -> io::Result<()> {
        if self.out.is_none() {
            let mut opts = OpenOptions::new();
            opts.create(true);
            if self.append {
                opts.append(true);
            } else {
                opts.write(true).truncate(true);
            }
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            self.out = Some(BufWriter::new(opts.open(&self.path)?));
        }
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        let record = Record {
            source: q.at.source,
            line: q.at.line,
            kind: q.reason.kind.as_str(),
            reason: &q.reason.detail,
            excerpt: String::from_utf8_lossy(q.excerpt),
        };
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Flushes; reports the first error met while writing.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}
