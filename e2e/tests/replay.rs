//! Issue P2 end to end: record real services, replay the recordings against fresh instances,
//! and check pass/fail, risk and category per test case, the stored reports, the failure paths
//! and the Keploy-layout export/import. Needs root and the binaries (`cargo xtask test`).

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context;
use kreplay_e2e::{Agent, Proxy, ProxyConfig, ScratchDir, client, servers};
use serde_json::{Value, json};

/// A proxy with one deployment and an agent. Drops in field order: agent, proxy, files.
struct Run {
    agent: Agent,
    proxy: Proxy,
    _scratch: ScratchDir,
}

impl Run {
    fn start(
        label: &str,
        make: impl FnOnce(&Path) -> anyhow::Result<kreplay_e2e::Deployment>,
    ) -> anyhow::Result<(Self, u16)> {
        let scratch = ScratchDir::new(label)?;
        let dir = scratch.path();
        let deployment = make(dir)?;
        let port = deployment.port;
        let proxy = Proxy::start(dir, &ProxyConfig::new(dir, vec![deployment])?)?;
        let agent = Agent::start(dir, &proxy, &[])?;
        kreplay_e2e::wait_for("the deployment to listen", Duration::from_secs(30), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        })?;
        Ok((
            Self {
                agent,
                proxy,
                _scratch: scratch,
            },
            port,
        ))
    }

    fn dir(&self) -> &Path {
        self._scratch.path()
    }

    /// Records what `traffic` sends; returns the stored test cases.
    fn record(
        &self,
        deployment: &str,
        traffic: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Value>> {
        let rest = &self.proxy.rest;
        let record_id = rest.start_recording(deployment)?;
        rest.status_stream(&record_id)?
            .wait_for_status("running", Duration::from_secs(30))?;
        traffic()?;
        rest.stop_recording(&record_id)?;
        let cases = rest.test_cases(&record_id)?;
        anyhow::ensure!(
            !cases.is_empty(),
            "nothing recorded; agent log:\n{}",
            self.agent.log()
        );
        Ok(cases)
    }

    /// Starts a replay; returns (replay_id, test_run_id).
    fn start_replay(
        &self,
        deployment: &str,
        test_config: Value,
    ) -> anyhow::Result<(String, String)> {
        let response = self.proxy.rest.post_json(
            "/test/start",
            &json!({"namespace": "default", "deployment": deployment, "test_config": test_config}),
        )?;
        anyhow::ensure!(
            response.status == 200,
            "test/start: {} {}",
            response.status,
            response.text()
        );
        let body = response.json()?;
        Ok((
            body["replay_id"].as_str().context("replay_id")?.to_string(),
            body["test_run_id"]
                .as_str()
                .context("test_run_id")?
                .to_string(),
        ))
    }

    /// Replays and waits for the end; returns every status line.
    fn replay(&self, deployment: &str, test_config: Value) -> anyhow::Result<Replayed> {
        let (replay_id, test_run_id) = self.start_replay(deployment, test_config)?;
        let mut stream = self.proxy.rest.replay_stream(&replay_id)?;
        stream
            .wait_for(Duration::from_secs(120), |l| {
                l["type"] == "status"
                    && matches!(l["status"].as_str(), Some("completed" | "stopped"))
            })
            .with_context(|| format!("proxy log:\n{}", tail(&self.proxy.log())))?;
        stream.wait_for_end(Duration::from_secs(10))?;
        Ok(Replayed {
            test_run_id,
            lines: stream.seen.clone(),
        })
    }
}

struct Replayed {
    test_run_id: String,
    lines: Vec<Value>,
}

impl Replayed {
    /// test case name -> its result line.
    fn results(&self) -> BTreeMap<String, Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "test_case")
            .map(|l| {
                (
                    l["test_case_id"].as_str().unwrap_or("").to_string(),
                    l.clone(),
                )
            })
            .collect()
    }

    fn last(&self) -> &Value {
        self.lines.last().unwrap_or(&Value::Null)
    }
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(3000)..]
}

/// Stored test case name of the case whose request target is `target`.
fn name_of(cases: &[Value], method: &str, target: &str) -> String {
    cases
        .iter()
        .find(|c| c["req"]["method"] == method && c["req"]["target"] == target)
        .and_then(|c| c["name"].as_str())
        .unwrap_or_else(|| panic!("no recorded {method} {target}"))
        .to_string()
}

fn diff_paths(line: &Value) -> Vec<String> {
    line["diffs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str().map(str::to_string))
        .collect()
}

fn curl_all(dir: &Path, base: &str, requests: &[(&str, &str, Option<&str>)]) -> anyhow::Result<()> {
    for (i, (method, path, body)) in requests.iter().enumerate() {
        let url = format!("{base}{path}");
        let mut args = vec!["-X", method];
        if let Some(body) = body {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        args.push(&url);
        client::curl(dir, &format!("r{i}"), &args, body.unwrap_or("").as_bytes())?;
    }
    Ok(())
}

#[test]
fn httpbin_replays_pass_and_uuid_fails_until_noise_ignores_it() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let (run, port) = Run::start("replay-httpbin", |dir| servers::httpbin(dir, "bin"))?;
    let base = format!("http://127.0.0.1:{port}");
    let cases = run.record("bin", || {
        curl_all(
            run.dir(),
            &base,
            &[
                ("GET", "/uuid", None),
                ("GET", "/headers", None),
                ("GET", "/anything?x=1&y=two", None),
                (
                    "POST",
                    "/anything",
                    Some(r#"{"name":"kreplay","n":[1,2,3]}"#),
                ),
                ("GET", "/json", None),
                ("GET", "/status/404", None),
            ],
        )
    })?;
    assert_eq!(cases.len(), 6);
    let uuid = name_of(&cases, "GET", "/uuid");

    let plain = run.replay("bin", json!({"apiTimeout": 10}))?;
    let results = plain.results();
    assert_eq!(results.len(), 6, "{:?}", plain.lines);
    for (name, line) in &results {
        if *name == uuid {
            assert_eq!(line["status"], "FAILED", "{line}");
            assert_eq!(line["risk"], "MEDIUM", "{line}");
            assert!(
                diff_paths(line).iter().any(|p| p.ends_with("uuid")),
                "the differing field is named: {line}"
            );
        } else {
            assert_eq!(line["status"], "PASSED", "{name}: {line}");
        }
    }
    assert_eq!(plain.last()["result"], "FAILED");

    // The stored report says the same, with expected and actual values of the field.
    let reports = run
        .proxy
        .rest
        .get(&format!(
            "/k8s-proxy/get/testRunReports?deployment=bin&test_run_id={}",
            plain.test_run_id
        ))?
        .json()?;
    let report = &reports[0]["report"];
    assert_eq!(
        (
            report["success"].as_u64(),
            report["failure"].as_u64(),
            report["total"].as_u64()
        ),
        (Some(5), Some(1), Some(6)),
        "{report}"
    );
    assert_eq!(report["status"], "FAILED");
    let failed = report["tests"]
        .as_array()
        .context("tests")?
        .iter()
        .find(|t| t["test_case_id"] == uuid.as_str())
        .context("uuid result")?;
    let diff = failed["failure_info"]["assessment"]["diffs"]
        .as_array()
        .context("diffs")?
        .iter()
        .find(|d| d["path"].as_str().is_some_and(|p| p.ends_with("uuid")))
        .context("uuid diff")?
        .clone();
    assert_ne!(diff["expected"], diff["actual"]);
    assert!(
        diff["expected"].is_string() && diff["actual"].is_string(),
        "{diff}"
    );

    let quiet = run.replay(
        "bin",
        json!({"apiTimeout": 10, "globalNoise": {"global": {"body": {"uuid": []}}}}),
    )?;
    assert!(
        quiet.results().values().all(|l| l["status"] == "PASSED"),
        "{:?}",
        quiet.lines
    );
    assert_eq!(quiet.last()["result"], "PASSED");
    let ids = run
        .proxy
        .rest
        .get("/k8s-proxy/get/testRunIds?deployment=bin")?
        .json()?;
    let ids: Vec<&str> = ids
        .as_array()
        .context("ids")?
        .iter()
        .filter_map(|r| r["test_run_id"].as_str())
        .collect();
    assert_eq!(ids, ["test-run-0", "test-run-1"]);
    Ok(())
}

#[test]
fn a_changed_service_fails_the_changed_cases_with_the_right_category() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let (run, port) = Run::start("replay-env", |dir| servers::inventory(dir, "inv"))?;
    let base = format!("http://127.0.0.1:{port}");
    let cases = run.record("inv", || {
        curl_all(
            run.dir(),
            &base,
            &[
                ("GET", "/stable", None),
                ("GET", "/version", None),
                ("GET", "/items/1", None),
                ("GET", "/extra", None),
                ("GET", "/typed", None),
                ("GET", "/teapot", None),
                ("GET", "/now", None),
                ("POST", "/items", Some(r#"{"name":"pear"}"#)),
            ],
        )
    })?;
    // Record-time noise: the timestamp in /now is noise from the start.
    let now_case = cases
        .iter()
        .find(|c| c["req"]["target"] == "/now")
        .context("/now")?;
    let detail = run
        .proxy
        .rest
        .get(&format!(
            "/k8s-proxy/testcases/detail?id={}",
            now_case["id"]
        ))?
        .json()?;
    assert_eq!(detail["noise"]["body.at"], json!([]), "{detail}");

    let same = run.replay("inv", json!({}))?;
    for (name, line) in same.results() {
        if name == name_of(&cases, "GET", "/now") {
            assert_eq!(line["status"], "FAILED");
            assert_eq!(
                diff_paths(&line)
                    .iter()
                    .filter(|p| !p.ends_with(".id") && *p != "id" && *p != "body.id")
                    .count(),
                0,
                "only the id differs, the timestamp is noise: {line}"
            );
        } else {
            assert_eq!(line["status"], "PASSED", "{name}: {line}");
        }
    }

    let changed = run.replay("inv", json!({"envOverrides": {"VERSION": "2", "REMOVE_PRICE": "1", "ADD_FIELD": "1", "TYPE_CHANGE": "1", "TEAPOT_STATUS": "418"}}))?;
    let results = changed.results();
    let expect = [
        ("/stable", "PASSED", "NONE", None),
        ("/version", "FAILED", "MEDIUM", Some("SCHEMA_UNCHANGED")),
        ("/items/1", "FAILED", "HIGH", Some("SCHEMA_BROKEN")),
        ("/extra", "FAILED", "LOW", Some("SCHEMA_ADDED")),
        ("/typed", "FAILED", "HIGH", Some("SCHEMA_BROKEN")),
        ("/teapot", "FAILED", "HIGH", Some("STATUS_CODE_CHANGED")),
    ];
    for (target, status, risk, category) in expect {
        let line = &results[&name_of(&cases, "GET", target)];
        assert_eq!(line["status"], status, "{target}: {line}");
        assert_eq!(line["risk"], risk, "{target}: {line}");
        if let Some(category) = category {
            assert!(
                line["category"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x == category)),
                "{target} is {category}: {line}"
            );
        }
    }
    assert_eq!(
        results[&name_of(&cases, "POST", "/items")]["status"],
        "PASSED"
    );
    let version = &results[&name_of(&cases, "GET", "/version")];
    let diff = version["diffs"]
        .as_array()
        .context("diffs")?
        .iter()
        .find(|d| d["path"].as_str().is_some_and(|p| p.ends_with("version")))
        .context("version diff")?;
    assert_eq!(
        (diff["expected"].clone(), diff["actual"].clone()),
        (json!("1"), json!("2"))
    );
    Ok(())
}

fn replay_cgroups(deployment: &str) -> Vec<String> {
    std::fs::read_dir(format!(
        "/sys/fs/cgroup/unified/kreplay/default/{deployment}"
    ))
    .into_iter()
    .flatten()
    .flatten()
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .filter(|name| name.starts_with("replay-"))
    .collect()
}

#[test]
fn bad_replays_fail_clearly_and_leave_nothing_running() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let (run, port) = Run::start("replay-bad", |dir| servers::inventory(dir, "inv"))?;
    let base = format!("http://127.0.0.1:{port}");
    run.record("inv", || {
        curl_all(
            run.dir(),
            &base,
            &[("GET", "/stable", None), ("GET", "/version", None)],
        )
    })?;
    let rest = &run.proxy.rest;

    let unknown_set = rest.post_json(
        "/test/start",
        &json!({"deployment": "inv", "test_config": {"selectedTests": {"test-set-9": []}}}),
    )?;
    assert_eq!(unknown_set.status, 404, "{}", unknown_set.text());
    assert!(
        unknown_set.json()?["error"]
            .as_str()
            .is_some_and(|e| e.contains("test-set-9"))
    );
    let unknown_deployment = rest.post_json("/test/start", &json!({"deployment": "nope"}))?;
    assert_eq!(unknown_deployment.status, 404);
    let bad_regex = rest.post_json("/test/start", &json!({"deployment": "inv", "test_config": {"globalNoise": {"global": {"body": {"x": ["("]}}}}}))?;
    assert_eq!(bad_regex.status, 400, "{}", bad_regex.text());

    // A replay waiting in its start-up delay: a second one is refused, then it is stopped.
    let (replay_id, _) = run.start_replay("inv", json!({"delay": 60}))?;
    kreplay_e2e::wait_for("the replay instance", Duration::from_secs(30), || {
        Ok((!replay_cgroups("inv").is_empty()).then_some(()))
    })?;
    let again = rest.post_json("/test/start", &json!({"deployment": "inv"}))?;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()?["replay_id"], replay_id.as_str());
    assert_eq!(
        rest.get("/test/active?deployment=inv")?.json()?["in_progress"],
        true
    );
    let stopped = rest.post_json("/test/stop", &json!({"replay_id": replay_id}))?;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()?["replay"], "stopped");
    assert!(
        replay_cgroups("inv").is_empty(),
        "the stopped replay left {:?}",
        replay_cgroups("inv")
    );
    assert_eq!(
        rest.get("/test/active?deployment=inv")?.json()?["in_progress"],
        false
    );
    let lines = rest.replay_stream(&replay_id)?;
    let mut lines = lines;
    let last = lines.wait_for(Duration::from_secs(10), |l| l["status"] == "stopped")?;
    assert_eq!(last["result"], "USER_ABORT");
    let unknown_stop = rest.post_json("/test/stop", &json!({"replay_id": "replay-0000"}))?;
    assert_eq!(unknown_stop.status, 404);

    // An app that never becomes healthy: a clear failed status and a report, nothing left.
    let broken = run.replay(
        "inv",
        json!({"envOverrides": {"FAIL_START": "1"}, "healthPollTimeout": 10}),
    )?;
    assert_eq!(broken.last()["result"], "FAILED", "{:?}", broken.lines);
    assert!(replay_cgroups("inv").is_empty());
    let report = rest.get(&format!(
        "/k8s-proxy/get/report?deployment=inv&test_run_id={}&test_set=test-set-0",
        broken.test_run_id
    ))?;
    assert_eq!(report.status, 200, "{}", report.text());
    let report = report.json()?;
    assert_eq!(report["report"]["status"], "APP_HALTED", "{report}");
    assert!(
        report["report"]["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited")),
        "{report}"
    );
    Ok(())
}

#[test]
fn keploy_layout_export_import_export_is_byte_identical() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let (run, port) = Run::start("replay-zip", |dir| servers::inventory(dir, "inv"))?;
    let base = format!("http://127.0.0.1:{port}");
    run.record("inv", || {
        curl_all(
            run.dir(),
            &base,
            &[
                ("GET", "/stable", None),
                ("GET", "/now", None),
                ("POST", "/items", Some(r#"{"a":1}"#)),
            ],
        )
    })?;
    run.replay("inv", json!({}))?;
    let rest = &run.proxy.rest;
    let first = rest.get("/test/download?deployment=inv")?;
    assert_eq!(first.status, 200, "{}", first.text());
    let zip_path = run.dir().join("export.zip");
    std::fs::write(&zip_path, &first.body)?;
    let listing = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(&zip_path)
        .output()?;
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    for expected in [
        "keploy/test-set-0/tests/test-1.yaml",
        "keploy/test-set-0/tests/test-3.yaml",
        "keploy/test-set-0/mocks.yaml",
        "keploy/test-set-0/mappings.yaml",
        "keploy/reports/test-run-0/test-set-0-report.yaml",
    ] {
        assert!(
            names.lines().any(|n| n == expected),
            "{expected} in {names}"
        );
    }
    let imported = rest.post_bytes(
        "/k8s-proxy/testcases/bulk?deployment=inv-copy",
        &first.body,
        "application/zip",
    )?;
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(imported.json()?["imported"][0]["test_set"], "test-set-0");
    let second = rest.get("/test/download?deployment=inv-copy")?;
    assert_eq!(second.status, 200);
    assert!(
        first.body == second.body,
        "export -> import -> export changed the ZIP"
    );
    let junit = rest.get("/test/download?deployment=inv&format=junit&test_run_id=test-run-0")?;
    assert_eq!(junit.status, 200);
    assert!(junit.text().contains("<testsuites"), "{}", junit.text());

    let garbage = rest.post_bytes(
        "/k8s-proxy/testcases/bulk?deployment=x",
        b"PK\x03\x04not a zip",
        "application/zip",
    )?;
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    Ok(())
}

#[test]
fn test_case_routes_add_update_select_and_delete() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let (run, port) = Run::start("replay-edit", |dir| servers::inventory(dir, "inv"))?;
    let base = format!("http://127.0.0.1:{port}");
    let cases = run.record("inv", || {
        curl_all(
            run.dir(),
            &base,
            &[("GET", "/stable", None), ("GET", "/version", None)],
        )
    })?;
    let rest = &run.proxy.rest;
    let set = cases[0]["test_set"]
        .as_str()
        .context("test_set")?
        .to_string();

    // Add a hand-written case: it takes the set's next name and replays like a recorded one.
    // Its headers are those the service sends (as recorded for /stable).
    let headers = cases[0]["resp"]["header"].clone();
    let added = rest.post_json(
        "/k8s-proxy/testcases",
        &json!({"deployment": "inv", "test_set": set,
                "req": {"method": "GET", "url": "http://localhost/items/1", "header": {"Accept": "*/*"}},
                "resp": {"status_code": 200, "status_message": "OK", "header": headers,
                         "body": "{\"id\":1,\"name\":\"apple\",\"price\":2.5}"}}),
    )?;
    assert_eq!(added.status, 200, "{}", added.text());
    let added = added.json()?;
    assert_eq!(added["name"], "test-3");
    assert_eq!(added["req"]["target"], "/items/1");

    let meta = rest
        .get(&format!(
            "/k8s-proxy/testcases/metadata?deployment=inv&test_set={set}"
        ))?
        .json()?;
    assert_eq!(meta.as_array().map(Vec::len), Some(3), "{meta}");
    assert!(
        meta[0].get("req").is_none(),
        "metadata has no bodies: {meta}"
    );

    // The hand-written price is wrong: replay says so; PUT noise on it and the case passes.
    let before = run.replay("inv", json!({"selectedTests": {set.clone(): ["test-3"]}}))?;
    let line = &before.results()["test-3"];
    assert_eq!(line["status"], "FAILED", "{line}");
    assert_eq!(diff_paths(line), ["body.price"]);
    let id = added["id"].as_i64().context("id")?;
    let updated = rest.request(
        "PUT",
        &format!("/k8s-proxy/testcases/{id}"),
        Some(br#"{"noise": {"body.price": []}}"#),
        kreplay_e2e::rest::Auth::SharedToken,
    )?;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()?["noise"], json!({"body.price": []}));
    let after = run.replay("inv", json!({"selectedTests": {set.clone(): ["test-3"]}}))?;
    assert_eq!(after.results()["test-3"]["status"], "PASSED");

    let picked = rest
        .post_json(
            "/k8s-proxy/testcases/selective",
            &json!({"deployment": "inv", "test_set": set, "test_cases": ["test-2", "test-3"]}),
        )?
        .json()?;
    let names: Vec<&str> = picked
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["test-2", "test-3"]);
    let missing = rest.post_json(
        "/k8s-proxy/testcases/selective",
        &json!({"deployment": "inv", "test_set": set, "test_cases": ["test-99"]}),
    )?;
    assert_eq!(missing.status, 404);

    let sets = rest
        .get("/k8s-proxy/testcases/testsets/metadata?deployment=inv")?
        .json()?;
    assert_eq!(sets[0]["latest_replay"]["status"], "PASSED", "{sets}");
    let latest = rest
        .get("/k8s-proxy/testcases/testsets/latest-release/full?deployment=inv")?
        .json()?;
    assert_eq!(latest["test_cases"].as_array().map(Vec::len), Some(3));

    let deleted = rest.request(
        "DELETE",
        &format!("/k8s-proxy/testcases?deployment=inv&test_set={set}&test_cases=test-1"),
        None,
        kreplay_e2e::rest::Auth::SharedToken,
    )?;
    assert_eq!(deleted.json()?["deleted"], 1);
    let gone = rest.request(
        "DELETE",
        &format!("/k8s-proxy/testcases/testset?deployment=inv&test_set={set}"),
        None,
        kreplay_e2e::rest::Auth::SharedToken,
    )?;
    assert_eq!(gone.json()?, json!({"deleted": 2, "test_set": set}));
    let again = rest.request(
        "DELETE",
        &format!("/k8s-proxy/testcases/testset?deployment=inv&test_set={set}"),
        None,
        kreplay_e2e::rest::Auth::SharedToken,
    )?;
    assert_eq!(again.status, 404, "{}", again.text());
    let bad = rest.post_json("/k8s-proxy/testcases", &json!({"deployment": "inv", "test_set": "test-set-7", "req": {"method": "GET", "url": "/"}, "resp": {"status_code": 200}}))?;
    assert_eq!(bad.status, 404, "{}", bad.text());
    Ok(())
}
