//! Scope: what the accesses matching a query exposed, exactly: which
//! subjects (pseudonymous), of which kinds, and which field classes of each.
//!
//! This version answers by scanning the store's ledger (every event record
//! up to `HEAD`); the exposure index that answers indexed fields without a
//! scan is not built yet.

pub mod expr;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;
use store::StoredEvent;

pub use expr::{Expr, Field, ParseError, parse};

/// What to scope.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Which accesses (`None`: all).
    pub expr: Option<Expr>,
    /// From this event time (ms, inclusive).
    pub from: Option<i64>,
    /// To this event time (ms, inclusive).
    pub to: Option<i64>,
    /// Parse every record, even those the expression's necessary condition
    /// rules out from their bytes (to check that shortcut).
    pub no_prefilter: bool,
}

/// One subject in an answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposed {
    /// Its kind as the first matching access named it.
    pub kind: String,
    /// Every field class any matching access returned.
    pub fields: BTreeSet<String>,
}

/// The answer.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// Matching successful accesses.
    pub events: u64,
    /// Exposed subjects by pseudonym.
    pub subjects: HashMap<String, Exposed>,
    /// Event time of the first and last matching access.
    pub span: Option<(i64, i64)>,
}

/// The answer as the contract's `--format json` has it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Matching accesses.
    pub events: u64,
    /// Distinct subjects.
    pub subjects: u64,
    /// Distinct subjects per kind.
    pub subjects_by_type: BTreeMap<String, u64>,
    /// Distinct subjects per field class.
    pub fields: BTreeMap<String, u64>,
    /// First matching access, ms.
    pub first_seen_time: Option<i64>,
    /// Last matching access, ms.
    pub last_seen_time: Option<i64>,
}

impl Answer {
    /// Counts per kind and per field class.
    pub fn summary(&self) -> Summary {
        let mut by_type = BTreeMap::new();
        let mut fields = BTreeMap::new();
        for s in self.subjects.values() {
            *by_type.entry(s.kind.clone()).or_insert(0) += 1;
            for f in &s.fields {
                *fields.entry(f.clone()).or_insert(0) += 1;
            }
        }
        Summary {
            events: self.events,
            subjects: self.subjects.len() as u64,
            subjects_by_type: by_type,
            fields,
            first_seen_time: self.span.map(|s| s.0),
            last_seen_time: self.span.map(|s| s.1),
        }
    }
}

/// Answers a query over the store in `dir`. Only successful accesses that
/// returned subjects expose anything; failed calls and other classes do not.
pub fn scope(dir: &Path, q: &Query) -> Result<Answer, store::Error> {
    let mut a = Answer::default();
    // Records that cannot match (none of the values a match needs is in
    // their bytes) are skipped without parsing.
    let finders: Option<Vec<memchr::memmem::Finder<'static>>> = match (&q.expr, q.no_prefilter) {
        (Some(x), false) => {
            x.needles().map(|n| n.into_iter().map(|b| memchr::memmem::Finder::new(&b).into_owned()).collect())
        }
        _ => None,
    };
    let keep = |bytes: &[u8]| finders.as_ref().is_none_or(|f| f.iter().any(|f| f.find(bytes).is_some()));
    store::events_where(dir, keep, |e| {
        let StoredEvent::Access {
            time,
            success,
            principal,
            principal_kind,
            token,
            key,
            ip,
            asn,
            country,
            user_agent,
            operation,
            service,
            subjects,
            ..
        } = e
        else {
            return;
        };
        if !success || subjects.is_empty() {
            return;
        }
        if q.from.is_some_and(|f| time < f) || q.to.is_some_and(|t| time > t) {
            return;
        }
        if let Some(x) = &q.expr {
            let asn = asn.map(|n| n.to_string());
            let get = |f: Field, m: &mut dyn FnMut(&str) -> bool| -> bool {
                if f == Field::Subject {
                    return subjects.iter().any(|s| m(&s.id));
                }
                let v: Option<&str> = match f {
                    Field::SrcIp => Some(&ip),
                    Field::Principal => Some(&principal),
                    Field::PrincipalKind => Some(&principal_kind),
                    Field::Token => token.as_deref(),
                    Field::Key => key.as_deref(),
                    Field::Asn => asn.as_deref(),
                    Field::Country => country.as_deref(),
                    Field::UserAgent => user_agent.as_deref(),
                    Field::Operation => Some(&operation),
                    Field::Service => service.as_deref(),
                    Field::Subject => None,
                };
                v.is_some_and(m)
            };
            if !x.eval(&get) {
                return;
            }
        }
        a.events += 1;
        a.span = Some(match a.span {
            None => (time, time),
            Some((f, l)) => (f.min(time), l.max(time)),
        });
        for s in subjects {
            let e = a.subjects.entry(s.id).or_insert_with(|| Exposed { kind: s.kind, fields: BTreeSet::new() });
            e.fields.extend(s.fields);
        }
    })?;
    Ok(a)
}
