//! PostgreSQL frontend/backend protocol v3 between the recorded service and its database.
//!
//! [`PostgresConnection`] is fed both byte streams of one connection and yields a
//! [`Unit`](crate::dependency::Unit) per client request (start-up packet, password, simple
//! query, extended-query batch, terminate), paired with everything the server sent in answer.
//! Raw bytes are kept exactly; `fields` hold the request normalised for matching.
//!
//! Where a request ends and how far its answer runs:
//! - SSLRequest / GSSENCRequest: answered by one byte. `N` lets the start-up continue in clear
//!   text; `S`/`G` means encryption follows, which we cannot read: the unit is still yielded,
//!   then parsing stops with an error (the replay side answers [`decline_ssl`]).
//! - StartupMessage and password/SASL messages: the answer runs until the server waits for the
//!   client again (an authentication request needing an answer: sub-codes 2, 3, 5, 7, 8, 9,
//!   10, 11), or until ReadyForQuery, or an ErrorResponse (fatal during start-up).
//! - Simple query `Q` and function call `F`: until ReadyForQuery.
//! - Extended query: the client's messages up to and including Sync or Flush are one request.
//!   After Sync the answer runs until ReadyForQuery. After Flush the server owes one final
//!   answer per Parse, Bind, Describe, Execute and Close of the batch (ParseComplete,
//!   BindComplete, RowDescription/NoData, CommandComplete/EmptyQueryResponse/PortalSuspended,
//!   CloseComplete); the answer ends when all are in, or at an ErrorResponse, after which the
//!   server ignores everything up to the next Sync (so a later Flush batch gets no answer).
//! - COPY FROM STDIN: the client's CopyData/CopyDone/CopyFail belong to the request that
//!   started the copy, and the unit is complete only when both ReadyForQuery and the client's
//!   end of copy are in. Sync/Flush sent during the copy are ignored by the server, so they
//!   belong to it too, as does the Sync libpq sends after CopyDone when the COPY came from an
//!   extended batch.
//! - Terminate and CancelRequest: no answer.
//!
//! Server messages that arrive while no request is waiting (asynchronous notices, or the
//! other feed being behind) are held and start the answer of the next request.

mod connection;
mod messages;
mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use connection::PostgresConnection;

/// Largest message (type byte excluded) accepted on either side; real servers cap lower.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Bytes held per side beyond one message: requests waiting for their answer, answers being
/// collected, and server bytes waiting for their request.
pub const MAX_HELD_BYTES: usize = 64 << 20;

/// The answer the mock server gives to SSLRequest and GSSENCRequest: carry on unencrypted.
pub fn decline_ssl() -> &'static [u8] {
    b"N"
}

/// ErrorResponse (severity ERROR, the given SQLSTATE and message) followed by ReadyForQuery
/// (idle): how the mock server answers a request no mock matched, so the client sees an
/// ordinary query error and the connection stays usable.
pub fn error_response(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', sqlstate),
        (b'M', message),
    ] {
        body.push(code);
        // A NUL would end the field early and desynchronise the client.
        body.extend(value.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = messages::frame(b'E', &body);
    out.extend(messages::frame(b'Z', b"I"));
    out
}
