//! The detect and ingest pipeline as a library: inputs read and scheduled
//! (the input furthest behind in event time steps first, followed inputs
//! included), lines parsed and interned, events batched to the detection
//! thread (the engine over a replica of the symbol tables), findings written
//! to the caller's writer, and with a store every event appended and
//! committed with its inputs' marks (the commit policy: every
//! `commit_every` events, whenever every input goes quiet, and at the end).
//!
//! The CLI (`piiwatch detect`, `piiwatch ingest`), tests and the coming
//! server call [`run`]; it prints nothing: warnings and progress go through
//! [`Hooks`], the summary comes back as a [`Report`].

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use detect::{Alert, Config, Engine, Ev, Sink, World};
use ingest::{Input, OpenOptions, QuarantineFile, Quarantined, Reader, Step, Visitor};
use model::{Delta, Directory, Event, Marks, Millis, Symbols};

pub mod replay;
pub mod service;

/// Called with every event as it is read (see [`service::ServiceHooks::on_event`]).
pub type OnEvent<'a> = dyn FnMut(&Event<'_>, &Symbols) + Send + 'a;

/// A warning for the user, said once (the CLI writes it to stderr).
pub type Warn<'a> = dyn Fn(&str) + Sync + 'a;

/// What a run could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `-` named twice.
    #[error("standard input (`-`) can be named only once")]
    StdinTwice,
    /// A detector setting the engine refuses.
    #[error(transparent)]
    Config(#[from] detect::config::ConfigError),
    /// An input could not be opened.
    #[error("cannot read {input}")]
    Open {
        /// The input's name.
        input: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An input could not be read to find where ingest resumes.
    #[error("cannot read {}", path.display())]
    Resume {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing findings failed (a closed pipe among others).
    #[error("cannot write findings")]
    Findings(#[source] io::Error),
    /// Writing the quarantine file failed.
    #[error("cannot write quarantine {}", path.display())]
    Quarantine {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store refused.
    #[error("{what}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: store::Error,
    },
    /// The detection thread could not start.
    #[error("cannot start the detection thread")]
    Spawn(#[source] io::Error),
    /// The detection thread panicked (a bug).
    #[error("the detection thread failed")]
    Panicked,
}

/// One run's inputs and settings.
pub struct Options {
    /// Detector configuration.
    pub config: Config,
    /// The platform's directory.
    pub directory: Directory,
    /// The reader (data map, line bound).
    pub reader: Reader,
    /// The inputs, merged in event-time order.
    pub inputs: Vec<Input>,
    /// Keep reading inputs as they grow.
    pub follow: bool,
    /// With `follow`: release held events after this long without input.
    pub idle_flush: Duration,
    /// Where bad lines go.
    pub quarantine: PathBuf,
    /// Sigma rules matched on every line, their findings and correlations
    /// made in the engine (`None`: none loaded).
    pub sigma: Option<Arc<sigma::Rules>>,
}

/// With a store: where events are appended, and how often they are committed.
pub struct Ingest<'a> {
    /// The store.
    pub store: &'a mut store::Store,
    /// Events between commits (at least 1).
    pub commit_every: u64,
    /// Before the inputs, replay the events the store holds through the
    /// engine, so detection goes on where the last run left it (findings
    /// already stored are neither stored nor written again).
    pub replay: bool,
}

/// How a run talks to its caller while it runs.
pub struct Hooks<'h> {
    /// Bytes read so far (every 65,536 lines and at the end, on the reading thread).
    pub progress: &'h mut dyn FnMut(u64),
    /// A warning, said once.
    pub warn: &'h Warn<'h>,
}

/// What was stored, with a store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stored {
    /// The store's directory.
    pub store: PathBuf,
    /// Events appended in this run.
    pub stored: u64,
    /// Lines skipped as already stored.
    pub skipped_already_stored: u64,
    /// Records in the ledger at the end.
    pub ledger_records: u64,
    /// Stored events replayed through the engine before the inputs.
    pub replayed: u64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The engine's counts (events, late, untimed, span, buffered).
    pub stats: detect::EngineStats,
    /// Detector state at the end (the detectors' estimate), bytes.
    pub state_bytes: u64,
    /// Per detector.
    pub detectors: BTreeMap<&'static str, PerDetector>,
    /// Lines quarantined.
    pub quarantined: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// With a store.
    pub stored: Option<Stored>,
}

/// What one detector reported in a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PerDetector {
    /// Findings created.
    pub findings: u64,
    /// Updates of those findings.
    pub updates: u64,
    /// The highest severity reported.
    pub max_severity: u8,
    /// The detector's own estimate of the state it holds at the end.
    pub state_bytes: u64,
}

struct AlertWriter<'w> {
    out: Box<dyn Write + Send>,
    flush_each: bool,
    per: BTreeMap<&'static str, PerDetector>,
    error: Option<io::Error>,
    /// With `ingest`: every finding line also goes to the parsing thread, which stores it.
    keep: Option<std::sync::mpsc::Sender<String>>,
    warn: &'w Warn<'w>,
}

impl Sink for AlertWriter<'_> {
    fn alert(&mut self, alert: Alert) {
        let e = self.per.entry(alert.detector).or_default();
        match alert.activity {
            detect::alert::Activity::Create => e.findings += 1,
            detect::alert::Activity::Update => e.updates += 1,
        }
        e.max_severity = e.max_severity.max(alert.severity);
        if self.error.is_some() && self.keep.is_none() {
            return;
        }
        let line = alert.to_ocsf().to_string();
        if let Some(k) = &self.keep {
            // Stored whether or not anyone still reads the findings.
            let _ = k.send(line.clone());
        }
        if self.error.is_some() {
            return;
        }
        let r = writeln!(self.out, "{line}").and_then(|()| if self.flush_each { self.out.flush() } else { Ok(()) });
        if let Err(err) = r {
            if self.keep.is_some() {
                // `ingest`: the store is what matters; say so once and go on.
                warn_unwritten(self.warn, &err);
            }
            self.error = Some(err);
        }
    }
}

/// `ingest`'s one warning when its findings output fails.
fn warn_unwritten(warn: &Warn<'_>, e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        warn("cannot write findings: their reader went away; they are still stored, and ingest goes on");
    } else {
        warn(&format!("cannot write findings ({e}); they are still stored, and ingest goes on"));
    }
}

/// Events per message from the parsing thread to the detection thread.
const BATCH: usize = 4096;
/// With --follow, a batch waits at most this long for more events.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// From the parsing thread to the detection thread.
enum Msg {
    /// Events in input order, each with its ordering digest; the symbols
    /// interned while parsing them; events without a time passed by.
    Batch { events: Vec<(Ev, u64)>, delta: Box<Delta>, untimed: u64 },
    /// Every input is quiet: release what is held and flush the findings.
    Idle,
    /// A newer directory: events from here on are judged against it.
    World(Box<World>),
    /// A new detector configuration: a new engine (empty, judged against
    /// this world), which the parsing side then feeds the store's events.
    Engine(Box<Config>, Box<World>),
}

/// The parsing side: turns the reader's events into owned events for the engine.
struct Feeder<'a> {
    batch: Vec<(Ev, u64)>,
    untimed: u64,
    started: Option<std::time::Instant>,
    quarantine: &'a mut QuarantineFile,
    quarantined: u64,
    input: u16,
    last: Vec<Millis>,
    hasher: foldhash::fast::FixedState,
    ingest: Option<Ingesting<'a>>,
    /// Batches the detection thread has emptied, to fill again.
    recycled: Receiver<Vec<(Ev, u64)>>,
    /// Called with every event as it is read (the service's inline check
    /// learns issued tokens here, before the engine's reordering).
    on_event: Option<&'a mut OnEvent<'a>>,
    /// Ties in event time ordered by what the event says ([`detect::digest`])
    /// rather than by its line's bytes: the service, whose events may come
    /// back from the store (rebuilt lines) after a restart.
    content_digest: bool,
    /// Sigma rules, matched on each line here (where its text is).
    sigma: Option<Arc<sigma::Rules>>,
}

/// Ingesting: the store events are appended to, and per input where this
/// run resumes and how far it has read.
struct Ingesting<'a> {
    /// The store.
    store: &'a mut store::Store,
    /// Per input: its identity and the lines already stored (`None`: standard input).
    resume: Vec<Option<store::Resume>>,
    /// Input names, for the marks.
    names: Vec<String>,
    /// Per input: the last line number read.
    lines: Vec<u64>,
    /// Events appended in this run.
    stored: u64,
    /// Lines skipped as already stored.
    skipped: u64,
    /// The first storage error (the run stops at the next batch).
    error: Option<store::Error>,
    /// Events between commits.
    commit_every: u64,
    /// Findings from the detection thread, stored at each commit.
    alerts: Option<Receiver<String>>,
    /// Findings made outside the engine (the service's inline check), stored at the next commit.
    extra: Vec<String>,
    /// With the service: every finding as stored (pseudonymised), for its
    /// caller once the commit that made it durable has returned.
    stored_findings: Option<Vec<String>>,
    /// Replaying stored events to rebuild the engine's state: nothing is stored.
    replaying: bool,
    /// Findings already stored (by uid, activity, count and time), which the
    /// engine reports again while its state is rebuilt: not stored twice.
    suppress: HashMap<FindingKey, u32>,
}

/// What tells one report of a finding from another.
type FindingKey = (String, u64, u64, i64);

/// The key of a finding line (`None` if it is not one).
fn finding_key(line: &str) -> Option<FindingKey> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some((
        v["finding_info"]["uid"].as_str()?.to_owned(),
        v["activity_id"].as_u64()?,
        v["count"].as_u64().unwrap_or(0),
        v["time"].as_i64().unwrap_or(0),
    ))
}

impl Ingesting<'_> {
    /// Whether line `line` of input `i` is already in the store (and notes how far input `i` got).
    fn seen(&mut self, i: usize, line: u64) -> bool {
        if self.replaying {
            // The store's own events, not a line of an input.
            return false;
        }
        self.lines[i] = self.lines[i].max(line);
        let done = self.resume[i].as_ref().is_some_and(|r| line <= r.skip_lines);
        self.skipped += u64::from(done);
        done
    }

    fn store(&mut self, event: &Event<'_>, symbols: &Symbols) {
        if self.error.is_some() || self.replaying {
            return;
        }
        match self.store.append_event(event, symbols) {
            Ok(()) => self.stored += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Commits what was appended, with each input's progress and the
    /// findings so far (their subject ids pseudonymised by the store, from
    /// what `symbols` knows).
    fn commit(&mut self, symbols: &Symbols) -> Result<(), Error> {
        if let Some(e) = self.error.take() {
            return Err(Error::Store { what: "cannot store events", source: e });
        }
        let from_engine = self.alerts.as_ref().map(|rx| rx.try_iter().collect::<Vec<_>>()).unwrap_or_default();
        for line in from_engine.into_iter().chain(std::mem::take(&mut self.extra)) {
            if !self.suppress.is_empty()
                && let Some(key) = finding_key(&line)
                && let Some(n) = self.suppress.get_mut(&key)
            {
                // Reported again while the engine's state was rebuilt: stored already.
                *n -= 1;
                if *n == 0 {
                    self.suppress.remove(&key);
                }
                continue;
            }
            let stored = self
                .store
                .append_alert(&line, symbols)
                .map_err(|source| Error::Store { what: "cannot store a finding", source })?;
            if let Some(out) = &mut self.stored_findings {
                out.push(stored);
            }
        }
        let marks: Vec<store::InputMark> = self
            .resume
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.as_ref()?;
                Some(store::InputMark {
                    input: self.names[i].clone(),
                    prefix_len: r.prefix_len,
                    prefix_sha256: r.prefix_sha256.clone(),
                    lines: self.lines[i].max(r.skip_lines),
                })
            })
            .collect();
        self.store.commit(&marks).map_err(|source| Error::Store { what: "cannot commit to the store", source })?;
        Ok(())
    }
}

/// The findings output of a continued run: a finding the replay reports
/// again exactly as it was stored (uid, activity, count, time) is not
/// written again, once per time it was stored.
struct Unrepeated {
    inner: Box<dyn Write + Send>,
    suppress: HashMap<FindingKey, u32>,
    /// A line not yet ended.
    line: Vec<u8>,
}

impl Write for Unrepeated {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            let key = std::str::from_utf8(&line).ok().and_then(|l| finding_key(l.trim_end()));
            if let Some(n) = key.as_ref().and_then(|k| self.suppress.get_mut(k)) {
                *n -= 1;
                if *n == 0
                    && let Some(k) = key
                {
                    self.suppress.remove(&k);
                }
                continue;
            }
            self.inner.write_all(&line)?;
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Events appended between commits when ingesting, by default.
pub const COMMIT_EVERY: u64 = 1 << 20;

impl Visitor for Feeder<'_> {
    fn event(&mut self, at: ingest::LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        self.event_noted(at, event, symbols, ingest::Noted::Unseen);
    }

    fn event_noted(&mut self, at: ingest::LineRef<'_>, event: &Event<'_>, symbols: &Symbols, note: ingest::Noted) {
        if let Some(ing) = &mut self.ingest {
            if ing.seen(usize::from(self.input), at.line) {
                return;
            }
            ing.store(event, symbols);
        }
        if let Some(f) = &mut self.on_event {
            f(event, symbols);
        }
        if let Some(t) = event.time() {
            let l = &mut self.last[usize::from(self.input)];
            *l = (*l).max(t);
        }
        // Matched on a parsing worker when one saw the line, else here.
        let matched = match note {
            ingest::Noted::Seen(note) => note.and_then(|n| n.downcast::<sigma::Matched>().ok()).map(|m| *m),
            ingest::Noted::Unseen => self.sigma.as_ref().and_then(|r| r.match_line(at.text, event.class_uid())),
        };
        let mut ev = Ev::from_event(event, self.input, symbols);
        if let Some(m) = matched {
            // An event without an OCSF time (a Windows event) takes the time
            // its shape gives, else the input's latest.
            let last = self.last[usize::from(self.input)];
            let time = m.time.or((last > Millis::MIN).then_some(last));
            if ev.is_none()
                && let Some(time) = time
            {
                ev =
                    Some(Ev { time, input: self.input, what: detect::ev::What::Other { class_uid: None }, hits: None });
            }
            if let Some(ev) = &mut ev {
                ev.hits = Some(m.hits.into_boxed_slice());
            }
        }
        match ev {
            Some(ev) => {
                // Ties in event time are ordered by the line's content (and
                // input), never by arrival.
                let d = if self.content_digest {
                    detect::digest(&ev, symbols)
                } else {
                    self.hasher.hash_one((at.text, self.input))
                };
                self.batch.push((ev, d));
            }
            None => self.untimed += 1,
        }
        self.started.get_or_insert_with(std::time::Instant::now);
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        if let Some(ing) = &mut self.ingest
            && (ing.replaying || ing.seen(usize::from(self.input), q.at.line))
        {
            return;
        }
        self.quarantined += 1;
        self.quarantine.write(q);
    }
}

impl<'a> Feeder<'a> {
    /// A feeder for `inputs` inputs, quarantining to `quarantine`, storing through `ingest`.
    fn new(
        inputs: usize,
        quarantine: &'a mut QuarantineFile,
        ingest: Option<Ingesting<'a>>,
        recycled: Receiver<Vec<(Ev, u64)>>,
        on_event: Option<&'a mut OnEvent<'a>>,
    ) -> Self {
        Self {
            batch: Vec::with_capacity(BATCH),
            untimed: 0,
            started: None,
            quarantine,
            quarantined: 0,
            input: 0,
            last: vec![Millis::MIN; inputs],
            hasher: foldhash::fast::FixedState::with_seed(7),
            ingest,
            recycled,
            on_event,
            content_digest: false,
            sigma: None,
        }
    }

    /// Sends what is batched, with the symbols interned since the last send.
    /// False when the detection thread has stopped.
    fn send(&mut self, tx: &SyncSender<Msg>, symbols: &Symbols, marks: &mut Marks) -> bool {
        let (delta, next) = symbols.delta(marks);
        if self.batch.is_empty() && self.untimed == 0 && delta.is_empty() {
            return true;
        }
        *marks = next;
        self.started = None;
        let next = self.recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let events = std::mem::replace(&mut self.batch, next);
        tx.send(Msg::Batch { events, delta: Box::new(delta), untimed: std::mem::take(&mut self.untimed) }).is_ok()
    }
}

/// What the detection thread reports when the input has ended.
struct Detected {
    stats: detect::EngineStats,
    state: u64,
    per: BTreeMap<&'static str, PerDetector>,
}

/// The detection thread's channels.
struct Wires {
    /// Batches from the parsing thread.
    rx: Receiver<Msg>,
    /// With `ingest`: every finding line, to be stored.
    keep: Option<std::sync::mpsc::Sender<String>>,
    /// Emptied batches, back to the parsing thread.
    recycle: SyncSender<Vec<(Ev, u64)>>,
    /// At the end, let detectors settle what is pending as if no more input
    /// could come (a token used and not issued by the end). Not when the
    /// run is to be continued (the service; `ingest`, which the next run
    /// continues by replaying the store): the next input may still settle it.
    settle: bool,
    /// Sigma rules for the engine.
    sigma: Option<Arc<sigma::Rules>>,
}

/// An engine with every enabled built-in detector and, with rules, Sigma's.
fn engine_for(
    cfg: &Config,
    world: World,
    sigma: Option<&Arc<sigma::Rules>>,
) -> Result<Engine, detect::config::ConfigError> {
    let mut detectors = detect::detectors::all(cfg)?;
    if let Some(rules) = sigma.filter(|r| !r.is_empty()) {
        detectors.push(Box::new(sigma::SigmaDetector::new(Arc::clone(rules))));
    }
    Ok(Engine::with_detectors(cfg, world, detectors))
}

/// The detection thread: the engine over a replica of the parser's symbols.
fn detect_thread(
    cfg: &Config,
    world: World,
    inputs: Vec<String>,
    out: Box<dyn Write + Send>,
    follow: bool,
    wires: Wires,
    warn: &Warn<'_>,
) -> Result<Detected, Error> {
    let Wires { rx, keep, recycle, settle, sigma } = wires;
    let mut engine = engine_for(cfg, world, sigma.as_ref())?;
    engine.set_inputs(inputs.clone());
    let out: Box<dyn Write + Send> = Box::new(BufWriter::new(out));
    let mut sink = AlertWriter { out, flush_each: follow, per: BTreeMap::new(), error: None, keep, warn };
    let mut symbols = Symbols::default();
    for msg in rx {
        match msg {
            Msg::Batch { mut events, delta, untimed } => {
                symbols.apply(&delta);
                engine.add_untimed(untimed);
                for (ev, digest) in events.drain(..) {
                    engine.push_owned(ev, digest, &symbols, &mut sink);
                }
                // Back to the parsing thread to fill again (when it has room).
                let _ = recycle.try_send(events);
                if sink.error.is_some() && sink.keep.is_none() {
                    // Nobody reads the findings any more (`detect | head`):
                    // stop, and the parsing thread stops at its next send.
                    break;
                }
            }
            Msg::World(w) => engine.set_world(*w),
            Msg::Engine(cfg, world) => {
                // Checked by the sender: a configuration that does not build
                // an engine never gets here; if it does, the old one stays.
                match engine_for(&cfg, *world, sigma.as_ref()) {
                    Ok(mut fresh) => {
                        fresh.set_inputs(inputs.clone());
                        engine = fresh;
                    }
                    Err(e) => warn(&format!("the new detector configuration was not applied: {e}")),
                }
            }
            Msg::Idle => {
                if let Some(t) = engine.max_time() {
                    engine.release(t, &symbols, &mut sink);
                }
                if let Err(e) = sink.out.flush()
                    && sink.error.is_none()
                {
                    if sink.keep.is_some() {
                        warn_unwritten(warn, &e);
                    }
                    sink.error = Some(e);
                }
                if sink.error.is_some() && sink.keep.is_none() {
                    break;
                }
            }
        }
    }
    if sink.keep.is_none() {
        if let Some(e) = sink.error.take() {
            return Err(Error::Findings(e));
        }
        engine.finish(&symbols, &mut sink);
        sink.out.flush().map_err(Error::Findings)?;
        if let Some(e) = sink.error.take() {
            return Err(Error::Findings(e));
        }
    } else {
        // `ingest`: a closed findings output was warned about; storing went on.
        if settle {
            engine.finish(&symbols, &mut sink);
        } else {
            engine.release(Millis::MAX, &symbols, &mut sink);
        }
        if sink.error.is_none()
            && let Err(e) = sink.out.flush()
        {
            warn_unwritten(warn, &e);
        }
    }
    let mut per = sink.per;
    let mut state = 0;
    for (name, bytes) in engine.state_bytes() {
        per.entry(name).or_default().state_bytes = bytes as u64;
        state += bytes as u64;
    }
    Ok(Detected { stats: engine.stats().clone(), state, per })
}

/// Detection over the inputs, findings to `findings`, and with `ingest`
/// every event appended to the store.
pub fn run(
    p: Options,
    findings: Box<dyn Write + Send>,
    ingest: Option<Ingest<'_>>,
    hooks: Hooks<'_>,
) -> Result<Report, Error> {
    let Options { config: cfg, directory, mut reader, inputs, follow, idle_flush, quarantine: quarantine_path, sigma } =
        p;
    // Rules are matched on the parsing workers, next to the extractor.
    reader.set_annotator(sigma.clone().filter(|r| !r.is_empty()).map(|r| r as ingest::Annotator));
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        return Err(Error::StdinTwice);
    }
    let warn = hooks.warn;
    let mut replay_from: Option<PathBuf> = None;
    let settle = !ingest.as_ref().is_some_and(|i| i.replay);
    let mut findings = findings;
    let mut ingest = match ingest {
        None => None,
        Some(Ingest { store, commit_every, replay }) => {
            // Continuing: the findings stored so far, which the replay
            // reports again, are neither stored nor written twice.
            let mut suppress = HashMap::new();
            if replay && store.head().records > 0 {
                let dir = store.dir().to_owned();
                store::alerts(&dir, |line| {
                    if let Some(key) = std::str::from_utf8(line).ok().and_then(finding_key) {
                        *suppress.entry(key).or_insert(0u32) += 1;
                    }
                })
                .map_err(|source| Error::Store { what: "cannot read the stored findings", source })?;
                if !suppress.is_empty() {
                    findings = Box::new(Unrepeated { inner: findings, suppress: suppress.clone(), line: Vec::new() });
                }
                replay_from = Some(dir);
            }
            let mut resume = Vec::new();
            for input in &inputs {
                resume.push(match input {
                    // Standard input cannot be recognised again: it is always stored whole.
                    Input::Stdin => None,
                    Input::Path(path) => {
                        Some(store.resume(path).map_err(|source| Error::Resume { path: path.clone(), source })?)
                    }
                });
            }
            // Only the directory's staff and services are stored in clear.
            store.keep_clear(store::KeepClear::from_directory(&directory));
            Some(Ingesting {
                store,
                resume,
                names: inputs.iter().map(Input::name).collect(),
                lines: vec![0; inputs.len()],
                stored: 0,
                skipped: 0,
                error: None,
                commit_every: commit_every.max(1),
                alerts: None,
                extra: Vec::new(),
                stored_findings: None,
                replaying: false,
                suppress,
            })
        }
    };
    let world = World::new(directory, &cfg.engine.hosting_labels);
    // Checked here, before any thread starts, so a bad setting is a one-line error.
    drop(detect::detectors::all(&cfg)?);
    let idle = follow.then_some(idle_flush);
    let open = OpenOptions { follow, idle };
    let mut cursors = Vec::new();
    for input in &inputs {
        cursors.push(reader.open(input, open).map_err(|source| Error::Open { input: input.name(), source })?);
    }
    let mut quarantine = QuarantineFile::create(&quarantine_path);
    let progress = reader.progress();
    let started = std::time::Instant::now();
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    // Two threads: this one reads, parses and interns; the other runs the
    // engine over a replica of the symbol tables, fed in batches.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
    let (recycle, recycled) = std::sync::mpsc::sync_channel::<Vec<(Ev, u64)>>(4);
    let (detected, quarantined) = std::thread::scope(|scope| {
        // Owned here, so that any early return drops it and the detection
        // thread ends instead of waiting for more.
        let tx = tx;
        let cfg = &cfg;
        let keep = match &mut ingest {
            Some(ing) => {
                let (ktx, krx) = std::sync::mpsc::channel();
                ing.alerts = Some(krx);
                Some(ktx)
            }
            None => None,
        };
        let for_engine = sigma.clone();
        let detector = std::thread::Builder::new()
            .name("piiwatch-detect".into())
            .spawn_scoped(scope, move || {
                let wires = Wires { rx, keep, recycle, settle, sigma: for_engine };
                detect_thread(cfg, world, names, findings, follow, wires, warn)
            })
            .map_err(Error::Spawn)?;
        let mut symbols = Symbols::default();
        let mut marks = Marks::default();
        let mut feeder = Feeder::new(cursors.len(), &mut quarantine, ingest.take(), recycled, None);
        feeder.sigma = sigma.clone();
        // With a store, ties in event time are ordered by what the events
        // say: replayed events are rebuilt lines, not the original bytes.
        feeder.content_digest = feeder.ingest.is_some();
        let mut idle_now = vec![false; cursors.len()];
        let mut steps = 0u64;
        let mut open = true;
        let mut replayed = 0u64;
        if let Some(dir) = &replay_from {
            let mut chunk = |lines: &mut Vec<u8>| {
                if !open {
                    return;
                }
                if let Some(ing) = &mut feeder.ingest {
                    ing.replaying = true;
                }
                reader.read_bytes("replay", lines, &mut symbols, &mut feeder);
                if let Some(ing) = &mut feeder.ingest {
                    ing.replaying = false;
                }
                open = feeder.send(&tx, &symbols, &mut marks);
            };
            let (events, resolved) = replay::lines(dir, &mut chunk)
                .map_err(|source| Error::Store { what: "cannot replay the stored events", source })?;
            replayed = events;
            // The inputs are scheduled by their own event times from here.
            feeder.last.fill(Millis::MIN);
            if let Some(ing) = feeder.ingest.as_mut().filter(|_| events > 0) {
                let query = format!(
                    "detection state rebuilt from {events} stored events; {resolved} pseudonyms resolved in memory"
                );
                ing.store
                    .audit(&store::Audit::now("ingest (replay)", query, events, 0, true))
                    .map_err(|source| Error::Store { what: "cannot record the replay in the store", source })?;
            }
        }
        while open {
            // Step the input that is furthest behind in event time, so several
            // inputs interleave in (roughly) event-time order before reordering.
            let next = (0..cursors.len())
                .filter(|&i| !cursors[i].is_done() && !idle_now[i])
                .min_by_key(|&i| (feeder.last[i], i));
            let Some(i) = next else {
                if cursors.iter().all(|c| c.is_done()) {
                    break;
                }
                // Every live input is quiet: release what is held and show it.
                open = feeder.send(&tx, &symbols, &mut marks) && tx.send(Msg::Idle).is_ok();
                idle_now.fill(false);
                // `ingest --follow`: a quiet moment is when to make what was read
                // durable, so a service fed slowly (or by standard input, which
                // cannot be read again) does not wait for a million events.
                if let Some(ing) = &mut feeder.ingest
                    && ing.store.pending() > 0
                {
                    ing.commit(&symbols)?;
                }
                continue;
            };
            feeder.input = i as u16;
            match reader.step(&mut cursors[i], &mut symbols, &mut feeder) {
                Step::Line => idle_now.fill(false),
                Step::Idle => idle_now[i] = true,
                Step::End => {}
            }
            let full = feeder.batch.len() >= BATCH;
            let waited = follow && feeder.started.is_some_and(|s| s.elapsed() >= BATCH_WAIT);
            if full || waited {
                open = feeder.send(&tx, &symbols, &mut marks);
                if let Some(ing) = &mut feeder.ingest
                    && (ing.error.is_some() || ing.store.pending() >= ing.commit_every)
                {
                    ing.commit(&symbols)?;
                }
            }
            steps += 1;
            if steps.is_multiple_of(65_536) {
                (hooks.progress)(progress.bytes());
            }
        }
        if open {
            feeder.send(&tx, &symbols, &mut marks);
        }
        (hooks.progress)(progress.bytes());
        drop(tx);
        let detected = match detector.join() {
            Ok(r) => r?,
            Err(_) => return Err(Error::Panicked),
        };
        // The last findings arrive once detection has finished.
        let stored = match &mut feeder.ingest {
            Some(ing) => {
                ing.commit(&symbols)?;
                Some(Stored {
                    store: ing.store.dir().to_owned(),
                    stored: ing.stored,
                    skipped_already_stored: ing.skipped,
                    ledger_records: ing.store.head().records,
                    replayed,
                })
            }
            None => None,
        };
        let quarantined = feeder.quarantined;
        Ok::<_, Error>((detected, (quarantined, stored)))
    })?;
    let (quarantined, stored) = quarantined;
    quarantine.finish().map_err(|source| Error::Quarantine { path: quarantine_path.clone(), source })?;
    Ok(Report {
        stats: detected.stats,
        state_bytes: detected.state,
        detectors: detected.per,
        quarantined,
        seconds: started.elapsed().as_secs_f64(),
        stored,
    })
}
