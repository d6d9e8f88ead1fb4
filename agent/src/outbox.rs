//! The bounded outbox between the capture pipeline and the gRPC uplink.
//!
//! The pipeline pushes without ever blocking (a full outbox drops the capture and counts it), the
//! uplink sends in sequence order, and an envelope leaves the outbox only when the proxy has
//! acknowledged storing it. After a reconnect everything still held is sent again.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use kreplay_proto::v1::{Envelope, envelope::Body};
use prost::Message;
use tokio::sync::Notify;

/// How much the outbox may hold before it starts dropping captures.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_envelopes: usize,
    pub max_bytes: usize,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    pending: VecDeque<(Envelope, usize)>,
    bytes: usize,
}

pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    limits: OutboxLimits,
    drops: AtomicU64,
}

/// Whether an envelope may be dropped when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A capture or a metrics sample: dropped (and counted) when full.
    Droppable,
    /// A protocol message (flush, targets applied): always kept, or the proxy would wait forever.
    Essential,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            notify: Notify::new(),
            limits,
            drops: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every mutation is a
        // single push/pop), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a body; returns false if it was dropped because the outbox is full.
    pub fn push(&self, body: Body, priority: Priority) -> bool {
        let mut state = self.lock();
        let seq = state.next_seq;
        let envelope = Envelope {
            seq,
            body: Some(body),
        };
        let size = envelope.encoded_len();
        let full = state.pending.len() >= self.limits.max_envelopes
            || state.bytes + size > self.limits.max_bytes;
        if full && priority == Priority::Droppable {
            self.drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        state.next_seq += 1;
        state.bytes += size;
        state.pending.push_back((envelope, size));
        drop(state);
        self.notify.notify_one();
        true
    }

    /// The proxy stored everything up to and including `seq`.
    pub fn ack(&self, seq: u64) {
        let mut state = self.lock();
        while state.pending.front().is_some_and(|(e, _)| e.seq <= seq) {
            if let Some((_, size)) = state.pending.pop_front() {
                state.bytes -= size;
            }
        }
    }

    /// Up to `max` envelopes with `seq >= from`, in order.
    pub fn since(&self, from: u64, max: usize) -> Vec<Envelope> {
        let state = self.lock();
        let start = state.pending.partition_point(|(e, _)| e.seq < from);
        state
            .pending
            .iter()
            .skip(start)
            .take(max)
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Lowest sequence number still held (the next one to be assigned when empty).
    pub fn oldest_seq(&self) -> u64 {
        let state = self.lock();
        state.pending.front().map_or(state.next_seq, |(e, _)| e.seq)
    }

    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// Resolves after the next push (or immediately if one happened since the last wait).
    pub async fn pushed(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use kreplay_proto::v1::{SessionFlushed, TargetsApplied};

    use super::*;

    fn flushed() -> Body {
        Body::Flushed(SessionFlushed {
            record_id: "r".into(),
        })
    }

    #[test]
    fn acks_release_in_order_and_resend_starts_at_the_oldest() {
        let outbox = Outbox::new(OutboxLimits {
            max_envelopes: 10,
            max_bytes: 1 << 20,
        });
        for _ in 0..5 {
            assert!(outbox.push(flushed(), Priority::Droppable));
        }
        assert_eq!(
            outbox
                .since(3, 10)
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            [3, 4, 5]
        );
        outbox.ack(2);
        assert_eq!(outbox.oldest_seq(), 3);
        assert_eq!(outbox.len(), 3);
        outbox.ack(5);
        assert_eq!(outbox.len(), 0);
        assert_eq!(outbox.oldest_seq(), 6);
    }

    #[test]
    fn full_outbox_drops_captures_but_keeps_protocol_messages() {
        let outbox = Outbox::new(OutboxLimits {
            max_envelopes: 2,
            max_bytes: 1 << 20,
        });
        assert!(outbox.push(flushed(), Priority::Droppable));
        assert!(outbox.push(flushed(), Priority::Droppable));
        assert!(!outbox.push(flushed(), Priority::Droppable));
        assert_eq!(outbox.drops(), 1);
        let essential = Body::TargetsApplied(TargetsApplied { version: 1 });
        assert!(outbox.push(essential, Priority::Essential));
        // Sequence numbers stay contiguous: a dropped capture never consumed one.
        assert_eq!(
            outbox
                .since(0, 10)
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn byte_budget_is_enforced() {
        let outbox = Outbox::new(OutboxLimits {
            max_envelopes: 100,
            max_bytes: 12,
        });
        assert!(outbox.push(flushed(), Priority::Droppable));
        assert!(!outbox.push(flushed(), Priority::Droppable));
    }
}
