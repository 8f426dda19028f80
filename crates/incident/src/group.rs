//! Findings as an incident needs them, and which are related: those that
//! share an indicator with a linked finding and overlap it in time (within
//! a slack), followed transitively from the finding the incident was
//! opened from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::Error;

/// Findings further apart in time than this are not related by a shared indicator alone.
pub const SLACK_MS: i64 = 24 * 3_600_000;

/// Indicators that relate findings. An autonomous system number is left
/// out: a large network's number is shared by unrelated activity.
const LINKING: &[&str] = &["src_endpoint.ip", "actor.session.issuer", "actor.session.uid", "actor.user.uid"];

/// Detectors whose findings describe access from outside the organisation
/// without authority (PIPA's "unlawful access from outside").
pub const EXTERNAL: &[&str] =
    &["forged-token", "account-takeover", "foreign-access", "departed-principal", "inline-check"];

/// A stored finding, its latest update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `finding_info.uid`.
    pub uid: String,
    /// The detector or rule (`finding_info.analytic.name`).
    pub analytic: String,
    /// `finding_info.title`.
    pub title: String,
    /// `severity_id`.
    pub severity_id: i64,
    /// First and last event time covered.
    pub first_seen_time: i64,
    /// Last event time covered.
    pub last_seen_time: i64,
    /// Events covered.
    pub count: u64,
    /// A standing weakness (an unrotated key), not activity: linked for
    /// context, never a bridge to more findings, not part of the scope.
    pub posture: bool,
    /// Indicators: (field path, value), as stored (customer ids pseudonymised).
    pub observables: Vec<(String, String)>,
    /// The line as stored.
    #[serde(skip)]
    pub json: serde_json::Value,
}

impl Finding {
    fn of(v: serde_json::Value) -> Option<Self> {
        let info = &v["finding_info"];
        let uid = info["uid"].as_str()?.to_owned();
        let time = v["time"].as_i64().unwrap_or(0);
        let observables = v["observables"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| Some((o["name"].as_str()?.to_owned(), o["value"].as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            uid,
            analytic: info["analytic"]["name"].as_str().unwrap_or_default().to_owned(),
            title: info["title"].as_str().unwrap_or_default().to_owned(),
            severity_id: v["severity_id"].as_i64().unwrap_or(0),
            first_seen_time: info["first_seen_time"].as_i64().unwrap_or(time),
            last_seen_time: info["last_seen_time"].as_i64().unwrap_or(time),
            count: v["count"].as_u64().unwrap_or(0),
            posture: info["types"].as_array().is_some_and(|t| t.iter().any(|x| x == "posture")),
            observables,
            json: v,
        })
    }

    fn overlaps(&self, o: &Finding) -> bool {
        self.first_seen_time <= o.last_seen_time.saturating_add(SLACK_MS)
            && o.first_seen_time <= self.last_seen_time.saturating_add(SLACK_MS)
    }
}

/// Stored findings gathered record by record: the latest update of each
/// uid, in order of first report.
#[derive(Default)]
pub(crate) struct Gather {
    order: Vec<String>,
    latest: BTreeMap<String, Finding>,
}

impl Gather {
    /// One stored finding line (an update replaces what came before).
    pub(crate) fn add(&mut self, line: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
            && let Some(f) = Finding::of(v)
        {
            if !self.latest.contains_key(&f.uid) {
                self.order.push(f.uid.clone());
            }
            self.latest.insert(f.uid.clone(), f);
        }
    }

    /// The findings, in order of first report.
    pub(crate) fn finish(mut self) -> Vec<Finding> {
        self.order.into_iter().filter_map(|u| self.latest.remove(&u)).collect()
    }
}

/// Every finding in the store, its latest update, in order of first report.
pub fn findings(dir: &Path) -> Result<Vec<Finding>, Error> {
    let mut g = Gather::default();
    store::alerts(dir, |line| g.add(line))?;
    Ok(g.finish())
}

/// The findings related to `seed` (itself included), in the order of `all`.
/// Relations are followed from activity findings (and the seed) only: a
/// posture finding about a key is linked when an activity finding uses the
/// key, but does not pull in everything else that used it.
pub fn related(all: &[Finding], seed: &str) -> Vec<String> {
    let start = all.iter().position(|f| f.uid == seed);
    let mut linked: BTreeSet<usize> = start.into_iter().collect();
    loop {
        let grown: Vec<usize> = (0..all.len())
            .filter(|i| !linked.contains(i))
            .filter(|&i| {
                let f = &all[i];
                linked.iter().any(|&j| {
                    let g = &all[j];
                    (!g.posture || Some(j) == start)
                        && f.overlaps(g)
                        && f.observables.iter().any(|o| LINKING.contains(&o.0.as_str()) && g.observables.contains(o))
                })
            })
            .collect();
        if grown.is_empty() {
            break;
        }
        linked.extend(grown);
    }
    linked.into_iter().map(|i| all[i].uid.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(uid: &str, first: i64, last: i64, obs: &[(&str, &str)]) -> Finding {
        Finding {
            uid: uid.into(),
            analytic: "x".into(),
            title: String::new(),
            severity_id: 3,
            first_seen_time: first,
            last_seen_time: last,
            count: 1,
            posture: false,
            observables: obs.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect(),
            json: serde_json::Value::Null,
        }
    }

    #[test]
    fn related_follows_shared_indicators_in_time_and_transitively() {
        let h = 3_600_000;
        let all = vec![
            f("a", 0, h, &[("src_endpoint.ip", "1.2.3.4")]),
            // Shares the address, overlaps: related.
            f("b", h / 2, 2 * h, &[("src_endpoint.ip", "1.2.3.4"), ("actor.session.issuer", "k1")]),
            // Shares only b's key: related through b.
            f("c", 3 * h, 4 * h, &[("actor.session.issuer", "k1")]),
            // Shares the address but a week later: not related.
            f("d", 200 * h, 201 * h, &[("src_endpoint.ip", "1.2.3.4")]),
            // Shares only an AS number: not related.
            f("e", 0, h, &[("src_endpoint.autonomous_system.number", "4766")]),
            f("g", 0, h, &[("src_endpoint.autonomous_system.number", "4766"), ("src_endpoint.ip", "9.9.9.9")]),
        ];
        assert_eq!(related(&all, "a"), ["a", "b", "c"]);
        // A posture finding on b's key is linked, but is no bridge to the rest of that key's use.
        let mut more = all.clone();
        let mut p = f("p", 0, 300 * h, &[("actor.session.issuer", "k1")]);
        p.posture = true;
        more.push(p);
        more.push(f("q", 100 * h, 101 * h, &[("actor.session.issuer", "k1")]));
        assert_eq!(related(&more, "a"), ["a", "b", "c", "p"]);
        // Opened from the posture finding itself, it relates what shares its indicators, and on from those.
        assert_eq!(related(&more, "p"), ["a", "b", "c", "p", "q"]);
        assert_eq!(related(&all, "d"), ["d"]);
        assert_eq!(related(&all, "e"), ["e"]);
        assert!(related(&all, "nope").is_empty());
    }
}
