//! Rule files: found, read (bounded), parsed, and every problem named by
//! file, line and reason.

use std::path::{Path, PathBuf};

use rsigma_parser::{CorrelationRule, FilterRule, SigmaCollection, SigmaRule};

/// The largest rule file read (SigmaHQ's largest is under 100 KB).
pub const MAX_FILE: u64 = 4 << 20;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule runs, but may not do what its author meant (a placeholder with no value).
    Warning,
    /// The rule (or file) does not run: it does not parse or uses what piiwatch does not support.
    Error,
}

/// Something wrong with a rule file or a rule in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based) where the document or the error is, when known.
    pub line: Option<usize>,
    /// The rule's id or title, when the problem is one rule's.
    pub rule: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// Whether the rule still runs.
    pub severity: Severity,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": rule {r}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// One rule with where it came from.
pub struct Sourced<T> {
    /// The rule.
    pub rule: T,
    /// Its file.
    pub file: PathBuf,
    /// The line its document starts on.
    pub line: usize,
}

/// Everything read from the rule files.
#[derive(Default)]
pub struct Read {
    /// Detection rules.
    pub rules: Vec<Sourced<SigmaRule>>,
    /// Correlation rules.
    pub correlations: Vec<Sourced<CorrelationRule>>,
    /// Filters.
    pub filters: Vec<Sourced<FilterRule>>,
    /// Files read.
    pub files: usize,
    /// What went wrong.
    pub problems: Vec<Problem>,
}

/// Every `*.yml` and `*.yaml` under `dir` (or `dir` itself if it is a file), sorted.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if dir.is_file() {
        out.push(dir.to_owned());
        return Ok(out);
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The line a YAML error names (`at line N`), if it does and `text` has
/// that line (YAML also breaks lines at a lone carriage return, which an
/// editor may not show as one: such a count is not given).
fn error_line(msg: &str, text: &str) -> Option<usize> {
    let at = msg.find("line ")?;
    let digits: String = msg[at + 5..].chars().take_while(char::is_ascii_digit).collect();
    let n: usize = digits.parse().ok()?;
    (n >= 1 && n <= text.lines().count().max(1)).then_some(n)
}

impl Read {
    /// Reads one file.
    pub fn file(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.problem(path, None, None, format!("cannot read: {e}")),
        };
        if meta.len() > MAX_FILE {
            return self.problem(
                path,
                None,
                None,
                format!("{} bytes: larger than the {MAX_FILE}-byte limit for a rule file", meta.len()),
            );
        }
        match std::fs::read_to_string(path) {
            Ok(text) => self.text(path, &text),
            Err(e) => self.problem(path, None, None, format!("cannot read: {e}")),
        }
    }

    /// Reads the rules in `text`, which came from `path`.
    pub fn text(&mut self, path: &Path, text: &str) {
        self.files += 1;
        let docs = documents(text);
        let collection = match rsigma_parser::parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return self.problem(path, error_line(&msg, text), None, msg);
            }
        };
        if !collection.errors.is_empty() {
            self.attribute_errors(path, text, &collection, &docs);
        }
        // A file of several rules gives each the line of its document, by title.
        let line_of = |title: &str| -> usize {
            docs.iter().find(|(_, d)| doc_title(d).as_deref() == Some(title)).map_or(1, |(l, _)| *l)
        };
        let SigmaCollection { rules, correlations, filters, .. } = collection;
        for rule in rules {
            let line = line_of(&rule.title);
            self.rules.push(Sourced { rule, file: path.to_owned(), line });
        }
        for rule in correlations {
            let line = line_of(&rule.title);
            self.correlations.push(Sourced { rule, file: path.to_owned(), line });
        }
        for rule in filters {
            let line = line_of(&rule.title);
            self.filters.push(Sourced { rule, file: path.to_owned(), line });
        }
    }

    /// Finds which documents of `text` the collection's errors came from
    /// by parsing each on its own (a file with `action:` documents is
    /// reported as a whole).
    fn attribute_errors(&mut self, path: &Path, text: &str, whole: &SigmaCollection, docs: &[(usize, String)]) {
        if text.contains("\naction:") || text.starts_with("action:") {
            for e in &whole.errors {
                self.problem(path, error_line(e, text), None, e.clone());
            }
            return;
        }
        let mut found = 0;
        for (start, doc) in docs {
            if let Ok(c) = rsigma_parser::parse_sigma_yaml(doc) {
                for e in c.errors {
                    found += 1;
                    let line = error_line(&e, doc).map_or(*start, |l| l + start - 1);
                    self.problem(path, Some(line), doc_title(doc), e);
                }
            }
        }
        if found == 0 {
            for e in &whole.errors {
                self.problem(path, Some(error_line(e, text).unwrap_or(1)), None, e.clone());
            }
        }
    }

    fn problem(&mut self, path: &Path, line: Option<usize>, rule: Option<String>, reason: String) {
        self.problems.push(Problem { file: path.to_owned(), line, rule, reason, severity: Severity::Error });
    }
}

/// The YAML documents of `text` with the line each starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "---" {
            if !cur.trim().is_empty() {
                out.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 2;
            continue;
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push((start, cur));
    }
    out
}

/// A document's `title:`, as written (quotes taken off).
fn doc_title(doc: &str) -> Option<String> {
    doc.lines().find_map(|l| l.trim_start().strip_prefix("title:").map(unquote))
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| c == '\'' || c == '"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_document_is_named_by_its_line() {
        let text = "title: good\nlogsource: {product: ocsf}\ndetection:\n  s: {a: 1}\n  condition: s\n---\ntitle: bad\nlogsource: {product: ocsf}\ndetection:\n  s: {a: 1}\n";
        let mut r = Read::default();
        r.text(Path::new("x.yml"), text);
        assert_eq!(r.rules.len(), 1);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(r.problems[0].line, Some(7));
        assert_eq!(r.problems[0].rule.as_deref(), Some("bad"));
    }

    #[test]
    fn a_line_yaml_counts_at_a_lone_carriage_return_is_not_given() {
        let mut r = Read::default();
        r.text(Path::new("cr.yml"), "title: x\rdetection: [\r\r\r\r\r\r\r\r\r\r\r");
        assert!(r.problems.iter().all(|p| p.line.is_none_or(|l| l <= 1)), "{:?}", r.problems);
    }

    #[test]
    fn yaml_errors_name_a_line() {
        let mut r = Read::default();
        r.text(Path::new("y.yml"), "title: x\ndetection: [\n");
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].line.is_some(), "{:?}", r.problems);
    }
}
