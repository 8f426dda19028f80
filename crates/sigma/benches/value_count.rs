//! `value_count` at scale, without parsing: the correlation windows alone.
//!
//! 1. Subjects grouped by signing key, about 25,000 distinct subjects per
//!    one-hour window (issue 15's figure): events per second through
//!    `corr::State::add`, and findings per group and window (one each,
//!    plus updates as the count grows, never one per event).
//! 2. One group over a 150-day window holding 10 M distinct values: the
//!    state's estimate and the process's peak RSS.
//!
//! `cargo bench -p sigma --bench value_count` (release profile).
#![allow(clippy::print_stdout, clippy::unwrap_used)] // a report for people

use std::time::Instant;

use rsigma_parser::ConditionOperator;
use sigma::corr::{Input, Kind, Predicate, Spec, State};

fn spec(span: i64, gte: f64) -> Spec {
    Spec {
        kind: Kind::ValueCount,
        timespan: span,
        predicates: vec![Predicate { op: ConditionOperator::Gte, value: gte }],
        expr: None,
        ref_names: vec![vec![]],
        refs: 1,
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A small xorshift, so the bench needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    // 1. Four signing keys; 6 hours of events at 2.5 M an hour (about 700/s
    // of event time), subjects drawn from 26,000 per key so that an hour's
    // window holds about 25,000 distinct ones.
    let hour = 3_600_000i64;
    let events: u64 = 15_000_000;
    let keys: [Box<str>; 4] = ["auth-key-2019".into(), "staff-key-2024".into(), "svc-key-2023".into(), "k4".into()];
    let subjects: Vec<Box<str>> = (0..26_000u32 * 4).map(|i| format!("c{i:08}").into()).collect();
    let mut st = State::new(spec(hour, 20_000.0));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let step = 6 * hour / events as i64;
    let (mut created, mut updated) = (0u64, 0u64);
    let started = Instant::now();
    for i in 0..events {
        let k = (rng.next() % 4) as usize;
        let s = &subjects[k * 26_000 + (rng.next() % 26_000) as usize];
        let values: &[&str] = &[&**s];
        let key: &[&str] = &[&*keys[k]];
        if let Some(f) = st.add(key, Input { time: i as i64 * step, reference: 0, values }) {
            if f.new { created += 1 } else { updated += 1 }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "value_count by signing key, ~25,000 distinct per 1 h window: {events} events in {secs:.2} s = {:.0} events/s; \
         {created} findings (groups x windows), {updated} updates; state ~{:.1} MiB",
        events as f64 / secs,
        st.state_bytes() as f64 / 1048576.0
    );

    // 2. One group, 10 M distinct values over 150 days.
    let day = 24 * hour;
    let n: u64 = 10_000_000;
    let before = rss_kib("VmRSS:");
    let mut st = State::new(spec(150 * day, 1e12));
    let key: [&str; 1] = ["k"];
    let step = 150 * day / n as i64;
    let started = Instant::now();
    let mut value = String::new();
    for i in 0..n {
        use std::fmt::Write;
        value.clear();
        let _ = write!(value, "c{i:010}");
        st.add(&key, Input { time: i as i64 * step, reference: 0, values: &[value.as_str()] });
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "value_count over 150 days, 10 M distinct values in one group: {:.1} s ({:.0} events/s); \
         state estimate {:.0} MiB; RSS grew {:.0} MiB (peak {:.0} MiB)",
        secs,
        n as f64 / secs,
        st.state_bytes() as f64 / 1048576.0,
        (rss_kib("VmRSS:").saturating_sub(before)) as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
