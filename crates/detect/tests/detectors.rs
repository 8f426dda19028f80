//! Each built-in detector on hand-made event sequences: OCSF JSON lines go
//! through the real reader into the engine, and every detector gets at least
//! one sequence that must fire and one that must not.

use detect::alert::Activity;
use detect::config::{Dur, floor_for};
use detect::detectors::{ato, departed, fanout, foreign, forged, keys, silence, staff};
use detect::{Alert, Config, Detector, Engine, World};
use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Directory, Event, Millis, Symbols};
use serde_json::{Value, json};

/// 2025-03-03T00:00:00Z, which is 09:00 local at the default `+09:00`.
const T0: Millis = 1_740_960_000_000;
const SEC: Millis = 1_000;
const MIN: Millis = 60 * SEC;
const HOUR: Millis = 60 * MIN;
const DAY: Millis = 24 * HOUR;

const DIRECTORY: &str = r#"{
  "principals": [
    {"uid": "emp-1042", "kind": "employee", "role": "auth-engineer", "left": "2024-12-31T00:00:00Z"},
    {"uid": "emp-2001", "kind": "employee", "role": "auth-engineer"},
    {"uid": "emp-gone", "kind": "employee", "role": "cs-agent", "left": "2025-01-15T00:00:00Z"},
    {"uid": "agent-1", "kind": "employee", "role": "cs-agent"},
    {"uid": "agent-2", "kind": "employee", "role": "cs-agent"},
    {"uid": "agent-3", "kind": "employee", "role": "cs-agent"},
    {"uid": "agent-4", "kind": "employee", "role": "cs-agent"}
  ],
  "keys": [
    {"id": "key-orphaned", "created": "2024-06-01T00:00:00Z", "custodians": ["emp-1042", "emp-2001"]},
    {"id": "key-rotated", "created": "2025-02-01T00:00:00Z", "custodians": ["emp-1042"]},
    {"id": "key-healthy", "created": "2025-01-01T00:00:00Z", "custodians": ["emp-2001"]},
    {"id": "key-retired", "created": "2024-01-01T00:00:00Z", "retired": "2024-06-01T00:00:00Z", "custodians": ["emp-2001"]},
    {"id": "key-retiring", "created": "2025-01-01T00:00:00Z", "retired": "2026-01-01T00:00:00Z", "custodians": ["emp-2001"]}
  ],
  "networks": [
    {"cidr": "10.0.0.0/8", "label": "internal"},
    {"cidr": "211.36.0.0/16", "label": "broadband"},
    {"cidr": "100.64.0.0/10", "label": "carrier-cgnat"},
    {"cidr": "198.51.100.0/24", "label": "hosting"},
    {"cidr": "203.0.113.0/24", "label": "hosting"}
  ]
}"#;

// ---------------------------------------------------------------- harness

/// Hands every event the reader produces to the engine.
struct Feed<'a> {
    engine: &'a mut Engine,
    alerts: &'a mut Vec<Alert>,
}

impl Visitor for Feed<'_> {
    fn event(&mut self, _at: LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        self.engine.push(event, 0, symbols, self.alerts);
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        panic!("test line {} quarantined: {}: {}", q.at.line, q.reason, String::from_utf8_lossy(q.excerpt));
    }
}

/// A reader, an engine and the alerts so far.
struct Harness {
    engine: Engine,
    reader: Reader,
    symbols: Symbols,
    alerts: Vec<Alert>,
}

fn world(cfg: &Config) -> World {
    World::new(Directory::parse(DIRECTORY).expect("test directory parses"), &cfg.engine.hosting_labels)
}

impl Harness {
    fn build(engine: Engine) -> Self {
        Self { engine, reader: Reader::new(ReaderOptions::default()), symbols: Symbols::default(), alerts: Vec::new() }
    }

    /// Every enabled built-in detector.
    fn all(cfg: &Config) -> Self {
        Self::build(Engine::new(cfg, world(cfg)).expect("config is valid"))
    }

    /// One detector in isolation.
    fn only(cfg: &Config, detector: impl Detector + 'static) -> Self {
        Self::build(Engine::with_detectors(cfg, world(cfg), vec![Box::new(detector)]))
    }

    /// Feeds events as JSON lines, in the order given.
    fn feed<V: Into<Value>>(&mut self, events: impl IntoIterator<Item = V>) {
        let mut text = String::new();
        for e in events {
            text.push_str(&e.into().to_string());
            text.push('\n');
        }
        let mut feed = Feed { engine: &mut self.engine, alerts: &mut self.alerts };
        self.reader.read_bytes("t", text.as_bytes(), &mut self.symbols, &mut feed);
    }

    /// Releases every held event (the clock moves to the latest one) without
    /// ending the input: what an idle followed input does.
    fn flush(&mut self) -> Vec<Alert> {
        self.engine.release(Millis::MAX, &self.symbols, &mut self.alerts);
        self.alerts.clone()
    }

    /// Ends the input.
    fn finish(mut self) -> Vec<Alert> {
        self.engine.finish(&self.symbols, &mut self.alerts);
        self.alerts
    }
}

/// Feeds events to a fresh engine and ends the input.
fn run<V: Into<Value>>(mut h: Harness, events: impl IntoIterator<Item = V>) -> Vec<Alert> {
    h.feed(events);
    h.finish()
}

/// An API Activity line under construction.
struct Api(Value);

/// A successful read by `user` from `ip` that returns no subjects yet.
fn api(t: Millis, user: &str, ip: &str) -> Api {
    Api(json!({
        "class_uid": 6003,
        "time": t,
        "activity_id": 2,
        "status_id": 1,
        "actor": {"user": {"uid": user}},
        "src_endpoint": {"ip": ip},
        "api": {"operation": "GET /v1/profile"},
        "resources": [],
    }))
}

impl Api {
    fn kind(mut self, kind: &str) -> Self {
        self.0["actor"]["user"]["type"] = json!(kind);
        self
    }

    fn token(mut self, token: &str, key: &str) -> Self {
        self.0["actor"]["session"] = json!({"uid": token, "issuer": key});
        self
    }

    fn country(mut self, cc: &str) -> Self {
        self.0["src_endpoint"]["location"] = json!({"country": cc});
        self
    }

    fn service(mut self, name: &str) -> Self {
        self.0["api"]["service"] = json!({"name": name});
        self
    }

    fn agent(mut self, ua: &str) -> Self {
        self.0["http_request"] = json!({"user_agent": ua});
        self
    }

    fn asn(mut self, asn: u32) -> Self {
        self.0["src_endpoint"]["autonomous_system"] = json!({"number": asn});
        self
    }

    /// The response carried a third party's (an address-book entry's) fields.
    fn read_recipient(mut self, subject: &str, labels: &[&str]) -> Self {
        if let Some(r) = self.0["resources"].as_array_mut() {
            r.push(json!({"uid": subject, "type": "recipient", "labels": labels}));
        }
        self
    }

    /// The response carried this customer's fields of these classes.
    fn read(mut self, subject: &str, labels: &[&str]) -> Self {
        if let Some(r) = self.0["resources"].as_array_mut() {
            r.push(json!({"uid": subject, "type": "customer", "labels": labels}));
        }
        self
    }
}

impl From<Api> for Value {
    fn from(a: Api) -> Value {
        a.0
    }
}

/// Authentication: a token was issued.
fn issued(t: Millis, user: &str, token: &str, key: &str, expires: Option<Millis>) -> Value {
    json!({
        "class_uid": 3002,
        "activity_id": 1,
        "status_id": 1,
        "time": t,
        "user": {"uid": user},
        "session": {"uid": token, "issuer": key, "expiration_time": expires},
    })
}

/// Account Change: a principal was deleted.
fn offboarded(t: Millis, user: &str) -> Value {
    json!({"class_uid": 3001, "activity_id": 6, "time": t, "user": {"uid": user}})
}

/// Calls without a token, one a minute over `[from, to]`, only to move event time on.
fn clock(from: Millis, to: Millis) -> Vec<Value> {
    (0..).map(|i| from + i * MIN).take_while(|t| *t <= to).map(|t| api(t, "svc-clock", "10.0.0.1").into()).collect()
}

fn has(a: &Alert, field: &str, value: &str) -> bool {
    a.observables.iter().any(|(f, v)| *f == field && v == value)
}

fn values<'a>(a: &'a Alert, field: &str) -> Vec<&'a str> {
    a.observables.iter().filter(|(f, _)| *f == field).map(|(_, v)| v.as_str()).collect()
}

fn creates(alerts: &[Alert]) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.activity == Activity::Create).collect()
}

fn by_time(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|e| e["time"].as_i64());
    v
}

// ----------------------------------------------------------- forged-token

fn forged_only(cfg: &Config) -> Harness {
    Harness::only(cfg, forged::ForgedToken::new(cfg.forged_token.clone()))
}

#[test]
fn forged_token_never_issued_is_reported_once_issuance_lateness_has_passed() {
    let cfg = Config::default();
    assert_eq!(cfg.forged_token.issuance_lateness, Dur::minutes(3));
    let mut h = forged_only(&cfg);
    h.feed([api(T0, "cust-1", "198.51.100.7").token("tok-forged", "key-x")]);
    h.feed(clock(T0 + MIN, T0 + 3 * MIN));
    let early = h.flush();
    assert!(early.is_empty(), "reported while its issuance may still arrive: {early:#?}");

    h.feed(clock(T0 + 4 * MIN, T0 + 4 * MIN));
    let alerts = h.flush();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity, a.time, a.count, a.severity), ("forged-token", Activity::Create, T0, 1, 5));
    assert!(!a.posture);
    assert!(has(a, "actor.session.issuer", "key-x"), "{a:#?}");
    assert!(has(a, "src_endpoint.ip", "198.51.100.7"), "{a:#?}");
    assert!(has(a, "actor.session.uid", "tok-forged"), "{a:#?}");
    assert!(a.reported_at >= T0 + cfg.forged_token.issuance_lateness.0, "{a:#?}");
    assert_eq!(h.finish().len(), 1, "finish reports the same token again");
}

/// Found by the `detect_stream` fuzz target: one unissued token presented
/// with two different key ids lands in two findings, each timed by its own use.
#[test]
fn forged_token_used_with_two_key_ids_gives_two_findings_each_inside_its_span() {
    let cfg = Config::default();
    let mut h = forged_only(&cfg);
    h.feed([
        api(T0, "cust-1", "198.51.100.7").token("tok-x", "key-a"),
        api(T0 + 20_000, "cust-1", "198.51.100.7").token("tok-x", "key-b"),
    ]);
    h.feed(clock(T0 + MIN, T0 + 5 * MIN));
    let alerts = h.finish();
    let c = creates(&alerts);
    assert_eq!(c.len(), 2, "{alerts:#?}");
    for a in &alerts {
        assert!(a.first_seen <= a.time && a.time <= a.last_seen, "{a:#?}");
    }
    assert!(c.iter().any(|a| has(a, "actor.session.issuer", "key-b") && a.time == T0 + 20_000), "{c:#?}");
}

#[test]
fn forged_token_pending_at_the_end_of_input_is_settled_by_finish() {
    let cfg = Config::default();
    let alerts = run(forged_only(&cfg), [api(T0, "cust-1", "198.51.100.7").token("tok-forged", "key-x")]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!((alerts[0].detector, alerts[0].time), ("forged-token", T0));
    assert!(has(&alerts[0], "actor.session.issuer", "key-x"));
}

#[test]
fn forged_token_issued_late_but_within_issuance_lateness_is_not_reported() {
    let cfg = Config::default();
    let mut events: Vec<Value> = vec![
        api(T0, "cust-1", "211.36.1.2").token("tok-late", "key-x").into(),
        api(T0 + 30 * SEC, "cust-1", "211.36.1.2").token("tok-late", "key-x").into(),
        issued(T0 + 2 * MIN + 59 * SEC, "cust-1", "tok-late", "key-x", Some(T0 + HOUR)),
    ];
    events.extend(clock(T0 + 3 * MIN, T0 + 10 * MIN));
    events.push(api(T0 + 11 * MIN, "cust-1", "211.36.1.2").token("tok-late", "key-x").into());
    let alerts = run(forged_only(&cfg), events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn forged_token_issued_after_issuance_lateness_is_reported() {
    let cfg = Config::default();
    let mut events: Vec<Value> = vec![api(T0, "cust-1", "211.36.1.2").token("tok-late", "key-x").into()];
    events.extend(clock(T0 + MIN, T0 + 4 * MIN));
    events.push(issued(T0 + 5 * MIN, "cust-1", "tok-late", "key-x", Some(T0 + HOUR)));
    let alerts = run(forged_only(&cfg), events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].time, T0);
    assert!(has(&alerts[0], "actor.session.uid", "tok-late"));
}

#[test]
fn forged_token_presented_by_another_principal_is_reported() {
    let cfg = Config::default();
    let events = [
        issued(T0, "cust-a", "tok-a", "key-x", Some(T0 + HOUR)),
        api(T0 + MIN, "cust-b", "211.36.9.9").token("tok-a", "key-x").into(),
    ];
    let alerts = run(forged_only(&cfg), events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity, a.time, a.severity), ("forged-token", Activity::Create, T0 + MIN, 4));
    assert!(a.title.contains("other than"), "{}", a.title);
    assert!(has(a, "actor.session.uid", "tok-a") && has(a, "actor.session.issuer", "key-x"), "{a:#?}");
    assert!(has(a, "src_endpoint.ip", "211.36.9.9"), "{a:#?}");
}

#[test]
fn forged_token_presented_by_its_own_principal_is_not_reported() {
    let cfg = Config::default();
    let events = [
        issued(T0, "cust-a", "tok-a", "key-x", Some(T0 + HOUR)),
        api(T0 + MIN, "cust-a", "211.36.9.9").token("tok-a", "key-x").into(),
        api(T0 + 59 * MIN, "cust-a", "211.36.9.9").token("tok-a", "key-x").into(),
    ];
    let alerts = run(forged_only(&cfg), events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn forged_token_used_after_expiry_and_grace_is_reported() {
    let cfg = Config::default();
    assert_eq!(cfg.forged_token.expiry_grace, Dur::minutes(2));
    let events = [
        issued(T0, "cust-a", "tok-e", "key-x", Some(T0 + 10 * MIN)),
        api(T0 + 13 * MIN, "cust-a", "211.36.9.9").token("tok-e", "key-x").into(),
    ];
    let alerts = run(forged_only(&cfg), events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.time, a.severity), ("forged-token", T0 + 13 * MIN, 3));
    assert!(a.title.contains("expired"), "{}", a.title);
    assert!(has(a, "actor.session.uid", "tok-e"));
}

#[test]
fn forged_token_used_before_expiry_or_within_grace_is_not_reported() {
    let cfg = Config::default();
    let events = [
        issued(T0, "cust-a", "tok-e", "key-x", Some(T0 + 10 * MIN)),
        api(T0 + 5 * MIN, "cust-a", "211.36.9.9").token("tok-e", "key-x").into(),
        api(T0 + 11 * MIN, "cust-a", "211.36.9.9").token("tok-e", "key-x").into(),
        api(T0 + 12 * MIN, "cust-a", "211.36.9.9").token("tok-e", "key-x").into(),
    ];
    let alerts = run(forged_only(&cfg), events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

// ------------------------------------------------------------ key-hygiene

fn keys_only(cfg: &Config) -> Harness {
    Harness::only(cfg, keys::KeyHygiene::new(cfg.key_hygiene.clone()))
}

/// A few calls with tokens signed by `key`, from one home address.
fn key_uses(key: &str, n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| api(T0 + i * MIN, &format!("cust-{i}"), "211.36.1.2").country("KR").token(&format!("tok-{i}"), key))
        .map(Value::from)
        .collect()
}

#[test]
fn key_hygiene_reports_an_unrotated_key_of_a_departed_custodian_once_at_first_use() {
    let cfg = Config::default();
    let mut events = vec![issued(T0 - MIN, "cust-0", "tok-0", "key-orphaned", Some(T0 + HOUR))];
    events.extend(key_uses("key-orphaned", 5));
    let alerts = run(keys_only(&cfg), events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity, a.time), ("key-hygiene", Activity::Create, T0 - MIN));
    assert!(a.posture, "{a:#?}");
    assert_eq!(a.observables, vec![("actor.session.issuer", "key-orphaned".to_owned())]);
    assert!(a.title.contains("emp-1042"), "{}", a.title);
}

#[test]
fn key_hygiene_is_silent_about_healthy_and_rotated_keys() {
    let cfg = Config::default();
    let mut events = key_uses("key-healthy", 5);
    events.extend(key_uses("key-rotated", 5));
    let alerts = run(keys_only(&cfg), by_time(events));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn key_hygiene_reports_a_retired_key_in_use_as_critical() {
    let cfg = Config::default();
    let alerts = run(keys_only(&cfg), key_uses("key-retired", 3));
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.detector == "key-hygiene" && a.severity == 5 && !a.posture), "{alerts:#?}");
    let c = creates(&alerts);
    assert_eq!(c.len(), 1, "{alerts:#?}");
    assert_eq!(c[0].time, T0);
    assert!(c[0].title.contains("retired"), "{}", c[0].title);
    assert!(has(c[0], "actor.session.issuer", "key-retired"));
}

#[test]
fn key_hygiene_reports_an_unlisted_key_and_not_one_retired_only_in_the_future() {
    let cfg = Config::default();
    let alerts = run(keys_only(&cfg), key_uses("key-retiring", 3));
    assert!(alerts.is_empty(), "{alerts:#?}");
    let alerts = run(keys_only(&cfg), key_uses("key-nobody-listed", 1));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].severity, 4);
    assert!(alerts[0].title.contains("unlisted"), "{}", alerts[0].title);
}

fn escalation_cfg() -> Config {
    let mut cfg = Config::default();
    cfg.key_hygiene.learn_for = Dur::hours(1);
    cfg.key_hygiene.new_class_min_tokens = 3;
    cfg
}

/// An hour of use from home broadband (learning), then `tokens` from a
/// hosting network in NL, one call per token (token names repeat when
/// `distinct` is false).
fn escalation_events(key: &str, tokens: i64, distinct: bool) -> (Vec<Value>, Vec<Value>) {
    let learn = (0..=6)
        .map(|i| {
            api(T0 + i * 10 * MIN, "cust-home", "211.36.1.2").country("KR").token(&format!("tok-home-{i}"), key).into()
        })
        .collect();
    let novel = (0..tokens)
        .map(|i| {
            let tok = if distinct { format!("tok-nl-{i}") } else { "tok-nl".to_owned() };
            api(T0 + 2 * HOUR + i * MIN, &format!("cust-nl-{i}"), "198.51.100.20").country("NL").token(&tok, key).into()
        })
        .collect();
    (learn, novel)
}

#[test]
fn key_hygiene_escalates_tokens_of_an_orphaned_key_from_a_never_seen_network_class() {
    let cfg = escalation_cfg();
    let (learn, novel) = escalation_events("key-orphaned", 3, true);
    let mut h = keys_only(&cfg);
    h.feed(learn);
    h.feed(novel[..2].to_vec());
    let so_far = h.flush();
    assert!(so_far.iter().all(|a| a.posture), "escalated before 3 tokens: {so_far:#?}");
    h.feed(novel[2..].to_vec());
    let alerts = h.finish();
    assert_eq!(alerts.iter().filter(|a| a.posture).count(), 1, "{alerts:#?}");
    let active: Vec<&Alert> = alerts.iter().filter(|a| !a.posture).collect();
    assert_eq!(active.len(), 1, "{alerts:#?}");
    let a = active[0];
    assert_eq!(
        (a.detector, a.activity, a.time, a.count, a.severity),
        ("key-hygiene", Activity::Create, T0 + 2 * HOUR + 2 * MIN, 3, 5)
    );
    assert_eq!(a.first_seen, T0 + 2 * HOUR);
    assert!(has(a, "actor.session.issuer", "key-orphaned"), "{a:#?}");
    assert!(has(a, "src_endpoint.ip", "198.51.100.20"), "{a:#?}");
    assert!(a.title.contains("hosting networks in NL"), "{}", a.title);
}

#[test]
fn key_hygiene_does_not_escalate_a_healthy_key_or_a_single_token() {
    let cfg = escalation_cfg();
    let (learn, novel) = escalation_events("key-healthy", 5, true);
    let alerts = run(keys_only(&cfg), learn.into_iter().chain(novel));
    assert!(alerts.is_empty(), "{alerts:#?}");

    let (learn, novel) = escalation_events("key-orphaned", 5, false);
    let alerts = run(keys_only(&cfg), learn.into_iter().chain(novel));
    assert!(alerts.iter().all(|a| a.posture), "{alerts:#?}");
}

// ----------------------------------------------------- departed-principal

fn departed_only(cfg: &Config) -> Harness {
    Harness::only(cfg, departed::Departed::new(cfg.departed.clone()))
}

#[test]
fn departed_principal_active_after_account_change_is_reported() {
    let cfg = Config::default();
    let events = [offboarded(T0, "emp-x"), api(T0 + MIN, "emp-x", "211.36.4.4").kind("employee").into()];
    let alerts = run(departed_only(&cfg), events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity, a.time, a.count), ("departed-principal", Activity::Create, T0 + MIN, 1));
    assert!(has(a, "actor.user.uid", "emp-x"), "{a:#?}");
    assert!(has(a, "src_endpoint.ip", "211.36.4.4"), "{a:#?}");
}

#[test]
fn departed_principal_activity_up_to_the_offboarding_is_not_reported() {
    let cfg = Config::default();
    let events = [
        api(T0, "emp-x", "211.36.4.4").kind("employee").into(),
        api(T0 + MIN, "emp-x", "211.36.4.4").kind("employee").into(),
        offboarded(T0 + MIN, "emp-x"),
        api(T0 + 2 * MIN, "emp-y", "211.36.4.4").kind("employee").into(),
    ];
    let alerts = run(departed_only(&cfg), events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn departed_principal_left_per_directory_is_reported() {
    let cfg = Config::default();
    let events = [
        issued(T0, "emp-gone", "tok-g", "key-healthy", Some(T0 + HOUR)),
        api(T0 + MIN, "emp-gone", "211.36.4.4").token("tok-g", "key-healthy").into(),
        api(T0 + MIN, "agent-1", "10.1.0.5").into(),
    ];
    let alerts = run(departed_only(&cfg), events);
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| has(a, "actor.user.uid", "emp-gone")), "{alerts:#?}");
    let c = creates(&alerts);
    assert_eq!(c.len(), 1, "{alerts:#?}");
    assert_eq!(c[0].time, T0);
    assert_eq!(alerts.last().map(|a| a.count), Some(2));
}

// ---------------------------------------------------------------- fan-out

/// `n` customers' data read from one address, each by its own account, 8 s apart.
fn crawl(ip: &str, n: i64, labels: &[&str]) -> Vec<Value> {
    (0..n)
        .map(|i| api(T0 + i * 8 * SEC, &format!("cust-{i}"), ip).kind("customer").read(&format!("subj-{i}"), labels))
        .map(Value::from)
        .collect()
}

#[test]
fn fan_out_reports_a_hosting_address_reading_many_customers() {
    let cfg = Config::default();
    let floor = floor_for(&cfg.fan_out.floor, "src_ip", "hosting", Dur::minutes(10)).unwrap();
    assert_eq!(floor, 60);
    let alerts = run(
        Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)),
        crawl("198.51.100.7", 80, &["name", "address"]),
    );
    assert!(alerts.iter().all(|a| a.detector == "fan-out"), "{alerts:#?}");
    let on_ip: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.observables.first() == Some(&("src_endpoint.ip", "198.51.100.7".to_owned())))
        .cloned()
        .collect();
    assert_eq!(creates(&on_ip).len(), 1, "{alerts:#?}");
    let a = &on_ip[0];
    assert_eq!(a.activity, Activity::Create);
    assert!(a.count > floor && a.count <= 80, "{a:#?}");
    assert_eq!(a.severity, 4, "hosting reads are high severity");
}

#[test]
fn fan_out_holds_carrier_nat_addresses_to_their_own_floor() {
    let cfg = Config::default();
    let alerts = run(
        Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)),
        crawl("100.64.3.4", 80, &["name", "address"]),
    );
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn fan_out_does_not_count_customers_reading_their_own_data_but_does_count_a_crawler_behind_them() {
    let cfg = Config::default();
    // 300 customers behind one hosting address (floor 60 in ten minutes),
    // each reading their own profile and their own address book.
    let own: Vec<Value> = (0..300)
        .map(|i| {
            let me = format!("cust-{i}");
            api(T0 + i * 2 * SEC, &me, "198.51.100.7")
                .read(&me, &["name", "address"])
                .read_recipient(&format!("rcpt-{i}-1"), &["name", "address"])
                .into()
        })
        .collect();
    let alerts = run(Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)), own.clone());
    assert!(alerts.is_empty(), "self-service counted as exposure: {alerts:#?}");
    // The same, with one account among them reading 80 other customers.
    let mut events = own;
    events.extend((0..80).map(|i| {
        Value::from(
            api(T0 + 30 * SEC + i * 5 * SEC, "cust-7", "198.51.100.7")
                .kind("customer")
                .read(&format!("cust-{}", 100 + i), &["name"]),
        )
    }));
    let alerts = run(Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)), by_time(events));
    assert!(alerts.iter().any(|a| has(a, "actor.user.uid", "cust-7")), "{alerts:#?}");
    assert!(alerts.iter().any(|a| has(a, "src_endpoint.ip", "198.51.100.7")), "{alerts:#?}");
    let on_ip = alerts.iter().rfind(|a| a.observables.first().is_some_and(|o| o.1 == "198.51.100.7"));
    assert!(on_ip.is_some_and(|a| a.count <= 80), "the address counts only the crawl's 80 subjects: {on_ip:#?}");
}

#[test]
fn fan_out_with_a_zero_floor_reports_a_key_that_reached_one_subject() {
    // Keys that reached one subject are kept in a compact form that cannot
    // alert; a floor of 0 must still make them findings.
    let cfg = Config::parse("[[fan_out.floor]]\nmin = 0\n").unwrap();
    let alerts =
        run(Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)), crawl("198.51.100.9", 1, &["name"]));
    assert!(alerts.iter().any(|a| has(a, "src_endpoint.ip", "198.51.100.9") && a.count == 1), "{alerts:#?}");
}

#[test]
fn fan_out_counts_the_first_subject_of_a_key_once_it_reaches_more() {
    // The same address: one customer's data, then (an hour later) 70 others in ten minutes.
    let cfg = Config::default();
    let mut events =
        vec![Value::from(api(T0, "cust-x", "198.51.100.8").kind("customer").read("subj-first", &["name"]))];
    events.extend((0..70).map(|i| {
        Value::from(
            api(T0 + HOUR + i * 8 * SEC, &format!("cust-{i}"), "198.51.100.8")
                .kind("customer")
                .read(&format!("subj-{i}"), &["name"]),
        )
    }));
    let alerts = run(Harness::only(&cfg, fanout::FanOut::distinct_subjects(&cfg.fan_out)), events);
    let on_ip: Vec<&Alert> = alerts.iter().filter(|a| has(a, "src_endpoint.ip", "198.51.100.8")).collect();
    assert!(!on_ip.is_empty(), "{alerts:#?}");
    let last = on_ip.last().unwrap();
    let windows = last.details["windows"].as_array().unwrap();
    let day = windows.iter().find(|w| w["window"] == "1d").unwrap();
    let ten = windows.iter().find(|w| w["window"] == "10m").unwrap();
    // The first subject is in the day's count but not in the last ten minutes'.
    assert_eq!(day["subjects"].as_u64().unwrap(), ten["subjects"].as_u64().unwrap() + 1, "{windows:#?}");
}

// ------------------------------------------------------- sensitive-fields

fn sensitive_only(cfg: &Config) -> Harness {
    Harness::only(cfg, fanout::FanOut::sensitive(&cfg.sensitive_fields))
}

/// One customer account reading `n` other customers' data, a minute apart.
fn lookups(from: Millis, n: i64, labels: &[&str]) -> Vec<Value> {
    (0..n)
        .map(|i| api(from + i * MIN, "cust-s", "211.36.7.7").kind("customer").read(&format!("subj-{i}"), labels))
        .map(Value::from)
        .collect()
}

#[test]
fn sensitive_fields_reports_a_customer_reading_many_entrance_codes() {
    let cfg = Config::default();
    let alerts = run(sensitive_only(&cfg), lookups(T0, 15, &["name", "entrance_code"]));
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.detector == "sensitive-fields"), "{alerts:#?}");
    let c = creates(&alerts);
    assert_eq!(c.len(), 1, "{alerts:#?}");
    assert_eq!(c[0].observables.first(), Some(&("actor.user.uid", "cust-s".to_owned())), "{alerts:#?}");
    assert!(c[0].count > 10, "{:#?}", c[0]);
    assert!(c[0].title.contains("entrance_code"), "{}", c[0].title);
}

#[test]
fn sensitive_fields_ignores_reads_of_ordinary_fields() {
    let cfg = Config::default();
    let alerts = run(sensitive_only(&cfg), lookups(T0, 15, &["name"]));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn sensitive_fields_sees_classes_first_named_after_the_first_call() {
    let cfg = Config::default();
    // The first call names no watched class; another event moves the
    // watermark past it before any entrance code appears in the input.
    let mut events = vec![Value::from(api(T0, "cust-t", "211.36.7.8").kind("customer").read("subj-t", &["name"]))];
    events.extend(clock(T0 + 5 * MIN, T0 + 5 * MIN));
    events.extend(lookups(T0 + 10 * MIN, 15, &["name", "entrance_code"]));
    let alerts = run(sensitive_only(&cfg), events);
    assert_eq!(creates(&alerts).len(), 1, "{alerts:#?}");
    assert!(has(&alerts[0], "actor.user.uid", "cust-s"), "{alerts:#?}");
}

// --------------------------------------------------------- foreign-access

fn foreign_cfg() -> Config {
    let mut cfg = Config::default();
    cfg.foreign_access.min_subjects = 20;
    cfg.foreign_access.min_address_subjects = 5;
    cfg
}

fn foreign_only(cfg: &Config) -> Harness {
    Harness::only(cfg, foreign::ForeignAccess::new(cfg.foreign_access.clone(), &cfg.engine.home_countries))
}

/// `n` distinct customers read alternately from two hosting addresses, 30 s apart.
fn hosting_reads(n: i64) -> Vec<Value> {
    let ips = ["198.51.100.7", "203.0.113.9"];
    (0..n)
        .map(|i| {
            api(T0 + i * 30 * SEC, &format!("cust-{i}"), ips[(i % 2) as usize])
                .kind("customer")
                .read(&format!("subj-{i}"), &["name", "phone"])
        })
        .map(Value::from)
        .collect()
}

#[test]
fn foreign_access_reports_one_campaign_across_hosting_addresses() {
    let cfg = foreign_cfg();
    let alerts = run(foreign_only(&cfg), hosting_reads(30));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity), ("foreign-access", Activity::Create));
    assert!(a.count > 20, "{a:#?}");
    let mut ips = values(a, "src_endpoint.ip");
    ips.sort_unstable();
    assert_eq!(ips, ["198.51.100.7", "203.0.113.9"], "{a:#?}");
}

#[test]
fn foreign_access_ignores_a_few_hosting_reads() {
    let cfg = foreign_cfg();
    let alerts = run(foreign_only(&cfg), hosting_reads(10));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

// ---------------------------------------------------------- staff-pattern

const AGENTS: [&str; 4] = ["agent-1", "agent-2", "agent-3", "agent-4"];

// ----------------------------------------------------------- account-takeover

fn ato_only(cfg: &Config) -> Harness {
    Harness::only(cfg, ato::AccountTakeover::new(cfg.account_takeover.clone(), &cfg.engine.home_countries))
}

/// A customer account's own read from abroad (no user type: as OCSF's
/// `User` type leaves it, a customer unless the directory says otherwise).
fn own_read(t: Millis, account: &str, ip: &str, cc: &str, asn: u32, ua: &str) -> Value {
    api(t, account, ip).country(cc).asn(asn).agent(ua).read(account, &["name", "payment"]).into()
}

/// A day of travellers: one account a hour first seen in JP, US or TH, each
/// with its own phone's client, and one home read for every one of them.
fn travellers(day: Millis, from: i64) -> Vec<Value> {
    let mut v = Vec::new();
    for h in 0..24 {
        let t = day + h * HOUR + 7 * MIN;
        let who = format!("cust-trip-{}", from + h);
        let cc = ["JP", "US", "TH"][(h % 3) as usize];
        v.push(own_read(
            t,
            &who,
            &format!("172.56.{h}.9"),
            cc,
            21928,
            ["App/8.14 iOS", "App/8.14 Android"][(h % 2) as usize],
        ));
        v.push(own_read(t + MIN, &who, "211.36.1.2", "KR", 3786, "App/8.14 iOS"));
    }
    v.extend(clock(day, day + DAY - MIN));
    by_time(v)
}

/// `n` accounts taken over within `span` from residential proxies abroad,
/// two accounts per address, with one client string.
fn stuffing(from: Millis, n: i64, span: Millis) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let ip = format!("73.12.{}.{}", i / 2, 10 + i / 2);
            let cc = ["US", "BR", "IN", "ID"][(i % 4) as usize];
            let asn = [7922, 26599, 55836, 7713][(i % 4) as usize];
            own_read(from + i * span / n, &format!("cust-victim-{i}"), &ip, cc, asn, "App/8.11 Android 13")
        })
        .collect()
}

#[test]
fn account_takeover_reports_one_campaign_of_accounts_newly_seen_abroad() {
    let cfg = Config::default();
    let mut events = travellers(T0, 0);
    events.extend(travellers(T0 + DAY, 100));
    events.extend(stuffing(T0 + DAY + 5 * HOUR + 30 * MIN, 40, 20 * MIN));
    let alerts = run(ato_only(&cfg), by_time(events));
    let c = creates(&alerts);
    assert_eq!(c.len(), 1, "one campaign, one finding: {alerts:#?}");
    let a = c[0];
    assert_eq!(a.detector, "account-takeover");
    assert!(a.count > cfg.account_takeover.min_accounts && a.count <= 40, "{a:#?}");
    let accounts = values(a, "actor.user.uid");
    assert!(!accounts.is_empty() && accounts.iter().all(|v| v.starts_with("cust-victim-")), "{a:#?}");
    assert!(values(a, "src_endpoint.ip").iter().all(|ip| ip.starts_with("73.12.")), "{a:#?}");
    assert!(has(a, "http_request.user_agent", "App/8.11 Android 13"), "{a:#?}");
    assert!(values(a, "src_endpoint.autonomous_system.number").len() >= 3, "{a:#?}");
    // Known within the window, well before the campaign's end.
    assert!(a.time < T0 + DAY + 5 * HOUR + 30 * MIN + cfg.account_takeover.window.0, "{a:#?}");
    // Later reports are updates of the same finding, and the last counts every account.
    assert!(alerts.iter().all(|x| x.uid == a.uid), "{alerts:#?}");
    // Reported again as it doubles: the last report has at least half the accounts.
    assert!(alerts.last().is_some_and(|x| x.count * 2 >= 40 && x.count <= 40), "{alerts:#?}");
}

#[test]
fn account_takeover_ignores_travellers_at_the_platforms_rate_and_waits_for_a_whole_day() {
    let cfg = Config::default();
    // Two days of travellers, and on the second a cluster of six accounts
    // abroad in ten minutes (a tour group): under the floor.
    let mut events = travellers(T0, 0);
    events.extend(travellers(T0 + DAY, 100));
    events.extend(stuffing(T0 + DAY + 5 * HOUR, 6, 10 * MIN));
    let alerts = run(ato_only(&cfg), by_time(events));
    assert!(alerts.is_empty(), "{alerts:#?}");
    // A campaign on the first day watched is not judged: nothing is learned yet.
    let mut events = travellers(T0, 0);
    events.extend(stuffing(T0 + 5 * HOUR, 40, 20 * MIN));
    let alerts = run(ato_only(&cfg), by_time(events));
    assert!(alerts.is_empty(), "{alerts:#?}");
    // Staff abroad are the directory's business, not account takeover.
    let mut events = travellers(T0, 0);
    events.extend(travellers(T0 + DAY, 100));
    let agents = ["agent-1", "agent-2", "agent-3", "agent-4"];
    for (i, a) in agents.iter().enumerate() {
        for k in 0..10 {
            let t = T0 + DAY + 5 * HOUR + (i as i64 * 10 + k) * 20 * SEC;
            events.push(
                api(t, a, &format!("73.12.9.{}", 10 * i as i64 + k))
                    .country(["US", "BR", "IN", "ID", "MX", "DE", "FR", "GB", "CA", "AU"][k as usize])
                    .agent("Console")
                    .read(&format!("c-{k}"), &["name"])
                    .into(),
            );
        }
    }
    let alerts = run(ato_only(&cfg), by_time(events));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

fn staff_only(cfg: &Config) -> Harness {
    Harness::only(
        cfg,
        staff::StaffPattern::new(cfg.staff_pattern.clone(), cfg.engine.offset_ms().expect("offset parses")),
    )
}

/// Two days of four cs-agents reading two customers an hour, 09:00-17:00 local.
fn office_days() -> Vec<Value> {
    let mut v = Vec::new();
    for day in 0..2 {
        for hour in 0..8 {
            for (a, agent) in AGENTS.iter().enumerate() {
                for j in 0..2 {
                    let t = T0 + day * DAY + hour * HOUR + (a as i64 * 10 + j * 5) * MIN;
                    let subject = format!("c-{day}-{hour}-{a}-{j}");
                    v.push(api(t, agent, "10.1.0.5").kind("employee").read(&subject, &["name", "phone"]).into());
                }
            }
        }
    }
    by_time(v)
}

/// `agent` reading 20 distinct customers from `from`, a minute apart.
fn agent_lookups(agent: &str, from: Millis) -> Vec<Value> {
    (0..20)
        .map(|i| api(from + i * MIN, agent, "10.1.0.5").kind("employee").read(&format!("n-{i}"), &["name", "address"]))
        .map(Value::from)
        .collect()
}

#[test]
fn staff_pattern_reports_an_agent_reading_at_night() {
    let mut cfg = Config::default();
    // Four agents read 64 times a day here; the default asks the role for 100.
    cfg.staff_pattern.min_role_reads = 50;
    // 02:00 local on the third day.
    let night = T0 + DAY + 17 * HOUR;
    let alerts = run(staff_only(&cfg), office_days().into_iter().chain(agent_lookups("agent-2", night)));
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.detector == "staff-pattern" && has(a, "actor.user.uid", "agent-2")), "{alerts:#?}");
    let c = creates(&alerts);
    assert_eq!(c.len(), 1, "{alerts:#?}");
    assert!(c[0].time >= night, "{:#?}", c[0]);
    assert!(c[0].title.contains("02:00"), "{}", c[0].title);
}

#[test]
fn staff_pattern_waits_until_the_role_has_a_completed_day() {
    // The same night reads with only a few hours of peer history: no judgement yet.
    let cfg = Config::default();
    let early: Vec<Value> = office_days().into_iter().take(20).collect();
    let night = T0 + 17 * HOUR;
    let alerts = run(staff_only(&cfg), early.into_iter().chain(agent_lookups("agent-2", night)));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn staff_pattern_ignores_the_same_reads_in_working_hours() {
    let mut cfg = Config::default();
    cfg.staff_pattern.min_role_reads = 50;
    // 10:00 local on the third day.
    let morning = T0 + 2 * DAY + HOUR;
    let alerts = run(staff_only(&cfg), office_days().into_iter().chain(agent_lookups("agent-2", morning)));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

// ---------------------------------------------------------------- silence

fn silence_cfg() -> Config {
    let mut cfg = Config::default();
    cfg.silence.min_history = Dur::minutes(30);
    cfg.silence.min_events = 20;
    cfg.silence.min_gap = Dur::minutes(5);
    cfg
}

/// A call answered by `service` every minute over `[from, to]`.
fn service_calls(service: &str, from: Millis, to: Millis) -> Vec<Value> {
    (0..)
        .map(|i| from + i * MIN)
        .take_while(|t| *t <= to)
        .map(|t| api(t, &format!("{service}-client"), "10.2.0.1").service(service).into())
        .collect()
}

#[test]
fn silence_reports_a_service_that_stops_while_another_goes_on() {
    let cfg = silence_cfg();
    let mut events = service_calls("svc-a", T0, T0 + HOUR);
    events.extend(service_calls("svc-b", T0, T0 + HOUR + 20 * MIN));
    let alerts = run(Harness::only(&cfg, silence::Silence::new(cfg.silence.clone())), by_time(events));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a.detector, a.activity, a.first_seen), ("silence", Activity::Create, T0 + HOUR));
    assert_eq!(a.observables, vec![("api.service.name", "svc-a".to_owned())]);
    // Longest gap 1 min: the limit is max(5 min, 4 × 1 min).
    assert!(a.time > T0 + HOUR + 5 * MIN && a.time <= T0 + HOUR + 7 * MIN, "{a:#?}");
}

#[test]
fn silence_ignores_the_end_of_the_input() {
    let cfg = silence_cfg();
    let mut events = service_calls("svc-a", T0, T0 + HOUR);
    events.extend(service_calls("svc-b", T0, T0 + HOUR));
    let alerts = run(Harness::only(&cfg, silence::Silence::new(cfg.silence.clone())), by_time(events));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

// ------------------------------------------------------- arrival order

/// Small thresholds so that most detectors fire on a short input.
fn busy_cfg() -> Config {
    let mut cfg = silence_cfg();
    cfg.foreign_access.min_subjects = 20;
    cfg.foreign_access.min_address_subjects = 5;
    cfg.key_hygiene.learn_for = Dur::hours(1);
    cfg.key_hygiene.new_class_min_tokens = 3;
    cfg
}

/// An hour and a half in which forged-token, key-hygiene, departed-principal,
/// fan-out, foreign-access and silence all have something to say. The
/// `stopping` services go quiet after an hour while `svc-c` goes on.
fn busy_scenario(stopping: &[&str]) -> Vec<Value> {
    let mut v: Vec<Value> = Vec::new();
    for s in stopping {
        v.extend(service_calls(s, T0, T0 + HOUR));
    }
    v.extend(service_calls("svc-c", T0, T0 + 90 * MIN));
    // Issued tokens of an orphaned key, then forged ones from a hosting network.
    for i in 0..6 {
        let (t, tok) = (T0 + i * 10 * MIN, format!("tok-home-{i}"));
        v.push(issued(t - SEC, "cust-home", &tok, "key-orphaned", Some(t + HOUR)));
        v.push(api(t, "cust-home", "211.36.1.2").country("KR").token(&tok, "key-orphaned").into());
    }
    for i in 0..4 {
        let tok = format!("tok-nl-{i}");
        v.push(
            api(T0 + 70 * MIN + i * MIN, "cust-nl", "198.51.100.20").country("NL").token(&tok, "key-orphaned").into(),
        );
    }
    // A departed employee, and a crawl from two hosting addresses.
    v.push(offboarded(T0 + 5 * MIN, "emp-x"));
    v.push(api(T0 + 20 * MIN, "emp-x", "211.36.4.4").kind("employee").into());
    v.push(api(T0 + 20 * MIN, "emp-gone", "211.36.4.5").kind("employee").into());
    for i in 0..80 {
        let ip = if i % 2 == 0 { "198.51.100.7" } else { "203.0.113.9" };
        let subject = format!("subj-{i}");
        v.push(api(T0 + 10 * MIN + i * 8 * SEC, "cust-crawl", ip).kind("customer").read(&subject, &["name"]).into());
    }
    by_time(v)
}

/// Deterministic arrival order: each event delayed by up to `max_delay`.
fn shuffled(events: &[Value], seed: u64, max_delay: Millis) -> Vec<Value> {
    let mut x = seed;
    let mut keyed: Vec<(Millis, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let delay = ((x >> 33) % max_delay as u64) as Millis;
            (e["time"].as_i64().expect("every test event has a time") + delay, i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| events[i].clone()).collect()
}

fn busy_run(events: Vec<Value>) -> (Vec<Alert>, u64) {
    let cfg = busy_cfg();
    let mut h = Harness::all(&cfg);
    h.feed(events);
    let late = h.engine.stats().late;
    (h.finish(), late)
}

/// Runs `events` in order and in five shuffled arrival orders, each event
/// displaced by less than the engine's lateness, and compares the findings.
fn assert_arrival_order_does_not_matter(events: &[Value]) {
    let cfg = busy_cfg();
    let (expected, late) = busy_run(events.to_vec());
    assert_eq!(late, 0);
    assert!(!expected.is_empty());
    for seed in 1..=5 {
        let arrival = shuffled(events, seed, cfg.engine.lateness.0 - SEC);
        assert_ne!(arrival, events, "seed {seed} did not reorder anything");
        let (got, late) = busy_run(arrival);
        assert_eq!(late, 0, "seed {seed}: an event arrived later than the lateness");
        assert_eq!(got, expected, "seed {seed}");
    }
}

#[test]
fn busy_scenario_fires_most_detectors() {
    let (alerts, late) = busy_run(busy_scenario(&["svc-a"]));
    assert_eq!(late, 0);
    let mut names: Vec<&str> = alerts.iter().map(|a| a.detector).collect();
    names.sort_unstable();
    names.dedup();
    for d in ["departed-principal", "fan-out", "foreign-access", "forged-token", "key-hygiene", "silence"] {
        assert!(names.contains(&d), "{d} did not fire: {alerts:#?}");
    }
}

#[test]
fn alerts_do_not_depend_on_arrival_order_within_the_lateness() {
    assert_arrival_order_does_not_matter(&busy_scenario(&["svc-a"]));
}

#[test]
fn simultaneous_silences_do_not_depend_on_arrival_order() {
    assert_arrival_order_does_not_matter(&busy_scenario(&["svc-a", "svc-b"]));
}
