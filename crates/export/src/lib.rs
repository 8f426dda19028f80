//! The store's events as Parquet, for lakes and for independent checks
//! (DuckDB, Spark, Trino read it as is).
//!
//! `events.parquet`: one row per (API access, subject it returned), or one
//! row with empty subject columns for an access that returned none; columns
//! are named after the OCSF paths (`actor.session.issuer` →
//! `actor_session_issuer`). Subject ids are the store's pseudonyms; field
//! classes a list per row. `issuance.parquet`: one row per token issued
//! (Authentication: `user_uid`, `session_uid`, `session_issuer`,
//! `session_expiration_time`); `offboarding.parquet`: one row per principal
//! disabled or deleted (Account Change: `user_uid`, `action`). Principals
//! that are customers are pseudonyms there too, as in the store.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int64Builder, ListBuilder, StringBuilder, UInt8Builder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use store::{StoredAccess, StoredEvent};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An output file could not be created or written.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Arrow refused a batch (a bug: every batch has the one schema).
    #[error("cannot build a Parquet batch: {0}")]
    Batch(#[source] arrow_schema::ArrowError),
    /// The Parquet writer failed.
    #[error("cannot write Parquet {path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: parquet::errors::ParquetError,
    },
}

const BATCH: usize = 64 << 10;

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exported {
    /// Access events.
    pub events: u64,
    /// Rows (one per access and subject).
    pub rows: u64,
    /// Tokens issued.
    pub issuances: u64,
    /// Principals offboarded.
    pub offboardings: u64,
}

/// Token issuances (Authentication) as columns.
#[derive(Default)]
struct Issuances {
    time: Int64Builder,
    principal: StringBuilder,
    token: StringBuilder,
    key: StringBuilder,
    expires: Int64Builder,
    rows: usize,
}

impl Issuances {
    fn finish(&mut self) -> Result<RecordBatch, Error> {
        self.rows = 0;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("time", Arc::new(self.time.finish())),
            ("user_uid", Arc::new(self.principal.finish())),
            ("session_uid", Arc::new(self.token.finish())),
            ("session_issuer", Arc::new(self.key.finish())),
            ("session_expiration_time", Arc::new(self.expires.finish())),
        ];
        batch(cols)
    }
}

/// Offboardings (Account Change) as columns.
#[derive(Default)]
struct Offboardings {
    time: Int64Builder,
    principal: StringBuilder,
    action: StringBuilder,
    rows: usize,
}

impl Offboardings {
    fn finish(&mut self) -> Result<RecordBatch, Error> {
        self.rows = 0;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("time", Arc::new(self.time.finish())),
            ("user_uid", Arc::new(self.principal.finish())),
            ("action", Arc::new(self.action.finish())),
        ];
        batch(cols)
    }
}

/// A batch of nullable columns, so every batch of a file has the one schema.
fn batch(cols: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, Error> {
    RecordBatch::try_from_iter_with_nullable(cols.into_iter().map(|(n, a)| (n, a, true))).map_err(Error::Batch)
}

/// A Parquet file being written.
struct Out {
    w: ArrowWriter<File>,
    path: String,
}

impl Out {
    fn create(path: &Path, first: &RecordBatch) -> Result<Self, Error> {
        let path = path.display().to_string();
        let file = File::create(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let w = ArrowWriter::try_new(file, first.schema(), Some(props))
            .map_err(|source| Error::Parquet { path: path.clone(), source })?;
        Ok(Self { w, path })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<(), Error> {
        self.w.write(b).map_err(|source| Error::Parquet { path: self.path.clone(), source })
    }

    fn close(self) -> Result<(), Error> {
        let path = self.path;
        self.w.close().map(drop).map_err(|source| Error::Parquet { path, source })
    }
}

#[derive(Default)]
struct Columns {
    time: Int64Builder,
    activity_id: UInt8Builder,
    success: BooleanBuilder,
    principal: StringBuilder,
    principal_kind: StringBuilder,
    token: StringBuilder,
    key: StringBuilder,
    ip: StringBuilder,
    asn: UInt32Builder,
    country: StringBuilder,
    user_agent: StringBuilder,
    operation: StringBuilder,
    service: StringBuilder,
    subject: StringBuilder,
    subject_kind: StringBuilder,
    fields: ListBuilder<StringBuilder>,
    rows: usize,
}

impl Columns {
    fn finish(&mut self) -> Result<RecordBatch, Error> {
        self.rows = 0;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("time", Arc::new(self.time.finish())),
            ("activity_id", Arc::new(self.activity_id.finish())),
            ("success", Arc::new(self.success.finish())),
            ("actor_user_uid", Arc::new(self.principal.finish())),
            ("actor_user_type", Arc::new(self.principal_kind.finish())),
            ("actor_session_uid", Arc::new(self.token.finish())),
            ("actor_session_issuer", Arc::new(self.key.finish())),
            ("src_endpoint_ip", Arc::new(self.ip.finish())),
            ("src_endpoint_autonomous_system_number", Arc::new(self.asn.finish())),
            ("src_endpoint_location_country", Arc::new(self.country.finish())),
            ("http_request_user_agent", Arc::new(self.user_agent.finish())),
            ("api_operation", Arc::new(self.operation.finish())),
            ("api_service_name", Arc::new(self.service.finish())),
            ("resources_uid", Arc::new(self.subject.finish())),
            ("resources_type", Arc::new(self.subject_kind.finish())),
            ("resources_fields", Arc::new(self.fields.finish())),
        ];
        batch(cols)
    }
}

/// Writes the store at `dir` to the directory `out`: every API access to
/// `events.parquet`, every token issued to `issuance.parquet`, every
/// principal offboarded to `offboarding.parquet`.
pub fn parquet(dir: &Path, out: &Path) -> Result<Exported, Error> {
    let mut c = Columns::default();
    let mut w = Out::create(&out.join("events.parquet"), &c.finish()?)?;
    let mut iss = Issuances::default();
    let mut wi = Out::create(&out.join("issuance.parquet"), &iss.finish()?)?;
    let mut off = Offboardings::default();
    let mut wo = Out::create(&out.join("offboarding.parquet"), &off.finish()?)?;
    let mut done = Exported::default();
    let mut failed: Option<Error> = None;
    store::events(dir, |e| {
        if failed.is_some() {
            return;
        }
        let written = match e {
            StoredEvent::Access(_) => {
                done.events += 1;
                done.rows += c.push(e) as u64;
                if c.rows >= BATCH { c.finish().and_then(|b| w.write(&b)) } else { Ok(()) }
            }
            StoredEvent::Issuance { time, principal, token, key, expires } => {
                iss.time.append_value(time);
                iss.principal.append_value(&principal);
                iss.token.append_value(&token);
                iss.key.append_option(key.as_deref());
                iss.expires.append_option(expires);
                iss.rows += 1;
                done.issuances += 1;
                if iss.rows >= BATCH { iss.finish().and_then(|b| wi.write(&b)) } else { Ok(()) }
            }
            StoredEvent::Offboarding { time, principal, action } => {
                off.time.append_value(time);
                off.principal.append_value(&principal);
                off.action.append_value(&action);
                off.rows += 1;
                done.offboardings += 1;
                if off.rows >= BATCH { off.finish().and_then(|b| wo.write(&b)) } else { Ok(()) }
            }
            StoredEvent::Other { .. } => Ok(()),
        };
        if let Err(e) = written {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if c.rows > 0 {
        w.write(&c.finish()?)?;
    }
    if iss.rows > 0 {
        wi.write(&iss.finish()?)?;
    }
    if off.rows > 0 {
        wo.write(&off.finish()?)?;
    }
    w.close()?;
    wi.close()?;
    wo.close()?;
    Ok(done)
}

impl Columns {
    /// Appends an access's rows (one per subject, or one without); returns how many.
    fn push(&mut self, e: StoredEvent) -> usize {
        let StoredEvent::Access(StoredAccess {
            time,
            activity_id,
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
        }) = e
        else {
            return 0;
        };
        let n = subjects.len().max(1);
        for i in 0..n {
            self.time.append_value(time);
            self.activity_id.append_value(activity_id);
            self.success.append_value(success);
            self.principal.append_value(&principal);
            self.principal_kind.append_value(&principal_kind);
            self.token.append_option(token.as_deref());
            self.key.append_option(key.as_deref());
            self.ip.append_value(&ip);
            self.asn.append_option(asn);
            self.country.append_option(country.as_deref());
            self.user_agent.append_option(user_agent.as_deref());
            self.operation.append_value(&operation);
            self.service.append_option(service.as_deref());
            match subjects.get(i) {
                Some(s) => {
                    self.subject.append_value(&s.id);
                    self.subject_kind.append_value(&s.kind);
                    for f in &s.fields {
                        self.fields.values().append_value(f);
                    }
                    self.fields.append(true);
                }
                None => {
                    self.subject.append_null();
                    self.subject_kind.append_null();
                    self.fields.append(false);
                }
            }
            self.rows += 1;
        }
        n
    }
}
