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

use model::Millis;
use rsigma_eval::event::{Event, EventValue, JsonEvent};
use rsigma_parser::LogSource;
use serde_json::Value;

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
    if let Some(class) = v.get("class_uid").and_then(Value::as_i64) {
        return (Shape::Ocsf, ocsf_source(class));
    }
    if let Some(system) = v.get("Event").and_then(|e| e.get("System")) {
        return (Shape::Windows, windows_source(system));
    }
    (Shape::Other, LogSource::default())
}

/// Sigma's Windows log source of an event's `System` part.
fn windows_source(system: &Value) -> LogSource {
    let channel = system.get("Channel").and_then(Value::as_str).unwrap_or_default();
    let id = event_id(system);
    let service = windows_service(channel);
    let category = match (service, id) {
        (Some("sysmon"), Some(id)) => sysmon_category(id, system),
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
fn sysmon_category(id: i64, system: &Value) -> Option<&'static str> {
    let _ = system;
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
    let kind = data.and_then(|d| d.get("EventType")).and_then(Value::as_str).unwrap_or_default();
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
        Shape::Ocsf => return v.get("time").and_then(Value::as_i64),
        Shape::Windows => v
            .pointer("/Event/System/TimeCreated/#attributes/SystemTime")
            .or_else(|| v.pointer("/Event/System/TimeCreated/SystemTime"))
            .and_then(Value::as_str),
        Shape::Other => v.get("@timestamp").or_else(|| v.get("timestamp")).and_then(Value::as_str),
    }?;
    let ts: jiff::Timestamp = text.trim().parse().ok()?;
    Some(ts.as_millisecond())
}

/// An event as rules see it.
pub struct View<'a> {
    json: JsonEvent<'a>,
    windows: Option<&'a Value>,
}

impl<'a> View<'a> {
    /// `v` seen as an event of `shape`.
    pub fn new(v: &'a Value, shape: Shape) -> Self {
        let windows = (shape == Shape::Windows).then_some(v);
        Self { json: JsonEvent::borrow(v), windows }
    }

    /// A Windows event's field by Sigma's name.
    fn windows_field(ev: &'a Value, name: &str) -> Option<&'a Value> {
        let e = ev.get("Event")?;
        if let Some(data) = e.get("EventData").and_then(Value::as_object) {
            if let Some(v) = data.get(name) {
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
            return match v.get("#text") {
                Some(t) => Some(t),
                None => Some(v),
            };
        }
        match name {
            "Provider_Name" => e.pointer("/System/Provider/#attributes/Name"),
            "EventID" => e.pointer("/System/EventID/#text"),
            _ => {
                // UserData and other event-specific parts: `UserData.<Kind>.<name>`.
                let user = e.get("UserData")?.as_object()?;
                user.values().find_map(|kind| kind.get(name))
            }
        }
    }
}

impl Event for View<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some(w) = self.windows
            && !path.contains('.')
        {
            return Self::windows_field(w, path).map(EventValue::from);
        }
        self.json.get_field(path)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.json.any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.json.all_string_values()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.json.visit_string_values(visit);
    }

    fn to_json(&self) -> Value {
        self.json.to_json()
    }
}

/// Every value of a field as text (an array gives each element; objects
/// and nulls give nothing).
pub fn texts(v: &EventValue<'_>, out: &mut Vec<String>) {
    match v {
        EventValue::Array(a) => a.iter().for_each(|x| texts(x, out)),
        EventValue::Map(_) | EventValue::Null => {}
        other => {
            if let Some(s) = other.as_str() {
                out.push(s.into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_fields_are_read_by_their_sigma_names() {
        let v = json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "TimeCreated": {"#attributes": {"SystemTime": "2025-10-25T13:44:33.440907Z"}}},
            "EventData": {"Image": "C:\\Windows\\System32\\reg.exe"}}});
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
    }

    #[test]
    fn ocsf_events_are_sourced_by_class() {
        let v = json!({"class_uid": 6003, "time": 5, "resources": [{"uid": "a"}, {"uid": "b"}]});
        let (shape, ls) = classify(&v);
        assert_eq!(
            (shape, ls.product.as_deref(), ls.category.as_deref()),
            (Shape::Ocsf, Some("ocsf"), Some("api_activity"))
        );
        let view = View::new(&v, shape);
        let mut out = Vec::new();
        texts(&view.get_field("resources.uid").expect("an array path"), &mut out);
        assert_eq!(out, ["a", "b"]);
    }
}
