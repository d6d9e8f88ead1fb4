//! The capture pipeline: a dedicated thread that drains the rings, reassembles and parses
//! connections, attributes exchanges to recording sessions and queues them in the outbox.
//!
//! It never blocks on the network: the outbox drops (and counts) when full.

use std::{
    os::fd::AsRawFd,
    sync::{Arc, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};

use kreplay_agent_ebpf::{CONTROL_CLOSE, CONTROL_OPEN, counter};
use kreplay_proto::v1::{self as pb, SessionFlushed, TargetSet, TargetsApplied, envelope::Body};
use kreplay_wire::{dependency::Lifetime, http1};

use crate::{
    connections::{CapturedExchange, CapturedUnit, ConnectionTable, Role},
    loader::Capture,
    metrics::Counters,
    outbox::{Outbox, Priority},
    records,
    targets::Targets,
};

/// Requests from the proxy, forwarded by the uplink.
#[derive(Debug)]
pub enum Command {
    Targets(TargetSet),
    Flush(String),
    /// Send a replay instance's TCP connections to its mock server.
    Redirect {
        cgroup: std::path::PathBuf,
        cgroup_id: u64,
        mock_server: std::net::SocketAddrV4,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    Unredirect {
        cgroup_id: u64,
        reply: tokio::sync::oneshot::Sender<()>,
    },
    Stop,
}

/// Data records read per drain, so commands and metrics still get a turn under a flood.
const DATA_RECORDS_PER_DRAIN: usize = 65_536;
/// How long a closed connection may wait for its trailing data.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Longest a flush spends draining a backlog before it sends its marker.
const FLUSH_DRAIN_BUDGET: Duration = Duration::from_secs(5);
/// Shortest spacing of drains. Records accumulate in the ring meanwhile, so under steady load
/// the thread wakes at most ~100 times a second instead of once per record (and the kernel, which only
/// signals a reader that has caught up, skips most wake-ups). The data ring holds far more than
/// this much traffic.
const MIN_DRAIN_INTERVAL: Duration = Duration::from_millis(10);

pub struct Pipeline {
    capture: Capture,
    table: ConnectionTable,
    targets: Targets,
    outbox: Arc<Outbox>,
    counters: Arc<Counters>,
    last_metrics: Option<pb::AgentMetrics>,
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, to turn `bpf_ktime_get_ns` into unix time.
fn clock_offset_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Pipeline {
    pub fn new(capture: Capture, outbox: Arc<Outbox>, counters: Arc<Counters>) -> Self {
        Self {
            capture,
            table: ConnectionTable::new(http1::Limits::default(), clock_offset_ns()),
            targets: Targets::default(),
            outbox,
            counters,
            last_metrics: None,
        }
    }

    /// Runs until `Command::Stop` or the command channel closes.
    pub fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut last_tick = Instant::now();
        let mut last_drain = Instant::now();
        let mut ring_backlog = false;
        loop {
            if !ring_backlog {
                self.wait_for_data(Duration::from_millis(10));
                if let Some(rest) = MIN_DRAIN_INTERVAL.checked_sub(last_drain.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            last_drain = Instant::now();
            loop {
                match commands.try_recv() {
                    Ok(Command::Targets(set)) => self.apply_targets(&set),
                    Ok(Command::Flush(record_id)) => self.flush(&record_id),
                    Ok(Command::Redirect {
                        cgroup,
                        cgroup_id,
                        mock_server,
                        reply,
                    }) => {
                        let result = self
                            .capture
                            .attach_redirect(&cgroup, cgroup_id, mock_server)
                            .map_err(|e| e.to_string());
                        let _ = reply.send(result);
                    }
                    Ok(Command::Unredirect { cgroup_id, reply }) => {
                        self.capture.detach_redirect(cgroup_id);
                        let _ = reply.send(());
                    }
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            ring_backlog = self.drain().data_records >= DATA_RECORDS_PER_DRAIN as u64;
            if last_tick.elapsed() >= METRICS_EVERY {
                last_tick = Instant::now();
                self.reap_exited();
                self.table
                    .sweep(monotonic_ns(), CLOSE_GRACE.as_nanos() as u64);
                self.ship_exchanges();
                self.publish_metrics();
            }
        }
    }

    fn wait_for_data(&self, timeout: Duration) {
        let mut fds = [
            libc::pollfd {
                fd: self.capture.data_ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.capture.control_ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
    }

    fn apply_targets(&mut self, set: &TargetSet) {
        let changes = self.targets.apply(set);
        let maps = &mut self.capture;
        for id in &changes.add_cgroups {
            if let Err(e) = maps.cgroup_targets.insert(id, 1, 0) {
                tracing::error!(cgroup_id = id, error = %e, "cannot add capture target");
            }
        }
        for id in &changes.remove_cgroups {
            let _ = maps.cgroup_targets.remove(id);
        }
        for tgid in &changes.add_tgids {
            if let Err(e) = maps.tgid_targets.insert(tgid, 1, 0) {
                tracing::error!(tgid, error = %e, "cannot add capture target");
            }
        }
        for tgid in &changes.remove_tgids {
            let _ = maps.tgid_targets.remove(tgid);
        }
        tracing::info!(
            version = self.targets.version(),
            targets = set.targets.len(),
            "capture targets applied"
        );
        self.outbox.push(
            Body::TargetsApplied(TargetsApplied {
                version: set.version,
            }),
            Priority::Essential,
        );
    }

    /// Everything captured for `record_id` is sent before the `SessionFlushed` marker.
    fn flush(&mut self, record_id: &str) {
        // Everything the session's syscalls wrote into the rings comes before the marker: drain
        // until the ring is empty (a backlog under load is more than one drain), within a bound
        // so a flood from other targets cannot hold the flush forever.
        let deadline = Instant::now() + FLUSH_DRAIN_BUDGET;
        while self.drain().data_records >= DATA_RECORDS_PER_DRAIN as u64
            && Instant::now() < deadline
        {}
        let targets = &self.targets;
        self.table.finalize_closing(|meta| {
            targets.record_for(meta.cgroup_id, meta.tgid) == Some(record_id)
        });
        self.ship_exchanges();
        self.publish_metrics();
        self.outbox.push(
            Body::Flushed(SessionFlushed {
                record_id: record_id.to_string(),
            }),
            Priority::Essential,
        );
        self.targets.retire(record_id);
        tracing::info!(record_id, "session flushed");
    }

    fn drain(&mut self) -> Drained {
        let Self {
            capture,
            table,
            counters,
            ..
        } = self;
        let drained = drain_rings(capture, table, counters, DATA_RECORDS_PER_DRAIN);
        self.ship_exchanges();
        drained
    }

    /// Connections whose process exited end without a close event; notice them.
    fn reap_exited(&mut self) {
        let now = monotonic_ns();
        for tgid in self.table.live_tgids() {
            if !std::path::Path::new(&format!("/proc/{tgid}")).exists() {
                self.table.process_gone(tgid, now);
            }
        }
    }

    fn ship_exchanges(&mut self) {
        let units: Vec<CapturedUnit> = self.table.drain_units().collect();
        for captured in units {
            let (cgroup_id, tgid) = (captured.conn.cgroup_id, captured.conn.tgid);
            self.ship(cgroup_id, tgid, |record_id| {
                Body::Dependency(unit_to_proto(record_id, captured))
            });
        }
        let ready: Vec<CapturedExchange> = self.table.drain_exchanges().collect();
        for captured in ready {
            let (cgroup_id, tgid) = (captured.conn.cgroup_id, captured.conn.tgid);
            self.ship(cgroup_id, tgid, |record_id| {
                Body::Http(to_proto(record_id, captured))
            });
        }
    }

    /// Queues one capture for the session targeting its process, counting what cannot go.
    fn ship(&self, cgroup_id: u64, tgid: u32, body: impl FnOnce(&str) -> Body) {
        self.counters.exchanges.fetch_add(1, Ordering::Relaxed);
        let Some(record_id) = self.targets.record_for(cgroup_id, tgid) else {
            self.counters.unattributed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.outbox.push(body(record_id), Priority::Droppable) {
            self.counters.queue_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish_metrics(&mut self) {
        let sums = self.capture.kernel_counters();
        let c = &self.counters;
        c.data_ring_full
            .store(sums[counter::DATA_RING_FULL as usize], Ordering::Relaxed);
        c.data_ring_full_bytes.store(
            sums[counter::DATA_RING_FULL_BYTES as usize],
            Ordering::Relaxed,
        );
        c.control_ring_full
            .store(sums[counter::CONTROL_RING_FULL as usize], Ordering::Relaxed);
        c.read_faults
            .store(sums[counter::READ_FAULT as usize], Ordering::Relaxed);
        c.truncated_bytes
            .store(sums[counter::TRUNCATED_BYTES as usize], Ordering::Relaxed);
        c.stash_misses
            .store(sums[counter::STASH_MISS as usize], Ordering::Relaxed);
        c.data_records
            .store(sums[counter::DATA_RECORDS as usize], Ordering::Relaxed);
        let stats = self.table.stats();
        c.stream_gaps.store(stats.gaps, Ordering::Relaxed);
        c.parse_errors.store(stats.parse_errors, Ordering::Relaxed);
        c.queue_drops.store(self.outbox.drops(), Ordering::Relaxed);
        let metrics = c.to_proto();
        if self.last_metrics.as_ref() != Some(&metrics) {
            tracing::debug!(
                open_connections = self.table.open_connections(),
                exchanges = stats.exchanges,
                gaps = stats.gaps,
                "capture progress"
            );
            self.last_metrics = Some(metrics);
            self.outbox
                .push(Body::Metrics(metrics), Priority::Droppable);
        }
    }
}

/// What one [`drain_rings`] call read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub control_records: u64,
    pub data_records: u64,
    /// Payload bytes carried by the data records.
    pub payload_bytes: u64,
}

fn drain_control(
    capture: &mut Capture,
    table: &mut ConnectionTable,
    counters: &Counters,
    drained: &mut Drained,
) {
    while let Some(item) = capture.control_ring.next() {
        drained.control_records += 1;
        match records::decode_control(&item) {
            Ok(event) if event.kind == CONTROL_OPEN => table.on_open(&event),
            Ok(event) if event.kind == CONTROL_CLOSE => table.on_close(&event),
            Ok(_) | Err(_) => {
                counters.bad_records.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads what the rings hold into `table`: all control records, then up to `max_data` data
/// records. Never blocks. Control is read first so the opens of the data's connections are known;
/// a close read ahead of its connection's data is fine (it carries the final positions).
pub fn drain_rings(
    capture: &mut Capture,
    table: &mut ConnectionTable,
    counters: &Counters,
    max_data: usize,
) -> Drained {
    let mut drained = Drained::default();
    drain_control(capture, table, counters, &mut drained);
    for _ in 0..max_data {
        let Some(item) = capture.data_ring.next() else {
            break;
        };
        drained.data_records += 1;
        let Ok((header, payload)) = records::decode_data(&item) else {
            counters.bad_records.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        drained.payload_bytes += payload.len() as u64;
        if table.knows(&header) {
            table.on_data(&header, payload);
        } else {
            // The open may have been written after the control ring was drained.
            let payload = payload.to_vec();
            drop(item);
            drain_control(capture, table, counters, &mut drained);
            table.on_data(&header, &payload);
        }
    }
    drained
}

fn headers(list: Vec<http1::Header>) -> Vec<pb::Header> {
    list.into_iter()
        .map(|h| pb::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

fn to_proto(record_id: &str, captured: CapturedExchange) -> pb::HttpExchange {
    let CapturedExchange {
        conn,
        index_on_connection,
        exchange,
    } = captured;
    let (request, response) = (exchange.request, exchange.response);
    pb::HttpExchange {
        record_id: record_id.to_string(),
        role: match conn.role {
            Role::Server => pb::Role::Server as i32,
            Role::Client => pb::Role::Client as i32,
        },
        pid: conn.tgid,
        cgroup_id: conn.cgroup_id,
        local_addr: String::new(),
        peer_addr: conn.peer,
        connection_id: conn.id,
        index_on_connection,
        request: Some(pb::HttpRequest {
            method: request.method,
            target: request.target,
            version_minor: u32::from(request.version_minor),
            headers: headers(request.headers),
            body: request.body,
            body_truncated: request.body_truncated,
            body_wire_size: request.body_wire_size,
            timestamp_ns: request.timestamp_ns,
        }),
        response: Some(pb::HttpResponse {
            status_code: u32::from(response.status_code),
            reason: response.reason,
            version_minor: u32::from(response.version_minor),
            headers: headers(response.headers),
            body: response.body,
            body_truncated: response.body_truncated,
            body_wire_size: response.body_wire_size,
            timestamp_ns: response.timestamp_ns,
        }),
    }
}

fn unit_to_proto(record_id: &str, captured: CapturedUnit) -> pb::DependencyCall {
    let CapturedUnit {
        conn,
        protocol,
        index_on_connection,
        unit,
    } = captured;
    pb::DependencyCall {
        record_id: record_id.to_string(),
        protocol: protocol.as_str().to_string(),
        pid: conn.tgid,
        cgroup_id: conn.cgroup_id,
        peer_addr: conn.peer,
        connection_id: conn.id,
        index_on_connection,
        request: unit.request,
        response: unit.response,
        fields: unit
            .fields
            .into_iter()
            .map(|(name, value)| pb::Field { name, value })
            .collect(),
        summary: unit.summary,
        lifetime: match unit.lifetime {
            Lifetime::Session => "session",
            Lifetime::Connection => "connection",
            Lifetime::PerTest => "per_test",
        }
        .to_string(),
        request_ts_ns: unit.request_ts_ns,
        response_ts_ns: unit.response_ts_ns,
    }
}
