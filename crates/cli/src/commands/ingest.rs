//! `piiwatch ingest`: detection as `detect` runs it, and every event
//! appended to the evidence store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ingest::Input;

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
    #[arg(long, hide = true, default_value_t = detect::COMMIT_EVERY)]
    commit_every: u64,
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
    let inputs: Vec<Input> = args.detect.inputs().iter().map(|a| Input::from_arg(a)).collect();
    let mut resume = Vec::new();
    for input in &inputs {
        resume.push(match input {
            // Standard input cannot be recognised again: it is always stored whole.
            Input::Stdin => None,
            Input::Path(p) => Some(st.resume(p).with_context(|| format!("cannot read {}", p.display()))?),
        });
    }
    let ingesting = detect::Ingesting {
        store: &mut st,
        resume,
        names: inputs.iter().map(Input::name).collect(),
        lines: vec![0; inputs.len()],
        stored: 0,
        skipped: 0,
        error: None,
        commit_every: args.commit_every.max(1),
        alerts: None,
    };
    detect::pipeline(&args.detect, Some(ingesting), out)?;
    // The index is built on its own thread: wait for it before exiting.
    st.finish().context("cannot build the exposure index")
}
