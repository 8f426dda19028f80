//! The platform's directory export (`directory.json`): principals, signing
//! keys and labelled networks.
//!
//! A malformed export is an error that names the JSON path of the offending
//! value (`keys[0].created: ...`), because the person fixing it has a file of
//! thousands of entries in front of them. Unknown fields are ignored: a real
//! export carries more than piiwatch reads.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use serde::Deserialize;

use crate::event::{Millis, PrincipalKind};

/// A directory export that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Not JSON, or a value of the wrong type or format.
    #[error("{path}: {message}")]
    Invalid {
        /// JSON path of the offending value (`.` for the document).
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// A principal: customer, employee or service.
#[derive(Debug, Clone, Deserialize)]
pub struct Principal {
    /// The id events name in `actor.user.uid`.
    pub uid: String,
    /// `customer`, `employee` or `service`.
    #[serde(deserialize_with = "kind")]
    pub kind: PrincipalKind,
    /// Job role (`auth-engineer`, `cs-agent`, ...).
    #[serde(default)]
    pub role: Option<String>,
    /// When they left, if they did.
    #[serde(default)]
    pub left: Option<Timestamp>,
}

fn kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PrincipalKind, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(PrincipalKind::parse(&s))
}

/// A signing key.
#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    /// The id tokens carry as `kid` (`actor.session.issuer`).
    pub id: String,
    /// What it signs (`token-signing`).
    #[serde(default)]
    pub purpose: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created: Option<Timestamp>,
    /// When it was retired, if it was.
    #[serde(default)]
    pub retired: Option<Timestamp>,
    /// Who held a copy.
    #[serde(default)]
    pub custodians: Vec<String>,
}

/// A labelled network, by CIDR or by autonomous system.
#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    /// Address range.
    #[serde(default)]
    pub cidr: Option<IpNet>,
    /// Autonomous system number.
    #[serde(default)]
    pub asn: Option<u32>,
    /// `internal`, `office`, `hosting`, `carrier-cgnat`, ...
    pub label: String,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    principals: Vec<Principal>,
    #[serde(default)]
    keys: Vec<Key>,
    #[serde(default)]
    networks: Vec<Network>,
}

/// The directory, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Principals as exported.
    pub principals: Vec<Principal>,
    /// Keys as exported.
    pub keys: Vec<Key>,
    /// Networks as exported.
    pub networks: Vec<Network>,
    by_principal: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    /// CIDR networks, most specific first.
    cidrs: Vec<(IpNet, usize)>,
    by_asn: HashMap<u32, usize>,
}

impl Directory {
    /// Parses an export.
    pub fn parse(text: &str) -> Result<Self, DirectoryError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            DirectoryError::Invalid { path, message: strip_position(&e.into_inner().to_string()) }
        })?;
        for (i, n) in raw.networks.iter().enumerate() {
            if n.cidr.is_none() && n.asn.is_none() {
                return Err(DirectoryError::Invalid {
                    path: format!("networks[{i}]"),
                    message: "a network needs `cidr` or `asn`".into(),
                });
            }
        }
        let by_principal = raw.principals.iter().enumerate().map(|(i, p)| (p.uid.clone(), i)).collect();
        let by_key = raw.keys.iter().enumerate().map(|(i, k)| (k.id.clone(), i)).collect();
        let mut cidrs: Vec<(IpNet, usize)> =
            raw.networks.iter().enumerate().filter_map(|(i, n)| n.cidr.map(|c| (c.trunc(), i))).collect();
        cidrs.sort_by_key(|(net, i)| (std::cmp::Reverse(net.prefix_len()), *i));
        let by_asn = raw.networks.iter().enumerate().filter_map(|(i, n)| n.asn.map(|a| (a, i))).collect();
        Ok(Self {
            principals: raw.principals,
            keys: raw.keys,
            networks: raw.networks,
            by_principal,
            by_key,
            cidrs,
            by_asn,
        })
    }

    /// A principal by uid.
    pub fn principal(&self, uid: &str) -> Option<&Principal> {
        self.by_principal.get(uid).map(|&i| &self.principals[i])
    }

    /// A key by id.
    pub fn key(&self, id: &str) -> Option<&Key> {
        self.by_key.get(id).map(|&i| &self.keys[i])
    }

    /// The label of the most specific CIDR network holding `ip`, else of the
    /// network listed for `asn`.
    pub fn classify(&self, ip: IpAddr, asn: Option<u32>) -> Option<&str> {
        let by_cidr = self.cidrs.iter().find(|(net, _)| net.contains(&ip)).map(|&(_, i)| i);
        let by_asn = || asn.and_then(|a| self.by_asn.get(&a).copied());
        by_cidr.or_else(by_asn).map(|i| self.networks[i].label.as_str())
    }
}

/// Epoch milliseconds of a timestamp.
pub fn millis(t: Timestamp) -> Millis {
    t.as_millisecond()
}

/// serde_json appends "at line 1 column 7"; the JSON path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(pos) => msg[..pos].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "principals": [
        {"uid": "emp-1042", "kind": "employee", "role": "auth-engineer", "left": "2024-12-31T00:00:00Z"},
        {"uid": "agent-77", "kind": "employee", "role": "cs-agent"},
        {"uid": "svc-shipping", "kind": "service", "extra": 1}
      ],
      "keys": [
        {"id": "auth-key-2019", "purpose": "token-signing", "created": "2019-05-01T00:00:00Z",
         "retired": null, "custodians": ["emp-1042", "emp-2001"]}
      ],
      "networks": [
        {"cidr": "10.0.0.0/8", "label": "internal"},
        {"cidr": "10.1.0.0/16", "label": "lab"},
        {"cidr": "203.0.113.0/24", "label": "office"},
        {"asn": 20473, "label": "hosting"}
      ]
    }"#;

    #[test]
    fn the_contracts_example_parses() {
        let d = Directory::parse(SAMPLE).expect("sample parses");
        let p = d.principal("emp-1042").expect("emp-1042");
        assert_eq!(p.kind, PrincipalKind::Employee);
        assert_eq!(p.left.map(millis), Some(1_735_603_200_000));
        assert!(d.principal("agent-77").and_then(|p| p.left).is_none());
        let k = d.key("auth-key-2019").expect("key");
        assert_eq!(k.custodians, ["emp-1042", "emp-2001"]);
        assert!(k.retired.is_none());
    }

    #[test]
    fn most_specific_cidr_wins_then_asn() {
        let d = Directory::parse(SAMPLE).expect("sample parses");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(d.classify(ip("10.1.2.3"), None), Some("lab"));
        assert_eq!(d.classify(ip("10.9.2.3"), Some(20473)), Some("internal"));
        assert_eq!(d.classify(ip("198.51.100.7"), Some(20473)), Some("hosting"));
        assert_eq!(d.classify(ip("198.51.100.7"), Some(1)), None);
    }

    #[test]
    fn errors_name_the_json_path() {
        let bad = r#"{"keys": [{"id": "k1"}, {"id": "k2", "created": "yesterday"}]}"#;
        let err = Directory::parse(bad).unwrap_err().to_string();
        assert!(err.starts_with("keys[1].created:"), "{err}");
        let bad = r#"{"networks": [{"cidr": "10.0.0.0/33", "label": "x"}]}"#;
        let err = Directory::parse(bad).unwrap_err().to_string();
        assert!(err.starts_with("networks[0].cidr:"), "{err}");
        let bad = r#"{"networks": [{"label": "x"}]}"#;
        assert!(Directory::parse(bad).unwrap_err().to_string().starts_with("networks[0]:"));
        let bad = r#"{"principals": [{"kind": "employee"}]}"#;
        let err = Directory::parse(bad).unwrap_err().to_string();
        assert!(err.contains("principals[0]") && err.contains("uid"), "{err}");
    }
}
