//! Where the server's answer to a request ends. Packets carry no request id, so the answer is
//! over when its shape says so: one packet, OK/ERR, or a result set's terminator without the
//! more-results flag.

use super::codec::Reader;
use super::values::Statements;
use super::{malformed, status};
use crate::dependency::DependencyError;

const OK: u8 = 0x00;
const MORE_DATA: u8 = 0x01;
const LOCAL_INFILE: u8 = 0xFB;
const EOF: u8 = 0xFE;
const ERR: u8 = 0xFF;

/// The capabilities both sides agreed on that change how answers are framed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Framing {
    /// CLIENT_DEPRECATE_EOF: no EOF after column definitions; an OK with a 0xFE header ends
    /// the rows.
    pub deprecate_eof: bool,
    /// CLIENT_OPTIONAL_RESULTSET_METADATA: a byte after the column count says whether column
    /// definitions follow.
    pub optional_metadata: bool,
}

/// The answer a request waits for, and how far it got.
#[derive(Debug)]
pub(super) enum Expect {
    /// No answer (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    None,
    /// The server's first packet.
    Greeting,
    /// Authentication: packets until OK, ERR, or one the client must answer.
    Auth,
    /// Exactly one packet (OK/ERR, a statistics string, an EOF).
    Single,
    /// Text (COM_QUERY) or binary (COM_STMT_EXECUTE) result sets.
    Results { binary: bool, state: Results },
    /// COM_STMT_PREPARE_OK and its definitions; `left` counts the packets after it.
    Prepare { query: String, left: Option<u64> },
    /// Packets until an EOF/OK terminator or ERR (COM_FIELD_LIST, COM_STMT_FETCH).
    UntilEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Results {
    /// The first packet of a result: OK, ERR, LOCAL INFILE or a column count.
    Start,
    Columns(u64),
    /// The EOF after the column definitions (no CLIENT_DEPRECATE_EOF).
    ColumnsEnd,
    Rows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    More,
    Done,
}

impl Expect {
    pub(super) fn results(binary: bool) -> Self {
        Self::Results {
            binary,
            state: Results::Start,
        }
    }

    pub(super) fn prepare(query: String) -> Self {
        Self::Prepare { query, left: None }
    }

    /// Takes the next packet of the answer.
    pub(super) fn step(
        &mut self,
        payload: &[u8],
        framing: Framing,
        statements: &mut Statements,
    ) -> Result<Step, DependencyError> {
        let Some(&first) = payload.first() else {
            return Err(malformed("empty packet in a server answer"));
        };
        match self {
            Self::None | Self::Greeting | Self::Single => Ok(Step::Done),
            Self::Auth => match first {
                OK | ERR | EOF => Ok(Step::Done),
                // caching_sha2_password's fast-auth success: the OK follows.
                MORE_DATA if payload == [MORE_DATA, 3] => Ok(Step::More),
                MORE_DATA => Ok(Step::Done),
                other => Err(malformed(format!(
                    "packet {other:#04x} during authentication"
                ))),
            },
            Self::UntilEof => Ok(if first == ERR || is_terminator(payload, framing) {
                Step::Done
            } else {
                Step::More
            }),
            Self::Prepare { query, left } => match left {
                None => prepare_ok(payload, framing, statements, query, left),
                Some(n) => {
                    *n = n.saturating_sub(1);
                    Ok(if *n == 0 { Step::Done } else { Step::More })
                }
            },
            Self::Results { binary, state } => result_step(*binary, state, payload, framing),
        }
    }
}

fn prepare_ok(
    payload: &[u8],
    framing: Framing,
    statements: &mut Statements,
    query: &str,
    left: &mut Option<u64>,
) -> Result<Step, DependencyError> {
    match payload.first() {
        Some(&ERR) => return Ok(Step::Done),
        Some(&OK) => {}
        _ => return Err(malformed("COM_STMT_PREPARE answered by neither OK nor ERR")),
    }
    let mut r = Reader::new(payload);
    r.u8("status")?;
    let id = r.u32("statement id")?;
    let columns = u64::from(r.u16("column count")?);
    let params_count = r.u16("parameter count")?;
    let params = u64::from(params_count);
    // Filler, warning count, then (optional metadata only) whether definitions follow.
    let metadata = if framing.optional_metadata && r.remaining() > 3 {
        r.take(3, "prepare filler")?;
        r.u8("metadata follows")? != 0
    } else {
        true
    };
    statements.prepared(id, params_count, query);
    let definitions = if metadata { params + columns } else { 0 };
    let eofs = if framing.deprecate_eof {
        0
    } else {
        u64::from(params > 0) + u64::from(columns > 0)
    };
    let n = definitions + eofs;
    *left = Some(n);
    Ok(if n == 0 { Step::Done } else { Step::More })
}

fn result_step(
    binary: bool,
    state: &mut Results,
    payload: &[u8],
    framing: Framing,
) -> Result<Step, DependencyError> {
    let first = payload.first().copied().unwrap_or_default();
    let after_columns = if framing.deprecate_eof {
        Results::Rows
    } else {
        Results::ColumnsEnd
    };
    match *state {
        Results::Start => match first {
            OK => {
                let more = ok_status(payload)? & status::MORE_RESULTS_EXISTS != 0;
                return Ok(if more { Step::More } else { Step::Done });
            }
            ERR => return Ok(Step::Done),
            LOCAL_INFILE => {
                return Err(malformed("LOCAL INFILE requests are not supported"));
            }
            _ => {
                let mut r = Reader::new(payload);
                let count = r.lenenc("column count")?;
                if count == 0 {
                    return Err(malformed("result set with zero columns"));
                }
                let metadata = !framing.optional_metadata || r.u8("metadata follows")? != 0;
                *state = if metadata {
                    Results::Columns(count)
                } else {
                    after_columns
                };
            }
        },
        Results::Columns(left) => {
            *state = if left > 1 {
                Results::Columns(left - 1)
            } else {
                after_columns
            };
        }
        Results::ColumnsEnd => {
            if first == ERR {
                return Ok(Step::Done);
            }
            if first != EOF || payload.len() >= 9 {
                return Err(malformed("column definitions not followed by EOF"));
            }
            // An open cursor: the rows come with COM_STMT_FETCH.
            if binary && eof_status(payload) & status::CURSOR_EXISTS != 0 {
                return Ok(Step::Done);
            }
            *state = Results::Rows;
        }
        Results::Rows => {
            if first == ERR {
                return Ok(Step::Done);
            }
            if is_terminator(payload, framing) {
                let flags = if framing.deprecate_eof {
                    ok_status(payload)?
                } else {
                    eof_status(payload)
                };
                if flags & status::MORE_RESULTS_EXISTS != 0 {
                    *state = Results::Start;
                    return Ok(Step::More);
                }
                return Ok(Step::Done);
            }
            if binary && first != OK {
                return Err(malformed(format!(
                    "binary row with header {first:#04x} instead of 0x00"
                )));
            }
        }
    }
    Ok(Step::More)
}

/// The packet that ends rows or definitions: an EOF (shorter than 9 bytes), or with
/// CLIENT_DEPRECATE_EOF an OK with a 0xFE header (a text row can start with 0xFE only when a
/// value is 16 MiB or longer).
fn is_terminator(payload: &[u8], framing: Framing) -> bool {
    payload.first() == Some(&EOF)
        && if framing.deprecate_eof {
            payload.len() < super::MAX_FRAGMENT
        } else {
            payload.len() < 9
        }
}

/// Status flags of an OK packet: after the header, affected rows and last insert id.
fn ok_status(payload: &[u8]) -> Result<u16, DependencyError> {
    let mut r = Reader::new(payload);
    r.u8("OK header")?;
    r.lenenc("affected rows")?;
    r.lenenc("last insert id")?;
    // Pre-4.1 servers end the OK here.
    if r.is_empty() {
        return Ok(0);
    }
    r.u16("status flags")
}

/// Status flags of an EOF packet: after the header and warning count.
fn eof_status(payload: &[u8]) -> u16 {
    match payload.get(3..5) {
        Some(&[low, high]) => u16::from_le_bytes([low, high]),
        _ => 0,
    }
}
