//! Reading a store's ledger back in tests: its blocks decompressed.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::Path;

/// Blocks of a segment: (offset, bytes on disk, the records' bytes).
pub fn blocks(seg: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 48;
    while pos + 12 <= seg.len() {
        let (raw, next) = store::ledger::decode_block(seg, pos).unwrap();
        out.push((pos, next - pos, raw));
        pos = next;
    }
    out
}

/// The segment files of a store, in order.
pub fn segments(store: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(store.join("ledger"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Every record of every segment, decompressed, as (lossy) text.
pub fn ledger_text(store: &Path) -> String {
    let mut all = Vec::new();
    for p in segments(store) {
        for (_, _, raw) in blocks(&fs::read(p).unwrap()) {
            all.extend_from_slice(&raw);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}
