//! One exposure-index entry: what the accesses of one key in one hour (or
//! day) exposed, and its encoding in `index.redb`.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

/// Subjects an entry lists one by one before it keeps bitmaps: most keys
/// (a token, a customer's principal or address in one hour) reach one or
/// two subjects, and a list is smaller and cheaper to build than bitmaps.
const SMALL: usize = 16;

/// One key's accumulated exposure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Exposing accesses.
    pub events: u64,
    /// First event time, ms.
    pub first: i64,
    /// Last event time, ms.
    pub last: i64,
    /// While the entry is small: (subject, stable field bits) as returned
    /// (the first two inline: most keys reach one or two subjects, and a
    /// pending index holds millions of entries).
    pub small: SmallVec<[(u32, u64); 2]>,
    /// Per set of stable field bits: the subjects returned with exactly that set.
    pub groups: Vec<(u64, RoaringBitmap)>,
}

/// Appends `v` as a LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `at`, moving past it.
pub(super) fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl Entry {
    fn group_insert(&mut self, id: u32, mask: u64) {
        match self.groups.iter_mut().find(|g| g.0 == mask) {
            Some(g) => {
                g.1.insert(id);
            }
            None => self.groups.push((mask, std::iter::once(id).collect())),
        }
    }

    fn spill(&mut self) {
        for (id, mask) in std::mem::take(&mut self.small) {
            self.group_insert(id, mask);
        }
    }

    pub(super) fn add(&mut self, time: i64, subjects: &[(u32, u64)]) {
        if self.events == 0 {
            self.first = time;
            self.last = time;
        } else {
            self.first = self.first.min(time);
            self.last = self.last.max(time);
        }
        self.events += 1;
        for &(id, mask) in subjects {
            if self.groups.is_empty() {
                if !self.small.contains(&(id, mask)) {
                    self.small.push((id, mask));
                    if self.small.len() > SMALL {
                        self.spill();
                    }
                }
            } else {
                self.group_insert(id, mask);
            }
        }
    }

    /// Adds `other`'s accesses and subjects to this entry's.
    pub(super) fn merge_ref(&mut self, other: &Entry) {
        if other.events == 0 {
            return;
        }
        if self.events == 0 {
            self.clone_from(other);
            return;
        }
        self.events += other.events;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        for p in &other.small {
            if !self.small.contains(p) {
                self.small.push(*p);
            }
        }
        if !other.groups.is_empty() || !self.groups.is_empty() || self.small.len() > SMALL {
            self.spill();
        }
        for (mask, b) in &other.groups {
            match self.groups.iter_mut().find(|g| g.0 == *mask) {
                Some(g) => g.1 |= b,
                None => self.groups.push((*mask, b.clone())),
            }
        }
    }

    /// Encodes the entry:
    /// `events | first: i64 LE | last - first | 0, n, (subject delta, bits)*`
    /// for a small entry, `... | 1, n, (bits, length, roaring)*` otherwise
    /// (integers other than `first` as LEB128 varints).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            24 + 6 * self.small.len() + self.groups.iter().map(|g| 12 + g.1.serialized_size()).sum::<usize>(),
        );
        self.encode_into(&mut out);
        out
    }

    /// As [`Entry::encode`], appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let out = &mut *out;
        put_varint(out, self.events);
        out.extend_from_slice(&self.first.to_le_bytes());
        put_varint(out, self.last.wrapping_sub(self.first) as u64);
        if self.groups.is_empty() {
            out.push(0);
            let mut small: SmallVec<[(u32, u64); SMALL + 1]> = self.small.iter().copied().collect();
            small.sort_unstable();
            put_varint(out, small.len() as u64);
            let mut prev = 0u32;
            for (id, mask) in small {
                put_varint(out, u64::from(id - prev));
                put_varint(out, mask);
                prev = id;
            }
        } else {
            out.push(1);
            let mut groups: Vec<&(u64, RoaringBitmap)> = self.groups.iter().collect();
            groups.sort_unstable_by_key(|g| g.0);
            put_varint(out, groups.len() as u64);
            for (mask, b) in groups {
                put_varint(out, *mask);
                put_varint(out, b.serialized_size() as u64);
                // Writing to a Vec cannot fail.
                let _ = b.serialize_into(&mut *out);
            }
        }
    }

    /// Decodes an entry; `None` when the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut at = 0;
        let events = get_varint(bytes, &mut at)?;
        let first = i64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
        at += 8;
        let last = first.wrapping_add(get_varint(bytes, &mut at)? as i64);
        let tag = *bytes.get(at)?;
        at += 1;
        let n = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
        let mut e = Self { events, first, last, small: SmallVec::new(), groups: Vec::new() };
        match tag {
            0 => {
                let mut prev = 0u32;
                for _ in 0..n.min(SMALL + 1) {
                    let id = prev.checked_add(u32::try_from(get_varint(bytes, &mut at)?).ok()?)?;
                    e.small.push((id, get_varint(bytes, &mut at)?));
                    prev = id;
                }
            }
            1 => {
                for _ in 0..n.min(64) {
                    let mask = get_varint(bytes, &mut at)?;
                    let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                    let b = RoaringBitmap::deserialize_from(bytes.get(at..at.checked_add(len)?)?).ok()?;
                    at += len;
                    e.groups.push((mask, b));
                }
            }
            _ => return None,
        }
        (at == bytes.len()).then_some(e)
    }

    /// Subjects per set of field bits.
    pub fn by_mask(&self) -> BTreeMap<u64, RoaringBitmap> {
        let mut m: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
        for (k, v) in &self.groups {
            *m.entry(*k).or_default() |= v;
        }
        for &(id, k) in &self.small {
            m.entry(k).or_default().insert(id);
        }
        m.retain(|_, v| !v.is_empty());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(items: &[(u32, u64)]) -> BTreeMap<u64, RoaringBitmap> {
        let mut m: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
        for &(id, mask) in items {
            m.entry(mask).or_default().insert(id);
        }
        m
    }

    proptest! {
        // Entries built by adding, merged across commits, encoded and
        // decoded, hold exactly the subjects per field set that were added,
        // whether they stayed small lists or spilled into bitmaps.
        #[test]
        fn entries_keep_every_subject_through_merge_and_encoding(
            a in prop::collection::vec((0u32..200, 1u64..8), 0..40),
            b in prop::collection::vec((0u32..200, 1u64..8), 0..40),
        ) {
            let build = |items: &[(u32, u64)]| {
                let mut e = Entry::default();
                for (i, p) in items.iter().enumerate() {
                    e.add(1000 + i as i64, &[*p]);
                }
                e
            };
            let (ea, eb) = (build(&a), build(&b));
            let mut m = Entry::decode(&ea.encode()).unwrap();
            m.merge_ref(&Entry::decode(&eb.encode()).unwrap());
            let m = Entry::decode(&m.encode()).unwrap();
            let all: Vec<(u32, u64)> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(m.by_mask(), naive(&all));
            prop_assert_eq!(m.events, all.len() as u64);
            if !all.is_empty() {
                prop_assert_eq!(m.first, 1000);
                prop_assert_eq!(m.last, 1000 + a.len().max(b.len()) as i64 - 1);
            }
        }
    }

    #[test]
    fn hostile_entry_bytes_do_not_decode() {
        assert!(Entry::decode(&[]).is_none());
        assert!(Entry::decode(&[0xff; 40]).is_none());
        let mut e = Entry::default();
        e.add(5, &[(7, 1)]);
        let mut bytes = e.encode();
        bytes.push(0);
        assert!(Entry::decode(&bytes).is_none(), "trailing bytes");
        bytes.truncate(bytes.len() - 3);
        assert!(Entry::decode(&bytes).is_none(), "cut short");
    }
}
