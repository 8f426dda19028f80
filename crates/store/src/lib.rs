//! piiwatch's evidence store.
//!
//! A directory holding:
//! - `ledger/`: append-only, hash-chained segments of normalized events
//!   (see [`ledger`]); `ledger/HEAD` names what the store acknowledged;
//! - `secret`: 32 random bytes (mode 0600) keying the pseudonyms of subject
//!   ids (see [`secret`]); no subject id, and no personal data value, is ever
//!   written: events carry pseudonyms and field *classes* only;
//! - `subjects.map`: pseudonym → subject id, encrypted (see [`subjects`]);
//! - `inputs.json`: which inputs were ingested and how far, so that ingesting
//!   an input again does not count it twice (derived from the ledger's input
//!   records; rebuilt from them if it does not match `HEAD`);
//! - `index.redb`: the exposure index (see [`index`]), derived from the
//!   ledger, built on its own thread ([`background`]);
//! - `merkle/` and `checkpoint.key`, `checkpoint.pub`: the ledger as an
//!   RFC 6962 Merkle tree and its signed checkpoints (see [`checkpoint`]).

pub mod background;
pub mod checkpoint;
mod error;
pub mod finding;
pub mod index;
pub mod ledger;
mod normalize;
pub mod pseudonym;
pub mod secret;
pub mod subjects;
pub mod view;
mod writer;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use model::{Activity, Event, OffboardKind, PrincipalId, PrincipalKind, Symbols};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod verify;

pub use error::Error;
pub use ledger::{Head, Report};
pub use pseudonym::KeepClear;
pub use secret::Secret;

/// Record kinds in the ledger.
pub mod kind {
    /// A normalized event ([`super::StoredEvent`], JSON).
    pub const EVENT: u8 = 1;
    /// How far an input has been ingested ([`super::InputMark`], JSON).
    pub const INPUT: u8 = 2;
    /// A query of the store ([`super::Audit`], JSON).
    pub const AUDIT: u8 = 3;
    /// A finding, as the OCSF Detection Finding line `detect` wrote.
    pub const ALERT: u8 = 4;
    /// A change to an incident (opened, linked, aware, sent, closed, ...),
    /// JSON as the `incident` crate writes it: who, when, what.
    pub const INCIDENT: u8 = 5;
}

/// A query or export of the store, recorded in the ledger itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Wall-clock time of the query, ms.
    pub at: i64,
    /// The operating-system user who ran it.
    pub user: String,
    /// `scope`, `export`, ...
    pub command: String,
    /// What was asked (the expression, the alert, the time range).
    pub query: String,
    /// Events matched.
    pub events: u64,
    /// Distinct subjects in the answer.
    pub subjects: u64,
    /// Whether real subject ids were written out.
    pub reidentified: bool,
}

/// Index keys a replay of the ledger holds in memory before it commits.
const REPLAY_KEYS: usize = 4 << 20;

/// Bytes of an input's beginning that identify it.
pub const IDENTITY_BYTES: u64 = 1 << 20;

/// One subject a response carried: pseudonym, kind and field classes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubject {
    /// Keyed pseudonym of the subject id.
    pub id: String,
    /// `customer`, `recipient`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Field classes returned.
    pub fields: Vec<String>,
}

/// A stored API access (6003): one type for its fields, owned (read back
/// borrowed by queries through [`view::AccessView`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAccess {
    /// Event time, ms.
    pub time: i64,
    /// OCSF activity id.
    pub activity_id: u8,
    /// Whether the call succeeded.
    pub success: bool,
    /// The principal (a pseudonym when the principal is a customer).
    pub principal: String,
    /// Its kind.
    pub principal_kind: String,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Source address.
    pub ip: String,
    /// Source AS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Source country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// User agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Route template.
    pub operation: String,
    /// Answering service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Subjects the response carried.
    pub subjects: Vec<StoredSubject>,
}

/// A normalized event as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum StoredEvent {
    /// API Activity (6003).
    Access(StoredAccess),
    /// Token issued (3002).
    Issuance {
        /// Event time, ms.
        time: i64,
        /// Principal (a pseudonym when it is a subject id).
        principal: String,
        /// Token id.
        token: String,
        /// Signing key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Expiry, ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<i64>,
    },
    /// Principal disabled or deleted (3001).
    Offboarding {
        /// Event time, ms.
        time: i64,
        /// Principal.
        principal: String,
        /// `disable` or `delete`.
        action: String,
    },
    /// Another class: only its class and time are kept (its fields are not ours to store).
    Other {
        /// Event time, ms, when plausible.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<i64>,
        /// OCSF class, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class_uid: Option<i64>,
    },
}

impl StoredEvent {
    /// Normalizes a reader event, pseudonymising every subject id and every
    /// principal that `clear` does not keep (see [`KeepClear`]).
    pub fn from_event(e: &Event<'_>, symbols: &Symbols, secret: &Secret, clear: &KeepClear) -> Self {
        Self::from_event_with(e, symbols, clear, &mut |id| secret.pseudonym(id))
    }

    /// As [`StoredEvent::from_event`], with the pseudonymiser given.
    pub fn from_event_with(
        e: &Event<'_>,
        symbols: &Symbols,
        clear: &KeepClear,
        pseudonym: &mut dyn FnMut(&str) -> String,
    ) -> Self {
        let principal = |id: PrincipalId, _kind: PrincipalKind, pseudonym: &mut dyn FnMut(&str) -> String| {
            let name = symbols.principal_name(id);
            if clear.keeps(name, symbols) { name.to_owned() } else { pseudonym(name) }
        };
        match e {
            Event::Access(a) => {
                let principal = principal(a.principal, a.principal_kind, pseudonym);
                Self::Access(StoredAccess {
                    time: a.time,
                    activity_id: activity_id(a.activity),
                    success: a.success,
                    principal,
                    principal_kind: a.principal_kind.as_str().to_owned(),
                    token: a.token.map(|t| symbols.token_name(t).to_owned()),
                    key: a.key.map(|k| symbols.key_name(k).to_owned()),
                    ip: symbols.addrs.resolve(a.src).to_string(),
                    asn: a.asn,
                    country: a.country.map(|c| c.as_str().to_owned()),
                    user_agent: a.user_agent.map(|u| symbols.agent_name(u).to_owned()),
                    operation: symbols.operation_name(a.operation).to_owned(),
                    service: a.service.map(|s| symbols.service_name(s).to_owned()),
                    subjects: a
                        .subjects
                        .iter()
                        .map(|s| StoredSubject {
                            id: pseudonym(symbols.subject_name(s.id)),
                            kind: s.kind.as_str().to_owned(),
                            fields: symbols.fields.names(s.fields).map(str::to_owned).collect(),
                        })
                        .collect(),
                })
            }
            Event::Issuance(i) => Self::Issuance {
                time: i.time,
                principal: principal(i.principal, i.principal_kind, pseudonym),
                token: symbols.token_name(i.token).to_owned(),
                key: i.key.map(|k| symbols.key_name(k).to_owned()),
                expires: i.expires,
            },
            Event::Offboarding(o) => Self::Offboarding {
                time: o.time,
                principal: principal(o.principal, o.principal_kind, pseudonym),
                action: match o.kind {
                    OffboardKind::Disable => "disable",
                    OffboardKind::Delete => "delete",
                }
                .to_owned(),
            },
            Event::Other(o) => Self::Other { time: o.time, class_uid: o.class_uid },
        }
    }

    /// Reads an event record. A record that starts with an access's class
    /// (as the store writes every access) is read as a [`StoredAccess`]
    /// straight from the bytes; anything else through the tagged enum, which
    /// decides (serde buffers every field of an internally tagged enum
    /// first: that was the largest part of `verify`'s parsing).
    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        if !payload.starts_with(view::ACCESS) {
            return serde_json::from_slice(payload);
        }
        serde_json::from_slice(payload).map(Self::Access)
    }
}

/// The dense ids of the subjects an exposing access carried, in order
/// (none for any other event: only those are indexed).
fn subject_ids(e: &StoredEvent, dense: &dyn Fn(&str) -> Option<u32>) -> Result<Vec<u32>, Error> {
    match e {
        StoredEvent::Access(StoredAccess { success: true, subjects, .. }) => subjects
            .iter()
            .map(|s| dense(&s.id).ok_or_else(|| Error::Corrupt(format!("subject {} has no dense id", s.id))))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

pub(crate) fn activity_id(a: Activity) -> u8 {
    match a {
        Activity::Create => 1,
        Activity::Read => 2,
        Activity::Update => 3,
        Activity::Delete => 4,
        Activity::Other(n) => n,
    }
}

/// How far one input has been ingested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMark {
    /// The input's name when it was ingested (for people; identity is the prefix).
    pub input: String,
    /// How many bytes of the input's beginning `prefix_sha256` covers.
    pub prefix_len: u64,
    /// SHA-256 of those bytes (the file as given: compressed if it is).
    pub prefix_sha256: String,
    /// Lines consumed (every line up to this number is in the store, or was quarantined).
    pub lines: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct InputsFile {
    /// The `HEAD` record count these marks are current for.
    records: u64,
    marks: Vec<InputMark>,
}

/// Options for opening a store.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Segment size before rolling over.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { segment_bytes: ledger::SEGMENT_BYTES }
    }
}

/// An open store, appending.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    secret: Secret,
    map: subjects::MapWriter,
    /// For queries.
    index: index::Reader,
    /// The ledger and the index writer, each on a thread of its own.
    writer: writer::Writer,
    marks: Vec<InputMark>,
    /// Events appended and not yet committed.
    pending: u64,
    /// The hot path's per-run caches (pseudonyms by reader id, ids named to the index).
    norm: normalize::Normalizer,
    /// Principals written in clear.
    clear: KeepClear,
    /// `LOCK`, held for as long as the store is open (released by the
    /// operating system when the process ends, `kill -9` included).
    _lock: fs::File,
}

/// Takes `DIR/LOCK` for this process, before anything in the store is read
/// for writing or cut back: a second writer (a query opening the store
/// while an `ingest --follow` appends) would otherwise cut the first one's
/// uncommitted tail from under it.
fn lock(dir: &Path) -> Result<fs::File, Error> {
    let path = dir.join("LOCK");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("cannot open {}", path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked { path: dir.to_owned() }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", path.display()))(e)),
    }
}

/// Brings the index up to `HEAD` from the ledger: after a crash between
/// the ledger's commit and the index's, or for a store older than its
/// index. An index ahead of the ledger (which cannot happen unless files
/// were replaced) is rebuilt from scratch.
fn catch_up(dir: &Path, index: &mut index::Writer, map: &subjects::MapWriter, records: u64) -> Result<(), Error> {
    if index.stale() {
        index.clear()?;
    }
    if index.covered() == records {
        return Ok(());
    }
    if index.covered() > records {
        index.clear()?;
    }
    let skip = index.covered();
    let mut failed = None;
    let mut n = 0u64;
    ledger::scan(&dir.join("ledger"), |r| {
        n += 1;
        if n <= skip || failed.is_some() {
            return;
        }
        // A long replay (a store older than its index) commits as it goes.
        let res = index
            .replay(r, &|p| map.dense(p))
            .and_then(|()| if index.pending() > REPLAY_KEYS { index.commit(n) } else { Ok(()) });
        if let Err(e) = res {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    index.replay_end();
    index.commit(records)
}

/// Where ingesting an input starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The identity to record for this input.
    pub prefix_len: u64,
    /// SHA-256 of the identity bytes (hex).
    pub prefix_sha256: String,
    /// Lines already in the store: skip up to and including this line number.
    pub skip_lines: u64,
}

impl Store {
    /// Opens the store in `dir`, creating it if absent. Cuts back anything
    /// after the last commit (a crash's torn tail).
    pub fn open(dir: &Path, opts: Options) -> Result<Self, Error> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::Io { what: format!("cannot create store {}", dir.display()), source: e })?;
        let lock = lock(dir)?;
        let secret = Secret::load_or_create(&dir.join("secret"))
            .map_err(|e| Error::Io { what: format!("cannot open the secret of {}", dir.display()), source: e })?;
        let mut ledger = ledger::Ledger::open(&dir.join("ledger"), opts.segment_bytes)?;
        ledger.attach(checkpoint::Checkpointer::open(dir, &dir.join("ledger"), ledger.head().records)?);
        let marks = load_marks(dir, ledger.head().records)?;
        let map = subjects::MapWriter::open(dir, &secret)?;
        let mut index = index::Writer::open(dir)?;
        catch_up(dir, &mut index, &map, ledger.head().records)?;
        let reader = index.reader();
        let writer = writer::Writer::start(ledger, background::Background::start(index)?)?;
        Ok(Self {
            dir: dir.to_owned(),
            secret,
            map,
            index: reader,
            writer,
            marks,
            pending: 0,
            norm: normalize::Normalizer::default(),
            clear: KeepClear::default(),
            _lock: lock,
        })
    }
}

impl Store {
    /// Which principals this run writes in clear (by default none: every
    /// principal is pseudonymised). Set before the first append: the hot
    /// path caches its decision per principal.
    pub fn keep_clear(&mut self, clear: KeepClear) {
        self.clear = clear;
    }

    /// The exposure index.
    pub fn index(&self) -> &index::Reader {
        &self.index
    }

    /// A subject pseudonym's dense id (the index's subject numbering).
    pub fn dense(&self, pseudonym: &str) -> Option<u32> {
        self.map.dense(pseudonym)
    }

    /// Dense ids by pseudonym, for lookups from several threads (the
    /// subject map is read on first need).
    pub fn subject_ids(&self) -> Result<subjects::SubjectIds<'_>, Error> {
        self.map.ids()
    }

    /// The pseudonym with this dense id.
    pub fn pseudonym(&self, dense: u32) -> Option<String> {
        self.map.pseudonym(dense)
    }

    /// Waits until the index has everything committed so far, durably,
    /// and returns any error its thread met. Dropping the store waits too,
    /// silently. Nothing may be appended after.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.writer.finish()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pseudonymiser.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The committed end of the ledger.
    pub fn head(&self) -> Head {
        self.writer.head()
    }

    /// Events appended since the last commit.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Where to start ingesting the file at `path`: after the lines an
    /// earlier run stored from the same input (recognised by the SHA-256 of
    /// its first bytes, whatever its name), or at the start.
    pub fn resume(&self, path: &Path) -> io::Result<Resume> {
        let size = fs::metadata(path)?.len();
        let mut skip = 0;
        let mut lens: Vec<u64> = self.marks.iter().map(|m| m.prefix_len).filter(|&l| l <= size).collect();
        lens.sort_unstable();
        lens.dedup();
        for len in lens {
            let h = prefix_hash(path, len)?;
            for m in self.marks.iter().filter(|m| m.prefix_len == len && m.prefix_sha256 == h) {
                skip = skip.max(m.lines);
            }
        }
        let prefix_len = size.min(IDENTITY_BYTES);
        Ok(Resume { prefix_len, prefix_sha256: prefix_hash(path, prefix_len)?, skip_lines: skip })
    }

    /// Normalizes, pseudonymises and appends one reader event, recording
    /// each new pseudonym's id in the encrypted map (durable at the next
    /// [`Store::commit`]). Every event appended to one open store must come
    /// with the same (growing) `symbols`: pseudonyms and index values are
    /// cached by the reader's ids.
    pub fn append_event(&mut self, e: &Event<'_>, symbols: &Symbols) -> Result<(), Error> {
        if let Event::Access(a) = e {
            let Self { secret, map, norm, writer, clear, .. } = self;
            let record = norm.access(a, symbols, secret, map, clear, &mut normalize::IndexSink::Thread(writer))?;
            writer.record(kind::EVENT, record)?;
            self.pending += 1;
            return Ok(());
        }
        let Self { secret, map, clear, .. } = self;
        let mut failed = None;
        let stored = StoredEvent::from_event_with(e, symbols, clear, &mut |id| {
            let p = secret.pseudonym_bytes(id);
            if let Err(err) = map.note(p, id) {
                failed.get_or_insert(err);
            }
            hex::encode(p)
        });
        if let Some(err) = failed {
            return Err(err);
        }
        // Only accesses expose subjects: nothing to index.
        self.append_ids(stored, Vec::new())
    }

    /// Commits the ledger, and the index after it (a crash in between:
    /// caught up at open). The index forgets the values it was given at
    /// each commit, so the hot path gives them again.
    fn commit_writer(&mut self) -> Result<Head, Error> {
        let head = self.writer.commit()?;
        self.norm.committed();
        Ok(head)
    }

    /// Appends a finding (its OCSF line; durable at the next [`Store::commit`])
    /// with every subject id in it replaced by its pseudonym, as the events
    /// it covers hold them (see [`finding::pseudonymise`]), so that
    /// `scope --alert` still selects them. Returns the line as stored.
    pub fn append_alert(&mut self, ocsf_line: &str, symbols: &Symbols) -> Result<String, Error> {
        let Self { secret, map, clear, .. } = self;
        let mut failed = None;
        let stored = finding::pseudonymise(ocsf_line, symbols, clear, &mut |id| {
            let p = secret.pseudonym_bytes(id);
            if let Err(err) = map.note(p, id) {
                failed.get_or_insert(err);
            }
            hex::encode(p)
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
        self.writer.record(kind::ALERT, stored.as_bytes())?;
        Ok(stored)
    }

    /// Appends one event (durable at the next [`Store::commit`]).
    pub fn append(&mut self, event: StoredEvent) -> Result<(), Error> {
        let map = &self.map;
        let ids = subject_ids(&event, &|p| map.dense(p))?;
        self.append_ids(event, ids)
    }

    /// Appends one event whose exposing subjects' dense ids are known.
    fn append_ids(&mut self, event: StoredEvent, ids: Vec<u32>) -> Result<(), Error> {
        let bytes = serde_json::to_vec(&event).map_err(Error::Encode)?;
        // The index sees an event before the record that holds it, as with
        // the hot path: what matters is that both come before its block is sealed.
        if !ids.is_empty() {
            self.writer.event(event, ids)?;
        }
        self.writer.record(kind::EVENT, &bytes)?;
        self.pending += 1;
        Ok(())
    }

    /// Records how far inputs have been ingested, makes everything appended
    /// durable, and moves `HEAD`. What was appended before this returns
    /// survives a crash; an input's lines up to its mark are never stored twice.
    pub fn commit(&mut self, progress: &[InputMark]) -> Result<Head, Error> {
        for m in progress {
            let bytes = serde_json::to_vec(m).map_err(Error::Encode)?;
            self.writer.record(kind::INPUT, &bytes)?;
        }
        // Every pseudonym the ledger is about to acknowledge must resolve.
        self.map.sync()?;
        let head = self.commit_writer()?;
        for m in progress {
            match self.marks.iter_mut().find(|k| k.prefix_len == m.prefix_len && k.prefix_sha256 == m.prefix_sha256) {
                Some(k) => k.lines = k.lines.max(m.lines),
                None => self.marks.push(m.clone()),
            }
        }
        save_marks(&self.dir, head.records, &self.marks)?;
        self.pending = 0;
        Ok(head)
    }
}

impl Audit {
    /// A record of `command` run now by the operating-system user.
    pub fn now(command: &str, query: String, events: u64, subjects: u64, reidentified: bool) -> Self {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Self { at, user, command: command.to_owned(), query, events, subjects, reidentified }
    }
}

impl Store {
    /// Records a query in the ledger and commits it.
    pub fn audit(&mut self, entry: &Audit) -> Result<Head, Error> {
        let bytes = serde_json::to_vec(entry).map_err(Error::Encode)?;
        self.writer.record(kind::AUDIT, &bytes)?;
        let head = self.commit_writer()?;
        // The marks are unchanged and now current for the new HEAD (a stale
        // file would make the next open rebuild them from the whole ledger).
        save_marks(&self.dir, head.records, &self.marks)?;
        Ok(head)
    }
}

impl Store {
    /// Records a change to an incident (its JSON, as the `incident` crate
    /// writes it) in the ledger and commits it: hash-chained, signed at the
    /// next checkpoint, checked by `verify` like every other record.
    pub fn record_incident(&mut self, change: &[u8]) -> Result<Head, Error> {
        self.writer.record(kind::INCIDENT, change)?;
        let head = self.commit_writer()?;
        save_marks(&self.dir, head.records, &self.marks)?;
        Ok(head)
    }
}

/// Calls `each` with every incident change in the store, in ledger order.
pub fn incident_changes(dir: &Path, mut each: impl FnMut(&[u8])) -> Result<(), Error> {
    ledger::scan(&dir.join("ledger"), |r| {
        if r.kind == kind::INCIDENT {
            each(r.payload);
        }
    })?;
    Ok(())
}

/// Calls `each` with every audit record (queries, exports, reports), in ledger order.
pub fn audits(dir: &Path, mut each: impl FnMut(Audit)) -> Result<(), Error> {
    ledger::scan(&dir.join("ledger"), |r| {
        if r.kind == kind::AUDIT
            && let Ok(a) = serde_json::from_slice::<Audit>(r.payload)
        {
            each(a);
        }
    })?;
    Ok(())
}

/// Every stored finding (its latest update) with this `finding_info.uid`, as JSON.
pub fn alert(dir: &Path, uid: &str) -> Result<Option<serde_json::Value>, Error> {
    let mut found = None;
    ledger::scan(&dir.join("ledger"), |r| {
        if r.kind == kind::ALERT
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(r.payload)
            && v["finding_info"]["uid"] == uid
        {
            found = Some(v);
        }
    })?;
    Ok(found)
}

/// Calls `each` with every stored finding line (creates and updates, as
/// stored: pseudonymised), in ledger order.
pub fn alerts(dir: &Path, mut each: impl FnMut(&[u8])) -> Result<(), Error> {
    ledger::scan(&dir.join("ledger"), |r| {
        if r.kind == kind::ALERT {
            each(r.payload);
        }
    })?;
    Ok(())
}

/// Calls `each` with every event in the store, in ledger order.
pub fn events(dir: &Path, each: impl FnMut(StoredEvent)) -> Result<u64, Error> {
    events_where(dir, |_| true, each)
}

/// As [`events`], skipping without parsing every record whose JSON `keep`
/// rejects (a query's necessary condition on the raw bytes).
pub fn events_where(dir: &Path, keep: impl Fn(&[u8]) -> bool, mut each: impl FnMut(StoredEvent)) -> Result<u64, Error> {
    let mut bad = 0u64;
    ledger::scan(&dir.join("ledger"), |r| {
        if r.kind == kind::EVENT && keep(r.payload) {
            match StoredEvent::from_json(r.payload) {
                Ok(e) => each(e),
                Err(_) => bad += 1,
            }
        }
    })?;
    if bad > 0 {
        return Err(Error::Corrupt(format!("{bad} event records do not parse")));
    }
    Ok(bad)
}

fn prefix_hash(path: &Path, len: u64) -> io::Result<String> {
    let mut f = fs::File::open(path)?.take(len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn load_marks(dir: &Path, records: u64) -> Result<Vec<InputMark>, Error> {
    if let Ok(text) = fs::read_to_string(dir.join("inputs.json"))
        && let Ok(f) = serde_json::from_str::<InputsFile>(&text)
        && f.records == records
    {
        return Ok(f.marks);
    }
    // Missing or stale (a crash between HEAD and this file): rebuild from the ledger.
    let mut marks: Vec<InputMark> = Vec::new();
    let mut seen = 0u64;
    ledger::verify(&dir.join("ledger"), |r| {
        seen += 1;
        if seen > records || r.kind != kind::INPUT {
            return;
        }
        if let Ok(m) = serde_json::from_slice::<InputMark>(r.payload) {
            match marks.iter_mut().find(|k| k.prefix_len == m.prefix_len && k.prefix_sha256 == m.prefix_sha256) {
                Some(k) => k.lines = k.lines.max(m.lines),
                None => marks.push(m),
            }
        }
    })?;
    save_marks(dir, records, &marks)?;
    Ok(marks)
}

/// Adds dense id `id` to `set`, growing it; true when it was not there.
#[inline]
pub(crate) fn first_sight(set: &mut fixedbitset::FixedBitSet, id: u32) -> bool {
    let i = id as usize;
    if i >= set.len() {
        set.grow((i + 1).next_power_of_two());
    }
    !set.put(i)
}

fn save_marks(dir: &Path, records: u64, marks: &[InputMark]) -> Result<(), Error> {
    let f = InputsFile { records, marks: marks.to_vec() };
    let text = serde_json::to_vec_pretty(&f).map_err(Error::Encode)?;
    ledger::write_atomic(dir, "inputs.json", &text)
}

/// Checks a store: every hash, every segment's link, the end against
/// `HEAD`. Also counts events.
pub fn verify(dir: &Path) -> Result<(Report, u64), Error> {
    if !dir.join("ledger").is_dir() {
        return Err(Error::NotAStore { path: dir.to_owned() });
    }
    // The index is derived: it is rebuilt from the ledger beside the store's
    // and the two compared, so an index edited to hide exposure from scope
    // is named like an edited record.
    let dense = subjects::dense_ids(dir).unwrap_or_default();
    let scratch = std::env::temp_dir().join(format!(
        "piiwatch-verify-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    fs::create_dir_all(&scratch)
        .map_err(|e| Error::Io { what: format!("cannot create {}", scratch.display()), source: e })?;
    let rebuilt = index::Writer::open(&scratch);
    // Signed checkpoints (the ledger against what the store signed) are
    // checked on a thread of their own, beside the rest.
    let (result, signed) = std::thread::scope(|scope| {
        let (leaves, taken) = std::sync::mpsc::sync_channel(8);
        let (started, checkpoints_read) = std::sync::mpsc::sync_channel(1);
        let signed = std::thread::Builder::new()
            .name("piiwatch-verify-signed".into())
            .spawn_scoped(scope, || verify::signed(dir, taken, started));
        // The subject map's entries decrypted beside the ledger's reading.
        let map = std::thread::Builder::new().name("piiwatch-verify-map".into()).spawn_scoped(scope, || {
            Secret::load_existing(&dir.join("secret"))
                .map(|secret| subjects::check_map(dir, &secret))
                .map_err(|e| format!("{}: {e}", dir.join("secret").display()))
        });
        let map_check = || match map {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => Ok(Err(Error::Io { what: "cannot start a verify thread".into(), source: e })),
        };
        // The checkpoints first, then the ledger's HEAD (see `verify::signed`).
        let _ = checkpoints_read.recv();
        let result = verify_with(dir, &dense, rebuilt, leaves, map_check);
        let signed = match signed {
            Ok(h) => Ok(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            Err(e) => Err(Error::Io { what: "cannot start a verify thread".into(), source: e }),
        };
        (result, signed)
    });
    let _ = fs::remove_dir_all(&scratch);
    let (mut report, events) = result?;
    let signed = signed?;
    report.problems.extend(signed.problems);
    report.notes.extend(signed.notes);
    Ok((report, events))
}

fn verify_with(
    dir: &Path,
    dense: &subjects::DenseIds,
    rebuilt: Result<index::Writer, Error>,
    leaves: std::sync::mpsc::SyncSender<verify::Leaves>,
    map_check: impl FnOnce() -> Result<Result<u64, Error>, String>,
) -> Result<(Report, u64), Error> {
    let mut rebuilt = rebuilt?;
    // Commits every REPLAY_KEYS hourly keys, to which the commit adds the days'.
    rebuilt.reserve(2 * REPLAY_KEYS);
    let mut rebuild_failed: Option<String> = None;
    // The index as the store has it, and the records it says it covers: it
    // must equal the ledger's own index at that point (a lagging index is a
    // crash's, and is caught up at the next open; an edited one is damage).
    let mut index_problems: Vec<String> = Vec::new();
    let mut report_stale = false;
    let mut held = false;
    let stored = if dir.join("index.redb").is_file() {
        match index::Writer::open(dir) {
            Ok(i) => Some(i),
            // Held by a running `serve` or `ingest --follow`: not damage. The
            // ledger is checked up to the `HEAD` read at the start; the index,
            // which that process is writing, cannot be compared.
            Err(Error::Locked { .. }) => {
                held = true;
                None
            }
            Err(e) => {
                index_problems.push(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let stored = match stored {
        Some(i) if i.stale() => {
            report_stale = true;
            None
        }
        other => other,
    };
    let stored = stored.map(|i| i.reader());
    let at = stored.as_ref().map(index::Reader::covered);
    let mut compared = false;
    let compare = |rebuilt: &mut index::Writer, n: u64, problems: &mut Vec<String>| {
        if let Some(stored) = &stored {
            rebuilt.replay_end();
            match rebuilt.commit_scratch(n).and_then(|()| stored.differences(&rebuilt.reader())) {
                Ok(d) => problems.extend(d),
                Err(e) => problems.push(e.to_string()),
            }
        }
    };
    if at == Some(0) {
        compare(&mut rebuilt, 0, &mut index_problems);
        compared = true;
    }
    let mut n = 0u64;
    let mut events = 0u64;
    let mut unreadable = 0u64;
    // The ledger's subjects: those the map names by dense id, the others by pseudonym.
    let mut named = fixedbitset::FixedBitSet::new();
    let mut unnamed: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Three stages on their own threads: the ledger's chain and hashes
    // (reading, inflating, hashing), parsing the event records, and here the
    // index rebuilt from them in ledger order.
    let hasher = rebuilt.key_hasher();
    let mut report = verify::pipelined(&dir.join("ledger"), dense, &hasher, Some(leaves), |batch| {
        for (r, parsed, ids) in batch.records() {
            n += 1;
            let event = match parsed {
                Some(Ok(e)) => Some(e),
                Some(Err(why)) => {
                    unreadable += 1;
                    if rebuild_failed.is_none() {
                        rebuild_failed = Some(format!("an event record does not parse: {why}"));
                    }
                    None
                }
                None => None,
            };
            if rebuild_failed.is_none() {
                let replayed = match (event, ids) {
                    (Some(e), Some((ids, keys))) => rebuilt.replay_keyed(r.segment, r.offset, e, ids, keys),
                    _ => rebuilt.replay_parsed(r.segment, r.offset, event, &|p| dense.get(p)),
                };
                let res = replayed
                    .and_then(|()| if rebuilt.pending() > REPLAY_KEYS { rebuilt.commit_behind(n) } else { Ok(()) });
                if let Err(e) = res {
                    rebuild_failed = Some(e.to_string());
                }
                if at == Some(n) && rebuild_failed.is_none() {
                    compare(&mut rebuilt, n, &mut index_problems);
                    compared = true;
                }
            }
            if r.kind == kind::EVENT {
                events += 1;
            }
            if let Some((ids, _)) = ids {
                for &d in ids {
                    first_sight(&mut named, d);
                }
            } else if let Some(StoredEvent::Access(StoredAccess { subjects, .. })) = event {
                for s in subjects {
                    match dense.get(&s.id) {
                        Some(d) => {
                            first_sight(&mut named, d);
                        }
                        None => {
                            if !unnamed.contains(s.id.as_str()) {
                                unnamed.insert(s.id.clone());
                            }
                        }
                    }
                }
            }
        }
    })?;
    // A commit still being written (when nothing was compared since).
    if let Err(e) = rebuilt.settle()
        && rebuild_failed.is_none()
    {
        rebuild_failed = Some(e.to_string());
    }
    if unreadable > 0 {
        report.problems.push(format!("{unreadable} event records do not parse"));
    }
    match (rebuild_failed, at) {
        (Some(why), _) => report.problems.push(format!("cannot rebuild the index from the ledger: {why}")),
        (None, None) if held => report.notes.push(format!(
            "the store is held by a running piiwatch (serve or ingest --follow): the ledger was checked up to the \
             {n} records committed when verify started; index.redb, which that process writes, was not compared \
             (run verify again once it has stopped)"
        )),
        (None, None) if report_stale => {
            report.notes.push(
                "index.redb was written by an older piiwatch (rebuilt from the ledger when the store is next opened)"
                    .into(),
            );
        }
        (None, None) if index_problems.is_empty() => {
            report.notes.push("index.redb is missing (rebuilt from the ledger when the store is next opened)".into());
        }
        (None, Some(c)) if !compared => report
            .problems
            .push(format!("index.redb says it covers {c} records, but the ledger holds {n}: replaced or altered")),
        (None, Some(c)) if c < n && index_problems.is_empty() => report.notes.push(format!(
            "index.redb covers {c} of {n} records (a crash before its commit: caught up when the store is next opened)"
        )),
        _ => {}
    }
    report.problems.extend(index_problems);
    // Every subject the ledger names must be re-identifiable by the store's
    // owner: the secret is there and the encrypted map holds each pseudonym.
    // Every entry of the map decrypts (checked on a thread of its own, beside
    // the ledger), and `dense` holds the map's pseudonyms (read from the same
    // file): a subject without a dense id has no entry.
    match map_check() {
        Ok(Ok(_)) => {
            if !unnamed.is_empty() {
                report.problems.push(format!(
                    "subjects.map: {} of the ledger's {} subjects have no entry (removed or truncated)",
                    unnamed.len(),
                    named.count_ones(..) + unnamed.len()
                ));
            }
        }
        Ok(Err(e)) => report.problems.push(e.to_string()),
        Err(e) => report.problems.push(e),
    }
    Ok((report, events))
}
