//! `cargo fuzz run http1_connection` (from `wire/`): scripts of feeds, gaps and closes on one
//! HTTP/1 connection; see `kreplay_wire::http1::fuzz_connection` for the format and invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kreplay_wire::http1::fuzz_connection(data);
});
