//! The fallback for TCP protocols we do not understand: units cut by turn-taking.
//!
//! A unit is a maximal run of client bytes followed by the maximal run of server bytes that
//! answered it: it ends when the client sends again after the server has sent something, or
//! at close. A server that speaks first (a greeting before any client byte) gives a first unit
//! with an empty request. The first unit of a connection is [`Lifetime::Session`] (a greeting
//! or handshake every connection repeats), later ones [`Lifetime::PerTest`].
//!
//! Turn-taking is only as good as the order the two streams are fed in: the caller feeds
//! bytes in capture order across both sides.
//!
//! In [`Mode::RequestsOnly`] nothing marks where a request ends, except time: the mock server
//! calls [`GenericConnection::flush_request`] once the client has been quiet for a short
//! while, and answers the unit it returns. Bytes still pending at close make a last unit.
//!
//! A unit holds at most [`MAX_UNIT_BYTES`] bytes per side; more stops the connection with
//! [`DependencyError::TooLarge`], as a [`DependencyParser::gap`] stops it with
//! [`DependencyError::Gap`] (turns cannot be trusted after lost bytes).

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::dependency::{DependencyError, DependencyParser, Lifetime, Mode, Side, Unit};

/// Most bytes of one side held for one unit.
pub const MAX_UNIT_BYTES: usize = 64 * 1024 * 1024;
const PROTOCOL: &str = "generic";
/// Summaries are cut to this many characters.
const SUMMARY_CHARS: usize = 120;

/// A connection of an unknown protocol: both byte streams in, request/response turns out.
#[derive(Debug)]
pub struct GenericConnection {
    mode: Mode,
    request: Vec<u8>,
    response: Vec<u8>,
    /// Capture time of the first byte of the unit being built and of its last server byte.
    first_ts: u64,
    last_ts: u64,
    /// Units handed out or ready so far (the first one is the session's).
    units: u64,
    ready: VecDeque<Unit>,
    error: Option<DependencyError>,
    closed: bool,
}

impl GenericConnection {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            request: Vec::new(),
            response: Vec::new(),
            first_ts: 0,
            last_ts: 0,
            units: 0,
            ready: VecDeque::new(),
            error: None,
            closed: false,
        }
    }

    /// In [`Mode::RequestsOnly`], the client bytes received since the last unit as a unit of
    /// their own (empty response), or `None` when there are none. The mock server calls this
    /// after the client has been idle for a short period; a request split by a longer pause
    /// becomes two units. In [`Mode::Both`] the server's turn delimits units and this returns
    /// `None`.
    pub fn flush_request(&mut self) -> Option<Unit> {
        if self.mode != Mode::RequestsOnly || self.request.is_empty() || self.error.is_some() {
            return None;
        }
        Some(self.take_unit())
    }

    fn take_unit(&mut self) -> Unit {
        let request = std::mem::take(&mut self.request);
        let response = std::mem::take(&mut self.response);
        let lifetime = if self.units == 0 {
            Lifetime::Session
        } else {
            Lifetime::PerTest
        };
        self.units += 1;
        let shown = if request.is_empty() {
            &response
        } else {
            &request
        };
        Unit {
            fields: vec![("bytes".to_owned(), field_value(&request))],
            summary: summary(shown, request.is_empty()),
            lifetime,
            request_ts_ns: self.first_ts,
            response_ts_ns: self.last_ts.max(self.first_ts),
            request,
            response,
        }
    }

    fn fail(&mut self, error: DependencyError) {
        self.error = Some(error);
        self.request = Vec::new();
        self.response = Vec::new();
    }
}

impl DependencyParser for GenericConnection {
    fn feed(&mut self, side: Side, bytes: &[u8], ts_ns: u64) {
        if bytes.is_empty() || self.error.is_some() || self.closed {
            return;
        }
        let held = match (side, self.mode) {
            (Side::Server, Mode::RequestsOnly) => return,
            (Side::Client, _) => {
                if !self.response.is_empty() {
                    // The client speaks again after an answer: the turn is over.
                    let unit = self.take_unit();
                    self.ready.push_back(unit);
                }
                if self.request.is_empty() {
                    self.first_ts = ts_ns;
                }
                &mut self.request
            }
            (Side::Server, Mode::Both) => {
                if self.request.is_empty() && self.response.is_empty() {
                    self.first_ts = ts_ns;
                }
                self.last_ts = ts_ns;
                &mut self.response
            }
        };
        if held.len() + bytes.len() > MAX_UNIT_BYTES {
            self.fail(DependencyError::TooLarge {
                protocol: PROTOCOL,
                limit: MAX_UNIT_BYTES,
            });
            return;
        }
        held.extend_from_slice(bytes);
    }

    fn gap(&mut self, side: Side, lost: u64) {
        let ignored = side == Side::Server && self.mode == Mode::RequestsOnly;
        if lost > 0 && !ignored && self.error.is_none() && !self.closed {
            self.fail(DependencyError::Gap);
        }
    }

    fn close(&mut self) {
        if self.closed || self.error.is_some() {
            return;
        }
        self.closed = true;
        if !self.request.is_empty() || !self.response.is_empty() {
            let unit = self.take_unit();
            self.ready.push_back(unit);
        }
    }

    fn next_unit(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    fn error(&self) -> Option<&DependencyError> {
        self.error.as_ref()
    }
}

/// Text that can be shown as is: UTF-8 without control characters other than line ends and
/// tabs.
fn printable(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\r' | '\n' | '\t'));
    plain.then_some(text)
}

/// The request as text when printable, else `b64:` and the base64 (also for text that starts
/// with `b64:`, so decoding is never ambiguous).
fn field_value(bytes: &[u8]) -> String {
    match printable(bytes) {
        Some(text) if !text.starts_with("b64:") => text.to_owned(),
        _ => format!("b64:{}", STANDARD.encode(bytes)),
    }
}

/// `[12 bytes] PING\r\n` or `[517 bytes] 16 03 01 02 00 …`: the size and the start of the
/// bytes (the greeting's, for a server-first unit).
fn summary(bytes: &[u8], greeting: bool) -> String {
    let mut text = format!(
        "{}[{} bytes] ",
        if greeting { "(server first) " } else { "" },
        bytes.len()
    );
    match printable(bytes) {
        Some(printable) => text.extend(printable.chars().flat_map(char::escape_debug)),
        None => {
            for byte in bytes.iter().take(SUMMARY_CHARS / 3) {
                text.push_str(&format!("{byte:02x} "));
            }
        }
    }
    let text = text.trim_end();
    if text.chars().count() <= SUMMARY_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(conn: &mut GenericConnection) -> Vec<Unit> {
        std::iter::from_fn(|| conn.next_unit()).collect()
    }

    fn turns(units: &[Unit]) -> Vec<(&[u8], &[u8])> {
        units
            .iter()
            .map(|unit| (unit.request.as_slice(), unit.response.as_slice()))
            .collect()
    }

    #[test]
    fn requests_and_responses_alternate() {
        let mut conn = GenericConnection::new(Mode::Both);
        conn.feed(Side::Client, b"HELLO ", 1);
        conn.feed(Side::Client, b"there\n", 2);
        assert_eq!(conn.next_unit(), None);
        conn.feed(Side::Server, b"HI\n", 3);
        conn.feed(Side::Server, b"AGAIN\n", 4);
        assert_eq!(conn.next_unit(), None);
        conn.feed(Side::Client, b"\x00\x01\xff", 5);
        let first = drain(&mut conn);
        assert_eq!(
            turns(&first),
            [(&b"HELLO there\n"[..], &b"HI\nAGAIN\n"[..])]
        );
        assert_eq!(
            first[0].fields,
            [("bytes".to_owned(), "HELLO there\n".to_owned())]
        );
        assert_eq!(first[0].summary, "[12 bytes] HELLO there\\n");
        assert_eq!(first[0].lifetime, Lifetime::Session);
        assert_eq!((first[0].request_ts_ns, first[0].response_ts_ns), (1, 4));
        conn.feed(Side::Server, b"OK", 6);
        conn.feed(Side::Client, b"b64:x", 7);
        conn.feed(Side::Server, b"DONE", 8);
        conn.close();
        let rest = drain(&mut conn);
        assert_eq!(
            turns(&rest),
            [(&b"\x00\x01\xff"[..], &b"OK"[..]), (b"b64:x", b"DONE")]
        );
        assert_eq!(rest[0].fields[0].1, "b64:AAH/");
        assert_eq!(rest[0].summary, "[3 bytes] 00 01 ff");
        assert_eq!(rest[1].fields[0].1, "b64:YjY0Ong=");
        assert!(rest.iter().all(|unit| unit.lifetime == Lifetime::PerTest));
        assert_eq!((rest[1].request_ts_ns, rest[1].response_ts_ns), (7, 8));
        assert_eq!(conn.error(), None);
    }

    #[test]
    fn a_server_greeting_is_a_first_unit_without_request() {
        let mut conn = GenericConnection::new(Mode::Both);
        conn.feed(Side::Server, b"220 mail.example ESMTP\r\n", 10);
        conn.feed(Side::Client, b"EHLO me\r\n", 11);
        conn.feed(Side::Server, b"250 ok\r\n", 12);
        conn.feed(Side::Client, b"QUIT\r\n", 13);
        let units = drain(&mut conn);
        assert_eq!(
            turns(&units),
            [
                (&b""[..], &b"220 mail.example ESMTP\r\n"[..]),
                (b"EHLO me\r\n", b"250 ok\r\n")
            ]
        );
        assert_eq!(units[0].lifetime, Lifetime::Session);
        assert_eq!(units[0].fields, [("bytes".to_owned(), String::new())]);
        assert_eq!(
            units[0].summary,
            "(server first) [24 bytes] 220 mail.example ESMTP\\r\\n"
        );
        assert_eq!((units[0].request_ts_ns, units[0].response_ts_ns), (10, 10));
        assert_eq!(units[1].lifetime, Lifetime::PerTest);
        // Close completes the last unit, even without an answer.
        conn.close();
        let last = drain(&mut conn);
        assert_eq!(turns(&last), [(&b"QUIT\r\n"[..], &b""[..])]);
        assert_eq!((last[0].request_ts_ns, last[0].response_ts_ns), (13, 13));
        conn.close();
        assert_eq!(conn.next_unit(), None);
    }

    #[test]
    fn requests_only_units_come_from_flush_request() {
        let mut conn = GenericConnection::new(Mode::RequestsOnly);
        assert_eq!(conn.flush_request(), None);
        conn.feed(Side::Client, b"abc", 1);
        conn.feed(Side::Server, b"ignored", 2);
        conn.feed(Side::Client, b"def", 3);
        assert_eq!(conn.next_unit(), None);
        let unit = conn.flush_request();
        assert_eq!(
            unit.as_ref()
                .map(|unit| (unit.request.as_slice(), unit.response.as_slice())),
            Some((&b"abcdef"[..], &b""[..]))
        );
        assert_eq!(unit.map(|unit| unit.lifetime), Some(Lifetime::Session));
        assert_eq!(conn.flush_request(), None);
        conn.feed(Side::Client, b"ghi", 4);
        let unit = conn.flush_request();
        assert_eq!(
            unit.as_ref().map(|unit| unit.lifetime),
            Some(Lifetime::PerTest)
        );
        assert_eq!(unit.map(|unit| unit.request_ts_ns), Some(4));
        conn.feed(Side::Client, b"tail", 5);
        conn.close();
        assert_eq!(turns(&drain(&mut conn)), [(&b"tail"[..], &b""[..])]);

        let mut both = GenericConnection::new(Mode::Both);
        both.feed(Side::Client, b"abc", 1);
        assert_eq!(both.flush_request(), None);
    }

    #[test]
    fn gaps_and_oversized_turns_stop_the_connection() {
        let mut conn = GenericConnection::new(Mode::Both);
        conn.feed(Side::Client, b"a", 1);
        conn.feed(Side::Server, b"b", 2);
        conn.feed(Side::Client, b"c", 3);
        conn.gap(Side::Server, 5);
        assert_eq!(conn.error(), Some(&DependencyError::Gap));
        conn.feed(Side::Server, b"d", 4);
        conn.close();
        assert_eq!(turns(&drain(&mut conn)), [(&b"a"[..], &b"b"[..])]);

        let mut conn = GenericConnection::new(Mode::Both);
        let big = vec![0u8; MAX_UNIT_BYTES / 2];
        conn.feed(Side::Server, &big, 1);
        conn.feed(Side::Server, &big, 2);
        assert_eq!(conn.error(), None);
        conn.feed(Side::Server, b"!", 3);
        assert_eq!(
            conn.error(),
            Some(&DependencyError::TooLarge {
                protocol: "generic",
                limit: MAX_UNIT_BYTES
            })
        );
    }

    #[test]
    fn long_summaries_are_cut() {
        let mut conn = GenericConnection::new(Mode::Both);
        conn.feed(Side::Client, "é".repeat(200).as_bytes(), 1);
        conn.close();
        let summary = drain(&mut conn).remove(0).summary;
        assert_eq!(summary.chars().count(), 120);
        assert!(summary.starts_with("[400 bytes] éé"));
        assert!(summary.ends_with('…'));
    }
}
