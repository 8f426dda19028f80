//! Sigma rules read an OCSF line's fields through the hot path's extractor
//! (`sigma::source::LineView`) instead of a JSON DOM: for every field the
//! extractor keeps (and a few it does not), both readings must give the
//! same value, absent, null and keys with dots in them included.
//!
//! Input: with the first byte even, the rest is the line itself; with it
//! odd, the rest edits one of a few real OCSF lines (see `shared/edit.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/edit.rs"]
mod edit;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let line = if mode % 2 == 0 { rest.to_vec() } else { edit::edited(rest) };
    let Ok(text) = std::str::from_utf8(&line) else { return };
    if let Some(diff) = sigma::source::flat_view_differs(text) {
        panic!("the extractor and the DOM disagree on {text:?}: {diff}");
    }
});
