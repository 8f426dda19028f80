//! Foreign and hosting access, clustered into campaigns.
//!
//! Catches customers' personal data read from hosting networks (cloud and
//! VPS providers: where crawlers run, never where customers shop), and from
//! countries outside the platform's home countries that were never seen
//! before for the subject read. Reads are clustered, so one campaign across
//! many addresses and providers is one finding that lists its addresses:
//! all hosting reads form one cluster, foreign reads one cluster per country.
//! A cluster alerts when the subjects it read from *busy* addresses (each of
//! which read at least `min_address_subjects` new subjects in this hour and
//! the last) exceed `max(min_subjects, multiplier × its highest such count
//! on whole earlier days)`; the finding reports the cluster's exact distinct
//! subjects in `window` and lists the busy addresses and their ASNs.
//!
//! Deliberately not: a single customer on a VPN or abroad (every busy
//! platform has thousands); the baseline absorbs them.

use crate::Map as HashMap;
use model::{AddrId, Country, Millis};
use serde_json::json;

use super::{CountryBits, LearningDays, named, top, top_addrs};
use crate::alert::{Alert, AnalyticKind, Episode, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};
use crate::window::Reach;

const NAME: &str = "foreign-access";
const HOUR: Millis = 3_600_000;

#[derive(Debug, Default)]
struct Cluster {
    reach: Reach,
    /// Subjects read per address in the current and previous hour.
    addrs: HashMap<AddrId, (i64, u64, u64)>,
    asns: HashMap<u32, u64>,
    today_max: u64,
    learned: u64,
    episode: Option<Episode>,
    last: Millis,
    evaluated: Millis,
}

/// The detector.
#[derive(Debug)]
pub struct ForeignAccess {
    cfg: config::ForeignAccess,
    home: Vec<Country>,
    /// Countries seen per subject: bit i is `countries[i]` (bit 31: any beyond).
    seen: Vec<u32>,
    countries: CountryBits,
    clusters: HashMap<Option<Country>, Cluster>,
    days_seen: LearningDays,
}

impl ForeignAccess {
    /// With this configuration and home countries.
    pub fn new(cfg: config::ForeignAccess, home: &[String]) -> Self {
        let home = home.iter().filter_map(|c| Country::parse(c)).collect();
        Self {
            cfg,
            home,
            seen: Vec::new(),
            countries: CountryBits::default(),
            clusters: HashMap::default(),
            days_seen: LearningDays::default(),
        }
    }

    fn on_call(&mut self, c: &Call, cx: &mut Cx<'_>) {
        if !c.success || c.subjects.is_empty() {
            return;
        }
        let class = cx.world.addr_class(c.src, c.asn, cx.symbols);
        let hosting = cx.world.is_hosting(class);
        let foreign = c.country.filter(|cc| !self.home.contains(cc));
        if !hosting && foreign.is_none() {
            return;
        }
        let bit = foreign.map(|cc| self.countries.bit(cc));
        let cluster_key = if hosting { None } else { foreign };
        let horizon = self.cfg.window.0 + HOUR;
        let hour = c.time.div_euclid(HOUR);
        let mut new = 0u64;
        for s in c.subjects.iter().filter(|s| !s.fields.is_empty()) {
            let i = s.id.index();
            if i >= self.seen.len() {
                self.seen.resize(i + 1, 0);
            }
            let novel = match bit {
                Some(b) => self.seen[i] & b == 0,
                None => false,
            };
            if let Some(b) = bit {
                self.seen[i] |= b;
            }
            if hosting || novel {
                let cl = self.clusters.entry(cluster_key).or_default();
                if cl.reach.add(s.id.0, c.time, horizon) {
                    new += 1;
                }
            }
        }
        if new == 0 {
            return;
        }
        let Some(cl) = self.clusters.get_mut(&cluster_key) else { return };
        cl.last = c.time;
        let e = cl.addrs.entry(c.src).or_insert((hour, 0, 0));
        if e.0 != hour {
            *e = (hour, 0, if e.0 == hour - 1 { e.1 } else { 0 });
        }
        e.1 += new;
        if let Some(a) = c.asn {
            *cl.asns.entry(a).or_default() += new;
        }
        let threshold = self.cfg.min_subjects.max((cl.learned as f64 * self.cfg.multiplier).ceil() as u64);
        // Judged at most once a minute of event time.
        if c.time - cl.evaluated < 60_000 {
            return;
        }
        cl.evaluated = c.time;
        // A campaign is a crowd of subjects read from few addresses: count
        // the subjects first read from addresses that each read at least
        // `min_address_subjects` in this hour and the last. VPN users and
        // travellers spread thinly over many addresses and count for little.
        // Busy means both at least `min_address_subjects` and several times
        // the cluster's median address, once it has twenty (a VPN exit
        // serves many customers on a big platform; a crawler's address
        // still stands out).
        let mut per: Vec<u64> = cl.addrs.values().map(|e| e.1 + e.2).collect();
        let mid = per.len() / 2;
        // With a handful of addresses the median is the campaign itself.
        let median = if per.len() < 20 { 0 } else { *per.select_nth_unstable(mid).1 };
        let min_addr = self.cfg.min_address_subjects.max((median as f64 * self.cfg.address_multiplier).ceil() as u64);
        let concentrated: u64 = per.iter().copied().filter(|&n| n >= min_addr).sum();
        if cl.episode.is_none() && concentrated <= threshold {
            cl.today_max = cl.today_max.max(concentrated);
            return;
        }
        let n = cl.reach.count(c.time, self.cfg.window.0);
        if !cl.episode.as_ref().is_none_or(|e| e.due(n, c.time, self.cfg.update_every.0)) {
            return;
        }
        let label = match cluster_key {
            None => "hosting networks".to_owned(),
            Some(cc) => format!("{} (a country never seen for these subjects)", cc.as_str()),
        };
        let ep = cl.episode.get_or_insert_with(|| Episode::new(uid(NAME, &[&label, &c.time.to_string()]), c.time));
        let activity = ep.mark(n, c.time);
        let per_addr: HashMap<AddrId, u64> = cl.addrs.iter().map(|(a, e)| (*a, e.1 + e.2)).collect();
        let addrs = top_addrs(&per_addr, cx.symbols, min_addr);
        let asns: Vec<String> = top(&cl.asns, super::LIST, min_addr).iter().map(u32::to_string).collect();
        let mut observables = named("src_endpoint.ip", addrs.iter().cloned());
        observables.extend(named("src_endpoint.autonomous_system.number", asns));
        cx.report(Alert {
            uid: ep.uid.clone(),
            activity,
            detector: NAME,
            analytic: AnalyticKind::Statistical,
            title: format!(
                "Personal data of {n} distinct subjects read from {label} within {}, {} busy addresses",
                self.cfg.window,
                addrs.len()
            ),
            desc: format!(
                "Reads from {label} above the cluster's usual level (threshold {threshold}). Customers on VPNs and travellers account for a trickle; a crowd of subjects read from a few addresses is a crawl."
            ),
            severity: 4,
            time: c.time,
            reported_at: 0,
            first_seen: ep.first,
            last_seen: c.time,
            count: n,
            observables,
            posture: false,
            rule: None,
            details: json!({"cluster": label, "threshold": threshold, "concentrated": concentrated, "addresses_total": cl.addrs.len()}),
        });
    }
}

impl Detector for ForeignAccess {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        if let What::Call(c) = &ev.what {
            self.on_call(c, cx);
        }
    }

    fn tick(&mut self, now: Millis, _cx: &mut Cx<'_>) {
        // Only a day watched whole teaches a baseline.
        let (rolled, learn) = self.days_seen.tick(now);
        if now % HOUR != 0 {
            return;
        }
        let (window, hour) = (self.cfg.window.0, now.div_euclid(HOUR));
        for cl in self.clusters.values_mut() {
            if learn {
                cl.learned = cl.learned.max(cl.today_max);
            }
            if rolled {
                cl.today_max = 0;
            }
            cl.reach.expire(now, window + HOUR);
            cl.addrs.retain(|_, e| e.0 >= hour - 1);
            if cl.episode.is_some() && now - cl.last > window {
                cl.episode = None;
                cl.addrs.clear();
                cl.asns.clear();
            }
        }
    }

    fn state_bytes(&self) -> usize {
        self.seen.capacity() * 4
            + self.clusters.values().map(|c| c.reach.heap_bytes() + c.addrs.len() * 32).sum::<usize>()
    }
}
