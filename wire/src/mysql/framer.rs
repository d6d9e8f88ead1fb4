//! One direction's byte stream cut into packets: a 3-byte little-endian payload length, a
//! sequence id, the payload. A payload of exactly 0xFFFFFF bytes continues in the next packet;
//! the pieces form one logical packet.
//!
//! Packet boundaries are found as bytes arrive (only headers are read), so each packet knows
//! the capture time of its first and last byte; the bytes themselves stay buffered until the
//! connection asks for the packet, which may be much later (it waits for the other side).

use std::collections::VecDeque;

use super::{MAX_FRAGMENT, MAX_PAYLOAD, PROTOCOL};
use crate::dependency::DependencyError;

/// Buffered bytes allowed beyond one maximal packet, for the headers and the start of the
/// next one.
const SLACK: usize = 1024 * 1024;

/// Compact the buffer once this many bytes at its front were handed out.
const COMPACT_AT: usize = 64 * 1024;

/// One logical packet.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    /// Sequence id of its first piece.
    pub seq: u8,
    /// The reassembled payload.
    pub payload: Vec<u8>,
    /// The bytes as sent, headers included.
    pub raw: Vec<u8>,
    pub first_ts: u64,
    pub last_ts: u64,
}

#[derive(Debug)]
struct Boundary {
    end: u64,
    first_ts: u64,
    last_ts: u64,
}

#[derive(Debug)]
pub(super) struct Framer {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Stream offset of the first byte not handed out yet.
    taken: u64,
    /// Stream offset of the next packet header not read yet.
    scan: u64,
    /// Payload bytes of the complete pieces of the logical packet being scanned.
    scanned_payload: usize,
    /// Stream offset where the logical packet being scanned starts, and the time its first
    /// byte arrived (meaningful once that byte did).
    packet_start: u64,
    start_ts: u64,
    ready: VecDeque<Boundary>,
    /// Raised while scanning; reported once the packets before it are handed out.
    error: Option<DependencyError>,
}

impl Framer {
    pub(super) fn new() -> Self {
        Self {
            buf: Vec::new(),
            base: 0,
            taken: 0,
            scan: 0,
            scanned_payload: 0,
            packet_start: 0,
            start_ts: 0,
            ready: VecDeque::new(),
            error: None,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn rel(&self, offset: u64) -> usize {
        (offset - self.base) as usize
    }

    pub(super) fn push(&mut self, bytes: &[u8], ts: u64) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        let held = self.end() - self.taken;
        if held as usize + bytes.len() > MAX_PAYLOAD + SLACK {
            self.error = Some(DependencyError::TooLarge {
                protocol: PROTOCOL,
                limit: MAX_PAYLOAD,
            });
            return;
        }
        if self.end() == self.packet_start {
            self.start_ts = ts;
        }
        self.buf.extend_from_slice(bytes);
        self.scan_headers(ts);
    }

    fn scan_headers(&mut self, ts: u64) {
        loop {
            let at = self.rel(self.scan);
            let Some(header) = self.buf.get(at..at + 4) else {
                return;
            };
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let payload = self.scanned_payload + len;
            if payload > MAX_PAYLOAD {
                self.error = Some(DependencyError::TooLarge {
                    protocol: PROTOCOL,
                    limit: MAX_PAYLOAD,
                });
                return;
            }
            let piece_end = self.scan + 4 + len as u64;
            if piece_end > self.end() {
                return;
            }
            self.scan = piece_end;
            if len == MAX_FRAGMENT {
                self.scanned_payload = payload;
                continue;
            }
            self.scanned_payload = 0;
            self.ready.push_back(Boundary {
                end: piece_end,
                first_ts: self.start_ts,
                last_ts: ts,
            });
            self.packet_start = piece_end;
            // Bytes after a packet completed by this push arrived with it.
            self.start_ts = ts;
        }
    }

    /// The next complete packet; an error once the packets before it are used up.
    pub(super) fn next_packet(&mut self) -> Result<Option<Packet>, DependencyError> {
        let Some(boundary) = self.ready.pop_front() else {
            return match &self.error {
                Some(error) => Err(error.clone()),
                None => Ok(None),
            };
        };
        let raw = self
            .buf
            .get(self.rel(self.taken)..self.rel(boundary.end))
            .unwrap_or_default()
            .to_vec();
        self.taken = boundary.end;
        self.compact();
        let mut payload = Vec::with_capacity(raw.len());
        let mut at = 0;
        let mut seq = None;
        while let Some(header) = raw.get(at..at + 4) {
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            seq.get_or_insert(header[3]);
            payload.extend_from_slice(raw.get(at + 4..at + 4 + len).unwrap_or_default());
            at += 4 + len;
        }
        Ok(Some(Packet {
            seq: seq.unwrap_or_default(),
            payload,
            raw,
            first_ts: boundary.first_ts,
            last_ts: boundary.last_ts,
        }))
    }

    /// Bytes not handed out yet, complete packets or not.
    pub(super) fn peek(&self) -> &[u8] {
        self.buf.get(self.rel(self.taken)..).unwrap_or_default()
    }

    fn compact(&mut self) {
        let used = self.rel(self.taken);
        if used == self.buf.len() {
            self.buf.clear();
            self.base = self.taken;
        } else if used >= COMPACT_AT && used * 2 >= self.buf.len() {
            self.buf.drain(..used);
            self.base = self.taken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        out.push(seq);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn cuts_packets_and_keeps_their_times() {
        let mut bytes = packet(0, b"abc");
        bytes.extend(packet(1, b""));
        bytes.extend(packet(2, b"xy"));
        let mut framer = Framer::new();
        framer.push(&bytes[..5], 10);
        framer.push(&bytes[5..9], 20);
        framer.push(&bytes[9..], 30);
        let first = framer.next_packet().ok().flatten().expect("first");
        assert_eq!(
            (first.seq, &first.payload[..], first.first_ts, first.last_ts),
            (0, &b"abc"[..], 10, 20)
        );
        let second = framer.next_packet().ok().flatten().expect("second");
        assert_eq!(
            (
                second.seq,
                second.payload.len(),
                second.first_ts,
                second.last_ts
            ),
            (1, 0, 20, 30)
        );
        let third = framer.next_packet().ok().flatten().expect("third");
        assert_eq!(
            (third.seq, &third.payload[..], third.first_ts, third.last_ts),
            (2, &b"xy"[..], 30, 30)
        );
        assert!(framer.next_packet().ok().flatten().is_none());
        assert!(framer.peek().is_empty());
    }

    #[test]
    fn refuses_a_packet_over_the_limit_after_the_good_ones() {
        let mut framer = Framer::new();
        framer.push(&packet(0, b"ok"), 1);
        let zeros = vec![0u8; MAX_FRAGMENT];
        for seq in 1..=4u8 {
            framer.push(&[0xFF, 0xFF, 0xFF, seq], 1);
            framer.push(&zeros, 1);
        }
        framer.push(&[0x10, 0, 0, 5], 1);
        assert!(framer.next_packet().ok().flatten().is_some());
        assert!(matches!(
            framer.next_packet(),
            Err(DependencyError::TooLarge { .. })
        ));
    }
}
