//! One entry point for fuzzers and property tests: arbitrary bytes become a script of feeds,
//! gaps and a close on a [`MySqlConnection`], and the invariants callers rely on are checked.
//!
//! Script: the first byte picks the mode (even: both sides, odd: requests only), then records
//! `[op][len][len bytes]`; `op % 4` is 0 = client bytes, 1 = server bytes, 2 = a gap of `len`
//! bytes, 3 = close.

use super::{MAX_PAYLOAD, MySqlConnection};
use crate::dependency::{DependencyParser, Mode, Side};

/// Runs the script in `data`; panics only when an invariant is broken.
pub fn fuzz_connection(data: &[u8]) {
    let Some((mode, mut rest)) = data.split_first() else {
        return;
    };
    let mode = if mode % 2 == 0 {
        Mode::Both
    } else {
        Mode::RequestsOnly
    };
    let mut conn = MySqlConnection::new(mode);
    let mut ts = 1u64;
    let mut last_request_ts = 0u64;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        ts += 1;
        match op % 4 {
            0 => conn.feed(Side::Client, payload, ts),
            1 => conn.feed(Side::Server, payload, ts),
            2 => conn.gap(Side::Client, len as u64),
            _ => conn.close(),
        }
        while let Some(unit) = conn.next_unit() {
            assert!(unit.request.len() <= 2 * MAX_PAYLOAD);
            assert!(unit.response.len() <= MAX_PAYLOAD);
            assert!(unit.request_ts_ns >= last_request_ts || unit.request.is_empty());
            if !unit.request.is_empty() {
                last_request_ts = unit.request_ts_ns;
            }
            assert!(!unit.fields.is_empty());
            if mode == Mode::RequestsOnly {
                assert!(unit.response.is_empty());
            }
        }
    }
    conn.close();
    while conn.next_unit().is_some() {}
}
