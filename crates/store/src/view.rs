//! Access records read back for queries, borrowing from the record's bytes.
//!
//! [`crate::StoredEvent`] is an internally tagged enum, which serde reads by
//! buffering every field first, and owns every string: a scan spent more
//! time building it than inflating blocks. The ledger writes an access's
//! class first (`{"class":"access",...`), so a record that starts so is
//! read straight into an [`AccessView`]; any other record goes through
//! [`crate::StoredEvent`], so the answer never depends on the shortcut.

use std::borrow::Cow;

use serde::Deserialize;

use crate::{StoredAccess, StoredEvent};

/// The fields of a stored API access that queries read.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AccessView<'a> {
    /// Event time, ms.
    pub time: i64,
    /// Whether the call succeeded.
    pub success: bool,
    /// The principal as stored (a pseudonym for customers).
    #[serde(borrow)]
    pub principal: Cow<'a, str>,
    /// Its kind.
    #[serde(borrow)]
    pub principal_kind: Cow<'a, str>,
    /// Token id.
    #[serde(borrow, default)]
    pub token: Option<Cow<'a, str>>,
    /// Signing key.
    #[serde(borrow, default)]
    pub key: Option<Cow<'a, str>>,
    /// Source address.
    #[serde(borrow)]
    pub ip: Cow<'a, str>,
    /// Source AS number.
    #[serde(default)]
    pub asn: Option<u32>,
    /// Source country.
    #[serde(borrow, default)]
    pub country: Option<Cow<'a, str>>,
    /// User agent.
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    /// Route template.
    #[serde(borrow)]
    pub operation: Cow<'a, str>,
    /// Answering service.
    #[serde(borrow, default)]
    pub service: Option<Cow<'a, str>>,
    /// Subjects the response carried.
    #[serde(borrow)]
    pub subjects: Vec<SubjectView<'a>>,
}

/// One subject of an [`AccessView`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SubjectView<'a> {
    /// Pseudonym.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `customer`, `recipient`, ...
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    /// Field classes returned.
    #[serde(borrow)]
    pub fields: Vec<Cow<'a, str>>,
}

/// How every access record the store writes starts.
pub(crate) const ACCESS: &[u8] = br#"{"class":"access","#;

/// The access an event record holds: `Ok(None)` for another class, an
/// error when the record does not parse.
pub fn access(payload: &[u8]) -> Result<Option<AccessView<'_>>, serde_json::Error> {
    if payload.starts_with(ACCESS) {
        return serde_json::from_slice(payload).map(Some);
    }
    Ok(match serde_json::from_slice::<StoredEvent>(payload)? {
        StoredEvent::Access(StoredAccess {
            time,
            success,
            principal,
            principal_kind,
            token,
            key,
            ip,
            asn,
            country,
            user_agent,
            operation,
            service,
            subjects,
            ..
        }) => Some(AccessView {
            time,
            success,
            principal: principal.into(),
            principal_kind: principal_kind.into(),
            token: token.map(Into::into),
            key: key.map(Into::into),
            ip: ip.into(),
            asn,
            country: country.map(Into::into),
            user_agent: user_agent.map(Into::into),
            operation: operation.into(),
            service: service.map(Into::into),
            subjects: subjects
                .into_iter()
                .map(|s| SubjectView {
                    id: s.id.into(),
                    kind: s.kind.into(),
                    fields: s.fields.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoredSubject;

    #[test]
    fn the_shortcut_and_the_full_parse_read_the_same_access() {
        let e = StoredEvent::Access(StoredAccess {
            time: 5,
            activity_id: 2,
            success: true,
            principal: "p\"1".into(),
            principal_kind: "customer".into(),
            token: Some("t".into()),
            key: None,
            ip: "10.0.0.1".into(),
            asn: Some(7),
            country: Some("KR".into()),
            user_agent: Some("a\\b é".into()),
            operation: "GET /v1/me".into(),
            service: None,
            subjects: vec![StoredSubject { id: "ab".into(), kind: "customer".into(), fields: vec!["name".into()] }],
        });
        let bytes = serde_json::to_vec(&e).unwrap();
        assert!(bytes.starts_with(ACCESS), "the ledger writes the class first");
        let fast = access(&bytes).unwrap().unwrap();
        // The same record with its class last takes the full parse.
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let class = v.as_object_mut().unwrap().remove("class").unwrap();
        v.as_object_mut().unwrap().insert("class".into(), class);
        let moved = serde_json::to_vec(&v).unwrap();
        assert!(!moved.starts_with(ACCESS));
        assert_eq!(access(&moved).unwrap().unwrap(), fast);
        assert_eq!(fast.user_agent.as_deref(), Some("a\\b é"));
        assert_eq!(fast.principal, "p\"1");
        let other = serde_json::to_vec(&StoredEvent::Other { time: Some(1), class_uid: Some(4002) }).unwrap();
        assert_eq!(access(&other).unwrap(), None);
        assert!(access(b"{\"class\":\"access\",\"time\":").is_err());
    }
}
