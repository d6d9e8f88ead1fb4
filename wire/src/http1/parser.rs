//! One direction of a connection as a sequence of messages.
//!
//! The parser does not know about the other direction: after a head it hands the head out and
//! waits for [`Parser::start_body`], because a response's framing depends on its request.

use super::decode::{BodySink, StoredBody};
use super::head::{self, Coding, Framing, Head};
use super::{Direction, Limits, ParseError};

/// A complete (or, at close, cut-short) message.
#[derive(Debug)]
pub(crate) struct Message {
    pub head: Head,
    pub body: StoredBody,
    pub body_wire_size: u64,
    pub timestamp_ns: u64,
    /// Bytes inside the body were lost (a gap was skipped): framing held, content did not.
    pub damaged: bool,
}

#[derive(Debug)]
pub(crate) enum Event {
    /// All input taken; more is needed.
    NeedMore,
    /// A head ended; call `start_body` before feeding more.
    Head(Head),
    Done(Message),
    /// The direction cannot be parsed any more; later input is ignored.
    Error(ParseError),
}

/// What was left at the end of the stream.
#[derive(Debug)]
pub(crate) enum Finish {
    Nothing,
    /// A body delimited by the close.
    Complete(Message),
    /// A message had started; `Some` once its head was known, with the body so far.
    Incomplete(Option<Message>),
}

#[derive(Debug)]
enum State {
    /// Between messages: blank lines are skipped (RFC 9112 section 2.2).
    Idle,
    Head,
    /// The head was handed out; waiting for `start_body`.
    HeadReady,
    Body(Box<InBody>),
    Dead,
}

#[derive(Debug)]
struct InBody {
    head: Head,
    reader: super::body::BodyReader,
    sink: BodySink,
    wire_size: u64,
    damaged: bool,
}

#[derive(Debug)]
pub(crate) struct Parser {
    direction: Direction,
    limits: Limits,
    state: State,
    head_buf: Vec<u8>,
    /// When the first byte of the current message arrived.
    started_ns: u64,
}

/// Head buffers above this are freed after use so an idle connection stays small.
const KEEP_HEAD_CAPACITY: usize = 8 * 1024;

impl Parser {
    pub fn new(direction: Direction, limits: Limits) -> Self {
        Self {
            direction,
            limits,
            state: State::Idle,
            head_buf: Vec::new(),
            started_ns: 0,
        }
    }

    /// Takes bytes from the front of `input`; returns how many and what happened. Returns
    /// `NeedMore` only once all of `input` is taken (or the parser waits in `HeadReady`).
    pub fn advance(&mut self, input: &[u8], ts_ns: u64) -> (usize, Event) {
        match &mut self.state {
            State::Idle => {
                let blank = input
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                let rest = input.get(blank..).unwrap_or_default();
                if rest.is_empty() {
                    return (input.len(), Event::NeedMore);
                }
                self.state = State::Head;
                self.head_buf.clear();
                self.started_ns = ts_ns;
                let (taken, event) = self.read_head(rest);
                (blank + taken, event)
            }
            State::Head => self.read_head(input),
            State::HeadReady => (0, Event::NeedMore),
            State::Body(body) => match body.reader.read(input, &mut body.sink) {
                Ok(progress) => {
                    body.wire_size += progress.consumed as u64;
                    if progress.done {
                        (
                            progress.consumed,
                            self.take_message().map_or(Event::NeedMore, Event::Done),
                        )
                    } else {
                        (progress.consumed, Event::NeedMore)
                    }
                }
                Err(error) => {
                    self.state = State::Dead;
                    (input.len(), Event::Error(error))
                }
            },
            State::Dead => (input.len(), Event::NeedMore),
        }
    }

    fn read_head(&mut self, input: &[u8]) -> (usize, Event) {
        let limit = self.limits.max_head_size;
        let old_len = self.head_buf.len();
        let take = limit.saturating_sub(old_len).min(input.len());
        self.head_buf
            .extend_from_slice(input.get(..take).unwrap_or_default());
        let Some(end) = head::find_head_end(&self.head_buf, old_len) else {
            if self.head_buf.len() >= limit {
                self.die();
                return (
                    input.len(),
                    Event::Error(ParseError::HeadTooLarge { limit }),
                );
            }
            return (take, Event::NeedMore);
        };
        let parsed = match self.direction {
            Direction::Request => head::parse_request(
                self.head_buf.get(..end).unwrap_or_default(),
                self.limits.max_headers,
            ),
            Direction::Response => head::parse_response(
                self.head_buf.get(..end).unwrap_or_default(),
                self.limits.max_headers,
            ),
        };
        let taken = end.saturating_sub(old_len);
        self.head_buf.clear();
        if self.head_buf.capacity() > KEEP_HEAD_CAPACITY {
            self.head_buf = Vec::new();
        }
        match parsed {
            Ok(head) => {
                self.state = State::HeadReady;
                (taken, Event::Head(head))
            }
            Err(error) => {
                self.die();
                (input.len(), Event::Error(error))
            }
        }
    }

    /// Starts the body of the head last handed out.
    pub fn start_body(&mut self, head: Head, framing: Framing, coding: Coding) {
        let reader = super::body::BodyReader::new(framing, self.limits.max_head_size);
        let sink = BodySink::new(self.limits.max_body_size, coding);
        self.state = State::Body(Box::new(InBody {
            head,
            reader,
            sink,
            wire_size: 0,
            damaged: false,
        }));
    }

    /// Accounts for lost bytes; false when the message boundary is lost with them.
    pub fn skip(&mut self, lost: u64) -> bool {
        let State::Body(body) = &mut self.state else {
            return false;
        };
        if !body.reader.skip(lost) {
            return false;
        }
        body.wire_size = body.wire_size.saturating_add(lost);
        body.damaged = true;
        true
    }

    /// Whether a message is past its head (it has a pairing slot) and not yet complete.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body(_))
    }

    /// Stops parsing for good; later input is ignored.
    pub fn die(&mut self) {
        self.state = State::Dead;
        self.head_buf = Vec::new();
    }

    /// The end of the stream.
    pub fn finish(&mut self) -> Finish {
        let finish = match &self.state {
            State::Idle | State::Dead => Finish::Nothing,
            State::Head | State::HeadReady => Finish::Incomplete(None),
            State::Body(body) if body.reader.ends_at_close() => self
                .take_message()
                .map_or(Finish::Nothing, Finish::Complete),
            State::Body(_) => Finish::Incomplete(self.take_message().map(|mut message| {
                message.body.truncated = true;
                message
            })),
        };
        self.die();
        finish
    }

    fn take_message(&mut self) -> Option<Message> {
        let State::Body(body) = std::mem::replace(&mut self.state, State::Idle) else {
            return None;
        };
        let InBody {
            head,
            sink,
            wire_size,
            damaged,
            ..
        } = *body;
        Some(Message {
            head,
            body: sink.finish(),
            body_wire_size: wire_size,
            timestamp_ns: self.started_ns,
            damaged,
        })
    }
}
