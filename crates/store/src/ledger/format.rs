//! The ledger's bytes: segment headers, blocks and their codecs, record
//! frames, the hashes that chain records, and `HEAD`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::error::MAX_PAYLOAD;
/// First bytes of every new segment (blocks compressed with zstd).
pub const MAGIC: &[u8; 8] = b"PIIWLED3";
/// First bytes of a segment of the previous format (DEFLATE blocks).
pub const MAGIC_DEFLATE: &[u8; 8] = b"PIIWLED2";
/// The zstd level of blocks: level 1 measured fastest for its ratio here.
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// One zstd context per reading thread (making one per block showed in scans).
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// How a segment's blocks are compressed, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// zstd (`PIIWLED3`).
    Zstd,
    /// DEFLATE (`PIIWLED2`).
    Deflate,
}

impl Codec {
    /// The codec a segment header names; `None` when it is not a segment.
    pub fn of_header(header: &[u8]) -> Option<Self> {
        match header.get(..8)? {
            m if m == MAGIC => Some(Self::Zstd),
            m if m == MAGIC_DEFLATE => Some(Self::Deflate),
            _ => None,
        }
    }

    /// Compresses a block's records.
    pub fn compress(self, raw: &[u8]) -> io::Result<Vec<u8>> {
        self.compress_with(raw, &mut None)
    }

    /// As [`Codec::compress`], reusing a zstd context (one per writer: making
    /// one per block showed in profiles).
    pub(super) fn compress_with(
        self,
        raw: &[u8],
        ctx: &mut Option<zstd::bulk::Compressor<'static>>,
    ) -> io::Result<Vec<u8>> {
        match self {
            Self::Zstd => {
                let c = match ctx {
                    Some(c) => c,
                    None => ctx.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                };
                c.compress(raw)
            }
            Self::Deflate => {
                let mut enc = DeflateEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
                enc.write_all(raw).and_then(|()| enc.finish())
            }
        }
    }

    /// Decompresses a block's records, which must be exactly `rawlen` bytes
    /// (at most that many are ever produced).
    pub(super) fn decompress(self, data: &[u8], rawlen: usize) -> Result<Vec<u8>, String> {
        let raw = match self {
            Self::Zstd => DCTX
                .with(|d| {
                    let mut d = d.borrow_mut();
                    let d = match d.as_mut() {
                        Some(d) => d,
                        None => d.insert(zstd::bulk::Decompressor::new()?),
                    };
                    d.decompress(data, rawlen)
                })
                .map_err(|_| "does not decompress".to_owned())?,
            Self::Deflate => {
                let mut raw = Vec::with_capacity(rawlen);
                DeflateDecoder::new(data)
                    .take(rawlen as u64 + 1)
                    .read_to_end(&mut raw)
                    .map_err(|_| "does not decompress".to_owned())?;
                raw
            }
        };
        if raw.len() == rawlen { Ok(raw) } else { Err(format!("holds {} bytes of records, not {rawlen}", raw.len())) }
    }
}

/// A whole block as the ledger writes it (header and compressed records),
/// for tools and tests that rewrite one.
pub fn encode_block(codec: Codec, raw: &[u8]) -> io::Result<Vec<u8>> {
    let data = codec.compress(raw)?;
    let mut out = Vec::with_capacity(BLOCK_HEADER as usize + data.len());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&data).to_le_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// The records of the block at `pos` of a segment, and where the next
/// block starts; `None` when it does not read.
pub fn decode_block(segment: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    let codec = Codec::of_header(segment)?;
    read_block(segment, pos, segment.len(), codec).ok()
}
/// Bytes of a segment header.
pub const HEADER: u64 = 48;
/// Bytes a record adds to its payload (length, kind, hash).
pub const FRAME: u64 = 4 + 1 + 32;
/// Bytes of a block's header (compressed and raw length, CRC-32).
pub const BLOCK_HEADER: u64 = 12;
/// A block is sealed once its records reach this many bytes.
pub const BLOCK_RAW: usize = 256 << 10;
/// The largest raw block (one record of the largest size).
pub(super) const MAX_BLOCK_RAW: usize = MAX_PAYLOAD + FRAME as usize + BLOCK_RAW;
/// Segments roll over once they reach this size (unless configured).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// A 32-byte SHA-256.
pub type Hash = [u8; 32];

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    Error::io(what)
}

/// Where the ledger ends: how many records, and the hash of the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Records in the ledger.
    pub records: u64,
    /// Sequence number of the newest segment.
    pub segment: u64,
    /// Byte length of the newest segment.
    pub offset: u64,
    /// Hash of the last record (or the zero hash).
    pub hash: Hash,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HeadFile {
    records: u64,
    segment: u64,
    offset: u64,
    hash: String,
}

impl Head {
    pub(super) fn empty() -> Self {
        Self { records: 0, segment: 1, offset: HEADER, hash: [0; 32] }
    }
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:08}.seg"))
}

/// Reads `HEAD` from the ledger directory; `None` when there is none.
pub fn read_head(dir: &Path) -> Result<Option<Head>, Error> {
    let path = dir.join("HEAD");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    };
    let f: HeadFile = serde_json::from_str(&text)
        .map_err(|e| Error::Corrupt(format!("{} is not a valid HEAD: {e}", path.display())))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&f.hash, &mut hash)
        .map_err(|_| Error::Corrupt(format!("{}: hash is not 64 hex digits", path.display())))?;
    Ok(Some(Head { records: f.records, segment: f.segment, offset: f.offset, hash }))
}

/// Writes a file atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(format!("cannot write {}", tmp.display())))?;
    f.write_all(bytes).map_err(io_err(format!("cannot write {}", tmp.display())))?;
    f.sync_all().map_err(io_err(format!("cannot sync {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io_err(format!("cannot replace {}", path.display())))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("cannot sync {}", dir.display())))
}

pub(super) fn write_head(dir: &Path, h: &Head) -> Result<(), Error> {
    let f = HeadFile { records: h.records, segment: h.segment, offset: h.offset, hash: hex::encode(h.hash) };
    let text = serde_json::to_string(&f).map_err(Error::Encode)?;
    write_atomic(dir, "HEAD", text.as_bytes())
}

/// The hash chaining a record to the one before, from the record's leaf
/// hash ([`crate::checkpoint::leaf_hash`]).
pub fn chain_leaf(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// The hash chaining a record to the one before in a segment of `codec`'s
/// format, given the record's leaf hash ([`crate::checkpoint::leaf_hash`]),
/// which the chain of `PIIWLED3` goes through.
pub fn record_hash(codec: Codec, prev: &Hash, leaf: &Hash, kind: u8, payload: &[u8]) -> Hash {
    match codec {
        Codec::Zstd => chain_leaf(prev, leaf),
        Codec::Deflate => chain(prev, kind, payload),
    }
}

/// The hash chaining a record to the one before in a `PIIWLED2` segment.
pub fn chain(prev: &Hash, kind: u8, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

pub(super) fn header(seq: u64, prev: &Hash) -> [u8; HEADER as usize] {
    let mut b = [0u8; HEADER as usize];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..48].copy_from_slice(prev);
    b
}

pub(super) fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Reads the block at `pos` (of a segment whose meaningful bytes end at
/// `end`): its records' bytes and where the next block starts, or why it is
/// unreadable and, when its length is known, where the next block starts.
pub(super) fn read_block(
    buf: &[u8],
    pos: usize,
    end: usize,
    codec: Codec,
) -> Result<(Vec<u8>, usize), (String, Option<usize>)> {
    if end - pos < BLOCK_HEADER as usize {
        return Err((format!("ends with {} bytes of a block at byte {pos}: truncated", end - pos), None));
    }
    let clen = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap_or_default()) as usize;
    let rawlen = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap_or_default()) as usize;
    if rawlen > MAX_BLOCK_RAW {
        return Err((format!("block at byte {pos} claims {rawlen} bytes of records: altered"), None));
    }
    let start = pos + BLOCK_HEADER as usize;
    if clen > end - start {
        return Err((format!("block at byte {pos} runs past the end of the segment: truncated or altered"), None));
    }
    let next = start + clen;
    let crc = u32::from_le_bytes(buf[pos + 8..pos + 12].try_into().unwrap_or_default());
    if crc32(&buf[start..next]) != crc {
        return Err((format!("block at byte {pos} does not match its checksum: altered"), Some(next)));
    }
    match codec.decompress(&buf[start..next], rawlen) {
        Ok(raw) => Ok((raw, next)),
        Err(why) => Err((format!("block at byte {pos} {why}: altered"), Some(next))),
    }
}

/// The record framed at `at` in a block's records: kind, payload, stored
/// hash, and where the next record starts; `None` when it is cut short.
pub(super) fn frame(raw: &[u8], at: usize) -> Option<(u8, &[u8], Hash, usize)> {
    let rest = raw.len().checked_sub(at)?;
    if rest < FRAME as usize {
        return None;
    }
    let len = u32::from_le_bytes(raw[at..at + 4].try_into().ok()?) as usize;
    if len > rest - FRAME as usize {
        return None;
    }
    let hash: Hash = raw[at + 5 + len..at + FRAME as usize + len].try_into().ok()?;
    Some((raw[at + 4], &raw[at + 5..at + 5 + len], hash, at + FRAME as usize + len))
}
