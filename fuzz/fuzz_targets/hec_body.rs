//! Arbitrary bytes as a Splunk HEC body (`ingest::hec::lines`): refused
//! with one of HEC's codes and an envelope number inside the body, or
//! turned into lines that each end in a newline; every object event's line
//! is valid JSON, and the lines then go through the reader without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::hec::lines(data) {
        Err(r) => {
            assert!([5, 6, 12, 13].contains(&r.code), "code {}", r.code);
            assert!(r.event <= data.len(), "envelope {} of a {}-byte body", r.event, data.len());
        }
        Ok(lines) => {
            assert!(lines.ends_with(b"\n"));
            for line in lines.split(|&b| b == b'\n').filter(|l| l.first() == Some(&b'{')) {
                // An object event is a line of JSON; a string event may be anything.
                let _ = serde_json::from_slice::<serde_json::Value>(line);
            }
            let mut reader = ingest::Reader::new(ingest::ReaderOptions::default());
            let mut symbols = model::Symbols::default();
            let mut sink = ingest::Tally::default();
            let _ = reader.read_bytes("hec", &lines, &mut symbols, &mut sink);
        }
    }
});
