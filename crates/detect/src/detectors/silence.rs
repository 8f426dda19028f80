//! Silence: a log stream that stops while the others go on.
//!
//! Streams are the event classes (`class_uid`), the answering services
//! (`api.service.name`) and the inputs. A stream with at least `min_events`
//! over at least `min_history` is silent when its current gap exceeds
//! `max(min_gap, multiplier × the longest gap it has had)`. Time only moves
//! when events arrive, so a finding means the other streams went on. One
//! finding per silence; when the stream resumes, a later silence is new.
//!
//! Deliberately not: the end of the input (everything stops at once), nor
//! streams too young or too sparse to have a usual rhythm.

use crate::Map as HashMap;
use model::{Millis, ServiceId};
use serde_json::json;

use super::human;
use crate::alert::{Activity, Alert, AnalyticKind, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Ev, What};

const NAME: &str = "silence";

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Stream {
    Class(i64),
    Service(ServiceId),
    Input(u16),
}

#[derive(Debug)]
struct State {
    first: Millis,
    last: Millis,
    events: u64,
    longest_gap: Millis,
    silent: bool,
}

/// The detector.
#[derive(Debug)]
pub struct Silence {
    cfg: config::Silence,
    streams: HashMap<Stream, State>,
}

impl Silence {
    /// With this configuration.
    pub fn new(cfg: config::Silence) -> Self {
        Self { cfg, streams: HashMap::default() }
    }

    fn seen(&mut self, s: Stream, t: Millis) {
        let st = self.streams.entry(s).or_insert(State { first: t, last: t, events: 0, longest_gap: 0, silent: false });
        if t > st.last {
            if !st.silent {
                st.longest_gap = st.longest_gap.max(t - st.last);
            }
            st.last = t;
        }
        st.silent = false;
        st.events += 1;
    }
}

impl Detector for Silence {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, _cx: &mut Cx<'_>) {
        if let Some(c) = ev.class_uid() {
            self.seen(Stream::Class(c), ev.time);
        }
        if let What::Call(c) = &ev.what
            && let Some(s) = c.service
        {
            self.seen(Stream::Service(s), ev.time);
        }
        self.seen(Stream::Input(ev.input), ev.time);
    }

    fn tick(&mut self, now: Millis, cx: &mut Cx<'_>) {
        let mut found = Vec::new();
        for (s, st) in &mut self.streams {
            if st.silent || st.events < self.cfg.min_events || st.last - st.first < self.cfg.min_history.0 {
                continue;
            }
            let limit = self.cfg.min_gap.0.max((st.longest_gap as f64 * self.cfg.multiplier) as Millis);
            if now - st.last > limit {
                st.silent = true;
                found.push((*s, st.last, st.longest_gap, limit, st.events));
            }
        }
        let mut named: Vec<_> = found
            .into_iter()
            .map(|(s, last, longest, limit, events)| {
                let (field, value, what) = match s {
                    Stream::Class(c) => ("class_uid", c.to_string(), format!("class {c} events")),
                    Stream::Service(id) => {
                        let n = cx.symbols.service_name(id).to_owned();
                        ("api.service.name", n.clone(), format!("API calls answered by {n}"))
                    }
                    Stream::Input(i) => {
                        let n = cx.inputs.get(usize::from(i)).cloned().unwrap_or_else(|| format!("input {i}"));
                        ("metadata.log_name", n.clone(), format!("events from {n}"))
                    }
                };
                (field, value, what, last, longest, limit, events)
            })
            .collect();
        // By name, not by id: ids follow arrival order.
        named.sort();
        for (field, value, what, last, longest, limit, events) in named {
            cx.report(Alert {
                uid: uid(NAME, &[field, &value, &last.to_string()]),
                activity: Activity::Create,
                detector: NAME,
                analytic: AnalyticKind::Statistical,
                title: format!("No {what} for {} while other streams go on", human(now - last)),
                desc: format!(
                    "The stream had {events} events and never paused longer than {}; it has now been silent for more than {}. Logs that stop are how deletion or a broken shipper shows: check the source before trusting any scope over this period.",
                    human(longest),
                    human(limit)
                ),
                severity: 3,
                time: now,
                reported_at: 0,
                first_seen: last,
                last_seen: now,
                count: 0,
                observables: vec![(field, value)],
                posture: false,
                rule: None,
                details: json!({"stream": field, "longest_gap_ms": longest, "limit_ms": limit}),
            });
        }
    }

    fn state_bytes(&self) -> usize {
        self.streams.len() * 64
    }
}
