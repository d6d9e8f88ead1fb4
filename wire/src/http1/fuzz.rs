//! One entry point for fuzzers and property tests: arbitrary bytes become a script of feeds,
//! gaps and a close on one [`Connection`], and the invariants every caller relies on are checked.
//!
//! Script: a sequence of `[op][len][len bytes]` records; `op % 4` is 0 = request bytes,
//! 1 = response bytes, 2 = a gap of `len` bytes in direction `op / 4 % 2`, 3 = close.

use super::{Connection, Direction, Limits};

/// Small limits so short inputs reach every bound.
fn fuzz_limits() -> Limits {
    Limits {
        max_body_size: 64,
        max_head_size: 256,
        max_headers: 8,
        max_pending_requests: 4,
        max_reorder_bytes: 128,
    }
}

/// Runs the script in `data`; panics only when an invariant is broken.
pub fn fuzz_connection(data: &[u8]) {
    let limits = fuzz_limits();
    let mut conn = Connection::new(limits.clone());
    let mut exchanges = 0u64;
    let mut rest = data;
    let mut ts = 1u64;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        ts += 1;
        let direction = if (op / 4) % 2 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        match op % 4 {
            0 => conn.feed(Direction::Request, payload, ts),
            1 => conn.feed(Direction::Response, payload, ts),
            2 => conn.gap(direction, len as u64),
            _ => conn.close(ts),
        }
        while let Some(exchange) = conn.next_exchange() {
            exchanges += 1;
            assert!(exchange.request.body.len() <= limits.max_body_size);
            assert!(exchange.response.body.len() <= limits.max_body_size);
            assert!(exchange.request.headers.len() <= limits.max_headers);
            assert!(exchange.response.status_code >= 100);
        }
    }
    conn.close(ts + 1);
    while conn.next_exchange().is_some() {
        exchanges += 1;
    }
    assert!(conn.stats().exchanges >= exchanges);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap deterministic stand-in for the coverage-guided fuzzer, run with the unit tests.
    #[test]
    fn survives_pseudo_random_scripts() {
        let seeds: [&[u8]; 3] = [
            b"\x00\x20GET / HTTP/1.1\r\nHost: a\r\n\r\n\x01\x26HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            b"\x00\x30POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\x03\x00",
            b"\x01\x10HTTP/1.1 200 OK\r\n\x02\x05\x06\x07",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for seed in seeds {
            fuzz_connection(seed);
            for _ in 0..200 {
                let mut input = seed.to_vec();
                for _ in 0..4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let at = (state as usize) % input.len();
                    input[at] = (state >> 32) as u8;
                }
                fuzz_connection(&input);
            }
        }
    }
}
