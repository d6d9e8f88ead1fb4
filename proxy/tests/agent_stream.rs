//! The real proxy binary driven by a scripted agent over gRPC and by curl over REST: targets are
//! pushed, captures are stored exactly once even when resent, acknowledgements cover what was
//! stored, and `/record/stop` waits for the agent's flush marker.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kreplay_proto::v1::{
    AgentMessage, Envelope, Header, Hello, HttpExchange, HttpRequest, HttpResponse, ProxyMessage,
    Role, SessionFlushed, TargetsApplied, agent_message,
    capture_service_client::CaptureServiceClient, envelope::Body, proxy_message::Msg,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct ProxyProcess {
    child: Option<Child>,
    config_path: PathBuf,
    dir: PathBuf,
    rest: String,
    grpc: String,
    token: String,
    data_dir: PathBuf,
    cgroup: PathBuf,
}

impl ProxyProcess {
    fn start(dir: &Path, name: &str) -> Self {
        let (rest, tls, grpc, app) = (free_port(), free_port(), free_port(), free_port());
        let data_dir = dir.join("data");
        let config = serde_json::json!({
            "listen": format!("127.0.0.1:{tls}"),
            "insecure": true,
            "insecure_listen": format!("127.0.0.1:{rest}"),
            "grpc_listen": format!("127.0.0.1:{grpc}"),
            "data_dir": data_dir,
            "deployments": [{
                "name": name,
                "command": ["/usr/bin/python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"],
                "working_dir": dir,
                "port": app,
            }],
        });
        let config_path = dir.join("proxy.yaml");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut proxy = Self {
            child: None,
            config_path,
            dir: dir.to_owned(),
            rest: format!("http://127.0.0.1:{rest}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            token: String::new(),
            data_dir,
            cgroup: PathBuf::from("/sys/fs/cgroup/unified/kreplay/default").join(name),
        };
        proxy.spawn();
        proxy
    }

    fn spawn(&mut self) {
        let token_file = self.dir.join("token");
        let _ = std::fs::remove_file(&token_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("proxy.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kreplay-proxy"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--token-file")
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        self.token = loop {
            if let Ok(t) = std::fs::read_to_string(&token_file)
                && t.trim().len() == 64
            {
                break t.trim().to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        for _ in 0..200 {
            if self.curl("GET", "/healthz", None).0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("proxy /healthz never answered");
    }

    /// SIGKILL and start again on the same config and data dir.
    fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    fn wait_ready(&self) {
        for _ in 0..200 {
            if self.curl("GET", "/deployments", None).1[0]["readyReplicas"] == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the deployment never became ready");
    }

    fn app_pids(&self) -> String {
        std::fs::read_to_string(self.cgroup.join("0/cgroup.procs")).unwrap_or_default()
    }

    fn rest(&self) -> Rest {
        Rest {
            base: self.rest.clone(),
            token: self.token.clone(),
        }
    }

    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.rest().call(method, path, body)
    }
}

#[derive(Clone)]
struct Rest {
    base: String,
    token: String,
}

impl Rest {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "30",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", self.token));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = cmd.arg(format!("{}{path}", self.base)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    fn text(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(format!("{}{path}", self.base))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let replica = self.cgroup.join("0");
        let _ = std::fs::write(replica.join("cgroup.kill"), "1");
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir(&replica);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

struct ScriptedAgent {
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ProxyMessage>,
}

impl ScriptedAgent {
    async fn connect(proxy: &ProxyProcess, agent_id: &str) -> Self {
        let token = std::fs::read_to_string(proxy.data_dir.join("agent.token")).unwrap();
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", token.trim()).parse().unwrap();
        let channel = tonic::transport::Endpoint::from_shared(proxy.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            CaptureServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", bearer.clone());
                Ok(r)
            });
        let (tx, rx) = mpsc::channel(64);
        let hello = Hello {
            agent_id: agent_id.into(),
            node_name: "test".into(),
            resend_from: 1,
        };
        tx.send(AgentMessage {
            msg: Some(agent_message::Msg::Hello(hello)),
        })
        .await
        .unwrap();
        let inbound = client
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, inbound }
    }

    async fn send(&self, seq: u64, body: Body) {
        let envelope = Envelope {
            seq,
            body: Some(body),
        };
        self.tx
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Envelope(envelope)),
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Msg {
        let message = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
            .await
            .expect("proxy message in time")
            .expect("stream ok")
            .expect("stream open");
        message.msg.expect("message body")
    }

    /// Waits for the next target set; returns its version and session ids.
    async fn targets(&mut self) -> (u64, Vec<String>) {
        loop {
            if let Msg::Targets(set) = self.next().await {
                for t in &set.targets {
                    assert!(
                        !t.cgroup_ids.is_empty(),
                        "targets carry the replica cgroup ids"
                    );
                }
                return (
                    set.version,
                    set.targets.into_iter().map(|t| t.record_id).collect(),
                );
            }
        }
    }

    async fn ack_at_least(&mut self, seq: u64) {
        loop {
            if let Msg::Ack(ack) = self.next().await
                && ack.up_to_seq >= seq
            {
                return;
            }
        }
    }
}

fn exchange(record_id: &str, n: u32) -> Body {
    Body::Http(HttpExchange {
        record_id: record_id.into(),
        role: Role::Server as i32,
        pid: 1,
        cgroup_id: 1,
        local_addr: String::new(),
        peer_addr: "127.0.0.1:1".into(),
        connection_id: 1,
        index_on_connection: n,
        request: Some(HttpRequest {
            method: "POST".into(),
            target: format!("/items/{n}?q=1"),
            version_minor: 1,
            headers: vec![Header {
                name: b"Host".to_vec(),
                value: b"app".to_vec(),
            }],
            body: format!("{{\"n\":{n}}}").into_bytes(),
            ..Default::default()
        }),
        response: Some(HttpResponse {
            status_code: 201,
            reason: "Created".into(),
            version_minor: 1,
            headers: vec![Header {
                name: b"X-N".to_vec(),
                value: n.to_string().into_bytes(),
            }],
            body: vec![0xff, 0x00, n as u8],
            ..Default::default()
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_are_stored_once_and_stop_waits_for_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path(), "agent-stream-test");
    let rest = proxy.rest();
    let mut agent = ScriptedAgent::connect(&proxy, "agent-test-1").await;
    assert_eq!(
        agent.targets().await.1,
        Vec::<String>::new(),
        "initial empty target set"
    );

    // Start answers `running` once the agent confirms targets that include the session.
    let r = rest.clone();
    let start = tokio::task::spawn_blocking(move || {
        r.call(
            "POST",
            "/record/start",
            Some(r#"{"deployment":"agent-stream-test"}"#),
        )
    });
    let (version, records) = agent.targets().await;
    assert_eq!(records.len(), 1);
    let record_id = records[0].clone();
    agent
        .send(1, Body::TargetsApplied(TargetsApplied { version }))
        .await;
    let (code, started) = start.await.unwrap();
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["id"], record_id.as_str());
    assert_eq!(started["status"], "running");
    assert_eq!(started["test_set"], "test-set-0");

    for n in 1..=5 {
        agent.send(1 + u64::from(n), exchange(&record_id, n)).await;
    }
    agent.ack_at_least(6).await;
    // A reconnecting agent resends what it still holds: stored once.
    for n in 3..=5 {
        agent.send(1 + u64::from(n), exchange(&record_id, n)).await;
    }
    agent.ack_at_least(6).await;
    let (code, cases) = rest.call(
        "GET",
        &format!("/k8s-proxy/testcases?record_id={record_id}"),
        None,
    );
    assert_eq!(code, 200);
    let cases = cases.as_array().unwrap().clone();
    assert_eq!(cases.len(), 5, "{cases:?}");
    for (i, case) in cases.iter().enumerate() {
        let n = i + 1;
        assert_eq!(case["name"], format!("test-{n}"));
        assert_eq!(case["req"]["target"], format!("/items/{n}?q=1"));
        assert_eq!(case["req"]["body"], format!("{{\"n\":{n}}}"));
        assert_eq!(case["req"]["header"][0]["name"], "Host");
        assert_eq!(case["resp"]["status_code"], 201);
        assert_eq!(case["resp"]["body_encoding"], "base64");
        assert_eq!(case["resp"]["header"][0]["value"], n.to_string());
    }

    // Stop: targets are withdrawn, a flush is requested, and the answer waits for the marker;
    // a capture sent before the marker is part of the session.
    let r = rest.clone();
    let id = record_id.clone();
    let stop = tokio::task::spawn_blocking(move || {
        r.call(
            "POST",
            "/record/stop",
            Some(&format!(r#"{{"record_id":"{id}"}}"#)),
        )
    });
    loop {
        match agent.next().await {
            Msg::Flush(f) => {
                assert_eq!(f.record_id, record_id);
                break;
            }
            Msg::Targets(set) => assert!(set.targets.is_empty(), "session removed from targets"),
            Msg::Ack(_) => {}
            Msg::Replay(command) => panic!("no replay runs here: {command:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stop.is_finished(), "stop must wait for the agent's flush");
    agent.send(7, exchange(&record_id, 6)).await;
    agent
        .send(
            8,
            Body::Flushed(SessionFlushed {
                record_id: record_id.clone(),
            }),
        )
        .await;
    let (code, stopped) = stop.await.unwrap();
    assert_eq!(code, 200, "{stopped}");
    assert_eq!(stopped["record"], "stopped");
    let (_, cases) = rest.call(
        "GET",
        &format!("/k8s-proxy/testcases?record_id={record_id}"),
        None,
    );
    assert_eq!(cases.as_array().unwrap().len(), 6);

    let status = rest.text(&format!("/record/status?record_id={record_id}"));
    let states: Vec<String> = status
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        states,
        ["starting", "running", "stopping", "stopped"],
        "{status}"
    );
    let last: Value = serde_json::from_str(status.lines().last().unwrap()).unwrap();
    assert_eq!(last["test_cases_count"], 6);
    assert_eq!(
        last["endpoints"].as_array().unwrap().len(),
        6,
        "one per distinct path"
    );

    let (code, detail) = rest.call(
        "GET",
        &format!("/k8s-proxy/testcases/detail?id={}", cases[0]["id"]),
        None,
    );
    assert_eq!((code, detail["name"].as_str()), (200, Some("test-1")));
    let (code, sets) = rest.call("GET", "/k8s-proxy/testcases/testsets", None);
    assert_eq!(code, 200);
    assert_eq!(sets[0]["test_cases_count"], 6);
    assert_eq!(sets[0]["status"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_need_the_agent_token() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(dir.path(), "agent-token-test");
    let channel = tonic::transport::Endpoint::from_shared(proxy.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = CaptureServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    let hello = Hello {
        agent_id: "x".into(),
        node_name: "n".into(),
        resend_from: 1,
    };
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(hello)),
    })
    .await
    .unwrap();
    let err = client.stream(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        proxy.curl("GET", "/healthz", None).0,
        200,
        "proxy still serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restart_mid_recording_resumes_the_session_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = ProxyProcess::start(dir.path(), "agent-restart-test");
    let mut agent = ScriptedAgent::connect(&proxy, "agent-restart-1").await;
    agent.targets().await;
    let r = proxy.rest();
    let start = tokio::task::spawn_blocking(move || {
        r.call(
            "POST",
            "/record/start",
            Some(r#"{"deployment":"agent-restart-test"}"#),
        )
    });
    let (version, records) = agent.targets().await;
    let record_id = records[0].clone();
    agent
        .send(1, Body::TargetsApplied(TargetsApplied { version }))
        .await;
    assert_eq!(start.await.unwrap().0, 200);
    for n in 1..=3 {
        agent.send(1 + u64::from(n), exchange(&record_id, n)).await;
    }
    agent.ack_at_least(4).await;
    // Captured while the proxy is down: sent (unacknowledged) into a dying stream.
    agent.send(5, exchange(&record_id, 4)).await;
    proxy.wait_ready();
    let app_before = proxy.app_pids();
    assert!(!app_before.trim().is_empty(), "the deployment runs");
    proxy.kill_and_restart();
    assert_eq!(
        proxy.app_pids(),
        app_before,
        "the deployment was adopted, not restarted"
    );

    // The agent reconnects and resends everything unacknowledged (here: from seq 5).
    let mut agent = ScriptedAgent::connect(&proxy, "agent-restart-1").await;
    let (version, records) = agent.targets().await;
    assert_eq!(
        records,
        std::slice::from_ref(&record_id),
        "the resumed session is targeted again"
    );
    agent.send(5, exchange(&record_id, 4)).await;
    agent.send(6, exchange(&record_id, 5)).await;
    agent
        .send(7, Body::TargetsApplied(TargetsApplied { version }))
        .await;
    agent.ack_at_least(7).await;

    let r = proxy.rest();
    let id = record_id.clone();
    let stop = tokio::task::spawn_blocking(move || {
        r.call(
            "POST",
            "/record/stop",
            Some(&format!(r#"{{"record_id":"{id}"}}"#)),
        )
    });
    loop {
        if let Msg::Flush(_) = agent.next().await {
            break;
        }
    }
    agent
        .send(
            8,
            Body::Flushed(SessionFlushed {
                record_id: record_id.clone(),
            }),
        )
        .await;
    assert_eq!(stop.await.unwrap().0, 200);
    let (_, cases) = proxy.curl(
        "GET",
        &format!("/k8s-proxy/testcases?record_id={record_id}"),
        None,
    );
    let targets: Vec<&str> = cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["req"]["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "/items/1?q=1",
            "/items/2?q=1",
            "/items/3?q=1",
            "/items/4?q=1",
            "/items/5?q=1"
        ]
    );
}
