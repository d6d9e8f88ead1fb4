//! Reading the protocol's basic types from a payload: little-endian fixed-width integers,
//! length-encoded integers and strings, NUL-terminated strings.

use super::malformed;
use crate::dependency::DependencyError;

/// A cursor over one payload; every read checks the bounds and names what was cut short.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Everything not read yet.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DependencyError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| malformed(format!("{what} cut short")))?;
        let bytes = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, DependencyError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    /// A little-endian unsigned integer of `n` bytes (at most 8).
    pub(super) fn uint(&mut self, n: usize, what: &str) -> Result<u64, DependencyError> {
        let bytes = self.take(n.min(8), what)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte)))
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, DependencyError> {
        Ok(self.uint(2, what)? as u16)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, DependencyError> {
        Ok(self.uint(4, what)? as u32)
    }

    /// A length-encoded integer; `None` for the NULL marker (0xFB).
    pub(super) fn lenenc_or_null(&mut self, what: &str) -> Result<Option<u64>, DependencyError> {
        match self.u8(what)? {
            small @ 0..=0xFA => Ok(Some(u64::from(small))),
            0xFB => Ok(None),
            0xFC => self.uint(2, what).map(Some),
            0xFD => self.uint(3, what).map(Some),
            0xFE => self.uint(8, what).map(Some),
            0xFF => Err(malformed(format!(
                "{what}: 0xFF is not a length-encoded integer"
            ))),
        }
    }

    pub(super) fn lenenc(&mut self, what: &str) -> Result<u64, DependencyError> {
        self.lenenc_or_null(what)?
            .ok_or_else(|| malformed(format!("{what}: unexpected NULL")))
    }

    /// A length-encoded string.
    pub(super) fn lenenc_bytes(&mut self, what: &str) -> Result<&'a [u8], DependencyError> {
        let len = self.lenenc(what)?;
        let len = usize::try_from(len).map_err(|_| malformed(format!("{what} too long")))?;
        self.take(len, what)
    }

    /// A NUL-terminated string; a missing NUL is an error.
    pub(super) fn nul_bytes(&mut self, what: &str) -> Result<&'a [u8], DependencyError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|byte| *byte == 0)
            .ok_or_else(|| malformed(format!("{what} without its NUL terminator")))?;
        let bytes = self.take(len, what)?;
        self.pos += 1;
        Ok(bytes)
    }

    /// A NUL-terminated string, or the rest of the payload when the NUL is missing (some peers
    /// omit it on the last field).
    pub(super) fn nul_or_rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|byte| *byte == 0) {
            Some(len) => {
                self.pos += len + 1;
                rest.get(..len).unwrap_or_default()
            }
            None => self.rest(),
        }
    }
}

/// Text for a field value: the bytes as UTF-8, or `b64:` when they are not.
pub(super) fn text_or_b64(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => super::b64(bytes),
    }
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_encoded_integers_and_strings() {
        let bytes = [
            0x05, 0xFC, 0x34, 0x12, 0xFD, 1, 2, 3, 0xFE, 1, 0, 0, 0, 0, 0, 0, 0, 0xFB, 2, b'h',
            b'i', b'a', 0, b'b',
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.lenenc("a").ok(), Some(5));
        assert_eq!(r.lenenc("b").ok(), Some(0x1234));
        assert_eq!(r.lenenc("c").ok(), Some(0x030201));
        assert_eq!(r.lenenc("d").ok(), Some(1));
        assert_eq!(r.lenenc_or_null("e").ok(), Some(None));
        assert_eq!(r.lenenc_bytes("f").ok(), Some(&b"hi"[..]));
        assert_eq!(r.nul_bytes("g").ok(), Some(&b"a"[..]));
        assert!(r.nul_bytes("h").is_err());
        assert_eq!(r.nul_or_rest(), b"b");
        assert!(r.is_empty());
        assert!(r.u8("i").is_err());
    }

    #[test]
    fn rejects_lengths_past_the_end() {
        let mut r = Reader::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(r.lenenc_bytes("x").is_err());
        let mut r = Reader::new(&[0xFF]);
        assert!(r.lenenc("x").is_err());
    }
}
