//! `piiwatch simulate`.

use std::path::PathBuf;

use anyhow::Result;

use crate::ui;

/// Arguments of `piiwatch simulate`.
#[derive(clap::Args)]
#[command(after_help = scenario_help())]
pub struct Args {
    /// Scenario to inject (see below).
    #[arg(long, default_value = "coupang")]
    scenario: String,
    /// Directory to write events.jsonl.gz, directory.json and truth.json into.
    #[arg(long)]
    out: PathBuf,
    /// Number of customers.
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    /// Number of simulated days.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write events.jsonl uncompressed instead of events.jsonl.gz.
    #[arg(long)]
    no_gzip: bool,
}

fn scenario_help() -> String {
    let mut s = String::from("Scenarios:\n");
    for (name, what) in simulate::scenarios::SCENARIOS {
        s.push_str(&format!("  {name:<9} {what}\n"));
    }
    s
}

/// Runs the simulation.
pub fn run(args: Args) -> Result<()> {
    let opts = simulate::Options {
        scenario: args.scenario,
        out: args.out,
        customers: args.customers,
        days: args.days,
        seed: args.seed,
        gzip: !args.no_gzip,
    };
    let bar = ui::bar(Some(u64::from(opts.days) * 24), "simulating hours", false);
    let started = std::time::Instant::now();
    let summary = simulate::run(&opts, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    errln!(
        "wrote {} lines ({} from the attack, {} malformed on purpose, {:.1} MB uncompressed) to {} in {:.1}s ({:.0} lines/s)",
        summary.lines,
        summary.attack_lines,
        summary.malformed,
        summary.bytes as f64 / 1e6,
        summary.events_path.display(),
        secs,
        summary.lines as f64 / secs.max(1e-9),
    );
    Ok(())
}
