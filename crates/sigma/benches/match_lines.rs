//! Matching Sigma rules on OCSF lines, one thread, in memory: the cost per
//! line of each step, so the starter pack's share of `detect` can be
//! traced to where it goes.
//!
//! `PIIWATCH_BENCH_FILE=events.jsonl cargo bench -p sigma --bench match_lines`
//! (the first 200,000 lines of the file; the starter pack unless
//! `PIIWATCH_BENCH_RULES` names a rule directory).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a report for people

use std::time::Instant;

fn main() {
    let Ok(file) = std::env::var("PIIWATCH_BENCH_FILE") else {
        println!("set PIIWATCH_BENCH_FILE to a file of OCSF JSON lines (piiwatch simulate --no-gzip)");
        return;
    };
    let bytes = std::fs::read(&file).expect("the bench file");
    let lines: Vec<&str> =
        bytes.split(|b| *b == b'\n').filter_map(|l| std::str::from_utf8(l).ok()).take(200_000).collect();
    let opts = match std::env::var("PIIWATCH_BENCH_RULES") {
        Ok(dir) => sigma::Options { dirs: vec![dir.into()], ..sigma::Options::default() },
        Err(_) => sigma::Options { starter: true, ..sigma::Options::default() },
    };
    let rules = sigma::Rules::load(&opts).expect("rules load");
    let n = lines.len() as f64;
    let only = std::env::var("PIIWATCH_BENCH_ONLY").ok();
    let time = |name: &str, f: &mut dyn FnMut(&str) -> usize| {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            return;
        }
        let start = Instant::now();
        let hits: usize = lines.iter().map(|l| f(l)).sum();
        let s = start.elapsed().as_secs_f64();
        println!("{name:<48} {:>7.3} µs/line {:>8.0} K lines/s  ({hits} hits)", s / n * 1e6, n / s / 1e3);
    };
    time("extract only", &mut |l| usize::from(ingest::Flat::extract(l).is_some()));
    time("sonic-rs DOM only", &mut |l| usize::from(sonic_rs::from_str::<sonic_rs::Value>(l).is_ok()));
    time("extract + match (extractor's fields)", &mut |l| {
        let flat = ingest::Flat::extract(l);
        rules.match_text(l, flat.as_ref()).map_or(0, |m| m.hits.len())
    });
    time("DOM + match (the DOM's fields)", &mut |l| {
        let Ok(v) = sonic_rs::from_str::<sonic_rs::Value>(l) else { return 0 };
        rules.match_value(&v).map_or(0, |m| m.hits.len())
    });
}
