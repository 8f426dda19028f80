//! `piiwatch token`: API tokens for `piiwatch serve`, kept in the store
//! only as their SHA-256 (see `server::tokens`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use server::tokens::{self, Role};

use crate::ui::{self, Format};

/// Arguments of `piiwatch token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a token and print it, once, on standard output (the store
    /// keeps only its hash). Creates the store directory when there is none;
    /// a running `serve` accepts the token at once.
    Create {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A name for it (recorded with every query it makes); default ROLE-N.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (names, roles, when created and revoked; never the tokens).
    List {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a token by name; a running `serve` refuses it within a second.
    Revoke {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// The token's name.
        name: String,
    },
}

/// `--role`.
#[derive(Copy, Clone, Debug, clap::ValueEnum)]
enum RoleArg {
    /// Send events (`POST /v1/events`, Splunk HEC).
    Ingest,
    /// Ask the inline check.
    Check,
    /// Read findings and scope.
    Analyst,
    /// Everything.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Check => Role::Check,
            RoleArg::Analyst => Role::Analyst,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Runs `token`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Command::Create { store, role, name } => {
            let (name, token) = tokens::create(&store, role.into(), name.as_deref())
                .with_context(|| format!("cannot create a token in {}", store.display()))?;
            writeln!(out, "{token}")?;
            errln!("created token {name:?} (role {}); it is shown only this once", Role::from(role).as_str());
        }
        Command::List { store, format } => {
            let list =
                tokens::list(&store).with_context(|| format!("cannot read the tokens of {}", store.display()))?;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&list)?)?,
                Format::Table => {
                    let mut t = ui::table(&["name", "role", "created", "revoked"]);
                    for i in &list {
                        t.add_row(vec![
                            i.name.clone(),
                            i.role.as_str().to_owned(),
                            ui::time(Some(i.created)),
                            i.revoked.map_or_else(String::new, |r| ui::time(Some(r))),
                        ]);
                    }
                    writeln!(out, "{t}")?;
                }
            }
        }
        Command::Revoke { store, name } => {
            tokens::revoke(&store, &name).with_context(|| format!("cannot revoke in {}", store.display()))?;
            errln!("revoked token {name:?}");
        }
    }
    Ok(())
}
