//! Sigma rules in piiwatch: rule files loaded and checked
//! ([`load`]), matched on each parsed line by RSigma's evaluator with the
//! log source piiwatch assigns ([`source`]), and correlations counted
//! exactly in event time by our own windows ([`corr`]) inside the
//! detection engine ([`detector`]).
//!
//! Matching happens where lines are parsed; the rules an event matched
//! ride with it ([`detect::Hit`]) through the engine's reordering, so
//! correlations see events in event-time order and shuffled input within
//! the lateness gives the same findings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use detect::Hit;
use model::Millis;
use rsigma_eval::Engine as Evaluator;
use rsigma_parser::{CorrelationCondition, CorrelationType, Level, LogSource, WindowMode};
use smallvec::SmallVec;
use sonic_rs::Value;

pub mod corr;
pub mod detector;
pub mod load;
pub mod source;
pub mod starter;

pub use detector::SigmaDetector;
pub use load::{Problem, Severity};

/// What to load.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rule directories or files (`--rules`).
    pub dirs: Vec<PathBuf>,
    /// The starter pack shipped with piiwatch (`rules/`), unless `--no-default-rules`.
    pub starter: bool,
    /// pySigma-style processing pipelines applied to every rule (`--pipeline`).
    pub pipelines: Vec<PathBuf>,
}

/// Why rules could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule directory could not be listed.
    #[error("cannot read the rule directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A pipeline file is wrong.
    #[error("{path}: {reason}")]
    Pipeline {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A loaded rule: a detection rule or a correlation.
#[derive(Clone, Debug)]
pub struct Info {
    /// Its id (its title when it has none).
    pub id: String,
    /// Its `name`, which correlations may refer to it by.
    pub name: Option<String>,
    /// Its title.
    pub title: String,
    /// 1 informational ... 5 critical (3 without a level).
    pub severity: u8,
    /// Its file and the line its document starts on.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

/// Something a correlation refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// A detection rule, by index.
    Rule(u32),
    /// Another correlation, by index (a chain).
    Corr(u32),
}

/// A loaded correlation.
#[derive(Clone, Debug)]
pub struct Correlation {
    /// Who it is.
    pub info: Info,
    /// What it counts.
    pub spec: corr::Spec,
    /// What it correlates.
    pub refs: Vec<Ref>,
    /// Its `group-by` names (aliases where given).
    pub group_by: Vec<String>,
    /// Per reference: for each group-by name, where its values are in
    /// that reference's hit (index into the rule's needed fields, or into
    /// the inner correlation's group-by).
    pub group_at: Vec<Vec<Option<usize>>>,
    /// Per reference: where the value field's values are.
    pub value_at: Vec<Option<usize>>,
    /// The value field's name (value_* kinds).
    pub value_field: Option<String>,
    /// Whether the referenced rules also report their own matches.
    pub generate: bool,
}

/// The rules, compiled: what matching and the detector share.
pub struct Rules {
    /// The rules by log source, an evaluator each: an event is evaluated
    /// only by the groups whose log source admits it.
    groups: Vec<Group>,
    /// Per rule: its group and its index there.
    at: Vec<(u32, u32)>,
    /// Detection rules, by index (the evaluator's order).
    pub rules: Vec<Info>,
    by_key: HashMap<String, u32>,
    /// Correlations, by index.
    pub correlations: Vec<Correlation>,
    /// Per detection rule: the fields its correlations read.
    pub needed: Vec<Vec<String>>,
    /// Per detection rule: whether it reports its own matches (not when
    /// only correlations without `generate` use it).
    pub reports: Vec<bool>,
    /// Everything that went wrong, file by file.
    pub problems: Vec<Problem>,
    /// Rule files read.
    pub files: usize,
    /// OCSF classes some rule may match, with the groups that admit them.
    ocsf: Vec<(i64, Vec<u32>)>,
    /// Groups that admit OCSF events of a class without a name here.
    other_ocsf: Vec<u32>,
    /// Groups without any log source (they may match anything).
    open: Vec<u32>,
    /// Whether some rule is for Windows.
    windows: bool,
}

/// A log source's product, category and service, in lower case.
type SourceKey = (Option<String>, Option<String>, Option<String>);

/// Rules that share a log source.
struct Group {
    source: LogSource,
    evaluator: Evaluator,
    /// Per compiled rule of the evaluator: its index among the rules.
    members: Vec<u32>,
}

/// Groups of at most this many rules are evaluated rule by rule with
/// RSigma's condition evaluator, without building its match results (most
/// of the cost of a match); larger ones through its engine, whose
/// candidate index skips rules that cannot match.
const DIRECT: usize = 32;

/// What a line matched.
#[derive(Debug, Default)]
pub struct Matched {
    /// The rules it matched.
    pub hits: Vec<Hit>,
    /// Its time, as its shape says it (Windows events have no OCSF `time`).
    pub time: Option<Millis>,
}

/// Sigma's level as piiwatch's severity.
pub fn severity(level: Option<Level>) -> u8 {
    match level {
        Some(Level::Informational) => 1,
        Some(Level::Low) => 2,
        Some(Level::Medium) | None => 3,
        Some(Level::High) => 4,
        Some(Level::Critical) => 5,
    }
}

fn key_of(id: Option<&str>, title: &str) -> String {
    match id {
        Some(id) => id.to_owned(),
        None => format!("title:{title}"),
    }
}

/// The index of the rule an evaluator's result names (no allocation for a rule with an id).
fn index_of(by_key: &HashMap<String, u32>, id: Option<&str>, title: &str) -> Option<u32> {
    match id {
        Some(id) => by_key.get(id).copied(),
        None => by_key.get(&key_of(None, title)).copied(),
    }
}

impl Rules {
    /// Loads rules as `opts` says. Rules that do not parse or are not
    /// supported are left out and named in [`Rules::problems`].
    pub fn load(opts: &Options) -> Result<Self, Error> {
        let mut read = load::Read::default();
        if opts.starter {
            for (name, text) in starter::FILES {
                read.text(Path::new(&format!("(built in)/rules/{name}")), text);
            }
        }
        for dir in &opts.dirs {
            let files = load::files(dir).map_err(|source| Error::Dir { path: dir.clone(), source })?;
            for f in files {
                read.file(&f);
            }
        }
        let mut pipelines = Vec::new();
        for p in &opts.pipelines {
            let pipe = rsigma_eval::parse_pipeline_file(p)
                .map_err(|e| Error::Pipeline { path: p.clone(), reason: e.to_string() })?;
            pipelines.push(pipe);
        }
        Ok(Self::compile(read, pipelines))
    }

    /// Loads the rules in one YAML text (tests, `rules test`).
    pub fn from_text(name: &str, text: &str) -> Self {
        let mut read = load::Read::default();
        read.text(Path::new(name), text);
        Self::compile(read, Vec::new())
    }

    fn compile(read: load::Read, pipelines: Vec<rsigma_eval::Pipeline>) -> Self {
        let load::Read { rules, correlations, filters, files, mut problems } = read;
        let fresh = || {
            let mut e = Evaluator::new();
            for p in &pipelines {
                e.add_pipeline(p.clone());
            }
            e
        };
        let evaluator = fresh();
        // Rules by their log source (after the pipelines), one evaluator each.
        let mut group_of: HashMap<SourceKey, usize> = HashMap::new();
        let mut grouped: Vec<(LogSource, Vec<&rsigma_parser::SigmaRule>)> = Vec::new();
        let mut at: Vec<(u32, u32)> = Vec::new();
        // Each rule checked on its own first, so one bad rule is named and the rest load.
        let mut infos = Vec::new();
        let mut by_key: HashMap<String, u32> = HashMap::new();
        let mut names: HashMap<String, u32> = HashMap::new();
        for s in &rules {
            let r = &s.rule;
            let id = r.id.clone().unwrap_or_else(|| r.title.clone());
            let checked = evaluator.transform_rule(r).map_err(|e| e.to_string()).and_then(|t| {
                rsigma_eval::compile_rule(&t.rule).map(|_| t.rule.logsource.clone()).map_err(|e| e.to_string())
            });
            let ls = match checked {
                Ok(ls) => ls,
                Err(e) => {
                    problems.push(Problem {
                        file: s.file.clone(),
                        line: Some(s.line),
                        rule: Some(id),
                        reason: format!("not supported: {e}"),
                        severity: Severity::Error,
                    });
                    continue;
                }
            };
            if let Some(w) = placeholder_warning(r) {
                problems.push(Problem {
                    file: s.file.clone(),
                    line: Some(s.line),
                    rule: Some(id.clone()),
                    reason: w,
                    severity: Severity::Warning,
                });
            }
            let key = key_of(r.id.as_deref(), &r.title);
            if by_key.contains_key(&key) {
                problems.push(Problem {
                    file: s.file.clone(),
                    line: Some(s.line),
                    rule: Some(id),
                    reason: "another rule has the same id: this one is left out".into(),
                    severity: Severity::Error,
                });
                continue;
            }
            let i = infos.len() as u32;
            by_key.insert(key, i);
            if let Some(n) = &r.name {
                names.insert(n.clone(), i);
            }
            infos.push(Info {
                id,
                name: r.name.clone(),
                title: r.title.clone(),
                severity: severity(r.level),
                file: s.file.clone(),
                line: s.line,
            });
            let lower = |x: &Option<String>| x.as_deref().map(str::to_ascii_lowercase);
            let key = (lower(&ls.product), lower(&ls.category), lower(&ls.service));
            let g = *group_of.entry(key).or_insert_with(|| {
                grouped.push((LogSource { custom: Default::default(), definition: None, ..ls.clone() }, Vec::new()));
                grouped.len() - 1
            });
            at.push((g as u32, grouped[g].1.len() as u32));
            grouped[g].1.push(&s.rule);
        }
        let mut groups = Vec::with_capacity(grouped.len());
        for (source, list) in grouped {
            let mut e = fresh();
            for (i, err) in e.add_rules(list.iter().copied()) {
                // Checked above, each on its own; one that still fails is named.
                problems.push(Problem {
                    file: PathBuf::new(),
                    line: None,
                    rule: list.get(i).map(|r| r.id.clone().unwrap_or_else(|| r.title.clone())),
                    reason: format!("not supported: {err}"),
                    severity: Severity::Error,
                });
            }
            groups.push(Group { source, evaluator: e, members: Vec::new() });
        }
        for f in &filters {
            // A filter names its rules (or all): applied where they are.
            let results: Vec<_> = groups.iter_mut().map(|g| g.evaluator.apply_filter(&f.rule)).collect();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()).filter(|_| results.iter().all(Result::is_err)) {
                problems.push(Problem {
                    file: f.file.clone(),
                    line: Some(f.line),
                    rule: Some(f.rule.id.clone().unwrap_or_else(|| f.rule.title.clone())),
                    reason: format!("filter not applied: {e}"),
                    severity: Severity::Error,
                });
            }
        }
        for g in &mut groups {
            g.members = g
                .evaluator
                .rules()
                .iter()
                .map(|r| index_of(&by_key, r.id.as_deref(), &r.title).unwrap_or(u32::MAX))
                .collect();
        }
        // Which lines are worth parsing for the rules: the OCSF classes some
        // rule's log source admits, other classes, Windows events, and
        // events of no known shape (only rules without any log source).
        let admitting = |ls: &LogSource| -> Vec<u32> {
            (0..groups.len() as u32).filter(|&g| source_admits(&groups[g as usize].source, ls)).collect()
        };
        let ocsf: Vec<(i64, Vec<u32>)> = source::ocsf_classes()
            .map(|c| (c, admitting(&source::ocsf_source(c))))
            .filter(|(_, g)| !g.is_empty())
            .collect();
        let other_ocsf = admitting(&LogSource { product: Some("ocsf".into()), ..LogSource::default() });
        let open = admitting(&LogSource::default());
        let windows =
            groups.iter().any(|g| g.source.product.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("windows")));
        let mut this = Self {
            groups,
            at,
            reports: vec![true; infos.len()],
            needed: vec![Vec::new(); infos.len()],
            rules: infos,
            by_key,
            correlations: Vec::new(),
            problems,
            files,
            ocsf,
            other_ocsf,
            open,
            windows,
        };
        this.correlate(&correlations, &names);
        this
    }

    /// Compiles the correlations, in an order where every correlation
    /// comes after those it refers to.
    fn correlate(&mut self, list: &[load::Sourced<rsigma_parser::CorrelationRule>], names: &HashMap<String, u32>) {
        let mut pending: Vec<&load::Sourced<rsigma_parser::CorrelationRule>> = list.iter().collect();
        let mut corr_names: HashMap<String, u32> = HashMap::new();
        loop {
            let before = pending.len();
            let mut rest = Vec::new();
            for s in pending {
                let c = &s.rule;
                let resolved: Vec<Option<Ref>> = c
                    .rules
                    .iter()
                    .map(|r| {
                        corr_names
                            .get(r)
                            .map(|&i| Ref::Corr(i))
                            .or_else(|| self.by_key.get(r).or_else(|| names.get(r)).map(|&i| Ref::Rule(i)))
                    })
                    .collect();
                if resolved.iter().any(Option::is_none) {
                    rest.push(s);
                    continue;
                }
                let refs: Vec<Ref> = resolved.into_iter().flatten().collect();
                match self.correlation(s, refs) {
                    Ok(k) => {
                        let i = self.correlations.len() as u32;
                        if let Some(id) = &c.id {
                            corr_names.insert(id.clone(), i);
                        }
                        if let Some(n) = &c.name {
                            corr_names.insert(n.clone(), i);
                        }
                        self.correlations.push(k);
                    }
                    Err(reason) => self.problems.push(Problem {
                        file: s.file.clone(),
                        line: Some(s.line),
                        rule: Some(c.id.clone().unwrap_or_else(|| c.title.clone())),
                        reason,
                        severity: Severity::Error,
                    }),
                }
            }
            if rest.is_empty() || rest.len() == before {
                for s in rest {
                    let c = &s.rule;
                    let missing: Vec<&str> = c
                        .rules
                        .iter()
                        .filter(|r| {
                            !corr_names.contains_key(*r) && !self.by_key.contains_key(*r) && !names.contains_key(*r)
                        })
                        .map(String::as_str)
                        .collect();
                    self.problems.push(Problem {
                        file: s.file.clone(),
                        line: Some(s.line),
                        rule: Some(c.id.clone().unwrap_or_else(|| c.title.clone())),
                        reason: format!("refers to rules that are not loaded: {}", missing.join(", ")),
                        severity: Severity::Error,
                    });
                }
                break;
            }
            pending = rest;
        }
    }

    /// One correlation, or why it is not supported.
    fn correlation(
        &mut self,
        s: &load::Sourced<rsigma_parser::CorrelationRule>,
        refs: Vec<Ref>,
    ) -> Result<Correlation, String> {
        let c = &s.rule;
        if c.window != WindowMode::Sliding {
            return Err(format!("not supported: window mode {:?} (piiwatch counts sliding windows)", c.window));
        }
        if c.timespan.seconds == 0 {
            return Err("timespan must be longer than zero".into());
        }
        let timespan = i64::try_from(c.timespan.seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let (mut predicates, mut field, mut expr, mut pct) = (Vec::new(), None, None, None);
        match &c.condition {
            CorrelationCondition::Threshold { predicates: p, field: f, percentile } => {
                predicates = p.iter().map(|(op, v)| corr::Predicate { op: *op, value: *v as f64 }).collect();
                field = f.clone();
                pct = *percentile;
            }
            CorrelationCondition::Extended(e) => expr = Some(e.clone()),
        }
        let kind = match c.correlation_type {
            CorrelationType::EventCount => corr::Kind::EventCount,
            CorrelationType::ValueCount => corr::Kind::ValueCount,
            CorrelationType::ValueSum => corr::Kind::ValueSum,
            CorrelationType::ValueAvg => corr::Kind::ValueAvg,
            CorrelationType::ValuePercentile => corr::Kind::ValuePercentile(pct.unwrap_or(50) as f64),
            CorrelationType::ValueMedian => corr::Kind::ValuePercentile(50.0),
            CorrelationType::Temporal => corr::Kind::Temporal,
            CorrelationType::TemporalOrdered => corr::Kind::TemporalOrdered,
        };
        let value_field = match kind {
            corr::Kind::ValueCount | corr::Kind::ValueSum | corr::Kind::ValueAvg | corr::Kind::ValuePercentile(_) => {
                match field.as_deref() {
                    Some([f]) => Some(f.clone()),
                    Some([]) | None => return Err(format!("{} needs a condition field", kind.name())),
                    Some(_) => return Err(format!("not supported: {} over several fields", kind.name())),
                }
            }
            _ => None,
        };
        if predicates.is_empty() && !matches!(kind, corr::Kind::Temporal | corr::Kind::TemporalOrdered) {
            return Err(format!("{} needs a condition (gte, lt, ...)", kind.name()));
        }
        let mut ref_names = Vec::new();
        let mut group_at = Vec::new();
        let mut value_at = Vec::new();
        for (k, r) in refs.iter().enumerate() {
            let listed = &c.rules[k];
            let mut names = vec![listed.clone()];
            // The name a reference answers to in aliases.
            let field_in = |name: &str| -> String {
                c.aliases
                    .iter()
                    .find(|a| a.alias == name)
                    .and_then(|a| a.mapping.get(listed))
                    .cloned()
                    .unwrap_or_else(|| name.to_owned())
            };
            match *r {
                Ref::Rule(i) => {
                    let info = &self.rules[i as usize];
                    names.push(info.id.clone());
                    names.extend(info.name.clone());
                    let needed = &mut self.needed[i as usize];
                    let mut at = |f: String| -> usize {
                        match needed.iter().position(|x| *x == f) {
                            Some(p) => p,
                            None => {
                                needed.push(f);
                                needed.len() - 1
                            }
                        }
                    };
                    group_at.push(c.group_by.iter().map(|g| Some(at(field_in(g)))).collect());
                    value_at.push(value_field.as_deref().map(|f| at(field_in(f))));
                    if !c.generate {
                        self.reports[i as usize] = false;
                    }
                }
                Ref::Corr(j) => {
                    let inner = &self.correlations[j as usize];
                    names.push(inner.info.id.clone());
                    names.extend(inner.info.name.clone());
                    group_at.push(
                        c.group_by.iter().map(|g| inner.group_by.iter().position(|x| *x == field_in(g))).collect(),
                    );
                    value_at.push(
                        value_field.as_deref().and_then(|f| inner.group_by.iter().position(|x| *x == field_in(f))),
                    );
                }
            }
            ref_names.push(names);
        }
        Ok(Correlation {
            info: Info {
                id: c.id.clone().unwrap_or_else(|| c.title.clone()),
                name: c.name.clone(),
                title: c.title.clone(),
                severity: severity(c.level),
                file: s.file.clone(),
                line: s.line,
            },
            spec: corr::Spec { kind, timespan, predicates, expr, ref_names, refs: refs.len() },
            refs,
            group_by: c.group_by.clone(),
            group_at,
            value_at,
            value_field,
            generate: c.generate,
        })
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a line of OCSF class `class_uid` (`None`: not OCSF, or not
    /// known) could match any rule, before it is parsed for the rules.
    pub fn may_match(&self, class_uid: Option<i64>) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        match class_uid {
            Some(c) if source::ocsf_category(c).is_some() => self.ocsf.iter().any(|(k, _)| *k == c),
            Some(_) => !self.other_ocsf.is_empty(),
            None => !self.open.is_empty() || self.windows,
        }
    }

    /// The rules `line` matches (`None`: none, or not JSON).
    pub fn match_line(&self, line: &[u8], class_uid: Option<i64>) -> Option<Matched> {
        if !self.may_match(class_uid) {
            return None;
        }
        let text = std::str::from_utf8(line).ok()?;
        self.match_text(text, ingest::Flat::extract(text).as_ref())
    }

    /// The rules line `text` matches, given the extractor's reading of it
    /// (`None`: the extractor left the line to serde_json). An OCSF line
    /// the extractor read is matched without a DOM for the fields it kept
    /// ([`source::LineView`]); anything else is parsed into one.
    pub fn match_text(&self, text: &str, flat: Option<&ingest::Flat>) -> Option<Matched> {
        if let Some(flat) = flat
            && let Some(class) = flat.class_uid()
        {
            if !self.may_match(Some(class)) {
                return None;
            }
            let view = source::LineView::new(text, flat);
            return self.evaluate(&view, source::Shape::Ocsf, &[source::ocsf_source(class)], flat.time());
        }
        // Read whole: a Windows event or other JSON (no OCSF class), or a
        // line the extractor left to serde_json.
        if flat.is_some() && !self.may_match(None) {
            return None;
        }
        self.match_value(&sonic_rs::from_str(text).ok()?)
    }

    /// The rules a JSON event matches.
    pub fn match_value(&self, v: &Value) -> Option<Matched> {
        let (shape, ls) = source::classify(v);
        let view = source::View::new(v, shape);
        let mut sources = vec![ls];
        if shape == source::Shape::Windows && sources[0].category.as_deref() == Some("registry_event") {
            for narrow in source::registry_categories(v) {
                sources.push(LogSource { category: Some((*narrow).to_owned()), ..sources[0].clone() });
            }
        }
        self.evaluate(&view, shape, &sources, source::time_of(v, shape))
    }

    /// The rules an event of `shape` under each of `sources` matches.
    fn evaluate<E: rsigma_eval::Event>(
        &self,
        view: &E,
        shape: source::Shape,
        sources: &[LogSource],
        time: Option<Millis>,
    ) -> Option<Matched> {
        let mut matched: SmallVec<[u32; 4]> = SmallVec::new();
        let mut names = Vec::new();
        for ls in sources {
            let pre: Option<&Vec<u32>> = match (shape, ls.category.as_deref()) {
                (source::Shape::Ocsf, Some(c)) => {
                    self.ocsf.iter().find(|(k, _)| source::ocsf_category(*k) == Some(c)).map(|(_, g)| g)
                }
                (source::Shape::Ocsf, None) => Some(&self.other_ocsf),
                _ => None,
            };
            let scan: Vec<u32>;
            let groups = match pre {
                Some(g) => g,
                None => {
                    scan = (0..self.groups.len() as u32)
                        .filter(|&g| source_admits(&self.groups[g as usize].source, ls))
                        .collect();
                    &scan
                }
            };
            for &g in groups {
                let group = &self.groups[g as usize];
                let rules = group.evaluator.rules();
                if rules.len() > DIRECT {
                    for r in group.evaluator.evaluate_with_logsource(view, ls) {
                        matched.extend(index_of(&self.by_key, r.header.rule_id.as_deref(), &r.header.rule_title));
                    }
                    continue;
                }
                // The engine's own test of the rule's log source against the event's.
                if !logsource_subset(&group.source, ls) {
                    continue;
                }
                for (j, rule) in rules.iter().enumerate() {
                    let hit = rule.conditions.iter().any(|c| {
                        names.clear();
                        rsigma_eval::compiler::eval_condition(c, &rule.detections, view, &mut names)
                    });
                    if hit && group.members[j] != u32::MAX {
                        matched.push(group.members[j]);
                    }
                }
            }
        }
        if matched.is_empty() {
            return None;
        }
        let mut hits: Vec<Hit> = Vec::with_capacity(matched.len());
        for &i in &matched {
            if hits.iter().any(|h| h.rule == i) {
                continue;
            }
            let mut hit = Hit::new(i);
            for f in &self.needed[i as usize] {
                if let Some(x) = view.get_field(f) {
                    source::texts(&x, &mut |s| hit.push(s));
                }
                hit.end_field();
            }
            hits.push(hit);
        }
        hits.sort_by_key(|h| h.rule);
        Some(Matched { hits, time })
    }

    /// The compiled detection rule `i` (for `rules test`'s explanations).
    pub fn compiled(&self, i: u32) -> Option<&rsigma_eval::CompiledRule> {
        let (g, j) = *self.at.get(i as usize)?;
        self.groups.get(g as usize)?.evaluator.rules().get(j as usize)
    }

    /// The index of the detection rule with this id, name or title.
    pub fn find(&self, what: &str) -> Option<u32> {
        self.by_key.get(what).or_else(|| self.by_key.get(&format!("title:{what}"))).copied().or_else(|| {
            self.rules.iter().position(|r| r.name.as_deref() == Some(what) || r.title == what).map(|i| i as u32)
        })
    }

    /// Shared, for the detector and the parsing side.
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

/// A warning for a rule with `expand` placeholders.
fn placeholder_warning(r: &rsigma_parser::SigmaRule) -> Option<String> {
    r.detection.named.values().any(uses_expand).then(|| {
        "uses |expand placeholders: give their values with a pipeline (value_placeholders); \
         without one, each placeholder reads the event's field of that name"
            .into()
    })
}

/// Whether a detection has a field with the `expand` modifier.
fn uses_expand(d: &rsigma_parser::Detection) -> bool {
    use rsigma_parser::{Detection, Modifier};
    match d {
        Detection::AllOf(items) => items.iter().any(|i| i.field.modifiers.contains(&Modifier::Expand)),
        Detection::AnyOf(ds) | Detection::And(ds) => ds.iter().any(uses_expand),
        Detection::Keywords(_) => false,
        Detection::ArrayMatch { body, .. } => uses_expand(body),
        Detection::Conditional { named, .. } => named.values().any(uses_expand),
    }
}

/// Whether a rule's part of a log source (product, service or category)
/// holds for the event's: unset in the rule, or the same (case-insensitive).
fn same_part(rule: &Option<String>, event: &Option<String>) -> bool {
    match (rule, event) {
        (None, _) => true,
        (Some(r), Some(e)) => r.eq_ignore_ascii_case(e),
        (Some(_), None) => false,
    }
}

/// RSigma's routing test: each of the rule's product, category and service
/// is the event's (case-insensitive), with no allowance for registry events.
fn logsource_subset(rule: &LogSource, event: &LogSource) -> bool {
    same_part(&rule.product, &event.product)
        && same_part(&rule.service, &event.service)
        && same_part(&rule.category, &event.category)
}

/// Whether a rule's log source admits an event's: RSigma's routing test,
/// or a `registry_*` rule for a registry event (evaluated again under its
/// narrow category).
pub fn source_admits(rule: &LogSource, event: &LogSource) -> bool {
    let registry = event.category.as_deref() == Some("registry_event")
        && rule.category.as_deref().is_some_and(|c| c.starts_with("registry_"))
        && same_part(&rule.product, &event.product)
        && same_part(&rule.service, &event.service);
    logsource_subset(rule, event) || registry
}

/// Why rule `i` did or did not match an event.
pub struct Explanation {
    /// The event's log source.
    pub event_source: LogSource,
    /// The rule's.
    pub rule_source: LogSource,
    /// Whether the rule's log source admits the event.
    pub source_ok: bool,
    /// The detection's trace (RSigma's explainer).
    pub detection: rsigma_eval::RuleExplanation,
}

impl ingest::Annotate for Rules {
    fn annotate(&self, text: &str, flat: Option<&ingest::Flat>) -> Option<ingest::Note> {
        self.match_text(text, flat).map(|m| Box::new(m) as ingest::Note)
    }
}

impl Rules {
    /// Explains rule `i` on event `v`.
    pub fn explain(&self, i: u32, v: &Value) -> Option<Explanation> {
        let rule = self.compiled(i)?;
        let (shape, ls) = source::classify(v);
        let view = source::View::new(v, shape);
        Some(Explanation {
            source_ok: source_admits(&rule.logsource, &ls),
            event_source: ls,
            rule_source: rule.logsource.clone(),
            detection: rsigma_eval::explain_rule(rule, &view),
        })
    }
}
