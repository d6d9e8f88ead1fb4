//! HTTP/1.0 and HTTP/1.1 over one captured TCP connection.
//!
//! The agent sees both byte streams of a connection (client to server, server to client) as they
//! were reassembled from eBPF records. [`Connection`] turns them into [`Exchange`]s: a complete
//! request paired with its complete final response, in order. Bodies are de-chunked and
//! decompressed (gzip, deflate) within [`Limits`]; headers are kept exactly as sent.
//!
//! The parser is passive: it never answers anything, so it is lenient where real peers are
//! (bare LF line endings, chunk extensions, obsolete line folding in responses) and strict only
//! where leniency could pair a request with the wrong response (message framing).
//!
//! Layout: [`head`] finds and parses header blocks and decides framing, [`body`] walks the body
//! framing, [`decode`] stores and decompresses body bytes within the size cap, [`parser`] is the
//! per-direction message state machine, and [`connection`] pairs requests with responses.

mod body;
mod connection;
mod decode;
mod fuzz;
mod head;
mod parser;
mod requests;

pub use connection::Connection;
#[doc(hidden)]
pub use fuzz::fuzz_connection;
pub use requests::RequestReader;

/// Bounds that keep one connection's memory use fixed whatever the peers send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Decoded body bytes kept per message; the rest is framed and skipped, and the message is
    /// marked `body_truncated`.
    pub max_body_size: usize,
    /// Largest header block (start line, headers and the blank line), and largest trailer
    /// section; a larger one is a parse error because nothing after it can be trusted.
    pub max_head_size: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Requests waiting for their responses (pipelining depth) before the connection is given
    /// up as not HTTP or not answered.
    pub max_pending_requests: usize,
    /// Bytes of one direction held back while they wait for the other direction (a response
    /// seen before its request, or requests sent after an `Upgrade` before its answer).
    pub max_reorder_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_size: 5 * 1024 * 1024,
            max_head_size: 64 * 1024,
            max_headers: 1024,
            max_pending_requests: 32,
            max_reorder_bytes: 64 * 1024,
        }
    }
}

/// Which of the two byte streams of a connection some bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// One header field exactly as sent: original case and order, duplicates kept; only the
/// optional whitespace around the value is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub headers: Vec<Header>,
    /// Decoded body: de-chunked and decompressed when the content coding is understood and the
    /// data decodes; otherwise the bytes as framed.
    pub body: Vec<u8>,
    /// The body was longer than [`Limits::max_body_size`] (or the message was cut short) and
    /// `body` holds only its beginning.
    pub body_truncated: bool,
    /// Body bytes on the wire, chunk framing and trailers included.
    pub body_wire_size: u64,
    /// Time passed with the `feed` call that delivered the first byte of the message.
    pub timestamp_ns: u64,
}

/// A complete final (non-1xx, or 101) response; same body semantics as [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status_code: u16,
    pub reason: String,
    pub version_minor: u8,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub body_wire_size: u64,
    pub timestamp_ns: u64,
}

/// A request and the final response that answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: Request,
    pub response: Response,
}

/// Counters for one connection; the agent sums them into its metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Exchanges handed out by [`Connection::next_exchange`] (or waiting there).
    pub exchanges: u64,
    /// Malformed input after which a direction was abandoned.
    pub parse_errors: u64,
    /// Bodies whose content coding failed to decode; they are kept as framed.
    pub decode_errors: u64,
    /// Calls to [`Connection::gap`].
    pub gaps: u64,
    /// Pairs framed correctly but dropped because a gap cut bytes out of one side.
    pub damaged_exchanges: u64,
    /// Requests that never got a (usable) response: the connection closed or was abandoned.
    pub unpaired_requests: u64,
    /// 1xx interim responses skipped (101 is final and is paired).
    pub informational_responses: u64,
    /// Messages whose stored body was cut at the size limit.
    pub truncated_bodies: u64,
    /// Messages that had started but were not complete at close.
    pub incomplete_messages: u64,
    /// Connections switched to another protocol (101, or 2xx to CONNECT): parsing stopped.
    pub tunnels: u64,
}

/// Why a direction of a connection was given up; the latest one is kept for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("header block larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("invalid message head: {0}")]
    InvalidHead(httparse::Error),
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("request body with a Transfer-Encoding that does not end in chunked")]
    UnframedRequestBody,
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    #[error("chunk data not followed by a line end")]
    InvalidChunkEnd,
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    #[error("response without a matching request")]
    ResponseWithoutRequest,
    #[error("more than {limit} requests waiting for responses")]
    TooManyPendingRequests { limit: usize },
    #[error("more than {limit} bytes waiting for the other direction")]
    ReorderBufferFull { limit: usize },
}

/// Methods that mark a client stream as HTTP/1.x; each followed by the space of the request
/// line.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"PATCH ",
    b"HEAD ",
    b"OPTIONS ",
    b"TRACE ",
    b"CONNECT ",
];

/// Whether the first bytes a client sent look like an HTTP/1.x request line.
///
/// True when they start with a known method and a space, or when they are too short to tell
/// and are a prefix of one (the first record of a stream may hold only a few bytes; a binary
/// protocol is ruled out by its first byte already). False for empty input.
pub fn looks_like_request(first_bytes: &[u8]) -> bool {
    !first_bytes.is_empty()
        && METHODS.iter().any(|method| {
            if first_bytes.len() >= method.len() {
                first_bytes.starts_with(method)
            } else {
                method.starts_with(first_bytes)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_request_lines_and_their_prefixes() {
        for yes in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.0",
            b"DELETE ",
            b"OPTIONS * HTTP/1.1",
            b"CONNECT h:443 HTTP/1.1",
            b"G",
            b"PA",
            b"OPTIO",
        ] {
            assert!(looks_like_request(yes), "{yes:?}");
        }
    }

    #[test]
    fn rejects_binary_protocols_and_other_text() {
        let postgres_startup = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
        let tls_client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        for no in [
            &postgres_startup[..],
            tls_client_hello,
            b"",
            b"*1\r\n$4\r\nPING\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GETX / HTTP/1.1",
            b"get / HTTP/1.1",
            b"HTTP/1.1 200 OK\r\n",
            b" GET",
        ] {
            assert!(!looks_like_request(no), "{no:?}");
        }
    }

    #[test]
    fn default_limits_match_the_agent_contract() {
        let limits = Limits::default();
        assert_eq!(limits.max_body_size, 5 * 1024 * 1024);
        assert_eq!(limits.max_head_size, 64 * 1024);
    }
}
