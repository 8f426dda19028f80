//! `piiwatch stats`: what a user runs first on their logs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ingest::{Input, QuarantineFile, Quarantined, Reader, ReaderOptions, Tally, Visitor};
use model::{DataMap, Event, Symbols};

use crate::ui::{self, Format};

/// Arguments of `piiwatch stats`.
#[derive(clap::Args)]
pub struct Args {
    /// OCSF JSON-lines files, plain or gzip; `-` reads standard input.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
}

/// How inputs are read: the options every command that reads logs shares.
#[derive(clap::Args)]
pub struct ReadArgs {
    /// Where to write quarantined lines (replaced, and only if there are any).
    #[arg(long, default_value = "piiwatch-quarantine.jsonl")]
    pub quarantine: PathBuf,
    /// Data map (TOML) giving the field classes of operations whose events carry no labels.
    #[arg(long)]
    pub data_map: Option<PathBuf>,
    /// Longest accepted line in bytes; longer lines are quarantined.
    #[arg(long, default_value_t = ingest::reader::DEFAULT_MAX_LINE)]
    pub max_line_bytes: usize,
    /// Parsing workers per input, extracting lines ahead of the thread that
    /// interns them; 0 parses on that thread alone. Results are identical
    /// whatever the number. Default: one per core beyond the first.
    #[arg(long, value_name = "N")]
    pub parse_threads: Option<usize>,
}

impl ReadArgs {
    /// A reader with these options (reading the data map file if one is given).
    pub fn reader(&self) -> Result<Reader> {
        let datamap = load_datamap(self.data_map.as_ref())?;
        let parse_threads = self
            .parse_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)));
        Ok(Reader::new(ReaderOptions {
            datamap,
            max_line: self.max_line_bytes,
            parse_threads,
            ..ReaderOptions::default()
        }))
    }
}

/// Reads a data map file, or the built-in one.
pub fn load_datamap(path: Option<&PathBuf>) -> Result<DataMap> {
    match path {
        None => Ok(DataMap::builtin()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read data map {}", p.display()))?;
            DataMap::parse(&text).with_context(|| format!("data map {}", p.display()))
        }
    }
}

struct StatsVisitor {
    tally: Tally,
    quarantine: QuarantineFile,
    progress: ingest::Progress,
    bar: indicatif::ProgressBar,
    events: u64,
}

impl Visitor for StatsVisitor {
    fn event(&mut self, at: ingest::LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        self.tally.event(at, event, symbols);
        self.events += 1;
        if self.events.is_multiple_of(65_536) {
            self.bar.set_position(self.progress.bytes());
        }
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        self.tally.quarantined(q);
        self.quarantine.write(q);
    }
}

/// Runs stats.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::from_arg(a)).collect();
    for input in &inputs {
        if let Input::Path(p) = input {
            std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        }
    }
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        anyhow::bail!("standard input (`-`) can be named only once");
    }
    let mut reader = args.read.reader()?;
    let total: Option<u64> = inputs.iter().map(Input::size).sum();
    let bar = ui::bar(total, "reading", true);
    let mut visitor = StatsVisitor {
        tally: Tally::default(),
        quarantine: QuarantineFile::create(&args.read.quarantine),
        progress: reader.progress(),
        bar: bar.clone(),
        events: 0,
    };
    let mut symbols = Symbols::default();
    let started = std::time::Instant::now();
    let mut lines = 0;
    for input in &inputs {
        let sum =
            reader.read(input, &mut symbols, &mut visitor).with_context(|| format!("cannot read {}", input.name()))?;
        lines += sum.lines;
    }
    bar.finish_and_clear();
    visitor
        .quarantine
        .finish()
        .with_context(|| format!("cannot write quarantine {}", args.read.quarantine.display()))?;
    let report = visitor.tally.report(&symbols);
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Table => print_table(&report, out)?,
    }
    let secs = started.elapsed().as_secs_f64();
    errln!("read {lines} lines in {secs:.2}s ({:.0} events/s)", report.events as f64 / secs.max(1e-9));
    if report.quarantined > 0 {
        errln!("{} lines quarantined to {}", report.quarantined, args.read.quarantine.display());
    }
    Ok(())
}

fn print_table(r: &ingest::StatsReport, out: &mut dyn Write) -> std::io::Result<()> {
    let mut t = ui::table(&["summary", "value"]);
    t.add_row(vec!["events".to_owned(), r.events.to_string()]);
    for (class, n) in &r.events_by_class {
        t.add_row(vec![format!("  {class}"), n.to_string()]);
    }
    t.add_row(vec!["successful API calls".to_owned(), r.successful_api_events.to_string()]);
    t.add_row(vec!["API calls carrying personal data".to_owned(), r.exposing_api_events.to_string()]);
    t.add_row(vec!["distinct principals".to_owned(), r.distinct_principals.to_string()]);
    t.add_row(vec!["distinct data subjects".to_owned(), r.distinct_subjects.to_string()]);
    t.add_row(vec!["distinct source addresses".to_owned(), r.distinct_sources.to_string()]);
    t.add_row(vec!["first event".to_owned(), ui::time(r.first_time)]);
    t.add_row(vec!["last event".to_owned(), ui::time(r.last_time)]);
    t.add_row(vec!["quarantined lines".to_owned(), r.quarantined.to_string()]);
    for (kind, n) in &r.quarantined_by_kind {
        t.add_row(vec![format!("  {kind}"), n.to_string()]);
    }
    writeln!(out, "{t}")?;
    if !r.events_by_operation.is_empty() {
        let mut ops: Vec<_> = r.events_by_operation.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut t = ui::table(&["operation", "events"]);
        for (op, n) in ops {
            t.add_row(vec![op.clone(), n.to_string()]);
        }
        writeln!(out, "{t}")?;
    }
    if !r.quarantine_samples.is_empty() {
        let mut t = ui::table(&["source", "line", "reason"]);
        for s in &r.quarantine_samples {
            t.add_row(vec![s.source.clone(), s.line.to_string(), s.reason.clone()]);
        }
        writeln!(out, "{t}")?;
    }
    Ok(())
}
