//! Normalized events: what one input line means once read.
//!
//! Events borrow nothing from the input line except [`OtherEvent::raw`]; all
//! identifiers are dense ids from [`crate::Symbols`]. An [`Access`] borrows its
//! subject list from the reader's scratch buffer, which is why events are
//! handed to a visitor rather than returned by value.

use crate::FieldSet;

/// Epoch milliseconds (event time).
pub type Millis = i64;

macro_rules! dense_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            /// The id as an index into dense arrays.
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}

dense_id! {
    /// A data subject: a customer, or a third party such as an address-book entry.
    SubjectId;
    /// A principal: the customer, employee or service a token names.
    PrincipalId;
    /// An access token id (JWT `jti`).
    TokenId;
    /// A signing key id (JWT `kid`).
    KeyId;
    /// An API route template such as `GET /v1/address-book`.
    OpId;
    /// The service that answered a call.
    ServiceId;
    /// A user agent string.
    AgentId;
    /// A source IP address.
    AddrId;
    /// An autonomous system's name.
    AsNameId;
}

/// What a principal is, from `actor.user.type` (or the directory).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A customer of the platform acting on their own account.
    Customer,
    /// A member of staff.
    Employee,
    /// A machine identity (internal service, batch job).
    Service,
    /// Absent or not one of the above.
    Unknown,
}

impl PrincipalKind {
    /// Reads the contract's spelling; anything else is [`PrincipalKind::Unknown`].
    pub fn parse(s: &str) -> Self {
        match s {
            "customer" => Self::Customer,
            "employee" => Self::Employee,
            "service" => Self::Service,
            _ => Self::Unknown,
        }
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Employee => "employee",
            Self::Service => "service",
            Self::Unknown => "unknown",
        }
    }
}

/// Whose data a subject is, from `resources[].type`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A customer account holder.
    Customer,
    /// A third party held in a customer's data (address-book entry, gift recipient).
    Recipient,
    /// Absent or another type.
    Other,
}

impl SubjectKind {
    /// Reads the contract's spelling; anything else is [`SubjectKind::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "customer" => Self::Customer,
            "recipient" => Self::Recipient,
            _ => Self::Other,
        }
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Recipient => "recipient",
            Self::Other => "other",
        }
    }
}

/// OCSF API Activity `activity_id`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Activity {
    /// 1
    Create,
    /// 2
    Read,
    /// 3
    Update,
    /// 4
    Delete,
    /// Any other value, kept as given (0 unknown, 99 other in OCSF).
    Other(u8),
}

impl Activity {
    /// From the OCSF numeric id.
    pub fn from_id(id: u8) -> Self {
        match id {
            1 => Self::Create,
            2 => Self::Read,
            3 => Self::Update,
            4 => Self::Delete,
            n => Self::Other(n),
        }
    }
}

/// A two-letter ISO 3166-1 alpha-2 country code, upper case.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country(pub [u8; 2]);

impl Country {
    /// Accepts exactly two ASCII letters, in either case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// One data subject a response carried, with the classes of field returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Who.
    pub id: SubjectId,
    /// Customer or third party.
    pub kind: SubjectKind,
    /// Which classes of their personal data were returned.
    pub fields: FieldSet,
}

/// One call to the platform's API (OCSF API Activity, class 6003).
#[derive(Clone, Debug, PartialEq)]
pub struct Access<'a> {
    /// Event time.
    pub time: Millis,
    /// Create, read, update, delete.
    pub activity: Activity,
    /// `status_id == 1`: only successful calls expose data.
    pub success: bool,
    /// The principal the token names.
    pub principal: PrincipalId,
    /// What the event says the principal is.
    pub principal_kind: PrincipalKind,
    /// The access token id, when logged.
    pub token: Option<TokenId>,
    /// The signing key id, when logged.
    pub key: Option<KeyId>,
    /// Source address.
    pub src: AddrId,
    /// Source country, when logged and well formed.
    pub country: Option<Country>,
    /// Source autonomous system number.
    pub asn: Option<u32>,
    /// Source autonomous system name.
    pub as_name: Option<AsNameId>,
    /// User agent.
    pub user_agent: Option<AgentId>,
    /// Route template.
    pub operation: OpId,
    /// The answering service.
    pub service: Option<ServiceId>,
    /// The data subjects the response carried (empty for failures and for
    /// calls that return no personal data).
    pub subjects: &'a [Subject],
}

/// A token was issued (OCSF Authentication, class 3002, logon success).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuance {
    /// Issuance time.
    pub time: Millis,
    /// To whom.
    pub principal: PrincipalId,
    /// What the event says the principal is (`user.type`).
    pub principal_kind: PrincipalKind,
    /// The token id.
    pub token: TokenId,
    /// Signing key, when logged.
    pub key: Option<KeyId>,
    /// Expiry, when logged.
    pub expires: Option<Millis>,
    /// Where the login came from, when logged.
    pub src: Option<AddrId>,
}

/// How a principal was offboarded (OCSF Account Change, class 3001).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OffboardKind {
    /// activity_id 5
    Disable,
    /// activity_id 6
    Delete,
}

/// A principal was disabled or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offboarding {
    /// When.
    pub time: Millis,
    /// Who.
    pub principal: PrincipalId,
    /// What the event says the principal is (`user.type`).
    pub principal_kind: PrincipalKind,
    /// Disable or delete.
    pub kind: OffboardKind,
}

/// A JSON object piiwatch's built-in detectors do not read: another OCSF
/// class, another activity of a known class, or no OCSF class at all. Kept so
/// that Sigma rules whose log source matches can still see it.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherEvent<'a> {
    /// `class_uid` when it is present and an integer.
    pub class_uid: Option<i64>,
    /// `time` when it is present and an integer.
    pub time: Option<Millis>,
    /// The whole line.
    pub raw: &'a str,
}

/// One normalized input line.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// API Activity.
    Access(Access<'a>),
    /// Token issuance.
    Issuance(Issuance),
    /// Principal offboarded.
    Offboarding(Offboarding),
    /// Anything else that is valid JSON.
    Other(OtherEvent<'a>),
}

impl Event<'_> {
    /// Event time, when the event has one.
    pub fn time(&self) -> Option<Millis> {
        match self {
            Event::Access(a) => Some(a.time),
            Event::Issuance(i) => Some(i.time),
            Event::Offboarding(o) => Some(o.time),
            Event::Other(o) => o.time,
        }
    }

    /// The OCSF class, when known.
    pub fn class_uid(&self) -> Option<i64> {
        match self {
            Event::Access(_) => Some(6003),
            Event::Issuance(_) => Some(3002),
            Event::Offboarding(_) => Some(3001),
            Event::Other(o) => o.class_uid,
        }
    }
}
