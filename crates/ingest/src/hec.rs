//! Splunk HTTP Event Collector bodies: a sequence of JSON envelopes (with
//! or without whitespace between them), each carrying one event under
//! `event`. An OCSF object there becomes one line (compacted when it was
//! pretty-printed); a string is taken as the line (or lines) itself.
//! Nothing of a body with one bad envelope is taken, as Splunk does.

use serde::Deserialize;

/// Why a body was refused, with HEC's code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// HEC's status code (5 no data, 6 invalid data format, 12 event field
    /// required, 13 event field blank).
    pub code: u32,
    /// HEC's text for it.
    pub text: &'static str,
    /// The 0-based number of the envelope at fault.
    pub event: usize,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a serde_json::value::RawValue>,
}

/// The OCSF lines of a body of HEC envelopes, each ending in a newline.
pub fn lines(body: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::with_capacity(body.len());
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Envelope<'_>>();
    for (i, env) in stream.enumerate() {
        let bad = |code: u32, text: &'static str| Refused { code, text, event: i };
        let env = env.map_err(|_| bad(6, "Invalid data format"))?;
        let Some(raw) = env.event else { return Err(bad(12, "Event field is required")) };
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(|_| bad(6, "Invalid data format"))?;
            if s.trim().is_empty() {
                return Err(bad(13, "Event field cannot be blank"));
            }
            out.extend_from_slice(s.as_bytes());
        } else if text.starts_with('{') {
            if text.contains(['\n', '\r']) {
                // Pretty-printed: one line per event.
                let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad(6, "Invalid data format"))?;
                out.extend_from_slice(v.to_string().as_bytes());
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        } else {
            return Err(bad(6, "Invalid data format"));
        }
        out.push(b'\n');
    }
    if out.is_empty() {
        return Err(Refused { code: 5, text: "No data", event: 0 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_become_lines() {
        let body = br#"{"event": {"a": 1}} {"event":
{
  "b": [1, 2]
}, "time": 3}{"event": "raw line"}"#;
        assert_eq!(lines(body).expect("lines"), b"{\"a\": 1}\n{\"b\":[1,2]}\nraw line\n");
        assert_eq!(lines(br#"{"event": {"a": 1}} {"time": 1}"#).map_err(|r| (r.code, r.event)), Err((12, 1)));
        assert_eq!(lines(br#"{"event": 5}"#).map_err(|r| r.code), Err(6));
        assert_eq!(lines(br#"{"event": "  "}"#).map_err(|r| r.code), Err(13));
        assert_eq!(lines(b"  ").map_err(|r| r.code), Err(5));
        assert_eq!(lines(br#"{"event": {"a": 1}} {"event": "#).map_err(|r| (r.code, r.event)), Err((6, 1)));
    }
}
