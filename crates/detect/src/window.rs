//! Exact distinct-subject counts per key over sliding windows from minutes
//! to months.
//!
//! Each key (a source address, a principal, a signing key...) holds the
//! subjects it reached in time buckets: one-minute buckets for the last hour,
//! hourly buckets for the last day, daily buckets up to the longest window.
//! As time passes, minute buckets are folded into their hour and hours into
//! their day, and what falls out of the longest window is dropped, so memory
//! is proportional to distinct (key, subject, bucket) triples, not to events.
//!
//! The count for a window of length `W` is the exact number of distinct
//! subjects in the buckets that cover `[now - W, now]`: the window's far edge
//! is aligned to its bucket size (a minute up to one hour, an hour up to one
//! day, a day beyond), so a window may reach back up to one bucket further
//! than `W`, or up to a minute short of it.
//!
//! Keys that reached few subjects (most of them: a household's address, a
//! customer's own token) keep a short list of `(subject, last minute seen)`
//! instead of bitmaps, exact at minute granularity, and are promoted to
//! bitmaps when the list grows past [`SMALL`].

use std::collections::VecDeque;

use model::Millis;
use roaring::RoaringBitmap;
use smallvec::SmallVec;

/// Distinct subjects a key may reach before it moves from a list to bitmaps.
pub const SMALL: usize = 24;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// What one key reached, bucketed by time.
#[derive(Clone, Debug)]
pub enum Reach {
    /// Few subjects: each with the last minute (since the epoch) it was reached in.
    Small(SmallVec<[(u32, u32); 2]>),
    /// Many: bitmaps per bucket.
    Big(Box<Buckets>),
}

/// Bitmaps per minute (last hour), hour (last day) and day (older).
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    minutes: VecDeque<(i64, RoaringBitmap)>,
    hours: VecDeque<(i64, RoaringBitmap)>,
    days: VecDeque<(i64, RoaringBitmap)>,
    /// Subjects added since the last exact count (a cheap bound for skipping counts).
    fresh: u64,
    /// Sum of the buckets' sizes, kept as they change (an upper bound on any count).
    total: u64,
    horizon: Millis,
}

impl Default for Reach {
    fn default() -> Self {
        Reach::Small(SmallVec::new())
    }
}

fn minute_of(t: Millis) -> i64 {
    t.div_euclid(MINUTE)
}

/// A minute as kept in a small list (event times are 1970..2200, see the reader).
fn small_minute(m: i64) -> u32 {
    m.clamp(0, i64::from(u32::MAX)) as u32
}

impl Reach {
    /// Records that `subject` was reached at `t`. Returns whether the subject
    /// is new to the current minute (false: nothing changed for any count).
    pub fn add(&mut self, subject: u32, t: Millis, horizon: Millis) -> bool {
        let m = minute_of(t);
        match self {
            Reach::Small(list) => {
                let sm = small_minute(m);
                if let Some(e) = list.iter_mut().find(|e| e.0 == subject) {
                    let newer = sm > e.1;
                    e.1 = e.1.max(sm);
                    return newer;
                }
                if list.len() < SMALL {
                    list.push((subject, sm));
                    return true;
                }
                let cutoff = small_minute(minute_of(t - horizon));
                list.retain(|e| e.1 >= cutoff);
                if list.len() < SMALL {
                    list.push((subject, sm));
                    return true;
                }
                let mut b = Box::new(Buckets { horizon, ..Buckets::default() });
                for &(s, at) in list.iter() {
                    b.insert(s, i64::from(at), m, horizon);
                }
                b.insert(subject, m, m, horizon);
                *self = Reach::Big(b);
                true
            }
            Reach::Big(b) => b.insert(subject, m, m, horizon),
        }
    }

    /// Exact distinct subjects reached in the window of `len` ending at `now`.
    pub fn count(&mut self, now: Millis, len: Millis) -> u64 {
        match self {
            Reach::Small(list) => list.iter().filter(|e| in_window(i64::from(e.1), now, len)).count() as u64,
            Reach::Big(b) => {
                b.fresh = 0;
                b.count(now, len)
            }
        }
    }

    /// Exact counts for several windows ending at `now`, `lens` in ascending
    /// order: one pass over the buckets, since the windows nest.
    pub fn counts(&mut self, now: Millis, lens: &[Millis]) -> Vec<u64> {
        match self {
            Reach::Small(_) => lens.iter().map(|&l| self.count(now, l)).collect(),
            Reach::Big(b) => {
                b.fresh = 0;
                b.counts(now, lens)
            }
        }
    }

    /// Upper bounds on the counts of [`Reach::counts`] (the sums of the
    /// buckets' sizes, no unions): cheap.
    pub fn bounds(&mut self, now: Millis, lens: &[Millis]) -> Vec<u64> {
        match self {
            Reach::Small(_) => self.counts(now, lens),
            Reach::Big(b) => {
                b.roll(minute_of(now), b.horizon);
                lens.iter()
                    .map(|&l| {
                        let (m0, h0, d0) = window_start(now, l);
                        b.minutes.iter().filter(|(m, _)| *m >= m0).map(|(_, x)| x.len()).sum::<u64>()
                            + b.hours.iter().filter(|(h, _)| *h >= h0).map(|(_, x)| x.len()).sum::<u64>()
                            + b.days.iter().filter(|(d, _)| *d >= d0).map(|(_, x)| x.len()).sum::<u64>()
                    })
                    .collect()
            }
        }
    }

    /// An upper bound on [`Reach::count`] for any window: cheap.
    pub fn bound(&self) -> u64 {
        match self {
            Reach::Small(list) => list.len() as u64,
            Reach::Big(b) => b.total(),
        }
    }

    /// Subjects added since the last exact count (for big keys).
    pub fn fresh(&self) -> u64 {
        match self {
            Reach::Small(_) => u64::MAX,
            Reach::Big(b) => b.fresh,
        }
    }

    /// Drops what is older than `horizon` before `now`; true when nothing is left.
    pub fn expire(&mut self, now: Millis, horizon: Millis) -> bool {
        match self {
            Reach::Small(list) => {
                let cutoff = small_minute(minute_of(now - horizon));
                list.retain(|e| e.1 >= cutoff);
                list.is_empty()
            }
            Reach::Big(b) => {
                b.roll(minute_of(now), horizon);
                b.minutes.is_empty() && b.hours.is_empty() && b.days.is_empty()
            }
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Reach::Small(list) => {
                if list.spilled() {
                    list.capacity() * 8
                } else {
                    0
                }
            }
            Reach::Big(b) => {
                let bm =
                    |q: &VecDeque<(i64, RoaringBitmap)>| q.iter().map(|(_, r)| r.serialized_size() + 48).sum::<usize>();
                std::mem::size_of::<Buckets>() + bm(&b.minutes) + bm(&b.hours) + bm(&b.days)
            }
        }
    }
}

/// Whether a sighting in minute `m` counts in the window of `len` ending at
/// `now`: the sighting's bucket (minute while under an hour old, hour while
/// its hour is under a day old, else day) must start inside the window.
pub fn in_window(m: i64, now: Millis, len: Millis) -> bool {
    let (m0, h0, d0) = window_start(now, len);
    let now_m = minute_of(now);
    let t = m * MINUTE;
    if now_m - m < 60 {
        m >= m0
    } else if now.div_euclid(HOUR) - t.div_euclid(HOUR) < 24 {
        t.div_euclid(HOUR) >= h0
    } else {
        t.div_euclid(DAY) >= d0
    }
}

/// First minute, hour and day index inside the window of `len` ending at `now`.
///
/// A window of up to an hour uses minute buckets only; up to a day, minute
/// buckets and hour buckets; longer ones all three tiers. (A tier's bucket
/// that is not used gets an index no bucket reaches.)
fn window_start(now: Millis, len: Millis) -> (i64, i64, i64) {
    let from = now - len;
    let h0 = if len > HOUR { from.div_euclid(HOUR) } else { i64::MAX };
    let d0 = if len > DAY { from.div_euclid(DAY) } else { i64::MAX };
    (minute_of(from) + 1, h0, d0)
}

fn bucket(q: &mut VecDeque<(i64, RoaringBitmap)>, idx: i64) -> &mut RoaringBitmap {
    // Buckets arrive almost always in order; an older one goes where it belongs.
    let pos = q.iter().rposition(|(i, _)| *i <= idx);
    match pos {
        Some(p) if q[p].0 == idx => &mut q[p].1,
        Some(p) => {
            q.insert(p + 1, (idx, RoaringBitmap::new()));
            &mut q[p + 1].1
        }
        None => {
            q.push_front((idx, RoaringBitmap::new()));
            &mut q[0].1
        }
    }
}

impl Buckets {
    fn insert(&mut self, subject: u32, at_minute: i64, now_minute: i64, horizon: Millis) -> bool {
        self.horizon = horizon;
        self.roll(now_minute, horizon);
        let age = now_minute - at_minute;
        let hour_age = (now_minute * MINUTE).div_euclid(HOUR) - (at_minute * MINUTE).div_euclid(HOUR);
        let fresh = if age < 60 {
            bucket(&mut self.minutes, at_minute).insert(subject)
        } else if hour_age < 24 {
            bucket(&mut self.hours, (at_minute * MINUTE).div_euclid(HOUR)).insert(subject)
        } else {
            bucket(&mut self.days, (at_minute * MINUTE).div_euclid(DAY)).insert(subject)
        };
        self.fresh += u64::from(fresh);
        self.total += u64::from(fresh);
        fresh
    }

    /// Folds minutes older than an hour into hours, hours older than a day into days, drops old days.
    fn roll(&mut self, now_minute: i64, horizon: Millis) {
        while self.minutes.front().is_some_and(|(m, _)| now_minute - m >= 60) {
            if let Some((m, bm)) = self.minutes.pop_front() {
                let into = bucket(&mut self.hours, (m * MINUTE).div_euclid(HOUR));
                let before = into.len() + bm.len();
                *into |= bm;
                self.total = self.total + into.len() - before;
            }
        }
        let now_hour = (now_minute * MINUTE).div_euclid(HOUR);
        while self.hours.front().is_some_and(|(h, _)| now_hour - h >= 24) {
            if let Some((h, bm)) = self.hours.pop_front() {
                let into = bucket(&mut self.days, (h * HOUR).div_euclid(DAY));
                let before = into.len() + bm.len();
                *into |= bm;
                self.total = self.total + into.len() - before;
            }
        }
        let oldest_day = (now_minute * MINUTE - horizon).div_euclid(DAY);
        while self.days.front().is_some_and(|(d, _)| *d < oldest_day) {
            if let Some((_, bm)) = self.days.pop_front() {
                self.total -= bm.len();
            }
        }
    }

    fn total(&self) -> u64 {
        debug_assert_eq!(
            self.total,
            self.minutes.iter().chain(&self.hours).chain(&self.days).map(|(_, b)| b.len()).sum::<u64>()
        );
        self.total
    }

    fn counts(&mut self, now: Millis, lens: &[Millis]) -> Vec<u64> {
        self.roll(minute_of(now), self.horizon);
        let mut acc = RoaringBitmap::new();
        let mut out = Vec::with_capacity(lens.len());
        // Windows nest, so each tier's buckets are taken newest first and a
        // longer window only adds older ones: one union pass in all.
        let tiers = [&self.minutes, &self.hours, &self.days];
        let mut next = [0usize; 3];
        for &len in lens {
            let (m0, h0, d0) = window_start(now, len);
            for (t, first) in [m0, h0, d0].into_iter().enumerate() {
                let q = tiers[t];
                while next[t] < q.len() {
                    let (i, b) = &q[q.len() - 1 - next[t]];
                    if *i < first {
                        break;
                    }
                    acc |= b;
                    next[t] += 1;
                }
            }
            out.push(acc.len());
        }
        out
    }

    fn count(&mut self, now: Millis, len: Millis) -> u64 {
        self.roll(minute_of(now), self.horizon);
        let (m0, h0, d0) = window_start(now, len);
        let parts: Vec<&RoaringBitmap> = self
            .minutes
            .iter()
            .filter(|(m, _)| *m >= m0)
            .chain(self.hours.iter().filter(|(h, _)| *h >= h0))
            .chain(self.days.iter().filter(|(d, _)| *d >= d0))
            .map(|(_, b)| b)
            .collect();
        match parts.as_slice() {
            [] => 0,
            [one] => one.len(),
            _ => {
                let mut acc = parts[0].clone();
                for p in &parts[1..] {
                    acc |= *p;
                }
                acc.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Reference: last time each subject was seen, counted at minute granularity.
    fn naive(events: &[(u32, Millis)], now: Millis, len: Millis) -> u64 {
        let mut last: HashMap<u32, Millis> = HashMap::default();
        for &(s, t) in events.iter().filter(|e| e.1 <= now) {
            let e = last.entry(s).or_insert(t);
            *e = (*e).max(t);
        }
        // A subject counts when the bucket holding its last sighting is inside the window.
        last.values().filter(|&&t| in_window(minute_of(t), now, len)).count() as u64
    }

    proptest::proptest! {
        #[test]
        fn counts_equal_a_naive_count(
            steps in proptest::collection::vec((0u32..60, 0i64..(3 * HOUR)), 1..400),
            len_idx in 0usize..5,
        ) {
            let lens = [10 * MINUTE, HOUR, DAY, 30 * DAY, 150 * DAY];
            let len = lens[len_idx];
            let horizon = 150 * DAY;
            let mut r = Reach::default();
            let mut t = 1_700_000_000_000i64;
            let mut seen = Vec::new();
            for (s, dt) in steps {
                t += dt;
                r.add(s, t, horizon);
                seen.push((s, t));
                let got = r.count(t, len);
                proptest::prop_assert_eq!(got, naive(&seen, t, len));
                let all = r.counts(t, &lens);
                let each: Vec<u64> = lens.iter().map(|&l| naive(&seen, t, l)).collect();
                proptest::prop_assert_eq!(all, each);
            }
        }
    }

    #[test]
    fn big_keys_fold_minutes_into_hours_and_days_and_forget_the_past() {
        let mut r = Reach::default();
        let t0 = 1_700_000_000_000i64;
        for s in 0..1000u32 {
            r.add(s, t0 + i64::from(s) * MINUTE, 30 * DAY);
        }
        assert!(matches!(r, Reach::Big(_)));
        let end = t0 + 999 * MINUTE;
        assert_eq!(r.count(end, 10 * MINUTE), 10);
        assert_eq!(r.count(end, HOUR), 60);
        // Two hours reach back to the start of the hour bucket two hours ago.
        let two = r.count(end, 2 * HOUR);
        assert!((120..=180).contains(&two), "{two}");
        assert_eq!(r.count(end, 30 * DAY), 1000);
        assert_eq!(r.count(end, DAY), 1000);
        assert!(r.expire(end + 40 * DAY, 30 * DAY));
    }
}
