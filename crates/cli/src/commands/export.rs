//! `piiwatch export`: the store's events as Parquet (recorded in the store).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Output formats of `export`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    /// Apache Parquet: one row per access and subject (`events.parquet`),
    /// per token issued (`issuance.parquet`), per principal offboarded
    /// (`offboarding.parquet`).
    Parquet,
}

/// Arguments of `piiwatch export`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output directory (created if absent): writes `events.parquet`,
    /// `issuance.parquet` and `offboarding.parquet` there.
    #[arg(long)]
    out: PathBuf,
}

/// Runs export.
pub fn run(args: Args) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let mut st = store::Store::open(&args.store, store::Options::default())
        .with_context(|| format!("cannot open store {}", args.store.display()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let done = match args.format {
        ExportFormat::Parquet => export::parquet(&args.store, &args.out)?,
    };
    st.audit(&store::Audit::now("export", format!("parquet to {}", args.out.display()), done.events, 0, false))
        .context("cannot record the export in the store")?;
    errln!(
        "exported {} accesses as {} rows, {} token issuances and {} offboardings to {}",
        done.events,
        done.rows,
        done.issuances,
        done.offboardings,
        args.out.display()
    );
    Ok(())
}
