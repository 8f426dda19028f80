//! The ledger: append-only segment files of hash-chained records, compressed
//! in blocks.
//!
//! A segment (`ledger/00000001.seg`, ...) starts with a 48-byte header:
//! the magic `PIIWLED3`, its sequence number (u64 LE) and the hash of the
//! last record of the segment before (zeros for the first), so segments are
//! chained to each other. Then blocks, each
//!
//! ```text
//! compressed length: u32 LE | raw length: u32 LE | CRC-32 of the compressed bytes: u32 LE | zstd(records)
//! ```
//!
//! (the CRC makes any flipped bit of a block show, even one the compressor
//! would ignore). zstd at level 1 compresses these records 1.6 times faster
//! than DEFLATE did and 1.5 times smaller, and inflates them 2.3 times
//! faster (measured on ingest's records; `BENCHMARKS.md`). Segments of the
//! previous format (`PIIWLED2`, DEFLATE blocks) are still read, verified
//! and appended to; new segments are always `PIIWLED3`.
//!
//! and inside a block, records, each framed as
//!
//! ```text
//! len: u32 LE | kind: u8 | payload: len bytes | hash: 32 bytes
//! hash = SHA-256(previous record's hash | leaf)
//! leaf = SHA-256(0x00 | kind | len | payload)      (the record's RFC 6962 leaf hash)
//! ```
//!
//! The chain is over the records themselves, so compression changes nothing
//! about what is proved; it goes through the record's Merkle leaf hash,
//! which the signed checkpoints need anyway, so each record is hashed once
//! (`PIIWLED2` segments chained `SHA-256(previous | kind | len | payload)`,
//! which hashed every record twice; they are verified that way still, and
//! a store of that format continues in a new `PIIWLED3` segment). Appends fill a block in memory; a block is sealed
//! (compressed and written) when it is full and at every commit. Segments
//! roll over past a size bound. [`Ledger::commit`] seals, flushes and
//! fsyncs, and only then moves `HEAD` (record count, segment, byte offset and
//! tip hash, replaced atomically by rename). What `HEAD` names is what the
//! store acknowledged: on the next open anything after it (a torn block,
//! blocks never committed) is cut back, so a crash loses nothing
//! acknowledged and leaves nothing half-counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use sha2::{Digest, Sha256};

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
    fn compress_with(self, raw: &[u8], ctx: &mut Option<zstd::bulk::Compressor<'static>>) -> io::Result<Vec<u8>> {
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
    fn decompress(self, data: &[u8], rawlen: usize) -> Result<Vec<u8>, String> {
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
const MAX_BLOCK_RAW: usize = MAX_PAYLOAD + FRAME as usize + BLOCK_RAW;
/// The largest payload a record may have.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Segments roll over once they reach this size (unless configured).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// A 32-byte SHA-256.
pub type Hash = [u8; 32];

/// Errors opening or writing a ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file system failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The ledger is not in a state it can be appended to; `verify` says more.
    #[error("{0} (run `piiwatch verify` for details)")]
    Corrupt(String),
    /// A record too large to append.
    #[error("record of {0} bytes exceeds the limit of {MAX_PAYLOAD} bytes")]
    TooLarge(usize),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
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
    fn empty() -> Self {
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

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("cannot sync {}", dir.display())))
}

fn write_head(dir: &Path, h: &Head) -> Result<(), Error> {
    let f = HeadFile { records: h.records, segment: h.segment, offset: h.offset, hash: hex::encode(h.hash) };
    let text = serde_json::to_string(&f).map_err(|e| Error::Corrupt(e.to_string()))?;
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

/// The hash chaining a record to the one before in a segment of `codec`'s format.
pub fn record_hash(codec: Codec, prev: &Hash, kind: u8, payload: &[u8]) -> Hash {
    match codec {
        Codec::Zstd => chain_leaf(prev, &crate::checkpoint::leaf_hash(kind, payload)),
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

fn header(seq: u64, prev: &Hash) -> [u8; HEADER as usize] {
    let mut b = [0u8; HEADER as usize];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..48].copy_from_slice(prev);
    b
}

/// An open ledger, appending.
pub struct Ledger {
    dir: PathBuf,
    out: BufWriter<File>,
    /// Records of the block being filled, not yet written.
    block: Vec<u8>,
    /// Hash of the last record written out (the tip minus the block).
    sealed: Hash,
    /// What the last commit made durable.
    head: Head,
    /// Where appends have reached.
    tip: Head,
    segment_bytes: u64,
    /// A segment was started since the last commit (the directory needs a sync).
    rolled: bool,
    /// Blocks written since [`Ledger::take_sealed`] last took them: where each starts.
    sealed_blocks: Vec<BlockRef>,
    /// Signed Merkle checkpoints kept in step with appends and commits.
    checkpoints: Option<crate::checkpoint::Checkpointer>,
    /// How the segment being written compresses its blocks.
    codec: Codec,
    /// The zstd context, made on first use.
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// Where a block starts: its segment and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// Segment sequence number.
    pub segment: u64,
    /// Byte offset of the block header in the segment.
    pub offset: u64,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.dir).field("head", &self.head).finish()
    }
}

impl Ledger {
    /// Opens the ledger in `dir` (creating it when absent) for appending,
    /// cutting back whatever lies after `HEAD`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let segments = list_segments(dir)?;
        let head = match read_head(dir)? {
            Some(h) => h,
            None if segments.is_empty() => {
                let h = Head::empty();
                let path = segment_path(dir, 1);
                let mut f = File::create(&path).map_err(io_err(format!("cannot create {}", path.display())))?;
                f.write_all(&header(1, &h.hash)).map_err(io_err(format!("cannot write {}", path.display())))?;
                f.sync_all().map_err(io_err(format!("cannot sync {}", path.display())))?;
                sync_dir(dir)?;
                write_head(dir, &h)?;
                h
            }
            None => return Err(Error::Corrupt(format!("{} has segments but no HEAD", dir.display()))),
        };
        // Segments after HEAD's were started but never committed.
        for &(seq, ref path) in &segments {
            if seq > head.segment {
                fs::remove_file(path).map_err(io_err(format!("cannot remove uncommitted {}", path.display())))?;
            }
        }
        let path = segment_path(dir, head.segment);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Corrupt(format!("cannot open {} named by HEAD: {e}", path.display())))?;
        let len = f.metadata().map_err(io_err(format!("cannot stat {}", path.display())))?.len();
        if len < head.offset {
            return Err(Error::Corrupt(format!(
                "{} is {len} bytes but HEAD says {}: truncated",
                path.display(),
                head.offset
            )));
        }
        if len > head.offset {
            // A torn record, or records never committed: cut back to HEAD.
            f.set_len(head.offset).map_err(io_err(format!("cannot cut back {}", path.display())))?;
            f.sync_all().map_err(io_err(format!("cannot sync {}", path.display())))?;
        }
        let mut magic = [0u8; 8];
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_exact(&mut magic))
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        let codec = Codec::of_header(&magic)
            .ok_or_else(|| Error::Corrupt(format!("{} is not a ledger segment (bad header)", path.display())))?;
        f.seek(SeekFrom::End(0)).map_err(io_err(format!("cannot seek {}", path.display())))?;
        Ok(Self {
            codec,
            zstd: None,
            dir: dir.to_owned(),
            out: BufWriter::with_capacity(1 << 20, f),
            block: Vec::with_capacity(BLOCK_RAW + (64 << 10)),
            sealed: head.hash,
            head,
            tip: head,
            segment_bytes: segment_bytes.max(HEADER + FRAME),
            rolled: false,
            sealed_blocks: Vec::new(),
            checkpoints: None,
        })
    }

    /// Keeps `checkpoints` in step with this ledger from now on: every
    /// record appended is pushed to it, its leaves are made durable before
    /// `HEAD` moves, and a checkpoint is signed once it has.
    pub fn attach(&mut self, checkpoints: crate::checkpoint::Checkpointer) {
        self.checkpoints = Some(checkpoints);
    }

    /// The committed end of the ledger.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Where appends have reached (committed or not).
    pub fn tip(&self) -> Head {
        self.tip
    }

    /// The blocks written since the last call, in order: each holds every
    /// record appended after the previous one's last, up to a seal (a full
    /// block, or a commit).
    pub fn take_sealed(&mut self) -> Vec<BlockRef> {
        std::mem::take(&mut self.sealed_blocks)
    }

    /// Appends one record (not durable until [`Ledger::commit`]).
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge(payload.len()));
        }
        if self.codec == Codec::Deflate {
            // A store of the previous format continues in a segment of this one.
            self.seal()?;
            self.roll()?;
        }
        let leaf = crate::checkpoint::leaf_hash(kind, payload);
        let hash = chain_leaf(&self.tip.hash, &leaf);
        self.block.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.block.push(kind);
        self.block.extend_from_slice(payload);
        self.block.extend_from_slice(&hash);
        self.tip.records += 1;
        self.tip.hash = hash;
        if let Some(c) = &mut self.checkpoints {
            c.push_leaf(leaf);
        }
        if self.block.len() >= BLOCK_RAW {
            self.seal()?;
        }
        Ok(())
    }

    /// Compresses the block being filled and writes it (to a new segment
    /// if the current one is full).
    fn seal(&mut self) -> Result<(), Error> {
        if self.block.is_empty() {
            return Ok(());
        }
        if self.tip.offset >= self.segment_bytes && self.tip.offset > HEADER {
            self.roll()?;
        }
        let compressed =
            self.codec.compress_with(&self.block, &mut self.zstd).map_err(io_err("cannot compress a block"))?;
        let path = segment_path(&self.dir, self.tip.segment);
        let w = &mut self.out;
        (|| {
            w.write_all(&(compressed.len() as u32).to_le_bytes())?;
            w.write_all(&(self.block.len() as u32).to_le_bytes())?;
            w.write_all(&crc32(&compressed).to_le_bytes())?;
            w.write_all(&compressed)
        })()
        .map_err(io_err(format!("cannot append to {}", path.display())))?;
        self.sealed_blocks.push(BlockRef { segment: self.tip.segment, offset: self.tip.offset });
        self.tip.offset += BLOCK_HEADER + compressed.len() as u64;
        self.block.clear();
        self.sealed = self.tip.hash;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), Error> {
        self.flush_sync()?;
        let seq = self.tip.segment + 1;
        let path = segment_path(&self.dir, seq);
        let mut f = File::create(&path).map_err(io_err(format!("cannot create {}", path.display())))?;
        // The new segment continues from the last record already written
        // (the block about to be written follows it).
        f.write_all(&header(seq, &self.sealed)).map_err(io_err(format!("cannot write {}", path.display())))?;
        self.out = BufWriter::with_capacity(1 << 20, f);
        self.codec = Codec::Zstd;
        self.tip.segment = seq;
        self.tip.offset = HEADER;
        self.rolled = true;
        Ok(())
    }

    fn flush_sync(&mut self) -> Result<(), Error> {
        let path = segment_path(&self.dir, self.tip.segment);
        self.out.flush().map_err(io_err(format!("cannot write {}", path.display())))?;
        self.out.get_ref().sync_data().map_err(io_err(format!("cannot sync {}", path.display())))
    }

    /// Makes everything appended durable, then moves `HEAD` to it. Returns
    /// the new head: from here on it survives a crash.
    pub fn commit(&mut self) -> Result<Head, Error> {
        self.seal()?;
        self.flush_sync()?;
        if self.rolled {
            sync_dir(&self.dir)?;
            self.rolled = false;
        }
        if let Some(c) = &mut self.checkpoints {
            c.sync_leaves()?;
        }
        write_head(&self.dir, &self.tip)?;
        self.head = self.tip;
        if let Some(c) = &mut self.checkpoints {
            c.commit(self.head.records)?;
        }
        Ok(self.head)
    }
}

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

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Reads the block at `pos` (of a segment whose meaningful bytes end at
/// `end`): its records' bytes and where the next block starts, or why it is
/// unreadable and, when its length is known, where the next block starts.
fn read_block(buf: &[u8], pos: usize, end: usize, codec: Codec) -> Result<(Vec<u8>, usize), (String, Option<usize>)> {
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
fn frame(raw: &[u8], at: usize) -> Option<(u8, &[u8], Hash, usize)> {
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

/// Calls `each` with every record up to `HEAD`, in order, without checking
/// hashes (that is [`verify`]'s job): for queries.
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
                if resync {
                    resync = false;
                } else if record_hash(codec, &prev, kind, payload) != stored {
                    r.problems.push(format!(
                        "{name}: record {index} (block at byte {block}) does not match its hash: altered, or a record before it removed or reordered"
                    ));
                }
                each(&RecordRef { segment: *seq, offset: block as u64, kind, payload });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames records as a block's raw bytes, chained as `chain` says.
    fn framed(prev: &mut Hash, records: &[&[u8]], chain_of: impl Fn(&Hash, u8, &[u8]) -> Hash) -> Vec<u8> {
        let mut raw = Vec::new();
        for p in records {
            let h = chain_of(prev, 1, p);
            raw.extend_from_slice(&(p.len() as u32).to_le_bytes());
            raw.push(1);
            raw.extend_from_slice(p);
            raw.extend_from_slice(&h);
            *prev = h;
        }
        raw
    }

    #[test]
    fn a_store_of_the_deflate_format_verifies_and_continues_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A segment as the previous format wrote it: DEFLATE blocks, records chained over their bytes.
        let mut prev = [0u8; 32];
        let mut seg = Vec::new();
        seg.extend_from_slice(MAGIC_DEFLATE);
        seg.extend_from_slice(&1u64.to_le_bytes());
        seg.extend_from_slice(&[0u8; 32]);
        let raw = framed(&mut prev, &[b"{\"a\":1}", b"{\"a\":2}"], chain);
        seg.extend_from_slice(&encode_block(Codec::Deflate, &raw).unwrap());
        fs::write(segment_path(d, 1), &seg).unwrap();
        write_head(d, &Head { records: 2, segment: 1, offset: seg.len() as u64, hash: prev }).unwrap();
        let r = verify(d, |_| {}).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.records, 2);

        let mut l = Ledger::open(d, SEGMENT_BYTES).unwrap();
        l.append(1, b"{\"a\":3}").unwrap();
        let head = l.commit().unwrap();
        assert_eq!((head.records, head.segment), (3, 2), "new records go to a new segment");
        let new = fs::read(segment_path(d, 2)).unwrap();
        assert_eq!(&new[..8], MAGIC);
        let mut seen = Vec::new();
        let r = verify(d, |rec| seen.push(rec.payload.to_vec())).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(seen, vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec(), b"{\"a\":3}".to_vec()]);
        assert_eq!(scan(d, |_| {}).unwrap(), 3);

        // A record of the old segment altered (and its block rewritten) is still named.
        let mut p2 = [0u8; 32];
        let mut raw = framed(&mut p2, &[b"{\"a\":1}", b"{\"a\":2}"], chain);
        raw[5] = b'[';
        let mut seg2 = seg[..HEADER as usize].to_vec();
        seg2.extend_from_slice(&encode_block(Codec::Deflate, &raw).unwrap());
        fs::write(segment_path(d, 1), &seg2).unwrap();
        let r = verify(d, |_| {}).unwrap();
        assert!(r.problems.iter().any(|p| p.contains("record 0")), "{:?}", r.problems);
    }
}
