//! Issue P3 end to end: a service on real PostgreSQL and Redis that calls an HTTP API is
//! recorded; its dependency calls become mocks; with every dependency stopped, a replay against
//! a fresh instance is answered by the agent's mock server alone. Needs root (`cargo xtask test`).

use std::{
    net::TcpListener,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use kreplay_e2e::{Agent, Proxy, ProxyConfig, ScratchDir, client, deps, servers, wait_for};
use serde_json::{Value, json};

/// Counts connections to ports whose real servers were stopped: none may arrive during replay.
struct Tripwire {
    hits: Arc<AtomicUsize>,
    _stop: Vec<std::thread::JoinHandle<()>>,
}

impl Tripwire {
    fn on(ports: &[u16]) -> anyhow::Result<Self> {
        let hits = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for &port in ports {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("re-binding the stopped dependency's port {port}"))?;
            listener.set_nonblocking(true)?;
            let hits = hits.clone();
            threads.push(std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                while std::time::Instant::now() < deadline {
                    if listener.accept().is_ok() {
                        hits.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Ok(Self {
            hits,
            _stop: threads,
        })
    }

    fn count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn curl(
    dir: &Path,
    base: &str,
    case: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Value> {
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
    let logged = client::curl(dir, case, &args, body.unwrap_or("").as_bytes())?;
    serde_json::from_slice(&logged.received.decoded_body).with_context(|| {
        format!(
            "{method} {path} answered {}: {}",
            logged.received.status,
            String::from_utf8_lossy(&logged.received.body)
        )
    })
}

fn replay(proxy: &Proxy, config: Value) -> anyhow::Result<Vec<Value>> {
    let deployment = proxy.rest.get("/deployments")?.json()?[0]["name"].clone();
    let response = proxy.rest.post_json(
        "/test/start",
        &json!({"deployment": deployment, "test_config": config}),
    )?;
    anyhow::ensure!(
        response.status == 200,
        "test/start: {} {}",
        response.status,
        response.text()
    );
    let replay_id = response.json()?["replay_id"]
        .as_str()
        .context("replay_id")?
        .to_string();
    let mut stream = proxy.rest.replay_stream(&replay_id)?;
    stream
        .wait_for(Duration::from_secs(120), |l| {
            l["type"] == "status" && l["status"] == "completed"
        })
        .with_context(|| format!("proxy log:\n{}", proxy.log()))?;
    Ok(stream.seen.clone())
}

fn results(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "test_case").collect()
}

#[test]
fn a_service_on_postgres_redis_and_http_replays_with_every_dependency_stopped() -> anyhow::Result<()>
{
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let scratch = ScratchDir::new("mocks")?;
    let dir = scratch.path();
    let mut pg = deps::Postgres::start(dir)?;
    let mut redis = deps::redis(dir)?;
    let mut stub = deps::rate_stub()?;
    let dependency_ports = [pg.port, redis.port, stub.port];
    let orders = servers::orders(
        dir,
        "orders",
        vec![
            ("PG_DSN".into(), pg.dsn()),
            ("REDIS_PORT".into(), redis.port.to_string()),
            ("RATE_URL".into(), format!("http://127.0.0.1:{}", stub.port)),
        ],
    )?;
    let base = format!("http://127.0.0.1:{}", orders.port);
    let proxy = Proxy::start(dir, &ProxyConfig::new(dir, vec![orders])?)?;
    let agent = Agent::start(dir, &proxy, &[])?;
    let healthy = || -> anyhow::Result<Option<()>> {
        Ok(kreplay_e2e::rest::curl_text(&format!("{base}/health"))
            .ok()
            .map(|_| ()))
    };
    wait_for("the orders service", Duration::from_secs(30), healthy)?;

    // Record: the deployment restarts under capture, so its start-up (schema) is recorded too.
    let record_id = proxy.rest.start_recording("orders")?;
    proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("running", Duration::from_secs(30))?;
    // A request would be recorded: readiness comes from the orchestrator's bare-connect probe.
    std::thread::sleep(Duration::from_millis(300));
    wait_for(
        "the restarted orders service",
        Duration::from_secs(30),
        || {
            let list = proxy.rest.get("/deployments")?.json()?;
            Ok((list[0]["readyReplicas"] == 1).then_some(()))
        },
    )?;
    let apple = curl(
        dir,
        &base,
        "c1",
        "POST",
        "/items",
        Some(r#"{"name":"apple","price":1.5}"#),
    )?;
    let id = apple["id"].as_i64().context("id")?;
    let pear = curl(
        dir,
        &base,
        "c2",
        "POST",
        "/items",
        Some(r#"{"name":"pear","price":2}"#),
    )?;
    let pear_id = pear["id"].as_i64().context("id")?;
    assert_eq!(
        curl(dir, &base, "c3", "GET", &format!("/items/{id}"), None)?["cache"],
        "miss"
    );
    assert_eq!(
        curl(dir, &base, "c4", "GET", &format!("/items/{id}"), None)?["cache"],
        "hit"
    );
    curl(
        dir,
        &base,
        "c5",
        "PUT",
        &format!("/items/{id}"),
        Some(r#"{"price":2.5}"#),
    )?;
    // The same request again: the same SQL now answers 2.5 (keploy #916/#2510/#4570).
    let again = curl(dir, &base, "c6", "GET", &format!("/items/{id}"), None)?;
    assert_eq!(
        (again["price"].clone(), again["cache"].clone()),
        (json!(2.5), json!("miss"))
    );
    assert_eq!(
        curl(dir, &base, "c7", "GET", "/items", None)?
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        curl(
            dir,
            &base,
            "c8",
            "GET",
            &format!("/items/{pear_id}/eur"),
            None
        )?["rate"],
        0.92
    );
    curl(
        dir,
        &base,
        "c9",
        "DELETE",
        &format!("/items/{pear_id}"),
        None,
    )?;
    // Concurrent requests (keploy #2679): their dependency calls interleave in time.
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"name":"fig-{i}","price":{}}}"#, i + 3);
        let created = curl(dir, &base, &format!("p{i}"), "POST", "/items", Some(&body))?;
        ids.push(created["id"].as_i64().context("id")?);
    }
    ids.push(id);
    let concurrent: Vec<anyhow::Result<Value>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|item| {
                let base = base.clone();
                scope.spawn(move || {
                    curl(
                        dir,
                        &base,
                        &format!("q{item}"),
                        "GET",
                        &format!("/items/{item}"),
                        None,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client panicked")))
            })
            .collect()
    });
    for answer in concurrent {
        assert!(answer?["id"].is_i64());
    }
    proxy.rest.stop_recording(&record_id)?;
    let status = proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("stopped", Duration::from_secs(60))?;
    let types = &status["mock_types"];
    for kind in ["PostgresV2", "Redis", "Http"] {
        assert!(
            types[kind].as_u64().is_some_and(|n| n > 0),
            "{kind} mocks recorded: {status}\nagent log:\n{}",
            agent.log()
        );
    }
    let cases = proxy.rest.test_cases(&record_id)?;
    assert_eq!(cases.len(), 16, "one test case per request");
    // Attribution either found each concurrent call's test or says which it could not.
    if let Some(unattributed) = status["unattributed_mocks"].as_array() {
        assert!(
            unattributed
                .iter()
                .all(|u| u["reason"].as_str().is_some_and(|r| !r.is_empty())),
            "{status}"
        );
    }
    // Data the recording wrote really is in PostgreSQL.
    assert_eq!(
        pg.psql(&format!("SELECT price FROM items WHERE id = {id}"))?,
        "2.50"
    );

    // Every real dependency goes away; their ports are watched instead.
    pg.stop()?;
    redis.stop();
    stub.stop();
    let tripwire = Tripwire::on(&dependency_ports)?;

    let lines = replay(&proxy, json!({"apiTimeout": 10}))?;
    let results = results(&lines);
    assert_eq!(results.len(), 16, "{lines:?}");
    for line in &results {
        if line["status"] != "PASSED" {
            let reports = proxy
                .rest
                .get("/k8s-proxy/get/allReports?deployment=orders")?
                .json()?;
            let detail = reports[0]["report"]["tests"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["test_case_id"] == line["test_case_id"]))
                .map(|t| t["failure_info"].clone());
            panic!(
                "{line}\nfailure: {detail:?}\nagent log:\n{}",
                tail(&agent.log())
            );
        }
    }
    assert_eq!(
        tripwire.count(),
        0,
        "a replayed call reached a stopped dependency's port"
    );

    // The same service with a changed query: the list case fails with the mock miss explained.
    let changed = replay(
        &proxy,
        json!({"apiTimeout": 10, "envOverrides": {"ORDERS_VARIANT": "changed_query"}}),
    )?;
    let list_case = cases
        .iter()
        .find(|c| c["req"]["method"] == "GET" && c["req"]["target"] == "/items")
        .context("list case")?;
    let list_name = list_case["name"].as_str().context("name")?;
    for line in results_owned(&changed) {
        if line["test_case_id"] == list_name {
            assert_eq!(line["status"], "FAILED", "{line}");
            assert!(
                line["category"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x == "DEPENDENCY_MISMATCH")),
                "{line}"
            );
        } else {
            assert_eq!(line["status"], "PASSED", "{line}");
        }
    }
    let report = proxy
        .rest
        .get("/k8s-proxy/get/allReports?deployment=orders")?
        .json()?;
    let last = report
        .as_array()
        .and_then(|r| r.last())
        .context("a report")?;
    let failed = last["report"]["tests"]
        .as_array()
        .context("tests")?
        .iter()
        .find(|t| t["test_case_id"] == list_name)
        .context("list result")?;
    let miss = &failed["failure_info"]["unmatched_calls"][0];
    assert_eq!(miss["kind"], "PostgresV2", "{miss}");
    let diffs = miss["closest"]["field_diffs"]
        .as_array()
        .context("field diffs")?;
    assert!(
        diffs.iter().any(|d| d["actual"]
            .as_str()
            .is_some_and(|q| q.contains("WHERE price > 0"))),
        "{miss}"
    );
    assert_eq!(tripwire.count(), 0);

    // Mocks as Keploy files: mocks.yaml, mappings, the ZIP round trip.
    let rest = &proxy.rest;
    let set = cases[0]["test_set"].as_str().context("test_set")?;
    let yaml = rest.get(&format!(
        "/k8s-proxy/mocks/download?deployment=orders&test_set={set}"
    ))?;
    assert_eq!(yaml.status, 200, "{}", yaml.text());
    let yaml = yaml.text();
    for kind in [
        "kind: PostgresV2",
        "kind: Redis",
        "kind: Http",
        "version: api.keploy.io/v1beta1",
    ] {
        assert!(yaml.contains(kind), "{kind} in mocks.yaml");
    }
    let references = rest
        .get(&format!(
            "/k8s-proxy/mocks/reference?deployment=orders&test_set={set}"
        ))?
        .json()?;
    let stored = references.as_array().map_or(0, Vec::len);
    assert!(stored > 0);
    let uploaded = rest.post_bytes(
        &format!("/k8s-proxy/mocks/upload?deployment=orders&test_set={set}"),
        yaml.as_bytes(),
        "application/x-yaml",
    )?;
    assert_eq!(
        uploaded.json()?["uploaded"],
        stored,
        "upload replaces with the same mocks"
    );
    let again = rest
        .get(&format!(
            "/k8s-proxy/mocks/download?deployment=orders&test_set={set}"
        ))?
        .text();
    assert_eq!(again, yaml, "download -> upload -> download is stable");
    let mappings = rest
        .get(&format!(
            "/k8s-proxy/mappings?deployment=orders&test_set={set}"
        ))?
        .json()?;
    let mapped: usize = mappings["tests"]
        .as_array()
        .context("tests")?
        .iter()
        .map(|t| t["mock_entries"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        mapped > 0,
        "per-test mocks are mapped to their tests: {mappings}"
    );
    let zip = rest.get("/test/download?deployment=orders")?;
    assert_eq!(zip.status, 200);
    let imported = rest.post_bytes(
        "/k8s-proxy/testcases/bulk?deployment=orders-copy",
        &zip.body,
        "application/zip",
    )?;
    assert_eq!(
        imported.json()?["imported"][0]["mocks"],
        stored,
        "{}",
        imported.text()
    );
    let copy = rest.get("/test/download?deployment=orders-copy")?;
    assert!(
        copy.body == zip.body,
        "export -> import -> export with mocks changed the ZIP"
    );
    let bad = rest.post_bytes(
        &format!("/k8s-proxy/mocks/upload?deployment=orders&test_set={set}"),
        b"kind: [",
        "application/x-yaml",
    )?;
    assert_eq!(bad.status, 400, "{}", bad.text());
    Ok(())
}

fn results_owned(lines: &[Value]) -> Vec<Value> {
    results(lines).into_iter().cloned().collect()
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(4000)..]
}

#[test]
fn a_service_on_mysql_replays_with_the_server_stopped() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let scratch = ScratchDir::new("mocks-mysql")?;
    let dir = scratch.path();
    let mut db = deps::MariaDb::start(dir)?;
    let notes = servers::python_fixture(
        dir,
        "notes.py",
        "notes",
        vec![
            ("MYSQL_PORT".into(), db.port.to_string()),
            ("MYSQL_DB".into(), db.database.clone()),
        ],
        true,
    )?;
    let base = format!("http://127.0.0.1:{}", notes.port);
    let proxy = Proxy::start(dir, &ProxyConfig::new(dir, vec![notes])?)?;
    let agent = Agent::start(dir, &proxy, &[])?;
    let ready = || -> anyhow::Result<Option<()>> {
        let list = proxy.rest.get("/deployments")?.json()?;
        Ok((list[0]["readyReplicas"] == 1).then_some(()))
    };
    wait_for("the notes service", Duration::from_secs(30), ready)?;
    let record_id = proxy.rest.start_recording("notes")?;
    proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("running", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    wait_for(
        "the restarted notes service",
        Duration::from_secs(30),
        ready,
    )?;
    let first = curl(
        dir,
        &base,
        "m1",
        "POST",
        "/notes",
        Some(r#"{"text":"buy milk"}"#),
    )?;
    let id = first["id"].as_i64().context("id")?;
    curl(
        dir,
        &base,
        "m2",
        "POST",
        "/notes",
        Some(r#"{"text":"call mum"}"#),
    )?;
    assert_eq!(
        curl(dir, &base, "m3", "GET", &format!("/notes/{id}"), None)?["text"],
        "buy milk"
    );
    assert_eq!(
        curl(dir, &base, "m4", "GET", "/notes", None)?
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        curl(dir, &base, "m5", "GET", "/notes/999", None)?["error"],
        "no such note"
    );
    proxy.rest.stop_recording(&record_id)?;
    let status = proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("stopped", Duration::from_secs(60))?;
    assert!(
        status["mock_types"]["MySQL"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "MySQL mocks recorded: {status}\nagent log:\n{}",
        tail(&agent.log())
    );
    assert_eq!(db.sql("SELECT COUNT(*) FROM notes.notes")?, "2");

    db.stop();
    let tripwire = Tripwire::on(&[db.port])?;
    let lines = replay(&proxy, json!({"apiTimeout": 10}))?;
    let results = results(&lines);
    assert_eq!(results.len(), 5, "{lines:?}");
    for line in &results {
        assert_eq!(
            line["status"],
            "PASSED",
            "{line}\nagent log:\n{}",
            tail(&agent.log())
        );
    }
    assert_eq!(
        tripwire.count(),
        0,
        "a replayed call reached the stopped MariaDB port"
    );
    Ok(())
}
