//! `mocks.yaml` and `mappings.yaml` codec tests, hand-written Keploy documents included.

use serde_yaml::Value;

use super::tests_docs::err_text;
use super::*;

/// Two mocks of different kinds, the second with the legacy bare-list noise.
const MOCKS_YAML: &str = r#"version: api.keploy.io/v1beta1
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
        url: http://localhost:9966/petclinic/api/owners
        header: {Content-Type: application/json}
        body: '{"firstName":"ann"}'
        timestamp: 2024-08-19T16:06:18.1+05:30
    resp:
        status_code: 201
        header: {Content-Type: application/json}
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
---
version: api.keploy.io/v1beta1
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
    genericresponses:
        - origin: server
          message:
            - type: utf-8
              data: N
    reqtimestampmock: 2024-08-19T16:06:19.1+05:30
    restimestampmock: 2024-08-19T16:06:19.2+05:30
noise:
    - '\d+'
"#;

#[test]
fn keploy_mocks_decode_two_kinds_and_legacy_noise() {
    let mocks = decode_mocks(MOCKS_YAML).unwrap();
    assert_eq!(mocks.len(), 2);
    let (http, generic) = (&mocks[0], &mocks[1]);
    assert_eq!((http.name.as_str(), http.kind.as_str()), ("mock-0", "Http"));
    assert_eq!(
        http.spec["req"]["url"],
        "http://localhost:9966/petclinic/api/owners"
    );
    assert_eq!(http.spec["resp"]["status_code"], 201);
    assert_eq!(http.connection_id.as_deref(), Some("7"));
    assert_eq!(http.noise, None);
    assert_eq!(
        (generic.name.as_str(), generic.kind.as_str()),
        ("mock-1", "Generic")
    );
    assert_eq!(
        generic.spec["genericrequests"][0]["message"][0]["data"],
        "AAAACATSFi8="
    );
    assert_eq!(generic.spec["genericresponses"][0]["origin"], "server");
    let noise: Value = serde_yaml::from_str("value: ['\\d+']").unwrap();
    assert_eq!(generic.noise, Some(noise));
    assert_eq!(generic.connection_id, None);
    // Our form reads back the same and is a fixed point.
    let ours = encode_mocks(&mocks).unwrap();
    assert!(
        ours.starts_with("version: api.keploy.io/v1beta1\nkind: Http\nname: mock-0\nspec:\n"),
        "{ours}"
    );
    assert_eq!(ours.matches("\n---\n").count(), 1);
    assert!(
        ours.contains("connectionId: '7'\n") && ours.contains("noise:\n  value:\n  - \\d+\n"),
        "{ours}"
    );
    assert_eq!(decode_mocks(&ours).unwrap(), mocks);
    assert_eq!(encode_mocks(&decode_mocks(&ours).unwrap()).unwrap(), ours);
}

#[test]
fn keploy_mocks_keep_binary_scalars() {
    let yaml = "kind: MySQL\nname: mock-2\nspec:\n  responses:\n  - message: !!binary /+A=\n    text: 'kreplay-binary !!binary'\n  - !!binary |\n    AAEC\n";
    let mocks = decode_mocks(yaml).unwrap();
    let tagged = &mocks[0].spec["responses"][0]["message"];
    let Value::Tagged(t) = tagged else {
        panic!("{tagged:?}")
    };
    assert_eq!(
        (t.tag.to_string().as_str(), &t.value),
        (BINARY_TAG, &Value::from("/+A="))
    );
    assert_eq!(
        mocks[0].spec["responses"][0]["text"],
        "kreplay-binary !!binary"
    );
    let ours = encode_mocks(&mocks).unwrap();
    assert!(
        ours.contains("message: !!binary /+A=\n") && ours.contains("- !!binary |\n    AAEC\n"),
        "{ours}"
    );
    assert!(ours.contains("text: kreplay-binary !!binary\n"), "{ours}");
    assert_eq!(decode_mocks(&ours).unwrap(), mocks);
}

#[test]
fn keploy_mocks_errors_and_edge_cases() {
    assert_eq!(decode_mocks("").unwrap(), vec![]);
    assert_eq!(decode_mocks("---\n---\n").unwrap(), vec![]);
    assert_eq!(encode_mocks(&[]).unwrap(), "");
    let no_kind = format!("{MOCKS_YAML}---\nname: mock-9\nspec: {{}}\n");
    assert_eq!(
        err_text(decode_mocks(&no_kind)),
        "mocks document #2 `mock-9`: missing required field `kind`"
    );
    let broken = format!("{MOCKS_YAML}---\nkind: Http\nname: [\n");
    assert!(err_text(decode_mocks(&broken)).starts_with("mocks document #2: malformed YAML"));
    let bad_noise = "kind: Http\nname: m\nspec: {}\nnoise: 3\n";
    assert!(err_text(decode_mocks(bad_noise)).contains("`noise`"));
    let no_spec = "kind: Http\nname: m\n";
    assert!(err_text(decode_mocks(no_spec)).contains("`spec`"));
    let nameless = MockDoc {
        name: String::new(),
        kind: "Http".into(),
        spec: Value::Null,
        noise: None,
        connection_id: None,
    };
    assert!(matches!(
        encode_mocks(&[nameless]),
        Err(KeployError::Encode { .. })
    ));
}

fn entry(name: &str, kind: &str) -> MockEntry {
    MockEntry::named(name, kind)
}

#[test]
fn keploy_mappings_encode_current_shape() {
    let m = Mappings {
        test_set_id: "test-set-0".into(),
        tests: vec![
            (
                "test-1".into(),
                vec![
                    MockEntry {
                        name: "mock-3".into(),
                        kind: "Http".into(),
                        timestamp: Some(1_724_063_778),
                        req_timestamp_mock: Some("2024-08-19T16:06:18.1+05:30".into()),
                        res_timestamp_mock: Some("2024-08-19T16:06:18.2+05:30".into()),
                    },
                    entry("mock-4", "Generic"),
                ],
            ),
            ("test-2".into(), vec![]),
        ],
    };
    let yaml = encode_mappings(&m).unwrap();
    assert_eq!(
        yaml,
        "version: api.keploy.io/v1beta1\nkind: TestMocksMapping\ntest_set_id: test-set-0\ntests:\n- id: test-1\n  mock_entries:\n  - name: mock-3\n    kind: Http\n    timestamp: 1724063778\n    reqTimestampMock: 2024-08-19T16:06:18.1+05:30\n    resTimestampMock: 2024-08-19T16:06:18.2+05:30\n  - name: mock-4\n    kind: Generic\n- id: test-2\n"
    );
    assert_eq!(decode_mappings(&yaml).unwrap(), m);
}

#[test]
fn keploy_mappings_decode_all_shapes() {
    let current = "version: api.keploy.io/v1beta1\nkind: TestMocksMapping\ntest_set_id: test-set-1\ntests:\n  - id: test-1\n    mock_entries: [{name: mock-0, kind: Http, timestamp: 5}]\n  - id: test-2\n";
    let m = decode_mappings(current).unwrap();
    assert_eq!(m.test_set_id, "test-set-1");
    let mut first = entry("mock-0", "Http");
    first.timestamp = Some(5);
    assert_eq!(
        m.tests,
        vec![("test-1".into(), vec![first]), ("test-2".into(), vec![])]
    );

    let legacy = "version: api.keploy.io/v1beta1\nkind: TestMocksMapping\ntest_set_id: test-set-1\ntests:\n  - id: test-1\n    mocks: \"mock-0,mock-1\"\n  - id: test-2\n    mocks: \"\"\n";
    let m = decode_mappings(legacy).unwrap();
    assert_eq!(
        m.tests,
        vec![
            (
                "test-1".into(),
                vec![entry("mock-0", ""), entry("mock-1", "")]
            ),
            ("test-2".into(), vec![])
        ]
    );

    let structured = "kind: TestMocksMapping\ntest_set_id: test-set-1\ntests:\n  - id: test-1\n    mocks:\n      - name: mock-0\n        kind: HTTP\n      - name: mock-1\n        kind: Redis\n";
    let m = decode_mappings(structured).unwrap();
    assert_eq!(
        m.tests,
        vec![(
            "test-1".into(),
            vec![entry("mock-0", "HTTP"), entry("mock-1", "Redis")]
        )]
    );

    let oldest = "version: api.keploy.io/v1beta1\nid: test-set-4-mapping\ntests:\n  - id: test-1\n    mocks: [mock-0, mock-2]\n";
    let m = decode_mappings(oldest).unwrap();
    assert_eq!(m.test_set_id, "test-set-4");
    assert_eq!(
        m.tests,
        vec![(
            "test-1".into(),
            vec![entry("mock-0", ""), entry("mock-2", "")]
        )]
    );
}

#[test]
fn keploy_mappings_errors() {
    let wrong = "kind: Http\ntest_set_id: s\ntests: []\n";
    assert_eq!(
        err_text(decode_mappings(wrong)),
        "mappings document: expected kind TestMocksMapping, found \"Http\""
    );
    let no_id = "kind: TestMocksMapping\ntests:\n  - mocks: a\n";
    assert_eq!(
        err_text(decode_mappings(no_id)),
        "mappings document: missing required field `tests[0].id`"
    );
    let bad = "kind: TestMocksMapping\ntests:\n  - id: t\n    mock_entries: [{kind: Http}]\n";
    assert!(err_text(decode_mappings(bad)).contains("`tests[0].mock_entries[0].name`"));
    assert!(err_text(decode_mappings("tests: {a: 1}\n")).contains("`tests`"));
    assert!(matches!(
        decode_mappings("tests: [\n"),
        Err(KeployError::Yaml { .. })
    ));
}
