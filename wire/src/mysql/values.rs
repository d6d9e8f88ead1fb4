//! Binary-protocol parameter values: COM_STMT_EXECUTE's parameters and query attributes, as
//! text for the match fields.
//!
//! A COM_STMT_EXECUTE does not say how many parameters it carries: the count comes from the
//! server's COM_STMT_PREPARE_OK, which a mock server's parser never sees. So the count is taken
//! from the prepare answer when it was seen, from the statement's earlier execute, from the
//! query-attributes count, or else inferred: the one count whose null bitmap, types and values
//! use up the packet exactly.

use std::collections::HashMap;

use super::codec::{Reader, text_or_b64};
use super::{b64, caps, malformed};
use crate::dependency::DependencyError;

/// Prepared statements remembered per connection (MySQL's default `max_prepared_stmt_count`).
const MAX_STATEMENTS: usize = 16_382;
/// Parameter types remembered over all statements.
const MAX_STORED_TYPES: usize = 1 << 20;
/// Bytes examined while inferring a parameter count before giving up.
const INFER_BUDGET: usize = 1 << 20;

/// The unsigned flag in the high byte of a parameter type.
const UNSIGNED: u16 = 0x8000;

#[derive(Debug, Default)]
struct Statement {
    /// From COM_STMT_PREPARE_OK.
    params: Option<u16>,
    /// From the last execute that bound types.
    types: Option<Vec<u16>>,
    /// The prepared SQL, for summaries.
    query: Option<String>,
}

/// What the connection knows about its prepared statements.
#[derive(Debug, Default)]
pub(super) struct Statements {
    map: HashMap<u32, Statement>,
    stored_types: usize,
}

impl Statements {
    fn entry(&mut self, id: u32) -> Option<&mut Statement> {
        if !self.map.contains_key(&id) && self.map.len() >= MAX_STATEMENTS {
            return None;
        }
        Some(self.map.entry(id).or_default())
    }

    pub(super) fn prepared(&mut self, id: u32, params: u16, query: &str) {
        if let Some(statement) = self.entry(id) {
            statement.params = Some(params);
            statement.query = Some(query.to_owned());
        }
    }

    pub(super) fn closed(&mut self, id: u32) {
        if let Some(statement) = self.map.remove(&id) {
            self.stored_types -= statement.types.map_or(0, |types| types.len());
        }
    }

    pub(super) fn query(&self, id: u32) -> Option<&str> {
        self.map.get(&id)?.query.as_deref()
    }

    fn store_types(&mut self, id: u32, types: &[u16]) {
        let old = self
            .map
            .get(&id)
            .and_then(|s| s.types.as_ref())
            .map_or(0, Vec::len);
        if self.stored_types - old + types.len() > MAX_STORED_TYPES {
            return;
        }
        if let Some(statement) = self.entry(id) {
            statement.types = Some(types.to_vec());
            self.stored_types = self.stored_types - old + types.len();
        }
    }
}

/// A decoded parameter: its name (query attributes only) and its value as text.
pub(super) type Param = (String, String);

/// The parameters of a COM_STMT_EXECUTE, or their raw bytes when they could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Params {
    Decoded(Vec<Param>),
    Raw(Vec<u8>),
}

pub(super) struct Execute {
    pub statement_id: u32,
    pub params: Params,
}

/// Parses a COM_STMT_EXECUTE payload (command byte included).
pub(super) fn parse_execute(
    payload: &[u8],
    capabilities: u32,
    statements: &mut Statements,
) -> Result<Execute, DependencyError> {
    let mut r = Reader::new(payload);
    r.u8("command")?;
    let statement_id = r.u32("statement id")?;
    r.u8("execute flags")?;
    r.u32("iteration count")?;
    let rest = r.rest();
    let known = statements.map.get(&statement_id);
    let stored_types = known.and_then(|s| s.types.clone());
    let decoded = if rest.is_empty() {
        Some((Vec::new(), None))
    } else if capabilities & caps::QUERY_ATTRIBUTES != 0 {
        // With query attributes a non-empty tail always starts with the parameter count.
        let mut tail = Reader::new(rest);
        tail.lenenc("parameter count")
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| decode_params(&mut tail, n, true, stored_types.as_deref()).ok())
    } else {
        let count = known
            .and_then(|s| s.params.map(usize::from))
            .or_else(|| stored_types.as_ref().map(Vec::len));
        match count {
            Some(n) => {
                decode_params(&mut Reader::new(rest), n, false, stored_types.as_deref()).ok()
            }
            None => infer_params(rest),
        }
    };
    let params = match decoded {
        Some((params, types)) => {
            if let Some(types) = types {
                statements.store_types(statement_id, &types);
            }
            Params::Decoded(params)
        }
        None => Params::Raw(rest.to_vec()),
    };
    Ok(Execute {
        statement_id,
        params,
    })
}

/// Decoded parameters and, when the packet bound them, their types.
type Decoded = (Vec<Param>, Option<Vec<u16>>);

/// Tries every count in turn; the first whose layout uses up `rest` exactly wins.
fn infer_params(rest: &[u8]) -> Option<Decoded> {
    let mut budget = INFER_BUDGET;
    for n in 1..=usize::from(u16::MAX) {
        // The null bitmap, the bound flag and two type bytes per parameter must fit.
        let needed = n.div_ceil(8) + 1 + 2 * n;
        if needed > rest.len() || budget < needed {
            return None;
        }
        budget -= needed;
        if layout_fits(rest, n) {
            return decode_params(&mut Reader::new(rest), n, false, None).ok();
        }
    }
    None
}

/// Null bitmap, new-params-bound flag, types (and names), values: `n` parameters.
pub(super) fn decode_params(
    r: &mut Reader<'_>,
    n: usize,
    named: bool,
    stored_types: Option<&[u16]>,
) -> Result<Decoded, DependencyError> {
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    let bitmap = r.take(n.div_ceil(8), "null bitmap")?;
    // Bits past the last parameter are zero; a cheap check that the count is right.
    if !n.is_multiple_of(8) && bitmap.last().is_some_and(|last| last >> (n % 8) != 0) {
        return Err(malformed("null bitmap has bits past the last parameter"));
    }
    let bound = r.u8("new-params-bound flag")?;
    let (types, names, bound_types) = match bound {
        1 => {
            let mut types = Vec::with_capacity(n.min(r.remaining() / 2));
            let mut names = Vec::new();
            for _ in 0..n {
                let ty = r.u16("parameter type")?;
                if !known_type(ty) {
                    return Err(malformed(format!("unknown parameter type {ty:#06x}")));
                }
                types.push(ty);
                if named {
                    names.push(text_or_b64(r.lenenc_bytes("parameter name")?));
                }
            }
            (types.clone(), names, Some(types))
        }
        0 => match stored_types {
            Some(types) if types.len() == n => (types.to_vec(), Vec::new(), None),
            _ => return Err(malformed("execute reuses parameter types never seen")),
        },
        other => return Err(malformed(format!("new-params-bound flag {other}"))),
    };
    let mut params = Vec::with_capacity(n);
    for (i, ty) in types.iter().enumerate() {
        let null = bitmap
            .get(i / 8)
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0);
        let value = if null {
            "NULL".to_owned()
        } else {
            decode_value(r, *ty)?
        };
        params.push((names.get(i).cloned().unwrap_or_default(), value));
    }
    Ok((params, bound_types))
}

fn known_type(ty: u16) -> bool {
    ty & !UNSIGNED <= 0xFF && matches!(ty & 0xFF, 0x00..=0x10 | 0xF2 | 0xF5..=0xFF)
}

/// How a binary value is laid out and shown.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A little-endian integer of this many bytes.
    Int(usize),
    Float,
    Double,
    Null,
    /// One length byte, then DATE/DATETIME/TIMESTAMP fields.
    Date,
    /// One length byte, then TIME fields.
    Time,
    /// Length-encoded bytes shown as `b64:` whatever they look like (blobs, bits, geometry,
    /// vectors).
    Bytes,
    /// Length-encoded bytes shown as text when they are UTF-8.
    Text,
}

fn kind(ty: u16) -> Option<Kind> {
    Some(match ty & 0xFF {
        0x01 => Kind::Int(1),
        0x02 | 0x0D => Kind::Int(2),
        0x03 | 0x09 => Kind::Int(4),
        0x08 => Kind::Int(8),
        0x04 => Kind::Float,
        0x05 => Kind::Double,
        0x06 => Kind::Null,
        0x07 | 0x0A | 0x0C | 0x0E | 0x11 | 0x12 => Kind::Date,
        0x0B | 0x13 => Kind::Time,
        0x10 | 0xF2 | 0xF9..=0xFC | 0xFF => Kind::Bytes,
        0x00 | 0x0F | 0xF5..=0xF8 | 0xFD | 0xFE => Kind::Text,
        _ => return None,
    })
}

/// The bytes of one value, without its length prefix.
fn value_bytes<'a>(r: &mut Reader<'a>, kind: Kind) -> Result<&'a [u8], DependencyError> {
    match kind {
        Kind::Int(n) => r.take(n, "integer parameter"),
        Kind::Float => r.take(4, "float parameter"),
        Kind::Double => r.take(8, "double parameter"),
        Kind::Null => Ok(&[]),
        Kind::Date | Kind::Time => {
            let len = r.u8("temporal parameter length")?;
            r.take(usize::from(len), "temporal parameter")
        }
        Kind::Bytes | Kind::Text => r.lenenc_bytes("string parameter"),
    }
}

/// One non-NULL binary value of type `ty`, as text.
pub(super) fn decode_value(r: &mut Reader<'_>, ty: u16) -> Result<String, DependencyError> {
    let kind = kind(ty).ok_or_else(|| malformed(format!("unknown parameter type {ty:#06x}")))?;
    let bytes = value_bytes(r, kind)?;
    let uint = || {
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte))
    };
    Ok(match kind {
        Kind::Int(_) if ty & UNSIGNED != 0 => uint().to_string(),
        Kind::Int(n) => {
            let shift = 64 - 8 * n as u32;
            (((uint() << shift) as i64) >> shift).to_string()
        }
        Kind::Float => f32::from_bits(uint() as u32).to_string(),
        Kind::Double => f64::from_bits(uint()).to_string(),
        Kind::Null => "NULL".to_owned(),
        Kind::Date => format_datetime(bytes),
        Kind::Time => format_time(bytes),
        Kind::Bytes => b64(bytes),
        Kind::Text => text_or_b64(bytes),
    })
}

/// Whether `n` parameters, types bound, use up `rest` exactly; no value is built.
fn layout_fits(rest: &[u8], n: usize) -> bool {
    let mut r = Reader::new(rest);
    let mut check = || -> Result<bool, DependencyError> {
        let bitmap = r.take(n.div_ceil(8), "null bitmap")?;
        if !n.is_multiple_of(8) && bitmap.last().is_some_and(|last| last >> (n % 8) != 0) {
            return Ok(false);
        }
        if r.u8("new-params-bound flag")? != 1 {
            return Ok(false);
        }
        let types = r.take(2 * n, "parameter types")?;
        for (i, pair) in types.chunks_exact(2).enumerate() {
            let ty = u16::from(pair[0]) | u16::from(pair[1]) << 8;
            let Some(kind) = kind(ty).filter(|_| known_type(ty)) else {
                return Ok(false);
            };
            let null = bitmap
                .get(i / 8)
                .is_some_and(|byte| byte & (1 << (i % 8)) != 0);
            if !null {
                value_bytes(&mut r, kind)?;
            }
        }
        Ok(r.is_empty())
    };
    check().unwrap_or(false)
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` from the binary DATE/DATETIME/TIMESTAMP form.
fn format_datetime(bytes: &[u8]) -> String {
    let mut r = Reader::new(bytes);
    let mut read = || -> Result<String, DependencyError> {
        Ok(match bytes.len() {
            0 => "0000-00-00 00:00:00".to_owned(),
            4 | 7 | 11 => {
                let mut text = format!(
                    "{:04}-{:02}-{:02}",
                    r.u16("year")?,
                    r.u8("month")?,
                    r.u8("day")?
                );
                if bytes.len() > 4 {
                    text.push_str(&format!(
                        " {:02}:{:02}:{:02}",
                        r.u8("hour")?,
                        r.u8("minute")?,
                        r.u8("second")?
                    ));
                }
                if bytes.len() > 7 {
                    text.push_str(&format!(".{:06}", r.u32("microsecond")?));
                }
                text
            }
            _ => return Err(malformed("date length")),
        })
    };
    read().unwrap_or_else(|_| b64(bytes))
}

/// `[-]HHH:MM:SS[.ffffff]` (days folded into hours) from the binary TIME form.
fn format_time(bytes: &[u8]) -> String {
    let mut r = Reader::new(bytes);
    let mut read = || -> Result<String, DependencyError> {
        Ok(match bytes.len() {
            0 => "00:00:00".to_owned(),
            8 | 12 => {
                let sign = if r.u8("sign")? == 1 { "-" } else { "" };
                let hours = u64::from(r.u32("days")?) * 24 + u64::from(r.u8("hour")?);
                let mut text = format!(
                    "{sign}{hours:02}:{:02}:{:02}",
                    r.u8("minute")?,
                    r.u8("second")?
                );
                if bytes.len() == 12 {
                    text.push_str(&format!(".{:06}", r.u32("microsecond")?));
                }
                text
            }
            _ => return Err(malformed("time length")),
        })
    };
    read().unwrap_or_else(|_| b64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], ty: u16) -> String {
        decode_value(&mut Reader::new(bytes), ty).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn decodes_numbers_dates_and_strings() {
        assert_eq!(decode(&[0xFF], 0x01), "-1");
        assert_eq!(decode(&[0xFF], 0x8001), "255");
        assert_eq!(decode(&(-300i16).to_le_bytes(), 0x02), "-300");
        assert_eq!(decode(&42i32.to_le_bytes(), 0x03), "42");
        assert_eq!(decode(&(-7i64).to_le_bytes(), 0x08), "-7");
        assert_eq!(
            decode(&u64::MAX.to_le_bytes(), 0x8008),
            u64::MAX.to_string()
        );
        assert_eq!(decode(&1.5f32.to_bits().to_le_bytes(), 0x04), "1.5");
        assert_eq!(decode(&0.1f64.to_bits().to_le_bytes(), 0x05), "0.1");
        assert_eq!(decode(&[4, 0xE8, 0x07, 2, 29], 0x0A), "2024-02-29");
        assert_eq!(
            decode(
                &[11, 0xE8, 0x07, 2, 29, 13, 5, 9, 0x40, 0xE2, 0x01, 0],
                0x0C
            ),
            "2024-02-29 13:05:09.123456"
        );
        assert_eq!(decode(&[8, 1, 1, 0, 0, 0, 2, 3, 4], 0x0B), "-26:03:04");
        assert_eq!(decode(&[3, b'a', b'b', b'c'], 0xFD), "abc");
        assert_eq!(decode(&[2, 0xFF, 0], 0xFE), "b64:/wA=");
        assert_eq!(decode(&[2, b'h', b'i'], 0xFC), "b64:aGk=");
        assert!(decode(&[1], 0x03).contains("cut short"));
        assert!(decode(&[1], 0x20).contains("unknown"));
    }

    #[test]
    fn infers_the_parameter_count() {
        // Two parameters: a LONG 7 and a NULL string.
        let rest = [0b10, 1, 0x03, 0x00, 0xFE, 0x00, 7, 0, 0, 0];
        let (params, types) = infer_params(&rest).expect("inferred");
        assert_eq!(
            params,
            vec![
                (String::new(), "7".to_owned()),
                (String::new(), "NULL".to_owned())
            ]
        );
        assert_eq!(types, Some(vec![0x03, 0xFE]));
        assert!(infer_params(&[0, 1, 0x03]).is_none());
    }
}
