//! The proxy's REST API driven with curl, a real client.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {} body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET a URL and return its body as text (for metrics endpoints).
pub fn curl_text(url: &str) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", url])
        .output()?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
    pub token: String,
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    SharedToken,
    None,
    Header(&'a str),
}

impl Rest {
    pub fn new(base: String, token: String) -> Self {
        Self { base, token }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        self.send(method, path, body.map(|b| (b, "application/json")), auth)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&[u8], &str)>,
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "60",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        let header = match auth {
            Auth::SharedToken => Some(format!("Authorization: Bearer {}", self.token)),
            Auth::Header(value) => Some(format!("Authorization: {value}")),
            Auth::None => None,
        };
        if let Some(header) = header {
            cmd.args(["-H", &header]);
        }
        if let Some((_, content_type)) = body {
            cmd.args([
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                "@-",
            ]);
        }
        cmd.arg(format!("{}{}", self.base, path));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running curl")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(body.map(|(b, _)| b).unwrap_or_default())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "curl {method} {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = out.stdout;
        let split = stdout
            .iter()
            .rposition(|b| *b == b'\n')
            .context("curl printed no status")?;
        let status = std::str::from_utf8(&stdout[split + 1..])?.trim().parse()?;
        Ok(Response {
            status,
            body: stdout[..split].to_vec(),
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.request("GET", path, None, Auth::SharedToken)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Response> {
        self.request(
            "POST",
            path,
            Some(&serde_json::to_vec(body)?),
            Auth::SharedToken,
        )
    }

    /// `POST /record/start` of a deployment in `default`; returns the record id.
    pub fn start_recording(&self, deployment: &str) -> anyhow::Result<String> {
        let response = self.post_json(
            "/record/start",
            &serde_json::json!({"namespace": "default", "deployment": deployment}),
        )?;
        if response.status != 200 {
            bail!(
                "record/start {deployment}: {} {}",
                response.status,
                response.text()
            );
        }
        Ok(response.json()?["id"]
            .as_str()
            .context("record id")?
            .to_string())
    }

    /// `POST /record/stop`, checking the documented answer.
    pub fn stop_recording(&self, record_id: &str) -> anyhow::Result<()> {
        let response =
            self.post_json("/record/stop", &serde_json::json!({"record_id": record_id}))?;
        if response.status != 200 {
            bail!("record/stop: {} {}", response.status, response.text());
        }
        let body = response.json()?;
        if body != serde_json::json!({"record": "stopped", "id": record_id}) {
            bail!("record/stop answered {body}");
        }
        Ok(())
    }

    /// The test cases a recording stored.
    pub fn test_cases(&self, record_id: &str) -> anyhow::Result<Vec<Value>> {
        let response = self.get(&format!(
            "/k8s-proxy/testcases?record_id={record_id}&limit=10000"
        ))?;
        if response.status != 200 {
            bail!("testcases: {} {}", response.status, response.text());
        }
        Ok(response
            .json()?
            .as_array()
            .context("test case list")?
            .clone())
    }

    /// Follows `GET /record/status` as NDJSON.
    pub fn status_stream(&self, record_id: &str) -> anyhow::Result<StatusStream> {
        self.ndjson(&format!("/record/status?record_id={record_id}"))
    }

    /// Follows `GET /test/status` as NDJSON.
    pub fn replay_stream(&self, replay_id: &str) -> anyhow::Result<StatusStream> {
        self.ndjson(&format!("/test/status?replay_id={replay_id}"))
    }

    /// A raw body with its content type (uploads).
    pub fn post_bytes(
        &self,
        path: &str,
        body: &[u8],
        content_type: &str,
    ) -> anyhow::Result<Response> {
        self.send("POST", path, Some((body, content_type)), Auth::SharedToken)
    }

    fn ndjson(&self, path: &str) -> anyhow::Result<StatusStream> {
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "600", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(format!("{}{path}", self.base))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running curl for the status stream")?;
        let stdout = child.stdout.take().context("curl stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        Ok(StatusStream {
            child,
            lines: rx,
            seen: Vec::new(),
            ended: false,
        })
    }
}

/// A live NDJSON status stream.
pub struct StatusStream {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Every line received so far.
    pub seen: Vec<Value>,
    pub ended: bool,
}

impl StatusStream {
    /// Reads lines until one has `status == want`; returns it.
    pub fn wait_for_status(&mut self, want: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_for(timeout, |line| line["status"] == want)
            .with_context(|| format!("waiting for status `{want}`"))
    }

    /// Reads lines until one satisfies `matches`; returns it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no matching status line within {timeout:?}; lines: {:?}",
                        self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    bail!("status stream ended; lines: {:?}", self.seen)
                }
            }
        }
    }

    /// Waits for the server to end the stream (after the last line).
    pub fn wait_for_end(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    return Ok(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("status stream still open after {timeout:?}")
                }
            }
        }
    }
}

impl Drop for StatusStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
