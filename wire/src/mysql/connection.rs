//! The connection state machine: client messages become requests one at a time, each paired
//! with the server packets that answer it.

use std::collections::VecDeque;

use super::command::{self, COM_CHANGE_USER};
use super::framer::{Framer, Packet};
use super::handshake;
use super::response::{Expect, Framing, Step};
use super::values::Statements;
use super::{MAX_PAYLOAD, PROTOCOL, b64, caps, malformed};
use crate::dependency::{DependencyError, DependencyParser, Lifetime, Mode, Side, Unit};

/// What the next client packet can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// HandshakeResponse41 or SSLRequest.
    Handshake,
    /// After an SSLRequest: TLS (given up) or, when the capture sees plaintext, the
    /// HandshakeResponse41.
    AfterSsl,
    /// Commands (sequence id 0), or authentication answers (any other sequence id) after the
    /// handshake response or COM_CHANGE_USER.
    Auth,
    /// Commands only.
    Command,
}

/// A request waiting for (the rest of) its answer.
#[derive(Debug)]
struct Pending {
    request: Vec<u8>,
    response: Vec<u8>,
    fields: Vec<(String, String)>,
    summary: String,
    lifetime: Lifetime,
    request_ts: u64,
    response_ts: u64,
    expect: Expect,
}

impl Pending {
    fn into_unit(self) -> Unit {
        Unit {
            request: self.request,
            response: self.response,
            fields: self.fields,
            summary: self.summary,
            lifetime: self.lifetime,
            request_ts_ns: self.request_ts,
            response_ts_ns: self.response_ts,
        }
    }
}

/// One MySQL connection: client and server bytes in, [`Unit`]s out (see the module docs).
#[derive(Debug)]
pub struct MySqlConnection {
    mode: Mode,
    client: Framer,
    server: Framer,
    phase: Phase,
    /// The SSLRequest, kept to lead the handshake response's request bytes.
    ssl_request: Option<Packet>,
    client_capabilities: u32,
    /// From the greeting; `None` until it is seen (always, in [`Mode::RequestsOnly`]).
    server_capabilities: Option<u32>,
    greeting_seen: bool,
    /// [`Mode::Both`]: the request whose answer is being read.
    current: Option<Pending>,
    statements: Statements,
    ready: VecDeque<Unit>,
    error: Option<DependencyError>,
    /// Nothing more is parsed: an error, a gap, the close, or a greeting that refused us.
    stopped: bool,
}

impl MySqlConnection {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            client: Framer::new(),
            server: Framer::new(),
            phase: Phase::Handshake,
            ssl_request: None,
            client_capabilities: 0,
            server_capabilities: None,
            greeting_seen: false,
            current: None,
            statements: Statements::default(),
            ready: VecDeque::new(),
            error: None,
            stopped: false,
        }
    }

    fn fail(&mut self, error: DependencyError) {
        self.error = Some(error);
        self.stopped = true;
        self.current = None;
    }

    fn drive(&mut self) {
        while !self.stopped {
            let step = match self.mode {
                Mode::Both => self.step_both(),
                Mode::RequestsOnly => self.step_requests(),
            };
            match step {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => self.fail(error),
            }
        }
    }

    /// Mock-server side: every request is ready as soon as it is complete.
    fn step_requests(&mut self) -> Result<bool, DependencyError> {
        let Some(pending) = self.next_request()? else {
            return Ok(false);
        };
        self.ready.push_back(pending.into_unit());
        Ok(true)
    }

    /// Recording side: one request at a time, completed by the server's packets.
    fn step_both(&mut self) -> Result<bool, DependencyError> {
        if self.current.is_none() {
            if !self.greeting_seen {
                self.current = Some(Pending {
                    request: Vec::new(),
                    response: Vec::new(),
                    fields: vec![("type".to_owned(), "greeting".to_owned())],
                    summary: "greeting".to_owned(),
                    lifetime: Lifetime::Session,
                    request_ts: 0,
                    response_ts: 0,
                    expect: Expect::Greeting,
                });
            } else {
                if self.phase == Phase::AfterSsl && is_tls(self.server.peek()) {
                    return Err(tls_error());
                }
                let Some(pending) = self.next_request()? else {
                    return Ok(false);
                };
                if matches!(pending.expect, Expect::None) {
                    self.ready.push_back(pending.into_unit());
                    return Ok(true);
                }
                self.current = Some(pending);
            }
        }
        let Some(packet) = self.server.next_packet()? else {
            return Ok(false);
        };
        let Some(mut pending) = self.current.take() else {
            return Ok(false);
        };
        if pending.response.len() + packet.raw.len() > MAX_PAYLOAD {
            return Err(DependencyError::TooLarge {
                protocol: PROTOCOL,
                limit: MAX_PAYLOAD,
            });
        }
        pending.response.extend_from_slice(&packet.raw);
        pending.response_ts = packet.last_ts;
        let step = if matches!(pending.expect, Expect::Greeting) {
            pending.request_ts = packet.first_ts;
            self.on_greeting(&mut pending, &packet.payload)?;
            Step::Done
        } else {
            let framing = self.framing();
            pending
                .expect
                .step(&packet.payload, framing, &mut self.statements)?
        };
        match step {
            Step::Done => self.ready.push_back(pending.into_unit()),
            Step::More => self.current = Some(pending),
        }
        Ok(true)
    }

    fn on_greeting(
        &mut self,
        pending: &mut Pending,
        payload: &[u8],
    ) -> Result<(), DependencyError> {
        self.greeting_seen = true;
        if payload.first() == Some(&0xFF) {
            // Refused before the handshake ("too many connections", a blocked host).
            pending.summary = format!("greeting ERR {}", error_text(payload));
            self.stopped = true;
            return Ok(());
        }
        let greeting = handshake::parse_greeting(payload)?;
        self.server_capabilities = Some(greeting.capabilities);
        pending.summary = format!(
            "greeting {} {}",
            greeting.server_version, greeting.auth_plugin
        )
        .trim_end()
        .to_owned();
        Ok(())
    }

    /// Capabilities in effect: the client's, narrowed by the server's when they are known.
    fn framing(&self) -> Framing {
        let agreed = self.client_capabilities & self.server_capabilities.unwrap_or(u32::MAX);
        Framing {
            deprecate_eof: agreed & caps::DEPRECATE_EOF != 0,
            optional_metadata: agreed & caps::OPTIONAL_RESULTSET_METADATA != 0,
        }
    }

    /// The next complete client message, understood from the client's side alone.
    fn next_request(&mut self) -> Result<Option<Pending>, DependencyError> {
        loop {
            if self.phase == Phase::AfterSsl {
                let peek = self.client.peek();
                if is_tls(peek) {
                    return Err(tls_error());
                }
                if peek == [0x16] {
                    // Wait for the byte that tells TLS from a packet.
                    return Ok(None);
                }
            }
            let Some(packet) = self.client.next_packet()? else {
                return Ok(None);
            };
            match self.phase {
                Phase::Handshake if handshake::is_ssl_request(&packet.payload) => {
                    self.ssl_request = Some(packet);
                    self.phase = Phase::AfterSsl;
                }
                Phase::Handshake | Phase::AfterSsl => return self.handshake(packet).map(Some),
                Phase::Auth | Phase::Command => return self.command(packet).map(Some),
            }
        }
    }

    fn handshake(&mut self, packet: Packet) -> Result<Pending, DependencyError> {
        let response = handshake::parse_handshake_response(&packet.payload)?;
        if response.capabilities & (caps::COMPRESS | caps::ZSTD_COMPRESSION) != 0 {
            return Err(malformed(
                "the client chose the compressed protocol, which is not supported",
            ));
        }
        self.client_capabilities = response.capabilities;
        self.phase = Phase::Auth;
        let (mut request, request_ts) = match self.ssl_request.take() {
            Some(ssl) => (ssl.raw, ssl.first_ts),
            None => (Vec::new(), packet.first_ts),
        };
        request.extend_from_slice(&packet.raw);
        Ok(Pending {
            request,
            response: Vec::new(),
            fields: response.fields(),
            summary: response.summary(),
            lifetime: Lifetime::Session,
            request_ts,
            response_ts: packet.last_ts,
            expect: Expect::Auth,
        })
    }

    fn command(&mut self, packet: Packet) -> Result<Pending, DependencyError> {
        if packet.seq != 0 {
            if self.phase != Phase::Auth {
                return Err(malformed(format!(
                    "client packet with sequence id {} outside authentication \
                     (LOCAL INFILE data is not supported)",
                    packet.seq
                )));
            }
            // An answer to an auth switch or to more auth data.
            return Ok(Pending {
                fields: vec![
                    ("type".to_owned(), "auth_data".to_owned()),
                    ("payload".to_owned(), b64(&packet.payload)),
                ],
                summary: format!("auth data ({} bytes)", packet.payload.len()),
                lifetime: Lifetime::Session,
                request_ts: packet.first_ts,
                response_ts: packet.last_ts,
                request: packet.raw,
                response: Vec::new(),
                expect: Expect::Auth,
            });
        }
        let request = command::classify(
            &packet.payload,
            self.client_capabilities,
            &mut self.statements,
        )?;
        self.phase = if packet.payload.first() == Some(&COM_CHANGE_USER) {
            Phase::Auth
        } else {
            Phase::Command
        };
        Ok(Pending {
            request: packet.raw,
            response: Vec::new(),
            fields: request.fields,
            summary: request.summary,
            lifetime: request.lifetime,
            request_ts: packet.first_ts,
            response_ts: packet.last_ts,
            expect: request.expect,
        })
    }
}

/// A TLS handshake record (0x16, version 3.x) where a MySQL packet should be.
fn is_tls(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x16, 0x03])
}

fn tls_error() -> DependencyError {
    malformed("the connection switched to TLS after an SSLRequest; encrypted MySQL is not parsed")
}

/// `code message` of an ERR packet, for summaries.
fn error_text(payload: &[u8]) -> String {
    let code = match payload.get(1..3) {
        Some(&[low, high]) => u16::from_le_bytes([low, high]),
        _ => 0,
    };
    let message = payload.get(3..).unwrap_or_default();
    // 4.1 form: '#' and a five-character SQL state before the message.
    let message = match message.first() {
        Some(b'#') => message.get(6..).unwrap_or_default(),
        _ => message,
    };
    format!("{code} {}", String::from_utf8_lossy(message))
}

impl DependencyParser for MySqlConnection {
    fn feed(&mut self, side: Side, bytes: &[u8], ts_ns: u64) {
        if self.stopped || bytes.is_empty() {
            return;
        }
        match (side, self.mode) {
            (Side::Client, _) => self.client.push(bytes, ts_ns),
            (Side::Server, Mode::Both) => self.server.push(bytes, ts_ns),
            // The mock server's own answers are not parsed.
            (Side::Server, Mode::RequestsOnly) => return,
        }
        self.drive();
    }

    fn gap(&mut self, _side: Side, lost: u64) {
        if self.stopped || lost == 0 {
            return;
        }
        // Packets have no markers to resynchronise on.
        self.fail(DependencyError::Gap);
    }

    fn close(&mut self) {
        // Packets are length-framed: the close completes nothing, an unfinished answer is lost.
        self.stopped = true;
        self.current = None;
    }

    fn next_unit(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    fn error(&self) -> Option<&DependencyError> {
        self.error.as_ref()
    }
}
