//! `piiwatch verify`: recomputes every hash of a store and names what was
//! altered, removed, reordered or truncated.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::ui::Format;

/// Arguments of `piiwatch verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// Output format of the report (on standard output).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs verify: exit 0 when intact, non-zero naming each problem otherwise.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let (report, events) = store::verify(&args.store)?;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "ok": report.problems.is_empty(), "segments": report.segments, "records": report.records,
                "acknowledged": report.acknowledged, "events": events,
                "problems": report.problems, "notes": report.notes,
            });
            writeln!(out, "{v}")?;
        }
        Format::Table => {
            for p in &report.problems {
                writeln!(out, "DAMAGED: {p}")?;
            }
            for n in &report.notes {
                writeln!(out, "note: {n}")?;
            }
            writeln!(
                out,
                "{} segments, {} records ({} events){}",
                report.segments,
                report.records,
                events,
                if report.problems.is_empty() { ": every hash and link checks" } else { "" }
            )?;
        }
    }
    if !report.problems.is_empty() {
        bail!("store {} is damaged: {} problem(s)", args.store.display(), report.problems.len());
    }
    Ok(())
}
