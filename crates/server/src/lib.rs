//! `piiwatch serve`: ingest, detection and the store in one process, over HTTP.
//!
//! - `POST /v1/events` and Splunk HEC (`/services/collector/event`, `/raw`,
//!   `/health`) take OCSF lines; each request is answered only once its
//!   events are durably in the store ([`pipeline::service`]).
//! - The inline check (`/v1/check/…` for Envoy's HTTP external
//!   authorization, `POST /v1/check` for JSON) refuses tokens piiwatch never
//!   saw issued, presented by another principal, expired, signed by a
//!   retired key or held by an offboarded principal ([`check`]); every
//!   denial becomes a finding.
//! - `GET /v1/alerts`, `GET /v1/scope` (recorded in the store's audit chain
//!   with the caller's token name), `/healthz`, `/readyz`, `/metrics`.
//!
//! Callers authenticate with API tokens ([`tokens`]). The library prints
//! nothing; it logs through `tracing`.

mod appendfile;
pub mod check;
mod http;
pub mod listen;
pub mod local;
pub mod tokens;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use model::Directory;
use pipeline::service::Job;

/// What `serve` could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened or read.
    #[error("cannot open store {}", path.display())]
    Store {
        /// The store.
        path: PathBuf,
        /// Why.
        #[source]
        source: store::Error,
    },
    /// The store's secret could not be read.
    #[error("cannot read the secret of store {}", path.display())]
    Secret {
        /// The store.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] listen::TlsError),
    /// The webhook outbox is unreadable.
    #[error(transparent)]
    Outbox(#[from] webhook::Error),
    /// The token file is unreadable or altered.
    #[error(transparent)]
    Tokens(#[from] tokens::Error),
    /// The webhook receivers' file is unreadable or names a bad receiver.
    #[error("{0}")]
    Webhooks(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or a thread could not start, or the server failed.
    #[error("{what}")]
    Runtime {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline stopped with an error (the store failed, say).
    #[error(transparent)]
    Pipeline(#[from] pipeline::Error),
    /// The service thread panicked (a bug).
    #[error("the service thread failed")]
    Panicked,
}

/// Bounds on what clients may make the server hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body as sent (compressed or not), bytes; larger: 413.
    pub max_body: usize,
    /// Largest body once decompressed, bytes; larger: 413.
    pub max_decompressed: usize,
    /// Bodies being parsed or waiting for their commit, bytes; more: 429 (503 on HEC) with `Retry-After`.
    pub max_inflight: usize,
    /// Bodies waiting for the service thread; more: 503 with `Retry-After`.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body: 16 << 20, max_decompressed: 16 << 20, max_inflight: 256 << 20, queue: 256 }
    }
}

/// How to run.
pub struct Options {
    /// The store directory (created if absent).
    pub store: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Detector configuration.
    pub config: detect::Config,
    /// The platform's directory.
    pub directory: Directory,
    /// Its file, read again on SIGHUP or `POST /v1/admin/reload`.
    pub directory_path: Option<PathBuf>,
    /// The detector configuration's file (with its text as `config` was
    /// read from it), read again on reload.
    pub config_path: Option<PathBuf>,
    /// The reader (data map, line bound).
    pub reader: ingest::Reader,
    /// Where quarantined lines go (appended).
    pub quarantine: PathBuf,
    /// Bounds.
    pub limits: Limits,
    /// The inline check allows a token not yet seen issued for this long after its first sight (0: never).
    pub grace: Duration,
    /// Release events held for reordering after this long without input.
    pub idle_flush: Duration,
    /// Where findings are posted.
    pub webhooks: Vec<webhook::Endpoint>,
    /// More receivers, one spec per line, read again on reload.
    pub webhooks_path: Option<PathBuf>,
    /// Their retry policy.
    pub webhook_policy: webhook::Policy,
    /// Connections: limits, timeouts, TLS.
    pub net: listen::Net,
    /// The inline check's options.
    pub check: CheckOptions,
    /// The breach-notification regimes incidents are clocked by, and the organisation profile.
    pub incidents: Incidents,
    /// Sigma rules run with the built-in detectors (`None`: none).
    pub sigma: Option<std::sync::Arc<sigma::Rules>>,
}

/// What `GET /v1/incidents/{id}` clocks incidents by.
pub struct Incidents {
    /// The regimes (built in, or with a directory's files).
    pub regimes: incident::Regimes,
    /// The organisation profile.
    pub org: incident::Org,
}

/// The inline check's options beyond issuance.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Refuse a source exposed more than this many distinct subjects in the window (0: no limit).
    pub fanout_limit: usize,
    /// The fan-out window.
    pub fanout_window: Duration,
    /// Path prefixes allowed when the check is degraded (the store stopped,
    /// so issuances are no longer learnt); every other route fails closed.
    pub fail_open: Vec<String>,
}

/// A stored finding, for `GET /v1/alerts`.
struct Finding {
    time: i64,
    line: String,
}

/// Denials by (reason, signing key): how many, and the first one's time.
type Denials = std::collections::HashMap<(&'static str, String), (u64, i64)>;

/// Shared by every request.
pub(crate) struct App {
    jobs: Mutex<Option<std::sync::mpsc::SyncSender<Job>>>,
    tokens: tokens::Tokens,
    check: RwLock<check::State>,
    findings: RwLock<Vec<Finding>>,
    /// Denials so far by reason and signing key: how many, and the first's time.
    denials: Mutex<Denials>,
    inflight: AtomicUsize,
    limits: Limits,
    ready: AtomicBool,
    requests: AtomicU64,
    metrics: PrometheusHandle,
    /// Findings to deliver.
    outbox: Arc<webhook::Outbox>,
    /// The receivers in force (the command line's, then the file's).
    webhooks: RwLock<Vec<webhook::Endpoint>>,
    /// The command line's receivers, and the file read again on reload.
    fixed_webhooks: Vec<webhook::Endpoint>,
    webhooks_path: Option<PathBuf>,
    /// A delivery thread per receiver.
    delivery: Mutex<Delivery>,
    /// Held while a reload runs.
    reloading: Mutex<()>,
    /// Routes the check allows when degraded.
    fail_open: Vec<String>,
    /// The engine's state is being rebuilt from the store (not ready yet:
    /// bodies wait behind the replay).
    rebuilding: AtomicBool,
    /// The directory file, for reloads.
    directory_path: Option<PathBuf>,
    /// The detector configuration file, for reloads, and the text in force.
    config_path: Option<PathBuf>,
    config_text: Mutex<Option<String>>,
    /// The store's directory.
    dir: PathBuf,
    /// The last `verify` run through the API, and whether one runs now.
    verify: Mutex<VerifyState>,
    /// Regimes and organisation profile for incidents.
    incidents: Arc<Incidents>,
}

/// The delivery threads, one per receiver, each with its own stop flag.
pub(crate) struct Delivery {
    signing: String,
    policy: webhook::Policy,
    threads: std::collections::HashMap<String, (Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Delivery {
    fn start(&mut self, outbox: &Arc<webhook::Outbox>, endpoint: &webhook::Endpoint) -> std::io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (outbox, endpoint, signing, policy, flag) =
            (Arc::clone(outbox), endpoint.clone(), self.signing.clone(), self.policy, Arc::clone(&stop));
        let name = endpoint.name.clone();
        let handle = std::thread::Builder::new()
            .name("piiwatch-webhook".into())
            .spawn(move || webhook::deliver(&outbox, &endpoint, &signing, policy, &flag))?;
        self.threads.insert(name, (stop, handle));
        Ok(())
    }

    /// Stops a receiver's thread (it ends within its poll, half a second);
    /// what waits for it stays in the outbox.
    fn stop(&mut self, name: &str) {
        if let Some((stop, _handle)) = self.threads.remove(name) {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The receivers: the command line's, then those of `path` (one spec per
/// line, as `--webhook`; blank lines and `#` comments skipped). Two with
/// one name are an error.
fn receivers(fixed: &[webhook::Endpoint], path: Option<&std::path::Path>) -> Result<Vec<webhook::Endpoint>, String> {
    let mut all = fixed.to_vec();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let spec = line.trim();
            if spec.is_empty() || spec.starts_with('#') {
                continue;
            }
            // Not the line itself in the error: a receiver's URL may hold its secret.
            let e = webhook::Endpoint::parse(spec).map_err(|_| {
                format!(
                    "{}:{}: not a webhook receiver (URL, slack:URL or NAME=…, the URL starting with http:// or https://)",
                    path.display(),
                    i + 1
                )
            })?;
            all.push(e);
        }
    }
    let mut names = std::collections::HashSet::new();
    for e in &all {
        if !names.insert(e.name.as_str()) {
            return Err(format!("two webhook receivers are named {} (name them with NAME=URL)", e.name));
        }
    }
    Ok(all)
}

/// `verify` through the API: one at a time, on a thread of its own.
#[derive(Default)]
pub(crate) struct VerifyState {
    pub(crate) running: bool,
    /// The last result, as `piiwatch verify --format json` prints it, with
    /// when it started and how long it took.
    pub(crate) last: Option<serde_json::Value>,
}

impl App {
    /// Starts a verify of what the store has committed (false: one runs already).
    pub(crate) fn start_verify(self: &Arc<Self>) -> Result<bool, String> {
        {
            let mut v = self.verify.lock().map_err(|_| "the server is stopping".to_owned())?;
            if v.running {
                return Ok(false);
            }
            v.running = true;
        }
        let app = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("piiwatch-verify".into()).spawn(move || {
            let started = now_ms();
            let clock = std::time::Instant::now();
            let result = match store::verify(&app.dir) {
                Ok((report, events)) => serde_json::json!({
                    "ok": report.problems.is_empty(), "segments": report.segments, "records": report.records,
                    "acknowledged": report.acknowledged, "events": events,
                    "problems": report.problems, "notes": report.notes,
                }),
                Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
            };
            let seconds = clock.elapsed().as_secs_f64();
            let ok = result["ok"] == true;
            metrics::gauge!("piiwatch_verify_ok").set(if ok { 1.0 } else { 0.0 });
            metrics::gauge!("piiwatch_verify_seconds").set(seconds);
            if ok {
                tracing::info!(seconds, "verify: every hash and link checks");
            } else {
                tracing::error!(result = %result, "verify found damage");
            }
            let mut result = result;
            result["started_time"] = serde_json::json!(started);
            result["seconds"] = serde_json::json!(seconds);
            if let Ok(mut v) = app.verify.lock() {
                v.running = false;
                v.last = Some(result);
            }
        });
        if spawned.is_err() {
            if let Ok(mut v) = self.verify.lock() {
                v.running = false;
            }
            return Err("cannot start a verify thread".into());
        }
        Ok(true)
    }
}

impl App {
    /// Reads the directory and detector configuration files again; if
    /// both are good, the check and the engine use them from now on (a
    /// changed configuration replaces the engine, which replays the store);
    /// if either fails, nothing changes. Returns a summary.
    pub(crate) fn reload(&self) -> Result<String, String> {
        // One reload at a time: a second SIGHUP during a long replay waits for it.
        let _one = self.reloading.lock().map_err(|_| "the server is stopping".to_owned())?;
        let outcome = self.try_reload();
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!("piiwatch_reloads_total", "outcome" => label).increment(1);
        match &outcome {
            Ok(s) => tracing::info!("reloaded: {s}"),
            Err(e) => tracing::error!("reload failed, the previous configuration stays: {e}"),
        }
        outcome
    }

    /// Puts a new list of receivers in force: new ones get findings from
    /// now on, removed ones stop (what waits for them stays in the outbox),
    /// changed ones restart with their new address.
    fn set_receivers(&self, path: &std::path::Path, list: Vec<webhook::Endpoint>) -> Result<String, String> {
        let old = self.webhooks.read().map_err(|_| "the server is stopping".to_owned())?.clone();
        let same =
            |a: &webhook::Endpoint, b: &webhook::Endpoint| a.name == b.name && a.url == b.url && a.format == b.format;
        let added: Vec<webhook::Endpoint> = list.iter().filter(|e| !old.iter().any(|o| same(o, e))).cloned().collect();
        let removed: Vec<String> =
            old.iter().filter(|o| !list.iter().any(|e| same(o, e))).map(|o| o.name.clone()).collect();
        let n = list.len();
        // In force first, so that a finding stored meanwhile is enqueued for a new receiver.
        *self.webhooks.write().map_err(|_| "the server is stopping".to_owned())? = list;
        let stored: Vec<String> =
            self.findings.read().map(|f| f.iter().map(|x| x.line.clone()).collect()).unwrap_or_default();
        self.outbox.reconcile(&added, &stored).map_err(|e| e.to_string())?;
        let mut delivery = self.delivery.lock().map_err(|_| "the server is stopping".to_owned())?;
        for name in &removed {
            delivery.stop(name);
        }
        for e in &added {
            delivery.start(&self.outbox, e).map_err(|e| format!("cannot start a webhook thread: {e}"))?;
        }
        let kept_removed = removed.iter().filter(|r| !added.iter().any(|a| &a.name == *r)).count();
        Ok(format!(
            "webhooks {}: {n} receivers ({} new or changed, {kept_removed} removed)",
            path.display(),
            added.len()
        ))
    }

    fn try_reload(&self) -> Result<String, String> {
        if self.directory_path.is_none() && self.config_path.is_none() && self.webhooks_path.is_none() {
            return Err("no --directory, --config or --webhooks was given: nothing to reload".into());
        }
        // Both read and checked before either is applied.
        let directory = match &self.directory_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Some((path, Directory::parse(&text).map_err(|e| format!("directory {}: {e}", path.display()))?))
            }
            None => None,
        };
        let config = match &self.config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let current = self.config_text.lock().map_err(|_| "the server is stopping".to_owned())?.clone();
                if current.as_deref() == Some(text.as_str()) {
                    None
                } else {
                    let cfg = detect::Config::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
                    detect::detectors::all(&cfg).map_err(|e| format!("config {}: {e}", path.display()))?;
                    Some((path, text, cfg))
                }
            }
            None => None,
        };
        let webhooks = match &self.webhooks_path {
            Some(path) => Some((path, receivers(&self.fixed_webhooks, Some(path))?)),
            None => None,
        };
        let mut summary = Vec::new();
        if let Some((path, list)) = webhooks {
            summary.push(self.set_receivers(path, list)?);
        }
        if let Some((path, directory)) = directory {
            summary.push(format!(
                "directory {}: {} principals, {} keys, {} networks",
                path.display(),
                directory.principals.len(),
                directory.keys.len(),
                directory.networks.len()
            ));
            let jobs = self.jobs.lock().map_err(|_| "the server is stopping".to_owned())?;
            let jobs = jobs.as_ref().ok_or("the server is stopping")?;
            if let Ok(mut c) = self.check.write() {
                c.set_directory(&directory);
            }
            jobs.try_send(Job::Directory(Box::new(directory))).map_err(|_| {
                "the service is busy or stopped; the check uses the new directory, the detectors not yet".to_owned()
            })?;
        }
        match config {
            Some((path, text, cfg)) => {
                let jobs = self.jobs.lock().ok().and_then(|j| j.clone()).ok_or("the server is stopping")?;
                let (tx, rx) = std::sync::mpsc::channel();
                self.rebuilding.store(true, Ordering::SeqCst);
                let started = std::time::Instant::now();
                let sent = jobs.send(Job::Reconfigure(
                    Box::new(cfg),
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                ));
                let outcome = match sent {
                    Ok(()) => rx.recv().unwrap_or_else(|_| Err("the service stopped".into())),
                    Err(_) => Err("the service has stopped".into()),
                };
                self.rebuilding.store(false, Ordering::SeqCst);
                let events = outcome.map_err(|e| format!("config {}: not applied: {e}", path.display()))?;
                if let Ok(mut t) = self.config_text.lock() {
                    *t = Some(text);
                }
                summary.push(format!(
                    "detector configuration {}: a new engine, {events} stored events replayed in {:.1} s",
                    path.display(),
                    started.elapsed().as_secs_f64()
                ));
            }
            None if self.config_path.is_some() => summary.push("detector configuration unchanged".into()),
            None => {}
        }
        Ok(summary.join("; "))
    }
}

/// The process's metrics recorder (one per process: tests start several servers).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("seconds".into()), &seconds)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the server until SIGTERM or SIGINT (or `stop` resolves, for tests),
/// then stops accepting, answers what it acknowledged, stores the last
/// findings and returns. `listening` is called with the bound address once
/// connections are accepted.
pub fn run(
    opts: Options,
    listening: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Options {
        store: dir,
        listen,
        config,
        directory,
        directory_path,
        config_path,
        reader,
        quarantine,
        limits,
        grace,
        idle_flush,
        webhooks: fixed_webhooks,
        webhooks_path,
        webhook_policy,
        net,
        check: check_options,
        incidents,
        sigma,
    } = opts;
    // A bad certificate is a one-line error before anything starts.
    let tls = net.tls.as_ref().map(listen::acceptor).transpose()?;
    let mut st = store::Store::open(&dir, store::Options::default())
        .map_err(|source| Error::Store { path: dir.clone(), source })?;
    let secret = store::Secret::load_existing(&dir.join("secret"))
        .map_err(|source| Error::Secret { path: dir.clone(), source })?;
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut state = check::State::new(secret, &directory, grace_ms);
    if check_options.fanout_limit > 0 {
        state.limit_fanout(
            check_options.fanout_limit,
            i64::try_from(check_options.fanout_window.as_millis()).unwrap_or(i64::MAX),
        );
    }
    let mut findings = Vec::new();
    let rebuild = st.head().records > 0;
    if rebuild {
        // What the check knows and the findings so far, read back.
        let store_err = |source| Error::Store { path: dir.clone(), source };
        store::events_where(
            &dir,
            |b| b.starts_with(br#"{"class":"issuance""#) || b.starts_with(br#"{"class":"offboarding""#),
            |e| state.learn_stored(&e),
        )
        .map_err(store_err)?;
        store::alerts(&dir, |line| {
            if let Ok(text) = std::str::from_utf8(line) {
                findings.push(Finding { time: finding_time(text), line: text.to_owned() });
            }
        })
        .map_err(|source| Error::Store { path: dir.clone(), source })?;
    }
    let tokens = tokens::Tokens::open(&dir)?;
    // Alert delivery: findings stored but not yet enqueued (a crash between
    // the two) are enqueued now; a new receiver gets findings from now on.
    let webhooks = receivers(&fixed_webhooks, webhooks_path.as_deref()).map_err(Error::Webhooks)?;
    let outbox = Arc::new(webhook::Outbox::open(&dir)?);
    let stored: Vec<String> = findings.iter().map(|f: &Finding| f.line.clone()).collect();
    outbox.reconcile(&webhooks, &stored)?;
    drop(stored);
    let signing = webhook::secret(
        &store::Secret::load_existing(&dir.join("secret"))
            .map_err(|source| Error::Secret { path: dir.clone(), source })?,
    );
    let mut delivery = Delivery { signing, policy: webhook_policy, threads: std::collections::HashMap::new() };
    for endpoint in &webhooks {
        delivery
            .start(&outbox, endpoint)
            .map_err(|source| Error::Runtime { what: "cannot start a webhook thread", source })?;
    }
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(limits.queue.max(1));
    let app = Arc::new(App {
        jobs: Mutex::new(Some(jobs_tx)),
        tokens,
        check: RwLock::new(state),
        findings: RwLock::new(findings),
        denials: Mutex::new(std::collections::HashMap::new()),
        inflight: AtomicUsize::new(0),
        limits,
        ready: AtomicBool::new(true),
        outbox: Arc::clone(&outbox),
        webhooks: RwLock::new(webhooks),
        fixed_webhooks,
        webhooks_path,
        delivery: Mutex::new(delivery),
        reloading: Mutex::new(()),
        fail_open: check_options.fail_open,
        rebuilding: AtomicBool::new(false),
        directory_path,
        config_text: Mutex::new(config_path.as_ref().and_then(|p| std::fs::read_to_string(p).ok())),
        config_path,
        dir: dir.clone(),
        verify: Mutex::new(VerifyState::default()),
        incidents: Arc::new(incidents),
        requests: AtomicU64::new(0),
        metrics: metrics_handle(),
    });
    let service = {
        let app = Arc::clone(&app);
        let opts = pipeline::service::ServiceOptions {
            config,
            directory,
            reader,
            quarantine,
            idle_flush,
            group_bytes: 32 << 20,
            stored_findings: app
                .findings
                .read()
                .map(|f| f.iter().map(|x| x.line.clone()).collect())
                .unwrap_or_default(),
            sigma,
        };
        std::thread::Builder::new()
            .name("piiwatch-service".into())
            .spawn(move || {
                let result = service_thread(&app, opts, &mut st, jobs_rx);
                app.ready.store(false, Ordering::SeqCst);
                // The index is built on its own thread: wait for it.
                let finished = st.finish();
                result?;
                finished.map_err(|source| Error::Store { path: st.dir().to_owned(), source })
            })
            .map_err(|source| Error::Runtime { what: "cannot start the service thread", source })?
    };
    if rebuild {
        rebuild_state(&app, &dir)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("piiwatch-http")
        .build()
        .map_err(|source| Error::Runtime { what: "cannot start the runtime", source })?;
    let served = rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.map_err(|source| Error::Listen { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: listen, source })?;
        let upkeep = {
            let handle = app.metrics.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    handle.run_upkeep();
                }
            })
        };
        let hup = {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    let app = Arc::clone(&app);
                    let _ = tokio::task::spawn_blocking(move || app.reload()).await;
                }
            })
        };
        // CLI commands on this machine reach the server through this file
        // while it holds the store (`local`).
        let cert = net.tls.as_ref().map(|t| t.cert.clone());
        match app
            .tokens
            .local()
            .map_err(|e| e.to_string())
            .and_then(|token| local::advertise(&dir, addr, cert.as_deref(), &token).map_err(|e| e.to_string()))
        {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot write serve.json: CLI queries of this store wait until it stops")
            }
        }
        listening(addr);
        tracing::info!(%addr, "listening");
        let router = http::router(Arc::clone(&app));
        listen::serve(listener, router, &net, tls, shutdown(stop)).await;
        upkeep.abort();
        hup.abort();
        Ok::<_, Error>(())
    });
    local::withdraw(&dir);
    // No more bodies: the service thread commits what it has and ends.
    if let Ok(mut jobs) = app.jobs.lock() {
        jobs.take();
    }
    let service = service.join().map_err(|_| Error::Panicked)?;
    // What is not delivered stays in the outbox for the next start.
    let threads = app.delivery.lock().map(|mut d| std::mem::take(&mut d.threads)).unwrap_or_default();
    for (stop, _) in threads.values() {
        stop.store(true, Ordering::SeqCst);
    }
    for (_, (_, handle)) in threads {
        let _ = handle.join();
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    served?;
    service
}

/// Replays the store's events through the engine (before any request is
/// taken), so detection goes on where it was, and records in the audit
/// chain that pseudonyms were resolved in memory to do it.
fn rebuild_state(app: &Arc<App>, dir: &std::path::Path) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let Some(jobs) = app.jobs.lock().ok().and_then(|j| j.clone()) else { return Ok(()) };
    app.rebuilding.store(true, Ordering::SeqCst);
    let (events, resolved) = pipeline::replay::lines(dir, |chunk| {
        // Blocks while the service thread catches up: nothing else is queued yet.
        let _ = jobs.send(Job::Replay(std::mem::take(chunk)));
    })
    .map_err(|source| Error::Store { path: dir.to_owned(), source })?;
    let query =
        format!("detection state rebuilt from {events} stored events; {resolved} pseudonyms resolved in memory");
    tracing::info!(events, "replaying the store's events to rebuild the detection state");
    let done = Arc::clone(app);
    let _ = jobs.send(Job::WithStore(Box::new(move |st: &mut store::Store| {
        // Runs after every replay job: the engine is where it was.
        done.rebuilding.store(false, Ordering::SeqCst);
        metrics::gauge!("piiwatch_restart_replayed_events").set(events as f64);
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "detection state rebuilt; ready");
        let entry = store::Audit::now("serve (restart)", query, events, 0, true);
        if let Err(e) = st.audit(&entry) {
            tracing::error!(error = %e, "cannot record the state rebuild in the audit chain");
        }
    })));
    Ok(())
}

/// The service thread: the pipeline over the bodies the handlers send.
fn service_thread(
    app: &Arc<App>,
    opts: pipeline::service::ServiceOptions,
    st: &mut store::Store,
    jobs: std::sync::mpsc::Receiver<Job>,
) -> Result<(), Error> {
    let learn_app = Arc::clone(app);
    let accesses = app.check.read().is_ok_and(|s| s.wants_accesses());
    let mut on_event = move |e: &model::Event<'_>, symbols: &model::Symbols| {
        let wanted = match e {
            model::Event::Issuance(_) | model::Event::Offboarding(_) => true,
            model::Event::Access(_) => accesses,
            model::Event::Other(_) => false,
        };
        if wanted && let Ok(mut s) = learn_app.check.write() {
            s.learn(e, symbols);
        }
    };
    let mut on_findings = |lines: Vec<String>| {
        for line in &lines {
            let analytic = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["finding_info"]["analytic"]["name"].as_str().map(str::to_owned))
                .unwrap_or_default();
            metrics::counter!("piiwatch_findings_total", "analytic" => analytic).increment(1);
        }
        let receivers = app.webhooks.read().map(|w| w.clone()).unwrap_or_default();
        if let Err(e) = app.outbox.enqueue(&receivers, &lines) {
            // Made good at the next start (the findings are in the ledger).
            tracing::error!(error = %e, "cannot enqueue findings for delivery");
        }
        if let Ok(mut f) = app.findings.write() {
            f.extend(lines.into_iter().map(|line| Finding { time: finding_time(&line), line }));
        }
    };
    let dir = st.dir().to_owned();
    let mut commits = 0u64;
    let mut on_commit = |took: Duration, records: u64| {
        metrics::histogram!("piiwatch_store_commit_seconds").record(took.as_secs_f64());
        metrics::gauge!("piiwatch_store_records").set(records as f64);
        commits += 1;
        // The ledger's size on disk, now and then (a directory listing).
        if commits % 64 == 1 {
            metrics::gauge!("piiwatch_store_ledger_bytes").set(ledger_bytes(&dir) as f64);
        }
    };
    let warn = |w: &str| tracing::warn!("{w}");
    let hooks = pipeline::service::ServiceHooks {
        on_event: &mut on_event,
        on_findings: &mut on_findings,
        on_commit: &mut on_commit,
        warn: &warn,
    };
    let report = pipeline::service::serve(opts, st, jobs, hooks)?;
    tracing::info!(bodies = report.bodies, stored = report.stored, quarantined = report.quarantined, "service stopped");
    Ok(())
}

/// Bytes of the ledger's segments.
fn ledger_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("ledger"))
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// A finding line's `time`.
fn finding_time(line: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["time"].as_i64()).unwrap_or(0)
}

/// Resolves on SIGTERM, SIGINT or `stop`.
async fn shutdown(stop: impl std::future::Future<Output = ()> + Send + 'static) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = stop => {}
    }
    tracing::info!("stopping: no new connections; answering what is in flight");
}
