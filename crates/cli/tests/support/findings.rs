//! Scoring findings against the simulator's truth, shared by the `detect`
//! tests and the quality benchmark (`benches/quality.rs` includes this file).
#![allow(dead_code)]

use serde_json::Value;

/// Whether a finding is posture (a standing weakness), not activity.
pub fn is_posture(f: &Value) -> bool {
    f["finding_info"]["types"].as_array().is_some_and(|t| t.iter().any(|x| x == "posture"))
}

/// Whether a finding names one of an attack's indicators: an observable
/// whose field path and value appear among `attack.indicators`.
pub fn names_indicator(f: &Value, attack: &Value) -> bool {
    f["observables"].as_array().is_some_and(|obs| {
        obs.iter().any(|o| {
            let (Some(name), Some(value)) = (o["name"].as_str(), o["value"].as_str()) else { return false };
            attack["indicators"][name].as_array().is_some_and(|vals| vals.iter().any(|v| v.as_str() == Some(value)))
        })
    })
}
