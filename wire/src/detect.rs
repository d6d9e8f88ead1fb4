//! Which protocol a dependency connection speaks, from its first bytes alone.
//!
//! Port numbers are never used: a PostgreSQL on 5433, a Redis on 6380 or an HTTP API on 5432
//! are recognised by what they send, and a protocol we do not know falls back to
//! [`Protocol::Generic`] whatever its port. The caller passes the bytes each side has sent so
//! far and asks again with more while the answer is [`Detection::NeedMore`]; at close,
//! [`decide_on_close`] decides with what there is.
//!
//! Signatures:
//! - HTTP/1: a known method and its space (`GET `, `POST `…) from the client.
//! - PostgreSQL: the client's first message is untyped: a big-endian int32 length, then an
//!   SSLRequest, GSSENCRequest or CancelRequest code, or protocol version 3.x with a length
//!   of 8 to 10000.
//! - Redis: the client starts with an array of bulk strings (`*<digits>\r\n$`), or with an
//!   inline command clients send first (`PING`, `AUTH`, `HELLO`, `SELECT`, `INFO`, `QUIT`,
//!   `COMMAND`, any case) followed by a space or a line end.
//! - MySQL: the server speaks first, a protocol-10 handshake: 3-byte little-endian length,
//!   sequence id 0, byte 10, then a printable NUL-terminated server version. It is decided
//!   from the server's bytes, even when the client has sent nothing (or its reply).
//! - Anything else: [`Protocol::Generic`] once the client has sent a byte no signature starts
//!   with, or the server has sent 8 bytes that are not a MySQL greeting.

use crate::http1::looks_like_request;

/// A protocol the capture has a parser for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Postgres,
    Redis,
    MySql,
    Generic,
}

impl Protocol {
    /// The stable lower-case name used in stored mocks and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http",
            Protocol::Postgres => "postgres",
            Protocol::Redis => "redis",
            Protocol::MySql => "mysql",
            Protocol::Generic => "generic",
        }
    }
}

/// The outcome of [`detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detection {
    Known(Protocol),
    /// The bytes so far are the start of some signature: ask again with more.
    NeedMore,
}

/// What one signature says about the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// A prefix of the signature: more bytes decide.
    Maybe,
}

/// Server bytes that are not a MySQL greeting decide Generic once there are this many.
const SERVER_BYTES_FOR_GENERIC: usize = 8;

/// Decides the protocol from the first bytes the client (`client_first`) and the server
/// (`server_first`) have sent, either possibly empty.
pub fn detect(client_first: &[u8], server_first: &[u8]) -> Detection {
    let mysql = mysql_greeting(server_first);
    if mysql == Verdict::Yes {
        return Detection::Known(Protocol::MySql);
    }
    // A server still in the middle of what may be a greeting decides nothing yet.
    let mut undecided = !server_first.is_empty() && mysql == Verdict::Maybe;
    if !client_first.is_empty() {
        for (verdict, protocol) in [
            (http1(client_first), Protocol::Http1),
            (postgres(client_first), Protocol::Postgres),
            (redis(client_first), Protocol::Redis),
        ] {
            match verdict {
                Verdict::Yes => return Detection::Known(protocol),
                Verdict::Maybe => undecided = true,
                Verdict::No => {}
            }
        }
        if !undecided {
            return Detection::Known(Protocol::Generic);
        }
    } else if !undecided && server_first.len() >= SERVER_BYTES_FOR_GENERIC {
        return Detection::Known(Protocol::Generic);
    }
    Detection::NeedMore
}

/// [`detect`] for a connection that closed (or waited long enough): never undecided, what
/// matches no signature yet is [`Protocol::Generic`].
pub fn decide_on_close(client_first: &[u8], server_first: &[u8]) -> Protocol {
    match detect(client_first, server_first) {
        Detection::Known(protocol) => protocol,
        Detection::NeedMore => Protocol::Generic,
    }
}

/// `looks_like_request` also accepts a bare prefix such as `G`; only a whole method and its
/// space decide.
fn http1(client: &[u8]) -> Verdict {
    if !looks_like_request(client) {
        Verdict::No
    } else if client.contains(&b' ') {
        Verdict::Yes
    } else {
        Verdict::Maybe
    }
}

/// SSLRequest, GSSENCRequest, CancelRequest codes, and protocol 3.0 to 3.2.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: [u32; 3] = [0x0003_0000, 0x0003_0001, 0x0003_0002];

fn postgres(client: &[u8]) -> Verdict {
    let length_ok = |code: u32, length: u32| match code {
        SSL_REQUEST | GSSENC_REQUEST => length == 8,
        // 16 bytes up to protocol 3.1; 3.2 allows a longer cancel key (up to 256 bytes).
        CANCEL_REQUEST => (16..=264).contains(&length),
        _ => (8..=10_000).contains(&length),
    };
    let candidates = [SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST]
        .into_iter()
        .chain(PROTOCOL_3);
    let mut verdict = Verdict::No;
    for code in candidates {
        let code_bytes = code.to_be_bytes();
        let seen = client.get(4..client.len().min(8)).unwrap_or_default();
        if !code_bytes.starts_with(seen) {
            continue;
        }
        let plausible = match client.get(..4) {
            Some(length) => length_ok(
                code,
                u32::from_be_bytes([length[0], length[1], length[2], length[3]]),
            ),
            // Every valid length is below 65536: two zero bytes first.
            None => client.iter().take(2).all(|&b| b == 0),
        };
        if plausible {
            if client.len() >= 8 {
                return Verdict::Yes;
            }
            verdict = Verdict::Maybe;
        }
    }
    verdict
}

/// Inline commands a client may send before anything else.
const REDIS_INLINE: [&[u8]; 7] = [
    b"PING", b"AUTH", b"HELLO", b"SELECT", b"INFO", b"QUIT", b"COMMAND",
];
/// Longest element count a multibulk header may carry (Redis caps it at `i32::MAX`).
const MAX_COUNT_DIGITS: usize = 10;

fn redis(client: &[u8]) -> Verdict {
    if let Some(rest) = client.strip_prefix(b"*") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_COUNT_DIGITS {
            return Verdict::No;
        }
        let tail = &rest[digits..];
        return match tail {
            [] => Verdict::Maybe,
            _ if digits == 0 => Verdict::No,
            [b'\r'] | [b'\r', b'\n'] => Verdict::Maybe,
            [b'\r', b'\n', b'$', ..] => Verdict::Yes,
            _ => Verdict::No,
        };
    }
    let mut verdict = Verdict::No;
    for word in REDIS_INLINE {
        let common = client.len().min(word.len());
        if !client[..common].eq_ignore_ascii_case(&word[..common]) {
            continue;
        }
        match &client[common..] {
            [] => verdict = Verdict::Maybe,
            [b' ' | b'\n', ..] | [b'\r', b'\n', ..] => return Verdict::Yes,
            [b'\r'] => verdict = Verdict::Maybe,
            _ => {}
        }
    }
    verdict
}

/// The MySQL protocol-10 greeting, which the server sends before the client says anything.
fn mysql_greeting(server: &[u8]) -> Verdict {
    /// Versions are short (`8.0.36`, `5.5.5-10.11.6-MariaDB-1:10.11.6+maria~ubu2204`).
    const MAX_VERSION: usize = 100;
    /// The fixed fields after the version: at least this long a payload.
    const MIN_PAYLOAD: usize = 1 + 1 + 4 + 8 + 1 + 2;
    let length = match server.get(..3) {
        Some(&[a, b, c]) => usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16,
        _ => MIN_PAYLOAD,
    };
    if length < MIN_PAYLOAD {
        return Verdict::No;
    }
    let sequence_ok = server.get(3).is_none_or(|&sequence| sequence == 0);
    let version_ok = server.get(4).is_none_or(|&protocol| protocol == 10);
    if !sequence_ok || !version_ok {
        return Verdict::No;
    }
    let version = server.get(5..).unwrap_or_default();
    match version.iter().position(|&b| b == 0) {
        Some(0) => Verdict::No,
        Some(end) if end + MIN_PAYLOAD <= length && is_printable(&version[..end]) => Verdict::Yes,
        Some(_) => Verdict::No,
        None if version.len() < MAX_VERSION && is_printable(version) => Verdict::Maybe,
        None => Verdict::No,
    }
}

fn is_printable(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..0x7f).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    use Detection::{Known, NeedMore};

    /// A PostgreSQL 16 StartupMessage for user `app`, database `shop`.
    fn startup_message() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00app\x00database\x00shop\x00\x00";
        let length = (body.len() + 4) as u32;
        [&length.to_be_bytes()[..], body].concat()
    }

    /// The start of a MySQL 8.0.36 handshake greeting (protocol 10, 74-byte payload).
    const MYSQL_GREETING: &[u8] = b"\x4a\x00\x00\x00\x0a8.0.36\x00\x0b\x00\x00\x00\x12\x34\x56\x78\x11\x22\x33\x44\x00\xff\xff\xff\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x11\x00caching_sha2_password\x00";

    const TLS_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = [
            Protocol::Http1,
            Protocol::Postgres,
            Protocol::Redis,
            Protocol::MySql,
            Protocol::Generic,
        ]
        .map(Protocol::as_str)
        .into();
        assert_eq!(names, ["http", "postgres", "redis", "mysql", "generic"]);
    }

    #[test]
    fn http_methods_are_http1_once_the_space_is_there() {
        for request in [
            &b"GET / HTTP/1.1\r\nHost: api\r\n\r\n"[..],
            b"POST /orders HTTP/1.1\r\n",
            b"PUT ",
            b"DELETE /x",
            b"PATCH /x",
            b"HEAD / HTTP/1.0",
            b"OPTIONS * HTTP/1.1",
            b"CONNECT db:5432 HTTP/1.1",
        ] {
            assert_eq!(detect(request, b""), Known(Protocol::Http1), "{request:?}");
        }
        for prefix in [&b"G"[..], b"GE", b"GET", b"DELE", b"OPTIONS"] {
            assert_eq!(detect(prefix, b""), NeedMore, "{prefix:?}");
        }
        assert_eq!(detect(b"GETX / HTTP/1.1", b""), Known(Protocol::Generic));
        assert_eq!(decide_on_close(b"GE", b""), Protocol::Generic);
    }

    #[test]
    fn postgres_first_messages() {
        let startup = startup_message();
        assert_eq!(detect(&startup, b""), Known(Protocol::Postgres));
        assert_eq!(detect(&startup[..8], b""), Known(Protocol::Postgres));
        let ssl_request = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
        let gssenc_request = b"\x00\x00\x00\x08\x04\xd2\x16\x30";
        let cancel = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x12\x34\xde\xad\xbe\xef";
        for message in [&ssl_request[..], gssenc_request, cancel] {
            assert_eq!(
                detect(message, b""),
                Known(Protocol::Postgres),
                "{message:?}"
            );
        }
        for prefix in 1..8 {
            assert_eq!(detect(&ssl_request[..prefix], b""), NeedMore, "{prefix}");
            assert_eq!(detect(&startup[..prefix], b""), NeedMore, "{prefix}");
        }
        // Implausible lengths, an unknown code, protocol 2.
        for other in [
            &b"\x00\x00\x00\x09\x04\xd2\x16\x2f"[..],
            b"\x00\x01\x00\x00\x00\x03\x00\x00",
            b"\x00\x00\x00\x08\x04\xd2\x16\x99",
            b"\x00\x00\x01\x28\x00\x02\x00\x00",
            b"\x00\x00\x00\x07\x00\x03\x00\x00",
        ] {
            assert_eq!(detect(other, b""), Known(Protocol::Generic), "{other:?}");
        }
        assert_eq!(decide_on_close(&ssl_request[..4], b""), Protocol::Generic);
    }

    #[test]
    fn redis_first_commands() {
        for command in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
            b"*12\r\n$",
            b"PING\r\n",
            b"ping\r\n",
            b"AUTH secret\r\n",
            b"HELLO 3\r\n",
            b"SELECT 1\r\n",
            b"INFO\n",
            b"QUIT\r\n",
            b"COMMAND DOCS\r\n",
        ] {
            assert_eq!(detect(command, b""), Known(Protocol::Redis), "{command:?}");
        }
        for prefix in [
            &b"*"[..],
            b"*1",
            b"*1\r",
            b"*1\r\n",
            b"PIN",
            b"PING",
            b"PING\r",
            b"co",
        ] {
            assert_eq!(detect(prefix, b""), NeedMore, "{prefix:?}");
        }
        for other in [
            &b"*1\r\n*"[..],
            b"*\r\n",
            b"PINGX\r\n",
            b"SET k v\r\n",
            b"*12345678901\r\n",
        ] {
            assert_eq!(detect(other, b""), Known(Protocol::Generic), "{other:?}");
        }
        // `P` may still be PING or POST, `PU` only PUT.
        assert_eq!(detect(b"P", b""), NeedMore);
        assert_eq!(detect(b"PU", b""), NeedMore);
        assert_eq!(detect(b"PX", b""), Known(Protocol::Generic));
    }

    #[test]
    fn mysql_is_decided_from_the_server_greeting() {
        assert_eq!(detect(b"", MYSQL_GREETING), Known(Protocol::MySql));
        assert_eq!(detect(b"", &MYSQL_GREETING[..12]), Known(Protocol::MySql));
        // The client's handshake response does not hide the greeting.
        let response = b"\xa9\x00\x00\x01\x8d\xa6\xff\x19\x00\x00\x00\x01\xff";
        assert_eq!(detect(response, MYSQL_GREETING), Known(Protocol::MySql));
        let mariadb = b"\x5b\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-1:10.11.6+maria~ubu2204\x00\x09";
        assert_eq!(detect(b"", mariadb), Known(Protocol::MySql));
        for prefix in 1..11 {
            assert_eq!(detect(b"", &MYSQL_GREETING[..prefix]), NeedMore, "{prefix}");
        }
        assert_eq!(
            decide_on_close(b"", &MYSQL_GREETING[..3]),
            Protocol::Generic
        );
    }

    #[test]
    fn other_server_first_protocols_are_generic() {
        assert_eq!(
            detect(b"", b"220 mail.example ESMTP\r\n"),
            Known(Protocol::Generic)
        );
        assert_eq!(
            detect(b"", b"SSH-2.0-OpenSSH_9.6\r\n"),
            Known(Protocol::Generic)
        );
        // A greeting-shaped packet with a non-printable version, or a wrong sequence id.
        let binary = b"\x4a\x00\x00\x00\x0a8.0\x01\x00\x00\x00\x00\x00\x00";
        assert_eq!(detect(b"", binary), Known(Protocol::Generic));
        let seq_one = b"\x4a\x00\x00\x01\x0a8.0.36\x00";
        assert_eq!(detect(b"", seq_one), Known(Protocol::Generic));
        assert_eq!(detect(b"", b"220 "), NeedMore);
        assert_eq!(detect(b"", b""), NeedMore);
        assert_eq!(decide_on_close(b"", b""), Protocol::Generic);
    }

    #[test]
    fn tls_and_unknown_bytes_are_generic() {
        assert_eq!(detect(TLS_CLIENT_HELLO, b""), Known(Protocol::Generic));
        assert_eq!(
            detect(&TLS_CLIENT_HELLO[..1], b""),
            Known(Protocol::Generic)
        );
        assert_eq!(
            detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b""),
            Known(Protocol::Generic)
        );
        assert_eq!(detect(b"\x00\x00", b""), NeedMore);
        assert_eq!(detect(b"\x01", b""), Known(Protocol::Generic));
        assert_eq!(decide_on_close(TLS_CLIENT_HELLO, b""), Protocol::Generic);
        assert_eq!(
            decide_on_close(b"*1\r\n$4\r\nPING\r\n", b""),
            Protocol::Redis
        );
    }
}
