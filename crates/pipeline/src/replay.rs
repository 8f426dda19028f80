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

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use store::{StoredAccess, StoredEvent};

/// Bytes of rebuilt lines per replay job.
const CHUNK: usize = 8 << 20;

/// Rebuilds the store's events as OCSF lines, in ledger order, handing them
/// over in chunks of whole lines; returns how many events and how many
/// pseudonyms resolved. `chunk` may take the buffer (`std::mem::take`) or
/// only read it: a buffer left is emptied and filled again (fresh
/// multi-megabyte buffers cost more in page faults than the rest).
pub fn lines(dir: &Path, mut chunk: impl FnMut(&mut Vec<u8>)) -> Result<(u64, usize), store::Error> {
    let secret =
        store::Secret::load_existing(&dir.join("secret")).map_err(store::Error::io("cannot read the secret"))?;
    let map =
        if dir.join("subjects.map").exists() { store::subjects::read_map(dir, &secret)? } else { Default::default() };
    let mut buf = Vec::with_capacity(CHUNK + (64 << 10));
    let mut events = 0u64;
    store::events(dir, |e| {
        if write_line(&mut buf, &e, &map).is_ok() {
            events += 1;
        }
        if buf.len() >= CHUNK {
            chunk(&mut buf);
            buf.clear();
            buf.reserve(CHUNK + (64 << 10));
        }
    })?;
    if !buf.is_empty() {
        chunk(&mut buf);
    }
    Ok((events, map.len()))
}

/// Appends the OCSF line of a stored event to `out`, its pseudonyms
/// resolved through `map` (written straight from the stored fields: no
/// tree of values built and dropped per event).
fn write_line(out: &mut Vec<u8>, e: &StoredEvent, map: &HashMap<String, String>) -> serde_json::Result<()> {
    let clear = |p: &'_ str| -> String { map.get(p).map_or_else(|| p.to_owned(), Clone::clone) };
    let start = out.len();
    let written = match e {
        StoredEvent::Access(a) => serde_json::to_writer(&mut *out, &access_line(a, map)),
        StoredEvent::Issuance { time, principal, token, key, expires } => serde_json::to_writer(
            &mut *out,
            &AuthLine {
                class_uid: 3002,
                activity_id: 1,
                status_id: 1,
                time: *time,
                user: Uid { uid: clear(principal) },
                session: IssuedSession { uid: token, issuer: key.as_deref(), expiration_time: *expires },
            },
        ),
        StoredEvent::Offboarding { time, principal, action } => serde_json::to_writer(
            &mut *out,
            &ChangeLine {
                class_uid: 3001,
                activity_id: if action == "delete" { 6 } else { 5 },
                time: *time,
                user: Uid { uid: clear(principal) },
            },
        ),
        StoredEvent::Other { time, class_uid } => {
            serde_json::to_writer(&mut *out, &OtherLine { class_uid: *class_uid, time: *time })
        }
    };
    match written {
        Ok(()) => {
            out.push(b'\n');
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn access_line<'a>(a: &'a StoredAccess, map: &'a HashMap<String, String>) -> AccessLine<'a> {
    let clear = |p: &'a str| -> &'a str { map.get(p).map_or(p, String::as_str) };
    AccessLine {
        class_uid: 6003,
        time: a.time,
        activity_id: a.activity_id,
        status_id: if a.success { 1 } else { 2 },
        actor: Actor {
            user: User { uid: clear(&a.principal), kind: &a.principal_kind },
            session: Session { uid: a.token.as_deref(), issuer: a.key.as_deref() },
        },
        src_endpoint: Src {
            ip: &a.ip,
            location: a.country.as_deref().map(|country| Country { country }),
            autonomous_system: a.asn.map(|number| Asn { number }),
        },
        api: Api { operation: &a.operation, service: a.service.as_deref().map(|name| Named { name }) },
        resources: a
            .subjects
            .iter()
            .map(|s| Resource { uid: clear(&s.id), kind: &s.kind, labels: &s.fields })
            .collect(),
        http_request: a.user_agent.as_deref().map(|user_agent| Http { user_agent }),
    }
}

#[derive(Serialize)]
struct AccessLine<'a> {
    class_uid: u32,
    time: i64,
    activity_id: u8,
    status_id: u8,
    actor: Actor<'a>,
    src_endpoint: Src<'a>,
    api: Api<'a>,
    resources: Vec<Resource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<Http<'a>>,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
    session: Session<'a>,
}

#[derive(Serialize)]
struct User<'a> {
    uid: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Session<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
}

#[derive(Serialize)]
struct Src<'a> {
    ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Country<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    autonomous_system: Option<Asn>,
}

#[derive(Serialize)]
struct Country<'a> {
    country: &'a str,
}

#[derive(Serialize)]
struct Asn {
    number: u32,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Named<'a>>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Resource<'a> {
    uid: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    labels: &'a [String],
}

#[derive(Serialize)]
struct Http<'a> {
    user_agent: &'a str,
}

#[derive(Serialize)]
struct AuthLine<'a> {
    class_uid: u32,
    activity_id: u8,
    status_id: u8,
    time: i64,
    user: Uid,
    session: IssuedSession<'a>,
}

#[derive(Serialize)]
struct Uid {
    uid: String,
}

#[derive(Serialize)]
struct IssuedSession<'a> {
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<i64>,
}

#[derive(Serialize)]
struct ChangeLine {
    class_uid: u32,
    activity_id: u8,
    time: i64,
    user: Uid,
}

#[derive(Serialize)]
struct OtherLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    class_uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The first version, a tree of values: the reference the typed lines must equal.
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
                let resources: Vec<Value> = a
                    .subjects
                    .iter()
                    .map(|s| json!({ "uid": clear(&s.id), "type": s.kind, "labels": s.fields }))
                    .collect();
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

    #[test]
    fn typed_lines_equal_the_value_tree() {
        let map: HashMap<String, String> = [("p1".to_owned(), "c-1".to_owned())].into_iter().collect();
        let clear = |p: &str| map.get(p).cloned().unwrap_or_else(|| p.to_owned());
        let access = |full: bool| {
            StoredEvent::Access(StoredAccess {
                time: 1_700_000_000_000,
                activity_id: 2,
                success: full,
                principal: "p1".into(),
                principal_kind: "customer".into(),
                token: full.then(|| "t\"1".into()),
                key: full.then(|| "k1".into()),
                ip: "198.51.100.7".into(),
                asn: full.then_some(64500),
                country: full.then(|| "KR".into()),
                user_agent: full.then(|| "app/1.0 ü".into()),
                operation: "GET /v1/orders/{id}".into(),
                service: full.then(|| "orders".into()),
                subjects: vec![
                    store::StoredSubject { id: "p1".into(), kind: "customer".into(), fields: vec!["name".into()] },
                    store::StoredSubject { id: "p2".into(), kind: "recipient".into(), fields: vec![] },
                ],
            })
        };
        let events = [
            access(true),
            access(false),
            StoredEvent::Issuance {
                time: 5,
                principal: "p1".into(),
                token: "t".into(),
                key: Some("k".into()),
                expires: Some(9),
            },
            StoredEvent::Issuance { time: 5, principal: "x".into(), token: "t".into(), key: None, expires: None },
            StoredEvent::Offboarding { time: 6, principal: "p1".into(), action: "delete".into() },
            StoredEvent::Offboarding { time: 6, principal: "p1".into(), action: "disable".into() },
            StoredEvent::Other { time: Some(7), class_uid: Some(4001) },
            StoredEvent::Other { time: None, class_uid: None },
        ];
        for e in &events {
            let mut out = Vec::new();
            write_line(&mut out, e, &map).expect("written");
            assert_eq!(out.last(), Some(&b'\n'));
            let typed: Value = serde_json::from_slice(&out).expect("a line of JSON");
            assert_eq!(typed, rebuild(e, &clear), "{e:?}");
        }
    }
}
