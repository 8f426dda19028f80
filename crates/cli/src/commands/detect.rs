//! `piiwatch detect`: every built-in detector over the inputs, in event-time
//! order; findings as OCSF Detection Finding JSON lines. The work is the
//! `pipeline` crate's; this module reads the arguments and files, shows
//! progress and warnings, and prints the summary.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use detect::Config;
use ingest::Input;
use model::Directory;

use crate::commands::stats::ReadArgs;
use crate::ui::{self, Format};

/// Arguments of `piiwatch detect`.
#[derive(clap::Args)]
pub struct Args {
    /// OCSF JSON-lines files, plain or gzip; `-` reads standard input. Several
    /// inputs are merged in event-time order.
    #[arg(required_unless_present = "print_config")]
    inputs: Vec<String>,
    /// The platform's directory export (principals, signing keys, networks).
    #[arg(long)]
    directory: Option<PathBuf>,
    /// Detector configuration (TOML); see `--print-config` for every key and its default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default configuration and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    rules: crate::commands::rules::RuleArgs,
    /// Write findings here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep reading inputs as they grow (and standard input until it closes),
    /// writing findings as they happen.
    #[arg(long)]
    follow: bool,
    /// With --follow: after this many seconds without input, release events
    /// still held for reordering.
    #[arg(long, default_value_t = 2.0, value_parser = idle_seconds)]
    idle_flush: f64,
    /// Format of the end-of-run summary on standard error.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
}

impl Args {
    /// Whether only the default configuration is asked for.
    pub fn print_config(&self) -> bool {
        self.print_config
    }
}

/// Reads the configuration file, or the defaults.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read config {}", p.display()))?;
            Config::parse(&text).with_context(|| format!("config {}", p.display()))
        }
    }
}

/// Reads the directory export, or an empty one.
pub fn load_directory(path: Option<&PathBuf>) -> Result<Directory> {
    match path {
        None => Ok(Directory::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read directory {}", p.display()))?;
            Directory::parse(&text).with_context(|| format!("directory {}", p.display()))
        }
    }
}

/// `--idle-flush`: seconds, a finite number from 0.05 to a day.
fn idle_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if !(0.05..=86_400.0).contains(&v) {
        return Err(format!("{s} is outside 0.05 to 86400 seconds"));
    }
    Ok(v)
}

/// Runs detect.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    pipeline(&args, None, out)
}

/// Detection over the inputs, and with `ingest` the events appended to a store.
pub fn pipeline(args: &Args, ingest: Option<pipeline::Ingest<'_>>, out: &mut dyn Write) -> Result<()> {
    if args.print_config {
        write!(out, "{}", Config::defaults_toml())?;
        return Ok(());
    }
    let config = load_config(args.config.as_ref())?;
    let directory = load_directory(args.directory.as_ref())?;
    if args.directory.is_none() {
        errln!(
            "piiwatch: warning: no --directory: principals, keys and networks are unknown, so several detectors see less"
        );
    }
    let sigma = args.rules.load()?;
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::from_arg(a)).collect();
    let findings: Box<dyn Write + Send> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
        None => Box::new(io::stdout()),
    };
    let total: Option<u64> = if args.follow { None } else { inputs.iter().map(Input::size).sum() };
    let bar = ui::bar(total, "detecting", true);
    let options = pipeline::Options {
        config,
        directory,
        reader: args.read.reader()?,
        inputs,
        follow: args.follow,
        idle_flush: Duration::from_secs_f64(args.idle_flush),
        quarantine: args.read.quarantine.clone(),
        sigma,
    };
    let warn = |w: &str| errln!("piiwatch: warning: {w}");
    let hooks = pipeline::Hooks { progress: &mut |bytes| bar.set_position(bytes), warn: &warn };
    let report = pipeline::run(options, findings, ingest, hooks);
    bar.finish_and_clear();
    let report = report?;
    summary(&report, args.format);
    if report.quarantined > 0 {
        errln!("{} lines quarantined to {}", report.quarantined, args.read.quarantine.display());
    }
    Ok(())
}

fn summary(r: &pipeline::Report, format: Format) {
    let (st, state, quarantined, secs) = (&r.stats, r.state_bytes, r.quarantined, r.seconds);
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "events": st.events, "untimed": st.untimed, "late": st.late, "max_buffered": st.max_buffered,
                "quarantined": quarantined, "first_time": st.span.map(|s| s.0), "last_time": st.span.map(|s| s.1),
                "seconds": secs, "state_bytes": state, "detectors": r.detectors, "store": r.stored,
            });
            errln!("{v}");
        }
        Format::Table => {
            let mut t = ui::table(&["detector", "findings", "updates", "max severity", "state MiB"]);
            for (name, p) in &r.detectors {
                let severity = if p.findings + p.updates == 0 { "-".to_owned() } else { p.max_severity.to_string() };
                t.add_row(vec![
                    name.to_string(),
                    p.findings.to_string(),
                    p.updates.to_string(),
                    severity,
                    format!("{:.1}", p.state_bytes as f64 / f64::from(1 << 20)),
                ]);
            }
            if r.detectors.is_empty() {
                t.add_row(vec!["(none)".to_owned(), "0".into(), "0".into(), "-".into(), "0".into()]);
            }
            errln!("{t}");
            errln!(
                "{} events ({} late, {} quarantined) from {} to {} in {secs:.2}s ({:.0} events/s); detector state ~{} MiB",
                st.events,
                st.late,
                quarantined,
                ui::time(st.span.map(|s| s.0)),
                ui::time(st.span.map(|s| s.1)),
                st.events as f64 / secs.max(1e-9),
                state >> 20
            );
            if let Some(s) = &r.stored {
                if s.replayed > 0 {
                    errln!("continued from the {} events stored before (replayed through the detectors)", s.replayed);
                }
                errln!(
                    "stored {} events in {} ({} lines skipped as already stored); the ledger holds {} records",
                    s.stored,
                    s.store.display(),
                    s.skipped_already_stored,
                    s.ledger_records
                );
            }
        }
    }
}
