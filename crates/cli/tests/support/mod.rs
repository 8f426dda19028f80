//! Helpers shared by the integration tests (`mod support;`).

pub mod findings;
pub mod ledger;
pub mod ocsf;

use std::process::{Command, Output};

/// Runs the `piiwatch` binary built for these tests.
#[allow(dead_code)]
pub fn piiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_piiwatch")).args(args).output().expect("piiwatch runs")
}

/// Runs `piiwatch` and insists that it succeeds.
#[allow(dead_code)]
pub fn ok(args: &[&str]) -> Output {
    let out = piiwatch(args);
    assert!(out.status.success(), "piiwatch {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}
