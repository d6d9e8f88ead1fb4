//! Redis (RESP2 and RESP3) connections a recorded service opened: one [`Unit`] per command.
//!
//! A unit's request is exactly the bytes of one command (a multibulk array, or an inline line
//! such as `PING\r\n`) and its response exactly the bytes of the reply, so the mock server
//! can answer with what the real server said. Commands are answered in order, which is all
//! pipelining needs.
//!
//! Replies that are not one value per command:
//! - `SUBSCRIBE a b` (and `PSUBSCRIBE`, `SSUBSCRIBE`, the unsubscribes with channels) are
//!   answered by one confirmation per channel, arrays in RESP2 and pushes in RESP3; the unit's
//!   response holds all of them. An unsubscribe without channels is answered once per current
//!   subscription of its kind (at least once), tracked from the confirmations seen.
//! - Out-of-band data is not a reply: RESP3 pushes (`>`) other than the expected
//!   confirmations (pub/sub messages, client-tracking invalidations), and in RESP2 the
//!   `message`/`pmessage`/`smessage` arrays (and unexpected confirmations) of a subscribed
//!   connection. The rule: it is appended to the response of the command in flight (sent and
//!   not yet fully answered), so replay delivers it at the same point; with no command in
//!   flight it becomes a unit of its own with an empty request, empty fields and
//!   [`Lifetime::PerTest`]. One exception: a RESP3 subscription confirmation seen while no
//!   command at all is known waits for the next command (its answer, when the client's bytes
//!   are fed late), and stands alone at close if none came.
//! - After `CLIENT REPLY OFF` commands get no reply until `CLIENT REPLY ON`; `CLIENT REPLY
//!   SKIP` silences itself and the next command. Those units have an empty response.
//! - An error reply always ends its command.
//!
//! Blank inline lines and `*0`/`*-1`, which Redis ignores without answering, make no unit.
//! At close, commands still waiting are completed with what they received (possibly
//! nothing); replies that never had a command (capture began mid-connection) are dropped.
//! Known limit: after `MONITOR` the server streams its feed as simple strings, which pair
//! with later commands.
//!
//! Memory and recursion are bounded: at most [`MAX_HELD`] bytes per side (unparsed bytes plus
//! commands or replies waiting for the other side), values nested at most 64 deep. Beyond
//! that, and on malformed input or a [`DependencyParser::gap`], the connection stops with a
//! [`DependencyError`]; units completed before stay available.

mod command;
mod resp;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};

use self::command::Family;
use self::resp::{Scan, Scanner};
use crate::dependency::{DependencyError, DependencyParser, Lifetime, Mode, Side, Unit};

const PROTOCOL: &str = "redis";
/// Most bytes held per side.
pub const MAX_HELD: usize = 64 * 1024 * 1024;
/// Fed bytes are taken in pieces of this size, so one huge feed cannot be buffered whole
/// before the limit is checked.
const FEED_PIECE: usize = 1024 * 1024;
/// Most subscriptions tracked per kind (only used to count unsubscribe confirmations).
const MAX_TRACKED_SUBSCRIPTIONS: usize = 65_536;

fn malformed(reason: String) -> DependencyError {
    DependencyError::Malformed {
        protocol: PROTOCOL,
        reason,
    }
}

/// The error reply the mock server sends when no recorded command matched:
/// `-ERR kreplay: <message>\r\n`, with line breaks in `message` turned into spaces so the
/// reply stays one line.
pub fn error_reply(message: &str) -> Vec<u8> {
    let message: String = message
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    format!("-ERR kreplay: {message}\r\n").into_bytes()
}

/// One direction's bytes not yet cut into messages.
///
/// Every complete message is cut as soon as its last byte is pushed (no message needs bytes
/// after its end to be recognised), so a message always ends in the latest piece: only the
/// time of the piece holding the first unparsed byte and of the latest piece are needed.
#[derive(Debug, Default)]
struct Stream {
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    start: usize,
    /// Capture time of the byte at `start`, and of the latest piece.
    start_ts: u64,
    latest_ts: u64,
    scanner: Scanner,
    /// Where the search for an inline command's line end resumes.
    inline_from: usize,
    /// Bytes of complete messages still held: commands waiting for replies, or replies
    /// waiting for their command or for the rest of their command's replies.
    held: usize,
}

/// A message cut from a stream.
#[derive(Debug)]
struct Message {
    bytes: Vec<u8>,
    first_ts: u64,
    last_ts: u64,
}

impl Stream {
    fn push(&mut self, bytes: &[u8], ts: u64) {
        if self.start == self.buf.len() {
            self.start_ts = ts;
        }
        self.latest_ts = ts;
        self.buf.extend_from_slice(bytes);
    }

    /// Cuts the next `len` unparsed bytes off as a message.
    fn take(&mut self, len: usize) -> Message {
        let message = Message {
            bytes: self.buf[self.start..self.start + len].to_vec(),
            first_ts: self.start_ts,
            last_ts: self.latest_ts,
        };
        self.start += len;
        self.start_ts = self.latest_ts;
        message
    }

    /// Drops consumed bytes from the buffer (once per piece, not per message).
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn check_held(&self) -> Result<(), DependencyError> {
        if self.buf.len() - self.start + self.held > MAX_HELD {
            return Err(DependencyError::TooLarge {
                protocol: PROTOCOL,
                limit: MAX_HELD,
            });
        }
        Ok(())
    }
}

/// How many replies a command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Replies(usize),
    /// An unsubscribe without arguments: one per current subscription of the family, decided
    /// when its first reply arrives.
    AllOf(Family),
}

/// `CLIENT REPLY` state of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    SkipNext,
}

/// A command sent and not yet handed out.
#[derive(Debug)]
struct Pending {
    unit: Unit,
    name: Vec<u8>,
    expect: Expect,
    replies: usize,
    done: bool,
}

/// A Redis connection: both byte streams in, one [`Unit`] per command out.
#[derive(Debug)]
pub struct RedisConnection {
    mode: Mode,
    client: Stream,
    server: Stream,
    pending: VecDeque<Pending>,
    /// Complete server values not yet placed (a reply fed before its command waits here).
    replies: VecDeque<(Message, u8)>,
    ready: VecDeque<Unit>,
    reply_mode: ReplyMode,
    /// Current subscriptions by [`Family`], from the confirmations seen.
    subscriptions: [HashSet<Vec<u8>>; 3],
    /// The connection switched to RESP3 (`HELLO 3` answered with a map).
    resp3: bool,
    error: Option<DependencyError>,
    closed: bool,
}

impl RedisConnection {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            client: Stream::default(),
            server: Stream::default(),
            pending: VecDeque::new(),
            replies: VecDeque::new(),
            ready: VecDeque::new(),
            reply_mode: ReplyMode::On,
            subscriptions: Default::default(),
            resp3: false,
            error: None,
            closed: false,
        }
    }

    fn fail(&mut self, error: DependencyError) {
        self.error = Some(error);
        self.pending.clear();
        self.replies.clear();
        self.client = Stream::default();
        self.server = Stream::default();
    }

    /// Cuts complete commands off the client stream.
    fn parse_commands(&mut self) -> Result<(), DependencyError> {
        loop {
            let stream = &mut self.client;
            let data = &stream.buf[stream.start..];
            let Some(&first) = data.first() else {
                return Ok(());
            };
            let (len, args) = if first == b'*' || stream.scanner.mid_frame() {
                match stream.scanner.scan(data, true, MAX_HELD)? {
                    Scan::Incomplete => return Ok(()),
                    Scan::Frame { len, .. } => (len, command::multibulk_args(&data[..len])?),
                }
            } else {
                let from = stream.inline_from.min(data.len());
                let Some(at) = data[from..].iter().position(|&b| b == b'\n') else {
                    if data.len() > command::MAX_INLINE {
                        return Err(malformed("inline command line too long".into()));
                    }
                    stream.inline_from = data.len();
                    return Ok(());
                };
                stream.inline_from = 0;
                let end = from + at;
                let line = data[..end].strip_suffix(b"\r").unwrap_or(&data[..end]);
                (end + 1, command::inline_args(line)?)
            };
            let message = stream.take(len);
            if !args.is_empty() {
                self.on_command(args, message);
            }
        }
    }

    fn on_command(&mut self, args: Vec<Vec<u8>>, message: Message) {
        let name = command::name(&args);
        let expect = self.replies_for(&name, &args);
        let unit = Unit {
            fields: command::fields(&args),
            summary: command::summary(&args),
            lifetime: command::lifetime(&args),
            request_ts_ns: message.first_ts,
            response_ts_ns: message.last_ts,
            request: message.bytes,
            response: Vec::new(),
        };
        if self.mode == Mode::RequestsOnly {
            self.ready.push_back(unit);
            return;
        }
        self.client.held += unit.request.len();
        self.pending.push_back(Pending {
            unit,
            name,
            done: expect == Expect::Replies(0),
            expect,
            replies: 0,
        });
    }

    /// How many replies the command gets, updating the `CLIENT REPLY` state.
    fn replies_for(&mut self, name: &[u8], args: &[Vec<u8>]) -> Expect {
        let silent = match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                true
            }
        };
        if name == b"CLIENT" && command::arg_is(args, 1, "REPLY") {
            if command::arg_is(args, 2, "ON") {
                // Answered even when replies were off.
                self.reply_mode = ReplyMode::On;
                return Expect::Replies(1);
            }
            if command::arg_is(args, 2, "OFF") {
                self.reply_mode = ReplyMode::Off;
                return Expect::Replies(0);
            }
            if command::arg_is(args, 2, "SKIP") {
                if self.reply_mode != ReplyMode::Off {
                    self.reply_mode = ReplyMode::SkipNext;
                }
                return Expect::Replies(0);
            }
        }
        if silent {
            return Expect::Replies(0);
        }
        let channels = args.len() - 1;
        match command::pubsub(name) {
            Some((family, false)) if channels == 0 => Expect::AllOf(family),
            Some(_) => Expect::Replies(channels.max(1)),
            None => Expect::Replies(1),
        }
    }

    /// Cuts complete values off the server stream.
    fn parse_replies(&mut self) -> Result<(), DependencyError> {
        let stream = &mut self.server;
        while stream.start < stream.buf.len() {
            let data = &stream.buf[stream.start..];
            match stream.scanner.scan(data, false, MAX_HELD)? {
                Scan::Incomplete => break,
                Scan::Frame { len, kind } => {
                    let message = stream.take(len);
                    stream.held += len;
                    self.replies.push_back((message, kind));
                }
            }
        }
        Ok(())
    }

    /// Places server values on their commands and hands out finished units, in order.
    fn pair(&mut self) {
        loop {
            while self.pending.front().is_some_and(|pending| pending.done) {
                if let Some(pending) = self.pending.pop_front() {
                    self.client.held -= pending.unit.request.len();
                    self.server.held -= pending.unit.response.len();
                    self.ready.push_back(pending.unit);
                }
            }
            let Some((message, kind)) = self.replies.pop_front() else {
                return;
            };
            if let Some((message, kind)) = self.place(message, kind) {
                // A reply fed before its command: wait for the command.
                self.replies.push_front((message, kind));
                return;
            }
        }
    }

    /// Places one server value; gives it back when it is a reply with no command to answer.
    fn place(&mut self, message: Message, kind: u8) -> Option<(Message, u8)> {
        let in_flight_pubsub = self
            .pending
            .front()
            .and_then(|pending| command::pubsub(&pending.name).map(|_| pending.name.clone()));
        let subscribed = self.subscriptions.iter().any(|set| !set.is_empty());
        let inspect = kind == b'>'
            || in_flight_pubsub.is_some()
            || (kind == b'*' && subscribed && !self.resp3);
        let elements = if inspect {
            resp::top_elements(&message.bytes, 3)
        } else {
            None
        };
        let label = elements
            .as_ref()
            .and_then(|elements| elements.first().copied().flatten());
        let confirmation = label.is_some_and(|label| command::pubsub(label).is_some());
        if kind == b'>' && confirmation && self.pending.is_empty() {
            // Most likely the answer to a subscription command not fed yet.
            return Some((message, kind));
        }
        let confirms_in_flight = label
            .zip(in_flight_pubsub.as_deref())
            .is_some_and(|(label, name)| label.eq_ignore_ascii_case(name));
        let resp2_pubsub = kind == b'*'
            && subscribed
            && !self.resp3
            && label.is_some_and(command::is_pubsub_label);
        let out_of_band = !confirms_in_flight && (kind == b'>' || resp2_pubsub);
        if out_of_band {
            if let Some(elements) = &elements {
                self.track_subscription(elements);
            }
            match self.pending.front_mut() {
                Some(pending) => append(pending, &message),
                None => {
                    let summary = push_summary(elements.as_deref());
                    self.server.held -= message.bytes.len();
                    self.ready.push_back(push_unit(message, summary));
                }
            }
            return None;
        }
        let Some(pending) = self.pending.front_mut() else {
            return Some((message, kind));
        };
        if let Expect::AllOf(family) = pending.expect {
            // Counted before this confirmation removes a subscription.
            let current = self.subscriptions[family as usize].len();
            pending.expect = Expect::Replies(current.max(1));
        }
        append(pending, &message);
        pending.replies += 1;
        let error = matches!(kind, b'-' | b'!');
        pending.done =
            error || matches!(pending.expect, Expect::Replies(n) if pending.replies >= n);
        if !error {
            match pending.name.as_slice() {
                b"HELLO" => self.resp3 = kind == b'%',
                b"RESET" => {
                    self.resp3 = false;
                    self.subscriptions = Default::default();
                }
                _ => {}
            }
        }
        if confirms_in_flight && let Some(elements) = &elements {
            self.track_subscription(elements);
        }
        None
    }

    /// Updates the subscriptions from a confirmation `[kind, channel, count]`.
    fn track_subscription(&mut self, elements: &[Option<&[u8]>]) {
        let [Some(label), Some(channel), _] = elements else {
            return;
        };
        let Some((family, subscribe)) = command::pubsub(label) else {
            return;
        };
        let set = &mut self.subscriptions[family as usize];
        if !subscribe {
            set.remove(*channel);
        } else if set.len() < MAX_TRACKED_SUBSCRIPTIONS {
            set.insert(channel.to_vec());
        }
    }
}

fn append(pending: &mut Pending, message: &Message) {
    pending.unit.response.extend_from_slice(&message.bytes);
    pending.unit.response_ts_ns = pending.unit.request_ts_ns.max(message.last_ts);
}

/// `(push) message news`: the kind and channel of out-of-band data.
fn push_summary(elements: Option<&[Option<&[u8]>]>) -> String {
    let words: Vec<String> = elements
        .unwrap_or_default()
        .iter()
        .take(2)
        .map(|element| element.map_or_else(|| "nil".to_owned(), command::display_word))
        .collect();
    command::truncate(&format!("(push) {}", words.join(" ")))
}

/// A unit for out-of-band data with no command in flight.
fn push_unit(message: Message, summary: String) -> Unit {
    Unit {
        request: Vec::new(),
        fields: Vec::new(),
        summary,
        lifetime: Lifetime::PerTest,
        request_ts_ns: message.first_ts,
        response_ts_ns: message.last_ts,
        response: message.bytes,
    }
}

impl DependencyParser for RedisConnection {
    fn feed(&mut self, side: Side, bytes: &[u8], ts_ns: u64) {
        if self.error.is_some() || self.closed {
            return;
        }
        if side == Side::Server && self.mode == Mode::RequestsOnly {
            return;
        }
        for piece in bytes.chunks(FEED_PIECE) {
            let result = match side {
                Side::Client => {
                    self.client.push(piece, ts_ns);
                    self.parse_commands()
                }
                Side::Server => {
                    self.server.push(piece, ts_ns);
                    self.parse_replies()
                }
            };
            self.pair();
            let stream = match side {
                Side::Client => &mut self.client,
                Side::Server => &mut self.server,
            };
            stream.compact();
            if let Err(error) = result.and_then(|()| stream.check_held()) {
                self.fail(error);
                return;
            }
        }
    }

    fn gap(&mut self, side: Side, lost: u64) {
        let ignored = side == Side::Server && self.mode == Mode::RequestsOnly;
        if lost == 0 || ignored || self.error.is_some() || self.closed {
            return;
        }
        self.fail(DependencyError::Gap);
    }

    fn close(&mut self) {
        if self.error.is_some() || self.closed {
            return;
        }
        self.closed = true;
        for pending in &mut self.pending {
            pending.done = true;
        }
        // Replies without a command (the capture began mid-connection) are dropped; pushes
        // that waited for a subscription command that never came stand alone.
        for (message, kind) in std::mem::take(&mut self.replies) {
            self.server.held -= message.bytes.len();
            if kind == b'>' {
                let summary = push_summary(resp::top_elements(&message.bytes, 2).as_deref());
                self.ready.push_back(push_unit(message, summary));
            }
        }
        self.pair();
    }

    fn next_unit(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    fn error(&self) -> Option<&DependencyError> {
        self.error.as_ref()
    }
}
