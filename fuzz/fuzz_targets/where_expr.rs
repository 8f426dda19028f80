//! Arbitrary text as a `scope --where` expression: it parses or fails with a
//! one-line error naming a byte position inside the text; a parsed
//! expression evaluates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match scope::parse(text) {
        Ok(e) => {
            let e = e.with_principal_aliases(&|v| format!("p{}", v.len()));
            let _ = e.eval(&|_, m| m("203.0.113.9") || m("x"));
        }
        Err(err) => {
            assert!(err.at <= text.len().max(scope::expr::MAX_LEN), "{err}");
            assert!(!err.to_string().contains('\n'), "error spans lines: {err}");
        }
    }
});
