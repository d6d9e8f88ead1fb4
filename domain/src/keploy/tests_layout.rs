//! Layout tests: export/import of whole `keploy/` trees.

use std::cmp::Ordering;

use serde_yaml::Value;

use super::tests_docs::{noise_bytes, sample};
use super::*;

fn file(path: &str, contents: impl AsRef<[u8]>) -> ExportedFile {
    ExportedFile {
        path: path.to_owned(),
        contents: contents.as_ref().to_vec(),
    }
}

fn mock(name: &str, kind: &str, spec: &str) -> MockDoc {
    MockDoc {
        name: name.into(),
        kind: kind.into(),
        spec: serde_yaml::from_str(spec).unwrap(),
        noise: None,
        connection_id: None,
    }
}

const REPORT: &str = "version: api.keploy.io/v1beta1\nname: test-set-2-report\nstatus: PASSED\nsuccess: 3\nfailure: 0\ntotal: 3\ntests: []\n";

fn two_sets() -> Vec<TestSetFiles> {
    let mut binary = sample("test-10");
    binary.resp.body = noise_bytes(300, 3);
    let mut with_noise = mock(
        "mock-1",
        "Generic",
        "{genericrequests: [{origin: client, message: [{type: binary, data: AAE=}]}]}",
    );
    with_noise.noise = Some(serde_yaml::from_str("{req: [body.id], value: ['\\d+']}").unwrap());
    with_noise.connection_id = Some("12".into());
    let set2 = TestSetFiles {
        name: "test-set-2".into(),
        tests: vec![binary, sample("test-2"), sample("test-1")],
        mocks: vec![
            mock(
                "mock-0",
                "Http",
                "{metadata: {type: HTTP_CLIENT}, req: {method: GET}}",
            ),
            with_noise,
        ],
        mappings: Some(Mappings {
            test_set_id: "test-set-2".into(),
            tests: vec![
                ("test-1".into(), vec![MockEntry::named("mock-0", "Http")]),
                ("test-2".into(), vec![]),
            ],
        }),
        reports: vec![
            ("test-run-10".into(), REPORT.into()),
            ("test-run-9".into(), REPORT.into()),
        ],
    };
    let set10 = TestSetFiles {
        name: "test-set-10".into(),
        tests: vec![sample("get-users-1")],
        mocks: vec![],
        mappings: None,
        reports: vec![("test-run-9".into(), "name: test-set-10-report\n".into())],
    };
    vec![set10, set2]
}

fn paths(files: &[ExportedFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

#[test]
fn keploy_layout_export_paths_and_order() {
    let files = export_layout(&two_sets()).unwrap();
    assert_eq!(
        paths(&files),
        [
            "keploy/test-set-2/tests/test-1.yaml",
            "keploy/test-set-2/tests/test-2.yaml",
            "keploy/test-set-2/tests/test-10.yaml",
            "keploy/test-set-2/mocks.yaml",
            "keploy/test-set-2/mappings.yaml",
            "keploy/test-set-10/tests/get-users-1.yaml",
            "keploy/test-set-10/mocks.yaml",
            "keploy/reports/test-run-9/test-set-2-report.yaml",
            "keploy/reports/test-run-9/test-set-10-report.yaml",
            "keploy/reports/test-run-10/test-set-2-report.yaml",
        ]
    );
    assert_eq!(files[6].contents, b"");
    assert_eq!(files[7].contents, REPORT.as_bytes());
    assert!(
        std::str::from_utf8(&files[2].contents)
            .unwrap()
            .contains("body: !!binary ")
    );
}

#[test]
fn keploy_layout_round_trip_is_byte_identical() {
    let first = export_layout(&two_sets()).unwrap();
    let imported = import_layout(&first).unwrap();
    assert_eq!(
        imported.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["test-set-2", "test-set-10"]
    );
    let names: Vec<&str> = imported[0].tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["test-1", "test-2", "test-10"]);
    assert_eq!(imported[0].tests[2].resp.body, noise_bytes(300, 3));
    assert_eq!(imported[0].tests[0], sample("test-1"));
    assert_eq!(imported[0].mocks, two_sets()[1].mocks);
    assert_eq!(imported[0].mappings, two_sets()[1].mappings);
    let runs: Vec<&str> = imported[0].reports.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(runs, ["test-run-9", "test-run-10"]);
    assert_eq!(imported[1].mappings, None);
    let second = export_layout(&imported).unwrap();
    assert_eq!(second, first);
    // Input order does not matter.
    let mut shuffled = first.clone();
    shuffled.reverse();
    assert_eq!(
        export_layout(&import_layout(&shuffled).unwrap()).unwrap(),
        first
    );
}

/// A ZIP of a project directory, as a user might upload it.
fn keploy_project() -> Vec<ExportedFile> {
    let echo = decode_test_case(ECHO_TEST).unwrap();
    assert_eq!(echo.name, "test-1");
    vec![
        file("myapp/keploy.yml", "path: \"\"\n"),
        file("myapp/README.md", "# not yaml"),
        file("myapp/keploy/test-set-0/tests/test-1.yml", ECHO_TEST),
        file("myapp/keploy/test-set-0/tests/notes.txt", [0xff, 0xfe]),
        file(
            "myapp/keploy/test-set-0/mocks.yaml",
            "kind: Generic\nname: mock-0\nspec: {metadata: {}}\n",
        ),
        file(
            "myapp/keploy/test-set-0/mappings.yml",
            "kind: TestMocksMapping\ntests:\n  - id: test-1\n    mocks: \"mock-0\"\n",
        ),
        file("myapp/keploy/test-set-0/config.yaml", "preScript: ''\n"),
        file("myapp/keploy/test-set-0/assets/body.bin", [0u8, 0xff, 0x80]),
        file(
            "myapp/keploy/reports/test-run-0/test-set-0-report.yaml",
            "status: FAILED\n",
        ),
        file("myapp/keploy/reports/test-run-0/coverage.yaml", "x: 1\n"),
        file(
            "myapp/keploy/testReports/t/tests/test-1.yaml",
            "{{{ not yaml",
        ),
        file(
            "myapp/keploy/schema/tests/test-set-0/test-1.yaml",
            "kind: Mongo\n",
        ),
        file("myapp/keploy/api-tests/tests/x.yaml", "kind: Mongo\n"),
        file("myapp/keploy/contract.yaml", "openapi: 3.0.0\n"),
        file(
            "__MACOSX/myapp/keploy/test-set-0/tests/._test-1.yaml",
            [0u8, 5, 22, 7],
        ),
        file("myapp/keploy/test-set-0/tests/.DS_Store", [0u8, 0, 0, 1]),
    ]
}

const ECHO_TEST: &str = "version: api.keploy.io/v1beta1\nkind: Http\nname: test-1\nspec:\n    metadata: {}\n    req:\n        method: GET\n        proto_major: 1\n        proto_minor: 1\n        url: http://localhost:9090/\n        header: {Accept: '*/*', Host: 'localhost:9090'}\n        body: \"\"\n        timestamp: 2024-08-19T16:06:18.340635824+05:30\n    resp:\n        status_code: 200\n        header: {Content-Length: \"13\"}\n        body: Hello, World!\n        status_message: OK\n        proto_major: 0\n        proto_minor: 0\n        timestamp: 2024-08-19T16:06:20.379272416+05:30\n    objects: []\n    created: 1724063780\n";

#[test]
fn keploy_layout_import_tolerates_real_projects() {
    let sets = import_layout(&keploy_project()).unwrap();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let set = &sets[0];
    assert_eq!(set.name, "test-set-0");
    assert_eq!(set.tests.len(), 1);
    assert_eq!(set.tests[0].resp.body, b"Hello, World!");
    assert_eq!(set.mocks.len(), 1);
    assert_eq!(
        set.mocks[0].spec["metadata"],
        Value::Mapping(Default::default())
    );
    let mappings = set.mappings.as_ref().unwrap();
    // A mappings file without test_set_id belongs to its folder.
    assert_eq!(mappings.test_set_id, "test-set-0");
    assert_eq!(
        mappings.tests,
        vec![("test-1".into(), vec![MockEntry::named("mock-0", "")])]
    );
    assert_eq!(
        set.reports,
        vec![("test-run-0".into(), "status: FAILED\n".into())]
    );
    let first = export_layout(&sets).unwrap();
    assert_eq!(
        paths(&first),
        [
            "keploy/test-set-0/tests/test-1.yaml",
            "keploy/test-set-0/mocks.yaml",
            "keploy/test-set-0/mappings.yaml",
            "keploy/reports/test-run-0/test-set-0-report.yaml",
        ]
    );
    assert_eq!(
        export_layout(&import_layout(&first).unwrap()).unwrap(),
        first
    );
}

#[test]
fn keploy_layout_import_without_keploy_dir() {
    let files = vec![
        file("test-set-3/tests/test-1.yaml", ECHO_TEST),
        file(
            "reports/test-run-1/test-set-4-report.yml",
            "status: PASSED\n",
        ),
    ];
    let sets = import_layout(&files).unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["test-set-3", "test-set-4"]);
    assert_eq!(sets[1].reports.len(), 1);
    assert!(sets[1].tests.is_empty() && sets[1].mocks.is_empty());
}

fn import_err(files: &[ExportedFile]) -> String {
    import_layout(files)
        .expect_err("import should fail")
        .to_string()
}

#[test]
fn keploy_layout_import_errors_name_the_file() {
    let malformed = [file(
        "keploy/test-set-0/tests/test-1.yaml",
        "kind: Http\nname: [oops\n",
    )];
    let e = import_err(&malformed);
    assert!(
        e.starts_with("keploy/test-set-0/tests/test-1.yaml: test case document: malformed YAML"),
        "{e}"
    );
    let mongo = [file(
        "keploy/test-set-0/tests/test-1.yaml",
        "kind: Mongo\nname: mock-0\nspec: {}\n",
    )];
    assert_eq!(
        import_err(&mongo),
        "keploy/test-set-0/tests/test-1.yaml: test case `mock-0`: expected kind Http, found \"Mongo\""
    );
    let binary = [file(
        "keploy/test-set-0/tests/test-1.yaml",
        [0xffu8, 0xfe, 0],
    )];
    assert!(import_err(&binary).starts_with("keploy/test-set-0/tests/test-1.yaml: is not UTF-8"));
    let twice = [
        file("keploy/test-set-0/tests/test-1.yaml", ECHO_TEST),
        file("keploy/test-set-0/tests/copy.yaml", ECHO_TEST),
    ];
    let e = import_err(&twice);
    assert!(
        e.contains("test-1.yaml") && e.contains("copy.yaml") && e.contains("\"test-1\""),
        "{e}"
    );
    let both = [
        file("keploy/test-set-0/mocks.yaml", ""),
        file("keploy/test-set-0/mocks.yml", ""),
    ];
    assert!(import_err(&both).contains("duplicates keploy/test-set-0/mocks.yaml"));
    let bad_mocks = [file(
        "keploy/test-set-0/mocks.yaml",
        "kind: Http\nname: m\n",
    )];
    assert_eq!(
        import_err(&bad_mocks),
        "keploy/test-set-0/mocks.yaml: mocks document #0 `m`: missing required field `spec`"
    );
    let bad_mappings = [file("keploy/test-set-0/mappings.yaml", "kind: Mongo\n")];
    assert!(
        import_err(&bad_mappings)
            .starts_with("keploy/test-set-0/mappings.yaml: mappings document: expected kind")
    );
    let bad_report = [file(
        "keploy/reports/test-run-0/test-set-0-report.yaml",
        "a: [\n",
    )];
    assert!(import_err(&bad_report).starts_with(
        "keploy/reports/test-run-0/test-set-0-report.yaml: report document #0: malformed YAML"
    ));
}

#[test]
fn keploy_layout_export_rejects_unwritable_sets() {
    let mut sets = two_sets();
    sets[0].name = "test-set-2".into();
    assert!(
        export_layout(&sets)
            .unwrap_err()
            .to_string()
            .contains("keploy/test-set-2")
    );
    for bad in ["", "a/b", "..", ".hidden", "reports", "schema"] {
        let mut sets = two_sets();
        sets[0].name = bad.into();
        assert!(
            matches!(export_layout(&sets), Err(KeployError::Encode { .. })),
            "{bad:?}"
        );
    }
    let mut sets = two_sets();
    sets[1].tests.push(sample("test-2"));
    assert!(
        export_layout(&sets)
            .unwrap_err()
            .to_string()
            .contains("test-set-2/tests/test-2.yaml")
    );
    let mut sets = two_sets();
    sets[1].tests[0].name = "x/y".into();
    assert!(export_layout(&sets).is_err());
    let mut sets = two_sets();
    sets[1].reports.push(("test-run-9".into(), "dup".into()));
    assert!(
        export_layout(&sets)
            .unwrap_err()
            .to_string()
            .contains("keploy/reports/test-run-9/test-set-2-report.yaml")
    );
    let mut sets = two_sets();
    sets[1].mocks[0].kind = String::new();
    assert!(
        export_layout(&sets)
            .unwrap_err()
            .to_string()
            .starts_with("keploy/test-set-2/mocks.yaml: mock #0")
    );
}

#[test]
fn keploy_natural_order() {
    let mut names = vec![
        "test-10",
        "test-2",
        "test-1",
        "test-01",
        "get-users-3",
        "test",
        "test-",
        "test-set-0",
        "test-100000000000000000000001",
        "test-99",
    ];
    names.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        names,
        [
            "get-users-3",
            "test",
            "test-",
            "test-01",
            "test-1",
            "test-2",
            "test-10",
            "test-99",
            "test-100000000000000000000001",
            "test-set-0"
        ]
    );
    assert_eq!(natural_cmp("test-set-2", "test-set-10"), Ordering::Less);
    assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
}
