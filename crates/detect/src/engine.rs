//! The event-time engine: puts events in order, keeps the clock, and hands
//! each event and each minute of event time to the detectors.
//!
//! Events arrive in roughly the order they happened, with some arriving late
//! (a shipper's batch, a second pipeline). The engine holds each event in a
//! reordering buffer until the *watermark* (the latest event time seen,
//! minus the allowed lateness) passes it, then releases events strictly in
//! event-time order. Ties are broken by content, not arrival, so any input
//! that is shuffled within the lateness gives the same detector calls, in
//! the same order, and so the same findings. An event later than the
//! lateness is still processed (counted as late) rather than dropped.
//!
//! Detectors see time only through released events: a detector's timers
//! fire on [`Detector::tick`], once per minute of event time, before the
//! first event of that minute, so timers too are independent of arrival.
//! The engine does no I/O: findings go to a [`Sink`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use model::{Event, Millis, Symbols};

use crate::alert::{Alert, Sink};
use crate::config::Config;
use crate::ev::{Ev, What};
use crate::world::World;

const MINUTE: Millis = 60_000;
/// How far back in the in-order run an arriving event is slotted in.
const NEAR: usize = 32;

/// What a detector gets besides the event.
pub struct Cx<'a> {
    /// Resolves ids to strings.
    pub symbols: &'a Symbols,
    /// Directory lookups.
    pub world: &'a mut World,
    /// Where findings go.
    pub sink: &'a mut dyn Sink,
    /// The engine's event-time clock: the time of the event being
    /// processed (or of the minute being ticked). A finding's `reported_at`
    /// is this clock, which does not depend on arrival order; in wall-clock
    /// terms the engine learns it up to the reordering lateness later.
    pub seen: Millis,
    /// Names of the inputs, by [`Ev::input`].
    pub inputs: &'a [String],
}

impl Cx<'_> {
    /// Reports a finding.
    pub fn report(&mut self, mut alert: Alert) {
        alert.reported_at = self.seen.max(alert.time);
        self.sink.alert(alert);
    }
}

/// A built-in detector.
pub trait Detector {
    /// Its name in findings and configuration.
    fn name(&self) -> &'static str;
    /// One event, in event-time order.
    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>);
    /// The clock reached minute `now` (ms, a whole minute).
    fn tick(&mut self, _now: Millis, _cx: &mut Cx<'_>) {}
    /// The input ended; `now` is the last event time.
    fn finish(&mut self, _now: Millis, _cx: &mut Cx<'_>) {}
    /// Approximate bytes of state held.
    fn state_bytes(&self) -> usize {
        0
    }
}

/// The heap orders small keys; events wait in a slab so that sifting moves
/// 40 bytes instead of a whole event.
struct Held {
    key: (Millis, u8, u64, u64),
    slot: u32,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

/// Counters for the end-of-run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events taken in.
    pub events: u64,
    /// Events without a time (foreign JSON), passed by.
    pub untimed: u64,
    /// Events that arrived later than the allowed lateness (processed out of order).
    pub late: u64,
    /// Most events held in the reordering buffer at once.
    pub max_buffered: u64,
    /// First and last event time.
    pub span: Option<(Millis, Millis)>,
}

/// The engine.
pub struct Engine {
    lateness: Millis,
    heap: BinaryHeap<Reverse<Held>>,
    run: VecDeque<Held>,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
    max_time: Millis,
    clock: Millis,
    minute: Option<i64>,
    world: World,
    detectors: Vec<Box<dyn Detector>>,
    inputs: Vec<String>,
    stats: EngineStats,
}

impl Engine {
    /// Replaces what the engine knows of the platform (a newer directory
    /// export); events from now on are judged against it.
    pub fn set_world(&mut self, world: World) {
        self.world = world;
    }

    /// An engine running every enabled built-in detector.
    pub fn new(cfg: &Config, world: World) -> Result<Self, crate::config::ConfigError> {
        let detectors = crate::detectors::all(cfg)?;
        Ok(Self::with_detectors(cfg, world, detectors))
    }

    /// An engine running the given detectors.
    pub fn with_detectors(cfg: &Config, world: World, detectors: Vec<Box<dyn Detector>>) -> Self {
        Self {
            lateness: cfg.engine.lateness.0,
            heap: BinaryHeap::new(),
            run: VecDeque::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
            max_time: Millis::MIN,
            clock: Millis::MIN,
            minute: None,
            world,
            detectors,
            inputs: Vec::new(),
            stats: EngineStats::default(),
        }
    }

    /// Names the inputs (for findings about a stream that stops).
    pub fn set_inputs(&mut self, names: Vec<String>) {
        self.inputs = names;
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Counts events without a time that were passed by before reaching the engine.
    pub fn add_untimed(&mut self, n: u64) {
        self.stats.untimed += n;
    }

    /// The latest event time seen.
    pub fn max_time(&self) -> Option<Millis> {
        (self.max_time != Millis::MIN).then_some(self.max_time)
    }

    /// Approximate bytes of detector state.
    pub fn state_bytes(&self) -> Vec<(&'static str, usize)> {
        self.detectors.iter().map(|d| (d.name(), d.state_bytes())).collect()
    }

    /// Takes one event from the reader (from input number `input`) and
    /// releases whatever the watermark now allows.
    pub fn push(&mut self, event: &Event<'_>, input: u16, symbols: &Symbols, sink: &mut dyn Sink) {
        let Some(ev) = Ev::from_event(event, input, symbols) else {
            self.stats.untimed += 1;
            return;
        };
        let digest = digest(&ev, symbols);
        self.push_owned(ev, digest, symbols, sink);
    }

    /// Takes one event already copied (see [`Ev::from_event`]) with its
    /// [`digest`], computed where the full symbol tables are (a
    /// parsing thread); `symbols` may then be a replica (see
    /// [`model::Delta`]). Releases whatever the watermark now allows.
    pub fn push_owned(&mut self, ev: Ev, digest: u64, symbols: &Symbols, sink: &mut dyn Sink) {
        self.stats.events += 1;
        let t = ev.time;
        self.stats.span = Some(match self.stats.span {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
        if t < self.clock {
            // Later than the lateness: its place in the order has passed.
            self.stats.late += 1;
            self.dispatch(&ev, symbols, sink);
            return;
        }
        self.max_time = self.max_time.max(t);
        self.seq += 1;
        let key = (t, ev.rank(), digest, self.seq);
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(ev);
                i
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        // Most events arrive in order: they queue at the back of the run,
        // and only the others pay for the heap.
        // An event a little out of order is slotted in near the back of the
        // run (a short scan and move); one further back goes to the heap.
        let held = Held { key, slot };
        let len = self.run.len();
        let from = len.saturating_sub(NEAR);
        match (from..len).rev().find(|&i| self.run[i].key <= held.key) {
            Some(i) => self.run.insert(i + 1, held),
            None if from == 0 => self.run.push_front(held),
            None => self.heap.push(Reverse(held)),
        }
        let buffered = (self.heap.len() + self.run.len()) as u64;
        self.stats.max_buffered = self.stats.max_buffered.max(buffered);
        self.release(self.max_time.saturating_sub(self.lateness), symbols, sink);
    }

    /// The next held event in order, if it is not after `watermark`.
    fn pop_until(&mut self, watermark: Millis) -> Option<Held> {
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(h)) => r.key <= h.0.key,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if from_run {
            if self.run.front().is_some_and(|r| r.key.0 <= watermark) { self.run.pop_front() } else { None }
        } else if self.heap.peek().is_some_and(|h| h.0.key.0 <= watermark) {
            self.heap.pop().map(|r| r.0)
        } else {
            None
        }
    }

    /// Releases every held event up to `watermark` (used when an input
    /// that is followed goes quiet).
    pub fn release(&mut self, watermark: Millis, symbols: &Symbols, sink: &mut dyn Sink) {
        while let Some(h) = self.pop_until(watermark) {
            if let Some(ev) = self.slab[h.slot as usize].take() {
                self.free.push(h.slot);
                self.advance(ev.time, symbols, sink);
                self.dispatch(&ev, symbols, sink);
            }
        }
    }

    /// Releases everything still held and lets detectors settle what is
    /// pending (a token used and never issued by the end of the input).
    pub fn finish(&mut self, symbols: &Symbols, sink: &mut dyn Sink) {
        self.release(Millis::MAX, symbols, sink);
        let now = self.clock;
        let mut cx = Cx { symbols, world: &mut self.world, sink, seen: self.clock, inputs: &self.inputs };
        for d in &mut self.detectors {
            d.finish(now, &mut cx);
        }
    }

    fn advance(&mut self, t: Millis, symbols: &Symbols, sink: &mut dyn Sink) {
        if t <= self.clock {
            return;
        }
        self.clock = t;
        let m = t.div_euclid(MINUTE);
        let from = match self.minute {
            None => m,
            // A long gap ticks every minute of it, capped at a day's worth
            // (timers are coarser than that anyway).
            Some(prev) if m > prev => (prev + 1).max(m - 1440),
            Some(_) => return,
        };
        self.minute = Some(m);
        let mut cx = Cx { symbols, world: &mut self.world, sink, seen: self.clock, inputs: &self.inputs };
        for minute in from..=m {
            for d in &mut self.detectors {
                d.tick(minute * MINUTE, &mut cx);
            }
        }
    }

    fn dispatch(&mut self, ev: &Ev, symbols: &Symbols, sink: &mut dyn Sink) {
        let mut cx = Cx { symbols, world: &mut self.world, sink, seen: self.clock.max(ev.time), inputs: &self.inputs };
        for d in &mut self.detectors {
            d.event(ev, &mut cx);
        }
    }
}

/// A digest of what an event says, which orders events of the same
/// millisecond so that the order does not depend on arrival (ids do: they
/// are given in arrival order). Needs the full symbol tables, subjects
/// included.
pub fn digest(ev: &Ev, symbols: &Symbols) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(7).build_hasher();
    match &ev.what {
        What::Call(c) => {
            h.write(symbols.principal_name(c.principal).as_bytes());
            if let Some(t) = c.token {
                h.write(symbols.token_name(t).as_bytes());
            }
            h.write(symbols.operation_name(c.operation).as_bytes());
            std::hash::Hash::hash(&symbols.addrs.resolve(c.src), &mut h);
            for s in c.subjects.iter().take(2) {
                h.write(symbols.subject_name(s.id).as_bytes());
            }
            h.write_usize(c.subjects.len());
            h.write_u8(u8::from(c.success));
        }
        What::Issuance(i) => {
            h.write(symbols.principal_name(i.principal).as_bytes());
            h.write(symbols.token_name(i.token).as_bytes());
        }
        What::Offboarding(o) => h.write(symbols.principal_name(o.principal).as_bytes()),
        What::Other { class_uid } => h.write_i64(class_uid.unwrap_or(-1)),
    }
    h.write_u16(ev.input);
    h.finish()
}
