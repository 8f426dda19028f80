//! Fan-out: one actor reading the personal data of more distinct subjects
//! than its kind ever does. The same machinery, restricted to
//! high-sensitivity field classes, is the sensitive-fields detector.
//!
//! For every configured dimension (source address, its /24 or /64, principal,
//! token, signing key, ASN, user agent) and window (10 minutes to 150 days),
//! each key's distinct subjects are counted exactly ([`crate::window`]). A key
//! alerts when a window's count exceeds
//! `max(floor, multiplier × baseline)` for its (dimension, class, window):
//! the class is the directory's network label for address dimensions
//! (`carrier-cgnat`, `hosting`, `internal`...) and the principal's kind for
//! principal and token, so a carrier's NAT address shared by thousands of
//! customers is compared with other NAT addresses, and a hosting address with
//! other hosting addresses. The baseline is the highest count any key of
//! the class reached on a completed day without alerting; floors guard the
//! first day and are configured per dimension, class and window.
//!
//! Only third parties' data counts: a customer reading their own account,
//! and the recipients that come with their own address book or order, is
//! not exposure, so a carrier's NAT /24 carrying thousands of customers'
//! self-service on a sale day reaches no one, while a crawler reading other
//! people's data still counts every subject. A crawl whose forged tokens
//! each name the victim looks like self-service here: forged-token,
//! key-hygiene and foreign-access catch it. Staff and services never read
//! "their own".
//!
//! One finding per key while it stays active, reported again as its count
//! doubles or `update_every` passes.
//!
//! Deliberately not: slow collection that stays under the baseline of a
//! class (a patient attacker on shared NAT is found by the forged-token and
//! key-hygiene detectors, or by scope, not here); tokens are counted over
//! windows of at most a day (they live less).

use crate::Map as HashMap;
use model::{FieldSet, Millis, PrincipalKind, SubjectKind};
use serde_json::json;
use smallvec::SmallVec;

use crate::alert::{Alert, AnalyticKind, Episode, uid};
use crate::config::{Dimension, Dur, Floor, floor_for};
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};
use crate::window::Reach;
use crate::world::Class;

const DAY: Millis = 86_400_000;
const HOUR: Millis = 3_600_000;
const MINUTE: Millis = 60_000;

#[derive(Debug, Default)]
struct KeyState {
    reach: Reach,
    /// The finding while the key is reported (rare: boxed to keep keys small).
    episode: Option<Box<Episode>>,
    /// Minute (since the epoch) of the key's latest read.
    last: u32,
    /// Minute a big key was last counted.
    evaluated: u32,
    /// The lowest threshold of the key's windows (saturated to `u32`), and
    /// the threshold epoch it was computed in.
    lowest: (u32, u32),
    /// Hour (since the epoch) the key was last put on the active list.
    active_hour: u32,
    /// Which windows exceeded their threshold in this episode.
    exceeded: u32,
    class: Class,
}

/// A key that has reached one subject so far: all it holds until a second
/// (most keys: a customer's own principal and token, a household's
/// address). It cannot be over any threshold, and does not teach baselines.
#[derive(Clone, Copy, Debug)]
struct Single {
    subject: u32,
    minute: u32,
    class: Class,
}

fn minute32(t: Millis) -> u32 {
    t.div_euclid(MINUTE).clamp(0, i64::from(u32::MAX)) as u32
}

type PerWindow = SmallVec<[u64; 8]>;

#[derive(Debug)]
struct Dim {
    dim: Dimension,
    windows: Vec<Dur>,
    horizon: Millis,
    keys: HashMap<u64, KeyState>,
    /// Keys that reached a single subject so far (not in `keys`).
    singles: HashMap<u64, Single>,
    /// Keys touched in the current hour (learned from at the hour's end).
    active: Vec<u64>,
}

/// The fan-out or sensitive-fields detector.
#[derive(Debug)]
pub struct FanOut {
    name: &'static str,
    /// Only subjects whose returned fields include one of these count (`None`: any personal data).
    classes: Vec<String>,
    mask: Option<FieldSet>,
    mask_known: usize,
    dims: Vec<Dim>,
    multiplier: f64,
    floors: Vec<Floor>,
    allow: Vec<String>,
    update_every: Millis,
    /// Learned: highest count per (dimension index, class, window index) on completed days.
    learned: HashMap<(usize, Class, usize), u64>,
    today: HashMap<(usize, Class, usize), u64>,
    thresholds: HashMap<(usize, Class), PerWindow>,
    /// Bumped whenever thresholds may change (a day of learning completed).
    epoch: u32,
    day: Option<i64>,
    day_whole: bool,
    next_sweep: Millis,
}

impl FanOut {
    /// The fan-out detector.
    pub fn distinct_subjects(cfg: &crate::config::FanOut) -> Self {
        Self::build(
            "fan-out",
            Vec::new(),
            &cfg.dimensions,
            &cfg.windows,
            cfg.multiplier,
            cfg.floor.clone(),
            cfg.allow_principals.clone(),
            cfg.update_every.0,
        )
    }

    /// The sensitive-fields detector.
    pub fn sensitive(cfg: &crate::config::SensitiveFields) -> Self {
        Self::build(
            "sensitive-fields",
            cfg.classes.clone(),
            &cfg.dimensions,
            &cfg.windows,
            cfg.multiplier,
            cfg.floor.clone(),
            Vec::new(),
            cfg.update_every.0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        name: &'static str,
        classes: Vec<String>,
        dims: &[String],
        windows: &[Dur],
        multiplier: f64,
        floors: Vec<Floor>,
        allow: Vec<String>,
        update_every: Millis,
    ) -> Self {
        let dims = dims
            .iter()
            .filter_map(|d| Dimension::parse(d))
            .map(|dim| {
                let mut windows: Vec<Dur> = windows.to_vec();
                if dim == Dimension::Token {
                    windows.retain(|w| w.0 <= DAY);
                }
                windows.sort();
                windows.dedup();
                let horizon = windows.last().map_or(DAY, |w| w.0 + DAY);
                Dim { dim, windows, horizon, keys: HashMap::default(), singles: HashMap::default(), active: Vec::new() }
            })
            .collect();
        Self {
            name,
            classes,
            mask: None,
            mask_known: usize::MAX,
            dims,
            multiplier,
            floors,
            allow,
            update_every,
            learned: HashMap::default(),
            today: HashMap::default(),
            thresholds: HashMap::default(),
            epoch: 1,
            day: None,
            day_whole: false,
            next_sweep: Millis::MIN,
        }
    }

    fn thresholds(&mut self, di: usize, class: Class, cx: &Cx<'_>) -> PerWindow {
        if let Some(t) = self.thresholds.get(&(di, class)) {
            return t.clone();
        }
        let d = &self.dims[di];
        let t: PerWindow = d
            .windows
            .iter()
            .enumerate()
            .map(|(wi, w)| {
                let floor = floor_for(&self.floors, d.dim.name(), cx.world.class_name(class), *w).unwrap_or(u64::MAX);
                let learned = self.learned.get(&(di, class, wi)).copied().unwrap_or(0);
                floor.max((learned as f64 * self.multiplier).ceil() as u64)
            })
            .collect();
        self.thresholds.insert((di, class), t.clone());
        t
    }

    fn lowest_threshold(&mut self, di: usize, class: Class, cx: &Cx<'_>) -> u64 {
        self.thresholds(di, class, cx).iter().copied().min().unwrap_or(u64::MAX)
    }

    fn class_of(dim: Dimension, c: &Call, cx: &mut Cx<'_>) -> Class {
        match dim {
            Dimension::SrcIp | Dimension::SrcPrefix => cx.world.addr_class(c.src, c.asn, cx.symbols),
            Dimension::Principal | Dimension::Token => {
                let kind = cx.world.kind_of(c.principal, c.principal_kind, cx.symbols);
                cx.world.class_named(kind_name(kind))
            }
            Dimension::Asn => c.asn.map_or(0, |a| cx.world.asn_class(a)),
            Dimension::Key => cx.world.class_named("key"),
            Dimension::UserAgent => cx.world.class_named("agent"),
        }
    }

    fn key_of(dim: Dimension, c: &Call, cx: &mut Cx<'_>) -> Option<u64> {
        Some(match dim {
            Dimension::SrcIp => u64::from(c.src.0),
            Dimension::SrcPrefix => u64::from(cx.world.prefix(c.src, cx.symbols)),
            Dimension::Principal => u64::from(c.principal.0),
            Dimension::Token => u64::from(c.token?.0),
            Dimension::Key => u64::from(c.key?.0),
            Dimension::Asn => u64::from(c.asn?),
            Dimension::UserAgent => u64::from(c.user_agent?.0),
        })
    }

    fn key_name(dim: Dimension, key: u64, cx: &Cx<'_>) -> String {
        let id = key as u32;
        match dim {
            Dimension::SrcIp => cx.symbols.addrs.resolve(model::AddrId(id)).to_string(),
            Dimension::SrcPrefix => cx.world.prefix_name(id),
            Dimension::Principal => cx.symbols.principal_name(model::PrincipalId(id)).to_owned(),
            Dimension::Token => cx.symbols.token_name(model::TokenId(id)).to_owned(),
            Dimension::Key => cx.symbols.key_name(model::KeyId(id)).to_owned(),
            Dimension::Asn => key.to_string(),
            Dimension::UserAgent => cx.symbols.agent_name(model::AgentId(id)).to_owned(),
        }
    }

    /// The subject that is the call's own principal, when the principal is a
    /// customer (not the directory's staff or service) and the response
    /// carried their own data.
    fn own_subject(&mut self, c: &Call, cx: &mut Cx<'_>) -> Option<u32> {
        let own = c.own?;
        let kind = cx.world.kind_of(c.principal, c.principal_kind, cx.symbols);
        (!matches!(kind, PrincipalKind::Employee | PrincipalKind::Service)).then_some(own.0)
    }

    fn on_call(&mut self, c: &Call, cx: &mut Cx<'_>) {
        if !c.success || c.subjects.is_empty() {
            return;
        }
        // Field classes are named as the input names them: rebuild the mask
        // when a class appears that was not known yet.
        if !self.classes.is_empty() && self.mask_known != cx.symbols.fields.len() {
            self.mask_known = cx.symbols.fields.len();
            let mut m = FieldSet::default();
            for name in &self.classes {
                if let Some(bit) = cx.symbols.fields.get(name) {
                    m.insert(bit);
                }
            }
            self.mask = Some(m);
        }
        let mask = self.mask;
        // A customer's own data is not exposure to a third party: the
        // account holder, and the recipients that come with their own
        // address book or order, do not count.
        let own = self.own_subject(c, cx);
        let counted = |s: &model::Subject| {
            let carried = match mask {
                Some(m) => s.fields.0 & m.0 != 0,
                None => !s.fields.is_empty(),
            };
            carried && own.is_none_or(|o| s.id.0 != o && s.kind != SubjectKind::Recipient)
        };
        if !c.subjects.iter().any(counted) {
            return;
        }
        let allowed = !self.allow.is_empty() && self.allow.iter().any(|a| a == cx.symbols.principal_name(c.principal));
        for di in 0..self.dims.len() {
            let dim = self.dims[di].dim;
            if allowed && matches!(dim, Dimension::Principal | Dimension::Token) {
                continue;
            }
            let Some(key) = Self::key_of(dim, c, cx) else { continue };
            let mut promoted = None;
            let mut fresh_class = None;
            if !self.dims[di].keys.contains_key(&key) {
                // A key stays a `Single` while it has reached one subject,
                // unless a threshold of 0 would make even that a finding.
                let mut ids = c.subjects.iter().filter(|s| counted(s)).map(|s| s.id.0);
                let first = ids.next().unwrap_or_default();
                let one = ids.next().is_none();
                let minute = minute32(c.time);
                match self.dims[di].singles.get_mut(&key) {
                    Some(s) if one && s.subject == first => {
                        s.minute = s.minute.max(minute);
                        continue;
                    }
                    Some(_) => promoted = self.dims[di].singles.remove(&key),
                    None => {
                        let class = Self::class_of(dim, c, cx);
                        if one && self.lowest_threshold(di, class, cx) > 0 {
                            self.dims[di].singles.insert(key, Single { subject: first, minute, class });
                            continue;
                        }
                        fresh_class = Some(class);
                    }
                }
            }
            let horizon = self.dims[di].horizon;
            let close_after = self.dims[di].windows.last().map_or(DAY, |w| w.0).min(DAY);
            let d = &mut self.dims[di];
            let st = d.keys.entry(key).or_default();
            if let Some(one) = promoted {
                st.class = one.class;
                st.reach.add(one.subject, i64::from(one.minute) * MINUTE, horizon);
            } else if let Some(class) = fresh_class {
                st.class = class;
            }
            let minute = minute32(c.time);
            if st.episode.is_some() && i64::from(minute.saturating_sub(st.last)) * MINUTE > close_after {
                // The activity had stopped: this is a new burst, a new finding.
                st.episode = None;
                st.exceeded = 0;
            }
            st.last = minute;
            let hour = (c.time.div_euclid(HOUR)).clamp(0, i64::from(u32::MAX)) as u32;
            if st.active_hour != hour {
                st.active_hour = hour;
                d.active.push(key);
            }
            let mut new = false;
            for s in c.subjects.iter().filter(|s| counted(s)) {
                new |= st.reach.add(s.id.0, c.time, horizon);
            }
            if !new {
                continue;
            }
            self.evaluate(di, key, c, cx);
        }
    }

    fn evaluate(&mut self, di: usize, key: u64, c: &Call, cx: &mut Cx<'_>) {
        let now = c.time;
        let epoch = self.epoch;
        let Some(st) = self.dims[di].keys.get(&key) else { return };
        // Fast path: most keys are far below every threshold.
        if st.episode.is_none() && st.lowest.0 == epoch && st.reach.bound().saturating_mul(2) < u64::from(st.lowest.1) {
            return;
        }
        let class = st.class;
        let thresholds = self.thresholds(di, class, cx);
        let lowest = thresholds.iter().copied().min().unwrap_or(u64::MAX);
        let nwin = thresholds.len();
        let dim = self.dims[di].dim;
        let lens: SmallVec<[Millis; 8]> = self.dims[di].windows.iter().map(|w| w.0).collect();
        let Some(st) = self.dims[di].keys.get_mut(&key) else { return };
        st.lowest = (epoch, u32::try_from(lowest).unwrap_or(u32::MAX));
        // A key with many subjects counts at most once a minute of event
        // time (its counts are sums over up to a few hundred buckets);
        // while reported, only when an update may be due.
        if matches!(st.reach, Reach::Big(_)) {
            if minute32(now) == st.evaluated {
                return;
            }
            st.evaluated = minute32(now);
            if let Some(e) = &st.episode
                && now - e.reported_at < self.update_every
                && st.reach.bound() < e.reported.saturating_mul(2)
            {
                return;
            }
        } else if st.episode.is_none() && st.reach.bound().saturating_mul(2) < lowest {
            return;
        }
        let counts = st.reach.counts(now, &lens);
        let mut over = Vec::new();
        for wi in 0..nwin {
            if counts[wi] > thresholds[wi] {
                over.push(wi);
            }
        }
        if st.episode.is_none() && over.is_empty() {
            for (wi, &n) in counts.iter().enumerate() {
                let e = self.today.entry((di, class, wi)).or_default();
                *e = (*e).max(n);
            }
            return;
        }
        for &wi in &over {
            st.exceeded |= 1 << wi;
        }
        let figure = counts.iter().copied().max().unwrap_or(0);
        // Name the window furthest over its threshold (or nearest, for an update).
        let Some(first_over) =
            (0..nwin).filter(|&w| over.contains(&w) || st.exceeded & (1 << w) != 0).max_by(|&a, &b| {
                let ra = counts[a] as f64 / thresholds[a].max(1) as f64;
                let rb = counts[b] as f64 / thresholds[b].max(1) as f64;
                ra.total_cmp(&rb).then(b.cmp(&a))
            })
        else {
            return;
        };
        let name = Self::key_name(dim, key, cx);
        let due = st.episode.as_ref().is_none_or(|e| e.due(figure, now, self.update_every));
        if dim == Dimension::Token && st.episode.is_none() && self.principal_alerting(c.principal) {
            // One actor, one finding: the principal's finding already covers its tokens.
            return;
        }
        let Some(st) = self.dims[di].keys.get_mut(&key) else { return };
        if !due {
            return;
        }
        let detector = self.name;
        let ep = st
            .episode
            .get_or_insert_with(|| Box::new(Episode::new(uid(detector, &[dim.name(), &name, &now.to_string()]), now)));
        let activity = ep.mark(figure, now);
        let class_name = cx.world.class_name(class).to_owned();
        let w = Dur(lens[first_over]);
        let n = counts[first_over];
        let what = if self.classes.is_empty() { "personal data".to_owned() } else { self.classes.join("/") };
        let mut observables = vec![(dim.field(), name.clone())];
        {
            let (src, principal, asn) = (c.src, c.principal, c.asn);
            // The address of the latest read (for a prefix: the address inside it).
            if !matches!(dim, Dimension::SrcIp | Dimension::Asn) {
                observables.push(("src_endpoint.ip", cx.symbols.addrs.resolve(src).to_string()));
            }
            if matches!(dim, Dimension::Token) {
                observables.push(("actor.user.uid", cx.symbols.principal_name(principal).to_owned()));
            }
            if let (Some(a), Dimension::SrcIp | Dimension::SrcPrefix) = (asn, dim) {
                observables.push(("src_endpoint.autonomous_system.number", a.to_string()));
            }
        }
        let severity = if cx.world.is_hosting(class) || n > thresholds[first_over].saturating_mul(10) { 4 } else { 3 };
        let windows_json: Vec<_> = lens
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"window": Dur(*w).to_string(), "subjects": counts[i], "threshold": thresholds[i]}))
            .collect();
        let alert = Alert {
            uid: ep.uid.clone(),
            activity,
            detector,
            analytic: AnalyticKind::Statistical,
            title: format!(
                "{} {name} ({class_name}) read {what} of {n} distinct subjects in {w}, above {} for its kind",
                dim.name().replace('_', " "),
                thresholds[first_over]
            ),
            desc: format!(
                "Distinct subjects whose {what} this {} read, counted exactly, exceed the threshold for {class_name} {}s: max(configured floor, multiplier × the highest count of that kind on any earlier day).",
                dim.name().replace('_', " "),
                dim.name().replace('_', " ")
            ),
            severity,
            time: now,
            reported_at: 0,
            first_seen: ep.first,
            last_seen: now,
            count: figure,
            observables,
            posture: false,
            rule: None,
            details: json!({"dimension": dim.name(), "class": class_name, "windows": windows_json}),
        };
        cx.report(alert);
    }

    fn principal_alerting(&self, principal: model::PrincipalId) -> bool {
        self.dims
            .iter()
            .filter(|d| d.dim == Dimension::Principal)
            .any(|d| d.keys.get(&u64::from(principal.0)).is_some_and(|k| k.episode.is_some()))
    }

    /// At a new UTC day, yesterday's maxima become baselines, but only when
    /// yesterday was watched whole: the first, partial day of a stream
    /// (started at 15:00, say) has seen only the quiet hours.
    fn roll_day(&mut self, day: i64, now: Millis) {
        match self.day {
            None => self.day_whole = now.rem_euclid(DAY) < HOUR,
            Some(d) if d != day => {
                if self.day_whole {
                    for (k, v) in self.today.drain() {
                        let e = self.learned.entry(k).or_default();
                        *e = (*e).max(v);
                    }
                }
                self.today.clear();
                self.day_whole = true;
                self.thresholds.clear();
                self.epoch += 1;
            }
            Some(_) => {}
        }
        self.day = Some(day);
    }
}

fn kind_name(k: PrincipalKind) -> &'static str {
    k.as_str()
}

impl Detector for FanOut {
    fn name(&self) -> &'static str {
        self.name
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        if let What::Call(c) = &ev.what {
            self.on_call(c, cx);
        }
    }

    fn tick(&mut self, now: Millis, _cx: &mut Cx<'_>) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + HOUR;
        // Learn: every key active in the last hour that is not alerting
        // contributes its counts to its kind's maximum for the day.
        for (di, d) in self.dims.iter_mut().enumerate() {
            let lens: SmallVec<[Millis; 8]> = d.windows.iter().map(|w| w.0).collect();
            for key in d.active.drain(..) {
                let Some(st) = d.keys.get_mut(&key) else { continue };
                if st.episode.is_some() {
                    continue;
                }
                let learned = st.reach.counts(now, &lens);
                for (wi, n) in learned.into_iter().enumerate() {
                    let e = self.today.entry((di, st.class, wi)).or_default();
                    *e = (*e).max(n);
                }
            }
        }
        let day = now.div_euclid(DAY);
        if self.day.is_some_and(|d| d != day) {
            // Once a day: forget keys whose subjects all fell out of the longest window.
            for d in &mut self.dims {
                let horizon = d.horizon;
                d.keys.retain(|_, st| !(st.reach.expire(now, horizon) && st.episode.is_none()));
                let cutoff = minute32(now - horizon);
                d.singles.retain(|_, s| s.minute >= cutoff);
                d.singles.shrink_to_fit();
            }
        }
        self.roll_day(day, now);
    }

    fn state_bytes(&self) -> usize {
        let slot = |key: usize| key + 8 + 1;
        self.dims
            .iter()
            .map(|d| {
                d.keys.capacity() * slot(std::mem::size_of::<KeyState>())
                    + d.keys.values().map(|k| k.reach.heap_bytes()).sum::<usize>()
                    + d.singles.capacity() * slot(std::mem::size_of::<Single>())
            })
            .sum::<usize>()
    }
}
