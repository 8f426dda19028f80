//! The organisation profile (`--org FILE`, TOML): which regimes apply and
//! the facts about the organisation that regimes and drafts need.

use std::path::Path;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Revenue, for the fine estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revenue {
    /// The amount, in `currency`.
    pub amount: f64,
    /// ISO 4217 code.
    pub currency: String,
}

/// An organisation profile. Everything is optional: what is missing is
/// shown as missing where a clock or draft needs it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    /// The organisation's name (the notifier's identity).
    #[serde(default)]
    pub name: Option<String>,
    /// The regimes that apply; absent: every shipped one.
    #[serde(default)]
    pub regimes: Option<Vec<String>>,
    /// Where people and regulators reach the organisation about the incident.
    #[serde(default)]
    pub contact_point: Option<String>,
    /// The data protection officer.
    #[serde(default)]
    pub dpo: Option<String>,
    /// A provider of information and communications services (Korea's Network Act).
    #[serde(default)]
    pub ict_service_provider: Option<bool>,
    /// Files reports under the US Exchange Act (SEC Form 8-K).
    #[serde(default)]
    pub sec_registrant: Option<bool>,
    /// Total revenue, for the fine estimate.
    #[serde(default)]
    pub revenue: Option<Revenue>,
    /// Field classes that are unique identifying information (PIPA Art. 24;
    /// for California, SSN and government ids).
    #[serde(default = "unique_identifying")]
    pub unique_identifying: Vec<String>,
    /// Field classes that are sensitive information (PIPA Art. 23, GDPR Art. 9).
    #[serde(default = "sensitive")]
    pub sensitive: Vec<String>,
    /// Days the SEC's EDGAR is closed besides the calendar's.
    #[serde(default)]
    pub closures: Vec<Date>,
}

fn unique_identifying() -> Vec<String> {
    ["national_id", "passport_number", "drivers_license", "alien_registration_number"].map(String::from).to_vec()
}

fn sensitive() -> Vec<String> {
    [
        "health",
        "biometric",
        "genetic",
        "sex_life",
        "beliefs",
        "political_opinion",
        "union_membership",
        "criminal_record",
        "race",
    ]
    .map(String::from)
    .to_vec()
}

impl Org {
    /// The default profile: every regime, no facts.
    pub fn none() -> Self {
        Self { unique_identifying: unique_identifying(), sensitive: sensitive(), ..Self::default() }
    }

    /// Reads a profile; errors name the file, line and reason.
    pub fn load(path: &Path) -> Result<Self, crate::regime::RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::regime::RuleError { file: file.clone(), reason: format!("cannot read: {e}") })?;
        Self::parse(&file, &text)
    }

    /// A profile from its text; errors name `file`, the line and the reason.
    pub fn parse(file: &str, text: &str) -> Result<Self, crate::regime::RuleError> {
        toml::from_str(text).map_err(|e| crate::regime::toml_error(file, text, &e))
    }

    /// Whether a regime applies by the profile's list.
    pub fn lists(&self, regime: &str) -> bool {
        self.regimes.as_ref().is_none_or(|r| r.iter().any(|x| x == regime))
    }

    /// An organisation fact by name: `Some(true|false)` when the profile says.
    pub fn fact(&self, name: &str) -> Option<bool> {
        match name {
            "ict_service_provider" => self.ict_service_provider,
            "sec_registrant" => self.sec_registrant,
            _ => None,
        }
    }
}
