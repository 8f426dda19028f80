//! Arbitrary bytes as a regime file (`regimes/*.toml`) and as an
//! organisation profile (`--org`): refused with an error naming the file,
//! or accepted; an accepted one clocks an incident (times taken from the
//! input too) without a panic, an overflow or an endless count, and every
//! clock it shows is open, met or missed with a due time not before its
//! trigger.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The same bytes as an organisation profile.
    let org = match incident::Org::parse("org.toml", text) {
        Ok(o) => o,
        Err(e) => {
            assert!(e.to_string().starts_with("org.toml: "), "{e}");
            incident::Org::none()
        }
    };
    let regimes = match incident::Regimes::with_file("fuzz.toml", text) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.to_string().contains(": "), "{e}");
            incident::Regimes::built_in().expect("built-in regimes")
        }
    };
    // Times from the input's bytes: anywhere from 1970 to 2200, and the extremes.
    let mut h = 0i64;
    for b in data.iter().take(16) {
        h = h.wrapping_mul(131).wrapping_add(i64::from(*b));
    }
    let pick = |k: i64| match (h ^ k).rem_euclid(4) {
        0 => 0,
        1 => 7_258_118_399_999,
        _ => (h ^ k).rem_euclid(7_258_118_400_000),
    };
    let mut inc = incident::Incident::opened("INC-1", "fuzz", "pw-x", 0, "fuzz", &[]);
    let change = |c| incident::Record { incident: "INC-1".into(), at: 0, by: "fuzz".into(), change: c };
    inc.apply_change(&change(incident::Change::Aware { time: pick(1) }));
    inc.apply_change(&change(incident::Change::Material { time: pick(2) }));
    inc.apply_change(&change(incident::Change::Fact { time: pick(3), text: "f".into() }));
    for r in regimes.regimes.values() {
        for v in &r.version {
            for c in &v.clock {
                inc.apply_change(&change(incident::Change::Sent {
                    regime: r.id.clone(),
                    clock: c.id.clone(),
                    time: pick(4),
                    count: Some(pick(5).unsigned_abs() % 2000),
                }));
            }
        }
    }
    let facts = incident::Facts { subjects: Some(pick(6).unsigned_abs() % 5000), ..Default::default() };
    let (clocks, _) = incident::clock::clocks(&inc, &regimes, &org, &facts, pick(7));
    for c in clocks {
        if let (Some(t), Some(d)) = (c.trigger_time, c.due_time) {
            assert!(d >= t, "{} {}: due {d} before its trigger {t}", c.regime, c.clock);
        }
    }
});
