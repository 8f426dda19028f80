//! Account takeover at scale: a population of accounts suddenly used from
//! countries never seen for them.
//!
//! Credential stuffing logs in to real accounts with their real passwords:
//! every token is genuinely issued, every account reads only its own data,
//! and the logins come from many residential proxies abroad, one to three
//! accounts each, so no address, prefix or AS fans out and each login alone
//! looks like a customer travelling. What gives it away is the population:
//! the rate of accounts *newly* seen abroad (a country outside the home
//! countries that the account was never seen in) jumps far above the
//! platform's own rate of such sightings, which travellers and VPN users set.
//!
//! Each such sighting (a customer account's successful read of personal
//! data from a new foreign country) counts, as a distinct account, in two
//! clusters: the client it used (credential-stuffing tools present one
//! client string) and the platform as a whole (for a campaign that rotates
//! clients). A cluster alerts when its distinct accounts in `window`
//! exceed `max(min_accounts, multiplier × the highest count it reached in
//! any window on whole earlier days)`; it is judged only once it has learned
//! from at least one whole day. The finding is one campaign: the accounts'
//! count since it began, the busiest addresses, ASNs and countries, the
//! accounts themselves (to reset), and its span; it is reported again as
//! the count doubles or `update_every` passes.
//!
//! Deliberately not: a single account abroad, or a trickle of them (every
//! platform has travellers); accounts of staff and services (their networks
//! are the directory's business); the first day watched (no baseline yet).

use crate::Map as HashMap;
use model::{AddrId, Country, Millis, PrincipalKind};
use serde_json::json;

use super::{CountryBits, LIST, LearningDays, named, top, top_addrs};
use crate::alert::{Alert, AnalyticKind, Episode, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};
use crate::window::Reach;

const NAME: &str = "account-takeover";
const HOUR: Millis = 3_600_000;
/// The cluster of every client.
const ANY: u64 = u64::MAX;
/// Most accounts a campaign tracks individually (its count goes on past it).
const TRACK: usize = 1 << 16;

#[derive(Debug, Default)]
struct Campaign {
    episode: Option<Episode>,
    first: Millis,
    /// Accounts in the campaign (the first [`TRACK`]), with their order of arrival.
    accounts: HashMap<u32, u32>,
    count: u64,
    addrs: HashMap<AddrId, u64>,
    asns: HashMap<u32, u64>,
    countries: HashMap<Country, u64>,
}

/// One account first seen in a foreign country.
#[derive(Clone, Copy, Debug)]
struct Sighting {
    time: Millis,
    principal: u32,
    src: AddrId,
    asn: Option<u32>,
    country: Country,
}

#[derive(Debug, Default)]
struct Cluster {
    /// Accounts newly seen abroad, over the window.
    reach: Reach,
    /// The sightings of the last window, to open a campaign with.
    recent: std::collections::VecDeque<Sighting>,
    today_max: u64,
    learned: u64,
    last: Millis,
    evaluated: Millis,
    campaign: Option<Box<Campaign>>,
}

/// The detector.
#[derive(Debug)]
pub struct AccountTakeover {
    cfg: config::AccountTakeover,
    home: Vec<Country>,
    /// Foreign countries seen per principal: bit i is `countries[i]` (bit 31: any beyond).
    seen: Vec<u32>,
    countries: CountryBits,
    clusters: HashMap<u64, Cluster>,
    days_seen: LearningDays,
    /// Whole days learned from (none: nothing is judged yet).
    days: u32,
}

impl AccountTakeover {
    /// With this configuration and home countries.
    pub fn new(cfg: config::AccountTakeover, home: &[String]) -> Self {
        let home = home.iter().filter_map(|c| Country::parse(c)).collect();
        Self {
            cfg,
            home,
            seen: Vec::new(),
            countries: CountryBits::default(),
            clusters: HashMap::default(),
            days_seen: LearningDays::default(),
            days: 0,
        }
    }

    fn on_call(&mut self, c: &Call, cx: &mut Cx<'_>) {
        if !c.success || !c.subjects.iter().any(|s| !s.fields.is_empty()) {
            return;
        }
        let Some(country) = c.country.filter(|cc| !self.home.contains(cc)) else { return };
        // Staff and services are the directory's; anyone else is a customer.
        if matches!(
            cx.world.kind_of(c.principal, c.principal_kind, cx.symbols),
            PrincipalKind::Employee | PrincipalKind::Service
        ) {
            return;
        }
        let bit = self.countries.bit(country);
        let i = c.principal.0 as usize;
        if i >= self.seen.len() {
            self.seen.resize(i + 1, 0);
        }
        if self.seen[i] & bit != 0 {
            return;
        }
        self.seen[i] |= bit;
        let agent = c.user_agent.map_or(ANY - 1, |a| u64::from(a.0));
        for key in [agent, ANY] {
            self.sighting(key, country, c, cx);
        }
    }

    fn sighting(&mut self, key: u64, country: Country, c: &Call, cx: &mut Cx<'_>) {
        let window = self.cfg.window.0;
        // One campaign, one finding: the platform-wide cluster opens none
        // while a client's cluster already has one.
        let judged =
            self.days > 0 && (key != ANY || !self.clusters.iter().any(|(k, cl)| *k != ANY && cl.campaign.is_some()));
        let cl = self.clusters.entry(key).or_default();
        cl.reach.add(c.principal.0, c.time, window + HOUR);
        cl.last = c.time;
        let seen = Sighting { time: c.time, principal: c.principal.0, src: c.src, asn: c.asn, country };
        if let Some(camp) = &mut cl.campaign {
            camp.add(seen);
        } else {
            while cl.recent.front().is_some_and(|r| r.time <= c.time - window) {
                cl.recent.pop_front();
            }
            cl.recent.push_back(seen);
        }
        // Judged at most once a minute of event time.
        if c.time - cl.evaluated < 60_000 && cl.campaign.is_none() {
            return;
        }
        let n = cl.reach.count(c.time, window);
        let threshold = self.cfg.min_accounts.max((cl.learned as f64 * self.cfg.multiplier).ceil() as u64);
        if cl.campaign.is_none() {
            cl.evaluated = c.time;
            if !judged || n <= threshold {
                cl.today_max = cl.today_max.max(n);
                return;
            }
            // The campaign begins with the window that crossed the threshold.
            let first = cl.recent.front().map_or(c.time, |r| r.time);
            let mut camp = Box::new(Campaign { first, ..Campaign::default() });
            for r in cl.recent.drain(..) {
                camp.add(r);
            }
            cl.campaign = Some(camp);
        }
        let Some(camp) = cl.campaign.as_mut() else { return };
        if !camp.episode.as_ref().is_none_or(|e| e.due(camp.count.max(n), c.time, self.cfg.update_every.0)) {
            return;
        }
        let client = if key == ANY {
            "any client".to_owned()
        } else if key == ANY - 1 {
            "no client string".to_owned()
        } else {
            format!("client {:?}", cx.symbols.agent_name(model::AgentId(key as u32)))
        };
        let figure = camp.count.max(n);
        let ep = camp.episode.get_or_insert_with(|| Episode::new(uid(NAME, &[&client, &c.time.to_string()]), c.time));
        let activity = ep.mark(figure, c.time);
        let first = ep.first.min(camp.first);
        let addrs = top_addrs(&camp.addrs, cx.symbols, 1);
        let asns: Vec<String> = top(&camp.asns, LIST, 1).iter().map(u32::to_string).collect();
        let countries: Vec<String> = top(&camp.countries, LIST, 1).iter().map(|c| c.as_str().to_owned()).collect();
        let mut accounts: Vec<(u32, u32)> = camp.accounts.iter().map(|(p, k)| (*k, *p)).collect();
        accounts.sort_unstable();
        let accounts: Vec<String> = accounts
            .iter()
            .take(LIST)
            .map(|(_, p)| cx.symbols.principal_name(model::PrincipalId(*p)).to_owned())
            .collect();
        let mut observables = named("src_endpoint.ip", addrs.iter().cloned());
        observables.extend(named("src_endpoint.autonomous_system.number", asns.iter().cloned()));
        observables.extend(named("actor.user.uid", accounts.iter().cloned()));
        if key != ANY && key != ANY - 1 {
            observables.push(("http_request.user_agent", cx.symbols.agent_name(model::AgentId(key as u32)).to_owned()));
        }
        let span = super::human(c.time - first);
        cx.report(Alert {
            uid: ep.uid.clone(),
            activity,
            detector: NAME,
            analytic: AnalyticKind::Statistical,
            title: format!(
                "Account takeover campaign: {} accounts used from countries never seen for them ({}) over {span}, {} addresses in {} ASNs, {client}",
                camp.count,
                countries.join(", "),
                camp.addrs.len(),
                camp.asns.len(),
            ),
            desc: format!(
                "{n} accounts were first seen abroad within {} (threshold {threshold}: the platform's own highest such count on earlier days, travellers and VPN users, times {}). Each account read only its own data with a token issued to it: stolen passwords, not forged tokens. Reset these accounts' credentials and sessions.",
                self.cfg.window, self.cfg.multiplier
            ),
            severity: 4,
            time: c.time,
            reported_at: 0,
            first_seen: first,
            last_seen: c.time,
            count: camp.count,
            observables,
            posture: false,
            rule: None,
            details: json!({
                "cluster": client, "accounts": camp.count, "accounts_in_window": n, "threshold": threshold,
                "learned": cl.learned, "addresses": camp.addrs.len(), "asns": camp.asns.len(),
                "countries": countries, "span_ms": c.time - first,
            }),
        });
    }
}

impl Campaign {
    fn add(&mut self, s: Sighting) {
        let next = self.accounts.len() as u32;
        if !self.accounts.contains_key(&s.principal) {
            self.count += 1;
            if self.accounts.len() < TRACK {
                self.accounts.insert(s.principal, next);
            }
        }
        if self.addrs.len() < TRACK || self.addrs.contains_key(&s.src) {
            *self.addrs.entry(s.src).or_default() += 1;
        }
        if let Some(a) = s.asn {
            *self.asns.entry(a).or_default() += 1;
        }
        *self.countries.entry(s.country).or_default() += 1;
    }
}

impl Detector for AccountTakeover {
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
        self.days += u32::from(learn);
        let window = self.cfg.window.0;
        for cl in self.clusters.values_mut() {
            if learn {
                cl.learned = cl.learned.max(cl.today_max);
            }
            if rolled {
                cl.today_max = 0;
            }
            if now % HOUR == 0 {
                cl.reach.expire(now, window + HOUR);
                while cl.recent.front().is_some_and(|r| r.time <= now - window) {
                    cl.recent.pop_front();
                }
            }
            // A campaign ends after an hour without a new account.
            if cl.campaign.is_some() && now - cl.last > HOUR.max(window) {
                cl.campaign = None;
            }
        }
        // A cluster that learned nothing and holds nothing is dropped (one per client string).
        if learn {
            self.clusters.retain(|_, cl| cl.learned > 0 || !cl.recent.is_empty() || cl.campaign.is_some());
        }
    }

    fn state_bytes(&self) -> usize {
        self.seen.capacity() * 4
            + self
                .clusters
                .values()
                .map(|c| {
                    c.reach.heap_bytes()
                        + c.recent.capacity() * 32
                        + c.campaign.as_ref().map_or(0, |k| (k.accounts.len() + k.addrs.len()) * 16)
                })
                .sum::<usize>()
    }
}
