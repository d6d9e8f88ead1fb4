//! Agent counters and their Prometheus text rendering.

use std::sync::atomic::{AtomicU64, Ordering};

use kreplay_proto::v1::AgentMetrics;

/// Counters shared by the pipeline (writer) and the metrics endpoint (reader).
#[derive(Debug, Default)]
pub struct Counters {
    pub data_ring_full: AtomicU64,
    pub data_ring_full_bytes: AtomicU64,
    pub control_ring_full: AtomicU64,
    pub read_faults: AtomicU64,
    pub truncated_bytes: AtomicU64,
    pub stash_misses: AtomicU64,
    pub data_records: AtomicU64,
    pub queue_drops: AtomicU64,
    pub stream_gaps: AtomicU64,
    pub parse_errors: AtomicU64,
    pub exchanges: AtomicU64,
    pub unattributed: AtomicU64,
    pub bad_records: AtomicU64,
}

impl Counters {
    pub fn to_proto(&self) -> AgentMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AgentMetrics {
            ring_full_drops: get(&self.data_ring_full),
            control_ring_drops: get(&self.control_ring_full),
            read_faults: get(&self.read_faults),
            truncated_bytes: get(&self.truncated_bytes),
            queue_drops: get(&self.queue_drops),
            stream_gaps: get(&self.stream_gaps),
            parse_errors: get(&self.parse_errors),
            events: get(&self.data_records),
            exchanges: get(&self.exchanges),
            stash_misses: get(&self.stash_misses),
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self, outbox_len: usize, connected: bool) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows: [(&str, &str, u64); 13] = [
            (
                "kreplay_agent_data_ring_full_total",
                "Data records lost: data ring full",
                get(&self.data_ring_full),
            ),
            (
                "kreplay_agent_data_ring_full_bytes_total",
                "Payload bytes lost: data ring full",
                get(&self.data_ring_full_bytes),
            ),
            (
                "kreplay_agent_control_ring_full_total",
                "Control records lost: control ring full",
                get(&self.control_ring_full),
            ),
            (
                "kreplay_agent_read_faults_total",
                "bpf_probe_read_user failures",
                get(&self.read_faults),
            ),
            (
                "kreplay_agent_truncated_bytes_total",
                "Bytes beyond the per-syscall copy budget",
                get(&self.truncated_bytes),
            ),
            (
                "kreplay_agent_stash_misses_total",
                "Syscall exits without stashed arguments",
                get(&self.stash_misses),
            ),
            (
                "kreplay_agent_data_records_total",
                "Data records emitted by the kernel",
                get(&self.data_records),
            ),
            (
                "kreplay_agent_queue_drops_total",
                "Captures dropped: uplink queue full",
                get(&self.queue_drops),
            ),
            (
                "kreplay_agent_stream_gaps_total",
                "Gaps seen in stream positions",
                get(&self.stream_gaps),
            ),
            (
                "kreplay_agent_parse_errors_total",
                "HTTP parse errors",
                get(&self.parse_errors),
            ),
            (
                "kreplay_agent_exchanges_total",
                "HTTP exchanges captured",
                get(&self.exchanges),
            ),
            (
                "kreplay_agent_unattributed_total",
                "Exchanges with no recording session",
                get(&self.unattributed),
            ),
            (
                "kreplay_agent_bad_records_total",
                "Malformed ring records",
                get(&self.bad_records),
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP kreplay_agent_outbox_envelopes Envelopes awaiting acknowledgement\n\
             # TYPE kreplay_agent_outbox_envelopes gauge\nkreplay_agent_outbox_envelopes {outbox_len}\n\
             # HELP kreplay_agent_connected Whether the uplink to the proxy is up\n\
             # TYPE kreplay_agent_connected gauge\nkreplay_agent_connected {}\n",
            u8::from(connected)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_loss_counter() {
        let counters = Counters::default();
        counters.data_ring_full.store(3, Ordering::Relaxed);
        let text = counters.render(2, true);
        assert!(text.contains("kreplay_agent_data_ring_full_total 3\n"));
        assert!(text.contains("kreplay_agent_outbox_envelopes 2\n"));
        assert!(text.contains("kreplay_agent_connected 1\n"));
        assert_eq!(counters.to_proto().ring_full_drops, 3);
    }
}
