//! The hot path's JSON extractor against serde_json: the same line through
//! `ingest::LineParser` with the extractor on and with it off (serde_json
//! reads every line) must give the same event, or the same quarantine
//! reason, and leave the same symbol tables.
//!
//! Input: with the first byte even, the rest is the line itself (arbitrary
//! bytes); with it odd, the rest edits one of a few real OCSF lines (pairs of
//! position and byte, inserted, replaced or removed), so the fuzzer spends
//! its time near the shapes the extractor is built for.
#![no_main]

use ingest::LineParser;
use libfuzzer_sys::fuzz_target;
use model::{DataMap, Symbols};

#[path = "shared/edit.rs"]
mod edit;
use edit::edited;

fn outcome(fast: bool, text: &str) -> (String, usize, usize, usize) {
    // Parsing the built-in map's TOML costs more than most inputs: once.
    static MAP: std::sync::OnceLock<DataMap> = std::sync::OnceLock::new();
    let mut parser = LineParser::new(MAP.get_or_init(DataMap::builtin).clone());
    parser.set_fast(fast);
    let mut symbols = Symbols::default();
    let got = format!("{:?}", parser.parse(text, &mut symbols));
    (got, symbols.subjects.len(), symbols.principals.len(), symbols.fields.all().count())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let line = if mode % 2 == 0 { rest.to_vec() } else { edited(rest) };
    let Ok(text) = std::str::from_utf8(&line) else { return };
    assert_eq!(outcome(true, text), outcome(false, text), "the extractor and serde_json disagree on {text:?}");
});
