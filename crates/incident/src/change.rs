//! One change to an incident, as the store's ledger keeps it (record kind
//! [`store::kind::INCIDENT`]): which incident, who, when, what. An
//! incident is the fold of its changes in ledger order; nothing is ever
//! edited in place, so the history is the audit trail.

use serde::{Deserialize, Serialize};

/// A change, with who made it and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The incident's id (`INC-1`, ...).
    pub incident: String,
    /// Wall-clock time the change was recorded, epoch ms.
    pub at: i64,
    /// Who made it: the operating-system user, or an API token's name.
    pub by: String,
    /// What changed.
    pub change: Change,
}

/// What changed. Times are epoch ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Opened from a finding, with the related findings linked.
    Open {
        /// One line for people.
        title: String,
        /// The finding it was opened from.
        from_alert: String,
        /// Every finding linked at opening (the first one included).
        alerts: Vec<String>,
    },
    /// Findings added.
    Link {
        /// Their uids.
        alerts: Vec<String>,
    },
    /// Findings removed.
    Unlink {
        /// Their uids.
        alerts: Vec<String>,
    },
    /// A note for the record.
    Note {
        /// The text.
        text: String,
    },
    /// When the organisation became aware (the clocks of most regimes start here).
    Aware {
        /// The moment.
        time: i64,
    },
    /// When the organisation became aware of a *possible* leak whose subjects
    /// are hard to identify (PIPA Art. 34(2) from 2026-09-11: notify every
    /// subject possibly affected).
    Possible {
        /// The moment.
        time: i64,
    },
    /// When the organisation determined the incident material (SEC Item 1.05).
    Material {
        /// The moment.
        time: i64,
    },
    /// When the access was stopped.
    Contain {
        /// The moment.
        time: i64,
    },
    /// A further fact confirmed (starts a supplementary-report clock where a regime has one).
    Fact {
        /// When it was confirmed.
        time: i64,
        /// What it is.
        text: String,
    },
    /// A person's risk assessment (GDPR Art. 34 needs a high risk).
    Assess {
        /// Whether the breach is likely to result in a high risk to people.
        high_risk: bool,
        /// Why.
        why: String,
    },
    /// Text for a notice or report item a person must write (measures taken, ...).
    Fill {
        /// The item id (`measures_taken`, ...).
        item: String,
        /// The text.
        text: String,
    },
    /// A notice or report was sent.
    Sent {
        /// The regime id.
        regime: String,
        /// The clock within it (`report`, `residents`, `supplementary-1`, ...).
        clock: String,
        /// When it was sent or filed.
        time: i64,
        /// How many recipients were notified, where that matters (California's 500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// Closed.
    Close {
        /// Why (resolution).
        why: String,
    },
    /// Opened again after closing.
    Reopen {
        /// Why.
        why: String,
    },
}

impl Change {
    /// The change's name, as the CLI's subcommands and the history show it.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Open { .. } => "open",
            Change::Link { .. } => "link",
            Change::Unlink { .. } => "unlink",
            Change::Note { .. } => "note",
            Change::Aware { .. } => "aware",
            Change::Possible { .. } => "possible",
            Change::Material { .. } => "material",
            Change::Contain { .. } => "contain",
            Change::Fact { .. } => "fact",
            Change::Assess { .. } => "assess",
            Change::Fill { .. } => "fill",
            Change::Sent { .. } => "sent",
            Change::Close { .. } => "close",
            Change::Reopen { .. } => "reopen",
        }
    }
}
