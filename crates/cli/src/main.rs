//! The `piiwatch` command: parses arguments and hands each subcommand to its
//! module. Exit codes: 0 success, 2 usage error (clap), 1 failure with a
//! one-line reason on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A line on standard error; a closed or failing stderr is ignored (the
/// `eprintln!` it replaces panics then).
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::ui::err_line(format_args!($($t)*))
    };
}

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
    /// Run every built-in detector and the Sigma rules over the inputs in
    /// event-time order and write findings as OCSF Detection Finding JSON lines.
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
    /// Run as a service: HTTP ingest (OCSF lines, Splunk HEC), the inline
    /// check for gateways, findings and scope over HTTP, with the store.
    Serve(Box<commands::serve::Args>),
    /// API tokens for `serve`: create (printed once), list, revoke.
    Token(commands::token::Args),
    /// Alert delivery: the webhook signing secret, dead letters, replay.
    Webhook(commands::webhook::Args),
    /// Incidents: findings grouped, the awareness and materiality times,
    /// each breach-notification regime's deadline clock, notices sent.
    Incident(commands::incident::Args),
    /// An incident's report (self-contained HTML with charts, scope and
    /// evidence) and each applicable regime's drafts with every required item.
    Report(commands::report::Args),
    /// The posture audit: keys never rotated or whose custodian left,
    /// offboarded principals still active, reading beyond the usual, silent
    /// log sources; each with its evidence and what to do.
    Audit(commands::audit::Args),
    /// Sigma rules: check rule files (what loads, what does not and why),
    /// and test one rule over events (what matched, and why not).
    Rules(commands::rules::Args),
    /// Summarise logs: events per class and operation, distinct principals,
    /// subjects and sources, time span, quarantined lines.
    Stats(commands::stats::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command writes its output to this writer, never with `print!`
    // (clippy's `print_stdout` holds it): a closed pipe (`piiwatch ... |
    // head`) is an error that ends the command, and a quiet exit here.
    let mut out = std::io::stdout();
    let out: &mut dyn std::io::Write = &mut out;
    let result = match cli.command {
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Stats(args) => commands::stats::run(args, out),
        Command::Detect(args) => commands::detect::run(args, out),
        Command::Ingest(args) => commands::ingest::run(args, out),
        Command::Verify(args) => commands::verify::run(args, out),
        Command::Proof(args) => commands::proof::run(args, out),
        Command::Scope(args) => commands::scope::run(args, out),
        Command::Export(args) => commands::export::run(args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Token(args) => commands::token::run(args, out),
        Command::Webhook(args) => commands::webhook::run(args, out),
        Command::Incident(args) => commands::incident::run(args, out),
        Command::Report(args) => commands::report::run(args, out),
        Command::Audit(args) => commands::audit::run(args, out),
        Command::Rules(args) => commands::rules::run(args, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: what it did not read, it did not want.
        Err(e) if ui::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            errln!("piiwatch: error: {e:#}");
            if e.downcast_ref::<commands::Usage>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
