//! `piiwatch report`: an incident's report (`OUT/report.html`, one
//! self-contained page: inline CSS and SVG, no external resource) and, for
//! each applicable regime, its drafts (`OUT/drafts/REGIME.LANG.md`, and
//! `OUT/drafts/REGIME.json` with every item by id).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use store::Store;

use crate::draft::{self, Draft};
use crate::{Error, Org, Regimes, Shown, esc};

const DAY: i64 = 86_400_000;
/// Days drawn one by one; a longer exposure is drawn by week.
const MAX_BUCKETS: i64 = 120;

/// Subjects exposed in one bucket of time, per field class.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Start, epoch ms.
    pub from: i64,
    /// End, inclusive, epoch ms.
    pub to: i64,
    /// Distinct subjects exposed in the bucket.
    pub subjects: u64,
    /// Per field class.
    pub fields: BTreeMap<String, u64>,
}

/// One source network and what was read from it.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    /// The field (`src_endpoint.autonomous_system.number` or `src_endpoint.ip`).
    pub field: String,
    /// Its value.
    pub value: String,
    /// Accesses from it within the incident's scope.
    pub events: u64,
    /// Distinct subjects.
    pub subjects: u64,
}

/// What `report` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// `OUT/report.html`.
    pub report: PathBuf,
    /// Every draft file.
    pub drafts: Vec<PathBuf>,
    /// Items still to be written, by regime.
    pub missing: BTreeMap<String, Vec<String>>,
    /// Per-person notices (CSV, JSON lines) and how many, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notices: Option<(PathBuf, PathBuf, u64)>,
    /// `OUT/report.pdf`, when asked for ([`crate::pdf`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdf: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Store(store::Error::Io { what: format!("cannot write {}", path.display()), source: e })
}

/// Writes the report and the drafts of incident `id` into `out`.
#[allow(clippy::too_many_arguments)]
pub fn write(
    st: &mut Store,
    id: &str,
    regimes: &Regimes,
    org: &Org,
    now: i64,
    by: &str,
    out: &Path,
    notices: bool,
) -> Result<Written, Error> {
    let shown = crate::show(st, id, regimes, org, now, by)?;
    let drafts_dir = out.join("drafts");
    std::fs::create_dir_all(&drafts_dir).map_err(io(&drafts_dir))?;
    // Exposure per day (or week) and per source: scope's own answers, by time and network.
    let mut buckets = Vec::new();
    let mut sources = Vec::new();
    let mut queries = 0u64;
    let mut by_day = crate::notice::Days { days: Vec::new(), fields: BTreeMap::new(), subjects: Default::default() };
    if let (Some(q), Some(sc)) = (&shown.scope_query, &shown.scope)
        && let (Some(first), Some(last)) = (sc.first_seen_time, sc.last_seen_time)
    {
        let start = first.div_euclid(DAY) * DAY;
        let days = (last.div_euclid(DAY) - first.div_euclid(DAY)) + 1;
        let width = if days > MAX_BUCKETS { 7 * DAY } else { DAY };
        let mut t = start;
        while t <= last {
            let a = crate::answer(st, &q.expr, Some(t.max(q.from)), Some(t + width - 1), &[])?;
            queries += 1;
            let s = a.summary();
            if notices {
                by_day.days.push((t, a.subjects.clone()));
            }
            buckets.push(Bucket { from: t, to: t + width - 1, subjects: s.subjects, fields: s.fields });
            t += width;
        }
        // Sources: one pass over the matching accesses, grouped by country, network and address.
        let whole = crate::answer(
            st,
            &q.expr,
            Some(q.from),
            None,
            &[scope::Field::Country, scope::Field::Asn, scope::Field::SrcIp],
        )?;
        queries += 1;
        for ((field, value), g) in &whole.groups {
            sources.push(Source {
                field: field.clone(),
                value: value.clone(),
                events: g.events,
                subjects: g.subjects.len(),
            });
        }
        sources.sort_by(|a, b| b.subjects.cmp(&a.subjects).then(a.value.cmp(&b.value)));
        if notices {
            by_day.fields = whole.fields;
            by_day.subjects = whole.subjects;
        }
    }
    // One audit record for the report's breakdowns (the incident's own scope was recorded by `show`).
    let mut audit = store::Audit::now(
        "report",
        format!("incident {}: {queries} breakdowns of its scope by time and source", shown.id),
        shown.scope.as_ref().map_or(0, |s| s.events),
        shown.scope.as_ref().map_or(0, |s| s.subjects),
        false,
    );
    audit.user = by.to_owned();
    st.audit(&audit)?;

    // Drafts.
    let source_list: Vec<(String, String, u64)> =
        sources.iter().map(|x| (x.field.clone(), x.value.clone(), x.subjects)).collect();
    let unique = shown
        .scope
        .as_ref()
        .is_some_and(|s| s.fields.iter().any(|(k, n)| *n > 0 && org.unique_identifying.contains(k)));
    let applicable: std::collections::BTreeSet<&str> = shown.clocks.iter().map(|c| c.regime.as_str()).collect();
    let mut written = Written {
        report: out.join("report.html"),
        drafts: Vec::new(),
        missing: BTreeMap::new(),
        notices: None,
        pdf: None,
    };
    let mut all_drafts: Vec<Draft> = Vec::new();
    for r in regimes.regimes.values().filter(|r| applicable.contains(r.id.as_str())) {
        // English first: the JSON draft is the English one, other languages under `translations`.
        let mut langs: Vec<String> = if r.languages.is_empty() { vec!["en".into()] } else { r.languages.clone() };
        langs.sort_by_key(|l| l != "en");
        let mut by_lang = serde_json::Map::new();
        let mut first: Option<Draft> = None;
        for lang in &langs {
            let d = draft::draft(r, &shown, org, lang, unique, &source_list);
            let md = draft::markdown(&d);
            let path = drafts_dir.join(format!("{}.{lang}.md", r.id));
            std::fs::write(&path, md).map_err(io(&path))?;
            written.drafts.push(path);
            if first.is_some() {
                by_lang.insert(lang.clone(), serde_json::to_value(&d.items).unwrap_or_default());
            } else {
                first = Some(d);
            }
        }
        if let Some(d) = first {
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("translations".into(), serde_json::Value::Object(by_lang));
            }
            let path = drafts_dir.join(format!("{}.json", r.id));
            let text = serde_json::to_vec_pretty(&v).map_err(|e| Error::Damaged(e.to_string()))?;
            std::fs::write(&path, text).map_err(io(&path))?;
            written.drafts.push(path);
            written.missing.insert(d.regime.clone(), d.missing.clone());
            all_drafts.push(d);
        }
    }

    if notices {
        let korean = applicable.contains("kr-pipa-notice");
        written.notices = Some(crate::notice::write(st, &shown, org, &by_day, korean, by, out)?);
    }
    // Evidence: the signed checkpoint, verify, the audit trail.
    let checkpoint = store::checkpoint::latest(st.dir())
        .map(|(note, _)| note)
        .unwrap_or_else(|e| format!("(no signed checkpoint: {e})"));
    let verified = match store::verify(st.dir()) {
        Ok((r, events)) if r.problems.is_empty() => {
            format!("intact: {} records in {} segments, {} events", r.records, r.segments, events)
        }
        Ok((r, _)) => format!("DAMAGED: {}", r.problems.join("; ")),
        Err(e) => format!("could not verify: {e}"),
    };
    let mut audits = Vec::new();
    store::audits(st.dir(), |a| audits.push(a))?;
    let fines = fine_estimate(regimes, org, &applicable);
    let html = html(&shown, &buckets, &sources, &all_drafts, &fines, &checkpoint, &verified, &audits, st.dir());
    std::fs::write(&written.report, html).map_err(io(&written.report))?;
    Ok(written)
}

/// One line of the fine estimate: the regime, the ceiling as text, its confidence and caveat.
pub struct FineLine {
    /// The regime.
    pub regime: String,
    /// The ceiling, computed from the profile's revenue where it is a share of it.
    pub ceiling: String,
    /// How sure.
    pub conf: crate::Conf,
    /// When it applies.
    pub note: String,
}

fn money(v: f64, cur: &str) -> String {
    format!("{cur} {}", crate::draft::num(v.round().max(0.0) as u64))
}

/// The ceilings of every applicable regime that has fines, from the profile's revenue.
pub fn fine_estimate(regimes: &Regimes, org: &Org, applicable: &std::collections::BTreeSet<&str>) -> Vec<FineLine> {
    let mut out = Vec::new();
    for r in regimes.regimes.values().filter(|r| applicable.contains(r.id.as_str())) {
        for f in &r.fine {
            let share = |p: f64| org.revenue.as_ref().map(|rev| (rev.amount * p / 100.0, rev.currency.clone()));
            let ceiling = match f.basis.as_str() {
                "percent_of_revenue" => match share(f.percent.unwrap_or(0.0)) {
                    Some((v, c)) => format!("up to {} ({} % of revenue)", money(v, &c), f.percent.unwrap_or(0.0)),
                    None => format!(
                        "up to {} % of total revenue (no revenue in the organisation profile)",
                        f.percent.unwrap_or(0.0)
                    ),
                },
                "fixed" => format!("up to {}", money(f.amount.unwrap_or(0.0), f.currency.as_deref().unwrap_or(""))),
                _ => {
                    let fixed = money(f.amount.unwrap_or(0.0), f.currency.as_deref().unwrap_or(""));
                    match share(f.percent.unwrap_or(0.0)) {
                        Some((v, c)) if Some(c.as_str()) == f.currency.as_deref() => {
                            format!(
                                "up to {} (the higher of {fixed} and {} % of turnover)",
                                money(v.max(f.amount.unwrap_or(0.0)), &c),
                                f.percent.unwrap_or(0.0)
                            )
                        }
                        Some((v, c)) => format!(
                            "up to the higher of {fixed} and {} ({} % of turnover)",
                            money(v, &c),
                            f.percent.unwrap_or(0.0)
                        ),
                        None => format!(
                            "up to the higher of {fixed} and {} % of worldwide turnover",
                            f.percent.unwrap_or(0.0)
                        ),
                    }
                }
            };
            out.push(FineLine {
                regime: r.id.clone(),
                ceiling,
                conf: f.conf,
                note: f.note.clone().unwrap_or_default(),
            });
        }
    }
    out
}

fn t(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map_or_else(|| "-".into(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%m-%d").to_string()).unwrap_or_default()
}

const COLORS: &[&str] =
    &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/// Exposure per bucket per field class: one line per class.
fn exposure_svg(buckets: &[Bucket]) -> String {
    let (w, h, l, b) = (760.0, 260.0, 60.0, 40.0);
    let classes: std::collections::BTreeSet<&String> = buckets.iter().flat_map(|x| x.fields.keys()).collect();
    let max = buckets.iter().map(|x| x.subjects).max().unwrap_or(1).max(1) as f64;
    let n = buckets.len().max(1) as f64;
    let x = |i: usize| l + (w - l - 20.0) * (i as f64 + 0.5) / n;
    let y = |v: u64| h - b - (h - b - 20.0) * v as f64 / max;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"Subjects exposed per day and field class\" viewBox=\"0 0 {w} {}\" width=\"100%\">",
        h + 20.0 * (classes.len() as f64 / 4.0).ceil()
    );
    let _ = write!(s, "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>", h - b, w - 20.0, h - b);
    let _ = write!(s, "<text x=\"{}\" y=\"24\" font-size=\"11\" text-anchor=\"end\">{}</text>", l - 6.0, max as u64);
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">0</text>", l - 6.0, h - b);
    for (i, bk) in buckets.iter().enumerate() {
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#eee\"><title>{}: {} subjects</title></rect>",
            x(i) - (w - l - 20.0) / n * 0.4,
            y(bk.subjects),
            (w - l - 20.0) / n * 0.8,
            h - b - y(bk.subjects),
            day(bk.from),
            bk.subjects
        );
        if buckets.len() <= 31 || i % (buckets.len() / 15).max(1) == 0 {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x(i),
                h - b + 14.0,
                day(bk.from)
            );
        }
    }
    for (c, class) in classes.iter().enumerate() {
        let color = COLORS[c % COLORS.len()];
        let pts: Vec<String> = buckets
            .iter()
            .enumerate()
            .map(|(i, bk)| format!("{:.1},{:.1}", x(i), y(*bk.fields.get(*class).unwrap_or(&0))))
            .collect();
        let _ =
            write!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "));
        for (i, bk) in buckets.iter().enumerate() {
            let v = *bk.fields.get(*class).unwrap_or(&0);
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {} {}</title></circle>",
                x(i),
                y(v),
                day(bk.from),
                v,
                esc(class)
            );
        }
        let (lx, ly) = (l + 170.0 * (c % 4) as f64, h + 4.0 + 20.0 * (c / 4) as f64);
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            ly - 10.0,
            lx + 16.0,
            ly,
            esc(class)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: one per row, `value` of `max`.
fn bars_svg(label: &str, rows: &[(String, u64, String)]) -> String {
    let (w, row) = (760.0, 22.0);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {}\" width=\"100%\">",
        esc(label),
        row * rows.len() as f64 + 10.0
    );
    for (i, (name, v, tip)) in rows.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let len = (w - 260.0) * *v as f64 / max;
        let _ = write!(
            s,
            "<text x=\"170\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"180\" y=\"{y}\" width=\"{len:.1}\" height=\"16\" fill=\"#1f77b4\"><title>{}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v}</text>",
            y + 12.0,
            esc(name),
            esc(tip),
            184.0 + len,
            y + 12.0
        );
    }
    s.push_str("</svg>");
    s
}

/// At most `n` characters of `t`, an ellipsis marking a cut.
fn short(t: &str, n: usize) -> String {
    if t.chars().count() <= n { t.to_owned() } else { format!("{}…", t.chars().take(n - 1).collect::<String>()) }
}

/// A time axis from `a` to `b` with spans and marks on rows; spans with
/// the same name share a row.
fn timeline_svg(label: &str, rows: &[(String, i64, i64, &str, String)], a: i64, b: i64, now: Option<i64>) -> String {
    let (w, row, l) = (760.0, 22.0, 230.0);
    let span = (b - a).max(1) as f64;
    let x = |v: i64| l + (w - l - 20.0) * (v - a) as f64 / span;
    let mut names: Vec<&str> = Vec::new();
    for (name, ..) in rows {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {}\" width=\"100%\">",
        esc(label),
        row * names.len() as f64 + 30.0
    );
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            l - 6.0,
            4.0 + row * i as f64 + 12.0,
            esc(name)
        );
    }
    for (name, from, to, color, tip) in rows {
        let i = names.iter().position(|n| n == name).unwrap_or(0);
        let y = 4.0 + row * i as f64;
        let (x1, x2) = (x(*from), x(*to).max(x(*from) + 3.0));
        let _ = write!(
            s,
            "<rect x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"16\" fill=\"{color}\"><title>{}</title></rect>",
            x2 - x1,
            esc(tip)
        );
    }
    let yb = row * names.len() as f64 + 18.0;
    if let Some(n) = now.filter(|n| (a..=b).contains(n)) {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/><text x=\"{0:.1}\" y=\"{2}\" font-size=\"10\" text-anchor=\"middle\">now</text>",
            x(n),
            yb - 12.0,
            yb
        );
    }
    let _ = write!(
        s,
        "<text x=\"{l}\" y=\"{yb}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{yb}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        t(Some(a)),
        w - 20.0,
        t(Some(b))
    );
    s.push_str("</svg>");
    s
}

#[allow(clippy::too_many_arguments)]
fn html(
    s: &Shown,
    buckets: &[Bucket],
    sources: &[Source],
    drafts: &[Draft],
    fines: &[FineLine],
    checkpoint: &str,
    verified: &str,
    audits: &[store::Audit],
    dir: &Path,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — {}</title><style>{}</style></head><body>",
        esc(&s.id),
        esc(&s.title),
        CSS
    );
    let _ = write!(h, "<h1>{}: {}</h1>", esc(&s.id), esc(&s.title));
    // The minute a board member has.
    let sc = s.scope.as_ref();
    let missed = s.clocks.iter().filter(|c| c.status == crate::Status::Missed).count();
    let open: Vec<&crate::Clock> =
        s.clocks.iter().filter(|c| c.status == crate::Status::Open && c.due_time.is_some()).collect();
    let next = open.iter().min_by_key(|c| c.due_time);
    let _ = write!(h, "<section class=\"summary\"><h2>Summary</h2><ul>");
    match sc {
        Some(sc) => {
            let classes: Vec<String> =
                sc.fields.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{} ({})", esc(k), n)).collect();
            let kinds: Vec<String> = sc.subjects_by_type.iter().map(|(k, n)| format!("{n} {}", esc(k))).collect();
            let _ = write!(
                h,
                "<li><b>{} people</b> had personal data read ({}), in {} accesses, from {} to {}.</li><li>Data exposed: {}.</li>",
                sc.subjects,
                kinds.join(", "),
                sc.events,
                t(sc.first_seen_time),
                t(sc.last_seen_time),
                classes.join(", ")
            );
        }
        None => {
            h.push_str("<li>Exposure not known: no linked finding names an indicator the store can select by.</li>")
        }
    }
    let how: Vec<String> = crate::draft::detected(s, false).iter().map(|t| esc(t)).collect();
    let _ = write!(h, "<li>How: {}.</li>", how.join("; "));
    let _ = write!(
        h,
        "<li>State: <b>{}</b>. Aware: {}. {} deadline(s) missed; next due: {}.</li></ul></section>",
        s.state,
        t(s.aware_time),
        missed,
        next.map_or_else(
            || "none open".to_owned(),
            |c| format!("{} to {} at {}", esc(&c.regime), esc(&c.recipient), t(c.due_time))
        )
    );
    // Charts.
    if !buckets.is_empty() {
        let _ = write!(
            h,
            "<section><h2>Exposure per {} and field class</h2>{}<p class=\"note\">Distinct subjects exposed in each period (grey: all classes), from the same scope as every number here.</p></section>",
            if buckets.first().is_some_and(|b| b.to - b.from > DAY) { "week" } else { "day" },
            exposure_svg(buckets)
        );
    }
    if !s.findings.is_empty() {
        let a = s.findings.iter().map(|f| f.first_seen_time).min().unwrap_or(0);
        let b = s.findings.iter().map(|f| f.last_seen_time).max().unwrap_or(a + 1);
        // A Sigma rule's findings (its title is its analytic) share one row.
        let per_rule =
            |analytic: &str| s.findings.iter().filter(|g| g.title == g.analytic && g.analytic == analytic).count();
        let rows: Vec<(String, i64, i64, &str, String)> = s
            .findings
            .iter()
            .map(|f| {
                let name = if f.title == f.analytic {
                    format!("{} ({})", short(&f.analytic, 30), per_rule(&f.analytic))
                } else {
                    format!("{} {}", f.analytic, &f.uid[f.uid.len().saturating_sub(6)..])
                };
                let color = if f.posture {
                    "#999"
                } else if f.severity_id >= 4 {
                    "#d62728"
                } else {
                    "#ff7f0e"
                };
                (
                    name,
                    f.first_seen_time,
                    f.last_seen_time,
                    color,
                    format!("{} ({} to {})", f.title, t(Some(f.first_seen_time)), t(Some(f.last_seen_time))),
                )
            })
            .collect();
        let _ = write!(
            h,
            "<section><h2>Findings over time</h2>{}<p class=\"note\">Red: high or critical; orange: lower; grey: standing weaknesses (posture).</p></section>",
            timeline_svg("Findings over time", &rows, a, b, None)
        );
    }
    if !sources.is_empty() {
        h.push_str("<section><h2>Sources by country and network</h2>");
        for (field, title, n) in [
            ("src_endpoint.location.country", "Country", 12),
            ("src_endpoint.autonomous_system.number", "Network (autonomous system)", 12),
            ("src_endpoint.ip", "Address", 15),
        ] {
            let rows: Vec<(String, u64, String)> = sources
                .iter()
                .filter(|x| x.field == field)
                .take(n)
                .map(|x| {
                    let v = if x.value.is_empty() {
                        "(unknown)".to_owned()
                    } else if field.ends_with("number") {
                        format!("AS{}", x.value)
                    } else {
                        x.value.clone()
                    };
                    (v, x.subjects, format!("{} subjects in {} accesses", x.subjects, x.events))
                })
                .collect();
            if !rows.is_empty() {
                let _ = write!(h, "<h3>{title}</h3>{}", bars_svg(title, &rows));
            }
        }
        h.push_str("<p class=\"note\">Subjects reached from each source within the incident's scope (one pass over its accesses; the same query with <code>--group-by</code>).</p></section>");
    }
    let dues: Vec<i64> =
        s.clocks.iter().filter_map(|c| c.due_time).chain(s.clocks.iter().filter_map(|c| c.sent_time)).collect();
    if let (Some(a), Some(b)) = (s.aware_time.or(dues.iter().min().copied()), dues.iter().max()) {
        let rows: Vec<(String, i64, i64, &str, String)> = s
            .clocks
            .iter()
            .filter_map(|c| {
                let due = c.due_time?;
                let color = match c.status {
                    crate::Status::Met => "#2ca02c",
                    crate::Status::Missed => "#d62728",
                    crate::Status::Open => "#1f77b4",
                };
                Some((
                    format!("{} {}", c.regime, c.clock),
                    c.trigger_time.unwrap_or(a),
                    due,
                    color,
                    format!(
                        "{} to {}: due {}, {:?}{}",
                        c.regime,
                        c.recipient,
                        t(Some(due)),
                        c.status,
                        c.sent_time.map(|x| format!(", sent {}", t(Some(x)))).unwrap_or_default()
                    ),
                ))
            })
            .collect();
        let _ = write!(
            h,
            "<section><h2>Deadlines</h2>{}<p class=\"note\">Each bar runs from the clock's trigger to its deadline. Green: met; red: missed; blue: open.</p>",
            timeline_svg("Deadline clocks", &rows, a, (*b).max(a + 1).max(s.now), Some(s.now))
        );
    } else {
        h.push_str("<section><h2>Deadlines</h2>");
    }
    h.push_str("<table><tr><th>regime</th><th>recipient</th><th>due</th><th>status</th><th>sent</th><th>still missing</th><th>rule</th></tr>");
    for c in &s.clocks {
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td>{}</td><td>{}{}</td><td class=\"{:?}\">{:?}</td><td>{}</td><td>{}</td><td>{} ({:?}, from {})</td></tr>",
            esc(&c.regime),
            if c.applies == "unknown" { " (applies?)" } else { "" },
            esc(&c.recipient),
            t(c.due_time),
            if c.legal_deadline { "" } else { " (internal target)" },
            c.status,
            c.status,
            t(c.sent_time),
            esc(&c.missing.join("; ")),
            esc(&c.law),
            c.conf,
            esc(&c.rules_from)
        );
    }
    h.push_str("</table>");
    for n in &s.not_applicable {
        let _ = write!(
            h,
            "<p class=\"note\">Not applicable: {}{}: {}</p>",
            esc(&n.regime),
            n.clock.as_ref().map(|c| format!(" / {}", esc(c))).unwrap_or_default(),
            esc(&n.why)
        );
    }
    h.push_str("</section>");
    // Scope table.
    if let Some(sc) = sc {
        h.push_str("<section><h2>Scope</h2><table><tr><th>field class</th><th>subjects</th></tr>");
        for (k, n) in &sc.fields {
            let _ = write!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(k));
        }
        h.push_str("</table><table><tr><th>subject type</th><th>subjects</th></tr>");
        for (k, n) in &sc.subjects_by_type {
            let _ = write!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(k));
        }
        let _ = write!(h, "<tr><td><b>all</b></td><td class=\"n\"><b>{}</b></td></tr></table>", sc.subjects);
        if !buckets.is_empty() {
            h.push_str("<table><tr><th>period</th><th>subjects</th><th>per field class</th></tr>");
            for b in buckets {
                let f: Vec<String> = b.fields.iter().map(|(k, n)| format!("{} {n}", esc(k))).collect();
                let _ = write!(
                    h,
                    "<tr><td>{} to {}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    t(Some(b.from)),
                    t(Some(b.to)),
                    b.subjects,
                    f.join(", ")
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>");
    }
    // Drafts' state.
    h.push_str("<section><h2>Drafts</h2><ul>");
    for d in drafts {
        let _ = write!(
            h,
            "<li><b>{}</b> ({}): drafts/{}.*.md and drafts/{}.json; {}</li>",
            esc(&d.regime),
            esc(&d.title),
            esc(&d.regime),
            esc(&d.regime),
            if d.missing.is_empty() {
                "every item filled".to_owned()
            } else {
                format!("still to write: {}", esc(&d.missing.join(", ")))
            }
        );
    }
    h.push_str("</ul></section>");
    // The fine estimate.
    if !fines.is_empty() {
        h.push_str("<section><h2>Fine estimate</h2><p class=\"note\"><b>An estimate of the legal ceilings, not a prediction and not legal advice.</b> Ceilings in the law as the research summary reads it; what a regulator imposes depends on facts this report does not weigh.</p><table><tr><th>regime</th><th>ceiling</th><th>confidence</th><th>when</th></tr>");
        for f in fines {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td></tr>",
                esc(&f.regime),
                esc(&f.ceiling),
                f.conf,
                esc(&f.note)
            );
        }
        h.push_str("</table></section>");
    }
    // Evidence appendix.
    let _ = write!(
        h,
        "<section class=\"appendix\"><h2>Evidence</h2><h3>Signed checkpoint of the store</h3><pre>{}</pre><p>Check it with <code>piiwatch proof check --key store.pub --checkpoint checkpoint.txt</code> (the key: <code>piiwatch proof checkpoint --store {} --key</code>).</p><h3>Verify</h3><p><code>piiwatch verify --store {}</code>: {}</p>",
        esc(checkpoint),
        esc(&dir.display().to_string()),
        esc(&dir.display().to_string()),
        esc(verified)
    );
    h.push_str("<h3>The commands behind every number</h3><pre>");
    if let Some(cmd) = &s.scope_command {
        let _ = writeln!(h, "{}", esc(cmd));
    }
    if let Some(q) = &s.scope_query {
        let _ = writeln!(
            h,
            "piiwatch scope --store {} --where '{}' --from {} --group-by src_endpoint.location.country --group-by src_endpoint.autonomous_system.number --group-by src_endpoint.ip --format json",
            esc(&dir.display().to_string()),
            esc(&q.expr.replace('\'', "'\\''")),
            q.from
        );
        for b in buckets {
            let _ = writeln!(
                h,
                "piiwatch scope --store {} --where '{}' --from {} --to {} --format json",
                esc(&dir.display().to_string()),
                esc(&q.expr.replace('\'', "'\\''")),
                b.from.max(q.from),
                b.to
            );
        }
    }
    let _ = writeln!(
        h,
        "piiwatch incident show --store {} {} --now {} --format json",
        esc(&dir.display().to_string()),
        esc(&s.id),
        s.now
    );
    h.push_str("</pre><h3>Audit trail of the store's queries</h3><table><tr><th>when</th><th>who</th><th>command</th><th>query</th><th>events</th><th>subjects</th><th>re-identified</th></tr>");
    for a in audits {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"q\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            t(Some(a.at)),
            esc(&a.user),
            esc(&a.command),
            esc(&a.query),
            a.events,
            a.subjects,
            if a.reidentified { "yes" } else { "no" }
        );
    }
    h.push_str("</table><h3>History of the incident</h3><table><tr><th>when</th><th>who</th><th>change</th></tr>");
    for r in &s.history {
        let what = serde_json::to_string(&r.change).unwrap_or_default();
        let _ =
            write!(h, "<tr><td>{}</td><td>{}</td><td class=\"q\">{}</td></tr>", t(Some(r.at)), esc(&r.by), esc(&what));
    }
    let _ = writeln!(
        h,
        "</table></section><footer>piiwatch {} — report written {}</footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        t(Some(s.now))
    );
    h
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}\
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}\
.summary{background:#f6f8fa;border:1px solid #ddd;padding:.2rem 1rem;border-radius:6px}\
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}td.q{font-family:monospace;font-size:.75rem;word-break:break-all}\
.Missed{color:#b00;font-weight:bold}.Met{color:#070}.Open{color:#036}\
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.75rem;white-space:pre-wrap;word-break:break-all}.note{color:#555;font-size:.85rem}\
footer{margin-top:3rem;color:#777;font-size:.8rem}\
@media print{body{max-width:none;margin:0}h2,h3{break-after:avoid}svg,tr,li{break-inside:avoid}.appendix{break-before:page}a{color:#000}}";
