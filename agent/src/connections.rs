//! Connection table: per-connection, per-direction reassembly by stream position and HTTP/1
//! parsing (sans-IO: decoded records in, captured exchanges out).
//!
//! Data and control records travel in different rings, so a close can be read before the last
//! data of its connection. A close therefore carries the final stream positions, and the
//! connection is finalised only once its data has caught up (or after a grace period, counting
//! the missing bytes as a gap).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// Connection ids are the agent's own integers (no attacker picks them): a multiply-mix hash
/// instead of SipHash, which was 5% of the agent's CPU at saturation.
#[derive(Default)]
pub struct ConnHasher(u64);

impl Hasher for ConnHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

use kreplay_agent_ebpf::{ControlEvent, DIR_READ, DataHeader, ROLE_CLIENT, ROLE_SERVER};
use kreplay_wire::{
    dependency::Unit,
    detect::Protocol,
    http1::{Direction, Exchange, Limits},
};

use crate::{
    protocols::{Output, Parsing},
    records::format_addr,
};

/// Identity of a connection: generation distinguishes a reused fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub tgid: u32,
    pub fd: u32,
    pub generation: u64,
}

impl ConnId {
    fn from_data(header: &DataHeader) -> Self {
        Self {
            tgid: (header.pid_tgid >> 32) as u32,
            fd: header.fd,
            generation: header.conn_gen,
        }
    }
    fn from_control(event: &ControlEvent) -> Self {
        Self {
            tgid: (event.pid_tgid >> 32) as u32,
            fd: event.fd,
            generation: event.conn_gen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What the proxy needs to know about the connection an exchange came from.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Agent-local, increasing id.
    pub id: u64,
    pub tgid: u32,
    pub cgroup_id: u64,
    pub role: Role,
    pub peer: String,
}

#[derive(Debug)]
pub struct CapturedExchange {
    pub conn: ConnMeta,
    pub index_on_connection: u32,
    pub exchange: Exchange,
}

/// A request/response unit of a non-HTTP connection the target opened (a mock).
#[derive(Debug)]
pub struct CapturedUnit {
    pub conn: ConnMeta,
    pub protocol: Protocol,
    pub index_on_connection: u32,
    pub unit: Unit,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Connections on which positions jumped (bytes lost before user space).
    pub gaps: u64,
    /// Data for connections whose open was never seen.
    pub unknown_connection_records: u64,
    /// Connections whose first bytes were no protocol recorded on them (ingress: not HTTP/1).
    pub non_http_connections: u64,
    pub parse_errors: u64,
    pub exchanges: u64,
}

/// A connection that is over but may still have data in flight in the data ring.
#[derive(Debug, Clone, Copy)]
struct Closing {
    /// Final stream positions (read, write) from the close event; `None` when the close itself was
    /// never seen (the fd was reused or the process exited), so the end is unknown.
    final_pos: Option<[u64; 2]>,
    /// Monotonic time the end was noticed; the grace period runs from here.
    at_ns: u64,
}

struct Tracked {
    meta: ConnMeta,
    parsing: Parsing,
    /// `parsing` gave up on the connection and it was counted.
    ignored_counted: bool,
    /// Next expected stream position, indexed by DIR_READ / DIR_WRITE.
    next_pos: [u64; 2],
    closing: Option<Closing>,
    exchanges: u32,
    last_ts_ns: u64,
}

impl Tracked {
    /// Every byte up to the close positions has been seen.
    fn caught_up(&self) -> bool {
        self.closing
            .and_then(|c| c.final_pos)
            .is_some_and(|final_pos| {
                self.next_pos[0] >= final_pos[0] && self.next_pos[1] >= final_pos[1]
            })
    }
}

impl Tracked {
    fn direction(&self, dir: u8) -> Direction {
        // A server reads requests; a client writes them.
        match (self.meta.role, dir == DIR_READ) {
            (Role::Server, true) | (Role::Client, false) => Direction::Request,
            _ => Direction::Response,
        }
    }
}

pub struct ConnectionTable {
    conns: HashMap<ConnId, Tracked, BuildHasherDefault<ConnHasher>>,
    limits: Limits,
    /// Added to kernel monotonic timestamps to get unix nanoseconds.
    clock_offset_ns: i128,
    next_id: u64,
    stats: TableStats,
    ready: Vec<CapturedExchange>,
    ready_units: Vec<CapturedUnit>,
}

impl ConnectionTable {
    pub fn new(limits: Limits, clock_offset_ns: i128) -> Self {
        Self {
            conns: HashMap::default(),
            limits,
            clock_offset_ns,
            next_id: 1,
            stats: TableStats::default(),
            ready: Vec::new(),
            ready_units: Vec::new(),
        }
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    pub fn knows(&self, header: &DataHeader) -> bool {
        self.conns.contains_key(&ConnId::from_data(header))
    }

    fn unix_ns(&self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.clock_offset_ns).max(0) as u64
    }

    pub fn on_open(&mut self, event: &ControlEvent) {
        let role = match event.role {
            ROLE_SERVER => Role::Server,
            ROLE_CLIENT => Role::Client,
            _ => return,
        };
        let meta = ConnMeta {
            id: self.next_id,
            tgid: (event.pid_tgid >> 32) as u32,
            cgroup_id: event.cgroup_id,
            role,
            peer: format_addr(&event.peer),
        };
        self.next_id += 1;
        let tracked = Tracked {
            parsing: Parsing::new(role, self.limits.clone()),
            ignored_counted: false,
            meta,
            next_pos: [0, 0],
            closing: None,
            exchanges: 0,
            last_ts_ns: event.ts_ns,
        };
        // A reused (tgid, fd) with a new generation is a new connection. The old one keeps its own
        // id (the generation differs) so its data still in the data ring is not lost: if its close
        // was seen it is already waiting for that data; if not, the close was lost and it is
        // finalised after the grace period.
        for (id, old) in self.conns.iter_mut() {
            if id.tgid == tracked.meta.tgid && id.fd == event.fd && old.closing.is_none() {
                old.closing = Some(Closing {
                    final_pos: None,
                    at_ns: event.ts_ns,
                });
            }
        }
        self.conns.insert(ConnId::from_control(event), tracked);
    }

    /// Feeds one data record. Returns false when the connection is unknown (the caller may read
    /// the control ring and retry).
    pub fn on_data(&mut self, header: &DataHeader, payload: &[u8]) -> bool {
        let id = ConnId::from_data(header);
        let ts = self.unix_ns(header.ts_ns);
        let Some(conn) = self.conns.get_mut(&id) else {
            self.stats.unknown_connection_records += 1;
            return false;
        };
        conn.last_ts_ns = header.ts_ns;
        let slot = usize::from(header.direction != DIR_READ);
        let direction = conn.direction(header.direction);
        let end = header.pos + payload.len() as u64;
        let expected = conn.next_pos[slot];
        if end <= expected {
            return true; // already seen
        }
        let mut bytes = payload;
        if header.pos < expected {
            bytes = &payload[(expected - header.pos) as usize..];
        } else if header.pos > expected {
            self.stats.gaps += 1;
            conn.parsing.gap(direction, header.pos - expected);
        }
        conn.next_pos[slot] = end;
        conn.parsing.feed(direction, bytes, ts);
        if conn.parsing.is_ignored() && !conn.ignored_counted {
            conn.ignored_counted = true;
            self.stats.non_http_connections += 1;
        }
        self.collect(id);
        if self.conns.get(&id).is_some_and(Tracked::caught_up) {
            self.finalize(id, header.ts_ns);
        }
        true
    }

    pub fn on_close(&mut self, event: &ControlEvent) {
        let id = ConnId::from_control(event);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.closing = Some(Closing {
            final_pos: Some([event.read_pos, event.write_pos]),
            at_ns: event.ts_ns,
        });
        if conn.caught_up() {
            self.finalize(id, event.ts_ns);
        }
    }

    /// The process `tgid` is gone: its connections end without a close event (the kernel closes
    /// the fds of an exiting process without a close syscall). They are finalised after the grace
    /// period, once any data still in the ring has been read.
    pub fn process_gone(&mut self, tgid: u32, now_monotonic_ns: u64) {
        for (id, conn) in self.conns.iter_mut() {
            if id.tgid == tgid && conn.closing.is_none() {
                conn.closing = Some(Closing {
                    final_pos: None,
                    at_ns: now_monotonic_ns,
                });
            }
        }
    }

    /// Processes that own connections not yet closed (for the pipeline's liveness check).
    pub fn live_tgids(&self) -> Vec<u32> {
        let mut tgids: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_none())
            .map(|(id, _)| id.tgid)
            .collect();
        tgids.sort_unstable();
        tgids.dedup();
        tgids
    }

    /// Finalises closed connections whose missing data did not arrive within `grace_ns`.
    pub fn sweep(&mut self, now_monotonic_ns: u64, grace_ns: u64) {
        let overdue: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.closing
                    .is_some_and(|c| now_monotonic_ns.saturating_sub(c.at_ns) > grace_ns)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            self.finalize(id, now_monotonic_ns);
        }
    }

    /// Finalises every closing connection that matches (used when a session is flushed).
    pub fn finalize_closing(&mut self, mut matches: impl FnMut(&ConnMeta) -> bool) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_some() && matches(&c.meta))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let ts = self.conns.get(&id).map_or(0, |c| c.last_ts_ns);
            self.finalize(id, ts);
        }
    }

    fn finalize(&mut self, id: ConnId, monotonic_ns: u64) {
        let ts = self.unix_ns(monotonic_ns);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(final_pos) = conn.closing.and_then(|c| c.final_pos) {
            for (slot, dir) in [(0usize, DIR_READ), (1usize, 1u8)] {
                if conn.next_pos[slot] < final_pos[slot] {
                    self.stats.gaps += 1;
                    let direction = conn.direction(dir);
                    conn.parsing
                        .gap(direction, final_pos[slot] - conn.next_pos[slot]);
                }
            }
        }
        conn.parsing.close(ts);
        self.collect(id);
        if let Some(conn) = self.conns.remove(&id) {
            self.stats.parse_errors += conn.parsing.parse_errors();
        }
    }

    fn collect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        while let Some(output) = conn.parsing.next() {
            conn.exchanges += 1;
            self.stats.exchanges += 1;
            match output {
                Output::Exchange(exchange) => self.ready.push(CapturedExchange {
                    conn: conn.meta.clone(),
                    index_on_connection: conn.exchanges,
                    exchange,
                }),
                Output::Unit { protocol, unit } => self.ready_units.push(CapturedUnit {
                    conn: conn.meta.clone(),
                    protocol,
                    index_on_connection: conn.exchanges,
                    unit,
                }),
            }
        }
    }

    pub fn drain_exchanges(&mut self) -> std::vec::Drain<'_, CapturedExchange> {
        self.ready.drain(..)
    }

    pub fn drain_units(&mut self) -> std::vec::Drain<'_, CapturedUnit> {
        self.ready_units.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use kreplay_agent_ebpf::{CONTROL_CLOSE, CONTROL_OPEN, DIR_WRITE};

    use super::*;

    fn open(fd: u32, generation: u64) -> ControlEvent {
        ControlEvent {
            pid_tgid: 100 << 32 | 101,
            fd,
            conn_gen: generation,
            kind: CONTROL_OPEN,
            role: ROLE_SERVER,
            cgroup_id: 5,
            ..Default::default()
        }
    }

    fn data(fd: u32, generation: u64, direction: u8, pos: u64, len: usize) -> DataHeader {
        DataHeader {
            pid_tgid: 100 << 32 | 101,
            fd,
            conn_gen: generation,
            direction,
            pos,
            len: len as u32,
            ts_ns: 1_000,
            ..Default::default()
        }
    }

    const REQ: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

    #[test]
    fn pairs_a_request_and_response_and_converts_time() {
        let mut table = ConnectionTable::new(Limits::default(), 10);
        table.on_open(&open(3, 1));
        assert!(table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ));
        assert!(table.on_data(&data(3, 1, DIR_WRITE, 0, RESP.len()), RESP));
        let got: Vec<_> = table.drain_exchanges().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].exchange.request.target, "/a?x=1");
        assert_eq!(got[0].exchange.response.body, b"hi");
        assert_eq!(got[0].exchange.request.timestamp_ns, 1_010);
        assert_eq!(got[0].conn.cgroup_id, 5);
    }

    #[test]
    fn duplicate_and_overlapping_records_are_fed_once() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, 10), &REQ[..10]);
        table.on_data(&data(3, 1, DIR_READ, 0, 10), &REQ[..10]);
        table.on_data(&data(3, 1, DIR_READ, 5, REQ.len() - 5), &REQ[5..]);
        table.on_data(&data(3, 1, DIR_WRITE, 0, RESP.len()), RESP);
        assert_eq!(table.drain_exchanges().count(), 1);
        assert_eq!(table.stats().gaps, 0);
    }

    #[test]
    fn close_read_before_its_data_waits_for_the_data() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ);
        // HTTP/1.0-style close-delimited response: complete only at close.
        let resp = b"HTTP/1.1 200 OK\r\n\r\nbody";
        table.on_close(&ControlEvent {
            kind: CONTROL_CLOSE,
            read_pos: REQ.len() as u64,
            write_pos: resp.len() as u64,
            ..open(3, 1)
        });
        assert_eq!(table.open_connections(), 1, "must wait for the write side");
        table.on_data(&data(3, 1, DIR_WRITE, 0, resp.len()), resp);
        assert_eq!(table.open_connections(), 0);
        let got: Vec<_> = table.drain_exchanges().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].exchange.response.body, b"body");
    }

    #[test]
    fn gaps_are_counted_and_unknown_connections_reported() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        assert!(!table.on_data(&data(9, 1, DIR_READ, 0, REQ.len()), REQ));
        assert_eq!(table.stats().unknown_connection_records, 1);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ);
        table.on_data(&data(3, 1, DIR_WRITE, 50, RESP.len()), RESP);
        assert_eq!(table.stats().gaps, 1);
        table.on_close(&ControlEvent {
            kind: CONTROL_CLOSE,
            read_pos: 1,
            write_pos: 1,
            ..open(3, 1)
        });
        table.sweep(u64::MAX, 0);
        assert_eq!(table.open_connections(), 0);
    }

    #[test]
    fn fd_reuse_with_a_new_generation_starts_a_new_connection() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ);
        table.on_open(&open(3, 2));
        // The old connection's close was lost: it waits out the grace period, then ends.
        assert_eq!(table.open_connections(), 2);
        table.on_data(&data(3, 2, DIR_READ, 0, REQ.len()), REQ);
        table.on_data(&data(3, 2, DIR_WRITE, 0, RESP.len()), RESP);
        let got: Vec<_> = table.drain_exchanges().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].conn.id, 2);
        table.sweep(u64::MAX, 0);
        assert_eq!(table.open_connections(), 1);
        assert_eq!(table.stats().gaps, 0, "an unknown end is not a gap");
    }

    #[test]
    fn control_events_read_ahead_of_the_data_lose_nothing() {
        // The pipeline may read open(1), close(1), open(2) from the control ring before the data
        // of connection 1 (same fd) from the data ring.
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_close(&ControlEvent {
            kind: CONTROL_CLOSE,
            read_pos: REQ.len() as u64,
            write_pos: RESP.len() as u64,
            ..open(3, 1)
        });
        table.on_open(&open(3, 2));
        assert!(table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ));
        assert!(table.on_data(&data(3, 1, DIR_WRITE, 0, RESP.len()), RESP));
        let got: Vec<_> = table.drain_exchanges().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].exchange.response.body, b"hi");
        assert_eq!(
            table.open_connections(),
            1,
            "connection 1 finalised, 2 open"
        );
        assert_eq!(table.stats().gaps, 0);
    }

    #[test]
    fn connections_of_an_exited_process_end_after_the_grace_period() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, REQ.len()), REQ);
        assert_eq!(table.live_tgids(), [100]);
        table.process_gone(100, 5_000);
        assert!(table.live_tgids().is_empty());
        table.sweep(5_100, 1_000);
        assert_eq!(table.open_connections(), 1, "still within the grace period");
        table.sweep(7_000, 1_000);
        assert_eq!(table.open_connections(), 0);
    }

    #[test]
    fn non_http_connections_are_ignored() {
        let mut table = ConnectionTable::new(Limits::default(), 0);
        table.on_open(&open(3, 1));
        table.on_data(&data(3, 1, DIR_READ, 0, 4), b"\x00\x01\x02\x03");
        assert_eq!(table.stats().non_http_connections, 1);
        assert_eq!(table.drain_exchanges().count(), 0);
    }
}
