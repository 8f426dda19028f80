//! `piiwatch scope`: what the matching accesses exposed, from the store.
//! Every scope is itself recorded in the store's ledger.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::ui::{self, Format};

/// Arguments of `piiwatch scope`.
#[derive(clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// Which accesses: `field = "v"`, `field != "v"`, `field in ("a", "b")`,
    /// `src_endpoint.ip cidr "198.51.100.0/24"`, `and`, `or`, `not`,
    /// parentheses; fields are the input's paths (`src_endpoint.ip`,
    /// `actor.user.uid`, `actor.session.uid`, `actor.session.issuer`,
    /// `src_endpoint.autonomous_system.number`, `api.operation`, ...).
    #[arg(long = "where", value_name = "EXPR", required_unless_present = "alert")]
    expr: Option<String>,
    /// Scope a finding stored by `ingest`: the accesses matching all of its
    /// indicators (each field any of its values), over the finding's span.
    #[arg(long, value_name = "UID", conflicts_with = "expr")]
    alert: Option<String>,
    /// With --alert: over all time, not only the finding's span.
    #[arg(long, requires = "alert")]
    all_time: bool,
    /// From this event time (RFC 3339 or epoch ms), inclusive.
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// To this event time (RFC 3339 or epoch ms), inclusive.
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Write the exposed subjects' real ids here, one per line (sorted; mode
    /// 0600). Decrypts the store's subject map; the ledger records that this
    /// re-identification happened.
    #[arg(long, value_name = "FILE")]
    subjects_out: Option<PathBuf>,
    /// Also break the answer down by each value of this field (repeatable):
    /// `src_endpoint.location.country`, `src_endpoint.autonomous_system.number`,
    /// `src_endpoint.ip`, `api.operation`, ... Reads every matching access
    /// (the index keeps no groups); not `resources.uid`.
    #[arg(long, value_name = "FIELD")]
    group_by: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Parse every record instead of ruling records out from their bytes first (for tests).
    #[arg(long, hide = true)]
    no_prefilter: bool,
    /// Ignore the exposure index and scan the whole ledger (an independent
    /// check of the index's answer; slow on a big store).
    #[arg(long)]
    no_index: bool,
}

/// RFC 3339 or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))
}

/// Runs scope: in this process, or, when a running `serve` holds the
/// store, in that server (which records it the same way).
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let request = scope::Request {
        expr: args.expr.clone(),
        alert: args.alert.clone(),
        all_time: args.all_time,
        from: args.from,
        to: args.to,
        reidentify: args.subjects_out.is_some(),
        no_prefilter: args.no_prefilter,
        no_index: args.no_index,
        group_by: args.group_by.clone(),
    };
    let outcome = match store::Store::open(&args.store, store::Options::default()) {
        Ok(mut st) => scope::request::run(&mut st, &request, "scope", None).map_err(|e| match e {
            scope::RunError::Usage(m) => anyhow::Error::new(super::Usage(m)),
            e => anyhow::Error::new(e),
        })?,
        Err(held @ store::Error::Locked { .. }) => {
            let Some(local) = server::local::Local::discover(&args.store).map_err(anyhow::Error::msg)? else {
                return Err(anyhow::Error::new(held).context(format!("cannot open store {}", args.store.display())));
            };
            let user = store::Audit::now("scope", String::new(), 0, 0, false).user;
            local.scope(&request, &user).map_err(|e| match e {
                server::local::LocalError::Usage(m) => anyhow::Error::new(super::Usage(m)),
                e => anyhow::Error::new(e),
            })?
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot open store {}", args.store.display()))),
    };
    if let (Some(path), Some(ids)) = (&args.subjects_out, &outcome.subject_ids) {
        let mut text = ids.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_private(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let s = &outcome.summary;
    match args.format {
        Format::Json if outcome.groups.is_empty() => writeln!(out, "{}", serde_json::to_string(s)?)?,
        Format::Json => {
            let mut v = serde_json::to_value(s)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("groups".into(), serde_json::to_value(&outcome.groups)?);
            }
            writeln!(out, "{v}")?;
        }
        Format::Table => {
            writeln!(
                out,
                "{} accesses exposed {} subjects, from {} to {}",
                s.events,
                s.subjects,
                ui::time(s.first_seen_time),
                ui::time(s.last_seen_time)
            )?;
            writeln!(
                out,
                "answered by {} in {:.1} ms ({} ledger blocks read)",
                outcome.plan, outcome.answered_ms, outcome.blocks_read
            )?;
            let mut t = ui::table(&["subject type", "subjects"]);
            for (k, n) in &s.subjects_by_type {
                t.add_row(vec![k.clone(), n.to_string()]);
            }
            writeln!(out, "{t}")?;
            let mut t = ui::table(&["field class", "subjects"]);
            for (k, n) in &s.fields {
                t.add_row(vec![k.clone(), n.to_string()]);
            }
            writeln!(out, "{t}")?;
            for field in &args.group_by {
                let mut t = ui::table(&[field.as_str(), "accesses", "subjects"]);
                for g in outcome.groups.iter().filter(|g| &g.field == field) {
                    let v = if g.value.is_empty() { "(none)".to_owned() } else { g.value.clone() };
                    t.add_row(vec![v, g.events.to_string(), g.subjects.to_string()]);
                }
                writeln!(out, "{t}")?;
            }
        }
    }
    Ok(())
}

/// Writes a file only its owner can read (it holds real subject ids).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
