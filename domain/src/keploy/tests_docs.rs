//! Test case codec tests, hand-written Keploy documents included.

use std::collections::BTreeMap;

use super::*;
use crate::http::{Header, HttpRequest, HttpResponse};

/// Deterministic bytes without a random number crate (xorshift).
pub(super) fn noise_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

pub(super) fn sample(name: &str) -> TestCaseDoc {
    TestCaseDoc {
        name: name.to_owned(),
        req: HttpRequest {
            method: "POST".into(),
            url: "http://orders.shop.svc:8080/api/orders?dry=1".into(),
            target: "/api/orders?dry=1".into(),
            proto_minor: 1,
            headers: vec![
                Header::new("Accept", "*/*"),
                Header::new("Content-Type", "application/json"),
                Header::new("Host", "orders.shop.svc:8080"),
            ],
            body: br#"{"item":"book","qty":2}"#.to_vec(),
            body_truncated: false,
            timestamp_ns: 1_724_063_778_340_635_824,
        },
        resp: HttpResponse {
            status_code: 201,
            status_message: "Created".into(),
            proto_minor: 1,
            headers: vec![
                Header::new("Content-Type", "application/json"),
                Header::new("Date", "Mon, 19 Aug 2024 10:36:18 GMT"),
                Header::new("Set-Cookie", "a=1,b=2"),
            ],
            body: b"{\"id\":7,\"ts\":\"2024-08-19T10:36:18Z\"}\n".to_vec(),
            body_truncated: false,
            timestamp_ns: 1_724_063_780_379_272_416,
        },
        noise: BTreeMap::from([
            ("body.ts".into(), vec![]),
            ("header.Date".into(), vec![r"^\w+, ".into()]),
        ]),
        created: 1_724_063_780,
        metadata: BTreeMap::from([("description".into(), "create an order".into())]),
        curl: Some(
            "curl --request POST \\\n  --url http://orders.shop.svc:8080/api/orders?dry=1\n".into(),
        ),
    }
}

const SAMPLE_YAML: &str = r#"version: api.keploy.io/v1beta1
kind: Http
name: test-1
spec:
  metadata:
    description: create an order
  req:
    method: POST
    proto_major: 1
    proto_minor: 1
    url: http://orders.shop.svc:8080/api/orders?dry=1
    header:
      Accept: '*/*'
      Content-Type: application/json
      Host: orders.shop.svc:8080
    body: '{"item":"book","qty":2}'
    timestamp: 2024-08-19T10:36:18.340635824Z
  resp:
    status_code: 201
    header:
      Content-Type: application/json
      Date: Mon, 19 Aug 2024 10:36:18 GMT
      Set-Cookie: a=1,b=2
    body: |
      {"id":7,"ts":"2024-08-19T10:36:18Z"}
    status_message: Created
    proto_major: 1
    proto_minor: 1
    timestamp: 2024-08-19T10:36:20.379272416Z
  objects: []
  assertions:
    noise:
      body.ts: []
      header.Date:
      - '^\w+, '
  created: 1724063780
curl: |
  curl --request POST \
    --url http://orders.shop.svc:8080/api/orders?dry=1
"#;

#[test]
fn keploy_test_case_encodes_in_keploy_field_order() {
    assert_eq!(encode_test_case(&sample("test-1")).unwrap(), SAMPLE_YAML);
}

#[test]
fn keploy_test_case_round_trips() {
    let mut cases = vec![sample("test-1")];
    let mut bare = sample("bare");
    (bare.noise, bare.metadata, bare.curl) = (BTreeMap::new(), BTreeMap::new(), None);
    (bare.req.body, bare.resp.body, bare.req.headers) = (Vec::new(), Vec::new(), Vec::new());
    (bare.req.timestamp_ns, bare.created, bare.resp.proto_minor) = (0, 0, 0);
    let encoded = encode_test_case(&bare).unwrap();
    assert!(
        !encoded.contains("assertions")
            && !encoded.contains("curl")
            && !encoded.contains("body_truncated")
    );
    assert!(encoded.contains("timestamp: 1970-01-01T00:00:00Z"));
    cases.push(bare);
    let mut binary = sample("binary");
    binary.req.body = noise_bytes(4096, 7);
    binary.resp.body = vec![0xff, 0xfe, 0, 1, b'\n', 0x80];
    (binary.req.body_truncated, binary.resp.body_truncated) = (true, true);
    assert!(std::str::from_utf8(&binary.req.body).is_err());
    cases.push(binary);
    for (i, body) in [
        "line1\r\nline2\r\n",
        "  leading spaces\n\ttab\n",
        "trailing newlines\n\n\n",
        "!!binary aGVsbG8=",
        "kreplay-binary !kreplay-binary",
        "null",
        "- a\n- b",
        "\u{feff}bom \u{0} nul \u{85} nel \u{2028}",
        "key: value # not a comment",
        "日本語 ✓",
    ]
    .into_iter()
    .enumerate()
    {
        let mut tc = sample(&format!("text-{i}"));
        tc.req.body = body.as_bytes().to_vec();
        // Binary next to text naming the placeholder tag: the tag must not leak into text.
        tc.resp.body = noise_bytes(64, i as u64 + 1);
        tc.resp.status_message = body.to_owned();
        cases.push(tc);
    }
    for tc in cases {
        let yaml = encode_test_case(&tc).unwrap();
        let back = decode_test_case(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(back, tc, "{yaml}");
        assert_eq!(encode_test_case(&back).unwrap(), yaml);
    }
}

#[test]
fn keploy_test_case_binary_body_is_tagged_binary() {
    let mut tc = sample("test-1");
    tc.resp.body = vec![0x89, b'P', b'N', b'G', 0xff];
    let yaml = encode_test_case(&tc).unwrap();
    assert!(yaml.contains("    body: !!binary iVBOR/8=\n"), "{yaml}");
}

#[test]
fn keploy_test_case_headers_join_repeats_and_sort() {
    let mut tc = sample("test-1");
    tc.req.headers = vec![
        Header::new("X-B", "1"),
        Header::new("Accept", "text/html"),
        Header::new("X-B", "2"),
        Header::new("X-B", "3"),
    ];
    let yaml = encode_test_case(&tc).unwrap();
    assert!(
        yaml.contains("    header:\n      Accept: text/html\n      X-B: 1,2,3\n"),
        "{yaml}"
    );
    let back = decode_test_case(&yaml).unwrap();
    assert_eq!(
        back.req.headers,
        vec![
            Header::new("Accept", "text/html"),
            Header::new("X-B", "1,2,3")
        ]
    );
}

/// The echo-mysql test case of keploy.md 1.3, as Keploy wrote it.
const ECHO_MYSQL: &str = r#"version: api.keploy.io/v1beta1
kind: Http
name: test-1
spec:
    metadata: {}
    req:
        method: GET
        proto_major: 1
        proto_minor: 1
        url: http://localhost:9090/
        header: {Accept: '*/*', Host: 'localhost:9090', User-Agent: curl/7.88.1}
        body: ""
        timestamp: 2024-08-19T16:06:18.340635824+05:30
    resp:
        status_code: 200
        header: {Content-Length: "13", Content-Type: text/plain; charset=UTF-8, Date: 'Mon, 19 Aug 2024 10:36:18 GMT'}
        body: Hello, World!
        status_message: OK
        proto_major: 0
        proto_minor: 0
        timestamp: 2024-08-19T16:06:20.379272416+05:30
    objects: []
    assertions:
        noise:
            header.Date: []
    created: 1724063780
curl: |
    curl --request GET \
      --url http://localhost:9090/ \
      --header 'Host: localhost:9090' \
      --header 'User-Agent: curl/7.88.1' \
      --header 'Accept: */*'
"#;

#[test]
fn keploy_test_case_decodes_keploy_echo_mysql() {
    let tc = decode_test_case(ECHO_MYSQL).unwrap();
    assert_eq!(tc.name, "test-1");
    assert_eq!(tc.req.method, "GET");
    assert_eq!(
        (tc.req.url.as_str(), tc.req.target.as_str()),
        ("http://localhost:9090/", "/")
    );
    assert_eq!(tc.req.proto_minor, 1);
    assert_eq!(
        tc.req.headers,
        vec![
            Header::new("Accept", "*/*"),
            Header::new("Host", "localhost:9090"),
            Header::new("User-Agent", "curl/7.88.1")
        ]
    );
    assert!(tc.req.body.is_empty() && !tc.req.body_truncated);
    assert_eq!(tc.req.timestamp_ns, 1_724_063_778_340_635_824);
    assert_eq!(tc.resp.status_code, 200);
    assert_eq!(
        tc.resp.headers,
        vec![
            Header::new("Content-Length", "13"),
            Header::new("Content-Type", "text/plain; charset=UTF-8"),
            Header::new("Date", "Mon, 19 Aug 2024 10:36:18 GMT")
        ]
    );
    assert_eq!(tc.resp.body, b"Hello, World!");
    assert_eq!(
        (tc.resp.status_message.as_str(), tc.resp.proto_minor),
        ("OK", 0)
    );
    assert_eq!(tc.resp.timestamp_ns, 1_724_063_780_379_272_416);
    assert_eq!(
        tc.noise,
        BTreeMap::from([("header.Date".to_owned(), vec![])])
    );
    assert_eq!(tc.created, 1_724_063_780);
    assert!(tc.metadata.is_empty());
    let curl = tc.curl.clone().unwrap();
    assert!(
        curl.starts_with("curl --request GET \\\n  --url http://localhost:9090/ \\\n"),
        "{curl:?}"
    );
    assert!(curl.ends_with("--header 'Accept: */*'\n"));
    // Our re-encoding is UTC and reads back to the same values.
    let ours = encode_test_case(&tc).unwrap();
    assert!(
        ours.contains("timestamp: 2024-08-19T10:36:18.340635824Z"),
        "{ours}"
    );
    assert_eq!(decode_test_case(&ours).unwrap(), tc);
}

#[test]
fn keploy_test_case_decodes_lenient_forms() {
    let yaml = r#"
kind: Http
name: get-users-3
spec:
  req:
    method: POST
    url: http://users:8080?x=1#frag
    header: {Content-Length: 13, X-Multi: [a, b]}
    body: {"name": "ann", "tags": [1, 2]}
    body_ref: {path: assets/test-3-req.bin, size: 2000000}
  resp:
    status_code: "404"
    body_skipped: true
    body: !!binary |
      /9j/4AAQ
      SkZJRg==
    timestamp: 0001-01-01T00:00:00Z
  assertions:
    noise: [header.Date, body.id]
"#;
    let tc = decode_test_case(yaml).unwrap();
    assert_eq!(tc.req.target, "/?x=1");
    assert_eq!(tc.req.proto_minor, 1);
    assert_eq!(
        tc.req.headers,
        vec![
            Header::new("Content-Length", "13"),
            Header::new("X-Multi", "a,b")
        ]
    );
    assert_eq!(tc.req.body, br#"{"name":"ann","tags":[1,2]}"#);
    assert!(tc.req.body_truncated && tc.resp.body_truncated);
    assert_eq!(tc.resp.status_code, 404);
    assert_eq!(
        tc.resp.body,
        [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F']
    );
    assert_eq!(
        (tc.req.timestamp_ns, tc.resp.timestamp_ns, tc.created),
        (0, 0, 0)
    );
    assert_eq!(
        tc.noise.keys().collect::<Vec<_>>(),
        ["body.id", "header.Date"]
    );
    assert!(tc.noise.values().all(Vec::is_empty));
}

#[test]
fn keploy_target_from_url() {
    for (url, target) in [
        ("http://h:1/a/b?c=d", "/a/b?c=d"),
        ("https://h", "/"),
        ("http://h?q", "/?q"),
        ("/only/path", "/only/path"),
        ("h:80/x", "/x"),
        ("http://h/p#f", "/p"),
        ("", "/"),
    ] {
        assert_eq!(target_from_url(url), target, "{url}");
    }
}

pub(super) fn err_text(r: Result<impl std::fmt::Debug, KeployError>) -> String {
    r.expect_err("should fail").to_string()
}

#[test]
fn keploy_test_case_errors_name_the_doc_and_field() {
    let e = decode_test_case("kind: Http\nname: [unclosed\n").unwrap_err();
    assert!(matches!(e, KeployError::Yaml { .. }), "{e}");
    let mongo = "version: api.keploy.io/v1beta1\nkind: Mongo\nname: mock-3\nspec: {}\n";
    let e = decode_test_case(mongo).unwrap_err();
    assert!(
        matches!(&e, KeployError::WrongKind { found, .. } if found == "Mongo"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "test case `mock-3`: expected kind Http, found \"Mongo\""
    );
    let no_method = SAMPLE_YAML.replace("    method: POST\n", "");
    assert_eq!(
        err_text(decode_test_case(&no_method)),
        "test case `test-1`: missing required field `spec.req.method`"
    );
    let no_status = SAMPLE_YAML.replace("    status_code: 201\n", "");
    assert!(err_text(decode_test_case(&no_status)).contains("`spec.resp.status_code`"));
    let big_status = SAMPLE_YAML.replace("status_code: 201", "status_code: 70000");
    assert!(err_text(decode_test_case(&big_status)).contains("70000 is out of range"));
    let bad_time = SAMPLE_YAML.replace("2024-08-19T10:36:18.340635824Z", "yesterday");
    assert!(err_text(decode_test_case(&bad_time)).contains("`spec.req.timestamp`"));
    let no_name = SAMPLE_YAML.replace("name: test-1\n", "");
    assert_eq!(
        err_text(decode_test_case(&no_name)),
        "test case document: missing required field `name`"
    );
    let no_kind = SAMPLE_YAML.replace("kind: Http\n", "");
    assert!(err_text(decode_test_case(&no_kind)).contains("`kind`"));
    let no_spec = "kind: Http\nname: t\n";
    assert!(err_text(decode_test_case(no_spec)).contains("`spec`"));
    let bad_b64 = SAMPLE_YAML.replace(
        "body: '{\"item\":\"book\",\"qty\":2}'",
        "body: !!binary '@@@'",
    );
    assert!(err_text(decode_test_case(&bad_b64)).contains("base64"));
    assert!(err_text(decode_test_case("")).contains("empty"));
    assert!(err_text(decode_test_case("- a\n- b\n")).contains("mapping"));
    let two = format!("{SAMPLE_YAML}---\n{SAMPLE_YAML}");
    assert!(err_text(decode_test_case(&two)).contains("several"));
    let mut unnamed = sample("x");
    unnamed.name = " ".into();
    assert!(matches!(
        encode_test_case(&unnamed),
        Err(KeployError::Encode { .. })
    ));
}
