//! `piiwatch ingest`: detection as `detect` runs it, and every event
//! appended to the evidence store. A store that holds events already has
//! them replayed through the engine first, so that running `ingest` on
//! each new file finds what one run over all of them would.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::commands::detect;

/// Arguments of `piiwatch ingest`.
#[derive(clap::Args)]
#[group(id = "ingest_args")]
pub struct Args {
    /// The store directory (created on first use).
    #[arg(long)]
    store: PathBuf,
    /// Segment size in bytes before the ledger starts a new segment (for tests).
    #[arg(long, hide = true, default_value_t = store::ledger::SEGMENT_BYTES)]
    segment_bytes: u64,
    /// Events between commits (for tests).
    #[arg(long, hide = true, default_value_t = pipeline::COMMIT_EVERY)]
    commit_every: u64,
    /// Start detection with empty state instead of first replaying the
    /// events already in the store (faster on a big store, but findings
    /// that need what earlier runs saw are missed).
    #[arg(long)]
    no_replay: bool,
    #[command(flatten)]
    detect: detect::Args,
}

/// Runs ingest.
pub fn run(args: Args, out: &mut dyn std::io::Write) -> Result<()> {
    if args.detect.print_config() {
        // Asking for the defaults creates no store.
        return detect::pipeline(&args.detect, None, out);
    }
    let mut st = store::Store::open(&args.store, store::Options { segment_bytes: args.segment_bytes })
        .with_context(|| format!("cannot open store {}", args.store.display()))?;
    let ingesting = pipeline::Ingest { store: &mut st, commit_every: args.commit_every, replay: !args.no_replay };
    detect::pipeline(&args.detect, Some(ingesting), out)?;
    // The index is built on its own thread: wait for it before exiting.
    st.finish().context("cannot build the exposure index")
}
