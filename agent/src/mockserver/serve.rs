//! One redirected connection: tell the protocol from the client's first bytes (or from silence:
//! MySQL clients wait for the server's greeting), frame requests with the same sans-IO parsers
//! the capture uses, answer each from the pool, and answer a miss with a protocol-level error so
//! the app fails fast instead of hanging.

use std::{sync::Arc, time::Duration};

use kreplay_domain::{
    http::request_fields,
    mock::{MatchOutcome, MissReport, MockKind},
};
use kreplay_wire::{
    dependency::{DependencyParser, Mode, Side, Unit},
    detect::{self, Detection, Protocol},
    generic::GenericConnection,
    http1::{Limits, RequestReader},
    mysql, postgres, redis,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::{Hit, Shared};
use crate::protocols::dependency_parser;

/// How long a silent client is waited for before the server speaks first (MySQL).
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(300);
/// A generic request is complete once the client has been quiet this long.
const GENERIC_IDLE: Duration = Duration::from_millis(50);
const READ_BUF: usize = 64 * 1024;

pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        result = serve(stream, &shared) => {
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "mock connection ended");
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "mock server accept"),
        }
    }
}

fn has_greeting(shared: &Shared) -> bool {
    shared.pool().mocks().any(|m| m.kind == MockKind::MySql)
}

fn kind_of(protocol: Protocol) -> MockKind {
    match protocol {
        Protocol::Http1 => MockKind::Http,
        Protocol::Postgres => MockKind::Postgres,
        Protocol::Redis => MockKind::Redis,
        Protocol::MySql => MockKind::MySql,
        Protocol::Generic => MockKind::Generic,
    }
}

/// Matches one request; records the hit or the miss. `None` on a miss.
fn answer(
    shared: &Shared,
    kind: MockKind,
    fields: &[(String, String)],
    summary: &str,
) -> Option<Vec<u8>> {
    let outcome = shared.pool().match_request(kind, fields);
    match outcome {
        MatchOutcome::Hit { name, response, .. } => {
            shared.outcome().hits.push(Hit {
                name,
                kind: kind.as_str().to_owned(),
                summary: summary.to_owned(),
            });
            Some(response)
        }
        MatchOutcome::Miss(miss) => {
            tracing::info!(kind = kind.as_str(), request = %summary, "no mock matches");
            shared.outcome().misses.push(miss);
            None
        }
    }
}

fn miss_text(shared: &Shared) -> String {
    let outcome = shared.outcome();
    let closest = outcome
        .misses
        .last()
        .and_then(|m: &MissReport| m.closest.as_ref())
        .map_or(String::from("no candidate"), |c| {
            format!("closest mock {}", c.name)
        });
    format!("kreplay: no recorded mock matches this request ({closest})")
}

/// The protocol's own way of saying `request` failed (`None`: close the connection instead).
fn error_reply(protocol: Protocol, request: &Unit, message: &str) -> Option<Vec<u8>> {
    match protocol {
        Protocol::Postgres => Some(postgres::error_response("XX000", message)),
        Protocol::Redis => Some(redis::error_reply(message)),
        Protocol::MySql => Some(mysql::err_packet(
            mysql::response_sequence_id(&request.request),
            1105,
            "HY000",
            message,
        )),
        Protocol::Http1 => Some(http_error(message)),
        // Nothing generic to say: the connection is closed instead.
        Protocol::Generic => None,
    }
}

fn http_error(message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": message}).to_string();
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut first = Vec::new();
    let protocol = loop {
        let read = tokio::time::timeout(FIRST_BYTES_WAIT, stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
            // A silent client waiting for the server: MySQL's greeting, when one was recorded;
            // otherwise (an idle pooled connection) keep waiting for its first bytes.
            Err(_) if first.is_empty() && has_greeting(shared) => break Protocol::MySql,
            Err(_) if first.is_empty() => continue,
            Err(_) => break detect::decide_on_close(&first, &[]),
        }
        match detect::detect(&first, &[]) {
            Detection::Known(protocol) => break protocol,
            Detection::NeedMore if first.len() < 4096 => continue,
            Detection::NeedMore => break detect::decide_on_close(&first, &[]),
        }
    };
    match protocol {
        Protocol::Http1 => serve_http(stream, shared, first, buf).await,
        Protocol::Generic => serve_generic(stream, shared, first, buf).await,
        Protocol::MySql => {
            // The recorded greeting (same scramble, so the client's auth answer matches).
            let greeting = [("type".to_owned(), "greeting".to_owned())];
            match answer(shared, MockKind::MySql, &greeting, "greeting") {
                Some(bytes) => stream.write_all(&bytes).await?,
                None => return Ok(()),
            }
            let parser = dependency_parser(Protocol::MySql, Mode::RequestsOnly);
            serve_units(stream, shared, Protocol::MySql, parser, first, buf).await
        }
        other => {
            let parser = dependency_parser(other, Mode::RequestsOnly);
            serve_units(stream, shared, other, parser, first, buf).await
        }
    }
}

async fn serve_units(
    mut stream: TcpStream,
    shared: &Shared,
    protocol: Protocol,
    mut parser: Box<dyn DependencyParser>,
    first: Vec<u8>,
    mut buf: Vec<u8>,
) -> std::io::Result<()> {
    let kind = kind_of(protocol);
    parser.feed(Side::Client, &first, 0);
    loop {
        while let Some(unit) = parser.next_unit() {
            if !respond(&mut stream, shared, protocol, kind, &unit).await? {
                return Ok(());
            }
        }
        if let Some(e) = parser.error() {
            tracing::info!(protocol = protocol.as_str(), error = %e, "mock connection: unparsable request");
            shared
                .outcome()
                .refused
                .push(format!("{}: {e}", protocol.as_str()));
            return Ok(());
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        parser.feed(Side::Client, &buf[..n], 0);
    }
}

/// Answers one unit; false when the connection should end.
async fn respond(
    stream: &mut TcpStream,
    shared: &Shared,
    protocol: Protocol,
    kind: MockKind,
    unit: &Unit,
) -> std::io::Result<bool> {
    match answer(shared, kind, &unit.fields, &unit.summary) {
        // Requests without an answer (Terminate, COM_QUIT) match recorded empty responses.
        Some(bytes) => {
            stream.write_all(&bytes).await?;
            Ok(true)
        }
        // A silent command gets no answer, not even an error.
        None if protocol == Protocol::MySql && !mysql::expects_answer(&unit.fields) => Ok(true),
        None => {
            let message = miss_text(shared);
            match error_reply(protocol, unit, &message) {
                Some(bytes) => {
                    stream.write_all(&bytes).await?;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    }
}

async fn serve_http(
    mut stream: TcpStream,
    shared: &Shared,
    first: Vec<u8>,
    mut buf: Vec<u8>,
) -> std::io::Result<()> {
    let mut reader = RequestReader::new(Limits::default());
    let mut pending = first;
    loop {
        for request in reader.feed(&pending, 0) {
            let fields = request_fields(&request.method, &request.target, &request.body);
            let summary = format!("{} {}", request.method, request.target);
            let bytes = match answer(shared, MockKind::Http, &fields, &summary) {
                Some(bytes) => bytes,
                None => http_error(&miss_text(shared)),
            };
            stream.write_all(&bytes).await?;
        }
        pending.clear();
        if reader.error().is_some() {
            return Ok(());
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

async fn serve_generic(
    mut stream: TcpStream,
    shared: &Shared,
    first: Vec<u8>,
    mut buf: Vec<u8>,
) -> std::io::Result<()> {
    let mut parser = GenericConnection::new(Mode::RequestsOnly);
    parser.feed(Side::Client, &first, 0);
    loop {
        match tokio::time::timeout(GENERIC_IDLE, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => parser.feed(Side::Client, &buf[..n], 0),
            Ok(Err(e)) => return Err(e),
            // The client went quiet: what it sent is one request.
            Err(_) => {
                if let Some(unit) = parser.flush_request()
                    && !respond(
                        &mut stream,
                        shared,
                        Protocol::Generic,
                        MockKind::Generic,
                        &unit,
                    )
                    .await?
                {
                    return Ok(());
                }
            }
        }
    }
}
