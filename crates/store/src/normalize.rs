//! The ingest hot path: one reader access to its ledger record and its
//! index exposure, without allocating.
//!
//! The record is the JSON of [`crate::StoredEvent::Access`], written from
//! borrowed views of the reader's symbols (a test holds the two byte for
//! byte). Pseudonyms are computed once per subject and principal per run and
//! then found by the reader's dense id. The index gets the reader's ids
//! ([`Exposure`]) and, the first time each id is used, its value bytes.

use std::net::IpAddr;

use fixedbitset::FixedBitSet;
use model::{Access, FieldClasses, FieldSet, PrincipalId, Subject, SubjectId, Symbols};
use serde::{Serialize, Serializer};

use crate::Error;
use crate::KeepClear;
#[cfg(test)]
use crate::index::Writer as IndexWriter;
use crate::index::{ExposedSubject, Exposure, NameDim, PrincipalRef, ip_key, string_value};
use crate::secret::Secret;
use crate::subjects::MapWriter;
use crate::writer::Writer;

const UNKNOWN: u32 = u32::MAX;

/// Per-run caches of the hot path.
#[derive(Default)]
pub(crate) struct Normalizer {
    /// Reader subject id → dense id in the subject map.
    by_subject: Vec<u32>,
    /// Reader principal id → dense id of its pseudonym (pseudonymised principals only).
    by_principal: Vec<u32>,
    /// Per [`NameDim`]: the ids whose value the index was given.
    named: [FixedBitSet; 7],
    hexes: Vec<[u8; 32]>,
    exposed: Vec<ExposedSubject>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalizer").field("subjects", &self.by_subject.len()).finish()
    }
}

/// Where exposures go: the index thread, or the index itself.
pub(crate) enum IndexSink<'a> {
    /// The ledger thread, which passes it on to the index thread.
    Thread(&'a mut Writer),
    /// The index, on this thread (tests).
    #[cfg(test)]
    Direct(&'a mut IndexWriter),
}

impl IndexSink<'_> {
    fn name(&mut self, dim: NameDim, id: u32, value: &[u8]) -> Result<(), Error> {
        match self {
            Self::Thread(b) => b.name(dim, id, value),
            #[cfg(test)]
            Self::Direct(i) => {
                i.name(dim, id, value);
                Ok(())
            }
        }
    }

    fn exposure(&mut self, x: Exposure, subjects: &[ExposedSubject]) -> Result<(), Error> {
        match self {
            Self::Thread(b) => b.exposure(x, subjects),
            #[cfg(test)]
            Self::Direct(i) => i.add_exposure(&x, subjects),
        }
    }
}

fn cached(v: &[u32], i: usize) -> Option<u32> {
    v.get(i).copied().filter(|&d| d != UNKNOWN)
}

fn remember(v: &mut Vec<u32>, i: usize, dense: u32) {
    if i >= v.len() {
        v.resize((i + 1).next_power_of_two(), UNKNOWN);
    }
    v[i] = dense;
}

/// The dense id of a subject id, pseudonymising and noting it in the map on first sight.
fn note(secret: &Secret, map: &mut MapWriter, id: &str) -> Result<u32, Error> {
    map.note(secret.pseudonym_bytes(id), id)
}

impl Normalizer {
    /// Forgets which values the index was given: it forgets them at each
    /// commit (and is given them again when next used).
    pub(crate) fn committed(&mut self) {
        for n in &mut self.named {
            n.clear();
        }
    }

    fn subject(
        &mut self,
        id: SubjectId,
        symbols: &Symbols,
        secret: &Secret,
        map: &mut MapWriter,
    ) -> Result<u32, Error> {
        if let Some(d) = cached(&self.by_subject, id.index()) {
            return Ok(d);
        }
        let d = note(secret, map, symbols.subject_name(id))?;
        remember(&mut self.by_subject, id.index(), d);
        Ok(d)
    }

    /// The dense id of the principal's pseudonym when it is stored as one:
    /// unless `clear` keeps it (the directory's staff and services).
    fn principal(
        &mut self,
        id: PrincipalId,
        symbols: &Symbols,
        secret: &Secret,
        map: &mut MapWriter,
        clear: &KeepClear,
    ) -> Result<Option<u32>, Error> {
        if let Some(d) = cached(&self.by_principal, id.index()) {
            return Ok(Some(d));
        }
        let name = symbols.principal_name(id);
        if clear.keeps(name, symbols) {
            return Ok(None);
        }
        let d = note(secret, map, name)?;
        remember(&mut self.by_principal, id.index(), d);
        Ok(Some(d))
    }

    /// Gives the index the value of `id` in `dim` unless it has it already.
    fn name(
        &mut self,
        sink: &mut IndexSink<'_>,
        dim: NameDim,
        id: u32,
        value: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), Error> {
        let bits = &mut self.named[dim as usize];
        let i = id as usize;
        if i >= bits.len() {
            bits.grow((i + 1).next_power_of_two());
        }
        if bits.put(i) {
            return Ok(());
        }
        sink.name(dim, id, &value())
    }

    /// Writes the record of `a` (JSON, as [`crate::StoredEvent::Access`]
    /// serializes) and hands the index its exposure; returns the record.
    pub(crate) fn access(
        &mut self,
        a: &Access<'_>,
        symbols: &Symbols,
        secret: &Secret,
        map: &mut MapWriter,
        clear: &KeepClear,
        sink: &mut IndexSink<'_>,
    ) -> Result<&[u8], Error> {
        let pseudo = self.principal(a.principal, symbols, secret, map, clear)?;
        self.hexes.clear();
        self.exposed.clear();
        for s in a.subjects {
            let d = self.subject(s.id, symbols, secret, map)?;
            self.hexes.push(hex_of(map, d)?);
            self.exposed.push(ExposedSubject { dense: d, kind: s.kind.as_str(), fields: s.fields.0 });
        }
        let phex = match pseudo {
            Some(d) => Some(hex_of(map, d)?),
            None => None,
        };
        let principal = match &phex {
            Some(h) => hex_str(h),
            None => symbols.principal_name(a.principal),
        };
        let record = AccessRef {
            class: "access",
            time: a.time,
            activity_id: crate::activity_id(a.activity),
            success: a.success,
            principal,
            principal_kind: a.principal_kind.as_str(),
            token: a.token.map(|t| symbols.token_name(t)),
            key: a.key.map(|k| symbols.key_name(k)),
            ip: Ip(symbols.addrs.resolve(a.src)),
            asn: a.asn,
            country: a.country.as_ref().map(model::Country::as_str),
            user_agent: a.user_agent.map(|u| symbols.agent_name(u)),
            operation: symbols.operation_name(a.operation),
            service: a.service.map(|s| symbols.service_name(s)),
            subjects: SubjectsRef { hexes: &self.hexes, subjects: a.subjects, classes: &symbols.fields },
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let written = serde_json::to_writer(&mut buf, &record).map_err(Error::Encode);
        self.buf = buf;
        written?;
        if a.success && !a.subjects.is_empty() {
            self.expose(a, pseudo, principal, symbols, sink)?;
        }
        Ok(&self.buf)
    }

    fn expose(
        &mut self,
        a: &Access<'_>,
        pseudo: Option<u32>,
        principal: &str,
        symbols: &Symbols,
        sink: &mut IndexSink<'_>,
    ) -> Result<(), Error> {
        if let Some(k) = a.key {
            self.name(sink, NameDim::Key, k.0, || string_value(symbols.key_name(k)))?;
        }
        self.name(sink, NameDim::Addr, a.src.0, || ip_key(symbols.addrs.resolve(a.src)).to_vec())?;
        let p = match pseudo {
            Some(d) => {
                self.name(sink, NameDim::Pseudonym, d, || string_value(principal))?;
                PrincipalRef::Pseudonym(d)
            }
            None => {
                self.name(sink, NameDim::Principal, a.principal.0, || string_value(principal))?;
                PrincipalRef::Clear(a.principal.0)
            }
        };
        if let Some(t) = a.token {
            self.name(sink, NameDim::Token, t.0, || string_value(symbols.token_name(t)))?;
        }
        self.name(sink, NameDim::Operation, a.operation.0, || string_value(symbols.operation_name(a.operation)))?;
        let fields = a.subjects.iter().fold(FieldSet::default(), |acc, s| acc | s.fields);
        for bit in fields.bits() {
            self.name(sink, NameDim::Field, u32::from(bit), || symbols.fields.name(bit).as_bytes().to_vec())?;
        }
        let x = Exposure {
            time: a.time,
            key: a.key.map(|k| k.0),
            addr: a.src.0,
            asn: a.asn,
            principal: p,
            token: a.token.map(|t| t.0),
            operation: a.operation.0,
            country: a.country.map(|c| c.0),
        };
        let exposed = std::mem::take(&mut self.exposed);
        let r = sink.exposure(x, &exposed);
        self.exposed = exposed;
        r
    }
}

fn hex_of(map: &MapWriter, dense: u32) -> Result<[u8; 32], Error> {
    let p = map.pseudonym_bytes(dense).ok_or_else(|| Error::Corrupt(format!("subject map: no entry {dense}")))?;
    let mut out = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(p, &mut out);
    Ok(out)
}

fn hex_str(h: &[u8; 32]) -> &str {
    // Hex digits are ASCII.
    std::str::from_utf8(h).unwrap_or_default()
}

/// [`crate::StoredEvent::Access`] as borrowed views: the same JSON.
#[derive(Serialize)]
struct AccessRef<'a> {
    class: &'static str,
    time: i64,
    activity_id: u8,
    success: bool,
    principal: &'a str,
    principal_kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    ip: Ip,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    subjects: SubjectsRef<'a>,
}

/// An address written as its text, without a `String`.
struct Ip(IpAddr);

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct SubjectsRef<'a> {
    hexes: &'a [[u8; 32]],
    subjects: &'a [Subject],
    classes: &'a FieldClasses,
}

#[derive(Serialize)]
struct SubjectRef<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    fields: FieldsRef<'a>,
}

struct FieldsRef<'a>(FieldSet, &'a FieldClasses);

impl Serialize for FieldsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.names(self.0))
    }
}

impl Serialize for SubjectsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.hexes.iter().zip(self.subjects).map(|(h, sub)| SubjectRef {
            id: hex_str(h),
            kind: sub.kind.as_str(),
            fields: FieldsRef(sub.fields, self.classes),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Activity, Country, Event, PrincipalKind, SubjectKind};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, control characters and non-ASCII: everything JSON escapes.
        proptest::string::string_regex("[a-z0-9 \"\\\\/\u{1}\u{7f}é한{}]{0,12}").unwrap()
    }

    proptest! {
        // The hot path's record is the JSON of StoredEvent::Access, byte for byte.
        #[test]
        fn the_hot_path_writes_the_stored_event_json(
            principal in text(), customer in any::<bool>(), token in proptest::option::of(text()),
            key in proptest::option::of(text()), agent in proptest::option::of(text()), op in text(),
            service in proptest::option::of(text()), v6 in any::<bool>(), asn in proptest::option::of(any::<u32>()),
            country in any::<bool>(), success in any::<bool>(), activity in 0u8..6,
            subjects in proptest::collection::vec((text(), any::<bool>(), 1u64..16), 0..4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let secret = Secret::load_or_create(&dir.path().join("secret")).unwrap();
            let mut map = MapWriter::open(dir.path(), &secret).unwrap();
            let mut index = IndexWriter::open(dir.path()).unwrap();
            let mut sy = Symbols::default();
            for f in ["name", "phone", "address", "entrance \"code\""] {
                sy.fields.bit(f);
            }
            let subs: Vec<Subject> = subjects
                .iter()
                .map(|(id, recipient, f)| Subject {
                    id: sy.subject(id),
                    kind: if *recipient { SubjectKind::Recipient } else { SubjectKind::Customer },
                    fields: FieldSet(*f),
                })
                .collect();
            let src = if v6 { IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7]) } else { IpAddr::from([10, 1, 2, 3]) };
            let a = Access {
                time: 1_743_470_891_167,
                activity: Activity::from_id(activity),
                success,
                principal: sy.principal(&principal),
                principal_kind: if customer { PrincipalKind::Customer } else { PrincipalKind::Employee },
                token: token.as_deref().map(|t| sy.token(t)),
                key: key.as_deref().map(|k| sy.key(k)),
                src: sy.addrs.intern(src),
                country: country.then(|| Country::parse("kr").unwrap()),
                asn,
                as_name: None,
                user_agent: agent.as_deref().map(|u| sy.agent(u)),
                operation: sy.operation(&op),
                service: service.as_deref().map(|s| sy.service(s)),
                subjects: &subs,
            };
            // Staff (the directory's) in clear, customers as pseudonyms.
            let clear = if customer { KeepClear::default() } else { KeepClear::of([principal.clone()]) };
            let want = serde_json::to_vec(&crate::StoredEvent::from_event(&Event::Access(a.clone()), &sy, &secret, &clear)).unwrap();
            let mut norm = Normalizer::default();
            let got = norm.access(&a, &sy, &secret, &mut map, &clear, &mut IndexSink::Direct(&mut index)).unwrap().to_vec();
            prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
            let shown = !customer && sy.subjects.get(&principal).is_none();
            prop_assert_eq!(String::from_utf8_lossy(&got).contains(&format!("\"principal\":{}", serde_json::to_string(&principal).unwrap())), shown);
            // Read back, the record is the event (the plain-struct path verify takes).
            let back = crate::StoredEvent::from_json(&got).unwrap();
            prop_assert_eq!(&back, &serde_json::from_slice::<crate::StoredEvent>(&got).unwrap());
            prop_assert_eq!(serde_json::to_vec(&back).unwrap(), want.clone());
            // Again, from the caches.
            let again = norm.access(&a, &sy, &secret, &mut map, &clear, &mut IndexSink::Direct(&mut index)).unwrap().to_vec();
            prop_assert_eq!(again, want);
        }
    }
}
