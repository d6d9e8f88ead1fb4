//! Sans-IO protocol parsers for captured traffic: bytes in, values out.
//!
//! Nothing here does I/O, spawns threads or awaits: the agent feeds reassembled stream bytes and
//! pulls out parsed values, so every parser can be unit- and fuzz-tested without a network.

pub mod dependency;
pub mod detect;
pub mod generic;
pub mod http1;
pub mod mysql;
pub mod postgres;
pub mod redis;
