//! The vocabulary every piiwatch stage speaks.
//!
//! `ingest` reads OCSF lines and produces the [`Event`]s defined here; the
//! simulator, the detectors, the store and the scope engine consume them.
//! Strings that repeat (subjects, principals, tokens, keys, operations,
//! addresses...) are interned to dense integer ids ([`intern::Symbols`]) as
//! they are read, so later stages can use arrays and bitmaps instead of maps
//! of strings. Which classes of personal data a response carried is a
//! [`FieldSet`], a 64-bit set over the field classes named in the input or
//! in the [`DataMap`].
//!
//! This crate does no I/O: callers hand it bytes and get values back.

pub mod datamap;
pub mod directory;
pub mod event;
pub mod fields;
pub mod intern;

pub use datamap::DataMap;
pub use directory::Directory;
pub use event::*;
pub use fields::{FieldClasses, FieldSet};
pub use intern::{Delta, Marks, Symbols};
