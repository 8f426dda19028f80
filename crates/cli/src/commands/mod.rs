//! One module per subcommand: its arguments and what it does.

pub mod detect;
pub mod ingest;
pub mod simulate;
pub mod stats;
pub mod verify;
