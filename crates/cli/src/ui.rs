//! What people see: progress bars, tables, output formats.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// `--format`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    /// JSON for machines.
    Json,
}

/// A progress bar on stderr over `total` units (bytes when `bytes`), or a
/// spinner when the total is unknown. Hidden when stderr is not a terminal.
pub fn bar(total: Option<u64>, what: &str, bytes: bool) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let template = match (total.is_some(), bytes) {
        (true, true) => "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        (true, false) => "{msg} [{bar:30}] {pos}/{len} ({eta})",
        (false, true) => "{spinner} {msg} {bytes} ({bytes_per_sec})",
        (false, false) => "{spinner} {msg} {pos}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A table with a header row, styled for terminals.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(header.iter().copied());
    t
}

/// An epoch-ms time as RFC 3339, or `-`.
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// Writes one line to standard error, ignoring failure (a closed stderr
/// must not turn a warning into a panic).
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Whether `e`, or anything that caused it, is a write to a closed pipe.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
