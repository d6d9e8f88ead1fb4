//! What every dependency-protocol parser (PostgreSQL, Redis, MySQL, generic TCP) produces: the
//! request/response units of a connection the recorded service opened, in a protocol-independent
//! shape the proxy stores as mocks and the mock server matches against.
//!
//! A parser is fed both byte streams of one connection (like [`crate::http1::Connection`]) and
//! yields [`Unit`]s in order. In replay, the same parser runs in [`Mode::RequestsOnly`]: it sees
//! only what the client sends and yields each complete request (with `response` empty) so the mock
//! server knows when to answer and what to match.

/// Which side of the connection bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The recorded service (the dependency's client).
    Client,
    /// The dependency (database, cache, API).
    Server,
}

/// Whether a parser sees both directions (recording) or only the client's (mock server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Both,
    RequestsOnly,
}

/// How long a recorded unit may be reused in replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lifetime {
    /// Connection set-up: handshakes, authentication, `SET`/`SELECT 1` start-up queries. Reusable
    /// by every connection, never consumed.
    Session,
    /// Reusable within the connection that recorded it (prepared statements and their use).
    Connection,
    /// A request a test caused: consumed when matched.
    PerTest,
}

/// One request and the response that answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Exactly the bytes the client sent for this request (one or more protocol messages).
    pub request: Vec<u8>,
    /// Exactly the bytes the server answered (empty when the request has no answer, or in
    /// [`Mode::RequestsOnly`]).
    pub response: Vec<u8>,
    /// The request, normalised for matching: ordered `(name, value)` pairs such as
    /// `("query", "SELECT ...")`, `("param.1", "42")`, `("command", "SET")`, `("arg.1", "key")`.
    /// Two requests that mean the same thing have equal fields; values are text (binary values
    /// base64 with a `b64:` prefix).
    pub fields: Vec<(String, String)>,
    /// One line for humans and reports, e.g. `SELECT * FROM items WHERE id = $1 [42]`.
    pub summary: String,
    /// The parser's view of how long the unit may be reused.
    pub lifetime: Lifetime,
    /// Capture time of the first request byte and of the last response byte (unix ns, as fed).
    pub request_ts_ns: u64,
    pub response_ts_ns: u64,
}

/// Why a direction of a dependency connection was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("malformed {protocol} message: {reason}")]
    Malformed {
        protocol: &'static str,
        reason: String,
    },
    #[error("{protocol} message larger than {limit} bytes")]
    TooLarge {
        protocol: &'static str,
        limit: usize,
    },
    #[error("bytes were lost from the stream")]
    Gap,
}

/// The common face of the dependency parsers (sans-IO).
pub trait DependencyParser: Send {
    /// Bytes of one side, in stream order, with their capture time.
    fn feed(&mut self, side: Side, bytes: &[u8], ts_ns: u64);
    /// `lost` bytes of `side` never arrived; the parser resynchronises or gives up.
    fn gap(&mut self, side: Side, lost: u64);
    /// Both streams ended: complete what the close completes.
    fn close(&mut self);
    /// The next complete unit, in request order.
    fn next_unit(&mut self) -> Option<Unit>;
    /// The latest error, if parsing stopped.
    fn error(&self) -> Option<&DependencyError>;
}
