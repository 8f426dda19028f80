//! Sigma correlations, counted exactly in event time.
//!
//! Events reach a correlation in event-time order (the engine's reordering
//! buffer puts them there), so every window is a sliding window over event
//! time, `(t - timespan, t]`, whatever order the input had within the
//! lateness.
//!
//! Time is kept in buckets, as the built-in detectors keep it: the largest
//! of a millisecond, a second, a minute, an hour and a day that still cuts
//! the timespan into at least 1,024 buckets (a 10-minute window counts by
//! the millisecond, an hour by the second, a day by the minute, 150 days
//! by the hour). A window is the buckets after the one `t - timespan`
//! falls in, through `t`'s: its far edge is at most one bucket (under
//! 0.1 % of the timespan) short, and never longer.
//!
//! - `event_count`: matching events per bucket in the window.
//! - `value_count`: distinct values in the window, exactly. Each group
//!   keeps every distinct value once, as a 96-bit keyed digest (no
//!   strings, so no customer id in memory longer than the line) with the
//!   bucket it was last seen in, and a count of values per bucket, so the
//!   distinct count is a running sum: memory per distinct value and group
//!   (about 16 bytes and the map's slack), not per event. Values whose
//!   bucket left the window are swept out as the map grows. Two values
//!   share a digest with probability about 2^-96 per pair (a shared
//!   64-bit half with different 32-bit halves is kept apart), which is what
//!   "exact" means here.
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

use std::collections::VecDeque;
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
    /// Events per bucket, oldest first: (bucket, events).
    times: VecDeque<(i64, u32)>,
    events: u64,
    /// Latest event time seen in the group.
    now: Millis,
    /// value_count: each distinct value's digest and the bucket it was last seen in.
    last: Sightings,
    /// value_count: values whose last sighting is in each bucket, oldest first.
    per_bucket: VecDeque<(i64, u32)>,
    /// Their sum: the distinct values in the window.
    distinct: u64,
    /// Numeric kinds: (time, value).
    nums: VecDeque<(Millis, f64)>,
    sum: f64,
    /// Temporal kinds: per reference, the last time it matched (temporal)
    /// or the latest start of an in-order chain reaching it (ordered).
    marks: Vec<Option<Millis>>,
    /// The open window's report: its start, the figure last reported and when.
    open: Option<Open>,
}

/// Values inline before a group's sightings move to maps: most groups (a
/// token, an address) read a handful of values, and then one cache line
/// holds them all, with no allocation.
const FEW: usize = 4;

/// value_count's distinct values of one group, each a 96-bit digest
/// (`hi`, `lo`) with the bucket it was last seen in.
#[derive(Debug)]
enum Sightings {
    /// Up to [`FEW`], inline: (hi, lo, bucket).
    Few(smallvec::SmallVec<[(u64, u32, i64); FEW]>),
    /// More: `hi` → (`lo`, bucket), and the digests whose `hi` another
    /// value already holds.
    Many {
        last: hashbrown::HashMap<u64, (u32, i64), foldhash::fast::FixedState>,
        spill: hashbrown::HashMap<(u64, u32), i64, foldhash::fast::FixedState>,
    },
}

impl Default for Sightings {
    fn default() -> Self {
        Sightings::Few(smallvec::SmallVec::new())
    }
}

impl Sightings {
    /// Records value (`hi`, `lo`) seen in bucket `b`; the bucket it was last
    /// seen in before, if it was (the later of the two is kept). Sightings
    /// at or before `cutoff` no longer count and may be forgotten.
    fn see(&mut self, hi: u64, lo: u32, b: i64, cutoff: i64) -> Option<i64> {
        if let Sightings::Few(few) = self {
            if let Some(e) = few.iter_mut().find(|e| e.0 == hi && e.1 == lo) {
                let o = e.2;
                e.2 = o.max(b);
                return Some(o);
            }
            if few.len() == FEW {
                few.retain(|e| e.2 > cutoff);
            }
            if few.len() < FEW {
                few.push((hi, lo, b));
                return None;
            }
            // Full of values still in the window: to maps, each value as if seen anew.
            let held = std::mem::take(few);
            *self = Sightings::Many {
                last: hashbrown::HashMap::with_capacity_and_hasher(2 * FEW, Default::default()),
                spill: hashbrown::HashMap::default(),
            };
            for (h, l, x) in held {
                self.see(h, l, x, cutoff);
            }
        }
        let Sightings::Many { last, spill } = self else { return None };
        match last.get_mut(&hi) {
            Some(e) if e.0 == lo => {
                let o = e.1;
                e.1 = o.max(b);
                Some(o)
            }
            Some(_) => {
                let e = spill.entry((hi, lo)).or_insert(i64::MIN);
                let o = *e;
                *e = o.max(b);
                (o != i64::MIN).then_some(o)
            }
            None => {
                last.insert(hi, (lo, b));
                None
            }
        }
    }

    /// Values held (in the window or not yet forgotten).
    fn len(&self) -> usize {
        match self {
            Sightings::Few(f) => f.len(),
            Sightings::Many { last, spill } => last.len() + spill.len(),
        }
    }

    /// Forgets values last seen at or before `cutoff`.
    fn forget(&mut self, cutoff: i64) {
        match self {
            Sightings::Few(f) => f.retain(|e| e.2 > cutoff),
            Sightings::Many { last, spill } => {
                last.retain(|_, e| e.1 > cutoff);
                spill.retain(|_, e| *e > cutoff);
                last.shrink_to_fit();
                spill.shrink_to_fit();
            }
        }
    }

    /// Heap bytes held, roughly.
    fn heap_bytes(&self) -> usize {
        match self {
            Sightings::Few(_) => 0,
            Sightings::Many { last, spill } => (last.capacity() + spill.capacity()) * 25,
        }
    }
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
    /// Group key → its place in `slab` (the map's entries stay small, so
    /// growing it moves little; a swept group's place is reused).
    groups: hashbrown::HashMap<Box<[Box<str>]>, u32, foldhash::fast::FixedState>,
    slab: Vec<Group>,
    free: Vec<u32>,
    hasher: (foldhash::fast::FixedState, foldhash::fast::FixedState),
    /// When groups were last swept for windows that emptied.
    swept: Millis,
    /// Bucket width (ms).
    unit: Millis,
}

/// The bucket width for a timespan: the largest of a millisecond, second,
/// minute, hour and day that cuts it into at least 1,024 buckets.
pub fn unit_for(span: Millis) -> Millis {
    [86_400_000, 3_600_000, 60_000, 1000].into_iter().find(|u| span / u >= 1024).unwrap_or(1)
}

/// Adds `n` to bucket `b`'s count (buckets kept in order).
fn bucket_add(v: &mut VecDeque<(i64, u32)>, b: i64, n: i32) {
    let at = v.partition_point(|(x, _)| *x < b);
    match v.get_mut(at) {
        Some((x, c)) if *x == b => {
            *c = c.saturating_add_signed(n);
            if *c == 0 {
                v.remove(at);
            }
        }
        _ if n > 0 => v.insert(at, (b, n as u32)),
        _ => {}
    }
}

/// What one event brings to a correlation.
pub struct Input<'a> {
    /// Event time.
    pub time: Millis,
    /// Which reference matched (index into the correlation's references).
    pub reference: usize,
    /// The values of the value field (value_count: each a value; numeric kinds: parsed).
    pub values: &'a [&'a str],
}

/// A group key looked up without making one: hashes and compares as the
/// stored `Box<[Box<str>]>` does (a slice's length, then each string).
#[derive(Hash)]
struct KeyRef<'a, 'b>(&'a [&'b str]);

impl hashbrown::Equivalent<Box<[Box<str>]>> for KeyRef<'_, '_> {
    fn equivalent(&self, key: &Box<[Box<str>]>) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key.iter()).all(|(a, b)| *a == &**b)
    }
}

impl State {
    /// Empty state for `spec`.
    pub fn new(spec: Spec) -> Self {
        let unit = unit_for(spec.timespan);
        Self {
            spec,
            groups: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(1)),
            slab: Vec::new(),
            free: Vec::new(),
            hasher: (foldhash::fast::FixedState::with_seed(0x5157), foldhash::fast::FixedState::with_seed(0x6d61)),
            swept: Millis::MIN,
            unit,
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
            .map(|(k, &i)| (k, &self.slab[i as usize]))
            .map(|(k, g)| {
                64 + k.iter().map(|s| s.len() + 16).sum::<usize>()
                    + g.times.len() * 16
                    + g.last.heap_bytes()
                    + g.per_bucket.len() * 16
                    + g.nums.len() * 16
                    + g.marks.len() * 16
                    + 160
            })
            .sum()
    }

    fn digest(&self, v: &str) -> (u64, u32) {
        let mut a = self.hasher.0.build_hasher();
        a.write(v.as_bytes());
        let mut b = self.hasher.1.build_hasher();
        b.write(v.as_bytes());
        b.write_u8(0xff);
        (a.finish(), b.finish() as u32)
    }

    /// One event for group `key`; what to report, if anything.
    pub fn add(&mut self, key: &[&str], input: Input<'_>) -> Option<Firing> {
        let t = input.time;
        let digests: smallvec::SmallVec<[(u64, u32); 2]> = match self.spec.kind {
            Kind::ValueCount => input.values.iter().map(|v| self.digest(v)).collect(),
            _ => smallvec::SmallVec::new(),
        };
        let refs = self.spec.refs;
        let at = match self.groups.get(&KeyRef(key)) {
            Some(&i) => i,
            None => {
                let i = self.free.pop().unwrap_or_else(|| {
                    self.slab.push(Group::default());
                    u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 groups")
                });
                self.groups.insert(key.iter().map(|k| Box::from(*k)).collect(), i);
                i
            }
        };
        let g = &mut self.slab[at as usize];
        if matches!(self.spec.kind, Kind::Temporal | Kind::TemporalOrdered) && g.marks.len() != refs {
            g.marks = vec![None; refs];
        }
        let span = self.spec.timespan;
        let unit = self.unit;
        g.now = g.now.max(t);
        let from = g.now.saturating_sub(span);
        // The window is the buckets after `cutoff`.
        let cutoff = from.div_euclid(unit);
        let b = t.div_euclid(unit);
        // The event (a late one goes into its own bucket, if still in the window).
        if b > cutoff {
            let at = g.times.partition_point(|(x, _)| *x < b);
            match g.times.get_mut(at) {
                Some((x, n)) if *x == b => *n += 1,
                _ => g.times.insert(at, (b, 1)),
            }
            g.events += 1;
        }
        match &self.spec.kind {
            Kind::ValueCount if b > cutoff => {
                for (hi, lo) in digests {
                    match g.last.see(hi, lo, b, cutoff) {
                        // Still counted in a bucket at or after this one: nothing moves.
                        Some(o) if o >= b => {}
                        Some(o) => {
                            if o > cutoff {
                                bucket_add(&mut g.per_bucket, o, -1);
                            } else {
                                g.distinct += 1;
                            }
                            bucket_add(&mut g.per_bucket, b, 1);
                        }
                        None => {
                            g.distinct += 1;
                            bucket_add(&mut g.per_bucket, b, 1);
                        }
                    }
                }
            }
            Kind::ValueCount => {}
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
        // Forget what left the window.
        while g.times.front().is_some_and(|(x, _)| *x <= cutoff) {
            if let Some((_, n)) = g.times.pop_front() {
                g.events -= u64::from(n);
            }
        }
        while g.per_bucket.front().is_some_and(|(x, _)| *x <= cutoff) {
            if let Some((_, n)) = g.per_bucket.pop_front() {
                g.distinct -= u64::from(n);
            }
        }
        // Values last seen before the window are swept out once they are
        // as many as those in it.
        if g.last.len() as u64 > 2 * g.distinct + 1024 {
            g.last.forget(cutoff);
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
        let first = g.times.front().map_or(t, |(x, _)| (*x * unit).max(from + 1));
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
        let cutoff = from.div_euclid(self.unit);
        let (slab, free) = (&mut self.slab, &mut self.free);
        self.groups.retain(|_, &mut i| {
            let g = &mut slab[i as usize];
            let keep = g.times.back().is_some_and(|(b, _)| *b > cutoff) || g.marks.iter().flatten().any(|m| *m > from);
            if !keep {
                *g = Group::default();
                free.push(i);
            }
            keep
        });
    }
}

/// The aggregate of a group's window.
fn aggregate(spec: &Spec, g: &Group, from: Millis) -> f64 {
    match &spec.kind {
        Kind::EventCount => g.events as f64,
        Kind::ValueCount => g.distinct as f64,
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
        s.add(&["g"], Input { time: t, reference: r, values: v })
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

    #[test]
    fn buckets_are_natural_units_at_least_1024_to_a_window() {
        assert_eq!(unit_for(600_000), 1);
        assert_eq!(unit_for(3_600_000), 1000);
        assert_eq!(unit_for(86_400_000), 60_000);
        assert_eq!(unit_for(150 * 86_400_000), 3_600_000);
    }

    proptest! {
        /// value_count and event_count against a naive recount of the
        /// window at every event: values and events whose bucket is after
        /// the bucket of `t - span` (exact to the millisecond for spans
        /// under 1,024 s), over spans that count by the millisecond and by
        /// the second, with many values and few.
        #[test]
        fn value_count_is_exact(
            events in proptest::collection::vec((0i64..20_000_000, 0u16..2000), 1..400),
            span in prop_oneof![1i64..20_000, 1_024_000i64..8_000_000],
            scale in prop_oneof![Just(1i64), Just(1000)],
        ) {
            let mut evs: Vec<(i64, u16)> = events.into_iter().map(|(t, v)| (t / scale, v)).collect();
            evs.sort();
            let unit = unit_for(span);
            let mut s = State::new(spec(Kind::ValueCount, span, ConditionOperator::Gte, 0.0, 1));
            let mut c = State::new(spec(Kind::EventCount, span, ConditionOperator::Gte, 0.0, 1));
            for (i, &(t, v)) in evs.iter().enumerate() {
                let value = format!("v{v}");
                s.add(&["g"], Input { time: t, reference: 0, values: &[value.as_str()] });
                c.add(&["g"], Input { time: t, reference: 0, values: &[] });
                let cutoff = (t - span).div_euclid(unit);
                let inside = || evs[..=i].iter().filter(|(x, _)| x.div_euclid(unit) > cutoff);
                let naive: std::collections::BTreeSet<u16> = inside().map(|(_, v)| *v).collect();
                let g = &s.slab[s.groups[&["g".into()][..]] as usize];
                prop_assert_eq!(aggregate(&s.spec, g, t - span) as usize, naive.len());
                let g = &c.slab[c.groups[&["g".into()][..]] as usize];
                prop_assert_eq!(aggregate(&c.spec, g, t - span) as usize, inside().count());
            }
        }
    }
}
