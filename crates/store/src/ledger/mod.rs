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

mod format;
mod reader;
mod verify;
mod writer;

pub use crate::error::MAX_PAYLOAD;
pub use format::{
    BLOCK_HEADER, BLOCK_RAW, Codec, FRAME, HEADER, Hash, Head, MAGIC, MAGIC_DEFLATE, SEGMENT_BYTES, chain, chain_leaf,
    decode_block, encode_block, read_head, record_hash, segment_path, write_atomic,
};
pub use reader::{RecordRef, list_segments, scan, scan_blocks};
pub use verify::{Report, verify, verify_leaves};
pub use writer::{BlockRef, Ledger};

#[cfg(test)]
mod tests {
    use std::fs;

    use super::format::write_head;
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
