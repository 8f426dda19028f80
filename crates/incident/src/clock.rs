//! An incident's deadline clocks: for every applicable regime, each of its
//! clocks with the trigger that starts it, when it is due, whether it was
//! met, and what is still missing for it.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::Facts;
use crate::org::Org;
use crate::regime::{ClockRule, Condition, Conf, Kind, Regimes, parse_cutoff};
use crate::state::Incident;

/// Items piiwatch drafts from the store and the findings (a person reviews them).
pub const FROM_STORE: &[&str] = &[
    "categories_of_data",
    "categories_of_subjects",
    "approx_number_of_subjects",
    "categories_of_records",
    "approx_number_of_records",
    "time_of_breach",
    "incident_timing",
    "incident_scope",
    "how_breach_occurred",
    "nature_of_breach",
    "incident_cause",
    "damage_details",
    "notice_date",
    "followup_commitment",
];

/// Where a clock stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not sent, not yet due (or not yet started).
    Open,
    /// Sent by the deadline.
    Met,
    /// Sent late, or not sent and past due.
    Missed,
}

/// One clock of one regime for one incident.
#[derive(Clone, Debug, Serialize)]
pub struct Clock {
    /// The regime id.
    pub regime: String,
    /// The clock's id within it (`incident sent --clock`).
    pub clock: String,
    /// Who must be told.
    pub recipient: String,
    /// What starts it.
    pub trigger: String,
    /// When it started, epoch ms (`None`: not yet).
    pub trigger_time: Option<i64>,
    /// How it is counted.
    pub kind: Kind,
    /// Hours or days.
    pub n: u32,
    /// False for an internal target where the law sets no deadline.
    pub legal_deadline: bool,
    /// When it is due, epoch ms (`None` until the trigger is known).
    pub due_time: Option<i64>,
    /// Open, met or missed.
    pub status: Status,
    /// When the notice or report was sent.
    pub sent_time: Option<i64>,
    /// Time left (negative: overdue), ms, while unsent and started.
    pub remaining_ms: Option<i64>,
    /// `yes`, or `unknown` when a fact that decides it is not known yet (shown all the same).
    pub applies: &'static str,
    /// Why it applies, or what would decide it.
    pub because: Vec<String>,
    /// What is still missing to send it: a trigger, items only a person can write.
    pub missing: Vec<String>,
    /// How sure the rule is.
    pub conf: Conf,
    /// The rules' version (the date they apply from).
    pub rules_from: String,
    /// The articles.
    pub law: String,
    /// A caveat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A regime or clock that does not apply, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotApplicable {
    /// The regime id.
    pub regime: String,
    /// The clock, when only it does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// Why.
    pub why: String,
}

enum Eval {
    Met(String),
    NotMet(String),
    Unknown(String),
}

fn eval(c: &Condition, facts: &Facts, org: &Org, inc: &Incident, residents: Option<u64>) -> Eval {
    if let Some(min) = c.subjects_min {
        return match facts.subjects {
            Some(n) if n >= min => Eval::Met(format!("{n} subjects exposed (threshold {min})")),
            Some(n) => Eval::NotMet(format!("{n} subjects exposed, under {min}")),
            None => Eval::Unknown("the number of subjects exposed (no scope)".into()),
        };
    }
    if let Some(cat) = &c.field_classes {
        let list = if cat == "sensitive" { &org.sensitive } else { &org.unique_identifying };
        let hit: Vec<&str> = facts.field_classes.iter().filter(|f| list.contains(f)).map(String::as_str).collect();
        let name = cat.replace('_', " ");
        return if hit.is_empty() {
            Eval::NotMet(format!("no {name} field class exposed"))
        } else {
            Eval::Met(format!("{name} data exposed: {}", hit.join(", ")))
        };
    }
    if c.cause.is_some() {
        let ext: Vec<&str> = facts
            .analytics
            .iter()
            .filter(|a| crate::group::EXTERNAL.contains(&a.as_str()))
            .map(String::as_str)
            .collect();
        return if ext.is_empty() {
            Eval::NotMet("no linked finding shows unlawful access from outside".into())
        } else {
            Eval::Met(format!("unlawful access from outside (findings: {})", ext.join(", ")))
        };
    }
    if let Some(over) = c.residents_notified_over {
        return match residents {
            Some(n) if n > over => Eval::Met(format!("{n} residents notified (over {over})")),
            Some(n) => Eval::NotMet(format!("{n} residents notified, not over {over}")),
            None => {
                Eval::Unknown(format!("how many residents were notified (over {over}?): `incident sent --count N`"))
            }
        };
    }
    if c.assessed.is_some() {
        return match &inc.high_risk {
            Some((true, e)) => Eval::Met(format!("assessed high risk: {}", e.text)),
            Some((false, e)) => Eval::NotMet(format!("assessed not high risk: {}", e.text)),
            None => Eval::Unknown("a risk assessment: `incident assess --high-risk yes|no`".into()),
        };
    }
    Eval::Unknown("an empty condition".into())
}

fn ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

/// When a clock started at `trigger` is due, epoch ms.
pub fn due(rule: &ClockRule, trigger: i64, regimes: &Regimes, org: &Org) -> Option<i64> {
    let zone = || rule.tz.as_deref().and_then(|t| TimeZone::get(t).ok());
    match rule.kind {
        Kind::CalendarHours | Kind::WithoutUndueDelay => trigger.checked_add(i64::from(rule.n) * 3_600_000),
        Kind::CalendarDays => {
            let tz = zone()?;
            let date = ts(trigger)?.to_zoned_datetime(tz.clone()).date();
            let next = date.checked_add(jiff::Span::new().days(i64::from(rule.n) + 1)).ok()?;
            let end = next.at(0, 0, 0, 0).to_zoned_datetime(tz).ok()?;
            Some(end.timestamp().as_millisecond() - 1)
        }
        Kind::UsSecBusinessDays => {
            let tz = zone()?;
            let cal = regimes.calendars.get(rule.calendar.as_deref()?)?;
            let (h, m) = parse_cutoff(rule.cutoff.as_deref()?)?;
            let date = ts(trigger)?.to_zoned_datetime(tz.clone()).date();
            let day = cal.business_days_after(date, rule.n, &org.closures)?;
            Some(day.at(h, m, 0, 0).to_zoned_datetime(tz).ok()?.timestamp().as_millisecond())
        }
    }
}

/// Every clock of every regime that applies to `inc`, and what does not apply.
pub fn clocks(
    inc: &Incident,
    regimes: &Regimes,
    org: &Org,
    facts: &Facts,
    now: i64,
) -> (Vec<Clock>, Vec<NotApplicable>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for r in regimes.regimes.values() {
        if !org.lists(&r.id) {
            skipped.push(NotApplicable {
                regime: r.id.clone(),
                clock: None,
                why: "not in the organisation profile's regimes".into(),
            });
            continue;
        }
        let mut org_because = Vec::new();
        if let Some(fact) = &r.applies_if {
            match org.fact(fact) {
                Some(false) => {
                    skipped.push(NotApplicable {
                        regime: r.id.clone(),
                        clock: None,
                        why: format!("the organisation profile says {fact} = false"),
                    });
                    continue;
                }
                Some(true) => org_because.push(format!("the organisation is an {}", fact.replace('_', " "))),
                None => org_because
                    .push(format!("not known whether the organisation is an {} (--org)", fact.replace('_', " "))),
            }
        }
        let version = r.version_at(inc.aware_time.or(inc.possible_time));
        for rule in &version.clock {
            // `fact`: one clock per fact confirmed.
            let instances: Vec<(String, Option<i64>, Option<String>)> = match rule.trigger.as_str() {
                "aware" => vec![(rule.id.clone(), inc.aware_time, None)],
                "material" => vec![(rule.id.clone(), inc.material_time, None)],
                // Shown only once a possible leak is recorded: most incidents have none.
                "possible" => inc.possible_time.map(|t| (rule.id.clone(), Some(t), None)).into_iter().collect(),
                "fact" => inc
                    .facts
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (format!("{}-{}", rule.id, i + 1), f.time, Some(f.text.clone())))
                    .collect(),
                t => {
                    let other = t.strip_prefix("sent:").unwrap_or(t);
                    vec![(rule.id.clone(), inc.sent.get(&(r.id.clone(), other.to_owned())).map(|s| s.time), None)]
                }
            };
            let residents = rule
                .trigger
                .strip_prefix("sent:")
                .and_then(|o| inc.sent.get(&(r.id.clone(), o.to_owned())))
                .and_then(|s| s.count);
            let mut because = org_because.clone();
            let mut applies = if org_because.iter().any(|b| b.starts_with("not known")) { "unknown" } else { "yes" };
            if !rule.threshold.is_empty() {
                let evals: Vec<Eval> = rule.threshold.iter().map(|c| eval(c, facts, org, inc, residents)).collect();
                let met: Vec<&String> =
                    evals.iter().filter_map(|e| if let Eval::Met(s) = e { Some(s) } else { None }).collect();
                let unknown: Vec<&String> =
                    evals.iter().filter_map(|e| if let Eval::Unknown(s) = e { Some(s) } else { None }).collect();
                if !met.is_empty() {
                    because.extend(met.into_iter().cloned());
                } else if !unknown.is_empty() {
                    applies = "unknown";
                    because.extend(unknown.into_iter().map(|u| format!("not known yet: {u}")));
                } else {
                    let why: Vec<String> = evals
                        .into_iter()
                        .filter_map(|e| if let Eval::NotMet(s) = e { Some(s) } else { None })
                        .collect();
                    skipped.push(NotApplicable {
                        regime: r.id.clone(),
                        clock: Some(rule.id.clone()),
                        why: format!("no threshold met: {}", why.join("; ")),
                    });
                    continue;
                }
            }
            for (id, trigger_time, fact) in instances {
                let due_time = trigger_time.and_then(|t| due(rule, t, regimes, org));
                let sent = inc.sent.get(&(r.id.clone(), id.clone()));
                let status = match (sent, due_time) {
                    (Some(s), Some(d)) if s.time <= d => Status::Met,
                    (Some(_), Some(_)) => Status::Missed,
                    // Sent before the trigger was even recorded: met.
                    (Some(_), None) => Status::Met,
                    (None, Some(d)) if now > d => Status::Missed,
                    (None, _) => Status::Open,
                };
                let late = matches!(status, Status::Missed);
                let mut missing = Vec::new();
                if trigger_time.is_none() {
                    missing.push(match rule.trigger.as_str() {
                        "aware" => "when the organisation became aware: `incident aware ID --at T`".to_owned(),
                        "material" => "the materiality determination: `incident material ID --at T`".to_owned(),
                        t => format!("the {} notice to be sent first", t.trim_start_matches("sent:")),
                    });
                }
                if sent.is_none() {
                    missing.extend(missing_items(version, inc, org, facts, late));
                }
                let mut note = rule.note.clone();
                if let Some(f) = fact {
                    note = Some(format!("fact confirmed: {f}"));
                }
                out.push(Clock {
                    regime: r.id.clone(),
                    clock: id,
                    recipient: rule.recipient.clone(),
                    trigger: rule.trigger.clone(),
                    trigger_time,
                    kind: rule.kind,
                    n: rule.n,
                    legal_deadline: rule.kind != Kind::WithoutUndueDelay,
                    due_time,
                    status,
                    sent_time: sent.map(|s| s.time),
                    remaining_ms: if sent.is_none() { due_time.map(|d| d - now) } else { None },
                    applies,
                    because: because.clone(),
                    missing,
                    conf: rule.conf,
                    rules_from: version.from.to_string(),
                    law: r.law.clone(),
                    note,
                });
            }
        }
    }
    (out, skipped)
}

/// Items of `version` a person must still write for this incident.
fn missing_items(
    version: &crate::regime::Version,
    inc: &Incident,
    org: &Org,
    facts: &Facts,
    late: bool,
) -> Vec<String> {
    let unique = facts.field_classes.iter().any(|f| org.unique_identifying.contains(f));
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in &version.item {
        let needed = match item.when.as_deref() {
            Some("late") => late,
            Some("undetermined") => false,
            Some("unique_identifying") => unique,
            Some("possible") => inc.possible_time.is_some(),
            _ => true,
        };
        let from_org = match item.id.as_str() {
            "contact_point" => org.contact_point.is_some() || org.dpo.is_some(),
            "notifier_identity" => org.name.is_some(),
            _ => false,
        };
        if needed
            && !from_org
            && !FROM_STORE.contains(&item.id.as_str())
            && !inc.filled.contains_key(&item.id)
            && seen.insert(item.id.clone())
        {
            out.push(format!("item {}: `incident fill ID --item {} --text TEXT`", item.id, item.id));
        }
    }
    out
}
