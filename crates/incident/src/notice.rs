//! Per-person notices: for each exposed subject, the field classes exposed
//! (entrance codes included), the first and last day of exposure, and the
//! notice text, as CSV and JSON lines for mail merge. Real ids come only
//! through the audited re-identification path: the store's encrypted
//! subject map, files of mode 0600, a record in the audit chain.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use serde::Serialize;
use store::Store;

use crate::{Error, Org, Shown, date};

/// One person's notice.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// The subject's id, as it appeared in the input.
    pub subject: String,
    /// Field classes exposed.
    pub fields: Vec<String>,
    /// First day of exposure (UTC date).
    pub first_exposure: String,
    /// Last day of exposure (UTC date).
    pub last_exposure: String,
    /// The notice in English.
    pub notice_en: String,
    /// The notice in Korean, when a Korean regime applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_ko: Option<String>,
}

/// The incident's answer by day, for per-subject first and last exposure.
pub struct Days {
    /// (day start, subjects exposed that day), in order.
    pub days: Vec<(i64, RoaringBitmap)>,
    /// The whole answer: subjects per field class.
    pub fields: BTreeMap<String, RoaringBitmap>,
    /// Every subject.
    pub subjects: RoaringBitmap,
}

/// How the data was read, from the linked findings' detectors.
fn how(s: &Shown, ko: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for f in s.findings.iter().filter(|f| !f.posture) {
        let h = match (f.analytic.as_str(), ko) {
            ("forged-token", false) => "with access tokens that were never issued (forged)",
            ("forged-token", true) => "발급되지 않은(위조된) 접근 토큰을 이용한 조회",
            ("account-takeover", false) => "through accounts taken over by someone else",
            ("account-takeover", true) => "탈취된 계정을 이용한 조회",
            ("departed-principal", false) => "by a person whose access had ended",
            ("departed-principal", true) => "퇴사 등으로 권한이 끝난 사람의 조회",
            ("foreign-access", false) => "from networks abroad not seen before",
            ("foreign-access", true) => "이전에 없던 해외 네트워크에서의 조회",
            (_, false) => "by unusual bulk reads",
            (_, true) => "비정상적인 대량 조회",
        };
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out.join(if ko { ", " } else { "; " })
}

fn text_en(n: &Notice, s: &Shown, org: &Org) -> String {
    let who = org.name.clone().unwrap_or_else(|| "We".into());
    let what = s.filled.get("measures_taken").map_or_else(|| "[measures taken]".to_owned(), |e| e.text.clone());
    let you = s.filled.get("measures_for_subjects").map_or_else(|| "[what you can do]".to_owned(), |e| e.text.clone());
    let contact = org
        .contact_point
        .clone()
        .or_else(|| s.filled.get("contact_point").map(|e| e.text.clone()))
        .unwrap_or_else(|| "[contact point]".into());
    format!(
        "Notice of Data Breach. What Happened: {who} found that your personal information was read without authorisation between {} and {}, {}. What Information Was Involved: {}. What We Are Doing: {what} What You Can Do: {you} For More Information: {contact}",
        n.first_exposure,
        n.last_exposure,
        how(s, false),
        n.fields.iter().map(|f| f.replace('_', " ")).collect::<Vec<_>>().join(", ")
    )
}

fn text_ko(n: &Notice, s: &Shown, org: &Org) -> String {
    let who = org.name.clone().unwrap_or_else(|| "당사".into());
    let what = s.filled.get("measures_taken").map_or_else(|| "[조치 사항]".to_owned(), |e| e.text.clone());
    let you = s
        .filled
        .get("measures_for_subjects")
        .map_or_else(|| "[정보주체가 할 수 있는 방법]".to_owned(), |e| e.text.clone());
    let remedy = s.filled.get("remedy_procedure").map_or_else(|| "[피해 구제 절차]".to_owned(), |e| e.text.clone());
    let rights =
        s.filled.get("legal_rights_and_remedies").map_or_else(|| "[권리 및 구제 방법]".to_owned(), |e| e.text.clone());
    let contact = org
        .contact_point
        .clone()
        .or_else(|| s.filled.get("contact_point").map(|e| e.text.clone()))
        .unwrap_or_else(|| "[연락처]".into());
    format!(
        "개인정보 유출 통지. {who}는 {}부터 {}까지 귀하의 개인정보가 권한 없이 조회된 사실을 확인하였습니다. 유출된 항목: {}. 유출 경위: {}. 조치 사항: {what} 피해 최소화 방법: {you} 피해 구제 절차: {remedy} 권리 및 구제 방법: {rights} 문의: {contact}",
        n.first_exposure,
        n.last_exposure,
        n.fields.iter().map(|f| crate::draft::class_ko(f)).collect::<Vec<_>>().join(", "),
        how(s, true)
    )
}

fn csv(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_owned() }
}

fn private(path: &Path) -> Result<std::fs::File, Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .map_err(|e| Error::Store(store::Error::Io { what: format!("cannot write {}", path.display()), source: e }))
}

/// Writes `OUT/notices.csv` and `OUT/notices.jsonl` (mode 0600) and records
/// the re-identification in the audit chain as `by`.
pub fn write(
    st: &mut Store,
    s: &Shown,
    org: &Org,
    days: &Days,
    korean: bool,
    by: &str,
    out: &Path,
) -> Result<(PathBuf, PathBuf, u64), Error> {
    let map = store::subjects::read_map(st.dir(), st.secret())?;
    let mut rows = Vec::new();
    for dense in &days.subjects {
        let id = st.pseudonym(dense).and_then(|p| map.get(&p).cloned()).ok_or_else(|| {
            Error::Damaged("an exposed subject has no entry in the subject map: it was altered or lost".into())
        })?;
        let fields: Vec<String> =
            days.fields.iter().filter(|(_, b)| b.contains(dense)).map(|(k, _)| k.clone()).collect();
        let first = days.days.iter().find(|(_, b)| b.contains(dense)).map_or(0, |d| d.0);
        let last = days.days.iter().rev().find(|(_, b)| b.contains(dense)).map_or(0, |d| d.0);
        let mut n = Notice {
            subject: id,
            fields,
            first_exposure: date(first),
            last_exposure: date(last),
            notice_en: String::new(),
            notice_ko: None,
        };
        n.notice_en = text_en(&n, s, org);
        if korean {
            n.notice_ko = Some(text_ko(&n, s, org));
        }
        rows.push(n);
    }
    rows.sort_by(|a, b| a.subject.cmp(&b.subject));
    let (csv_path, json_path) = (out.join("notices.csv"), out.join("notices.jsonl"));
    let werr = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| {
            Error::Store(store::Error::Io { what: format!("cannot write {}", p.display()), source: e })
        }
    };
    let mut c = std::io::BufWriter::new(private(&csv_path)?);
    writeln!(c, "subject,fields,first_exposure,last_exposure,notice_en{}", if korean { ",notice_ko" } else { "" })
        .map_err(werr(&csv_path))?;
    let mut j = std::io::BufWriter::new(private(&json_path)?);
    for n in &rows {
        let ko = n.notice_ko.as_deref().map(|k| format!(",{}", csv(k))).unwrap_or_default();
        writeln!(
            c,
            "{},{},{},{},{}{ko}",
            csv(&n.subject),
            csv(&n.fields.join(";")),
            n.first_exposure,
            n.last_exposure,
            csv(&n.notice_en)
        )
        .map_err(werr(&csv_path))?;
        writeln!(j, "{}", serde_json::to_string(n).unwrap_or_default()).map_err(werr(&json_path))?;
    }
    c.into_inner().map_err(|e| werr(&csv_path)(e.into_error()))?.sync_all().map_err(werr(&csv_path))?;
    j.into_inner().map_err(|e| werr(&json_path)(e.into_error()))?.sync_all().map_err(werr(&json_path))?;
    let mut audit = store::Audit::now(
        "report (notices)",
        format!("incident {}: per-person notices of its scope ({})", s.id, s.scope_command.as_deref().unwrap_or("-")),
        s.scope.as_ref().map_or(0, |x| x.events),
        rows.len() as u64,
        true,
    );
    audit.user = by.to_owned();
    st.audit(&audit)?;
    Ok((csv_path, json_path, rows.len() as u64))
}
