//! Body storage: keeps at most the configured number of bytes and undoes gzip or deflate
//! incrementally, so neither a huge body nor a decompression bomb allocates more than the cap.
//!
//! While decoding, the framed bytes are also kept (within the same cap) so that a body that
//! fails to decode can still be recorded as it was sent.

use std::io::{self, Write};

use flate2::write::MultiGzDecoder;
use flate2::{Decompress, FlushDecompress, Status};

use super::head::Coding;

/// A finished body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredBody {
    pub bytes: Vec<u8>,
    /// `bytes` is only the beginning of the body.
    pub truncated: bool,
    /// The content coding did not decode; `bytes` is the framed (de-chunked) data.
    pub decode_failed: bool,
}

/// Collects one message's body bytes (already de-chunked) within `limit`.
#[derive(Debug)]
pub(crate) struct BodySink {
    limit: usize,
    /// Framed bytes: the body itself without a coding, the fallback with one.
    raw: Vec<u8>,
    raw_truncated: bool,
    seen_bytes: bool,
    decoding: Decoding,
}

#[derive(Debug)]
enum Decoding {
    Off,
    Active(Box<Inflater>),
    /// The decoded output reached the limit; the rest of the body is ignored.
    Full(Vec<u8>),
    Failed,
}

/// Why decoding stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Full,
    Corrupt,
}

impl BodySink {
    pub fn new(limit: usize, coding: Coding) -> Self {
        let decoding = match coding {
            Coding::Identity => Decoding::Off,
            Coding::Gzip => Decoding::Active(Box::new(Inflater::gzip(limit))),
            Coding::Deflate => Decoding::Active(Box::new(Inflater::deflate())),
        };
        Self {
            limit,
            raw: Vec::new(),
            raw_truncated: false,
            seen_bytes: false,
            decoding,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.seen_bytes = true;
        if !matches!(self.decoding, Decoding::Full(_)) && !self.raw_truncated {
            let room = self.limit.saturating_sub(self.raw.len());
            let keep = data.get(..room.min(data.len())).unwrap_or_default();
            self.raw.extend_from_slice(keep);
            self.raw_truncated = keep.len() < data.len();
        }
        if let Decoding::Active(inflater) = &mut self.decoding {
            match inflater.push(data, self.limit) {
                Ok(()) => {}
                Err(Stop::Full) => {
                    self.decoding = Decoding::Full(inflater.take_output());
                    // The decoded prefix is the answer now; no fallback needed.
                    self.raw = Vec::new();
                }
                Err(Stop::Corrupt) => self.decoding = Decoding::Failed,
            }
        }
    }

    pub fn finish(self) -> StoredBody {
        let raw = |decode_failed| StoredBody {
            bytes: self.raw,
            truncated: self.raw_truncated,
            decode_failed,
        };
        match self.decoding {
            Decoding::Off => raw(false),
            // An empty body (HEAD, 304, Content-Length: 0) has nothing to decode.
            Decoding::Active(_) if !self.seen_bytes => raw(false),
            Decoding::Active(mut inflater) => match inflater.finish(self.limit) {
                Ok(()) => StoredBody {
                    bytes: inflater.take_output(),
                    truncated: false,
                    decode_failed: false,
                },
                Err(Stop::Full) => StoredBody {
                    bytes: inflater.take_output(),
                    truncated: true,
                    decode_failed: false,
                },
                Err(Stop::Corrupt) => raw(true),
            },
            Decoding::Full(bytes) => StoredBody {
                bytes,
                truncated: true,
                decode_failed: false,
            },
            Decoding::Failed => raw(true),
        }
    }
}

#[derive(Debug)]
enum Inflater {
    /// flate2's writer handles the gzip header, trailer check and concatenated members.
    Gzip(MultiGzDecoder<CappedVec>),
    /// Deflate, before the first two bytes tell zlib from raw.
    DeflatePrefix(Vec<u8>),
    Deflate(RawInflater),
}

impl Inflater {
    fn gzip(limit: usize) -> Self {
        Self::Gzip(MultiGzDecoder::new(CappedVec {
            bytes: Vec::new(),
            limit,
            full: false,
        }))
    }

    fn deflate() -> Self {
        Self::DeflatePrefix(Vec::with_capacity(2))
    }

    fn push(&mut self, mut data: &[u8], limit: usize) -> Result<(), Stop> {
        match self {
            Self::Gzip(decoder) => {
                while !data.is_empty() {
                    match decoder.write(data) {
                        Ok(0) => return Err(Stop::Corrupt),
                        Ok(written) => data = data.get(written..).unwrap_or_default(),
                        Err(_) if decoder.get_ref().full => return Err(Stop::Full),
                        Err(_) => return Err(Stop::Corrupt),
                    }
                }
                Ok(())
            }
            Self::DeflatePrefix(prefix) => {
                let need = 2usize.saturating_sub(prefix.len()).min(data.len());
                prefix.extend_from_slice(data.get(..need).unwrap_or_default());
                if prefix.len() < 2 {
                    return Ok(());
                }
                let mut raw = RawInflater::new(is_zlib(prefix));
                let header = std::mem::take(prefix);
                let result = raw
                    .push(&header, limit, FlushDecompress::None)
                    .and_then(|()| {
                        raw.push(
                            data.get(need..).unwrap_or_default(),
                            limit,
                            FlushDecompress::None,
                        )
                    });
                *self = Self::Deflate(raw);
                result
            }
            Self::Deflate(raw) => raw.push(data, limit, FlushDecompress::None),
        }
    }

    fn finish(&mut self, limit: usize) -> Result<(), Stop> {
        match self {
            Self::Gzip(decoder) => match decoder.try_finish() {
                Ok(()) => Ok(()),
                Err(_) if decoder.get_ref().full => Err(Stop::Full),
                Err(_) => Err(Stop::Corrupt),
            },
            // One byte cannot be a deflate stream.
            Self::DeflatePrefix(_) => Err(Stop::Corrupt),
            Self::Deflate(raw) => {
                raw.push(&[], limit, FlushDecompress::Finish)?;
                if raw.ended {
                    Ok(())
                } else {
                    Err(Stop::Corrupt)
                }
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        match self {
            Self::Gzip(decoder) => std::mem::take(&mut decoder.get_mut().bytes),
            Self::DeflatePrefix(_) => Vec::new(),
            Self::Deflate(raw) => std::mem::take(&mut raw.out),
        }
    }
}

/// "deflate" is meant to be zlib (RFC 9110 8.4.1.2) but servers also send raw deflate; a zlib
/// header is CM=8 with a check value making the first 16 bits a multiple of 31.
fn is_zlib(prefix: &[u8]) -> bool {
    match prefix {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// A zlib or raw deflate stream through flate2's low-level API, which reports the end of the
/// stream (a truncated stream must count as a decode failure).
struct RawInflater {
    inflate: Decompress,
    out: Vec<u8>,
    ended: bool,
}

impl std::fmt::Debug for RawInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawInflater")
            .field("out", &self.out.len())
            .field("ended", &self.ended)
            .finish()
    }
}

impl RawInflater {
    fn new(zlib: bool) -> Self {
        Self {
            inflate: Decompress::new(zlib),
            out: Vec::new(),
            ended: false,
        }
    }

    fn push(&mut self, mut input: &[u8], limit: usize, flush: FlushDecompress) -> Result<(), Stop> {
        let mut scratch = [0u8; 8 * 1024];
        while !self.ended {
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(input, &mut scratch, flush)
                .map_err(|_| Stop::Corrupt)?;
            let consumed =
                usize::try_from(self.inflate.total_in() - in_before).unwrap_or(usize::MAX);
            let produced =
                usize::try_from(self.inflate.total_out() - out_before).unwrap_or(usize::MAX);
            let output = scratch.get(..produced).unwrap_or(&scratch[..]);
            let room = limit.saturating_sub(self.out.len());
            if output.len() > room {
                self.out
                    .extend_from_slice(output.get(..room).unwrap_or_default());
                return Err(Stop::Full);
            }
            self.out.extend_from_slice(output);
            input = input.get(consumed..).unwrap_or_default();
            if status == Status::StreamEnd {
                // Bytes after the end of the stream are ignored, as browsers do.
                self.ended = true;
            } else if produced < scratch.len() && input.is_empty() {
                break;
            } else if consumed == 0 && produced == 0 {
                return Err(Stop::Corrupt);
            }
        }
        Ok(())
    }
}

/// A writer that keeps at most `limit` bytes and then fails, which stops the gzip decoder
/// instead of letting it inflate a bomb into nowhere.
#[derive(Debug)]
struct CappedVec {
    bytes: Vec<u8>,
    limit: usize,
    full: bool,
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.bytes.len());
        if room == 0 && !data.is_empty() {
            self.full = true;
            return Err(io::Error::other("decoded body limit reached"));
        }
        let take = room.min(data.len());
        self.bytes
            .extend_from_slice(data.get(..take).unwrap_or_default());
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    fn store(coding: Coding, limit: usize, wire: &[u8], step: usize) -> StoredBody {
        let mut sink = BodySink::new(limit, coding);
        for piece in wire.chunks(step.max(1)) {
            sink.push(piece);
        }
        sink.finish()
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz 0123456789\n"[i % 38])
            .collect()
    }

    #[test]
    fn identity_bodies_are_capped() {
        let body = store(Coding::Identity, 4, b"abcdef", 1);
        assert_eq!(
            body,
            StoredBody {
                bytes: b"abcd".to_vec(),
                truncated: true,
                decode_failed: false
            }
        );
        let body = store(Coding::Identity, 6, b"abcdef", 6);
        assert_eq!(
            body,
            StoredBody {
                bytes: b"abcdef".to_vec(),
                truncated: false,
                decode_failed: false
            }
        );
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_decode_in_any_pieces() {
        let plain = text(100_000);
        for (coding, wire) in [
            (Coding::Gzip, gzip(&plain)),
            (Coding::Deflate, zlib(&plain)),
            (Coding::Deflate, raw_deflate(&plain)),
        ] {
            for step in [1, 2, 3, 1000, wire.len()] {
                let body = store(coding, 1 << 20, &wire, step);
                assert!(
                    !body.decode_failed && !body.truncated,
                    "{coding:?} step {step}"
                );
                assert_eq!(body.bytes, plain, "{coding:?} step {step}");
            }
        }
    }

    #[test]
    fn concatenated_gzip_members_decode() {
        let wire = [gzip(b"hello "), gzip(b"world")].concat();
        assert_eq!(store(Coding::Gzip, 100, &wire, 5).bytes, b"hello world");
    }

    #[test]
    fn decoded_output_is_capped_exactly() {
        let plain = text(10_000);
        for (coding, wire) in [
            (Coding::Gzip, gzip(&plain)),
            (Coding::Deflate, zlib(&plain)),
        ] {
            let body = store(coding, 1000, &wire, 97);
            assert!(body.truncated && !body.decode_failed, "{coding:?}");
            assert_eq!(body.bytes, plain[..1000], "{coding:?}");
            let exact = store(coding, plain.len(), &wire, 97);
            assert!(
                !exact.truncated,
                "{coding:?}: a body of exactly the limit is whole"
            );
            assert_eq!(exact.bytes, plain);
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 64 * 1024 * 1024];
        for (coding, wire) in [
            (Coding::Gzip, gzip(&zeros)),
            (Coding::Deflate, raw_deflate(&zeros)),
        ] {
            let mut sink = BodySink::new(1024 * 1024, coding);
            for piece in wire.chunks(4096) {
                sink.push(piece);
            }
            let body = sink.finish();
            assert!(body.truncated, "{coding:?}");
            assert_eq!(body.bytes.len(), 1024 * 1024);
        }
    }

    #[test]
    fn corrupt_or_truncated_streams_fall_back_to_the_framed_bytes() {
        let plain = text(5000);
        let mut gz = gzip(&plain);
        let truncated_gz = gz[..gz.len() / 2].to_vec();
        let last = gz.len() - 5;
        gz[last] ^= 0xff; // break the CRC
        let z = zlib(&plain);
        let truncated_z = z[..z.len() - 6].to_vec();
        let cases = [
            (Coding::Gzip, b"not gzip at all".to_vec()),
            (Coding::Gzip, truncated_gz),
            (Coding::Gzip, gz),
            (Coding::Deflate, truncated_z),
            (Coding::Deflate, b"\xff\xff\xff\xff garbage".to_vec()),
            (Coding::Deflate, b"x".to_vec()),
        ];
        for (coding, wire) in cases {
            let body = store(coding, 1 << 20, &wire, 7);
            assert!(
                body.decode_failed,
                "{coding:?} {:?}",
                &wire[..wire.len().min(8)]
            );
            assert_eq!(body.bytes, wire);
        }
    }

    #[test]
    fn empty_encoded_bodies_are_not_errors() {
        let body = store(Coding::Gzip, 10, b"", 1);
        assert_eq!(
            body,
            StoredBody {
                bytes: Vec::new(),
                truncated: false,
                decode_failed: false
            }
        );
    }
}
