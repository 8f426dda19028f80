//! Injected attacks. Each scenario is a list of attacks; each attack adds its
//! events hour by hour and tags them, so the truth knows exactly what it
//! exposed.

use std::net::{IpAddr, Ipv4Addr};

use crate::benign::customer_subjects;
use crate::event::{Body, Call, Op, Subjects};
use crate::out::Out;
use crate::platform::{
    AS_AMAZON, AS_LINODE, AS_OVH, AS_VULTR, As, DAY, HOUR, Key, MINUTE, Net, Platform, RESIDENTIAL_PROXIES, T0,
    UA_CHROME, UA_CONSOLE, UA_SCRIPT, UA_STUFFER, Who, v4,
};
use crate::rng::Dice;
use crate::truth::AttackInfo;

/// An attack that adds its events an hour at a time.
pub trait Attack {
    /// What it is, for the truth file.
    fn info(&self) -> AttackInfo;
    /// Adds events with times in `[h0, h0 + 1h)` (a few may spill later), tagged `id`.
    fn hour(&mut self, p: &Platform, h0: i64, id: u8, out: &mut Out);
}

/// Scenario names and one line each.
pub const SCENARIOS: [(&str, &str); 5] = [
    (
        "coupang",
        "a departed auth engineer's copy of the live signing key: forged tokens, low-rate testing, then a crawl of every customer's profile and address book from hosting networks abroad",
    ),
    (
        "insider",
        "a call-centre agent reads hundreds of customers a night from home over the corporate VPN, outside any shift",
    ),
    (
        "bola",
        "a customer's own valid token used to enumerate other customers' orders (broken object-level authorisation)",
    ),
    (
        "ato",
        "credential stuffing: hundreds of real accounts logged in with their real passwords from residential proxies abroad, each reading its own profile, payment methods and address book",
    ),
    ("benign", "no attack: the busy, messy platform alone, for measuring false alarms"),
];

/// The attacks of a scenario, or `None` for an unknown name.
pub fn attacks(name: &str, p: &Platform) -> Option<Vec<Box<dyn Attack>>> {
    Some(match name {
        "coupang" => vec![Box::new(Coupang::new(p))],
        "insider" => vec![Box::new(Insider::new(p))],
        "bola" => vec![Box::new(Bola::new(p))],
        "ato" => vec![Box::new(Ato::new(p))],
        "benign" => Vec::new(),
        _ => return None,
    })
}

fn window(p: &Platform, from: f64, to: f64) -> (i64, i64) {
    let span = (p.end() - T0) as f64;
    (T0 + (span * from) as i64, T0 + (span * to) as i64)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The 2025 breach: forged tokens signed with the live customer key.
struct Coupang {
    test: (i64, i64),
    crawl: (i64, i64),
    test_pool: Vec<Net>,
    pool: Vec<Net>,
    crawled: u64,
    stride: u64,
    offset: u64,
}

impl Coupang {
    fn new(p: &Platform) -> Self {
        let hosting = |asys: &'static As, country: &'static str, a: u8, b: u8, c: u8, d: u8| Net {
            ip: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            country: Some(country),
            asn: Some(asys),
        };
        let test_pool = vec![hosting(&AS_VULTR, "US", 45, 77, 21, 9), hosting(&AS_VULTR, "US", 45, 77, 21, 14)];
        let mut pool = Vec::new();
        for i in 0..8u8 {
            pool.push(hosting(&AS_VULTR, "SG", 139, 180, 140, 20 + i));
            pool.push(hosting(&AS_OVH, "NL", 51, 83, 17, 100 + i));
            pool.push(hosting(&AS_AMAZON, "US", 3, 35, 201, 40 + i));
        }
        pool.push(hosting(&AS_LINODE, "DE", 172, 104, 150, 3));
        let n = u64::from(p.customers.max(1));
        let mut stride = 2_654_435_761 % n.max(2);
        while gcd(stride, n) != 1 {
            stride += 1;
        }
        Self {
            test: window(p, 0.10, 0.28),
            crawl: window(p, 0.30, 0.95),
            test_pool,
            pool,
            crawled: 0,
            stride,
            offset: Dice::at(&[p.seed, 20]).below(n),
        }
    }
}

/// A call made with a forged token for `victim`.
fn forged(victim: u32, token: u64, net: Net, agent: u8, op: Op, subjects: Subjects) -> Body {
    Body::Call(Call { who: Who::Customer(victim), token, key: Key::Customer, net, agent, op, ok: true, subjects })
}

impl Attack for Coupang {
    fn info(&self) -> AttackInfo {
        AttackInfo {
            name: "coupang-forged-token-crawl".into(),
            kind: "forged-token-crawl",
            description: "A former auth engineer (emp-1042, left 2024-12-31) kept a copy of the live token-signing key \
                auth-key-2019, which was never rotated. He forges access tokens for other customers' accounts (token ids \
                that were never issued), tests at a low rate from two hosting addresses, then crawls every customer's \
                profile and address book (with the third parties in it) from hosting networks abroad, with now and then \
                the address edit page (entrance codes) and the order list."
                .into(),
            indicator_fields: &["actor.session.issuer", "src_endpoint.ip", "src_endpoint.autonomous_system.number"],
            phases: vec![("test", self.test.0, self.test.1), ("crawl", self.crawl.0, self.crawl.1)],
        }
    }

    fn hour(&mut self, p: &Platform, h0: i64, id: u8, out: &mut Out) {
        let h1 = h0 + HOUR;
        let n = u64::from(p.customers);
        if h0 < self.test.1 && h1 > self.test.0 {
            let mut d = Dice::at(&[p.seed, 21, h0 as u64]);
            for _ in 0..d.poisson(1.0) {
                let t = d.range(h0.max(self.test.0), h1.min(self.test.1));
                let victim = d.below(n) as u32;
                let net = *d.pick(&self.test_pool);
                let token = d.bits() | 1;
                let book = p.profile(victim).book;
                for (k, op) in [Op::Me, Op::Book].into_iter().enumerate() {
                    let at = t + k as i64 * 2_000;
                    let body = forged(victim, token, net, UA_SCRIPT, op, customer_subjects(op, victim, book, &mut d));
                    out.push(at + 300, at, body, Some(id));
                }
            }
        }
        let (c0, c1) = self.crawl;
        if h0 < c1 && h1 > c0 {
            let until = h1.min(c1);
            let target = ((u128::from(n) * (until - c0) as u128) / (c1 - c0) as u128) as u64;
            let from = h0.max(c0);
            let mut d = Dice::at(&[p.seed, 22, h0 as u64]);
            while self.crawled < target {
                let victim = ((self.offset + self.crawled * self.stride) % n) as u32;
                self.crawled += 1;
                let t = d.range(from, until);
                let net = *d.pick(&self.pool);
                let token = d.bits() | 1;
                let book = p.profile(victim).book;
                let mut visits = vec![(t, Op::Me), (t + d.range(300, 2_000), Op::Book)];
                for _ in 0..d.poisson(1.0) {
                    visits.push((t + d.range(MINUTE, 40 * MINUTE), Op::Book));
                }
                if d.chance(0.0015) {
                    visits.push((t + d.range(2_000, 5_000), Op::BookEdit));
                }
                if d.chance(0.003) {
                    visits.push((t + d.range(2_000, 5_000), Op::Orders));
                }
                for (at, op) in visits {
                    let body = forged(victim, token, net, UA_CHROME, op, customer_subjects(op, victim, book, &mut d));
                    out.push(at + d.range(0, 800), at, body, Some(id));
                }
            }
        }
    }
}

/// A call-centre agent reading customers at night from home.
struct Insider {
    agent: u16,
    nights: (u32, u32),
    vpn: Net,
}

impl Insider {
    fn new(p: &Platform) -> Self {
        let days = p.days;
        Self {
            agent: 6,
            nights: (days / 2, (days * 9 / 10).max(days / 2 + 1).min(days)),
            vpn: Net::internal(Ipv4Addr::new(10, 8, 3, 77)),
        }
    }
}

impl Attack for Insider {
    fn info(&self) -> AttackInfo {
        AttackInfo {
            name: "insider-night-lookups".into(),
            kind: "insider-snooping",
            description:
                "Call-centre agent agent-007, who reads 30 to 80 customers in an ordinary shift from the office, \
                logs in from home over the corporate VPN between 01:00 and 04:00 and reads hundreds of customers' full \
                records a night, returning to a handful of the same people every night."
                    .into(),
            indicator_fields: &["actor.user.uid", "src_endpoint.ip"],
            phases: vec![(
                "nights",
                T0 + i64::from(self.nights.0) * DAY + HOUR,
                T0 + i64::from(self.nights.1.saturating_sub(1)) * DAY + 4 * HOUR,
            )],
        }
    }

    fn hour(&mut self, p: &Platform, h0: i64, id: u8, out: &mut Out) {
        let day = ((h0 - T0) / DAY) as u32;
        let local_hour = (h0 - T0) % DAY / HOUR;
        if !(self.nights.0..self.nights.1).contains(&day) || !(0..4).contains(&local_hour) {
            return;
        }
        let who = Who::Staff(self.agent);
        let mut night = Dice::at(&[p.seed, 30, u64::from(day)]);
        let token = night.bits() | 1;
        if local_hour == 0 {
            let t = h0 + 50 * MINUTE;
            let body = Body::Login { who, token, key: Key::Staff, ttl: 4 * HOUR, net: self.vpn, ok: true };
            out.push(t + 500, t, body, Some(id));
            return;
        }
        let mut d = Dice::at(&[p.seed, 31, h0 as u64]);
        let reads = 50 + d.below(150);
        let favourites: Vec<u32> = {
            let mut f = Dice::at(&[p.seed, 32]);
            (0..10).map(|_| f.below(u64::from(p.customers)) as u32).collect()
        };
        for i in 0..reads {
            let t = h0 + d.range(0, HOUR);
            let victim = if i < 4 { favourites[d.below(10) as usize] } else { d.below(u64::from(p.customers)) as u32 };
            let (op, subjects) = if d.chance(0.15) {
                let book = p.profile(victim).book;
                (Op::Order, Subjects::Order(victim, (book > 0).then(|| d.below(u64::from(book)) as u32)))
            } else {
                (Op::CsCustomer, Subjects::One(victim))
            };
            let call = Call { who, token, key: Key::Staff, net: self.vpn, agent: UA_CONSOLE, op, ok: true, subjects };
            out.push(t + d.range(0, 1000), t, Body::Call(call), Some(id));
        }
    }
}

/// A customer enumerating other customers' orders with their own token.
struct Bola {
    attacker: u32,
    window: (i64, i64),
    net: Net,
    agent: u8,
    per_hour: u64,
}

impl Bola {
    fn new(p: &Platform) -> Self {
        let attacker = Dice::at(&[p.seed, 40]).below(u64::from(p.customers.max(1))) as u32;
        let prof = p.profile(attacker);
        let day = p.days * 4 / 10;
        // The attacker's own home line.
        let net = p.home_net(attacker, &prof, day);
        let start = T0 + i64::from(day) * DAY + 22 * HOUR;
        let hours = 30;
        let per_hour = (u64::from(p.customers) / 4 / hours).clamp(1, 1_200);
        Self { attacker, window: (start, (start + hours as i64 * HOUR).min(p.end())), net, agent: prof.agent, per_hour }
    }
}

impl Attack for Bola {
    fn info(&self) -> AttackInfo {
        AttackInfo {
            name: "bola-order-enumeration".into(),
            kind: "broken-object-level-authorisation",
            description:
                "A customer logs in normally from their home broadband and walks order ids on GET /v1/orders/{id}, \
                which does not check ownership: every response carries another customer's name, phone, address and \
                order history, and the gift recipient's when there is one. Tokens are genuinely issued every hour."
                    .into(),
            indicator_fields: &["actor.user.uid", "src_endpoint.ip"],
            phases: vec![("enumeration", self.window.0, self.window.1)],
        }
    }

    fn hour(&mut self, p: &Platform, h0: i64, id: u8, out: &mut Out) {
        if h0 < self.window.0 || h0 >= self.window.1 {
            return;
        }
        let who = Who::Customer(self.attacker);
        let mut d = Dice::at(&[p.seed, 42, h0 as u64]);
        let token = d.bits() | 1;
        let login = h0 + 1_000;
        let body = Body::Login { who, token, key: Key::Customer, ttl: HOUR, net: self.net, ok: true };
        out.push(login + 400, login, body, Some(id));
        for i in 0..self.per_hour {
            let t = h0 + 5_000 + (i as i64 * (HOUR - 10_000)) / self.per_hour as i64 + d.range(0, 500);
            let mut victim = d.below(u64::from(p.customers)) as u32;
            if victim == self.attacker {
                victim = (victim + 1) % p.customers;
            }
            let ok = !d.chance(0.08); // some order ids do not exist
            let book = p.profile(victim).book;
            let subjects = if ok {
                Subjects::Order(victim, (book > 0 && d.chance(0.3)).then(|| d.below(u64::from(book)) as u32))
            } else {
                Subjects::None
            };
            let call =
                Call { who, token, key: Key::Customer, net: self.net, agent: self.agent, op: Op::Order, ok, subjects };
            out.push(t + d.range(0, 800), t, Body::Call(call), Some(id));
        }
    }
}

/// Credential stuffing: a list of leaked e-mail and password pairs tried
/// against the login, the hits used at once. Every token is genuinely
/// issued and every account reads only its own data, from residential
/// proxies abroad that each carry one to three accounts: no address, prefix
/// or AS fans out, and each login alone looks like a customer travelling.
/// A few accounts are probed first; then the rate rises within ten
/// minutes to a steady pace until the list's hits are used up.
struct Ato {
    probe: (i64, i64),
    campaign: (i64, i64),
    /// Per account taken over (in order): when, and which proxy.
    plan: Vec<(i64, u32, u32)>,
    next: usize,
}

/// Accounts a campaign takes over: `clamp(customers / 50, 200, 3000)`.
pub fn ato_accounts(customers: u32) -> u32 {
    (customers / 50).clamp(200, 3000).min(customers)
}

impl Ato {
    fn new(p: &Platform) -> Self {
        let n = u64::from(p.customers.max(1));
        let accounts = u64::from(ato_accounts(p.customers));
        let mut stride = 1_000_003 % n.max(2);
        while gcd(stride, n) != 1 {
            stride += 1;
        }
        let offset = Dice::at(&[p.seed, 50]).below(n);
        let probe = window(p, 0.52, 0.58);
        let c0 = probe.1;
        let c1 = (c0 + 6 * HOUR).min(p.end() - HOUR);
        let probes = 6.min(accounts / 10);
        let mut d = Dice::at(&[p.seed, 51]);
        let mut plan = Vec::with_capacity(accounts as usize);
        let mut proxy = 0u32;
        let mut left_on_proxy = 0u32;
        for k in 0..accounts {
            let victim = ((offset + k * stride) % n) as u32;
            let t = if k < probes {
                probe.0 + (probe.1 - probe.0) * k as i64 / probes as i64 + d.range(0, 10 * MINUTE)
            } else {
                // A 10-minute ramp to a steady rate: the cumulative share
                // `u` of the campaign is reached at `x` into it.
                let u = (k - probes) as f64 / (accounts - probes).max(1) as f64;
                let (span, ramp) = ((c1 - c0) as f64, (10 * MINUTE) as f64);
                let total = span - ramp / 2.0;
                let c = u * total;
                let x = if c <= ramp / 2.0 { (2.0 * ramp * c).sqrt() } else { c - ramp / 2.0 + ramp };
                c0 + x as i64 + d.range(0, 30_000)
            };
            if left_on_proxy == 0 {
                proxy = d.bits() as u32;
                left_on_proxy = 1 + d.below(3) as u32;
            }
            left_on_proxy -= 1;
            plan.push((t, victim, proxy));
        }
        plan.sort_by_key(|e| e.0);
        Self { probe, campaign: (c0, c1), plan, next: 0 }
    }
}

/// The residential proxy address number `proxy` draws.
fn proxy_net(proxy: u32) -> Net {
    let (asys, country, base) = RESIDENTIAL_PROXIES[proxy as usize % RESIDENTIAL_PROXIES.len()];
    v4(base[0], base[1], proxy >> 8, country, asys)
}

impl Attack for Ato {
    fn info(&self) -> AttackInfo {
        AttackInfo {
            name: "ato-credential-stuffing".into(),
            kind: "account-takeover",
            description: "Credential stuffing with a leaked list: each hit logs in with the customer's real password \
                (a genuinely issued token), reads the account's own profile, saved payment methods and address book \
                (entrance codes with it), from a residential proxy abroad that serves one to three accounts. A handful \
                of accounts are probed first; then the rate rises within ten minutes to a steady pace. Failed \
                attempts with wrong passwords come from the same proxies."
                .into(),
            indicator_fields: &["src_endpoint.ip", "src_endpoint.autonomous_system.number", "actor.user.uid"],
            phases: vec![("probe", self.probe.0, self.probe.1), ("campaign", self.campaign.0, self.campaign.1)],
        }
    }

    fn hour(&mut self, p: &Platform, h0: i64, id: u8, out: &mut Out) {
        let h1 = h0 + HOUR;
        while let Some(&(t, victim, proxy)) = self.plan.get(self.next) {
            if t >= h1 {
                break;
            }
            self.next += 1;
            let mut d = Dice::at(&[p.seed, 52, u64::from(victim), t as u64]);
            let net = proxy_net(proxy);
            // Wrong passwords for other listed accounts, from the same proxy.
            for f in 0..d.below(4) {
                let other = d.below(u64::from(p.customers)) as u32;
                let at = t - 20_000 + f as i64 * 4_000;
                let body =
                    Body::Login { who: Who::Customer(other), token: 0, key: Key::Customer, ttl: 0, net, ok: false };
                out.push(at + 300, at, body, Some(id));
            }
            let who = Who::Customer(victim);
            let token = d.bits() | 1;
            out.push(
                t + d.range(0, 1500),
                t,
                Body::Login { who, token, key: Key::Customer, ttl: HOUR, net, ok: true },
                Some(id),
            );
            let book = p.profile(victim).book;
            let mut at = t + d.range(1_000, 3_000);
            for op in [Op::Me, Op::Payment, Op::Book, Op::BookEdit] {
                let subjects = customer_subjects(op, victim, book, &mut d);
                let call = Call { who, token, key: Key::Customer, net, agent: UA_STUFFER, op, ok: true, subjects };
                out.push(at + d.range(0, 800), at, Body::Call(call), Some(id));
                at += d.range(800, 2_500);
            }
        }
    }
}
