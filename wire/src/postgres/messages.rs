//! Message bodies: bytes of one framed message in, typed values out; no connection state.

use base64::Engine as _;

/// Protocol name used in errors.
pub(super) const PROTOCOL: &str = "postgres";

pub(super) const SSL_REQUEST_CODE: i32 = 80_877_103;
pub(super) const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub(super) const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// PostgreSQL refuses start-up packets longer than this (`MAX_STARTUP_PACKET_LENGTH`).
pub(super) const MAX_STARTUP_SIZE: usize = 10_000;

/// A message sent before start-up completes, without a type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Untyped {
    SslRequest,
    GssEncRequest,
    CancelRequest,
    Startup {
        minor_version: u16,
        params: Vec<(String, String)>,
    },
}

/// A parameter or function argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Null,
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

impl Value {
    /// Text as text, binary (or text that is not UTF-8) as `b64:...`, NULL as `NULL`.
    pub(super) fn render(&self) -> String {
        match self {
            Value::Null => "NULL".to_string(),
            Value::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => b64(bytes),
            },
            Value::Binary(bytes) => b64(bytes),
        }
    }
}

/// A typed frontend message, decoded as far as matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frontend {
    Query(String),
    Parse {
        name: String,
        query: String,
    },
    Bind {
        portal: String,
        statement: String,
        params: Vec<Value>,
        result_formats: Vec<i16>,
    },
    Describe {
        kind: char,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Close {
        kind: char,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    /// PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse: which one depends on
    /// what the server asked for, so the body is classified later by its content.
    Password(Vec<u8>),
    CopyData,
    CopyDone,
    CopyFail,
    FunctionCall {
        oid: i32,
        args: Vec<Value>,
    },
}

/// Whether `tag` starts a frontend message we understand (checked as soon as the type byte
/// arrives, so garbage is refused before its announced length is buffered).
pub(super) fn is_frontend_type(tag: u8) -> bool {
    b"QPBDECSHXpdcfF".contains(&tag)
}

/// Whether `tag` starts a backend message of protocol 3.
pub(super) fn is_backend_type(tag: u8) -> bool {
    b"RSKZTDCEN123ntsIAGHWdcVv".contains(&tag)
}

/// Authentication sub-codes after which the server waits for the client: KerberosV5,
/// cleartext, MD5, GSS, GSSContinue, SSPI, SASL, SASLContinue.
pub(super) fn auth_waits_for_client(code: i32) -> bool {
    matches!(code, 2 | 3 | 5 | 7 | 8 | 9 | 10 | 11)
}

/// Checks the few backend bodies whose content steers pairing; returns the authentication
/// sub-code of an `R` message.
pub(super) fn check_backend(tag: u8, body: &[u8]) -> Result<Option<i32>, String> {
    match tag {
        b'R' => Reader::new(body).i32().map(Some),
        b'Z' => match body {
            [b'I' | b'T' | b'E'] => Ok(None),
            _ => Err("ReadyForQuery without a transaction status I, T or E".to_string()),
        },
        _ => Ok(None),
    }
}

/// Decodes a start-up style packet body (after its length).
pub(super) fn decode_untyped(body: &[u8]) -> Result<Untyped, String> {
    let mut reader = Reader::new(body);
    let code = reader.i32()?;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            reader.finish()?;
            Ok(if code == SSL_REQUEST_CODE {
                Untyped::SslRequest
            } else {
                Untyped::GssEncRequest
            })
        }
        // Process id and secret key; protocol 3.2 allows a longer key.
        CANCEL_REQUEST_CODE if body.len() >= 12 => Ok(Untyped::CancelRequest),
        _ if code >> 16 == 3 => {
            let mut params = Vec::new();
            loop {
                let name = reader.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = reader.cstr()?;
                params.push((lossy(name), lossy(value)));
            }
            reader.finish()?;
            Ok(Untyped::Startup {
                minor_version: (code & 0xffff) as u16,
                params,
            })
        }
        _ => Err(format!("unsupported start-up code {code}")),
    }
}

/// Decodes the body of a typed frontend message.
pub(super) fn decode_frontend(tag: u8, body: &[u8]) -> Result<Frontend, String> {
    let mut r = Reader::new(body);
    let message = match tag {
        b'Q' => Frontend::Query(lossy(r.cstr()?)),
        b'P' => {
            let name = lossy(r.cstr()?);
            let query = lossy(r.cstr()?);
            let types = r.u16()?;
            for _ in 0..types {
                r.i32()?;
            }
            Frontend::Parse { name, query }
        }
        b'B' => {
            let portal = lossy(r.cstr()?);
            let statement = lossy(r.cstr()?);
            let formats = r.formats()?;
            let params = r.values(&formats)?;
            let result_formats = r.formats()?;
            Frontend::Bind {
                portal,
                statement,
                params,
                result_formats,
            }
        }
        b'D' | b'C' => {
            let kind = match r.u8()? {
                kind @ (b'S' | b'P') => char::from(kind),
                other => return Err(format!("describe/close target {other:#04x}")),
            };
            let name = lossy(r.cstr()?);
            if tag == b'D' {
                Frontend::Describe { kind, name }
            } else {
                Frontend::Close { kind, name }
            }
        }
        b'E' => Frontend::Execute {
            portal: lossy(r.cstr()?),
            max_rows: r.i32()?,
        },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'c' => Frontend::CopyDone,
        b'p' => return Ok(Frontend::Password(body.to_vec())),
        b'd' => return Ok(Frontend::CopyData),
        b'f' => {
            r.cstr()?;
            Frontend::CopyFail
        }
        b'F' => {
            let oid = r.i32()?;
            let formats = r.formats()?;
            let args = r.values(&formats)?;
            r.i16()?;
            Frontend::FunctionCall { oid, args }
        }
        other => return Err(format!("unknown frontend message type {other:#04x}")),
    };
    // The server refuses trailing bytes too.
    r.finish()?;
    Ok(message)
}

/// `type byte + int32 length (itself included) + body`.
pub(super) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    // Callers only frame small bodies; saturate rather than wrap if one ever is not.
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The big-endian int32 at the start of `bytes`, if there are four.
pub(super) fn be_i32(bytes: &[u8]) -> Option<i32> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(head))
}

pub(super) fn b64(bytes: &[u8]) -> String {
    format!(
        "b64:{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cursor over one message body; every read is bounds-checked.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| "message body shorter than its fields".to_string())?;
        self.pos += n;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, String> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(super) fn i16(&mut self) -> Result<i16, String> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(super) fn i32(&mut self) -> Result<i32, String> {
        be_i32(self.take(4)?).ok_or_else(|| "short int32".to_string())
    }

    /// A NUL-terminated string, without its NUL.
    pub(super) fn cstr(&mut self) -> Result<&'a [u8], String> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| "string without its NUL terminator".to_string())?;
        let text = self.take(len)?;
        self.pos += 1;
        Ok(text)
    }

    /// A count of format codes and the codes (0 text, 1 binary).
    fn formats(&mut self) -> Result<Vec<i16>, String> {
        let count = self.u16()?;
        (0..count)
            .map(|_| match self.i16()? {
                code @ (0 | 1) => Ok(code),
                other => Err(format!("format code {other}")),
            })
            .collect()
    }

    /// A count of length-prefixed values, each in the format `formats` gives it (none: all
    /// text; one: all alike; else one per value).
    fn values(&mut self, formats: &[i16]) -> Result<Vec<Value>, String> {
        let count = usize::from(self.u16()?);
        if formats.len() > 1 && formats.len() != count {
            return Err(format!("{} format codes for {count} values", formats.len()));
        }
        let mut values = Vec::new();
        for index in 0..count {
            let format = match formats {
                [] => 0,
                [one] => *one,
                many => many.get(index).copied().unwrap_or_default(),
            };
            let len = self.i32()?;
            let value = match usize::try_from(len) {
                Ok(len) if format == 1 => Value::Binary(self.take(len)?.to_vec()),
                Ok(len) => Value::Text(self.take(len)?.to_vec()),
                Err(_) if len == -1 => Value::Null,
                Err(_) => return Err(format!("value length {len}")),
            };
            values.push(value);
        }
        Ok(values)
    }

    pub(super) fn finish(&self) -> Result<(), String> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err("trailing bytes after the message fields".to_string())
        }
    }
}
