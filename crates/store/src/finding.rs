//! Findings as the store keeps them: the OCSF line `detect` wrote, with
//! every subject id in it replaced by its pseudonym.
//!
//! A finding about a customer principal (a BOLA attacker's own account, a
//! taken-over account) names that customer in its observables, its title,
//! its description and its details. The reader of `detect`'s output needs
//! the real id; the store must not keep it. The ids replaced are:
//! - the value of every `resources.uid` observable, and of every
//!   `actor.user.uid` observable that [`KeepClear`] does not keep (the same
//!   rule the events follow, so `scope --alert` selects the same accesses);
//! - anywhere else in the finding (any string, any object key), each of
//!   those values, and every word that the reader knows as a subject id or
//!   as a principal that is not kept in clear (a safety net for text a
//!   detector writes).
//!
//! A value is replaced where it stands alone: not inside a longer id
//! (`c-1` is not replaced inside `c-12`).

use std::collections::BTreeMap;

use model::Symbols;
use serde_json::Value;

use crate::Error;
use crate::KeepClear;

/// Observable names whose values are subject ids (or may be).
const PRINCIPAL: &str = "actor.user.uid";
const SUBJECT: &str = "resources.uid";

/// The finding `line` with its subject ids replaced through `pseudonym`.
pub fn pseudonymise(
    line: &str,
    symbols: &Symbols,
    clear: &KeepClear,
    pseudonym: &mut dyn FnMut(&str) -> String,
) -> Result<String, Error> {
    let mut v: Value = serde_json::from_str(line).map_err(Error::Finding)?;
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |id: &str, ids: &mut BTreeMap<String, String>| {
        if !id.is_empty() && !ids.contains_key(id) {
            ids.insert(id.to_owned(), pseudonym(id));
        }
    };
    if let Some(obs) = v.get("observables").and_then(Value::as_array) {
        for o in obs {
            let (Some(name), Some(value)) = (o["name"].as_str(), o["value"].as_str()) else { continue };
            if name == SUBJECT || (name == PRINCIPAL && !clear.keeps(value, symbols)) {
                add(value, &mut ids);
            }
        }
    }
    // The safety net: words the reader knows as subject or customer ids.
    let mut words = Vec::new();
    strings(&v, &mut |s| {
        for w in s.split(|c: char| !is_id_char(c)).filter(|w| !w.is_empty()) {
            words.push(w.to_owned());
        }
        // Ids with dots or colons in them (e-mail addresses), less the
        // punctuation around a word.
        for w in s.split_whitespace() {
            words.push(w.trim_matches(|c: char| !is_id_char(c)).to_owned());
        }
        words.push(s.to_owned());
    });
    for w in &words {
        let subject = symbols.subjects.get(w).is_some();
        let customer = symbols.principals.get(w).is_some() && !clear.keeps(w, symbols);
        if subject || customer {
            add(w, &mut ids);
        }
    }
    if ids.is_empty() {
        return Ok(line.to_owned());
    }
    // Longest first, so that an id that begins another is tried after it.
    let mut order: Vec<(&str, &str)> = ids.iter().map(|(k, p)| (k.as_str(), p.as_str())).collect();
    order.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
    replace_all(&mut v, &order);
    serde_json::to_string(&v).map_err(Error::Encode)
}

/// Characters an id is made of, for finding where one stands alone.
fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '@' | '+')
}

/// Calls `each` with every string in `v`, object keys included.
fn strings(v: &Value, each: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => each(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, each)),
        Value::Object(m) => {
            for (k, x) in m {
                each(k);
                strings(x, each);
            }
        }
        _ => {}
    }
}

fn replace_all(v: &mut Value, ids: &[(&str, &str)]) {
    match v {
        Value::String(s) => *s = replace(s, ids),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_all(x, ids)),
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                replace_all(&mut x, ids);
                m.insert(replace(&k, ids), x);
            }
        }
        _ => {}
    }
}

/// `s` with each id that stands alone (no id character just before or
/// after it) replaced, in one pass (a pseudonym is never searched again).
fn replace(s: &str, ids: &[(&str, &str)]) -> String {
    // An id may itself hold characters that `is_id_char` splits on
    // (spaces, say): a whole string equal to one is replaced whole.
    if let Some((_, p)) = ids.iter().find(|(id, _)| *id == s) {
        return (*p).to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < s.len() {
        let rest = &s[i..];
        let boundary = prev.is_none_or(|c| !is_id_char(c));
        let hit = boundary
            .then(|| {
                ids.iter().find(|(id, _)| {
                    rest.starts_with(id) && rest[id.len()..].chars().next().is_none_or(|c| !is_id_char(c))
                })
            })
            .flatten();
        if let Some((id, p)) = hit {
            out.push_str(p);
            i += id.len();
            prev = id.chars().last();
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8();
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(id: &str) -> String {
        format!("P{}", id.len())
    }

    #[test]
    fn every_customer_id_in_a_finding_becomes_its_pseudonym() {
        let mut sy = Symbols::default();
        sy.principal("c-1");
        sy.principal("emp-9");
        sy.subject("c-77");
        sy.subject("a.b@x.kr");
        let clear = KeepClear::of(["emp-9".to_owned()]);
        let line = serde_json::json!({
            "finding_info": {"uid": "pw-x", "title": "customer c-1 read 300 subjects (c-12 too, and c-77). a.b@x.kr also.", "desc": "emp-9 saw c-1's calls"},
            "observables": [
                {"name": "actor.user.uid", "value": "c-1"},
                {"name": "actor.user.uid", "value": "emp-9"},
                {"name": "actor.user.uid", "value": "c-12"},
                {"name": "src_endpoint.ip", "value": "1.2.3.4"},
            ],
            "unmapped": {"by_principal": {"c-1": 3}, "note": ["c-77"]},
        })
        .to_string();
        let got = pseudonymise(&line, &sy, &clear, &mut |id| pseudo(id)).unwrap();
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["finding_info"]["title"], "customer P3 read 300 subjects (P4 too, and P4). P8 also.");
        assert_eq!(v["finding_info"]["desc"], "emp-9 saw P3's calls");
        assert_eq!(v["observables"][0]["value"], "P3");
        assert_eq!(v["observables"][1]["value"], "emp-9");
        assert_eq!(v["observables"][2]["value"], "P4");
        assert_eq!(v["observables"][3]["value"], "1.2.3.4");
        assert_eq!(v["unmapped"]["by_principal"]["P3"], 3);
        assert_eq!(v["unmapped"]["note"][0], "P4");
        assert_eq!(v["finding_info"]["uid"], "pw-x");
    }

    #[test]
    fn a_finding_naming_no_customer_is_kept_as_written() {
        let sy = Symbols::default();
        let line = r#"{"observables":[{"name":"src_endpoint.ip","value":"1.2.3.4"}],"x":"emp-1 at 9"}"#;
        assert_eq!(pseudonymise(line, &sy, &KeepClear::default(), &mut |id| pseudo(id)).unwrap(), line);
    }
}
