//! The `piiwatch` command: parses arguments and hands each subcommand to its
//! module. Exit codes: 0 success, 2 usage error (clap), 1 failure with a
//! one-line reason on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod ui;

// Batches of events and index items are built on one thread and freed on
// another; glibc's malloc spent 5 to 10 % of `ingest` on such frees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Watches every read of personal data through a platform's API: detects
/// abuse, scopes exposure, proves it, and notifies on time.
#[derive(Parser)]
#[command(name = "piiwatch", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic platform's logs with injected attacks and their ground truth.
    Simulate(commands::simulate::Args),
    /// Run every built-in detector over the inputs in event-time order and
    /// write findings as OCSF Detection Finding JSON lines.
    Detect(commands::detect::Args),
    /// Detect as `detect` does, and append every event (pseudonymised) to
    /// the evidence store; an input already ingested is not counted twice.
    Ingest(commands::ingest::Args),
    /// What the matching accesses exposed: subjects, their kinds, and field
    /// classes, from the store (the query is itself recorded there).
    Scope(commands::scope::Args),
    /// Write the store's accesses as Parquet (one row per access and
    /// subject, pseudonymous), for lakes and independent checks.
    Export(commands::export::Args),
    /// Check a store: every record's hash, every segment's link, the end
    /// against what was acknowledged; non-zero exit naming any damage.
    Verify(commands::verify::Args),
    /// Signed Merkle checkpoints of the store, and inclusion and
    /// consistency proofs against them that anyone can check.
    Proof(commands::proof::Args),
    /// Summarise logs: events per class and operation, distinct principals,
    /// subjects and sources, time span, quarantined lines.
    Stats(commands::stats::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Stats(args) => commands::stats::run(args),
        Command::Detect(args) => commands::detect::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Proof(args) => commands::proof::run(args),
        Command::Scope(args) => commands::scope::run(args),
        Command::Export(args) => commands::export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("piiwatch: error: {e:#}");
            if e.downcast_ref::<commands::Usage>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
