//! Dense ids for repeated strings.
//!
//! An [`Interner`] stores every distinct string once in a single growing
//! buffer and hands out ids `0, 1, 2, ...` in order of first appearance, so a
//! later stage can index a `Vec` or a bitmap by id. Looking up a string that is
//! already known allocates nothing. [`Symbols`] holds one interner per
//! dimension of the event model.
//!
//! Memory per distinct string: its bytes, 8 bytes of end offset and a
//! 16-byte hash-table slot (about 19 bytes at 87.5 % load, holding a copy of
//! strings up to 11 bytes so that a lookup touches one cache line), so
//! 33.7 M subject ids of 10 bytes take about 1.3 GB.

use std::net::IpAddr;

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::event::{AddrId, AgentId, AsNameId, KeyId, OpId, PrincipalId, ServiceId, SubjectId, TokenId};
use crate::fields::FieldClasses;

/// A fixed seed keeps ids identical run to run for identical input.
const HASH_SEED: u64 = 0x7069_6977_6174_6368; // "piiwatch"

/// Strings up to this long are kept inside their hash-table slot too, so
/// finding one touches one cache line instead of three (slot, offsets,
/// bytes). Subject and principal ids are usually this short. 11 keeps the
/// slot at 16 bytes: 19 (24-byte slots, token ids inline too) measured no
/// faster on the 1 M-customer benchmark and used 27 % more memory.
const INLINE: usize = 11;
/// `Slot::len` for strings longer than [`INLINE`].
const LONG: u8 = u8::MAX;

/// A hash-table entry: the id, and the string itself when it is short.
#[derive(Clone, Copy)]
struct Slot {
    id: u32,
    len: u8,
    inline: [u8; INLINE],
}

/// Interns strings to dense `u32` ids in order of first appearance.
#[derive(Clone)]
pub struct Interner {
    bytes: String,
    /// End offset of each string in `bytes`; string `i` starts where `i - 1` ends.
    ends: Vec<u64>,
    table: HashTable<Slot>,
    hasher: FixedState,
    /// A replica's copy: ids resolve, but there is no table to look strings up in.
    resolve_only: bool,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner").field("len", &self.len()).finish()
    }
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self {
            bytes: String::new(),
            ends: Vec::new(),
            table: HashTable::new(),
            hasher: FixedState::with_seed(HASH_SEED),
            resolve_only: false,
        }
    }

    /// How many distinct strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Whether string `a` of this interner equals string `b` of `other`
    /// (lengths first: most pairs differ there).
    #[inline]
    pub fn same(&self, a: u32, other: &Interner, b: u32) -> bool {
        let span = |ends: &[u64], i: u32| {
            let i = i as usize;
            (if i == 0 { 0 } else { ends[i - 1] as usize }, ends[i] as usize)
        };
        let ((a0, a1), (b0, b1)) = (span(&self.ends, a), span(&other.ends, b));
        a1 - a0 == b1 - b0 && self.bytes.as_bytes()[a0..a1] == other.bytes.as_bytes()[b0..b1]
    }

    fn str_at<'s>(bytes: &'s str, ends: &[u64], id: u32) -> &'s str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        &bytes[start..ends[i] as usize]
    }

    /// Whether `slot` holds `s`; reads the arena only for long strings.
    #[inline]
    fn matches(bytes: &str, ends: &[u64], slot: &Slot, s: &str) -> bool {
        if s.len() <= INLINE {
            usize::from(slot.len) == s.len() && &slot.inline[..s.len()] == s.as_bytes()
        } else {
            slot.len == LONG && Self::str_at(bytes, ends, slot.id) == s
        }
    }

    /// The string of a slot, for rehashing.
    fn slot_str<'s>(bytes: &'s str, ends: &[u64], slot: &'s Slot) -> &'s [u8] {
        if slot.len == LONG {
            Self::str_at(bytes, ends, slot.id).as_bytes()
        } else {
            &slot.inline[..usize::from(slot.len)]
        }
    }

    /// The id of `s`, interning it if new.
    ///
    /// # Panics
    /// When more than 2^32 distinct strings are interned (ids are `u32`); the
    /// panic says so rather than wrapping silently.
    #[inline]
    pub fn intern(&mut self, s: &str) -> u32 {
        assert!(!self.resolve_only, "a replica's symbol table resolves ids only");
        let hash = self.hasher.hash_one(s.as_bytes());
        let Self { bytes, ends, table, hasher, .. } = self;
        let entry = table.entry(
            hash,
            |slot| Self::matches(bytes, ends, slot, s),
            |slot| hasher.hash_one(Self::slot_str(bytes, ends, slot)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => o.get().id,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let id = u32::try_from(ends.len()).expect("more than 2^32 distinct strings");
                bytes.push_str(s);
                ends.push(bytes.len() as u64);
                let mut slot = Slot { id, len: LONG, inline: [0; INLINE] };
                if s.len() <= INLINE {
                    slot.len = s.len() as u8;
                    slot.inline[..s.len()].copy_from_slice(s.as_bytes());
                }
                v.insert(slot);
                id
            }
        }
    }

    /// The id of `s` if it was interned.
    pub fn get(&self, s: &str) -> Option<u32> {
        assert!(!self.resolve_only, "a replica's symbol table resolves ids only");
        let hash = self.hasher.hash_one(s.as_bytes());
        self.table.find(hash, |slot| Self::matches(&self.bytes, &self.ends, slot, s)).map(|slot| slot.id)
    }

    /// The string behind an id.
    ///
    /// # Panics
    /// When `id` was not handed out by this interner.
    pub fn resolve(&self, id: u32) -> &str {
        Self::str_at(&self.bytes, &self.ends, id)
    }

    /// All strings in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len() as u32).map(|id| Self::str_at(&self.bytes, &self.ends, id))
    }
}

/// Interns IP addresses to dense ids.
#[derive(Clone, Debug, Default)]
pub struct AddrInterner {
    addrs: Vec<IpAddr>,
    map: hashbrown::HashMap<IpAddr, u32, FixedState>,
}

impl AddrInterner {
    /// The id of `ip`, interning it if new.
    #[inline]
    pub fn intern(&mut self, ip: IpAddr) -> AddrId {
        let next = u32::try_from(self.addrs.len()).expect("more than 2^32 distinct addresses");
        let id = *self.map.entry(ip).or_insert(next);
        if id == next {
            self.addrs.push(ip);
        }
        AddrId(id)
    }

    /// The id of `ip` if seen.
    pub fn get(&self, ip: &IpAddr) -> Option<AddrId> {
        self.map.get(ip).copied().map(AddrId)
    }

    /// The address behind an id.
    ///
    /// # Panics
    /// When `id` was not handed out by this interner.
    pub fn resolve(&self, id: AddrId) -> IpAddr {
        self.addrs[id.index()]
    }

    /// How many distinct addresses.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True when none was interned.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

macro_rules! typed_interner {
    ($($field:ident: $id:ident, $intern:ident, $name:ident;)*) => {
        impl Symbols {$(
            #[doc = concat!("Interns into `", stringify!($field), "`.")]
            #[inline]
            pub fn $intern(&mut self, s: &str) -> $id {
                $id(self.$field.intern(s))
            }
            #[doc = concat!("The string behind a ", stringify!($id), ".")]
            pub fn $name(&self, id: $id) -> &str {
                self.$field.resolve(id.0)
            }
        )*}
    };
}

/// One interner per dimension of the event model, plus the field classes.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// Subject ids as they appeared in the input (`resources[].uid`).
    pub subjects: Interner,
    /// Principals (`actor.user.uid`, `user.uid`).
    pub principals: Interner,
    /// Token ids.
    pub tokens: Interner,
    /// Signing key ids.
    pub keys: Interner,
    /// Route templates.
    pub operations: Interner,
    /// Service names.
    pub services: Interner,
    /// User agents.
    pub agents: Interner,
    /// Autonomous system names.
    pub as_names: Interner,
    /// Source addresses.
    pub addrs: AddrInterner,
    /// Field classes (at most 64).
    pub fields: FieldClasses,
}

typed_interner! {
    subjects: SubjectId, subject, subject_name;
    principals: PrincipalId, principal, principal_name;
    tokens: TokenId, token, token_name;
    keys: KeyId, key, key_name;
    operations: OpId, operation, operation_name;
    services: ServiceId, service, service_name;
    agents: AgentId, agent, agent_name;
    as_names: AsNameId, as_name, as_name_name;
}

/// How far a replica of [`Symbols`] has been brought: the length of each
/// table when the last [`Delta`] was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    strings: [usize; REPLICATED],
    addrs: usize,
    fields: usize,
}

/// The string tables a replica carries: every one but subjects, in the order
/// of [`Symbols::replicated`].
const REPLICATED: usize = 7;

/// What was interned since some [`Marks`], in id order. Applied to a replica
/// in another thread (one that only resolves ids, such as a detection
/// thread fed by a parsing thread), the replica gives every id the same
/// string as the original.
///
/// Subject ids are not carried: a replica resolves every table but
/// subjects, whose names nothing downstream of the parser needs and which
/// are the largest table by far.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// Per table: the new strings' bytes, back to back, and where each ends.
    strings: [(String, Vec<u32>); REPLICATED],
    addrs: Vec<IpAddr>,
    fields: Vec<String>,
}

impl Delta {
    /// Whether nothing new was interned.
    pub fn is_empty(&self) -> bool {
        self.strings.iter().all(|(_, e)| e.is_empty()) && self.addrs.is_empty() && self.fields.is_empty()
    }
}

impl Interner {
    /// Appends strings (back to back, with where each ends) as the next
    /// ids, without indexing them: from then on this interner only resolves.
    fn append_resolve_only(&mut self, bytes: &str, ends: &[u32]) {
        self.resolve_only = true;
        let base = self.bytes.len() as u64;
        self.bytes.push_str(bytes);
        self.ends.extend(ends.iter().map(|&e| base + u64::from(e)));
    }

    /// The strings with ids from `from` on, back to back, and where each ends (relative).
    fn since(&self, from: usize) -> (String, Vec<u32>) {
        let start = if from == 0 { 0 } else { self.ends[from - 1] as usize };
        let bytes = self.bytes[start..].to_owned();
        let ends = self.ends[from..].iter().map(|&e| (e as usize - start) as u32).collect();
        (bytes, ends)
    }
}

impl Symbols {
    fn replicated(&self) -> [&Interner; REPLICATED] {
        [&self.principals, &self.tokens, &self.keys, &self.operations, &self.services, &self.agents, &self.as_names]
    }

    fn replicated_mut(&mut self) -> [&mut Interner; REPLICATED] {
        [
            &mut self.principals,
            &mut self.tokens,
            &mut self.keys,
            &mut self.operations,
            &mut self.services,
            &mut self.agents,
            &mut self.as_names,
        ]
    }

    /// What was interned since `marks`, and the marks to take the next delta from.
    pub fn delta(&self, marks: &Marks) -> (Delta, Marks) {
        let mut delta = Delta::default();
        let mut next = *marks;
        for (i, t) in self.replicated().into_iter().enumerate() {
            if t.len() > marks.strings[i] {
                delta.strings[i] = t.since(marks.strings[i]);
                next.strings[i] = t.len();
            }
        }
        delta.addrs = self.addrs.addrs[marks.addrs..].to_vec();
        next.addrs = self.addrs.len();
        delta.fields = self.fields.all().skip(marks.fields).map(str::to_owned).collect();
        next.fields = marks.fields + delta.fields.len();
        (delta, next)
    }

    /// Brings a replica up to date with a delta of the original. Deltas must
    /// be applied in the order they were taken. A replica resolves ids to
    /// strings but cannot look strings up (no hash tables: half the memory);
    /// interning into its replicated tables panics.
    pub fn apply(&mut self, delta: &Delta) {
        for (t, (bytes, ends)) in self.replicated_mut().into_iter().zip(&delta.strings) {
            t.append_resolve_only(bytes, ends);
        }
        for &ip in &delta.addrs {
            self.addrs.intern(ip);
        }
        for f in &delta.fields {
            self.fields.bit(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_dense_in_order_of_first_appearance() {
        let mut i = Interner::new();
        assert_eq!(i.intern("b"), 0);
        assert_eq!(i.intern("a"), 1);
        assert_eq!(i.intern("b"), 0);
        assert_eq!(i.intern(""), 2);
        assert_eq!(i.resolve(1), "a");
        assert_eq!(i.get("a"), Some(1));
        assert_eq!(i.get("c"), None);
        assert_eq!(i.len(), 3);
    }

    #[test]
    fn a_replica_fed_deltas_resolves_every_id_but_subjects_alike() {
        let mut a = Symbols::default();
        let mut b = Symbols::default();
        let mut marks = Marks::default();
        for round in 0..3u32 {
            for i in 0..50u32 {
                a.principal(&format!("p{}", i % (7 + round)));
                a.token(&format!("token-{round}-{i}"));
                a.subject(&format!("c{i}"));
                a.addrs.intern(IpAddr::from([10, 0, round as u8, (i % 9) as u8]));
                a.fields.bit(&format!("f{}", i % (2 + round)));
            }
            a.key("k");
            let (delta, next) = a.delta(&marks);
            assert!(!delta.is_empty());
            b.apply(&delta);
            marks = next;
            assert!(a.delta(&marks).0.is_empty());
        }
        assert_eq!(b.principals.len(), a.principals.len());
        assert_eq!(b.tokens.len(), a.tokens.len());
        for id in 0..a.tokens.len() as u32 {
            assert_eq!(b.token_name(TokenId(id)), a.token_name(TokenId(id)));
        }
        for id in 0..a.principals.len() as u32 {
            assert_eq!(b.principal_name(PrincipalId(id)), a.principal_name(PrincipalId(id)));
        }
        assert_eq!(b.addrs.len(), a.addrs.len());
        assert_eq!(b.addrs.resolve(AddrId(5)), a.addrs.resolve(AddrId(5)));
        assert_eq!(b.fields.all().collect::<Vec<_>>(), a.fields.all().collect::<Vec<_>>());
        assert_eq!(b.key_name(KeyId(0)), "k");
        assert!(b.subjects.is_empty());
        let replica = std::panic::catch_unwind(move || b.principal("p0"));
        assert!(replica.is_err(), "a replica must refuse to intern");
    }

    proptest! {
        #[test]
        fn interning_matches_a_naive_map(words in proptest::collection::vec("[a-c]{0,3}|[a-b]{9,14}", 0..200)) {
            let mut i = Interner::new();
            let mut naive: Vec<String> = Vec::new();
            for w in &words {
                let id = i.intern(w) as usize;
                match naive.iter().position(|n| n == w) {
                    Some(pos) => prop_assert_eq!(id, pos),
                    None => { prop_assert_eq!(id, naive.len()); naive.push(w.clone()); }
                }
            }
            for (id, w) in naive.iter().enumerate() {
                prop_assert_eq!(i.resolve(id as u32), w.as_str());
            }
        }
    }
}
