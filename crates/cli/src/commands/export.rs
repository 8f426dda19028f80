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

/// Runs export. When a running `serve` holds the store, the export reads
/// the ledger up to what was committed when it started (which never
/// disturbs the writer) and the server records it in the audit chain.
pub fn run(args: Args) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let mut recorder = match store::Store::open(&args.store, store::Options::default()) {
        Ok(st) => Recorder::Store(Box::new(st)),
        Err(held @ store::Error::Locked { .. }) => {
            match server::local::Local::discover(&args.store).map_err(anyhow::Error::msg)? {
                Some(local) => Recorder::Server(local),
                None => {
                    return Err(anyhow::Error::new(held).context(format!("cannot open store {}", args.store.display())));
                }
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot open store {}", args.store.display()))),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let done = match args.format {
        ExportFormat::Parquet => export::parquet(&args.store, &args.out)?,
    };
    let entry = store::Audit::now("export", format!("parquet to {}", args.out.display()), done.events, 0, false);
    match &mut recorder {
        Recorder::Store(st) => st.audit(&entry).map(drop).context("cannot record the export in the store")?,
        Recorder::Server(local) => local.audit(&entry).context("cannot record the export in the store")?,
    }
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

/// Where the export is recorded: the store opened here, or the server holding it.
enum Recorder {
    Store(Box<store::Store>),
    Server(server::local::Local),
}
