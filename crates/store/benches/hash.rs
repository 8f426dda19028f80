//! Which hash to chain ledger records with: SHA-256 (sha2, SHA-NI where the
//! CPU has it) against BLAKE3, on records the size the ledger holds.
//!
//!     cargo bench -p store --bench hash
//!
//! Each record's hash covers the previous hash, its kind, length and payload,
//! as `store::ledger::chain` does; prints chained records per second.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a report for people

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut payloads = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..4096u64 {
        // 300 to 700 bytes, like the ledger's event records (~490 on average).
        let len = 300 + (i * 97 % 400) as usize;
        let mut p = vec![0u8; len];
        for b in &mut p {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = b' ' + (x % 90) as u8;
        }
        payloads.push(p);
    }
    let rounds = 500;
    let n = (rounds * payloads.len()) as f64;
    let bytes: usize = payloads.iter().map(Vec::len).sum::<usize>() * rounds;

    let t = Instant::now();
    let mut prev = [0u8; 32];
    for _ in 0..rounds {
        for p in &payloads {
            prev = store::ledger::chain(&prev, 1, p);
        }
    }
    black_box(prev);
    let s = t.elapsed().as_secs_f64();
    println!("sha2 SHA-256: {:.2} M records/s, {:.0} MB/s", n / s / 1e6, bytes as f64 / s / 1e6);

    let t = Instant::now();
    let mut prev = [0u8; 32];
    for _ in 0..rounds {
        for p in &payloads {
            let mut h = blake3::Hasher::new();
            h.update(&prev);
            h.update(&[1]);
            h.update(&(p.len() as u32).to_le_bytes());
            h.update(p);
            prev = *h.finalize().as_bytes();
        }
    }
    black_box(prev);
    let s = t.elapsed().as_secs_f64();
    println!("blake3: {:.2} M records/s, {:.0} MB/s", n / s / 1e6, bytes as f64 / s / 1e6);
}
