//! `piiwatch audit`: the posture audit, the standing risks behind a breach
//! like 2025's, each with its evidence and what to do.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::scope::parse_time;
use crate::ui::{self, Format};

/// Arguments of `piiwatch audit`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The platform's directory export (keys, custodians, who left): the key
    /// and offboarding checks need it; without it, the stored key findings stand in.
    #[arg(long)]
    directory: Option<PathBuf>,
    /// Keys older than this many days are against policy.
    #[arg(long, default_value_t = 365)]
    max_key_age_days: i64,
    /// Write the report page here (`OUT/audit.html`, self-contained).
    #[arg(long, value_name = "OUT")]
    out: Option<PathBuf>,
    /// As of this time (RFC 3339 or epoch ms; default now).
    #[arg(long, value_parser = parse_time)]
    now: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs `piiwatch audit`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let directory = match &args.directory {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            Some(model::Directory::parse(&text).map_err(|e| super::Usage(format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    let mut st = store::Store::open(&args.store, store::Options::default())
        .with_context(|| format!("cannot open store {}", args.store.display()))?;
    let now = args.now.unwrap_or_else(incident::now_ms);
    let risks = incident::posture::risks(&mut st, directory.as_ref(), args.max_key_age_days, now, &incident::who())
        .map_err(super::incident::fail)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("audit.html");
        std::fs::write(&path, incident::posture::html(&risks, &args.store, now))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.format {
        Format::Json => {
            for r in &risks {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Format::Table => {
            let mut t = ui::table(&["severity", "risk", "about", "evidence", "what to do"]);
            for r in &risks {
                t.add_row(vec![
                    r.severity.to_string(),
                    r.kind.to_owned(),
                    r.subject.clone(),
                    r.evidence.join("; "),
                    r.action.clone(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}
