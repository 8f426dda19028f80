//! Forged tokens.
//!
//! Catches:
//! - a token presented in API calls that was never issued: no issuance log
//!   for it arrives within `issuance_lateness` of its first use (a token
//!   signed with a stolen key validates at the gateway, but the identity
//!   provider never saw it);
//! - a token presented by a principal other than the one it was issued to;
//! - a token used after it expired (beyond `expiry_grace`).
//!
//! Findings are grouped per signing key and kind, so a campaign of a
//! million forged tokens is one finding whose count, addresses and ASNs
//! grow, reported again when the count doubles or `update_every` passes.
//!
//! Deliberately not: it cannot verify signatures (it never sees the token
//! itself), and calls that log no token id are invisible to it. Issued
//! tokens are remembered until expiry (or `max_token_life` when no expiry is
//! logged); a token used after it was forgotten is reported as never issued.

use std::collections::VecDeque;

use crate::Map as HashMap;
use model::{KeyId, Millis, PrincipalId, TokenId};
use serde_json::json;

use super::{Tally, human, named};
use crate::alert::{Alert, AnalyticKind, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};

const NAME: &str = "forged-token";
const HOUR: Millis = 3_600_000;

/// One token, kept in 16 bytes: there is one per session.
#[derive(Clone, Copy, Debug)]
struct Issued {
    principal: PrincipalId,
    /// Expiry in seconds since the epoch, rounded up; 0 when none was given.
    expires_s: u32,
    /// Minute (since the epoch, rounded up) after which the token is forgotten.
    forget_min: u32,
    forged: bool,
}

/// Milliseconds to whole units of `unit`, rounded up, saturating to `u32`.
fn ceil_u32(t: Millis, unit: Millis) -> u32 {
    (t.max(0) + unit - 1).div_euclid(unit).min(i64::from(u32::MAX)) as u32
}

impl Issued {
    fn expires(&self) -> Option<Millis> {
        (self.expires_s != 0).then(|| i64::from(self.expires_s) * 1000)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    NeverIssued,
    WrongPrincipal,
    Expired,
}

/// The detector.
#[derive(Debug)]
pub struct ForgedToken {
    cfg: config::ForgedToken,
    tokens: HashMap<TokenId, Issued>,
    /// Tokens used and not (yet) issued: their uses so far.
    pending: HashMap<TokenId, Vec<Call>>,
    deadlines: VecDeque<(Millis, TokenId)>,
    groups: HashMap<(Kind, Option<KeyId>), Tally>,
    next_sweep: Millis,
}

impl ForgedToken {
    /// With this configuration.
    pub fn new(cfg: config::ForgedToken) -> Self {
        Self {
            cfg,
            tokens: HashMap::default(),
            pending: HashMap::default(),
            deadlines: VecDeque::new(),
            groups: HashMap::default(),
            next_sweep: Millis::MIN,
        }
    }

    fn count(&mut self, kind: Kind, c: &Call, trigger: Millis, cx: &mut Cx<'_>) {
        let every = self.cfg.update_every.0;
        let g = self.groups.entry((kind, c.key)).or_default();
        g.add(c);
        if let Some(t) = c.token {
            g.sample(cx.symbols.token_name(t), 5);
        }
        let key = c.key.map(|k| cx.symbols.key_name(k).to_owned());
        let first = g.first;
        let Some((ep_uid, activity)) = g.due(trigger, every, || {
            uid(NAME, &[&format!("{kind:?}"), key.as_deref().unwrap_or("-"), &first.to_string()])
        }) else {
            return;
        };
        let key_text = key.as_deref().unwrap_or("no key id");
        let tokens = g.samples.len();
        let (title, desc, severity) = match kind {
            Kind::NeverIssued => (
                format!("{} calls with access tokens that were never issued, signed with {key_text}", g.count),
                format!(
                    "API calls presented token ids that the identity provider never issued (no issuance log within {} of first use). \
                     A token that validates but was never issued was forged, which means the signing key {key_text} is in someone else's hands. \
                     Rotate the key, revoke its tokens, and scope what these calls read.",
                    human(self.cfg.issuance_lateness.0)
                ),
                5,
            ),
            Kind::WrongPrincipal => (
                format!("{} calls with tokens presented by a principal other than the one they were issued to ({key_text})", g.count),
                "A token issued to one principal was used by another: a stolen or forged token, or a gateway that does not bind tokens to their subject.".to_owned(),
                4,
            ),
            Kind::Expired => (
                format!("{} calls with expired tokens ({key_text})", g.count),
                format!(
                    "Tokens were used more than {} after they expired: the gateway is not enforcing expiry, or the tokens were replayed.",
                    human(self.cfg.expiry_grace.0)
                ),
                3,
            ),
        };
        let mut observables = Vec::new();
        if let Some(k) = key.clone() {
            observables.push(("actor.session.issuer", k));
        }
        observables.extend(named("src_endpoint.ip", g.top_addrs(cx.symbols)));
        observables.extend(named("src_endpoint.autonomous_system.number", g.top_asns()));
        observables.extend(named("actor.session.uid", g.samples.iter().cloned()));
        let alert = Alert {
            uid: ep_uid,
            activity,
            detector: NAME,
            analytic: AnalyticKind::Rule,
            title,
            desc,
            severity,
            time: trigger,
            reported_at: 0,
            first_seen: g.first,
            last_seen: g.last,
            count: g.count,
            observables,
            posture: false,
            rule: None,
            details: json!({"kind": format!("{kind:?}"), "addresses": g.addrs.len(), "asns": g.asns.len(), "tokens_sampled": tokens}),
        };
        cx.report(alert);
    }

    fn settle(&mut self, now: Millis, cx: &mut Cx<'_>) {
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline >= now {
                break;
            }
            self.deadlines.pop_front();
            let Some(uses) = self.pending.remove(&token) else { continue };
            let Some(first) = uses.first() else { continue };
            let forget_at = first.time + self.cfg.max_token_life.0;
            let forget_min = ceil_u32(forget_at, 60_000);
            self.tokens.insert(token, Issued { principal: first.principal, expires_s: 0, forget_min, forged: true });
            // Each use is evidence at its own time (uses of one token may name
            // different keys, and so land in different findings).
            for c in &uses {
                self.count(Kind::NeverIssued, c, c.time, cx);
            }
        }
    }
}

impl Detector for ForgedToken {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        match &ev.what {
            What::Issuance(i) => {
                let life = i.expires.map_or(self.cfg.max_token_life.0, |e| (e - i.time).max(0));
                let forget_at = i.time + life + self.cfg.expiry_grace.0 + HOUR;
                self.tokens.insert(
                    i.token,
                    Issued {
                        principal: i.principal,
                        expires_s: i.expires.map_or(0, |e| ceil_u32(e, 1000).max(1)),
                        forget_min: ceil_u32(forget_at, 60_000),
                        forged: false,
                    },
                );
                self.pending.remove(&i.token);
            }
            What::Call(c) => {
                let Some(t) = c.token else { return };
                match self.tokens.get(&t).copied() {
                    Some(tok) if tok.forged => self.count(Kind::NeverIssued, c, c.time, cx),
                    Some(tok) => {
                        if tok.principal != c.principal {
                            self.count(Kind::WrongPrincipal, c, c.time, cx);
                        } else if tok.expires().is_some_and(|e| c.time > e + self.cfg.expiry_grace.0) {
                            self.count(Kind::Expired, c, c.time, cx);
                        }
                    }
                    None => {
                        let uses = self.pending.entry(t).or_default();
                        if uses.is_empty() {
                            self.deadlines.push_back((c.time + self.cfg.issuance_lateness.0, t));
                        }
                        if uses.len() < 64 {
                            uses.push(c.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Millis, cx: &mut Cx<'_>) {
        self.settle(now, cx);
        if now >= self.next_sweep {
            self.next_sweep = now + HOUR;
            let now_min = ceil_u32(now, 60_000);
            self.tokens.retain(|_, t| t.forget_min > now_min);
        }
    }

    fn finish(&mut self, _now: Millis, cx: &mut Cx<'_>) {
        self.settle(Millis::MAX, cx);
    }

    fn state_bytes(&self) -> usize {
        self.tokens.capacity() * (std::mem::size_of::<(TokenId, Issued)>() + 1)
            + self.pending.len() * 256
            + self.deadlines.capacity() * 16
    }
}
