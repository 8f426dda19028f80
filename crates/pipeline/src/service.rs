//! The pipeline as a long-running service (`piiwatch serve`): bodies of
//! OCSF lines arrive as [`Job`]s, are parsed, stored and detected on as
//! `ingest --follow` would, and each is answered only once its events are
//! durably in the store (group commit: every body waiting when a commit
//! starts is made durable by that one commit).
//!
//! The thread that calls [`serve`] owns the store and the reader; the
//! engine runs on a thread of its own, as in [`crate::run`]. Findings are
//! stored at the commit after the engine reports them, and handed to the
//! caller (as stored: pseudonymised) once that commit has returned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use detect::{Config, Ev, World};
use ingest::{QuarantineFile, Reader};
use model::{Directory, Marks, Symbols};

use crate::{BATCH, Error, Feeder, Ingesting, Msg, OnEvent, PerDetector, Warn, Wires, detect_thread};

/// What one body of lines came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Accepted {
    /// Events stored (every line that parsed, of any class).
    pub accepted: u64,
    /// Lines quarantined.
    pub quarantined: u64,
}

/// Why a body was not stored.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Called once with a body's outcome.
pub type Reply = Box<dyn FnOnce(Result<Accepted, Refused>) + Send>;

/// Work for the service thread.
pub enum Job {
    /// Lines to store and detect on; `reply` is called once they are durable.
    Lines {
        /// How quarantine records name this body (`http:REQUEST-ID`, say).
        name: String,
        /// The lines, as sent (decompressed).
        body: Vec<u8>,
        /// Called after the commit that made them durable, or with the failure.
        reply: Reply,
    },
    /// A finding made outside the engine (an OCSF Detection Finding line),
    /// stored at the next commit and handed back with the engine's.
    Finding(String),
    /// Work on the store between commits (a query and its audit record),
    /// on the service thread, which owns the store.
    WithStore(Box<dyn FnOnce(&mut store::Store) + Send>),
    /// A newer directory export: the events read after it are judged
    /// against it (those before, against the old one).
    Directory(Box<Directory>),
    /// Lines rebuilt from the store's events, replayed through the engine
    /// to rebuild its state after a restart: not stored again, and the
    /// findings they report again not stored twice (see
    /// [`ServiceOptions::stored_findings`]).
    Replay(Vec<u8>),
    /// A new detector configuration (already checked to build an engine):
    /// what was acknowledged is committed, a new engine takes the old one's
    /// place and the store's events are replayed through it, so that from
    /// here on the findings are those of one run with the new configuration
    /// over everything stored (findings it reports as they were stored are
    /// not stored twice; new ones, history included, are). `reply` gets
    /// the number of events replayed.
    Reconfigure(Box<Config>, Box<dyn FnOnce(Result<u64, String>) + Send>),
}

/// The service's settings.
pub struct ServiceOptions {
    /// Detector configuration.
    pub config: Config,
    /// The platform's directory.
    pub directory: Directory,
    /// The reader (data map, line bound).
    pub reader: Reader,
    /// Where bad lines go (appended across runs).
    pub quarantine: PathBuf,
    /// Release held events after this long without input.
    pub idle_flush: Duration,
    /// Bytes of bodies made durable by one commit, at most (more wait for the next).
    pub group_bytes: usize,
    /// The findings the store holds (as stored): reported again by a
    /// replay ([`Job::Replay`]), they are not stored twice.
    pub stored_findings: Vec<String>,
    /// Sigma rules (`None`: none loaded).
    pub sigma: Option<std::sync::Arc<sigma::Rules>>,
}

/// How the service talks to its caller.
pub struct ServiceHooks<'h> {
    /// Every event as it is read, before it is stored or reordered.
    pub on_event: &'h mut OnEvent<'h>,
    /// Findings, as stored, once durable (engine's and [`Job::Finding`]s).
    pub on_findings: &'h mut dyn FnMut(Vec<String>),
    /// After each commit: how long it took and the ledger's records then.
    pub on_commit: &'h mut dyn FnMut(Duration, u64),
    /// A warning, said once.
    pub warn: &'h Warn<'h>,
}

/// What a service run did, when it stopped.
#[derive(Clone, Debug)]
pub struct ServiceReport {
    /// Bodies answered.
    pub bodies: u64,
    /// Events stored.
    pub stored: u64,
    /// Lines quarantined.
    pub quarantined: u64,
    /// Per detector.
    pub detectors: BTreeMap<&'static str, PerDetector>,
}

/// How often the service looks for findings to store and idle time to
/// release held events, when no body arrives.
const TICK: Duration = Duration::from_millis(100);

/// Runs until every sender of `jobs` is gone, then releases every held
/// event, stores the last findings and returns. A storage failure answers
/// the bodies waiting for it with [`Refused`] and ends the run with the error.
pub fn serve(
    opts: ServiceOptions,
    store: &mut store::Store,
    jobs: Receiver<Job>,
    hooks: ServiceHooks<'_>,
) -> Result<ServiceReport, Error> {
    let ServiceOptions {
        config: cfg,
        directory,
        mut reader,
        quarantine: qpath,
        idle_flush,
        group_bytes,
        stored_findings,
        sigma,
    } = opts;
    let mut suppress = std::collections::HashMap::new();
    for key in stored_findings.iter().filter_map(|l| crate::finding_key(l)) {
        *suppress.entry(key).or_insert(0u32) += 1;
    }
    drop(stored_findings);
    let ServiceHooks { on_event, on_findings, on_commit, warn } = hooks;
    store.keep_clear(store::KeepClear::from_directory(&directory));
    drop(detect::detectors::all(&cfg)?);
    let mut labels = cfg.engine.hosting_labels.clone();
    let mut latest = directory.clone();
    let world = World::new(directory, &labels);
    let mut quarantine = QuarantineFile::append(&qpath);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
    let (recycle, recycled) = std::sync::mpsc::sync_channel::<Vec<(Ev, u64)>>(4);
    let (ktx, krx) = std::sync::mpsc::channel();
    let ingesting = Ingesting {
        store,
        resume: vec![None],
        names: vec!["http".to_owned()],
        lines: vec![0],
        stored: 0,
        skipped: 0,
        error: None,
        commit_every: u64::MAX,
        alerts: Some(krx),
        extra: Vec::new(),
        stored_findings: Some(Vec::new()),
        replaying: false,
        suppress,
    };
    let cfg = &cfg;
    let (detected, counts) = std::thread::scope(|scope| {
        let tx = tx;
        let for_engine = sigma.clone();
        let detector = std::thread::Builder::new()
            .name("piiwatch-detect".into())
            .spawn_scoped(scope, move || {
                let wires = Wires { rx, keep: Some(ktx), recycle, settle: false, sigma: for_engine };
                detect_thread(cfg, world, vec!["http".to_owned()], Box::new(std::io::sink()), true, wires, warn)
            })
            .map_err(Error::Spawn)?;
        let mut feeder = Feeder::new(1, &mut quarantine, Some(ingesting), recycled, Some(on_event));
        feeder.content_digest = true;
        feeder.sigma = sigma.clone();
        let mut symbols = Symbols::default();
        let mut marks = Marks::default();
        let mut bodies = 0u64;
        let mut last_input = Instant::now();
        let mut idle_sent = true;
        let mut open = true;
        let mut failure = None;
        loop {
            let first = match jobs.recv_timeout(TICK) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut replies: Vec<(Reply, Accepted)> = Vec::new();
            let mut bytes = 0usize;
            let mut next = first;
            while let Some(job) = next {
                match job {
                    Job::Lines { name, body, reply } => {
                        bytes += body.len();
                        let sum = reader.read_bytes(&name, &body, &mut symbols, &mut feeder);
                        replies.push((reply, Accepted { accepted: sum.events, quarantined: sum.quarantined }));
                        if feeder.batch.len() >= BATCH && open {
                            open = feeder.send(&tx, &symbols, &mut marks);
                        }
                    }
                    Job::Finding(line) => {
                        if let Some(ing) = &mut feeder.ingest {
                            ing.extra.push(line);
                        }
                    }
                    Job::Replay(lines) => {
                        if let Some(ing) = &mut feeder.ingest {
                            ing.replaying = true;
                        }
                        reader.read_bytes("replay", &lines, &mut symbols, &mut feeder);
                        if let Some(ing) = &mut feeder.ingest {
                            ing.replaying = false;
                        }
                        if feeder.batch.len() >= BATCH && open {
                            open = feeder.send(&tx, &symbols, &mut marks);
                        }
                    }
                    Job::Directory(d) => {
                        latest = (*d).clone();
                        if open {
                            let world = World::new(*d, &labels);
                            open =
                                feeder.send(&tx, &symbols, &mut marks) && tx.send(Msg::World(Box::new(world))).is_ok();
                        }
                    }
                    Job::Reconfigure(new_cfg, reply) => {
                        let Some(ing) = &mut feeder.ingest else { break };
                        let dir = ing.store.dir().to_owned();
                        let mut result = if ing.store.pending() > 0 || !ing.extra.is_empty() {
                            ing.commit(&symbols).map_err(|e| e.to_string())
                        } else {
                            Ok(())
                        };
                        // The findings stored so far: reported again as they were, not stored twice.
                        let mut suppress = std::collections::HashMap::new();
                        if result.is_ok() {
                            result = store::alerts(&dir, |line| {
                                if let Some(key) = std::str::from_utf8(line).ok().and_then(crate::finding_key) {
                                    *suppress.entry(key).or_insert(0u32) += 1;
                                }
                            })
                            .map_err(|e| e.to_string());
                        }
                        let result = result.and_then(|()| {
                            if !open {
                                return Err("the detection thread has stopped".to_owned());
                            }
                            labels = new_cfg.engine.hosting_labels.clone();
                            let world = World::new(latest.clone(), &labels);
                            open = feeder.send(&tx, &symbols, &mut marks)
                                && tx.send(Msg::Engine(new_cfg, Box::new(world))).is_ok();
                            if let Some(ing) = &mut feeder.ingest {
                                ing.suppress = suppress;
                            }
                            let mut chunk = |lines: &mut Vec<u8>| {
                                if let Some(ing) = &mut feeder.ingest {
                                    ing.replaying = true;
                                }
                                reader.read_bytes("replay", lines, &mut symbols, &mut feeder);
                                if let Some(ing) = &mut feeder.ingest {
                                    ing.replaying = false;
                                }
                                if open {
                                    open = feeder.send(&tx, &symbols, &mut marks);
                                }
                            };
                            let (events, resolved) =
                                crate::replay::lines(&dir, &mut chunk).map_err(|e| e.to_string())?;
                            if let Some(ing) = &mut feeder.ingest {
                                let query = format!(
                                    "new detector configuration: {events} stored events replayed; {resolved} \
                                     pseudonyms resolved in memory"
                                );
                                let entry = store::Audit::now("serve (reconfigure)", query, events, 0, true);
                                ing.store.audit(&entry).map_err(|e| e.to_string())?;
                            }
                            Ok(events)
                        });
                        reply(result);
                    }
                    Job::WithStore(work) => {
                        if let Some(ing) = &mut feeder.ingest {
                            if ing.store.pending() > 0 && ing.error.is_none() {
                                // Queries see every body acknowledged before them.
                                if let Err(e) = ing.commit(&symbols) {
                                    ing.error = Some(match e {
                                        Error::Store { source, .. } => source,
                                        other => store::Error::Stopped(other.to_string()),
                                    });
                                }
                            }
                            work(ing.store);
                        }
                    }
                }
                if bytes >= group_bytes {
                    break;
                }
                next = jobs.try_recv().ok();
            }
            if !replies.is_empty() {
                bodies += replies.len() as u64;
                if open {
                    open = feeder.send(&tx, &symbols, &mut marks);
                }
                last_input = Instant::now();
                idle_sent = false;
            } else if !idle_sent && last_input.elapsed() >= idle_flush {
                // Quiet: release what the engine holds for reordering.
                if open {
                    open = feeder.send(&tx, &symbols, &mut marks) && tx.send(Msg::Idle).is_ok();
                }
                idle_sent = true;
            }
            let Some(ing) = &mut feeder.ingest else { break };
            // Findings the engine reported since the last commit wait in its channel.
            if let Some(rx) = &ing.alerts {
                ing.extra.extend(rx.try_iter());
            }
            if replies.is_empty() && ing.extra.is_empty() && ing.store.pending() == 0 {
                continue;
            }
            let started = Instant::now();
            match ing.commit(&symbols) {
                Ok(()) => {
                    on_commit(started.elapsed(), ing.store.head().records);
                    if let Err(e) = feeder.quarantine.finish() {
                        warn(&format!("cannot write quarantine {}: {e}", qpath.display()));
                    }
                    let found = ing.stored_findings.as_mut().map(std::mem::take).unwrap_or_default();
                    if !found.is_empty() {
                        on_findings(found);
                    }
                    for (reply, accepted) in replies {
                        reply(Ok(accepted));
                    }
                }
                Err(e) => {
                    let why = Refused(format!("the store failed ({e}); nothing of this request was acknowledged"));
                    for (reply, _) in replies {
                        reply(Err(why.clone()));
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        if open {
            feeder.send(&tx, &symbols, &mut marks);
        }
        drop(tx);
        let detected = match detector.join() {
            Ok(r) => r,
            Err(_) => return Err(Error::Panicked),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let detected = detected?;
        let ing = feeder.ingest.as_mut().ok_or(Error::Panicked)?;
        // The last findings arrive once detection has finished.
        ing.commit(&symbols)?;
        let found = ing.stored_findings.as_mut().map(std::mem::take).unwrap_or_default();
        if !found.is_empty() {
            on_findings(found);
        }
        Ok::<_, Error>((detected, (bodies, ing.stored, feeder.quarantined)))
    })?;
    quarantine.finish().map_err(|source| Error::Quarantine { path: qpath.clone(), source })?;
    let (bodies, stored, quarantined) = counts;
    Ok(ServiceReport { bodies, stored, quarantined, detectors: detected.per })
}
