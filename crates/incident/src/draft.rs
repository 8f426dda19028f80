//! Drafts: for each applicable regime, every item it requires, by item id,
//! filled from the store where the store knows it (counts from the
//! incident's one scope, field classes, times, how the access happened as
//! the findings describe it), from the organisation profile and from what
//! people wrote (`incident fill`), and otherwise left as a marked blank.
//! Korean and English for the Korean regimes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::regime::{Conf, Regime};
use crate::{Org, Shown};

/// Where an item's text came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Drafted from the store and the findings (a person reviews it).
    Store,
    /// The organisation profile.
    Org,
    /// Written by a person (`incident fill`).
    Person,
    /// Not needed in this case (a conditional item whose condition does not hold).
    NotApplicable,
    /// Still to be written.
    Missing,
}

/// One item of a draft.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// The item id (regimes.md's vocabulary).
    pub id: String,
    /// Its name in the draft's language.
    pub label: String,
    /// The text (empty when missing).
    pub value: String,
    /// Where it came from.
    pub source: Source,
    /// How sure it is that the regime requires it.
    pub conf: Conf,
    /// A caveat from the regime file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A draft for one regime in one language.
#[derive(Clone, Debug, Serialize)]
pub struct Draft {
    /// The regime id.
    pub regime: String,
    /// Its title.
    pub title: String,
    /// The articles.
    pub law: String,
    /// `en` or `ko`.
    pub language: String,
    /// The rules' version.
    pub rules_from: String,
    /// The incident.
    pub incident: String,
    /// Every item, by id.
    pub items: BTreeMap<String, Item>,
    /// Item ids still to be written.
    pub missing: Vec<String>,
    /// The clocks of this regime.
    pub clocks: Vec<crate::Clock>,
    /// The numbers, exactly as `scope` answers the query below.
    pub scope: Option<scope::Summary>,
    /// The command that reproduces them.
    pub scope_command: Option<String>,
    /// Supplementary reports: one per fact confirmed after the first report.
    pub follow_ups: Vec<FollowUp>,
    /// The items in the regime's order.
    #[serde(skip)]
    pub order: Vec<String>,
}

/// A phased follow-up (the Network Act's supplementary report, GDPR Art. 33(4)).
#[derive(Clone, Debug, Serialize)]
pub struct FollowUp {
    /// When the fact was confirmed, epoch ms.
    pub confirmed_time: Option<i64>,
    /// The fact.
    pub text: String,
    /// When the follow-up is due, if the regime sets a deadline.
    pub due_time: Option<i64>,
}

fn ko(id: &str) -> &str {
    match id {
        "nature_of_breach" => "유출 사고의 성격",
        "categories_of_data" => "유출된 개인정보 항목",
        "categories_of_subjects" => "정보주체의 유형",
        "approx_number_of_subjects" => "정보주체 수",
        "categories_of_records" => "기록의 유형",
        "approx_number_of_records" => "기록 수",
        "time_of_breach" => "유출 시점",
        "how_breach_occurred" => "유출 경위",
        "likely_consequences" => "예상되는 결과",
        "measures_taken" => "조치 사항",
        "measures_proposed" => "예정된 조치",
        "mitigation_measures" => "피해 완화 조치",
        "measures_for_subjects" => "정보주체가 피해를 최소화하기 위해 할 수 있는 방법",
        "remedy_procedure" => "피해 구제 절차",
        "legal_rights_and_remedies" => "정보주체의 권리 및 구제 방법 (손해배상 청구, 분쟁조정 신청)",
        "contact_point" => "피해 신고·상담 부서 및 연락처",
        "incident_cause" => "사고 원인",
        "damage_details" => "피해 내용",
        "response_status" => "대응 현황",
        "followup_commitment" => "추가 통지 예정 안내",
        _ => id,
    }
}

fn en(id: &str) -> String {
    let s = id.replace('_', " ");
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// A field class's name in Korean.
pub fn class_ko(c: &str) -> &str {
    match c {
        "name" => "이름",
        "phone" => "전화번호",
        "address" => "주소",
        "email" => "이메일",
        "entrance_code" => "공동현관 출입번호",
        "order_history" => "주문 내역",
        "payment" => "결제 정보",
        "birth_date" => "생년월일",
        "national_id" => "주민등록번호",
        _ => c,
    }
}

fn kind_ko(k: &str) -> &str {
    match k {
        "customer" => "회원(고객)",
        "recipient" => "배송지 수령인 등 제3자",
        _ => k,
    }
}

/// `n` with thousands separators.
pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map_or_else(|| "-".into(), |t| t.to_string())
}

/// The text the store gives for an item, in `lang`, when it gives one.
fn from_store(id: &str, s: &Shown, lang: &str, sources: &[(String, String, u64)]) -> Option<String> {
    let scope = s.scope.as_ref()?;
    let k = lang == "ko";
    let classes =
        || {
            scope
                .fields
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| {
                    if k { format!("{} ({}명)", class_ko(c), num(*n)) } else { format!("{c} ({} subjects)", num(*n)) }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
    let kinds = || {
        scope
            .subjects_by_type
            .iter()
            .map(|(t, n)| if k { format!("{} {}명", kind_ko(t), num(*n)) } else { format!("{t}: {}", num(*n)) })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let span = || {
        if k {
            format!("{} 부터 {} 까지", time(scope.first_seen_time), time(scope.last_seen_time))
        } else {
            format!("from {} to {}", time(scope.first_seen_time), time(scope.last_seen_time))
        }
    };
    let how = || {
        let titles = detected(s, k);
        let context: Vec<String> = s.findings.iter().filter(|f| f.posture).map(|f| f.title.clone()).collect();
        let mut t = if k {
            format!("탐지 결과: {}.", titles.join("; "))
        } else {
            format!("As detected: {}.", titles.join("; "))
        };
        if !context.is_empty() {
            t.push_str(&if k {
                format!(" 관련 취약점: {}.", context.join("; "))
            } else {
                format!(" Standing weaknesses: {}.", context.join("; "))
            });
        }
        let list = |field: &str, prefix: &str| -> Vec<String> {
            sources
                .iter()
                .filter(|(f, v, _)| f == field && !v.is_empty())
                .take(8)
                .map(|(_, v, n)| {
                    if k {
                        format!("{prefix}{v} ({}명)", num(*n))
                    } else {
                        format!("{prefix}{v} ({} subjects)", num(*n))
                    }
                })
                .collect()
        };
        let (countries, networks) =
            (list("src_endpoint.location.country", ""), list("src_endpoint.autonomous_system.number", "AS"));
        if !countries.is_empty() {
            t.push_str(&if k {
                format!(" 접근 출처 국가: {}; 네트워크: {}.", countries.join(", "), networks.join(", "))
            } else {
                format!(" Sources by country: {}; by network: {}.", countries.join(", "), networks.join(", "))
            });
        }
        t
    };
    Some(match id {
        "categories_of_data" => classes(),
        "categories_of_subjects" => kinds(),
        "approx_number_of_subjects" => {
            if k {
                format!("{}명 ({})", num(scope.subjects), kinds())
            } else {
                format!("{} ({})", num(scope.subjects), kinds())
            }
        }
        "categories_of_records" => {
            if k {
                "API를 통한 개인정보 조회 기록".into()
            } else {
                "API reads of personal data (access records)".into()
            }
        }
        "approx_number_of_records" => {
            if k {
                format!("{}건", num(scope.events))
            } else {
                format!("{} accesses", num(scope.events))
            }
        }
        "time_of_breach" | "incident_timing" => span(),
        "how_breach_occurred" | "nature_of_breach" | "incident_cause" => how(),
        "damage_details" | "incident_scope" => {
            if k {
                format!("정보주체 {}명의 개인정보 유출: {}", num(scope.subjects), classes())
            } else {
                format!("{} subjects' personal data exposed ({}): {}", num(scope.subjects), kinds(), classes())
            }
        }
        "notice_date" => time(Some(s.now)).chars().take(10).collect(),
        "followup_commitment" => {
            if k {
                "유출 여부가 확인되는 대로 다시 알려 드리겠습니다.".into()
            } else {
                "We will write to you again as soon as we know whether your data was affected.".into()
            }
        }
        _ => return None,
    })
}

/// The draft of `regime` for the incident `s`, in `lang`; `sources` lists
/// the countries and networks the access came from (most subjects first).
pub fn draft(
    regime: &Regime,
    s: &Shown,
    org: &Org,
    lang: &str,
    unique_identifying: bool,
    sources: &[(String, String, u64)],
) -> Draft {
    let version = regime.version_at(s.aware_time.or(s.possible_time));
    let clocks: Vec<crate::Clock> = s.clocks.iter().filter(|c| c.regime == regime.id).cloned().collect();
    let late = clocks.iter().any(|c| c.status == crate::Status::Missed);
    let mut items = BTreeMap::new();
    let mut missing = Vec::new();
    for it in &version.item {
        let needed = match it.when.as_deref() {
            Some("late") => late,
            Some("unique_identifying") => unique_identifying,
            Some("possible") => s.possible_time.is_some(),
            _ => true,
        };
        let (value, source) = if let Some(e) = s.filled.get(&it.id) {
            (e.text.clone(), crate::draft::Source::Person)
        } else if !needed {
            (String::new(), Source::NotApplicable)
        } else if let Some(v) = from_store(&it.id, s, lang, sources) {
            (v, Source::Store)
        } else if let (true, Some(v)) =
            (it.id == "contact_point", org.contact_point.clone().or_else(|| org.dpo.clone()))
        {
            (v, Source::Org)
        } else if let (true, Some(v)) = (it.id == "notifier_identity", org.name.clone()) {
            (v, Source::Org)
        } else {
            (String::new(), Source::Missing)
        };
        if source == Source::Missing && it.when.as_deref() != Some("undetermined") {
            missing.push(it.id.clone());
        }
        let label = if lang == "ko" { ko(&it.id).to_owned() } else { en(&it.id) };
        items.insert(
            it.id.clone(),
            Item { id: it.id.clone(), label, value, source, conf: it.conf, note: it.note.clone() },
        );
    }
    let follow_ups = clocks
        .iter()
        .filter(|c| c.trigger == "fact")
        .map(|c| FollowUp {
            confirmed_time: c.trigger_time,
            text: c.note.clone().unwrap_or_default().trim_start_matches("fact confirmed: ").to_owned(),
            due_time: c.due_time,
        })
        .collect();
    let title = if lang == "ko" {
        regime.title_ko.clone().unwrap_or_else(|| regime.title.clone())
    } else {
        regime.title.clone()
    };
    Draft {
        regime: regime.id.clone(),
        title,
        law: regime.law.clone(),
        language: lang.to_owned(),
        rules_from: version.from.to_string(),
        incident: s.id.clone(),
        items,
        missing,
        clocks,
        scope: s.scope.clone(),
        scope_command: s.scope_command.clone(),
        follow_ups,
        order: version.item.iter().map(|i| i.id.clone()).collect(),
    }
}

/// The draft as Markdown for people: every item in the regime's order,
/// marked blanks where a person must write, single-source items flagged.
pub fn markdown(d: &Draft) -> String {
    let k = d.language == "ko";
    let mut out = String::new();
    out.push_str(&format!("# {} ({})\n\n", d.title, d.incident));
    out.push_str(&if k {
        format!("- 근거: {}\n- 적용 기준: {} 시행 규정\n", d.law, d.rules_from)
    } else {
        format!("- Law: {}\n- Rules in force from: {}\n", d.law, d.rules_from)
    });
    for c in &d.clocks {
        let status = match (c.status, k) {
            (crate::Status::Open, false) => "open",
            (crate::Status::Met, false) => "met",
            (crate::Status::Missed, false) => "missed",
            (crate::Status::Open, true) => "미제출 (기한 전)",
            (crate::Status::Met, true) => "기한 내 제출",
            (crate::Status::Missed, true) => "기한 초과",
        };
        out.push_str(&if k {
            format!("- 기한 ({}): {} — 상태: {status}\n", c.recipient, time(c.due_time))
        } else {
            format!("- Due ({}): {} — status: {status}\n", c.recipient, time(c.due_time))
        });
    }
    out.push_str(&if k {
        "\n> 초안입니다. 저장소에서 채운 항목은 검토하고, 빈 항목은 작성한 뒤 제출하십시오. ◐ 표시는 단일 출처에 근거한 항목입니다.\n\n".to_owned()
    } else {
        "\n> Draft. Review what the store filled in, write what is marked blank, then send. ◐ marks an item that rests on a single source; ❓ one that is unconfirmed.\n\n".to_owned()
    });
    for id in &d.order {
        let Some(it) = d.items.get(id) else { continue };
        let mark = match it.conf {
            Conf::Confirmed => "",
            Conf::SingleSource => " ◐",
            Conf::Unconfirmed => " ❓",
        };
        out.push_str(&format!("## {}{mark}\n\n", it.label));
        match it.source {
            Source::Missing => out.push_str(&if k {
                format!(
                    "**[작성 필요: {}]** (`piiwatch incident fill {} --item {} --text ...`)\n\n",
                    it.id, d.incident, it.id
                )
            } else {
                format!(
                    "**[TO BE WRITTEN: {}]** (`piiwatch incident fill {} --item {} --text ...`)\n\n",
                    it.id, d.incident, it.id
                )
            }),
            Source::NotApplicable => {
                out.push_str(if k { "해당 없음.\n\n" } else { "Not applicable in this case.\n\n" })
            }
            src => {
                out.push_str(&it.value);
                out.push_str(match (src, k) {
                    (Source::Store, false) => "\n\n_(from the evidence store; review)_\n\n",
                    (Source::Store, true) => "\n\n_(증거 저장소에서 작성; 검토 필요)_\n\n",
                    _ => "\n\n",
                });
            }
        }
        if let Some(n) = &it.note {
            out.push_str(&format!("> {n}\n\n"));
        }
    }
    if !d.follow_ups.is_empty() {
        out.push_str(if k {
            "## 추가 신고 (확인된 사실)\n\n"
        } else {
            "## Supplementary reports (facts confirmed later)\n\n"
        });
        for f in &d.follow_ups {
            out.push_str(&format!(
                "- {} — {} ({}: {})\n",
                time(f.confirmed_time),
                f.text,
                if k { "기한" } else { "due" },
                time(f.due_time)
            ));
        }
        out.push('\n');
    }
    if let Some(cmd) = &d.scope_command {
        out.push_str(&if k {
            format!("---\n수치 재현: `{cmd}`\n")
        } else {
            format!("---\nEvery number above: `{cmd}`\n")
        });
    }
    out
}

/// How the linked findings (not posture) say the data was read, a line
/// each: a finding by its title and detector; a Sigma rule's findings (its
/// title is its analytic) once, with how many there are, since a
/// correlation reports once per group and window. `ko`: in Korean.
pub(crate) fn detected(s: &Shown, ko: bool) -> Vec<String> {
    let mut titles: Vec<String> = Vec::new();
    let mut rules: Vec<(&str, usize, usize)> = Vec::new();
    for f in s.findings.iter().filter(|f| !f.posture) {
        if f.title == f.analytic {
            match rules.iter_mut().find(|r| r.0 == f.analytic) {
                Some(r) => r.1 += 1,
                None => {
                    rules.push((f.analytic.as_str(), 1, titles.len()));
                    titles.push(String::new());
                }
            }
        } else {
            titles.push(format!("{} ({})", f.title, f.analytic));
        }
    }
    for (name, n, at) in rules {
        titles[at] =
            if ko { format!("{name} (Sigma 규칙, {n}건)") } else { format!("{name} (Sigma rule, {n} findings)") };
    }
    titles
}
