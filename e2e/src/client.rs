//! Real clients that log exactly what they sent and received, so a test can hold the stored test
//! cases up against the client's own record.
//!
//! Two kinds: [`KeepAliveClient`], a raw TCP HTTP/1.1 client (keep-alive, pipelining,
//! `Expect: 100-continue`, chunked request bodies), and [`curl`], the real curl binary whose
//! `-v` trace and `-o` file are read back.
//!
//! Every request carries a unique `X-Kreplay-Case` header, which is how a stored test case is
//! matched with its log entry.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};

/// The header that names a request in the client log.
pub const CASE_HEADER: &str = "X-Kreplay-Case";

/// What a client sent: the body is the logical body (before chunk framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a client received: `body` as framed (de-chunked but still content-coded) and
/// `decoded_body` with gzip/deflate undone, which is what the proxy stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub decoded_body: Vec<u8>,
}

/// One request/response pair as the client logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub case: String,
    pub sent: Sent,
    pub received: Received,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Undoes a gzip or deflate content coding, as the capture does.
pub fn decode_content(headers: &[(String, String)], body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let coding = header(headers, "content-encoding")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    match coding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .context("gunzip")?;
        }
        "deflate" => {
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut out)
                .context("inflate")?;
        }
        other => bail!("unexpected content coding {other}"),
    }
    Ok(out)
}

/// A request to send with [`KeepAliveClient`].
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// Besides Host and the case header, which the client adds first.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body as chunks of this size (`Transfer-Encoding: chunked`).
    pub chunk_size: Option<usize>,
    /// Send `Expect: 100-continue` and wait for the interim response before the body.
    pub expect_continue: bool,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunk_size: None,
            expect_continue: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn chunked(mut self, chunk_size: usize) -> Self {
        self.chunk_size = Some(chunk_size.max(1));
        self
    }

    pub fn expect_continue(mut self) -> Self {
        self.expect_continue = true;
        self
    }
}

/// A raw HTTP/1.1 client on one keep-alive connection.
pub struct KeepAliveClient {
    reader: BufReader<TcpStream>,
    host: String,
}

impl KeepAliveClient {
    pub fn connect(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            host: format!("127.0.0.1:{port}"),
        })
    }

    /// The head and the framed body of `request`, and what the log records as sent.
    fn encode(&self, case: &str, request: &Request) -> (Vec<u8>, Vec<u8>, Sent) {
        let mut headers = vec![
            ("Host".to_string(), self.host.clone()),
            (CASE_HEADER.to_string(), case.to_string()),
        ];
        headers.extend(request.headers.iter().cloned());
        if request.chunk_size.is_some() {
            headers.push(("Transfer-Encoding".into(), "chunked".into()));
        } else if !request.body.is_empty()
            || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH")
        {
            headers.push(("Content-Length".into(), request.body.len().to_string()));
        }
        if request.expect_continue {
            headers.push(("Expect".into(), "100-continue".into()));
        }
        let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target).into_bytes();
        for (name, value) in &headers {
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let body = match request.chunk_size {
            Some(size) => {
                let mut framed = Vec::new();
                for chunk in request.body.chunks(size) {
                    framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                }
                framed.extend_from_slice(b"0\r\n\r\n");
                framed
            }
            None => request.body.clone(),
        };
        let sent = Sent {
            method: request.method.clone(),
            target: request.target.clone(),
            headers,
            body: request.body.clone(),
        };
        (head, body, sent)
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.reader
            .get_mut()
            .write_all(bytes)
            .context("writing the request")
    }

    /// Sends one request and reads its response.
    pub fn exchange(&mut self, case: &str, request: &Request) -> anyhow::Result<Logged> {
        let (head, body, sent) = self.encode(case, request);
        if request.expect_continue {
            self.write(&head)?;
            let interim = read_response(&mut self.reader, false)?;
            if interim.status != 100 {
                // The server answered without wanting the body.
                return Ok(Logged {
                    case: case.into(),
                    sent,
                    received: interim,
                });
            }
            self.write(&body)?;
        } else {
            let mut all = head;
            all.extend_from_slice(&body);
            self.write(&all)?;
        }
        let received = read_final_response(&mut self.reader, request.method == "HEAD")?;
        Ok(Logged {
            case: case.into(),
            sent,
            received,
        })
    }

    /// Sends every request in one write (pipelining), then reads the responses in order.
    pub fn pipeline(&mut self, requests: &[(String, Request)]) -> anyhow::Result<Vec<Logged>> {
        let mut all = Vec::new();
        let mut sent = Vec::new();
        for (case, request) in requests {
            let (head, body, logged) = self.encode(case, request);
            all.extend_from_slice(&head);
            all.extend_from_slice(&body);
            sent.push((case.clone(), logged, request.method == "HEAD"));
        }
        self.write(&all)?;
        sent.into_iter()
            .map(|(case, sent, head_only)| {
                let received = read_final_response(&mut self.reader, head_only)?;
                Ok(Logged {
                    case,
                    sent,
                    received,
                })
            })
            .collect()
    }
}

fn read_line(reader: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        bail!("connection closed while reading a response head");
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8(line)?)
}

/// Skips 1xx interim responses.
fn read_final_response(reader: &mut impl BufRead, head_only: bool) -> anyhow::Result<Received> {
    loop {
        let response = read_response(reader, head_only)?;
        if !(100..200).contains(&response.status) || response.status == 101 {
            return Ok(response);
        }
    }
}

fn read_response(reader: &mut impl BufRead, head_only: bool) -> anyhow::Result<Received> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 status line: {status_line:?}");
    }
    let status: u16 = parts.next().unwrap_or("").parse().context("status code")?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .context("header line without a colon")?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if header(&headers, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(length) = header(&headers, "content-length") {
        let mut body = vec![0; length.trim().parse().context("Content-Length")?];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    let decoded_body = decode_content(&headers, &body)?;
    Ok(Received {
        status,
        reason,
        headers,
        body,
        decoded_body,
    })
}

fn read_chunked(reader: &mut impl BufRead) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size line {line:?}"))?;
        if size == 0 {
            // Trailers end at an empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

/// Runs real curl for one request: `args` are curl's own (method, data, headers, URL); the
/// case header is added. The request body, if any, must be passed as `body` too (curl's `-v`
/// does not print it). Reads the request and response heads from `-v` and the body from `-o`.
pub fn curl(scratch: &Path, case: &str, args: &[&str], body: &[u8]) -> anyhow::Result<Logged> {
    let body_file = scratch.join(format!("curl-{case}.body"));
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "60", "-o"])
        .arg(&body_file)
        .args(["-H", &format!("{CASE_HEADER}: {case}")])
        .args(args)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let trace = String::from_utf8_lossy(&out.stderr);
    let request_lines: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    // With 1xx interim responses curl prints several heads; the last one is the final response.
    let response_heads: Vec<Vec<&str>> = trace
        .lines()
        .filter_map(|l| {
            l.strip_prefix("< ")
                .or_else(|| (l == "<" || l == "< \r").then_some(""))
        })
        .map(|l| l.trim_end_matches('\r'))
        .fold(vec![Vec::new()], |mut heads, line| {
            if line.is_empty() {
                heads.push(Vec::new());
            } else if let Some(current) = heads.last_mut() {
                current.push(line);
            }
            heads
        })
        .into_iter()
        .filter(|head| !head.is_empty())
        .collect();
    let request_line = request_lines
        .first()
        .context("curl -v printed no request line")?;
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers = split_headers(&request_lines[1..])?;
    let response = response_heads
        .last()
        .context("curl -v printed no response head")?;
    let status_line = response.first().context("empty response head")?;
    let mut parts = status_line.splitn(3, ' ');
    parts.next();
    let status = parts
        .next()
        .unwrap_or("")
        .parse()
        .context("status code from curl -v")?;
    let reason = parts.next().unwrap_or("").to_string();
    let response_headers = split_headers(&response[1..])?;
    let received_body = std::fs::read(&body_file).unwrap_or_default();
    let decoded_body = decode_content(&response_headers, &received_body)?;
    Ok(Logged {
        case: case.into(),
        sent: Sent {
            method,
            target,
            headers,
            body: body.to_vec(),
        },
        received: Received {
            status,
            reason,
            headers: response_headers,
            body: received_body,
            decoded_body,
        },
    })
}

fn split_headers(lines: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    lines
        .iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("header line {line:?}"))?;
            Ok((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_and_length_framed_responses_back_to_back() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        let mut reader = BufReader::new(&wire[..]);
        let first = read_final_response(&mut reader, false).unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"abcde"[..]));
        let second = read_final_response(&mut reader, false).unwrap();
        assert_eq!(
            (
                second.status,
                second.reason.as_str(),
                second.body.as_slice()
            ),
            (404, "Not Found", &b"no"[..])
        );
    }

    #[test]
    fn head_responses_have_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let response = read_final_response(&mut BufReader::new(&wire[..]), true).unwrap();
        assert!(response.body.is_empty());
    }
}
