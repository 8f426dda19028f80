//! Business days: a holiday calendar as data (the US federal holidays of
//! 5 U.S.C. 6103 with their observance shifts, plus closures), and the
//! SEC's count of business days after a trigger day.

use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};
use serde::Deserialize;

/// A holiday on the same month and day every year.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixed {
    /// Its name.
    pub name: String,
    /// `MM-DD`.
    pub date: String,
    /// The first year it is a holiday.
    #[serde(default)]
    pub since: Option<i16>,
}

/// A holiday on the nth weekday of a month.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floating {
    /// Its name.
    pub name: String,
    /// 1 to 12.
    pub month: i8,
    /// `monday` ... `sunday`.
    pub weekday: String,
    /// 1 to 5, or -1 for the last.
    pub n: i8,
}

/// A day closed by order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    /// The day.
    pub date: Date,
    /// Why.
    #[serde(default)]
    pub name: String,
}

/// A holiday calendar file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// Its id (`us-federal`), named by a clock's `calendar`.
    pub id: String,
    /// One line for people.
    #[serde(default)]
    pub title: String,
    /// Holidays by date.
    #[serde(default)]
    pub fixed: Vec<Fixed>,
    /// Holidays by weekday.
    #[serde(default)]
    pub floating: Vec<Floating>,
    /// A fixed holiday on a Saturday: `previous_friday` or `none`.
    #[serde(default = "previous_friday")]
    pub observe_saturday: String,
    /// A fixed holiday on a Sunday: `next_monday` or `none`.
    #[serde(default = "next_monday")]
    pub observe_sunday: String,
    /// Other days closed.
    #[serde(default)]
    pub closures: Vec<Closure>,
}

fn previous_friday() -> String {
    "previous_friday".into()
}

fn next_monday() -> String {
    "next_monday".into()
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn month_day(s: &str) -> Option<(i8, i8)> {
    let (m, d) = s.split_once('-')?;
    Some((m.parse().ok()?, d.parse().ok()?))
}

impl Calendar {
    /// Checks what serde cannot: dates, weekdays, observance names.
    pub fn check(&self) -> Result<(), String> {
        for f in &self.fixed {
            let (m, d) =
                month_day(&f.date).ok_or_else(|| format!("holiday {:?}: date {:?} is not MM-DD", f.name, f.date))?;
            Date::new(2024, m, d).map_err(|e| format!("holiday {:?}: {e}", f.name))?;
        }
        for f in &self.floating {
            weekday(&f.weekday).ok_or_else(|| format!("holiday {:?}: {:?} is not a weekday", f.name, f.weekday))?;
            if !(1..=12).contains(&f.month) || !matches!(f.n, 1..=5 | -1) {
                return Err(format!("holiday {:?}: month 1 to 12 and n 1 to 5 or -1", f.name));
            }
        }
        if !matches!(self.observe_saturday.as_str(), "previous_friday" | "none") {
            return Err(format!("observe_saturday {:?}: previous_friday or none", self.observe_saturday));
        }
        if !matches!(self.observe_sunday.as_str(), "next_monday" | "none") {
            return Err(format!("observe_sunday {:?}: next_monday or none", self.observe_sunday));
        }
        Ok(())
    }

    /// The observed holidays falling in `year` (a holiday of the next year
    /// observed on this year's last day included).
    pub fn holidays(&self, year: i16) -> BTreeSet<Date> {
        let mut out = BTreeSet::new();
        for y in [year, year + 1] {
            for f in &self.fixed {
                if f.since.is_some_and(|s| y < s) {
                    continue;
                }
                let Some((m, d)) = month_day(&f.date) else { continue };
                let Ok(date) = Date::new(y, m, d) else { continue };
                let observed = match date.weekday() {
                    Weekday::Saturday if self.observe_saturday == "previous_friday" => date.yesterday().ok(),
                    Weekday::Sunday if self.observe_sunday == "next_monday" => date.tomorrow().ok(),
                    _ => Some(date),
                };
                out.extend(observed);
            }
            for f in &self.floating {
                let Some(wd) = weekday(&f.weekday) else { continue };
                let Ok(first) = Date::new(y, f.month, 1) else { continue };
                let date = first.nth_weekday_of_month(f.n, wd);
                out.extend(date.ok());
            }
        }
        out.retain(|d| d.year() == year);
        out
    }

    /// Whether `date` is a business day: not a weekend, holiday or closure
    /// (of this calendar or `extra`).
    pub fn is_business_day(&self, date: Date, extra: &[Date]) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays(date.year()).contains(&date)
            && !self.closures.iter().any(|c| c.date == date)
            && !extra.contains(&date)
    }

    /// The day a count of `n` business days after `trigger` ends on (Form
    /// 8-K General Instruction B.1): the trigger day itself does not count
    /// when it is a business day; when it is not, the next business day
    /// counts as day 1. `None` past the last representable date.
    pub fn business_days_after(&self, trigger: Date, n: u32, extra: &[Date]) -> Option<Date> {
        let mut day = trigger;
        let mut left = n;
        if !self.is_business_day(day, extra) {
            // Day 1 is the next business day.
            while !self.is_business_day(day, extra) {
                day = day.tomorrow().ok()?;
            }
            left = left.saturating_sub(1);
        }
        while left > 0 {
            day = day.tomorrow().ok()?;
            if self.is_business_day(day, extra) {
                left -= 1;
            }
        }
        Some(day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    impl Calendar {
        fn business_days_after_ok(&self, d: Date, n: u32, extra: &[Date]) -> Date {
            self.business_days_after(d, n, extra).expect("a date")
        }
    }

    fn us() -> Calendar {
        let c: Calendar = toml::from_str(include_str!("../../../regimes/us-federal.toml")).expect("parses");
        c.check().expect("valid");
        c
    }

    fn days(s: &str, year: i16) -> BTreeSet<Date> {
        s.split(", ")
            .map(|md| format!("{year} {md}"))
            .map(|t| jiff::fmt::strtime::parse("%Y %b %d", &t).and_then(|p| p.to_date()).expect("date"))
            .collect()
    }

    /// regimes.md section 5.3's table of observed federal holidays, computed from the rules.
    #[test]
    fn observed_federal_holidays_match_the_published_table() {
        let c = us();
        assert_eq!(
            c.holidays(2026),
            days("Jan 1, Jan 19, Feb 16, May 25, Jun 19, Jul 3, Sep 7, Oct 12, Nov 11, Nov 26, Dec 25", 2026)
        );
        assert_eq!(
            c.holidays(2027),
            days("Jan 1, Jan 18, Feb 15, May 31, Jun 18, Jul 5, Sep 6, Oct 11, Nov 11, Nov 25, Dec 24, Dec 31", 2027)
        );
        assert_eq!(
            c.holidays(2028),
            days("Jan 17, Feb 21, May 29, Jun 19, Jul 4, Sep 4, Oct 9, Nov 10, Nov 23, Dec 25", 2028)
        );
        // Juneteenth only since 2021.
        assert!(!c.holidays(2020).contains(&date(2020, 6, 19)));
    }

    #[test]
    fn sec_business_days_follow_instruction_b1() {
        let c = us();
        // Monday determination: due Friday.
        assert_eq!(c.business_days_after_ok(date(2026, 12, 7), 4, &[]), date(2026, 12, 11));
        // Saturday: Monday is day 1, due Thursday.
        assert_eq!(c.business_days_after_ok(date(2026, 12, 5), 4, &[]), date(2026, 12, 10));
        // Over Thanksgiving (Thu 2026-11-26).
        assert_eq!(c.business_days_after_ok(date(2026, 11, 25), 4, &[]), date(2026, 12, 2));
        // Over Christmas and the observed New Year's Day 2028 (Fri 2027-12-31).
        assert_eq!(c.business_days_after_ok(date(2027, 12, 22), 4, &[]), date(2027, 12, 29));
        assert_eq!(c.business_days_after_ok(date(2027, 12, 28), 4, &[]), date(2028, 1, 4));
        // A closure by order (2025-01-09) is skipped; one from the profile too.
        assert_eq!(c.business_days_after_ok(date(2025, 1, 6), 4, &[]), date(2025, 1, 13));
        assert_eq!(c.business_days_after_ok(date(2026, 12, 7), 4, &[date(2026, 12, 9)]), date(2026, 12, 14));
    }
}
