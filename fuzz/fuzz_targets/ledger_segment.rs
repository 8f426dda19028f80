//! Arbitrary bytes as a ledger segment (and the HEAD that claims them):
//! verify reports, scan and open refuse or cut back, none of them panics.
#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("piiwatch-fuzz-ledger-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    // The first bytes choose a HEAD; the rest is segment 1.
    let (head, seg) = data.split_at(data.len().min(8));
    let offset = head.iter().fold(0u64, |a, &b| a * 31 + u64::from(b)) % (seg.len() as u64 + 64);
    let records = u64::from(head.first().copied().unwrap_or(0));
    fs::write(dir.join("00000001.seg"), seg).expect("segment");
    let head = format!(r#"{{"records":{records},"segment":1,"offset":{offset},"hash":"{}"}}"#, "0".repeat(64));
    fs::write(dir.join("HEAD"), head).expect("head");
    let _ = store::ledger::verify(&dir, |_| {});
    let _ = store::ledger::scan(&dir, |_| {});
    if let Ok(mut l) = store::ledger::Ledger::open(&dir, 1 << 20) {
        let _ = l.append(1, b"{}");
        let _ = l.commit();
        let report = store::ledger::verify(&dir, |_| {}).expect("verify after a commit");
        let _ = report;
    }
    let _ = fs::remove_dir_all(&dir);
});
