//! Issue P1 end to end: real nginx and httpbin (gunicorn) declared as local deployments, the real
//! proxy and agent binaries, real clients (curl and a raw keep-alive client). Needs root (cgroups,
//! eBPF) and the binaries from `cargo xtask build`; `cargo xtask test` does both.

use std::time::Duration;

use anyhow::Context;
use kreplay_e2e::{
    Agent, Proxy, ProxyConfig, ScratchDir,
    client::{self, KeepAliveClient, Logged, Request},
    compare,
    rest::Auth,
    servers, wait_for,
};
use serde_json::json;

const LOSS_METRICS: [&str; 5] = [
    "kreplay_agent_data_ring_full_total",
    "kreplay_agent_control_ring_full_total",
    "kreplay_agent_read_faults_total",
    "kreplay_agent_queue_drops_total",
    "kreplay_agent_stream_gaps_total",
];

/// The nginx part of the mix: everything the issue lists that nginx serves.
fn nginx_traffic(dir: &std::path::Path, site: &servers::NginxSite) -> anyhow::Result<Vec<Logged>> {
    let base = format!("http://127.0.0.1:{}", site.port);
    let mut log = Vec::new();
    log.push(client::curl(
        dir,
        "n-query",
        &[&format!("{base}/index.html?lang=en&page=2&q=a%20b")],
        b"",
    )?);
    let upload = servers::pseudo_random_bytes(100_000, 7);
    let upload_path = dir.join("upload.bin");
    std::fs::write(&upload_path, &upload)?;
    log.push(client::curl(
        dir,
        "n-put-chunked",
        &[
            "-X",
            "PUT",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", upload_path.display()),
            &format!("{base}/uploads/a.bin"),
        ],
        &upload,
    )?);
    log.push(client::curl(
        dir,
        "n-big",
        &[&format!("{base}/big.bin")],
        b"",
    )?);
    log.push(client::curl(
        dir,
        "n-404",
        &[&format!("{base}/missing")],
        b"",
    )?);
    log.push(client::curl(
        dir,
        "n-gzip",
        &[
            "-H",
            "Accept-Encoding: gzip",
            &format!("{base}/catalog.json"),
        ],
        b"",
    )?);
    let gzip = log.last().context("gzip case")?;
    assert!(
        gzip.received
            .headers
            .iter()
            .any(|(n, v)| n == "Content-Encoding" && v == "gzip"),
        "nginx did not gzip: {:?}",
        gzip.received.headers
    );
    assert_eq!(gzip.received.decoded_body, site.catalog.as_bytes());

    let mut raw = KeepAliveClient::connect(site.port)?;
    log.push(raw.exchange("n-head", &Request::new("HEAD", "/big.bin"))?);
    log.push(
        raw.exchange(
            "n-continue",
            &Request::new("PUT", "/uploads/b.txt")
                .body(b"sent after 100 Continue\n".to_vec())
                .expect_continue(),
        )?,
    );
    log.push(
        raw.exchange(
            "n-raw-chunked",
            &Request::new("PUT", "/uploads/c.txt")
                .body(b"three small chunks of text".to_vec())
                .chunked(9),
        )?,
    );
    let pipelined: Vec<(String, Request)> = [
        ("GET", "/index.html"),
        ("GET", "/catalog.json"),
        ("HEAD", "/notes.txt"),
        ("GET", "/notes.txt"),
        ("GET", "/nothing-here"),
        ("GET", "/big.bin"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (method, target))| (format!("n-pipe-{i}"), Request::new(method, target)))
    .collect();
    log.extend(raw.pipeline(&pipelined)?);

    // 20 concurrent keep-alive connections, three requests each.
    let port = site.port;
    let concurrent: Vec<anyhow::Result<Vec<Logged>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|conn| {
                scope.spawn(move || {
                    let mut client = KeepAliveClient::connect(port)?;
                    let mut out = Vec::new();
                    for (i, target) in ["/index.html", "/notes.txt", "/catalog.json"]
                        .iter()
                        .enumerate()
                    {
                        let target = format!("{target}?conn={conn}");
                        let request =
                            Request::new("GET", &target).header("Accept-Encoding", "gzip");
                        out.push(client.exchange(&format!("n-c{conn}-{i}"), &request)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    for result in concurrent {
        log.extend(result?);
    }
    Ok(log)
}

/// The httpbin part: JSON bodies, a chunked upload, gzip and deflate, streamed (chunked) responses.
fn httpbin_traffic(dir: &std::path::Path, port: u16) -> anyhow::Result<Vec<Logged>> {
    let base = format!("http://127.0.0.1:{port}");
    let json_body = br#"{"name":"kreplay","tags":["a","b"],"nested":{"n":1.5,"ok":true}}"#;
    let mut log = vec![
        client::curl(dir, "b-get", &[&format!("{base}/get?a=1&b=two")], b"")?,
        client::curl(
            dir,
            "b-post-json",
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                std::str::from_utf8(json_body)?,
                &format!("{base}/post"),
            ],
            json_body,
        )?,
        client::curl(
            dir,
            "b-gzip",
            &["-H", "Accept-Encoding: gzip", &format!("{base}/gzip")],
            b"",
        )?,
        client::curl(dir, "b-deflate", &[&format!("{base}/deflate")], b"")?,
        client::curl(dir, "b-status", &[&format!("{base}/status/418")], b"")?,
        client::curl(dir, "b-stream", &[&format!("{base}/stream/5")], b"")?,
    ];
    let mut raw = KeepAliveClient::connect(port)?;
    log.push(
        raw.exchange(
            "b-put-chunked",
            &Request::new("PUT", "/put")
                .header("Content-Type", "text/plain")
                .body(b"chunked body for httpbin".to_vec())
                .chunked(7),
        )?,
    );
    Ok(log)
}

#[test]
fn records_real_http_traffic_byte_for_byte() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let scratch = ScratchDir::new("record")?;
    let dir = scratch.path();
    let (nginx, site) = servers::nginx(dir, "web")?;
    let httpbin = servers::httpbin(dir, "bin")?;
    let httpbin_port = httpbin.port;
    let config = ProxyConfig::new(dir, vec![nginx, httpbin])?;
    let proxy = Proxy::start(dir, &config)?;
    let agent = Agent::start(dir, &proxy, &[])?;

    let web_id = proxy.rest.start_recording("web")?;
    let bin_id = proxy.rest.start_recording("bin")?;
    let mut web_status = proxy.rest.status_stream(&web_id)?;
    web_status.wait_for_status("running", Duration::from_secs(30))?;
    let mut bin_status = proxy.rest.status_stream(&bin_id)?;
    bin_status.wait_for_status("running", Duration::from_secs(30))?;
    // httpbin's workers must be up before its traffic (the probe is a bare connect).
    wait_for("httpbin", Duration::from_secs(30), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", httpbin_port))
            .ok()
            .map(|_| ()))
    })?;

    let web_log =
        nginx_traffic(dir, &site).with_context(|| format!("agent log:\n{}", agent.log()))?;
    let bin_log = httpbin_traffic(dir, httpbin_port)?;
    // While still recording, the stream shows the count reach what was sent.
    let expected = web_log.len() as u64;
    web_status
        .wait_for(Duration::from_secs(30), |l| {
            l["status"] == "running" && l["test_cases_count"] == expected
        })
        .context("running lines with the full count")?;
    let running = web_status.seen.last().context("a running line")?;
    assert_eq!(running["pods_running"], 1, "{running}");

    proxy.rest.stop_recording(&web_id)?;
    proxy.rest.stop_recording(&bin_id)?;
    let web_final = web_status.wait_for_status("stopped", Duration::from_secs(60))?;
    bin_status.wait_for_status("stopped", Duration::from_secs(60))?;
    web_status.wait_for_end(Duration::from_secs(10))?;

    let web_cases = proxy.rest.test_cases(&web_id)?;
    compare::check_exact(&web_cases, &web_log)
        .with_context(|| format!("nginx session; agent log tail:\n{}", tail(&agent.log())))?;
    compare::check_exact(&proxy.rest.test_cases(&bin_id)?, &bin_log).context("httpbin session")?;
    let names: Vec<&str> = web_cases
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for i in 1..=web_cases.len() {
        assert!(
            names.contains(&format!("test-{i}").as_str()),
            "test cases are named test-1..test-N: {names:?}"
        );
    }

    // The status stream: starting -> running with a growing count and endpoints -> stopped.
    let statuses: Vec<&str> = web_status
        .seen
        .iter()
        .filter_map(|l| l["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"starting"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"stopped"), "{statuses:?}");
    let running_counts: Vec<u64> = web_status
        .seen
        .iter()
        .filter(|l| l["status"] == "running")
        .filter_map(|l| l["test_cases_count"].as_u64())
        .collect();
    assert!(
        running_counts.windows(2).all(|w| w[0] <= w[1]),
        "counts never shrink: {running_counts:?}"
    );
    assert_eq!(running_counts.first(), Some(&0), "{running_counts:?}");
    assert_eq!(running_counts.last(), Some(&expected), "{running_counts:?}");
    assert!(
        web_status.seen.iter().any(|l| l["status"] == "running"
            && l["endpoints"].as_array().is_some_and(|e| !e.is_empty())),
        "running lines name endpoints"
    );
    assert_eq!(
        web_final["test_cases_count"].as_u64(),
        Some(web_log.len() as u64)
    );

    // Loss counters are reported and are zero.
    for field in [
        "ring_full_drops",
        "control_ring_drops",
        "read_faults",
        "queue_drops",
        "stream_gaps",
        "parse_errors",
    ] {
        assert_eq!(
            web_final["capture"][field],
            json!(0),
            "status capture.{field}: {web_final}"
        );
    }
    let metrics = agent.metrics()?;
    for name in LOSS_METRICS {
        assert_eq!(metrics.get(name), Some(&0.0), "{name} in agent metrics");
    }

    // A second session on the same deployment is a new test set; a body over 5 MiB is stored
    // as its first 5 MiB with the truncation flag, and the connection goes on parsing.
    let second = proxy.rest.start_recording("web")?;
    let mut second_status = proxy.rest.status_stream(&second)?;
    second_status.wait_for_status("running", Duration::from_secs(30))?;
    let mut raw = KeepAliveClient::connect(site.port)?;
    let huge = raw.exchange("huge", &Request::new("GET", "/huge.bin"))?;
    assert_eq!(huge.received.body, site.huge_file);
    let after = raw.exchange("after-huge", &Request::new("GET", "/notes.txt"))?;
    proxy.rest.stop_recording(&second)?;
    second_status.wait_for_status("stopped", Duration::from_secs(60))?;
    let cases = proxy.rest.test_cases(&second)?;
    assert_eq!(cases.len(), 2, "{cases:?}");
    let first_set = web_cases[0]["test_set"].as_str().context("test_set")?;
    let second_set = cases[0]["test_set"].as_str().context("test_set")?;
    assert_ne!(first_set, second_set, "each session is its own test set");
    assert!(second_set.starts_with("test-set-"), "{second_set}");
    let huge_case = cases
        .iter()
        .find(|c| compare::case_of(c).as_deref() == Some("huge"))
        .context("huge case")?;
    assert_eq!(huge_case["resp"]["body_truncated"], true);
    assert_eq!(
        huge_case["name"], "test-1",
        "numbering restarts in a new test set"
    );
    let stored = compare::body_bytes(&huge_case["resp"])?;
    assert_eq!(stored.len(), 5 << 20);
    assert!(
        site.huge_file.starts_with(&stored),
        "the stored part is the body's beginning"
    );
    let after_case = cases
        .iter()
        .find(|c| compare::case_of(c).as_deref() == Some("after-huge"))
        .context("after case")?;
    assert!(compare::differences(after_case, &after)?.is_empty());
    Ok(())
}

/// nginx as the one local deployment `web`, the proxy and an agent. Fields drop in order: the
/// agent, then the proxy (which kills the deployment's cgroup), then the scratch files.
struct NginxRun {
    agent: Agent,
    proxy: Proxy,
    site: servers::NginxSite,
    _scratch: ScratchDir,
}

impl NginxRun {
    fn start(label: &str, agent_args: &[&str]) -> anyhow::Result<Self> {
        let scratch = ScratchDir::new(label)?;
        let dir = scratch.path();
        let (nginx, site) = servers::nginx(dir, "web")?;
        let proxy = Proxy::start(dir, &ProxyConfig::new(dir, vec![nginx])?)?;
        let agent = Agent::start(dir, &proxy, agent_args)?;
        Ok(Self {
            agent,
            proxy,
            site,
            _scratch: scratch,
        })
    }
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(4000)..]
}

#[test]
fn an_overfilled_ring_counts_its_drops() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    // One page of data ring: a 1 MiB response cannot fit, whatever the reader's speed.
    let run = NginxRun::start("tiny-ring", &["--data-ring-bytes", "4096"])?;
    let (agent, proxy, site) = (&run.agent, &run.proxy, &run.site);
    let record_id = proxy.rest.start_recording("web")?;
    let mut status = proxy.rest.status_stream(&record_id)?;
    status.wait_for_status("running", Duration::from_secs(30))?;

    let mut raw = KeepAliveClient::connect(site.port)?;
    let sent = 10;
    for i in 0..sent {
        let logged = raw.exchange(&format!("big-{i}"), &Request::new("GET", "/big.bin"))?;
        assert_eq!(logged.received.body, site.big_file);
    }
    proxy.rest.stop_recording(&record_id)?;
    let last = status.wait_for_status("stopped", Duration::from_secs(60))?;
    let drops = last["capture"]["ring_full_drops"]
        .as_u64()
        .context("ring_full_drops")?;
    assert!(drops > 0, "the tiny ring must have overflowed: {last}");
    let metrics = agent.metrics()?;
    assert!(
        metrics["kreplay_agent_data_ring_full_total"] > 0.0,
        "agent metrics: {metrics:?}"
    );
    assert!(
        metrics["kreplay_agent_stream_gaps_total"] > 0.0,
        "the gaps are seen by user space: {metrics:?}"
    );
    // Damaged exchanges are dropped, never stored with holes.
    let cases = proxy.rest.test_cases(&record_id)?;
    assert!(
        cases.len() < sent,
        "{} of {sent} stored despite drops",
        cases.len()
    );
    for case in &cases {
        assert_eq!(
            compare::body_bytes(&case["resp"])?,
            site.big_file,
            "a stored case is complete"
        );
    }
    Ok(())
}

#[test]
fn a_proxy_restart_mid_recording_loses_no_capture() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let mut run = NginxRun::start("restart", &[])?;
    let (agent, proxy, site) = (&run.agent, &mut run.proxy, &run.site);
    let record_id = proxy.rest.start_recording("web")?;
    proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("running", Duration::from_secs(30))?;

    let mut log = Vec::new();
    let mut send = |phase: &str, count: usize| -> anyhow::Result<()> {
        let mut raw = KeepAliveClient::connect(site.port)?;
        for i in 0..count {
            let request = Request::new("POST", &format!("/api/echo?phase={phase}&i={i}"))
                .body(format!("{{\"i\":{i}}}"));
            log.push(raw.exchange(&format!("{phase}-{i}"), &request)?);
        }
        Ok(())
    };
    send("before", 40)?;
    proxy.kill();
    // The proxy is down: the agent keeps capturing into its outbox.
    send("during", 40)?;
    wait_for(
        "the agent to notice the proxy is gone",
        Duration::from_secs(30),
        || Ok((agent.metrics()?.get("kreplay_agent_connected") == Some(&0.0)).then_some(())),
    )?;
    send("while-down", 20)?;
    proxy.restart()?;
    wait_for("the agent to reconnect", Duration::from_secs(60), || {
        Ok((agent.metrics()?.get("kreplay_agent_connected") == Some(&1.0)).then_some(()))
    })?;
    send("after", 40)?;
    proxy.rest.stop_recording(&record_id)?;
    let last = proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("stopped", Duration::from_secs(60))?;
    compare::check_exact(&proxy.rest.test_cases(&record_id)?, &log).with_context(|| {
        format!(
            "agent log tail:\n{}\nproxy log tail:\n{}",
            tail(&agent.log()),
            tail(&proxy.log())
        )
    })?;
    assert_eq!(last["test_cases_count"].as_u64(), Some(log.len() as u64));
    assert_eq!(
        agent.metrics()?.get("kreplay_agent_queue_drops_total"),
        Some(&0.0)
    );
    Ok(())
}

#[test]
fn bad_input_gets_clear_json_errors() -> anyhow::Result<()> {
    let _serial = kreplay_e2e::serial();
    kreplay_e2e::require_root();
    let run = NginxRun::start("bad-input", &[])?;
    let proxy = &run.proxy;
    let rest = &proxy.rest;
    let error_of = |response: &kreplay_e2e::rest::Response| -> String {
        response
            .json()
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    };

    let unknown = rest.post_json(
        "/record/start",
        &json!({"namespace": "default", "deployment": "nope"}),
    )?;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert!(error_of(&unknown).contains("nope"), "{}", unknown.text());

    let malformed = rest.request(
        "POST",
        "/record/start",
        Some(b"{\"deployment\": "),
        Auth::SharedToken,
    )?;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert!(!error_of(&malformed).is_empty(), "{}", malformed.text());

    let record_id = proxy.rest.start_recording("web")?;
    let again = rest.post_json(
        "/record/start",
        &json!({"namespace": "default", "deployment": "web"}),
    )?;
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(
        again.text().contains(&record_id),
        "409 names the active record_id: {}",
        again.text()
    );
    let active = rest
        .get("/record/active?namespace=default&deployment=web")?
        .json()?;
    assert_eq!(active, json!({"in_progress": true, "record_id": record_id}));

    let stop_unknown = rest.post_json("/record/stop", &json!({"record_id": "rec-doesnotexist"}))?;
    assert_eq!(stop_unknown.status, 404, "{}", stop_unknown.text());
    assert!(!error_of(&stop_unknown).is_empty());

    for (auth, what) in [
        (Auth::None, "no token"),
        (Auth::Header("Bearer 0123"), "wrong token"),
        (Auth::Header("Basic abc"), "not bearer"),
    ] {
        let response = rest.request("GET", "/deployments", None, auth)?;
        assert_eq!(response.status, 401, "{what}: {}", response.text());
        assert!(
            !error_of(&response).is_empty(),
            "{what}: {}",
            response.text()
        );
    }
    let health = rest.request("GET", "/healthz", None, Auth::None)?;
    assert_eq!(health.json()?, json!({"status": "ok"}));
    let info = rest
        .request("GET", "/shared-token/info", None, Auth::None)?
        .json()?;
    assert_eq!(info["tokenId"].as_str().map(str::len), Some(16), "{info}");

    proxy.rest.stop_recording(&record_id)?;
    let deployments = wait_for("nginx to be ready", Duration::from_secs(30), || {
        let list = rest.get("/deployments")?.json()?;
        Ok((list[0]["readyReplicas"] == 1).then_some(list))
    })?;
    assert_eq!(
        deployments,
        json!([{"name": "web", "namespace": "default", "replicas": 1, "readyReplicas": 1}])
    );
    Ok(())
}
