//! Reader throughput on one core, next to parse-only peers, over the same
//! bytes in memory (so disk and gzip are out of the picture).
//!
//! ```text
//! piiwatch simulate --scenario coupang --customers 1000000 --days 7 --out bench-data/1m --no-gzip
//! PIIWATCH_BENCH_FILE=bench-data/1m/events.jsonl cargo bench -p ingest --bench reader
//! ```
//! Reads at most `PIIWATCH_BENCH_MAX_MB` megabytes (default 2000) of the file.
//! `bench/reader.sh` runs all of it, DuckDB included.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a report for people

use std::io::Read;
use std::time::Instant;

use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Event, Symbols};

struct Count {
    events: u64,
    subjects: u64,
    bad: u64,
}

impl Visitor for Count {
    fn event(&mut self, _at: LineRef<'_>, e: &Event<'_>, _s: &Symbols) {
        self.events += 1;
        if let Event::Access(a) = e {
            self.subjects += a.subjects.len() as u64;
        }
    }
    fn quarantined(&mut self, _q: &Quarantined<'_>) {
        self.bad += 1;
    }
}

fn report(name: &str, lines: u64, bytes: usize, secs: f64) {
    println!(
        "{name:<34} {:>8.3} M lines/s {:>8.0} MB/s  ({lines} lines, {secs:.2}s)",
        lines as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let Ok(path) = std::env::var("PIIWATCH_BENCH_FILE") else {
        eprintln!("set PIIWATCH_BENCH_FILE to an uncompressed events.jsonl (see the header of benches/reader.rs)");
        return;
    };
    let max_mb: u64 = std::env::var("PIIWATCH_BENCH_MAX_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut data = Vec::new();
    let file = std::fs::File::open(&path).expect("bench file opens");
    file.take(max_mb << 20).read_to_end(&mut data).expect("bench file reads");
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    data.truncate(end);
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!("{} lines, {:.1} MB, one thread", lines.len(), data.len() as f64 / 1e6);

    if std::env::var_os("PIIWATCH_BENCH_ONLY_READER").is_none() {
        peers(&lines, data.len(), &data);
    }

    let mut reader = Reader::new(ReaderOptions::default());
    let mut symbols = Symbols::default();
    let mut count = Count { events: 0, subjects: 0, bad: 0 };
    let t = Instant::now();
    reader.read_bytes("bench", &data, &mut symbols, &mut count);
    report("piiwatch reader (normalized)", count.events, data.len(), t.elapsed().as_secs_f64());
    println!(
        "  {} events, {} subject refs, {} quarantined, {} distinct subjects",
        count.events,
        count.subjects,
        count.bad,
        symbols.subjects.len()
    );
}

fn peers(lines: &[&[u8]], bytes: usize, data: &[u8]) {
    let t = Instant::now();
    let newlines = memchr::memchr_iter(b'\n', data).count();
    report("newline scan (memchr, the floor)", newlines as u64, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        ok += u64::from(std::str::from_utf8(l).is_ok_and(ingest::parse::extract_only));
    }
    report("piiwatch extractor (fast path, ours)", ok, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        ok += u64::from(sonic_rs::from_slice::<sonic_rs::Value>(l).is_ok());
    }
    report("sonic-rs parse to Value", ok, bytes, t.elapsed().as_secs_f64());

    // simd-json parses in place: each line is copied to a buffer first (the
    // copy is counted; it is a memcpy of 650 bytes against a parse).
    let mut buf: Vec<u8> = Vec::new();
    let mut scratch = simd_json::Buffers::default();
    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        buf.clear();
        buf.extend_from_slice(l);
        ok += u64::from(simd_json::to_borrowed_value_with_buffers(&mut buf, &mut scratch).is_ok());
    }
    report("simd-json parse to BorrowedValue", ok, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        buf.clear();
        buf.extend_from_slice(l);
        ok += u64::from(simd_json::serde::from_slice::<serde::de::IgnoredAny>(&mut buf).is_ok());
    }
    report("simd-json serde validate (IgnoredAny)", ok, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        ok += u64::from(serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
    }
    report("serde_json validate (IgnoredAny)", ok, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        ok += u64::from(std::str::from_utf8(l).is_ok_and(ingest::parse::parse_raw_only));
    }
    report("serde_json typed borrowed (ours)", ok, bytes, t.elapsed().as_secs_f64());

    let mut tree = sonic_rs::PointerTree::new();
    for path in [
        &["class_uid"][..],
        &["time"],
        &["activity_id"],
        &["status_id"],
        &["actor", "user", "uid"],
        &["actor", "user", "type"],
        &["actor", "session", "uid"],
        &["actor", "session", "issuer"],
        &["src_endpoint", "ip"],
        &["src_endpoint", "location", "country"],
        &["src_endpoint", "autonomous_system", "number"],
        &["src_endpoint", "autonomous_system", "name"],
        &["http_request", "user_agent"],
        &["api", "operation"],
        &["api", "service", "name"],
        &["resources"],
        &["user", "uid"],
        &["session", "uid"],
    ] {
        tree.add_path(path);
    }
    let t = Instant::now();
    let mut ok = 0u64;
    for l in lines {
        ok += u64::from(sonic_rs::get_many(*l, &tree).is_ok());
    }
    report("sonic-rs get_many (18 paths, lazy)", ok, bytes, t.elapsed().as_secs_f64());
}
