//! An incident as its changes make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::change::{Change, Record};

/// A note, fact or assessment with who wrote it and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// When it was recorded, epoch ms.
    pub at: i64,
    /// Who recorded it.
    pub by: String,
    /// The time it is about (a fact's confirmation), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    /// The text.
    pub text: String,
}

/// A notice or report sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// When it was sent or filed, epoch ms.
    pub time: i64,
    /// Recipients notified, when recorded.
    pub count: Option<u64>,
    /// Who recorded it.
    pub by: String,
}

/// One incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// `INC-1`, `INC-2`, ... in order of opening.
    pub id: String,
    /// One line for people.
    pub title: String,
    /// The finding it was opened from.
    pub from_alert: String,
    /// When it was opened (wall clock), and by whom.
    pub opened_at: i64,
    /// Who opened it.
    pub opened_by: String,
    /// Linked findings.
    pub alerts: BTreeSet<String>,
    /// When the organisation became aware.
    pub aware_time: Option<i64>,
    /// When the organisation became aware of a possible leak (PIPA Art. 34(2)).
    pub possible_time: Option<i64>,
    /// When it was determined material.
    pub material_time: Option<i64>,
    /// When the access was stopped.
    pub contained_time: Option<i64>,
    /// Closed: when (wall clock) and why; `None` while open.
    pub closed: Option<Entry>,
    /// Notes.
    pub notes: Vec<Entry>,
    /// Further facts confirmed, in order (each may start a supplementary clock).
    pub facts: Vec<Entry>,
    /// The latest risk assessment: high risk or not, and why.
    pub high_risk: Option<(bool, Entry)>,
    /// Item texts a person wrote, by item id (the latest wins).
    pub filled: BTreeMap<String, Entry>,
    /// Notices and reports sent, by `(regime, clock)` (the first sending counts for the deadline).
    pub sent: BTreeMap<(String, String), Sent>,
    /// Every change, in order.
    pub history: Vec<Record>,
}

impl Incident {
    /// A just-opened incident.
    pub fn opened(id: &str, title: &str, from_alert: &str, at: i64, by: &str, alerts: &[String]) -> Self {
        Incident {
            id: id.to_owned(),
            title: title.to_owned(),
            from_alert: from_alert.to_owned(),
            opened_at: at,
            opened_by: by.to_owned(),
            alerts: alerts.iter().cloned().collect(),
            aware_time: None,
            possible_time: None,
            material_time: None,
            contained_time: None,
            closed: None,
            notes: Vec::new(),
            facts: Vec::new(),
            high_risk: None,
            filled: BTreeMap::new(),
            sent: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// The incident an `open` record makes (`None` for any other change).
    pub fn from_open(r: &Record) -> Option<Self> {
        let Change::Open { title, from_alert, alerts } = &r.change else { return None };
        let mut i = Incident::opened(&r.incident, title, from_alert, r.at, &r.by, alerts);
        i.history.push(r.clone());
        Some(i)
    }

    /// Applies one change (the fold of the ledger's records; tests and the fuzz target too).
    pub fn apply_change(&mut self, r: &Record) {
        self.apply(r);
    }

    /// One line of `incident list --format json` and `GET /v1/incidents`.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "title": self.title, "state": self.state(), "alerts": self.alerts,
            "aware_time": self.aware_time, "possible_time": self.possible_time, "material_time": self.material_time,
            "contained_time": self.contained_time, "opened_time": self.opened_at, "opened_by": self.opened_by,
        })
    }

    /// `open`, `contained` or `closed`.
    pub fn state(&self) -> &'static str {
        if self.closed.is_some() {
            "closed"
        } else if self.contained_time.is_some() {
            "contained"
        } else {
            "open"
        }
    }

    fn apply(&mut self, r: &Record) {
        let entry = |text: &str, time: Option<i64>| Entry { at: r.at, by: r.by.clone(), time, text: text.to_owned() };
        match &r.change {
            Change::Open { .. } => {}
            Change::Link { alerts } => self.alerts.extend(alerts.iter().cloned()),
            Change::Unlink { alerts } => {
                for a in alerts {
                    self.alerts.remove(a);
                }
            }
            Change::Note { text } => self.notes.push(entry(text, None)),
            Change::Aware { time } => self.aware_time = Some(*time),
            Change::Possible { time } => self.possible_time = Some(*time),
            Change::Material { time } => self.material_time = Some(*time),
            Change::Contain { time } => self.contained_time = Some(*time),
            Change::Fact { time, text } => self.facts.push(entry(text, Some(*time))),
            Change::Assess { high_risk, why } => self.high_risk = Some((*high_risk, entry(why, None))),
            Change::Fill { item, text } => {
                self.filled.insert(item.clone(), entry(text, None));
            }
            Change::Sent { regime, clock, time, count } => {
                self.sent.entry((regime.clone(), clock.clone())).or_insert(Sent {
                    time: *time,
                    count: *count,
                    by: r.by.clone(),
                });
            }
            Change::Close { why } => self.closed = Some(entry(why, None)),
            Change::Reopen { .. } => self.closed = None,
        }
        self.history.push(r.clone());
    }
}

/// Every incident in the store, in order of opening.
#[derive(Clone, Debug, Default)]
pub struct Incidents {
    list: Vec<Incident>,
}

impl Incidents {
    /// Folds the store's incident changes. A change that does not parse, or
    /// names an incident never opened, is damage: an error, not a silent skip.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let mut all = Self::default();
        let mut bad = None;
        store::incident_changes(dir, |payload| all.add(payload, &mut bad))?;
        all.done(bad)
    }

    /// One stored change; the first damage is kept in `bad`.
    pub(crate) fn add(&mut self, payload: &[u8], bad: &mut Option<String>) {
        if bad.is_some() {
            return;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => {
                if let Err(e) = self.fold(r) {
                    *bad = Some(e);
                }
            }
            Err(e) => *bad = Some(format!("an incident record does not parse: {e}")),
        }
    }

    /// The incidents, unless a change was damaged.
    pub(crate) fn done(self, bad: Option<String>) -> Result<Self, Error> {
        match bad {
            Some(why) => Err(Error::Damaged(why)),
            None => Ok(self),
        }
    }

    fn fold(&mut self, r: Record) -> Result<(), String> {
        if let Some(i) = Incident::from_open(&r) {
            if self.list.iter().any(|o| o.id == r.incident) {
                return Err(format!("incident {} is opened twice", r.incident));
            }
            self.list.push(i);
            return Ok(());
        }
        match self.list.iter_mut().find(|i| i.id == r.incident) {
            Some(i) => {
                i.apply(&r);
                Ok(())
            }
            None => Err(format!("a change to incident {}, which was never opened", r.incident)),
        }
    }

    /// The incidents, in order of opening.
    pub fn list(&self) -> &[Incident] {
        &self.list
    }

    /// One incident by id (case-insensitive: `inc-1` is `INC-1`).
    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.list.iter().find(|i| i.id.eq_ignore_ascii_case(id))
    }

    /// The id the next incident gets.
    pub fn next_id(&self) -> String {
        format!("INC-{}", self.list.len() + 1)
    }
}
