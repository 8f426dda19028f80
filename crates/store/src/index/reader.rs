//! Queries of the exposure index: a [`Reader`] reads what the writer
//! committed, on any thread, without its uncommitted state.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use roaring::MultiOps;
use roaring::RoaringBitmap;

use super::*;

/// A handle on an index's database for queries.
#[derive(Clone)]
pub struct Reader {
    pub(super) db: std::sync::Arc<redb::Database>,
    /// What the writer had committed when this handle was made (the answer
    /// of [`Reader::covered`] should the database not be readable).
    pub(super) covered: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("index::Reader").field("covered", &self.covered).finish()
    }
}

impl Reader {
    /// Ledger records the committed index covers (as committed: another
    /// handle on the same database may have moved it).
    pub fn covered(&self) -> u64 {
        let read = || -> Result<u64, Error> {
            let txn = redb_try!(self.db.begin_read(), "begin");
            let m = redb_try!(txn.open_table(META), "meta");
            Ok(redb_try!(m.get("records"), "meta").map_or(0, |v| v.value()))
        };
        read().unwrap_or(self.covered)
    }

    /// Field class names by stable bit, as committed.
    pub(super) fn field_names(&self) -> Result<Vec<String>, Error> {
        let txn = redb_try!(self.db.begin_read(), "begin");
        let t = redb_try!(txn.open_table(FIELDS), "fields");
        let mut by_bit: Vec<(u8, String)> = Vec::new();
        for row in redb_try!(t.iter(), "fields") {
            let (k, v) = redb_try!(row, "fields");
            by_bit.push((v.value(), k.value().to_owned()));
        }
        by_bit.sort();
        if by_bit.iter().enumerate().any(|(i, (bit, _))| usize::from(*bit) != i) {
            return Err(Error::Corrupt("index.redb: field bits are not dense".into()));
        }
        Ok(by_bit.into_iter().map(|(_, n)| n).collect())
    }

    /// Subjects by the kind they were first seen as.
    pub fn kinds(&self) -> Result<BTreeMap<String, RoaringBitmap>, Error> {
        let txn = redb_try!(self.db.begin_read(), "begin");
        let t = redb_try!(txn.open_table(KINDS), "kinds");
        let mut out = BTreeMap::new();
        for row in redb_try!(t.iter(), "kinds") {
            let (k, v) = redb_try!(row, "kinds");
            let b = RoaringBitmap::deserialize_from(v.value())
                .map_err(|e| Error::Corrupt(format!("index.redb: a kind bitmap: {e}")))?;
            out.insert(k.value().to_owned(), b);
        }
        Ok(out)
    }

    /// Sums the exposure of every key in `ranges` whose hour is in `hours`.
    /// Keys named by several ranges count once.
    pub fn lookup(&self, ranges: &[ValueRange], hours: RangeInclusive<u32>) -> Result<Found, Error> {
        let mut raw: Vec<Vec<u8>> = Vec::new();
        let mut hours_found = Vec::new();
        // Whole days from the daily roll-ups, the hours around them from
        // the hourly entries.
        let (h0, h1) = (u64::from(*hours.start()), u64::from(*hours.end()));
        let (d0, d1) = (h0.div_ceil(24), (h1 + 1) / 24);
        let daily = ranges.iter().all(|r| rolled_up(r.dim as u8)) && d0 < d1;
        let mut hourly: Vec<RangeInclusive<u32>> = Vec::new();
        if daily {
            let clamp = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            self.entries_in(ranges, DAILY, &(clamp(d0)..=clamp(d1 - 1)), |day, v| {
                hours_found.extend(day.saturating_mul(24)..day.saturating_mul(24).saturating_add(24));
                raw.push(v.to_vec());
            })?;
            if h0 < d0 * 24 {
                hourly.push(clamp(h0)..=clamp(d0 * 24 - 1));
            }
            if d1 * 24 <= h1 {
                hourly.push(clamp(d1 * 24)..=clamp(h1));
            }
        } else {
            hourly.push(hours.clone());
        }
        for h in &hourly {
            self.entries_in(ranges, 0, h, |hour, v| {
                hours_found.push(hour);
                raw.push(v.to_vec());
            })?;
        }
        // Decoding and unions are the work: two threads, each over half
        // the entries, then the two halves joined.
        let (a, b) = raw.split_at(raw.len() / 2);
        let (pa, pb) = std::thread::scope(|scope| {
            let h = (a.len() > 16).then(|| scope.spawn(|| fold(a)));
            let pb = fold(b);
            let pa = match h {
                Some(h) => h.join().unwrap_or_else(|_| Err(Error::Stopped("index: a lookup thread failed".into()))),
                None => fold(a),
            };
            (pa, pb)
        });
        let (pa, pb) = (pa?, pb?);
        let events = pa.events + pb.events;
        let span = match (pa.span, pb.span) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, None) | (None, x) => x,
        };
        let mut by_mask: BTreeMap<u64, Vec<RoaringBitmap>> = BTreeMap::new();
        for (m, b) in pa.per_mask.into_iter().chain(pb.per_mask) {
            by_mask.entry(m).or_default().push(b);
        }
        let per_mask: Vec<(u64, RoaringBitmap)> = by_mask.into_iter().map(|(m, bs)| (m, bs.union())).collect();
        let subjects = per_mask.iter().map(|p| &p.1).union();
        let mut fields = BTreeMap::new();
        for (bit, name) in self.field_names()?.iter().enumerate() {
            let b = per_mask.iter().filter(|p| p.0 & (1u64 << bit) != 0).map(|p| &p.1).union();
            if !b.is_empty() {
                fields.insert(name.clone(), b);
            }
        }
        hours_found.sort_unstable();
        hours_found.dedup();
        Ok(Found { events, span, subjects, fields, hours: hours_found })
    }

    /// The hours in `hours` in which any key of `ranges` has an entry (read
    /// from the keys alone: no bitmap is decoded).
    pub fn hours(&self, ranges: &[ValueRange], hours: RangeInclusive<u32>) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        self.entries_in(ranges, 0, &hours, |hour, _| out.push(hour))?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Calls `each` with the hour and value of every entry of `ranges`
    /// whose hour is in `hours`; a key named by several ranges once.
    ///
    /// Keys are `dim | hour | value`: for each dimension this skips from one
    /// hour that holds any key of it to the next (one seek), and reads the
    /// ranges' values within each such hour (one seek each).
    fn entries_in(
        &self,
        ranges: &[ValueRange],
        level: u8,
        hours: &RangeInclusive<u32>,
        mut each: impl FnMut(u32, &[u8]),
    ) -> Result<(), Error> {
        let txn = redb_try!(self.db.begin_read(), "begin");
        let t = redb_try!(txn.open_table(EXPOSURE), "exposure");
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut dims: Vec<u8> = ranges.iter().map(|r| r.dim as u8 | level).collect();
        dims.sort_unstable();
        dims.dedup();
        for dim in dims {
            let mut hour = *hours.start();
            loop {
                // The next hour at or after `hour` holding a key of `dim`.
                let from = key_prefix(dim, hour);
                let next = match redb_try!(t.range(from.as_slice()..), "exposure").next() {
                    Some(row) => {
                        let (k, _) = redb_try!(row, "exposure");
                        let k = k.value();
                        if k.first() != Some(&dim) {
                            break;
                        }
                        key_hour(k)
                    }
                    None => break,
                };
                let Some(h) = next.filter(|h| hours.contains(h)) else { break };
                let prefix = key_prefix(dim, h);
                for r in ranges.iter().filter(|r| r.dim as u8 | level == dim) {
                    let vlen = r.lo.len();
                    pack::each_in(&t, &prefix, r.lo.as_slice()..=r.hi.as_slice(), |value, entry| {
                        // Values of another length (strings) are not asked for.
                        if value.len() != vlen {
                            return;
                        }
                        if ranges.len() > 1 {
                            let mut k = prefix.to_vec();
                            k.extend_from_slice(value);
                            if !seen.insert(k) {
                                return;
                            }
                        }
                        each(h, entry);
                    })?;
                }
                match h.checked_add(1) {
                    Some(n) => hour = n,
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// The blocks holding exposing accesses at times in any of `spans`
    /// (inclusive, ms), in ledger order.
    pub fn blocks(&self, spans: &[(i64, i64)]) -> Result<Vec<BlockRef>, Error> {
        let txn = redb_try!(self.db.begin_read(), "begin");
        let t = redb_try!(txn.open_table(BLOCKS), "blocks");
        let mut out = Vec::new();
        for row in redb_try!(t.iter(), "blocks") {
            let (k, v) = redb_try!(row, "blocks");
            let (segment, offset) = k.value();
            let (lo, hi) = v.value();
            if spans.iter().any(|&(a, b)| lo <= b && a <= hi) {
                out.push(BlockRef { segment, offset });
            }
        }
        Ok(out)
    }

    /// How this index differs from `other` (one rebuilt from the ledger):
    /// each difference named by table, dimension and hour; empty when equal.
    pub fn differences(&self, other: &Reader) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let (a, b) = (redb_try!(self.db.begin_read(), "begin"), redb_try!(other.db.begin_read(), "begin"));
        let (ta, tb) = (redb_try!(a.open_table(EXPOSURE), "exposure"), redb_try!(b.open_table(EXPOSURE), "exposure"));
        // Compared entry by entry: pack boundaries depend on the commits
        // that wrote them, not on what the index says.
        let mut ia = pack::Flat::new(&ta)?;
        let mut ib = pack::Flat::new(&tb)?;
        let (mut extra, mut missing, mut altered) = (0u64, 0u64, 0u64);
        let mut first: Option<String> = None;
        let mut na = ia.next().transpose()?;
        let mut nb = ib.next().transpose()?;
        loop {
            let order = match (&na, &nb) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((x, _)), Some((y, _))) => x.cmp(y),
            };
            match order {
                std::cmp::Ordering::Less => {
                    extra += 1;
                    first.get_or_insert_with(|| {
                        describe(na.as_ref().map(|k| k.0.as_slice()).unwrap_or_default(), "not in the ledger")
                    });
                    na = ia.next().transpose()?;
                }
                std::cmp::Ordering::Greater => {
                    missing += 1;
                    first.get_or_insert_with(|| {
                        describe(nb.as_ref().map(|k| k.0.as_slice()).unwrap_or_default(), "missing")
                    });
                    nb = ib.next().transpose()?;
                }
                std::cmp::Ordering::Equal => {
                    // Equal bytes are the same entry; other bytes may be too
                    // (the same subjects in bitmaps built another way).
                    if let (Some((k, va)), Some((_, vb))) = (&na, &nb)
                        && va != vb
                    {
                        let (ea, eb) = (Entry::decode(va), Entry::decode(vb));
                        if !same_entry(ea.as_ref(), eb.as_ref()) {
                            altered += 1;
                            first.get_or_insert_with(|| describe(k, "altered"));
                        }
                    }
                    na = ia.next().transpose()?;
                    nb = ib.next().transpose()?;
                }
            }
        }
        if extra + missing + altered > 0 {
            out.push(format!(
                "index.redb: {altered} exposure entries differ from the ledger's, {missing} are missing, {extra} are not in the ledger (first: {})",
                first.unwrap_or_default()
            ));
        }
        if self.kinds()? != other.kinds()? {
            out.push("index.redb: the subjects' kinds differ from the ledger's".into());
        }
        let blocks = |i: &Reader| -> Result<Vec<BlockZone>, Error> {
            let txn = redb_try!(i.db.begin_read(), "begin");
            let t = redb_try!(txn.open_table(BLOCKS), "blocks");
            let mut v = Vec::new();
            for row in redb_try!(t.iter(), "blocks") {
                let (k, x) = redb_try!(row, "blocks");
                v.push((k.value(), x.value()));
            }
            Ok(v)
        };
        if blocks(self)? != blocks(other)? {
            out.push("index.redb: the block time map differs from the ledger's".into());
        }
        if self.covered() != other.covered() {
            out.push(format!("index.redb: covers {} records, the ledger {}", self.covered(), other.covered()));
        }
        Ok(out)
    }

    /// Bytes of the index file.
    pub fn bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("index.redb")).map_or(0, |m| m.len())
    }
}
