//! The hot path's JSON extractor against serde_json: the same line through
//! `ingest::LineParser` with the extractor on and with it off (serde_json
//! reads every line) must give the same event, or the same quarantine
//! reason, and leave the same symbol tables.
//!
//! Input: with the first byte even, the rest is the line itself (arbitrary
//! bytes); with it odd, the rest edits one of a few real OCSF lines (pairs of
//! position and byte, inserted, replaced or removed), so the fuzzer spends
//! its time near the shapes the extractor is built for.
#![no_main]

use ingest::LineParser;
use libfuzzer_sys::fuzz_target;
use model::{DataMap, Symbols};

const SEEDS: [&str; 4] = [
    r#"{"class_uid":6003,"category_uid":6,"type_uid":600302,"activity_id":2,"status_id":1,"time":1743433314973,"actor":{"user":{"uid":"c00113896","type":"customer"},"session":{"uid":"t54393a4356c84abb","issuer":"auth-key-2019"}},"src_endpoint":{"ip":"106.101.1.50","location":{"country":"KR"},"autonomous_system":{"number":17858,"name":"LG Uplus"}},"http_request":{"user_agent":"Mozilla/5.0 (iPhone)"},"api":{"operation":"GET /v1/orders/{id}","service":{"name":"orders"}},"resources":[{"uid":"c00113896","type":"customer","labels":["name","phone","address"]},{"uid":"c2","labels":null}],"metadata":{"product":{"name":"shop-gateway","vendor_name":"shop"},"version":"1.3.0"}}"#,
    r#"{"class_uid":3002,"category_uid":3,"type_uid":300201,"activity_id":1,"status_id":1,"time":1743433313803,"user":{"uid":"c00730619","type":"customer"},"session":{"uid":"t4a27fcaddee62fd5","issuer":"auth-key-2019","expiration_time":1743436913803},"src_endpoint":{"ip":"211.40.245.115"},"metadata":{"product":{"name":"shop-gateway","vendor_name":"shop"},"version":"1.3.0"}}"#,
    r#"{"class_uid":3001,"activity_id":6,"time":1743433313803,"user":{"uid":"e0042","type":"staff"},"unmapped":{"n":[1,-2.5e3,true,false,null,"a\"b"]}}"#,
    r#" { "class_uid" : 6003 , "time" : 1 , "activity_id" : 2 , "status_id" : 1 , "actor" : { "user" : { "uid" : "p" } } , "src_endpoint" : { "ip" : "::1" } , "api" : { "operation" : "o" } , "resources" : [ { "uid" : "s" , "labels" : [ "name" , "phone" ] } ] } "#,
];

fn edited(data: &[u8]) -> Vec<u8> {
    let Some((&pick, ops)) = data.split_first() else { return Vec::new() };
    let mut line = SEEDS[usize::from(pick) % SEEDS.len()].as_bytes().to_vec();
    for op in ops.chunks(3) {
        let [kind, at, byte] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&b'"')];
        if line.is_empty() {
            break;
        }
        let at = (usize::from(at) * 256 + usize::from(kind >> 2)) % line.len();
        match kind & 3 {
            0 => line.insert(at, byte),
            1 => line[at] = byte,
            2 => {
                line.remove(at);
            }
            _ => {
                // Duplicate a span: repeated keys and nesting.
                let end = (at + usize::from(byte)).min(line.len());
                let span = line[at..end].to_vec();
                line.splice(at..at, span);
            }
        }
    }
    line
}

fn outcome(fast: bool, text: &str) -> (String, usize, usize, usize) {
    // Parsing the built-in map's TOML costs more than most inputs: once.
    static MAP: std::sync::OnceLock<DataMap> = std::sync::OnceLock::new();
    let mut parser = LineParser::new(MAP.get_or_init(DataMap::builtin).clone());
    parser.set_fast(fast);
    let mut symbols = Symbols::default();
    let got = format!("{:?}", parser.parse(text, &mut symbols));
    (got, symbols.subjects.len(), symbols.principals.len(), symbols.fields.all().count())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let line = if mode % 2 == 0 { rest.to_vec() } else { edited(rest) };
    let Ok(text) = std::str::from_utf8(&line) else { return };
    assert_eq!(outcome(true, text), outcome(false, text), "the extractor and serde_json disagree on {text:?}");
});
