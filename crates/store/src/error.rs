//! What can go wrong with a store, by what happened rather than one
//! catch-all: damage to what the store wrote (which `verify` names), a
//! store another process holds, the derived index failing, a record that
//! cannot be encoded, the system's randomness, a store thread that stopped,
//! and the file system.

use std::io;
use std::path::PathBuf;

/// The largest payload a record may have.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file system failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// What the store holds is not what it wrote (altered, truncated,
    /// reordered or otherwise damaged files); `verify` says where.
    #[error("{0} (run `piiwatch verify` for details)")]
    Corrupt(String),
    /// The directory is not a piiwatch store.
    #[error("{} is not a piiwatch store (no ledger/)", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// Another process holds the store (an `ingest` still running, or
    /// `ingest --follow`): not damage, the store is fine.
    #[error("{} is held by another piiwatch process (an ingest still running?); try again once it has finished", path.display())]
    Locked {
        /// The store, or the file of it that is held.
        path: PathBuf,
    },
    /// The exposure index's database failed. The index is derived from the
    /// ledger: `verify` rebuilds it and compares.
    #[error("index.redb: {what}: {source}")]
    Index {
        /// What was being done.
        what: String,
        /// The database's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A record could not be encoded (a bug: every record type serialises).
    #[error("cannot encode a record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A finding handed to the store is not the JSON `detect` writes.
    #[error("a finding to store is not JSON: {0}")]
    Finding(#[source] serde_json::Error),
    /// The system's randomness or the subject map's encryption failed.
    #[error("{0}")]
    Crypto(String),
    /// A thread of the store stopped (after an earlier error, or a bug).
    #[error("{0}")]
    Stopped(String),
    /// A record too large to append.
    #[error("record of {0} bytes exceeds the limit of {MAX_PAYLOAD} bytes")]
    TooLarge(usize),
}

impl Error {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// An error of the index database while doing `what`.
    pub fn index(what: impl Into<String>) -> impl FnOnce(redb::Error) -> Self {
        let what = what.into();
        move |source| Self::Index { what, source: Box::new(source) }
    }

    /// Opening `path` (a redb database) failed: held by another process, or broken.
    pub(crate) fn opening(path: PathBuf) -> impl FnOnce(redb::DatabaseError) -> Self {
        move |e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Self::Locked { path },
            e => Self::Index { what: format!("cannot open {}", path.display()), source: Box::new(e.into()) },
        }
    }
}
