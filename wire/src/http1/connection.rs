//! Pairing: requests and final responses of one connection, matched in order.
//!
//! HTTP/1 has no request ids: the n-th final response answers the n-th request. Pairing is
//! therefore only as good as the count of messages on both sides, and everything here is about
//! never losing that count silently. Each request gets a slot when its head is parsed; the
//! response side fills the slots in order. A slot is emitted when both halves are complete.
//!
//! When a direction cannot be trusted any more (malformed framing, or bytes lost inside a head
//! or between messages), it is abandoned. If requests are lost, the responses still pair with
//! the requests already known, then stop. If responses are lost, nothing can be paired after
//! them. Bytes lost inside a body of known length are skipped instead: the boundary is still
//! known, so only that exchange is dropped and later ones still pair.

use std::collections::VecDeque;

use super::head::{self, Coding, Framing, Head, RequestKind, StartLine};
use super::parser::{Event, Finish, Message, Parser};
use super::{Direction, Exchange, Limits, ParseError, Request, Response, Stats};

/// A request waiting for (or paired with) its response.
#[derive(Debug)]
struct Slot {
    kind: RequestKind,
    /// The request may switch protocols (CONNECT or Upgrade): its response decides whether
    /// the bytes after it are HTTP.
    may_switch: bool,
    request: RequestState,
    response: Option<Response>,
    /// A final response head for this slot was seen.
    answered: bool,
    /// The response switches the connection to another protocol.
    tunnel: bool,
    /// A gap cut bytes out of the request or the response body.
    damaged: bool,
}

#[derive(Debug)]
enum RequestState {
    InFlight,
    Done(Request),
    /// Its direction was given up before the request was complete.
    Abandoned,
}

/// Why a direction stopped being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Error,
    Gap,
    /// The other side ended, so nothing more from this side could be paired.
    NoPeer,
    Tunnel,
    Closed,
}

/// What a direction waits for while its bytes are held back.
#[derive(Debug)]
enum Wait {
    No,
    /// A final response head whose request has not been seen yet.
    Request(Head),
    /// Requests after a CONNECT or Upgrade request: they are HTTP only if the answer is not a
    /// protocol switch.
    SwitchDecision,
}

#[derive(Debug)]
struct Side {
    parser: Parser,
    wait: Wait,
    /// Bytes held back while waiting, with the time each piece arrived.
    held: VecDeque<(u64, Vec<u8>)>,
    held_len: usize,
    ended: Option<End>,
}

impl Side {
    fn new(direction: Direction, limits: &Limits) -> Self {
        Self {
            parser: Parser::new(direction, limits.clone()),
            wait: Wait::No,
            held: VecDeque::new(),
            held_len: 0,
            ended: None,
        }
    }

    fn waiting(&self) -> bool {
        !matches!(self.wait, Wait::No)
    }

    /// Bytes for this side must queue behind held ones, or wait themselves.
    fn must_hold(&self) -> bool {
        self.waiting() || !self.held.is_empty()
    }
}

/// One TCP connection carrying HTTP/1.x: both byte streams in, [`Exchange`]s out.
///
/// The two directions may be fed in any interleaving; bytes that arrive before what they
/// depend on (a response before its request) are held back within
/// [`Limits::max_reorder_bytes`].
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    request: Side,
    response: Side,
    slots: VecDeque<Slot>,
    /// Index in `slots` of the request the next (or current) final response answers.
    answering: usize,
    ready: VecDeque<Exchange>,
    stats: Stats,
    last_error: Option<ParseError>,
    closed: bool,
}

impl Connection {
    pub fn new(limits: Limits) -> Self {
        Self {
            request: Side::new(Direction::Request, &limits),
            response: Side::new(Direction::Response, &limits),
            limits,
            slots: VecDeque::new(),
            answering: 0,
            ready: VecDeque::new(),
            stats: Stats::default(),
            last_error: None,
            closed: false,
        }
    }

    /// Bytes of one direction, in stream order, and the time they were captured.
    pub fn feed(&mut self, direction: Direction, bytes: &[u8], ts_ns: u64) {
        if self.closed || bytes.is_empty() || self.side(direction).ended.is_some() {
            return;
        }
        if self.side(direction).must_hold() {
            self.hold(direction, bytes, ts_ns, false);
        } else {
            self.drive(direction, bytes, ts_ns);
        }
        self.release();
    }

    /// `lost_bytes` of one direction never reached user space; the next `feed` for it starts
    /// after them.
    ///
    /// Inside a body of known length the loss is skipped and only that exchange is dropped;
    /// anywhere else the direction is abandoned (see the module docs for what still pairs).
    pub fn gap(&mut self, direction: Direction, lost_bytes: u64) {
        self.stats.gaps += 1;
        if self.closed || lost_bytes == 0 || self.side(direction).ended.is_some() {
            return;
        }
        let side = self.side_mut(direction);
        if side.must_hold() || !side.parser.skip(lost_bytes) {
            self.end(direction, End::Gap);
        } else {
            // The skip may have reached the end of the body.
            self.drive(direction, &[], 0);
        }
        self.release();
    }

    /// Both streams ended. Completes a response delimited by the close; whatever else is
    /// unfinished is counted and dropped. Later calls do nothing.
    ///
    /// The close time is not needed: a message keeps the time of its first byte.
    pub fn close(&mut self, _ts_ns: u64) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.response.ended.is_none() {
            if let Wait::Request(_) = self.response.wait {
                self.fail(Direction::Response, ParseError::ResponseWithoutRequest);
            } else {
                match self.response.parser.finish() {
                    Finish::Nothing => {}
                    Finish::Complete(message) => self.on_done(Direction::Response, message),
                    Finish::Incomplete(_) => self.stats.incomplete_messages += 1,
                }
            }
        }
        if self.request.ended.is_none() && !self.request.waiting() {
            match self.request.parser.finish() {
                Finish::Nothing | Finish::Complete(_) => {}
                Finish::Incomplete(partial) => {
                    self.stats.incomplete_messages += 1;
                    // A response that came before the request was fully sent (say a 413)
                    // still answers it; the request is recorded as far as it got.
                    if let Some(message) = partial
                        && let Some(slot) = self.slots.back_mut()
                        && matches!(slot.request, RequestState::InFlight)
                        && slot.response.is_some()
                    {
                        slot.damaged |= message.damaged;
                        slot.request = RequestState::Done(into_request(message));
                    }
                }
            }
        }
        self.emit();
        for direction in [Direction::Request, Direction::Response] {
            self.end(direction, End::Closed);
        }
        self.stats.unpaired_requests += self.slots.len() as u64;
        self.slots.clear();
        self.answering = 0;
    }

    /// The next complete exchange, in the order the requests were sent.
    pub fn next_exchange(&mut self) -> Option<Exchange> {
        self.ready.pop_front()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The latest parse error, for diagnostics.
    pub fn last_error(&self) -> Option<ParseError> {
        self.last_error
    }

    fn side(&self, direction: Direction) -> &Side {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    fn side_mut(&mut self, direction: Direction) -> &mut Side {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// Queues bytes behind (or, for the unread rest of a held piece, in front of) the held
    /// ones.
    fn hold(&mut self, direction: Direction, bytes: &[u8], ts_ns: u64, front: bool) {
        let limit = self.limits.max_reorder_bytes;
        let side = self.side_mut(direction);
        if side.held_len.saturating_add(bytes.len()) > limit {
            self.fail(direction, ParseError::ReorderBufferFull { limit });
            return;
        }
        side.held_len += bytes.len();
        if front {
            side.held.push_front((ts_ns, bytes.to_vec()));
        } else {
            side.held.push_back((ts_ns, bytes.to_vec()));
        }
    }

    /// Replays held bytes of sides that no longer wait, until nothing moves. Runs only at
    /// the top of a public call, so a side is never driven from inside its own drive.
    fn release(&mut self) {
        loop {
            let mut moved = false;
            for direction in [Direction::Request, Direction::Response] {
                loop {
                    let side = self.side_mut(direction);
                    if side.ended.is_some() || side.waiting() {
                        break;
                    }
                    let Some((ts_ns, bytes)) = side.held.pop_front() else {
                        break;
                    };
                    side.held_len = side.held_len.saturating_sub(bytes.len());
                    self.drive(direction, &bytes, ts_ns);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Parses `input` on one side until it is used up, the side waits (the rest is held) or
    /// the side ends.
    fn drive(&mut self, direction: Direction, mut input: &[u8], ts_ns: u64) {
        loop {
            let side = self.side_mut(direction);
            if side.ended.is_some() {
                return;
            }
            if side.waiting() {
                if !input.is_empty() {
                    self.hold(direction, input, ts_ns, true);
                }
                return;
            }
            let (taken, event) = side.parser.advance(input, ts_ns);
            input = input.get(taken..).unwrap_or_default();
            match event {
                Event::NeedMore => return,
                Event::Head(head) => self.on_head(direction, head),
                Event::Done(message) => self.on_done(direction, message),
                Event::Error(error) => {
                    self.fail(direction, error);
                    return;
                }
            }
        }
    }

    fn on_head(&mut self, direction: Direction, head: Head) {
        match direction {
            Direction::Request => self.on_request_head(head),
            Direction::Response => self.on_response_head(head),
        }
    }

    fn on_request_head(&mut self, head: Head) {
        if self.response.ended.is_some() {
            // No response could ever be paired with it.
            self.end(Direction::Request, End::NoPeer);
            return;
        }
        let limit = self.limits.max_pending_requests;
        if self.slots.len() >= limit {
            self.fail(
                Direction::Request,
                ParseError::TooManyPendingRequests { limit },
            );
            return;
        }
        let framing = match head::request_framing(&head) {
            Ok(framing) => framing,
            Err(error) => {
                self.fail(Direction::Request, error);
                return;
            }
        };
        let method = head.method().unwrap_or_default();
        let kind = RequestKind {
            head: method == "HEAD",
            connect: method == "CONNECT",
        };
        self.slots.push_back(Slot {
            kind,
            may_switch: kind.connect || head.wants_upgrade(),
            request: RequestState::InFlight,
            response: None,
            answered: false,
            tunnel: false,
            damaged: false,
        });
        let coding = head.coding();
        self.request.parser.start_body(head, framing, coding);
        if matches!(self.response.wait, Wait::Request(_))
            && let Wait::Request(response_head) =
                std::mem::replace(&mut self.response.wait, Wait::No)
        {
            self.begin_response(response_head);
            // None of its body may be held (204, 304, HEAD, Content-Length: 0), so nothing
            // else would drive it to completion: queue an empty piece for `release`.
            if self.response.ended.is_none() {
                self.response.held.push_back((0, Vec::new()));
            }
        }
    }

    fn on_response_head(&mut self, head: Head) {
        let status = head.status_code().unwrap_or_default();
        if (100..200).contains(&status) && status != 101 {
            // Interim: no body, no pairing; the final response follows.
            self.stats.informational_responses += 1;
            self.response
                .parser
                .start_body(head, Framing::Empty, Coding::Identity);
        } else if self.answering < self.slots.len() {
            self.begin_response(head);
        } else if self.request.ended.is_some() {
            // Its request was lost with the request stream; already counted there.
            self.end(Direction::Response, End::NoPeer);
        } else {
            self.response.wait = Wait::Request(head);
        }
    }

    /// Decides the framing of a final response head now that its request is known.
    fn begin_response(&mut self, head: Head) {
        let status = head.status_code().unwrap_or_default();
        let Some(slot) = self.slots.get_mut(self.answering) else {
            // Invariant: callers check that the slot exists.
            self.fail(Direction::Response, ParseError::ResponseWithoutRequest);
            return;
        };
        slot.answered = true;
        slot.tunnel = status == 101 || (slot.kind.connect && (200..300).contains(&status));
        let kind = slot.kind;
        let switch_declined = slot.may_switch && !slot.tunnel;
        let is_last = self.answering + 1 == self.slots.len();
        if switch_declined && is_last && matches!(self.request.wait, Wait::SwitchDecision) {
            // Still HTTP: the held requests can be parsed.
            self.request.wait = Wait::No;
        }
        match head::response_framing(&head, kind) {
            Ok(framing) => {
                // A range of an encoded body cannot be decoded on its own.
                let coding = if status == 206 {
                    Coding::Identity
                } else {
                    head.coding()
                };
                self.response.parser.start_body(head, framing, coding);
            }
            Err(error) => self.fail(Direction::Response, error),
        }
    }

    fn on_done(&mut self, direction: Direction, message: Message) {
        self.count_body(&message);
        match direction {
            Direction::Request => self.on_request_done(message),
            Direction::Response => self.on_response_done(message),
        }
    }

    fn count_body(&mut self, message: &Message) {
        self.stats.decode_errors += u64::from(message.body.decode_failed);
        self.stats.truncated_bodies += u64::from(message.body.truncated);
    }

    fn on_request_done(&mut self, message: Message) {
        let Some(slot) = self.slots.back_mut() else {
            return;
        };
        slot.damaged |= message.damaged;
        slot.request = RequestState::Done(into_request(message));
        if slot.may_switch && !slot.answered {
            self.request.wait = Wait::SwitchDecision;
        }
        self.emit();
    }

    fn on_response_done(&mut self, message: Message) {
        let status = message.head.status_code().unwrap_or_default();
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        let Some(slot) = self.slots.get_mut(self.answering) else {
            return;
        };
        slot.damaged |= message.damaged;
        slot.response = Some(into_response(message));
        let tunnel = slot.tunnel;
        self.answering += 1;
        self.emit();
        if tunnel {
            self.stats.tunnels += 1;
            self.end(Direction::Request, End::Tunnel);
            self.end(Direction::Response, End::Tunnel);
        }
    }

    /// Moves complete pairs from the front of the slots to the ready queue.
    fn emit(&mut self) {
        while let Some(front) = self.slots.front() {
            if front.response.is_none() || matches!(front.request, RequestState::InFlight) {
                return;
            }
            let Some(slot) = self.slots.pop_front() else {
                return;
            };
            self.answering = self.answering.saturating_sub(1);
            match (slot.request, slot.response) {
                (RequestState::Done(request), Some(response)) if !slot.damaged => {
                    self.stats.exchanges += 1;
                    self.ready.push_back(Exchange { request, response });
                }
                _ => self.stats.damaged_exchanges += 1,
            }
        }
    }

    fn fail(&mut self, direction: Direction, error: ParseError) {
        self.stats.parse_errors += 1;
        self.last_error = Some(error);
        self.end(direction, End::Error);
    }

    /// Stops parsing one direction for good and settles what depended on it.
    fn end(&mut self, direction: Direction, reason: End) {
        let side = self.side_mut(direction);
        if side.ended.is_some() {
            return;
        }
        side.ended = Some(reason);
        side.held.clear();
        side.held_len = 0;
        let in_body = side.parser.in_body();
        side.parser.die();
        let held_head = std::mem::replace(&mut side.wait, Wait::No);
        match direction {
            Direction::Request => {
                if in_body
                    && let Some(slot) = self.slots.back_mut()
                    && matches!(slot.request, RequestState::InFlight)
                {
                    slot.request = RequestState::Abandoned;
                }
                if matches!(self.response.wait, Wait::Request(_)) && reason != End::Closed {
                    self.end(Direction::Response, End::NoPeer);
                }
            }
            Direction::Response => {
                drop(held_head);
                // Requests still matter only to complete pairs whose response is in.
                let completes_a_pair = self.slots.iter().any(|slot| {
                    slot.response.is_some() && matches!(slot.request, RequestState::InFlight)
                });
                if !completes_a_pair && reason != End::Closed {
                    self.end(Direction::Request, End::NoPeer);
                }
            }
        }
        self.emit();
    }
}

pub(super) fn into_request(message: Message) -> Request {
    let Message {
        head,
        body,
        body_wire_size,
        timestamp_ns,
        ..
    } = message;
    let (method, target) = match head.start {
        StartLine::Request { method, target } => (method, target),
        // Invariant: the request parser only produces request heads.
        StartLine::Response { .. } => (String::new(), String::new()),
    };
    Request {
        method,
        target,
        version_minor: head.version_minor,
        headers: head.headers,
        body: body.bytes,
        body_truncated: body.truncated,
        body_wire_size,
        timestamp_ns,
    }
}

fn into_response(message: Message) -> Response {
    let Message {
        head,
        body,
        body_wire_size,
        timestamp_ns,
        ..
    } = message;
    let (status_code, reason) = match head.start {
        StartLine::Response {
            status_code,
            reason,
        } => (status_code, reason),
        // Invariant: the response parser only produces response heads.
        StartLine::Request { .. } => (0, String::new()),
    };
    Response {
        status_code,
        reason,
        version_minor: head.version_minor,
        headers: head.headers,
        body: body.bytes,
        body_truncated: body.truncated,
        body_wire_size,
        timestamp_ns,
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
