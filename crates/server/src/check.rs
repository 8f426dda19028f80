//! The inline check: may this request, with this token, go on?
//!
//! The gateway verifies signatures; piiwatch knows issuance. A token is
//! allowed only when piiwatch has seen it issued (Authentication 3002), to
//! the principal that presents it, with the key it names, not expired, its
//! key not retired and its principal not offboarded. The state is fed by
//! every ingested event as it is read (before the engine's reordering and
//! before the commit that acknowledges it), so an issuance acknowledged by
//! `POST /v1/events` is known to the next check; at start it is read back
//! from the store.
//!
//! Principals are compared by their keyed pseudonym (the store's HMAC), so
//! this state holds no customer id in clear either.

use std::collections::{HashMap, HashSet};

use model::{Directory, Event, Symbols};
use serde::{Deserialize, Serialize};

/// What a request presented.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Presented {
    /// Token id (JWT `jti`).
    #[serde(default)]
    pub token: Option<String>,
    /// Signing key id (JWT `kid`).
    #[serde(default)]
    pub key: Option<String>,
    /// Principal (JWT `sub`).
    #[serde(default)]
    pub principal: Option<String>,
    /// Source address.
    #[serde(default)]
    pub ip: Option<String>,
    /// The request (`METHOD /path`).
    #[serde(default)]
    pub operation: Option<String>,
    /// The time to judge at, epoch ms (replays and tests); now when absent.
    #[serde(default)]
    pub time: Option<i64>,
}

/// The answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the request may go on.
    pub allow: bool,
    /// Why (stable snake_case names; see [`REASONS`]).
    pub reason: &'static str,
}

/// Every reason a decision gives, for metrics and documentation.
pub const REASONS: &[&str] = &[
    "issued",
    "grace",
    "no_token",
    "token_not_issued",
    "principal_mismatch",
    "key_mismatch",
    "token_expired",
    "key_retired",
    "principal_offboarded",
];

impl Decision {
    fn allow(reason: &'static str) -> Self {
        Self { allow: true, reason }
    }
    fn deny(reason: &'static str) -> Self {
        Self { allow: false, reason }
    }
}

/// A token as issued.
#[derive(Clone, Debug)]
struct Issued {
    principal: [u8; 16],
    key: Option<Box<str>>,
    expires: Option<i64>,
}

/// What the check knows.
pub struct State {
    secret: store::Secret,
    /// Principals the directory lists as staff or services (the store keeps them in clear).
    staff: HashSet<String>,
    issued: HashMap<Box<str>, Issued>,
    /// Offboarded principals (by pseudonym) and when.
    offboarded: HashMap<[u8; 16], i64>,
    /// Keys' retirement times, from the directory.
    retired: HashMap<String, i64>,
    /// With a grace period: when a token not (yet) issued was first presented.
    first_seen: HashMap<Box<str>, i64>,
    grace_ms: i64,
}

impl State {
    /// Empty, with the store's secret (for pseudonyms) and the directory.
    pub fn new(secret: store::Secret, directory: &Directory, grace_ms: i64) -> Self {
        let mut offboarded = HashMap::new();
        let mut staff = HashSet::new();
        for p in &directory.principals {
            if matches!(p.kind, model::PrincipalKind::Employee | model::PrincipalKind::Service) {
                staff.insert(p.uid.clone());
            }
            if let Some(left) = p.left {
                offboarded.insert(secret.pseudonym_bytes(&p.uid), left.as_millisecond());
            }
        }
        let retired = directory.keys.iter().filter_map(|k| Some((k.id.clone(), k.retired?.as_millisecond()))).collect();
        Self {
            secret,
            staff,
            issued: HashMap::new(),
            offboarded,
            retired,
            first_seen: HashMap::new(),
            grace_ms: grace_ms.max(0),
        }
    }

    /// Tokens known as issued.
    pub fn issued(&self) -> usize {
        self.issued.len()
    }

    fn offboard(&mut self, who: [u8; 16], at: i64) {
        let t = self.offboarded.entry(who).or_insert(at);
        *t = (*t).min(at);
    }

    /// Learns from an event as it is read.
    pub fn learn(&mut self, event: &Event<'_>, symbols: &Symbols) {
        match event {
            Event::Issuance(i) => {
                let principal = self.secret.pseudonym_bytes(symbols.principal_name(i.principal));
                let key = i.key.map(|k| Box::from(symbols.key_name(k)));
                let token: Box<str> = symbols.token_name(i.token).into();
                self.first_seen.remove(&token);
                self.issued.insert(token, Issued { principal, key, expires: i.expires });
            }
            Event::Offboarding(o) => {
                let who = self.secret.pseudonym_bytes(symbols.principal_name(o.principal));
                self.offboard(who, o.time);
            }
            _ => {}
        }
    }

    /// Learns from an event read back from the store (principals there are
    /// pseudonyms, or in clear for the directory's staff).
    pub fn learn_stored(&mut self, event: &store::StoredEvent) {
        match event {
            store::StoredEvent::Issuance { principal, token, key, expires, .. } => {
                let principal = self.stored_principal(principal);
                let key = key.as_deref().map(Box::from);
                self.issued.insert(token.as_str().into(), Issued { principal, key, expires: *expires });
            }
            store::StoredEvent::Offboarding { time, principal, .. } => {
                let who = self.stored_principal(principal);
                self.offboard(who, *time);
            }
            _ => {}
        }
    }

    fn stored_principal(&self, p: &str) -> [u8; 16] {
        let mut b = [0u8; 16];
        if !self.staff.contains(p) && p.len() == 32 && hex::decode_to_slice(p, &mut b).is_ok() {
            return b;
        }
        self.secret.pseudonym_bytes(p)
    }

    /// Whether the request may go on, judged at `now` (epoch ms) unless it names a time.
    /// Takes `&mut self` only to note first sightings under a grace period;
    /// see [`State::needs_write`].
    pub fn decide(&mut self, p: &Presented, now: i64) -> Decision {
        let now = p.time.unwrap_or(now);
        let Some(token) = p.token.as_deref().filter(|t| !t.is_empty()) else {
            return Decision::deny("no_token");
        };
        let Some(issued) = self.issued.get(token) else {
            if self.grace_ms > 0 {
                let first = *self.first_seen.entry(token.into()).or_insert(now);
                if now - first <= self.grace_ms {
                    return Decision::allow("grace");
                }
            }
            return Decision::deny("token_not_issued");
        };
        self.judge(issued, p, now)
    }

    /// As [`State::decide`] without noting anything: `None` when only
    /// [`State::decide`] can answer (a token not issued, under a grace period).
    pub fn decide_read(&self, p: &Presented, now: i64) -> Option<Decision> {
        let now = p.time.unwrap_or(now);
        let Some(token) = p.token.as_deref().filter(|t| !t.is_empty()) else {
            return Some(Decision::deny("no_token"));
        };
        match self.issued.get(token) {
            Some(issued) => Some(self.judge(issued, p, now)),
            None if self.grace_ms > 0 => None,
            None => Some(Decision::deny("token_not_issued")),
        }
    }

    fn judge(&self, issued: &Issued, p: &Presented, now: i64) -> Decision {
        if let Some(who) = p.principal.as_deref().filter(|w| !w.is_empty())
            && self.secret.pseudonym_bytes(who) != issued.principal
        {
            return Decision::deny("principal_mismatch");
        }
        if let (Some(k), Some(ik)) = (p.key.as_deref().filter(|k| !k.is_empty()), issued.key.as_deref())
            && k != ik
        {
            return Decision::deny("key_mismatch");
        }
        if issued.expires.is_some_and(|e| e <= now) {
            return Decision::deny("token_expired");
        }
        let key = issued.key.as_deref().or(p.key.as_deref());
        if key.and_then(|k| self.retired.get(k)).is_some_and(|&r| r <= now) {
            return Decision::deny("key_retired");
        }
        if self.offboarded.get(&issued.principal).is_some_and(|&t| t <= now) {
            return Decision::deny("principal_offboarded");
        }
        Decision::allow("issued")
    }
}

/// The claims the check reads from a bearer JWT.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

/// Token id, key id and principal of a JWT, decoded but not verified (the
/// gateway verifies signatures). `None` when it is not a JWT.
pub fn from_jwt(jwt: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(jwt).ok()?;
    Some((data.claims.jti, data.header.kid, data.claims.sub))
}

#[cfg(test)]
mod tests {
    /// The OpenAPI document lists exactly the reasons a decision gives.
    #[test]
    fn openapi_names_every_reason() {
        let doc: serde_json::Value = serde_json::from_str(crate::http::OPENAPI).expect("openapi.json is JSON");
        let listed: Vec<&str> = doc["components"]["schemas"]["Decision"]["properties"]["reason"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(listed, super::REASONS);
    }
}
