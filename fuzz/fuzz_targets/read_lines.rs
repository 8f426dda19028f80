//! Feeds arbitrary bytes to the reader, twice: with a small `max_line` (so
//! the over-long-line path is exercised) and with default options.
//!
//! Asserts the reader's accounting invariant and that every subject id handed
//! to the visitor resolves in the symbol tables.
#![no_main]

use std::sync::OnceLock;

use ingest::reader::DEFAULT_MAX_LINE;
use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use libfuzzer_sys::fuzz_target;
use model::{DataMap, Event, Symbols};

/// Parsing the built-in data map (TOML) costs more than most inputs, so it
/// is done once and cloned into each reader.
fn datamap() -> DataMap {
    static MAP: OnceLock<DataMap> = OnceLock::new();
    MAP.get_or_init(DataMap::builtin).clone()
}

#[derive(Default)]
struct Check {
    events: u64,
    quarantined: u64,
}

impl Visitor for Check {
    fn event(&mut self, _at: LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        self.events += 1;
        if let Event::Access(a) = event {
            for s in a.subjects {
                assert!(
                    s.id.index() < symbols.subjects.len(),
                    "subject id {} out of range ({} interned)",
                    s.id.index(),
                    symbols.subjects.len()
                );
                // Must not panic.
                let _ = symbols.subject_name(s.id);
            }
        }
    }

    fn quarantined(&mut self, _q: &Quarantined<'_>) {
        self.quarantined += 1;
    }
}

fn run(opts: ReaderOptions, data: &[u8]) {
    let mut reader = Reader::new(opts);
    let mut symbols = Symbols::default();
    let mut check = Check::default();
    let summary = reader.read_bytes("fuzz", data, &mut symbols, &mut check);
    assert_eq!(
        summary.lines,
        summary.events + summary.blank + summary.quarantined,
        "every line is an event, blank or quarantined: {summary:?}"
    );
    assert_eq!(check.events, summary.events, "visitor events vs summary: {summary:?}");
    assert_eq!(check.quarantined, summary.quarantined, "visitor quarantined vs summary: {summary:?}");
}

fuzz_target!(|data: &[u8]| {
    // Small limit: inputs up to `-max_len` bytes reach the over-long-line path.
    run(ReaderOptions { datamap: datamap(), max_line: 4096, parse_threads: 0, chunk_bytes: 1 << 20 }, data);
    // Default limit (1 MiB), as the CLI runs.
    run(ReaderOptions { datamap: datamap(), max_line: DEFAULT_MAX_LINE, parse_threads: 0, chunk_bytes: 1 << 20 }, data);
});
