//! Departed principals.
//!
//! Catches any API call or token issuance by a principal after they were
//! offboarded: an Account Change (disable or delete) event, or a `left`
//! date in the directory, whichever is earlier, plus `grace`. One finding per
//! principal, updated as their activity grows.
//!
//! Deliberately not: activity before the departure time, however close to
//! it (a leaver's last day is normal work); tokens *signed* with a key a
//! leaver held are the key-hygiene detector's business.

use crate::Map as HashMap;
use model::{Millis, PrincipalId, TokenId};
use serde_json::json;

use super::{Tally, named};
use crate::alert::{Alert, AnalyticKind, uid};
use crate::config;
use crate::engine::{Cx, Detector};
use crate::ev::{Call, Ev, What};

const NAME: &str = "departed-principal";

/// The detector.
#[derive(Debug)]
pub struct Departed {
    cfg: config::Departed,
    offboarded: HashMap<PrincipalId, Millis>,
    tallies: HashMap<PrincipalId, Tally>,
}

impl Departed {
    /// With this configuration.
    pub fn new(cfg: config::Departed) -> Self {
        Self { cfg, offboarded: HashMap::default(), tallies: HashMap::default() }
    }

    fn left_at(&self, p: PrincipalId, cx: &mut Cx<'_>) -> Option<Millis> {
        let dir = cx.world.principal(p, cx.symbols).left;
        match (dir, self.offboarded.get(&p).copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn activity(&mut self, p: PrincipalId, time: Millis, call: Option<&Call>, token: Option<TokenId>, cx: &mut Cx<'_>) {
        let Some(left) = self.left_at(p, cx) else { return };
        if time <= left + self.cfg.grace.0 {
            return;
        }
        let g = self.tallies.entry(p).or_default();
        match call {
            Some(c) => g.add(c),
            None => g.add_at(time),
        }
        if let Some(t) = token {
            g.sample(cx.symbols.token_name(t), 5);
        }
        let who = cx.symbols.principal_name(p).to_owned();
        let Some((ep_uid, activity)) = g.due(time, self.cfg.update_every.0, || uid(NAME, &[&who])) else { return };
        let mut observables = vec![("actor.user.uid", who.clone())];
        observables.extend(named("src_endpoint.ip", g.top_addrs(cx.symbols)));
        observables.extend(named("actor.session.uid", g.samples.iter().cloned()));
        let left_text = jiff::Timestamp::from_millisecond(left).map(|t| t.to_string()).unwrap_or_default();
        cx.report(Alert {
            uid: ep_uid,
            activity,
            detector: NAME,
            analytic: AnalyticKind::Rule,
            title: format!("{who} is active after being offboarded at {left_text}: {} events", g.count),
            desc: "A principal that was disabled, deleted or recorded as gone is still obtaining tokens or calling the API. Their credentials were not revoked, or someone else holds them.".into(),
            severity: 4,
            time,
            reported_at: 0,
            first_seen: g.first,
            last_seen: g.last,
            count: g.count,
            observables,
            posture: false,
            rule: None,
            details: json!({"left": left}),
        });
    }
}

impl Detector for Departed {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event(&mut self, ev: &Ev, cx: &mut Cx<'_>) {
        match &ev.what {
            What::Offboarding(o) => {
                let e = self.offboarded.entry(o.principal).or_insert(o.time);
                *e = (*e).min(o.time);
            }
            What::Call(c) => self.activity(c.principal, c.time, Some(c), c.token, cx),
            What::Issuance(i) => self.activity(i.principal, i.time, None, Some(i.token), cx),
            What::Other { .. } => {}
        }
    }

    fn state_bytes(&self) -> usize {
        self.offboarded.len() * 16 + self.tallies.len() * 256
    }
}
