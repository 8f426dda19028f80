//! The hot path's JSON extractor: one pass over the bytes of a line of the
//! three classes piiwatch reads, filling the same [`RawLine`] serde would.
//!
//! It reads exactly what RFC 8259 allows for the fields it keeps and skips
//! everything else by the grammar (strings with their escapes, nested
//! objects and arrays, numbers in every form). Whenever it is not sure that
//! serde_json would produce the same value it gives up and returns `None`,
//! and the caller parses the line with serde_json, which decides. It gives
//! up on:
//!
//! - an escape in a key, or in a string it keeps (serde would unescape);
//!   a `\u` escape anywhere (serde checks surrogates in some positions);
//! - a key it reads appearing twice in one object (serde reports a duplicate);
//! - a value of a type it does not expect (a number where a string belongs,
//!   a fraction or exponent or sign in an integer field, an integer of more
//!   than 18 digits);
//! - nesting deeper than [`MAX_DEPTH`], and, inside the objects serde skips
//!   with `deserialize_any`, numbers with an exponent or more than 64 bytes
//!   (whose range serde checks);
//! - anything that is not valid JSON at all.
//!
//! The differential fuzz target `fuzz_targets/fast_json.rs` and the tests
//! below hold it to serde_json's answer.

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::raw::{
    INLINE_RESOURCES, RawActor, RawApi, RawAs, RawEndpoint, RawHttp, RawLabels, RawLine, RawLocation, RawResource,
    RawService, RawSession, RawUser, Skip, Str,
};

/// Deeper values are left to serde_json.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why the extractor gave up (never shown: the slow path decides).
struct Unsure;

type R<T> = Result<T, Unsure>;

/// The line as serde_json would read it into [`RawLine`], or `None` when
/// the extractor cannot be sure.
pub(crate) fn extract(text: &str) -> Option<RawLine<'_>> {
    Flat::extract(text).map(|f| f.raw(text))
}

/// A string of the line: its byte range.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Span(u32, u32);

impl Span {
    /// Its text in `text` (the line it was found in).
    fn of(self, text: &str) -> &str {
        &text[self.0 as usize..self.1 as usize]
    }

    fn str(self, text: &str) -> Str<'_> {
        Str(Cow::Borrowed(self.of(text)))
    }
}

fn str_of(s: Option<Span>, text: &str) -> Option<Str<'_>> {
    s.map(|s| s.str(text))
}

/// What the extractor found, as ranges of the line rather than borrowed
/// strings, so it can be made on one thread and read on another (a
/// parsing worker ahead of the interning thread). [`Flat::raw`] turns it
/// into the [`RawLine`] serde would have made.
#[derive(Clone, Debug, Default)]
pub struct Flat {
    class_uid: Option<i64>,
    time: Option<i64>,
    activity_id: Option<i64>,
    status_id: Option<i64>,
    actor: Option<(Option<FlatUser>, Option<FlatSession>)>,
    user: Option<FlatUser>,
    session: Option<FlatSession>,
    src_endpoint: Option<FlatEndpoint>,
    http_request: Option<Option<Span>>,
    api: Option<(Option<Span>, Option<Option<Span>>)>,
    resources: Option<SmallVec<[FlatResource; INLINE_RESOURCES]>>,
    /// The named objects serde skips, present (bit per name, in [`SKIPPED`] order).
    skipped: u8,
    /// A kept string or number was `null` (which a JSON reader tells from
    /// absence, and [`Flat::field`] does not).
    nulls: bool,
}

/// A field the extractor kept, as [`Flat::field`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field<'t> {
    /// Not in the line.
    Absent,
    /// An integer.
    Int(i64),
    /// A string.
    Str(&'t str),
    /// Every resource's value, in order (resources without it left out).
    Each(SmallVec<[&'t str; INLINE_RESOURCES]>),
}

/// The objects [`RawLine`] names only to skip them.
const SKIPPED: [&[u8]; 8] =
    [b"metadata", b"unmapped", b"observables", b"enrichments", b"cloud", b"dst_endpoint", b"device", b"http_response"];

#[derive(Clone, Copy, Debug, Default)]
struct FlatUser {
    uid: Option<Span>,
    kind: Option<Span>,
}

#[derive(Clone, Copy, Debug, Default)]
struct FlatSession {
    uid: Option<Span>,
    issuer: Option<Span>,
    expiration_time: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct FlatEndpoint {
    ip: Option<Span>,
    location: Option<Option<Span>>,
    autonomous_system: Option<(Option<i64>, Option<Span>)>,
}

#[derive(Clone, Copy, Debug, Default)]
struct FlatResource {
    uid: Option<Span>,
    kind: Option<Span>,
    labels: Option<Span>,
}

impl FlatUser {
    fn raw(self, t: &str) -> RawUser<'_> {
        RawUser { uid: str_of(self.uid, t), kind: str_of(self.kind, t) }
    }
}

impl FlatSession {
    fn raw(self, t: &str) -> RawSession<'_> {
        RawSession { uid: str_of(self.uid, t), issuer: str_of(self.issuer, t), expiration_time: self.expiration_time }
    }
}

impl Flat {
    /// Extracts `text`, or `None` when serde_json must decide.
    pub fn extract(text: &str) -> Option<Self> {
        if u32::try_from(text.len()).is_err() {
            return None;
        }
        let mut p = P { b: text.as_bytes(), i: 0, nulls: false };
        let mut line = p.line().ok()?;
        p.ws();
        line.nulls = p.nulls;
        (p.i == p.b.len()).then_some(line)
    }

    /// The OCSF class, when the line gives it.
    pub fn class_uid(&self) -> Option<i64> {
        self.class_uid
    }

    /// The event time, when the line gives it.
    pub fn time(&self) -> Option<i64> {
        self.time
    }

    /// The field at dotted `path` of `text` (the text this was extracted
    /// from), read as a JSON reader walking the path would read it (through
    /// `resources`, every element's), or `None` when the extractor did not
    /// keep that field, or cannot be sure: a kept value was `null`, or the
    /// field is absent and the line might have a key with a dot in it that a
    /// reader of dotted paths would take instead (`"location.country"`).
    /// The sigma crate's differential test holds it to a JSON DOM.
    pub fn field<'t>(&self, text: &'t str, path: &str) -> Option<Field<'t>> {
        if self.nulls {
            return None;
        }
        let s = |x: Option<Span>| x.map_or(Field::Absent, |x| Field::Str(x.of(text)));
        let n = |x: Option<i64>| x.map_or(Field::Absent, Field::Int);
        let actor = self.actor.unwrap_or_default();
        let (user, session) = match path.split_once('.') {
            Some(("actor", _)) => (actor.0, actor.1),
            _ => (self.user, self.session),
        };
        let tail = path.strip_prefix("actor.").unwrap_or(path);
        if tail.len() != path.len() && !matches!(tail.split_once('.'), Some(("user" | "session", _))) {
            // `actor.` prefixes only the actor's user and session.
            return None;
        }
        let endpoint = self.src_endpoint.unwrap_or_default();
        let each = |f: fn(&FlatResource) -> Option<Span>| {
            let all = self.resources.iter().flatten().filter_map(f);
            let all: SmallVec<[&'t str; INLINE_RESOURCES]> = all.map(|x| x.of(text)).collect();
            if all.is_empty() { Field::Absent } else { Field::Each(all) }
        };
        let field = match tail {
            "class_uid" => n(self.class_uid),
            "time" => n(self.time),
            "activity_id" => n(self.activity_id),
            "status_id" => n(self.status_id),
            "user.uid" => s(user.and_then(|u| u.uid)),
            "user.type" => s(user.and_then(|u| u.kind)),
            "session.uid" => s(session.and_then(|x| x.uid)),
            "session.issuer" => s(session.and_then(|x| x.issuer)),
            "session.expiration_time" => n(session.and_then(|x| x.expiration_time)),
            "src_endpoint.ip" => s(endpoint.ip),
            "src_endpoint.location.country" => s(endpoint.location.flatten()),
            "src_endpoint.autonomous_system.number" => n(endpoint.autonomous_system.and_then(|a| a.0)),
            "src_endpoint.autonomous_system.name" => s(endpoint.autonomous_system.and_then(|a| a.1)),
            "http_request.user_agent" => s(self.http_request.flatten()),
            "api.operation" => s(self.api.and_then(|a| a.0)),
            "api.service.name" => s(self.api.and_then(|a| a.1).flatten()),
            "resources.uid" => each(|r| r.uid),
            "resources.type" => each(|r| r.kind),
            _ => return None,
        };
        if field == Field::Absent && dotted_key_possible(text, path) {
            return None;
        }
        Some(field)
    }

    /// The line serde would have read from `text` (the text this was extracted from).
    pub(crate) fn raw<'t>(&self, t: &'t str) -> RawLine<'t> {
        let skipped = |i: usize| (self.skipped & (1 << i) != 0).then_some(Skip);
        RawLine {
            class_uid: self.class_uid,
            time: self.time,
            activity_id: self.activity_id,
            status_id: self.status_id,
            actor: self.actor.map(|(u, s)| RawActor { user: u.map(|u| u.raw(t)), session: s.map(|s| s.raw(t)) }),
            user: self.user.map(|u| u.raw(t)),
            session: self.session.map(|s| s.raw(t)),
            src_endpoint: self.src_endpoint.map(|e| RawEndpoint {
                ip: str_of(e.ip, t),
                location: e.location.map(|c| RawLocation { country: str_of(c, t) }),
                autonomous_system: e.autonomous_system.map(|(n, name)| RawAs { number: n, name: str_of(name, t) }),
            }),
            http_request: self.http_request.map(|u| RawHttp { user_agent: str_of(u, t) }),
            api: self.api.map(|(op, service)| RawApi {
                operation: str_of(op, t),
                service: service.map(|n| RawService { name: str_of(n, t) }),
            }),
            resources: self.resources.as_ref().map(|rs| {
                rs.iter()
                    .map(|r| RawResource {
                        uid: str_of(r.uid, t),
                        kind: str_of(r.kind, t),
                        labels: r.labels.map(|l| RawLabels { text: l.of(t), plain: true }),
                    })
                    .collect()
            }),
            _metadata: skipped(0),
            _unmapped: skipped(1),
            _observables: skipped(2),
            _enrichments: skipped(3),
            _cloud: skipped(4),
            _dst_endpoint: skipped(5),
            _device: skipped(6),
            _http_response: skipped(7),
        }
    }
}

/// Where the first quote, backslash or control character at or after `i`
/// is (`b.len()` when none): eight bytes at a time, by the classic
/// zero-byte tests on a word. Only the lowest flagged byte of a word is
/// exact, and only it is used.
#[inline(always)]
fn special(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        let hits = (zero(quote) | zero(slash) | x.wrapping_sub(ONES * 0x20) & !x) & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
    /// A kept string or number was `null`.
    nulls: bool,
}

/// Whether `text` might hold a key with a dot in it ending in `path`'s last
/// segment (`"location.country"` for `src_endpoint.location.country`), which
/// a reader of dotted paths takes when the path's own objects are absent.
fn dotted_key_possible(text: &str, path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let b = text.as_bytes();
    memchr::memmem::find_iter(b, last.as_bytes())
        .any(|at| at > 0 && b[at - 1] == b'.' && b.get(at + last.len()) == Some(&b'"'))
}

/// Bits for the keys of one object, to catch duplicates.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    #[inline]
    fn first(&mut self, bit: u32) -> R<()> {
        if self.0 & (1 << bit) != 0 {
            return Err(Unsure);
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

impl<'a> P<'a> {
    #[inline(always)]
    fn ws(&mut self) {
        // Compact JSON has none: one test and out.
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Unsure)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Walks an object's members: `f` is called with each key (after its
    /// colon) and must consume the value.
    #[inline]
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> R<()>) -> R<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// A key without escapes.
    #[inline]
    fn key(&mut self) -> R<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let end = special(self.b, start);
        if self.b.get(end) != Some(&b'"') {
            return Err(Unsure);
        }
        self.i = end + 1;
        Ok(&self.b[start..end])
    }

    /// A string without escapes: its range.
    #[inline]
    fn plain_str(&mut self) -> R<Span> {
        self.eat(b'"')?;
        let start = self.i;
        let end = special(self.b, start);
        if self.b.get(end) != Some(&b'"') {
            return Err(Unsure);
        }
        self.i = end + 1;
        // Both ends sit next to ASCII quotes, so they are char boundaries.
        Ok(Span(start as u32, end as u32))
    }

    /// `Option<Str>`: a string or null.
    #[inline]
    fn opt_str(&mut self) -> R<Option<Span>> {
        if self.null()? {
            self.nulls = true;
            Ok(None)
        } else {
            self.plain_str().map(Some)
        }
    }

    /// `Option<i64>`: a non-negative integer of at most 18 digits, or null.
    #[inline]
    fn opt_int(&mut self) -> R<Option<i64>> {
        if self.null()? {
            self.nulls = true;
            return Ok(None);
        }
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            // 18 digits always fit an i64; longer is serde's to judge.
            if self.i - start == 18 {
                return Err(Unsure);
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        let n = self.i - start;
        let leading_zero = n > 1 && self.b[start] == b'0';
        let more = matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'));
        if n == 0 || leading_zero || more {
            return Err(Unsure);
        }
        Ok(Some(v))
    }

    /// Consumes `null` when it is next.
    #[inline]
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            if self.b[self.i..].starts_with(b"null") {
                self.i += 4;
                return Ok(true);
            }
            return Err(Unsure);
        }
        Ok(false)
    }

    /// `Option<T>` of an object.
    #[inline]
    fn opt_obj<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        if self.null()? { Ok(None) } else { f(self).map(Some) }
    }

    fn line(&mut self) -> R<Flat> {
        let mut l = Flat::default();
        let mut seen = Seen::default();
        self.object(|p, k| {
            match k {
                b"class_uid" => {
                    seen.first(0)?;
                    l.class_uid = p.opt_int()?;
                }
                b"time" => {
                    seen.first(1)?;
                    l.time = p.opt_int()?;
                }
                b"activity_id" => {
                    seen.first(2)?;
                    l.activity_id = p.opt_int()?;
                }
                b"status_id" => {
                    seen.first(3)?;
                    l.status_id = p.opt_int()?;
                }
                b"actor" => {
                    seen.first(4)?;
                    l.actor = p.opt_obj(Self::actor)?;
                }
                b"user" => {
                    seen.first(5)?;
                    l.user = p.opt_obj(Self::user)?;
                }
                b"session" => {
                    seen.first(6)?;
                    l.session = p.opt_obj(Self::session)?;
                }
                b"src_endpoint" => {
                    seen.first(7)?;
                    l.src_endpoint = p.opt_obj(Self::endpoint)?;
                }
                b"http_request" => {
                    seen.first(8)?;
                    l.http_request = p.opt_obj(|p| p.one(b"user_agent", Self::opt_str, 1))?;
                }
                b"api" => {
                    seen.first(9)?;
                    l.api = p.opt_obj(Self::api)?;
                }
                b"resources" => {
                    seen.first(10)?;
                    l.resources = if p.null()? { None } else { Some(p.resources()?) };
                }
                _ => match SKIPPED.iter().position(|n| *n == k) {
                    // Named in RawLine so that serde skips them with `Skip`
                    // (`deserialize_any`, which checks number ranges), and a
                    // duplicate of one is an error there.
                    Some(i) => {
                        seen.first(11 + i as u32)?;
                        if !p.null()? {
                            l.skipped |= 1 << i;
                            p.skip(0, true)?;
                        }
                    }
                    None => p.skip(0, false)?,
                },
            }
            Ok(())
        })?;
        Ok(l)
    }

    /// An object of which only `name` is read (with `read`), at `depth`.
    #[inline]
    fn one<T: Default>(&mut self, name: &[u8], read: impl Fn(&mut Self) -> R<T>, depth: usize) -> R<T> {
        let mut v = T::default();
        let mut seen = Seen::default();
        self.object(|p, k| {
            if k == name {
                seen.first(0)?;
                v = read(p)?;
                Ok(())
            } else {
                p.skip(depth, false)
            }
        })?;
        Ok(v)
    }

    fn user(&mut self) -> R<FlatUser> {
        let mut u = FlatUser::default();
        let mut seen = Seen::default();
        self.object(|p, k| match k {
            b"uid" => {
                seen.first(0)?;
                u.uid = p.opt_str()?;
                Ok(())
            }
            b"type" => {
                seen.first(1)?;
                u.kind = p.opt_str()?;
                Ok(())
            }
            _ => p.skip(1, false),
        })?;
        Ok(u)
    }

    fn session(&mut self) -> R<FlatSession> {
        let mut s = FlatSession::default();
        let mut seen = Seen::default();
        self.object(|p, k| match k {
            b"uid" => {
                seen.first(0)?;
                s.uid = p.opt_str()?;
                Ok(())
            }
            b"issuer" => {
                seen.first(1)?;
                s.issuer = p.opt_str()?;
                Ok(())
            }
            b"expiration_time" => {
                seen.first(2)?;
                s.expiration_time = p.opt_int()?;
                Ok(())
            }
            _ => p.skip(1, false),
        })?;
        Ok(s)
    }

    fn actor(&mut self) -> R<(Option<FlatUser>, Option<FlatSession>)> {
        let mut a = (None, None);
        let mut seen = Seen::default();
        self.object(|p, k| match k {
            b"user" => {
                seen.first(0)?;
                a.0 = p.opt_obj(Self::user)?;
                Ok(())
            }
            b"session" => {
                seen.first(1)?;
                a.1 = p.opt_obj(Self::session)?;
                Ok(())
            }
            _ => p.skip(1, false),
        })?;
        Ok(a)
    }

    fn endpoint(&mut self) -> R<FlatEndpoint> {
        let mut e = FlatEndpoint::default();
        let mut seen = Seen::default();
        self.object(|p, k| match k {
            b"ip" => {
                seen.first(0)?;
                e.ip = p.opt_str()?;
                Ok(())
            }
            b"location" => {
                seen.first(1)?;
                e.location = p.opt_obj(|p| p.one(b"country", Self::opt_str, 2))?;
                Ok(())
            }
            b"autonomous_system" => {
                seen.first(2)?;
                e.autonomous_system = p.opt_obj(|p| {
                    let mut a = (None, None);
                    let mut seen = Seen::default();
                    p.object(|p, k| match k {
                        b"number" => {
                            seen.first(0)?;
                            a.0 = p.opt_int()?;
                            Ok(())
                        }
                        b"name" => {
                            seen.first(1)?;
                            a.1 = p.opt_str()?;
                            Ok(())
                        }
                        _ => p.skip(2, false),
                    })?;
                    Ok(a)
                })?;
                Ok(())
            }
            _ => p.skip(1, false),
        })?;
        Ok(e)
    }

    fn api(&mut self) -> R<(Option<Span>, Option<Option<Span>>)> {
        let mut a = (None, None);
        let mut seen = Seen::default();
        self.object(|p, k| match k {
            b"operation" => {
                seen.first(0)?;
                a.0 = p.opt_str()?;
                Ok(())
            }
            b"service" => {
                seen.first(1)?;
                a.1 = p.opt_obj(|p| p.one(b"name", Self::opt_str, 2))?;
                Ok(())
            }
            _ => p.skip(1, false),
        })?;
        Ok(a)
    }

    fn resources(&mut self) -> R<SmallVec<[FlatResource; INLINE_RESOURCES]>> {
        let mut out = SmallVec::new();
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(out);
        }
        loop {
            if self.peek()? != b'{' {
                return Err(Unsure);
            }
            let mut r = FlatResource::default();
            let mut seen = Seen::default();
            self.object(|p, k| match k {
                b"uid" => {
                    seen.first(0)?;
                    r.uid = p.opt_str()?;
                    Ok(())
                }
                b"type" => {
                    seen.first(1)?;
                    r.kind = p.opt_str()?;
                    Ok(())
                }
                b"labels" => {
                    seen.first(2)?;
                    r.labels = p.labels()?;
                    Ok(())
                }
                _ => p.skip(2, false),
            })?;
            out.push(r);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// `labels`: null (as serde's `Option` reads it, `None`) or an array of
    /// plain strings, kept as its text.
    fn labels(&mut self) -> R<Option<Span>> {
        if self.null()? {
            return Ok(None);
        }
        let start = self.i;
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
        } else {
            loop {
                self.plain_str()?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Unsure),
                }
            }
        }
        Ok(Some(Span(start as u32, self.i as u32)))
    }

    /// Skips any value by the grammar. `strict`: serde reads it with
    /// `deserialize_any`, which checks numbers' range, so numbers it could
    /// refuse are left to it.
    fn skip(&mut self, depth: usize, strict: bool) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        match self.peek()? {
            b'{' => self.object(|p, _| p.skip(depth + 1, strict)),
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1, strict)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Unsure),
                    }
                }
            }
            b'"' => self.skip_str(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(strict),
            _ => Err(Unsure),
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// A string, its simple escapes checked; `\u` is left to serde.
    fn skip_str(&mut self) -> R<()> {
        self.i += 1;
        loop {
            self.i = special(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"' | b'\\') => {}
                _ => return Err(Unsure),
            }
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(());
            }
            match self.b.get(self.i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                _ => return Err(Unsure),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self, strict: bool) -> R<()> {
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Unsure),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return Err(Unsure);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            if strict {
                return Err(Unsure);
            }
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(Unsure);
            }
        }
        if strict && i - start > 64 {
            return Err(Unsure);
        }
        self.i = i;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agrees(line: &str) {
        if let Some(fast) = extract(line) {
            let slow: RawLine<'_> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("the extractor accepted what serde refuses ({e}): {line}"));
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line}");
        }
    }

    const LINE: &str = r#"{"class_uid":6003,"time":1700000000000,"activity_id":2,"status_id":1,"metadata":{"version":"1.1.0","product":{"name":"gw"},"n":[1,2.5,-3]},"actor":{"user":{"uid":"c1","type":"customer"},"session":{"uid":"t1","issuer":"k1","expiration_time":1700000300000}},"src_endpoint":{"ip":"10.0.0.1","location":{"country":"KR"},"autonomous_system":{"number":4766,"name":"KT"}},"http_request":{"user_agent":"ua/1"},"api":{"operation":"GET /a","service":{"name":"s"}},"resources":[{"uid":"c1","type":"customer","labels":["name","phone"]},{"uid":"c2","labels":null}],"x":{"deep":[[[{}]]],"e":1e5,"s":"a\"b\\n"}}"#;

    proptest::proptest! {
        #[test]
        fn the_word_scan_finds_what_a_byte_loop_finds(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let naive = (from..bytes.len())
                .find(|&i| bytes[i] == b'"' || bytes[i] == b'\\' || bytes[i] < 0x20)
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(special(&bytes, from), naive);
        }
    }

    #[test]
    fn reads_what_serde_reads() {
        let fast = extract(LINE).expect("an ordinary line is the fast path's");
        assert_eq!(fast.class_uid, Some(6003));
        let most = extract(r#"{"time":999999999999999999}"#).expect("18 digits are the extractor's");
        assert_eq!(most.time, Some(999_999_999_999_999_999));
        assert_eq!(fast.resources.as_ref().map(|r| r.len()), Some(2));
        agrees(LINE);
    }

    #[test]
    fn gives_up_where_serde_must_decide() {
        for bad in [
            r#"{"class_uid":6003,"class_uid":6003}"#,
            r#"{"cl\u0061ss_uid":6003}"#,
            r#"{"time":1.5}"#,
            r#"{"time":-1}"#,
            r#"{"time":01}"#,
            r#"{"time":"1"}"#,
            r#"{"time":1234567890123456789}"#,
            r#"{"time":9999999999999999999}"#,
            r#"{"actor":{"user":{"uid":"a\nb"}}}"#,
            r#"{"metadata":{"n":1e400}}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"resources":[null]}"#,
            r#"{"resources":[{"labels":[1]}]}"#,
            r#"{"a":1}x"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"metadata":1,"metadata":2}"#,
        ] {
            assert!(extract(bad).is_none(), "{bad}");
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(extract(&deep).is_none());
    }

    #[test]
    fn agrees_with_serde_on_every_prefix_and_byte_change() {
        for cut in 0..LINE.len() {
            if LINE.is_char_boundary(cut) {
                agrees(&LINE[..cut]);
            }
        }
        let mut bytes = LINE.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let keep = bytes[i];
            for c in [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b' ', b'1', b'n', b'-', b'.', b'e'] {
                bytes[i] = c;
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    agrees(s);
                }
            }
            bytes[i] = keep;
        }
    }
}
