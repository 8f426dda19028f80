//! `piiwatch simulate`: a synthetic platform's logs, with attacks injected
//! and their exact ground truth.
//!
//! The benign platform ([`benign`]) is built to make naive detection fail;
//! scenarios ([`scenarios`]) add attacks. Generation streams an hour at a
//! time: a day's customer sessions are drawn first (a few bytes each), then
//! each hour's events are expanded, sorted by arrival and written, so memory
//! depends on the busiest hour, not on the run's length. Every random choice
//! comes from a generator seeded by the run's seed and the choice's
//! coordinates ([`rng`]), so the same seed gives the same bytes.
//!
//! Outputs in the chosen directory: `events.jsonl.gz` (or `events.jsonl`),
//! `directory.json`, `truth.json`.

pub mod benign;
pub mod event;
pub mod out;
pub mod platform;
pub mod rng;
pub mod scenarios;
pub mod truth;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use event::Writer;
use out::{Out, Sink};
use platform::{HOUR, Platform, T0};
use truth::Truth;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Options {
    /// Scenario name (see [`scenarios::SCENARIOS`]).
    pub scenario: String,
    /// Output directory (created if absent).
    pub out: PathBuf,
    /// Customers.
    pub customers: u32,
    /// Days.
    pub days: u32,
    /// Seed.
    pub seed: u64,
    /// Gzip the events (default) or write plain JSON lines.
    pub gzip: bool,
}

/// A simulation that could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No such scenario.
    #[error("unknown scenario `{0}` (known: {known})", known = scenarios::SCENARIOS.map(|s| s.0).join(", "))]
    UnknownScenario(String),
    /// Parameters out of range.
    #[error("{0}")]
    Invalid(&'static str),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Lines written to the events file.
    pub lines: u64,
    /// Uncompressed bytes of events.
    pub bytes: u64,
    /// Lines belonging to injected attacks.
    pub attack_lines: u64,
    /// Malformed lines written on purpose.
    pub malformed: u64,
    /// The events file.
    pub events_path: PathBuf,
}

/// Runs a simulation; `progress(hours_done, hours_total)` is called after each hour.
pub fn run(opts: &Options, progress: &mut dyn FnMut(u64, u64)) -> Result<Summary, SimError> {
    if opts.customers == 0 {
        return Err(SimError::Invalid("--customers must be at least 1"));
    }
    if opts.days == 0 || opts.days > 3660 {
        return Err(SimError::Invalid("--days must be between 1 and 3660"));
    }
    let p = Platform::new(opts.seed, opts.customers, opts.days);
    let mut attacks =
        scenarios::attacks(&opts.scenario, &p).ok_or_else(|| SimError::UnknownScenario(opts.scenario.clone()))?;
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SimError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;

    let dir_path = opts.out.join("directory.json");
    let directory = p.directory(&[]);
    let text = serde_json::to_string_pretty(&directory)
        .map_err(|e| SimError::Io { path: dir_path.clone(), source: e.into() })?;
    std::fs::write(&dir_path, text + "\n").map_err(io_err(&dir_path))?;

    let events_path = opts.out.join(if opts.gzip { "events.jsonl.gz" } else { "events.jsonl" });
    let mut sink = Sink::create(&events_path, opts.gzip).map_err(io_err(&events_path))?;
    let mut truth = Truth::new(attacks.iter().map(|a| a.info()).collect());
    let mut summary = Summary { events_path: events_path.clone(), ..Summary::default() };

    let mut pending = Out::default();
    let mut ready = Vec::new();
    let mut writer = Writer::new(&p);
    let mut block = Vec::with_capacity(out::BLOCK + (1 << 16));
    let mut exposed = Vec::new();
    let hours = u64::from(opts.days) * 24;
    for day in 0..opts.days {
        let sessions = benign::day_sessions(&p, day);
        for (hour, bucket) in sessions.into_iter().enumerate() {
            let h0 = T0 + i64::from(day) * platform::DAY + hour as i64 * HOUR;
            for s in bucket {
                benign::session(&p, s, &mut pending);
            }
            benign::staff(&p, h0, &mut pending);
            benign::services(&p, h0, &mut pending);
            benign::oddities(&p, h0, &mut pending);
            benign::sale_surge(&p, h0, &mut pending);
            for (id, a) in attacks.iter_mut().enumerate() {
                a.hour(&p, h0, id as u8, &mut pending);
            }
            let last = day + 1 == opts.days && hour == 23;
            pending.drain_before(if last { i64::MAX } else { h0 + HOUR }, &mut ready);
            for ev in ready.drain(..) {
                exposed.clear();
                let start = block.len();
                writer.write(&ev, &mut block, &mut |s, f| exposed.push((s, f)));
                summary.bytes += (block.len() - start) as u64;
                truth.record(&ev, &exposed);
                summary.lines += 1;
                summary.attack_lines += u64::from(ev.attack.is_some());
                summary.malformed += u64::from(matches!(ev.body, event::Body::Malformed(_)));
                if block.len() >= out::BLOCK {
                    let full = std::mem::replace(&mut block, Vec::with_capacity(out::BLOCK + (1 << 16)));
                    sink.write_block(full).map_err(io_err(&events_path))?;
                }
            }
            progress(u64::from(day) * 24 + hour as u64 + 1, hours);
        }
    }
    if !block.is_empty() {
        sink.write_block(block).map_err(io_err(&events_path))?;
    }
    sink.finish().map_err(io_err(&events_path))?;

    let truth_path = opts.out.join("truth.json");
    let file = File::create(&truth_path).map_err(io_err(&truth_path))?;
    let mut w = BufWriter::new(file);
    truth.write(&p, &opts.scenario, &mut w).and_then(|()| w.flush()).map_err(io_err(&truth_path))?;
    Ok(summary)
}
