//! Appending: [`Ledger`] fills blocks, seals them, rolls segments and commits `HEAD`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::*;
use super::reader::list_segments;
use crate::Error;
use crate::error::MAX_PAYLOAD;

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
