//! Checking the whole ledger: every hash, every segment's link, the end against `HEAD`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::format::*;
use super::reader::{RecordRef, list_segments};
use crate::Error;

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Segments read.
    pub segments: u64,
    /// Whole records read.
    pub records: u64,
    /// Records `HEAD` acknowledges.
    pub acknowledged: Option<u64>,
    /// Each thing wrong, naming where: empty when the ledger is intact.
    pub problems: Vec<String>,
    /// Things worth saying that are not damage (records after the last commit).
    pub notes: Vec<String>,
}

/// Reads every segment, recomputes every hash and each segment's link to the
/// one before, and compares the end with `HEAD`. Calls `each` with every
/// whole record up to `HEAD`, in order (also past a problem, so a caller
/// can count). Bytes after `HEAD` (a crash's torn tail, records never
/// committed) are not damage: they are reported as notes, and cut back when
/// the store is next opened.
pub fn verify(dir: &Path, mut each: impl FnMut(&RecordRef<'_>)) -> Result<Report, Error> {
    verify_leaves(dir, |r, _| each(r))
}

/// As [`verify`], handing `each` every record's RFC 6962 leaf hash too (the
/// chain of `PIIWLED3` segments goes through it, so it costs nothing more
/// there), so that the Merkle tree can be rebuilt without reading the
/// ledger again. The leaves are those of the records as they stand: when
/// the report has problems, they are not a tree anyone signed.
pub fn verify_leaves(dir: &Path, mut each: impl FnMut(&RecordRef<'_>, &Hash)) -> Result<Report, Error> {
    let mut r = Report::default();
    let head = match read_head(dir) {
        Ok(h) => h,
        Err(Error::Corrupt(m)) => {
            r.problems.push(m);
            None
        }
        Err(e) => return Err(e),
    };
    if head.is_none() && r.problems.is_empty() {
        r.problems.push(format!("{}: HEAD is missing", dir.display()));
    }
    r.acknowledged = head.map(|h| h.records);
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        r.problems.push(format!("{}: no segments", dir.display()));
    }
    let mut prev: Hash = [0; 32];
    let mut expected = 1u64;
    let mut at_head: Option<Hash> = None;
    let mut uncommitted = 0u64;
    let mut torn = false;
    let mut buf = Vec::new();
    for (seq, path) in &segments {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        if head.is_some_and(|h| *seq > h.segment) {
            // Started after the last commit.
            uncommitted += 1;
            continue;
        }
        while expected < *seq {
            r.problems.push(format!("segment {expected:08}.seg is missing"));
            expected += 1;
        }
        expected = seq + 1;
        r.segments += 1;
        buf.clear();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        let Some(codec) = Codec::of_header(&buf).filter(|_| buf.len() >= HEADER as usize) else {
            r.problems.push(format!("{name}: not a ledger segment (bad or missing header)"));
            continue;
        };
        let claimed = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default());
        if claimed != *seq {
            r.problems.push(format!("{name}: its header says segment {claimed}: segments renamed or reordered"));
        }
        if buf[16..48] != prev {
            r.problems.push(format!(
                "{name}: does not continue the segment before it (a segment or records removed, reordered or altered)"
            ));
        }
        // In HEAD's segment, what lies past HEAD's offset was never acknowledged.
        let end = match head {
            Some(h) if h.segment == *seq => {
                if (buf.len() as u64) < h.offset {
                    r.problems.push(format!(
                        "{name}: {} bytes, but HEAD acknowledges {}: truncated",
                        buf.len(),
                        h.offset
                    ));
                    buf.len()
                } else {
                    if buf.len() as u64 > h.offset {
                        torn = true;
                    }
                    h.offset as usize
                }
            }
            _ => buf.len(),
        };
        let mut pos = HEADER as usize;
        let mut index = 0u64;
        let mut resync = false;
        while pos < end {
            let block = pos;
            let raw = match read_block(&buf, pos, end, codec) {
                Ok((raw, next)) => {
                    pos = next;
                    raw
                }
                Err((why, next)) => {
                    r.problems.push(format!("{name}: {why}"));
                    match next {
                        // Its records are lost to reading; the chain picks up after it.
                        Some(n) => {
                            pos = n;
                            resync = true;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let mut at = 0;
            while at < raw.len() {
                let Some((kind, payload, stored, after)) = frame(&raw, at) else {
                    r.problems.push(format!("{name}: block at byte {block}: record {index} is cut short: altered"));
                    resync = true;
                    break;
                };
                let leaf = crate::checkpoint::leaf_hash(kind, payload);
                if resync {
                    resync = false;
                } else if record_hash(codec, &prev, &leaf, kind, payload) != stored {
                    r.problems.push(format!(
                        "{name}: record {index} (block at byte {block}) does not match its hash: altered, or a record before it removed or reordered"
                    ));
                }
                each(&RecordRef { segment: *seq, offset: block as u64, kind, payload }, &leaf);
                prev = stored;
                r.records += 1;
                if head.is_some_and(|h| h.records == r.records) {
                    at_head = Some(stored);
                }
                at = after;
                index += 1;
            }
        }
    }
    if let Some(h) = head {
        if r.records < h.records {
            r.problems.push(format!(
                "HEAD acknowledges {} records but the ledger holds {}: truncated or records removed",
                h.records, r.records
            ));
        } else if r.records > h.records {
            r.problems.push(format!(
                "the ledger holds {} records where HEAD acknowledges {}: records inserted or HEAD replaced",
                r.records, h.records
            ));
        } else if h.records > 0 && at_head != Some(h.hash) {
            r.problems.push(format!("record {} is not the one HEAD acknowledges: altered or replaced", h.records));
        }
    }
    if torn || uncommitted > 0 {
        r.notes.push(format!(
            "bytes after the last commit{} (never acknowledged: cut back when the store is next opened)",
            if uncommitted > 0 { format!(", and {uncommitted} segment(s) started after it") } else { String::new() }
        ));
    }
    Ok(r)
}
