//! Signing-key hygiene.
//!
//! Catches:
//! - use of a key the directory lists as retired (tokens it signs should no
//!   longer validate), and of a key the directory does not list at all;
//! - posture, once per key, at its first use: a key whose custodian has left
//!   and which was not rotated since (the 2025 breach), and a key older than
//!   `max_key_age`;
//! - escalation of that posture: after `learn_for` of a key's use, tokens of
//!   a key with a departed custodian arriving from a network class (directory
//!   label and country) never seen for it, at least `new_class_min_tokens`
//!   distinct tokens within `new_class_window`.
//!
//! Deliberately not: a new network class for a healthy key (travel and new
//! carriers are normal), nor single tokens from a new class.

use crate::{Map as HashMap, Set as HashSet};
use model::{Country, KeyId, Millis, TokenId};
use serde_json::json;

use super::{Tally, human, named};
use crate::alert::{Alert, AnalyticKind, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};
use crate::world::Class;

const NAME: &str = "key-hygiene";
const DAY: Millis = 86_400_000;

#[derive(Debug, Default)]
struct KeyState {
    first_use: Millis,
    /// A custodian left and the key was not rotated since.
    orphaned: Option<String>,
    classes: HashSet<(Class, Option<Country>)>,
    novel: HashMap<(Class, Option<Country>), HashMap<TokenId, Millis>>,
    escalated: HashMap<(Class, Option<Country>), Tally>,
    misuse: Tally,
}

/// The detector.
#[derive(Debug)]
pub struct KeyHygiene {
    cfg: config::KeyHygiene,
    keys: HashMap<KeyId, KeyState>,
}

impl KeyHygiene {
    /// With this configuration.
    pub fn new(cfg: config::KeyHygiene) -> Self {
        Self { cfg, keys: HashMap::default() }
    }

    fn first_use(&mut self, key: KeyId, time: Millis, cx: &mut Cx<'_>) {
        let name = cx.symbols.key_name(key).to_owned();
        let info = cx.world.key(key, cx.symbols).clone();
        let mut reasons = Vec::new();
        let mut orphaned = None;
        if info.known && info.retired.is_none_or(|r| r > time) {
            for (who, left) in &info.custodians {
                if let Some(left) = left
                    && *left <= time
                    && info.created.is_none_or(|c| c < *left)
                {
                    reasons.push(format!("custodian {who} left and the key was not rotated since"));
                    orphaned.get_or_insert_with(|| who.clone());
                }
            }
            if let Some(created) = info.created
                && time - created > self.cfg.max_key_age.0
            {
                reasons.push(format!(
                    "key is {} days old (policy: {})",
                    (time - created) / DAY,
                    human(self.cfg.max_key_age.0)
                ));
            }
        }
        self.keys.insert(key, KeyState { first_use: time, orphaned: orphaned.clone(), ..KeyState::default() });
        if reasons.is_empty() {
            return;
        }
        let severity = if orphaned.is_some() { 3 } else { 2 };
        cx.report(Alert {
            uid: uid(NAME, &["posture", &name]),
            activity: crate::alert::Activity::Create,
            detector: NAME,
            analytic: AnalyticKind::Rule,
            title: format!("Signing key {name} in use: {}", reasons.join("; ")),
            desc: "A standing weakness, reported once at the key's first use: whoever held a copy of a key that was never rotated can sign tokens that validate. Rotate it.".into(),
            severity,
            time,
            reported_at: 0,
            first_seen: time,
            last_seen: time,
            count: 1,
            observables: vec![("actor.session.issuer", name)],
            posture: true,
            rule: None,
            details: json!({"reasons": reasons, "orphaned_by": orphaned}),
        });
    }

    fn misuse(&mut self, key: KeyId, c: &Call, why: &str, severity: u8, cx: &mut Cx<'_>) {
        let Some(st) = self.keys.get_mut(&key) else { return };
        let g = &mut st.misuse;
        g.add(c);
        let name = cx.symbols.key_name(key).to_owned();
        let Some((ep_uid, activity)) = g.due(c.time, self.cfg.update_every.0, || uid(NAME, &[why, &name])) else {
            return;
        };
        let mut observables = vec![("actor.session.issuer", name.clone())];
        observables.extend(named("src_endpoint.ip", g.top_addrs(cx.symbols)));
        cx.report(Alert {
            uid: ep_uid,
            activity,
            detector: NAME,
            analytic: AnalyticKind::Rule,
            title: format!("{} calls with tokens signed by {why} key {name}", g.count),
            desc: format!("Tokens signed by a {why} key were accepted by the platform. Either the gateway still trusts the key or someone signs with a copy of it."),
            severity,
            time: c.time,
            reported_at: 0,
            first_seen: g.first,
            last_seen: g.last,
            count: g.count,
            observables,
            posture: false,
            rule: None,
            details: json!({"why": why}),
        });
    }

    fn network_class(&mut self, key: KeyId, c: &Call, cx: &mut Cx<'_>) {
        let class = (cx.world.addr_class(c.src, c.asn, cx.symbols), c.country);
        let (learn_for, window, min_tokens, every) =
            (self.cfg.learn_for.0, self.cfg.new_class_window.0, self.cfg.new_class_min_tokens, self.cfg.update_every.0);
        let Some(st) = self.keys.get_mut(&key) else { return };
        if c.time - st.first_use < learn_for {
            st.classes.insert(class);
            return;
        }
        if st.classes.contains(&class) {
            return;
        }
        let Some(orphaned) = st.orphaned.clone() else { return };
        let Some(token) = c.token else { return };
        if !st.escalated.contains_key(&class) {
            let seen = st.novel.entry(class).or_default();
            seen.insert(token, c.time);
            if seen.len() as u64 >= min_tokens {
                seen.retain(|_, t| c.time - *t <= window);
            }
            if (seen.len() as u64) < min_tokens {
                return;
            }
            // The finding starts with the tokens that made the class count.
            let first = seen.values().copied().min().unwrap_or(c.time);
            let earlier = seen.len() as u64 - 1;
            st.novel.remove(&class);
            st.escalated.insert(class, Tally { count: earlier, first, last: c.time, ..Tally::default() });
        }
        let Some(g) = st.escalated.get_mut(&class) else { return };
        g.add(c);
        if !g.episode.as_ref().is_none_or(|e| e.due(g.count, c.time, every)) {
            return;
        }
        let name = cx.symbols.key_name(key).to_owned();
        let label = cx.world.class_name(class.0).to_owned();
        let country = class.1.map(|c| c.as_str().to_owned());
        let where_ = match &country {
            Some(cc) => format!("{label} networks in {cc}"),
            None => format!("{label} networks"),
        };
        let Some((ep_uid, activity)) = g.due(c.time, every, || uid(NAME, &["escalated", &name, &where_])) else {
            return;
        };
        let mut observables = vec![("actor.session.issuer", name.clone())];
        observables.extend(named("src_endpoint.ip", g.top_addrs(cx.symbols)));
        observables.extend(named("src_endpoint.autonomous_system.number", g.top_asns()));
        cx.report(Alert {
            uid: ep_uid,
            activity,
            detector: NAME,
            analytic: AnalyticKind::Behavioral,
            title: format!("Tokens of unrotated key {name} (custodian {orphaned} left) now come from {where_}: {} calls", g.count),
            desc: format!(
                "Key {name} was never rotated after {orphaned} left. Its tokens now arrive in numbers from {where_}, never seen for this key in {} of use. This is how a kept copy of a signing key looks when it is used.",
                human(learn_for)
            ),
            severity: 5,
            time: c.time,
            reported_at: 0,
            first_seen: g.first,
            last_seen: g.last,
            count: g.count,
            observables,
            posture: false,
            rule: None,
            details: json!({"network_class": label, "country": country, "orphaned_by": orphaned}),
        });
    }

    fn used(&mut self, key: KeyId, time: Millis, call: Option<&Call>, cx: &mut Cx<'_>) {
        if !self.keys.contains_key(&key) {
            self.first_use(key, time, cx);
        }
        let Some(c) = call else { return };
        let listed_any = !cx.world.directory().keys.is_empty();
        let info = cx.world.key(key, cx.symbols);
        if !info.known && listed_any {
            self.misuse(key, c, "an unlisted", 4, cx);
        } else if info.retired.is_some_and(|r| r <= c.time) {
            self.misuse(key, c, "a retired", 5, cx);
        } else {
            self.network_class(key, c, cx);
        }
    }
}

impl Detector for KeyHygiene {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        match &ev.what {
            What::Call(c) => {
                if let Some(k) = c.key {
                    self.used(k, c.time, Some(c), cx);
                }
            }
            What::Issuance(i) => {
                if let Some(k) = i.key {
                    self.used(k, i.time, None, cx);
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Millis, _cx: &mut Cx<'_>) {
        if now % 3_600_000 == 0 {
            let window = self.cfg.new_class_window.0;
            for st in self.keys.values_mut() {
                st.novel.retain(|_, seen| {
                    seen.retain(|_, t| now - *t <= window);
                    !seen.is_empty()
                });
            }
        }
    }

    fn state_bytes(&self) -> usize {
        self.keys.values().map(|k| 256 + k.novel.values().map(|n| n.len() * 16).sum::<usize>()).sum()
    }
}
