//! Findings: what a detector reports, and how it becomes an OCSF Detection
//! Finding (class 2004) JSON line.
//!
//! A detector that watches an ongoing activity reports it once when it
//! starts (`activity_id` 1, Create) and then as updates with the same
//! `finding_info.uid` (`activity_id` 2, Update) when the count has grown
//! enough to matter, never once per event.

use model::Millis;
use serde_json::{Value, json};

/// OCSF schema version the findings follow.
pub const OCSF_VERSION: &str = "1.9.0-dev";

/// Create, or update of an earlier finding with the same uid.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A new finding.
    Create,
    /// More of the same activity.
    Update,
}

/// How the analytic decides (OCSF `analytic.type_id`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AnalyticKind {
    /// A fixed rule (1).
    Rule,
    /// Deviation from an actor's own or its peers' behaviour (2).
    Behavioral,
    /// Counts against learned baselines (3).
    Statistical,
}

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Stable id: the same for every update of one finding.
    pub uid: String,
    /// Create or update.
    pub activity: Activity,
    /// The detector (`forged-token`, `fan-out`, ...).
    pub detector: &'static str,
    /// How it decides.
    pub analytic: AnalyticKind,
    /// One line a person understands.
    pub title: String,
    /// What was seen and why it matters, in a few sentences.
    pub desc: String,
    /// 1 informational ... 5 critical.
    pub severity: u8,
    /// Event time of the event that made the detector fire.
    pub time: Millis,
    /// Event time the engine's clock had reached when it reported (for
    /// time to detect; independent of arrival order).
    pub reported_at: Millis,
    /// Span of the activity covered.
    pub first_seen: Millis,
    /// Span of the activity covered.
    pub last_seen: Millis,
    /// Events covered.
    pub count: u64,
    /// Indicators: input field path and value.
    pub observables: Vec<(&'static str, String)>,
    /// A standing weakness (a key that should have been rotated), not activity.
    pub posture: bool,
    /// A Sigma rule's finding: the rule that made it (`None`: a built-in detector).
    pub rule: Option<Box<RuleRef>>,
    /// Detector-specific details, kept under `unmapped`.
    pub details: Value,
}

/// The Sigma rule behind a finding: the analytic is the rule, not the detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// The rule's `id` (its title when it has none).
    pub id: String,
    /// The rule's `title`.
    pub title: String,
    /// A correlation's `group-by` fields and their values, as observables.
    pub group: Vec<(String, String)>,
}

/// The OCSF observable type of an input field path.
fn observable_type(name: &str) -> (u8, &'static str) {
    match name {
        "src_endpoint.ip" => (2, "IP Address"),
        "actor.user.uid" => (4, "User Name"),
        "http_request.user_agent" => (16, "HTTP User-Agent"),
        _ => (99, "Other"),
    }
}

impl Alert {
    /// The finding as one OCSF Detection Finding object.
    pub fn to_ocsf(&self) -> Value {
        let (activity_id, activity_name) = match self.activity {
            Activity::Create => (1, "Create"),
            Activity::Update => (2, "Update"),
        };
        let (analytic_type_id, analytic_type) = match self.analytic {
            AnalyticKind::Rule => (1, "Rule"),
            AnalyticKind::Behavioral => (2, "Behavioral"),
            AnalyticKind::Statistical => (3, "Statistical"),
        };
        let severity = match self.severity {
            1 => "Informational",
            2 => "Low",
            3 => "Medium",
            4 => "High",
            _ => "Critical",
        };
        let group = self.rule.iter().flat_map(|r| r.group.iter().map(|(n, v)| (n.as_str(), v)));
        let observables: Vec<Value> = self
            .observables
            .iter()
            .map(|(name, value)| (*name, value))
            .chain(group)
            .map(|(name, value)| {
                let (type_id, ty) = observable_type(name);
                json!({"name": name, "type_id": type_id, "type": ty, "value": value})
            })
            .collect();
        let (analytic_name, analytic_uid) = match &self.rule {
            Some(r) => (r.title.as_str(), r.id.as_str()),
            None => (self.detector, self.detector),
        };
        let types = if self.posture { vec!["posture"] } else { vec!["activity"] };
        json!({
            "activity_id": activity_id,
            "activity_name": activity_name,
            "category_uid": 2,
            "category_name": "Findings",
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "type_uid": 200400 + activity_id,
            "severity_id": self.severity.clamp(1, 5),
            "severity": severity,
            "status_id": 1,
            "status": "New",
            "time": self.time,
            "count": self.count,
            "message": self.title,
            "is_alert": !self.posture,
            "metadata": {
                "version": OCSF_VERSION,
                "product": {"name": "piiwatch", "vendor_name": "piiwatch", "version": env!("CARGO_PKG_VERSION")},
            },
            "finding_info": {
                "uid": self.uid,
                "title": self.title,
                "desc": self.desc,
                "types": types,
                "first_seen_time": self.first_seen,
                "last_seen_time": self.last_seen,
                "created_time": self.reported_at,
                "analytic": {"name": analytic_name, "uid": analytic_uid, "type_id": analytic_type_id, "type": analytic_type},
            },
            "observables": observables,
            "unmapped": self.details,
        })
    }
}

/// Where findings go. The engine does no I/O: the caller decides.
pub trait Sink {
    /// One finding, as soon as it is known.
    fn alert(&mut self, alert: Alert);
}

impl Sink for Vec<Alert> {
    fn alert(&mut self, alert: Alert) {
        self.push(alert);
    }
}

/// A stable id from the detector and the actor it is about:
/// `pw-{detector}-{16 hex}`, the hex being the first 8 bytes of
/// SHA-256 over `"piiwatch finding uid v1"`, then the detector and each part,
/// each preceded by its length as 4 little-endian bytes. Users type uids back
/// (`scope --alert`) and the store keeps them, so they must not change with a
/// hasher's version; 64 bits keep collisions among one store's findings
/// negligible (about 1 in 10^7 at a million findings).
pub fn uid(detector: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"piiwatch finding uid v1");
    for p in std::iter::once(detector).chain(parts.iter().copied()) {
        h.update((p.len() as u32).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut hex = String::with_capacity(16);
    for b in &d[..8] {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    format!("pw-{detector}-{hex}")
}

/// One reported activity and when to report it again.
#[derive(Clone, Debug)]
pub struct Episode {
    /// The finding's uid.
    pub uid: String,
    /// First event covered.
    pub first: Millis,
    /// The figure last reported (count, subjects...).
    pub reported: u64,
    /// Event time of the last report.
    pub reported_at: Millis,
}

impl Episode {
    /// A new episode.
    pub fn new(uid: String, first: Millis) -> Self {
        Self { uid, first, reported: 0, reported_at: i64::MIN }
    }

    /// Whether `figure` (now at `now`) is worth an update: it doubled, or it
    /// grew by a tenth and the last report is older than `every`.
    pub fn due(&self, figure: u64, now: Millis, every: Millis) -> bool {
        figure >= self.reported.saturating_mul(2).max(1)
            || (figure >= self.reported + (self.reported / 10).max(1) && now.saturating_sub(self.reported_at) >= every)
    }

    /// Records a report.
    pub fn mark(&mut self, figure: u64, now: Millis) -> Activity {
        let activity = if self.reported_at == i64::MIN { Activity::Create } else { Activity::Update };
        self.reported = figure;
        self.reported_at = now;
        activity
    }
}

#[cfg(test)]
mod tests {
    /// The values come from an independent implementation (Python's
    /// hashlib over the documented layout): a uid a user kept must still
    /// name the same finding after any upgrade.
    #[test]
    fn finding_uids_are_sha256_of_the_documented_layout() {
        assert_eq!(super::uid("fan-out", &["src_ip", "203.0.113.7"]), "pw-fan-out-7e00d04aa570ec09");
        assert_eq!(super::uid("forged-token", &[]), "pw-forged-token-52d095c3500f799a");
        // Lengths delimit the parts: moving a boundary changes the uid.
        assert_ne!(super::uid("x", &["ab", "c"]), super::uid("x", &["a", "bc"]));
    }
}
