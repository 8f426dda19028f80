//! Which log source an event belongs to, and how rules read its fields.
//!
//! - piiwatch's OCSF events: `product: ocsf`, `category:` the class name in
//!   snake case (`api_activity` 6003, `authentication` 3002,
//!   `account_change` 3001, and the other OCSF classes by their names).
//!   Fields are OCSF paths; a path through an array matches when any
//!   element does.
//! - Windows events as JSON (`Event.System.*`, `Event.EventData.*`, as
//!   EVTX converters write them): `product: windows`, `service:` from the
//!   channel (`security`, `sysmon`, `powershell`, ...) and `category:` from
//!   the channel and event id (Sysmon 1 is `process_creation`, 13
//!   `registry_set`, Security 4688 `process_creation`, ...), so SigmaHQ's
//!   Windows rules run unchanged. A rule's field `Image` reads
//!   `Event.EventData.Image`, then `Event.System.Image`; `Provider_Name`
//!   reads the provider's name; a dotted name reads that path.
//! - Anything else: no log source; only rules without one see it.

use std::borrow::Cow;

use ingest::{Field, Flat};
use model::Millis;
use rsigma_eval::event::{Event, EventValue};
use rsigma_parser::LogSource;
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, Value};

/// The shape of an event, which decides how its fields are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An OCSF event: fields by OCSF path.
    Ocsf,
    /// A Windows event as JSON: fields by Sigma's Windows names.
    Windows,
    /// Other JSON: fields by path.
    Other,
}

/// The OCSF class names piiwatch knows, by `class_uid`.
const OCSF_CLASSES: &[(i64, &str)] = &[
    (1001, "file_activity"),
    (1007, "process_activity"),
    (2004, "detection_finding"),
    (3001, "account_change"),
    (3002, "authentication"),
    (3003, "authorize_session"),
    (3005, "user_access"),
    (3006, "group_management"),
    (4001, "network_activity"),
    (4002, "http_activity"),
    (4003, "dns_activity"),
    (6001, "web_resources_activity"),
    (6002, "application_lifecycle"),
    (6003, "api_activity"),
    (6005, "datastore_activity"),
];

/// The snake-case name of an OCSF class.
pub fn ocsf_category(class_uid: i64) -> Option<&'static str> {
    OCSF_CLASSES.iter().find(|(c, _)| *c == class_uid).map(|(_, n)| *n)
}

/// The OCSF classes with a name here.
pub fn ocsf_classes() -> impl Iterator<Item = i64> {
    OCSF_CLASSES.iter().map(|(c, _)| *c)
}

/// The log source of an OCSF event of class `class_uid`.
pub fn ocsf_source(class_uid: i64) -> LogSource {
    LogSource {
        product: Some("ocsf".into()),
        category: ocsf_category(class_uid).map(str::to_owned),
        ..LogSource::default()
    }
}

/// What a JSON object is and where it comes from.
pub fn classify(v: &Value) -> (Shape, LogSource) {
    if let Some(class) = v.get("class_uid").and_then(|c| c.as_i64()) {
        return (Shape::Ocsf, ocsf_source(class));
    }
    if let Some(system) = v.get("Event").and_then(|e| e.get("System")) {
        return (Shape::Windows, windows_source(system));
    }
    (Shape::Other, LogSource::default())
}

/// Sigma's Windows log source of an event's `System` part.
fn windows_source(system: &Value) -> LogSource {
    let channel = system.get("Channel").and_then(|c| c.as_str()).unwrap_or_default();
    let id = event_id(system);
    let service = windows_service(channel);
    let category = match (service, id) {
        (Some("sysmon"), Some(id)) => sysmon_category(id),
        (Some("security"), Some(4688)) => Some("process_creation"),
        (Some("powershell"), Some(4104)) => Some("ps_script"),
        (Some("powershell"), Some(4103)) => Some("ps_module"),
        (Some("powershell-classic"), Some(400)) => Some("ps_classic_start"),
        (Some("powershell-classic"), Some(600)) => Some("ps_classic_provider_start"),
        _ => None,
    };
    LogSource {
        product: Some("windows".into()),
        service: service.map(str::to_owned),
        category: category.map(str::to_owned),
        ..LogSource::default()
    }
}

/// `EventID`, whether a number or `{"#text": ...}`.
fn event_id(system: &Value) -> Option<i64> {
    let v = system.get("EventID")?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .or_else(|| v.get("#text").and_then(|t| t.as_i64().or_else(|| t.as_str().and_then(|s| s.parse().ok()))))
}

/// Sigma's `service` for a Windows channel (SigmaHQ's logsource table).
fn windows_service(channel: &str) -> Option<&'static str> {
    Some(match channel {
        "Security" => "security",
        "System" => "system",
        "Application" => "application",
        "Microsoft-Windows-Sysmon/Operational" => "sysmon",
        "Microsoft-Windows-PowerShell/Operational" | "PowerShellCore/Operational" => "powershell",
        "Windows PowerShell" => "powershell-classic",
        "Microsoft-Windows-Windows Defender/Operational" => "windefend",
        "Microsoft-Windows-WMI-Activity/Operational" => "wmi",
        "Microsoft-Windows-TaskScheduler/Operational" => "taskscheduler",
        "Microsoft-Windows-DNS-Client/Operational" => "dns-client",
        "Microsoft-Windows-Bits-Client/Operational" => "bits-client",
        "Microsoft-Windows-CodeIntegrity/Operational" => "codeintegrity-operational",
        "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall" => "firewall-as",
        "Microsoft-Windows-AppLocker/EXE and DLL"
        | "Microsoft-Windows-AppLocker/MSI and Script"
        | "Microsoft-Windows-AppLocker/Packaged app-Deployment"
        | "Microsoft-Windows-AppLocker/Packaged app-Execution" => "applocker",
        "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational" => "terminalservices-localsessionmanager",
        "Microsoft-Windows-NTLM/Operational" => "ntlm",
        "Microsoft-Windows-DriverFrameworks-UserMode/Operational" => "driver-framework",
        "Microsoft-Windows-Shell-Core/Operational" => "shell-core",
        "Microsoft-Windows-SMBClient/Security" => "smbclient-security",
        "Microsoft-Windows-LSA/Operational" => "lsa-server",
        "Microsoft-Windows-OpenSSH/Operational" => "openssh",
        _ => return None,
    })
}

/// Sigma's category for a Sysmon event id (pySigma's Sysmon pipeline).
fn sysmon_category(id: i64) -> Option<&'static str> {
    Some(match id {
        1 => "process_creation",
        2 => "file_change",
        3 => "network_connection",
        4 | 16 => "sysmon_status",
        5 => "process_termination",
        6 => "driver_load",
        7 => "image_load",
        8 => "create_remote_thread",
        9 => "raw_access_thread",
        10 => "process_access",
        11 => "file_event",
        12..=14 => "registry_event",
        15 => "create_stream_hash",
        17 | 18 => "pipe_created",
        19..=21 => "wmi_event",
        22 => "dns_query",
        23 => "file_delete",
        24 => "clipboard_change",
        25 => "process_tampering",
        26 => "file_delete_detected",
        27 => "file_block_executable",
        28 => "file_block_shredding",
        29 => "file_executable_detected",
        255 => "sysmon_error",
        _ => return None,
    })
}

/// The registry categories a Sysmon registry event also belongs to
/// (`registry_event` covers them all; rules name the narrower one).
pub fn registry_categories(v: &Value) -> &'static [&'static str] {
    let data = v.get("Event").and_then(|e| e.get("EventData"));
    let kind = data.and_then(|d| d.get("EventType")).and_then(|k| k.as_str()).unwrap_or_default();
    match kind {
        "CreateKey" => &["registry_add"],
        "DeleteKey" | "DeleteValue" => &["registry_delete"],
        "SetValue" => &["registry_set"],
        "RenameKey" => &["registry_rename"],
        _ => &[],
    }
}

/// The time of an event, from what its shape says: OCSF `time` (ms), a
/// Windows event's `TimeCreated`, or a top-level `@timestamp`/`timestamp`.
pub fn time_of(v: &Value, shape: Shape) -> Option<Millis> {
    let text = match shape {
        Shape::Ocsf => return v.get("time").and_then(|t| t.as_i64()),
        Shape::Windows => {
            let created = v.get("Event")?.get("System")?.get("TimeCreated")?;
            created.get("#attributes").and_then(|a| a.get("SystemTime")).or_else(|| created.get("SystemTime"))?.as_str()
        }
        Shape::Other => v.get("@timestamp").or_else(|| v.get("timestamp")).and_then(|t| t.as_str()),
    }?;
    let ts: jiff::Timestamp = text.trim().parse().ok()?;
    Some(ts.as_millisecond())
}

/// An event as rules see it: a parsed JSON object (sonic-rs's DOM, about
/// three times faster to build than serde_json's), its fields read by
/// dotted path with arrays fanned out (`resources.uid` is every element's
/// `uid`), and for Windows events by Sigma's field names.
pub struct View<'a> {
    root: &'a Value,
    windows: bool,
}

impl<'a> View<'a> {
    /// `v` seen as an event of `shape`.
    pub fn new(v: &'a Value, shape: Shape) -> Self {
        Self { root: v, windows: shape == Shape::Windows }
    }

    /// A Windows event's field by Sigma's name.
    fn windows_field(ev: &'a Value, name: &str) -> Option<&'a Value> {
        let e = ev.get("Event")?;
        if let Some(data) = e.get("EventData").and_then(|d| d.as_object()) {
            if let Some(v) = data.get(&name) {
                return Some(v);
            }
            // Defender and others name their data with spaces ("Threat Name");
            // Sigma's field names leave them out (`ThreatName`).
            if let Some((_, v)) =
                data.iter().find(|(k, _)| k.contains(' ') && k.chars().filter(|c| *c != ' ').eq(name.chars()))
            {
                return Some(v);
            }
        }
        if let Some(v) = e.get("System").and_then(|s| s.get(name)) {
            return Some(v.get("#text").unwrap_or(v));
        }
        match name {
            "Provider_Name" => e.get("System")?.get("Provider")?.get("#attributes")?.get("Name"),
            _ => {
                // UserData and other event-specific parts: `UserData.<Kind>.<name>`.
                let user = e.get("UserData")?.as_object()?;
                user.iter().find_map(|(_, kind)| kind.get(name))
            }
        }
    }
}

/// A JSON node as the evaluator's value.
fn value(v: &Value) -> EventValue<'_> {
    match v.get_type() {
        JsonType::String => EventValue::Str(Cow::Borrowed(v.as_str().unwrap_or_default())),
        JsonType::Number => match v.as_i64() {
            Some(i) => EventValue::Int(i),
            None => EventValue::Float(v.as_f64().unwrap_or(f64::NAN)),
        },
        JsonType::Boolean => EventValue::Bool(v.as_bool().unwrap_or(false)),
        JsonType::Null => EventValue::Null,
        JsonType::Array => EventValue::Array(v.as_array().map(|a| a.iter().map(value).collect()).unwrap_or_default()),
        JsonType::Object => EventValue::Map(
            v.as_object().map(|o| o.iter().map(|(k, x)| (Cow::Borrowed(k), value(x))).collect()).unwrap_or_default(),
        ),
    }
}

/// Every node at `path` under `v` (dotted; an array on the way fans out).
fn collect<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    if let Some(a) = v.as_array() {
        for x in a.iter() {
            collect(x, path, out);
        }
        return;
    }
    let Some(o) = v.as_object() else { return };
    match path.split_once('.') {
        None => out.extend(o.get(&path)),
        Some((head, rest)) => match o.get(&head) {
            Some(x) => collect(x, rest, out),
            // A key with dots in it.
            None => out.extend(o.get(&path)),
        },
    }
}

fn strings<'v>(v: &'v Value, visit: &mut dyn FnMut(&'v str)) {
    match v.get_type() {
        JsonType::String => visit(v.as_str().unwrap_or_default()),
        JsonType::Array => v.as_array().into_iter().flat_map(|a| a.iter()).for_each(|x| strings(x, visit)),
        JsonType::Object => v.as_object().into_iter().flat_map(|o| o.iter()).for_each(|(_, x)| strings(x, visit)),
        _ => {}
    }
}

impl<'a> View<'a> {
    /// The field at `path` (see [`Event::get_field`]), borrowed from the DOM.
    pub fn field(&self, path: &str) -> Option<EventValue<'a>> {
        if self.windows && !path.contains('.') {
            return Self::windows_field(self.root, path).map(value);
        }
        if path.contains(['[', '\\']) {
            // Indexes and escapes: RSigma's own path reader, over a copy.
            let copy: serde_json::Value = serde_json::from_str(&self.root.to_string()).ok()?;
            let ev = rsigma_eval::event::JsonEvent::borrow(&copy);
            return ev.get_field(path).map(|v| owned(&v));
        }
        let mut found = Vec::new();
        collect(self.root, path, &mut found);
        match found.len() {
            0 => None,
            1 => Some(value(found[0])),
            _ => Some(EventValue::Array(found.into_iter().map(value).collect())),
        }
    }
}

impl Event for View<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        self.field(path)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut hit = false;
        strings(self.root, &mut |s| hit = hit || pred(s));
        hit
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        strings(self.root, &mut |s| out.push(Cow::Borrowed(s)));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        strings(self.root, &mut |s| visit(s));
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.root.to_string()).unwrap_or(serde_json::Value::Null)
    }
}

/// An OCSF line as rules see it, without a DOM for the fields the
/// extractor keeps ([`Flat::field`]: class, time, activity and status,
/// actor, user, session, source endpoint, user agent, API operation,
/// resources' uids and types): those are read from the extractor's ranges
/// of the line. Any other field, and a keyword search over every string,
/// parses the line into a DOM once, on first need, and reads it as
/// [`View`] does. `differs` in this module's tests and the `flat_view`
/// fuzz target hold the two readings to each other.
pub struct LineView<'a> {
    text: &'a str,
    flat: &'a Flat,
    dom: std::cell::OnceCell<Option<Value>>,
}

impl<'a> LineView<'a> {
    /// The line `text`, as the extractor read it into `flat`.
    pub fn new(text: &'a str, flat: &'a Flat) -> Self {
        Self { text, flat, dom: std::cell::OnceCell::new() }
    }

    /// The line as a DOM view, parsed on first use (`None`: not JSON sonic-rs reads).
    fn dom(&self) -> Option<View<'_>> {
        self.dom.get_or_init(|| sonic_rs::from_str(self.text).ok()).as_ref().map(|v| View::new(v, Shape::Ocsf))
    }
}

impl Event for LineView<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        let Some(known) = self.flat.field(self.text, path) else {
            return self.dom()?.field(path);
        };
        match known {
            Field::Absent => None,
            Field::Int(i) => Some(EventValue::Int(i)),
            Field::Str(s) => Some(EventValue::Str(Cow::Borrowed(s))),
            Field::Each(all) => match all.as_slice() {
                [one] => Some(EventValue::Str(Cow::Borrowed(one))),
                _ => Some(EventValue::Array(all.iter().map(|s| EventValue::Str(Cow::Borrowed(s))).collect())),
            },
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.dom().is_some_and(|d| d.any_string_value(pred))
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.dom()
            .map(|d| d.all_string_values().into_iter().map(|s| Cow::Owned(s.into_owned())).collect())
            .unwrap_or_default()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        if let Some(d) = self.dom() {
            d.visit_string_values(visit);
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(self.text).unwrap_or(serde_json::Value::Null)
    }
}

/// Where reading `text`'s fields through the extractor ([`LineView`])
/// and through a DOM ([`View`]) disagree, for every field the extractor
/// keeps and a few it does not: `None` when they agree (or when the
/// extractor or sonic-rs does not read the line at all).
pub fn flat_view_differs(text: &str) -> Option<String> {
    const PATHS: &[&str] = &[
        "class_uid",
        "time",
        "activity_id",
        "status_id",
        "actor.user.uid",
        "actor.user.type",
        "actor.session.uid",
        "actor.session.issuer",
        "actor.session.expiration_time",
        "user.uid",
        "user.type",
        "session.uid",
        "session.issuer",
        "session.expiration_time",
        "src_endpoint.ip",
        "src_endpoint.location.country",
        "src_endpoint.autonomous_system.number",
        "src_endpoint.autonomous_system.name",
        "http_request.user_agent",
        "api.operation",
        "api.service.name",
        "resources.uid",
        "resources.type",
        "resources.labels",
        "actor.class_uid",
        "actor.user",
        "api",
        "metadata.version",
        "src_endpoint",
        "user.name",
        "actor.src_endpoint.ip",
    ];
    let flat = Flat::extract(text)?;
    let dom: Value = sonic_rs::from_str(text).ok()?;
    let (a, b) = (LineView::new(text, &flat), View::new(&dom, Shape::Ocsf));
    PATHS.iter().find_map(|p| {
        let (x, y) = (format!("{:?}", a.get_field(p)), format!("{:?}", b.get_field(p)));
        (x != y).then(|| format!("{p}: extractor {x}, DOM {y}"))
    })
}

/// A value that borrows from a copy, made owned.
fn owned(v: &EventValue<'_>) -> EventValue<'static> {
    match v {
        EventValue::Str(s) => EventValue::Str(Cow::Owned(s.to_string())),
        EventValue::Int(i) => EventValue::Int(*i),
        EventValue::Float(f) => EventValue::Float(*f),
        EventValue::Bool(b) => EventValue::Bool(*b),
        EventValue::Null => EventValue::Null,
        EventValue::Array(a) => EventValue::Array(a.iter().map(owned).collect()),
        EventValue::Map(m) => EventValue::Map(m.iter().map(|(k, x)| (Cow::Owned(k.to_string()), owned(x))).collect()),
    }
}

/// Every value of a field as text (an array gives each element; objects
/// and nulls give nothing).
pub fn texts(v: &EventValue<'_>, out: &mut dyn FnMut(&str)) {
    match v {
        EventValue::Array(a) => a.iter().for_each(|x| texts(x, out)),
        EventValue::Map(_) | EventValue::Null => {}
        other => {
            if let Some(s) = other.as_str() {
                out(&s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sonic(v: serde_json::Value) -> Value {
        sonic_rs::from_str(&v.to_string()).expect("json")
    }

    #[test]
    fn windows_fields_are_read_by_their_sigma_names() {
        let v = sonic(json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "TimeCreated": {"#attributes": {"SystemTime": "2025-10-25T13:44:33.440907Z"}}},
            "EventData": {"Image": "C:\\Windows\\System32\\reg.exe", "Threat Name": "EICAR"}}}));
        let (shape, ls) = classify(&v);
        assert_eq!(shape, Shape::Windows);
        assert_eq!(ls.category.as_deref(), Some("process_creation"));
        assert_eq!(ls.service.as_deref(), Some("sysmon"));
        let view = View::new(&v, shape);
        assert_eq!(
            view.get_field("Image").and_then(|x| x.as_str().map(|s| s.into_owned())).as_deref(),
            Some("C:\\Windows\\System32\\reg.exe")
        );
        assert_eq!(view.get_field("EventID").and_then(|x| x.as_i64()), Some(1));
        assert_eq!(
            view.get_field("Provider_Name").and_then(|x| x.as_str().map(|s| s.into_owned())).as_deref(),
            Some("Microsoft-Windows-Sysmon")
        );
        assert_eq!(time_of(&v, shape), Some(1_761_399_873_440));
        assert_eq!(
            view.get_field("ThreatName").and_then(|x| x.as_str().map(|s| s.into_owned())).as_deref(),
            Some("EICAR")
        );
    }

    #[test]
    fn ocsf_events_are_sourced_by_class() {
        let v = sonic(
            json!({"class_uid": 6003, "time": 5, "resources": [{"uid": "a"}, {"uid": "b"}], "x.y": 1, "z": {"w": [[{"q": "deep"}]]}}),
        );
        let (shape, ls) = classify(&v);
        assert_eq!(
            (shape, ls.product.as_deref(), ls.category.as_deref()),
            (Shape::Ocsf, Some("ocsf"), Some("api_activity"))
        );
        let view = View::new(&v, shape);
        let mut out = Vec::new();
        texts(&view.get_field("resources.uid").expect("an array path"), &mut |s| out.push(s.to_owned()));
        assert_eq!(out, ["a", "b"]);
        assert_eq!(view.get_field("x.y"), Some(EventValue::Int(1)), "a key with a dot in it");
        assert_eq!(view.get_field("z.w.q"), Some(EventValue::Str(Cow::Borrowed("deep"))), "nested arrays fan out");
        assert_eq!(view.get_field("resources[1].uid"), Some(EventValue::Str(Cow::Borrowed("b"))), "an index");
        assert!(view.get_field("nope.x").is_none());
    }

    /// A line's parts, each present, absent, null or odd, as generated below.
    fn line_of(parts: &[(usize, usize)]) -> String {
        // Per slot: alternatives, the first being "absent".
        const SLOTS: &[&[&str]] = &[
            &["", r#""class_uid":6003"#, r#""class_uid":3002"#, r#""class_uid":null"#],
            &["", r#""time":1743433205000"#, r#""time":null"#],
            &["", r#""activity_id":2"#, r#""activity_id":null"#],
            &["", r#""status_id":1"#],
            &[
                "",
                r#""actor":{"user":{"uid":"c1","type":"customer"},"session":{"uid":"t1","issuer":"k"}}"#,
                r#""actor":{"user":{"uid":"c1","type":null}}"#,
                r#""actor":null"#,
                r#""actor":{"user.type":"admin"}"#,
                r#""actor":{"session":{"uid":"t9","expiration_time":17}}"#,
            ],
            &["", r#""user":{"uid":"u1","type":"service","name":"x"}"#, r#""session":{"uid":"s1"}"#],
            &[
                "",
                r#""src_endpoint":{"ip":"203.0.113.9","location":{"country":"KR","city":"Seoul"},"autonomous_system":{"number":4766,"name":"KT"}}"#,
                r#""src_endpoint":{"ip":"10.0.0.1","location":null}"#,
                r#""src_endpoint":{"location.country":"US"}"#,
                r#""src_endpoint":{"autonomous_system":{"number":null}}"#,
            ],
            &["", r#""http_request":{"user_agent":"curl/8.1"}"#, r#""http_request":{"user_agent":null}"#],
            &[
                "",
                r#""api":{"operation":"GET /v1/address-book","service":{"name":"addr"}}"#,
                r#""api":{"service":null}"#,
            ],
            &[
                "",
                r#""resources":[{"uid":"c1","type":"customer"},{"type":"address"},{"uid":"c2","labels":["a"]}]"#,
                r#""resources":[]"#,
                r#""resources":[{"uid":"c3"}]"#,
                r#""resources":null"#,
                r#""resources":[{"uid":null}]"#,
            ],
            &[
                "",
                r#""metadata":{"version":"1.3.0"}"#,
                r#""src_endpoint.ip":"198.51.100.1""#,
                r#""resources.uid":"x""#,
                r#""api.operation":"POST /x""#,
            ],
        ];
        let members: Vec<&str> = parts
            .iter()
            .map(|&(slot, alt)| SLOTS[slot % SLOTS.len()][alt % SLOTS[slot % SLOTS.len()].len()])
            .filter(|m| !m.is_empty())
            .collect();
        format!("{{{}}}", members.join(","))
    }

    proptest::proptest! {
        /// The extractor's fields read as the DOM reads them, on lines with
        /// fields present, absent, null, empty and keys with dots in them.
        #[test]
        fn the_extractor_view_reads_as_the_dom(parts in proptest::collection::vec((0usize..11, 0usize..6), 0..14)) {
            let line = line_of(&parts);
            proptest::prop_assert_eq!(flat_view_differs(&line), None, "{}", line);
        }
    }

    #[test]
    fn the_extractor_view_reads_kept_fields_without_a_dom() {
        let line = line_of(&[(0, 1), (2, 1), (4, 1), (6, 1), (9, 1)]);
        let flat = Flat::extract(&line).expect("extracted");
        let view = LineView::new(&line, &flat);
        assert_eq!(view.get_field("actor.user.type"), Some(EventValue::Str(Cow::Borrowed("customer"))));
        assert_eq!(view.get_field("src_endpoint.autonomous_system.number"), Some(EventValue::Int(4766)));
        assert_eq!(
            view.get_field("resources.uid"),
            Some(EventValue::Array(vec![EventValue::Str(Cow::Borrowed("c1")), EventValue::Str(Cow::Borrowed("c2"))]))
        );
        assert!(view.dom.get().is_none(), "no DOM was built for kept fields");
        // A field the extractor does not keep is read from a DOM, built once.
        assert_eq!(view.get_field("src_endpoint.location.city"), Some(EventValue::Str(Cow::Borrowed("Seoul"))));
        assert!(view.dom.get().is_some());
        assert_eq!(flat_view_differs(&line), None);
    }
}
