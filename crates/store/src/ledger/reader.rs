//! Reading records back for queries, without checking hashes.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::*;
use super::writer::BlockRef;
use crate::Error;

/// The segment files of a ledger directory, by sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(format!("cannot list {}", dir.display()))(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(format!("cannot list {}", dir.display())))?;
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else { continue };
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// One record as read back.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Segment sequence number.
    pub segment: u64,
    /// Byte offset of the frame in its segment.
    pub offset: u64,
    /// Record kind.
    pub kind: u8,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// Calls `each` with every record up to `HEAD`, in order, without checking
/// hashes (that is [`super::verify()`]'s job): for queries.
pub fn scan(dir: &Path, mut each: impl FnMut(&RecordRef<'_>)) -> Result<u64, Error> {
    let Some(head) = read_head(dir)? else {
        return Err(Error::Corrupt(format!("{}: HEAD is missing", dir.display())));
    };
    let mut n = 0u64;
    let mut buf = Vec::new();
    for (seq, path) in list_segments(dir)? {
        if seq > head.segment {
            break;
        }
        buf.clear();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        let end = if seq == head.segment { (head.offset as usize).min(buf.len()) } else { buf.len() };
        let codec = Codec::of_header(&buf)
            .ok_or_else(|| Error::Corrupt(format!("{} is not a ledger segment (bad header)", path.display())))?;
        let mut pos = HEADER as usize;
        while pos < end && n < head.records {
            let (raw, next) = read_block(&buf, pos, end, codec)
                .map_err(|(why, _)| Error::Corrupt(format!("{}: {why}", path.display())))?;
            let mut at = 0;
            while at < raw.len() {
                let Some((kind, payload, _, after)) = frame(&raw, at) else {
                    return Err(Error::Corrupt(format!(
                        "{}: a record in the block at byte {pos} is cut short",
                        path.display()
                    )));
                };
                each(&RecordRef { segment: seq, offset: pos as u64, kind, payload });
                n += 1;
                at = after;
            }
            pos = next;
        }
    }
    Ok(n)
}

/// Calls `each` with every record of the given blocks (committed ones, as
/// an index names them), block by block in the order given, without checking
/// hashes: for queries that know where to look.
pub fn scan_blocks(dir: &Path, blocks: &[BlockRef], mut each: impl FnMut(&RecordRef<'_>)) -> Result<u64, Error> {
    let mut n = 0u64;
    let mut open: Option<(u64, File, Codec)> = None;
    let mut buf = Vec::new();
    for b in blocks {
        if open.as_ref().is_none_or(|(seq, _, _)| *seq != b.segment) {
            let path = segment_path(dir, b.segment);
            let mut f = File::open(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
            let mut magic = [0u8; 8];
            f.read_exact(&mut magic).map_err(io_err(format!("cannot read {}", path.display())))?;
            let codec = Codec::of_header(&magic)
                .ok_or_else(|| Error::Corrupt(format!("{} is not a ledger segment (bad header)", path.display())))?;
            open = Some((b.segment, f, codec));
        }
        let Some((_, f, codec)) = open.as_mut() else { continue };
        let codec = *codec;
        let path = segment_path(dir, b.segment);
        let mut head = [0u8; BLOCK_HEADER as usize];
        f.seek(SeekFrom::Start(b.offset)).and_then(|_| f.read_exact(&mut head)).map_err(io_err(format!(
            "cannot read the block at byte {} of {}",
            b.offset,
            path.display()
        )))?;
        let clen = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
        if clen > MAX_BLOCK_RAW {
            return Err(Error::Corrupt(format!("{}: block at byte {} is too long: altered", path.display(), b.offset)));
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(BLOCK_HEADER as usize + clen, 0);
        f.read_exact(&mut buf[BLOCK_HEADER as usize..]).map_err(io_err(format!(
            "cannot read the block at byte {} of {}",
            b.offset,
            path.display()
        )))?;
        let (raw, _) = read_block(&buf, 0, buf.len(), codec)
            .map_err(|(why, _)| Error::Corrupt(format!("{}: at byte {}: {why}", path.display(), b.offset)))?;
        let mut at = 0;
        while at < raw.len() {
            let Some((kind, payload, _, after)) = frame(&raw, at) else {
                return Err(Error::Corrupt(format!(
                    "{}: a record in the block at byte {} is cut short",
                    path.display(),
                    b.offset
                )));
            };
            each(&RecordRef { segment: b.segment, offset: b.offset, kind, payload });
            n += 1;
            at = after;
        }
    }
    Ok(n)
}
