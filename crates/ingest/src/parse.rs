//! One line in, one normalized event or one quarantine reason out.
//!
//! Never panics and never allocates per event on the common path: strings
//! are interned straight from the borrowed line, and the subject list is a
//! scratch buffer reused across lines (which is why [`LineParser::parse`]
//! returns an event that borrows the parser).

use std::net::IpAddr;

use model::datamap::OpFields;
use model::{
    Access, Activity, Country, DataMap, Event, FieldSet, Issuance, OffboardKind, Offboarding, OpId, OtherEvent,
    PrincipalKind, Subject, SubjectKind, Symbols,
};

use smallvec::SmallVec;

use crate::raw::{INLINE_RESOURCES, KNOWN_CLASSES, RawLine, Slow, Str, parse_slow, without_position};

/// Why a line was quarantined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The broad kind, for counting.
    pub kind: ReasonKind,
    /// One line a person understands, naming the field when there is one.
    pub detail: String,
}

/// Kinds of bad line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Longer than the configured bound.
    TooLong,
    /// Not parseable as JSON.
    InvalidJson,
    /// Valid JSON but not an object.
    NotObject,
    /// A known class without a field the contract requires.
    MissingField,
    /// A field of the wrong type or an unusable value.
    InvalidField,
    /// The input stream itself failed (corrupt gzip, read error).
    InputError,
}

impl ReasonKind {
    /// Stable snake_case name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::TooLong => "too_long",
            Self::InvalidJson => "invalid_json",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::InputError => "input_error",
        }
    }
}

impl Reason {
    fn new(kind: ReasonKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }

    fn missing(field: &str) -> Self {
        Self::new(ReasonKind::MissingField, format!("missing required field `{field}`"))
    }

    fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(ReasonKind::InvalidField, format!("field `{field}`: {why}"))
    }

    /// A line over the length bound.
    pub fn too_long(len: usize, max: usize) -> Self {
        Self::new(ReasonKind::TooLong, format!("line of {len} bytes or more exceeds the limit of {max} bytes"))
    }

    /// The input stream failed.
    pub fn input_error(err: impl std::fmt::Display) -> Self {
        Self::new(ReasonKind::InputError, format!("input stream failed: {err}"))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Turns lines into events; holds the data map and the reusable buffers.
#[derive(Debug)]
pub struct LineParser {
    datamap: DataMap,
    /// Resolved data map entries by operation id.
    op_fields: Vec<Option<OpFields>>,
    subjects: Vec<Subject>,
    /// Whether the extractor ([`crate::fast`]) is tried before serde_json.
    fast: bool,
}

/// Parsed-but-not-yet-interned pieces of an API Activity line.
struct Checked<'r, 'a> {
    time: i64,
    activity: Activity,
    success: bool,
    principal: &'r str,
    ip: IpAddr,
    operation: &'r str,
    line: &'r RawLine<'a>,
}

impl LineParser {
    /// A parser that fills in field classes from `datamap` when labels are absent.
    pub fn new(datamap: DataMap) -> Self {
        Self { datamap, op_fields: Vec::new(), subjects: Vec::new(), fast: true }
    }

    /// Turns the hot path's extractor off (serde_json reads every line), for
    /// the differential tests and fuzz target that hold the two to the same answer.
    #[doc(hidden)]
    pub fn set_fast(&mut self, on: bool) {
        self.fast = on;
    }

    /// Parses one line (without its newline). Blank lines are the caller's to skip.
    pub fn parse<'s>(&'s mut self, text: &'s str, symbols: &mut Symbols) -> Result<Event<'s>, Reason> {
        self.parse_pre(text, None, symbols)
    }

    /// Like [`LineParser::parse`], with what a parsing worker extracted from
    /// this very text: `Some(Some(flat))` its fields, `Some(None)` that the
    /// extractor left it to serde_json, `None` nothing (extract here).
    pub(crate) fn parse_pre<'s>(
        &'s mut self,
        text: &'s str,
        pre: Option<Option<&crate::fast::Flat>>,
        symbols: &mut Symbols,
    ) -> Result<Event<'s>, Reason> {
        let first = text.bytes().find(|b| !b.is_ascii_whitespace());
        if first != Some(b'{') {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Reason::new(ReasonKind::NotObject, "valid json but not an object"),
                Err(e) => Reason::new(ReasonKind::InvalidJson, format!("invalid json: {e}")),
            });
        }
        let fast = match pre {
            Some(flat) if self.fast => flat.map(|f| f.raw(text)),
            None if self.fast => crate::fast::extract(text),
            _ => None,
        };
        let raw = match fast.map_or_else(|| serde_json::from_str::<RawLine<'s>>(text), Ok) {
            Ok(raw) => raw,
            Err(_) => match parse_slow(text) {
                Slow::Known(raw) => *raw,
                Slow::Other(class_uid, time) => {
                    let time = time.filter(|t| TIME_RANGE.contains(t));
                    return Ok(Event::Other(OtherEvent { class_uid, time, raw: text }));
                }
                Slow::Bad(msg) => {
                    let kind = if msg.starts_with("invalid json") {
                        ReasonKind::InvalidJson
                    } else {
                        ReasonKind::InvalidField
                    };
                    return Err(Reason::new(kind, msg));
                }
            },
        };
        // A foreign event's time is kept only when it is plausible; it is not ours to quarantine.
        let time = raw.time.filter(|t| TIME_RANGE.contains(t));
        let other = || Ok(Event::Other(OtherEvent { class_uid: raw.class_uid, time, raw: text }));
        match raw.class_uid {
            Some(6003) => self.access(&raw, symbols),
            Some(3002) => match required_ids(&raw)? {
                (1, 1) => issuance(&raw, symbols).map(Event::Issuance),
                _ => other(),
            },
            Some(3001) => match required_ids(&raw)?.0 {
                5 => offboarding(&raw, OffboardKind::Disable, symbols).map(Event::Offboarding),
                6 => offboarding(&raw, OffboardKind::Delete, symbols).map(Event::Offboarding),
                _ => other(),
            },
            Some(c) => {
                debug_assert!(!KNOWN_CLASSES.contains(&c));
                other()
            }
            None => other(),
        }
    }

    fn access<'s>(&'s mut self, raw: &RawLine<'_>, symbols: &mut Symbols) -> Result<Event<'s>, Reason> {
        let c = check_access(raw)?;
        let actor = c.line.actor.as_ref();
        let user = actor.and_then(|a| a.user.as_ref());
        let session = actor.and_then(|a| a.session.as_ref());
        let endpoint = c.line.src_endpoint.as_ref();
        let asys = endpoint.and_then(|e| e.autonomous_system.as_ref());
        let asn = match asys.and_then(|a| a.number) {
            Some(n) => Some(
                u32::try_from(n)
                    .map_err(|_| Reason::invalid("src_endpoint.autonomous_system.number", "not an AS number"))?,
            ),
            None => None,
        };
        let resources = c.line.resources.as_deref().unwrap_or_default();
        // Labels are parsed once, here, and kept (borrowing from the line) for
        // the interning loop below.
        let mut labels: SmallVec<[Option<LabelList<'_>>; INLINE_RESOURCES]> = SmallVec::new();
        for (i, r) in resources.iter().enumerate() {
            match r.uid.as_deref() {
                None => return Err(Reason::missing(&format!("resources[{i}].uid"))),
                Some("") => return Err(Reason::invalid(&format!("resources[{i}].uid"), "empty")),
                Some(_) => {}
            }
            labels.push(
                match r.labels.map(|l| {
                    if l.plain {
                        Ok(Labels(Some(plain_labels(l.text))))
                    } else {
                        serde_json::from_str::<Labels<'_>>(l.text)
                    }
                }) {
                    Some(Ok(Labels(list))) => list,
                    Some(Err(e)) => {
                        return Err(Reason::invalid(
                            &format!("resources[{i}].labels"),
                            without_position(&e.to_string()),
                        ));
                    }
                    None => None,
                },
            );
        }
        // Everything is checked: intern from here on, so a quarantined line
        // leaves no trace in the symbol tables.
        let operation = symbols.operation(c.operation);
        let op_fields = self.op_fields(operation, symbols);
        self.subjects.clear();
        for (r, labels) in resources.iter().zip(&labels) {
            let kind = r.kind.as_deref().map_or(SubjectKind::Other, SubjectKind::parse);
            let fields = match labels {
                Some(labels) => {
                    let mut set = FieldSet::EMPTY;
                    for l in labels {
                        set.insert(symbols.fields.bit(l));
                    }
                    set
                }
                // Absent or `null`: the data map decides.
                None => op_fields.for_kind(kind),
            };
            let id = symbols.subject(r.uid.as_deref().unwrap_or_default());
            self.subjects.push(Subject { id, kind, fields });
        }
        dedup_subjects(&mut self.subjects);
        Ok(Event::Access(Access {
            time: c.time,
            activity: c.activity,
            success: c.success,
            principal: symbols.principal(c.principal),
            principal_kind: user.and_then(|u| u.kind.as_deref()).map_or(PrincipalKind::Unknown, PrincipalKind::parse),
            token: non_empty(session.and_then(|s| s.uid.as_ref())).map(|t| symbols.token(t)),
            key: non_empty(session.and_then(|s| s.issuer.as_ref())).map(|k| symbols.key(k)),
            src: symbols.addrs.intern(c.ip),
            country: endpoint
                .and_then(|e| e.location.as_ref())
                .and_then(|l| l.country.as_deref())
                .and_then(Country::parse),
            asn,
            as_name: non_empty(asys.and_then(|a| a.name.as_ref())).map(|n| symbols.as_name(n)),
            user_agent: non_empty(c.line.http_request.as_ref().and_then(|h| h.user_agent.as_ref()))
                .map(|u| symbols.agent(u)),
            operation,
            service: non_empty(c.line.api.as_ref().and_then(|a| a.service.as_ref()).and_then(|s| s.name.as_ref()))
                .map(|s| symbols.service(s)),
            subjects: &self.subjects,
        }))
    }

    fn op_fields(&mut self, op: OpId, symbols: &mut Symbols) -> OpFields {
        if self.op_fields.len() <= op.index() {
            self.op_fields.resize(op.index() + 1, None);
        }
        let Symbols { operations, fields, .. } = symbols;
        *self.op_fields[op.index()].get_or_insert_with(|| self.datamap.resolve(operations.resolve(op.0), fields))
    }
}

/// Event times piiwatch accepts: 1970-01-01 to 2200-01-01 (epoch ms). A
/// time outside is a broken or hostile line; letting it through would move
/// event time centuries ahead and make every later event "late", or
/// overflow window arithmetic.
pub const TIME_RANGE: std::ops::Range<i64> = 0..7_258_118_400_000;

fn event_time(line: &RawLine<'_>) -> Result<i64, Reason> {
    let time = line.time.ok_or_else(|| Reason::missing("time"))?;
    if !TIME_RANGE.contains(&time) {
        return Err(Reason::invalid("time", format!("{time} is outside 1970..2200 in epoch milliseconds")));
    }
    Ok(time)
}

fn check_access<'r, 'a>(line: &'r RawLine<'a>) -> Result<Checked<'r, 'a>, Reason> {
    let time = event_time(line)?;
    let (activity_id, status_id) = required_ids(line)?;
    let principal = line
        .actor
        .as_ref()
        .and_then(|a| a.user.as_ref())
        .and_then(|u| u.uid.as_deref())
        .ok_or_else(|| Reason::missing("actor.user.uid"))?;
    if principal.is_empty() {
        return Err(Reason::invalid("actor.user.uid", "empty"));
    }
    let ip =
        line.src_endpoint.as_ref().and_then(|e| e.ip.as_deref()).ok_or_else(|| Reason::missing("src_endpoint.ip"))?;
    let ip = parse_ip(ip, "src_endpoint.ip")?;
    let operation =
        line.api.as_ref().and_then(|a| a.operation.as_deref()).ok_or_else(|| Reason::missing("api.operation"))?;
    if line.resources.is_none() {
        return Err(Reason::missing("resources"));
    }
    let activity = u8::try_from(activity_id)
        .map(Activity::from_id)
        .map_err(|_| Reason::invalid("activity_id", format!("{activity_id} is out of range")))?;
    Ok(Checked { time, activity, success: status_id == 1, principal, ip, operation, line })
}

fn required_ids(line: &RawLine<'_>) -> Result<(i64, i64), Reason> {
    let activity = line.activity_id.ok_or_else(|| Reason::missing("activity_id"))?;
    let status = match line.class_uid {
        // Account Change's activity alone says what happened.
        Some(3001) => line.status_id.unwrap_or(1),
        _ => line.status_id.ok_or_else(|| Reason::missing("status_id"))?,
    };
    Ok((activity, status))
}

fn parse_ip(s: &str, field: &str) -> Result<IpAddr, Reason> {
    s.parse::<IpAddr>().map_err(|_| Reason::invalid(field, "not an IPv4 or IPv6 address"))
}

fn non_empty<'c>(s: Option<&'c Str<'_>>) -> Option<&'c str> {
    s.map(|c| &**c).filter(|s| !s.is_empty())
}

fn issuance(line: &RawLine<'_>, symbols: &mut Symbols) -> Result<Issuance, Reason> {
    let time = event_time(line)?;
    let user = line.user.as_ref().and_then(|u| u.uid.as_deref()).ok_or_else(|| Reason::missing("user.uid"))?;
    let session = line.session.as_ref();
    let token = session.and_then(|s| s.uid.as_deref()).ok_or_else(|| Reason::missing("session.uid"))?;
    if user.is_empty() || token.is_empty() {
        return Err(Reason::invalid(if user.is_empty() { "user.uid" } else { "session.uid" }, "empty"));
    }
    let expires = session.and_then(|s| s.expiration_time);
    if expires.is_some_and(|e| !TIME_RANGE.contains(&e)) {
        return Err(Reason::invalid("session.expiration_time", "outside 1970..2200 in epoch milliseconds"));
    }
    let src = match line.src_endpoint.as_ref().and_then(|e| e.ip.as_deref()) {
        Some(ip) => Some(parse_ip(ip, "src_endpoint.ip")?),
        None => None,
    };
    Ok(Issuance {
        time,
        principal: symbols.principal(user),
        principal_kind: line
            .user
            .as_ref()
            .and_then(|u| u.kind.as_deref())
            .map_or(PrincipalKind::Unknown, PrincipalKind::parse),
        token: symbols.token(token),
        key: non_empty(session.and_then(|s| s.issuer.as_ref())).map(|k| symbols.key(k)),
        expires,
        src: src.map(|ip| symbols.addrs.intern(ip)),
    })
}

fn offboarding(line: &RawLine<'_>, kind: OffboardKind, symbols: &mut Symbols) -> Result<Offboarding, Reason> {
    let time = event_time(line)?;
    let user = line.user.as_ref().and_then(|u| u.uid.as_deref()).ok_or_else(|| Reason::missing("user.uid"))?;
    if user.is_empty() {
        return Err(Reason::invalid("user.uid", "empty"));
    }
    let principal_kind =
        line.user.as_ref().and_then(|u| u.kind.as_deref()).map_or(PrincipalKind::Unknown, PrincipalKind::parse);
    Ok(Offboarding { time, principal: symbols.principal(user), principal_kind, kind })
}

/// The field classes of one subject, borrowed from the line.
type LabelList<'a> = SmallVec<[Str<'a>; 8]>;

/// The strings of a labels array the extractor checked (strings without
/// escapes, so every quote delimits one).
fn plain_labels(text: &str) -> LabelList<'_> {
    let mut list = LabelList::new();
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        list.push(Str(std::borrow::Cow::Borrowed(&after[..close])));
        rest = &after[close + 1..];
    }
    list
}

/// `resources[].labels`: an array of strings, or null.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Labels<'a>(#[serde(borrow)] Option<LabelList<'a>>);

/// Merges repeated subjects in one response (their field classes unite), so
/// later stages can count accesses per subject without double counting.
fn dedup_subjects(subjects: &mut Vec<Subject>) {
    const LINEAR: usize = 16;
    if subjects.len() <= 1 {
        return;
    }
    if subjects.len() <= LINEAR {
        let mut w = 0;
        for r in 0..subjects.len() {
            let s = subjects[r];
            match subjects[..w].iter_mut().find(|k| k.id == s.id) {
                Some(k) => k.fields |= s.fields,
                None => {
                    subjects[w] = s;
                    w += 1;
                }
            }
        }
        subjects.truncate(w);
    } else {
        subjects.sort_by_key(|s| s.id);
        subjects.dedup_by(|later, kept| {
            let same = later.id == kept.id;
            if same {
                kept.fields |= later.fields;
            }
            same
        });
    }
}

/// Only the typed serde pass over a line, without normalizing: for the
/// reader benchmark, to separate parsing from interning.
#[doc(hidden)]
pub fn parse_raw_only(text: &str) -> bool {
    serde_json::from_str::<crate::raw::RawLine<'_>>(text).is_ok()
}

/// Only the extractor over a line: for the reader benchmark.
#[doc(hidden)]
pub fn extract_only(text: &str) -> bool {
    crate::fast::extract(text).is_some()
}
