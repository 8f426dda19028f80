//! `piiwatch export --format parquet`: read back with the Parquet reader,
//! the exported rows answer a scope question exactly as `scope` does.

mod support;

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use support::ok;

#[test]
fn exported_parquet_answers_like_scope() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 2000, 3);
    let st = store.to_str().expect("utf-8");
    let out = tmp.path().join("lake");
    ok(&["export", "--store", st, "--format", "parquet", "--out", out.to_str().expect("utf-8")]);
    let scope: Value = serde_json::from_slice(
        &ok(&["scope", "--store", st, "--format", "json", "--where", r#"actor.session.issuer = "auth-key-2019""#])
            .stdout,
    )
    .expect("json");

    let file = std::fs::File::open(out.join("events.parquet")).expect("parquet file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
    let mut subjects = HashSet::new();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.expect("batch");
        rows += batch.num_rows();
        let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).clone();
        let success = col("success");
        let success = success.as_any().downcast_ref::<BooleanArray>().expect("bool");
        let issuer = col("actor_session_issuer");
        let issuer = issuer.as_any().downcast_ref::<StringArray>().expect("string");
        let uid = col("resources_uid");
        let uid = uid.as_any().downcast_ref::<StringArray>().expect("string");
        for i in 0..batch.num_rows() {
            if success.value(i) && !issuer.is_null(i) && issuer.value(i) == "auth-key-2019" && !uid.is_null(i) {
                subjects.insert(uid.value(i).to_owned());
            }
        }
    }
    assert!(rows > 0);
    assert_eq!(subjects.len() as u64, scope["subjects"].as_u64().expect("subjects"), "{scope}");
    // Pseudonyms only: no subject id in clear.
    assert!(subjects.iter().all(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())));
    // The export is recorded in the store.
    assert!(support::ledger::ledger_text(&store).contains(r#""command":"export""#));
}

/// Every row of one string column of a Parquet file.
fn strings(path: &std::path::Path, column: &str) -> Vec<String> {
    let file = std::fs::File::open(path).expect("parquet file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let col = batch.column_by_name(column).unwrap_or_else(|| panic!("column {column}")).clone();
        let col = col.as_any().downcast_ref::<StringArray>().expect("string");
        out.extend((0..col.len()).map(|i| col.value(i).to_owned()));
    }
    out
}

#[test]
fn token_issuance_and_offboarding_are_exported_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store) = support::simulated_store(tmp.path(), "coupang", 2000, 3);
    let out = tmp.path().join("lake");
    ok(&[
        "export",
        "--store",
        store.to_str().expect("utf-8"),
        "--format",
        "parquet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let text = support::ledger::ledger_text(&store);
    let tokens = strings(&out.join("issuance.parquet"), "session_uid");
    assert_eq!(tokens.len(), text.matches(r#""class":"issuance""#).count());
    assert!(tokens.len() > 100, "{}", tokens.len());
    // Customers' principals are pseudonyms there too: no customer id in clear.
    let users = strings(&out.join("issuance.parquet"), "user_uid");
    assert!(users.iter().all(|u| !u.starts_with('c') || u.len() == 32), "{:?}", &users[..5]);
    assert!(users.iter().any(|u| u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit())));
    let offboarded = strings(&out.join("offboarding.parquet"), "user_uid");
    assert_eq!(offboarded.len(), text.matches(r#""class":"offboarding""#).count());
    assert!(!offboarded.is_empty(), "the benign platform offboards staff");
    assert!(strings(&out.join("offboarding.parquet"), "action").iter().all(|a| a == "disable" || a == "delete"));
}
