//! Feeds arbitrary bytes through the reader into the detection engine with
//! every built-in detector and a small directory: whatever the lines say
//! (times far apart or out of order, tokens reused, offboarded principals,
//! huge subject lists), detection must not panic, and every finding must
//! render as OCSF with a time inside its span.
#![no_main]

use detect::{Alert, Config, Engine, World};
use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use libfuzzer_sys::fuzz_target;
use model::{Directory, Event, Symbols};

const DIRECTORY: &str = r#"{
  "principals": [{"uid": "emp-1", "kind": "employee", "role": "cs-agent", "left": "2025-01-01T00:00:00Z"},
                 {"uid": "svc", "kind": "service"}],
  "keys": [{"id": "k1", "created": "2019-01-01T00:00:00Z", "custodians": ["emp-1"]},
           {"id": "k0", "created": "2016-01-01T00:00:00Z", "retired": "2017-01-01T00:00:00Z"}],
  "networks": [{"cidr": "10.0.0.0/8", "label": "internal"}, {"asn": 20473, "label": "hosting"}]
}"#;

struct Feed<'e> {
    engine: &'e mut Engine,
    alerts: Vec<Alert>,
}

impl Visitor for Feed<'_> {
    fn event(&mut self, _at: LineRef<'_>, event: &Event<'_>, symbols: &Symbols) {
        self.engine.push(event, 0, symbols, &mut self.alerts);
    }
    fn quarantined(&mut self, _q: &Quarantined<'_>) {}
}

fuzz_target!(|data: &[u8]| {
    let cfg = Config::default();
    let dir = Directory::parse(DIRECTORY).expect("fixed directory parses");
    let mut engine = Engine::new(&cfg, World::new(dir, &cfg.engine.hosting_labels)).expect("default config");
    let mut symbols = Symbols::default();
    let mut reader = Reader::new(ReaderOptions::default());
    let mut feed = Feed { engine: &mut engine, alerts: Vec::new() };
    reader.read_bytes("fuzz", data, &mut symbols, &mut feed);
    let mut alerts = std::mem::take(&mut feed.alerts);
    engine.finish(&symbols, &mut alerts);
    for a in &alerts {
        assert!(a.first_seen <= a.time && a.time <= a.last_seen, "time outside span: {a:?}");
        let _ = a.to_ocsf().to_string();
    }
});
