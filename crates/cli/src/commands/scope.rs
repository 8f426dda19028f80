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

/// Runs scope.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if !args.store.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", args.store.display());
    }
    let mut st = store::Store::open(&args.store, store::Options::default())
        .with_context(|| format!("cannot open store {}", args.store.display()))?;
    let (mut from, mut to) = (args.from, args.to);
    let text = match (&args.expr, &args.alert) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(uid)) => {
            let finding = store::alert(&args.store, uid)?
                .with_context(|| format!("no finding with uid {uid} in store {}", args.store.display()))?;
            if !args.all_time {
                from = from.or_else(|| finding["finding_info"]["first_seen_time"].as_i64());
                to = to.or_else(|| finding["finding_info"]["last_seen_time"].as_i64());
            }
            Some(
                alert_expr(&finding)
                    .with_context(|| format!("finding {uid} names no indicator scope can select by"))?,
            )
        }
        (None, None) => None,
    };
    let expr = match &text {
        Some(e) => {
            let parsed = scope::parse(e).map_err(|e| super::Usage(e.to_string()))?;
            Some(parsed.with_principal_aliases(&|v| st.secret().pseudonym(v)))
        }
        None => None,
    };
    let q = scope::Query { expr, from, to, no_prefilter: args.no_prefilter, no_index: args.no_index };
    let started = std::time::Instant::now();
    let answer = scope::scope(&st, &q)?;
    let answered_in = started.elapsed();
    let s = answer.summary();
    // The store records the question with the customers it names as
    // pseudonyms (a stored finding's indicators are pseudonyms already).
    let recorded = match (&q.expr, &args.alert) {
        (Some(_), None) => args
            .expr
            .as_deref()
            .and_then(|e| scope::parse(e).ok())
            .map(|e| e.render(&|f, v| scope::as_stored(&st, f, v))),
        _ => text.clone(),
    };
    let query = format!(
        "{}where {}; from {}; to {}",
        args.alert.as_ref().map(|a| format!("alert {a}: ")).unwrap_or_default(),
        recorded.as_deref().unwrap_or("(all)"),
        ui::time(from),
        ui::time(to)
    );
    if let Some(path) = &args.subjects_out {
        let map = store::subjects::read_map(&args.store, st.secret()).context("cannot open the subject map")?;
        let mut ids = Vec::with_capacity(answer.subjects.len() as usize);
        let mut unknown = 0u64;
        for dense in &answer.subjects {
            match st.pseudonym(dense).and_then(|p| map.get(&p)) {
                Some(id) => ids.push(id.as_str()),
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            bail!("{unknown} exposed subjects have no entry in the subject map: it was altered or lost");
        }
        ids.sort_unstable();
        let mut text = ids.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_private(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    st.audit(&store::Audit::now("scope", query, s.events, s.subjects, args.subjects_out.is_some()))
        .context("cannot record the query in the store")?;
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&s)?)?,
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
                answer.plan.name(),
                answered_in.as_secs_f64() * 1e3,
                answer.blocks_read
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
        }
    }
    Ok(())
}

/// The expression a finding's observables make: every field that scope
/// knows, any of its values, all fields together.
fn alert_expr(finding: &serde_json::Value) -> Option<String> {
    let mut by_field: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for o in finding["observables"].as_array()? {
        let (Some(name), Some(value)) = (o["name"].as_str(), o["value"].as_str()) else { continue };
        if scope::Field::ALL.iter().any(|(p, _)| *p == name) {
            let quoted = format!("{value:?}");
            let vals = by_field.entry(name).or_default();
            if !vals.contains(&quoted) {
                vals.push(quoted);
            }
        }
    }
    if by_field.is_empty() {
        return None;
    }
    Some(by_field.iter().map(|(f, v)| format!("{f} in ({})", v.join(", "))).collect::<Vec<_>>().join(" and "))
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
