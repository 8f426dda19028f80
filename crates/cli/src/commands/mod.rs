//! One module per subcommand: its arguments and what it does.

pub mod audit;
pub mod detect;
pub mod export;
pub mod incident;
pub mod ingest;
pub mod proof;
pub mod report;
pub mod rules;
pub mod scope;
pub mod serve;
pub mod simulate;
pub mod stats;
pub mod token;
pub mod verify;
pub mod webhook;

/// A usage error found after argument parsing (an invalid `--where`
/// expression, say): exit code 2, as for clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);
