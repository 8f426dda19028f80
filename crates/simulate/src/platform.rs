//! The synthetic platform: its customers, staff, services, keys, networks
//! and API routes.
//!
//! Nothing here is stored per customer: a customer's profile (carrier, home
//! address, device, how often they shop, their address book) is derived from
//! the seed and their index whenever it is needed, so 33.7 million customers
//! cost no memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::rng::Dice;

/// 2025-04-01T00:00:00+09:00: the first simulated day starts at midnight in Seoul.
pub const T0: i64 = 1_743_433_200_000;
/// Milliseconds per day.
pub const DAY: i64 = 86_400_000;
/// Milliseconds per hour.
pub const HOUR: i64 = 3_600_000;
/// Milliseconds per minute.
pub const MINUTE: i64 = 60_000;
/// Recipients per address book at most.
pub const MAX_BOOK: u32 = 5;

/// A principal of the platform.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// Customer by index.
    Customer(u32),
    /// Member of staff by index into [`Platform::staff`].
    Staff(u16),
    /// Service by index into [`SERVICES`].
    Service(u8),
}

/// A member of staff.
#[derive(Clone, Debug)]
pub struct Staff {
    /// `agent-001`, `emp-1042`.
    pub uid: String,
    /// Job role.
    pub role: &'static str,
    /// When they left, if they did (ms).
    pub left: Option<i64>,
    /// Desk address in the office network.
    pub desk: Ipv4Addr,
}

/// Internal services: uid and address.
pub const SERVICES: [(&str, Ipv4Addr); 2] =
    [("svc-shipping", Ipv4Addr::new(10, 20, 0, 11)), ("svc-marketing", Ipv4Addr::new(10, 20, 0, 21))];
/// [`SERVICES`] index of the shipping-label service.
pub const SVC_SHIPPING: u8 = 0;
/// [`SERVICES`] index of the marketing batch job.
pub const SVC_MARKETING: u8 = 1;

/// A signing key.
pub struct KeyDef {
    /// Key id (`kid`).
    pub id: &'static str,
    /// RFC 3339 creation time.
    pub created: &'static str,
    /// RFC 3339 retirement time.
    pub retired: Option<&'static str>,
    /// Staff uids holding a copy.
    pub custodians: &'static [&'static str],
}

/// Keys in [`KEYS`] order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// Signs customers' tokens; its author kept a copy when he left.
    Customer = 0,
    /// Signs staff tokens.
    Staff = 1,
    /// Signs service tokens.
    Service = 2,
}

/// The platform's signing keys.
pub const KEYS: [KeyDef; 4] = [
    KeyDef {
        id: "auth-key-2019",
        created: "2019-05-01T00:00:00Z",
        retired: None,
        custodians: &["emp-1042", "emp-2001"],
    },
    KeyDef { id: "staff-key-2024", created: "2024-03-01T00:00:00Z", retired: None, custodians: &["emp-2001"] },
    KeyDef {
        id: "svc-key-2023",
        created: "2023-01-15T00:00:00Z",
        retired: None,
        custodians: &["emp-2001", "emp-3001"],
    },
    KeyDef {
        id: "auth-key-2016",
        created: "2016-02-01T00:00:00Z",
        retired: Some("2019-06-01T00:00:00Z"),
        custodians: &["emp-1042"],
    },
];

/// An autonomous system the simulator draws addresses from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct As {
    /// Number.
    pub number: u32,
    /// Name.
    pub name: &'static str,
    /// Directory label.
    pub label: &'static str,
}

macro_rules! asys {
    ($($c:ident = $n:expr, $name:expr, $label:expr;)*) => {
        $(#[doc = $name] pub const $c: As = As { number: $n, name: $name, label: $label };)*
        /// Every AS the simulator uses.
        pub const ALL_AS: &[As] = &[$($c),*];
    };
}

asys! {
    AS_SKT = 9644, "SK Telecom", "carrier";
    AS_KT = 4766, "Korea Telecom", "carrier";
    AS_LGU = 17858, "LG Uplus", "carrier";
    AS_SKB = 9318, "SK Broadband", "broadband";
    AS_LGDACOM = 3786, "LG DACOM", "broadband";
    AS_AMAZON = 16509, "Amazon.com", "hosting";
    AS_DO = 14061, "DigitalOcean", "hosting";
    AS_M247 = 9009, "M247 Europe", "hosting";
    AS_VULTR = 20473, "The Constant Company", "hosting";
    AS_OVH = 16276, "OVH SAS", "hosting";
    AS_LINODE = 63949, "Akamai Connected Cloud", "hosting";
    AS_DOCOMO = 9605, "NTT DOCOMO", "carrier";
    AS_TMOBILE = 21928, "T-Mobile USA", "carrier";
    AS_VIETTEL = 7552, "Viettel Group", "carrier";
    AS_AIS = 45430, "Advanced Wireless Network", "carrier";
    AS_COMCAST = 7922, "Comcast Cable Communications", "residential";
    AS_VIVO = 26599, "Telefonica Brasil", "residential";
    AS_JIO = 55836, "Reliance Jio Infocomm", "residential";
    AS_TELKOM = 7713, "Telkom Indonesia", "residential";
    AS_TELMEX = 8151, "Uninet (Telmex)", "residential";
    AS_DTAG = 3320, "Deutsche Telekom", "residential";
}

/// Residential proxy networks abroad (what credential-stuffing services
/// rent): AS, country, base of the addresses drawn.
pub const RESIDENTIAL_PROXIES: [(&As, &str, [u8; 2]); 6] = [
    (&AS_COMCAST, "US", [73, 12]),
    (&AS_VIVO, "BR", [177, 96]),
    (&AS_JIO, "IN", [49, 36]),
    (&AS_TELKOM, "ID", [36, 72]),
    (&AS_TELMEX, "MX", [187, 190]),
    (&AS_DTAG, "DE", [91, 40]),
];

/// Where a request came from.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Net {
    /// Address.
    pub ip: IpAddr,
    /// ISO country.
    pub country: Option<&'static str>,
    /// Autonomous system.
    pub asn: Option<&'static As>,
}

impl Net {
    /// An internal or office address: no geo, no AS.
    pub fn internal(ip: Ipv4Addr) -> Self {
        Self { ip: IpAddr::V4(ip), country: None, asn: None }
    }
}

/// Mobile carriers: AS, CGNAT pool base.
const CARRIERS: [(&As, [u8; 2]); 3] = [(&AS_SKT, [223, 38]), (&AS_KT, [39, 7]), (&AS_LGU, [106, 101])];
/// Home broadband: AS, base of its customer range.
const BROADBAND: [(&As, [u8; 2]); 3] = [(&AS_KT, [121, 128]), (&AS_SKB, [175, 192]), (&AS_LGDACOM, [211, 36])];
/// Commercial VPN exits on hosting networks: AS, country, base.
const VPN_EXITS: [(&As, &str, [u8; 3]); 4] = [
    (&AS_M247, "JP", [185, 242, 4]),
    (&AS_AMAZON, "US", [3, 112, 40]),
    (&AS_DO, "SG", [159, 89, 200]),
    (&AS_M247, "KR", [193, 37, 32]),
];
/// Foreign mobile networks for travellers.
const ROAMING: [(&As, &str, [u8; 2]); 4] = [
    (&AS_DOCOMO, "JP", [1, 66]),
    (&AS_TMOBILE, "US", [172, 56]),
    (&AS_VIETTEL, "VN", [27, 72]),
    (&AS_AIS, "TH", [49, 228]),
];

/// User agents: customers' apps and browsers, then tools.
pub const AGENTS: [&str; 11] = [
    "ShopApp/8.14.2 (iPhone; iOS 18.4; Scale/3.00)",
    "ShopApp/8.14.2 (Android 15; SM-S928N)",
    "ShopApp/8.13.0 (Android 14; SM-A546N)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/135.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 15; SM-S928N) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/135.0.0.0 Mobile Safari/537.36",
    "ShopConsole/3.2 (cs-desktop; Windows 11)",
    "shop-internal-client/1.9",
    "python-requests/2.32.3",
    "ShopApp/8.11.3 (Android 13; SM-G991N)",
];
/// [`AGENTS`] index of the customer-service console.
pub const UA_CONSOLE: u8 = 7;
/// [`AGENTS`] index of internal service clients.
pub const UA_INTERNAL: u8 = 8;
/// [`AGENTS`] index of a scripting library.
pub const UA_SCRIPT: u8 = 9;
/// [`AGENTS`] index of an older app build a credential-stuffing tool imitates.
pub const UA_STUFFER: u8 = 10;
/// [`AGENTS`] index of a desktop Chrome (what a careful crawler imitates).
pub const UA_CHROME: u8 = 4;

/// What a customer is like; derived, never stored.
#[derive(Copy, Clone, Debug)]
pub struct Profile {
    /// Sessions per day on an ordinary day.
    pub rate: f64,
    /// Index into the carrier table.
    pub carrier: u8,
    /// Index into the broadband table.
    pub isp: u8,
    /// Share of sessions on mobile data.
    pub mobile_share: f64,
    /// Uses a commercial VPN for some sessions.
    pub vpn: bool,
    /// Index into [`AGENTS`].
    pub agent: u8,
    /// Recipients in the address book (0..=[`MAX_BOOK`]).
    pub book: u32,
    /// Home broadband address index within the ISP's range.
    pub home: u32,
}

/// The platform for one run.
pub struct Platform {
    /// Run seed.
    pub seed: u64,
    /// Number of customers.
    pub customers: u32,
    /// Simulated days.
    pub days: u32,
    /// Digits in customer ids.
    width: usize,
    /// Staff: agents first, then engineers.
    pub staff: Vec<Staff>,
    /// How many of `staff` are customer-service agents.
    pub agents: u16,
    /// Pool size per carrier's CGNAT.
    cgnat_pool: u32,
}

/// Index in [`Platform::staff`] of the departed auth engineer.
pub const DEPARTED: &str = "emp-1042";

impl Platform {
    /// A platform with `customers` customers over `days` days.
    pub fn new(seed: u64, customers: u32, days: u32) -> Self {
        let agents = (customers / 20_000).clamp(8, 400) as u16;
        let mut staff = Vec::new();
        for a in 0..agents {
            staff.push(Staff {
                uid: format!("agent-{:03}", a + 1),
                role: "cs-agent",
                left: None,
                desk: Ipv4Addr::new(203, 0, 113, 10 + (a % 200) as u8),
            });
        }
        let end = T0 + i64::from(days) * DAY;
        let engineers: [(&str, &str, Option<i64>); 11] = [
            (DEPARTED, "auth-engineer", Some(1_735_603_200_000)), // 2024-12-31, before the window
            ("emp-2001", "auth-engineer", None),
            ("emp-3001", "platform-engineer", None),
            ("emp-3002", "platform-engineer", None),
            ("emp-3003", "backend-engineer", None),
            ("emp-3004", "backend-engineer", None),
            ("emp-3005", "data-analyst", None),
            ("emp-3006", "data-analyst", None),
            ("emp-3007", "backend-engineer", None),
            ("emp-3009", "backend-engineer", Some(T0 + (end - T0) / 3 + 18 * HOUR)),
            ("emp-3010", "cs-lead", Some(T0 + 2 * (end - T0) / 3 + 18 * HOUR)),
        ];
        for (i, (uid, role, left)) in engineers.into_iter().enumerate() {
            staff.push(Staff { uid: uid.to_owned(), role, left, desk: Ipv4Addr::new(203, 0, 113, 220 + i as u8) });
        }
        let width = customers.max(1).ilog10() as usize + 1;
        Self { seed, customers, days, width: width.max(8), staff, agents, cgnat_pool: (customers / 2_000).max(64) }
    }

    /// First millisecond after the simulated window.
    pub fn end(&self) -> i64 {
        T0 + i64::from(self.days) * DAY
    }

    /// Customer `c`'s id as the platform logs it.
    pub fn customer_uid(&self, c: u32, out: &mut Vec<u8>) {
        out.push(b'c');
        pad(out, u64::from(c), self.width);
    }

    /// Recipient `k` (0-based) of customer `c`'s address book.
    pub fn recipient_uid(&self, c: u32, k: u32, out: &mut Vec<u8>) {
        out.push(b'r');
        pad(out, u64::from(c), self.width);
        out.push(b'-');
        out.extend_from_slice(itoa::Buffer::new().format(k + 1).as_bytes());
    }

    /// Subject index of customer `c` (customers are `0..customers`).
    pub fn customer_subject(&self, c: u32) -> u32 {
        c
    }

    /// Subject index of recipient `k` of customer `c`.
    pub fn recipient_subject(&self, c: u32, k: u32) -> u32 {
        self.customers + c * MAX_BOOK + k
    }

    /// Writes a subject's uid from its index.
    pub fn subject_uid(&self, s: u32, out: &mut Vec<u8>) {
        if s < self.customers {
            self.customer_uid(s, out);
        } else {
            let r = s - self.customers;
            self.recipient_uid(r / MAX_BOOK, r % MAX_BOOK, out);
        }
    }

    /// Whether a subject index is a third party.
    pub fn is_recipient(&self, s: u32) -> bool {
        s >= self.customers
    }

    /// Customer `c`'s profile.
    pub fn profile(&self, c: u32) -> Profile {
        let mut d = Dice::at(&[self.seed, 1, u64::from(c)]);
        let u = d.unit();
        let rate = if d.chance(0.04) { 1.2 + d.unit() } else { 0.03 + 0.05 * (2.6 * u).exp() };
        let book = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5][d.below(12) as usize];
        let agent = *d.pick(&[0u8, 0, 1, 1, 2, 3, 4, 5, 6]);
        Profile {
            rate,
            carrier: d.weighted(&[45.0, 30.0, 25.0]) as u8,
            isp: d.weighted(&[45.0, 30.0, 25.0]) as u8,
            mobile_share: 0.3 + 0.6 * d.unit(),
            vpn: d.chance(0.02),
            agent,
            book,
            home: d.below(u64::from(self.customers.max(1000)) * 8 / 10) as u32,
        }
    }

    /// Whether customer `c` is abroad on `day`, and where.
    pub fn abroad(&self, c: u32, day: u32) -> Option<usize> {
        let week = day / 7;
        let mut d = Dice::at(&[self.seed, 2, u64::from(c), u64::from(week)]);
        if !d.chance(0.01) {
            return None;
        }
        let start = week * 7 + d.below(7) as u32;
        let len = 2 + d.below(5) as u32;
        (day >= start && day < start + len).then(|| d.below(ROAMING.len() as u64) as usize)
    }

    /// The network a customer's session uses.
    pub fn customer_net(&self, c: u32, p: &Profile, day: u32, d: &mut Dice) -> Net {
        if let Some(r) = self.abroad(c, day) {
            let (asys, country, base) = ROAMING[r];
            let host = d.below(1 << 16) as u32;
            return v4(base[0], base[1], host, country, asys);
        }
        if p.vpn && d.chance(0.5) {
            let (asys, country, base) = VPN_EXITS[(c as usize + day as usize) % VPN_EXITS.len()];
            let ip = Ipv4Addr::new(base[0], base[1], base[2], 10 + d.below(30) as u8);
            return Net { ip: IpAddr::V4(ip), country: Some(country), asn: Some(asys) };
        }
        if d.chance(p.mobile_share) {
            let (asys, base) = CARRIERS[p.carrier as usize];
            if asys.number == AS_LGU.number && d.chance(0.6) {
                // LG Uplus hands its customers IPv6: a stable /64 per device and a
                // temporary interface id that rotates daily (RFC 4941).
                let prefix = 0x2406_5900_0000_0000u64 | u64::from(c);
                let iid = Dice::at(&[self.seed, 12, u64::from(c), u64::from(day)]).bits();
                let ip = Ipv6Addr::from((u128::from(prefix) << 64) | u128::from(iid));
                return Net { ip: IpAddr::V6(ip), country: Some("KR"), asn: Some(asys) };
            }
            // Carrier-grade NAT: a small pool of public addresses shared by everyone on the carrier.
            return v4(base[0], base[1], d.below(u64::from(self.cgnat_pool)) as u32, "KR", asys);
        }
        self.home_net(c, p, day)
    }

    /// A customer's home broadband line on `day`.
    pub fn home_net(&self, c: u32, p: &Profile, day: u32) -> Net {
        let (asys, base) = BROADBAND[p.isp as usize];
        // Households share a line; an address changes now and then.
        let epoch = u64::from(day / 10 + c % 3);
        let home = p.home ^ (Dice::at(&[self.seed, 3, u64::from(c), epoch]).below(4) as u32);
        v4(base[0], base[1], home, "KR", asys)
    }

    /// The directory export for this platform.
    pub fn directory(&self, extra: &[(&str, &str)]) -> serde_json::Value {
        use serde_json::json;
        let rfc = |ms: i64| {
            let secs = ms.div_euclid(1000);
            format_rfc3339(secs)
        };
        let mut principals: Vec<serde_json::Value> = self
            .staff
            .iter()
            .map(|s| json!({"uid": s.uid, "kind": "employee", "role": s.role, "left": s.left.map(rfc)}))
            .collect();
        for (uid, _) in SERVICES {
            principals.push(json!({"uid": uid, "kind": "service"}));
        }
        for (uid, role) in extra {
            principals.push(json!({"uid": uid, "kind": "employee", "role": role}));
        }
        let keys: Vec<_> = KEYS
            .iter()
            .map(|k| {
                json!({"id": k.id, "purpose": "token-signing", "created": k.created,
                       "retired": k.retired, "custodians": k.custodians})
            })
            .collect();
        let mut networks = vec![
            json!({"cidr": "10.0.0.0/8", "label": "internal"}),
            json!({"cidr": "203.0.113.0/24", "label": "office"}),
        ];
        for (asys, base) in CARRIERS {
            networks.push(json!({"cidr": format!("{}.{}.0.0/16", base[0], base[1]), "label": "carrier-cgnat"}));
            networks.push(json!({"asn": asys.number, "label": "carrier"}));
        }
        for (asys, _) in BROADBAND.iter().skip(1) {
            networks.push(json!({"asn": asys.number, "label": "broadband"}));
        }
        networks.push(json!({"cidr": "121.128.0.0/10", "label": "broadband"}));
        for a in ALL_AS.iter().filter(|a| a.label == "hosting") {
            networks.push(json!({"asn": a.number, "label": "hosting"}));
        }
        json!({"principals": principals, "keys": keys, "networks": networks})
    }
}

/// An address in `base.0.0/16` and the ranges after it (`host` up to 22 bits).
pub fn v4(a: u8, b: u8, host: u32, country: &'static str, asys: &'static As) -> Net {
    let ip = Ipv4Addr::from(((u32::from(a) << 24) | (u32::from(b) << 16)).wrapping_add(host & 0x003f_ffff));
    Net { ip: IpAddr::V4(ip), country: Some(country), asn: Some(asys) }
}

fn pad(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n);
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(s.len())));
    out.extend_from_slice(s.as_bytes());
}

/// RFC 3339 in UTC for whole seconds since the epoch.
pub fn format_rfc3339(secs: i64) -> String {
    // The simulator's times are all well inside jiff's range.
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_735_603_200), "2024-12-31T00:00:00Z");
        assert_eq!(format_rfc3339(T0 / 1000), "2025-03-31T15:00:00Z");
    }

    #[test]
    fn subject_ids_round_trip_through_indices() {
        let p = Platform::new(1, 1000, 3);
        let mut out = Vec::new();
        p.subject_uid(p.recipient_subject(12, 2), &mut out);
        assert_eq!(out, b"r00000012-3");
        out.clear();
        p.subject_uid(p.customer_subject(999), &mut out);
        assert_eq!(out, b"c00000999");
    }
}
