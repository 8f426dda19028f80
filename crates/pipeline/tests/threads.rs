//! Parsing on several workers changes nothing: on every simulator scenario,
//! findings (the starter pack's Sigma rules among them, matched on the
//! workers or, for lines no worker saw, on the reading thread), quarantine
//! records and stored events are identical whatever the number of parsing
//! workers and wherever the input's chunks are cut (a few hundred bytes to
//! a mebibyte, so lines straddle chunks everywhere).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingest::{Input, Reader, ReaderOptions};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one run produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    findings: Vec<u8>,
    quarantine: Vec<u8>,
    stored: Vec<store::StoredEvent>,
}

/// The starter pack, loaded once.
fn starter() -> Arc<sigma::Rules> {
    static RULES: std::sync::OnceLock<Arc<sigma::Rules>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| {
            let opts = sigma::Options { starter: true, ..sigma::Options::default() };
            sigma::Rules::load(&opts).expect("the starter pack loads").shared()
        })
        .clone()
}

fn run(dir: &Path, events: &Path, workers: usize, chunk_bytes: usize, secret: Option<&Path>) -> (Outcome, PathBuf) {
    let text = std::fs::read_to_string(dir.join("directory.json")).expect("directory");
    let name = format!("w{workers}-c{chunk_bytes}");
    let quarantine = dir.join(format!("{name}.quarantine.jsonl"));
    let options = pipeline::Options {
        config: detect::Config::default(),
        directory: model::Directory::parse(&text).expect("directory parses"),
        reader: Reader::new(ReaderOptions { parse_threads: workers, chunk_bytes, ..ReaderOptions::default() }),
        inputs: vec![Input::Path(events.to_owned())],
        follow: false,
        idle_flush: Duration::from_secs(2),
        quarantine: quarantine.clone(),
        sigma: Some(starter()),
    };
    let store_dir = dir.join(format!("{name}.store"));
    std::fs::create_dir_all(&store_dir).expect("store dir");
    if let Some(secret) = secret {
        // The same pseudonym key, so stored events can be compared.
        std::fs::copy(secret, store_dir.join("secret")).expect("secret copied");
    }
    let mut st = store::Store::open(&store_dir, store::Options::default()).expect("store opens");
    let out = Shared::default();
    let warn = |w: &str| panic!("unexpected warning: {w}");
    let hooks = pipeline::Hooks { progress: &mut |_| {}, warn: &warn };
    pipeline::run(
        options,
        Box::new(out.clone()),
        Some(pipeline::Ingest { store: &mut st, commit_every: 5_000, replay: true }),
        hooks,
    )
    .expect("ingest runs");
    st.finish().expect("index built");
    drop(st);
    let mut stored = Vec::new();
    store::events(&store_dir, |e| stored.push(e)).expect("events read back");
    let findings = out.0.lock().expect("not poisoned").clone();
    let quarantine = std::fs::read(&quarantine).unwrap_or_default();
    (Outcome { findings, quarantine, stored }, store_dir.join("secret"))
}

#[test]
fn workers_and_chunk_cuts_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sigma_findings = 0;
    for (i, (scenario, _)) in simulate::scenarios::SCENARIOS.iter().enumerate() {
        let dir = tmp.path().join(scenario);
        let opts = simulate::Options {
            scenario: (*scenario).into(),
            out: dir.clone(),
            customers: 1200,
            days: 1,
            seed: 3,
            gzip: i % 2 == 1,
        };
        simulate::run(&opts, &mut |_, _| {}).expect("simulates");
        let events = dir.join(if opts.gzip { "events.jsonl.gz" } else { "events.jsonl" });
        let (reference, secret) = run(&dir, &events, 0, ingest::source::CHUNK_BYTES, None);
        assert!(!reference.findings.is_empty() || *scenario == "benign", "{scenario} finds something");
        assert!(!reference.quarantine.is_empty(), "{scenario}: the simulator's malformed lines are quarantined");
        assert!(reference.stored.len() > 1000, "{scenario}: events stored");
        let text = String::from_utf8_lossy(&reference.findings);
        sigma_findings += text.lines().filter(|l| l.contains("\"sigma\":{")).count();
        // Chunk sizes that are not divisors of anything, down to lines
        // longer than a chunk.
        for (workers, chunk) in [(1, 1 << 20), (2, 4_099), (3, 777), (1, 65_537), (2, 300)] {
            let (got, _) = run(&dir, &events, workers, chunk, Some(&secret));
            assert!(got == reference, "{scenario}: {workers} workers, {chunk}-byte chunks differ from one thread");
        }
    }
    assert!(sigma_findings > 0, "the starter pack finds something on some scenario");
}
