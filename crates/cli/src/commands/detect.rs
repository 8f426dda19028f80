//! `piiwatch detect`: every built-in detector over the inputs, in event-time
//! order; findings as OCSF Detection Finding JSON lines.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use detect::{Alert, Config, Engine, Sink, World};
use ingest::{Input, OpenOptions, QuarantineFile, Quarantined, Step, Visitor};
use model::{Directory, Event, Millis, Symbols};

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
    #[arg(long, default_value_t = 2.0)]
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
}

struct AlertWriter {
    out: Box<dyn Write>,
    flush_each: bool,
    per: BTreeMap<&'static str, PerDetector>,
    error: Option<io::Error>,
}

impl Sink for AlertWriter {
    fn alert(&mut self, alert: Alert) {
        let e = self.per.entry(alert.detector).or_default();
        match alert.activity {
            detect::alert::Activity::Create => e.findings += 1,
            detect::alert::Activity::Update => e.updates += 1,
        }
        e.max_severity = e.max_severity.max(alert.severity);
        if self.error.is_some() {
            return;
        }
        let line = alert.to_ocsf().to_string();
        let r = writeln!(self.out, "{line}").and_then(|()| if self.flush_each { self.out.flush() } else { Ok(()) });
        if let Err(err) = r {
            self.error = Some(err);
        }
    }
}

struct DetectVisitor<'a> {
    engine: &'a mut Engine,
    sink: &'a mut AlertWriter,
    quarantine: &'a mut QuarantineFile,
    quarantined: u64,
    input: u16,
    last: Vec<Millis>,
}

impl Visitor for DetectVisitor<'_> {
    fn event(&mut self, _at: ingest::LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        if let Some(t) = event.time() {
            let l = &mut self.last[usize::from(self.input)];
            *l = (*l).max(t);
        }
        self.engine.push(event, self.input, symbols, self.sink);
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        self.quarantined += 1;
        self.quarantine.write(q);
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

/// Runs detect.
pub fn run(args: Args) -> Result<()> {
    if args.print_config {
        print!("{}", Config::defaults_toml());
        return Ok(());
    }
    let cfg = load_config(args.config.as_ref())?;
    let directory = load_directory(args.directory.as_ref())?;
    if args.directory.is_none() {
        eprintln!(
            "piiwatch: warning: no --directory: principals, keys and networks are unknown, so several detectors see less"
        );
    }
    if let Some(r) = &args.rules {
        eprintln!(
            "piiwatch: warning: Sigma rules ({}) are not evaluated yet; only the built-in detectors run",
            r.display()
        );
    }
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::from_arg(a)).collect();
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        anyhow::bail!("standard input (`-`) can be named only once");
    }
    let world = World::new(directory, &cfg.engine.hosting_labels);
    let mut engine = Engine::new(&cfg, world)?;
    engine.set_inputs(inputs.iter().map(Input::name).collect());
    let mut reader = args.read.reader()?;
    let idle = args.follow.then(|| Duration::from_secs_f64(args.idle_flush.max(0.05)));
    let open = OpenOptions { follow: args.follow, idle };
    let mut cursors = Vec::new();
    for input in &inputs {
        cursors.push(reader.open(input, open).with_context(|| format!("cannot read {}", input.name()))?);
    }
    let out: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(BufWriter::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?))
        }
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut sink = AlertWriter { out, flush_each: args.follow, per: BTreeMap::new(), error: None };
    let mut quarantine = QuarantineFile::create(&args.read.quarantine);
    let total: Option<u64> = if args.follow { None } else { inputs.iter().map(Input::size).sum() };
    let bar = ui::bar(total, "detecting", true);
    let progress = reader.progress();
    let mut symbols = Symbols::default();
    let started = std::time::Instant::now();
    let mut visitor = DetectVisitor {
        engine: &mut engine,
        sink: &mut sink,
        quarantine: &mut quarantine,
        quarantined: 0,
        input: 0,
        last: vec![Millis::MIN; cursors.len()],
    };
    let mut idle_now = vec![false; cursors.len()];
    let mut steps = 0u64;
    loop {
        // Step the input that is furthest behind in event time, so several
        // inputs interleave in (roughly) event-time order before reordering.
        let next =
            (0..cursors.len()).filter(|&i| !cursors[i].is_done() && !idle_now[i]).min_by_key(|&i| (visitor.last[i], i));
        let Some(i) = next else {
            if cursors.iter().all(|c| c.is_done()) {
                break;
            }
            // Every live input is quiet: release what is held and show it.
            if let Some(t) = visitor.engine.max_time() {
                visitor.engine.release(t, &symbols, visitor.sink);
            }
            let _ = visitor.sink.out.flush();
            idle_now.fill(false);
            continue;
        };
        visitor.input = i as u16;
        match reader.step(&mut cursors[i], &mut symbols, &mut visitor) {
            Step::Line => idle_now.fill(false),
            Step::Idle => idle_now[i] = true,
            Step::End => {}
        }
        steps += 1;
        if steps.is_multiple_of(65_536) {
            bar.set_position(progress.bytes());
        }
    }
    let quarantined = visitor.quarantined;
    engine.finish(&symbols, &mut sink);
    bar.finish_and_clear();
    sink.out.flush().context("cannot write findings")?;
    if let Some(e) = sink.error.take() {
        return Err(e).context("cannot write findings");
    }
    quarantine.finish().with_context(|| format!("cannot write quarantine {}", args.read.quarantine.display()))?;
    let secs = started.elapsed().as_secs_f64();
    summary(&engine, &sink, quarantined, secs, args.format);
    if quarantined > 0 {
        eprintln!("{quarantined} lines quarantined to {}", args.read.quarantine.display());
    }
    Ok(())
}

fn summary(engine: &Engine, sink: &AlertWriter, quarantined: u64, secs: f64, format: Format) {
    let st = engine.stats();
    let state: u64 = engine.state_bytes().iter().map(|s| s.1 as u64).sum();
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "events": st.events, "untimed": st.untimed, "late": st.late, "max_buffered": st.max_buffered,
                "quarantined": quarantined, "first_time": st.span.map(|s| s.0), "last_time": st.span.map(|s| s.1),
                "seconds": secs, "state_bytes": state, "detectors": sink.per,
            });
            eprintln!("{v}");
        }
        Format::Table => {
            let mut t = ui::table(&["detector", "findings", "updates", "max severity"]);
            for (name, p) in &sink.per {
                t.add_row(vec![
                    name.to_string(),
                    p.findings.to_string(),
                    p.updates.to_string(),
                    p.max_severity.to_string(),
                ]);
            }
            if sink.per.is_empty() {
                t.add_row(vec!["(none)".to_owned(), "0".into(), "0".into(), "-".into()]);
            }
            eprintln!("{t}");
            eprintln!(
                "{} events ({} late, {} quarantined) from {} to {} in {secs:.2}s ({:.0} events/s); detector state ~{} MiB",
                st.events,
                st.late,
                quarantined,
                ui::time(st.span.map(|s| s.0)),
                ui::time(st.span.map(|s| s.1)),
                st.events as f64 / secs.max(1e-9),
                state >> 20
            );
        }
    }
}
