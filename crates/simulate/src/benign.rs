//! The benign platform, an hour at a time.
//!
//! Everything that makes naive detection fail is here on purpose: carrier
//! NAT addresses shared by thousands of customers, customers on VPNs that
//! exit from hosting networks, travellers abroad, call-centre agents reading
//! dozens of customers a shift, a shipping service and a nightly marketing
//! job reading addresses in bulk, a sale-day surge (with an evening rush of
//! thousands of customers behind one carrier NAT /24), failed calls and logins,
//! token issuance logged late, and lines that arrive slightly out of order.

use crate::event::{Body, Call, Op, Subjects};
use crate::out::Out;
use crate::platform::{
    DAY, HOUR, Key, MINUTE, Net, Platform, SERVICES, SVC_MARKETING, SVC_SHIPPING, T0, UA_CONSOLE, UA_INTERNAL, Who,
};
use crate::rng::Dice;

/// Sessions per KST hour of the day, relative.
const DIURNAL: [f64; 24] = [
    3.0, 2.0, 1.2, 0.8, 0.6, 0.7, 1.5, 3.0, 4.5, 5.5, 6.0, 6.5, 7.5, 6.5, 6.0, 6.0, 6.0, 6.5, 7.5, 8.5, 10.0, 11.0,
    10.0, 6.0,
];

/// Customer session routes and their weights.
const SESSION_OPS: [(Op, f64); 12] = [
    (Op::Product, 35.0),
    (Op::Search, 15.0),
    (Op::Cart, 8.0),
    (Op::Me, 15.0),
    (Op::Profile, 2.0),
    (Op::Book, 5.0),
    (Op::BookEdit, 0.6),
    (Op::BookPut, 0.3),
    (Op::Orders, 8.0),
    (Op::Order, 6.0),
    (Op::Payment, 2.0),
    (Op::PlaceOrder, 3.0),
];

/// One customer session, scheduled for expansion in its hour.
#[derive(Copy, Clone, Debug)]
pub struct Session {
    /// Customer index.
    pub customer: u32,
    /// Start (ms).
    pub start: i64,
    /// Session number that day (for its dice).
    pub index: u32,
}

/// Day of week, 0 = Monday (2025-04-01 was a Tuesday).
pub fn weekday(day: u32) -> u32 {
    (day + 1) % 7
}

/// Traffic multiplier of a day: weekends a little busier, one sale day three times.
pub fn day_factor(p: &Platform, day: u32) -> f64 {
    if p.days >= 3 && day == p.days * 6 / 10 {
        3.0
    } else if weekday(day) >= 5 {
        1.2
    } else {
        1.0
    }
}

/// Every customer session of `day`, bucketed by hour (24 buckets).
pub fn day_sessions(p: &Platform, day: u32) -> Vec<Vec<Session>> {
    let mut buckets = vec![Vec::new(); 24];
    let factor = day_factor(p, day);
    let day_start = T0 + i64::from(day) * DAY;
    for c in 0..p.customers {
        let prof = p.profile(c);
        let mut d = Dice::at(&[p.seed, 4, u64::from(c), u64::from(day)]);
        let n = d.poisson(prof.rate * factor);
        for index in 0..n {
            let hour = d.weighted(&DIURNAL);
            let start = day_start + hour as i64 * HOUR + d.range(0, HOUR);
            buckets[hour].push(Session { customer: c, start, index });
        }
    }
    buckets
}

/// Expands one session into its login and calls.
pub fn session(p: &Platform, s: Session, out: &mut Out) {
    let day = ((s.start - T0) / DAY) as u32;
    let c = s.customer;
    let mut d = Dice::at(&[p.seed, 5, u64::from(c), u64::from(day), u64::from(s.index)]);
    let prof = p.profile(c);
    let net = p.customer_net(c, &prof, day, &mut d);
    let who = Who::Customer(c);
    let mut t = s.start;
    if d.chance(0.03) {
        let body = Body::Login { who, token: 0, key: Key::Customer, ttl: 0, net, ok: false };
        out.push(t + d.range(0, 1500), t, body, None);
        t += d.range(4_000, 20_000);
    }
    let token = d.bits() | 1;
    // Issuance logs come from another pipeline: now and then minutes late.
    let delay = if d.chance(0.05) { d.range(5_000, 120_000) } else { d.range(0, 1500) };
    out.push(t + delay, t, Body::Login { who, token, key: Key::Customer, ttl: HOUR, net, ok: true }, None);
    let calls = 1 + d.poisson(3.0);
    let weights: Vec<f64> = SESSION_OPS.iter().map(|o| o.1).collect();
    for _ in 0..calls {
        t += 1000 + d.exp(15_000.0) as i64;
        let op = SESSION_OPS[d.weighted(&weights)].0;
        let ok = !d.chance(0.02);
        let subjects = if ok { customer_subjects(op, c, prof.book, &mut d) } else { Subjects::None };
        let call = Call { who, token, key: Key::Customer, net, agent: prof.agent, op, ok, subjects };
        out.push(t + d.range(0, 1500), t, Body::Call(call), None);
    }
}

/// What a customer's own call returns.
pub fn customer_subjects(op: Op, c: u32, book: u32, d: &mut Dice) -> Subjects {
    match op {
        Op::Me | Op::Profile | Op::Orders | Op::Payment | Op::PlaceOrder => Subjects::One(c),
        Op::Book => Subjects::Book(c),
        Op::BookEdit | Op::BookPut => Subjects::Entry(c, d.below(u64::from(book) + 1) as u32),
        Op::Order => Subjects::Order(c, (book > 0 && d.chance(0.3)).then(|| d.below(u64::from(book)) as u32)),
        _ => Subjects::None,
    }
}

/// Staff activity in `[h0, h0 + 1h)`: agents' shifts and engineers' lookups.
pub fn staff(p: &Platform, h0: i64, out: &mut Out) {
    let day = ((h0 - T0) / DAY) as u32;
    let day_start = T0 + i64::from(day) * DAY;
    let h1 = h0 + HOUR;
    for (i, s) in p.staff.iter().enumerate() {
        let who = Who::Staff(i as u16);
        let net = Net::internal(s.desk);
        let is_agent = i < usize::from(p.agents);
        // Agents work six days a week in day or evening shifts; engineers weekdays.
        let (shift_start, shift_len, reads) = if is_agent {
            if (weekday(day) + i as u32) % 7 == 6 {
                continue;
            }
            let start = if i % 2 == 0 { 9 } else { 14 };
            let mut d = Dice::at(&[p.seed, 6, i as u64, u64::from(day)]);
            (start, 9, 30 + d.below(50) as u32)
        } else {
            if weekday(day) >= 5 || s.uid == crate::platform::DEPARTED {
                continue;
            }
            let mut d = Dice::at(&[p.seed, 6, i as u64, u64::from(day)]);
            (10, 8, d.below(4) as u32)
        };
        let start = day_start + shift_start * HOUR;
        let end = start + shift_len * HOUR;
        if end <= h0 || start - 10 * MINUTE >= h1 {
            continue;
        }
        if s.left.is_some_and(|left| start >= left) {
            continue;
        }
        let mut d = Dice::at(&[p.seed, 7, i as u64, u64::from(day)]);
        let token = d.bits() | 1;
        let login = start - d.range(MINUTE, 10 * MINUTE);
        if (h0..h1).contains(&login) {
            let body = Body::Login { who, token, key: Key::Staff, ttl: 10 * HOUR, net, ok: true };
            out.push(login + d.range(0, 2000), login, body, None);
        }
        for _ in 0..reads {
            let t = start + d.range(0, shift_len * HOUR);
            let c = d.below(u64::from(p.customers)) as u32;
            let jitter = d.range(0, 1500);
            if (h0..h1).contains(&t) {
                let call = Call {
                    who,
                    token,
                    key: Key::Staff,
                    net,
                    agent: UA_CONSOLE,
                    op: Op::CsCustomer,
                    ok: true,
                    subjects: Subjects::One(c),
                };
                out.push(t + jitter, t, Body::Call(call), None);
            }
        }
    }
    for (i, s) in p.staff.iter().enumerate() {
        if let Some(left) = s.left.filter(|l| (h0..h1).contains(l)) {
            out.push(left + 30_000, left, Body::Offboard(i as u16), None);
        }
    }
}

/// Internal services in `[h0, h0 + 1h)`: shipping labels every ten minutes,
/// the nightly marketing audience export at 03:00.
pub fn services(p: &Platform, h0: i64, out: &mut Out) {
    let day = ((h0 - T0) / DAY) as u32;
    let day_start = T0 + i64::from(day) * DAY;
    let hour = (h0 - day_start) / HOUR;
    let factor = crate::benign::day_factor(p, day);
    let token_of = |svc: u8| Dice::at(&[p.seed, 8, u64::from(svc), u64::from(day)]).bits() | 1;
    for svc in [SVC_SHIPPING, SVC_MARKETING] {
        if hour == 0 {
            let net = Net::internal(SERVICES[svc as usize].1);
            let body = Body::Login {
                who: Who::Service(svc),
                token: token_of(svc),
                key: Key::Service,
                ttl: 25 * HOUR,
                net,
                ok: true,
            };
            out.push(h0 + 200, h0 + 100, body, None);
        }
    }
    let shipping = Net::internal(SERVICES[SVC_SHIPPING as usize].1);
    for slot in 0..6 {
        let t0 = h0 + slot * 10 * MINUTE + 5_000;
        let mut d = Dice::at(&[p.seed, 9, (h0 / MINUTE) as u64, slot as u64]);
        let labels = d.poisson(f64::from(p.customers) * 0.03 / 144.0 * factor * DIURNAL[hour as usize] / 6.0);
        let mut subjects = Vec::with_capacity(labels as usize);
        for _ in 0..labels {
            let c = d.below(u64::from(p.customers)) as u32;
            let book = p.profile(c).book;
            subjects.push(if book > 0 && d.chance(0.1) {
                p.recipient_subject(c, d.below(u64::from(book)) as u32)
            } else {
                p.customer_subject(c)
            });
        }
        for (i, batch) in subjects.chunks(100).enumerate() {
            let t = t0 + i as i64 * 700;
            let call = Call {
                who: Who::Service(SVC_SHIPPING),
                token: token_of(SVC_SHIPPING),
                key: Key::Service,
                net: shipping,
                agent: UA_INTERNAL,
                op: Op::Shipping,
                ok: true,
                subjects: Subjects::Many(batch.into()),
            };
            out.push(t + 40, t, Body::Call(call), None);
        }
    }
    if hour == 3 {
        let n = p.customers / 20;
        let first = (u64::from(day) * u64::from(n) % u64::from(p.customers.max(1))) as u32;
        let marketing = Net::internal(SERVICES[SVC_MARKETING as usize].1);
        let ids: Vec<u32> = (0..n).map(|k| (first + k) % p.customers).collect();
        for (i, batch) in ids.chunks(200).enumerate() {
            let t = h0 + 60_000 + i as i64 * 350;
            let call = Call {
                who: Who::Service(SVC_MARKETING),
                token: token_of(SVC_MARKETING),
                key: Key::Service,
                net: marketing,
                agent: UA_INTERNAL,
                op: Op::Audience,
                ok: true,
                subjects: Subjects::Many(batch.iter().map(|&c| p.customer_subject(c)).collect()),
            };
            out.push(t + 20, t, Body::Call(call), None);
        }
    }
}

/// The sale day's evening rush on one carrier: `min(customers / 4, 5000)`
/// customers between 20:00 and 22:00 behind one CGNAT /24 of a range the
/// carrier has just started using (the directory's `carrier-cgnat` list does
/// not have it yet; only its AS says "carrier"), each reading their own
/// profile, address book and orders with a token issued to them. A /24 that
/// reaches thousands of customers' data, none of it anyone else's: fan-out
/// must not call it a crawl.
pub fn sale_surge(p: &Platform, h0: i64, out: &mut Out) {
    let day = ((h0 - T0) / DAY) as u32;
    let hour = (h0 - T0) % DAY / HOUR;
    if day_factor(p, day) < 3.0 || !(20..22).contains(&hour) {
        return;
    }
    let n = (p.customers / 4).min(5_000);
    let first = T0 + i64::from(day) * DAY + 20 * HOUR;
    let (asys, base) = (&crate::platform::AS_SKT, [223u8, 39u8]);
    for k in 0..n {
        let c = ((u64::from(k) * 7_919 + 13) % u64::from(p.customers)) as u32;
        let mut d = Dice::at(&[p.seed, 13, u64::from(c), u64::from(day)]);
        let mut t = first + d.range(0, 2 * HOUR);
        if t < h0 || t >= h0 + HOUR {
            continue;
        }
        let net = crate::platform::v4(base[0], base[1], 77 * 256 + d.below(256) as u32, "KR", asys);
        let prof = p.profile(c);
        let who = Who::Customer(c);
        let token = d.bits() | 1;
        out.push(
            t + d.range(0, 1500),
            t,
            Body::Login { who, token, key: Key::Customer, ttl: HOUR, net, ok: true },
            None,
        );
        for op in [Op::Me, Op::Book, Op::Orders, Op::Order] {
            t += 1_000 + d.exp(10_000.0) as i64;
            let subjects = customer_subjects(op, c, prof.book, &mut d);
            let call = Call { who, token, key: Key::Customer, net, agent: prof.agent, op, ok: true, subjects };
            out.push(t + d.range(0, 1500), t, Body::Call(call), None);
        }
    }
}

/// Lines of other classes and a few broken ones.
pub fn oddities(p: &Platform, h0: i64, out: &mut Out) {
    for m in (0..60).step_by(5) {
        let t = h0 + m * MINUTE;
        out.push(t + 10, t, Body::HealthCheck, None);
    }
    let hour_index = ((h0 - T0) / HOUR) as u64;
    let day_start = T0 + (h0 - T0) / DAY * DAY;
    if h0 == day_start + 9 * HOUR {
        let t = h0 + 5 * MINUTE;
        out.push(t, t, Body::WindowsLogon, None);
    }
    let mut d = Dice::at(&[p.seed, 11, hour_index]);
    // Every kind at least once early on, then now and then.
    let kind = if (1..=u64::from(crate::event::MALFORMED_KINDS)).contains(&hour_index) {
        Some((hour_index - 1) as u8)
    } else {
        d.chance(0.06).then(|| d.below(u64::from(crate::event::MALFORMED_KINDS)) as u8)
    };
    if let Some(kind) = kind {
        let t = h0 + d.range(0, HOUR);
        out.push(t, t, Body::Malformed(kind), None);
    }
}
