//! Sends recorded requests to a replay instance over keep-alive HTTP/1.1 and reads the answers
//! with the same sans-IO parser the agent captures with, so an actual response is decoded
//! (de-chunked, decompressed) exactly like the recorded one it is compared with.

use std::{net::SocketAddr, time::Duration};

use kreplay_domain::http::{Header, HttpRequest, HttpResponse};
use kreplay_wire::http1::{self, Direction};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the app closed the connection without a complete response")]
    Closed,
    #[error("the app's response is not valid HTTP/1.x: {0}")]
    Malformed(String),
}

/// Request headers that describe the recorded connection or framing, not the request: they are
/// rewritten for the replay connection.
const HOP_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// One keep-alive connection to the instance, re-opened when the app closes it.
pub struct ReplayClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl ReplayClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: vec![0; 64 * 1024],
        }
    }

    /// The bytes sent for a recorded request: its method, target and headers as recorded (Host
    /// included, so the app sees the request it saw then), the decoded body with a fresh
    /// Content-Length. A request recorded without Host gets the instance's address.
    pub fn encode(&self, request: &HttpRequest) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.target).into_bytes();
        if !request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(format!("Host: {}\r\n", self.addr).as_bytes());
        }
        for h in &request.headers {
            let lower = h.name.to_ascii_lowercase();
            // The body is sent decoded, so its recorded content coding no longer applies.
            if HOP_HEADERS.contains(&lower.as_str()) || lower == "content-encoding" {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let sends_length =
            !request.body.is_empty() || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_length {
            out.extend_from_slice(format!("Content-Length: {}\r\n", request.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&request.body);
        out
    }

    /// Sends `request` and returns the app's final response, within `timeout`.
    pub async fn send(
        &mut self,
        request: &HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, ClientError> {
        let bytes = self.encode(request);
        let idempotent = matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS");
        match tokio::time::timeout(timeout, self.exchange(&bytes, idempotent)).await {
            Ok(result) => {
                if result.is_err() {
                    self.stream = None;
                }
                result
            }
            Err(_) => {
                self.stream = None;
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        bytes: &[u8],
        idempotent: bool,
    ) -> Result<HttpResponse, ClientError> {
        // A kept-alive connection the app closed meanwhile fails on first use: retry once on
        // a fresh one. Only idempotent requests: the app may have processed the first one.
        let reused = self.stream.is_some();
        match self.exchange_once(bytes).await {
            Err(ClientError::Closed | ClientError::Io(_)) if reused && idempotent => {
                self.stream = None;
                self.exchange_once(bytes).await
            }
            other => other,
        }
    }

    async fn exchange_once(&mut self, bytes: &[u8]) -> Result<HttpResponse, ClientError> {
        if self.stream.is_none() {
            let stream =
                TcpStream::connect(self.addr)
                    .await
                    .map_err(|source| ClientError::Connect {
                        addr: self.addr,
                        source,
                    })?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ClientError::Closed);
        };
        stream.write_all(bytes).await?;
        let mut parser = http1::Connection::new(http1::Limits::default());
        parser.feed(Direction::Request, bytes, 0);
        loop {
            let n = stream.read(&mut self.buf).await?;
            if n == 0 {
                parser.close(0);
                self.stream = None;
                return match parser.next_exchange() {
                    Some(exchange) => Ok(to_response(exchange.response)),
                    None => Err(ClientError::Closed),
                };
            }
            parser.feed(Direction::Response, &self.buf[..n], 0);
            if let Some(exchange) = parser.next_exchange() {
                if wants_close(&exchange.response) {
                    self.stream = None;
                }
                return Ok(to_response(exchange.response));
            }
            if let Some(error) = parser.last_error() {
                self.stream = None;
                return Err(ClientError::Malformed(error.to_string()));
            }
        }
    }
}

fn wants_close(response: &http1::Response) -> bool {
    response.version_minor == 0
        || response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(b"connection")
                && String::from_utf8_lossy(&h.value)
                    .to_ascii_lowercase()
                    .contains("close")
        })
}

fn to_response(response: http1::Response) -> HttpResponse {
    HttpResponse {
        status_code: response.status_code,
        status_message: response.reason,
        proto_minor: u32::from(response.version_minor),
        headers: response
            .headers
            .into_iter()
            .map(|h| {
                Header::new(
                    String::from_utf8_lossy(&h.name),
                    String::from_utf8_lossy(&h.value),
                )
            })
            .collect(),
        body: response.body,
        body_truncated: response.body_truncated,
        timestamp_ns: crate::util::now_unix_ns(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replays_over_keep_alive_and_reconnects_after_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers two requests on the first connection (the second with Connection: close),
        // then one with a chunked gzip-free body on a new connection.
        tokio::spawn(async move {
            for answers in [
                vec![
                    &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..],
                    b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                ],
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 4096];
                for answer in answers {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(buf[..n].starts_with(b"GET /x?y=1 HTTP/1.1\r\nHost: recorded:80\r\n"));
                    socket.write_all(answer).await.unwrap();
                }
            }
        });
        let mut client = ReplayClient::new(addr);
        let request = HttpRequest {
            method: "GET".into(),
            target: "/x?y=1".into(),
            headers: vec![
                Header::new("Host", "recorded:80"),
                Header::new("Accept", "*/*"),
            ],
            ..Default::default()
        };
        let timeout = Duration::from_secs(5);
        let first = client.send(&request, timeout).await.unwrap();
        assert_eq!(
            (first.status_code, first.body.as_slice()),
            (200, &b"hi"[..])
        );
        let second = client.send(&request, timeout).await.unwrap();
        assert_eq!(second.status_code, 201);
        let third = client.send(&request, timeout).await.unwrap();
        assert_eq!(third.body, b"abc");
    }

    #[test]
    fn encoding_keeps_host_and_rewrites_framing_only() {
        let client = ReplayClient::new(SocketAddr::from(([127, 0, 0, 1], 9)));
        let request = HttpRequest {
            method: "POST".into(),
            target: "/p".into(),
            headers: vec![
                Header::new("Host", "old:1"),
                Header::new("X-Trace", "a"),
                Header::new("Transfer-Encoding", "chunked"),
            ],
            body: b"abc".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(client.encode(&request)).unwrap(),
            "POST /p HTTP/1.1\r\nHost: old:1\r\nX-Trace: a\r\nContent-Length: 3\r\n\r\nabc"
        );
    }
}
