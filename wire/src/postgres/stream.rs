//! The unparsed bytes of one side, with the capture time of every byte.

use std::collections::VecDeque;

/// Bytes of one direction not yet framed into messages.
#[derive(Debug, Default)]
pub(super) struct Stream {
    buf: Vec<u8>,
    /// Consumed prefix of `buf`; dropped in bulk so taking many small messages stays linear.
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// `(stream offset where a feed ended, its timestamp)` for feeds still partly unconsumed.
    feeds: VecDeque<(u64, u64)>,
}

/// Below this a consumed prefix is not worth moving the rest for.
const COMPACT_AT: usize = 64 * 1024;

impl Stream {
    pub(super) fn push(&mut self, bytes: &[u8], ts: u64) {
        if bytes.is_empty() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let end = self.offset + self.len() as u64;
        match self.feeds.back_mut() {
            Some((last_end, last_ts)) if *last_ts == ts => *last_end = end,
            _ => self.feeds.push_back((end, ts)),
        }
    }

    pub(super) fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Removes the first `n` unconsumed bytes; returns them with the timestamps of their
    /// first and last byte.
    pub(super) fn take(&mut self, n: usize) -> (Vec<u8>, u64, u64) {
        let n = n.min(self.len());
        let bytes = self.data().get(..n).unwrap_or_default().to_vec();
        let first_ts = self.ts_at(self.offset);
        let last_ts = self.ts_at(self.offset + n.saturating_sub(1) as u64);
        self.start += n;
        self.offset += n as u64;
        while self
            .feeds
            .front()
            .is_some_and(|&(end, _)| end <= self.offset)
        {
            self.feeds.pop_front();
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= COMPACT_AT && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        (bytes, first_ts, last_ts)
    }

    /// Timestamp of the feed that delivered the byte at stream offset `at`.
    fn ts_at(&self, at: u64) -> u64 {
        self.feeds
            .iter()
            .find(|&&(end, _)| end > at)
            .or(self.feeds.back())
            .map_or(0, |&(_, ts)| ts)
    }

    pub(super) fn clear(&mut self) {
        self.offset += self.len() as u64;
        self.buf = Vec::new();
        self.start = 0;
        self.feeds.clear();
    }
}
