//! `cargo xtask bench ...`: benchmarks that print their ratios side by side in one run.
//!
//! `capture`: wrk against nginx (a local deployment of the proxy) with capture off, then on,
//! then a paced load at a fixed rate with capture on; prints the throughput and p99 ratios, the
//! agent's CPU per 10k requests, completeness (stored / answered) and every loss counter.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Subcommand;
use kreplay_e2e::{
    Agent, Proxy, ProxyConfig, ScratchDir,
    client::{KeepAliveClient, Request},
    servers,
};
use serde_json::{Value, json};

use crate::util::root;

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Capture overhead and completeness under wrk load against nginx.
    Capture {
        /// Length of each wrk phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// wrk connections.
        #[arg(long, default_value_t = 32)]
        connections: u32,
        /// Request rate of the paced phase.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Extra agent arguments, e.g. `--queue-envelopes 1` to see the cost of capture without
        /// storage (everything past the queue is dropped and counted).
        #[arg(long, allow_hyphen_values = true)]
        agent_args: Option<String>,
    },
    /// Mock server latency per PostgreSQL query and Redis command, against the real servers.
    Mocks {
        /// Queries and commands per run (each).
        #[arg(long, default_value_t = 1000)]
        calls: u32,
    },
    /// Replay speed: a recorded set of test cases replayed against local nginx.
    Replay {
        /// Test cases to record and replay.
        #[arg(long, default_value_t = 5000)]
        cases: u32,
    },
}

pub fn run(which: Bench) -> anyhow::Result<()> {
    match which {
        Bench::Capture {
            seconds,
            connections,
            rate,
            agent_args,
        } => capture(
            seconds,
            connections,
            rate,
            agent_args.as_deref().unwrap_or(""),
        ),
        Bench::Replay { cases } => replay(cases),
        Bench::Mocks { calls } => mocks(calls),
    }
}

/// What one wrk run printed.
#[derive(Debug, Clone, Copy)]
struct WrkResult {
    requests: u64,
    per_second: f64,
    p99_ms: f64,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut requests = None;
    let mut per_second = None;
    let mut p99_ms = None;
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => per_second = value.parse().ok(),
            ["99%", value] => p99_ms = parse_duration_ms(value),
            [count, "requests", "in", ..] => requests = count.parse().ok(),
            _ => {}
        }
    }
    Ok(WrkResult {
        requests: requests.context("wrk printed no request count")?,
        per_second: per_second.context("wrk printed no Requests/sec")?,
        p99_ms: p99_ms.context("wrk printed no 99% latency")?,
    })
}

fn wrk(port: u16, seconds: u64, connections: u32) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .context("running wrk (`cargo xtask setup` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk reported errors:\n{text}");
    }
    parse_wrk(&text)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// `connections` keep-alive clients together sending `rate` requests per second for `seconds`.
fn paced_load(port: u16, rate: u32, seconds: u64, connections: u32) -> anyhow::Result<u64> {
    let per_connection = f64::from(rate) / f64::from(connections);
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let total = (per_connection * seconds as f64) as u64;
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                scope.spawn(move || {
                    let mut client = KeepAliveClient::connect(port)?;
                    let start =
                        Instant::now() + interval.mul_f64(f64::from(c) / f64::from(connections));
                    for i in 0..total {
                        let due = start + interval.mul_f64(i as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        client
                            .exchange(&format!("p{c}-{i}"), &Request::new("GET", "/index.html"))?;
                    }
                    Ok(total)
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
    results.into_iter().sum()
}

fn sub(after: (f64, f64), before: (f64, f64)) -> (f64, f64) {
    (after.0 - before.0, after.1 - before.1)
}

struct Recording<'a> {
    proxy: &'a Proxy,
    record_id: String,
    /// The first `running` status line (cumulative counters at the start).
    running: Value,
}

impl<'a> Recording<'a> {
    fn start(proxy: &'a Proxy) -> anyhow::Result<Self> {
        let response = proxy
            .rest
            .post_json("/record/start", &json!({"deployment": "web"}))?;
        if response.status != 200 {
            bail!("record/start: {} {}", response.status, response.text());
        }
        let record_id = response.json()?["id"]
            .as_str()
            .context("record id")?
            .to_string();
        let running = proxy
            .rest
            .status_stream(&record_id)?
            .wait_for_status("running", Duration::from_secs(30))?;
        Ok(Self {
            proxy,
            record_id,
            running,
        })
    }

    /// Stops; returns the final status line with `capture` turned into this session's share of
    /// the agent's cumulative loss counters.
    fn stop(self) -> anyhow::Result<Value> {
        let mut status = self.proxy.rest.status_stream(&self.record_id)?;
        self.proxy
            .rest
            .post_json("/record/stop", &json!({"record_id": self.record_id}))?;
        let mut last = status.wait_for_status("stopped", Duration::from_secs(120))?;
        if let Some(counters) = last["capture"].as_object_mut() {
            for (name, value) in counters.iter_mut() {
                let before = self.running["capture"][name].as_u64().unwrap_or(0);
                *value = json!(value.as_u64().unwrap_or(0).saturating_sub(before));
            }
        }
        Ok(last)
    }
}

fn losses(line: &Value) -> String {
    let c = &line["capture"];
    format!(
        "ring_full_drops={} control_ring_drops={} read_faults={} queue_drops={} stream_gaps={} parse_errors={}",
        c["ring_full_drops"],
        c["control_ring_drops"],
        c["read_faults"],
        c["queue_drops"],
        c["stream_gaps"],
        c["parse_errors"]
    )
}

fn capture(seconds: u64, connections: u32, rate: u32, agent_args: &str) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("bench-capture")?;
    let dir = scratch.path();
    let (nginx, site) = servers::nginx(dir, "web")?;
    let mut config = ProxyConfig::new(dir, vec![nginx])?;
    config.bin_dir = root().join("target/release");
    let proxy = Proxy::start(dir, &config)?;
    let extra: Vec<&str> = agent_args.split_whitespace().collect();
    let agent = Agent::start(dir, &proxy, &extra)?;
    let agent_pid = agent.pid().context("agent pid")?;
    let proxy_pid = proxy.pid().context("proxy pid")?;
    let cpu =
        || -> anyhow::Result<(f64, f64)> { Ok((cpu_seconds(agent_pid)?, cpu_seconds(proxy_pid)?)) };
    kreplay_e2e::wait_for("nginx", Duration::from_secs(30), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", site.port))
            .ok()
            .map(|_| ()))
    })?;
    // Warm up nginx and the page cache.
    wrk(site.port, 2, connections)?;

    let off = wrk(site.port, seconds, connections)?;
    let recording = Recording::start(&proxy)?;
    let cpu_before = cpu()?;
    let on = wrk(site.port, seconds, connections)?;
    let saturated = recording.stop()?;
    let cpu_on = sub(cpu()?, cpu_before);

    let recording = Recording::start(&proxy)?;
    let cpu_before = cpu()?;
    let paced_started = Instant::now();
    let paced_sent = paced_load(site.port, rate, seconds, 4)?;
    let paced_elapsed = paced_started.elapsed().as_secs_f64();
    let paced = recording.stop()?;
    let cpu_paced = sub(cpu()?, cpu_before);

    let stored = saturated["test_cases_count"].as_u64().unwrap_or(0);
    let paced_stored = paced["test_cases_count"].as_u64().unwrap_or(0);
    println!(
        "\n== cargo xtask bench capture --seconds {seconds} --connections {connections} --rate {rate}"
    );
    println!(
        "wrk -t2 -c{connections} -d{seconds}s against nginx (2 workers), GET /index.html, on {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "", "capture off", "capture on", "on/off"
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>10.3}",
        "throughput (req/s)",
        off.per_second,
        on.per_second,
        on.per_second / off.per_second
    );
    println!(
        "{:<34} {:>14.3} {:>14.3} {:>10.3}",
        "p99 latency (ms)",
        off.p99_ms,
        on.p99_ms,
        on.p99_ms / off.p99_ms
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "requests answered", off.requests, on.requests
    );
    println!(
        "saturated: stored {stored} of {} answered = {:.2}% complete; CPU per 10k requests: agent {:.3} s, proxy {:.3} s; {}",
        on.requests,
        100.0 * stored as f64 / on.requests.max(1) as f64,
        cpu_on.0 / on.requests.max(1) as f64 * 10_000.0,
        cpu_on.1 / on.requests.max(1) as f64 * 10_000.0,
        losses(&saturated)
    );
    println!(
        "paced {rate} req/s x {seconds}s (4 keep-alive connections, achieved {:.0} req/s): stored {paced_stored} of {paced_sent} = {:.2}% complete; CPU per 10k requests: agent {:.3} s, proxy {:.3} s; {}",
        paced_sent as f64 / paced_elapsed,
        100.0 * paced_stored as f64 / paced_sent.max(1) as f64,
        cpu_paced.0 / paced_sent.max(1) as f64 * 10_000.0,
        cpu_paced.1 / paced_sent.max(1) as f64 * 10_000.0,
        losses(&paced)
    );
    Ok(())
}

/// The request mix of the replay benchmark: static, gzip, POST, 404.
fn replay_mix(i: u32) -> Request {
    match i % 5 {
        0 => Request::new("GET", &format!("/index.html?i={i}")),
        1 => Request::new("GET", "/catalog.json").header("Accept-Encoding", "gzip"),
        2 => Request::new("GET", "/notes.txt"),
        3 => Request::new("POST", "/api/echo").body(format!("{{\"i\":{i}}}")),
        _ => Request::new("GET", &format!("/missing/{i}")),
    }
}

fn replay(cases: u32) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("bench-replay")?;
    let dir = scratch.path();
    let (nginx, site) = servers::nginx(dir, "web")?;
    let mut config = ProxyConfig::new(dir, vec![nginx])?;
    config.bin_dir = root().join("target/release");
    let proxy = Proxy::start(dir, &config)?;
    let _agent = Agent::start(dir, &proxy, &[])?;
    kreplay_e2e::wait_for("nginx", Duration::from_secs(30), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", site.port))
            .ok()
            .map(|_| ()))
    })?;
    let recording = Recording::start(&proxy)?;
    let mut client = KeepAliveClient::connect(site.port)?;
    for i in 0..cases {
        client.exchange(&format!("c{i}"), &replay_mix(i))?;
    }
    let stopped = recording.stop()?;
    let stored = stopped["test_cases_count"].as_u64().unwrap_or(0);
    if stored != u64::from(cases) {
        bail!("recorded {stored} of {cases} test cases: {stopped}");
    }
    let started = Instant::now();
    let response = proxy
        .rest
        .post_json("/test/start", &json!({"deployment": "web"}))?;
    if response.status != 200 {
        bail!("test/start: {} {}", response.status, response.text());
    }
    let replay_id = response.json()?["replay_id"]
        .as_str()
        .context("replay_id")?
        .to_string();
    let last = proxy
        .rest
        .replay_stream(&replay_id)?
        .wait_for(Duration::from_secs(600), |l| {
            l["type"] == "status" && l["status"] == "completed"
        })?;
    let wall = started.elapsed().as_secs_f64();
    let timing = &last["timing"];
    let ms = |k: &str| timing[k].as_f64().unwrap_or(0.0);
    let replayed = timing["test_cases"].as_u64().unwrap_or(0);
    println!("\n== cargo xtask bench replay --cases {cases}");
    println!(
        "recorded {stored} test cases against nginx; replayed {replayed}: result {}",
        last["result"]
    );
    println!(
        "{:.0} test cases/s over the run ({:.0} ms; {:.0} test cases/s wall clock including instance start-up, {:.2} s)",
        replayed as f64 / (ms("total_ms") / 1000.0),
        ms("total_ms"),
        replayed as f64 / wall,
        wall
    );
    println!(
        "time split: app {:.0} ms ({:.1}%), comparison {:.0} ms ({:.1}%), storage {:.0} ms ({:.1}%), other {:.0} ms",
        ms("app_ms"),
        100.0 * ms("app_ms") / ms("total_ms"),
        ms("compare_ms"),
        100.0 * ms("compare_ms") / ms("total_ms"),
        ms("storage_ms"),
        100.0 * ms("storage_ms") / ms("total_ms"),
        ms("total_ms") - ms("app_ms") - ms("compare_ms") - ms("storage_ms"),
    );
    Ok(())
}

/// Records a client doing `calls` PostgreSQL queries and Redis GETs against the real servers
/// (timing them itself), stops the servers, replays it against mocks and compares.
fn mocks(calls: u32) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("bench-mocks")?;
    let dir = scratch.path();
    let mut pg = kreplay_e2e::deps::Postgres::start(dir)?;
    let mut redis = kreplay_e2e::deps::redis(dir)?;
    let app = servers::python_fixture(
        dir,
        "latency.py",
        "latency",
        vec![
            ("PG_DSN".into(), pg.dsn()),
            ("REDIS_PORT".into(), redis.port.to_string()),
        ],
        true,
    )?;
    let port = app.port;
    let mut config = ProxyConfig::new(dir, vec![app])?;
    config.bin_dir = root().join("target/release");
    let proxy = Proxy::start(dir, &config)?;
    let _agent = Agent::start(dir, &proxy, &[])?;
    let ready = || -> anyhow::Result<Option<()>> {
        let list = proxy.rest.get("/deployments")?.json()?;
        Ok((list[0]["readyReplicas"] == 1).then_some(()))
    };
    kreplay_e2e::wait_for("the latency fixture", Duration::from_secs(30), ready)?;
    let response = proxy
        .rest
        .post_json("/record/start", &json!({"deployment": "latency"}))?;
    let record_id = response.json()?["id"]
        .as_str()
        .context("record id")?
        .to_string();
    proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("running", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    kreplay_e2e::wait_for("the restarted fixture", Duration::from_secs(30), ready)?;
    let mut client = KeepAliveClient::connect(port)?;
    let real = client.exchange("bench", &Request::new("GET", &format!("/run?n={calls}")))?;
    let real: Value = serde_json::from_slice(&real.received.decoded_body)?;
    proxy
        .rest
        .post_json("/record/stop", &json!({"record_id": record_id}))?;
    let stopped = proxy
        .rest
        .status_stream(&record_id)?
        .wait_for_status("stopped", Duration::from_secs(120))?;
    pg.stop()?;
    redis.stop();

    let response = proxy.rest.post_json(
        "/test/start",
        &json!({"deployment": "latency", "test_config": {"apiTimeout": 120}}),
    )?;
    let body = response.json()?;
    let replay_id = body["replay_id"].as_str().context("replay_id")?.to_string();
    let test_run_id = body["test_run_id"]
        .as_str()
        .context("test_run_id")?
        .to_string();
    proxy
        .rest
        .replay_stream(&replay_id)?
        .wait_for(Duration::from_secs(600), |l| {
            l["type"] == "status" && l["status"] == "completed"
        })?;
    let reports = proxy
        .rest
        .get(&format!(
            "/k8s-proxy/get/testRunReports?deployment=latency&test_run_id={test_run_id}"
        ))?
        .json()?;
    let result = &reports[0]["report"]["tests"][0];
    let mocked: Value = serde_json::from_str(result["resp"]["body"].as_str().unwrap_or(""))
        .with_context(|| format!("the replayed run answered no timings: {result}"))?;
    let unmatched = result["failure_info"]["unmatched_calls"]
        .as_array()
        .map_or(0, Vec::len);

    println!("\n== cargo xtask bench mocks --calls {calls}");
    println!(
        "{} mocks recorded ({}); one client (psycopg2, redis-py), one connection per server, sequential calls",
        stopped["mock_count"], stopped["mock_types"]
    );
    println!(
        "{:<26} {:>12} {:>12} {:>10}",
        "", "real server", "mock server", "mock/real"
    );
    for (label, key) in [("PostgreSQL query", "postgres"), ("Redis GET", "redis")] {
        for q in ["p50_us", "p99_us"] {
            let r = real[key][q].as_f64().unwrap_or(0.0);
            let m = mocked[key][q].as_f64().unwrap_or(0.0);
            println!(
                "{:<26} {:>10.1}us {:>10.1}us {:>10.2}",
                format!("{label} {}", &q[..3]),
                r,
                m,
                m / r.max(f64::MIN_POSITIVE)
            );
        }
    }
    println!("calls the mocks could not answer: {unmatched}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  310.00us\n     99%    1.52ms\n  123456 requests in 10.00s, 1.00MB read\nRequests/sec:  12345.60\nTransfer/sec:      1.00MB\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests, 123_456);
        assert!((r.per_second - 12_345.6).abs() < 1e-6);
        assert!((r.p99_ms - 1.52).abs() < 1e-9);
        assert_eq!(parse_duration_ms("250.5us"), Some(0.2505));
        assert_eq!(parse_duration_ms("2.00s"), Some(2000.0));
    }
}
