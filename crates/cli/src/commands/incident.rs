//! `piiwatch incident`: findings grouped into an incident kept in the
//! store, and the legal deadline clocks it starts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use incident::{Change, Incident, Org, Regimes};

use super::scope::parse_time;
use crate::ui::{self, Format};

/// Arguments of `piiwatch incident`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

/// The store an incident lives in.
#[derive(clap::Args)]
struct At {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
}

/// An incident in a store.
#[derive(clap::Args)]
struct One {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The incident's id (`INC-1`).
    id: String,
}

/// Which regimes, under which profile, read when.
#[derive(clap::Args)]
struct Rules {
    /// Regime files (`*.toml`) replacing or adding to the built-in ones
    /// (see `regimes/README.md`); also `PIIWATCH_REGIMES`.
    #[arg(long, value_name = "DIR", env = "PIIWATCH_REGIMES")]
    regimes: Option<PathBuf>,
    /// The organisation profile (TOML): which regimes apply, contact point,
    /// DPO, ICT service provider, SEC registrant, closures. Without one,
    /// every shipped regime applies.
    #[arg(long, value_name = "FILE")]
    org: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Open an incident from a stored finding; related findings (sharing an
    /// indicator, overlapping in time) are linked. Prints the new id.
    Open {
        #[command(flatten)]
        at: At,
        /// The finding's uid (`finding_info.uid`).
        #[arg(long, value_name = "UID")]
        from_alert: String,
        /// One line for people (default: the finding's title).
        #[arg(long)]
        title: Option<String>,
    },
    /// Every incident: state, findings, awareness.
    List {
        #[command(flatten)]
        at: At,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One incident: its scope (recorded in the audit chain), each
    /// regime's clock (due, remaining, met or missed, what is missing), the
    /// linked findings and the history.
    Show {
        #[command(flatten)]
        one: One,
        #[command(flatten)]
        rules: Rules,
        /// Read the clocks as of this time (RFC 3339 or epoch ms; default now).
        #[arg(long, value_parser = parse_time)]
        now: Option<i64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Link more findings.
    Link {
        #[command(flatten)]
        one: One,
        /// Their uids.
        #[arg(required = true)]
        alerts: Vec<String>,
    },
    /// Unlink findings.
    Unlink {
        #[command(flatten)]
        one: One,
        /// Their uids.
        #[arg(required = true)]
        alerts: Vec<String>,
    },
    /// Add a note to the record.
    Note {
        #[command(flatten)]
        one: One,
        /// The text.
        text: String,
    },
    /// When the organisation became aware (most clocks start here).
    Aware {
        #[command(flatten)]
        one: One,
        /// RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        at: i64,
    },
    /// When the organisation became aware of a possible leak whose subjects
    /// are hard to identify (PIPA Art. 34(2) from 2026-09-11: 72 hours to
    /// notify every subject possibly affected).
    Possible {
        #[command(flatten)]
        one: One,
        /// RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        at: i64,
    },
    /// When the organisation determined the incident material (SEC Item 1.05's clock).
    Material {
        #[command(flatten)]
        one: One,
        /// RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        at: i64,
    },
    /// When the access was stopped.
    Contain {
        #[command(flatten)]
        one: One,
        /// RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        at: i64,
    },
    /// A further fact confirmed (starts the Network Act's 24-hour supplementary report).
    Fact {
        #[command(flatten)]
        one: One,
        /// When it was confirmed (RFC 3339 or epoch ms).
        #[arg(long, value_parser = parse_time)]
        at: i64,
        /// What it is.
        text: String,
    },
    /// Record the risk assessment (GDPR Art. 34 applies when the risk is high).
    Assess {
        #[command(flatten)]
        one: One,
        /// Whether the breach is likely to result in a high risk to people.
        #[arg(long, value_name = "yes|no", value_parser = yes_no, action = clap::ArgAction::Set)]
        high_risk: bool,
        /// Why.
        #[arg(long)]
        why: String,
    },
    /// Write an item a notice or report needs that only a person can
    /// (measures taken, remedy procedure, ...), by its item id.
    Fill {
        #[command(flatten)]
        one: One,
        /// The item id (as `incident show` lists it missing).
        #[arg(long)]
        item: String,
        /// The text.
        #[arg(long)]
        text: String,
    },
    /// Record that a notice or report was sent (the clock is met or missed by it).
    Sent {
        #[command(flatten)]
        one: One,
        #[command(flatten)]
        rules: Rules,
        /// The regime id (`kr-pipa-report`, ...).
        #[arg(long)]
        regime: String,
        /// The clock within it, when it has several (`residents`, `attorney-general`, `supplementary-1`).
        #[arg(long)]
        clock: Option<String>,
        /// When it was sent (RFC 3339 or epoch ms).
        #[arg(long, value_parser = parse_time)]
        at: i64,
        /// How many recipients were notified.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Close the incident.
    Close {
        #[command(flatten)]
        one: One,
        /// Why (the resolution).
        #[arg(long)]
        why: String,
    },
    /// Open a closed incident again.
    Reopen {
        #[command(flatten)]
        one: One,
        /// Why.
        #[arg(long)]
        why: String,
    },
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: yes or no")),
    }
}

/// The store, opened here, or the running `serve` that holds it.
enum Access {
    Store(Box<store::Store>),
    Server(server::local::Local),
}

fn access(dir: &std::path::Path) -> Result<Access> {
    if !dir.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", dir.display());
    }
    match store::Store::open(dir, store::Options::default()) {
        Ok(st) => Ok(Access::Store(Box::new(st))),
        Err(held @ store::Error::Locked { .. }) => {
            match server::local::Local::discover(dir).map_err(anyhow::Error::msg)? {
                Some(local) => Ok(Access::Server(local)),
                None => Err(anyhow::Error::new(held).context(format!("cannot open store {}", dir.display()))),
            }
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot open store {}", dir.display()))),
    }
}

fn local_fail(e: server::local::LocalError) -> anyhow::Error {
    match e {
        server::local::LocalError::Usage(m) => anyhow::Error::new(super::Usage(m)),
        e => anyhow::Error::new(e),
    }
}

/// An incident error as the CLI reports it (a usage error exits 2).
pub fn fail(e: incident::Error) -> anyhow::Error {
    match e {
        incident::Error::Usage(m) => anyhow::Error::new(super::Usage(m)),
        e => anyhow::Error::new(e),
    }
}

fn rules(r: &Rules) -> Result<(Regimes, Org)> {
    load_rules(r.regimes.as_deref(), r.org.as_deref())
}

/// The regimes (built in, or from `regimes`) and the organisation profile; a bad file is a usage error.
pub fn load_rules(regimes: Option<&std::path::Path>, org: Option<&std::path::Path>) -> Result<(Regimes, Org)> {
    let regimes = Regimes::load(regimes).map_err(|e| anyhow::Error::new(super::Usage(e.to_string())))?;
    let org = match org {
        Some(p) => Org::load(p).map_err(|e| anyhow::Error::new(super::Usage(e.to_string())))?,
        None => Org::none(),
    };
    if let Some(list) = &org.regimes
        && let Some(bad) = list.iter().find(|id| !regimes.regimes.contains_key(*id))
    {
        return Err(super::Usage(format!("the organisation profile names regime {bad:?}, which is not defined")).into());
    }
    Ok((regimes, org))
}

/// Runs `piiwatch incident`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let by = incident::who();
    let now = incident::now_ms();
    let (one, change) = match args.command {
        Sub::Open { at, from_alert, title } => {
            let id = match access(&at.store)? {
                Access::Store(mut st) => {
                    incident::open(&mut st, &from_alert, title.as_deref(), &by, now).map_err(fail)?.id
                }
                Access::Server(local) => local.incident_open(&from_alert, title.as_deref(), &by).map_err(local_fail)?,
            };
            writeln!(out, "{id}")?;
            return Ok(());
        }
        Sub::List { at, format } => {
            if !at.store.join("ledger").is_dir() {
                bail!("{} is not a piiwatch store (no ledger/)", at.store.display());
            }
            let all = incident::Incidents::load(&at.store).map_err(fail)?;
            return list(all.list(), format, out);
        }
        Sub::Show { one, rules: r, now: at, format } => {
            let (regimes, org) = rules(&r)?;
            let at = at.unwrap_or(now);
            let shown = match access(&one.store)? {
                Access::Store(mut st) => incident::show(&mut st, &one.id, &regimes, &org, at, &by).map_err(fail)?,
                // The server answers (and records) the scope; the rest is read from the ledger here.
                Access::Server(local) => incident::show_with(&one.store, &one.id, &regimes, &org, at, &mut |r| {
                    local.scope(r, &by).map(|o| o.summary).map_err(|e| incident::Error::Scope(e.to_string()))
                })
                .map_err(fail)?,
            };
            return show(&shown, format, out);
        }
        Sub::Sent { one, rules: r, regime, clock, at, count } => {
            let (regimes, _) = rules(&r)?;
            let clock = sent_clock(&regimes, &regime, clock)?;
            (one, Change::Sent { regime, clock, time: at, count })
        }
        Sub::Link { one, alerts } => (one, Change::Link { alerts }),
        Sub::Unlink { one, alerts } => (one, Change::Unlink { alerts }),
        Sub::Note { one, text } => (one, Change::Note { text }),
        Sub::Aware { one, at } => (one, Change::Aware { time: at }),
        Sub::Material { one, at } => (one, Change::Material { time: at }),
        Sub::Possible { one, at } => (one, Change::Possible { time: at }),
        Sub::Contain { one, at } => (one, Change::Contain { time: at }),
        Sub::Fact { one, at, text } => (one, Change::Fact { time: at, text }),
        Sub::Assess { one, high_risk, why } => (one, Change::Assess { high_risk, why }),
        Sub::Fill { one, item, text } => (one, Change::Fill { item, text }),
        Sub::Close { one, why } => (one, Change::Close { why }),
        Sub::Reopen { one, why } => (one, Change::Reopen { why }),
    };
    let name = change.name();
    match access(&one.store)? {
        Access::Store(mut st) => {
            let inc = incident::change(&mut st, &one.id, change, &by, now).map_err(fail)?;
            writeln!(out, "{}: {name} recorded ({}, {} findings)", inc.id, inc.state(), inc.alerts.len())?;
        }
        Access::Server(local) => {
            let v = local.incident_change(&one.id, &change, &by).map_err(local_fail)?;
            let n = v["alerts"].as_array().map_or(0, Vec::len);
            writeln!(
                out,
                "{}: {name} recorded ({}, {n} findings)",
                v["id"].as_str().unwrap_or(&one.id),
                v["state"].as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}

/// The clock `incident sent` names: given, or the regime's only one.
fn sent_clock(regimes: &Regimes, regime: &str, clock: Option<String>) -> Result<String> {
    let r = regimes.regimes.get(regime).ok_or_else(|| {
        let known: Vec<&str> = regimes.regimes.keys().map(String::as_str).collect();
        super::Usage(format!("no regime {regime:?} (known: {})", known.join(", ")))
    })?;
    let ids: std::collections::BTreeSet<&str> =
        r.version.iter().flat_map(|v| v.clock.iter()).map(|c| c.id.as_str()).collect();
    let fact_ids: Vec<&str> =
        r.version.iter().flat_map(|v| v.clock.iter()).filter(|c| c.trigger == "fact").map(|c| c.id.as_str()).collect();
    match clock {
        Some(c) => {
            let numbered =
                c.rsplit_once('-').is_some_and(|(base, n)| fact_ids.contains(&base) && n.parse::<u32>().is_ok());
            if ids.contains(c.as_str()) && !fact_ids.contains(&c.as_str()) || numbered {
                Ok(c)
            } else {
                Err(super::Usage(format!(
                    "regime {regime} has no clock {c:?} (its clocks: {})",
                    ids.iter()
                        .map(|i| if fact_ids.contains(i) { format!("{i}-N") } else { (*i).to_owned() })
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into())
            }
        }
        None => {
            let single: Vec<&&str> = ids.iter().filter(|i| !fact_ids.contains(i)).collect();
            match single.as_slice() {
                // A fact's clocks are numbered (`supplementary-1`) and always named.
                [one] => Ok((**one).to_owned()),
                _ => Err(super::Usage(format!(
                    "regime {regime} has several clocks: name one with --clock ({})",
                    ids.iter().copied().collect::<Vec<_>>().join(", ")
                ))
                .into()),
            }
        }
    }
}

fn list(all: &[Incident], format: Format, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Json => {
            for i in all {
                writeln!(out, "{}", i.summary())?;
            }
        }
        Format::Table => {
            let mut t = ui::table(&["id", "state", "findings", "aware", "title"]);
            for i in all {
                t.add_row(vec![
                    i.id.clone(),
                    i.state().to_owned(),
                    i.alerts.len().to_string(),
                    ui::time(i.aware_time),
                    i.title.clone(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

fn span(ms: i64) -> String {
    let (sign, ms) = if ms < 0 { ("overdue by ", -ms) } else { ("", ms) };
    let h = ms / 3_600_000;
    let m = (ms % 3_600_000) / 60_000;
    if h >= 48 { format!("{sign}{}d {}h", h / 24, h % 24) } else { format!("{sign}{h}h {m:02}m") }
}

fn show(s: &incident::Shown, format: Format, out: &mut dyn Write) -> Result<()> {
    if format == Format::Json {
        writeln!(out, "{}", serde_json::to_string(s)?)?;
        return Ok(());
    }
    writeln!(out, "{}  {}  [{}]", s.id, s.title, s.state)?;
    writeln!(
        out,
        "aware {}  material {}  contained {}  ({} findings; clocks read at {})",
        ui::time(s.aware_time),
        ui::time(s.material_time),
        ui::time(s.contained_time),
        s.alerts.len(),
        ui::time(Some(s.now))
    )?;
    match &s.scope {
        Some(sc) => {
            let fields: Vec<String> = sc.fields.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(
                out,
                "exposed: {} subjects in {} accesses, {} to {}; {}",
                sc.subjects,
                sc.events,
                ui::time(sc.first_seen_time),
                ui::time(sc.last_seen_time),
                fields.join(", ")
            )?;
        }
        None => writeln!(out, "exposed: unknown (no linked finding names an indicator scope can select by)")?,
    }
    if let Some(cmd) = &s.scope_command {
        writeln!(out, "reproduce: {cmd}")?;
    }
    let mut t = ui::table(&["regime", "recipient", "due", "remaining", "status", "still missing"]);
    for c in &s.clocks {
        let due = match c.due_time {
            Some(_) if !c.legal_deadline => format!("{} (target)", ui::time(c.due_time)),
            _ => ui::time(c.due_time),
        };
        let remaining = match (c.sent_time, c.remaining_ms) {
            (Some(t), _) => format!("sent {}", ui::time(Some(t))),
            (None, Some(r)) => span(r),
            (None, None) => "-".into(),
        };
        let applies = if c.applies == "unknown" { " (applies?)" } else { "" };
        t.add_row(vec![
            format!("{}{applies}", c.regime),
            c.recipient.clone(),
            due,
            remaining,
            format!("{:?}", c.status).to_lowercase(),
            if c.missing.is_empty() { "-".into() } else { c.missing.len().to_string() + " items" },
        ]);
    }
    writeln!(out, "{t}")?;
    for c in s.clocks.iter().filter(|c| !c.missing.is_empty()) {
        writeln!(out, "{} / {}: missing {}", c.regime, c.clock, c.missing.join("; "))?;
    }
    for n in &s.not_applicable {
        let what = n.clock.as_ref().map_or_else(|| n.regime.clone(), |c| format!("{} / {c}", n.regime));
        writeln!(out, "not applicable: {what}: {}", n.why)?;
    }
    Ok(())
}
