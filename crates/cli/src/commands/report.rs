//! `piiwatch report`: an incident's report (`OUT/report.html`) and each
//! applicable regime's drafts (`OUT/drafts/`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::scope::parse_time;
use crate::ui::Format;

/// Arguments of `piiwatch report`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The incident (`INC-1`).
    #[arg(long)]
    incident: String,
    /// Where to write `report.html` and `drafts/` (created if absent).
    #[arg(long)]
    out: PathBuf,
    /// Regime files replacing or adding to the built-in ones; also `PIIWATCH_REGIMES`.
    #[arg(long, value_name = "DIR", env = "PIIWATCH_REGIMES")]
    regimes: Option<PathBuf>,
    /// The organisation profile (TOML); without one, every shipped regime applies.
    #[arg(long, value_name = "FILE")]
    org: Option<PathBuf>,
    /// Read the clocks as of this time (RFC 3339 or epoch ms; default now).
    #[arg(long, value_parser = parse_time)]
    now: Option<i64>,
    /// Also write per-person notices (`OUT/notices.csv`, `OUT/notices.jsonl`,
    /// mode 0600): each exposed subject's real id, field classes, first and
    /// last day of exposure and notice text. Decrypts the store's subject
    /// map; the audit chain records the re-identification.
    #[arg(long)]
    notices: bool,
    /// Also print the report to `OUT/report.pdf` with headless Chromium
    /// (found on `PATH` as chromium, chromium-browser or google-chrome;
    /// Debian: `apt-get install chromium`).
    #[arg(long)]
    pdf: bool,
    /// The browser `--pdf` prints with, when not on `PATH` under a usual name.
    #[arg(long, value_name = "PATH", requires = "pdf")]
    browser: Option<PathBuf>,
    /// Output format of the summary of what was written.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs `piiwatch report`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let (regimes, org) = super::incident::load_rules(args.regimes.as_deref(), args.org.as_deref())?;
    let mut st = store::Store::open(&args.store, store::Options::default())
        .with_context(|| format!("cannot open store {}", args.store.display()))?;
    let now = args.now.unwrap_or_else(incident::now_ms);
    // Before any work: a PDF asked for with no browser to print it is refused at once.
    let browser = match args.pdf {
        true => Some(incident::pdf::find_browser(args.browser.as_deref(), std::env::var_os("PATH").as_deref())?),
        false => None,
    };
    let mut written = incident::report::write(
        &mut st,
        &args.incident,
        &regimes,
        &org,
        now,
        &incident::who(),
        &args.out,
        args.notices,
    )
    .map_err(super::incident::fail)?;
    if let Some(browser) = browser {
        written.pdf = Some(incident::pdf::print(&browser, &written.report, &args.out.join("report.pdf"))?);
    }
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&written)?)?,
        Format::Table => {
            writeln!(
                out,
                "wrote {} and {} drafts in {}",
                written.report.display(),
                written.drafts.len(),
                args.out.join("drafts").display()
            )?;
            if let Some(pdf) = &written.pdf {
                writeln!(out, "printed {}", pdf.display())?;
            }
            if let Some((csv, json, n)) = &written.notices {
                writeln!(
                    out,
                    "{n} per-person notices in {} and {} (mode 0600; recorded in the store)",
                    csv.display(),
                    json.display()
                )?;
            }
            for (regime, missing) in &written.missing {
                if missing.is_empty() {
                    writeln!(out, "{regime}: every item filled")?;
                } else {
                    writeln!(out, "{regime}: still to write: {}", missing.join(", "))?;
                }
            }
        }
    }
    Ok(())
}
