//! The exposure index against a scan of the whole ledger: on random
//! platforms ingested by `piiwatch ingest` in many small commits, every
//! query (single dimension, CIDR, `or`, `and`, `not`, any time range, hour
//! aligned or not) gives the same events, span, subjects, kinds and
//! per-field subjects from the index as from the scan; and an index lost or
//! left behind by a crash is rebuilt from the ledger.

#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;
use scope::{Plan, Query};
use support::ok;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

const IPS: [&str; 8] = [
    "198.51.100.7",
    "198.51.100.9",
    "198.51.101.1",
    "203.0.113.5",
    "10.1.2.3",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:1::9",
];
const KEYS: [&str; 3] = ["auth-key-2019", "auth-key-2024", "svc-key"];
const PRINCIPALS: [&str; 5] = ["c1", "c2", "emp-1042", "agent-77", "svc-shipping"];
const TOKENS: [&str; 6] = ["t1", "t2", "t3", "t4", "t5", "t6"];
const OPS: [&str; 3] = ["GET /v1/address-book", "GET /v1/me", "GET /v1/orders/{id}"];
const LABELS: [&str; 4] = ["name", "phone", "address", "entrance_code"];

#[derive(Clone, Debug)]
struct Ev {
    time: i64,
    ok: bool,
    principal: usize,
    ip: usize,
    key: Option<usize>,
    token: Option<usize>,
    op: usize,
    asn: Option<u32>,
    country: Option<&'static str>,
    subjects: Vec<(u8, u8)>,
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        0..72 * HOUR,
        prop::bool::weighted(0.9),
        0..PRINCIPALS.len(),
        0..IPS.len(),
        prop::option::of(0..KEYS.len()),
        prop::option::of(0..TOKENS.len()),
        0..OPS.len(),
        prop::option::of(prop::sample::select(vec![16509u32, 20473, 4766])),
        prop::option::of(prop::sample::select(vec!["KR", "US"])),
        prop::collection::vec((0u8..30, 1u8..16), 0..4),
    )
        .prop_map(|(t, ok, principal, ip, key, token, op, asn, country, subjects)| Ev {
            time: BASE + t,
            ok,
            principal,
            ip,
            key,
            token,
            op,
            asn,
            country,
            subjects,
        })
}

fn line(e: &Ev) -> String {
    let mut actor = format!(r#"{{"user":{{"uid":"{}","type":"customer"}}"#, PRINCIPALS[e.principal]);
    if e.token.is_some() || e.key.is_some() {
        actor.push_str(r#","session":{"#);
        let mut parts = Vec::new();
        if let Some(t) = e.token {
            parts.push(format!(r#""uid":"{}""#, TOKENS[t]));
        }
        if let Some(k) = e.key {
            parts.push(format!(r#""issuer":"{}""#, KEYS[k]));
        }
        actor.push_str(&parts.join(","));
        actor.push('}');
    }
    actor.push('}');
    let mut src = format!(r#"{{"ip":"{}""#, IPS[e.ip]);
    if let Some(c) = e.country {
        write!(src, r#","location":{{"country":"{c}"}}"#).unwrap();
    }
    if let Some(n) = e.asn {
        write!(src, r#","autonomous_system":{{"number":{n}}}"#).unwrap();
    }
    src.push('}');
    let resources: Vec<String> = e
        .subjects
        .iter()
        .map(|&(s, mask)| {
            let labels: Vec<String> = LABELS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, l)| format!("{l:?}"))
                .collect();
            // A subject is always of one kind.
            let kind = if s % 3 == 0 { "recipient" } else { "customer" };
            format!(r#"{{"uid":"u{s}","type":"{kind}","labels":[{}]}}"#, labels.join(","))
        })
        .collect();
    format!(
        r#"{{"class_uid":6003,"time":{},"activity_id":2,"status_id":{},"actor":{actor},"src_endpoint":{src},"api":{{"operation":"{}"}},"resources":[{}]}}"#,
        e.time,
        if e.ok { 1 } else { 2 },
        OPS[e.op],
        resources.join(",")
    )
}

fn ingest(store: &Path, input: &Path) {
    ok(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        "--commit-every",
        "13",
        "--segment-bytes",
        "6000",
        "--quarantine",
        store.with_extension("q").to_str().unwrap(),
        "--out",
        store.with_extension("f").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
}

/// A random `--where` expression over the pools.
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0..KEYS.len()).prop_map(|k| format!(r#"actor.session.issuer = "{}""#, KEYS[k])),
        (0..IPS.len()).prop_map(|i| format!(r#"src_endpoint.ip = "{}""#, IPS[i])),
        prop::sample::subsequence(IPS.to_vec(), 1..4).prop_map(|v| format!(
            "src_endpoint.ip in ({})",
            v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
        )),
        prop::sample::select(vec![
            "198.51.100.0/24",
            "198.51.100.0/28",
            "198.51.0.0/16",
            "2001:db8::/64",
            "2001:db8::/32",
            "0.0.0.0/0",
            "198.51.100.7/32"
        ])
        .prop_map(|c| format!(r#"src_endpoint.ip cidr "{c}""#)),
        (0..PRINCIPALS.len()).prop_map(|p| format!(r#"actor.user.uid = "{}""#, PRINCIPALS[p])),
        (0..TOKENS.len()).prop_map(|t| format!(r#"actor.session.uid = "{}""#, TOKENS[t])),
        (0..OPS.len()).prop_map(|o| format!(r#"api.operation = "{}""#, OPS[o])),
        prop::sample::select(vec!["16509", "20473", "4766", "0020473"])
            .prop_map(|n| format!(r#"src_endpoint.autonomous_system.number = "{n}""#)),
        prop::sample::select(vec!["KR", "US"]).prop_map(|c| format!(r#"src_endpoint.location.country = "{c}""#)),
        (0u8..30).prop_map(|s| format!(r#"resources.uid = "u{s}""#)),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

/// A time bound: none, on an hour, or anywhere.
fn bound() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (0i64..74).prop_map(|h| Some(BASE + h * HOUR)), (0..74 * HOUR).prop_map(|t| Some(BASE + t)),]
}

fn answer(store: &store::Store, text: &str, from: Option<i64>, to: Option<i64>, no_index: bool) -> scope::Answer {
    let expr = scope::parse(text).unwrap().with_principal_aliases(&|v| store.secret().pseudonym(v));
    scope::scope(store, &Query { expr: Some(expr), from, to, no_prefilter: false, no_index, group_by: Vec::new() })
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn index_answers_equal_a_scan_of_the_ledger(
        events in prop::collection::vec(ev(), 1..300),
        split in 0usize..300,
        queries in prop::collection::vec((expr(), bound(), bound()), 12),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let st = tmp.path().join("store");
        let text: Vec<String> = events.iter().map(line).collect();
        // Two ingests: the second appends to entries the first wrote.
        let cut = split.min(text.len());
        let a = tmp.path().join("a.jsonl");
        let b = tmp.path().join("b.jsonl");
        std::fs::write(&a, text[..cut].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        std::fs::write(&b, text[cut..].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        ingest(&st, &a);
        ingest(&st, &b);
        let store = store::Store::open(&st, store::Options::default()).unwrap();
        for (q, from, to) in &queries {
            let by_index = answer(&store, q, *from, *to, false);
            let by_scan = answer(&store, q, *from, *to, true);
            prop_assert_eq!(&by_scan.plan, &Plan::FullScan);
            prop_assert!(by_index.plan != Plan::FullScan, "{} used no index", q);
            prop_assert_eq!(by_index.summary(), by_scan.summary(), "{} from {:?} to {:?} ({:?})", q, from, to, by_index.plan);
            prop_assert_eq!(&by_index.subjects, &by_scan.subjects, "{}", q);
            prop_assert_eq!(&by_index.fields, &by_scan.fields, "{}", q);
        }
    }
}

#[test]
fn an_index_lost_or_behind_is_rebuilt_from_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, st) = support::simulated_store(tmp.path(), "coupang", 400, 1);
    let q = r#"actor.session.issuer = "auth-key-2019""#;
    let before = {
        let store = store::Store::open(&st, store::Options::default()).unwrap();
        let a = answer(&store, q, None, None, false);
        assert!(matches!(a.plan, Plan::Index(_)), "{:?}", a.plan);
        assert!(!a.subjects.is_empty());
        a.summary()
    };
    // A crash after the ledger's commit and before the index's: the index
    // file from before; here, no index at all.
    std::fs::remove_file(st.join("index.redb")).unwrap();
    let store = store::Store::open(&st, store::Options::default()).unwrap();
    assert_eq!(store.index().covered(), store.head().records);
    let after = answer(&store, q, None, None, false);
    assert!(matches!(after.plan, Plan::Index(_)));
    assert_eq!(after.summary(), before);
}

#[test]
fn verify_names_an_index_that_differs_from_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, st) = support::simulated_store(tmp.path(), "coupang", 300, 1);
    let (_, other) = support::simulated_store(tmp.path(), "insider", 300, 1);
    let s = st.to_str().unwrap();
    ok(&["verify", "--store", s]);
    // An index swapped for another one (as an insider hiding exposure from
    // scope would edit it) is named.
    let keep = tmp.path().join("index.keep");
    std::fs::copy(st.join("index.redb"), &keep).unwrap();
    std::fs::copy(other.join("index.redb"), st.join("index.redb")).unwrap();
    let o = support::piiwatch(&["verify", "--store", s]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("index.redb"), "{out}");
    // A missing index is no damage: a note, and the next open rebuilds it.
    std::fs::remove_file(st.join("index.redb")).unwrap();
    let o = ok(&["verify", "--store", s]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("index.redb is missing"));
    ok(&["scope", "--store", s, "--where", r#"actor.session.issuer = "auth-key-2019""#]);
    assert!(st.join("index.redb").is_file());
    ok(&["verify", "--store", s]);
    // Restored, the index that was written with the store checks again,
    // but for the scope just recorded it now lags: a note, not damage.
    std::fs::copy(&keep, st.join("index.redb")).unwrap();
    let o = ok(&["verify", "--store", s]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("covers"), "{}", String::from_utf8_lossy(&o.stdout));
}
