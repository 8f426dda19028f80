//! Sigma rules: the options `detect`, `ingest` and `serve` share
//! (`--rules`, `--no-default-rules`, `--pipeline`, `--strict`), and
//! `piiwatch rules check` and `piiwatch rules test`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rsigma_eval::explain::{ConditionTrace, DetectionTrace, ItemTrace};
use sigma::{Options, Rules, Severity};

use crate::ui::{self, Format};

/// Which Sigma rules run.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RuleArgs {
    /// Sigma rules: a directory (read recursively for *.yml and *.yaml) or
    /// a file; may be given several times.
    #[arg(long, value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Do not load the starter pack shipped with piiwatch (`rules/`).
    #[arg(long)]
    pub no_default_rules: bool,
    /// pySigma-style processing pipeline applied to every rule (field
    /// mapping, log-source change, value placeholders); may be given several times.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Vec<PathBuf>,
    /// Stop with an error if any rule does not parse or is not supported.
    #[arg(long)]
    pub strict: bool,
}

impl RuleArgs {
    /// Loads the rules, warning (or with `--strict`, failing) about the
    /// ones left out. `None`: no rule at all.
    pub fn load(&self) -> Result<Option<Arc<Rules>>> {
        let opts =
            Options { dirs: self.rules.clone(), starter: !self.no_default_rules, pipelines: self.pipeline.clone() };
        let rules = Rules::load(&opts)?;
        let errors: Vec<_> = rules.problems.iter().filter(|p| p.severity == Severity::Error).collect();
        if let Some(first) = errors.first() {
            if self.strict {
                bail!("{} Sigma rule problem(s) and --strict; the first: {first}", errors.len());
            }
            errln!(
                "piiwatch: warning: {} Sigma rule problem(s), those rules do not run (`piiwatch rules check` lists them); the first: {first}",
                errors.len()
            );
        }
        if rules.is_empty() {
            return Ok(None);
        }
        Ok(Some(rules.shared()))
    }
}

/// `piiwatch rules`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Parse and check rule files: what loads, what does not and why, and
    /// lint findings (exits 1 if a rule does not load).
    Check {
        /// Rule directories or files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Processing pipelines to apply.
        #[arg(long, value_name = "FILE")]
        pipeline: Vec<PathBuf>,
        /// Leave out lint findings (only what stops a rule from loading).
        #[arg(long)]
        no_lint: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run one rule over events: which events it matched, and for a chosen
    /// event why it did or did not match.
    Test {
        /// The rule file (its first detection rule unless --id).
        rule: PathBuf,
        /// Events, one JSON object per line.
        events: PathBuf,
        /// The rule's id, name or title, when the file holds several.
        #[arg(long)]
        id: Option<String>,
        /// Explain this event (its line number in EVENTS).
        #[arg(long, value_name = "LINE")]
        explain: Option<u64>,
        /// Processing pipelines to apply.
        #[arg(long, value_name = "FILE")]
        pipeline: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Runs `piiwatch rules`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Sub::Check { paths, pipeline, no_lint, format } => check(&paths, pipeline, no_lint, format, out),
        Sub::Test { rule, events, id, explain, pipeline, format } => {
            test(&rule, &events, id.as_deref(), explain, pipeline, format, out)
        }
    }
}

/// One lint finding: file, line, severity, message.
type Lint = (PathBuf, Option<u32>, String, String);

/// Lint findings worth a user's attention (errors and warnings), per file.
fn lint(paths: &[PathBuf]) -> Result<Vec<Lint>> {
    let mut out = Vec::new();
    for p in paths {
        for f in sigma::load::files(p).with_context(|| format!("cannot read {}", p.display()))? {
            let Ok(meta) = std::fs::metadata(&f) else { continue };
            if meta.len() > sigma::load::MAX_FILE {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&f) else { continue };
            for w in rsigma_parser::lint::lint_yaml_str(&text) {
                use rsigma_parser::lint::Severity as L;
                if matches!(w.severity, L::Error | L::Warning) {
                    let line = w.span.map(|s| s.start_line + 1);
                    out.push((
                        f.clone(),
                        line,
                        format!("{}", w.severity).to_lowercase(),
                        format!("{}: {}", w.rule, w.message),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn check(paths: &[PathBuf], pipeline: Vec<PathBuf>, no_lint: bool, format: Format, out: &mut dyn Write) -> Result<()> {
    let rules = Rules::load(&Options { dirs: paths.to_vec(), starter: false, pipelines: pipeline })?;
    let lints = if no_lint { Vec::new() } else { lint(paths)? };
    let errors = rules.problems.iter().filter(|p| p.severity == Severity::Error).count();
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "files": rules.files,
                "rules": rules.rules.len(),
                "correlations": rules.correlations.len(),
                "not_loaded": errors,
                "problems": rules.problems,
                "lint": lints.iter().map(|(f, l, s, m)| serde_json::json!({"file": f, "line": l, "severity": s, "message": m})).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}")?;
        }
        Format::Table => {
            if !rules.problems.is_empty() || !lints.is_empty() {
                let mut t = ui::table(&["file", "line", "rule", "severity", "reason"]);
                for p in &rules.problems {
                    let sev = match p.severity {
                        Severity::Error => "not loaded",
                        Severity::Warning => "warning",
                    };
                    t.add_row(vec![
                        p.file.display().to_string(),
                        p.line.map(|l| l.to_string()).unwrap_or_default(),
                        p.rule.clone().unwrap_or_default(),
                        sev.to_owned(),
                        p.reason.clone(),
                    ]);
                }
                for (f, l, s, m) in &lints {
                    t.add_row(vec![
                        f.display().to_string(),
                        l.map(|l| l.to_string()).unwrap_or_default(),
                        String::new(),
                        format!("lint {s}"),
                        m.clone(),
                    ]);
                }
                writeln!(out, "{t}")?;
            }
            writeln!(
                out,
                "{} files: {} rules and {} correlations load; {errors} do not; {} warnings; {} lint findings",
                rules.files,
                rules.rules.len(),
                rules.correlations.len(),
                rules.problems.len() - errors,
                lints.len()
            )?;
        }
    }
    if errors > 0 {
        out.flush()?;
        bail!("{errors} rule(s) do not load");
    }
    Ok(())
}

fn test(
    rule: &Path,
    events: &Path,
    id: Option<&str>,
    explain: Option<u64>,
    pipeline: Vec<PathBuf>,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let rules = Rules::load(&Options { dirs: vec![rule.to_owned()], starter: false, pipelines: pipeline })?;
    let index = match id {
        Some(id) => rules.find(id).with_context(|| format!("no detection rule {id:?} in {}", rule.display()))?,
        None => {
            if rules.rules.is_empty() {
                let why = rules.problems.first().map(|p| format!(": {p}")).unwrap_or_default();
                bail!("{} holds no detection rule that loads{why}", rule.display());
            }
            0
        }
    };
    let info = &rules.rules[index as usize];
    let file = std::fs::File::open(events).with_context(|| format!("cannot read {}", events.display()))?;
    let mut matched = Vec::new();
    let (mut lines, mut bad) = (0u64, 0u64);
    let mut explained = None;
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let n = n as u64 + 1;
        let line = line.with_context(|| format!("cannot read {}", events.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(v) = sonic_rs::from_slice::<sonic_rs::Value>(&line) else {
            bad += 1;
            continue;
        };
        lines += 1;
        if rules.match_value(&v).is_some_and(|m| m.hits.iter().any(|h| h.rule == index)) {
            matched.push(n);
        }
        if explain == Some(n) {
            explained = rules.explain(index, &v);
        }
    }
    if let Some(n) = explain
        && explained.is_none()
    {
        bail!("line {n} of {} is not a JSON event", events.display());
    }
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "rule": info.id, "title": info.title, "events": lines, "not_json": bad,
                "matched": matched.len(), "matched_lines": matched,
                "explain": explained.as_ref().map(|e| serde_json::json!({
                    "line": explain, "matched": e.detection.matched && e.source_ok,
                    "log_source_admits": e.source_ok,
                    "event_log_source": source_text(&e.event_source), "rule_log_source": source_text(&e.rule_source),
                    "detection": e.detection,
                })),
            });
            writeln!(out, "{v}")?;
        }
        Format::Table => {
            writeln!(out, "rule {} ({}): {} of {lines} events matched", info.title, info.id, matched.len())?;
            if bad > 0 {
                writeln!(out, "{bad} lines are not JSON")?;
            }
            if !matched.is_empty() {
                let shown: Vec<String> = matched.iter().take(50).map(u64::to_string).collect();
                let more = if matched.len() > 50 { format!(" and {} more", matched.len() - 50) } else { String::new() };
                writeln!(out, "matched lines: {}{more}", shown.join(", "))?;
            }
            if let Some(e) = &explained {
                let n = explain.unwrap_or_default();
                let verdict = if e.detection.matched && e.source_ok { "matches" } else { "does not match" };
                writeln!(out, "\nline {n} {verdict}:")?;
                writeln!(
                    out,
                    "  log source: the event is {}, the rule wants {}: {}",
                    source_text(&e.event_source),
                    source_text(&e.rule_source),
                    if e.source_ok { "admitted" } else { "NOT admitted (the rule never sees this event)" }
                )?;
                for c in &e.detection.conditions {
                    condition(c, 1, out)?;
                }
            }
        }
    }
    Ok(())
}

fn source_text(ls: &rsigma_parser::LogSource) -> String {
    let parts: Vec<String> = [("product", &ls.product), ("category", &ls.category), ("service", &ls.service)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
    if parts.is_empty() { "(any)".into() } else { format!("{{{}}}", parts.join(", ")) }
}

fn mark(m: bool) -> &'static str {
    if m { "yes" } else { "no " }
}

fn condition(c: &ConditionTrace, depth: usize, out: &mut dyn Write) -> Result<()> {
    let pad = "  ".repeat(depth);
    match c {
        ConditionTrace::Selection { name, matched, detection: d } => {
            writeln!(out, "{pad}[{}] {name}", mark(*matched))?;
            detection(d, depth + 1, out)?;
        }
        ConditionTrace::And { matched, children } | ConditionTrace::Or { matched, children } => {
            let op = if matches!(c, ConditionTrace::And { .. }) { "and" } else { "or" };
            writeln!(out, "{pad}[{}] {op}", mark(*matched))?;
            for x in children {
                condition(x, depth + 1, out)?;
            }
        }
        ConditionTrace::Not { matched, child } => {
            writeln!(out, "{pad}[{}] not", mark(*matched))?;
            condition(child, depth + 1, out)?;
        }
        ConditionTrace::Quantified { quantifier, matched, need, got, branches } => {
            writeln!(out, "{pad}[{}] {quantifier}: {got} of {need} needed", mark(*matched))?;
            for b in branches {
                writeln!(out, "{pad}  [{}] {}", mark(b.matched), b.name)?;
                detection(&b.detection, depth + 2, out)?;
            }
        }
    }
    Ok(())
}

fn detection(d: &DetectionTrace, depth: usize, out: &mut dyn Write) -> Result<()> {
    let pad = "  ".repeat(depth);
    match d {
        DetectionTrace::AllOf { items, .. } => {
            for i in items {
                item(i, depth, out)?;
            }
        }
        DetectionTrace::AnyOf { matched, branches } | DetectionTrace::And { matched, branches } => {
            let op = if matches!(d, DetectionTrace::AnyOf { .. }) { "any of" } else { "all of" };
            writeln!(out, "{pad}[{}] {op}", mark(*matched))?;
            for b in branches {
                detection(b, depth + 1, out)?;
            }
        }
        DetectionTrace::Keywords { item: i, .. } => item(i, depth, out)?,
        DetectionTrace::ArrayMatch { field, quantifier, matched, member_count, matched_count, .. } => {
            writeln!(
                out,
                "{pad}[{}] {field}[{quantifier}]: {matched_count} of {member_count} elements",
                mark(*matched)
            )?;
        }
        DetectionTrace::Conditional { matched, condition: c } => {
            writeln!(out, "{pad}[{}] conditional", mark(*matched))?;
            condition(c, depth + 1, out)?;
        }
        DetectionTrace::Other { kind, matched } => writeln!(out, "{pad}[{}] {kind}", mark(*matched))?,
    }
    Ok(())
}

fn item(i: &ItemTrace, depth: usize, out: &mut dyn Write) -> Result<()> {
    let pad = "  ".repeat(depth);
    let field = i.field.as_deref().unwrap_or("(keyword)");
    let pattern = i.pattern.as_deref().unwrap_or("");
    let actual = match &i.actual {
        Some(v) => v.to_string(),
        None => "(absent)".into(),
    };
    writeln!(
        out,
        "{pad}[{}] {field} {:?} {pattern}: event has {actual} ({})",
        mark(i.matched),
        i.matcher,
        serde_json::to_value(i.reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    )?;
    Ok(())
}
