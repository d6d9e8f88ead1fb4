//! Pairing: client requests and the server messages that answer them, in order.
//!
//! The client side frames messages and collects them into [`Request`]s. In [`Mode::Both`] each
//! complete request waits in `pending` while the server side appends what answers it; the
//! server's framing depends on the request (one negotiation byte, or typed messages), so
//! server bytes are only parsed while some request waits for them and are held otherwise.
//! Answers come strictly in request order, so `answering` is the one request being answered.
//!
//! When the client side fails (malformed, gap), the requests already complete still get their
//! answers; when the server side fails, nothing more can be paired and everything stops.

use std::collections::VecDeque;

use super::messages::{self, Frontend, MAX_STARTUP_SIZE, PROTOCOL, Untyped};
use super::request::{self, Batch, BatchEnd, CopySegment, Expect, Request};
use super::stream::Stream;
use super::{MAX_HELD_BYTES, MAX_MESSAGE_SIZE};
use crate::dependency::{DependencyError, DependencyParser, Mode, Side, Unit};

/// Bounds that keep one connection's memory fixed whatever the peers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Largest message length (type byte excluded).
    pub(super) max_message: usize,
    /// Bytes held per side beyond one message.
    pub(super) max_held: usize,
    /// Requests waiting for their answer.
    pub(super) max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: MAX_MESSAGE_SIZE,
            max_held: MAX_HELD_BYTES,
            max_pending: 4096,
        }
    }
}

/// Feeds are parsed in slices of this size, so one huge feed is never buffered whole.
const FEED_SLICE: usize = 64 * 1024;

/// Backend messages that are the final answer to one Parse, Bind, Describe, Execute or Close.
const FINAL_ANSWERS: &[u8] = b"123TnCIs";

/// A complete request and what the server answered so far.
#[derive(Debug)]
struct Pending {
    request: Request,
    response: Vec<u8>,
    response_ts: Option<u64>,
    response_done: bool,
    /// CopyInResponses the server sent, and client copy segments that joined the request: the
    /// unit is complete only when the client finished every copy the server started.
    copies_started: usize,
    copies_ended: usize,
}

impl Pending {
    fn into_unit(self) -> Unit {
        unit(self.request, self.response, self.response_ts)
    }
}

fn unit(request: Request, response: Vec<u8>, response_ts: Option<u64>) -> Unit {
    Unit {
        response_ts_ns: response_ts.unwrap_or(request.last_ts),
        request_ts_ns: request.first_ts,
        request: request.bytes,
        response,
        fields: request.fields,
        summary: request.summary,
        lifetime: request.lifetime,
    }
}

fn malformed(reason: impl Into<String>) -> DependencyError {
    DependencyError::Malformed {
        protocol: PROTOCOL,
        reason: reason.into(),
    }
}

fn too_large(limit: usize) -> DependencyError {
    DependencyError::TooLarge {
        protocol: PROTOCOL,
        limit,
    }
}

/// Encryption was negotiated: the same error whichever side shows it first.
fn tls_error() -> DependencyError {
    malformed(
        "encryption negotiated (TLS or GSS after SSLRequest/GSSENCRequest): the rest cannot be \
         parsed; the replay side declines SSL",
    )
}

/// Length of the typed message at the start of `data` (type byte included), once it is all
/// there; the type and length are checked as soon as they arrive.
fn frame_len(
    data: &[u8],
    known: fn(u8) -> bool,
    who: &str,
    max: usize,
) -> Result<Option<usize>, DependencyError> {
    let Some(&tag) = data.first() else {
        return Ok(None);
    };
    if !known(tag) {
        return Err(malformed(format!("unknown {who} message type {tag:#04x}")));
    }
    let Some(len) = messages::be_i32(data.get(1..).unwrap_or_default()) else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len >= 4)
        .ok_or_else(|| malformed(format!("{who} message length {len}")))?;
    if len > max {
        return Err(too_large(max));
    }
    Ok((data.len() > len).then_some(len + 1))
}

/// PostgreSQL v3 parser for one connection; see [the module docs](super) for the rules.
#[derive(Debug)]
pub struct PostgresConnection {
    mode: Mode,
    limits: Limits,
    client: Stream,
    server: Stream,
    /// The next client message is a start-up style one, without a type byte.
    client_untyped: bool,
    client_ended: bool,
    server_ended: bool,
    closed: bool,
    /// Extended-query messages before their Sync or Flush.
    batch: Option<Batch>,
    /// Client COPY messages before their end.
    copy: Option<CopySegment>,
    /// The latest request was an extended batch (a COPY it starts ends with an extra Sync).
    last_extended: bool,
    pending: VecDeque<Pending>,
    /// Index in `pending` of the request being answered.
    answering: usize,
    pending_request_bytes: usize,
    pending_response_bytes: usize,
    /// The server hit an error in extended mode and ignores messages up to the next Sync.
    discarding: bool,
    ready: VecDeque<Unit>,
    error: Option<DependencyError>,
}

impl PostgresConnection {
    pub fn new(mode: Mode) -> Self {
        Self::with_limits(mode, Limits::default())
    }

    pub(super) fn with_limits(mode: Mode, limits: Limits) -> Self {
        Self {
            mode,
            limits,
            client: Stream::default(),
            server: Stream::default(),
            client_untyped: true,
            client_ended: false,
            server_ended: false,
            closed: false,
            batch: None,
            copy: None,
            last_extended: false,
            pending: VecDeque::new(),
            answering: 0,
            pending_request_bytes: 0,
            pending_response_bytes: 0,
            discarding: false,
            ready: VecDeque::new(),
            error: None,
        }
    }

    fn pump_client(&mut self) {
        while !self.client_ended {
            let step = if self.client_untyped {
                self.untyped_step()
            } else {
                self.typed_step()
            };
            match step {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => self.fail_client(error),
            }
        }
    }

    /// Frames one start-up style packet; `Ok(false)` when more bytes are needed.
    fn untyped_step(&mut self) -> Result<bool, DependencyError> {
        let data = self.client.data();
        if let [0x16, 0x03, ..] = data {
            // A TLS record: after an accepted SSLRequest, or direct SSL negotiation.
            return Err(tls_error());
        }
        let Some(len) = messages::be_i32(data) else {
            return Ok(false);
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len >= 8)
            .ok_or_else(|| malformed(format!("start-up packet length {len}")))?;
        if len > MAX_STARTUP_SIZE {
            return Err(too_large(MAX_STARTUP_SIZE));
        }
        if data.len() < len {
            return Ok(false);
        }
        let (raw, first_ts, last_ts) = self.client.take(len);
        let message =
            messages::decode_untyped(raw.get(4..).unwrap_or_default()).map_err(malformed)?;
        if matches!(message, Untyped::Startup { .. }) {
            self.client_untyped = false;
        }
        self.submit(request::untyped(message, raw, first_ts, last_ts));
        Ok(true)
    }

    /// Frames one typed client message; `Ok(false)` when more bytes are needed.
    fn typed_step(&mut self) -> Result<bool, DependencyError> {
        let max = self.limits.max_message;
        let Some(total) = frame_len(
            self.client.data(),
            messages::is_frontend_type,
            "frontend",
            max,
        )?
        else {
            return Ok(false);
        };
        let (raw, first_ts, last_ts) = self.client.take(total);
        let tag = raw.first().copied().unwrap_or_default();
        let message = messages::decode_frontend(tag, raw.get(5..).unwrap_or_default())
            .map_err(|reason| malformed(format!("{}: {reason}", char::from(tag))))?;
        self.on_client_message(raw, message, first_ts, last_ts);
        Ok(true)
    }

    fn on_client_message(&mut self, raw: Vec<u8>, message: Frontend, first_ts: u64, last_ts: u64) {
        if let Some(segment) = self.copy.as_mut() {
            let absorbed = if segment.ended {
                // Only the Sync libpq sends after an extended COPY still belongs to it.
                message == Frontend::Sync
            } else {
                // The server ignores Sync and Flush during copy-in.
                matches!(
                    message,
                    Frontend::CopyData
                        | Frontend::CopyDone
                        | Frontend::CopyFail
                        | Frontend::Sync
                        | Frontend::Flush
                )
            };
            if absorbed {
                let was_ended = segment.ended;
                segment.push(&raw, &message, last_ts);
                if was_ended || (segment.ended && !segment.extended) {
                    self.finish_copy();
                }
                return;
            }
            // Anything else ends the copy as it is.
            self.finish_copy();
        }
        match message {
            Frontend::CopyData | Frontend::CopyDone | Frontend::CopyFail => {
                if let Some(batch) = self.batch.as_mut() {
                    batch.push(&raw, &message, last_ts);
                    return;
                }
                let mut segment = CopySegment::new(first_ts, self.last_extended);
                segment.push(&raw, &message, last_ts);
                let done = segment.ended && !segment.extended;
                self.copy = Some(segment);
                if done {
                    self.finish_copy();
                }
            }
            Frontend::Parse { .. }
            | Frontend::Bind { .. }
            | Frontend::Describe { .. }
            | Frontend::Execute { .. }
            | Frontend::Close { .. } => self
                .batch
                .get_or_insert_with(|| Batch::new(first_ts))
                .push(&raw, &message, last_ts),
            Frontend::Sync | Frontend::Flush => {
                let end = if message == Frontend::Sync {
                    BatchEnd::Sync
                } else {
                    BatchEnd::Flush
                };
                let mut batch = self.batch.take().unwrap_or_else(|| Batch::new(first_ts));
                batch.push(&raw, &message, last_ts);
                self.submit(batch.finish(end));
            }
            Frontend::Query(ref sql) => match self.batch.take() {
                // Its ReadyForQuery also ends the answers to the unsynced batch before it.
                Some(mut batch) => {
                    batch.push(&raw, &message, last_ts);
                    self.submit(batch.finish(BatchEnd::Ready));
                }
                None => self.submit(request::simple_query(sql, raw, first_ts, last_ts)),
            },
            Frontend::FunctionCall { oid, ref args } => match self.batch.take() {
                Some(mut batch) => {
                    batch.push(&raw, &message, last_ts);
                    self.submit(batch.finish(BatchEnd::Ready));
                }
                None => self.submit(request::function_call(oid, args, raw, first_ts, last_ts)),
            },
            Frontend::Terminate => {
                // A batch never synced is never answered.
                self.batch = None;
                self.submit(request::terminate(raw, first_ts, last_ts));
            }
            Frontend::Password(ref body) => {
                self.batch = None;
                self.submit(request::password(body, raw, first_ts, last_ts));
            }
        }
    }

    /// Joins the finished copy segment to the request that started the COPY (the latest one
    /// waiting), or makes it a request of its own when there is none.
    fn finish_copy(&mut self) {
        let Some(segment) = self.copy.take() else {
            return;
        };
        if self.mode == Mode::Both
            && let Some(back) = self.pending.back_mut()
        {
            self.pending_request_bytes += segment.bytes.len();
            back.request.bytes.extend_from_slice(&segment.bytes);
            back.request.last_ts = segment.last_ts;
            back.copies_ended += 1;
            self.pump_server();
        } else {
            self.submit(segment.into_request());
        }
    }

    fn submit(&mut self, request: Request) {
        if self.client_ended {
            return;
        }
        self.last_extended = request.extended;
        if self.mode == Mode::RequestsOnly {
            self.ready.push_back(unit(request, Vec::new(), None));
            return;
        }
        let limit = self.limits.max_pending;
        if self.pending.len() >= limit {
            self.fail_client(malformed(format!(
                "more than {limit} requests waiting for an answer"
            )));
            return;
        }
        self.pending_request_bytes += request.bytes.len();
        self.pending.push_back(Pending {
            request,
            response: Vec::new(),
            response_ts: None,
            response_done: false,
            copies_started: 0,
            copies_ended: 0,
        });
        self.pump_server();
    }

    fn pump_server(&mut self) {
        if self.mode == Mode::RequestsOnly {
            return;
        }
        loop {
            self.settle();
            let Some(target) = self.pending.get(self.answering) else {
                // Nothing waits for an answer: hold the bytes.
                break;
            };
            if self.server_ended {
                break;
            }
            let step = if target.request.expect == Expect::Negotiation {
                self.negotiation_step()
            } else {
                self.server_step()
            };
            match step {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    self.fail_server(error);
                    break;
                }
            }
        }
    }

    /// The one-byte answer to SSLRequest or GSSENCRequest.
    fn negotiation_step(&mut self) -> Result<bool, DependencyError> {
        let Some(&answer) = self.server.data().first() else {
            return Ok(false);
        };
        if !matches!(answer, b'N' | b'S' | b'G') {
            return Err(malformed(format!(
                "answer {answer:#04x} to SSLRequest/GSSENCRequest"
            )));
        }
        let (raw, _, ts) = self.server.take(1);
        let Some(pending) = self.pending.get_mut(self.answering) else {
            return Ok(false);
        };
        pending.response = raw;
        pending.response_ts = Some(ts);
        pending.response_done = true;
        pending.request.summary = format!("{} -> {}", pending.request.summary, char::from(answer));
        self.pending_response_bytes += 1;
        self.answering += 1;
        if answer == b'N' {
            return Ok(true);
        }
        // Yield the negotiation itself before giving up on what follows.
        self.settle();
        Err(tls_error())
    }

    /// Frames one backend message and adds it to the answer being collected.
    fn server_step(&mut self) -> Result<bool, DependencyError> {
        let max = self.limits.max_message;
        let Some(total) = frame_len(
            self.server.data(),
            messages::is_backend_type,
            "backend",
            max,
        )?
        else {
            return Ok(false);
        };
        let (raw, _, ts) = self.server.take(total);
        let tag = raw.first().copied().unwrap_or_default();
        let auth = messages::check_backend(tag, raw.get(5..).unwrap_or_default())
            .map_err(|reason| malformed(format!("{}: {reason}", char::from(tag))))?;
        let Some(pending) = self.pending.get_mut(self.answering) else {
            return Ok(false);
        };
        self.pending_response_bytes += raw.len();
        pending.response.extend_from_slice(&raw);
        pending.response_ts = Some(ts);
        if tag == b'G' {
            pending.copies_started += 1;
        }
        let done = match &mut pending.request.expect {
            Expect::Ready => tag == b'Z',
            Expect::Auth => {
                tag == b'Z' || tag == b'E' || auth.is_some_and(messages::auth_waits_for_client)
            }
            Expect::Answers(left) => {
                if FINAL_ANSWERS.contains(&tag) {
                    *left = left.saturating_sub(1);
                }
                // After an error the server skips everything up to Sync.
                tag == b'E' || *left == 0
            }
            // Never the target of typed messages; close the answer rather than misattribute.
            Expect::Negotiation | Expect::Nothing => true,
        };
        if done {
            pending.response_done = true;
            self.answering += 1;
        }
        match tag {
            b'E' => self.discarding = true,
            b'Z' => self.discarding = false,
            _ => {}
        }
        Ok(true)
    }

    /// Completes requests that get no answer once it is their turn, moves finished units to
    /// `ready` in order, and ends the server side once nothing can be answered any more.
    fn settle(&mut self) {
        while let Some(pending) = self.pending.get_mut(self.answering) {
            let silent = match pending.request.expect {
                Expect::Nothing => true,
                Expect::Answers(left) => left == 0 || self.discarding,
                Expect::Negotiation | Expect::Auth | Expect::Ready => false,
            };
            if !silent {
                break;
            }
            pending.response_done = true;
            self.answering += 1;
        }
        while let Some(front) = self.pending.front() {
            let copy_open = front.copies_started > front.copies_ended && !self.client_ended;
            if !front.response_done || copy_open {
                break;
            }
            let Some(done) = self.pending.pop_front() else {
                break;
            };
            self.answering = self.answering.saturating_sub(1);
            self.pending_request_bytes = self
                .pending_request_bytes
                .saturating_sub(done.request.bytes.len());
            self.pending_response_bytes = self
                .pending_response_bytes
                .saturating_sub(done.response.len());
            self.ready.push_back(done.into_unit());
        }
        if self.client_ended && self.pending.is_empty() && !self.server_ended {
            self.server_ended = true;
            self.server.clear();
        }
    }

    fn check_held(&mut self) {
        let limit = self.limits.max_held + self.limits.max_message;
        let client = self.client.len()
            + self.pending_request_bytes
            + self.batch.as_ref().map_or(0, |batch| batch.bytes.len())
            + self.copy.as_ref().map_or(0, |copy| copy.bytes.len());
        if !self.client_ended && client > limit {
            self.fail_client(too_large(limit));
        }
        let server = self.server.len() + self.pending_response_bytes;
        if !self.server_ended && server > limit {
            self.fail_server(too_large(limit));
        }
    }

    /// The client side cannot be trusted any more; requests already complete are still
    /// answered.
    fn fail_client(&mut self, error: DependencyError) {
        self.error = Some(error);
        self.client_ended = true;
        self.client.clear();
        self.batch = None;
        self.copy = None;
        self.settle();
    }

    /// Nothing can be paired any more: stop both sides.
    fn fail_server(&mut self, error: DependencyError) {
        self.error = Some(error);
        self.client_ended = true;
        self.server_ended = true;
        self.client.clear();
        self.server.clear();
        self.batch = None;
        self.copy = None;
        self.pending.clear();
        self.answering = 0;
        self.pending_request_bytes = 0;
        self.pending_response_bytes = 0;
    }
}

impl DependencyParser for PostgresConnection {
    fn feed(&mut self, side: Side, bytes: &[u8], ts_ns: u64) {
        if self.closed {
            return;
        }
        for piece in bytes.chunks(FEED_SLICE) {
            match side {
                Side::Client => {
                    if self.client_ended {
                        return;
                    }
                    self.client.push(piece, ts_ns);
                    self.pump_client();
                }
                Side::Server => {
                    if self.server_ended || self.mode == Mode::RequestsOnly {
                        return;
                    }
                    self.server.push(piece, ts_ns);
                    self.pump_server();
                }
            }
            self.check_held();
        }
    }

    fn gap(&mut self, side: Side, lost: u64) {
        if lost == 0 || self.closed {
            return;
        }
        match side {
            Side::Client if !self.client_ended => self.fail_client(DependencyError::Gap),
            Side::Server if !self.server_ended && self.mode == Mode::Both => {
                self.fail_server(DependencyError::Gap);
            }
            Side::Client | Side::Server => {}
        }
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.client_ended && self.copy.as_ref().is_some_and(|copy| copy.ended) {
            // An extended COPY whose trailing Sync never came is complete as it is.
            self.finish_copy();
        }
        // A batch without Sync or Flush, or a copy without its end, was never answered.
        self.batch = None;
        self.copy = None;
        self.client_ended = true;
        self.client.clear();
        self.settle();
        // What the server sent before the connection closed is all the answer there is.
        while let Some(pending) = self.pending.pop_front() {
            let silent = matches!(pending.request.expect, Expect::Nothing | Expect::Answers(0));
            if !pending.response.is_empty() || silent {
                self.ready.push_back(pending.into_unit());
            }
        }
        self.answering = 0;
        self.pending_request_bytes = 0;
        self.pending_response_bytes = 0;
        self.server_ended = true;
        self.server.clear();
    }

    fn next_unit(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    fn error(&self) -> Option<&DependencyError> {
        self.error.as_ref()
    }
}
