//! Sigma in the detection engine: the rules each event matched (found where
//! it was parsed) turned into findings in event-time order.
//!
//! - A detection rule that reports its own matches gives one finding per
//!   rule and hour of event time, created at the first match and updated
//!   as the count grows (never one per event), with the busiest source
//!   addresses when the events are API calls.
//! - A correlation gives one finding per group and window (see [`corr`]),
//!   with its `group-by` fields and values among the observables; a
//!   correlation that refers to another (a chain) counts the other's
//!   findings, once per window.

use std::sync::Arc;

use detect::alert::{Activity, AnalyticKind, RuleRef};
use detect::detectors::Tally;
use detect::engine::{Cx, Detector};
use detect::ev::What;
use detect::{Alert, Ev};
use model::Millis;
use serde_json::json;
use smallvec::SmallVec;

use crate::corr::{self, Firing, Input};
use crate::{Ref, Rules};

const HOUR: Millis = 3_600_000;
/// How long between updates of a rule's slowly growing count.
const UPDATE_EVERY: Millis = 10 * 60_000;
/// At most this many groups from one event's array values.
const MAX_GROUPS: usize = 16;

/// One field's values in an event, borrowed.
type Values<'a> = SmallVec<[&'a str; 4]>;

/// The detector.
pub struct SigmaDetector {
    rules: Arc<Rules>,
    states: Vec<corr::State>,
    /// Per detection rule: (correlation, reference) that use it.
    by_rule: Vec<Vec<(u32, usize)>>,
    /// Per correlation: (correlation, reference) that use it.
    by_corr: Vec<Vec<(u32, usize)>>,
    /// Rule findings: (rule, hour) → tally.
    tallies: hashbrown::HashMap<(u32, i64), Tally, foldhash::fast::FixedState>,
}

impl SigmaDetector {
    /// A detector over `rules`.
    pub fn new(rules: Arc<Rules>) -> Self {
        let mut by_rule = vec![Vec::new(); rules.rules.len()];
        let mut by_corr = vec![Vec::new(); rules.correlations.len()];
        for (c, k) in rules.correlations.iter().enumerate() {
            for (r, x) in k.refs.iter().enumerate() {
                match *x {
                    Ref::Rule(i) => by_rule[i as usize].push((c as u32, r)),
                    Ref::Corr(j) => by_corr[j as usize].push((c as u32, r)),
                }
            }
        }
        let states = rules.correlations.iter().map(|c| corr::State::new(c.spec.clone())).collect();
        Self { rules, states, by_rule, by_corr, tallies: hashbrown::HashMap::default() }
    }

    fn rule_match(&mut self, rule: u32, ev: &Ev, cx: &mut Cx<'_>) {
        let hour = ev.time.div_euclid(HOUR);
        let t = self.tallies.entry((rule, hour)).or_default();
        match &ev.what {
            What::Call(c) => t.add(c),
            _ => t.add_at(ev.time),
        }
        let info = &self.rules.rules[rule as usize];
        if let Some((uid, activity)) =
            t.due(ev.time, UPDATE_EVERY, || detect::alert::uid("sigma", &[&info.id, &(hour * HOUR).to_string()]))
        {
            cx.report(rule_alert(info, hour, t, uid, activity, ev.time, cx));
        }
    }

    /// Reports the last count of every rule finding whose hour is before
    /// `before` (every one with `None`) and forgets them.
    fn close_hours(&mut self, before: Option<i64>, now: Millis, cx: &mut Cx<'_>) {
        let mut done: Vec<(u32, i64)> =
            self.tallies.keys().filter(|(_, h)| before.is_none_or(|b| *h < b)).copied().collect();
        done.sort_unstable();
        for key in done {
            let Some(mut t) = self.tallies.remove(&key) else { continue };
            let info = &self.rules.rules[key.0 as usize];
            if let Some(ep) = &mut t.episode
                && ep.reported < t.count
            {
                let activity = ep.mark(t.count, now);
                let uid = ep.uid.clone();
                cx.report(rule_alert(info, key.1, &t, uid, activity, t.last, cx));
            }
        }
    }

    /// Feeds correlation `c` (reference `r`) one event's group values (per
    /// `group-by` field, every value the event has) and value-field values;
    /// chains what fires. Nothing is copied unless a group is new.
    #[allow(clippy::too_many_arguments)] // one event's parts, passed down a chain
    fn feed(
        &mut self,
        c: u32,
        r: usize,
        time: Millis,
        groups: &[Values<'_>],
        values: &[&str],
        who: Option<&Ev>,
        cx: &mut Cx<'_>,
    ) {
        // One key per combination of the group fields' values (an empty
        // field is the empty string), at most MAX_GROUPS.
        let mut keys: SmallVec<[Values<'_>; 1]> = smallvec::smallvec![Values::new()];
        for g in groups {
            let opts: &[&str] = if g.is_empty() { &[""] } else { g };
            if opts.len() == 1 {
                keys.iter_mut().for_each(|k| k.push(opts[0]));
                continue;
            }
            let mut next = SmallVec::new();
            'all: for k in &keys {
                for o in opts {
                    if next.len() >= MAX_GROUPS {
                        break 'all;
                    }
                    let mut k = k.clone();
                    k.push(*o);
                    next.push(k);
                }
            }
            keys = next;
        }
        for key in &keys {
            let fired = self.states[c as usize].add(key, Input { time, reference: r, values });
            if let Some(f) = fired {
                self.report(c, key, time, &f, who, cx);
                if f.new {
                    self.chain(c, key, time, who, cx);
                }
            }
        }
    }

    /// A correlation fired: the correlations that refer to it count it.
    fn chain(&mut self, c: u32, key: &[&str], time: Millis, who: Option<&Ev>, cx: &mut Cx<'_>) {
        for j in 0..self.by_corr[c as usize].len() {
            let (outer, r) = self.by_corr[c as usize][j];
            let k = &self.rules.correlations[outer as usize];
            let groups: SmallVec<[Values<'_>; 2]> =
                k.group_at[r].iter().map(|at| at.and_then(|i| key.get(i).copied()).into_iter().collect()).collect();
            let values: Values<'_> = k.value_at[r].and_then(|i| key.get(i).copied()).into_iter().collect();
            self.feed(outer, r, time, &groups, &values, who, cx);
        }
    }

    /// A correlation's finding. `who`: the event that made it fire; an API
    /// call's source address names the actor even when the group is
    /// something else (a token, a network). Its principal is not named: one
    /// event's is a sample, not the group's (an incident's scope would
    /// narrow to it).
    fn report(&self, c: u32, key: &[&str], time: Millis, f: &Firing, who: Option<&Ev>, cx: &mut Cx<'_>) {
        let k = &self.rules.correlations[c as usize];
        let observables: Vec<(&'static str, String)> = match who.map(|e| &e.what) {
            Some(What::Call(call)) if !k.group_by.iter().any(|g| g == "src_endpoint.ip") => {
                vec![("src_endpoint.ip", cx.symbols.addrs.resolve(call.src).to_string())]
            }
            _ => Vec::new(),
        };
        let group: Vec<(String, String)> =
            k.group_by.iter().zip(key).map(|(n, v)| (n.clone(), v.to_string())).collect();
        let mut parts: Vec<String> = vec![k.info.id.clone(), f.start.to_string()];
        parts.extend(key.iter().map(|v| v.to_string()));
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let uid = detect::alert::uid("sigma", &refs);
        let what = match (&k.spec.kind, &k.value_field) {
            (corr::Kind::EventCount, _) => format!("{} matching events", f.value),
            (corr::Kind::ValueCount, Some(v)) => format!("{} distinct values of {v}", f.value),
            (corr::Kind::Temporal | corr::Kind::TemporalOrdered, _) => "every referenced rule".to_string(),
            (kind, v) => format!("{} of {} = {}", kind.name(), v.as_deref().unwrap_or("?"), f.value),
        };
        let by = if group.is_empty() {
            String::new()
        } else {
            format!(" for {}", group.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", "))
        };
        cx.report(Alert {
            uid,
            activity: if f.new { Activity::Create } else { Activity::Update },
            detector: "sigma",
            analytic: AnalyticKind::Statistical,
            title: k.info.title.clone(),
            desc: format!(
                "Sigma correlation \"{}\" ({}, {}): {what}{by} within {} s.",
                k.info.title,
                k.info.id,
                k.spec.kind.name(),
                k.spec.timespan / 1000
            ),
            severity: k.info.severity,
            time,
            reported_at: time,
            first_seen: f.first,
            last_seen: time,
            count: f.events,
            observables,
            posture: false,
            rule: Some(Box::new(RuleRef { id: k.info.id.clone(), title: k.info.title.clone(), group })),
            details: json!({"sigma": {
                "correlation": k.info.id,
                "correlation_type": k.spec.kind.name(),
                "timespan_ms": k.spec.timespan,
                "value": f.value,
                "window_start": f.start,
                "file": k.info.file.display().to_string(),
                "line": k.info.line,
            }}),
        });
    }
}

/// A rule's finding for one hour.
fn rule_alert(
    info: &crate::Info,
    hour: i64,
    t: &Tally,
    uid: String,
    activity: Activity,
    time: Millis,
    cx: &Cx<'_>,
) -> Alert {
    Alert {
        uid,
        activity,
        detector: "sigma",
        analytic: AnalyticKind::Rule,
        title: info.title.clone(),
        desc: format!(
            "Sigma rule \"{}\" ({}) matched {} event(s) in the hour from {}.",
            info.title,
            info.id,
            t.count,
            detect::detectors::human(hour * HOUR)
        ),
        severity: info.severity,
        time,
        reported_at: time,
        first_seen: t.first,
        last_seen: t.last,
        count: t.count,
        observables: detect::detectors::named("src_endpoint.ip", t.top_addrs(cx.symbols)),
        posture: false,
        rule: Some(Box::new(RuleRef { id: info.id.clone(), title: info.title.clone(), group: Vec::new() })),
        details: json!({"sigma": {"rule": info.id, "file": info.file.display().to_string(), "line": info.line, "hour": hour * HOUR}}),
    }
}

impl Detector for SigmaDetector {
    fn name(&self) -> &'static str {
        "sigma"
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        let Some(hits) = &ev.hits else { return };
        for hit in hits.iter() {
            let i = hit.rule as usize;
            if self.rules.reports.get(i).copied().unwrap_or(false) {
                self.rule_match(hit.rule, ev, cx);
            }
            for j in 0..self.by_rule.get(i).map_or(0, Vec::len) {
                let (c, r) = self.by_rule[i][j];
                let k = &self.rules.correlations[c as usize];
                let pick = |at: Option<usize>| -> Values<'_> {
                    at.and_then(|p| hit.field(p)).map(Iterator::collect).unwrap_or_default()
                };
                let groups: SmallVec<[Values<'_>; 2]> = k.group_at[r].iter().map(|at| pick(*at)).collect();
                let values = pick(k.value_at[r]);
                self.feed(c, r, ev.time, &groups, &values, Some(ev), cx);
            }
        }
    }

    fn tick(&mut self, now: Millis, cx: &mut Cx<'_>) {
        // An hour is done once the clock is past it (events later than
        // that are late, and start a finding of their own).
        if now % HOUR == 0 {
            self.close_hours(Some(now.div_euclid(HOUR)), now, cx);
        }
    }

    fn finish(&mut self, now: Millis, cx: &mut Cx<'_>) {
        self.close_hours(None, now, cx);
    }

    fn state_bytes(&self) -> usize {
        self.states.iter().map(corr::State::state_bytes).sum::<usize>() + self.tallies.len() * 160
    }
}
