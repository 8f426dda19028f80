//! The data map: which field classes an operation returns when the input does
//! not say (`resources[].labels` absent).
//!
//! Format (TOML, unknown keys rejected so a typo is an error):
//! ```toml
//! [operations]
//! "GET /v1/me" = ["name", "email"]
//! "GET /v1/orders/{id}" = { customer = ["name", "order_history"], recipient = ["name", "address"] }
//! ```
//! The built-in map ([`DataMap::builtin`]) covers the simulator's platform and
//! is documented in `default-datamap.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::SubjectKind;
use crate::fields::{FieldClasses, FieldSet};

const BUILTIN: &str = include_str!("default-datamap.toml");

/// A data map that failed to parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid data map: {0}")]
pub struct DataMapError(String);

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Entry {
    All(Vec<String>),
    ByKind(ByKind),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByKind {
    #[serde(default)]
    customer: Vec<String>,
    #[serde(default)]
    recipient: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    operations: BTreeMap<String, Entry>,
}

/// Operation to field classes, per subject type.
#[derive(Debug, Clone, Default)]
pub struct DataMap {
    operations: BTreeMap<String, Entry>,
}

/// What the data map says about one operation, resolved to bits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OpFields {
    /// Classes for `customer` subjects.
    pub customer: FieldSet,
    /// Classes for `recipient` subjects.
    pub recipient: FieldSet,
    /// Classes for subjects of any other type.
    pub other: FieldSet,
}

impl OpFields {
    /// The classes for one subject type.
    pub fn for_kind(&self, kind: SubjectKind) -> FieldSet {
        match kind {
            SubjectKind::Customer => self.customer,
            SubjectKind::Recipient => self.recipient,
            SubjectKind::Other => self.other,
        }
    }
}

impl DataMap {
    /// The built-in map (`default-datamap.toml`).
    pub fn builtin() -> Self {
        // The built-in file is part of the build and covered by a test.
        Self::parse(BUILTIN).unwrap_or_default()
    }

    /// Parses a data map file's text.
    pub fn parse(text: &str) -> Result<Self, DataMapError> {
        let file: File = toml::from_str(text).map_err(|e| DataMapError(e.message().to_owned()))?;
        Ok(Self { operations: file.operations })
    }

    /// Number of operations listed.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// True when no operation is listed.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Resolves an operation's classes to bits, registering class names.
    /// Unlisted operations and empty lists resolve to `unclassified`.
    pub fn resolve(&self, operation: &str, classes: &mut FieldClasses) -> OpFields {
        let mut set = |names: &[String]| {
            if names.is_empty() {
                return FieldSet::single(classes.bit(FieldClasses::UNCLASSIFIED));
            }
            let mut s = FieldSet::EMPTY;
            for n in names {
                s.insert(classes.bit(n));
            }
            s
        };
        match self.operations.get(operation) {
            Some(Entry::All(names)) => {
                let s = set(names);
                OpFields { customer: s, recipient: s, other: s }
            }
            Some(Entry::ByKind(k)) => {
                OpFields { customer: set(&k.customer), recipient: set(&k.recipient), other: set(&k.other) }
            }
            None => {
                let s = set(&[]);
                OpFields { customer: s, recipient: s, other: s }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_map_parses_and_is_not_empty() {
        let map = DataMap::parse(BUILTIN).expect("built-in data map parses");
        assert!(map.len() >= 10);
    }

    #[test]
    fn per_kind_entries_resolve_per_kind() {
        let map = DataMap::builtin();
        let mut classes = FieldClasses::default();
        let f = map.resolve("GET /v1/orders/{id}", &mut classes);
        let names = |s| classes.names(s).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(names(f.customer), ["name", "phone", "address", "order_history"]);
        assert_eq!(names(f.recipient), ["name", "phone", "address"]);
    }

    #[test]
    fn unknown_operations_are_unclassified_not_empty() {
        let map = DataMap::builtin();
        let mut classes = FieldClasses::default();
        let f = map.resolve("GET /v9/nowhere", &mut classes);
        assert_eq!(classes.names(f.customer).collect::<Vec<_>>(), [FieldClasses::UNCLASSIFIED]);
    }

    #[test]
    fn typo_in_a_data_map_is_an_error() {
        let err = DataMap::parse("[operation]\n\"GET /x\" = [\"name\"]\n").unwrap_err();
        assert!(err.to_string().contains("operation"), "{err}");
    }
}
