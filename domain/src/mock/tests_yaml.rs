//! Interchange tests: exact round trips per kind, spec layouts, hand-written Keploy documents,
//! mappings, and field derivation.

use serde_yaml::Value;

use super::tests_pool::fields;
use super::*;
use crate::keploy::{decode_mocks, encode_mocks};
use crate::noise::NoiseMap;

fn round_trip(m: &Mock) -> Mock {
    let yaml = encode_mocks(&[to_mock_doc(m)]).expect("encode");
    let docs = decode_mocks(&yaml).expect("decode");
    assert_eq!(docs.len(), 1);
    from_mock_doc(&docs[0]).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn base(kind: MockKind, request: &[u8], response: &[u8]) -> Mock {
    Mock {
        name: "mock-3".to_owned(),
        kind,
        lifetime: Lifetime::PerTest,
        connection_id: "42".to_owned(),
        destination: "10.0.0.7:5432".to_owned(),
        request: request.to_vec(),
        response: response.to_vec(),
        fields: fields(&[
            ("query", "SELECT *\n  FROM t -- \"quoted\" 'x'"),
            ("param.1", "123"),
            ("param.2", "null"),
            ("param.3", ""),
            ("param.4", "b64:AAEC/w=="),
            ("param.5", "tab\there \u{1} ünï"),
            ("param.1", "repeated name"),
        ]),
        summary: "SELECT * FROM t [123]".to_owned(),
        req_ts_ns: 1_724_063_778_340_635_824,
        resp_ts_ns: 1_724_063_778_340_700_001,
        test_case: Some("test-7".to_owned()),
        noise: NoiseMap::from([
            ("field.param.2".to_owned(), vec![]),
            ("field.query".to_owned(), vec![r"\d+".to_owned()]),
        ]),
    }
}

const BINARY: &[u8] = &[0, 1, 2, 0xff, 0xfe, b'\r', b'\n', 0x80];

#[test]
fn yaml_round_trip_every_kind_exactly() {
    let http_req = b"POST /v1/items?x=1 HTTP/1.1\r\nHost: api.local\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x00\xff\x01\x02";
    let http_resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let cases = [
        base(MockKind::Http, http_req, http_resp),
        base(MockKind::Http, BINARY, b""),
        base(MockKind::Generic, BINARY, b"plain \r\n text"),
        base(MockKind::Generic, b"", b""),
        base(
            MockKind::Redis,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            b"$-1\r\n",
        ),
        base(MockKind::Postgres, BINARY, &[b'Z', 0, 0, 0, 5, b'I']),
        base(MockKind::MySql, &[3, 0, 0, 0, 3, b'S'], BINARY),
    ];
    for lifetime in [Lifetime::Session, Lifetime::Connection, Lifetime::PerTest] {
        for case in &cases {
            let mut m = case.clone();
            m.lifetime = lifetime;
            assert_eq!(round_trip(&m), m, "{} {lifetime}", m.kind);
        }
    }
    // No test, no noise, no connection, zero timestamps.
    let mut bare = base(MockKind::Generic, b"ping", b"pong");
    bare.test_case = None;
    bare.noise = NoiseMap::new();
    bare.connection_id = String::new();
    bare.destination = String::new();
    bare.req_ts_ns = 0;
    bare.resp_ts_ns = 0;
    assert_eq!(round_trip(&bare), bare);
}

#[test]
fn yaml_spec_layouts_follow_keploy() {
    let generic = to_mock_doc(&base(MockKind::Generic, BINARY, b"OK"));
    assert_eq!(generic.kind, "Generic");
    assert_eq!(generic.connection_id.as_deref(), Some("42"));
    let spec = &generic.spec;
    assert_eq!(spec["metadata"]["type"], "mocks");
    assert_eq!(spec["metadata"]["connID"], "42");
    assert_eq!(spec["metadata"]["destAddr"], "10.0.0.7:5432");
    assert_eq!(spec["metadata"]["operation"], "SELECT * FROM t [123]");
    assert_eq!(spec["genericrequests"][0]["origin"], "client");
    assert_eq!(spec["genericrequests"][0]["message"][0]["type"], "binary");
    assert_eq!(
        spec["genericrequests"][0]["message"][0]["data"],
        "AAEC//4NCoA="
    );
    assert_eq!(spec["genericresponses"][0]["message"][0]["type"], "utf-8");
    assert_eq!(spec["reqtimestampmock"], "2024-08-19T10:36:18.340635824Z");
    assert_eq!(spec["created"], 1_724_063_778);
    assert_eq!(spec["x-kreplay"]["lifetime"], "pertest");
    assert_eq!(spec["x-kreplay"]["test_case"], "test-7");

    let redis = to_mock_doc(&base(
        MockKind::Redis,
        b"*1\r\n$4\r\nPING\r\n",
        b"+PONG\r\n",
    ));
    assert_eq!(redis.kind, "Redis");
    assert_eq!(
        redis.spec["redisrequests"][0]["message"][0]["data"],
        "*1\r\n$4\r\nPING\r\n"
    );

    let mut session = base(MockKind::Postgres, BINARY, b"R");
    session.lifetime = Lifetime::Session;
    let pg = to_mock_doc(&session);
    assert_eq!(pg.kind, "PostgresV2");
    assert_eq!(pg.spec["metadata"]["type"], "config");
    assert_eq!(pg.spec["requests"][0]["message"]["raw"], "AAEC//4NCoA=");
    assert_eq!(
        pg.spec["requests"][0]["message"]["fields"]["param.2"],
        "null"
    );
    assert_eq!(pg.spec["responses"][0]["message"]["raw"], "Ug==");
    assert_eq!(
        pg.spec["resTimestampMock"],
        "2024-08-19T10:36:18.340700001Z"
    );
    assert_eq!(to_mock_doc(&base(MockKind::MySql, b"", b"")).kind, "MySQL");

    let req = b"GET /a?b=1 HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\n\r\n";
    let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
    let http = to_mock_doc(&base(MockKind::Http, req, resp));
    let spec = &http.spec;
    assert_eq!(spec["req"]["method"], "GET");
    assert_eq!(spec["req"]["url"], "http://h:8080/a?b=1");
    assert_eq!(spec["req"]["header"]["Accept"], "*/*");
    assert_eq!(spec["req"]["body"], "");
    assert_eq!(spec["resp"]["status_code"], 404);
    assert_eq!(spec["resp"]["status_message"], "Not Found");
    assert_eq!(spec["resp"]["body"], "no");
    assert_eq!(spec["objects"], Value::Sequence(vec![]));
    assert_eq!(spec["reqTimestampMock"], "2024-08-19T10:36:18.340635824Z");
    assert!(spec["x-kreplay"]["raw"]["request"].is_string());
    // A non-UTF-8 body is written as !!binary.
    let bin = to_mock_doc(&base(
        MockKind::Http,
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe",
        b"",
    ));
    let yaml = encode_mocks(&[bin]).expect("encode");
    assert!(yaml.contains("body: !!binary //4="), "{yaml}");
}

const KEPLOY_GENERIC: &str = r#"version: api.keploy.io/v1beta1
kind: Generic
name: mock-1
spec:
    metadata:
        type: config
    genericrequests:
        - origin: client
          message:
            - type: binary
              data: AAAACATSFi8=
            - type: utf-8
              data: "hi\n"
    genericresponses:
        - origin: server
          message:
            - type: utf-8
              data: N
    reqtimestampmock: 2024-08-19T16:06:19.1+05:30
    restimestampmock: 2024-08-19T16:06:19.2+05:30
connectionId: "7"
"#;

#[test]
fn yaml_reads_a_hand_written_keploy_generic_mock() {
    let docs = decode_mocks(KEPLOY_GENERIC).expect("decode");
    let m = from_mock_doc(&docs[0]).expect("mock");
    assert_eq!(m.kind, MockKind::Generic);
    assert_eq!(m.lifetime, Lifetime::Session);
    assert_eq!(m.request, b"\x00\x00\x00\x08\x04\xd2\x16\x2fhi\n");
    assert_eq!(m.response, b"N");
    assert_eq!(m.connection_id, "7");
    assert_eq!(m.fields, fields(&[("bytes", "b64:AAAACATSFi9oaQo=")]));
    assert_eq!(m.req_ts_ns, 1_724_063_779_100_000_000);
    assert_eq!(m.resp_ts_ns - m.req_ts_ns, 100_000_000);
    assert_eq!(m.test_case, None);
    assert!(m.summary.starts_with("bytes=b64:"), "{}", m.summary);
}

const KEPLOY_HTTP: &str = r#"version: api.keploy.io/v1beta1
kind: Http
name: mock-0
spec:
    metadata:
        name: Http
        type: HTTP_CLIENT
        operation: POST
        connID: "0"
    req:
        method: POST
        proto_major: 1
        proto_minor: 1
        url: http://localhost:9966/petclinic/api/owners?dry=1
        header: {Content-Type: application/json, Content-Length: "99", Accept: "*/*"}
        body: '{"firstName":"ann","age":3}'
        timestamp: 2024-08-19T16:06:18.1+05:30
    resp:
        status_code: 201
        header: {Content-Type: application/json, Content-Encoding: gzip}
        body: '{"id":1}'
        status_message: Created
        proto_major: 0
        proto_minor: 0
        timestamp: 2024-08-19T16:06:18.2+05:30
    objects: []
    created: 1724063778
    reqTimestampMock: 2024-08-19T16:06:18.1+05:30
    resTimestampMock: 2024-08-19T16:06:18.2+05:30
connectionId: "7"
"#;

#[test]
fn yaml_reads_a_hand_written_keploy_http_mock() {
    let docs = decode_mocks(KEPLOY_HTTP).expect("decode");
    let m = from_mock_doc(&docs[0]).expect("mock");
    assert_eq!(m.kind, MockKind::Http);
    assert_eq!(m.lifetime, Lifetime::PerTest);
    assert_eq!(m.connection_id, "0", "metadata.connID wins");
    let body = r#"{"firstName":"ann","age":3}"#;
    let expected_request = format!(
        "POST /petclinic/api/owners?dry=1 HTTP/1.1\r\nHost: localhost:9966\r\n\
         Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(String::from_utf8_lossy(&m.request), expected_request);
    assert_eq!(
        String::from_utf8_lossy(&m.response),
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"id\":1}"
    );
    assert_eq!(
        m.fields,
        fields(&[
            ("method", "POST"),
            ("path", "/petclinic/api/owners"),
            ("query.dry", "1"),
            ("body", r#"{"age":3,"firstName":"ann"}"#),
        ])
    );
    assert_eq!(m.summary, "POST /petclinic/api/owners?dry=1");
    // What we read, we write and read back the same.
    assert_eq!(round_trip(&m), m);
}

#[test]
fn yaml_reads_keploy_redis_and_refuses_what_it_cannot_replay() {
    let redis = r#"version: api.keploy.io/v1beta1
kind: Redis
name: mock-2
spec:
    metadata: {type: mocks}
    redisrequests:
        - origin: client
          message: [{type: utf-8, data: "*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n"}]
    redisresponses:
        - origin: server
          message: [{type: utf-8, data: "+OK\r\n"}]
"#;
    let m = from_mock_doc(&decode_mocks(redis).expect("decode")[0]).expect("mock");
    assert_eq!(
        m.fields,
        fields(&[("command", "SET"), ("arg.1", "k"), ("arg.2", "v")])
    );
    assert_eq!(m.response, b"+OK\r\n");
    assert_eq!((m.req_ts_ns, m.lifetime), (0, Lifetime::PerTest));

    let keploy_pg = r#"version: api.keploy.io/v1beta1
kind: PostgresV2
name: mock-5
spec:
    metadata: {type: config}
    requests:
        - message: {packets: [{header: Q}]}
"#;
    let err = from_mock_doc(&decode_mocks(keploy_pg).expect("decode")[0]).unwrap_err();
    assert!(
        matches!(
            err,
            MockError::Unsupported {
                kind: MockKind::Postgres,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("re-record"));

    let mongo = "version: api.keploy.io/v1beta1\nkind: Mongo\nname: mock-6\nspec: {metadata: {}}\n";
    let err = from_mock_doc(&decode_mocks(mongo).expect("decode")[0]).unwrap_err();
    assert_eq!(
        err,
        MockError::UnknownKind {
            mock: "mock-6".to_owned(),
            kind: "Mongo".to_owned()
        }
    );

    let mut bad = to_mock_doc(&base(MockKind::Generic, b"x", b"y"));
    bad.spec["reqtimestampmock"] = Value::from("yesterday");
    let err = from_mock_doc(&bad).unwrap_err();
    assert!(
        matches!(&err, MockError::InvalidField { field, .. } if field == "spec.reqtimestampmock"),
        "{err}"
    );
}

#[test]
fn yaml_kind_and_lifetime_names() {
    for kind in MockKind::ALL {
        assert_eq!(MockKind::from_kind_str(kind.as_str()), Some(kind));
        let json = serde_json::to_string(&kind).expect("json");
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
    }
    assert_eq!(
        MockKind::from_kind_str("Postgres"),
        Some(MockKind::Postgres)
    );
    assert_eq!(
        serde_json::from_str::<MockKind>("\"Postgres\"").ok(),
        Some(MockKind::Postgres)
    );
    assert_eq!(MockKind::from_kind_str("Mongo"), None);
    assert_eq!(
        serde_json::to_string(&Lifetime::PerTest).ok().as_deref(),
        Some("\"pertest\"")
    );
    assert_eq!(
        serde_json::from_str::<Lifetime>("\"per_test\"").ok(),
        Some(Lifetime::PerTest)
    );
    assert_eq!(
        Lifetime::from_keploy_type(Some("HTTP_CLIENT")),
        Lifetime::PerTest
    );
    assert_eq!(
        Lifetime::from_keploy_type(Some("connection")),
        Lifetime::Connection
    );
    assert_eq!(Lifetime::from_keploy_type(None), Lifetime::Session);
    assert_eq!(Lifetime::Connection.keploy_type(), "connection");
}

#[test]
fn mappings_round_trip_through_attributed_mocks() {
    let mut a = base(MockKind::Generic, b"a", b"");
    a.name = "mock-1".to_owned();
    let mut b = a.clone();
    b.name = "mock-2".to_owned();
    b.test_case = Some("test-2".to_owned());
    let mut s = a.clone();
    s.name = "mock-0".to_owned();
    s.lifetime = Lifetime::Session;
    let tests = [
        "test-7".to_owned(),
        "test-2".to_owned(),
        "test-9".to_owned(),
    ];
    let mappings = mappings_of("test-set-0", &tests, &[s.clone(), a.clone(), b.clone()]);
    let names: Vec<(&str, Vec<&str>)> = mappings
        .tests
        .iter()
        .map(|(t, e)| (t.as_str(), e.iter().map(|e| e.name.as_str()).collect()))
        .collect();
    assert_eq!(
        names,
        [
            ("test-7", vec!["mock-1"]),
            ("test-2", vec!["mock-2"]),
            ("test-9", vec![])
        ]
    );
    assert_eq!(mappings.tests[0].1[0].kind, "Generic");

    let mut mocks = vec![s, a, b];
    for m in &mut mocks {
        m.test_case = None;
    }
    let mut with_ghost = mappings.clone();
    with_ghost.tests[2]
        .1
        .push(crate::keploy::MockEntry::named("mock-99", "Http"));
    assert_eq!(apply_mappings(&mut mocks, &with_ghost), vec!["mock-99"]);
    let tests_of: Vec<Option<&str>> = mocks.iter().map(|m| m.test_case.as_deref()).collect();
    assert_eq!(tests_of, [None, Some("test-7"), Some("test-2")]);
}

#[test]
fn derived_fields_for_http_and_redis() {
    let chunked = b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n8\r\n:[1,{}]}\r\n0\r\n\r\n";
    // The mock server's derivation, applied to the de-chunked body.
    assert_eq!(
        http_request_fields(chunked),
        crate::http::request_fields("PUT", "/x", br#"{"a":[1,{}]}"#)
    );
    assert_eq!(http_request_fields(chunked)[2].1, r#"{"a":[1,{}]}"#);
    let a = http_request_fields(b"GET /p?b=2&a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    let b = http_request_fields(b"GET /p?a=1&b=2 HTTP/1.1\r\n\r\n");
    assert_eq!(a, b, "query order and headers do not matter");
    let text = b"POST /t HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcEXTRA";
    assert_eq!(
        http_request_fields(text)[2],
        ("body".to_owned(), "abc".to_owned())
    );
    assert_eq!(
        http_request_fields(b"\x16\x03\x01\xc8"),
        fields(&[("bytes", "b64:FgMByA==")])
    );
    assert_eq!(
        redis_request_fields(b"*2\r\n$3\r\nget\r\n$2\r\n\xff\x00\r\n"),
        fields(&[("command", "GET"), ("arg.1", "b64:/wA=")])
    );
    // A pipeline is not one command.
    let pipeline = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
    assert_eq!(redis_request_fields(pipeline)[0].0, "bytes");
    assert_eq!(
        redis_request_fields(b"get  k\r\n"),
        fields(&[("command", "GET"), ("arg.1", "k")])
    );
    assert_eq!(redis_request_fields(b"SET k \"a b\"\r\n")[0].0, "bytes");
    // Text that looks like an encoded value is encoded, so values never read two ways.
    assert_eq!(bytes_fields(b"b64:x"), fields(&[("bytes", "b64:YjY0Ong=")]));
}
