//! The built-in detectors. Each module documents what it catches and what
//! it deliberately does not.

use crate::Map as HashMap;
use model::{AddrId, Millis, Symbols};

use crate::alert::{Activity, Episode};
use crate::config::{Config, ConfigError};
use crate::engine::Detector;
use crate::ev::Call;

pub mod ato;
pub mod departed;
pub mod fanout;
pub mod foreign;
pub mod forged;
pub mod keys;
pub mod silence;
pub mod staff;

/// Every enabled detector, configured.
pub fn all(cfg: &Config) -> Result<Vec<Box<dyn Detector>>, ConfigError> {
    let mut v: Vec<Box<dyn Detector>> = Vec::new();
    if cfg.forged_token.enabled {
        v.push(Box::new(forged::ForgedToken::new(cfg.forged_token.clone())));
    }
    if cfg.key_hygiene.enabled {
        v.push(Box::new(keys::KeyHygiene::new(cfg.key_hygiene.clone())));
    }
    if cfg.departed.enabled {
        v.push(Box::new(departed::Departed::new(cfg.departed.clone())));
    }
    if cfg.fan_out.enabled {
        v.push(Box::new(fanout::FanOut::distinct_subjects(&cfg.fan_out)));
    }
    if cfg.sensitive_fields.enabled {
        v.push(Box::new(fanout::FanOut::sensitive(&cfg.sensitive_fields)));
    }
    if cfg.foreign_access.enabled {
        v.push(Box::new(foreign::ForeignAccess::new(cfg.foreign_access.clone(), &cfg.engine.home_countries)));
    }
    if cfg.account_takeover.enabled {
        v.push(Box::new(ato::AccountTakeover::new(cfg.account_takeover.clone(), &cfg.engine.home_countries)));
    }
    if cfg.staff_pattern.enabled {
        v.push(Box::new(staff::StaffPattern::new(cfg.staff_pattern.clone(), cfg.engine.offset_ms()?)));
    }
    if cfg.silence.enabled {
        v.push(Box::new(silence::Silence::new(cfg.silence.clone())));
    }
    Ok(v)
}

/// Which days teach a baseline: a detector learns from a day only if it
/// watched the day whole (started within its first hour), so a run that
/// starts mid-afternoon does not take half a day's peak for a whole day's.
#[derive(Debug, Default)]
pub struct LearningDays {
    day: Option<i64>,
    whole: bool,
}

impl LearningDays {
    /// At minute `now` (UTC days): whether a new day began, and whether the
    /// day that ended was watched whole (so its maxima may be learned).
    pub fn tick(&mut self, now: Millis) -> (bool, bool) {
        const DAY: Millis = 86_400_000;
        let day = now.div_euclid(DAY);
        let rolled = self.day.is_some_and(|d| d != day);
        let learn = rolled && self.whole;
        if self.day.is_none() {
            self.whole = now.rem_euclid(DAY) < 3_600_000;
        } else if rolled {
            self.whole = true;
        }
        self.day = Some(day);
        (rolled, learn)
    }
}

/// Countries as bits of a `u32`, in order of first appearance (bit 31:
/// every country beyond the 31st), for per-subject or per-account sets.
#[derive(Debug, Default)]
pub struct CountryBits(Vec<model::Country>);

impl CountryBits {
    /// The bit of `c`.
    pub fn bit(&mut self, c: model::Country) -> u32 {
        let i = match self.0.iter().position(|x| *x == c) {
            Some(i) => i,
            None => {
                self.0.push(c);
                self.0.len() - 1
            }
        };
        1 << i.min(31)
    }
}

/// Most addresses or ASNs a finding tracks individually.
const TRACK: usize = 4096;
/// Most addresses a finding lists.
pub const LIST: usize = 32;

/// The calls one finding covers: how many, when, from where.
#[derive(Debug, Default)]
pub struct Tally {
    /// Calls covered.
    pub count: u64,
    /// First call.
    pub first: Millis,
    /// Last call.
    pub last: Millis,
    /// Calls per source address (the first [`TRACK`] addresses).
    pub addrs: HashMap<AddrId, u64>,
    /// Calls per ASN.
    pub asns: HashMap<u32, u64>,
    /// A few example values (tokens, principals).
    pub samples: Vec<String>,
    /// The reported finding, once reported.
    pub episode: Option<Episode>,
}

impl Tally {
    /// Counts one event at `time` that is not a call (a token issuance, say).
    pub fn add_at(&mut self, time: Millis) {
        if self.count == 0 {
            self.first = time;
        }
        self.count += 1;
        self.first = self.first.min(time);
        self.last = self.last.max(time);
    }

    /// Counts one call.
    pub fn add(&mut self, c: &Call) {
        self.add_at(c.time);
        if self.addrs.len() < TRACK || self.addrs.contains_key(&c.src) {
            *self.addrs.entry(c.src).or_default() += 1;
        }
        if let Some(a) = c.asn
            && (self.asns.len() < TRACK || self.asns.contains_key(&a))
        {
            *self.asns.entry(a).or_default() += 1;
        }
    }

    /// Whether the finding is due a report at `now` (new, or grown enough
    /// since the last one; see [`Episode::due`]). If so, marks it reported
    /// and returns its uid (`uid` names it the first time) and activity.
    pub fn due(&mut self, now: Millis, every: Millis, uid: impl FnOnce() -> String) -> Option<(String, Activity)> {
        if !self.episode.as_ref().is_none_or(|e| e.due(self.count, now, every)) {
            return None;
        }
        let first = self.first;
        let ep = self.episode.get_or_insert_with(|| Episode::new(uid(), first));
        let activity = ep.mark(self.count, now);
        Some((ep.uid.clone(), activity))
    }

    /// Keeps an example value (at most `max`).
    pub fn sample(&mut self, s: &str, max: usize) {
        if self.samples.len() < max && !self.samples.iter().any(|x| x == s) {
            self.samples.push(s.to_owned());
        }
    }

    /// The busiest addresses (most calls first, then by address), at most [`LIST`].
    pub fn top_addrs(&self, symbols: &Symbols) -> Vec<String> {
        top_addrs(&self.addrs, symbols, 1)
    }

    /// ASNs, busiest first.
    pub fn top_asns(&self) -> Vec<String> {
        top(&self.asns, LIST, 1).into_iter().map(|a| a.to_string()).collect()
    }
}

/// Keys with at least `min`, busiest first, ties by key, at most `n`.
pub fn top<K: Copy + Ord + std::hash::Hash>(m: &HashMap<K, u64>, n: usize, min: u64) -> Vec<K> {
    let mut v: Vec<(u64, K)> = m.iter().filter(|e| *e.1 >= min).map(|(k, c)| (*c, *k)).collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter().take(n).map(|e| e.1).collect()
}

/// Observables for a list of values of one field.
pub fn named(name: &'static str, values: impl IntoIterator<Item = String>) -> Vec<(&'static str, String)> {
    values.into_iter().map(|v| (name, v)).collect()
}

/// Human-readable duration for titles.
pub fn human(ms: Millis) -> String {
    crate::config::Dur(ms.max(0) / 1000 * 1000).to_string()
}

/// Addresses with at least `min`, busiest first, ties by address (not by
/// id, which depends on arrival order), at most [`LIST`].
pub fn top_addrs(m: &HashMap<AddrId, u64>, symbols: &Symbols, min: u64) -> Vec<String> {
    let mut v: Vec<(u64, std::net::IpAddr)> =
        m.iter().filter(|e| *e.1 >= min).map(|(a, c)| (*c, symbols.addrs.resolve(*a))).collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter().take(LIST).map(|e| e.1.to_string()).collect()
}
