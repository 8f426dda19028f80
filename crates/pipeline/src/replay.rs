//! After a restart (or a crash) of `serve`, and when `ingest` runs again on
//! new files, the detection engine's state is rebuilt by replaying the
//! store's events through it, so that detection goes on as one
//! uninterrupted run would: the same windows, baselines, issued tokens
//! and episodes. The store keeps events pseudonymised; the replay resolves
//! the pseudonyms through the encrypted subject map, in memory only (never
//! written), and the store's audit chain records that it did.
//!
//! Each stored event becomes an OCSF line again (what the store keeps of
//! it: everything the detectors read) and goes through the same reader as
//! live lines; ties in event time are ordered by content, not by line bytes
//! (`pipeline`'s content digest), so the rebuilt order is the live one.

use std::path::Path;

use serde_json::{Value, json};
use store::StoredEvent;

/// Bytes of rebuilt lines per replay job.
const CHUNK: usize = 8 << 20;

/// Rebuilds the store's events as OCSF lines, in ledger order, handing them
/// over in chunks; returns how many events and how many pseudonyms resolved.
pub fn lines(dir: &Path, mut chunk: impl FnMut(Vec<u8>)) -> Result<(u64, usize), store::Error> {
    let secret =
        store::Secret::load_existing(&dir.join("secret")).map_err(store::Error::io("cannot read the secret"))?;
    let map =
        if dir.join("subjects.map").exists() { store::subjects::read_map(dir, &secret)? } else { Default::default() };
    let clear = |p: &str| map.get(p).cloned().unwrap_or_else(|| p.to_owned());
    let mut buf = Vec::with_capacity(CHUNK + (64 << 10));
    let mut events = 0u64;
    store::events(dir, |e| {
        let line = rebuild(&e, &clear);
        if serde_json::to_writer(&mut buf, &line).is_ok() {
            buf.push(b'\n');
            events += 1;
        }
        if buf.len() >= CHUNK {
            chunk(std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + (64 << 10))));
        }
    })?;
    if !buf.is_empty() {
        chunk(buf);
    }
    Ok((events, map.len()))
}

/// The OCSF line of a stored event, its pseudonyms resolved by `clear`.
fn rebuild(e: &StoredEvent, clear: &dyn Fn(&str) -> String) -> Value {
    match e {
        StoredEvent::Access(a) => {
            let mut session = serde_json::Map::new();
            if let Some(t) = &a.token {
                session.insert("uid".into(), json!(t));
            }
            if let Some(k) = &a.key {
                session.insert("issuer".into(), json!(k));
            }
            let mut src = json!({ "ip": a.ip });
            if let Some(c) = &a.country {
                src["location"] = json!({ "country": c });
            }
            if let Some(n) = a.asn {
                src["autonomous_system"] = json!({ "number": n });
            }
            let mut api = json!({ "operation": a.operation });
            if let Some(s) = &a.service {
                api["service"] = json!({ "name": s });
            }
            let resources: Vec<Value> =
                a.subjects.iter().map(|s| json!({ "uid": clear(&s.id), "type": s.kind, "labels": s.fields })).collect();
            let mut line = json!({
                "class_uid": 6003,
                "time": a.time,
                "activity_id": a.activity_id,
                "status_id": if a.success { 1 } else { 2 },
                "actor": { "user": { "uid": clear(&a.principal), "type": a.principal_kind }, "session": session },
                "src_endpoint": src,
                "api": api,
                "resources": resources,
            });
            if let Some(ua) = &a.user_agent {
                line["http_request"] = json!({ "user_agent": ua });
            }
            line
        }
        StoredEvent::Issuance { time, principal, token, key, expires } => {
            let mut session = json!({ "uid": token });
            if let Some(k) = key {
                session["issuer"] = json!(k);
            }
            if let Some(x) = expires {
                session["expiration_time"] = json!(x);
            }
            json!({ "class_uid": 3002, "activity_id": 1, "status_id": 1, "time": time,
                    "user": { "uid": clear(principal) }, "session": session })
        }
        StoredEvent::Offboarding { time, principal, action } => {
            let activity = if action == "delete" { 6 } else { 5 };
            json!({ "class_uid": 3001, "activity_id": activity, "time": time, "user": { "uid": clear(principal) } })
        }
        StoredEvent::Other { time, class_uid } => {
            let mut line = json!({});
            if let Some(c) = class_uid {
                line["class_uid"] = json!(c);
            }
            if let Some(t) = time {
                line["time"] = json!(t);
            }
            line
        }
    }
}
