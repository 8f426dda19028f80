//! The exposure index: for each indexed dimension value and each hour, which
//! subjects the matching accesses reached, per field class.
//!
//! `DIR/index.redb` (a [`redb`] database, crash-safe) holds
//!
//! - `exposure`: key `dim: u8 | hour: u32 BE | value` → an [`Entry`]: the
//!   number of exposing accesses, the first and last event time, and one
//!   roaring bitmap of dense subject ids per distinct set of field classes
//!   those accesses returned. Values are encoded so that the byte order of
//!   keys within an hour is the order of values: addresses as a family byte
//!   and 16 bytes (a CIDR block is a key range), AS numbers as u32 BE,
//!   strings with a length first. The hour comes before the value so that
//!   a commit's new hours are appended to the tree in order rather than
//!   inserted all over it ([`LAYOUT`]); keys whose dimension byte has [`DAILY`] set hold the
//!   same value's exposure over a whole UTC day (all dimensions but tokens
//!   and principals), written at each commit from the hourly entries;
//! - `kinds`: kind name (`customer`, `recipient`, ...) → bitmap of the
//!   subjects first seen as that kind;
//! - `fields`: field class name → its stable bit (the reader's bits change
//!   from run to run; these never do);
//! - `blocks`: every ledger block that holds an exposing access → the span
//!   of event times of those accesses in it (a zone map: a scan of a time
//!   range or of a few hours reads only the blocks that can hold them);
//! - `meta`: `records`, the ledger record count the index covers, and
//!   `layout`, the key layout ([`LAYOUT`]; an index of another is rebuilt).
//!
//! Only successful accesses that carried subjects are indexed: nothing else
//! exposes anything. Subjects are dense ids, their position in the store's
//! subject map, so bitmaps stay small. The index is derived data: it is
//! written after the ledger commits, in one transaction with the record
//! count it covers, and [`crate::Store::open`] brings a lagging index up to
//! `HEAD` from the ledger (a crash between the two commits loses nothing).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use roaring::MultiOps;
use roaring::RoaringBitmap;

use crate::Error;
use crate::ledger::BlockRef;
use crate::{StoredAccess, StoredEvent};

const EXPOSURE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("exposure");
const KINDS: TableDefinition<&str, &[u8]> = TableDefinition::new("kinds");
const FIELDS: TableDefinition<&str, u8> = TableDefinition::new("fields");
const BLOCKS: TableDefinition<(u64, u64), (i64, i64)> = TableDefinition::new("blocks");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Milliseconds in an hour: the index's time bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// Set in a key's dimension byte for its daily roll-up: the same value's
/// exposure over a whole UTC day, with the day number where the hour is.
/// A month is then 30 entries to read, not 720.
pub const DAILY: u8 = 0x80;

/// Whether a dimension keeps daily roll-ups (not tokens and principals:
/// there are millions of them and few last past an hour or two).
fn rolled_up(dim: u8) -> bool {
    matches!(dim & !DAILY, 1 | 2 | 3 | 4 | 7 | 8)
}

/// A dimension the index keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Dim {
    /// `actor.session.issuer`: the signing key.
    Key = 1,
    /// `src_endpoint.ip`.
    Ip = 2,
    /// The source address's /24 (IPv4) or /64 (IPv6).
    Prefix = 3,
    /// `src_endpoint.autonomous_system.number`.
    Asn = 4,
    /// `actor.user.uid` as stored (a pseudonym for customers).
    Principal = 5,
    /// `actor.session.uid`: the token.
    Token = 6,
    /// `api.operation`.
    Operation = 7,
    /// `src_endpoint.location.country`.
    Country = 8,
}

/// Bits of an IPv4 address the prefix dimension keeps.
pub const PREFIX_V4: u8 = 24;
/// Bits of an IPv6 address the prefix dimension keeps.
pub const PREFIX_V6: u8 = 64;

/// An address as the index orders it: family byte, then 16 bytes.
pub fn ip_key(ip: IpAddr) -> [u8; 17] {
    let mut k = [0u8; 17];
    match ip {
        IpAddr::V4(v) => {
            k[0] = 4;
            k[13..].copy_from_slice(&v.octets());
        }
        IpAddr::V6(v) => {
            k[0] = 6;
            k[1..].copy_from_slice(&v.octets());
        }
    }
    k
}

/// The prefix an address belongs to, as the index orders it.
pub fn prefix_key(ip: IpAddr) -> [u8; 17] {
    let masked = match ip {
        IpAddr::V4(v) => IpAddr::V4((u32::from(v) & (u32::MAX << (32 - PREFIX_V4))).into()),
        IpAddr::V6(v) => IpAddr::V6((u128::from(v) & (u128::MAX << (128 - PREFIX_V6))).into()),
    };
    ip_key(masked)
}

/// A value's bytes in a key of `dim` (strings with their length first, so
/// that one value's hours are one key range).
pub fn string_value(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + s.len());
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// The layout this code writes: entries in packs keyed `dim | hour | first
/// value` (see `pack.rs`). Earlier layouts (1: one key per entry, `dim |
/// value | hour`; 2: one key per entry, `dim | hour | value`) are rebuilt.
pub const LAYOUT: u64 = 3;

/// The bytes of a key before its value: dimension byte (with [`DAILY`] for a
/// roll-up) and the hour (or day).
pub(crate) fn key_prefix(dim: u8, hour: u32) -> [u8; 5] {
    let h = hour.to_be_bytes();
    [dim, h[0], h[1], h[2], h[3]]
}

/// The hour (or day) of a key.
fn key_hour(key: &[u8]) -> Option<u32> {
    key.get(1..5).and_then(|h| h.try_into().ok()).map(u32::from_be_bytes)
}

/// The hour an event time falls in.
pub fn hour_of(time: i64) -> u32 {
    u32::try_from(time.div_euclid(HOUR_MS)).unwrap_or(if time < 0 { 0 } else { u32::MAX })
}

mod entry;
pub mod pack;
mod pending;

pub use entry::Entry;
use pending::Pending;
pub use pending::{ExposedSubject, Exposure, NameDim, PrincipalRef};
pub use reader::Reader;

/// What [`fold`] sums over some entries.
struct Partial {
    events: u64,
    span: Option<(i64, i64)>,
    per_mask: Vec<(u64, RoaringBitmap)>,
}

/// Decodes entries and sums them: accesses, span, subjects per field set.
fn fold(raw: &[Vec<u8>]) -> Result<Partial, Error> {
    let mut events = 0u64;
    let mut span: Option<(i64, i64)> = None;
    let mut by_mask: HashMap<u64, Vec<RoaringBitmap>> = HashMap::new();
    let mut small: HashMap<u64, Vec<u32>> = HashMap::new();
    for v in raw {
        let e =
            Entry::decode(v).ok_or_else(|| Error::Corrupt("index.redb: an exposure entry does not decode".into()))?;
        events += e.events;
        span = Some(match span {
            None => (e.first, e.last),
            Some((a, b)) => (a.min(e.first), b.max(e.last)),
        });
        for (mask, b) in e.groups {
            by_mask.entry(mask).or_default().push(b);
        }
        for (id, mask) in e.small {
            small.entry(mask).or_default().push(id);
        }
    }
    for (mask, mut ids) in small {
        ids.sort_unstable();
        ids.dedup();
        by_mask.entry(mask).or_default().push(RoaringBitmap::from_sorted_iter(ids).unwrap_or_default());
    }
    let per_mask = by_mask.into_iter().map(|(m, bs)| (m, bs.union())).collect();
    Ok(Partial { events, span, per_mask })
}

/// A block's position and the span of its exposing accesses.
type BlockZone = ((u64, u64), (i64, i64));

fn same_entry(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return false };
    if (a.events, a.first, a.last) != (b.events, b.first, b.last) {
        return false;
    }
    let norm = Entry::by_mask;
    let (x, y) = (norm(a), norm(b));
    x.len() == y.len()
        && x.iter()
            .zip(&y)
            .all(|((ka, va), (kb, vb))| ka == kb && va.len() == vb.len() && va.intersection_len(vb) == va.len())
}

/// A key for people: its dimension and hour (values are pseudonyms, keys
/// and addresses: not secret, but kept out of the message all the same).
fn describe(key: &[u8], what: &str) -> String {
    let daily = key.first().is_some_and(|d| d & DAILY != 0);
    let dim = match key.first().map(|d| d & !DAILY) {
        Some(1) => "key",
        Some(2) => "address",
        Some(3) => "prefix",
        Some(4) => "asn",
        Some(5) => "principal",
        Some(6) => "token",
        Some(7) => "operation",
        Some(8) => "country",
        _ => "unknown dimension",
    };
    let hour = key_hour(key);
    let when = hour
        .and_then(|h| jiff::Timestamp::from_millisecond(i64::from(h) * HOUR_MS).ok())
        .map_or_else(|| "?".to_owned(), |t| t.to_string());
    let span = if daily { "day" } else { "hour" };
    let when = if daily {
        hour.and_then(|d| jiff::Timestamp::from_millisecond(i64::from(d) * 24 * HOUR_MS).ok())
            .map_or_else(|| "?".to_owned(), |t| t.to_string())
    } else {
        when
    };
    format!("a {dim} entry for the {span} from {when}: {what}")
}

fn db_err(what: &str) -> impl FnOnce(redb::Error) -> Error + '_ {
    Error::index(what)
}

macro_rules! redb_try {
    ($e:expr, $what:expr) => {
        $e.map_err(|e| db_err($what)(e.into()))?
    };
}

// After the macro, which it uses.
mod reader;

/// The stable bit of a field class name in `fields`, registering it if new.
fn field_bit(fields: &mut Vec<String>, name: &str) -> u8 {
    if let Some(i) = fields.iter().position(|f| f == name) {
        return i as u8;
    }
    // The reader caps classes per run; across runs the store keeps the
    // first 63 names apart and folds the rest into the last bit.
    if fields.len() >= 63 {
        return 63;
    }
    fields.push(name.to_owned());
    (fields.len() - 1) as u8
}

/// The keys an exposing access adds to (one per dimension it has: signing
/// key, address, prefix, AS, principal, token, operation, country), with
/// their hashes; empty for any other event. A pure function of the event
/// and the hasher, so a parsing thread can make them.
#[derive(Clone, Debug, Default)]
pub struct ExposureKeys {
    bytes: Vec<u8>,
    /// Per key: where it ends in `bytes`, and its hash.
    keys: Vec<(usize, u64)>,
}

impl ExposureKeys {
    /// Holds no keys.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
    }

    /// Makes the keys of `e` (replacing any held).
    pub fn build(&mut self, e: &StoredEvent, hasher: &foldhash::fast::RandomState) {
        use std::hash::BuildHasher;
        self.clear();
        let StoredEvent::Access(StoredAccess {
            time,
            success: true,
            principal,
            token,
            key: signing,
            ip,
            asn,
            country,
            operation,
            subjects,
            ..
        }) = e
        else {
            return;
        };
        if subjects.is_empty() {
            return;
        }
        let hour = hour_of(*time);
        let mut put = |dim: Dim, parts: &[&[u8]]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(&key_prefix(dim as u8, hour));
            for p in parts {
                self.bytes.extend_from_slice(p);
            }
            let hash = hasher.hash_one(&self.bytes[start..]);
            self.keys.push((self.bytes.len(), hash));
        };
        let string = |s: &str| (s.len() as u32).to_be_bytes();
        if let Some(k) = signing {
            put(Dim::Key, &[&string(k), k.as_bytes()]);
        }
        if let Ok(addr) = ip.parse::<IpAddr>() {
            put(Dim::Ip, &[&ip_key(addr)]);
            put(Dim::Prefix, &[&prefix_key(addr)]);
        }
        if let Some(n) = asn {
            put(Dim::Asn, &[&n.to_be_bytes()]);
        }
        put(Dim::Principal, &[&string(principal), principal.as_bytes()]);
        if let Some(t) = token {
            put(Dim::Token, &[&string(t), t.as_bytes()]);
        }
        put(Dim::Operation, &[&string(operation), operation.as_bytes()]);
        if let Some(c) = country {
            put(Dim::Country, &[&string(c), c.as_bytes()]);
        }
    }

    /// Each key and its hash.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let mut start = 0;
        self.keys.iter().map(move |&(end, hash)| {
            let k = &self.bytes[start..end];
            start = end;
            (k, hash)
        })
    }
}

/// The exposure index of one store, open for appending (queries go through
/// a [`Reader`] on the same database).
pub struct Writer {
    db: std::sync::Arc<redb::Database>,
    /// Stable bit of each field class name.
    fields: Vec<String>,
    /// Subjects that have a kind (a bit per dense id: tested for every
    /// subject of every access).
    kinded: fixedbitset::FixedBitSet,
    /// Exposure not yet written.
    pending: Pending,
    pending_kinds: BTreeMap<String, RoaringBitmap>,
    pending_blocks: Vec<(BlockRef, i64, i64)>,
    /// Times of exposing accesses in the block being filled.
    zone: Option<(i64, i64)>,
    /// While replaying the ledger: the block of the last record replayed.
    replaying: Option<BlockRef>,
    covered: u64,
    /// Commits since the last durable one.
    lazy: u32,
    /// Written by an older key layout.
    stale: bool,
    /// Scratch for [`Writer::add_ids`].
    keys: ExposureKeys,
    /// The pending keys a commit emptied, to fill again.
    spare: Option<Pending>,
    /// A commit being written on its own thread ([`Writer::commit_behind`]).
    behind: Option<std::thread::JoinHandle<(Frozen, Result<(), Error>)>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A commit being written finishes before the database closes.
        let _ = self.settle();
    }
}

/// Commits of [`Writer::commit_lazy`] between two durable ones.
pub const LAZY_COMMITS: u32 = 16;

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("index::Writer").field("covered", &self.covered).field("pending", &self.pending.len()).finish()
    }
}

/// What an index lookup found: exposure summed over the keys it read.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Exposing accesses.
    pub events: u64,
    /// First and last event time.
    pub span: Option<(i64, i64)>,
    /// Every subject reached.
    pub subjects: RoaringBitmap,
    /// Subjects reached per field class.
    pub fields: BTreeMap<String, RoaringBitmap>,
    /// The hours in which something was found.
    pub hours: Vec<u32>,
}

/// A key range of one dimension: values from `lo` to `hi` (value bytes as
/// [`ip_key`], [`string_value`] and the like make them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueRange {
    /// The dimension.
    pub dim: Dim,
    /// Lowest value, inclusive.
    pub lo: Vec<u8>,
    /// Highest value, inclusive.
    pub hi: Vec<u8>,
}

impl Writer {
    /// Opens or creates `DIR/index.redb`.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("index.redb");
        let db = redb::Database::create(&path).map_err(Error::opening(path.clone()))?;
        let txn = redb_try!(db.begin_write(), "begin");
        let mut kinded = fixedbitset::FixedBitSet::new();
        let covered;
        let layout;
        {
            drop(redb_try!(txn.open_table(FIELDS), "fields"));
            let t = redb_try!(txn.open_table(KINDS), "kinds");
            for row in redb_try!(t.iter(), "kinds") {
                let (_, v) = redb_try!(row, "kinds");
                let b = RoaringBitmap::deserialize_from(v.value())
                    .map_err(|e| Error::Corrupt(format!("index.redb: a kind bitmap: {e}")))?;
                for id in &b {
                    crate::first_sight(&mut kinded, id);
                }
            }
            let m = redb_try!(txn.open_table(META), "meta");
            covered = redb_try!(m.get("records"), "meta").map_or(0, |v| v.value());
            layout = redb_try!(m.get("layout"), "meta").map(|v| v.value());
            drop(redb_try!(txn.open_table(EXPOSURE), "exposure"));
            drop(redb_try!(txn.open_table(BLOCKS), "blocks"));
        }
        redb_try!(txn.commit(), "commit");
        let mut index = Self::with_db(std::sync::Arc::new(db), covered);
        index.kinded = kinded;
        index.fields = index.reader().field_names()?;
        index.stale = covered > 0 && layout != Some(LAYOUT);
        Ok(index)
    }

    /// Whether the index was written by an older layout of keys (to be
    /// rebuilt from the ledger: [`crate::Store::open`] does).
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Ledger records the committed index covers.
    pub fn covered(&self) -> u64 {
        self.reader().covered()
    }

    /// A handle on the same database for queries, without this one's
    /// uncommitted state (the writer may live on another thread).
    pub fn reader(&self) -> Reader {
        Reader { db: self.db.clone(), covered: self.covered }
    }

    /// A handle with nothing pending.
    fn with_db(db: std::sync::Arc<redb::Database>, covered: u64) -> Self {
        Self {
            db,
            fields: Vec::new(),
            kinded: fixedbitset::FixedBitSet::new(),
            pending: Pending::default(),
            pending_kinds: BTreeMap::new(),
            pending_blocks: Vec::new(),
            zone: None,
            replaying: None,
            covered,
            lazy: 0,
            stale: false,
            keys: ExposureKeys::default(),
            spare: None,
            behind: None,
        }
    }

    fn field_bit(&mut self, name: &str) -> u8 {
        field_bit(&mut self.fields, name)
    }

    /// Indexes one event (which will be record number `covered + 1` once
    /// committed); `dense` gives a subject pseudonym's dense id.
    pub fn add(&mut self, e: &StoredEvent, dense: &dyn Fn(&str) -> Option<u32>) -> Result<(), Error> {
        let StoredEvent::Access(StoredAccess { success: true, subjects, .. }) = e else { return Ok(()) };
        let mut ids = Vec::with_capacity(subjects.len());
        for s in subjects {
            ids.push(dense(&s.id).ok_or_else(|| Error::Corrupt(format!("subject {} has no dense id", s.id)))?);
        }
        self.add_ids(e, &ids)
    }

    /// As [`Writer::add`], with each subject's dense id given, in order.
    pub fn add_ids(&mut self, e: &StoredEvent, ids: &[u32]) -> Result<(), Error> {
        let mut keys = std::mem::take(&mut self.keys);
        keys.build(e, &self.pending.hasher());
        let added = self.add_keyed(e, ids, &keys);
        self.keys = keys;
        added
    }

    /// The hasher [`ExposureKeys::build`] takes, to make an event's keys
    /// (and their hashes) on another thread for [`Writer::add_keyed`].
    pub fn key_hasher(&self) -> foldhash::fast::RandomState {
        self.pending.hasher()
    }

    /// As [`Writer::add_ids`], with the event's keys made by
    /// [`ExposureKeys::build`] (with [`Writer::key_hasher`]): the
    /// replay of `verify` makes them on its parsing workers.
    pub fn add_keyed(&mut self, e: &StoredEvent, ids: &[u32], keys: &ExposureKeys) -> Result<(), Error> {
        let StoredEvent::Access(StoredAccess { time, success: true, subjects, .. }) = e else {
            return Ok(());
        };
        if subjects.is_empty() {
            return Ok(());
        }
        if ids.len() != subjects.len() {
            return Err(Error::Corrupt("an event's subjects and their dense ids differ in number".into()));
        }
        let mut subs = std::mem::take(&mut self.pending.subs);
        subs.clear();
        for (s, &id) in subjects.iter().zip(ids) {
            let mut mask = 0u64;
            for f in &s.fields {
                mask |= 1u64 << self.field_bit(f);
            }
            subs.push((id, mask));
            if crate::first_sight(&mut self.kinded, id) {
                self.pending_kinds.entry(s.kind.clone()).or_default().insert(id);
            }
        }
        for (key, hash) in keys.iter() {
            let slot = self.pending.slot_hashed(key, hash);
            self.pending.entries[slot as usize].add(*time, &subs);
        }
        self.note_zone(*time);
        self.pending.subs = subs;
        Ok(())
    }

    fn note_zone(&mut self, time: i64) {
        self.zone = Some(match self.zone {
            None => (time, time),
            Some((a, b)) => (a.min(time), b.max(time)),
        });
    }

    /// Records the value bytes behind one of the reader's dense ids, which
    /// [`Writer::add_exposure`] then uses (once per id, before its first use).
    pub fn name(&mut self, dim: NameDim, id: u32, value: &[u8]) {
        self.pending.name(dim, id, value);
    }

    /// Indexes an exposing access given by the reader's dense ids (the
    /// ingest path: no strings, no pseudonym lookups). Every id must have
    /// been named with [`Writer::name`].
    pub fn add_exposure(&mut self, x: &Exposure, subjects: &[ExposedSubject]) -> Result<(), Error> {
        if subjects.is_empty() {
            return Ok(());
        }
        let mut subs = std::mem::take(&mut self.pending.subs);
        subs.clear();
        for s in subjects {
            let fields = &mut self.fields;
            let mut stable = |name: &str| field_bit(fields, name);
            let mask = match self.pending.stable_mask(s.fields, &mut stable) {
                Ok(m) => m,
                Err(e) => {
                    self.pending.subs = subs;
                    return Err(e);
                }
            };
            subs.push((s.dense, mask));
            if crate::first_sight(&mut self.kinded, s.dense) {
                self.pending_kinds.entry(s.kind.to_owned()).or_default().insert(s.dense);
            }
        }
        self.pending.subs = subs;
        self.pending.add_exposure(x)?;
        self.note_zone(x.time);
        Ok(())
    }

    /// Indexes a record read back from the ledger (in ledger order), as
    /// appending it did; [`Writer::replay_end`] closes the last block.
    pub fn replay(
        &mut self,
        r: &crate::ledger::RecordRef<'_>,
        dense: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<(), Error> {
        let event = if r.kind == crate::kind::EVENT {
            Some(
                StoredEvent::from_json(r.payload)
                    .map_err(|e| Error::Corrupt(format!("an event record does not parse: {e}")))?,
            )
        } else {
            None
        };
        self.replay_parsed(r.segment, r.offset, event.as_ref(), dense)
    }

    /// [`Writer::replay`] of a record parsed elsewhere (`verify` parses on
    /// another thread): the record at `offset` of `segment`, with its event
    /// when it is one.
    pub fn replay_parsed(
        &mut self,
        segment: u64,
        offset: u64,
        event: Option<&StoredEvent>,
        dense: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<(), Error> {
        self.replay_at(segment, offset);
        match event {
            Some(e) => self.add(e, dense),
            None => Ok(()),
        }
    }

    /// As [`Writer::replay_parsed`], with an access's subjects' dense ids given, in order.
    pub fn replay_ids(&mut self, segment: u64, offset: u64, event: &StoredEvent, ids: &[u32]) -> Result<(), Error> {
        self.replay_at(segment, offset);
        self.add_ids(event, ids)
    }

    /// As [`Writer::replay_ids`], with the event's keys made by [`ExposureKeys::build`].
    pub fn replay_keyed(
        &mut self,
        segment: u64,
        offset: u64,
        event: &StoredEvent,
        ids: &[u32],
        keys: &ExposureKeys,
    ) -> Result<(), Error> {
        self.replay_at(segment, offset);
        self.add_keyed(event, ids, keys)
    }

    /// The next record replayed is in the block at `segment`, `offset`:
    /// the block before it, if another, is sealed.
    fn replay_at(&mut self, segment: u64, offset: u64) {
        let here = BlockRef { segment, offset };
        if let Some(b) = self.replaying
            && b != here
        {
            self.sealed(&[b]);
        }
        self.replaying = Some(here);
    }

    /// Ends a replay: the last block replayed is sealed.
    pub fn replay_end(&mut self) {
        if let Some(b) = self.replaying.take() {
            self.sealed(&[b]);
        }
    }

    /// Makes room for `keys` pending keys at once (a replay that commits
    /// every so many keys: the buffers are then filled, not grown).
    pub fn reserve(&mut self, keys: usize) {
        self.pending.reserve(keys, 40);
    }

    /// Exposure added and not yet committed (keys held in memory).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The blocks just sealed: the first holds every exposing access added
    /// since the last call (the ledger seals one block at a time, and at most
    /// one per append).
    pub fn sealed(&mut self, blocks: &[BlockRef]) {
        for b in blocks {
            if let Some((lo, hi)) = self.zone.take() {
                self.pending_blocks.push((*b, lo, hi));
            }
        }
    }

    /// Writes what was added, covering ledger records up to `records`, in
    /// one transaction, durable when this returns.
    pub fn commit(&mut self, records: u64) -> Result<(), Error> {
        self.commit_with(records, true)
    }

    /// As [`Writer::commit`], without waiting for the disk: the index is
    /// derived from the ledger, so a crash that loses this commit loses
    /// nothing ([`crate::Store::open`] replays the ledger past the last
    /// durable one). Every [`LAZY_COMMITS`]th is made durable all the same,
    /// which bounds that replay and the memory redb holds for commits not
    /// yet on disk.
    pub fn commit_lazy(&mut self, records: u64) -> Result<(), Error> {
        self.lazy += 1;
        let durable = self.lazy >= LAZY_COMMITS;
        self.commit_with(records, durable)
    }

    /// As [`Writer::commit`], never waiting for the disk: for an index that
    /// does not outlive the process (`verify`'s rebuild, compared and removed).
    pub fn commit_scratch(&mut self, records: u64) -> Result<(), Error> {
        self.commit_with(records, false)
    }

    /// As [`Writer::commit_scratch`], on a thread of its own: the caller
    /// goes on adding while the commit is written (a replay's commit of
    /// millions of keys took seconds during which nothing else moved). The
    /// next commit, [`Writer::settle`] or dropping the writer waits for it;
    /// [`Writer::reader`] sees it once settled.
    pub fn commit_behind(&mut self, records: u64) -> Result<(), Error> {
        self.settle()?;
        let mut frozen = self.freeze(records, false);
        let db = self.db.clone();
        let spawned = std::thread::Builder::new().name("piiwatch-index-commit".into()).spawn(move || {
            let written = write_frozen(&db, &mut frozen);
            (frozen, written)
        });
        match spawned {
            Ok(h) => {
                self.behind = Some(h);
                Ok(())
            }
            // No thread: written here instead.
            Err(_) => self.commit_with(records, false),
        }
    }

    /// Waits for a commit made by [`Writer::commit_behind`], if one is
    /// being written; its error, if it failed.
    pub fn settle(&mut self) -> Result<(), Error> {
        let Some(h) = self.behind.take() else { return Ok(()) };
        let (frozen, written) = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let records = frozen.records;
        self.spare = Some(frozen.pending);
        written?;
        self.covered = records;
        Ok(())
    }

    /// What a commit writes, taken out of the writer (its pending keys
    /// replaced by the spare ones, emptied by the last commit).
    fn freeze(&mut self, records: u64, durable: bool) -> Frozen {
        let mut keys = self.spare.take().unwrap_or_else(|| {
            let mut p = Pending::default();
            p.reserve_like(&self.pending);
            p
        });
        self.pending.move_keys(&mut keys);
        Frozen {
            pending: keys,
            kinds: std::mem::take(&mut self.pending_kinds),
            fields: self.fields.clone(),
            blocks: std::mem::take(&mut self.pending_blocks),
            records,
            durable,
        }
    }

    fn commit_with(&mut self, records: u64, durable: bool) -> Result<(), Error> {
        self.settle()?;
        let mut frozen = self.freeze(records, durable);
        let written = write_frozen(&self.db, &mut frozen);
        self.spare = Some(frozen.pending);
        written?;
        if durable {
            self.lazy = 0;
        }
        self.covered = records;
        Ok(())
    }
}

/// A commit's content, out of the [`Writer`]: the pending keys and
/// entries, kinds, field names and block zones, and the records covered.
struct Frozen {
    pending: Pending,
    kinds: BTreeMap<String, RoaringBitmap>,
    fields: Vec<String>,
    blocks: Vec<(BlockRef, i64, i64)>,
    records: u64,
    durable: bool,
}

/// Writes a commit in one transaction (durable when `f.durable`), and
/// empties its pending keys for reuse.
fn write_frozen(db: &redb::Database, f: &mut Frozen) -> Result<(), Error> {
    let mut txn = redb_try!(db.begin_write(), "begin");
    if !f.durable {
        redb_try!(txn.set_durability(redb::Durability::None), "durability");
    }
    {
        let mut t = redb_try!(txn.open_table(EXPOSURE), "exposure");
        let pending = &mut f.pending;
        let hourly = pending.len() as u32;
        // Daily roll-ups: slots of the same pending keys, after the hours.
        let mut dk: Vec<u8> = Vec::new();
        for s in 0..hourly {
            let k = pending.key(s);
            let Some(hour) = key_hour(k).filter(|_| rolled_up(k[0])) else { continue };
            dk.clear();
            dk.extend_from_slice(k);
            dk[..5].copy_from_slice(&key_prefix(k[0] | DAILY, hour / 24));
            let d = pending.slot_of(&dk) as usize;
            // A day's slot comes after every hour's (pending keys are hourly).
            if d > s as usize {
                let (hours, days) = pending.entries.split_at_mut(d);
                days[0].merge_ref(&hours[s as usize]);
            } else {
                let hour = pending.entries[s as usize].clone();
                pending.entries[d].merge_ref(&hour);
            }
        }
        let pending = &*pending;
        // Slots in key order: sorted by the keys' first 16 bytes (held
        // in the array sorted, so most comparisons read no key), the
        // whole keys compared only where those are equal.
        let head = |s: u32| {
            let k = pending.key(s);
            let mut b = [0u8; 16];
            let n = k.len().min(16);
            b[..n].copy_from_slice(&k[..n]);
            u128::from_be_bytes(b)
        };
        let mut order: Vec<(u128, u32)> = (0..pending.len() as u32).map(|s| (head(s), s)).collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| pending.key(a.1).cmp(pending.key(b.1))));
        // One merge per dimension and hour (or day).
        let mut group: Vec<(&[u8], &Entry)> = Vec::new();
        let mut order = order.into_iter().map(|(_, s)| s).peekable();
        while let Some(s) = order.next() {
            let k = pending.key(s);
            let (prefix, value) = k.split_at(pack::PREFIX.min(k.len()));
            group.push((value, &pending.entries[s as usize]));
            if order.peek().is_none_or(|&next| pending.key(next).get(..pack::PREFIX) != Some(prefix)) {
                pack::merge_into(&mut t, prefix, &group)?;
                group.clear();
            }
        }
        drop(group);
        f.pending.reset();
        let mut t = redb_try!(txn.open_table(KINDS), "kinds");
        for (kind, b) in std::mem::take(&mut f.kinds) {
            let mut all = match redb_try!(t.get(kind.as_str()), "kinds") {
                Some(v) => RoaringBitmap::deserialize_from(v.value())
                    .map_err(|e| Error::Corrupt(format!("index.redb: a kind bitmap: {e}")))?,
                None => RoaringBitmap::new(),
            };
            all |= b;
            let mut bytes = Vec::with_capacity(all.serialized_size());
            let _ = all.serialize_into(&mut bytes);
            redb_try!(t.insert(kind.as_str(), bytes.as_slice()), "kinds");
        }
        let mut t = redb_try!(txn.open_table(FIELDS), "fields");
        for (bit, name) in f.fields.iter().enumerate() {
            redb_try!(t.insert(name.as_str(), bit as u8), "fields");
        }
        let mut t = redb_try!(txn.open_table(BLOCKS), "blocks");
        for (b, mut lo, mut hi) in f.blocks.drain(..) {
            if let Some(old) = redb_try!(t.get((b.segment, b.offset)), "blocks") {
                let (a, z) = old.value();
                (lo, hi) = (lo.min(a), hi.max(z));
            }
            redb_try!(t.insert((b.segment, b.offset), (lo, hi)), "blocks");
        }
        let mut m = redb_try!(txn.open_table(META), "meta");
        redb_try!(m.insert("records", f.records), "meta");
        redb_try!(m.insert("layout", LAYOUT), "meta");
    }
    redb_try!(txn.commit(), "commit");
    Ok(())
}

impl Writer {
    /// Empties the index (to rebuild it from the ledger).
    pub fn clear(&mut self) -> Result<(), Error> {
        self.settle()?;
        let txn = redb_try!(self.db.begin_write(), "begin");
        redb_try!(txn.delete_table(EXPOSURE), "clear");
        redb_try!(txn.delete_table(KINDS), "clear");
        redb_try!(txn.delete_table(FIELDS), "clear");
        redb_try!(txn.delete_table(BLOCKS), "clear");
        redb_try!(txn.delete_table(META), "clear");
        redb_try!(txn.commit(), "commit");
        self.fields.clear();
        self.kinded.clear();
        self.pending.reset();
        self.pending_kinds.clear();
        self.pending_blocks.clear();
        self.zone = None;
        self.covered = 0;
        self.stale = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoredSubject;
    use proptest::prelude::*;

    /// An exposing access by one of a few principals and addresses, at one
    /// of a few hours, returning a few subjects with field classes.
    fn access(i: u32, hour: u32, principal: u8, subjects: &[(u32, u8)]) -> StoredEvent {
        StoredEvent::Access(StoredAccess {
            time: i64::from(hour) * HOUR_MS + i64::from(i),
            activity_id: 2,
            success: true,
            principal: format!("p{principal}"),
            principal_kind: "customer".into(),
            token: Some(format!("t{}", principal % 3)),
            key: Some("k1".into()),
            ip: format!("10.0.{}.{}", principal % 4, principal),
            asn: Some(64_500 + u32::from(principal % 2)),
            country: Some("KR".into()),
            user_agent: None,
            operation: format!("GET /v1/op{}", principal % 2),
            service: None,
            subjects: subjects
                .iter()
                .map(|&(id, f)| StoredSubject {
                    id: format!("s{id}"),
                    kind: "customer".into(),
                    fields: ["name", "phone", "address"]
                        .iter()
                        .take(usize::from(f % 3) + 1)
                        .map(|s| (*s).into())
                        .collect(),
                })
                .collect(),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        // Commits written on their own thread while adding goes on hold, entry
        // for entry, what commits written in line hold, and what one commit of
        // everything holds; and one access more is a difference.
        #[test]
        fn commits_behind_hold_what_commits_in_line_hold(
            events in prop::collection::vec(
                (0u32..30, 0u8..12, prop::collection::vec((0u32..200, 0u8..3), 1..4)), 1..300),
            cuts in prop::collection::btree_set(0usize..300, 0..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let open = |name: &str| {
                let d = dir.path().join(name);
                std::fs::create_dir_all(&d).unwrap();
                Writer::open(&d).unwrap()
            };
            let (mut inline, mut behind, mut once, mut more) = (open("a"), open("b"), open("c"), open("d"));
            for (i, (hour, principal, subjects)) in events.iter().enumerate() {
                let e = access(i as u32, *hour, *principal, subjects);
                let ids: Vec<u32> = subjects.iter().map(|s| s.0).collect();
                for w in [&mut inline, &mut behind, &mut once, &mut more] {
                    w.add_ids(&e, &ids).unwrap();
                }
                if cuts.contains(&i) {
                    inline.commit_scratch(i as u64 + 1).unwrap();
                    behind.commit_behind(i as u64 + 1).unwrap();
                }
            }
            more.add_ids(&access(7, 3, 200, &[(9, 1)]), &[9]).unwrap();
            let n = events.len() as u64;
            for w in [&mut inline, &mut behind, &mut once, &mut more] {
                w.commit_scratch(n).unwrap();
            }
            let (a, b, c, d) = (inline.reader(), behind.reader(), once.reader(), more.reader());
            prop_assert_eq!(b.covered(), n);
            prop_assert!(a.differences(&b).unwrap().is_empty(), "{:?}", a.differences(&b));
            prop_assert!(c.differences(&b).unwrap().is_empty(), "{:?}", c.differences(&b));
            prop_assert!(!d.differences(&b).unwrap().is_empty());
        }
    }
}
