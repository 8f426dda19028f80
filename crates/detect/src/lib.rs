//! Streaming detection: events in event-time order, exact distinct counting
//! over windows from minutes to months, and the built-in detectors that
//! would have caught the 2025 breach.
//!
//! [`engine::Engine`] takes events as the reader produces them, puts them in
//! event-time order through a bounded reordering buffer, and hands each one
//! (and each minute of event time) to the [`detectors`]. Findings go to an
//! [`alert::Sink`] as [`alert::Alert`]s, which render as OCSF Detection
//! Findings. The engine does no I/O.

pub mod alert;
pub mod config;
pub mod detectors;
pub mod engine;
pub mod ev;
pub mod window;
pub mod world;

pub use alert::{Alert, RuleRef, Sink};
pub use config::Config;
pub use engine::{Detector, Engine, EngineStats, digest};
pub use ev::{Ev, Hit};
pub use world::World;

/// Hash maps with a fixed seed: the same input gives the same iteration order.
pub type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;
/// Hash sets with a fixed seed.
pub type Set<K> = hashbrown::HashSet<K, foldhash::fast::FixedState>;
