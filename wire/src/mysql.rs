//! MySQL client/server protocol over one captured connection.
//!
//! [`MySqlConnection`] turns the two byte streams of a connection the recorded service opened to
//! a MySQL server into [`crate::dependency::Unit`]s: the server's greeting, the client's
//! handshake response and authentication answers, then one unit per command with every packet
//! the server answered it with.
//!
//! The protocol is half-duplex: the server speaks first, then each client message is answered
//! completely before the next one (or has no answer at all). So the parser reads the next
//! client message only after the previous answer is complete; bytes of a side that arrive early
//! wait in its buffer. Classifying a client message uses only what the client sent (its
//! capabilities from the handshake response), so [`Mode::RequestsOnly`] yields the same fields
//! as [`Mode::Both`].
//!
//! Layout: [`framer`] splits a stream into packets (reassembling 16 MiB continuations),
//! [`codec`] reads protocol integers and strings, [`handshake`] parses the connection phase,
//! [`command`] turns commands into fields and lifetimes, [`values`] decodes binary-protocol
//! parameters, [`response`] decides where an answer ends, and [`connection`] drives them.
//!
//! [`Mode::RequestsOnly`]: crate::dependency::Mode::RequestsOnly
//! [`Mode::Both`]: crate::dependency::Mode::Both

mod codec;
mod command;
mod connection;
mod framer;
mod fuzz;
mod handshake;
mod response;
mod values;

#[cfg(test)]
mod tests;

pub use connection::MySqlConnection;
#[doc(hidden)]
pub use fuzz::fuzz_connection;

/// Name used in [`crate::dependency::DependencyError`]s.
const PROTOCOL: &str = "mysql";

/// Largest reassembled packet payload, and largest answer to one request: beyond it the
/// connection is given up rather than held in memory.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// A payload of this length continues in the next packet.
const MAX_FRAGMENT: usize = 0xFF_FFFF;

/// Capability flags this parser looks at (the rest pass through untouched).
mod caps {
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
}

/// Server status flags carried by OK and EOF packets.
mod status {
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
}

fn malformed(reason: impl Into<String>) -> crate::dependency::DependencyError {
    crate::dependency::DependencyError::Malformed {
        protocol: PROTOCOL,
        reason: reason.into(),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    format!(
        "b64:{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// An ERR packet (protocol 4.1 form) the mock server can send for a request it has no recorded
/// answer to: `0xFF`, `code`, `#`, the five-character SQL state and the message.
///
/// `sql_state` other than five ASCII characters becomes `HY000` (general error); a message
/// too long for one packet is cut.
pub fn err_packet(sequence_id: u8, code: u16, sql_state: &str, message: &str) -> Vec<u8> {
    let state = if sql_state.len() == 5 && sql_state.is_ascii() {
        sql_state.as_bytes()
    } else {
        b"HY000"
    };
    let mut payload = Vec::with_capacity(9 + message.len());
    payload.push(0xFF);
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    payload.extend_from_slice(state);
    payload.extend_from_slice(message.as_bytes());
    // One packet only: a payload of MAX_FRAGMENT bytes would announce a continuation.
    payload.truncate(MAX_FRAGMENT - 1);
    let len = payload.len() as u32;
    let mut packet = Vec::with_capacity(4 + payload.len());
    packet.extend_from_slice(&len.to_le_bytes()[..3]);
    packet.push(sequence_id);
    packet.extend_from_slice(&payload);
    packet
}

/// Whether the server answers the request a unit's `fields` describe: false for COM_QUIT,
/// COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA, which a mock server must never answer, not even
/// with an error when it has no recording of them.
pub fn expects_answer(fields: &[(String, String)]) -> bool {
    !matches!(
        fields
            .first()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        Some((
            "command",
            "COM_QUIT" | "COM_STMT_CLOSE" | "COM_STMT_SEND_LONG_DATA"
        ))
    )
}

/// The sequence id the first packet of the answer to `request` (a unit's request bytes) must
/// carry: one more than that of its last packet. 1 when `request` holds no whole packet.
pub fn response_sequence_id(request: &[u8]) -> u8 {
    let mut at = 0usize;
    let mut next = 1u8;
    while let Some(header) = request.get(at..at + 4) {
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if request.len() < at + 4 + len {
            break;
        }
        next = header[3].wrapping_add(1);
        at += 4 + len;
    }
    next
}
