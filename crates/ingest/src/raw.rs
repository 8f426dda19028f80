//! The OCSF input as serde sees it: borrowed views of one line.
//!
//! [`RawLine`] is the union of the fields of the three classes piiwatch
//! reads, so the common case is one pass of serde_json over the line with no
//! allocation: strings borrow from the line (`Cow::Borrowed` unless they
//! contain escapes) and short arrays live inline in `SmallVec`s. When that
//! pass fails, [`parse_slow`] works out whether the line is a known class with
//! a bad field (quarantine, with the field's path) or some other JSON object
//! whose fields merely collide with ours (passed on as an other event).

use std::borrow::Cow;

use serde::Deserialize;
use smallvec::SmallVec;

/// A string that borrows from the line unless it contains escapes.
///
/// serde's borrowing of `Cow<str>` applies only to a field of exactly that
/// type, not to `Option<Cow<str>>`, which always allocates; this newtype
/// puts the `Cow` directly under `#[serde(borrow)]`.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Up to this many subjects per event are held inline.
pub(crate) const INLINE_RESOURCES: usize = 4;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLine<'a> {
    #[serde(default)]
    pub class_uid: Option<i64>,
    #[serde(default)]
    pub time: Option<i64>,
    #[serde(default)]
    pub activity_id: Option<i64>,
    #[serde(default)]
    pub status_id: Option<i64>,
    #[serde(borrow, default)]
    pub actor: Option<RawActor<'a>>,
    #[serde(borrow, default)]
    pub user: Option<RawUser<'a>>,
    #[serde(borrow, default)]
    pub session: Option<RawSession<'a>>,
    #[serde(borrow, default)]
    pub src_endpoint: Option<RawEndpoint<'a>>,
    #[serde(borrow, default)]
    pub http_request: Option<RawHttp<'a>>,
    #[serde(borrow, default)]
    pub api: Option<RawApi<'a>>,
    #[serde(borrow, default)]
    pub resources: Option<SmallVec<[RawResource<'a>; INLINE_RESOURCES]>>,
    // Objects OCSF events commonly carry that piiwatch does not read: named
    // so they are skipped by `Skip` instead of serde_json's own skipper,
    // which allocates for objects nested two deep (its stack lives in a
    // scratch buffer that a fresh deserializer per line cannot reuse).
    #[serde(default, rename = "metadata")]
    pub _metadata: Option<Skip>,
    #[serde(default, rename = "unmapped")]
    pub _unmapped: Option<Skip>,
    #[serde(default, rename = "observables")]
    pub _observables: Option<Skip>,
    #[serde(default, rename = "enrichments")]
    pub _enrichments: Option<Skip>,
    #[serde(default, rename = "cloud")]
    pub _cloud: Option<Skip>,
    #[serde(default, rename = "dst_endpoint")]
    pub _dst_endpoint: Option<Skip>,
    #[serde(default, rename = "device")]
    pub _device: Option<Skip>,
    #[serde(default, rename = "http_response")]
    pub _http_response: Option<Skip>,
}

/// Any JSON value, skipped by recursion rather than with an allocated stack.
/// serde_json's recursion limit bounds the depth; a line nested deeper fails
/// this fast path and is handled by the slow path, which skips iteratively.
#[derive(Debug, Default)]
pub(crate) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor).map(|()| Skip)
    }
}

struct SkipVisitor;

impl<'de> serde::de::Visitor<'de> for SkipVisitor {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Skip::deserialize(d).map(|_| ())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, Skip>()?.is_some() {}
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawActor<'a> {
    #[serde(borrow, default)]
    pub user: Option<RawUser<'a>>,
    #[serde(borrow, default)]
    pub session: Option<RawSession<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawUser<'a> {
    #[serde(borrow, default)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSession<'a> {
    #[serde(borrow, default)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub issuer: Option<Str<'a>>,
    #[serde(default)]
    pub expiration_time: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEndpoint<'a> {
    #[serde(borrow, default)]
    pub ip: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub location: Option<RawLocation<'a>>,
    #[serde(borrow, default)]
    pub autonomous_system: Option<RawAs<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLocation<'a> {
    #[serde(borrow, default)]
    pub country: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAs<'a> {
    #[serde(default)]
    pub number: Option<i64>,
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHttp<'a> {
    #[serde(borrow, default)]
    pub user_agent: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawApi<'a> {
    #[serde(borrow, default)]
    pub operation: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub service: Option<RawService<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawService<'a> {
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawResource<'a> {
    #[serde(borrow, default)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Str<'a>>,
    /// Kept as raw JSON and parsed when the event is normalized: an inline
    /// list here would make every line's struct (and its moves) ten times larger.
    #[serde(borrow, default)]
    pub labels: Option<RawLabels<'a>>,
}

/// `resources[].labels` as its JSON text, parsed when the event is normalized.
#[derive(Clone, Copy)]
pub(crate) struct RawLabels<'a> {
    /// The value's text, without surrounding whitespace.
    pub text: &'a str,
    /// The extractor checked it is an array of strings without escapes.
    pub plain: bool,
}

impl std::fmt::Debug for RawLabels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawLabels({})", self.text)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLabels<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a serde_json::value::RawValue>::deserialize(d)?;
        Ok(Self { text: raw.get(), plain: false })
    }
}

/// API Activity's own fields, for the slow path's precise error.
#[derive(Deserialize)]
struct ApiLine<'a> {
    #[serde(default)]
    time: Option<i64>,
    #[serde(default)]
    activity_id: Option<i64>,
    #[serde(default)]
    status_id: Option<i64>,
    #[serde(borrow, default)]
    actor: Option<RawActor<'a>>,
    #[serde(borrow, default)]
    src_endpoint: Option<RawEndpoint<'a>>,
    #[serde(borrow, default)]
    http_request: Option<RawHttp<'a>>,
    #[serde(borrow, default)]
    api: Option<RawApi<'a>>,
    #[serde(borrow, default)]
    resources: Option<SmallVec<[RawResource<'a>; INLINE_RESOURCES]>>,
}

/// Authentication's and Account Change's own fields.
#[derive(Deserialize)]
struct IdentityLine<'a> {
    #[serde(default)]
    time: Option<i64>,
    #[serde(default)]
    activity_id: Option<i64>,
    #[serde(default)]
    status_id: Option<i64>,
    #[serde(borrow, default)]
    user: Option<RawUser<'a>>,
    #[serde(borrow, default)]
    session: Option<RawSession<'a>>,
    #[serde(borrow, default)]
    src_endpoint: Option<RawEndpoint<'a>>,
}

/// Only the class, everything else skipped.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    class_uid: Option<serde_json::Value>,
    #[serde(default)]
    time: Option<serde_json::Value>,
}

/// The classes whose fields piiwatch reads.
pub(crate) const KNOWN_CLASSES: [i64; 3] = [6003, 3002, 3001];

/// Outcome of the slow path.
pub(crate) enum Slow<'a> {
    /// A known class after all (its own fields parse), to be normalized.
    Known(Box<RawLine<'a>>),
    /// Valid JSON object of another class: `(class_uid, time)`.
    Other(Option<i64>, Option<i64>),
    /// Not valid JSON, or a known class with a bad field: the message names the path.
    Bad(String),
}

/// Called when the union parse failed.
pub(crate) fn parse_slow(text: &str) -> Slow<'_> {
    let probe: Probe = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                // Valid JSON: the probe's own fields are repeated.
                Ok(_) => Slow::Bad(without_position(&e.to_string()).to_owned()),
                Err(e) => Slow::Bad(format!("invalid json: {e}")),
            };
        }
    };
    let class = probe.class_uid.as_ref().and_then(serde_json::Value::as_i64);
    let time = probe.time.as_ref().and_then(serde_json::Value::as_i64);
    match class {
        Some(6003) => match with_path::<ApiLine<'_>>(text) {
            Ok(l) => Slow::Known(Box::new(RawLine {
                class_uid: class,
                time: l.time,
                activity_id: l.activity_id,
                status_id: l.status_id,
                actor: l.actor,
                src_endpoint: l.src_endpoint,
                http_request: l.http_request,
                api: l.api,
                resources: l.resources,
                ..RawLine::default()
            })),
            Err(msg) => Slow::Bad(msg),
        },
        Some(3002 | 3001) => match with_path::<IdentityLine<'_>>(text) {
            Ok(l) => Slow::Known(Box::new(RawLine {
                class_uid: class,
                time: l.time,
                activity_id: l.activity_id,
                status_id: l.status_id,
                user: l.user,
                session: l.session,
                src_endpoint: l.src_endpoint,
                ..RawLine::default()
            })),
            Err(msg) => Slow::Bad(msg),
        },
        _ => Slow::Other(class, time),
    }
}

fn with_path<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!("field `{path}`: {}", without_position(&e.into_inner().to_string()))
    })
}

/// serde_json ends its messages with "at line 1 column 7"; a quarantine
/// record already names the line, and the field path says where in it.
pub(crate) fn without_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |p| &msg[..p])
}
