//! Routes and handlers.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use pipeline::service::{Accepted, Job};
use serde::Deserialize;
use serde_json::json;

use crate::check::{Decision, Presented};
use crate::tokens::{Caller, Role};
use crate::{App, now_ms};

type AppState = State<Arc<App>>;

pub(crate) fn router(app: Arc<App>) -> Router {
    let max_body = app.limits.max_body;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/events", post(events))
        .route("/services/collector", post(hec_event))
        .route("/services/collector/event", post(hec_event))
        .route("/services/collector/event/1.0", post(hec_event))
        .route("/services/collector/raw", post(hec_raw))
        .route("/services/collector/raw/1.0", post(hec_raw))
        .route("/services/collector/health", get(hec_health))
        .route("/services/collector/health/1.0", get(hec_health))
        .route("/v1/alerts", get(alerts))
        .route("/v1/scope", get(scope).post(scope_full))
        .route("/v1/audit", post(audit))
        .route("/v1/store", get(store_status))
        .route("/v1/incidents", get(incidents_list).post(incident_open))
        .route("/v1/incidents/{id}", get(incident_show).post(incident_change))
        .route("/v1/verify", get(verify_status).post(verify_start))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/webhooks", get(webhooks))
        .route("/v1/webhooks/replay", post(webhooks_replay))
        .route("/v1/check", post(check_json))
        .route("/v1/check/", any(check_envoy_root))
        .route("/v1/check/{*path}", any(check_envoy))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// An answer with a JSON body.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An error as JSON: `{"error": "..."}`.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    answer(status, json!({ "error": msg.into() }))
}

fn retry_after(mut r: Response) -> Response {
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// `Authorization: SCHEME TOKEN`'s token, when the scheme matches.
fn credential<'h>(headers: &'h HeaderMap, name: header::HeaderName, scheme: &str) -> Option<&'h str> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    let (s, t) = v.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(t.trim())
}

/// Why a caller was refused.
enum Denied {
    Missing,
    Unknown,
    Role(Role),
}

fn authorize(app: &App, token: Option<&str>, need: Role) -> Result<Caller, Denied> {
    let token = token.filter(|t| !t.is_empty()).ok_or(Denied::Missing)?;
    let caller = app.tokens.caller(token).ok_or(Denied::Unknown)?;
    if caller.role.may(need) { Ok(caller) } else { Err(Denied::Role(caller.role)) }
}

fn refused(d: Denied, need: Role) -> Response {
    match d {
        Denied::Missing => error(StatusCode::UNAUTHORIZED, "missing credentials: send Authorization: Bearer TOKEN"),
        Denied::Unknown => error(StatusCode::UNAUTHORIZED, "unknown or revoked token"),
        Denied::Role(r) => error(
            StatusCode::FORBIDDEN,
            format!("a token of role {} may not do this (needs {})", r.as_str(), need.as_str()),
        ),
    }
}

/// Bearer auth for the JSON API.
fn bearer(app: &App, headers: &HeaderMap, need: Role) -> Result<Caller, Response> {
    authorize(app, credential(headers, header::AUTHORIZATION, "Bearer"), need).map_err(|d| refused(d, need))
}

async fn readyz(State(app): AppState) -> Response {
    if app.rebuilding.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: rebuilding the detection state from the store\n").into_response()
    } else if app.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the service thread has stopped\n").into_response()
    }
}

/// The OpenAPI document of every route here (a test requests each path it names).
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn metrics(State(app): AppState) -> Response {
    metrics::gauge!("piiwatch_inflight_bytes").set(app.inflight.load(Ordering::Relaxed) as f64);
    if let Ok(c) = app.check.read() {
        metrics::gauge!("piiwatch_check_tokens_known").set(c.issued() as f64);
    }
    if let Ok(f) = app.findings.read() {
        metrics::gauge!("piiwatch_findings_stored").set(f.len() as f64);
    }
    let mut r = app.metrics.render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// Why a body could not be taken.
enum Refusal {
    /// Over a size bound.
    TooLarge(String),
    /// Not decodable.
    Bad(String),
    /// Unsupported content encoding.
    Encoding(String),
    /// Over the in-flight bound.
    Busy,
    /// The queue is full or the service thread stopped.
    Unavailable(String),
}

/// The body, decompressed when `Content-Encoding: gzip`, within the bound.
fn decode(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, Refusal> {
    let max = app.limits.max_decompressed;
    let enc = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
    if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
        let mut dec = flate2::read::MultiGzDecoder::new(&body[..]).take(max as u64 + 1);
        dec.read_to_end(&mut out).map_err(|e| Refusal::Bad(format!("body is not valid gzip: {e}")))?;
        if out.len() > max {
            return Err(Refusal::TooLarge(format!("body decompresses to more than {max} bytes")));
        }
        Ok(out)
    } else if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        if body.len() > max {
            return Err(Refusal::TooLarge(format!("body is larger than {max} bytes")));
        }
        Ok(body.to_vec())
    } else {
        Err(Refusal::Encoding(format!("content encoding {enc:?} is not supported (use gzip or none)")))
    }
}

/// Releases in-flight bytes when the request ends, however it ends.
struct Inflight<'a>(&'a App, usize);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Hands the lines to the service thread and waits until they are durable.
async fn submit(app: &Arc<App>, lines: Vec<u8>) -> Result<Accepted, Refusal> {
    let n = lines.len();
    let before = app.inflight.fetch_add(n, Ordering::SeqCst);
    let _guard = Inflight(app, n);
    if before + n > app.limits.max_inflight && before > 0 {
        metrics::counter!("piiwatch_requests_refused_total", "why" => "inflight").increment(1);
        return Err(Refusal::Busy);
    }
    let started = Instant::now();
    let id = app.requests.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job::Lines { name: format!("http:{id}"), body: lines, reply: Box::new(move |r| drop(tx.send(r))) };
    let sent = match app.jobs.lock() {
        Ok(jobs) => match jobs.as_ref() {
            Some(j) => j.try_send(job),
            None => return Err(Refusal::Unavailable("the server is stopping".into())),
        },
        Err(_) => return Err(Refusal::Unavailable("the server is stopping".into())),
    };
    match sent {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => {
            metrics::counter!("piiwatch_requests_refused_total", "why" => "queue").increment(1);
            return Err(Refusal::Unavailable("too many requests are waiting for the store".into()));
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return Err(Refusal::Unavailable("the store has stopped accepting events".into()));
        }
    }
    match rx.await {
        Ok(Ok(a)) => {
            metrics::counter!("piiwatch_events_total").increment(a.accepted);
            metrics::counter!("piiwatch_quarantined_total").increment(a.quarantined);
            metrics::histogram!("piiwatch_ingest_ack_seconds").record(started.elapsed().as_secs_f64());
            Ok(a)
        }
        Ok(Err(why)) => Err(Refusal::Unavailable(why.0)),
        Err(_) => Err(Refusal::Unavailable("the store stopped before this request was stored".into())),
    }
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::TooLarge(m) => error(StatusCode::PAYLOAD_TOO_LARGE, m),
        Refusal::Bad(m) => error(StatusCode::BAD_REQUEST, m),
        Refusal::Encoding(m) => error(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        Refusal::Busy => retry_after(error(StatusCode::TOO_MANY_REQUESTS, "too many bytes in flight; retry later")),
        Refusal::Unavailable(m) => retry_after(error(StatusCode::SERVICE_UNAVAILABLE, m)),
    }
}

async fn events(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Ingest) {
        return r;
    }
    let lines = match decode(&app, &headers, &body) {
        Ok(l) => l,
        Err(r) => return refusal(r),
    };
    match submit(&app, lines).await {
        Ok(a) => answer(StatusCode::OK, json!({ "accepted": a.accepted, "quarantined": a.quarantined })),
        Err(r) => refusal(r),
    }
}

// ---- Splunk HEC ----

fn hec(status: StatusCode, text: &str, code: u32) -> Response {
    answer(status, json!({ "text": text, "code": code }))
}

fn hec_auth(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let token = credential(headers, header::AUTHORIZATION, "Splunk")
        .or_else(|| credential(headers, header::AUTHORIZATION, "Bearer"));
    if token.is_none() && headers.contains_key(header::AUTHORIZATION) {
        return Err(hec(StatusCode::UNAUTHORIZED, "Invalid authorization", 3));
    }
    authorize(app, token, Role::Ingest).map(drop).map_err(|d| match d {
        Denied::Missing => hec(StatusCode::UNAUTHORIZED, "Token is required", 2),
        Denied::Unknown => hec(StatusCode::UNAUTHORIZED, "Invalid token", 4),
        Denied::Role(_) => hec(StatusCode::FORBIDDEN, "Token may not send events (needs role ingest)", 4),
    })
}

fn hec_refusal(r: Refusal) -> Response {
    match r {
        Refusal::TooLarge(m) => hec(StatusCode::PAYLOAD_TOO_LARGE, &m, 27),
        Refusal::Bad(m) | Refusal::Encoding(m) => hec(StatusCode::BAD_REQUEST, &m, 6),
        Refusal::Busy | Refusal::Unavailable(_) => {
            retry_after(hec(StatusCode::SERVICE_UNAVAILABLE, "Server is busy", 9))
        }
    }
}

async fn hec_raw(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = hec_auth(&app, &headers) {
        return r;
    }
    let lines = match decode(&app, &headers, &body) {
        Ok(l) => l,
        Err(r) => return hec_refusal(r),
    };
    if lines.iter().all(u8::is_ascii_whitespace) {
        return hec(StatusCode::BAD_REQUEST, "No data", 5);
    }
    match submit(&app, lines).await {
        Ok(_) => hec(StatusCode::OK, "Success", 0),
        Err(r) => hec_refusal(r),
    }
}

async fn hec_event(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = hec_auth(&app, &headers) {
        return r;
    }
    let decoded = match decode(&app, &headers, &body) {
        Ok(l) => l,
        Err(r) => return hec_refusal(r),
    };
    let lines = match ingest::hec::lines(&decoded) {
        Ok(l) => l,
        Err(r) if r.code == 5 => return hec(StatusCode::BAD_REQUEST, r.text, r.code),
        Err(r) => {
            let body = json!({ "text": r.text, "code": r.code, "invalid-event-number": r.event });
            return answer(StatusCode::BAD_REQUEST, body);
        }
    };
    match submit(&app, lines).await {
        Ok(_) => hec(StatusCode::OK, "Success", 0),
        Err(r) => hec_refusal(r),
    }
}

async fn hec_health(State(app): AppState) -> Response {
    let busy = app.inflight.load(Ordering::Relaxed) >= app.limits.max_inflight;
    if !app.ready.load(Ordering::SeqCst) || busy {
        retry_after(hec(StatusCode::SERVICE_UNAVAILABLE, "HEC is unhealthy, queues are full", 18))
    } else {
        hec(StatusCode::OK, "HEC is healthy", 17)
    }
}

// ---- findings and scope ----

#[derive(Deserialize)]
struct Since {
    since: Option<i64>,
}

async fn alerts(State(app): AppState, headers: HeaderMap, Query(q): Query<Since>) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Analyst) {
        return r;
    }
    let since = q.since.unwrap_or(i64::MIN);
    let mut body = String::new();
    if let Ok(f) = app.findings.read() {
        for x in f.iter().filter(|x| x.time > since) {
            body.push_str(&x.line);
            body.push('\n');
        }
    }
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

#[derive(Deserialize)]
struct ScopeQuery {
    #[serde(rename = "where")]
    expr: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))
}

/// Runs `work` on the service thread, which holds the store, and awaits its answer.
async fn with_store<T: Send + 'static>(
    app: &App,
    work: impl FnOnce(&mut store::Store) -> T + Send + 'static,
) -> Result<T, Response> {
    let (tx, rx) = tokio::sync::oneshot::channel::<T>();
    let job = move |st: &mut store::Store| {
        let _ = tx.send(work(st));
    };
    let sent = match app.jobs.lock() {
        Ok(jobs) => jobs.as_ref().map(|j| j.try_send(Job::WithStore(Box::new(job)))),
        Err(_) => None,
    };
    match sent {
        Some(Ok(())) => {}
        Some(Err(std::sync::mpsc::TrySendError::Full(_))) => {
            return Err(retry_after(error(StatusCode::SERVICE_UNAVAILABLE, "the store is busy")));
        }
        _ => return Err(retry_after(error(StatusCode::SERVICE_UNAVAILABLE, "the store has stopped"))),
    }
    rx.await.map_err(|_| retry_after(error(StatusCode::SERVICE_UNAVAILABLE, "the store stopped before answering")))
}

/// Who the audit chain records: the token's name, and the person a local
/// command runs for when it says so.
fn recorded_user(caller: &Caller, headers: &HeaderMap) -> String {
    let on_behalf = headers
        .get(crate::local::ON_BEHALF_OF)
        .and_then(|v| v.to_str().ok())
        .map(|u| u.chars().filter(|c| !c.is_control()).take(64).collect::<String>())
        .filter(|u| !u.is_empty());
    match on_behalf {
        Some(u) => format!("token:{} for {u}", caller.name),
        None => format!("token:{}", caller.name),
    }
}

async fn scope(State(app): AppState, headers: HeaderMap, Query(q): Query<ScopeQuery>) -> Response {
    let caller = match bearer(&app, &headers, Role::Analyst) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let from = match q.from.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(m) => return error(StatusCode::BAD_REQUEST, format!("from: {m}")),
    };
    let to = match q.to.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(m) => return error(StatusCode::BAD_REQUEST, format!("to: {m}")),
    };
    if let Some(Err(e)) = q.expr.as_deref().map(scope::parse) {
        return error(StatusCode::BAD_REQUEST, format!("where: {e}"));
    }
    let request = scope::Request { expr: q.expr, from, to, ..scope::Request::default() };
    match run_scope(&app, request, recorded_user(&caller, &headers)).await {
        Ok(outcome) => answer(StatusCode::OK, serde_json::to_value(&outcome.summary).unwrap_or_default()),
        Err(r) => r,
    }
}

/// `POST /v1/scope`: the CLI's whole scope (an expression or a stored
/// finding, re-identification for an admin), answered as the CLI would.
async fn scope_full(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match bearer(&app, &headers, Role::Analyst) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let request: scope::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a scope request: {e}")),
    };
    if request.reidentify && !caller.role.may(Role::Admin) {
        return refused(Denied::Role(caller.role), Role::Admin);
    }
    match run_scope(&app, request, recorded_user(&caller, &headers)).await {
        Ok(outcome) => answer(StatusCode::OK, serde_json::to_value(&outcome).unwrap_or_default()),
        Err(r) => r,
    }
}

async fn run_scope(app: &App, request: scope::Request, user: String) -> Result<scope::Outcome, Response> {
    let done = with_store(app, move |st| scope::request::run(st, &request, "scope (http)", Some(user))).await?;
    done.map_err(|e| match e {
        scope::RunError::Usage(m) => error(StatusCode::BAD_REQUEST, format!("where: {m}")),
        scope::RunError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })
}

/// `GET /v1/incidents` (analyst): every incident, in order of opening.
async fn incidents_list(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Analyst) {
        return r;
    }
    let dir = app.dir.clone();
    match tokio::task::spawn_blocking(move || incident::Incidents::load(&dir)).await {
        Ok(Ok(all)) => {
            let list: Vec<serde_json::Value> = all.list().iter().map(incident::Incident::summary).collect();
            answer(StatusCode::OK, serde_json::Value::Array(list))
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the incident reader failed"),
    }
}

/// The answer to an incident operation that failed.
fn incident_error(e: incident::Error) -> Response {
    match e {
        incident::Error::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        incident::Error::Usage(m) => error(StatusCode::BAD_REQUEST, m),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ShowQuery {
    now: Option<String>,
}

/// `GET /v1/incidents/{id}` (analyst): the incident with its scope (recorded
/// in the audit chain with the token's name) and each regime's clock, by
/// the regimes and organisation profile the server was started with.
async fn incident_show(
    State(app): AppState,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let caller = match bearer(&app, &headers, Role::Analyst) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = match q.now.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(incident::now_ms),
        Err(m) => return error(StatusCode::BAD_REQUEST, format!("now: {m}")),
    };
    let user = recorded_user(&caller, &headers);
    let rules = Arc::clone(&app.incidents);
    match with_store(&app, move |st| incident::show(st, &id, &rules.regimes, &rules.org, now, &user)).await {
        Ok(Ok(shown)) => answer(StatusCode::OK, serde_json::to_value(&shown).unwrap_or_default()),
        Ok(Err(e)) => incident_error(e),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct OpenBody {
    from_alert: String,
    #[serde(default)]
    title: Option<String>,
}

/// `POST /v1/incidents` (analyst): opens an incident from a stored finding; `{"id": ...}`.
async fn incident_open(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match bearer(&app, &headers, Role::Analyst) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let b: OpenBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not an incident to open: {e}")),
    };
    let user = recorded_user(&caller, &headers);
    let work =
        move |st: &mut store::Store| incident::open(st, &b.from_alert, b.title.as_deref(), &user, incident::now_ms());
    match with_store(&app, work).await {
        Ok(Ok(inc)) => answer(StatusCode::OK, serde_json::json!({"id": inc.id, "alerts": inc.alerts})),
        Ok(Err(e)) => incident_error(e),
        Err(r) => r,
    }
}

/// `POST /v1/incidents/{id}` (analyst): records one change (the JSON of
/// `incident::Change`, e.g. `{"aware": {"time": MS}}`) with the token's name.
async fn incident_change(
    State(app): AppState,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let caller = match bearer(&app, &headers, Role::Analyst) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let change: incident::Change = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not an incident change: {e}")),
    };
    let user = recorded_user(&caller, &headers);
    let work = move |st: &mut store::Store| incident::change(st, &id, change, &user, incident::now_ms());
    match with_store(&app, work).await {
        Ok(Ok(inc)) => answer(
            StatusCode::OK,
            serde_json::json!({"id": inc.id, "state": inc.state(), "alerts": inc.alerts, "aware_time": inc.aware_time}),
        ),
        Ok(Err(e)) => incident_error(e),
        Err(r) => r,
    }
}

/// `GET /v1/store` (analyst): the ledger's head, the latest signed
/// checkpoint, and the last verify run through the API.
async fn store_status(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Analyst) {
        return r;
    }
    let head = match with_store(&app, |st| st.head()).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let checkpoint =
        std::fs::read_to_string(app.dir.join(store::checkpoint::MERKLE_DIR).join(store::checkpoint::LATEST_FILE)).ok();
    let bytes = std::fs::read_dir(app.dir.join("ledger"))
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum::<u64>())
        .unwrap_or(0);
    let verify = app.verify.lock().map(|v| json!({ "running": v.running, "last": v.last })).unwrap_or_default();
    answer(
        StatusCode::OK,
        json!({
            "records": head.records,
            "segments": head.segment,
            "head_hash": hex::encode(head.hash),
            "ledger_bytes": bytes,
            "checkpoint": checkpoint,
            "ready": app.ready.load(Ordering::SeqCst) && !app.rebuilding.load(Ordering::SeqCst),
            "verify": verify,
        }),
    )
}

/// `GET /v1/verify` (analyst): whether a verify runs, and the last result.
async fn verify_status(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Analyst) {
        return r;
    }
    match app.verify.lock() {
        Ok(v) => answer(StatusCode::OK, json!({ "running": v.running, "last": v.last })),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"),
    }
}

/// `POST /v1/verify` (admin): checks every hash and link of what the store
/// has committed, on a thread of its own, beside the writer (202; poll
/// `GET /v1/verify`).
async fn verify_start(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Admin) {
        return r;
    }
    match app.start_verify() {
        Ok(started) => answer(StatusCode::ACCEPTED, json!({ "started": started, "running": true })),
        Err(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// A query done outside the server, to record in the audit chain.
#[derive(Deserialize)]
struct AuditBody {
    command: String,
    query: String,
    #[serde(default)]
    events: u64,
    #[serde(default)]
    subjects: u64,
    #[serde(default)]
    reidentified: bool,
}

/// `POST /v1/audit` (admin): records a query that read the store without
/// the server (an export of the ledger), with the caller's token name.
async fn audit(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match bearer(&app, &headers, Role::Admin) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let b: AuditBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not an audit record: {e}")),
    };
    let mut entry = store::Audit::now(&b.command, b.query, b.events, b.subjects, b.reidentified);
    entry.user = recorded_user(&caller, &headers);
    match with_store(&app, move |st| st.audit(&entry).map(|h| h.records)).await {
        Ok(Ok(records)) => answer(StatusCode::OK, json!({ "recorded": true, "records": records })),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot record the query in the store: {e}")),
        Err(r) => r,
    }
}

async fn reload(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Admin) {
        return r;
    }
    let app2 = Arc::clone(&app);
    match tokio::task::spawn_blocking(move || app2.reload()).await {
        Ok(Ok(summary)) => answer(StatusCode::OK, json!({ "reloaded": summary })),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, format!("{why}; the previous configuration stays")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "reload failed"),
    }
}

// ---- alert delivery ----

async fn webhooks(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Admin) {
        return r;
    }
    let receivers: Vec<_> = app
        .webhooks
        .read()
        .map(|w| w.iter().map(|e| json!({ "name": e.name, "format": e.format })).collect())
        .unwrap_or_default();
    answer(
        StatusCode::OK,
        json!({ "receivers": receivers, "pending": app.outbox.pending(), "dead": app.outbox.dead() }),
    )
}

#[derive(Deserialize, Default)]
struct Replay {
    #[serde(default)]
    ids: Vec<String>,
}

async fn webhooks_replay(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = bearer(&app, &headers, Role::Admin) {
        return r;
    }
    let req: Replay = if body.iter().all(u8::is_ascii_whitespace) {
        Replay::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not {{\"ids\": [...]}}: {e}")),
        }
    };
    match app.outbox.replay(&req.ids) {
        Ok(n) => answer(StatusCode::OK, json!({ "replayed": n })),
        Err(crate::webhook::Error::Unknown(id)) => error(StatusCode::NOT_FOUND, format!("no dead message {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

// ---- the inline check ----

/// The check caller's own credential: `x-piiwatch-auth`.
fn check_caller(app: &App, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = headers.get("x-piiwatch-auth").and_then(|v| v.to_str().ok()).map(str::trim);
    authorize(app, token, Role::Check).map_err(|d| match d {
        Denied::Missing => error(StatusCode::UNAUTHORIZED, "missing credentials: send x-piiwatch-auth: TOKEN"),
        other => refused(other, Role::Check),
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// What an Envoy check request presents: the end user's JWT (or the
/// `x-piiwatch-*` headers, which take precedence), the first
/// `x-forwarded-for` address, and the original method and path.
fn presented(headers: &HeaderMap, method: &Method, path: &str) -> Presented {
    let (mut token, mut key, mut principal) = (None, None, None);
    if let Some(jwt) = credential(headers, header::AUTHORIZATION, "Bearer")
        && let Some((t, k, p)) = crate::check::from_jwt(jwt)
    {
        (token, key, principal) = (t, k, p);
    }
    Presented {
        token: header_str(headers, "x-piiwatch-token").or(token),
        key: header_str(headers, "x-piiwatch-key").or(key),
        principal: header_str(headers, "x-piiwatch-principal").or(principal),
        ip: header_str(headers, "x-forwarded-for").and_then(|v| v.split(',').next().map(|s| s.trim().to_owned())),
        operation: Some(format!("{method} /{}", path.trim_start_matches('/'))),
        time: header_str(headers, "x-piiwatch-time").and_then(|t| t.parse().ok()),
    }
}

fn decide(app: &App, p: &Presented) -> Decision {
    let started = Instant::now();
    let now = now_ms();
    let d = if app.ready.load(Ordering::Relaxed) {
        let read = app.check.read().ok().and_then(|s| s.decide_read(p, now));
        match read {
            Some(d) => d,
            None => match app.check.write() {
                Ok(mut s) => s.decide(p, now),
                Err(_) => crate::check::degraded(p.operation.as_deref(), &app.fail_open),
            },
        }
    } else {
        // The store stopped: issuances are no longer learnt.
        crate::check::degraded(p.operation.as_deref(), &app.fail_open)
    };
    let decision = if d.allow { "allow" } else { "deny" };
    metrics::counter!("piiwatch_check_decisions_total", "decision" => decision, "reason" => d.reason).increment(1);
    metrics::histogram!("piiwatch_check_seconds").record(started.elapsed().as_secs_f64());
    if !d.allow {
        denied(app, p, d);
    }
    d
}

/// Denials become findings, one per reason and signing key (a forger
/// mints a fresh token id per request; the key is what they share): the
/// first denial creates it, updates follow at 10, 100, 1000 … denials.
fn denied(app: &App, p: &Presented, d: Decision) {
    let token = p.token.clone().unwrap_or_default();
    let key = p.key.clone().unwrap_or_default();
    let time = p.time.unwrap_or_else(now_ms);
    let (count, first_seen) = match app.denials.lock() {
        Ok(mut m) => {
            let c = m.entry((d.reason, key.clone())).or_insert((0, time));
            c.0 += 1;
            c.1 = c.1.min(time);
            *c
        }
        Err(_) => return,
    };
    let mut c = count;
    while c % 10 == 0 {
        c /= 10;
    }
    if c != 1 {
        return;
    }
    let mut observables: Vec<(&'static str, String)> = Vec::new();
    if !token.is_empty() {
        observables.push(("actor.session.uid", token.clone()));
    }
    if !key.is_empty() {
        observables.push(("actor.session.issuer", key.clone()));
    }
    if let Some(w) = &p.principal {
        observables.push(("actor.user.uid", w.clone()));
    }
    if let Some(ip) = &p.ip {
        observables.push(("src_endpoint.ip", ip.clone()));
    }
    let uid = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("inline-check\n{}\n{key}", d.reason).as_bytes());
        format!("inline-check-{}", hex::encode(&h[..12]))
    };
    let severity = match d.reason {
        "token_not_issued" | "principal_mismatch" | "key_mismatch" => 5,
        _ => 3,
    };
    let alert = detect::Alert {
        uid,
        activity: if count == 1 { detect::alert::Activity::Create } else { detect::alert::Activity::Update },
        detector: "inline-check",
        analytic: detect::alert::AnalyticKind::Rule,
        title: format!("Inline check refused {count} request(s): {}", d.reason.replace('_', " ")),
        desc: format!(
            "The gateway asked piiwatch whether a request may go on; piiwatch refused it ({}), so no data left. \
             Refused {count} time(s) so far for this reason{}; the indicators are the latest refused request's.",
            d.reason,
            if key.is_empty() { String::new() } else { format!(" and signing key {key}") }
        ),
        severity,
        time,
        reported_at: time,
        first_seen,
        last_seen: time,
        count,
        observables,
        posture: false,
        rule: None,
        details: json!({ "reason": d.reason, "operation": p.operation }),
    };
    if let Ok(jobs) = app.jobs.lock()
        && let Some(j) = jobs.as_ref()
        && j.try_send(Job::Finding(alert.to_ocsf().to_string())).is_err()
    {
        metrics::counter!("piiwatch_check_findings_dropped_total").increment(1);
    }
}

fn envoy_answer(d: Decision) -> Response {
    let status = if d.allow { StatusCode::OK } else { StatusCode::FORBIDDEN };
    let mut r = (status, if d.allow { "" } else { "denied by piiwatch\n" }).into_response();
    r.headers_mut().insert("x-piiwatch-reason", HeaderValue::from_static(d.reason));
    r
}

async fn check_envoy(State(app): AppState, method: Method, headers: HeaderMap, Path(path): Path<String>) -> Response {
    if let Err(r) = check_caller(&app, &headers) {
        return r;
    }
    envoy_answer(decide(&app, &presented(&headers, &method, &path)))
}

async fn check_envoy_root(State(app): AppState, method: Method, headers: HeaderMap) -> Response {
    if let Err(r) = check_caller(&app, &headers) {
        return r;
    }
    envoy_answer(decide(&app, &presented(&headers, &method, "/")))
}

async fn check_json(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = check_caller(&app, &headers) {
        return r;
    }
    let p: Presented = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not a check request: {e}")),
    };
    let d = decide(&app, &p);
    answer(StatusCode::OK, json!({ "allow": d.allow, "reason": d.reason }))
}
