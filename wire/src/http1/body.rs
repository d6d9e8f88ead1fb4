//! Body framing: where a body ends on the wire and which of its bytes are data.
//!
//! Readers are incremental state machines that never hold more than a counter or two, so a
//! body split at any byte costs nothing extra; the data bytes go straight to the
//! [`BodySink`], which applies the size cap.

use super::ParseError;
use super::decode::BodySink;
use super::head::Framing;

/// How far one call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of the input that belong to this body. When `done` is false this is all of it.
    pub consumed: usize,
    /// The body ended; the bytes after `consumed` start the next message.
    pub done: bool,
}

#[derive(Debug)]
pub(crate) enum BodyReader {
    Length { remaining: u64 },
    Chunked(Chunked),
    UntilClose,
}

impl BodyReader {
    /// `max_line` bounds a chunk-size line and the trailer section.
    pub fn new(framing: Framing, max_line: usize) -> Self {
        match framing {
            Framing::Empty => Self::Length { remaining: 0 },
            Framing::Length(length) => Self::Length { remaining: length },
            Framing::Chunked => Self::Chunked(Chunked::new(max_line)),
            Framing::UntilClose => Self::UntilClose,
        }
    }

    pub fn read(&mut self, input: &[u8], sink: &mut BodySink) -> Result<Progress, ParseError> {
        match self {
            Self::Length { remaining } => {
                let take = take_len(*remaining, input.len());
                sink.push(input.get(..take).unwrap_or_default());
                *remaining -= take as u64;
                Ok(Progress {
                    consumed: take,
                    done: *remaining == 0,
                })
            }
            Self::Chunked(chunked) => chunked.read(input, sink),
            Self::UntilClose => {
                sink.push(input);
                Ok(Progress {
                    consumed: input.len(),
                    done: false,
                })
            }
        }
    }

    /// Accounts for `lost` bytes that never arrived. Only possible inside data whose length
    /// is known, so that the message boundary stays known; false means framing is lost.
    pub fn skip(&mut self, lost: u64) -> bool {
        match self {
            Self::Length { remaining } if lost <= *remaining => {
                *remaining -= lost;
                true
            }
            Self::Chunked(chunked) => chunked.skip(lost),
            Self::UntilClose => true,
            Self::Length { .. } => false,
        }
    }

    /// Whether the end of the stream is the end of this body.
    pub fn ends_at_close(&self) -> bool {
        matches!(self, Self::UntilClose)
    }
}

/// How many of `available` bytes a body with `remaining` bytes left takes.
fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |remaining| remaining.min(available))
}

/// The chunked transfer coding (RFC 9112 section 7.1), decoded byte by byte outside chunk data.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: ChunkState,
    max_line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the chunk size.
    Size {
        value: u64,
        digits: usize,
    },
    /// After the digits: whitespace, `;` extensions, then the line end.
    SizeTail {
        value: u64,
        in_ext: bool,
        cr: bool,
        line: usize,
    },
    Data {
        remaining: u64,
    },
    /// The line end that closes chunk data.
    DataEnd {
        cr: bool,
    },
    /// Trailer fields after the last chunk, up to an empty line; `line` is the current line's
    /// length, `total` the section's.
    Trailer {
        line: usize,
        total: usize,
    },
    Done,
}

impl Chunked {
    fn new(max_line: usize) -> Self {
        Self {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
            max_line,
        }
    }

    fn read(&mut self, input: &[u8], sink: &mut BodySink) -> Result<Progress, ParseError> {
        let mut at = 0;
        loop {
            let rest = input.get(at..).unwrap_or_default();
            match &mut self.state {
                ChunkState::Done => {
                    return Ok(Progress {
                        consumed: at,
                        done: true,
                    });
                }
                _ if rest.is_empty() => {
                    return Ok(Progress {
                        consumed: at,
                        done: false,
                    });
                }
                ChunkState::Data { remaining } => {
                    let take = take_len(*remaining, rest.len());
                    sink.push(rest.get(..take).unwrap_or_default());
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = ChunkState::DataEnd { cr: false };
                    }
                    at += take;
                }
                _ => {
                    let byte = rest.first().copied().unwrap_or_default();
                    self.step(byte)?;
                    at += 1;
                }
            }
        }
    }

    /// One byte of a size line, data terminator or trailer.
    fn step(&mut self, byte: u8) -> Result<(), ParseError> {
        match &mut self.state {
            ChunkState::Size { value, digits } => match hex_value(byte) {
                Some(digit) => {
                    if *value > u64::MAX >> 4 || *digits >= self.max_line {
                        return Err(ParseError::InvalidChunkSize);
                    }
                    *value = *value << 4 | u64::from(digit);
                    *digits += 1;
                }
                None if *digits == 0 => return Err(ParseError::InvalidChunkSize),
                None => {
                    let (value, line) = (*value, *digits);
                    self.state = ChunkState::SizeTail {
                        value,
                        in_ext: false,
                        cr: false,
                        line,
                    };
                    return self.step(byte);
                }
            },
            ChunkState::SizeTail {
                value,
                in_ext,
                cr,
                line,
            } => {
                *line += 1;
                if *line > self.max_line {
                    return Err(ParseError::InvalidChunkSize);
                }
                match byte {
                    b'\n' => {
                        self.state = match *value {
                            0 => ChunkState::Trailer { line: 0, total: 0 },
                            remaining => ChunkState::Data { remaining },
                        };
                    }
                    _ if *cr => return Err(ParseError::InvalidChunkSize),
                    b'\r' => *cr = true,
                    b';' => *in_ext = true,
                    b' ' | b'\t' => {}
                    _ if *in_ext => {}
                    _ => return Err(ParseError::InvalidChunkSize),
                }
            }
            ChunkState::DataEnd { cr } => match byte {
                b'\r' if !*cr => *cr = true,
                b'\n' => {
                    self.state = ChunkState::Size {
                        value: 0,
                        digits: 0,
                    }
                }
                _ => return Err(ParseError::InvalidChunkEnd),
            },
            ChunkState::Trailer { line, total } => match byte {
                b'\r' => {}
                b'\n' if *line == 0 => self.state = ChunkState::Done,
                b'\n' => *line = 0,
                _ => {
                    *line += 1;
                    *total += 1;
                    if *total > self.max_line {
                        return Err(ParseError::TrailersTooLarge {
                            limit: self.max_line,
                        });
                    }
                }
            },
            // `read` handles these without stepping.
            ChunkState::Data { .. } | ChunkState::Done => {}
        }
        Ok(())
    }

    fn skip(&mut self, lost: u64) -> bool {
        match &mut self.state {
            ChunkState::Data { remaining } if lost <= *remaining => {
                *remaining -= lost;
                if *remaining == 0 {
                    self.state = ChunkState::DataEnd { cr: false };
                }
                true
            }
            _ => false,
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::Coding;
    use super::*;

    /// Runs a whole body through a reader in pieces of `step` bytes.
    fn run(framing: Framing, wire: &[u8], step: usize) -> Result<(Vec<u8>, usize), ParseError> {
        let mut reader = BodyReader::new(framing, 64);
        let mut sink = BodySink::new(1 << 20, Coding::Identity);
        let mut at = 0;
        while at < wire.len() {
            let end = (at + step).min(wire.len());
            let progress = reader.read(&wire[at..end], &mut sink)?;
            at += progress.consumed;
            if progress.done {
                return Ok((sink.finish().bytes, at));
            }
            assert_eq!(at, end, "a reader that is not done takes all its input");
        }
        let progress = reader.read(&[], &mut sink)?;
        assert!(progress.done, "body did not end");
        Ok((sink.finish().bytes, at))
    }

    #[test]
    fn chunked_with_extensions_and_trailers_in_every_split() {
        let wire =
            b"5;name=\"va;l\"\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nNEXT";
        let end = wire.len() - 4;
        for step in 1..wire.len() {
            assert_eq!(
                run(Framing::Chunked, wire, step),
                Ok((b"hello, world".to_vec(), end))
            );
        }
    }

    #[test]
    fn chunked_accepts_bare_lf_uppercase_hex_and_leading_zeros() {
        let wire = b"00A\nabcdefghij\n0\n\n";
        assert_eq!(
            run(Framing::Chunked, wire, 1),
            Ok((b"abcdefghij".to_vec(), wire.len()))
        );
    }

    #[test]
    fn chunked_rejects_malformed_framing() {
        let cases: [(&[u8], ParseError); 6] = [
            (b"zz\r\n", ParseError::InvalidChunkSize),
            (b"\r\n", ParseError::InvalidChunkSize),
            (b"5x\r\nhello\r\n", ParseError::InvalidChunkSize),
            (b"5\rx", ParseError::InvalidChunkSize),
            (b"11111111111111111\r\n", ParseError::InvalidChunkSize),
            (b"2\r\nabX", ParseError::InvalidChunkEnd),
        ];
        for (wire, error) in cases {
            assert_eq!(run(Framing::Chunked, wire, 1), Err(error), "{wire:?}");
        }
        let long_trailer = [&b"0\r\nX: "[..], &[b'a'; 100], b"\r\n\r\n"].concat();
        assert_eq!(
            run(Framing::Chunked, &long_trailer, 7),
            Err(ParseError::TrailersTooLarge { limit: 64 })
        );
        let long_extension = [&b"1;"[..], &[b'a'; 100], b"\r\nx\r\n0\r\n\r\n"].concat();
        assert_eq!(
            run(Framing::Chunked, &long_extension, 7),
            Err(ParseError::InvalidChunkSize)
        );
    }

    #[test]
    fn length_and_empty_bodies_stop_at_their_end() {
        assert_eq!(
            run(Framing::Length(3), b"abcdef", 2),
            Ok((b"abc".to_vec(), 3))
        );
        assert_eq!(run(Framing::Empty, b"abc", 1), Ok((Vec::new(), 0)));
    }

    #[test]
    fn skipping_works_only_inside_known_length_data() {
        let mut reader = BodyReader::new(Framing::Length(10), 64);
        assert!(reader.skip(4));
        assert!(!reader.skip(7));
        assert!(reader.skip(6));
        let mut chunked = BodyReader::new(Framing::Chunked, 64);
        let mut sink = BodySink::new(100, Coding::Identity);
        assert!(!chunked.skip(1), "inside a size line");
        chunked.read(b"5\r\nab", &mut sink).expect("valid");
        assert!(!chunked.skip(4));
        assert!(chunked.skip(3));
        let progress = chunked.read(b"\r\n0\r\n\r\n", &mut sink).expect("valid");
        assert!(progress.done);
        assert!(BodyReader::new(Framing::UntilClose, 64).skip(u64::MAX));
    }
}
