//! Arbitrary bytes as a Sigma rule file (what `--rules` and `rules check`
//! read): each document loads, or is named as a problem with a reason (and
//! a line inside the text when it gives one); whatever loads matches an
//! OCSF API Activity event and a Windows event, and an event built from the
//! input, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const OCSF: &str = r#"{"class_uid":6003,"activity_id":2,"status_id":1,"time":1743433653461,"actor":{"user":{"uid":"c1","type":"customer"},"session":{"uid":"t1"}},"src_endpoint":{"ip":"211.36.2.122","location":{"country":"KR"}},"api":{"operation":"GET /v1/address-book"},"resources":[{"uid":"c1","type":"customer"},{"uid":"r2","type":"recipient"}]}"#;
const WINDOWS: &str = r##"{"Event":{"System":{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":13,"TimeCreated":{"#attributes":{"SystemTime":"2025-10-25T13:44:33.44Z"}}},"EventData":{"EventType":"SetValue","Image":"C:\\Windows\\reg.exe","Threat Name":"x"}}}"##;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let rules = sigma::Rules::from_text("fuzz.yml", text);
    let lines = text.lines().count().max(1);
    for p in &rules.problems {
        assert!(!p.reason.is_empty());
        if let Some(l) = p.line {
            assert!(l >= 1 && l <= lines + 1, "line {l} of {lines}: {p}");
        }
    }
    for line in [OCSF, WINDOWS] {
        let _ = rules.match_line(line.as_bytes(), None);
        let _ = rules.match_line(line.as_bytes(), Some(6003));
    }
    // The input's own words as an event's values.
    let words: Vec<&str> = text.split_whitespace().take(8).collect();
    let ev = serde_json::json!({"class_uid": 6003, "time": 1, "api": {"operation": words.join(" ")},
        "actor": {"user": {"uid": words.first().copied().unwrap_or("")}}, "resources": words.iter().map(|w| serde_json::json!({"uid": w})).collect::<Vec<_>>()});
    let line = ev.to_string();
    let _ = rules.match_line(line.as_bytes(), Some(6003));
    if let Ok(v) = sonic_rs::from_str::<sonic_rs::Value>(&line) {
        for i in 0..rules.rules.len().min(4) as u32 {
            let _ = rules.explain(i, &v);
        }
    }
});
