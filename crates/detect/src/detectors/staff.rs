//! Staff out of pattern.
//!
//! Catches an employee reading subjects' personal data
//! - in a local hour they never worked in before and their role's peers
//!   rarely do (under `role_min_share` of the role's reads), once they read
//!   at least `min_subjects_off_hours` distinct subjects in that hour; or
//! - in volume: more distinct subjects in a local day than
//!   `max(min_subjects_day, multiplier × max(their busiest day, the role's busiest day))`.
//!
//! Off-hours reads are judged once the role's peer group has `min_history`
//! and at least `min_role_reads` reads on completed days
//! (a new employee has no history of their own, their peers do); volume once
//! the employee has it too. History counts completed local days only, so
//! tonight's reads never make tonight look usual. One finding per employee and local day, updated as it grows.
//!
//! Deliberately not: a single off-hours lookup (an on-call engineer), nor
//! services and customers (fan-out covers them).

use crate::Map as HashMap;
use model::{AddrId, Millis, PrincipalId, PrincipalKind};
use roaring::RoaringBitmap;
use serde_json::json;

use super::{named, top_addrs};
use crate::alert::{Alert, AnalyticKind, Episode, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};

const NAME: &str = "staff-pattern";
const DAY: Millis = 86_400_000;
const HOUR: Millis = 3_600_000;

#[derive(Debug, Default)]
struct Person {
    role: u16,
    first: Millis,
    /// Local hours with reads on earlier days.
    usual: u32,
    busiest_day: u64,
    day: i64,
    today: RoaringBitmap,
    today_reads: [u32; 24],
    hour: i64,
    this_hour: RoaringBitmap,
    addrs: HashMap<AddrId, u64>,
    episode: Option<Episode>,
    count: u64,
}

#[derive(Debug, Default)]
struct Role {
    first: Option<Millis>,
    reads: [u64; 24],
    busiest_day: u64,
}

/// The detector.
#[derive(Debug)]
pub struct StaffPattern {
    cfg: config::StaffPattern,
    offset: Millis,
    people: HashMap<PrincipalId, Person>,
    roles: HashMap<u16, Role>,
    day: Option<i64>,
}

impl StaffPattern {
    /// With this configuration and local-time offset.
    pub fn new(cfg: config::StaffPattern, offset: Millis) -> Self {
        Self { cfg, offset, people: HashMap::default(), roles: HashMap::default(), day: None }
    }

    fn on_call(&mut self, c: &Call, cx: &mut Cx<'_>) {
        if !c.success || c.subjects.is_empty() {
            return;
        }
        let info = cx.world.principal(c.principal, cx.symbols);
        let kind = info.kind.unwrap_or(c.principal_kind);
        if kind != PrincipalKind::Employee {
            return;
        }
        let role = info.role;
        let local = c.time + self.offset;
        let (day, hour) = (local.div_euclid(DAY), local.div_euclid(HOUR));
        let hod = (hour - day * 24) as usize;
        let p = self.people.entry(c.principal).or_insert_with(|| Person {
            role,
            first: c.time,
            day,
            hour,
            ..Person::default()
        });
        if p.day != day {
            fold(p, self.roles.entry(p.role).or_default(), day);
        }
        if p.hour != hour {
            p.this_hour.clear();
            p.hour = hour;
        }
        for s in c.subjects.iter().filter(|s| !s.fields.is_empty()) {
            p.today.insert(s.id.0);
            p.this_hour.insert(s.id.0);
        }
        p.today_reads[hod] += 1;
        // The peer group's history is what makes an hour unusual, so a new
        // employee is judged as soon as their role has enough of it.
        let role_first = *self.roles.entry(p.role).or_default().first.get_or_insert(c.time);
        if c.time - role_first < self.cfg.min_history.0 {
            return;
        }
        p.count += 1;
        *p.addrs.entry(c.src).or_default() += 1;
        let role_stats = self.roles.get(&p.role);
        let role_total: u64 = role_stats.map_or(0, |r| r.reads.iter().sum());
        if role_total < self.cfg.min_role_reads {
            // The peer group has no completed day yet: nothing is unusual.
            return;
        }
        let role_share = match role_stats {
            Some(r) if role_total > 0 => r.reads[hod] as f64 / role_total as f64,
            _ => 0.0,
        };
        let role_busiest = role_stats.map_or(0, |r| r.busiest_day);
        let off_hours = p.usual & (1 << hod) == 0
            && role_share < self.cfg.role_min_share
            && p.this_hour.len() >= self.cfg.min_subjects_off_hours;
        let own_history = c.time - p.first >= self.cfg.min_history.0;
        let volume_limit =
            self.cfg.min_subjects_day.max((self.cfg.multiplier * p.busiest_day.max(role_busiest) as f64).ceil() as u64);
        let volume = own_history && p.today.len() > volume_limit;
        if !off_hours && !volume && p.episode.is_none() {
            return;
        }
        let figure = p.today.len();
        if !p.episode.as_ref().is_none_or(|e| e.due(figure, c.time, self.cfg.update_every.0)) {
            return;
        }
        let who = cx.symbols.principal_name(c.principal).to_owned();
        let ep = p.episode.get_or_insert_with(|| Episode::new(uid(NAME, &[&who, &day.to_string()]), c.time));
        let activity = ep.mark(figure, c.time);
        let role_name = cx.world.role_name(p.role).to_owned();
        let usual: Vec<usize> = (0..24).filter(|h| p.usual & (1 << h) != 0).collect();
        let why = if off_hours || p.usual & (1 << hod) == 0 {
            format!("at {hod:02}:00 local, an hour they never worked and few {role_name}s do")
        } else {
            format!("{figure} subjects today, above their and their peers' busiest day")
        };
        let mut observables = vec![("actor.user.uid", who.clone())];
        observables.extend(named("src_endpoint.ip", top_addrs(&p.addrs, cx.symbols, 1)));
        cx.report(Alert {
            uid: ep.uid.clone(),
            activity,
            detector: NAME,
            analytic: AnalyticKind::Behavioral,
            title: format!("{role_name} {who} read {figure} subjects' personal data {why}"),
            desc: "An employee's reads deviate from their own history and their role's peer group, in working hours or volume. Insiders looking people up for themselves or others look like this.".into(),
            severity: 4,
            time: c.time,
            reported_at: 0,
            first_seen: ep.first,
            last_seen: c.time,
            count: p.count,
            observables,
            posture: false,
            rule: None,
            details: json!({
                "role": role_name, "local_hour": hod, "usual_hours": usual,
                "role_share_this_hour": role_share, "subjects_this_hour": p.this_hour.len(),
                "subjects_today": figure, "volume_limit": volume_limit,
            }),
        });
    }
}

/// Folds a person's finished day into their and their role's history.
fn fold(p: &mut Person, r: &mut Role, day: i64) {
    for h in 0..24 {
        if p.today_reads[h] > 0 {
            p.usual |= 1 << h;
            r.reads[h] += u64::from(p.today_reads[h]);
        }
    }
    p.busiest_day = p.busiest_day.max(p.today.len());
    r.busiest_day = r.busiest_day.max(p.today.len());
    p.today.clear();
    p.today_reads = [0; 24];
    p.day = day;
    p.episode = None;
    p.count = 0;
    p.addrs.clear();
}

impl Detector for StaffPattern {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        if let What::Call(c) = &ev.what {
            self.on_call(c, cx);
        }
    }

    fn tick(&mut self, now: Millis, _cx: &mut Cx<'_>) {
        // At local midnight everyone's day is folded, so tonight is judged
        // against yesterday even for peers who have not worked yet today.
        let day = (now + self.offset).div_euclid(DAY);
        if self.day.is_some_and(|d| d != day) {
            for p in self.people.values_mut() {
                if p.day < day {
                    fold(p, self.roles.entry(p.role).or_default(), day);
                }
            }
        }
        self.day = Some(day);
    }

    fn state_bytes(&self) -> usize {
        self.people.values().map(|p| 256 + p.today.serialized_size() + p.this_hour.serialized_size()).sum()
    }
}
