//! `--where` expressions: `field = "v"`, `field != "v"`, `field in ("a", "b")`,
//! `field cidr "198.51.100.0/24"`, joined by `and`, `or`, `not` and
//! parentheses, over the contract's input field paths.
//!
//! Hostile input is bounded: expressions longer than [`MAX_LEN`] bytes or
//! nested deeper than [`MAX_DEPTH`] are refused with a one-line error, never
//! a stack overflow.

use std::net::IpAddr;

use ipnet::IpNet;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 64 << 10;
/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 64;

/// A field an expression can test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// `src_endpoint.ip`
    SrcIp,
    /// `actor.user.uid`
    Principal,
    /// `actor.user.type`
    PrincipalKind,
    /// `actor.session.uid`
    Token,
    /// `actor.session.issuer`
    Key,
    /// `src_endpoint.autonomous_system.number`
    Asn,
    /// `src_endpoint.location.country`
    Country,
    /// `http_request.user_agent`
    UserAgent,
    /// `api.operation`
    Operation,
    /// `api.service.name`
    Service,
    /// `resources.uid`: true when the response carried this subject.
    Subject,
}

impl Field {
    /// Every field and its path.
    pub const ALL: [(&'static str, Field); 11] = [
        ("src_endpoint.ip", Field::SrcIp),
        ("actor.user.uid", Field::Principal),
        ("actor.user.type", Field::PrincipalKind),
        ("actor.session.uid", Field::Token),
        ("actor.session.issuer", Field::Key),
        ("src_endpoint.autonomous_system.number", Field::Asn),
        ("src_endpoint.location.country", Field::Country),
        ("http_request.user_agent", Field::UserAgent),
        ("api.operation", Field::Operation),
        ("api.service.name", Field::Service),
        ("resources.uid", Field::Subject),
    ];

    /// The field of an input path (`src_endpoint.location.country`, ...).
    pub fn parse(path: &str) -> Option<Self> {
        Self::ALL.iter().find(|(p, _)| *p == path).map(|(_, f)| *f)
    }

    /// Its path.
    pub fn path(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map_or("?", |(p, _)| p)
    }
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `field = v` or `field in (v, ...)`.
    In(Field, Vec<String>),
    /// `field cidr "net"`.
    Cidr(Field, IpNet),
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
}

/// Why an expression was refused: one line, with the byte position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid --where expression at byte {at}: {why}")]
pub struct ParseError {
    /// Byte offset in the expression.
    pub at: usize,
    /// What was wrong.
    pub why: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            b'=' => {
                i += if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                out.push((start, Tok::Eq));
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                out.push((start, Tok::Ne));
                i += 2;
            }
            b'"' | b'\'' => {
                let quote = c;
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&d) = b.get(i) else {
                        return Err(ParseError { at: start, why: "unterminated string".into() });
                    };
                    if d == quote {
                        i += 1;
                        break;
                    }
                    if d == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Copy one UTF-8 character.
                    let ch = s[i..].chars().next().unwrap_or_default();
                    v.push(ch);
                    i += ch.len_utf8().max(1);
                }
                out.push((start, Tok::Str(v)));
            }
            b'0'..=b'9' => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push((start, Tok::Num(s[start..i].to_owned())));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    i += 1;
                }
                out.push((start, Tok::Word(s[start..i].to_owned())));
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or_default();
                return Err(ParseError { at: start, why: format!("unexpected character {ch:?}") });
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn err<T>(&self, why: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { at: self.at(), why: why.into() })
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let e = if self.keyword("not") {
            self.pos += 1;
            Expr::Not(Box::new(self.unary()?))
        } else if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.peek() != Some(&Tok::RParen) {
                return self.err("expected `)`");
            }
            self.pos += 1;
            e
        } else {
            self.test()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn value(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Str(s) | Tok::Num(s)) => {
                let v = s.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => self.err("expected a quoted value or a number"),
        }
    }

    fn test(&mut self) -> Result<Expr, ParseError> {
        let field = match self.peek() {
            Some(Tok::Word(w)) => match Field::parse(w) {
                Some(f) => f,
                None => {
                    let known: Vec<&str> = Field::ALL.iter().map(|(p, _)| *p).collect();
                    return self.err(format!("unknown field `{w}` (known: {})", known.join(", ")));
                }
            },
            _ => return self.err("expected a field path"),
        };
        self.pos += 1;
        if self.peek() == Some(&Tok::Eq) {
            self.pos += 1;
            return Ok(Expr::In(field, vec![self.value()?]));
        }
        if self.peek() == Some(&Tok::Ne) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(Expr::In(field, vec![self.value()?]))));
        }
        if self.keyword("in") {
            self.pos += 1;
            if self.peek() != Some(&Tok::LParen) {
                return self.err("expected `(` after `in`");
            }
            self.pos += 1;
            let mut vals = vec![self.value()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                vals.push(self.value()?);
            }
            if self.peek() != Some(&Tok::RParen) {
                return self.err("expected `,` or `)`");
            }
            self.pos += 1;
            return Ok(Expr::In(field, vals));
        }
        if self.keyword("cidr") {
            self.pos += 1;
            if field != Field::SrcIp {
                return self.err("`cidr` applies to src_endpoint.ip only");
            }
            let at = self.at();
            let v = self.value()?;
            let net = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ParseError { at, why: format!("{v:?} is not a CIDR block") })?;
            return Ok(Expr::Cidr(field, net));
        }
        self.err("expected `=`, `!=`, `in` or `cidr`")
    }
}

/// Parses an expression.
pub fn parse(s: &str) -> Result<Expr, ParseError> {
    if s.len() > MAX_LEN {
        return Err(ParseError { at: MAX_LEN, why: format!("longer than {MAX_LEN} bytes") });
    }
    let toks = lex(s)?;
    let mut p = Parser { toks, pos: 0, end: s.len(), depth: 0 };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.err("expected `and`, `or` or the end");
    }
    Ok(e)
}

/// How an expression reads an event: calls the matcher with each value of
/// the field and says whether any matched.
pub type Lookup<'a> = dyn Fn(Field, &mut dyn FnMut(&str) -> bool) -> bool + 'a;

impl Expr {
    /// Evaluates against one event: `get` gives a field's values (a
    /// principal may match by id or by pseudonym, so it can give two).
    pub fn eval(&self, get: &Lookup<'_>) -> bool {
        match self {
            Expr::In(f, vals) => get(*f, &mut |v| vals.iter().any(|x| x == v)),
            Expr::Cidr(f, net) => get(*f, &mut |v| v.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip))),
            Expr::And(a, b) => a.eval(get) && b.eval(get),
            Expr::Or(a, b) => a.eval(get) || b.eval(get),
            Expr::Not(a) => !a.eval(get),
        }
    }

    /// Adds, to the values of `actor.user.uid` and `resources.uid`, their
    /// pseudonyms through `f` (the store keeps subject ids, and customers'
    /// principal ids, as pseudonyms only).
    pub fn with_principal_aliases(self, f: &dyn Fn(&str) -> String) -> Self {
        match self {
            Expr::In(field @ (Field::Principal | Field::Subject), vals) => {
                let mut all = vals.clone();
                all.extend(vals.iter().map(|v| f(v)));
                Expr::In(field, all)
            }
            Expr::And(a, b) => Expr::And(Box::new(a.with_principal_aliases(f)), Box::new(b.with_principal_aliases(f))),
            Expr::Or(a, b) => Expr::Or(Box::new(a.with_principal_aliases(f)), Box::new(b.with_principal_aliases(f))),
            Expr::Not(a) => Expr::Not(Box::new(a.with_principal_aliases(f))),
            e => e,
        }
    }
}

impl Expr {
    /// The expression as text that [`parse`] reads back to the same
    /// expression, each value of `actor.user.uid` and `resources.uid` passed
    /// through `subject` first (the store records queries with those values
    /// as pseudonyms: a query names customers).
    pub fn render(&self, subject: &dyn Fn(Field, &str) -> String) -> String {
        fn quote(v: &str) -> String {
            // The lexer takes the character after a backslash as it is.
            let mut q = String::with_capacity(v.len() + 2);
            q.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            q
        }
        fn go(e: &Expr, subject: &dyn Fn(Field, &str) -> String, out: &mut String) {
            match e {
                Expr::In(f, vals) => {
                    let shown: Vec<String> = vals
                        .iter()
                        .map(|v| match f {
                            Field::Principal | Field::Subject => quote(&subject(*f, v)),
                            _ => quote(v),
                        })
                        .collect();
                    if shown.len() == 1 {
                        out.push_str(&format!("{} = {}", f.path(), shown[0]));
                    } else {
                        out.push_str(&format!("{} in ({})", f.path(), shown.join(", ")));
                    }
                }
                Expr::Cidr(f, net) => out.push_str(&format!("{} cidr {}", f.path(), quote(&net.to_string()))),
                Expr::And(a, b) | Expr::Or(a, b) => {
                    out.push('(');
                    go(a, subject, out);
                    out.push_str(if matches!(e, Expr::And(..)) { " and " } else { " or " });
                    go(b, subject, out);
                    out.push(')');
                }
                Expr::Not(a) => {
                    out.push_str("not (");
                    go(a, subject, out);
                    out.push(')');
                }
            }
        }
        let mut out = String::new();
        go(self, subject, &mut out);
        out
    }
}

/// The bytes a value of `f` shows as in a stored event's JSON, when that is
/// certain (plain ASCII, nothing JSON would escape).
fn needle(f: Field, v: &str) -> Option<Vec<u8>> {
    if v.is_empty() || v.bytes().any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b)) {
        return None;
    }
    match f {
        // A number, unquoted.
        Field::Asn => v.bytes().all(|b| b.is_ascii_digit()).then(|| format!(":{v}").into_bytes()),
        _ => Some(format!("\"{v}\"").into_bytes()),
    }
}

/// Groups of byte strings: a record can match only if its bytes hold at
/// least one string of every group (none: no condition).
pub type Needles = Vec<Vec<Vec<u8>>>;

impl Expr {
    /// A necessary condition on a stored event's JSON for the event to
    /// match, checked before parsing the record: every group must have a
    /// string in the bytes. Empty when there is no such cheap condition.
    pub fn needles(&self) -> Needles {
        match self {
            Expr::In(f, vals) => vals.iter().map(|v| needle(*f, v)).collect::<Option<Vec<_>>>().into_iter().collect(),
            Expr::Cidr(..) | Expr::Not(_) => Vec::new(),
            // Both sides must hold: both sides' conditions are necessary
            // (`key = K and asn in (...)` parses only records holding both).
            Expr::And(a, b) => {
                let mut x = a.needles();
                x.extend(b.needles());
                x
            }
            // One side must hold: one group of either side, when both have one.
            Expr::Or(a, b) => match (a.needles().into_iter().next(), b.needles().into_iter().next()) {
                (Some(mut x), Some(y)) => {
                    x.extend(y);
                    vec![x]
                }
                _ => Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(e: &str, ip: &str, key: &str) -> bool {
        let e = parse(e).unwrap();
        e.eval(&|f, m| match f {
            Field::SrcIp => m(ip),
            Field::Key => m(key),
            _ => false,
        })
    }

    #[test]
    fn parses_and_evaluates_the_contract_forms() {
        assert!(eval(r#"src_endpoint.ip = "1.2.3.4""#, "1.2.3.4", "k"));
        assert!(!eval(r#"src_endpoint.ip != "1.2.3.4""#, "1.2.3.4", "k"));
        assert!(eval(r#"actor.session.issuer in ("a", "k")"#, "1.2.3.4", "k"));
        assert!(eval(r#"src_endpoint.ip cidr "1.2.3.0/24" and actor.session.issuer = "k""#, "1.2.3.4", "k"));
        assert!(!eval(r#"src_endpoint.ip cidr "1.2.4.0/24" or not actor.session.issuer = "k""#, "1.2.3.4", "k"));
        assert!(eval(r#"not (src_endpoint.ip cidr "1.2.4.0/24" or actor.session.issuer = "x")"#, "1.2.3.4", "k"));
        assert!(eval(r#"src_endpoint.ip cidr "2001:db8::/32""#, "2001:db8::1", "k"));
        // `and` binds tighter than `or`.
        assert!(eval(
            r#"actor.session.issuer = "k" or actor.session.issuer = "x" and src_endpoint.ip = "9.9.9.9""#,
            "1.2.3.4",
            "k"
        ));
    }

    #[test]
    fn needles_are_necessary_conditions() {
        let n = |e: &str| parse(e).unwrap().needles();
        let none: Needles = Vec::new();
        assert_eq!(n(r#"actor.session.issuer = "k""#), vec![vec![b"\"k\"".to_vec()]]);
        assert_eq!(n(r#"src_endpoint.autonomous_system.number in ("16509", "20473")"#)[0].len(), 2);
        assert_eq!(n(r#"src_endpoint.ip cidr "1.2.3.0/24""#), none);
        assert_eq!(n(r#"not api.operation = "x""#), none);
        assert_eq!(n(r#"src_endpoint.ip cidr "1.2.3.0/24" and api.operation = "x""#), vec![vec![b"\"x\"".to_vec()]]);
        // Both sides of an `and`: a record must hold the key and one of the AS numbers.
        let both = n(r#"actor.session.issuer = "k" and src_endpoint.autonomous_system.number in ("1", "2")"#);
        assert_eq!(both, vec![vec![b"\"k\"".to_vec()], vec![b":1".to_vec(), b":2".to_vec()]]);
        assert_eq!(n(r#"api.operation = "x" or src_endpoint.ip cidr "1.2.3.0/24""#), none);
        assert_eq!(
            n(r#"api.operation = "x" or api.operation = "y""#),
            vec![vec![b"\"x\"".to_vec(), b"\"y\"".to_vec()]]
        );
        assert_eq!(n(r#"http_request.user_agent = "a\"b""#), none);
    }

    #[test]
    fn renders_what_parses_back_with_subjects_replaced() {
        let same = |_: Field, v: &str| v.to_owned();
        for e in [
            r#"src_endpoint.ip = "1.2.3.4""#,
            r#"not (api.operation in ("a\"b", "c\\d") or src_endpoint.ip cidr "1.2.0.0/16") and actor.user.uid != "u""#,
            r#"actor.session.issuer = "k" or actor.session.issuer = "x" and src_endpoint.ip = "9.9.9.9""#,
        ] {
            let parsed = parse(e).unwrap();
            assert_eq!(parse(&parsed.render(&same)).unwrap(), parsed, "{e}");
        }
        let e =
            parse(r#"resources.uid = "c-1" and (actor.user.uid in ("c-2", "emp") or api.operation = "c-3")"#).unwrap();
        let shown = e.render(&|f, v| if v == "emp" { v.to_owned() } else { format!("p({v}, {})", f.path()) });
        assert!(!shown.contains("\"c-1\"") && !shown.contains("\"c-2\""), "{shown}");
        assert!(
            shown.contains("\"p(c-2, actor.user.uid)\"") && shown.contains("\"emp\"") && shown.contains("\"c-3\""),
            "{shown}"
        );
    }

    #[test]
    fn refuses_bad_input_with_a_position() {
        for (e, at) in [
            ("src_endpoint.ip = ", 18),
            ("nope = \"x\"", 0),
            ("src_endpoint.ip cidr \"x\"", 21),
            ("(src_endpoint.ip = \"a\"", 22),
            ("src_endpoint.ip = \"a", 18),
            ("api.operation cidr \"1.0.0.0/8\"", 19),
            ("src_endpoint.ip = \"a\" \"b\"", 22),
        ] {
            let err = parse(e).unwrap_err();
            assert_eq!(err.at, at, "{e}: {err}");
        }
        let deep = "(".repeat(10_000) + "src_endpoint.ip = \"a\"" + &")".repeat(10_000);
        assert!(parse(&deep).unwrap_err().why.contains("nested deeper"));
        let nots = "not ".repeat(10_000) + "src_endpoint.ip = \"a\"";
        assert!(parse(&nots).is_err());
    }
}
