//! The store's events as Parquet, for lakes and for independent checks
//! (DuckDB, Spark, Trino read it as is).
//!
//! One row per (API access, subject it returned), or one row with empty
//! subject columns for an access that returned none; columns are named
//! after the OCSF paths (`actor.session.issuer` → `actor_session_issuer`).
//! Subject ids are the store's pseudonyms; field classes a list per row.
//! Other event classes (token issuance, offboarding) are not exported.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int64Builder, ListBuilder, StringBuilder, UInt8Builder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::StoredEvent;
use crate::ledger::Error;

const BATCH: usize = 64 << 10;

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exported {
    /// Access events.
    pub events: u64,
    /// Rows (one per access and subject).
    pub rows: u64,
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
        // Every column nullable, so every batch has the one schema.
        RecordBatch::try_from_iter_with_nullable(cols.into_iter().map(|(n, a)| (n, a, true)))
            .map_err(|e| Error::Corrupt(format!("cannot build a Parquet batch: {e}")))
    }
}

/// Writes every API access in the store at `dir` to `out` (a Parquet file).
pub fn parquet(dir: &Path, out: &Path) -> Result<Exported, Error> {
    let file =
        File::create(out).map_err(|e| Error::Io { what: format!("cannot write {}", out.display()), source: e })?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut c = Columns::default();
    let schema = c.finish()?.schema();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| Error::Corrupt(format!("cannot write Parquet: {e}")))?;
    let mut done = Exported::default();
    let mut failed: Option<Error> = None;
    crate::events(dir, |e| {
        if failed.is_some() {
            return;
        }
        let StoredEvent::Access {
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
        } = e
        else {
            return;
        };
        done.events += 1;
        let n = subjects.len().max(1);
        for i in 0..n {
            c.time.append_value(time);
            c.activity_id.append_value(activity_id);
            c.success.append_value(success);
            c.principal.append_value(&principal);
            c.principal_kind.append_value(&principal_kind);
            c.token.append_option(token.as_deref());
            c.key.append_option(key.as_deref());
            c.ip.append_value(&ip);
            c.asn.append_option(asn);
            c.country.append_option(country.as_deref());
            c.user_agent.append_option(user_agent.as_deref());
            c.operation.append_value(&operation);
            c.service.append_option(service.as_deref());
            match subjects.get(i) {
                Some(s) => {
                    c.subject.append_value(&s.id);
                    c.subject_kind.append_value(&s.kind);
                    for f in &s.fields {
                        c.fields.values().append_value(f);
                    }
                    c.fields.append(true);
                }
                None => {
                    c.subject.append_null();
                    c.subject_kind.append_null();
                    c.fields.append(false);
                }
            }
            c.rows += 1;
            done.rows += 1;
        }
        if c.rows >= BATCH {
            let r =
                c.finish().and_then(|b| w.write(&b).map_err(|e| Error::Corrupt(format!("cannot write Parquet: {e}"))));
            if let Err(e) = r {
                failed = Some(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if c.rows > 0 {
        let b = c.finish()?;
        w.write(&b).map_err(|e| Error::Corrupt(format!("cannot write Parquet: {e}")))?;
    }
    w.close().map_err(|e| Error::Corrupt(format!("cannot finish Parquet: {e}")))?;
    Ok(done)
}
