//! `cargo xtask demo`: the product's main job on its embedded defaults. The proxy runs in local
//! mode (SQLite in a data dir, the agent as its supervised child) with nginx declared as a local
//! deployment; a few real curl requests are recorded and the stored test cases printed.

use std::time::Duration;

use anyhow::{Context, bail};
use kreplay_e2e::{ProxyConfig, free_port, servers};
use serde_json::{Value, json};

use crate::util::root;

pub fn run() -> anyhow::Result<()> {
    let dir = root().join("target/kreplay-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (deployment, site) = servers::nginx(&dir, "web")?;
    let mut config = ProxyConfig::new(&dir, vec![deployment])?;
    config.bin_dir = root().join("target/release");
    config.local_agent_metrics_port = Some(free_port()?);
    println!(
        "==> starting kreplay-proxy (local mode, SQLite in {})",
        config.data_dir.display()
    );
    let proxy = kreplay_e2e::Proxy::start(&dir, &config)?;
    let rest = &proxy.rest;

    let deployments = kreplay_e2e::wait_for("nginx to be ready", Duration::from_secs(30), || {
        let list = rest.get("/deployments")?.json()?;
        Ok((list[0]["readyReplicas"] == 1).then_some(list))
    })?;
    println!(
        "==> GET /deployments\n{}",
        serde_json::to_string_pretty(&deployments)?
    );

    let start = rest.post_json(
        "/record/start",
        &json!({"namespace": "default", "deployment": "web"}),
    )?;
    if start.status != 200 {
        bail!(
            "POST /record/start answered {}: {}\nproxy log:\n{}",
            start.status,
            start.text(),
            proxy.log()
        );
    }
    let record_id = start.json()?["id"]
        .as_str()
        .context("record id")?
        .to_string();
    let mut status = rest.status_stream(&record_id)?;
    status
        .wait_for_status("running", Duration::from_secs(60))
        .with_context(|| format!("recording never started; proxy log:\n{}", proxy.log()))?;
    println!("==> recording {record_id}; sending real requests with curl");

    let base = format!("http://127.0.0.1:{}", site.port);
    let requests: [&[&str]; 4] = [
        &[
            "-sS",
            "-o",
            "/dev/null",
            &format!("{base}/index.html?lang=en"),
        ],
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: gzip",
            &format!("{base}/catalog.json"),
        ],
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"name":"demo"}"#,
            &format!("{base}/api/echo"),
        ],
        &["-sS", "-o", "/dev/null", &format!("{base}/missing")],
    ];
    for args in requests {
        let out = std::process::Command::new("curl")
            .args(args)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            bail!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!("    curl {}", args.last().unwrap_or(&""));
    }

    let stop = rest.post_json("/record/stop", &json!({"record_id": record_id}))?;
    println!("==> POST /record/stop: {}", stop.text());
    let stopped = status.wait_for_status("stopped", Duration::from_secs(60))?;
    println!(
        "==> final status line\n{}",
        serde_json::to_string_pretty(&stopped)?
    );

    let cases = rest
        .get(&format!("/k8s-proxy/testcases?record_id={record_id}"))?
        .json()?;
    let cases = cases.as_array().context("test case list")?;
    println!(
        "==> GET /k8s-proxy/testcases?record_id={record_id}: {} test cases",
        cases.len()
    );
    for case in cases {
        println!(
            "    {:<8} {:<6} {:<26} -> {} ({} response bytes)",
            case["name"].as_str().unwrap_or(""),
            case["req"]["method"].as_str().unwrap_or(""),
            case["req"]["target"].as_str().unwrap_or(""),
            case["resp"]["status_code"],
            case["resp"]["body"].as_str().map_or(0, str::len),
        );
    }
    if let Some(first) = cases.iter().find(|c| c["req"]["method"] == "POST") {
        println!(
            "==> one test case in full\n{}",
            serde_json::to_string_pretty(first)?
        );
    }
    if cases.len() != requests.len() {
        bail!(
            "{} test cases stored for {} requests sent",
            cases.len(),
            requests.len()
        );
    }
    let sets: Value = rest.get("/k8s-proxy/testcases/testsets")?.json()?;
    println!("==> test sets\n{}", serde_json::to_string_pretty(&sets)?);

    println!("==> POST /test/start: replaying test-set-0 against a fresh nginx instance");
    let started = rest.post_json("/test/start", &json!({"deployment": "web"}))?;
    if started.status != 200 {
        bail!(
            "POST /test/start answered {}: {}",
            started.status,
            started.text()
        );
    }
    let replay_id = started.json()?["replay_id"]
        .as_str()
        .context("replay_id")?
        .to_string();
    let mut replay = rest.replay_stream(&replay_id)?;
    let last = replay.wait_for(Duration::from_secs(120), |l| {
        l["type"] == "status" && matches!(l["status"].as_str(), Some("completed" | "stopped"))
    })?;
    for line in replay.seen.iter().filter(|l| l["type"] == "test_case") {
        println!(
            "    {:<8} {:<7} risk {}",
            line["test_case_id"].as_str().unwrap_or(""),
            line["status"].as_str().unwrap_or(""),
            line["risk"].as_str().unwrap_or("")
        );
    }
    println!(
        "==> replay result: {} ({})",
        last["result"], last["test_run_id"]
    );
    println!(
        "==> done; the SQLite store stays in {}",
        config.data_dir.display()
    );
    Ok(())
}
