//! Real OCSF lines and a way to edit them from fuzz input, for the
//! differential targets (`fast_json`, `flat_view`), so the fuzzer spends its
//! time near the shapes the extractor is built for.

/// Lines to edit: the simulator's API and authentication events, odd
/// numbers and escapes, spaced JSON, keys with dots and nulls.
pub const SEEDS: [&str; 5] = [
    r#"{"class_uid":6003,"category_uid":6,"type_uid":600302,"activity_id":2,"status_id":1,"time":1743433314973,"actor":{"user":{"uid":"c00113896","type":"customer"},"session":{"uid":"t54393a4356c84abb","issuer":"auth-key-2019"}},"src_endpoint":{"ip":"106.101.1.50","location":{"country":"KR"},"autonomous_system":{"number":17858,"name":"LG Uplus"}},"http_request":{"user_agent":"Mozilla/5.0 (iPhone)"},"api":{"operation":"GET /v1/orders/{id}","service":{"name":"orders"}},"resources":[{"uid":"c00113896","type":"customer","labels":["name","phone","address"]},{"uid":"c2","labels":null}],"metadata":{"product":{"name":"shop-gateway","vendor_name":"shop"},"version":"1.3.0"}}"#,
    r#"{"class_uid":3002,"category_uid":3,"type_uid":300201,"activity_id":1,"status_id":1,"time":1743433313803,"user":{"uid":"c00730619","type":"customer"},"session":{"uid":"t4a27fcaddee62fd5","issuer":"auth-key-2019","expiration_time":1743436913803},"src_endpoint":{"ip":"211.40.245.115"},"metadata":{"product":{"name":"shop-gateway","vendor_name":"shop"},"version":"1.3.0"}}"#,
    r#"{"class_uid":3001,"activity_id":6,"time":1743433313803,"user":{"uid":"e0042","type":"staff"},"unmapped":{"n":[1,-2.5e3,true,false,null,"a\"b"]}}"#,
    r#" { "class_uid" : 6003 , "time" : 1 , "activity_id" : 2 , "status_id" : 1 , "actor" : { "user" : { "uid" : "p" } } , "src_endpoint" : { "ip" : "::1" } , "api" : { "operation" : "o" } , "resources" : [ { "uid" : "s" , "labels" : [ "name" , "phone" ] } ] } "#,
    r#"{"class_uid":6003,"time":5,"actor":{"user":{"uid":"u","type":null},"session":{"uid":"t"}},"src_endpoint":{"location.country":"US","ip":"10.1.1.1"},"resources.uid":"x","resources":[{"type":"address"},{"uid":null}],"api":{"operation":"GET /internal/x","service":null}}"#,
];

/// One of [`SEEDS`] (the first byte picks it), edited by the rest: triples
/// of kind, position and byte (insert, replace, remove, or duplicate a span).
pub fn edited(data: &[u8]) -> Vec<u8> {
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
