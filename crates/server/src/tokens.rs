//! API tokens: `piiwatch token create|list|revoke` and the server's check
//! of `Authorization` headers.
//!
//! A token is `pw_` and 43 characters of base64url (32 random bytes); it is
//! shown once, when created. The store keeps only its SHA-256 (a secret of
//! 256 random bits needs no slow hash), in `DIR/tokens.jsonl`: one record
//! per line, append-only, each naming the SHA-256 of the line before it, so
//! a changed, removed or reordered line is found when the file is read. The
//! file is written under `DIR/tokens.lock`, its own lock, so tokens can be
//! created and revoked while a `serve` holds the store; a running server
//! reads the file again when it sees a token it does not know, and at most
//! a second after the file changes, so a revoked token stops working within
//! a second.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::appendfile;

/// What a token may do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Send events (`/v1/events`, Splunk HEC).
    Ingest,
    /// Ask the inline check.
    Check,
    /// Read findings, scope.
    Analyst,
    /// Everything.
    Admin,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Check => "check",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }

    /// Parses a role's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ingest" => Self::Ingest,
            "check" => Self::Check,
            "analyst" => Self::Analyst,
            "admin" => Self::Admin,
            _ => return None,
        })
    }

    /// Whether a token of this role may do what `need` allows.
    pub fn may(self, need: Role) -> bool {
        self == Self::Admin || self == need
    }
}

/// What went wrong with the token file.
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
    /// The file was altered.
    #[error("{path} line {line}: {why} (the token file was altered; no token is accepted until it is repaired)")]
    Altered {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A name already taken.
    #[error("a token named {0:?} exists already")]
    Taken(String),
    /// No such token.
    #[error("no token named {0:?}")]
    Unknown(String),
    /// A name with characters other than letters, digits, `-`, `_` and `.`.
    #[error("token name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// Randomness unavailable.
    #[error("cannot draw random bytes for a token")]
    Random,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One line of `tokens.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    /// `create` or `revoke`.
    op: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// SHA-256 of the token (hex), on `create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// When, epoch ms.
    at: i64,
    /// SHA-256 of the previous line (hex; zeros for the first).
    prev: String,
}

/// A token as `token list` shows it (never its value).
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Created, epoch ms.
    pub created: i64,
    /// Revoked, epoch ms.
    pub revoked: Option<i64>,
}

const FILE: &str = "tokens.jsonl";
const LOCK: &str = "tokens.lock";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// SHA-256 of a presented token.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The records of the file, checked link by link, and the hash of its last line.
fn read(path: &Path) -> Result<(Vec<Record>, String), Error> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), GENESIS.to_owned())),
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    };
    let mut prev = GENESIS.to_owned();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let altered = |why: String| Error::Altered { path: path.display().to_string(), line: i + 1, why };
        let r: Record = serde_json::from_str(line).map_err(|e| altered(format!("not a token record ({e})")))?;
        if r.prev != prev {
            return Err(altered("does not follow the line before it".into()));
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        out.push(r);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(Error::Altered {
            path: path.display().to_string(),
            line: out.len(),
            why: "the last line is cut short".into(),
        });
    }
    Ok((out, prev))
}

/// Appends one record under the file's lock, after checking the chain.
fn append(dir: &Path, make: impl FnOnce(&[Record], String) -> Result<Record, Error>) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let lock_path = dir.join(LOCK);
    let _lock = appendfile::lock(&lock_path).map_err(io_err(format!("cannot lock {}", lock_path.display())))?;
    let path = dir.join(FILE);
    let (records, prev) = read(&path)?;
    let record = make(&records, prev)?;
    let mut line = serde_json::to_string(&record).map_err(|e| io_err("cannot encode a token record")(e.into()))?;
    line.push('\n');
    appendfile::append_synced(&path, line.as_bytes()).map_err(io_err(format!("cannot write {}", path.display())))
}

fn live(records: &[Record]) -> HashMap<String, (Info, Option<String>)> {
    let mut m: HashMap<String, (Info, Option<String>)> = HashMap::new();
    for r in records {
        match (r.op.as_str(), r.role) {
            ("create", Some(role)) => {
                let info = Info { name: r.name.clone(), role, created: r.at, revoked: None };
                m.insert(r.name.clone(), (info, r.sha256.clone()));
            }
            ("revoke", _) => {
                if let Some((info, _)) = m.get_mut(&r.name) {
                    info.revoked.get_or_insert(r.at);
                }
            }
            _ => {}
        }
    }
    m
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Creates a token in the store `dir` (creating the directory if needed);
/// returns its name and its value, which is not kept anywhere.
pub fn create(dir: &Path, role: Role, name: Option<&str>) -> Result<(String, String), Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|_| Error::Random)?;
    let token = format!("pw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let mut chosen = String::new();
    append(dir, |records, prev| {
        let names = live(records);
        let name = match name {
            Some(n) if !valid_name(n) => return Err(Error::BadName(n.to_owned())),
            Some(n) if names.contains_key(n) => return Err(Error::Taken(n.to_owned())),
            Some(n) => n.to_owned(),
            None => {
                (1..).map(|i| format!("{}-{i}", role.as_str())).find(|n| !names.contains_key(n)).unwrap_or_default()
            }
        };
        chosen = name.clone();
        Ok(Record {
            op: "create".into(),
            name,
            role: Some(role),
            sha256: Some(hex::encode(digest(&token))),
            at: now_ms(),
            prev,
        })
    })?;
    Ok((chosen, token))
}

/// Revokes the token named `name`.
pub fn revoke(dir: &Path, name: &str) -> Result<(), Error> {
    append(dir, |records, prev| {
        match live(records).get(name) {
            None => return Err(Error::Unknown(name.to_owned())),
            Some((info, _)) if info.revoked.is_some() => return Err(Error::Unknown(format!("{name} (revoked)"))),
            Some(_) => {}
        }
        Ok(Record { op: "revoke".into(), name: name.to_owned(), role: None, sha256: None, at: now_ms(), prev })
    })
}

/// Every token ever created, by creation time.
pub fn list(dir: &Path) -> Result<Vec<Info>, Error> {
    let (records, _) = read(&dir.join(FILE))?;
    let mut out: Vec<Info> = live(&records).into_values().map(|(i, _)| i).collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// Who a request is, once its token is recognised.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name (recorded with every query).
    pub name: String,
    /// Its role.
    pub role: Role,
}

struct Loaded {
    by_hash: HashMap<[u8; 32], Caller>,
    /// The file's length when read (a change means reading it again).
    len: u64,
    checked: Instant,
    /// The file was altered: nothing is accepted.
    broken: bool,
}

/// The server's view of the token file.
pub struct Tokens {
    path: PathBuf,
    state: RwLock<Loaded>,
    /// The hash of this process's own admin token (named `local`), handed
    /// to CLI commands on the same machine through `DIR/serve.json`; never
    /// written to the token file, gone when the process ends.
    local: std::sync::OnceLock<[u8; 32]>,
}

/// The name the audit chain records for the process's own token.
pub const LOCAL: &str = "local";

/// How long a revoked token may still be accepted.
const RECHECK: Duration = Duration::from_secs(1);

impl Tokens {
    /// Reads `DIR/tokens.jsonl` (none yet is fine: no token is accepted).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE);
        let loaded = Self::load(&path)?;
        Ok(Self { path, state: RwLock::new(loaded), local: std::sync::OnceLock::new() })
    }

    /// Makes this process's own admin token (once) and returns it.
    pub fn local(&self) -> Result<String, Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|_| Error::Random)?;
        let token = format!("pw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        self.local.set(digest(&token)).map_err(|_| Error::Random)?;
        Ok(token)
    }

    fn load(path: &Path) -> Result<Loaded, Error> {
        let len = fs::metadata(path).map_or(0, |m| m.len());
        let (records, _) = read(path)?;
        let mut by_hash = HashMap::new();
        for (info, hash) in live(&records).into_values() {
            let Some(hash) = hash else { continue };
            let mut key = [0u8; 32];
            if info.revoked.is_none() && hex::decode_to_slice(&hash, &mut key).is_ok() {
                by_hash.insert(key, Caller { name: info.name, role: info.role });
            }
        }
        Ok(Loaded { by_hash, len, checked: Instant::now(), broken: false })
    }

    fn reload(&self) {
        let fresh = match Self::load(&self.path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "token file unreadable: no token is accepted");
                Loaded { by_hash: HashMap::new(), len: 0, checked: Instant::now(), broken: true }
            }
        };
        if let Ok(mut s) = self.state.write() {
            *s = fresh;
        }
    }

    /// The caller whose token this is, if any. The file is read again
    /// when it has changed: at once for a token not known (one created
    /// since), and at most a second late for one known (it may have been
    /// revoked).
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let key = digest(token);
        if self.local.get() == Some(&key) {
            return Some(Caller { name: LOCAL.to_owned(), role: Role::Admin });
        }
        let (found, len, due) = {
            let s = self.state.read().ok()?;
            (s.by_hash.get(&key).cloned(), s.len, s.broken || s.checked.elapsed() >= RECHECK)
        };
        if found.is_none() || due {
            if fs::metadata(&self.path).map_or(0, |m| m.len()) != len {
                self.reload();
                return self.state.read().ok()?.by_hash.get(&key).cloned();
            }
            if due && let Ok(mut s) = self.state.write() {
                s.checked = Instant::now();
            }
        }
        found
    }
}
