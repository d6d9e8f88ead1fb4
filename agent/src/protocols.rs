//! Which parser a connection gets, decided from its first bytes (never from its port).
//!
//! Connections the target accepted are test cases: HTTP/1 only. Connections the target opened are
//! its dependency calls: HTTP/1, PostgreSQL, Redis, MySQL, or the generic TCP fallback. Until the
//! first bytes tell, both sides are held (bounded) and replayed into the parser once chosen.

use kreplay_wire::{
    dependency::{DependencyParser, Mode, Side, Unit},
    detect::{self, Detection, Protocol},
    generic::GenericConnection,
    http1::{self, Direction, Exchange, Limits},
    mysql::MySqlConnection,
    postgres::PostgresConnection,
    redis::RedisConnection,
};

use crate::connections::Role;

/// Bytes held per side while the protocol is undecided; past this it is decided on what is there.
const MAX_UNDECIDED: usize = 4096;

/// What a connection's parser produced.
#[derive(Debug)]
pub enum Output {
    Exchange(Exchange),
    Unit { protocol: Protocol, unit: Unit },
}

enum State {
    Undecided {
        client: Vec<(u64, Vec<u8>)>,
        server: Vec<(u64, Vec<u8>)>,
    },
    // Boxed: a connection is large and most tracked connections never get one.
    Http(Box<http1::Connection>),
    Dependency {
        protocol: Protocol,
        parser: Box<dyn DependencyParser>,
    },
    /// Not a protocol we record on this kind of connection.
    Ignored,
}

pub struct Parsing {
    role: Role,
    limits: Limits,
    state: State,
}

fn side_of(direction: Direction) -> Side {
    match direction {
        Direction::Request => Side::Client,
        Direction::Response => Side::Server,
    }
}

fn direction_of(side: Side) -> Direction {
    match side {
        Side::Client => Direction::Request,
        Side::Server => Direction::Response,
    }
}

fn held(chunks: &[(u64, Vec<u8>)]) -> Vec<u8> {
    chunks.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

/// A dependency parser for a detected protocol.
pub fn dependency_parser(protocol: Protocol, mode: Mode) -> Box<dyn DependencyParser> {
    match protocol {
        Protocol::Postgres => Box::new(PostgresConnection::new(mode)),
        Protocol::Redis => Box::new(RedisConnection::new(mode)),
        Protocol::MySql => Box::new(MySqlConnection::new(mode)),
        Protocol::Http1 | Protocol::Generic => Box::new(GenericConnection::new(mode)),
    }
}

impl Parsing {
    pub fn new(role: Role, limits: Limits) -> Self {
        Self {
            role,
            limits,
            state: State::Undecided {
                client: Vec::new(),
                server: Vec::new(),
            },
        }
    }

    /// The connection carries nothing we record.
    pub fn is_ignored(&self) -> bool {
        matches!(self.state, State::Ignored)
    }

    pub fn feed(&mut self, direction: Direction, bytes: &[u8], ts_ns: u64) {
        match &mut self.state {
            State::Http(conn) => conn.feed(direction, bytes, ts_ns),
            State::Dependency { parser, .. } => parser.feed(side_of(direction), bytes, ts_ns),
            State::Ignored => {}
            State::Undecided { client, server } => {
                match direction {
                    Direction::Request => client.push((ts_ns, bytes.to_vec())),
                    Direction::Response => server.push((ts_ns, bytes.to_vec())),
                }
                self.decide(false);
            }
        }
    }

    pub fn gap(&mut self, direction: Direction, lost: u64) {
        match &mut self.state {
            State::Http(conn) => conn.gap(direction, lost),
            State::Dependency { parser, .. } => parser.gap(side_of(direction), lost),
            // Without the first bytes nothing can be told apart.
            State::Undecided { .. } => self.state = State::Ignored,
            State::Ignored => {}
        }
    }

    pub fn close(&mut self, ts_ns: u64) {
        if matches!(self.state, State::Undecided { .. }) {
            self.decide(true);
        }
        match &mut self.state {
            State::Http(conn) => conn.close(ts_ns),
            State::Dependency { parser, .. } => parser.close(),
            State::Undecided { .. } | State::Ignored => {}
        }
    }

    pub fn next(&mut self) -> Option<Output> {
        match &mut self.state {
            State::Http(conn) => conn.next_exchange().map(Output::Exchange),
            State::Dependency { protocol, parser } => parser.next_unit().map(|unit| Output::Unit {
                protocol: *protocol,
                unit,
            }),
            State::Undecided { .. } | State::Ignored => None,
        }
    }

    pub fn parse_errors(&self) -> u64 {
        match &self.state {
            State::Http(conn) => conn.stats().parse_errors,
            State::Dependency { parser, .. } => u64::from(parser.error().is_some()),
            State::Undecided { .. } | State::Ignored => 0,
        }
    }

    /// Picks the parser once the first bytes tell (or `closing` forces a choice), then replays
    /// the held bytes into it.
    fn decide(&mut self, closing: bool) {
        let State::Undecided { client, server } = &self.state else {
            return;
        };
        let (client_bytes, server_bytes) = (held(client), held(server));
        let protocol = match self.role {
            // Test cases: HTTP/1 requests only, decided by the peer's first bytes.
            Role::Server => {
                if client_bytes.is_empty() {
                    // A server speaking first is no HTTP/1 exchange; hold only so much.
                    if server_bytes.len() >= MAX_UNDECIDED {
                        self.state = State::Ignored;
                    }
                    return;
                }
                if http1::looks_like_request(&client_bytes) {
                    Protocol::Http1
                } else {
                    self.state = State::Ignored;
                    return;
                }
            }
            Role::Client => {
                let forced = closing
                    || client_bytes.len() >= MAX_UNDECIDED
                    || server_bytes.len() >= MAX_UNDECIDED;
                match detect::detect(&client_bytes, &server_bytes) {
                    Detection::Known(protocol) => protocol,
                    Detection::NeedMore if forced => {
                        detect::decide_on_close(&client_bytes, &server_bytes)
                    }
                    Detection::NeedMore => return,
                }
            }
        };
        let State::Undecided { client, server } =
            std::mem::replace(&mut self.state, State::Ignored)
        else {
            return;
        };
        self.state = match protocol {
            Protocol::Http1 => State::Http(Box::new(http1::Connection::new(self.limits.clone()))),
            other => State::Dependency {
                protocol: other,
                parser: dependency_parser(other, Mode::Both),
            },
        };
        // Server bytes first: server-first protocols (MySQL) greet before the client speaks, and
        // the parsers accept any interleaving of the two sides.
        for (ts, bytes) in server {
            self.feed(direction_of(Side::Server), &bytes, ts);
        }
        for (ts, bytes) in client {
            self.feed(direction_of(Side::Client), &bytes, ts);
        }
    }
}
