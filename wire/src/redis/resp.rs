//! RESP framing: where one value ends in a byte stream, found incrementally so a value fed in
//! many pieces is scanned once, and a small reader for the top of a complete frame (enough to
//! tell pub/sub traffic from replies).
//!
//! Streamed RESP3 strings and aggregates (`$?`, `*?`) are rejected as malformed: no Redis
//! server sends them.

use super::{PROTOCOL, malformed};
use crate::dependency::DependencyError;

/// Most aggregates one value may be nested in.
pub(super) const MAX_DEPTH: usize = 64;
/// Largest bulk length the protocol allows (Redis `proto-max-bulk-len`).
const MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
/// Longest line for lengths and short scalars; anything longer is garbage, found early.
const MAX_SHORT_LINE: usize = 64;
/// Largest element count of one aggregate (Redis refuses more than `i32::MAX` too).
const MAX_COUNT: i64 = i32::MAX as i64;

/// An aggregate whose elements are still being read.
#[derive(Debug)]
struct Open {
    remaining: u64,
    /// An attribute map: it precedes a value and is not an element of its container.
    attribute: bool,
}

/// What [`Scanner::scan`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    Incomplete,
    /// A complete value of `len` bytes whose type byte (after any attributes) is `kind`.
    Frame {
        len: usize,
        kind: u8,
    },
}

/// Finds the end of one RESP value at the start of a buffer, resuming where the previous call
/// stopped. Offsets are relative to the frame's first byte, so the caller may move the buffer
/// between calls as long as the frame's bytes stay at its start.
#[derive(Debug, Default)]
pub(super) struct Scanner {
    /// Offset of the next element header.
    pos: usize,
    stack: Vec<Open>,
    kind: Option<u8>,
    /// Where the search for the current line's end resumes.
    line_from: usize,
}

impl Scanner {
    /// Whether part of a value has been scanned.
    pub(super) fn mid_frame(&self) -> bool {
        self.pos > 0
    }

    /// Scans `buf` (starting at the frame's first byte). `command` restricts values to what a
    /// client may send: an array of bulk strings. `cap` is the most bytes a value may hold.
    pub(super) fn scan(
        &mut self,
        buf: &[u8],
        command: bool,
        cap: usize,
    ) -> Result<Scan, DependencyError> {
        loop {
            let Some(&ty) = buf.get(self.pos) else {
                return Ok(Scan::Incomplete);
            };
            let short = !matches!(ty, b'+' | b'-' | b'(');
            let Some((line, next)) = self.line(buf, short)? else {
                return Ok(Scan::Incomplete);
            };
            if command {
                let expected = if self.stack.is_empty() { b'*' } else { b'$' };
                if ty != expected {
                    return Err(malformed(format!(
                        "command element of type {:?}, expected {:?}",
                        char::from(ty),
                        char::from(expected)
                    )));
                }
            }
            if self.stack.is_empty() && ty != b'|' {
                self.kind = Some(ty);
            }
            match ty {
                b'+' | b'-' => self.pos = next,
                b':' => {
                    parse_int(line)?;
                    self.pos = next;
                }
                b'_' if line.is_empty() => self.pos = next,
                b'#' if line == b"t" || line == b"f" => self.pos = next,
                b',' if !line.is_empty() => self.pos = next,
                b'(' if is_big_number(line) => self.pos = next,
                b'$' | b'!' | b'=' => {
                    let len = parse_int(line)?;
                    if len == -1 && ty == b'$' && !command {
                        self.pos = next;
                    } else {
                        let Ok(len) = u64::try_from(len) else {
                            return Err(malformed(format!("negative length {len}")));
                        };
                        if len > MAX_BULK_LEN {
                            return Err(malformed(format!("bulk length {len} beyond 512 MiB")));
                        }
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        if len > cap {
                            return Err(DependencyError::TooLarge {
                                protocol: PROTOCOL,
                                limit: cap,
                            });
                        }
                        let end = next + len + 2;
                        if buf.len() < end {
                            return Ok(Scan::Incomplete);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(malformed("bulk string not followed by CRLF".into()));
                        }
                        self.pos = end;
                    }
                }
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    let count = parse_int(line)?;
                    self.pos = next;
                    if count == -1 && ty == b'*' {
                        // RESP2 null array: a complete element.
                    } else if !(0..=MAX_COUNT).contains(&count) {
                        return Err(malformed(format!("invalid element count {count}")));
                    } else {
                        let per_entry = if matches!(ty, b'%' | b'|') { 2 } else { 1 };
                        let remaining = count.unsigned_abs() * per_entry;
                        let attribute = ty == b'|';
                        if remaining > 0 {
                            if self.stack.len() >= MAX_DEPTH {
                                return Err(malformed(format!(
                                    "values nested deeper than {MAX_DEPTH}"
                                )));
                            }
                            self.stack.push(Open {
                                remaining,
                                attribute,
                            });
                            continue;
                        }
                        if attribute {
                            // An empty attribute: the value it annotates follows.
                            continue;
                        }
                    }
                }
                _ => {
                    return Err(malformed(format!(
                        "invalid type byte {ty:#04x} or value line"
                    )));
                }
            }
            if self.element_done() {
                let len = self.pos;
                let kind = self.kind.unwrap_or(ty);
                *self = Self::default();
                return Ok(Scan::Frame { len, kind });
            }
        }
    }

    /// The line of the header at `self.pos` without its CRLF, and the offset after it.
    fn line<'b>(
        &mut self,
        buf: &'b [u8],
        short: bool,
    ) -> Result<Option<(&'b [u8], usize)>, DependencyError> {
        let from = self.line_from.max(self.pos + 1);
        if let Some(at) = find_crlf(&buf[from.min(buf.len())..]) {
            self.line_from = 0;
            let cr = from + at;
            return Ok(Some((&buf[self.pos + 1..cr], cr + 2)));
        }
        if short && buf.len() - self.pos > MAX_SHORT_LINE {
            return Err(malformed("header line without CRLF".into()));
        }
        // A CR at the very end may be completed by the next feed.
        self.line_from = buf.len().saturating_sub(1).max(self.pos + 1);
        Ok(None)
    }

    /// Counts one complete element in the innermost open aggregate; true when the whole
    /// frame is complete.
    fn element_done(&mut self) -> bool {
        while let Some(open) = self.stack.last_mut() {
            open.remaining -= 1;
            if open.remaining > 0 {
                return false;
            }
            let attribute = open.attribute;
            self.stack.pop();
            if attribute {
                // The annotated value is still to come.
                return false;
            }
        }
        true
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// A decimal integer as RESP writes lengths and `:` values.
fn parse_int(line: &[u8]) -> Result<i64, DependencyError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed(format!(
            "invalid integer {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| malformed("integer out of range".into()))
}

fn is_big_number(line: &[u8]) -> bool {
    let digits = line
        .strip_prefix(b"-")
        .or_else(|| line.strip_prefix(b"+"))
        .unwrap_or(line);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// The type byte, line and offset after the line of the header at `pos` of a complete frame.
fn header(frame: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let ty = *frame.get(pos)?;
    let rest = frame.get(pos + 1..)?;
    let at = find_crlf(rest)?;
    Some((ty, &rest[..at], pos + 1 + at + 2))
}

fn count(line: &[u8]) -> Option<usize> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// Skips attributes at `pos`: the offset of the value they annotate.
fn skip_attributes(frame: &[u8], mut pos: usize) -> Option<usize> {
    while frame.get(pos) == Some(&b'|') {
        pos = skip_value(frame, pos)?;
    }
    Some(pos)
}

/// The offset after the value at `pos` of a complete frame (attributes count as values here).
/// Recursion is bounded: the frame passed the scanner's depth check.
fn skip_value(frame: &[u8], pos: usize) -> Option<usize> {
    let (ty, line, mut next) = header(frame, pos)?;
    match ty {
        b'$' | b'!' | b'=' => match count(line) {
            Some(len) => Some(next + len + 2),
            None => Some(next),
        },
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let per_entry = if matches!(ty, b'%' | b'|') { 2 } else { 1 };
            let entries = count(line).unwrap_or(0) * per_entry;
            for _ in 0..entries {
                next = skip_attributes(frame, next)?;
                next = skip_value(frame, next)?;
            }
            Some(next)
        }
        _ => Some(next),
    }
}

/// The first `max` elements of a complete array or push frame (after any attributes), each
/// a string or number's bytes, or `None` for a null or an aggregate; `None` for other values.
pub(super) fn top_elements(frame: &[u8], max: usize) -> Option<Vec<Option<&[u8]>>> {
    let pos = skip_attributes(frame, 0)?;
    let (ty, line, mut next) = header(frame, pos)?;
    if !matches!(ty, b'*' | b'>') {
        return None;
    }
    let total = count(line)?;
    let mut elements = Vec::with_capacity(total.min(max));
    for _ in 0..total.min(max) {
        next = skip_attributes(frame, next)?;
        let (ty, line, after) = header(frame, next)?;
        let element = match ty {
            b'$' | b'=' => count(line).and_then(|len| frame.get(after..after + len)),
            b'+' | b':' | b'(' | b',' => Some(line),
            _ => None,
        };
        elements.push(element);
        next = skip_value(frame, next)?;
    }
    Some(elements)
}
