//! The simulator's own compact events and the routes they call, and how
//! they are written as OCSF JSON lines.

use crate::platform::{AGENTS, KEYS, Key, Net, Platform, SERVICES, Who};

/// Field classes, in a fixed order (bit positions in [`Fields`]).
pub const FIELD_NAMES: [&str; 10] = [
    "name",
    "email",
    "phone",
    "address",
    "entrance_code",
    "order_history",
    "payment",
    "birth_date",
    "national_id",
    "unclassified",
];

/// A set of field classes (bits over [`FIELD_NAMES`]).
pub type Fields = u16;

const fn f(names: &[usize]) -> Fields {
    let mut s = 0;
    let mut i = 0;
    while i < names.len() {
        s |= 1 << names[i];
        i += 1;
    }
    s
}
const NAME: usize = 0;
const EMAIL: usize = 1;
const PHONE: usize = 2;
const ADDRESS: usize = 3;
const ENTRANCE: usize = 4;
const ORDERS: usize = 5;
const PAYMENT: usize = 6;
const BIRTH: usize = 7;

/// An API route of the platform.
pub struct OpDef {
    /// Route template.
    pub name: &'static str,
    /// OCSF activity_id.
    pub activity: u8,
    /// Answering service.
    pub service: &'static str,
    /// Classes returned for the account holder.
    pub customer: Fields,
    /// Classes returned for third parties.
    pub recipient: Fields,
    /// Whether the gateway logs `labels` (otherwise the data map decides).
    pub labels: bool,
}

macro_rules! ops {
    ($($id:ident = $name:expr, $act:expr, $svc:expr, $cust:expr, $rcp:expr, $labels:expr;)*) => {
        /// Routes by index.
        #[derive(Copy, Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)] // the route names say it
        pub enum Op { $($id),* }
        /// Route definitions in [`Op`] order; must agree with the built-in data map.
        pub const OPS: &[OpDef] = &[$(OpDef { name: $name, activity: $act, service: $svc, customer: $cust, recipient: $rcp, labels: $labels }),*];
    };
}

ops! {
    Me = "GET /v1/me", 2, "account", f(&[NAME, EMAIL]), 0, false;
    Profile = "GET /v1/me/profile", 2, "account", f(&[NAME, EMAIL, PHONE, BIRTH]), 0, true;
    Book = "GET /v1/address-book", 2, "address", f(&[NAME, PHONE, ADDRESS]), f(&[NAME, PHONE, ADDRESS]), true;
    BookEdit = "GET /v1/address-book/{id}/edit", 2, "address", f(&[NAME, PHONE, ADDRESS, ENTRANCE]), f(&[NAME, PHONE, ADDRESS, ENTRANCE]), true;
    BookPut = "PUT /v1/address-book/{id}", 3, "address", f(&[NAME, PHONE, ADDRESS, ENTRANCE]), f(&[NAME, PHONE, ADDRESS, ENTRANCE]), false;
    Orders = "GET /v1/orders", 2, "order", f(&[NAME, ORDERS]), 0, false;
    Order = "GET /v1/orders/{id}", 2, "order", f(&[NAME, PHONE, ADDRESS, ORDERS]), f(&[NAME, PHONE, ADDRESS]), false;
    Payment = "GET /v1/payment-methods", 2, "payment", f(&[NAME, PAYMENT]), 0, true;
    PlaceOrder = "POST /v1/orders", 1, "order", f(&[NAME, ADDRESS, PAYMENT]), f(&[NAME, ADDRESS, PAYMENT]), false;
    Product = "GET /v1/products/{id}", 2, "catalog", 0, 0, false;
    Search = "GET /v1/search", 2, "catalog", 0, 0, false;
    Cart = "GET /v1/cart", 2, "cart", 0, 0, false;
    CsCustomer = "GET /v1/cs/customers/{id}", 2, "cs-console", f(&[NAME, EMAIL, PHONE, ADDRESS, ORDERS]), 0, true;
    Shipping = "GET /internal/v1/shipping-labels", 2, "logistics", f(&[NAME, PHONE, ADDRESS, ENTRANCE]), f(&[NAME, PHONE, ADDRESS, ENTRANCE]), false;
    Audience = "GET /internal/v1/marketing/audience", 2, "marketing", f(&[NAME, EMAIL]), f(&[NAME, EMAIL]), false;
}

impl Op {
    /// Its definition.
    pub fn def(self) -> &'static OpDef {
        &OPS[self as usize]
    }
}

/// Whose data a response carried.
#[derive(Clone, Debug, PartialEq)]
pub enum Subjects {
    /// None (failures, catalog pages).
    None,
    /// The customer alone.
    One(u32),
    /// The customer and their whole address book.
    Book(u32),
    /// One address-book entry: 0 the customer's own, k recipient k-1.
    Entry(u32, u32),
    /// An order: the customer and perhaps a gift recipient.
    Order(u32, Option<u32>),
    /// Many subjects by subject index (batch jobs).
    Many(Box<[u32]>),
}

/// One API call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The principal the token names.
    pub who: Who,
    /// Token id bits (0: not logged).
    pub token: u64,
    /// Signing key.
    pub key: Key,
    /// Source.
    pub net: Net,
    /// Index into [`AGENTS`].
    pub agent: u8,
    /// Route.
    pub op: Op,
    /// Succeeded.
    pub ok: bool,
    /// Subjects returned (ignored when not ok).
    pub subjects: Subjects,
}

/// What kind of line an event becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// API Activity.
    Call(Call),
    /// Token issuance (or a failed login when `ok` is false).
    Login {
        /// Who.
        who: Who,
        /// Token id bits.
        token: u64,
        /// Signing key.
        key: Key,
        /// Lifetime in ms.
        ttl: i64,
        /// From where.
        net: Net,
        /// Succeeded.
        ok: bool,
    },
    /// A member of staff disabled.
    Offboard(u16),
    /// A health check logged as OCSF HTTP Activity (another class).
    HealthCheck,
    /// A Windows logon event as plain JSON (no OCSF class).
    WindowsLogon,
    /// A deliberately broken line of this kind (0..MALFORMED_KINDS).
    Malformed(u8),
}

/// Kinds of malformed line the simulator writes.
pub const MALFORMED_KINDS: u8 = 5;

/// An event with its event time and arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// When the collector received it; output is sorted by this.
    pub arrival: i64,
    /// Event time.
    pub time: i64,
    /// Tie-breaker: unique per event and deterministic.
    pub seq: u64,
    /// What it is.
    pub body: Body,
    /// The injected attack it belongs to (index into the scenario's attacks).
    pub attack: Option<u8>,
}

/// Writes events as JSON lines. All strings the simulator emits are plain
/// ASCII without quotes or backslashes, so no escaping is needed.
pub struct Writer<'p> {
    platform: &'p Platform,
    itoa: itoa::Buffer,
}

const META: &[u8] = br#","metadata":{"product":{"name":"shop-gateway","vendor_name":"shop"},"version":"1.3.0"}}"#;

impl<'p> Writer<'p> {
    /// A writer for this platform's ids.
    pub fn new(platform: &'p Platform) -> Self {
        Self { platform, itoa: itoa::Buffer::new() }
    }

    fn num(&mut self, out: &mut Vec<u8>, n: impl itoa::Integer) {
        out.extend_from_slice(self.itoa.format(n).as_bytes());
    }

    fn who(&mut self, out: &mut Vec<u8>, who: Who) {
        out.extend_from_slice(br#"{"uid":""#);
        match who {
            Who::Customer(c) => self.platform.customer_uid(c, out),
            Who::Staff(s) => out.extend_from_slice(self.platform.staff[s as usize].uid.as_bytes()),
            Who::Service(s) => out.extend_from_slice(SERVICES[s as usize].0.as_bytes()),
        }
        out.extend_from_slice(match who {
            Who::Customer(_) => br#"","type":"customer"}"#.as_slice(),
            Who::Staff(_) => br#"","type":"employee"}"#.as_slice(),
            Who::Service(_) => br#"","type":"service"}"#.as_slice(),
        });
    }

    fn token(&mut self, out: &mut Vec<u8>, token: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(b't');
        out.extend((0..16).rev().map(|i| HEX[(token >> (i * 4)) as usize & 0xf]));
    }

    fn net(&mut self, out: &mut Vec<u8>, net: &Net, full: bool) {
        out.extend_from_slice(br#""src_endpoint":{"ip":""#);
        match net.ip {
            // Display goes through the formatting machinery; this is the hot path.
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    self.num(out, octet);
                }
            }
            std::net::IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
        }
        out.push(b'"');
        if full {
            if let Some(c) = net.country {
                out.extend_from_slice(br#","location":{"country":""#);
                out.extend_from_slice(c.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            if let Some(a) = net.asn {
                out.extend_from_slice(br#","autonomous_system":{"number":"#);
                self.num(out, a.number);
                out.extend_from_slice(br#","name":""#);
                out.extend_from_slice(a.name.as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
        out.push(b'}');
    }

    fn subject(&mut self, out: &mut Vec<u8>, s: u32, fields: Fields, labels: bool, first: &mut bool) {
        if !*first {
            out.push(b',');
        }
        *first = false;
        out.extend_from_slice(br#"{"uid":""#);
        self.platform.subject_uid(s, out);
        out.extend_from_slice(if self.platform.is_recipient(s) {
            br#"","type":"recipient""#.as_slice()
        } else {
            br#"","type":"customer""#.as_slice()
        });
        if labels {
            out.extend_from_slice(br#","labels":["#);
            for (i, bit) in (0..FIELD_NAMES.len()).filter(|b| fields & (1 << b) != 0).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(FIELD_NAMES[bit].as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        out.push(b'}');
    }

    /// Appends one event as a line (with its newline).
    pub fn write(&mut self, ev: &SimEvent, out: &mut Vec<u8>, exposed: &mut impl FnMut(u32, Fields)) {
        match &ev.body {
            Body::Call(call) => self.call(ev.time, call, out, exposed),
            Body::Login { who, token, key, ttl, net, ok } => {
                out.extend_from_slice(
                    br#"{"class_uid":3002,"category_uid":3,"type_uid":300201,"activity_id":1,"status_id":"#,
                );
                out.extend_from_slice(if *ok { b"1" } else { b"2" });
                out.extend_from_slice(br#","time":"#);
                self.num(out, ev.time);
                out.extend_from_slice(br#","user":"#);
                self.who(out, *who);
                if *ok {
                    out.extend_from_slice(br#","session":{"uid":""#);
                    self.token(out, *token);
                    out.extend_from_slice(br#"","issuer":""#);
                    out.extend_from_slice(KEYS[*key as usize].id.as_bytes());
                    out.extend_from_slice(br#"","expiration_time":"#);
                    self.num(out, ev.time + ttl);
                    out.push(b'}');
                }
                out.push(b',');
                self.net(out, net, false);
                out.extend_from_slice(META);
            }
            Body::Offboard(s) => {
                out.extend_from_slice(
                    br#"{"class_uid":3001,"category_uid":3,"type_uid":300105,"activity_id":5,"status_id":1,"time":"#,
                );
                self.num(out, ev.time);
                out.extend_from_slice(br#","user":"#);
                self.who(out, Who::Staff(*s));
                out.extend_from_slice(META);
            }
            Body::HealthCheck => {
                out.extend_from_slice(
                    br#"{"class_uid":4002,"category_uid":4,"type_uid":400203,"activity_id":3,"status_id":1,"time":"#,
                );
                self.num(out, ev.time);
                out.extend_from_slice(br#","http_request":{"http_method":"GET","url":{"path":"/healthz"}},"src_endpoint":{"ip":"10.20.0.2"}"#);
                out.extend_from_slice(META);
            }
            Body::WindowsLogon => {
                out.extend_from_slice(
                    br#"{"EventID":4624,"Channel":"Security","Computer":"bastion-01.corp","TimeCreated":""#,
                );
                out.extend_from_slice(crate::platform::format_rfc3339(ev.time / 1000).as_bytes());
                out.extend_from_slice(br#"","LogonType":10,"TargetUserName":"emp-3001"}"#);
            }
            Body::Malformed(kind) => self.malformed(ev, *kind, out),
        }
        out.push(b'\n');
    }

    fn call(&mut self, time: i64, c: &Call, out: &mut Vec<u8>, exposed: &mut impl FnMut(u32, Fields)) {
        let def = c.op.def();
        out.extend_from_slice(br#"{"class_uid":6003,"category_uid":6,"type_uid":"#);
        self.num(out, 600_300 + u32::from(def.activity));
        out.extend_from_slice(br#","activity_id":"#);
        self.num(out, def.activity);
        out.extend_from_slice(if c.ok {
            br#","status_id":1,"time":"#.as_slice()
        } else {
            br#","status_id":2,"time":"#.as_slice()
        });
        self.num(out, time);
        out.extend_from_slice(br#","actor":{"user":"#);
        self.who(out, c.who);
        if c.token != 0 {
            out.extend_from_slice(br#","session":{"uid":""#);
            self.token(out, c.token);
            out.extend_from_slice(br#"","issuer":""#);
            out.extend_from_slice(KEYS[c.key as usize].id.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"},");
        self.net(out, &c.net, true);
        out.extend_from_slice(br#","http_request":{"user_agent":""#);
        out.extend_from_slice(AGENTS[c.agent as usize].as_bytes());
        out.extend_from_slice(br#""},"api":{"operation":""#);
        out.extend_from_slice(def.name.as_bytes());
        out.extend_from_slice(br#"","service":{"name":""#);
        out.extend_from_slice(def.service.as_bytes());
        out.extend_from_slice(br#""}},"resources":["#);
        if c.ok {
            let p = self.platform;
            let mut first = true;
            let mut put = |w: &mut Self, out: &mut Vec<u8>, s: u32| {
                let fields = if p.is_recipient(s) { def.recipient } else { def.customer };
                w.subject(out, s, fields, def.labels, &mut first);
                exposed(s, fields);
            };
            match &c.subjects {
                Subjects::None => {}
                Subjects::One(cu) => put(self, out, p.customer_subject(*cu)),
                Subjects::Book(cu) => {
                    put(self, out, p.customer_subject(*cu));
                    for k in 0..p.profile(*cu).book {
                        put(self, out, p.recipient_subject(*cu, k));
                    }
                }
                Subjects::Entry(cu, 0) => put(self, out, p.customer_subject(*cu)),
                Subjects::Entry(cu, k) => put(self, out, p.recipient_subject(*cu, k - 1)),
                Subjects::Order(cu, gift) => {
                    put(self, out, p.customer_subject(*cu));
                    if let Some(k) = gift {
                        put(self, out, p.recipient_subject(*cu, *k));
                    }
                }
                Subjects::Many(list) => {
                    for &s in list.iter() {
                        put(self, out, s);
                    }
                }
            }
        }
        out.push(b']');
        out.extend_from_slice(META);
    }

    fn malformed(&mut self, ev: &SimEvent, kind: u8, out: &mut Vec<u8>) {
        let mut tmp = Vec::new();
        let call = Call {
            who: Who::Customer(0),
            token: 0,
            key: Key::Customer,
            net: Net::internal(std::net::Ipv4Addr::new(10, 9, 9, 9)),
            agent: 0,
            op: Op::Product,
            ok: true,
            subjects: Subjects::None,
        };
        self.call(ev.time, &call, &mut tmp, &mut |_, _| {});
        let line = String::from_utf8_lossy(&tmp).into_owned();
        let broken: Vec<u8> = match kind {
            // Cut off mid-object, as a crashed shipper leaves it.
            0 => line.as_bytes()[..line.len() / 2].to_vec(),
            // No actor.user.uid.
            1 => line.replace(r#"{"uid":"c"#, r#"{"name":"c"#).into_bytes(),
            // time as text.
            2 => {
                line.replacen(r#""time":"#, r#""time":"at "#, 1).replacen(r#","actor""#, r#"","actor""#, 1).into_bytes()
            }
            // Not an address.
            3 => line.replace("10.9.9.9", "10.9.9.999").into_bytes(),
            // Invalid UTF-8 inside a string.
            _ => line
                .replace("catalog", "cat\u{0}alog")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 0 { 0xff } else { b })
                .collect(),
        };
        out.extend_from_slice(&broken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes logged without labels rely on the built-in data map; the
    /// simulator's truth uses its own table. They must say the same.
    #[test]
    fn routes_agree_with_the_builtin_data_map() {
        let map = model::DataMap::builtin();
        let mut classes = model::FieldClasses::default();
        let names = |set: Fields| -> Vec<&str> {
            (0..FIELD_NAMES.len()).filter(|b| set & (1 << b) != 0).map(|b| FIELD_NAMES[b]).collect()
        };
        for op in OPS.iter().filter(|o| o.customer != 0) {
            let resolved = map.resolve(op.name, &mut classes);
            let mut want = names(op.customer);
            let mut got: Vec<&str> = classes.names(resolved.customer).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{} for customers", op.name);
            if op.recipient != 0 {
                let mut want = names(op.recipient);
                let mut got: Vec<&str> = classes.names(resolved.recipient).collect();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "{} for recipients", op.name);
            }
        }
    }
}
