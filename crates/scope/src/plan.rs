//! How a query is answered: which parts the exposure index gives exactly,
//! which narrow a scan, and which need one.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use store::index::{Dim, HOUR_MS, PREFIX_V4, PREFIX_V6, ValueRange, ip_key, prefix_key, string_value};

use crate::expr::{Expr, Field};

/// How a query is answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Plan {
    /// From the index's entries for these key ranges (one dimension, so each
    /// access counts once), plus a scan of the partial hours at the edges.
    Index(Vec<ValueRange>),
    /// A scan of the blocks of the hours in which every one of these
    /// groups of key ranges (the necessary parts of an `and`) matched.
    Narrowed(Vec<Vec<ValueRange>>),
    /// A scan of the blocks of the time range.
    Scan,
    /// A scan of the whole ledger, the index unused.
    #[default]
    FullScan,
}

impl Plan {
    /// The plan for an expression (`None`: every access).
    pub fn of(expr: Option<&Expr>) -> Self {
        let Some(e) = expr else { return Plan::Scan };
        if let Some(r) = exact(e) {
            return Plan::Index(r);
        }
        let mut parts = Vec::new();
        necessary(e, &mut parts);
        if parts.is_empty() { Plan::Scan } else { Plan::Narrowed(parts) }
    }

    /// A short name for people.
    pub fn name(&self) -> &'static str {
        match self {
            Plan::Index(_) => "index",
            Plan::Narrowed(_) => "index-narrowed scan",
            Plan::Scan => "scan of the time range",
            Plan::FullScan => "full scan",
        }
    }
}

fn dim_of(f: Field) -> Option<Dim> {
    Some(match f {
        Field::Key => Dim::Key,
        Field::SrcIp => Dim::Ip,
        Field::Asn => Dim::Asn,
        Field::Principal => Dim::Principal,
        Field::Token => Dim::Token,
        Field::Operation => Dim::Operation,
        Field::Country => Dim::Country,
        Field::PrincipalKind | Field::UserAgent | Field::Service | Field::Subject => return None,
    })
}

/// The key of a value as the store holds it; `None` when no stored value
/// can equal it (the store keeps addresses and AS numbers in canonical
/// form, and a scan compares strings).
fn value_key(dim: Dim, v: &str) -> Option<Vec<u8>> {
    match dim {
        Dim::Ip => {
            let ip = v.parse::<IpAddr>().ok()?;
            (ip.to_string() == v).then(|| ip_key(ip).to_vec())
        }
        Dim::Asn => {
            let n = v.parse::<u32>().ok()?;
            (n.to_string() == v).then(|| n.to_be_bytes().to_vec())
        }
        _ => Some(string_value(v)),
    }
}

/// Key ranges giving exactly the accesses `e` matches, when it tests one
/// indexed dimension only.
fn exact(e: &Expr) -> Option<Vec<ValueRange>> {
    match e {
        Expr::In(f, vals) => {
            let dim = dim_of(*f)?;
            let mut keys: Vec<Vec<u8>> = vals.iter().filter_map(|v| value_key(dim, v)).collect();
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                // Matches nothing; one impossible range says so.
                return Some(vec![ValueRange { dim, lo: vec![0xff; 64], hi: vec![0xff; 64] }]);
            }
            Some(keys.into_iter().map(|k| ValueRange { dim, lo: k.clone(), hi: k }).collect())
        }
        Expr::Cidr(Field::SrcIp, net) => Some(vec![cidr_range(net)]),
        Expr::Cidr(..) => None,
        Expr::Or(a, b) => {
            let (mut x, y) = (exact(a)?, exact(b)?);
            // Ranges of one dimension: an access has one value there, so
            // it is counted once however many ranges hold it.
            if x.first().map(|r| r.dim) != y.first().map(|r| r.dim) {
                return None;
            }
            x.extend(y);
            Some(x)
        }
        Expr::And(..) | Expr::Not(_) => None,
    }
}

fn cidr_range(net: &IpNet) -> ValueRange {
    let (lo, hi) = (net.network(), net.broadcast());
    let coarse = match net {
        IpNet::V4(n) => n.prefix_len() <= PREFIX_V4,
        IpNet::V6(n) => n.prefix_len() <= PREFIX_V6,
    };
    if coarse {
        ValueRange { dim: Dim::Prefix, lo: prefix_key(lo).to_vec(), hi: prefix_key(hi).to_vec() }
    } else {
        ValueRange { dim: Dim::Ip, lo: ip_key(lo).to_vec(), hi: ip_key(hi).to_vec() }
    }
}

/// Groups of key ranges such that every access `e` matches is in each
/// (the index-answerable conjuncts of an `and`).
fn necessary(e: &Expr, out: &mut Vec<Vec<ValueRange>>) {
    match e {
        Expr::And(a, b) => {
            necessary(a, out);
            necessary(b, out);
        }
        e => out.extend(exact(e)),
    }
}

/// Splits `[from, to]` into the whole hours inside it and the partial spans
/// at its edges.
pub fn split_hours(from: i64, to: i64) -> (Option<RangeInclusive<u32>>, Vec<(i64, i64)>) {
    let first_whole =
        if from == i64::MIN { i64::MIN } else { from.div_euclid(HOUR_MS) + i64::from(from.rem_euclid(HOUR_MS) != 0) };
    let last_whole = if to == i64::MAX {
        i64::MAX
    } else {
        // The hour `to` ends, when it is its last millisecond.
        let h = to.div_euclid(HOUR_MS);
        if to.rem_euclid(HOUR_MS) == HOUR_MS - 1 { h } else { h - 1 }
    };
    let clamp = |h: i64| u32::try_from(h.max(0)).unwrap_or(u32::MAX);
    if first_whole > last_whole {
        return (None, vec![(from, to)]);
    }
    let mut edges = Vec::new();
    if from != i64::MIN && from < first_whole * HOUR_MS {
        edges.push((from, first_whole * HOUR_MS - 1));
    }
    if to != i64::MAX && to >= (last_whole + 1) * HOUR_MS {
        edges.push(((last_whole + 1) * HOUR_MS, to));
    }
    (Some(clamp(first_whole)..=clamp(last_whole)), edges)
}

/// The spans of `hours` (sorted) within `[from, to]`, adjacent hours joined.
pub fn hour_spans(hours: &[u32], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &h in hours {
        let (a, b) = (i64::from(h) * HOUR_MS, i64::from(h) * HOUR_MS + HOUR_MS - 1);
        let (a, b) = (a.max(from), b.min(to));
        if a > b {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 + 1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    #[test]
    fn plans_follow_the_expression() {
        let p = |e: &str| Plan::of(Some(&parse(e).unwrap()));
        assert!(matches!(p(r#"actor.session.issuer = "k""#), Plan::Index(r) if r.len() == 1));
        assert!(
            matches!(p(r#"src_endpoint.ip in ("1.2.3.4", "1.2.3.5") or src_endpoint.ip cidr "9.0.0.0/30""#), Plan::Index(r) if r.len() == 3)
        );
        assert!(matches!(p(r#"src_endpoint.ip cidr "9.0.0.0/8""#), Plan::Index(r) if r[0].dim == Dim::Prefix));
        // Two dimensions in an `or`: an access could be counted twice.
        assert_eq!(p(r#"src_endpoint.ip = "1.2.3.4" or actor.session.issuer = "k""#), Plan::Scan);
        assert!(matches!(p(r#"actor.session.issuer = "k" and not resources.uid = "x""#), Plan::Narrowed(_)));
        assert_eq!(p(r#"not actor.session.issuer = "k""#), Plan::Scan);
        assert_eq!(p(r#"http_request.user_agent = "x""#), Plan::Scan);
    }

    #[test]
    fn hours_split_into_whole_and_edges() {
        let h = HOUR_MS;
        assert_eq!(split_hours(0, 3 * h - 1), (Some(0..=2), vec![]));
        assert_eq!(split_hours(10, 3 * h - 1), (Some(1..=2), vec![(10, h - 1)]));
        assert_eq!(split_hours(10, 3 * h), (Some(1..=2), vec![(10, h - 1), (3 * h, 3 * h)]));
        assert_eq!(split_hours(10, 20), (None, vec![(10, 20)]));
        assert_eq!(split_hours(i64::MIN, i64::MAX), (Some(0..=u32::MAX), vec![]));
        assert_eq!(hour_spans(&[1, 2, 5], h + 7, 6 * h), vec![(h + 7, 3 * h - 1), (5 * h, 6 * h - 1)]);
    }
}
