//! Breach-notification regimes as data: one TOML file each (see
//! `regimes/README.md` at the repository's root), built into the binary
//! and replaceable at run time from a directory.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;

/// The regimes and calendars built into the binary.
const BUILT_IN: &[(&str, &str)] = &[
    ("kr-network-act.toml", include_str!("../../../regimes/kr-network-act.toml")),
    ("kr-pipa-notice.toml", include_str!("../../../regimes/kr-pipa-notice.toml")),
    ("kr-pipa-report.toml", include_str!("../../../regimes/kr-pipa-report.toml")),
    ("gdpr-art33.toml", include_str!("../../../regimes/gdpr-art33.toml")),
    ("gdpr-art34.toml", include_str!("../../../regimes/gdpr-art34.toml")),
    ("sec-8k.toml", include_str!("../../../regimes/sec-8k.toml")),
    ("us-ca-1798.82.toml", include_str!("../../../regimes/us-ca-1798.82.toml")),
    ("us-federal.toml", include_str!("../../../regimes/us-federal.toml")),
];

/// How sure a fact is (regimes.md's markers).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conf {
    /// The legal text as reproduced, or two independent sources.
    Confirmed,
    /// One secondary source: verify before relying on it.
    SingleSource,
    /// Inference, not confirmed by any source found.
    Unconfirmed,
}

/// How a deadline is counted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `n` continuous hours from the trigger.
    CalendarHours,
    /// The end of the `n`th calendar day after the trigger's date, in `tz`.
    CalendarDays,
    /// `n` SEC business days after the trigger's day, by `cutoff` in `tz`.
    UsSecBusinessDays,
    /// No deadline in law: `n` hours is an internal target.
    WithoutUndueDelay,
}

/// One condition of a threshold; exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// At least this many distinct subjects exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_min: Option<u64>,
    /// Field classes of this category exposed (`sensitive`, `unique_identifying`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_classes: Option<String>,
    /// The cause (`unlawful_external_access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// More than this many recipients notified by the clock this one follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residents_notified_over: Option<u64>,
    /// A person's assessment (`high_risk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessed: Option<String>,
}

/// One deadline of a regime.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRule {
    /// Unique within the regime.
    pub id: String,
    /// Who is told.
    pub recipient: String,
    /// `aware`, `possible` (a possible leak, shown once recorded), `material`,
    /// `fact` (one clock per fact confirmed) or `sent:CLOCK`.
    pub trigger: String,
    /// How it is counted.
    pub kind: Kind,
    /// Hours or days.
    pub n: u32,
    /// Time zone for day counts (IANA name).
    #[serde(default)]
    pub tz: Option<String>,
    /// `HH:MM`: the due time on the last day of a business-day count.
    #[serde(default)]
    pub cutoff: Option<String>,
    /// The holiday calendar of a business-day count.
    #[serde(default)]
    pub calendar: Option<String>,
    /// How sure the rule is.
    pub conf: Conf,
    /// A caveat for people.
    #[serde(default)]
    pub note: Option<String>,
    /// Any one condition makes the clock apply; none: it always does.
    #[serde(default)]
    pub threshold: Vec<Condition>,
    /// Source ids in regimes.md.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// One item a notice or report must contain.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRule {
    /// The item id (regimes.md's vocabulary).
    pub id: String,
    /// How sure it is required.
    pub conf: Conf,
    /// Only in some cases: `late`, `undetermined`, `unique_identifying`, `possible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A caveat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The rules in force from a date.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// The first awareness date these rules apply to.
    pub from: Date,
    /// What changed, for people.
    #[serde(default)]
    pub note: Option<String>,
    /// Its deadlines.
    #[serde(default)]
    pub clock: Vec<ClockRule>,
    /// Its required items.
    #[serde(default)]
    pub item: Vec<ItemRule>,
}

/// A ceiling for the fine estimate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fine {
    /// `percent_of_revenue`, `fixed`, or `higher_of_fixed_or_percent`.
    pub basis: String,
    /// Percent of the organisation's revenue.
    #[serde(default)]
    pub percent: Option<f64>,
    /// A fixed amount.
    #[serde(default)]
    pub amount: Option<f64>,
    /// The fixed amount's currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// How sure.
    pub conf: Conf,
    /// What it is and when it applies.
    #[serde(default)]
    pub note: Option<String>,
}

/// A regime file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regime {
    /// The contract's id (`kr-pipa-report`, ...).
    pub id: String,
    /// One line for people.
    pub title: String,
    /// The title in Korean, for the Korean regimes.
    #[serde(default)]
    pub title_ko: Option<String>,
    /// The articles.
    pub law: String,
    /// An organisation fact that must hold (`ict_service_provider`, `sec_registrant`).
    #[serde(default)]
    pub applies_if: Option<String>,
    /// Languages its drafts are written in.
    #[serde(default)]
    pub languages: Vec<String>,
    /// The zone in which the awareness date picks the version (UTC when absent).
    #[serde(default)]
    pub tz: Option<String>,
    /// Its versions, by the date from which they apply.
    pub version: Vec<Version>,
    /// Ceilings for the report's fine estimate.
    #[serde(default)]
    pub fine: Vec<Fine>,
}

impl Regime {
    /// The version that applies to an incident the organisation became
    /// aware of at `aware` (epoch ms), its date read in the regime's zone
    /// (UTC when it names none).
    pub fn version_at(&self, aware: Option<i64>) -> &Version {
        let tz = self.tz.as_deref().and_then(|t| jiff::tz::TimeZone::get(t).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
        let date =
            aware.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map(|t| t.to_zoned_datetime(tz).date());
        self.version_for(date)
    }

    /// The version that applies to an incident the organisation became
    /// aware of on `aware` (the latest one in force by then; the first when
    /// awareness is not recorded yet or predates them all).
    pub fn version_for(&self, aware: Option<Date>) -> &Version {
        let first = &self.version[0];
        match aware {
            None => self.version.last().unwrap_or(first),
            Some(d) => self.version.iter().rev().find(|v| v.from <= d).unwrap_or(first),
        }
    }
}

/// Every regime and calendar, by id.
#[derive(Clone, Debug)]
pub struct Regimes {
    /// Regimes by id.
    pub regimes: BTreeMap<String, Regime>,
    /// Holiday calendars by id.
    pub calendars: BTreeMap<String, Calendar>,
}

/// A rule file that could not be used: which file, where, why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct RuleError {
    /// The file.
    pub file: String,
    /// Line and reason.
    pub reason: String,
}

/// A TOML error as one line: the file, the line, the reason.
pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> RuleError {
    let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    let reason = e.message().trim().replace('\n', " ");
    RuleError {
        file: file.to_owned(),
        reason: match line {
            Some(l) => format!("line {l}: {reason}"),
            None => reason,
        },
    }
}

impl Regimes {
    /// The regimes built into the binary.
    pub fn built_in() -> Result<Self, RuleError> {
        let mut r = Self { regimes: BTreeMap::new(), calendars: BTreeMap::new() };
        for (file, text) in BUILT_IN {
            r.add(file, text)?;
        }
        r.check()?;
        Ok(r)
    }

    /// The built-in regimes with one more file's (for the fuzz target and tests).
    pub fn with_file(file: &str, text: &str) -> Result<Self, RuleError> {
        let mut r = Self::built_in()?;
        r.add(file, text)?;
        r.check()?;
        Ok(r)
    }

    /// The built-in regimes, with those in `dir` (`*.toml`) replacing or adding to them.
    pub fn load(dir: Option<&Path>) -> Result<Self, RuleError> {
        let mut r = Self::built_in()?;
        let Some(dir) = dir else { return Ok(r) };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| RuleError { file: dir.display().to_string(), reason: format!("cannot read: {e}") })?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| RuleError { file: name.clone(), reason: format!("cannot read: {e}") })?;
            r.add(&name, &text)?;
        }
        r.check()?;
        Ok(r)
    }

    fn add(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let bad = |reason: String| RuleError { file: file.to_owned(), reason };
        if table.contains_key("version") {
            let regime: Regime = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
            check_regime(&regime).map_err(bad)?;
            self.regimes.insert(regime.id.clone(), regime);
        } else {
            let cal: Calendar = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
            cal.check().map_err(bad)?;
            self.calendars.insert(cal.id.clone(), cal);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), RuleError> {
        for r in self.regimes.values() {
            for v in &r.version {
                for c in &v.clock {
                    if let Some(cal) = &c.calendar
                        && !self.calendars.contains_key(cal)
                    {
                        return Err(RuleError {
                            file: r.id.clone(),
                            reason: format!("clock {:?} names calendar {cal:?}, which no file defines", c.id),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_regime(r: &Regime) -> Result<(), String> {
    if r.version.is_empty() {
        return Err(format!("regime {:?} has no [[version]]", r.id));
    }
    if r.version.windows(2).any(|w| w[0].from >= w[1].from) {
        return Err(format!("regime {:?}: versions must be in increasing order of `from`", r.id));
    }
    if let Some(f) = &r.applies_if
        && !matches!(f.as_str(), "ict_service_provider" | "sec_registrant")
    {
        return Err(format!("applies_if {f:?}: ict_service_provider or sec_registrant"));
    }
    if let Some(tz) = &r.tz {
        jiff::tz::TimeZone::get(tz).map_err(|e| format!("regime {:?}: time zone {tz:?}: {e}", r.id))?;
    }
    for f in &r.fine {
        let ok = match f.basis.as_str() {
            "percent_of_revenue" => f.percent.is_some(),
            "fixed" => f.amount.is_some() && f.currency.is_some(),
            "higher_of_fixed_or_percent" => f.percent.is_some() && f.amount.is_some() && f.currency.is_some(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "fine {:?}: percent_of_revenue (percent), fixed (amount, currency) or higher_of_fixed_or_percent (all three)",
                f.basis
            ));
        }
    }
    for v in &r.version {
        for (i, c) in v.clock.iter().enumerate() {
            let at = format!("version from {}, clock {:?}", v.from, c.id);
            // A count this long is a mistake (or hostile): a business-day count walks it day by day.
            if c.n > MAX_N {
                return Err(format!("{at}: n = {} is over {MAX_N}", c.n));
            }
            if v.clock[..i].iter().any(|o| o.id == c.id) {
                return Err(format!("{at}: a second clock with this id"));
            }
            match c.trigger.as_str() {
                "aware" | "possible" | "material" | "fact" => {}
                t => match t.strip_prefix("sent:") {
                    Some(other) if v.clock.iter().any(|o| o.id == other && o.id != c.id) => {}
                    _ => {
                        return Err(format!(
                            "{at}: trigger {t:?} is not aware, possible, material, fact or sent:CLOCK of this version"
                        ));
                    }
                },
            }
            if let Some(tz) = &c.tz {
                jiff::tz::TimeZone::get(tz).map_err(|e| format!("{at}: time zone {tz:?}: {e}"))?;
            }
            match c.kind {
                Kind::UsSecBusinessDays if c.calendar.is_none() || c.tz.is_none() || c.cutoff.is_none() => {
                    return Err(format!("{at}: a business-day count needs calendar, tz and cutoff"));
                }
                Kind::CalendarDays if c.tz.is_none() => return Err(format!("{at}: a day count needs tz")),
                _ => {}
            }
            if let Some(cut) = &c.cutoff {
                parse_cutoff(cut).ok_or_else(|| format!("{at}: cutoff {cut:?} is not HH:MM"))?;
            }
            for t in &c.threshold {
                let set = [
                    t.subjects_min.is_some(),
                    t.field_classes.is_some(),
                    t.cause.is_some(),
                    t.residents_notified_over.is_some(),
                    t.assessed.is_some(),
                ];
                if set.iter().filter(|s| **s).count() != 1 {
                    return Err(format!("{at}: each threshold condition sets exactly one key"));
                }
                if let Some(f) = &t.field_classes
                    && !matches!(f.as_str(), "sensitive" | "unique_identifying")
                {
                    return Err(format!("{at}: field_classes {f:?}: sensitive or unique_identifying"));
                }
                if let Some(f) = &t.cause
                    && f != "unlawful_external_access"
                {
                    return Err(format!("{at}: cause {f:?}: unlawful_external_access"));
                }
                if let Some(f) = &t.assessed
                    && f != "high_risk"
                {
                    return Err(format!("{at}: assessed {f:?}: high_risk"));
                }
            }
        }
        for it in &v.item {
            if let Some(w) = &it.when
                && !matches!(w.as_str(), "late" | "undetermined" | "unique_identifying" | "possible")
            {
                return Err(format!(
                    "item {:?}: when {w:?}: late, undetermined, unique_identifying or possible",
                    it.id
                ));
            }
        }
    }
    Ok(())
}

/// The longest count a clock may have (hours or days).
pub const MAX_N: u32 = 100_000;

/// `HH:MM` as (hour, minute).
pub fn parse_cutoff(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_regimes_load_and_name_the_contracts_ids() {
        let r = Regimes::built_in().expect("built-in regimes load");
        let ids: Vec<_> = r.regimes.keys().cloned().collect();
        assert_eq!(
            ids,
            [
                "gdpr-art33",
                "gdpr-art34",
                "kr-network-act",
                "kr-pipa-notice",
                "kr-pipa-report",
                "sec-8k",
                "us-ca-1798.82"
            ]
        );
        // PIPA picks its rules by the awareness date: the 2026 amendment adds an item.
        let pipa = &r.regimes["kr-pipa-notice"];
        let has = |d: Date| pipa.version_for(Some(d)).item.iter().any(|i| i.id == "legal_rights_and_remedies");
        assert!(!has(jiff::civil::date(2026, 9, 10)));
        assert!(has(jiff::civil::date(2026, 9, 11)));
    }

    #[test]
    fn a_bad_rule_file_is_an_error_with_file_line_and_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "id = \"x\"\ntitle = \"t\"\nlaw = \"l\"\n[[version]]\nfrom = \"2026-01-01\"\n[[version.clock]]\nid = \"a\"\nrecipient = \"r\"\ntrigger = \"aware\"\nkind = \"calendar_weeks\"\nn = 1\nconf = \"confirmed\"\n";
        std::fs::write(dir.path().join("x.toml"), text).expect("write");
        let e = Regimes::load(Some(dir.path())).expect_err("an unknown kind is refused").to_string();
        assert!(e.contains("x.toml") && e.contains("line 10") && e.contains("calendar_weeks"), "{e}");
        let text = text.replace("calendar_weeks", "calendar_hours").replace("\"aware\"", "\"sent:nothing\"");
        std::fs::write(dir.path().join("x.toml"), text).expect("write");
        let e = Regimes::load(Some(dir.path())).expect_err("a dangling trigger is refused").to_string();
        assert!(e.contains("sent:nothing"), "{e}");
    }

    #[test]
    fn a_directory_replaces_a_built_in_regime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = include_str!("../../../regimes/gdpr-art33.toml").replace("n = 72", "n = 96");
        std::fs::write(dir.path().join("gdpr-art33.toml"), text).expect("write");
        let r = Regimes::load(Some(dir.path())).expect("loads");
        assert_eq!(r.regimes["gdpr-art33"].version[0].clock[0].n, 96);
        assert_eq!(r.regimes.len(), 7);
    }
}
