//! Exposure added to the index and not yet committed, and the fast path
//! `ingest` feeds it through.
//!
//! Every pending entry has a slot, found by its key (`dim | hour | value`).
//! Hashing byte keys into a map of millions for each of eight dimensions of
//! every event was most of the index thread's cost, so `ingest` hands the
//! index the reader's dense ids instead ([`Exposure`]): each dimension keeps
//! an array from id to the slot of that id's current hour, and the byte key
//! is built and hashed only when an id is first seen in an hour. The value
//! bytes behind an id arrive once, before its first use ([`Pending::name`]).
//! Replaying the ledger (which has strings, not ids) goes through the byte
//! keys directly; both paths fill the same slots.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::{Dim, Entry, hour_of, key_prefix, prefix_key};

/// A dimension whose values `ingest` names by the reader's dense id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NameDim {
    /// Signing keys (`KeyId`); the value is [`super::string_value`] of the key id.
    Key = 0,
    /// Source addresses (`AddrId`); the value is [`ip_key`] of the address.
    Addr = 1,
    /// Principals stored in clear (`PrincipalId`); the value is the string value.
    Principal = 2,
    /// Principals stored as a pseudonym (their dense subject id); the value is
    /// the string value of the pseudonym as stored.
    Pseudonym = 3,
    /// Tokens (`TokenId`).
    Token = 4,
    /// Operations (`OpId`).
    Operation = 5,
    /// Field classes (the reader's bit); the value is the class name.
    Field = 6,
}

const NAMES: usize = 7;

/// The stored principal of an exposing access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalRef {
    /// Stored in clear: the reader's principal id.
    Clear(u32),
    /// Stored as a pseudonym: its dense subject id.
    Pseudonym(u32),
}

/// An exposing access (a successful call that carried subjects) as `ingest`
/// hands it to the index: the reader's dense ids, whose value bytes were
/// given by [`Pending::name`] before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// Event time, ms.
    pub time: i64,
    /// Signing key.
    pub key: Option<u32>,
    /// Source address.
    pub addr: u32,
    /// Source AS number.
    pub asn: Option<u32>,
    /// The principal as stored.
    pub principal: PrincipalRef,
    /// Token.
    pub token: Option<u32>,
    /// Operation.
    pub operation: u32,
    /// Source country (two upper-case ASCII letters).
    pub country: Option<[u8; 2]>,
}

/// One subject of an [`Exposure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExposedSubject {
    /// Dense subject id (position in the subject map).
    pub dense: u32,
    /// `customer`, `recipient`, ...
    pub kind: &'static str,
    /// The reader's field-class bits (named by [`NameDim::Field`]).
    pub fields: u64,
}

/// Slots of one dimension by dense id: the hour and slot of the id's latest entry.
#[derive(Default)]
struct Fast(Vec<u64>);

const NONE: u64 = u64::MAX;

impl Fast {
    #[inline]
    fn get(&self, id: u32, hour: u32) -> Option<u32> {
        let v = *self.0.get(id as usize)?;
        (v != NONE && (v >> 32) as u32 == hour).then_some(v as u32)
    }

    #[inline]
    fn set(&mut self, id: u32, hour: u32, slot: u32) {
        let i = id as usize;
        if i >= self.0.len() {
            self.0.resize((i + 1).next_power_of_two().max(1024), NONE);
        }
        self.0[i] = (u64::from(hour) << 32) | u64::from(slot);
    }
}

/// Value bytes by dense id.
#[derive(Default)]
struct Names {
    /// (start, len) in `bytes`; len `u32::MAX` when unnamed.
    at: Vec<(u64, u32)>,
    bytes: Vec<u8>,
}

impl Names {
    fn set(&mut self, id: u32, value: &[u8]) {
        let i = id as usize;
        if i >= self.at.len() {
            self.at.resize((i + 1).next_power_of_two().max(64), (0, u32::MAX));
        }
        self.at[i] = (self.bytes.len() as u64, value.len() as u32);
        self.bytes.extend_from_slice(value);
    }

    fn get(&self, id: u32) -> Option<&[u8]> {
        let &(start, len) = self.at.get(id as usize)?;
        (len != u32::MAX).then(|| &self.bytes[start as usize..start as usize + len as usize])
    }
}

/// Fast-path dimensions: one [`Fast`] each (countries index theirs by
/// code and are never looked up by name).
#[derive(Clone, Copy)]
enum F {
    Key,
    Ip,
    Prefix,
    Principal,
    Pseudonym,
    Token,
    Operation,
    Country,
}

const FASTS: usize = 8;

/// Exposure not yet committed.
///
/// Keys live end to end in one buffer and the table holds slot numbers, so
/// a new key costs no allocation of its own; every buffer is cleared, not
/// dropped, at a commit, so the next run of keys fills memory already
/// mapped (fresh pages, zeroed by the kernel, were a fifth of `verify`'s
/// index rebuild).
#[derive(Default)]
pub(super) struct Pending {
    /// Slot of each pending key, found by the key's hash.
    slots: HashTable<u32>,
    /// Seeded per process, as the map it replaced was: keys come from input.
    hasher: foldhash::fast::RandomState,
    /// The keys, by slot: slot `i` is `key_bytes[key_ends[i - 1]..key_ends[i]]`.
    key_bytes: Vec<u8>,
    key_ends: Vec<usize>,
    /// The keys' entries, by slot.
    pub(super) entries: Vec<Entry>,
    fast: [Fast; FASTS],
    asn: HashMap<u32, u64, foldhash::fast::FixedState>,
    names: [Names; NAMES],
    /// The reader's field bit → the index's stable bit plus one (0: not seen yet).
    field_bits: Vec<u8>,
    keybuf: Vec<u8>,
    pub(super) subs: Vec<(u32, u64)>,
}

/// An error for an id used before it was named.
fn unnamed(what: &str, id: u32) -> crate::Error {
    crate::Error::Corrupt(format!("index: {what} {id} was used before it was named"))
}

impl Pending {
    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Room for `keys` keys of about `bytes` bytes each, made at once rather
    /// than by doubling (each doubling copies everything into fresh pages).
    pub(super) fn reserve(&mut self, keys: usize, bytes: usize) {
        let hasher = &self.hasher;
        let (kb, ke) = (&self.key_bytes, &self.key_ends);
        self.slots.reserve(keys.saturating_sub(self.slots.len()), |&s| {
            let i = s as usize;
            hasher.hash_one(&kb[if i == 0 { 0 } else { ke[i - 1] }..ke[i]])
        });
        self.key_ends.reserve(keys.saturating_sub(self.key_ends.len()));
        self.entries.reserve(keys.saturating_sub(self.entries.len()));
        self.key_bytes.reserve((keys * bytes).saturating_sub(self.key_bytes.len()));
    }

    /// Room for as many keys as `other` has room for.
    pub(super) fn reserve_like(&mut self, other: &Pending) {
        let keys = other.entries.capacity();
        let bytes = other.key_bytes.capacity() / keys.max(1);
        self.reserve(keys, bytes.max(1));
    }

    /// The key of a slot.
    #[inline]
    pub(super) fn key(&self, slot: u32) -> &[u8] {
        let i = slot as usize;
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.key_bytes[start..self.key_ends[i]]
    }

    /// Moves the keys and their entries into `into` (whose own must be
    /// empty: a [`Pending`] reset, or new), leaving this one's empty (with
    /// `into`'s buffers, so filling them again maps no fresh pages once
    /// both have grown) and its caches of slots cleared. The rest (names,
    /// field bits) stays. `into` hashes as this one does.
    pub(super) fn move_keys(&mut self, into: &mut Pending) {
        debug_assert!(into.key_ends.is_empty(), "moving keys into a pending index that holds some");
        into.hasher = self.hasher.clone();
        std::mem::swap(&mut self.slots, &mut into.slots);
        std::mem::swap(&mut self.key_bytes, &mut into.key_bytes);
        std::mem::swap(&mut self.key_ends, &mut into.key_ends);
        std::mem::swap(&mut self.entries, &mut into.entries);
        self.clear_caches();
    }

    /// Empties the slots (after a commit took the keys and entries, or to
    /// clear), and the names: ids keep their meaning for the whole run, but
    /// the store names again, after each commit, the ones it uses (a month
    /// of tokens held here cost a gigabyte).
    pub(super) fn reset(&mut self) {
        self.slots.clear();
        self.key_bytes.clear();
        self.key_ends.clear();
        self.entries.clear();
        self.clear_caches();
    }

    /// Forgets the slots cached by id and the names, which point into the
    /// keys just moved or emptied.
    fn clear_caches(&mut self) {
        for f in &mut self.fast {
            f.0.clear();
        }
        self.asn.clear();
        for n in &mut self.names {
            n.at.clear();
            n.bytes.clear();
        }
    }

    /// The slot of the key in `keybuf`, made if new.
    fn slot_of_keybuf(&mut self) -> u32 {
        let key = std::mem::take(&mut self.keybuf);
        let s = self.slot_of(&key);
        self.keybuf = key;
        s
    }

    /// The hasher of the keys.
    pub(super) fn hasher(&self) -> foldhash::fast::RandomState {
        self.hasher.clone()
    }

    /// The slot of `key`, made if new.
    pub(super) fn slot_of(&mut self, key: &[u8]) -> u32 {
        let hash = self.hasher.hash_one(key);
        self.slot_hashed(key, hash)
    }

    /// The slot of `key`, whose hash by [`Pending::hasher`] is `hash`, made if new.
    pub(super) fn slot_hashed(&mut self, key: &[u8], hash: u64) -> u32 {
        let Self { slots, hasher, key_bytes, key_ends, entries, .. } = self;
        let at = |ends: &[usize], s: u32| {
            let i = s as usize;
            (if i == 0 { 0 } else { ends[i - 1] }, ends[i])
        };
        let entry = slots.entry(
            hash,
            |&s| {
                let (a, b) = at(key_ends, s);
                &key_bytes[a..b] == key
            },
            |&s| {
                let (a, b) = at(key_ends, s);
                hasher.hash_one(&key_bytes[a..b])
            },
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                let s = u32::try_from(key_ends.len()).expect("more than 2^32 pending index keys");
                key_bytes.extend_from_slice(key);
                key_ends.push(key_bytes.len());
                entries.push(Entry::default());
                v.insert(s);
                s
            }
        }
    }

    /// The slot of `dim | hour | parts...`, made if new.
    pub(super) fn slot(&mut self, dim: Dim, parts: &[&[u8]], hour: u32) -> u32 {
        self.keybuf.clear();
        self.keybuf.extend_from_slice(&key_prefix(dim as u8, hour));
        for p in parts {
            self.keybuf.extend_from_slice(p);
        }
        self.slot_of_keybuf()
    }

    /// Records the value bytes of a dense id (before its first use).
    pub(super) fn name(&mut self, dim: NameDim, id: u32, value: &[u8]) {
        self.names[dim as usize].set(id, value);
    }

    /// The field class name of a reader bit, when named.
    pub(super) fn field_name(&self, bit: u8) -> Option<&[u8]> {
        self.names[NameDim::Field as usize].get(u32::from(bit))
    }

    /// The stable mask of the reader's field bits, through `stable` for
    /// bits not seen before.
    pub(super) fn stable_mask(&mut self, fields: u64, stable: &mut dyn FnMut(&str) -> u8) -> Result<u64, crate::Error> {
        let mut mask = 0u64;
        let mut rest = fields;
        while rest != 0 {
            let bit = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            let mut s = self.field_bits.get(usize::from(bit)).copied().unwrap_or(0);
            if s == 0 {
                let name = self.field_name(bit).ok_or_else(|| unnamed("field class", u32::from(bit)))?;
                let name = std::str::from_utf8(name).map_err(|_| unnamed("field class", u32::from(bit)))?;
                s = stable(name).min(63) + 1;
                self.field_bits.resize(64, 0);
                self.field_bits[usize::from(bit)] = s;
            }
            mask |= 1u64 << (s - 1);
        }
        Ok(mask)
    }

    /// The slot of a dense id's value of `fast` in `hour`; on a miss the key
    /// is built from the named value.
    fn fast_slot(&mut self, fast: F, names: NameDim, id: u32, hour: u32) -> Result<u32, crate::Error> {
        if let Some(s) = self.fast[fast as usize].get(id, hour) {
            return Ok(s);
        }
        let (dim, what) = match fast {
            F::Key => (Dim::Key, "signing key"),
            F::Ip => (Dim::Ip, "address"),
            F::Prefix => (Dim::Prefix, "address"),
            F::Principal | F::Pseudonym => (Dim::Principal, "principal"),
            F::Token => (Dim::Token, "token"),
            F::Operation | F::Country => (Dim::Operation, "operation"),
        };
        let value = self.names[names as usize].get(id).ok_or_else(|| unnamed(what, id))?;
        self.keybuf.clear();
        self.keybuf.extend_from_slice(&key_prefix(dim as u8, hour));
        if let F::Prefix = fast {
            let ip: [u8; 17] = value.try_into().map_err(|_| unnamed(what, id))?;
            self.keybuf.extend_from_slice(&prefix_key(ip_of_key(&ip)));
        } else {
            self.keybuf.extend_from_slice(value);
        }
        let s = self.slot_of_keybuf();
        self.fast[fast as usize].set(id, hour, s);
        Ok(s)
    }

    /// Adds an exposing access whose subjects (dense id, stable mask) are in `self.subs`.
    pub(super) fn add_exposure(&mut self, x: &Exposure) -> Result<(), crate::Error> {
        let hour = hour_of(x.time);
        let subs = std::mem::take(&mut self.subs);
        let add = |p: &mut Self, slot: u32| p.entries[slot as usize].add(x.time, &subs);
        if let Some(k) = x.key {
            let s = self.fast_slot(F::Key, NameDim::Key, k, hour)?;
            add(self, s);
        }
        let s = self.fast_slot(F::Ip, NameDim::Addr, x.addr, hour)?;
        add(self, s);
        let s = self.fast_slot(F::Prefix, NameDim::Addr, x.addr, hour)?;
        add(self, s);
        if let Some(n) = x.asn {
            let s = match self.asn.get(&n) {
                Some(&v) if (v >> 32) as u32 == hour => v as u32,
                _ => {
                    let s = self.slot(Dim::Asn, &[&n.to_be_bytes()], hour);
                    self.asn.insert(n, (u64::from(hour) << 32) | u64::from(s));
                    s
                }
            };
            add(self, s);
        }
        let s = match x.principal {
            PrincipalRef::Clear(id) => self.fast_slot(F::Principal, NameDim::Principal, id, hour)?,
            PrincipalRef::Pseudonym(d) => self.fast_slot(F::Pseudonym, NameDim::Pseudonym, d, hour)?,
        };
        add(self, s);
        if let Some(t) = x.token {
            let s = self.fast_slot(F::Token, NameDim::Token, t, hour)?;
            add(self, s);
        }
        let s = self.fast_slot(F::Operation, NameDim::Operation, x.operation, hour)?;
        add(self, s);
        if let Some(c) = x.country {
            let code = u32::from(c[0].wrapping_sub(b'A')) * 26 + u32::from(c[1].wrapping_sub(b'A'));
            let s = match self.fast[F::Country as usize].get(code, hour) {
                Some(s) => s,
                None => {
                    let s = self.slot(Dim::Country, &[&2u32.to_be_bytes(), &c], hour);
                    self.fast[F::Country as usize].set(code, hour, s);
                    s
                }
            };
            add(self, s);
        }
        self.subs = subs;
        Ok(())
    }
}

/// The address an [`ip_key`] encodes.
fn ip_of_key(k: &[u8; 17]) -> std::net::IpAddr {
    if k[0] == 4 {
        std::net::IpAddr::from([k[13], k[14], k[15], k[16]])
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(&k[1..]);
        std::net::IpAddr::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ip_key;
    use super::*;

    #[test]
    fn ip_keys_round_trip() {
        for ip in ["10.1.2.3", "2001:db8::1", "0.0.0.0", "::"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of_key(&ip_key(ip)), ip);
        }
    }

    #[test]
    fn an_id_used_before_it_is_named_is_an_error_not_a_panic() {
        let mut p = Pending::default();
        let x = Exposure {
            time: 0,
            key: None,
            addr: 3,
            asn: None,
            principal: PrincipalRef::Clear(0),
            token: None,
            operation: 0,
            country: None,
        };
        assert!(p.add_exposure(&x).is_err());
    }
}
