//! Packs: many index entries in one redb value.
//!
//! redb costs about a microsecond or two per key inserted (measured here:
//! 600,000 sorted 26-byte keys take 0.6 to 0.8 s), and an hour of a busy
//! platform has hundreds of thousands of principals and tokens, so one key
//! per entry made the index's commits cost more than everything else
//! `ingest` does. A pack holds the entries of consecutive values of one
//! dimension and hour (or day), in value order, up to [`PACK_BYTES`]; its
//! redb key is `dim | hour | first value`, so packs of one dimension and hour
//! are in value order and never overlap. A commit that opens a new hour
//! writes its entries as a few packs, appended; one that adds to an hour
//! already written merges into the packs its values fall in.
//!
//! Encoding: `n: varint | (value length: varint | value | entry length: varint | entry)*`.

use std::ops::RangeInclusive;

use redb::{ReadableTable, Table};

use super::Entry;
use super::entry::{get_varint, put_varint};
use crate::Error;

/// A pack is closed once its encoding reaches this many bytes.
pub const PACK_BYTES: usize = 8 << 10;
/// ... or this many entries.
pub const PACK_ENTRIES: usize = 256;
/// Bytes of a key before the value: dimension and hour.
pub const PREFIX: usize = 5;

fn corrupt() -> Error {
    Error::Corrupt("index.redb: an exposure pack does not decode".into())
}

/// One entry of a pack: its value and its encoded [`Entry`].
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// The (value, entry bytes) pairs of a pack, in order; an error when the
/// bytes are not a pack (or not in strict value order).
pub fn decode(bytes: &[u8]) -> Result<Vec<Pair<'_>>, Error> {
    let mut at = 0;
    let n = usize::try_from(get_varint(bytes, &mut at).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let mut out = Vec::with_capacity(n.min(PACK_ENTRIES * 4));
    for _ in 0..n {
        let mut field = || -> Option<&[u8]> {
            let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
            let v = bytes.get(at..at.checked_add(len)?)?;
            at += len;
            Some(v)
        };
        let value = field().ok_or_else(corrupt)?;
        let entry = field().ok_or_else(corrupt)?;
        if out.last().is_some_and(|(prev, _): &(&[u8], &[u8])| *prev >= value) {
            return Err(corrupt());
        }
        out.push((value, entry));
    }
    if at != bytes.len() {
        return Err(corrupt());
    }
    Ok(out)
}

/// Encodes pairs already in strict value order.
fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.iter().map(|(v, e)| v.len() + e.len() + 4).sum::<usize>() + 4);
    put_varint(&mut out, pairs.len() as u64);
    for (v, e) in pairs {
        put_varint(&mut out, v.len() as u64);
        out.extend_from_slice(v);
        put_varint(&mut out, e.len() as u64);
        out.extend_from_slice(e);
    }
    out
}

/// Writes `pairs` (in strict value order) as packs of `prefix`.
fn write_packs(t: &mut Table<&[u8], &[u8]>, prefix: &[u8], pairs: &[(&[u8], &[u8])]) -> Result<(), Error> {
    let mut start = 0;
    let mut bytes = 0;
    let mut key = Vec::new();
    for (i, (v, e)) in pairs.iter().enumerate() {
        bytes += v.len() + e.len() + 4;
        let last = i + 1 == pairs.len();
        if last || bytes >= PACK_BYTES || i + 1 - start >= PACK_ENTRIES {
            key.clear();
            key.extend_from_slice(prefix);
            key.extend_from_slice(pairs[start].0);
            t.insert(key.as_slice(), encode(&pairs[start..=i]).as_slice())
                .map_err(|e| Error::index("exposure")(e.into()))?;
            start = i + 1;
            bytes = 0;
        }
    }
    Ok(())
}

/// The keys of the packs of `prefix` that can hold values in `lo..=hi`:
/// the last pack starting at or before `lo`, and every pack starting after
/// it up to `hi`.
fn packs_over<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    prefix: &[u8],
    lo: &[u8],
    hi: &[u8],
) -> Result<Vec<Vec<u8>>, Error> {
    let err = |e: redb::StorageError| Error::index("exposure")(e.into());
    let mut from = prefix.to_vec();
    from.extend_from_slice(lo);
    let mut to = prefix.to_vec();
    to.extend_from_slice(hi);
    let mut keys = Vec::new();
    if let Some(row) = t.range::<&[u8]>(prefix..=from.as_slice()).map_err(err)?.next_back() {
        let (k, _) = row.map_err(err)?;
        keys.push(k.value().to_vec());
    }
    for row in t.range::<&[u8]>(from.as_slice()..=to.as_slice()).map_err(err)? {
        let (k, _) = row.map_err(err)?;
        let k = k.value();
        if keys.last().is_none_or(|l| l.as_slice() != k) {
            keys.push(k.to_vec());
        }
    }
    Ok(keys)
}

/// Adds `new` (values in strict order, with their entries) to the packs of
/// `prefix` (a dimension and hour): merged into the packs their values fall
/// in, which are rewritten; appended as new packs when there are none.
pub fn merge_into(t: &mut Table<&[u8], &[u8]>, prefix: &[u8], new: &[(&[u8], &Entry)]) -> Result<(), Error> {
    let (Some(first), Some(last)) = (new.first(), new.last()) else { return Ok(()) };
    let err = |e: redb::StorageError| Error::index("exposure")(e.into());
    let old_keys = packs_over(t, prefix, first.0, last.0)?;
    let mut old_bytes: Vec<Vec<u8>> = Vec::with_capacity(old_keys.len());
    for k in &old_keys {
        if let Some(v) = t.remove(k.as_slice()).map_err(err)? {
            old_bytes.push(v.value().to_vec());
        }
    }
    let mut old: Vec<(&[u8], &[u8])> = Vec::new();
    for b in &old_bytes {
        old.extend(decode(b)?);
    }
    // Merge two ordered lists; equal values merge their entries.
    let mut merged_entries: Vec<Vec<u8>> = Vec::new();
    let mut plan: Vec<(&[u8], Source)> = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let take_old = j >= new.len() || (i < old.len() && old[i].0 < new[j].0);
        let take_new = i >= old.len() || (j < new.len() && new[j].0 < old[i].0);
        if take_old {
            plan.push((old[i].0, Source::Old(i)));
            i += 1;
        } else if take_new {
            plan.push((new[j].0, Source::New(j)));
            j += 1;
        } else {
            let mut e = Entry::decode(old[i].1).ok_or_else(corrupt)?;
            e.merge_ref(new[j].1);
            merged_entries.push(e.encode());
            plan.push((old[i].0, Source::Merged(merged_entries.len() - 1)));
            i += 1;
            j += 1;
        }
    }
    // The new entries encoded end to end in one buffer.
    let mut new_bytes: Vec<u8> = Vec::new();
    let mut new_ends: Vec<usize> = Vec::with_capacity(new.len());
    for (_, e) in new {
        e.encode_into(&mut new_bytes);
        new_ends.push(new_bytes.len());
    }
    let pairs: Vec<(&[u8], &[u8])> = plan
        .iter()
        .map(|(v, s)| {
            let e: &[u8] = match *s {
                Source::Old(i) => old[i].1,
                Source::New(j) => &new_bytes[if j == 0 { 0 } else { new_ends[j - 1] }..new_ends[j]],
                Source::Merged(m) => &merged_entries[m],
            };
            (*v, e)
        })
        .collect();
    write_packs(t, prefix, &pairs)
}

/// Where a merged pair's entry comes from.
#[derive(Clone, Copy)]
enum Source {
    Old(usize),
    New(usize),
    Merged(usize),
}

/// Calls `each` with the value and entry bytes of every entry of `prefix`
/// whose value is in `lo..=hi`.
pub fn each_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    prefix: &[u8],
    values: RangeInclusive<&[u8]>,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), Error> {
    let err = |e: redb::StorageError| Error::index("exposure")(e.into());
    for k in packs_over(t, prefix, values.start(), values.end())? {
        let Some(v) = t.get(k.as_slice()).map_err(err)? else { continue };
        for (value, entry) in decode(v.value())? {
            if values.contains(&value) {
                each(value, entry);
            }
        }
    }
    Ok(())
}

/// Every entry of a table of packs, as (`dim | hour | value`, entry bytes),
/// in key order: what the packs hold, whatever their boundaries.
pub struct Flat<'a> {
    rows: redb::Range<'a, &'static [u8], &'static [u8]>,
    buf: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Flat<'a> {
    /// Flattens every pack of `t`.
    pub fn new<T: ReadableTable<&'static [u8], &'static [u8]>>(t: &'a T) -> Result<Self, Error> {
        let rows = t.iter().map_err(|e| Error::index("exposure")(e.into()))?;
        Ok(Self { rows, buf: std::collections::VecDeque::new() })
    }
}

impl Iterator for Flat<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buf.is_empty() {
            let row = match self.rows.next()? {
                Ok(r) => r,
                Err(e) => return Some(Err(Error::index("exposure")(e.into()))),
            };
            let (k, v) = row;
            let prefix = k.value().get(..PREFIX).unwrap_or_default();
            match decode(v.value()) {
                Ok(pairs) => {
                    for (value, entry) in pairs {
                        let mut key = prefix.to_vec();
                        key.extend_from_slice(value);
                        self.buf.push_back((key, entry.to_vec()));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");

    fn entry(id: u32) -> Entry {
        let mut e = Entry::default();
        e.add(i64::from(id), &[(id, 1)]);
        e
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        // Commits of random values merged into the packs of two hours hold,
        // entry by entry, what a plain map merged the same way holds, however
        // the packs split; lookups of value ranges find exactly the map's.
        #[test]
        fn merged_packs_hold_what_a_map_holds(
            commits in prop::collection::vec(prop::collection::btree_set((0u8..2, 0u16..3000), 0..900), 1..5),
            ranges in prop::collection::vec((0u16..3000, 0u16..400), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
            let mut naive: BTreeMap<(u8, Vec<u8>), Entry> = BTreeMap::new();
            for (round, c) in commits.iter().enumerate() {
                let txn = db.begin_write().unwrap();
                {
                    let mut t = txn.open_table(T).unwrap();
                    for hour in 0u8..2 {
                        let new: Vec<(Vec<u8>, Entry)> = c
                            .iter()
                            .filter(|(h, _)| *h == hour)
                            .map(|(_, v)| (v.to_be_bytes().to_vec(), entry(u32::from(*v) + round as u32)))
                            .collect();
                        for (v, e) in &new {
                            naive.entry((hour, v.clone())).or_default().merge_ref(e);
                        }
                        let new: Vec<(&[u8], &Entry)> = new.iter().map(|(v, e)| (v.as_slice(), e)).collect();
                        merge_into(&mut t, &[6, 0, 0, 0, hour], &new).unwrap();
                    }
                }
                txn.commit().unwrap();
            }
            let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
            let t = txn.open_table(T).unwrap();
            let flat: Vec<(Vec<u8>, Vec<u8>)> = Flat::new(&t).unwrap().map(Result::unwrap).collect();
            let want: Vec<(Vec<u8>, Vec<u8>)> = naive
                .iter()
                .map(|((h, v), e)| ([&[6, 0, 0, 0, *h][..], v].concat(), e.encode()))
                .collect();
            prop_assert_eq!(flat.len(), want.len());
            for (a, b) in flat.iter().zip(&want) {
                prop_assert_eq!(&a.0, &b.0);
                prop_assert_eq!(Entry::decode(&a.1).unwrap().by_mask(), Entry::decode(&b.1).unwrap().by_mask());
            }
            for (lo, width) in ranges {
                let (lo, hi) = (lo.to_be_bytes(), lo.saturating_add(width).to_be_bytes());
                let mut got = Vec::new();
                each_in(&t, &[6, 0, 0, 0, 1], &lo[..]..=&hi[..], |v, _| got.push(v.to_vec())).unwrap();
                let want: Vec<Vec<u8>> = naive
                    .keys()
                    .filter(|(h, v)| *h == 1 && v.as_slice() >= &lo[..] && v.as_slice() <= &hi[..])
                    .map(|(_, v)| v.clone())
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn packs_round_trip_and_refuse_hostile_bytes() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"ab", b""), (b"b", b"333")];
        let bytes = encode(&pairs);
        assert_eq!(decode(&bytes).unwrap(), pairs);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err(), "trailing bytes");
        let unordered: Vec<(&[u8], &[u8])> = vec![(b"b", b"1"), (b"a", b"1")];
        assert!(decode(&encode(&unordered)).is_err(), "out of order");
        assert!(decode(&[0xff; 12]).is_err());
    }
}
