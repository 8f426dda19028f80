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
    "fail_open",
    "no_token",
    "token_not_issued",
    "principal_mismatch",
    "key_mismatch",
    "token_expired",
    "key_retired",
    "principal_offboarded",
    "fanout_over_limit",
    "unavailable",
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

/// From a directory: its staff and services (kept in clear by the store),
/// its departures by pseudonym, and its keys' retirements.
type FromDirectory = (HashSet<String>, HashMap<[u8; 16], i64>, HashMap<String, i64>);

fn from_directory(secret: &store::Secret, directory: &Directory) -> FromDirectory {
    let mut left = HashMap::new();
    let mut staff = HashSet::new();
    for p in &directory.principals {
        if matches!(p.kind, model::PrincipalKind::Employee | model::PrincipalKind::Service) {
            staff.insert(p.uid.clone());
        }
        if let Some(t) = p.left {
            left.insert(secret.pseudonym_bytes(&p.uid), t.as_millisecond());
        }
    }
    let retired = directory.keys.iter().filter_map(|k| Some((k.id.clone(), k.retired?.as_millisecond()))).collect();
    (staff, left, retired)
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
    /// Distinct subjects per source, when a limit is set.
    fanout: Option<Fanout>,
}

/// Distinct subjects exposed to each source address, in tumbling windows of
/// event time; a source over the limit in the current window is refused.
/// Subjects are held as 64-bit hashes under a per-process random seed
/// (memory only), and a source's set is dropped once it is over the limit.
struct Fanout {
    limit: usize,
    window_ms: i64,
    by_ip: HashMap<std::net::IpAddr, Window>,
    hasher: foldhash::quality::RandomState,
    learned: u64,
}

struct Window {
    index: i64,
    subjects: HashSet<u64>,
    over: bool,
}

impl Fanout {
    fn learn(&mut self, ip: std::net::IpAddr, time: i64, subjects: impl Iterator<Item = u64>) {
        let index = time.div_euclid(self.window_ms);
        let w = self.by_ip.entry(ip).or_insert(Window { index, subjects: HashSet::new(), over: false });
        if w.index < index {
            *w = Window { index, subjects: HashSet::new(), over: false };
        } else if w.index > index {
            // A late event of an earlier window: it no longer decides anything.
            return;
        }
        if !w.over {
            w.subjects.extend(subjects);
            if w.subjects.len() > self.limit {
                w.over = true;
                w.subjects = HashSet::new();
            }
        }
        self.learned += 1;
        if self.learned.is_multiple_of(1 << 16) {
            self.by_ip.retain(|_, w| w.index + 1 >= index);
        }
    }

    fn over(&self, ip: std::net::IpAddr, now: i64) -> bool {
        self.by_ip.get(&ip).is_some_and(|w| w.over && w.index == now.div_euclid(self.window_ms))
    }
}

/// What the check does when it is degraded (the store stopped, so
/// issuances are no longer learnt): allow requests on the fail-open routes
/// (`fail_open`), refuse the rest (`unavailable`).
pub fn degraded(operation: Option<&str>, fail_open: &[String]) -> Decision {
    let path = operation.map(|o| o.split_once(' ').map_or(o, |(_, p)| p)).unwrap_or("");
    if fail_open.iter().any(|prefix| path.starts_with(prefix.as_str())) {
        Decision::allow("fail_open")
    } else {
        Decision::deny("unavailable")
    }
}

impl State {
    /// Empty, with the store's secret (for pseudonyms) and the directory.
    pub fn new(secret: store::Secret, directory: &Directory, grace_ms: i64) -> Self {
        let (staff, offboarded, retired) = from_directory(&secret, directory);
        Self {
            secret,
            staff,
            issued: HashMap::new(),
            offboarded,
            retired,
            first_seen: HashMap::new(),
            grace_ms: grace_ms.max(0),
            fanout: None,
        }
    }

    /// A newer directory: keys' retirements and the staff list are replaced;
    /// departures are added to the offboardings already known.
    pub fn set_directory(&mut self, directory: &Directory) {
        let (staff, left, retired) = from_directory(&self.secret, directory);
        self.staff = staff;
        self.retired = retired;
        for (who, at) in left {
            self.offboard(who, at);
        }
    }

    /// Refuse sources that were exposed more than `limit` distinct subjects
    /// in the current window of `window_ms` (event time).
    pub fn limit_fanout(&mut self, limit: usize, window_ms: i64) {
        self.fanout = Some(Fanout {
            limit,
            window_ms: window_ms.max(1),
            by_ip: HashMap::new(),
            hasher: foldhash::quality::RandomState::default(),
            learned: 0,
        });
    }

    /// Whether accesses are to be learnt (a fan-out limit is set).
    pub fn wants_accesses(&self) -> bool {
        self.fanout.is_some()
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
            Event::Access(a) if a.success && !a.subjects.is_empty() => {
                if let Some(f) = &mut self.fanout {
                    use std::hash::BuildHasher;
                    let hasher = f.hasher.clone();
                    let ids = a.subjects.iter().map(|s| hasher.hash_one(symbols.subject_name(s.id)));
                    f.learn(symbols.addrs.resolve(a.src), a.time, ids);
                }
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
        if let (Some(f), Some(ip)) = (&self.fanout, p.ip.as_deref().and_then(|i| i.parse().ok()))
            && f.over(ip, now)
        {
            return Decision::deny("fanout_over_limit");
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
    use super::*;

    fn state(dir: &std::path::Path) -> State {
        let secret = store::Secret::load_or_create(&dir.join("secret")).expect("secret");
        State::new(secret, &Directory::default(), 0)
    }

    fn ask(token: &str, principal: &str, ip: &str, time: i64) -> Presented {
        Presented {
            token: Some(token.into()),
            principal: Some(principal.into()),
            ip: Some(ip.into()),
            time: Some(time),
            ..Presented::default()
        }
    }

    /// A source over its fan-out limit is refused in that window, and only then.
    #[test]
    fn fanout_over_the_limit_is_refused_in_its_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = state(dir.path());
        s.limit_fanout(3, 60_000);
        s.learn_stored(&store::StoredEvent::Issuance {
            time: 0,
            principal: "c1".into(),
            token: "t1".into(),
            key: None,
            expires: None,
        });
        let mut symbols = Symbols::default();
        let ip: std::net::IpAddr = "198.51.100.7".parse().expect("ip");
        let mut feed = |s: &mut State, subjects: &[&str], time: i64| {
            let subjects: Vec<model::Subject> = subjects
                .iter()
                .map(|id| model::Subject {
                    id: symbols.subject(id),
                    kind: model::SubjectKind::Customer,
                    fields: model::FieldSet::EMPTY,
                })
                .collect();
            let access = model::Access {
                time,
                activity: model::Activity::Read,
                success: true,
                principal: symbols.principal("c1"),
                principal_kind: model::PrincipalKind::Customer,
                token: Some(symbols.token("t1")),
                key: None,
                src: symbols.addrs.intern(ip),
                country: None,
                asn: None,
                as_name: None,
                user_agent: None,
                operation: symbols.operation("GET /v1/address-book"),
                service: None,
                subjects: &subjects,
            };
            s.learn(&Event::Access(access), &symbols);
        };
        feed(&mut s, &["a", "b", "c"], 1_000);
        assert_eq!(s.decide(&ask("t1", "c1", "198.51.100.7", 2_000), 0).reason, "issued");
        feed(&mut s, &["c", "d"], 3_000);
        assert_eq!(s.decide(&ask("t1", "c1", "198.51.100.7", 4_000), 0).reason, "fanout_over_limit");
        assert_eq!(s.decide(&ask("t1", "c1", "203.0.113.9", 4_000), 0).reason, "issued", "another source");
        assert_eq!(s.decide(&ask("t1", "c1", "198.51.100.7", 61_000), 0).reason, "issued", "the next window");
    }

    /// Degraded: fail-open routes allowed, the rest refused.
    #[test]
    fn degraded_fails_open_only_where_configured() {
        let open = vec!["/v1/catalog".to_owned()];
        assert_eq!(degraded(Some("GET /v1/catalog/42"), &open), Decision { allow: true, reason: "fail_open" });
        assert_eq!(degraded(Some("GET /v1/address-book"), &open), Decision { allow: false, reason: "unavailable" });
        assert_eq!(degraded(None, &open).reason, "unavailable");
    }

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
