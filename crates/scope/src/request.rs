//! One scope as a person asks it, from the CLI or through a running
//! `serve` (which holds the store, so a CLI on the same machine hands its
//! question over): the expression or a stored finding, the time range,
//! whether real ids are wanted; answered, re-identified through the
//! subject map if asked, and recorded in the store's audit chain. One
//! function for both, so a scope through the server is the CLI's own.

use serde::{Deserialize, Serialize};
use store::Store;

use crate::{Field, Query, Summary};

/// A scope to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Request {
    /// The expression (`--where`).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// A stored finding's uid (`--alert`): its indicators, over its span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// With `alert`: over all time.
    #[serde(default)]
    pub all_time: bool,
    /// From this event time, ms, inclusive.
    #[serde(default)]
    pub from: Option<i64>,
    /// To this event time, ms, inclusive.
    #[serde(default)]
    pub to: Option<i64>,
    /// Return the exposed subjects' real ids (re-identification, recorded).
    #[serde(default)]
    pub reidentify: bool,
    /// Parse every record instead of ruling records out from their bytes first.
    #[serde(default)]
    pub no_prefilter: bool,
    /// Scan the ledger instead of using the index.
    #[serde(default)]
    pub no_index: bool,
    /// Break the answer down by each value of these field paths (`--group-by`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
}

/// One value's share of a grouped scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLine {
    /// The field path.
    pub field: String,
    /// Its value (`""`: accesses without it).
    pub value: String,
    /// Matching accesses with this value.
    pub events: u64,
    /// Distinct subjects they exposed.
    pub subjects: u64,
}

/// What a scope answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The contract's answer.
    pub summary: Summary,
    /// How it was answered (`index`, `narrowed scan`, `scan`).
    pub plan: String,
    /// Time to answer, ms.
    pub answered_ms: f64,
    /// Ledger blocks read.
    pub blocks_read: u64,
    /// The exposed subjects' real ids, sorted, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_ids: Option<Vec<String>>,
    /// With `group_by`: per field and value, most subjects first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupLine>,
}

/// Why a scope was not answered.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The question is wrong (an expression that does not parse): a usage error.
    #[error("{0}")]
    Usage(String),
    /// The finding named is not in the store, or selects nothing.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Re-identification or recording failed.
    #[error("{0}")]
    Failed(String),
}

/// Answers `r` from the store, re-identifies if asked, and records the
/// query in the audit chain as `command` by `user` (the operating-system
/// user when `None`).
pub fn run(st: &mut Store, r: &Request, command: &str, user: Option<String>) -> Result<Outcome, RunError> {
    let (mut from, mut to) = (r.from, r.to);
    let text =
        match (&r.expr, &r.alert) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(uid)) => {
                let finding = store::alert(st.dir(), uid)?.ok_or_else(|| {
                    RunError::NotFound(format!("no finding with uid {uid} in store {}", st.dir().display()))
                })?;
                if !r.all_time {
                    from = from.or_else(|| finding["finding_info"]["first_seen_time"].as_i64());
                    to = to.or_else(|| finding["finding_info"]["last_seen_time"].as_i64());
                }
                Some(alert_expr(&finding).ok_or_else(|| {
                    RunError::NotFound(format!("finding {uid} names no indicator scope can select by"))
                })?)
            }
            (None, None) => None,
        };
    let expr = match &text {
        Some(e) => {
            let parsed = crate::parse(e).map_err(|e| RunError::Usage(e.to_string()))?;
            Some(parsed.with_principal_aliases(&|v| st.secret().pseudonym(v)))
        }
        None => None,
    };
    let mut group_by = Vec::new();
    for path in &r.group_by {
        match Field::parse(path) {
            Some(Field::Subject) => {
                return Err(RunError::Usage(
                    "group by resources.uid: a breakdown by subject is re-identification (use --subjects-out)".into(),
                ));
            }
            Some(f) => group_by.push(f),
            None => {
                let known: Vec<&str> = Field::ALL.iter().map(|(p, _)| *p).filter(|p| *p != "resources.uid").collect();
                return Err(RunError::Usage(format!("group by {path:?}: not a field ({})", known.join(", "))));
            }
        }
    }
    let q = Query { expr, from, to, no_prefilter: r.no_prefilter, no_index: r.no_index, group_by };
    let started = std::time::Instant::now();
    let answer = crate::scope(st, &q)?;
    let answered_ms = started.elapsed().as_secs_f64() * 1e3;
    let summary = answer.summary();
    // The store records the question with the customers it names as
    // pseudonyms (a stored finding's indicators are pseudonyms already).
    let recorded = match (&q.expr, &r.alert) {
        (Some(_), None) => {
            r.expr.as_deref().and_then(|e| crate::parse(e).ok()).map(|e| e.render(&|f, v| crate::as_stored(st, f, v)))
        }
        _ => text.clone(),
    };
    let query = format!(
        "{}where {}; from {}; to {}{}",
        r.alert.as_ref().map(|a| format!("alert {a}: ")).unwrap_or_default(),
        recorded.as_deref().unwrap_or("(all)"),
        time(from),
        time(to),
        if r.group_by.is_empty() { String::new() } else { format!("; by {}", r.group_by.join(", ")) }
    );
    let subject_ids = if r.reidentify {
        let map = store::subjects::read_map(st.dir(), st.secret())
            .map_err(|e| RunError::Failed(format!("cannot open the subject map: {e}")))?;
        let mut ids = Vec::with_capacity(answer.subjects.len() as usize);
        let mut unknown = 0u64;
        for dense in &answer.subjects {
            match st.pseudonym(dense).and_then(|p| map.get(&p)) {
                Some(id) => ids.push(id.clone()),
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            return Err(RunError::Failed(format!(
                "{unknown} exposed subjects have no entry in the subject map: it was altered or lost"
            )));
        }
        ids.sort_unstable();
        Some(ids)
    } else {
        None
    };
    let mut audit = store::Audit::now(command, query, summary.events, summary.subjects, r.reidentify);
    if let Some(u) = user {
        audit.user = u;
    }
    st.audit(&audit).map_err(|e| RunError::Failed(format!("cannot record the query in the store: {e}")))?;
    let mut groups: Vec<GroupLine> = answer
        .groups
        .iter()
        .map(|((field, value), g)| GroupLine {
            field: field.clone(),
            value: value.clone(),
            events: g.events,
            subjects: g.subjects.len(),
        })
        .collect();
    groups.sort_by(|a, b| a.field.cmp(&b.field).then(b.subjects.cmp(&a.subjects)).then(a.value.cmp(&b.value)));
    Ok(Outcome {
        groups,
        summary,
        plan: answer.plan.name().to_owned(),
        answered_ms,
        blocks_read: answer.blocks_read,
        subject_ids,
    })
}

/// A time as the audit records it: RFC 3339, or `-`.
fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// The expression a finding's observables make: every field that scope
/// knows, any of its values, all fields together.
pub fn alert_expr(finding: &serde_json::Value) -> Option<String> {
    let mut by_field: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for o in finding["observables"].as_array()? {
        let (Some(name), Some(value)) = (o["name"].as_str(), o["value"].as_str()) else { continue };
        if Field::ALL.iter().any(|(p, _)| *p == name) {
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
