//! Detector configuration: one TOML file, every key optional, unknown keys
//! rejected (a misspelt threshold must not silently fall back to a default).
//!
//! Durations are written as `"90s"`, `"10m"`, `"1h"`, `"150d"`, `"1h 30m"`.
//! `piiwatch detect --print-config` shows the built-in defaults in this format.

use std::fmt;

use model::Millis;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time in milliseconds, read from a duration string.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Millis);

impl Dur {
    /// Minutes.
    pub const fn minutes(n: i64) -> Self {
        Self(n * 60_000)
    }
    /// Hours.
    pub const fn hours(n: i64) -> Self {
        Self(n * 3_600_000)
    }
    /// Days of 24 hours.
    pub const fn days(n: i64) -> Self {
        Self(n * 86_400_000)
    }

    /// Parses `"10m"`, `"1h 30m"`, `"150d"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let span: jiff::Span = s.trim().parse().map_err(|e| format!("not a duration ({e}): {s:?}"))?;
        let total = span
            .total(jiff::SpanTotal::from(jiff::Unit::Millisecond).days_are_24_hours())
            .map_err(|e| format!("not a duration ({e}): {s:?}"))?;
        if total < 0.0 {
            return Err(format!("a duration cannot be negative: {s:?}"));
        }
        Ok(Self(total as Millis))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, name) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] {
            if ms != 0 && ms % unit == 0 {
                return write!(f, "{}{name}", ms / unit);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Everything configurable.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Event-time handling.
    pub engine: EngineConfig,
    /// Forged tokens.
    pub forged_token: ForgedToken,
    /// Signing-key hygiene.
    pub key_hygiene: KeyHygiene,
    /// Offboarded principals.
    pub departed: Departed,
    /// Distinct subjects per actor.
    pub fan_out: FanOut,
    /// Reads from hosting networks and new countries.
    pub foreign_access: ForeignAccess,
    /// Accounts newly seen abroad, as a population.
    pub account_takeover: AccountTakeover,
    /// Employees outside their own and their peers' pattern.
    pub staff_pattern: StaffPattern,
    /// High-sensitivity field classes.
    pub sensitive_fields: SensitiveFields,
    /// Streams that stop.
    pub silence: Silence,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads a TOML configuration; missing keys keep their defaults.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError(one_line(&e.to_string())))?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError(format!("{path}: {}", one_line(&e.into_inner().to_string())))
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The defaults as TOML.
    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }

    fn check(&self) -> Result<(), ConfigError> {
        let f = &self.fan_out;
        check_counting("fan_out", &f.dimensions, &f.windows, &f.floor, f.multiplier)?;
        let s = &self.sensitive_fields;
        check_counting("sensitive_fields", &s.dimensions, &s.windows, &s.floor, s.multiplier)?;
        let ratios = [
            ("foreign_access.multiplier", self.foreign_access.multiplier),
            ("foreign_access.address_multiplier", self.foreign_access.address_multiplier),
            ("staff_pattern.multiplier", self.staff_pattern.multiplier),
            ("staff_pattern.role_min_share", self.staff_pattern.role_min_share),
            ("silence.multiplier", self.silence.multiplier),
            ("account_takeover.multiplier", self.account_takeover.multiplier),
        ];
        let w = self.account_takeover.window;
        if w.0 < 60_000 || w.0 > 86_400_000 {
            return Err(ConfigError(format!("account_takeover.window: {w} is outside 1m..1d")));
        }
        for (path, v) in ratios {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError(format!("{path}: {v} is not a finite, non-negative number")));
            }
        }
        Ok(())
    }
}

/// The checks serde cannot make for a section that counts distinct subjects
/// per dimension: every dimension named (in `dimensions` and in each
/// floor) exists, windows are sane, the multiplier is a number.
fn check_counting(
    section: &str,
    dimensions: &[String],
    windows: &[Dur],
    floors: &[Floor],
    multiplier: f64,
) -> Result<(), ConfigError> {
    let known = || Dimension::ALL.map(|d| d.name()).join(", ");
    for w in windows {
        if w.0 < 60_000 || w.0 > 400 * 86_400_000 {
            return Err(ConfigError(format!("{section}.windows: {w} is outside 1m..400d")));
        }
    }
    for (i, f) in floors.iter().enumerate() {
        if let Some(d) = &f.dimension
            && Dimension::parse(d).is_none()
        {
            return Err(ConfigError(format!(
                "{section}.floor[{i}].dimension: unknown dimension {d:?} (one of {})",
                known()
            )));
        }
    }
    for (i, d) in dimensions.iter().enumerate() {
        if Dimension::parse(d).is_none() {
            return Err(ConfigError(format!(
                "{section}.dimensions[{i}]: unknown dimension {d:?} (one of {})",
                known()
            )));
        }
    }
    if !(multiplier.is_finite() && multiplier >= 0.0) {
        return Err(ConfigError(format!("{section}.multiplier: {multiplier} is not a finite, non-negative number")));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Event-time handling.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How late (in event time) an event may arrive and still be put in order.
    pub lateness: Dur,
    /// Local time of the platform, for working hours (`+09:00`).
    pub utc_offset: String,
    /// Countries where reads are expected; reads from others are "foreign".
    pub home_countries: Vec<String>,
    /// Directory network labels that mean hosting / cloud providers.
    pub hosting_labels: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lateness: Dur::minutes(3),
            utc_offset: "+09:00".into(),
            home_countries: vec!["KR".into()],
            hosting_labels: vec!["hosting".into()],
        }
    }
}

impl EngineConfig {
    /// The offset in milliseconds.
    pub fn offset_ms(&self) -> Result<Millis, ConfigError> {
        // The same wall-clock instant read as UTC and with the offset differs by the offset.
        const Y2K_UTC_MS: i64 = 946_684_800_000;
        let at: jiff::Timestamp = format!("2000-01-01T00:00:00{}", self.utc_offset.trim())
            .parse()
            .map_err(|_| ConfigError(format!("engine.utc_offset: not an offset like +09:00: {:?}", self.utc_offset)))?;
        Ok(Y2K_UTC_MS - at.as_millisecond())
    }
}

/// Forged tokens.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgedToken {
    /// Run this detector.
    pub enabled: bool,
    /// How long after a token's first use its issuance log may still arrive.
    pub issuance_lateness: Dur,
    /// Clock skew tolerated around expiry.
    pub expiry_grace: Dur,
    /// How long an issued token without an expiry is remembered.
    pub max_token_life: Dur,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for ForgedToken {
    fn default() -> Self {
        Self {
            enabled: true,
            issuance_lateness: Dur::minutes(3),
            expiry_grace: Dur::minutes(2),
            max_token_life: Dur::days(2),
            update_every: Dur::hours(1),
        }
    }
}

/// Signing-key hygiene.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyHygiene {
    /// Run this detector.
    pub enabled: bool,
    /// Keys older than this are a posture finding.
    pub max_key_age: Dur,
    /// How long a key's network classes are learned before a new one counts.
    pub learn_for: Dur,
    /// Distinct tokens from a never-seen network class (in `new_class_window`) that escalate.
    pub new_class_min_tokens: u64,
    /// Window for `new_class_min_tokens`.
    pub new_class_window: Dur,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for KeyHygiene {
    fn default() -> Self {
        Self {
            enabled: true,
            max_key_age: Dur::days(365),
            learn_for: Dur::hours(6),
            new_class_min_tokens: 20,
            new_class_window: Dur::hours(1),
            update_every: Dur::hours(1),
        }
    }
}

/// Offboarded principals.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Departed {
    /// Run this detector.
    pub enabled: bool,
    /// Activity this long after offboarding is still tolerated (sessions ending).
    pub grace: Dur,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for Departed {
    fn default() -> Self {
        Self { enabled: true, grace: Dur(0), update_every: Dur::minutes(30) }
    }
}

/// The dimensions distinct subjects are counted per.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// `src_endpoint.ip`
    SrcIp,
    /// The /24 (IPv4) or /64 (IPv6) holding the source.
    SrcPrefix,
    /// `actor.user.uid`
    Principal,
    /// `actor.session.uid`
    Token,
    /// `actor.session.issuer`
    Key,
    /// `src_endpoint.autonomous_system.number`
    Asn,
    /// `http_request.user_agent`
    UserAgent,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 7] = [
        Dimension::SrcIp,
        Dimension::SrcPrefix,
        Dimension::Principal,
        Dimension::Token,
        Dimension::Key,
        Dimension::Asn,
        Dimension::UserAgent,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::SrcIp => "src_ip",
            Dimension::SrcPrefix => "src_prefix",
            Dimension::Principal => "principal",
            Dimension::Token => "token",
            Dimension::Key => "key",
            Dimension::Asn => "asn",
            Dimension::UserAgent => "user_agent",
        }
    }

    /// From the configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The input field path an alert names.
    pub fn field(self) -> &'static str {
        match self {
            Dimension::SrcIp => "src_endpoint.ip",
            Dimension::SrcPrefix => "src_endpoint.ip",
            Dimension::Principal => "actor.user.uid",
            Dimension::Token => "actor.session.uid",
            Dimension::Key => "actor.session.issuer",
            Dimension::Asn => "src_endpoint.autonomous_system.number",
            Dimension::UserAgent => "http_request.user_agent",
        }
    }
}

/// A minimum threshold; the most specific matching rule wins.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Dimension name, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<String>,
    /// Class (network label, principal kind), or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Window, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Dur>,
    /// Distinct subjects that must be exceeded.
    pub min: u64,
}

/// Picks the most specific floor for (dimension, class, window): a rule that
/// names the class beats one that names the dimension, which beats one that
/// names the window; a rule naming more of them beats one naming fewer;
/// later rules win ties.
pub fn floor_for(rules: &[Floor], dim: &str, class: &str, window: Dur) -> Option<u64> {
    let mut best: Option<(usize, u64)> = None;
    for r in rules {
        let matches = r.dimension.as_deref().is_none_or(|d| d == dim)
            && r.class.as_deref().is_none_or(|c| c == class)
            && r.window.is_none_or(|w| w == window);
        if !matches {
            continue;
        }
        let spec = usize::from(r.class.is_some()) * 4
            + usize::from(r.dimension.is_some()) * 2
            + usize::from(r.window.is_some());
        if best.is_none_or(|(s, _)| spec >= s) {
            best = Some((spec, r.min));
        }
    }
    best.map(|b| b.1)
}

fn floor(dimension: Option<&str>, class: Option<&str>, window: Option<Dur>, min: u64) -> Floor {
    Floor { dimension: dimension.map(Into::into), class: class.map(Into::into), window, min }
}

/// Distinct subjects per actor.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanOut {
    /// Run this detector.
    pub enabled: bool,
    /// Dimensions counted.
    pub dimensions: Vec<String>,
    /// Windows counted.
    pub windows: Vec<Dur>,
    /// A key alerts above `max(floor, multiplier × learned baseline)`; the
    /// baseline is the highest count of its (dimension, class, window) on any
    /// completed day, from keys that did not alert.
    pub multiplier: f64,
    /// Minimum thresholds.
    pub floor: Vec<Floor>,
    /// Principals never reported (batch jobs known to read everyone).
    pub allow_principals: Vec<String>,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for FanOut {
    fn default() -> Self {
        let (h, d) = (Some(Dur::hours(1)), Some(Dur::days(1)));
        Self {
            enabled: true,
            // Also available, off by default: `token` (a token's reach is its
            // principal's over the token's life, at one key per session) and
            // `asn`, `user_agent`, `key` (each reaches a large share of all
            // customers, so their thresholds are in the millions; their
            // bitmaps cost gigabytes at 10 M customers and say little).
            dimensions: ["src_ip", "src_prefix", "principal"].map(String::from).to_vec(),
            windows: vec![Dur::minutes(10), Dur::hours(1), Dur::days(1), Dur::days(30), Dur::days(150)],
            multiplier: 3.0,
            floor: vec![
                floor(None, None, None, 200),
                floor(None, None, Some(Dur::minutes(10)), 100),
                floor(None, None, d, 1_000),
                floor(None, None, Some(Dur::days(30)), 5_000),
                floor(None, None, Some(Dur::days(150)), 10_000),
                // A /24 or /64 gathers many addresses: five times an address's floors.
                floor(Some("src_prefix"), None, None, 1_000),
                floor(Some("src_prefix"), None, Some(Dur::minutes(10)), 500),
                floor(Some("src_prefix"), None, d, 5_000),
                floor(Some("src_prefix"), None, Some(Dur::days(30)), 25_000),
                floor(Some("src_prefix"), None, Some(Dur::days(150)), 50_000),
                // A customer's own token and account reach themselves and their address book.
                floor(Some("principal"), Some("customer"), None, 60),
                floor(Some("token"), Some("customer"), None, 40),
                floor(Some("principal"), Some("customer"), d, 100),
                // Hosting networks serve VPN users reading their own data, never crowds.
                floor(Some("src_ip"), Some("hosting"), None, 60),
                floor(Some("src_ip"), Some("hosting"), h, 100),
                floor(Some("src_ip"), Some("hosting"), d, 300),
                floor(Some("src_ip"), Some("hosting"), Some(Dur::days(30)), 1_000),
                floor(Some("src_ip"), Some("hosting"), Some(Dur::days(150)), 2_000),
                floor(Some("src_prefix"), Some("hosting"), None, 200),
                floor(Some("src_prefix"), Some("hosting"), Some(Dur::minutes(10)), 100),
                floor(Some("src_prefix"), Some("hosting"), d, 2_000),
                floor(Some("src_prefix"), Some("hosting"), Some(Dur::days(30)), 10_000),
                floor(Some("src_prefix"), Some("hosting"), Some(Dur::days(150)), 20_000),
                // Shared infrastructure: learned baselines do the work; these guard the first day.
                floor(None, Some("carrier-cgnat"), None, 20_000),
                floor(Some("src_prefix"), Some("carrier-cgnat"), None, 200_000),
                floor(None, Some("office"), None, 20_000),
                floor(None, Some("internal"), None, 1_000_000),
                floor(None, Some("service"), None, 1_000_000),
                floor(Some("asn"), None, None, 1_000_000),
                floor(Some("user_agent"), None, None, 1_000_000),
                floor(Some("key"), None, None, 10_000_000),
            ],
            allow_principals: Vec::new(),
            update_every: Dur::hours(1),
        }
    }
}

/// Reads from hosting networks and from countries never seen for the subject.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForeignAccess {
    /// Run this detector.
    pub enabled: bool,
    /// Window in which a cluster's distinct subjects are counted.
    pub window: Dur,
    /// A cluster alerts above `max(min_subjects, multiplier × its own highest count on earlier days)`.
    pub min_subjects: u64,
    /// See `min_subjects`.
    pub multiplier: f64,
    /// An address is busy (counts, and is listed) when it read at least this many subjects...
    pub min_address_subjects: u64,
    /// ...and at least this many times the cluster's median address.
    pub address_multiplier: f64,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for ForeignAccess {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Dur::hours(1),
            min_subjects: 300,
            multiplier: 3.0,
            min_address_subjects: 10,
            address_multiplier: 4.0,
            update_every: Dur::hours(1),
        }
    }
}

/// Account takeover campaigns: customer accounts newly seen abroad, counted
/// per client and platform-wide, against the platform's own rate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountTakeover {
    /// Run this detector.
    pub enabled: bool,
    /// Window in which accounts newly seen abroad are counted.
    pub window: Dur,
    /// A cluster alerts above `max(min_accounts, multiplier × its highest count on whole earlier days)`.
    pub min_accounts: u64,
    /// See `min_accounts`.
    pub multiplier: f64,
    /// Report a growing campaign again at least this often.
    pub update_every: Dur,
}

impl Default for AccountTakeover {
    fn default() -> Self {
        Self { enabled: true, window: Dur::minutes(15), min_accounts: 8, multiplier: 4.0, update_every: Dur::hours(1) }
    }
}

/// Employees outside their own and their peers' pattern.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaffPattern {
    /// Run this detector.
    pub enabled: bool,
    /// History needed before an employee is judged.
    pub min_history: Dur,
    /// Reads on completed days the role's peer group needs before its hours mean anything.
    pub min_role_reads: u64,
    /// Distinct customers in one local hour that make an off-hours read a finding.
    pub min_subjects_off_hours: u64,
    /// An hour is "usual" for the role when at least this share of the role's reads fall in it.
    pub role_min_share: f64,
    /// Distinct customers in a local day that are a finding regardless of history.
    pub min_subjects_day: u64,
    /// Daily volume above `multiplier × max(own busiest day, peers' busiest day)` is a finding.
    pub multiplier: f64,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for StaffPattern {
    fn default() -> Self {
        Self {
            enabled: true,
            min_history: Dur::hours(12),
            min_role_reads: 100,
            min_subjects_off_hours: 10,
            role_min_share: 0.01,
            min_subjects_day: 150,
            multiplier: 2.0,
            update_every: Dur::hours(1),
        }
    }
}

/// High-sensitivity field classes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitiveFields {
    /// Run this detector.
    pub enabled: bool,
    /// The classes watched.
    pub classes: Vec<String>,
    /// Dimensions counted.
    pub dimensions: Vec<String>,
    /// Windows counted.
    pub windows: Vec<Dur>,
    /// As for fan-out.
    pub multiplier: f64,
    /// As for fan-out.
    pub floor: Vec<Floor>,
    /// Report a growing finding again at least this often.
    pub update_every: Dur,
}

impl Default for SensitiveFields {
    fn default() -> Self {
        Self {
            enabled: true,
            classes: ["entrance_code", "national_id", "payment"].map(String::from).to_vec(),
            dimensions: ["src_ip", "principal"].map(String::from).to_vec(),
            windows: vec![Dur::hours(1), Dur::days(1)],
            multiplier: 3.0,
            floor: vec![
                floor(None, None, None, 100),
                floor(None, None, Some(Dur::days(1)), 300),
                floor(Some("principal"), Some("customer"), None, 10),
                floor(Some("principal"), Some("customer"), Some(Dur::days(1)), 15),
                floor(None, Some("hosting"), None, 10),
                floor(None, Some("hosting"), Some(Dur::days(1)), 20),
                floor(None, Some("carrier-cgnat"), None, 5_000),
                floor(None, Some("internal"), None, 1_000_000),
                floor(None, Some("service"), None, 1_000_000),
            ],
            update_every: Dur::hours(1),
        }
    }
}

/// Streams that stop.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Silence {
    /// Run this detector.
    pub enabled: bool,
    /// A stream is judged only after this much history...
    pub min_history: Dur,
    /// ...and this many events.
    pub min_events: u64,
    /// A gap is silence above `max(min_gap, multiplier × the longest gap seen)`.
    pub min_gap: Dur,
    /// See `min_gap`.
    pub multiplier: f64,
}

impl Default for Silence {
    fn default() -> Self {
        Self { enabled: true, min_history: Dur::hours(24), min_events: 200, min_gap: Dur::minutes(30), multiplier: 4.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print() {
        assert_eq!(Dur::parse("10m"), Ok(Dur::minutes(10)));
        assert_eq!(Dur::parse("150d"), Ok(Dur::days(150)));
        assert_eq!(Dur::parse("1h 30m"), Ok(Dur::minutes(90)));
        assert!(Dur::parse("soon").is_err());
        assert_eq!(Dur::days(150).to_string(), "150d");
        assert_eq!(Dur(1500).to_string(), "1500ms");
        assert_eq!(EngineConfig::default().offset_ms().ok(), Some(9 * 3_600_000));
        let west = EngineConfig { utc_offset: "-05:30".into(), ..EngineConfig::default() };
        assert_eq!(west.offset_ms().ok(), Some(-(5 * 3_600_000 + 1_800_000)));
    }

    #[test]
    fn defaults_round_trip_and_unknown_keys_are_rejected() {
        let text = Config::defaults_toml();
        let back = Config::parse(&text).expect("defaults parse");
        assert_eq!(back.fan_out.floor, Config::default().fan_out.floor);
        let err = Config::parse("[fan_out]\nmultiplyer = 2.0\n").unwrap_err().to_string();
        assert!(err.contains("multiplyer"), "{err}");
        let err = Config::parse("[fan_out]\nwindows = [\"1 fortnight\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("fan_out.windows"), "{err}");
        let err = Config::parse("[fan_out]\ndimensions = [\"mac\"]\n").unwrap_err().to_string();
        assert!(err.contains("mac"), "{err}");
    }

    /// Every section of the defaults, so a section added later is covered too.
    fn sections() -> Vec<String> {
        let table: toml::Table = toml::from_str(&Config::defaults_toml()).expect("defaults are TOML");
        table.into_iter().filter(|(_, v)| v.is_table()).map(|(k, _)| k).collect()
    }

    #[test]
    fn every_section_rejects_a_misspelt_key_naming_its_path() {
        let sections = sections();
        assert!(sections.len() >= 9, "{sections:?}");
        for section in &sections {
            let err = Config::parse(&format!("[{section}]\nenabeld = true\n")).unwrap_err().to_string();
            assert!(err.starts_with(section.as_str()), "[{section}]: {err}");
            assert!(err.contains("enabeld"), "[{section}]: {err}");
        }
        let err = Config::parse("[fan_out]\n[[fan_out.floor]]\nmin = 5\nclas = \"hosting\"\n").unwrap_err().to_string();
        assert!(err.contains("clas"), "{err}");
        assert!(Config::parse("[nonsense]\nx = 1\n").unwrap_err().to_string().contains("nonsense"));
    }

    #[test]
    fn every_section_that_counts_per_dimension_rejects_a_misspelt_dimension() {
        let mut counted = 0;
        for section in sections() {
            let defaults: toml::Table = toml::from_str(&Config::defaults_toml()).expect("TOML");
            let Some(t) = defaults[&section].as_table() else { continue };
            if t.contains_key("dimensions") {
                counted += 1;
                let err = Config::parse(&format!("[{section}]\ndimensions = [\"src_ip\", \"src_prefx\"]\n"))
                    .unwrap_err()
                    .to_string();
                assert!(err.starts_with(&format!("{section}.dimensions[1]")), "{err}");
                assert!(err.contains("src_prefx"), "{err}");
            }
            if t.contains_key("floor") {
                let text = format!(
                    "[{section}]\n[[{section}.floor]]\nmin = 5\n[[{section}.floor]]\ndimension = \"princpal\"\nmin = 5\n"
                );
                let err = Config::parse(&text).unwrap_err().to_string();
                assert!(err.starts_with(&format!("{section}.floor[1].dimension")), "{err}");
                assert!(err.contains("princpal"), "{err}");
            }
        }
        assert!(counted >= 2, "fan_out and sensitive_fields count per dimension");
        let err = Config::parse("[sensitive_fields]\nmultiplier = nan\n").unwrap_err().to_string();
        assert!(err.starts_with("sensitive_fields.multiplier"), "{err}");
        let err = Config::parse("[sensitive_fields]\nwindows = [\"10s\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("sensitive_fields.windows"), "{err}");
    }

    #[test]
    fn the_most_specific_floor_wins() {
        let f = FanOut::default().floor;
        assert_eq!(floor_for(&f, "src_ip", "hosting", Dur::hours(1)), Some(100));
        assert_eq!(floor_for(&f, "src_ip", "hosting", Dur::minutes(10)), Some(60));
        assert_eq!(floor_for(&f, "src_ip", "broadband", Dur::minutes(10)), Some(100));
        assert_eq!(floor_for(&f, "src_prefix", "hosting", Dur::days(1)), Some(2_000));
        assert_eq!(floor_for(&f, "src_prefix", "broadband", Dur::days(1)), Some(5_000));
        assert_eq!(floor_for(&f, "principal", "customer", Dur::days(1)), Some(100));
        assert_eq!(floor_for(&f, "asn", "carrier", Dur::days(1)), Some(1_000_000));
        assert_eq!(floor_for(&f, "src_prefix", "internal", Dur::hours(1)), Some(1_000_000));
        assert_eq!(floor_for(&f, "src_prefix", "office", Dur::days(1)), Some(20_000));
    }
}
