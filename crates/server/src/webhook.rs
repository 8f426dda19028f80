//! Alert delivery: every stored finding is posted to each configured
//! webhook, signed per the Standard Webhooks scheme, from a durable outbox,
//! with retries, backoff and `Retry-After`, so that a receiver's outage
//! loses nothing and a retry keeps its id.
//!
//! The outbox is `DIR/outbox.jsonl`, append-only, written under
//! `DIR/outbox.lock` (so `piiwatch webhook replay` can append while a
//! server runs): a message is `enqueue`d (fsync'd) once the finding it
//! carries is durable in the ledger, then `delivered` or, after the last
//! attempt, `dead`; a dead message comes back with `replay`. A message's id
//! is a hash of the finding as stored, so a finding enqueued twice (a crash
//! between the ledger's commit and the outbox's write is made good at the
//! next start) is one message. The findings themselves are the stored,
//! pseudonymised ones: the outbox holds no personal data either.
//!
//! Signing: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,BASE64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`,
//! where the key is the base64 after `whsec_` in the secret
//! (`piiwatch webhook secret` prints it; derived from the store's secret).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::appendfile;

/// What a receiver is sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The finding itself (OCSF Detection Finding JSON, as stored).
    Json,
    /// A Slack incoming-webhook message (`{"text": …}`).
    Slack,
}

/// One receiver.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name in the outbox (stable across restarts: the URL's host and path by default).
    pub name: String,
    /// Where to post.
    pub url: String,
    /// What to post.
    pub format: Format,
}

impl Endpoint {
    /// A receiver from `URL`, `slack:URL` or `NAME=URL` / `NAME=slack:URL`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, rest) = match spec.split_once('=') {
            Some((n, r)) if !n.contains(':') && !n.contains('/') => (Some(n.to_owned()), r),
            _ => (None, spec),
        };
        let (format, url) = match rest.strip_prefix("slack:") {
            Some(u) => (Format::Slack, u),
            None => (Format::Json, rest),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("webhook {spec:?}: the URL must start with http:// or https://"));
        }
        let name = name.unwrap_or_else(|| {
            // Never the query (it may carry a secret, as Slack's do in the path; keep only the host).
            let host = url.split("://").nth(1).unwrap_or(url).split(['/', '?']).next().unwrap_or("");
            format!("{host}-{}", &hex::encode(Sha256::digest(url.as_bytes()))[..8])
        });
        Ok(Self { name, url: url.to_owned(), format })
    }
}

/// Retry policy.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Attempts before a message is dead.
    pub max_attempts: u32,
    /// First retry's wait; doubles each time.
    pub backoff: Duration,
    /// Longest wait between attempts (also caps a receiver's `Retry-After`).
    pub max_backoff: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 30,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What went wrong with the outbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No such dead message.
    #[error("no dead message {0}")]
    Unknown(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One line of the outbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    op: String,
    endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// The finding (as stored), on `enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    /// On `subscribe`: findings stored before this endpoint was configured (not sent to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    at: i64,
}

/// A message waiting or dead.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// Its id (`webhook-id`).
    pub id: String,
    /// Its receiver's name.
    pub endpoint: String,
    /// The finding, as stored.
    #[serde(skip)]
    pub payload: String,
    /// Attempts so far (dead messages).
    pub attempts: u32,
    /// The last failure (dead messages).
    pub error: Option<String>,
}

/// The message id of a finding as stored.
pub fn message_id(stored: &str) -> String {
    format!("msg_{}", &hex::encode(Sha256::digest(stored.as_bytes()))[..32])
}

#[derive(Default)]
struct Book {
    pending: HashMap<String, VecDeque<Message>>,
    dead: Vec<Message>,
    /// (endpoint, id) ever enqueued.
    known: HashSet<(String, String)>,
    /// Endpoint → findings stored before it subscribed.
    subscribed: HashMap<String, u64>,
    /// The file's length as read or written by us.
    len: u64,
}

impl Book {
    fn apply(&mut self, r: Record) {
        let id = r.id.clone().unwrap_or_default();
        match r.op.as_str() {
            "subscribe" => {
                self.subscribed.entry(r.endpoint).or_insert(r.from.unwrap_or(0));
            }
            "enqueue" if self.known.insert((r.endpoint.clone(), id.clone())) => {
                let m = Message {
                    id,
                    endpoint: r.endpoint.clone(),
                    payload: r.payload.unwrap_or_default(),
                    attempts: 0,
                    error: None,
                };
                self.pending.entry(r.endpoint).or_default().push_back(m);
            }
            "delivered" => {
                if let Some(q) = self.pending.get_mut(&r.endpoint) {
                    q.retain(|m| m.id != id);
                }
            }
            "dead" => {
                if let Some(q) = self.pending.get_mut(&r.endpoint)
                    && let Some(i) = q.iter().position(|m| m.id == id)
                    && let Some(mut m) = q.remove(i)
                {
                    m.attempts = r.attempts.unwrap_or(0);
                    m.error = r.error;
                    self.dead.push(m);
                }
            }
            "replay" => {
                if let Some(i) = self.dead.iter().position(|m| m.id == id && m.endpoint == r.endpoint) {
                    let mut m = self.dead.remove(i);
                    m.attempts = 0;
                    m.error = None;
                    self.pending.entry(r.endpoint).or_default().push_back(m);
                }
            }
            _ => {}
        }
    }
}

/// Reads records from `offset`; returns them and the offset after the last whole line.
fn read_from(path: &Path, offset: u64) -> Result<(Vec<Record>, u64), Error> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    };
    f.seek(io::SeekFrom::Start(offset)).map_err(io_err(format!("cannot read {}", path.display())))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err(format!("cannot read {}", path.display())))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in bytes[..whole].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        // A torn line (a crash mid-write) was never acknowledged: skip it.
        if let Ok(r) = serde_json::from_slice(line) {
            out.push(r);
        }
    }
    Ok((out, offset + whole as u64))
}

fn now_ms() -> i64 {
    crate::now_ms()
}

/// The outbox, shared by the service thread (which enqueues) and the delivery threads.
pub struct Outbox {
    path: PathBuf,
    lock: PathBuf,
    book: Mutex<Book>,
    wake: Condvar,
}

impl Outbox {
    /// Reads `DIR/outbox.jsonl`.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("outbox.jsonl");
        let (records, len) = read_from(&path, 0)?;
        let mut book = Book::default();
        for r in records {
            book.apply(r);
        }
        book.len = len;
        Ok(Self { path, lock: dir.join("outbox.lock"), book: Mutex::new(book), wake: Condvar::new() })
    }

    /// Appends records under the lock (fsync'd), first taking in what others appended.
    fn append(&self, records: &[Record]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let _lock = appendfile::lock(&self.lock).map_err(io_err(format!("cannot lock {}", self.lock.display())))?;
        let mut book = self.book.lock().map_err(|_| io_err("outbox")(io::Error::other("poisoned")))?;
        self.catch_up(&mut book)?;
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(|e| io_err("cannot encode")(e.into()))?);
            text.push('\n');
        }
        appendfile::append_synced(&self.path, text.as_bytes())
            .map_err(io_err(format!("cannot write {}", self.path.display())))?;
        book.len += text.len() as u64;
        for r in records {
            book.apply(r.clone());
        }
        drop(book);
        self.wake.notify_all();
        Ok(())
    }

    /// Takes in records appended by another process (`webhook replay`).
    fn catch_up(&self, book: &mut Book) -> Result<(), Error> {
        let len = fs::metadata(&self.path).map_or(0, |m| m.len());
        if len > book.len {
            let (records, end) = read_from(&self.path, book.len)?;
            for r in records {
                book.apply(r);
            }
            book.len = end;
        }
        Ok(())
    }

    /// Makes sure every endpoint has a subscription (from the findings stored
    /// so far, `stored`, when it is new) and every finding stored since is
    /// enqueued for it.
    pub fn reconcile(&self, endpoints: &[Endpoint], stored: &[String]) -> Result<(), Error> {
        let mut records = Vec::new();
        {
            let book = self.book.lock().map_err(|_| io_err("outbox")(io::Error::other("poisoned")))?;
            for e in endpoints {
                let from = match book.subscribed.get(&e.name) {
                    Some(&f) => f,
                    None => {
                        records.push(Record {
                            op: "subscribe".into(),
                            endpoint: e.name.clone(),
                            id: None,
                            payload: None,
                            from: Some(stored.len() as u64),
                            attempts: None,
                            error: None,
                            at: now_ms(),
                        });
                        continue;
                    }
                };
                for line in stored.iter().skip(usize::try_from(from).unwrap_or(usize::MAX)) {
                    let id = message_id(line);
                    if !book.known.contains(&(e.name.clone(), id.clone())) {
                        records.push(enqueue(&e.name, id, line));
                    }
                }
            }
        }
        self.append(&records)
    }

    /// Enqueues findings (as stored, now durable) for every endpoint.
    pub fn enqueue(&self, endpoints: &[Endpoint], lines: &[String]) -> Result<(), Error> {
        let records: Vec<Record> =
            endpoints.iter().flat_map(|e| lines.iter().map(|l| enqueue(&e.name, message_id(l), l))).collect();
        self.append(&records)
    }

    /// Dead messages.
    pub fn dead(&self) -> Vec<Message> {
        let _ = self.book.lock().map(|mut b| self.catch_up(&mut b));
        self.book.lock().map(|b| b.dead.clone()).unwrap_or_default()
    }

    /// Messages waiting, per endpoint.
    pub fn pending(&self) -> HashMap<String, usize> {
        self.book.lock().map(|b| b.pending.iter().map(|(k, q)| (k.clone(), q.len())).collect()).unwrap_or_default()
    }

    /// Sends dead messages again (all when `ids` is empty); returns how many.
    pub fn replay(&self, ids: &[String]) -> Result<usize, Error> {
        let dead = self.dead();
        for id in ids {
            if !dead.iter().any(|m| &m.id == id) {
                return Err(Error::Unknown(id.clone()));
            }
        }
        let records: Vec<Record> = dead
            .iter()
            .filter(|m| ids.is_empty() || ids.contains(&m.id))
            .map(|m| Record {
                op: "replay".into(),
                endpoint: m.endpoint.clone(),
                id: Some(m.id.clone()),
                payload: None,
                from: None,
                attempts: None,
                error: None,
                at: now_ms(),
            })
            .collect();
        let n = records.len();
        self.append(&records)?;
        Ok(n)
    }

    fn outcome(&self, endpoint: &str, id: &str, dead: Option<(u32, String)>) -> Result<(), Error> {
        let (op, attempts, error) = match dead {
            None => ("delivered", None, None),
            Some((a, e)) => ("dead", Some(a), Some(e)),
        };
        self.append(&[Record {
            op: op.into(),
            endpoint: endpoint.to_owned(),
            id: Some(id.to_owned()),
            payload: None,
            from: None,
            attempts,
            error,
            at: now_ms(),
        }])
    }

    /// The head of an endpoint's queue, waiting up to `wait` for one (and
    /// taking in replays appended by others meanwhile).
    fn next(&self, endpoint: &str, wait: Duration) -> Option<Message> {
        let mut book = self.book.lock().ok()?;
        let _ = self.catch_up(&mut book);
        if let Some(m) = book.pending.get(endpoint).and_then(|q| q.front()) {
            return Some(m.clone());
        }
        let (mut book, _) = self.wake.wait_timeout(book, wait).ok()?;
        let _ = self.catch_up(&mut book);
        book.pending.get(endpoint).and_then(|q| q.front()).cloned()
    }
}

fn enqueue(endpoint: &str, id: String, line: &str) -> Record {
    Record {
        op: "enqueue".into(),
        endpoint: endpoint.to_owned(),
        id: Some(id),
        payload: Some(line.to_owned()),
        from: None,
        attempts: None,
        error: None,
        at: now_ms(),
    }
}

/// The signing secret (`whsec_…`) of a store, derived from its secret.
pub fn secret(store_secret: &store::Secret) -> String {
    let key = store_secret.derive(b"piiwatch webhook signing v1");
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// `webhook-signature` for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD.decode(key).unwrap_or_else(|_| key.as_bytes().to_vec());
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The body a receiver gets.
fn body(format: Format, stored: &str) -> Vec<u8> {
    match format {
        Format::Json => stored.as_bytes().to_vec(),
        Format::Slack => {
            let v: serde_json::Value = serde_json::from_str(stored).unwrap_or_default();
            let fi = &v["finding_info"];
            let sev = ["", "informational", "low", "medium", "high", "critical"]
                .get(v["severity_id"].as_u64().unwrap_or(0) as usize)
                .copied()
                .unwrap_or("unknown");
            let text = format!(
                "[piiwatch · {sev}] {} ({}; {} events; finding {})",
                fi["title"].as_str().unwrap_or("finding"),
                fi["analytic"]["name"].as_str().unwrap_or("?"),
                v["count"].as_u64().unwrap_or(0),
                fi["uid"].as_str().unwrap_or("?"),
            );
            serde_json::json!({ "text": text }).to_string().into_bytes()
        }
    }
}

/// Posts every message of one endpoint in order, until `stop`.
pub fn deliver(outbox: &Arc<Outbox>, endpoint: &Endpoint, secret: &str, policy: Policy, stop: &Arc<AtomicBool>) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(policy.timeout)).build().into();
    let mut attempts = 0u32;
    let mut current: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(m) = outbox.next(&endpoint.name, Duration::from_millis(500)) else { continue };
        if current.as_deref() != Some(&m.id) {
            current = Some(m.id.clone());
            attempts = 0;
        }
        attempts += 1;
        let payload = body(endpoint.format, &m.payload);
        let ts = now_ms() / 1000;
        let started = Instant::now();
        let result = agent
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &m.id)
            .header("webhook-timestamp", &ts.to_string())
            .header("webhook-signature", &sign(secret, &m.id, ts, &payload))
            .send(&payload[..]);
        metrics::histogram!("piiwatch_webhook_seconds").record(started.elapsed().as_secs_f64());
        let (failure, retry_after) = match result {
            Ok(r) if r.status().is_success() => (None, None),
            Ok(r) => {
                let after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                (Some(format!("HTTP {}", r.status().as_u16())), after)
            }
            // The URL may hold a secret (Slack's do): name the endpoint, not the URL.
            Err(e) => (Some(transport_error(&e)), None),
        };
        let outcome = match &failure {
            None => "delivered",
            Some(_) if attempts >= policy.max_attempts => "dead",
            Some(_) => "retry",
        };
        metrics::counter!("piiwatch_webhook_attempts_total", "endpoint" => endpoint.name.clone(), "outcome" => outcome)
            .increment(1);
        let recorded = match (&failure, outcome) {
            (None, _) => outbox.outcome(&endpoint.name, &m.id, None),
            (Some(e), "dead") => {
                tracing::error!(endpoint = %endpoint.name, id = %m.id, attempts, error = %e, "webhook message is dead");
                // Replayed later, it starts its attempts afresh.
                current = None;
                outbox.outcome(&endpoint.name, &m.id, Some((attempts, e.clone())))
            }
            (Some(e), _) => {
                let wait = retry_after
                    .unwrap_or_else(|| policy.backoff.saturating_mul(1u32 << (attempts - 1).min(20)))
                    .min(policy.max_backoff);
                tracing::warn!(endpoint = %endpoint.name, id = %m.id, attempts, error = %e, wait_ms = wait.as_millis() as u64, "webhook delivery failed; will retry");
                let until = Instant::now() + wait;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
                }
                Ok(())
            }
        };
        if let Err(e) = recorded {
            tracing::error!(error = %e, "cannot write the outbox");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// A transport failure, without the URL (it may hold a secret).
fn transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("connection failed: {}", io.kind()),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        _ => "request failed".into(),
    }
}
