//! Incidents: findings grouped into an incident that a privacy officer
//! runs to its deadlines, kept in the store's ledger as hash-chained
//! changes (who, when, what), and the deadline clocks of each
//! breach-notification regime, loaded as data (`regimes/` at the
//! repository's root, replaceable at run time).
//!
//! Every number an incident shows comes from one `scope` over the store,
//! whose expression and time range are shown beside it so that anyone can
//! run the same `piiwatch scope` and get the same numbers.

use std::collections::BTreeSet;

use serde::Serialize;
use store::Store;

pub mod calendar;
pub mod change;
pub mod clock;
pub mod draft;
pub mod group;
pub mod notice;
pub mod org;
pub mod pdf;
pub mod posture;
pub mod regime;
pub mod report;
pub mod state;

pub use change::{Change, Record};
pub use clock::{Clock, NotApplicable, Status};
pub use group::Finding;
pub use org::Org;
pub use regime::{Conf, Kind, Regimes, RuleError};
pub use state::{Entry, Incident, Incidents, Sent};

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// No such incident or finding.
    #[error("{0}")]
    NotFound(String),
    /// The change makes no sense for this incident (a usage error).
    #[error("{0}")]
    Usage(String),
    /// The store's incident records do not fold (damage).
    #[error("the store's incident records are damaged: {0}")]
    Damaged(String),
    /// A regime or profile file could not be used.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// The incident's scope failed.
    #[error("cannot scope the incident: {0}")]
    Scope(String),
}

/// What the store tells about an incident, for thresholds and items.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Distinct subjects exposed (`None`: no scope, no finding with indicators).
    pub subjects: Option<u64>,
    /// Field classes exposed (at least one subject).
    pub field_classes: BTreeSet<String>,
    /// The detectors of the linked findings.
    pub analytics: BTreeSet<String>,
}

/// The operating-system user, as the audit chain names people.
pub fn who() -> String {
    store::Audit::now("", String::new(), 0, 0, false).user
}

/// Wall-clock now, epoch ms.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Records a change in the store and returns it, to be folded into the
/// incident already in memory (the ledger is not read again).
fn record(st: &mut Store, incident: &str, change: Change, by: &str, at: i64) -> Result<Record, Error> {
    let r = Record { incident: incident.to_owned(), at, by: by.to_owned(), change };
    let bytes = serde_json::to_vec(&r).map_err(|e| Error::Damaged(e.to_string()))?;
    st.record_incident(&bytes)?;
    Ok(r)
}

/// The incidents and the stored findings, in one pass over the ledger.
fn read(dir: &std::path::Path) -> Result<(Incidents, Vec<Finding>), Error> {
    let (mut incidents, mut findings, mut bad) = (Incidents::default(), group::Gather::default(), None);
    store::ledger::scan(&dir.join("ledger"), |r| match r.kind {
        store::kind::INCIDENT => incidents.add(r.payload, &mut bad),
        store::kind::ALERT => findings.add(r.payload),
        _ => {}
    })?;
    Ok((incidents.done(bad)?, findings.finish()))
}

/// The answer to `expr` (customer ids in it matched by their pseudonyms),
/// not recorded: the caller records what it asked.
pub(crate) fn answer(
    st: &Store,
    expr: &str,
    from: Option<i64>,
    to: Option<i64>,
    group_by: &[scope::Field],
) -> Result<scope::Answer, Error> {
    let parsed = scope::parse(expr).map_err(|e| Error::Scope(e.to_string()))?;
    let parsed = parsed.with_principal_aliases(&|v| st.secret().pseudonym(v));
    let q = scope::Query { expr: Some(parsed), from, to, group_by: group_by.to_vec(), ..Default::default() };
    scope::scope(st, &q).map_err(Error::Store)
}

/// Text escaped for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An epoch-ms time as its UTC date.
pub(crate) fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// Opens an incident from a stored finding, linking every related finding
/// (shared indicator, overlapping time; see [`group::related`]).
pub fn open(st: &mut Store, alert: &str, title: Option<&str>, by: &str, at: i64) -> Result<Incident, Error> {
    let (incidents, all) = read(st.dir())?;
    let seed = all
        .iter()
        .find(|f| f.uid == alert)
        .ok_or_else(|| Error::NotFound(format!("no finding with uid {alert} in store {}", st.dir().display())))?;
    let title = title.map_or_else(|| seed.title.clone(), str::to_owned);
    let alerts = group::related(&all, alert);
    let id = incidents.next_id();
    let r = record(st, &id, Change::Open { title, from_alert: alert.to_owned(), alerts }, by, at)?;
    Incident::from_open(&r).ok_or_else(|| Error::Damaged("an open record that opens nothing".into()))
}

/// Records a change to an incident, after checking it makes sense.
pub fn change(st: &mut Store, id: &str, change: Change, by: &str, at: i64) -> Result<Incident, Error> {
    let incidents = Incidents::load(st.dir())?;
    let inc = incidents
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("no incident {id} in store {}", st.dir().display())))?;
    match &change {
        Change::Open { .. } => return Err(Error::Usage("an incident is opened with `incident open`".into())),
        Change::Link { alerts } => {
            let all = group::findings(st.dir())?;
            if let Some(a) = alerts.iter().find(|a| !all.iter().any(|f| &f.uid == *a)) {
                return Err(Error::NotFound(format!("no finding with uid {a} in the store")));
            }
        }
        Change::Unlink { alerts } => {
            if let Some(a) = alerts.iter().find(|a| !inc.alerts.contains(*a)) {
                return Err(Error::Usage(format!("finding {a} is not linked to {}", inc.id)));
            }
        }
        Change::Close { .. } if inc.closed.is_some() => {
            return Err(Error::Usage(format!("{} is already closed", inc.id)));
        }
        Change::Reopen { .. } if inc.closed.is_none() => return Err(Error::Usage(format!("{} is not closed", inc.id))),
        _ => {}
    }
    let mut inc = inc.clone();
    let r = record(st, &inc.id, change, by, at)?;
    inc.apply_change(&r);
    Ok(inc)
}

/// The one scope behind an incident's numbers: every linked activity
/// finding's indicators (all of its fields, any of each field's values),
/// any finding's, from the first finding's start on, with no end (access
/// by the same indicators after the findings is part of the incident).
/// Token ids are left out of a finding that names other indicators: a
/// finding lists a sample of the tokens it saw, never all of them.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeQuery {
    /// The expression (`scope --where`).
    #[serde(rename = "where")]
    pub expr: String,
    /// From, epoch ms.
    pub from: i64,
    /// Findings left out because they name no indicator scope can select by.
    pub left_out: Vec<String>,
    /// Posture findings linked for context (an unrotated key), not scoped:
    /// their indicators name a standing weakness, not the access.
    pub context: Vec<String>,
}

impl ScopeQuery {
    /// The command that reproduces the numbers.
    pub fn command(&self, store: &std::path::Path) -> String {
        format!(
            "piiwatch scope --store {} --where '{}' --from {} --format json",
            store.display(),
            self.expr.replace('\'', "'\\''"),
            self.from,
        )
    }

    /// The request `scope::request::run` answers.
    pub fn request(&self) -> scope::Request {
        scope::Request { expr: Some(self.expr.clone()), from: Some(self.from), ..Default::default() }
    }
}

/// A finding's indicators as an expression, without its sampled token ids
/// when it names anything else.
fn finding_expr(f: &Finding) -> Option<String> {
    let others = f.observables.iter().any(|(n, _)| n != "actor.session.uid");
    let mut json = f.json.clone();
    if others && let Some(obs) = json.get_mut("observables").and_then(|o| o.as_array_mut()) {
        obs.retain(|o| o["name"] != "actor.session.uid");
    }
    scope::request::alert_expr(&json)
}

/// The scope query of an incident's linked findings (`None` when none names an indicator).
pub fn scope_query(inc: &Incident, all: &[Finding]) -> Option<ScopeQuery> {
    let mut parts = Vec::new();
    let mut left_out = Vec::new();
    let mut context = Vec::new();
    let mut from = i64::MAX;
    for f in all.iter().filter(|f| inc.alerts.contains(&f.uid)) {
        if f.posture {
            context.push(f.uid.clone());
            continue;
        }
        match finding_expr(f) {
            Some(e) => {
                if !parts.contains(&e) {
                    parts.push(e);
                }
                from = from.min(f.first_seen_time);
            }
            None => left_out.push(f.uid.clone()),
        }
    }
    if parts.is_empty() {
        return None;
    }
    let expr = if parts.len() == 1 {
        parts.remove(0)
    } else {
        parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" or ")
    };
    Some(ScopeQuery { expr, from, left_out, context })
}

/// An incident as `incident show` prints it (the contract's fields first).
#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    /// The id.
    pub id: String,
    /// Linked findings' uids.
    pub alerts: Vec<String>,
    /// When the organisation became aware.
    pub aware_time: Option<i64>,
    /// The scope of the linked findings (`scope --format json`'s answer).
    pub scope: Option<scope::Summary>,
    /// Every applicable clock.
    pub clocks: Vec<Clock>,
    /// Title.
    pub title: String,
    /// `open`, `contained` or `closed`.
    pub state: &'static str,
    /// When the organisation became aware of a possible leak (PIPA Art. 34(2)).
    pub possible_time: Option<i64>,
    /// When it was determined material.
    pub material_time: Option<i64>,
    /// When the access was stopped.
    pub contained_time: Option<i64>,
    /// When and why it was closed.
    pub closed: Option<Entry>,
    /// Opened from.
    pub from_alert: String,
    /// Opened when (wall clock).
    pub opened_time: i64,
    /// Opened by.
    pub opened_by: String,
    /// The query behind `scope`, and the command that reproduces it.
    pub scope_query: Option<ScopeQuery>,
    /// `scope_query` as a command.
    pub scope_command: Option<String>,
    /// The linked findings (as stored: customer ids pseudonymised).
    pub findings: Vec<Finding>,
    /// Regimes and clocks that do not apply, and why.
    pub not_applicable: Vec<NotApplicable>,
    /// Notes.
    pub notes: Vec<Entry>,
    /// Facts confirmed after the first report.
    pub facts: Vec<Entry>,
    /// The risk assessment.
    pub high_risk: Option<bool>,
    /// Items written by people.
    pub filled: std::collections::BTreeMap<String, Entry>,
    /// Every change: who, when, what.
    pub history: Vec<Record>,
    /// The time the clocks were read at, epoch ms.
    pub now: i64,
}

/// Shows an incident: its scope (run now, recorded in the audit chain as
/// `incident show` by `by`) and its clocks as of `now`.
pub fn show(st: &mut Store, id: &str, regimes: &Regimes, org: &Org, now: i64, by: &str) -> Result<Shown, Error> {
    let dir = st.dir().to_owned();
    show_with(&dir, id, regimes, org, now, &mut |r| {
        scope::request::run(st, r, "incident show", Some(by.to_owned()))
            .map(|o| o.summary)
            .map_err(|e| Error::Scope(e.to_string()))
    })
}

/// As [`show`], with the scope answered by `run_scope` (a running `serve`
/// that holds the store answers it when the CLI cannot open the store;
/// everything else is read from the ledger, which needs no lock).
pub fn show_with(
    dir: &std::path::Path,
    id: &str,
    regimes: &Regimes,
    org: &Org,
    now: i64,
    run_scope: &mut dyn FnMut(&scope::Request) -> Result<scope::Summary, Error>,
) -> Result<Shown, Error> {
    let (incidents, all) = read(dir)?;
    let inc = incidents
        .get(id)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no incident {id} in store {}", dir.display())))?;
    let query = scope_query(&inc, &all);
    let scope = match &query {
        Some(q) => Some(run_scope(&q.request())?),
        None => None,
    };
    let linked: Vec<&Finding> = all.iter().filter(|f| inc.alerts.contains(&f.uid)).collect();
    let facts = Facts {
        subjects: scope.as_ref().map(|s| s.subjects),
        field_classes: scope
            .as_ref()
            .map(|s| s.fields.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
        analytics: linked.iter().map(|f| f.analytic.clone()).collect(),
    };
    let (clocks, not_applicable) = clock::clocks(&inc, regimes, org, &facts, now);
    Ok(Shown {
        id: inc.id.clone(),
        alerts: inc.alerts.iter().cloned().collect(),
        aware_time: inc.aware_time,
        scope,
        clocks,
        title: inc.title.clone(),
        state: inc.state(),
        possible_time: inc.possible_time,
        material_time: inc.material_time,
        contained_time: inc.contained_time,
        closed: inc.closed.clone(),
        from_alert: inc.from_alert.clone(),
        opened_time: inc.opened_at,
        opened_by: inc.opened_by.clone(),
        scope_command: query.as_ref().map(|q| q.command(dir)),
        scope_query: query,
        findings: linked.into_iter().cloned().collect(),
        not_applicable,
        notes: inc.notes.clone(),
        facts: inc.facts.clone(),
        high_risk: inc.high_risk.as_ref().map(|h| h.0),
        filled: inc.filled.clone(),
        history: inc.history.clone(),
        now,
    })
}
