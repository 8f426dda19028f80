//! Exact distinct-subject counts per key over sliding windows from minutes
//! to months.
//!
//! Each key (a source address, a principal, a signing key...) remembers, for
//! every subject it reached, the last minute it reached it. A subject counts
//! in a window when that last sighting's time bucket lies inside the window.
//! Buckets are one minute wide for the last hour, an hour wide for the last
//! day, and a day wide up to the longest window; as time passes, minutes fold
//! into their hour and hours into their day, and what falls out of the
//! longest window is dropped.
//!
//! Because each subject sits in exactly one bucket (its latest), a key keeps
//! only a *count* per bucket, and the exact number of distinct subjects in a
//! window is a sum of bucket counts: no set unions, whatever the window. A
//! new sighting moves the subject from its old bucket to the current one.
//! Memory is proportional to distinct (key, subject) pairs within the longest
//! window, not to events.
//!
//! The count for a window of length `W` is the exact number of distinct
//! subjects whose last sighting's bucket starts inside `[now - W, now]`: the
//! window's far edge is aligned to its bucket size (a minute up to one hour,
//! an hour up to one day, a day beyond), so a window may reach back up to one
//! bucket further than `W`, or up to a minute short of it.
//!
//! Keys that reached few subjects (most of them: a household's address, a
//! customer's own token) keep a short list of `(subject, last minute seen)`
//! instead, and are promoted to a map with bucket counts when the list grows
//! past [`SMALL`].

use std::collections::VecDeque;

use foldhash::fast::FixedState;
use model::Millis;
use smallvec::SmallVec;

/// Distinct subjects a key may reach before it moves from a list to a map.
pub const SMALL: usize = 24;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// What one key reached.
#[derive(Clone, Debug)]
pub enum Reach {
    /// Few subjects: each with the last minute (since the epoch) it was reached in.
    Small(SmallVec<[(u32, u32); 2]>),
    /// Many: a map of last sightings and a count per time bucket.
    Big(Box<Buckets>),
}

/// Last sighting per subject, and how many subjects' last sighting falls in
/// each minute (last hour), hour (last day) and day (older) bucket.
#[derive(Clone, Debug)]
pub struct Buckets {
    last: hashbrown::HashMap<u32, u32, FixedState>,
    minutes: VecDeque<(i64, u32)>,
    hours: VecDeque<(i64, u32)>,
    days: VecDeque<(i64, u32)>,
    /// The minute the buckets are rolled to (the latest sighting's).
    at: i64,
    /// Sum of the bucket counts: distinct subjects within the horizon.
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

/// The first minute kept for a horizon ending at `now`: the start of the
/// day `horizon` back, as day buckets are whole days.
fn first_minute(now: Millis, horizon: Millis) -> i64 {
    (now - horizon).div_euclid(DAY) * (DAY / MINUTE)
}

/// A minute as kept in a small list or map (event times are 1970..2200, see the reader).
fn small_minute(m: i64) -> u32 {
    m.clamp(0, i64::from(u32::MAX)) as u32
}

impl Reach {
    /// Records that `subject` was reached at `t`. Returns whether the
    /// subject's last sighting moved to a later minute (false: no count changed).
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
                let cutoff = small_minute(first_minute(t, horizon));
                list.retain(|e| e.1 >= cutoff);
                if list.len() < SMALL {
                    list.push((subject, sm));
                    return true;
                }
                let mut b = Box::new(Buckets::new(horizon));
                let latest = list.iter().map(|e| i64::from(e.1)).max().unwrap_or(m).max(m);
                b.roll(latest);
                for &(s, at) in list.iter() {
                    b.insert(s, i64::from(at));
                }
                b.insert(subject, m);
                *self = Reach::Big(b);
                true
            }
            Reach::Big(b) => {
                b.horizon = horizon;
                b.roll(m);
                b.insert(subject, m)
            }
        }
    }

    /// Exact distinct subjects reached in the window of `len` ending at `now`.
    pub fn count(&mut self, now: Millis, len: Millis) -> u64 {
        match self {
            Reach::Small(list) => list.iter().filter(|e| in_window(i64::from(e.1), now, len)).count() as u64,
            Reach::Big(b) => {
                b.roll(minute_of(now));
                b.count(now, len)
            }
        }
    }

    /// Exact counts for several windows ending at `now`.
    pub fn counts(&mut self, now: Millis, lens: &[Millis]) -> SmallVec<[u64; 8]> {
        match self {
            Reach::Small(list) => lens
                .iter()
                .map(|&len| list.iter().filter(|e| in_window(i64::from(e.1), now, len)).count() as u64)
                .collect(),
            Reach::Big(b) => {
                b.roll(minute_of(now));
                lens.iter().map(|&len| b.count(now, len)).collect()
            }
        }
    }

    /// Distinct subjects within the horizon, an upper bound on any count: O(1).
    pub fn bound(&self) -> u64 {
        match self {
            Reach::Small(list) => list.len() as u64,
            Reach::Big(b) => b.total,
        }
    }

    /// Drops what is older than `horizon` before `now`; true when nothing is left.
    pub fn expire(&mut self, now: Millis, horizon: Millis) -> bool {
        match self {
            Reach::Small(list) => {
                let cutoff = small_minute(first_minute(now, horizon));
                list.retain(|e| e.1 >= cutoff);
                list.is_empty()
            }
            Reach::Big(b) => {
                b.horizon = horizon;
                b.roll(minute_of(now));
                let cutoff = small_minute(first_minute(b.at * MINUTE, b.horizon));
                b.last.retain(|_, m| *m >= cutoff);
                b.last.shrink_to_fit();
                b.total == 0
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
                std::mem::size_of::<Buckets>()
                    + b.last.capacity() * 9
                    + (b.minutes.capacity() + b.hours.capacity() + b.days.capacity()) * 16
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

/// The count of bucket `idx` in a tier, created (at its place in order) when absent.
fn cell(q: &mut VecDeque<(i64, u32)>, idx: i64) -> &mut u32 {
    // Buckets arrive almost always in order; an older one goes where it belongs.
    let pos = q.iter().rposition(|(i, _)| *i <= idx);
    match pos {
        Some(p) if q[p].0 == idx => &mut q[p].1,
        Some(p) => {
            q.insert(p + 1, (idx, 0));
            &mut q[p + 1].1
        }
        None => {
            q.push_front((idx, 0));
            &mut q[0].1
        }
    }
}

fn find(q: &mut VecDeque<(i64, u32)>, idx: i64) -> Option<&mut u32> {
    q.iter_mut().rev().find(|(i, _)| *i == idx).map(|(_, c)| c)
}

/// Which tier holds a minute, given the minute the buckets are rolled to.
enum Tier {
    Minute(i64),
    Hour(i64),
    Day(i64),
    Gone,
}

impl Buckets {
    fn new(horizon: Millis) -> Self {
        Self {
            last: hashbrown::HashMap::with_capacity_and_hasher(2 * SMALL, FixedState::with_seed(11)),
            minutes: VecDeque::new(),
            hours: VecDeque::new(),
            days: VecDeque::new(),
            at: i64::MIN,
            total: 0,
            horizon,
        }
    }

    /// The bucket a sighting in minute `m` belongs to now: the same rules
    /// as [`Buckets::roll`] applies to whole buckets.
    fn tier(&self, m: i64) -> Tier {
        if self.at - m < 60 {
            return Tier::Minute(m);
        }
        let h = (m * MINUTE).div_euclid(HOUR);
        if (self.at * MINUTE).div_euclid(HOUR) - h < 24 {
            return Tier::Hour(h);
        }
        let d = (m * MINUTE).div_euclid(DAY);
        if d >= (self.at * MINUTE - self.horizon).div_euclid(DAY) { Tier::Day(d) } else { Tier::Gone }
    }

    /// Moves `subject`'s last sighting to minute `m` if that is later.
    /// The buckets must be rolled to at least `m`.
    fn insert(&mut self, subject: u32, m: i64) -> bool {
        let new_tier = self.tier(m);
        if matches!(new_tier, Tier::Gone) {
            return false;
        }
        let sm = small_minute(m);
        let old = match self.last.entry(subject) {
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                if *e.get() >= sm {
                    return false;
                }
                Some(std::mem::replace(e.get_mut(), sm))
            }
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(sm);
                None
            }
        };
        if let Some(old) = old {
            // The old bucket may have fallen out of the horizon already.
            let c = match self.tier(i64::from(old)) {
                Tier::Minute(i) => find(&mut self.minutes, i),
                Tier::Hour(i) => find(&mut self.hours, i),
                Tier::Day(i) => find(&mut self.days, i),
                Tier::Gone => None,
            };
            if let Some(c) = c {
                *c -= 1;
                self.total -= 1;
            }
        }
        let c = match new_tier {
            Tier::Minute(i) => cell(&mut self.minutes, i),
            Tier::Hour(i) => cell(&mut self.hours, i),
            Tier::Day(i) => cell(&mut self.days, i),
            Tier::Gone => return false,
        };
        *c += 1;
        self.total += 1;
        true
    }

    /// Moves the clock to minute `now` (never back): folds minutes older
    /// than an hour into hours, hours older than a day into days, and drops
    /// days past the horizon.
    fn roll(&mut self, now: i64) {
        if now <= self.at {
            return;
        }
        self.at = now;
        while self.minutes.front().is_some_and(|(m, _)| now - m >= 60) {
            if let Some((m, c)) = self.minutes.pop_front()
                && c > 0
            {
                *cell(&mut self.hours, (m * MINUTE).div_euclid(HOUR)) += c;
            }
        }
        let now_hour = (now * MINUTE).div_euclid(HOUR);
        while self.hours.front().is_some_and(|(h, _)| now_hour - h >= 24) {
            if let Some((h, c)) = self.hours.pop_front()
                && c > 0
            {
                *cell(&mut self.days, (h * HOUR).div_euclid(DAY)) += c;
            }
        }
        let oldest_day = (now * MINUTE - self.horizon).div_euclid(DAY);
        while self.days.front().is_some_and(|(d, _)| *d < oldest_day) {
            if let Some((_, c)) = self.days.pop_front() {
                self.total -= u64::from(c);
            }
        }
    }

    fn count(&self, now: Millis, len: Millis) -> u64 {
        let (m0, h0, d0) = window_start(now, len);
        let sum = |q: &VecDeque<(i64, u32)>, first: i64| {
            q.iter().rev().take_while(|(i, _)| *i >= first).map(|(_, c)| u64::from(*c)).sum::<u64>()
        };
        sum(&self.minutes, m0) + sum(&self.hours, h0) + sum(&self.days, d0)
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
                proptest::prop_assert_eq!(all.to_vec(), each);
            }
        }
    }

    proptest::proptest! {
        /// Sightings that arrive late (up to ten minutes behind the latest),
        /// counted at the latest time, with a horizon short enough to expire.
        #[test]
        fn late_sightings_and_expiry_keep_counts_exact(
            steps in proptest::collection::vec((0u32..80, -10i64..(10 * 60), 0u8..4), 1..600),
        ) {
            let lens = [10 * MINUTE, HOUR, DAY, 2 * DAY];
            let horizon = 2 * DAY;
            let mut r = Reach::default();
            let mut t = 1_700_000_000_000i64;
            let mut max = t;
            let mut seen = Vec::new();
            for (s, dt, what) in steps {
                // Mostly forward in minutes; `dt` < 0 is a late arrival.
                t = if dt < 0 { max + dt * MINUTE } else { max + dt * MINUTE / 4 };
                max = max.max(t);
                r.add(s, t, horizon);
                seen.push((s, t));
                if what == 0 && r.expire(max, horizon) {
                    proptest::prop_assert_eq!(naive(&seen, max, horizon), 0);
                }
                let all = r.counts(max, &lens);
                let each: Vec<u64> = lens.iter().map(|&l| naive(&seen, max, l)).collect();
                proptest::prop_assert_eq!(all.to_vec(), each);
                proptest::prop_assert!(r.bound() >= naive(&seen, max, horizon));
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
