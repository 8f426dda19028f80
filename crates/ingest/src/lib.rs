//! The reader: OCSF JSON lines in, normalized [`model::Event`]s out.
//!
//! Inputs are files (plain or gzip, recognised by their magic bytes) or
//! standard input, read in large chunks on a helper thread ([`source`]). The
//! [`reader::Reader`] splits chunks into lines, bounds their length and hands
//! each line to the [`parse::LineParser`], which borrows from the line, interns
//! identifiers into [`model::Symbols`] and yields an event, or a reason to
//! quarantine the line. Events and quarantined lines go to a
//! [`reader::Visitor`]; this crate never decides what happens to them, except
//! that [`quarantine::QuarantineFile`] can write bad lines to disk and
//! [`stats::Tally`] can count.
//!
//! Invariant: no input makes the reader panic or stop; every line is an
//! event, a blank line, or a quarantined line with its source, number and reason.

mod fast;
pub mod hec;
pub mod parse;
pub mod pre;
pub mod quarantine;
mod raw;
pub mod reader;
pub mod source;
pub mod stats;

pub use fast::{Field, Flat};
pub use parse::{LineParser, Reason, ReasonKind};
pub use pre::{Annotate, Annotator, Note, Noted};
pub use quarantine::QuarantineFile;
pub use reader::{Cursor, LineRef, OpenOptions, Quarantined, ReadSummary, Reader, ReaderOptions, Step, Visitor};
pub use source::{Input, Progress};
pub use stats::{StatsReport, Tally};
