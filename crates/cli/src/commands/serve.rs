//! `piiwatch serve`: the live service (see the `server` crate). This module
//! reads the arguments and files and sets up logging.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::commands::detect::{load_config, load_directory};
use crate::commands::stats::ReadArgs;

/// Arguments of `piiwatch serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory (created on first use).
    #[arg(long)]
    store: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// The platform's directory export (principals, signing keys, networks);
    /// read again on SIGHUP (or `POST /v1/admin/reload`), keeping the old one
    /// if the new one does not parse.
    #[arg(long)]
    directory: Option<PathBuf>,
    /// Regime files for incidents' clocks (`GET /v1/incidents/{id}`),
    /// replacing or adding to the built-in ones; also `PIIWATCH_REGIMES`.
    #[arg(long, value_name = "DIR", env = "PIIWATCH_REGIMES")]
    regimes: Option<PathBuf>,
    /// The organisation profile incidents are clocked by (TOML).
    #[arg(long, value_name = "FILE")]
    org: Option<PathBuf>,
    #[command(flatten)]
    rules: crate::commands::rules::RuleArgs,
    /// Detector configuration (TOML), as for `detect --config`; read again
    /// on SIGHUP or `POST /v1/admin/reload` (a changed one replaces the
    /// engine, which replays the store; one that fails changes nothing).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Largest request body as sent, bytes (larger: 413).
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Largest request body once decompressed, bytes (larger: 413).
    #[arg(long, default_value_t = 16 << 20)]
    max_decompressed_bytes: usize,
    /// Request bytes held at once (parsing or waiting for the store); more
    /// are refused with 429 (503 on HEC) and Retry-After.
    #[arg(long, default_value_t = 256 << 20)]
    max_inflight_bytes: usize,
    /// The inline check allows a token not yet seen issued for this many
    /// seconds after its first sight (0: deny at once, the default; feed
    /// issuance to piiwatch before tokens are used).
    #[arg(long, default_value_t = 0.0)]
    check_grace: f64,
    /// The inline check refuses a source address that was exposed more than
    /// this many distinct subjects in the current fan-out window (0: no limit).
    #[arg(long, default_value_t = 0)]
    check_fanout_limit: usize,
    /// The fan-out window, seconds of event time.
    #[arg(long, default_value_t = 3600.0)]
    check_fanout_window: f64,
    /// A path prefix whose requests the check allows when it is degraded (the
    /// store has stopped, so issuances are no longer learnt); repeatable.
    /// Every other route fails closed.
    #[arg(long, value_name = "PREFIX")]
    check_fail_open: Vec<String>,
    /// Seconds without input after which events held for reordering are released.
    #[arg(long, default_value_t = 2.0)]
    idle_flush: f64,
    /// Post every finding here (repeatable): `URL`, `slack:URL` for Slack's
    /// incoming webhooks, or `NAME=…` to name the receiver in the outbox.
    /// Signed per Standard Webhooks (`piiwatch webhook secret` prints the key).
    #[arg(long = "webhook", value_name = "SPEC", value_parser = server::webhook::Endpoint::parse)]
    webhooks: Vec<server::webhook::Endpoint>,
    /// More webhook receivers, one SPEC per line as for --webhook (blank
    /// lines and `#` comments skipped); read again on SIGHUP or
    /// `POST /v1/admin/reload` (a new receiver gets findings from then on,
    /// a removed one stops; a file that fails changes nothing).
    #[arg(long = "webhooks", value_name = "FILE")]
    webhooks_file: Option<PathBuf>,
    /// Attempts before a webhook message is dead (then listed by `piiwatch webhook dead`).
    #[arg(long, default_value_t = 30)]
    webhook_max_attempts: u32,
    /// Seconds before the first retry; doubles after each failure.
    #[arg(long, default_value_t = 1.0)]
    webhook_backoff: f64,
    /// Longest wait between attempts, seconds (also caps a receiver's Retry-After).
    #[arg(long, default_value_t = 900.0)]
    webhook_max_backoff: f64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Connections open at once; more wait until one closes.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (and a TLS
    /// handshake) before its connection is closed; idle keep-alive
    /// connections are closed after as long.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a request body may stall before the request is answered 408.
    #[arg(long, default_value_t = 30.0)]
    body_timeout: f64,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
    #[command(flatten)]
    read: ReadArgs,
}

/// `--log-format`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// JSON objects, one per line, for log pipelines.
    Json,
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| crate::commands::Usage(format!("--{what}: {s} is not a duration in seconds")).into())
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second subscriber (there is none in this process) is not an error worth stopping for.
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let config = load_config(args.config.as_ref())?;
    let directory = load_directory(args.directory.as_ref())?;
    if args.directory.is_none() {
        tracing::warn!(
            "no --directory: principals, keys and networks are unknown, so detectors and the check see less"
        );
    }
    let sigma = args.rules.load()?;
    let (regimes, org) = super::incident::load_rules(args.regimes.as_deref(), args.org.as_deref())?;
    let opts = server::Options {
        sigma,
        incidents: server::Incidents { regimes, org },
        store: args.store.clone(),
        listen: args.listen,
        config,
        directory,
        directory_path: args.directory.clone(),
        config_path: args.config.clone(),
        reader: args.read.reader()?,
        quarantine: args.read.quarantine.clone(),
        limits: server::Limits {
            max_body: args.max_body_bytes,
            max_decompressed: args.max_decompressed_bytes,
            max_inflight: args.max_inflight_bytes,
            ..server::Limits::default()
        },
        grace: seconds("check-grace", args.check_grace)?,
        idle_flush: seconds("idle-flush", args.idle_flush)?,
        webhooks: args.webhooks.clone(),
        webhooks_path: args.webhooks_file.clone(),
        webhook_policy: server::webhook::Policy {
            max_attempts: args.webhook_max_attempts.max(1),
            backoff: seconds("webhook-backoff", args.webhook_backoff)?,
            max_backoff: seconds("webhook-max-backoff", args.webhook_max_backoff)?,
            ..server::webhook::Policy::default()
        },
        check: server::CheckOptions {
            fanout_limit: args.check_fanout_limit,
            fanout_window: seconds("check-fanout-window", args.check_fanout_window)?,
            fail_open: args.check_fail_open.clone(),
        },
        net: server::listen::Net {
            max_connections: args.max_connections.max(1),
            header_timeout: seconds("header-timeout", args.header_timeout)?,
            body_timeout: seconds("body-timeout", args.body_timeout)?,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(server::listen::Tls { cert: cert.clone(), key: key.clone() }),
                _ => None,
            },
        },
    };
    server::run(opts, |addr| errln!("listening on {addr}"), std::future::pending())
        .with_context(|| format!("serve {}", args.store.display()))
}
