//! `piiwatch webhook`: the signing secret receivers verify with, and the
//! outbox's dead letters (see `server::webhook`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use server::webhook::Outbox;

use crate::ui::{self, Format};

/// Arguments of `piiwatch webhook`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the Standard Webhooks signing secret (`whsec_…`) receivers verify
    /// with (derived from the store's secret; creates the store's secret when
    /// there is none yet, so receivers can be set up before the first `serve`).
    Secret {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
    },
    /// List messages no receiver accepted after every attempt.
    Dead {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Send dead messages again (all of them, or those named); a running
    /// `serve` picks them up within a second.
    Replay {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Message ids (`msg_…`); none: every dead message.
        ids: Vec<String>,
    },
}

/// Runs `webhook`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Command::Secret { store } => {
            std::fs::create_dir_all(&store).with_context(|| format!("cannot create {}", store.display()))?;
            let secret = store::Secret::load_or_create(&store.join("secret"))
                .with_context(|| format!("cannot read the secret of {}", store.display()))?;
            writeln!(out, "{}", server::webhook::secret(&secret))?;
        }
        Command::Dead { store, format } => {
            let outbox = open(&store)?;
            let dead = outbox.dead();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&dead)?)?,
                Format::Table => {
                    let mut t = ui::table(&["id", "receiver", "attempts", "last error"]);
                    for m in &dead {
                        t.add_row(vec![
                            m.id.clone(),
                            m.endpoint.clone(),
                            m.attempts.to_string(),
                            m.error.clone().unwrap_or_default(),
                        ]);
                    }
                    writeln!(out, "{t}")?;
                }
            }
        }
        Command::Replay { store, ids } => {
            let n = open(&store)?.replay(&ids).context("cannot replay")?;
            errln!("{n} dead messages queued again");
        }
    }
    Ok(())
}

fn open(store: &std::path::Path) -> Result<Outbox> {
    if !store.join("secret").exists() {
        bail!("{} is not a piiwatch store", store.display());
    }
    Outbox::open(store).with_context(|| format!("cannot read the outbox of {}", store.display()))
}
