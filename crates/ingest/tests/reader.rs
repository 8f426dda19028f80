//! Reader behaviour as data: input lines and the expected normalized events
//! or quarantine reasons. Regenerate expectations with `UPDATE_EXPECT=1`.

use expect_test::{Expect, expect};
use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Event, Symbols};
use proptest::prelude::*;

/// Renders what the reader made of the input, one line per event or bad line.
#[derive(Default)]
struct Describe {
    out: String,
}

impl Visitor for Describe {
    fn event(&mut self, at: LineRef<'_>, ev: &Event<'_>, sy: &Symbols) {
        use std::fmt::Write;
        let line = at.line;
        let s = match ev {
            Event::Access(a) => {
                let subjects: Vec<String> = a
                    .subjects
                    .iter()
                    .map(|s| {
                        let fields: Vec<&str> = sy.fields.names(s.fields).collect();
                        format!("{}:{}{{{}}}", sy.subject_name(s.id), s.kind.as_str(), fields.join(","))
                    })
                    .collect();
                format!(
                    "access t={} {:?} ok={} by={}({}) token={} key={} src={} country={} asn={}/{} ua={} op={} svc={} subjects=[{}]",
                    a.time,
                    a.activity,
                    a.success,
                    sy.principal_name(a.principal),
                    a.principal_kind.as_str(),
                    a.token.map_or("-", |t| sy.token_name(t)),
                    a.key.map_or("-", |k| sy.key_name(k)),
                    sy.addrs.resolve(a.src),
                    a.country.as_ref().map_or("-", |c| c.as_str()),
                    a.asn.map_or("-".to_owned(), |n| n.to_string()),
                    a.as_name.map_or("-", |n| sy.as_name_name(n)),
                    a.user_agent.map_or("-", |u| sy.agent_name(u)),
                    sy.operation_name(a.operation),
                    a.service.map_or("-", |s| sy.service_name(s)),
                    subjects.join(" "),
                )
            }
            Event::Issuance(i) => format!(
                "issuance t={} to={} token={} key={} expires={:?} src={:?}",
                i.time,
                sy.principal_name(i.principal),
                sy.token_name(i.token),
                i.key.map_or("-", |k| sy.key_name(k)),
                i.expires,
                i.src.map(|s| sy.addrs.resolve(s)),
            ),
            Event::Offboarding(o) => {
                format!("offboarding t={} who={} {:?}", o.time, sy.principal_name(o.principal), o.kind)
            }
            Event::Other(o) => format!("other class={:?} time={:?}", o.class_uid, o.time),
        };
        let _ = writeln!(self.out, "{line}: {s}");
    }

    fn quarantined(&mut self, q: &Quarantined<'_>) {
        use std::fmt::Write;
        let _ = writeln!(self.out, "{}: QUARANTINED {}: {}", q.at.line, q.reason.kind.as_str(), q.reason.detail);
    }
}

fn read(input: &str, max_line: usize) -> (String, ingest::ReadSummary) {
    let mut reader = Reader::new(ReaderOptions { max_line, ..ReaderOptions::default() });
    let mut sy = Symbols::default();
    let mut d = Describe::default();
    let sum = reader.read_bytes("test", input.as_bytes(), &mut sy, &mut d);
    (d.out, sum)
}

fn check(input: &str, expect: Expect) {
    let (out, sum) = read(input, 1 << 20);
    assert_eq!(sum.lines, sum.events + sum.blank + sum.quarantined, "every line is accounted for");
    expect.assert_eq(&out);
}

const API: &str = r#"{"class_uid":6003,"activity_id":2,"status_id":1,"time":1000,"actor":{"user":{"uid":"c1","type":"customer"},"session":{"uid":"tok-1","issuer":"auth-key-2019"}},"src_endpoint":{"ip":"203.0.113.9","location":{"country":"kr"},"autonomous_system":{"number":9644,"name":"SK Telecom"}},"http_request":{"user_agent":"ShopApp/1"},"api":{"operation":"GET /v1/address-book","service":{"name":"address"}},"resources":[{"uid":"c1","type":"customer","labels":["name","phone","address"]},{"uid":"r1","type":"recipient","labels":["name","entrance_code"]}],"metadata":{"version":"1.3.0"}}"#;

#[test]
fn a_full_api_activity_line() {
    check(
        API,
        expect![[r#"
            1: access t=1000 Read ok=true by=c1(customer) token=tok-1 key=auth-key-2019 src=203.0.113.9 country=KR asn=9644/SK Telecom ua=ShopApp/1 op=GET /v1/address-book svc=address subjects=[c1:customer{name,phone,address} r1:recipient{name,entrance_code}]
        "#]],
    );
}

#[test]
fn labels_absent_the_data_map_decides_per_subject_type() {
    check(
        r#"{"class_uid":6003,"activity_id":2,"status_id":1,"time":5,"actor":{"user":{"uid":"c2"}},"src_endpoint":{"ip":"2001:db8::1"},"api":{"operation":"GET /v1/orders/{id}"},"resources":[{"uid":"c2","type":"customer"},{"uid":"r9","type":"recipient"},{"uid":"x","labels":null}]}
{"class_uid":6003,"activity_id":2,"status_id":1,"time":6,"actor":{"user":{"uid":"c2"}},"src_endpoint":{"ip":"10.0.0.1"},"api":{"operation":"GET /v9/unknown"},"resources":[{"uid":"c2","type":"customer"}]}"#,
        expect![[r#"
            1: access t=5 Read ok=true by=c2(unknown) token=- key=- src=2001:db8::1 country=- asn=-/- ua=- op=GET /v1/orders/{id} svc=- subjects=[c2:customer{name,phone,address,order_history} r9:recipient{name,phone,address} x:other{unclassified}]
            2: access t=6 Read ok=true by=c2(unknown) token=- key=- src=10.0.0.1 country=- asn=-/- ua=- op=GET /v9/unknown svc=- subjects=[c2:customer{unclassified}]
        "#]],
    );
}

#[test]
fn escaped_strings_and_repeated_subjects() {
    check(
        r#"{"class_uid":6003,"activity_id":3,"status_id":2,"time":7,"actor":{"user":{"uid":"c\u00e9\"q","type":"employee"}},"src_endpoint":{"ip":"10.0.0.1"},"api":{"operation":"PUT /x"},"resources":[{"uid":"a","labels":["name"]},{"uid":"a","labels":["phone"]},{"uid":"b","labels":[]}]}"#,
        expect![[r#"
            1: access t=7 Update ok=false by=cé"q(employee) token=- key=- src=10.0.0.1 country=- asn=-/- ua=- op=PUT /x svc=- subjects=[a:other{name,phone} b:other{}]
        "#]],
    );
}

#[test]
fn identity_classes() {
    check(
        r#"{"class_uid":3002,"activity_id":1,"status_id":1,"time":10,"user":{"uid":"c1"},"session":{"uid":"tok-1","issuer":"k1","expiration_time":3600010},"src_endpoint":{"ip":"1.2.3.4"}}
{"class_uid":3002,"activity_id":1,"status_id":2,"time":11,"user":{"uid":"c1"}}
{"class_uid":3002,"activity_id":2,"status_id":1,"time":12,"user":{"uid":"c1"},"session":{"uid":"tok-1"}}
{"class_uid":3001,"activity_id":5,"time":13,"user":{"uid":"emp-1"}}
{"class_uid":3001,"activity_id":6,"status_id":1,"time":14,"user":{"uid":"emp-2"}}
{"class_uid":3001,"activity_id":3,"time":15,"user":{"uid":"emp-3"}}"#,
        expect![[r#"
            1: issuance t=10 to=c1 token=tok-1 key=k1 expires=Some(3600010) src=Some(1.2.3.4)
            2: other class=Some(3002) time=Some(11)
            3: other class=Some(3002) time=Some(12)
            4: offboarding t=13 who=emp-1 Disable
            5: offboarding t=14 who=emp-2 Delete
            6: other class=Some(3001) time=Some(15)
        "#]],
    );
}

#[test]
fn other_json_objects_pass_by_even_when_their_fields_collide_with_ours() {
    check(
        r#"{"class_uid":4002,"time":20,"http_request":{"url":{"path":"/"}}}
{"EventID":4624,"Channel":"Security","time":"2025-01-01T00:00:00Z","user":"bob","resources":"none"}
{"class_uid":"6003","time":21}
{}"#,
        expect![[r#"
            1: other class=Some(4002) time=Some(20)
            2: other class=None time=None
            3: other class=None time=Some(21)
            4: other class=None time=None
        "#]],
    );
}

#[test]
fn bad_lines_are_quarantined_with_reasons_and_the_run_goes_on() {
    let deep = format!("{{\"a\":{}{}}}\n", "[".repeat(300), "]".repeat(300));
    let input = [
            "not json\n",
            "[1,2,3]\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":1\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"},\"resources\":[]}\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":\"soon\",\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"},\"resources\":[]}\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.300\"},\"api\":{\"operation\":\"o\"},\"resources\":[]}\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"}}\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"},\"resources\":[{\"type\":\"customer\"}]}\n",
            "{\"class_uid\":6003,\"activity_id\":2,\"status_id\":1,\"time\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"},\"resources\":[{\"uid\":\"s\",\"labels\":\"name\"}]}\n",
            "{\"class_uid\":6003,\"activity_id\":900,\"status_id\":1,\"time\":1,\"actor\":{\"user\":{\"uid\":\"c\"}},\"src_endpoint\":{\"ip\":\"1.1.1.1\"},\"api\":{\"operation\":\"o\"},\"resources\":[]}\n",
            "{\"class_uid\":3002,\"activity_id\":1,\"status_id\":1,\"time\":1,\"user\":{\"uid\":\"c\"}}\n",
            "{\"class_uid\":3001,\"time\":1,\"user\":{\"uid\":\"c\"}}\n",
            "{\"class_uid\":6003,\"time\":1,\"time\":2}\n",
            "   \n",
            &deep,
            "{\"class_uid\":4002,\"time\":1}\r\n",
        ]
        .concat();
    check(
        &input,
        expect![[r#"
            1: QUARANTINED invalid_json: invalid json: expected ident at line 1 column 2
            2: QUARANTINED not_object: valid json but not an object
            3: QUARANTINED invalid_json: invalid json: EOF while parsing an object at line 1 column 56
            4: QUARANTINED missing_field: missing required field `time`
            5: QUARANTINED invalid_field: field `time`: invalid type: string "soon", expected i64
            6: QUARANTINED invalid_field: field `src_endpoint.ip`: not an IPv4 or IPv6 address
            7: QUARANTINED missing_field: missing required field `resources`
            8: QUARANTINED missing_field: missing required field `resources[0].uid`
            9: QUARANTINED invalid_field: field `resources[0].labels`: invalid type: string "name", expected a sequence
            10: QUARANTINED invalid_field: field `activity_id`: 900 is out of range
            11: QUARANTINED missing_field: missing required field `session.uid`
            12: QUARANTINED missing_field: missing required field `activity_id`
            13: QUARANTINED invalid_field: duplicate field `time`
            15: other class=None time=None
            16: other class=Some(4002) time=Some(1)
        "#]],
    );
}

#[test]
fn over_long_and_non_utf8_lines_are_quarantined() {
    let long = format!("{{\"class_uid\":4002,\"pad\":\"{}\"}}", "x".repeat(200));
    let input = format!("{long}\n{{\"class_uid\":4002,\"time\":3}}\n{{\"x\":\"\u{fffd}\"}}\n");
    let mut bytes = input.into_bytes();
    // Replace the replacement character's bytes with a lone 0xff.
    let pos = bytes.windows(3).position(|w| w == "\u{fffd}".as_bytes()).expect("marker");
    bytes.splice(pos..pos + 3, [0xff]);
    let mut reader = Reader::new(ReaderOptions { max_line: 100, ..ReaderOptions::default() });
    let mut sy = Symbols::default();
    let mut d = Describe::default();
    let sum = reader.read_bytes("t", &bytes, &mut sy, &mut d);
    expect![[r#"
        1: QUARANTINED too_long: line of 227 bytes or more exceeds the limit of 100 bytes
        2: other class=Some(4002) time=Some(3)
        3: QUARANTINED not_utf8: invalid utf-8 at byte 6
    "#]]
    .assert_eq(&d.out);
    assert_eq!((sum.lines, sum.events, sum.quarantined), (3, 1, 2));
}

#[test]
fn a_long_line_split_across_chunks_is_bounded_not_buffered() {
    let mut reader = Reader::new(ReaderOptions { max_line: 64, ..ReaderOptions::default() });
    let mut sy = Symbols::default();
    let mut d = Describe::default();
    let big = vec![b'x'; 1000];
    let chunks: Vec<&[u8]> = vec![&big, &big, b"\n{\"class_uid\":1,\"time\":9}\n"];
    let sum = reader.read_chunks("t", chunks, &mut sy, &mut d);
    assert_eq!((sum.lines, sum.events, sum.quarantined), (2, 1, 1));
    assert!(d.out.starts_with("1: QUARANTINED too_long: line of 2000 bytes"), "{}", d.out);
}

fn corpus() -> String {
    let mut s = String::new();
    for i in 0..30 {
        s.push_str(&API.replace("\"time\":1000", &format!("\"time\":{i}")).replace("c1", &format!("c{}", i % 7)));
        s.push('\n');
        if i % 5 == 0 {
            s.push_str("{\"broken\n\n");
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The same events and quarantine, wherever the stream is cut into chunks.
    #[test]
    fn chunk_boundaries_do_not_change_the_result(cuts in proptest::collection::vec(0usize..10_000, 0..20)) {
        let input = corpus();
        let bytes = input.as_bytes();
        let (whole, _) = read(&input, 1 << 20);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts {
            chunks.push(&bytes[last..c]);
            last = c;
        }
        chunks.push(&bytes[last..]);
        let mut reader = Reader::new(ReaderOptions::default());
        let mut sy = Symbols::default();
        let mut d = Describe::default();
        reader.read_chunks("test", chunks, &mut sy, &mut d);
        prop_assert_eq!(whole, d.out);
    }

    /// No input makes the reader panic, and every line is accounted for.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut reader = Reader::new(ReaderOptions { max_line: 300, ..ReaderOptions::default() });
        let mut sy = Symbols::default();
        let mut d = Describe::default();
        let sum = reader.read_bytes("t", &bytes, &mut sy, &mut d);
        prop_assert_eq!(sum.lines, sum.events + sum.blank + sum.quarantined);
    }

    /// Mutated real lines never panic either (closer to the interesting inputs).
    #[test]
    fn mutated_lines_never_panic(pos in 0usize..600, byte in any::<u8>(), cut in 0usize..700) {
        let mut line = API.as_bytes().to_vec();
        let p = pos % line.len();
        line[p] = byte;
        line.truncate(cut.max(1));
        let mut reader = Reader::new(ReaderOptions::default());
        let mut sy = Symbols::default();
        let mut d = Describe::default();
        let sum = reader.read_bytes("t", &line, &mut sy, &mut d);
        prop_assert_eq!(sum.lines, sum.events + sum.blank + sum.quarantined);
    }
}

#[test]
fn deeply_nested_json_does_not_overflow_the_stack() {
    let depth = 400_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let lines = [
        format!("{{\"a\":{nested}}}"),
        format!("{{\"class_uid\":6003,\"resources\":[{{\"uid\":\"x\",\"labels\":{nested}}}]}}"),
        format!("{{\"class_uid\":6003,\"actor\":{{\"user\":{{\"uid\":{nested}}}}}}}"),
    ];
    let (out, sum) = read(&lines.join("\n"), 1 << 20);
    assert_eq!(sum.lines, 3);
    assert_eq!(sum.lines, sum.events + sum.quarantined, "{out}");
}

#[test]
fn an_api_line_with_metadata_nested_past_the_recursion_limit_is_still_an_event() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let line = API.replace(r#""metadata":{"version":"1.3.0"}"#, &format!(r#""metadata":{{"x":{deep}}}"#));
    assert_ne!(line, API);
    let (out, sum) = read(&line, 1 << 20);
    assert_eq!((sum.events, sum.quarantined), (1, 0), "{out}");
    assert!(out.starts_with("1: access t=1000"), "{out}");
}

#[test]
fn times_outside_1970_to_2200_are_quarantined_not_trusted() {
    let far = API.replace(r#""time":1000"#, r#""time":9000000000000000000"#);
    let negative = API.replace(r#""time":1000"#, r#""time":-5"#);
    let expiry = r#"{"class_uid":3002,"activity_id":1,"status_id":1,"time":10,"user":{"uid":"c1"},"session":{"uid":"t","issuer":"k","expiration_time":9223372036854775807}}"#;
    let foreign = r#"{"class_uid":4002,"time":9000000000000000000}"#;
    let (out, sum) = read(&format!("{far}\n{negative}\n{expiry}\n{foreign}\n"), 1 << 20);
    assert_eq!((sum.events, sum.quarantined), (1, 3), "{out}");
    assert_eq!(out.matches("field `time`: ").count(), 2, "{out}");
    assert!(out.contains("session.expiration_time"), "{out}");
    assert!(out.contains("other class=Some(4002) time=None"), "{out}");
}
