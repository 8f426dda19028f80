//! Events as the engine holds them while it puts them in event-time order:
//! owned copies of [`model::Event`]s (the reader's events borrow its buffers).

use model::{
    Access, Activity, AddrId, AgentId, AsNameId, Country, Event, Issuance, KeyId, Millis, Offboarding, OpId,
    PrincipalId, PrincipalKind, ServiceId, Subject, SubjectId, Symbols, TokenId,
};
use smallvec::SmallVec;

/// An API call, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Event time.
    pub time: Millis,
    /// Create, read, update, delete.
    pub activity: Activity,
    /// Only successful calls expose data.
    pub success: bool,
    /// The principal the token names.
    pub principal: PrincipalId,
    /// What the event says the principal is.
    pub principal_kind: PrincipalKind,
    /// Token id.
    pub token: Option<TokenId>,
    /// Signing key.
    pub key: Option<KeyId>,
    /// Source address.
    pub src: AddrId,
    /// Source country.
    pub country: Option<Country>,
    /// Source ASN.
    pub asn: Option<u32>,
    /// Source AS name.
    pub as_name: Option<AsNameId>,
    /// User agent.
    pub user_agent: Option<AgentId>,
    /// Route template.
    pub operation: OpId,
    /// Answering service.
    pub service: Option<ServiceId>,
    /// Subjects the response carried.
    pub subjects: SmallVec<[Subject; 2]>,
    /// The subject among them that is the principal itself (a customer's
    /// own account), found by id when the event was read.
    pub own: Option<SubjectId>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// API Activity.
    Call(Call),
    /// Token issued.
    Issuance(Issuance),
    /// Principal offboarded.
    Offboarding(Offboarding),
    /// Another class (only its stream matters to the built-in detectors).
    Other {
        /// OCSF class, when given.
        class_uid: Option<i64>,
    },
}

/// A Sigma rule that matched an event where it was parsed, with the field
/// values the rule's correlations need (see the `sigma` crate): per field
/// the rule's correlations read, in the rule set's order for this rule,
/// every value of the field (an array gives each element; none when the
/// event has none). The values share one buffer: a hit costs one
/// allocation, not one per value.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The rule's index in the loaded rule set.
    pub rule: u32,
    /// The values, one after another.
    text: String,
    /// Where each value ends in `text`.
    ends: SmallVec<[u32; 6]>,
    /// Per field: how many values (in `ends`) the fields up to it have.
    fields: SmallVec<[u32; 4]>,
}

impl Hit {
    /// A hit of rule `rule`, no field yet.
    pub fn new(rule: u32) -> Self {
        Self { rule, text: String::new(), ends: SmallVec::new(), fields: SmallVec::new() }
    }

    /// Adds a value to the field being written.
    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    /// Ends the field being written (the next value starts the next field).
    pub fn end_field(&mut self) {
        self.fields.push(self.ends.len() as u32);
    }

    /// How many fields.
    pub fn fields(&self) -> usize {
        self.fields.len()
    }

    /// The values of field `i`, if there is one.
    pub fn field(&self, i: usize) -> Option<impl Iterator<Item = &str>> {
        let end = *self.fields.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.fields[i - 1] as usize };
        Some((start..end).map(move |v| {
            let from = if v == 0 { 0 } else { self.ends[v - 1] as usize };
            self.text.get(from..self.ends[v] as usize).unwrap_or_default()
        }))
    }
}

/// One event in the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Ev {
    /// Event time.
    pub time: Millis,
    /// Which input it came from (index into the inputs, for the silence detector).
    pub input: u16,
    /// The event.
    pub what: What,
    /// The Sigma rules it matched (`None`: none, or no rules loaded).
    pub hits: Option<Box<[Hit]>>,
}

impl Ev {
    /// Copies a reader event. Events without a time (foreign JSON) return `None`.
    pub fn from_event(e: &Event<'_>, input: u16, symbols: &Symbols) -> Option<Self> {
        let what = match e {
            Event::Access(a) => {
                let mut c = Call::from(a);
                if !c.subjects.is_empty()
                    && !matches!(c.principal_kind, PrincipalKind::Employee | PrincipalKind::Service)
                {
                    let (p, subjects) = (&symbols.principals, &symbols.subjects);
                    c.own = c.subjects.iter().find(|s| p.same(c.principal.0, subjects, s.id.0)).map(|s| s.id);
                }
                What::Call(c)
            }
            Event::Issuance(i) => What::Issuance(i.clone()),
            Event::Offboarding(o) => What::Offboarding(o.clone()),
            Event::Other(o) => What::Other { class_uid: o.class_uid },
        };
        Some(Self { time: e.time()?, input, what, hits: None })
    }

    /// The OCSF class.
    pub fn class_uid(&self) -> Option<i64> {
        match &self.what {
            What::Call(_) => Some(6003),
            What::Issuance(_) => Some(3002),
            What::Offboarding(_) => Some(3001),
            What::Other { class_uid } => *class_uid,
        }
    }

    /// Order among events of the same millisecond: issuance first (a token
    /// is issued before it is used), then offboarding, calls, the rest.
    pub fn rank(&self) -> u8 {
        match self.what {
            What::Issuance(_) => 0,
            What::Offboarding(_) => 1,
            What::Call(_) => 2,
            What::Other { .. } => 3,
        }
    }
}

impl From<&Access<'_>> for Call {
    fn from(a: &Access<'_>) -> Self {
        Self {
            time: a.time,
            activity: a.activity,
            success: a.success,
            principal: a.principal,
            principal_kind: a.principal_kind,
            token: a.token,
            key: a.key,
            src: a.src,
            country: a.country,
            asn: a.asn,
            as_name: a.as_name,
            user_agent: a.user_agent,
            operation: a.operation,
            service: a.service,
            subjects: a.subjects.iter().copied().collect(),
            own: None,
        }
    }
}
