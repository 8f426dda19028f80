//! The pipeline driven in process, as the CLI and the coming server drive it:
//! findings into the caller's writer, warnings and progress through hooks,
//! events into a store, and a report back.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingest::{Input, Reader, ReaderOptions};

/// A writer the test keeps a handle on.
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

/// A writer whose reader went away.
struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
}

fn options(dir: &std::path::Path) -> pipeline::Options {
    let text = std::fs::read_to_string(dir.join("directory.json")).expect("directory");
    pipeline::Options {
        config: detect::Config::default(),
        directory: model::Directory::parse(&text).expect("directory parses"),
        reader: Reader::new(ReaderOptions::default()),
        inputs: vec![Input::Path(dir.join("events.jsonl.gz"))],
        follow: false,
        idle_flush: Duration::from_secs(2),
        quarantine: dir.join("q.jsonl"),
        sigma: None,
    }
}

fn simulated(dir: &std::path::Path) -> serde_json::Value {
    let opts = simulate::Options {
        scenario: "bola".into(),
        out: dir.to_owned(),
        customers: 1500,
        days: 2,
        seed: 1,
        gzip: true,
    };
    simulate::run(&opts, &mut |_, _| {}).expect("simulates");
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).expect("truth")).expect("json")
}

#[test]
fn detect_and_ingest_in_process_report_what_they_did() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let truth = simulated(tmp.path());
    // `events` counts every well-formed line, untimed foreign JSON included.
    let events = truth["tally"]["events"].as_u64().expect("events");
    let malformed = truth["tally"]["malformed_lines"].as_array().expect("malformed").len() as u64;

    // Detect: findings into our writer, progress reported, the same findings twice.
    let run = |findings: Box<dyn Write + Send>, ingest: Option<pipeline::Ingest<'_>>| {
        let warnings = Mutex::new(Vec::<String>::new());
        let mut progressed = 0u64;
        let warn = |w: &str| warnings.lock().expect("not poisoned").push(w.to_owned());
        let hooks = pipeline::Hooks { progress: &mut |b| progressed = progressed.max(b), warn: &warn };
        let report = pipeline::run(options(tmp.path()), findings, ingest, hooks);
        let said = warnings.lock().expect("not poisoned").clone();
        (report, said, progressed)
    };
    let out = Shared::default();
    let (report, warnings, _) = run(Box::new(out.clone()), None);
    let report = report.expect("detect runs");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(report.quarantined, malformed);
    assert_eq!(report.stats.events + report.stats.untimed, events, "{report:?}");
    let text = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
    let findings: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let created: u64 = report.detectors.values().map(|d| d.findings + d.updates).sum();
    assert_eq!(findings.len() as u64, created, "every finding the report counts was written");
    assert!(report.detectors.get("fan-out").is_some_and(|d| d.findings > 0), "bola is found: {report:?}");
    assert!(report.stored.is_none());
    let again = Shared::default();
    run(Box::new(again.clone()), None).0.expect("detect runs again");
    assert_eq!(*again.0.lock().expect("not poisoned"), text.as_bytes(), "the same input, the same findings");

    // Detect with nobody reading: a findings error, quickly, naming the cause.
    let (report, _, _) = run(Box::new(Closed), None);
    let err = report.expect_err("a closed findings output is an error");
    assert!(matches!(err, pipeline::Error::Findings(ref e) if e.kind() == std::io::ErrorKind::BrokenPipe), "{err}");

    // Ingest with nobody reading: one warning, everything stored.
    let dir = tmp.path().join("store");
    let mut st = store::Store::open(&dir, store::Options::default()).expect("store opens");
    let (report, warnings, progressed) =
        run(Box::new(Closed), Some(pipeline::Ingest { store: &mut st, commit_every: 10_000, replay: true }));
    let report = report.expect("ingest runs");
    st.finish().expect("index built");
    drop(st);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(progressed > 0, "progress was reported");
    let stored = report.stored.expect("a store report");
    assert_eq!(stored.stored, report.stats.events + report.stats.untimed, "{stored:?}");
    let (verified, stored_events) = store::verify(&dir).expect("verifies");
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert_eq!(stored_events, stored.stored);
}
