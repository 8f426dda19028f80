//! Sigma correlations, counted exactly in event time.
//!
//! Events reach a correlation in event-time order (the engine's reordering
//! buffer puts them there), so every window is a sliding window over event
//! time, `(t - timespan, t]`, whatever order the input had within the
//! lateness.
//!
//! - `event_count`: matching events in the window (times kept run-length
//!   per millisecond).
//! - `value_count`: distinct values in the window, exactly. Each group
//!   keeps every distinct value once, as a 128-bit keyed digest (no
//!   strings, so no customer id in memory longer than the line) with the
//!   last time it was seen, and an index by that time to forget values
//!   that left the window: memory per distinct value and group, not per
//!   event. Two values share a digest with probability about 2^-128 per
//!   pair, which is what "exact" means here.
//! - `value_sum`, `value_avg`, `value_percentile`, `value_median`: the
//!   numeric values in the window.
//! - `temporal`: every referenced rule (or the condition over them) matched
//!   within the window; `temporal_ordered`: in the listed order.
//!
//! A correlation reports once per group and window: when its condition
//! first holds (Create), then as updates while it keeps holding and the
//! figure grows (the built-in detectors' rule: it doubled, or grew by a
//! tenth after a while), never once per event. The window closes when the
//! condition no longer holds or a whole timespan has passed since it
//! opened; the next time it holds is a new finding.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

use model::Millis;
use rsigma_parser::{ConditionExpr, ConditionOperator};

/// What a correlation aggregates.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Events in the window.
    EventCount,
    /// Distinct values of a field in the window.
    ValueCount,
    /// Sum of a numeric field.
    ValueSum,
    /// Mean of a numeric field.
    ValueAvg,
    /// A percentile (0 to 100) of a numeric field.
    ValuePercentile(f64),
    /// Every referenced rule matched in the window.
    Temporal,
    /// The referenced rules matched in order in the window.
    TemporalOrdered,
}

impl Kind {
    /// Sigma's name.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::EventCount => "event_count",
            Kind::ValueCount => "value_count",
            Kind::ValueSum => "value_sum",
            Kind::ValueAvg => "value_avg",
            Kind::ValuePercentile(p) if *p == 50.0 => "value_median",
            Kind::ValuePercentile(_) => "value_percentile",
            Kind::Temporal => "temporal",
            Kind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// One comparison of the aggregate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Predicate {
    /// The operator.
    pub op: ConditionOperator,
    /// The bound.
    pub value: f64,
}

impl Predicate {
    fn holds(&self, x: f64) -> bool {
        match self.op {
            ConditionOperator::Lt => x < self.value,
            ConditionOperator::Lte => x <= self.value,
            ConditionOperator::Gt => x > self.value,
            ConditionOperator::Gte => x >= self.value,
            ConditionOperator::Eq => x == self.value,
            ConditionOperator::Neq => x != self.value,
        }
    }
}

/// A compiled correlation: what it counts, over what, and when it fires.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Kind and parameters.
    pub kind: Kind,
    /// Window length (ms).
    pub timespan: Millis,
    /// All must hold (empty for temporal kinds without a count).
    pub predicates: Vec<Predicate>,
    /// For temporal kinds with an extended condition: the condition over
    /// the referenced rules' names (by index into the references).
    pub expr: Option<ConditionExpr>,
    /// Names of the references, for `expr`.
    pub ref_names: Vec<Vec<String>>,
    /// How many references.
    pub refs: usize,
}

/// The aggregate over one group's window.
#[derive(Debug, Default)]
struct Group {
    /// Event times, run-length: (time, events at it).
    times: VecDeque<(Millis, u32)>,
    events: u64,
    /// value_count: digest → last seen; and by last seen.
    last: hashbrown::HashMap<u128, Millis, foldhash::fast::FixedState>,
    by_time: BTreeSet<(Millis, u128)>,
    /// Numeric kinds: (time, value).
    nums: VecDeque<(Millis, f64)>,
    sum: f64,
    /// Temporal kinds: per reference, the last time it matched (temporal)
    /// or the latest start of an in-order chain reaching it (ordered).
    marks: Vec<Option<Millis>>,
    /// The open window's report: its start, the figure last reported and when.
    open: Option<Open>,
}

/// A window that has fired.
#[derive(Debug, Clone)]
pub struct Open {
    /// When it opened (event time of the first firing).
    pub start: Millis,
    /// First event in the window when it opened.
    pub first: Millis,
    /// Events correlated since it opened.
    pub events: u64,
    /// The figure last reported.
    pub reported: f64,
    /// When last reported.
    pub reported_at: Millis,
}

/// What a correlation says after an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// A new window (Create) or more of an open one (Update).
    pub new: bool,
    /// When the window opened.
    pub start: Millis,
    /// First event time covered.
    pub first: Millis,
    /// The aggregate (count, distinct values, sum, ...).
    pub value: f64,
    /// Events correlated in this window.
    pub events: u64,
}

/// How long between updates of a slowly growing figure.
const UPDATE_EVERY: Millis = 10 * 60_000;

/// A correlation's state: one aggregate per group.
#[derive(Debug)]
pub struct State {
    spec: Spec,
    groups: hashbrown::HashMap<Box<[Box<str>]>, Group, foldhash::fast::FixedState>,
    hasher: (foldhash::fast::FixedState, foldhash::fast::FixedState),
    /// When groups were last swept for windows that emptied.
    swept: Millis,
}

/// What one event brings to a correlation.
pub struct Input<'a> {
    /// Event time.
    pub time: Millis,
    /// Which reference matched (index into the correlation's references).
    pub reference: usize,
    /// The values of the value field (value_count: each a value; numeric kinds: parsed).
    pub values: &'a [Box<str>],
}

impl State {
    /// Empty state for `spec`.
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            groups: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(1)),
            hasher: (foldhash::fast::FixedState::with_seed(0x5157), foldhash::fast::FixedState::with_seed(0x6d61)),
            swept: Millis::MIN,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Groups held.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Approximate bytes held.
    pub fn state_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|(k, g)| {
                64 + k.iter().map(|s| s.len() + 16).sum::<usize>()
                    + g.times.len() * 16
                    + g.last.capacity() * 25
                    + g.by_time.len() * 32
                    + g.nums.len() * 16
                    + g.marks.len() * 16
                    + 160
            })
            .sum()
    }

    fn digest(&self, v: &str) -> u128 {
        let mut a = self.hasher.0.build_hasher();
        a.write(v.as_bytes());
        let mut b = self.hasher.1.build_hasher();
        b.write(v.as_bytes());
        b.write_u8(0xff);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    /// One event for group `key`; what to report, if anything.
    pub fn add(&mut self, key: &[Box<str>], input: Input<'_>) -> Option<Firing> {
        let t = input.time;
        let digests: smallvec::SmallVec<[u128; 2]> = match self.spec.kind {
            Kind::ValueCount => input.values.iter().map(|v| self.digest(v)).collect(),
            _ => smallvec::SmallVec::new(),
        };
        let refs = self.spec.refs;
        let g = match self.groups.get_mut(key) {
            Some(g) => g,
            None => self.groups.entry(key.into()).or_default(),
        };
        if g.marks.len() != refs {
            g.marks = vec![None; refs];
        }
        let span = self.spec.timespan;
        let from = t.saturating_sub(span);
        // The event.
        match g.times.back_mut() {
            Some((bt, n)) if *bt == t => *n += 1,
            _ => g.times.push_back((t, 1)),
        }
        g.events += 1;
        match &self.spec.kind {
            Kind::ValueCount => {
                for d in digests {
                    if let Some(old) = g.last.insert(d, t) {
                        g.by_time.remove(&(old, d));
                    }
                    g.by_time.insert((t, d));
                }
            }
            Kind::ValueSum | Kind::ValueAvg | Kind::ValuePercentile(_) => {
                for v in input.values {
                    if let Ok(x) = v.trim().parse::<f64>()
                        && x.is_finite()
                    {
                        g.nums.push_back((t, x));
                        g.sum += x;
                    }
                }
            }
            Kind::Temporal => g.marks[input.reference] = Some(t),
            Kind::TemporalOrdered => {
                let k = input.reference;
                if k == 0 {
                    g.marks[0] = Some(t);
                } else if let Some(s) = g.marks[k - 1]
                    && s > from
                {
                    g.marks[k] = Some(g.marks[k].map_or(s, |m| m.max(s)));
                }
            }
            Kind::EventCount => {}
        }
        // Forget what left the window `(t - span, t]`.
        while g.times.front().is_some_and(|(x, _)| *x <= from) {
            if let Some((_, n)) = g.times.pop_front() {
                g.events -= u64::from(n);
            }
        }
        while let Some(&(x, d)) = g.by_time.first()
            && x <= from
        {
            g.by_time.pop_first();
            g.last.remove(&d);
        }
        let mut dropped = false;
        while g.nums.front().is_some_and(|(x, _)| *x <= from) {
            if let Some((_, x)) = g.nums.pop_front() {
                g.sum -= x;
                dropped = true;
            }
        }
        if dropped {
            // Recomputed, so rounding does not drift over months.
            g.sum = g.nums.iter().map(|(_, x)| x).sum();
        }
        let value = aggregate(&self.spec, g, from);
        let holds = match &self.spec.kind {
            Kind::Temporal | Kind::TemporalOrdered => value >= 1.0,
            _ => !self.spec.predicates.is_empty() && self.spec.predicates.iter().all(|p| p.holds(value)),
        };
        let first = g.times.front().map_or(t, |(x, _)| *x);
        let out = if !holds {
            g.open = None;
            None
        } else {
            match &mut g.open {
                Some(o) if t.saturating_sub(o.start) < span => {
                    o.events += 1;
                    let grown = match self.spec.kind {
                        Kind::ValueCount | Kind::EventCount | Kind::ValueSum => {
                            value >= (o.reported * 2.0).max(1.0)
                                || (value >= o.reported * 1.1 && t.saturating_sub(o.reported_at) >= UPDATE_EVERY)
                        }
                        _ => false,
                    };
                    if grown {
                        o.reported = value;
                        o.reported_at = t;
                        Some(Firing { new: false, start: o.start, first: o.first, value, events: o.events })
                    } else {
                        None
                    }
                }
                _ => {
                    let events = match self.spec.kind {
                        Kind::EventCount => value as u64,
                        _ => g.events,
                    };
                    g.open = Some(Open { start: t, first, events, reported: value, reported_at: t });
                    if matches!(self.spec.kind, Kind::Temporal | Kind::TemporalOrdered) {
                        // A temporal match is used once: the next needs every rule again.
                        g.marks.fill(None);
                    }
                    Some(Firing { new: true, start: t, first, value, events })
                }
            }
        };
        self.sweep(t);
        out
    }

    /// Drops groups whose window emptied (every timespan of event time).
    fn sweep(&mut self, now: Millis) {
        let span = self.spec.timespan.max(60_000);
        if now.saturating_sub(self.swept) < span {
            return;
        }
        self.swept = now;
        let from = now.saturating_sub(self.spec.timespan);
        self.groups.retain(|_, g| {
            g.times.back().is_some_and(|(t, _)| *t > from) || g.marks.iter().flatten().any(|m| *m > from)
        });
    }
}

/// The aggregate of a group's window.
fn aggregate(spec: &Spec, g: &Group, from: Millis) -> f64 {
    match &spec.kind {
        Kind::EventCount => g.events as f64,
        Kind::ValueCount => g.last.len() as f64,
        Kind::ValueSum => g.sum,
        Kind::ValueAvg => {
            if g.nums.is_empty() {
                0.0
            } else {
                g.sum / g.nums.len() as f64
            }
        }
        Kind::ValuePercentile(p) => percentile(g.nums.iter().map(|(_, x)| *x).collect(), *p),
        Kind::Temporal => {
            let seen: Vec<bool> = g.marks.iter().map(|m| m.is_some_and(|m| m > from)).collect();
            let ok = match &spec.expr {
                Some(e) => eval(e, &spec.ref_names, &seen),
                None => seen.iter().all(|s| *s),
            };
            f64::from(u8::from(ok))
        }
        Kind::TemporalOrdered => {
            let ok = g.marks.last().copied().flatten().is_some_and(|s| s > from);
            f64::from(u8::from(ok))
        }
    }
}

/// The `p`-th percentile (0 to 100) by linear interpolation between the
/// closest ranks (NumPy's default), 0 for no values.
pub fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (xs.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    xs[lo] + (xs[hi] - xs[lo]) * (rank - lo as f64)
}

/// A temporal condition over which references were seen.
fn eval(e: &ConditionExpr, names: &[Vec<String>], seen: &[bool]) -> bool {
    match e {
        ConditionExpr::And(v) => v.iter().all(|x| eval(x, names, seen)),
        ConditionExpr::Or(v) => v.iter().any(|x| eval(x, names, seen)),
        ConditionExpr::Not(x) => !eval(x, names, seen),
        ConditionExpr::Identifier(id) => names.iter().zip(seen).any(|(n, s)| *s && n.iter().any(|n| n == id)),
        ConditionExpr::Selector { .. } => seen.iter().all(|s| *s),
    }
}

/// Groups of value counts, for the naive recount in tests.
pub type Recount = BTreeMap<Vec<String>, usize>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(kind: Kind, span: Millis, op: ConditionOperator, value: f64, refs: usize) -> Spec {
        Spec {
            kind,
            timespan: span,
            predicates: vec![Predicate { op, value }],
            expr: None,
            ref_names: vec![vec![]; refs],
            refs,
        }
    }

    fn add(s: &mut State, t: Millis, r: usize, v: &[&str]) -> Option<Firing> {
        let values: Vec<Box<str>> = v.iter().map(|x| (*x).into()).collect();
        s.add(&["g".into()], Input { time: t, reference: r, values: &values })
    }

    #[test]
    fn event_count_fires_at_the_threshold_and_the_window_slides() {
        let mut s = State::new(spec(Kind::EventCount, 1000, ConditionOperator::Gte, 3.0, 1));
        assert!(add(&mut s, 0, 0, &[]).is_none());
        assert!(add(&mut s, 500, 0, &[]).is_none());
        let f = add(&mut s, 999, 0, &[]).expect("three in a second");
        assert!(f.new);
        assert_eq!((f.value, f.first), (3.0, 0));
        // At 1000 the event at 0 has left (t - span, t]: two remain and one more is three again, same window.
        assert!(add(&mut s, 1000, 0, &[]).is_none());
        // Exactly at the edge: 1999 keeps 1000 only (999 <= 1999 - 1000).
        assert!(add(&mut s, 1999, 0, &[]).is_none());
        assert!(add(&mut s, 3500, 0, &[]).is_none());
    }

    #[test]
    fn temporal_ordered_needs_the_order() {
        let mut s = State::new(Spec {
            predicates: vec![],
            ..spec(Kind::TemporalOrdered, 1000, ConditionOperator::Gte, 1.0, 2)
        });
        assert!(add(&mut s, 0, 1, &[]).is_none(), "second before first");
        assert!(add(&mut s, 10, 0, &[]).is_none());
        assert!(add(&mut s, 20, 1, &[]).is_some_and(|f| f.new));
        // Too far apart.
        assert!(add(&mut s, 3000, 0, &[]).is_none());
        assert!(add(&mut s, 4500, 1, &[]).is_none());
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(vec![1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile(vec![5.0], 90.0), 5.0);
        assert_eq!(percentile(vec![], 90.0), 0.0);
        assert_eq!(percentile(vec![10.0, 0.0, 20.0], 100.0), 20.0);
    }

    proptest! {
        /// value_count against a naive recount of the window at every event.
        #[test]
        fn value_count_is_exact(events in proptest::collection::vec((0i64..50_000, 0u8..40), 1..300), span in 1i64..20_000) {
            let mut evs = events;
            evs.sort();
            let mut s = State::new(spec(Kind::ValueCount, span, ConditionOperator::Gte, 0.0, 1));
            for (i, &(t, v)) in evs.iter().enumerate() {
                let value = format!("v{v}");
                let values: Vec<Box<str>> = vec![value.into()];
                s.add(&["g".into()], Input { time: t, reference: 0, values: &values });
                let g = s.groups.get(&["g".into()][..]).expect("the group");
                let naive: BTreeSet<u8> = evs[..=i].iter().filter(|(x, _)| *x > t - span).map(|(_, v)| *v).collect();
                prop_assert_eq!(aggregate(&s.spec, g, t - span) as usize, naive.len());
            }
        }
    }
}
