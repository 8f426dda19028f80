//! `piiwatch detect`: every built-in detector over the inputs, in event-time
//! order; findings as OCSF Detection Finding JSON lines.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use std::hash::BuildHasher;
use std::sync::mpsc::{Receiver, SyncSender};

use detect::{Alert, Config, Engine, Ev, Sink, World};
use ingest::{Input, OpenOptions, QuarantineFile, Quarantined, Step, Visitor};
use model::{Delta, Directory, Event, Marks, Millis, Symbols};

use crate::commands::stats::ReadArgs;
use crate::ui::{self, Format};

/// Arguments of `piiwatch detect`.
#[derive(clap::Args)]
pub struct Args {
    /// OCSF JSON-lines files, plain or gzip; `-` reads standard input. Several
    /// inputs are merged in event-time order.
    #[arg(required_unless_present = "print_config")]
    inputs: Vec<String>,
    /// The platform's directory export (principals, signing keys, networks).
    #[arg(long)]
    directory: Option<PathBuf>,
    /// Detector configuration (TOML); see `--print-config` for every key and its default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Sigma rules directory (not evaluated yet: a warning says so).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Write findings here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep reading inputs as they grow (and standard input until it closes),
    /// writing findings as they happen.
    #[arg(long)]
    follow: bool,
    /// With --follow: after this many seconds without input, release events
    /// still held for reordering.
    #[arg(long, default_value_t = 2.0, value_parser = idle_seconds)]
    idle_flush: f64,
    /// Format of the end-of-run summary on standard error.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Default, serde::Serialize)]
struct PerDetector {
    findings: u64,
    updates: u64,
    max_severity: u8,
    /// The detector's own estimate of the state it holds at the end.
    state_bytes: u64,
}

struct AlertWriter {
    out: Box<dyn Write>,
    flush_each: bool,
    per: BTreeMap<&'static str, PerDetector>,
    error: Option<io::Error>,
    /// With `ingest`: every finding line also goes to the parsing thread, which stores it.
    keep: Option<std::sync::mpsc::Sender<String>>,
}

impl Sink for AlertWriter {
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
                warn_unwritten(&err);
            }
            self.error = Some(err);
        }
    }
}

/// `ingest`'s one warning when its findings output fails.
fn warn_unwritten(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        errln!(
            "piiwatch: warning: cannot write findings: their reader went away; they are still stored, and ingest goes on"
        );
    } else {
        errln!("piiwatch: warning: cannot write findings ({e}); they are still stored, and ingest goes on");
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
}

/// `piiwatch ingest`: the store events are appended to, and per input where
/// this run resumes and how far it has read.
pub struct Ingesting<'a> {
    /// The store.
    pub store: &'a mut store::Store,
    /// Per input: its identity and the lines already stored (`None`: standard input).
    pub resume: Vec<Option<store::Resume>>,
    /// Input names, for the marks.
    pub names: Vec<String>,
    /// Per input: the last line number read.
    pub lines: Vec<u64>,
    /// Events appended in this run.
    pub stored: u64,
    /// Lines skipped as already stored.
    pub skipped: u64,
    /// The first storage error (the run stops at the next batch).
    pub error: Option<store::Error>,
    /// Events between commits.
    pub commit_every: u64,
    /// Findings from the detection thread, stored at each commit.
    pub alerts: Option<Receiver<String>>,
}

impl Ingesting<'_> {
    /// Whether line `line` of input `i` is already in the store (and notes how far input `i` got).
    fn seen(&mut self, i: usize, line: u64) -> bool {
        self.lines[i] = self.lines[i].max(line);
        let done = self.resume[i].as_ref().is_some_and(|r| line <= r.skip_lines);
        self.skipped += u64::from(done);
        done
    }

    fn store(&mut self, event: &Event<'_>, symbols: &Symbols) {
        if self.error.is_some() {
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
    fn commit(&mut self, symbols: &Symbols) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e).context("cannot store events");
        }
        if let Some(rx) = &self.alerts {
            for line in rx.try_iter() {
                self.store.append_alert(&line, symbols).context("cannot store a finding")?;
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
        self.store.commit(&marks).context("cannot commit to the store")?;
        Ok(())
    }
}

/// Events appended between commits of `piiwatch ingest`, by default.
pub const COMMIT_EVERY: u64 = 1 << 20;

impl Visitor for Feeder<'_> {
    fn event(&mut self, at: ingest::LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        if let Some(ing) = &mut self.ingest {
            if ing.seen(usize::from(self.input), at.line) {
                return;
            }
            ing.store(event, symbols);
        }
        if let Some(t) = event.time() {
            let l = &mut self.last[usize::from(self.input)];
            *l = (*l).max(t);
        }
        match Ev::from_event(event, self.input, symbols) {
            Some(ev) => {
                // Ties in event time are ordered by the line's content (and
                // input), never by arrival.
                let d = self.hasher.hash_one((at.text, self.input));
                self.batch.push((ev, d));
            }
            None => self.untimed += 1,
        }
        self.started.get_or_insert_with(std::time::Instant::now);
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        if let Some(ing) = &mut self.ingest
            && ing.seen(usize::from(self.input), q.at.line)
        {
            return;
        }
        self.quarantined += 1;
        self.quarantine.write(q);
    }
}

impl Feeder<'_> {
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
}

/// The detection thread: the engine over a replica of the parser's symbols.
fn detect_thread(
    cfg: &Config,
    world: World,
    inputs: Vec<String>,
    out: Option<std::fs::File>,
    follow: bool,
    wires: Wires,
) -> Result<Detected> {
    let Wires { rx, keep, recycle } = wires;
    let mut engine = Engine::new(cfg, world)?;
    engine.set_inputs(inputs);
    let out: Box<dyn Write> = match out {
        Some(f) => Box::new(BufWriter::new(f)),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut sink = AlertWriter { out, flush_each: follow, per: BTreeMap::new(), error: None, keep };
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
            Msg::Idle => {
                if let Some(t) = engine.max_time() {
                    engine.release(t, &symbols, &mut sink);
                }
                if let Err(e) = sink.out.flush()
                    && sink.error.is_none()
                {
                    if sink.keep.is_some() {
                        errln!(
                            "piiwatch: warning: cannot write findings ({e}); they are still stored, and ingest goes on"
                        );
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
            return Err(e).context("cannot write findings");
        }
        engine.finish(&symbols, &mut sink);
        sink.out.flush().context("cannot write findings")?;
        if let Some(e) = sink.error.take() {
            return Err(e).context("cannot write findings");
        }
    } else {
        // `ingest`: a closed findings output was warned about; storing went on.
        engine.finish(&symbols, &mut sink);
        if sink.error.is_none()
            && let Err(e) = sink.out.flush()
        {
            warn_unwritten(&e);
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

impl Args {
    /// The inputs as named on the command line.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// Whether only the default configuration is asked for.
    pub fn print_config(&self) -> bool {
        self.print_config
    }
}

/// Reads the configuration file, or the defaults.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read config {}", p.display()))?;
            Config::parse(&text).with_context(|| format!("config {}", p.display()))
        }
    }
}

/// Reads the directory export, or an empty one.
pub fn load_directory(path: Option<&PathBuf>) -> Result<Directory> {
    match path {
        None => Ok(Directory::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read directory {}", p.display()))?;
            Directory::parse(&text).with_context(|| format!("directory {}", p.display()))
        }
    }
}

/// `--idle-flush`: seconds, a finite number from 0.05 to a day.
fn idle_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if !(0.05..=86_400.0).contains(&v) {
        return Err(format!("{s} is outside 0.05 to 86400 seconds"));
    }
    Ok(v)
}

/// Runs detect.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    pipeline(&args, None, out)
}

/// Detection over the inputs, and with `ingest` the events appended to a store.
pub fn pipeline(args: &Args, mut ingest: Option<Ingesting<'_>>, out: &mut dyn Write) -> Result<()> {
    if args.print_config {
        write!(out, "{}", Config::defaults_toml())?;
        return Ok(());
    }
    let cfg = load_config(args.config.as_ref())?;
    let directory = load_directory(args.directory.as_ref())?;
    if args.directory.is_none() {
        errln!(
            "piiwatch: warning: no --directory: principals, keys and networks are unknown, so several detectors see less"
        );
    }
    if let Some(r) = &args.rules {
        errln!(
            "piiwatch: warning: Sigma rules ({}) are not evaluated yet; only the built-in detectors run",
            r.display()
        );
    }
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::from_arg(a)).collect();
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        anyhow::bail!("standard input (`-`) can be named only once");
    }
    if let Some(ing) = &mut ingest {
        // Only the directory's staff and services are stored in clear.
        ing.store.keep_clear(store::KeepClear::from_directory(&directory));
    }
    let world = World::new(directory, &cfg.engine.hosting_labels);
    // Checked here, before any thread starts, so a bad setting is a one-line error.
    drop(detect::detectors::all(&cfg)?);
    let mut reader = args.read.reader()?;
    let idle = args.follow.then(|| Duration::from_secs_f64(args.idle_flush));
    let open = OpenOptions { follow: args.follow, idle };
    let mut cursors = Vec::new();
    for input in &inputs {
        cursors.push(reader.open(input, open).with_context(|| format!("cannot read {}", input.name()))?);
    }
    let findings_to = match &args.out {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
        None => None,
    };
    let mut quarantine = QuarantineFile::create(&args.read.quarantine);
    let total: Option<u64> = if args.follow { None } else { inputs.iter().map(Input::size).sum() };
    let bar = ui::bar(total, "detecting", true);
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
        let follow = args.follow;
        let keep = match &mut ingest {
            Some(ing) => {
                let (ktx, krx) = std::sync::mpsc::channel();
                ing.alerts = Some(krx);
                Some(ktx)
            }
            None => None,
        };
        let detector = std::thread::Builder::new()
            .name("piiwatch-detect".into())
            .spawn_scoped(scope, move || {
                detect_thread(cfg, world, names, findings_to, follow, Wires { rx, keep, recycle })
            })
            .context("cannot start the detection thread")?;
        let mut symbols = Symbols::default();
        let mut marks = Marks::default();
        let mut feeder = Feeder {
            batch: Vec::with_capacity(BATCH),
            untimed: 0,
            started: None,
            quarantine: &mut quarantine,
            quarantined: 0,
            input: 0,
            last: vec![Millis::MIN; cursors.len()],
            hasher: foldhash::fast::FixedState::with_seed(7),
            ingest: ingest.take(),
            recycled,
        };
        let mut idle_now = vec![false; cursors.len()];
        let mut steps = 0u64;
        let mut open = true;
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
            let waited = args.follow && feeder.started.is_some_and(|s| s.elapsed() >= BATCH_WAIT);
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
                bar.set_position(progress.bytes());
            }
        }
        if open {
            feeder.send(&tx, &symbols, &mut marks);
        }
        drop(tx);
        let detected = match detector.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("the detection thread failed"),
        };
        // The last findings arrive once detection has finished.
        let stored = match &mut feeder.ingest {
            Some(ing) => {
                ing.commit(&symbols)?;
                Some(serde_json::json!({
                    "store": ing.store.dir().display().to_string(), "stored": ing.stored,
                    "skipped_already_stored": ing.skipped, "ledger_records": ing.store.head().records,
                }))
            }
            None => None,
        };
        let quarantined = feeder.quarantined;
        anyhow::Ok((detected, (quarantined, stored)))
    })?;
    let (quarantined, stored) = quarantined;
    bar.finish_and_clear();
    quarantine.finish().with_context(|| format!("cannot write quarantine {}", args.read.quarantine.display()))?;
    let secs = started.elapsed().as_secs_f64();
    summary(&detected, quarantined, secs, args.format, stored);
    if quarantined > 0 {
        errln!("{quarantined} lines quarantined to {}", args.read.quarantine.display());
    }
    Ok(())
}

fn summary(d: &Detected, quarantined: u64, secs: f64, format: Format, stored: Option<serde_json::Value>) {
    let st = &d.stats;
    let state = d.state;
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "events": st.events, "untimed": st.untimed, "late": st.late, "max_buffered": st.max_buffered,
                "quarantined": quarantined, "first_time": st.span.map(|s| s.0), "last_time": st.span.map(|s| s.1),
                "seconds": secs, "state_bytes": state, "detectors": d.per, "store": stored,
            });
            errln!("{v}");
        }
        Format::Table => {
            let mut t = ui::table(&["detector", "findings", "updates", "max severity", "state MiB"]);
            for (name, p) in &d.per {
                let severity = if p.findings + p.updates == 0 { "-".to_owned() } else { p.max_severity.to_string() };
                t.add_row(vec![
                    name.to_string(),
                    p.findings.to_string(),
                    p.updates.to_string(),
                    severity,
                    format!("{:.1}", p.state_bytes as f64 / f64::from(1 << 20)),
                ]);
            }
            if d.per.is_empty() {
                t.add_row(vec!["(none)".to_owned(), "0".into(), "0".into(), "-".into(), "0".into()]);
            }
            errln!("{t}");
            errln!(
                "{} events ({} late, {} quarantined) from {} to {} in {secs:.2}s ({:.0} events/s); detector state ~{} MiB",
                st.events,
                st.late,
                quarantined,
                ui::time(st.span.map(|s| s.0)),
                ui::time(st.span.map(|s| s.1)),
                st.events as f64 / secs.max(1e-9),
                state >> 20
            );
            if let Some(st) = stored {
                errln!(
                    "stored {} events in {} ({} lines skipped as already stored); the ledger holds {} records",
                    st["stored"],
                    st["store"].as_str().unwrap_or_default(),
                    st["skipped_already_stored"],
                    st["ledger_records"]
                );
            }
        }
    }
}
