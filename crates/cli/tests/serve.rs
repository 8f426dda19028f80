//! `piiwatch serve` end to end, through the binary: the contract's section 5.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use support::serve::{Server, agent, get, gzip, join, jwt, lines_of, post_simulation, send, tmp, token, uids};
use support::{ok, simulation};

/// The coupang breach streamed through HEC: the findings over `/v1/alerts`
/// are `detect`'s; then every access of the same stream asked of the inline
/// check as Envoy asks: every forged token denied, every issued one allowed.
#[test]
fn coupang_through_hec_and_the_inline_check() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let ingest = token(&store, "ingest", "shipper");
    let analyst = token(&store, "analyst", "ir");
    let check = token(&store, "check", "envoy");
    let directory = sim.join("directory.json");
    let server = Server::start(&store, &["--directory", directory.to_str().expect("utf-8"), "--idle-flush", "0.2"]);
    let a = agent();
    let lines = lines_of(&sim);
    // HEC event envelopes, in bodies of 1,000 events, some pretty-printed;
    // lines that are not JSON go as raw HEC.
    for chunk in lines.chunks(1000) {
        let mut body = String::new();
        let mut raw = Vec::new();
        for (i, l) in chunk.iter().enumerate() {
            match serde_json::from_slice::<Value>(l) {
                Ok(v) if i % 7 == 0 => {
                    body.push_str(&serde_json::to_string_pretty(&json!({"event": v})).expect("json"))
                }
                Ok(v) => body.push_str(&json!({"event": v, "sourcetype": "ocsf"}).to_string()),
                Err(_) => {
                    raw.extend_from_slice(l);
                    raw.push(b'\n');
                }
            }
        }
        let req = a.post(&server.url("/services/collector/event")).header("Authorization", &format!("Splunk {ingest}"));
        let (status, text, _) = send(req, body.as_bytes());
        assert_eq!((status, text.as_str()), (200, r#"{"code":0,"text":"Success"}"#));
        if !raw.is_empty() {
            let req =
                a.post(&server.url("/services/collector/raw")).header("Authorization", &format!("Splunk {ingest}"));
            assert_eq!(send(req, &raw).0, 200);
        }
    }
    let detect_q = dir.path().join("detect-quarantine.jsonl");
    // The same findings as `detect` over the file, once the idle flush has released the held events.
    let expected = uids(
        &String::from_utf8(
            ok(&[
                "detect",
                "--directory",
                directory.to_str().expect("utf-8"),
                "--quarantine",
                detect_q.to_str().expect("utf-8"),
                sim.join("events.jsonl.gz").to_str().expect("utf-8"),
            ])
            .stdout,
        )
        .expect("utf-8"),
    );
    assert!(!expected.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let (status, body) = get(&a, &server.url("/v1/alerts"), Some(&analyst));
        assert_eq!(status, 200);
        let found = uids(&body);
        if found == expected || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found, expected, "findings over /v1/alerts differ from detect's");
    // `since` filters by event time.
    let (_, all) = get(&a, &server.url("/v1/alerts"), Some(&analyst));
    let last = all
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["time"].as_i64())
        .max()
        .expect("times");
    assert_eq!(get(&a, &server.url(&format!("/v1/alerts?since={last}")), Some(&analyst)).1, "");

    // Scope over HTTP, recorded with the token's name.
    let (status, body) =
        get(&a, &server.url("/v1/scope?where=src_endpoint.ip%20cidr%20%220.0.0.0%2F0%22"), Some(&analyst));
    assert_eq!(status, 200, "{body}");
    let scoped: Value = serde_json::from_str(&body).expect("scope json");
    assert!(scoped["subjects"].as_u64().is_some_and(|n| n > 0), "{body}");
    let audit = support::ledger::ledger_text(&store);
    assert!(audit.contains("token:ir"), "the scope is recorded with the token's name");

    // The inline check, Envoy's way: every access of the stream, in event time.
    let events: Vec<Value> = lines.iter().filter_map(|l| serde_json::from_slice(l).ok()).collect();
    let issued: std::collections::HashSet<&str> =
        events.iter().filter(|e| e["class_uid"] == 3002).filter_map(|e| e["session"]["uid"].as_str()).collect();
    let (mut forged, mut forged_denied, mut genuine, mut genuine_allowed) = (0, 0, 0, 0);
    for e in events.iter().filter(|e| e["class_uid"] == 6003) {
        let (Some(sub), Some(time), Some(op)) =
            (e["actor"]["user"]["uid"].as_str(), e["time"].as_i64(), e["api"]["operation"].as_str())
        else {
            continue;
        };
        let session = &e["actor"]["session"];
        let jti = session["uid"].as_str();
        let path = op.split_once(' ').map_or("/", |(_, p)| p);
        let req = a
            .post(&server.url(&format!("/v1/check{path}")))
            .header("x-piiwatch-auth", &check)
            .header("Authorization", &format!("Bearer {}", jwt(session["issuer"].as_str(), jti, sub)))
            .header("x-forwarded-for", &format!("{}, 10.0.0.1", e["src_endpoint"]["ip"].as_str().unwrap_or("")))
            .header("x-piiwatch-time", &time.to_string());
        let (status, _, reason) = send(req, b"");
        assert!(reason.is_some(), "every answer names its reason");
        if jti.is_some_and(|t| issued.contains(t)) {
            genuine += 1;
            genuine_allowed += u32::from(status == 200);
        } else {
            forged += 1;
            forged_denied += u32::from(status == 403);
        }
    }
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(sim.join("truth.json")).expect("truth")).expect("json");
    assert!(forged > 0 && truth["attacks"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(forged_denied, forged, "every forged request is denied, so it exposes no customer");
    assert_eq!(genuine_allowed, genuine, "every request with an issued token is allowed");
    // Denials became findings, and the decisions are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&a, &server.url("/v1/alerts"), Some(&analyst)).1.contains("inline-check") {
        assert!(Instant::now() < deadline, "no inline-check finding");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = get(&a, &server.url("/metrics"), None);
    // Every line sent is counted once: stored or quarantined (a line the
    // test re-encoded into an HEC envelope may parse differently from the
    // file's, so the split is not compared with detect's).
    let metric =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<usize>().ok()).unwrap_or(0);
    let (stored, quarantined) = (metric("piiwatch_events_total "), metric("piiwatch_quarantined_total "));
    let denied = metric("piiwatch_check_decisions_total{decision=\"deny\",reason=\"token_not_issued\"} ")
        + metric("piiwatch_check_decisions_total{decision=\"deny\",reason=\"no_token\"} ");
    assert_eq!(denied, forged as usize, "every denial is counted: {metrics}");
    let detect_quarantined = std::fs::read_to_string(&detect_q).map_or(0, |t| t.lines().count());
    assert_eq!(stored + quarantined, lines.len(), "{metrics}");
    assert!(metric("piiwatch_store_records ") > stored, "the ledger holds the events and more: {metrics}");
    assert!(metric("piiwatch_store_commit_seconds_count ") > 0, "{metrics}");
    assert!(metric("piiwatch_check_seconds_count ") >= forged as usize, "{metrics}");
    assert!(quarantined >= detect_quarantined && quarantined <= detect_quarantined + 2, "{metrics}");
    let status = server.terminate();
    assert!(status.success(), "serve exits 0 on SIGTERM");
    ok(&["verify", "--store", store.to_str().expect("utf-8")]);
}

/// Credentials, roles, and bad bodies: clear status codes, nothing stored
/// from a refused body, and the server still answers the next client.
#[test]
fn refuses_what_it_should_and_goes_on() {
    let dir = tmp();
    let store = dir.path().join("store");
    let ingest = token(&store, "ingest", "shipper");
    let analyst = token(&store, "analyst", "ir");
    let server = Server::start(&store, &["--max-body-bytes", "200000", "--max-decompressed-bytes", "1000000"]);
    let a = agent();
    let line = r#"{"class_uid":6003,"time":1743433200000,"activity_id":2,"status_id":1,"actor":{"user":{"uid":"c1"},"session":{"uid":"t1","issuer":"k1"}},"src_endpoint":{"ip":"198.51.100.7"},"api":{"operation":"GET /v1/me"},"resources":[{"uid":"c1","type":"customer","labels":["name"]}]}"#;
    let events = server.url("/v1/events");
    let post = |auth: Option<String>| {
        let mut r = a.post(&events);
        if let Some(v) = auth {
            r = r.header("Authorization", &v);
        }
        r
    };
    // No credentials, a wrong token, the wrong role.
    assert_eq!(send(post(None), line.as_bytes()).0, 401);
    assert_eq!(send(post(Some("Bearer pw_wrong".into())), line.as_bytes()).0, 401);
    assert_eq!(send(post(Some(format!("Bearer {analyst}"))), line.as_bytes()).0, 403);
    assert_eq!(get(&a, &server.url("/v1/alerts"), Some(&ingest)).0, 403);
    assert_eq!(get(&a, &server.url("/v1/alerts"), None).0, 401);
    // A good body, with a malformed line quarantined and counted.
    let body = format!("{line}\n{{\"class_uid\": 6003, oops\n\n");
    let (status, text, _) = send(post(Some(format!("Bearer {ingest}"))), body.as_bytes());
    assert_eq!((status, text.as_str()), (200, r#"{"accepted":1,"quarantined":1}"#));
    // Gzip, good and broken; a bomb; an oversized body; an unknown encoding.
    let gz = post(Some(format!("Bearer {ingest}"))).header("Content-Encoding", "gzip");
    assert_eq!(send(gz, &gzip(format!("{line}\n").as_bytes())).1, r#"{"accepted":1,"quarantined":0}"#);
    let gz = post(Some(format!("Bearer {ingest}"))).header("Content-Encoding", "gzip");
    assert_eq!(send(gz, b"\x1f\x8b\x08\x00not gzip at all").0, 400);
    let bomb = gzip(&vec![b'\n'; 50 << 20]);
    assert!(bomb.len() < 200_000);
    let gz = post(Some(format!("Bearer {ingest}"))).header("Content-Encoding", "gzip");
    let (status, text, _) = send(gz, &bomb);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("decompresses to more than"), "{text}");
    // An oversized body: 413, or the connection closed before it was all sent.
    let big = post(Some(format!("Bearer {ingest}"))).send(&vec![b' '; 250_000][..]);
    assert!(big.as_ref().map_or(true, |r| r.status().as_u16() == 413), "{:?}", big.map(|r| r.status()));
    let br = post(Some(format!("Bearer {ingest}"))).header("Content-Encoding", "br");
    assert_eq!(send(br, line.as_bytes()).0, 415);
    // HEC: a bad envelope refuses the whole body, with HEC's code.
    let hec = |body: &str| {
        let r = a.post(&server.url("/services/collector/event")).header("Authorization", &format!("Splunk {ingest}"));
        send(r, body.as_bytes())
    };
    let (status, text, _) = hec(&format!(r#"{{"event": {line}}} {{"event": "#));
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((v["code"].as_i64(), v["invalid-event-number"].as_i64()), (Some(6), Some(1)));
    let (status, text, _) = hec(r#"{"time": 1}"#);
    assert_eq!((status, serde_json::from_str::<Value>(&text).expect("json")["code"].as_i64()), (400, Some(12)));
    let no_token = a.post(&server.url("/services/collector/raw"));
    let (status, text, _) = send(no_token, line.as_bytes());
    assert_eq!((status, text.as_str()), (401, r#"{"code":2,"text":"Token is required"}"#));
    assert_eq!(
        get(&a, &server.url("/services/collector/health"), None),
        (200, r#"{"code":17,"text":"HEC is healthy"}"#.into())
    );
    // A token created while the server runs works at once; revoked, it stops within a second or so.
    let late = token(&store, "ingest", "late");
    assert_eq!(send(post(Some(format!("Bearer {late}"))), line.as_bytes()).0, 200);
    ok(&["token", "revoke", "--store", store.to_str().expect("utf-8"), "late"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while send(post(Some(format!("Bearer {late}"))), line.as_bytes()).0 != 401 {
        assert!(Instant::now() < deadline, "a revoked token is still accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still serving; health endpoints need no token.
    assert_eq!(get(&a, &server.url("/healthz"), None).0, 200);
    assert_eq!(get(&a, &server.url("/readyz"), None).0, 200);
    // The list shows names and roles, never the tokens.
    let listed = ok(&["token", "list", "--store", store.to_str().expect("utf-8"), "--format", "json"]);
    let listed = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(listed.contains("\"late\"") && listed.contains("\"revoked\":1"), "{listed}");
    assert!(
        !listed.contains(&ingest)
            && !std::fs::read_to_string(store.join("tokens.jsonl")).expect("tokens").contains(&ingest)
    );
    assert!(server.terminate().success());
}

/// What the server acknowledged survives `kill -9`, and a restarted server
/// knows the tokens issued before (the check) and the findings so far.
#[test]
fn kill9_loses_nothing_acknowledged() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let server = Server::start(&store, &["--idle-flush", "0.2"]);
    let a = agent();
    let lines = lines_of(&sim);
    let half = lines.len() / 2;
    for chunk in lines[..half].chunks(500) {
        let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
        assert_eq!(send(req, &join(chunk)).0, 200);
    }
    // Mid-stream: a body in flight, then SIGKILL.
    let inflight = {
        let url = server.url("/v1/events");
        let body = join(&lines[half..]);
        let admin = admin.clone();
        std::thread::spawn(move || {
            let r = agent().post(&url).header("Authorization", &format!("Bearer {admin}")).send(&body[..]);
            r.map(|r| r.status().as_u16()).ok()
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    server.kill9();
    let late = inflight.join().expect("thread");
    let s = store.to_str().expect("utf-8");
    ok(&["verify", "--store", s]);
    // Every access acknowledged is there: as many as `ingest` stores from
    // the acknowledged lines (all of them, when the last body was acknowledged too).
    let acknowledged = dir.path().join("acknowledged.jsonl");
    let upto = if late == Some(200) { lines.len() } else { half };
    std::fs::write(&acknowledged, join(&lines[..upto])).expect("write");
    let reference = dir.path().join("reference");
    let q = dir.path().join("q.jsonl");
    let (r, a_, qq) =
        (reference.to_str().expect("utf-8"), acknowledged.to_str().expect("utf-8"), q.to_str().expect("utf-8"));
    ok(&["ingest", "--store", r, "--quarantine", qq, a_]);
    let everything = r#"src_endpoint.ip cidr "0.0.0.0/0" or src_endpoint.ip cidr "::/0""#;
    let events = |store: &str| {
        let out = ok(&["scope", "--store", store, "--where", everything, "--format", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).expect("json")["events"].as_u64().expect("events")
    };
    let (crashed, expected) = (events(s), events(r));
    assert!(crashed >= expected, "{crashed} accesses stored, {expected} acknowledged");

    // Restarted, it knows what was issued before the crash.
    let issued = lines[..half]
        .iter()
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .find(|v| v["class_uid"] == 3002 && v["session"]["expiration_time"].is_i64())
        .expect("an issuance in the first half");
    let server = Server::start(&store, &[]);
    let check = json!({
        "token": issued["session"]["uid"], "key": issued["session"]["issuer"], "principal": issued["user"]["uid"],
        "time": issued["time"].as_i64().expect("time") + 1,
    });
    let req = a.post(&server.url("/v1/check")).header("x-piiwatch-auth", &admin);
    let (status, text, _) = send(req, check.to_string().as_bytes());
    assert_eq!((status, text.as_str()), (200, r#"{"allow":true,"reason":"issued"}"#));
    let mut other = check.clone();
    other["principal"] = json!("someone-else");
    let req = a.post(&server.url("/v1/check")).header("x-piiwatch-auth", &admin);
    assert_eq!(send(req, other.to_string().as_bytes()).1, r#"{"allow":false,"reason":"principal_mismatch"}"#);
    let mut expired = check.clone();
    expired["time"] = json!(issued["session"]["expiration_time"].as_i64().expect("exp") + 1);
    let req = a.post(&server.url("/v1/check")).header("x-piiwatch-auth", &admin);
    assert_eq!(send(req, expired.to_string().as_bytes()).1, r#"{"allow":false,"reason":"token_expired"}"#);
    assert!(server.terminate().success());
}

/// What a receiver was sent: id, timestamp, signature, body, and the status it answered.
type Delivery = (String, String, String, String, u16);

/// A webhook receiver on loopback: records what it is sent, answers with
/// the status it is told (503 with `Retry-After` while "down").
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver binds");
        let url = format!("http://{}/hook", server.server_addr().to_ip().expect("ip"));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let (g, s) = (got.clone(), status.clone());
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let header = |n: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(n))
                        .map(|h| h.value.as_str().to_owned())
                        .unwrap_or_default()
                };
                let (id, ts, sig) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let code = s.load(std::sync::atomic::Ordering::SeqCst);
                g.lock().expect("got").push((id, ts, sig, body, code));
                let mut resp = tiny_http::Response::from_string("").with_status_code(code);
                if code == 503 {
                    resp.add_header(tiny_http::Header::from_bytes("Retry-After", "1").expect("header"));
                }
                let _ = req.respond(resp);
            }
        });
        Receiver { url, got, status }
    }

    fn set(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ids accepted (answered 2xx), each with a valid signature under `secret`.
    fn accepted(&self, secret: &str) -> std::collections::BTreeMap<String, String> {
        use hmac::{KeyInit, Mac};
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").expect("whsec_"))
            .expect("base64");
        let mut out = std::collections::BTreeMap::new();
        for (id, ts, sig, body, code) in self.got.lock().expect("got").iter() {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
            mac.update(format!("{id}.{ts}.{body}").as_bytes());
            let expected =
                format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
            assert_eq!(sig, &expected, "signature of {id}");
            let age = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
                as i64)
                - ts.parse::<i64>().expect("timestamp");
            assert!((-5..600).contains(&age), "timestamp {ts} is now");
            if (200..300).contains(code) {
                out.insert(id.clone(), body.clone());
            }
        }
        out
    }
}

/// The message id of a stored finding: what a receiver dedupes by.
fn message_id(line: &str) -> String {
    use sha2::Digest;
    format!("msg_{}", &hex_string(&sha2::Sha256::digest(line.as_bytes()))[..32])
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every finding reaches the receiver, signed, through an outage (503 with
/// Retry-After) and a `kill -9` of the server during it; retries keep their
/// id. The events arrive as a shipper sends them, through Splunk HEC.
#[test]
fn webhooks_deliver_every_finding_through_an_outage_and_a_crash() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let secret = String::from_utf8(ok(&["webhook", "secret", "--store", store.to_str().expect("utf-8")]).stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let receiver = Receiver::start(200);
    let hook = format!("soc={}", receiver.url);
    let args = ["--idle-flush", "0.2", "--webhook", &hook, "--webhook-backoff", "0.05", "--webhook-max-backoff", "0.3"];
    let server = Server::start(&store, &args);
    let a = agent();
    let lines = lines_of(&sim);
    let half = lines.len() / 2;
    let post = |server: &Server, chunk: &[Vec<u8>]| {
        let req = a.post(&server.url("/services/collector/raw")).header("Authorization", &format!("Splunk {admin}"));
        assert_eq!(send(req, &join(chunk)).0, 200);
    };
    post(&server, &lines[..half]);
    let stored = |server: &Server| {
        let (status, body) = get(&a, &server.url("/v1/alerts"), Some(&admin));
        assert_eq!(status, 200);
        body.lines().map(message_id).collect::<std::collections::BTreeSet<_>>()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the first findings", &|| !stored(&server).is_empty());
    wait_for("their delivery", &|| stored(&server).iter().all(|id| receiver.accepted(&secret).contains_key(id)));
    // The receiver goes down; more findings are stored; the server is killed mid-outage.
    receiver.set(503);
    let before = stored(&server).len();
    post(&server, &lines[half..]);
    wait_for("the later findings", &|| stored(&server).len() > before);
    wait_for("a refused attempt", &|| receiver.got.lock().expect("got").iter().any(|r| r.4 == 503));
    let refused: Vec<String> =
        receiver.got.lock().expect("got").iter().filter(|r| r.4 == 503).map(|r| r.0.clone()).collect();
    server.kill9();
    let server = Server::start(&store, &args);
    receiver.set(200);
    // Once its state is rebuilt (the replay may store findings the crash cut
    // off), every finding it holds reaches the receiver.
    wait_for("readiness", &|| get(&a, &server.url("/readyz"), None).0 == 200);
    wait_for("every finding delivered", &|| {
        let got = receiver.accepted(&secret);
        stored(&server).iter().all(|id| got.contains_key(id))
    });
    let got = receiver.accepted(&secret);
    assert!(refused.iter().all(|id| got.contains_key(id)), "a retry keeps its id");
    // What was delivered is the finding as stored (pseudonymised), byte for byte.
    let (_, body) = get(&a, &server.url("/v1/alerts"), Some(&admin));
    for line in body.lines() {
        assert_eq!(got.get(&message_id(line)).map(String::as_str), Some(line));
    }
    assert!(server.terminate().success());
}

/// A receiver that keeps failing: its messages go dead after the last
/// attempt, an operator sees them and replays them, and they arrive.
#[test]
fn dead_letters_are_listed_and_replayed() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let receiver = Receiver::start(500);
    let hook = format!("flaky={}", receiver.url);
    let server = Server::start(
        &store,
        &["--idle-flush", "0.2", "--webhook", &hook, "--webhook-max-attempts", "2", "--webhook-backoff", "0.05"],
    );
    let a = agent();
    let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
    assert_eq!(send(req, &join(&lines_of(&sim))).0, 200);
    let s = store.to_str().expect("utf-8");
    let dead = || -> Vec<Value> {
        serde_json::from_slice(&ok(&["webhook", "dead", "--store", s, "--format", "json"]).stdout).expect("json")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerts = loop {
        let n = get(&a, &server.url("/v1/alerts"), Some(&admin)).1.lines().count();
        if n > 0 && dead().len() == n {
            break n;
        }
        assert!(Instant::now() < deadline, "messages did not go dead");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(dead().iter().all(|m| m["attempts"] == 2 && m["error"] == "HTTP 500" && m["endpoint"] == "flaky"));
    let (_, listed) = get(&a, &server.url("/v1/webhooks"), Some(&admin));
    assert_eq!(serde_json::from_str::<Value>(&listed).expect("json")["dead"].as_array().map(Vec::len), Some(alerts));
    // Back up; replayed from the command line while the server runs.
    receiver.set(204);
    ok(&["webhook", "replay", "--store", s]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.got.lock().expect("got").iter().filter(|r| r.4 == 204).count() < alerts {
        assert!(Instant::now() < deadline, "replayed messages did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dead().is_empty());
    assert!(server.terminate().success());
}

/// Slow clients (headers trickling in) and a flood of connections over the
/// limit are cut after the header deadline; a normal client is still served.
#[test]
fn slow_clients_and_floods_do_not_starve_others() {
    let dir = tmp();
    let store = dir.path().join("store");
    let server = Server::start(&store, &["--header-timeout", "1", "--max-connections", "16"]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..48 {
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else { continue };
        let _ = s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Le");
        held.push(s);
    }
    let started = Instant::now();
    let (status, _) = get(&agent(), &server.url("/healthz"), None);
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(20), "a normal client waited {waited:?}");
    // The slow ones were closed by the server.
    let mut closed = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 512];
        // Closed: end of stream (or an error reply, then the end).
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        closed += 1;
    }
    assert_eq!(closed, held.len());
    assert!(server.terminate().success());
}

/// `/openapi.json` names only routes the server has (none answers 404 or
/// 405 to the method the document gives it).
#[test]
fn openapi_document_matches_the_routes() {
    let dir = tmp();
    let store = dir.path().join("store");
    let server = Server::start(&store, &[]);
    let a = agent();
    let (status, body) = get(&a, &server.url("/openapi.json"), None);
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{}", paths.len());
    for (path, item) in paths {
        let url = server.url(&path.replace("{path}", "v1/orders/42"));
        for (method, _) in item.as_object().expect("item").iter().filter(|(m, _)| *m != "parameters") {
            let status = match method.as_str() {
                "get" => a.get(&url).call().expect("answer").status().as_u16(),
                "post" => a.post(&url).send(&b""[..]).expect("answer").status().as_u16(),
                "put" => a.put(&url).send(&b""[..]).expect("answer").status().as_u16(),
                "patch" => a.patch(&url).send(&b""[..]).expect("answer").status().as_u16(),
                "delete" => a.delete(&url).call().expect("answer").status().as_u16(),
                other => panic!("method {other}"),
            };
            assert!(status != 404 && status != 405, "{method} {path}: {status}");
        }
    }
    assert!(server.terminate().success());
}

/// The shipped Vector, Fluent Bit and Envoy configurations name what the server serves.
#[test]
fn deploy_snippets_point_at_the_served_interfaces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let vector: toml::Table =
        std::fs::read_to_string(root.join("vector.toml")).expect("vector.toml").parse().expect("TOML");
    let sink = &vector["sinks"]["piiwatch"];
    assert_eq!(sink["type"].as_str(), Some("splunk_hec_logs"));
    assert_eq!(sink["endpoint"].as_str(), Some("http://127.0.0.1:8470"));
    assert_eq!(sink["acknowledgements"]["indexer_acknowledgements_enabled"].as_bool(), Some(false));
    let fluent = std::fs::read_to_string(root.join("fluent-bit.conf")).expect("fluent-bit.conf");
    let output = fluent.split("[OUTPUT]").nth(1).expect("an [OUTPUT] section");
    let keys: std::collections::HashMap<String, String> = output
        .lines()
        .filter_map(|l| l.trim().split_once(char::is_whitespace))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert_eq!(keys.get("name").map(String::as_str), Some("splunk"));
    assert_eq!(keys.get("port").map(String::as_str), Some("8470"));
    assert_eq!(keys.get("splunk_send_raw").map(String::as_str), Some("Off"), "records go under `event`");
    let envoy = std::fs::read_to_string(root.join("envoy.yaml")).expect("envoy.yaml");
    for needle in [
        "path_prefix: /v1/check",
        "key: x-piiwatch-auth",
        "exact: authorization",
        "exact: x-forwarded-for",
        "port_value: 8470",
    ] {
        assert!(envoy.contains(needle), "envoy.yaml lacks {needle:?}");
    }
}

/// With a fan-out limit, a source that read more distinct subjects than the
/// limit in the window is refused even with an issued token; others are not.
#[test]
fn fanout_limit_refuses_a_scraping_source() {
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let server = Server::start(&store, &["--check-fanout-limit", "50", "--check-fanout-window", "3600"]);
    let a = agent();
    let t0 = 1_743_433_200_000i64;
    let mut body = format!(
        r#"{{"class_uid":3002,"activity_id":1,"status_id":1,"time":{t0},"user":{{"uid":"c1"}},"session":{{"uid":"t1","issuer":"k1"}}}}"#
    );
    body.push('\n');
    for i in 0..60 {
        body.push_str(&format!(
            r#"{{"class_uid":6003,"time":{},"activity_id":2,"status_id":1,"actor":{{"user":{{"uid":"c1"}},"session":{{"uid":"t1","issuer":"k1"}}}},"src_endpoint":{{"ip":"198.51.100.7"}},"api":{{"operation":"GET /v1/orders/{{id}}"}},"resources":[{{"uid":"s{i}","type":"customer","labels":["name"]}}]}}"#,
            t0 + 1000 + i
        ));
        body.push('\n');
    }
    let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
    assert_eq!(send(req, body.as_bytes()).1, r#"{"accepted":61,"quarantined":0}"#);
    let ask = |ip: &str| {
        let q = json!({"token": "t1", "key": "k1", "principal": "c1", "ip": ip, "time": t0 + 5000});
        let req = a.post(&server.url("/v1/check")).header("x-piiwatch-auth", &admin);
        send(req, q.to_string().as_bytes()).1
    };
    assert_eq!(ask("198.51.100.7"), r#"{"allow":false,"reason":"fanout_over_limit"}"#);
    assert_eq!(ask("203.0.113.9"), r#"{"allow":true,"reason":"issued"}"#);
    assert!(server.terminate().success());
}

/// The directory is read again on SIGHUP and on `POST /v1/admin/reload`; a
/// file that does not parse leaves the previous one in force.
#[test]
fn reload_takes_a_new_directory_and_keeps_the_old_on_error() {
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let directory = dir.path().join("directory.json");
    let write_dir = |retired: &str, left: &str| {
        let d = json!({
            "principals": [{"uid": "emp-1", "kind": "employee", "left": left}],
            "keys": [{"id": "k1", "purpose": "token-signing", "retired": retired}],
            "networks": []
        });
        std::fs::write(&directory, d.to_string()).expect("write");
    };
    write_dir("2099-01-01T00:00:00Z", "2099-01-01T00:00:00Z");
    let server = Server::start(&store, &["--directory", directory.to_str().expect("utf-8")]);
    let a = agent();
    let t0 = 1_743_433_200_000i64;
    let issue = format!(
        "{}\n{}\n",
        json!({"class_uid": 3002, "activity_id": 1, "status_id": 1, "time": t0, "user": {"uid": "c1"}, "session": {"uid": "t1", "issuer": "k1"}}),
        json!({"class_uid": 3002, "activity_id": 1, "status_id": 1, "time": t0, "user": {"uid": "emp-1"}, "session": {"uid": "t2", "issuer": "k2"}})
    );
    let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
    assert_eq!(send(req, issue.as_bytes()).0, 200);
    let ask = |token: &str, principal: &str| {
        let q = json!({"token": token, "principal": principal, "time": t0 + 60_000});
        let req = a.post(&server.url("/v1/check")).header("x-piiwatch-auth", &admin);
        serde_json::from_str::<Value>(&send(req, q.to_string().as_bytes()).1).expect("json")["reason"]
            .as_str()
            .expect("reason")
            .to_owned()
    };
    assert_eq!(ask("t1", "c1"), "issued");
    assert_eq!(ask("t2", "emp-1"), "issued");
    // Key k1 retired: through the admin endpoint.
    write_dir("2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z");
    let reload = || {
        let req = a.post(&server.url("/v1/admin/reload")).header("Authorization", &format!("Bearer {admin}"));
        send(req, b"")
    };
    let (status, body, _) = reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask("t1", "c1"), "key_retired");
    // A broken file: refused, the previous directory stays.
    std::fs::write(&directory, "{ not json").expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 400);
    assert!(body.contains("previous configuration stays"), "{body}");
    assert_eq!(ask("t1", "c1"), "key_retired");
    // emp-1 has left: through SIGHUP.
    write_dir("2020-01-01T00:00:00Z", "2020-06-01T00:00:00Z");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask("t2", "emp-1") != "principal_offboarded" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.terminate().success());
}

/// The findings a server reports, as (uid, activity, count, time): read
/// back from the store by a server started on it.
fn stored_findings(store: &Path, admin: &str) -> std::collections::BTreeSet<(String, u64, u64, i64)> {
    let server = Server::start(store, &[]);
    let (status, body) = get(&agent(), &server.url("/v1/alerts"), Some(admin));
    assert_eq!(status, 200);
    assert!(server.terminate().success());
    body.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| {
            (
                v["finding_info"]["uid"].as_str().expect("uid").to_owned(),
                v["activity_id"].as_u64().expect("activity"),
                v["count"].as_u64().unwrap_or(0),
                v["time"].as_i64().expect("time"),
            )
        })
        .collect()
}

/// Detection state survives `kill -9`: a server killed mid-stream and
/// restarted (its engine rebuilt from the store) reports exactly the
/// findings of one that ran without interruption over the same bodies.
#[test]
fn detection_state_survives_a_kill9() {
    let sim = simulation("coupang", 2000, 1);
    let lines = lines_of(&sim);
    let bodies: Vec<Vec<u8>> = lines.chunks(400).map(join).collect();
    let directory = sim.join("directory.json");
    let run = |kill_at: Option<usize>| {
        let dir = tmp();
        let store = dir.path().join("store");
        let admin = token(&store, "admin", "ops");
        // No idle release: the two runs see the same event order whatever the pauses.
        let args = ["--idle-flush", "3600", "--directory", directory.to_str().expect("utf-8")];
        let mut server = Server::start(&store, &args);
        let a = agent();
        for (i, body) in bodies.iter().enumerate() {
            if Some(i) == kill_at {
                server.kill9();
                server = Server::start(&store, &args);
            }
            let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
            assert_eq!(send(req, body).0, 200);
        }
        assert!(server.terminate().success());
        let found = stored_findings(&store, &admin);
        let audit = support::ledger::ledger_text(&store);
        (found, audit.contains("detection state rebuilt"))
    };
    let (whole, _) = run(None);
    assert!(whole.len() > 5, "{whole:?}");
    let (restarted, audited) = run(Some(bodies.len() / 2));
    let missing: Vec<_> = whole.difference(&restarted).collect();
    let extra: Vec<_> = restarted.difference(&whole).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing after the restart: {missing:?}\nextra: {extra:?}");
    assert!(audited, "the rebuild is recorded in the audit chain");
}

/// A changed detector configuration on reload: a broken one is refused and
/// changes nothing; a good one replaces the engine, which replays the
/// store, so a detector switched on finds what it would have found over
/// everything stored (the same findings as `detect` with it on).
#[test]
fn reload_takes_a_new_detector_configuration() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let config = dir.path().join("detectors.toml");
    std::fs::write(&config, "[forged_token]\nenabled = false\n").expect("write");
    let directory = sim.join("directory.json");
    let (c, d) = (config.to_str().expect("utf-8"), directory.to_str().expect("utf-8"));
    let server = Server::start(&store, &["--config", c, "--directory", d, "--idle-flush", "0.2"]);
    let a = agent();
    post_simulation(&a, &server, &admin, &sim);
    let forged = || {
        let (status, body) = get(&a, &server.url("/v1/alerts"), Some(&admin));
        assert_eq!(status, 200);
        uids(&body).into_iter().filter(|u| u.starts_with("pw-forged-token-")).collect::<Vec<_>>()
    };
    let reload = || {
        let req = a.post(&server.url("/v1/admin/reload")).header("Authorization", &format!("Bearer {admin}"));
        send(req, b"")
    };
    let others = || {
        let (_, body) = get(&a, &server.url("/v1/alerts"), Some(&admin));
        body.lines().filter(|l| !l.contains("pw-forged-token-")).map(str::to_owned).collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(forged().is_empty(), "forged-token is off");
    let before = others();
    assert!(!before.is_empty(), "other detectors report");
    // A configuration that does not parse: 400, nothing changes.
    std::fs::write(&config, "[forged_token]\nenabled = \"yes\"\n").expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("detectors.toml") && body.contains("previous configuration stays"), "{body}");
    // On: the engine is rebuilt from the store and finds the forgeries.
    std::fs::write(&config, "[forged_token]\nenabled = true\n").expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stored events replayed"), "{body}");
    let out = ok(&["detect", "--directory", d, sim.join("events.jsonl.gz").to_str().expect("utf-8")]);
    let expected: Vec<String> =
        uids(&String::from_utf8_lossy(&out.stdout)).into_iter().filter(|u| u.starts_with("pw-forged-token-")).collect();
    assert!(!expected.is_empty(), "coupang has forged tokens");
    let deadline = Instant::now() + Duration::from_secs(30);
    while forged() != expected {
        assert!(Instant::now() < deadline, "after the reload: {:?}, detect: {expected:?}", forged());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The other detectors' findings, reported again by the replay, are not stored twice.
    assert_eq!(others(), before);
    // Unchanged on a second reload: no replay.
    let (status, body, _) = reload();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unchanged"), "{body}");
    assert_eq!(get(&a, &server.url("/readyz"), None).0, 200);
    assert!(server.terminate().success());
}

/// Webhook receivers from a file, changed on reload: a receiver added gets
/// the findings stored from then on, signed, and none from before; one
/// removed is stopped; a file naming a bad receiver changes nothing.
#[test]
fn reload_changes_the_webhook_receivers() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8");
    let admin = token(&store, "admin", "ops");
    let secret = String::from_utf8(ok(&["webhook", "secret", "--store", s]).stdout).expect("utf-8").trim().to_owned();
    let hooks = dir.path().join("webhooks.txt");
    std::fs::write(&hooks, "# none yet\n").expect("write");
    let server = Server::start(&store, &["--idle-flush", "0.2", "--webhooks", hooks.to_str().expect("utf-8")]);
    let a = agent();
    let lines = lines_of(&sim);
    let half = lines.len() / 2;
    let post = |chunk: &[Vec<u8>]| {
        let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {admin}"));
        assert_eq!(send(req, &join(chunk)).0, 200);
    };
    let stored = || {
        let (status, body) = get(&a, &server.url("/v1/alerts"), Some(&admin));
        assert_eq!(status, 200);
        body.lines().map(message_id).collect::<std::collections::BTreeSet<_>>()
    };
    let reload = || {
        let req = a.post(&server.url("/v1/admin/reload")).header("Authorization", &format!("Bearer {admin}"));
        send(req, b"")
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    post(&lines[..half]);
    wait_for("the first findings", &|| !stored().is_empty());
    let before = stored();
    // A bad receiver: 400, nothing changes.
    std::fs::write(&hooks, "soc=ftp://nowhere\n").expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("webhooks.txt:1") && !body.contains("nowhere"), "the URL may be a secret: {body}");
    let receiver = Receiver::start(200);
    std::fs::write(&hooks, format!("# the SOC\nsoc={}\n", receiver.url)).expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 receivers (1 new or changed, 0 removed)"), "{body}");
    let (_, listed) = get(&a, &server.url("/v1/webhooks"), Some(&admin));
    assert!(listed.contains("\"soc\""), "{listed}");
    post(&lines[half..]);
    wait_for("later findings", &|| stored().len() > before.len());
    let later: Vec<String> = stored().difference(&before).cloned().collect();
    wait_for("their delivery", &|| {
        let got = receiver.accepted(&secret);
        later.iter().all(|id| got.contains_key(id))
    });
    assert!(
        receiver.accepted(&secret).keys().all(|id| !before.contains(id)),
        "a new receiver gets findings from when it was added"
    );
    // Removed: no more deliveries.
    std::fs::write(&hooks, "").expect("write");
    let (status, body, _) = reload();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("0 receivers (0 new or changed, 1 removed)"), "{body}");
    assert!(server.terminate().success());
}
