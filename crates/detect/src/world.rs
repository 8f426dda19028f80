//! What the detectors know about the platform beyond one event: the
//! directory (principals, keys, labelled networks), cached per dense id so a
//! lookup on the hot path is an array index.

use std::net::IpAddr;

use crate::Map as HashMap;
use model::directory::{Directory, millis};
use model::{AddrId, KeyId, Millis, PrincipalId, PrincipalKind, Symbols};

/// A network class: an index into [`World::class_name`]. 0 is "unlabelled".
pub type Class = u16;

/// What the directory says about a principal.
#[derive(Clone, Debug, Default)]
pub struct PrincipalInfo {
    /// Listed kind (Unknown when not listed).
    pub kind: Option<PrincipalKind>,
    /// Role index into [`World::role_name`] (0: no role).
    pub role: u16,
    /// When they left.
    pub left: Option<Millis>,
}

/// What the directory says about a signing key.
#[derive(Clone, Debug, Default)]
pub struct KeyInfo {
    /// Listed at all.
    pub known: bool,
    /// Created.
    pub created: Option<Millis>,
    /// Retired.
    pub retired: Option<Millis>,
    /// Custodians and when each left (if they did).
    pub custodians: Vec<(String, Option<Millis>)>,
}

const UNSET: u32 = u32::MAX;

/// Directory lookups and per-id caches.
#[derive(Debug)]
pub struct World {
    dir: Directory,
    hosting: Vec<String>,
    classes: Vec<String>,
    roles: Vec<String>,
    principals: Vec<u32>,
    principal_infos: Vec<PrincipalInfo>,
    keys: Vec<u32>,
    key_infos: Vec<KeyInfo>,
    addr_class: Vec<Class>,
    addr_prefix: Vec<u32>,
    prefixes: HashMap<(IpAddr, u8), u32>,
    prefix_names: Vec<(IpAddr, u8)>,
}

impl World {
    /// From a directory export; `hosting` lists the labels that mean hosting networks.
    pub fn new(dir: Directory, hosting: &[String]) -> Self {
        Self {
            dir,
            hosting: hosting.to_vec(),
            classes: vec!["unlabelled".into()],
            roles: vec!["none".into()],
            principals: Vec::new(),
            principal_infos: Vec::new(),
            keys: Vec::new(),
            key_infos: Vec::new(),
            addr_class: Vec::new(),
            addr_prefix: Vec::new(),
            prefixes: HashMap::default(),
            prefix_names: Vec::new(),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    fn class_id(&mut self, label: &str) -> Class {
        match self.classes.iter().position(|c| c == label) {
            Some(i) => i as Class,
            None => {
                self.classes.push(label.to_owned());
                (self.classes.len() - 1) as Class
            }
        }
    }

    /// A class by name (interning it).
    pub fn class_named(&mut self, label: &str) -> Class {
        self.class_id(label)
    }

    /// The label of a class.
    pub fn class_name(&self, c: Class) -> &str {
        &self.classes[usize::from(c)]
    }

    /// Whether a class is a hosting network.
    pub fn is_hosting(&self, c: Class) -> bool {
        self.hosting.iter().any(|h| h == self.class_name(c))
    }

    /// The network class of a source address (its ASN decides when no CIDR does).
    pub fn addr_class(&mut self, a: AddrId, asn: Option<u32>, symbols: &Symbols) -> Class {
        let i = a.index();
        if i < self.addr_class.len() && self.addr_class[i] != Class::MAX {
            return self.addr_class[i];
        }
        let ip = symbols.addrs.resolve(a);
        let label = self.dir.classify(ip, asn).map(str::to_owned);
        let c = label.map_or(0, |l| self.class_id(&l));
        if i >= self.addr_class.len() {
            self.addr_class.resize(i + 1, Class::MAX);
        }
        self.addr_class[i] = c;
        c
    }

    /// The class of an autonomous system, from the directory's ASN entries.
    pub fn asn_class(&mut self, asn: u32) -> Class {
        let unspecified = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        let label = self.dir.classify(unspecified, Some(asn)).map(str::to_owned);
        label.map_or(0, |l| self.class_id(&l))
    }

    /// The /24 (IPv4) or /64 (IPv6) holding an address, as a dense id.
    pub fn prefix(&mut self, a: AddrId, symbols: &Symbols) -> u32 {
        let i = a.index();
        if i < self.addr_prefix.len() && self.addr_prefix[i] != UNSET {
            return self.addr_prefix[i];
        }
        let ip = symbols.addrs.resolve(a);
        let key = match ip {
            IpAddr::V4(v4) => (IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()), 24),
            IpAddr::V6(v6) => (IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()), 64),
        };
        let next = self.prefix_names.len() as u32;
        let id = *self.prefixes.entry(key).or_insert(next);
        if id == next {
            self.prefix_names.push(key);
        }
        if i >= self.addr_prefix.len() {
            self.addr_prefix.resize(i + 1, UNSET);
        }
        self.addr_prefix[i] = id;
        id
    }

    /// A prefix as text (`198.51.100.0/24`).
    pub fn prefix_name(&self, id: u32) -> String {
        let (ip, len) = self.prefix_names[id as usize];
        format!("{ip}/{len}")
    }

    /// What the directory says about a principal.
    pub fn principal(&mut self, p: PrincipalId, symbols: &Symbols) -> &PrincipalInfo {
        let i = p.index();
        if i >= self.principals.len() {
            self.principals.resize(i + 1, UNSET);
        }
        if self.principals[i] == UNSET {
            let info = match self.dir.principal(symbols.principal_name(p)) {
                Some(d) => {
                    let role = d.role.clone();
                    let left = d.left.map(millis);
                    let kind = Some(d.kind);
                    let role = role.map_or(0, |r| self.role_id(&r));
                    PrincipalInfo { kind, role, left }
                }
                None => PrincipalInfo::default(),
            };
            self.principal_infos.push(info);
            self.principals[i] = (self.principal_infos.len() - 1) as u32;
        }
        &self.principal_infos[self.principals[i] as usize]
    }

    fn role_id(&mut self, r: &str) -> u16 {
        match self.roles.iter().position(|x| x == r) {
            Some(i) => i as u16,
            None => {
                self.roles.push(r.to_owned());
                (self.roles.len() - 1) as u16
            }
        }
    }

    /// A role's name.
    pub fn role_name(&self, r: u16) -> &str {
        &self.roles[usize::from(r)]
    }

    /// What the directory says about a signing key.
    pub fn key(&mut self, k: KeyId, symbols: &Symbols) -> &KeyInfo {
        let i = k.index();
        if i >= self.keys.len() {
            self.keys.resize(i + 1, UNSET);
        }
        if self.keys[i] == UNSET {
            let info = match self.dir.key(symbols.key_name(k)) {
                Some(d) => KeyInfo {
                    known: true,
                    created: d.created.map(millis),
                    retired: d.retired.map(millis),
                    custodians: d
                        .custodians
                        .iter()
                        .map(|c| (c.clone(), self.dir.principal(c).and_then(|p| p.left).map(millis)))
                        .collect(),
                },
                None => KeyInfo::default(),
            };
            self.key_infos.push(info);
            self.keys[i] = (self.key_infos.len() - 1) as u32;
        }
        &self.key_infos[self.keys[i] as usize]
    }

    /// The kind of a principal: the directory's, else what the event said.
    pub fn kind_of(&mut self, p: PrincipalId, said: PrincipalKind, symbols: &Symbols) -> PrincipalKind {
        self.principal(p, symbols).kind.unwrap_or(said)
    }
}
