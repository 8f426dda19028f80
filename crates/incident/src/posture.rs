//! The posture audit (`piiwatch audit`): the standing risks that made 2025
//! possible, each with its evidence from the store and the directory and
//! what to do about it. Signing keys never rotated or older than policy,
//! keys whose custodian left, offboarded principals still active, staff and
//! services reading beyond their usual volume or purpose, log sources that
//! went silent.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use model::Directory;
use serde::Serialize;
use store::Store;

use crate::group::Finding;
use crate::{Error, date, esc};

const DAY: i64 = 86_400_000;

/// One standing risk.
#[derive(Clone, Debug, Serialize)]
pub struct Risk {
    /// `key_not_rotated`, `key_custodian_left`, `offboarded_still_active`,
    /// `reading_beyond_usual`, `source_silent`.
    pub kind: &'static str,
    /// What it is about (a key, a principal, an input).
    pub subject: String,
    /// 1 informational … 5 critical.
    pub severity: u8,
    /// What shows it.
    pub evidence: Vec<String>,
    /// What to do.
    pub action: String,
    /// Stored findings that show it.
    pub findings: Vec<String>,
    /// Accesses and subjects the store holds for it, where a scope measures it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<scope::Summary>,
    /// The scope that measures it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

fn reach(st: &Store, expr: &str, from: Option<i64>) -> Result<(scope::Summary, String), Error> {
    let a = crate::answer(st, expr, from, None, &[])?;
    let cmd = format!(
        "piiwatch scope --store {} --where '{}'{} --format json",
        st.dir().display(),
        expr.replace('\'', "'\\''"),
        from.map(|f| format!(" --from {f}")).unwrap_or_default()
    );
    Ok((a.summary(), cmd))
}

/// The standing risks as of `now`, with keys older than `max_key_age_days` against policy.
pub fn risks(
    st: &mut Store,
    directory: Option<&Directory>,
    max_key_age_days: i64,
    now: i64,
    by: &str,
) -> Result<Vec<Risk>, Error> {
    let findings = crate::group::findings(st.dir())?;
    let mut out = Vec::new();
    let mut queries = 0u64;
    let by_detector = |name: &str| -> Vec<&Finding> { findings.iter().filter(|f| f.analytic == name).collect() };
    let names = |f: &Finding, field: &str| -> Vec<String> {
        f.observables.iter().filter(|(n, _)| n == field).map(|(_, v)| v.clone()).collect()
    };
    if let Some(dir) = directory {
        let left =
            |uid: &str| dir.principals.iter().find(|p| p.uid == uid).and_then(|p| p.left).map(|t| t.as_millisecond());
        for k in dir.keys.iter().filter(|k| k.retired.is_none_or(|r| r.as_millisecond() > now)) {
            let key_findings: Vec<String> = by_detector("key-hygiene")
                .into_iter()
                .filter(|f| names(f, "actor.session.issuer").contains(&k.id))
                .map(|f| f.uid.clone())
                .collect();
            let expr = format!("actor.session.issuer = {:?}", k.id);
            if let Some(created) = k.created.map(|t| t.as_millisecond()) {
                let age = (now - created) / DAY;
                if age > max_key_age_days {
                    let (summary, command) = reach(st, &expr, None)?;
                    queries += 1;
                    out.push(Risk {
                        kind: "key_not_rotated",
                        subject: k.id.clone(),
                        severity: if summary.events > 0 { 3 } else { 2 },
                        evidence: vec![
                            format!("created {}, {age} days ago (policy: {max_key_age_days} days), never retired", date(created)),
                            format!("{} accesses signed with it in the store, reaching {} subjects", summary.events, summary.subjects),
                        ],
                        action: format!("Rotate {}: issue tokens with a new key, then retire it in the directory and refuse its tokens at the gateway.", k.id),
                        findings: key_findings.clone(),
                        reach: Some(summary),
                        command: Some(command),
                    });
                }
            }
            for c in &k.custodians {
                let Some(gone) = left(c).filter(|&l| l <= now) else { continue };
                let (summary, command) = reach(st, &expr, Some(gone))?;
                queries += 1;
                out.push(Risk {
                    kind: "key_custodian_left",
                    subject: k.id.clone(),
                    severity: 5,
                    evidence: vec![
                        format!("custodian {c} left on {}; the key is still in use", date(gone)),
                        format!("since then, {} accesses signed with it, reaching {} subjects", summary.events, summary.subjects),
                    ],
                    action: format!("Rotate {} now: a person who left may hold a copy and can forge tokens. Review every use since {} (piiwatch scope with the command below).", k.id, date(gone)),
                    findings: key_findings.clone(),
                    reach: Some(summary),
                    command: Some(command),
                });
            }
        }
        for p in &dir.principals {
            let Some(gone) = p.left.map(|t| t.as_millisecond()).filter(|&l| l <= now) else { continue };
            let expr = format!("actor.user.uid = {:?}", p.uid);
            let (summary, command) = reach(st, &expr, Some(gone))?;
            queries += 1;
            if summary.events == 0 {
                continue;
            }
            let related: Vec<String> = by_detector("departed-principal")
                .into_iter()
                .filter(|f| names(f, "actor.user.uid").contains(&p.uid))
                .map(|f| f.uid.clone())
                .collect();
            out.push(Risk {
                kind: "offboarded_still_active",
                subject: p.uid.clone(),
                severity: 4,
                evidence: vec![
                    format!("left on {}", date(gone)),
                    format!(
                        "since then, {} accesses as this principal, reaching {} subjects (last {})",
                        summary.events,
                        summary.subjects,
                        summary.last_seen_time.map(date).unwrap_or_default()
                    ),
                ],
                action: format!(
                    "Disable {} everywhere (identity provider, API keys, sessions) and review what was read after {}.",
                    p.uid,
                    date(gone)
                ),
                findings: related,
                reach: Some(summary),
                command: Some(command),
            });
        }
    }
    // Without a directory, the key findings stand in for the checks above.
    if directory.is_none() {
        for f in by_detector("key-hygiene").into_iter().filter(|f| f.posture) {
            out.push(Risk {
                kind: if f.title.contains("left") { "key_custodian_left" } else { "key_not_rotated" },
                subject: names(f, "actor.session.issuer").join(", "),
                severity: u8::try_from(f.severity_id.clamp(1, 5)).unwrap_or(3),
                evidence: vec![f.title.clone()],
                action: "Rotate the key and retire it in the directory; give the directory (--directory) for the full check.".into(),
                findings: vec![f.uid.clone()],
                reach: None,
                command: None,
            });
        }
    }
    for name in ["staff-pattern", "fan-out", "sensitive-fields"] {
        for f in by_detector(name) {
            let who: BTreeSet<String> = ["actor.user.uid", "src_endpoint.ip", "actor.session.issuer"]
                .iter()
                .flat_map(|field| names(f, field))
                .collect();
            out.push(Risk {
                kind: "reading_beyond_usual",
                subject: who.into_iter().collect::<Vec<_>>().join(", "),
                severity: u8::try_from(f.severity_id.clamp(1, 5)).unwrap_or(3),
                evidence: vec![format!("{} ({}, {} to {})", f.title, f.analytic, date(f.first_seen_time), date(f.last_seen_time))],
                action: "Confirm the purpose with the owner of the account or service; narrow its role to what the purpose needs, or open an incident (piiwatch incident open --from-alert UID).".into(),
                findings: vec![f.uid.clone()],
                reach: None,
                command: None,
            });
        }
    }
    for f in by_detector("silence") {
        out.push(Risk {
            kind: "source_silent",
            subject: f.title.clone(),
            severity: u8::try_from(f.severity_id.clamp(1, 5)).unwrap_or(3),
            evidence: vec![format!("{} (since {})", f.title, date(f.first_seen_time))],
            action: "Restore the log shipping, and find out whether logs were stopped or deleted on purpose: a silent source hides access.".into(),
            findings: vec![f.uid.clone()],
            reach: None,
            command: None,
        });
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(b.kind)).then(a.subject.cmp(&b.subject)));
    let mut audit = store::Audit::now(
        "audit (posture)",
        format!("{queries} scopes of keys and offboarded principals; {} risks", out.len()),
        0,
        0,
        false,
    );
    audit.user = by.to_owned();
    st.audit(&audit)?;
    Ok(out)
}

/// The risks as a self-contained page.
pub fn html(risks: &[Risk], store: &Path, now: i64) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Posture audit</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}.s5,.s4{{color:#b00;font-weight:bold}}code{{font-size:.75rem;word-break:break-all}}@media print{{body{{max-width:none;margin:0}}tr{{break-inside:avoid}}}}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>Posture audit of {}</h1><p>{} standing risks as of {}, most severe first. Each names its evidence and what to do.</p>",
        esc(&store.display().to_string()),
        risks.len(),
        date(now)
    );
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in risks {
        *counts.entry(r.kind).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(1).max(1) as f64;
    let _ = write!(
        h,
        "<svg role=\"img\" aria-label=\"Risks by kind\" viewBox=\"0 0 700 {}\" width=\"100%\">",
        24 * counts.len() + 8
    );
    for (i, (k, n)) in counts.iter().enumerate() {
        let y = 4 + 24 * i;
        let _ = write!(
            h,
            "<text x=\"200\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{k}</text><rect x=\"210\" y=\"{y}\" width=\"{:.0}\" height=\"16\" fill=\"#d62728\"/><text x=\"{:.0}\" y=\"{}\" font-size=\"12\">{n}</text>",
            y + 12,
            440.0 * *n as f64 / max,
            216.0 + 440.0 * *n as f64 / max,
            y + 12
        );
    }
    h.push_str(
        "</svg><table><tr><th>severity</th><th>risk</th><th>about</th><th>evidence</th><th>what to do</th></tr>",
    );
    for r in risks {
        let mut ev = r.evidence.iter().map(|e| esc(e)).collect::<Vec<_>>().join("<br>");
        if let Some(c) = &r.command {
            let _ = write!(ev, "<br><code>{}</code>", esc(c));
        }
        if !r.findings.is_empty() {
            let _ = write!(ev, "<br>findings: {}", esc(&r.findings.join(", ")));
        }
        let _ = write!(
            h,
            "<tr><td class=\"s{}\">{}</td><td>{}</td><td>{}</td><td>{ev}</td><td>{}</td></tr>",
            r.severity,
            r.severity,
            r.kind,
            esc(&r.subject),
            esc(&r.action)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
