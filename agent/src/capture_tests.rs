//! End-to-end capture tests: the real capture object, loaded into this kernel, capturing real
//! nginx and curl traffic on 127.0.0.1 from processes in a test-created cgroup.
//!
//! They need root (CI runs as root) and skip with a message otherwise. nginx is configured with
//! `sendfile off`: bytes sent with sendfile(2) never pass through a buffer the syscall
//! tracepoints can see.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use kreplay_agent_ebpf::counter;
use kreplay_wire::http1::Limits;

use crate::{
    connections::{CapturedExchange, ConnectionTable, Role},
    loader::{self, Capture, RingSizes},
    metrics::Counters,
    pipeline::{Drained, drain_rings},
};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const NGINX: &str = "/usr/sbin/nginx";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: loading eBPF programs needs root");
            return;
        }
    };
}

static UNIQUE: AtomicU32 = AtomicU32::new(0);

fn unique(name: &str) -> String {
    format!(
        "kreplay-test-{}-{}-{name}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&path).expect("creating a scratch directory");
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cgroup v2 directory; its inode number is the id `bpf_get_current_cgroup_id` returns.
struct TestCgroup {
    path: PathBuf,
    id: u64,
}

impl TestCgroup {
    fn new(name: &str) -> Self {
        let path = Path::new(CGROUP_ROOT).join(unique(name));
        std::fs::create_dir(&path).expect("creating a test cgroup (is cgroup v2 mounted?)");
        let id = std::fs::metadata(&path)
            .expect("stat of the test cgroup")
            .ino();
        Self { path, id }
    }

    /// Starts `program args` inside this cgroup: the shell moves itself in, then execs.
    fn spawn(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&self.path)
            .arg(program)
            .args(args);
        command
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Processes were killed and reaped by their owners; an empty cgroup can be removed.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// nginx serving `root` on 127.0.0.1, one process (`master_process off`), `sendfile off`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: ScratchDir,
}

impl Nginx {
    fn start(root: &Path, cgroup: Option<&TestCgroup>) -> Self {
        let dir = ScratchDir::new("nginx");
        let port = free_port();
        let d = dir.0.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  sendfile off;\n  keepalive_timeout 30s;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n  types {{ text/plain txt; application/json json; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {};\n  }}\n}}\n",
            root.display()
        );
        let conf = dir.0.join("nginx.conf");
        std::fs::write(&conf, config).expect("writing nginx.conf");
        let conf = conf.to_string_lossy().into_owned();
        let error_log = format!("{d}/error.log");
        let args = [
            "-c",
            conf.as_str(),
            "-e",
            error_log.as_str(),
            "-p",
            &d.to_string(),
        ];
        let mut command = match cgroup {
            Some(cgroup) => cgroup.spawn(NGINX, &args),
            None => {
                let mut command = Command::new(NGINX);
                command.args(args);
                command
            }
        };
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .expect("starting nginx (apt-get install nginx-light; see `cargo xtask setup`)");
        let nginx = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl to completion (optionally inside a cgroup) and returns its stdout.
fn curl(cgroup: Option<&TestCgroup>, args: &[&str]) -> String {
    let mut command = match cgroup {
        Some(cgroup) => cgroup.spawn("curl", args),
        None => {
            let mut command = Command::new("curl");
            command.args(args);
            command
        }
    };
    let out = command.stdin(Stdio::null()).output().expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic, incompressible-looking text of `len` bytes.
fn body_of(len: usize, seed: u8) -> Vec<u8> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = u32::from(seed) | 1;
    (0..len)
        .map(|i| {
            if i % 64 == 63 {
                return b'\n';
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            alphabet[state as usize % alphabet.len()]
        })
        .collect()
}

fn load(rings: RingSizes) -> Capture {
    match loader::load(rings) {
        Ok(capture) => capture,
        Err(e) => panic!("loading the capture object: {e}"),
    }
}

/// Drains the rings into `table` until `done` says the exchanges collected so far are enough,
/// or the deadline passes. Returns the exchanges and what was read.
fn collect_until(
    capture: &mut Capture,
    table: &mut ConnectionTable,
    timeout: Duration,
    mut done: impl FnMut(&[CapturedExchange]) -> bool,
) -> (Vec<CapturedExchange>, Drained) {
    let counters = Counters::default();
    let mut exchanges = Vec::new();
    let mut total = Drained::default();
    let deadline = Instant::now() + timeout;
    loop {
        let drained = drain_rings(capture, table, &counters, usize::MAX);
        total.control_records += drained.control_records;
        total.data_records += drained.data_records;
        total.payload_bytes += drained.payload_bytes;
        exchanges.extend(table.drain_exchanges());
        if done(&exchanges) || Instant::now() >= deadline {
            return (exchanges, total);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nginx_keep_alive_exchanges_are_captured_exactly() {
    require_root!();
    let www = ScratchDir::new("www");
    let small = b"hello from kreplay\n".to_vec();
    // Larger than one 16 KiB chunk and not a multiple of it: exercises chunking and reassembly.
    let large = body_of(200_000 + 123, 7);
    std::fs::write(www.0.join("small.txt"), &small).expect("writing small.txt");
    std::fs::write(www.0.join("large.txt"), &large).expect("writing large.txt");

    let cgroup = TestCgroup::new("nginx");
    let nginx = Nginx::start(&www.0, Some(&cgroup));
    let mut capture = load(RingSizes {
        data: 8 << 20,
        control: 1 << 16,
    });
    capture
        .cgroup_targets
        .insert(cgroup.id, 1, 0)
        .expect("adding the cgroup target");

    // One curl, two URLs: the second request reuses the connection (HTTP/1.1 keep-alive).
    let small_url = nginx.url("/small.txt?x=1");
    let large_url = nginx.url("/large.txt");
    let connects = curl(
        None,
        &[
            "-sS",
            "-w",
            "%{num_connects} ",
            "-o",
            "/dev/null",
            &small_url,
            "-o",
            "/dev/null",
            &large_url,
        ],
    );
    assert_eq!(
        connects, "1 0 ",
        "curl must reuse the connection for the second URL"
    );

    let mut table = ConnectionTable::new(Limits::default(), 0);
    let (exchanges, _) = collect_until(&mut capture, &mut table, Duration::from_secs(10), |e| {
        e.len() >= 2
    });
    assert_eq!(exchanges.len(), 2, "exchanges: {exchanges:#?}");
    let (first, second) = (&exchanges[0], &exchanges[1]);
    for exchange in [first, second] {
        assert_eq!(exchange.conn.role, Role::Server);
        assert_eq!(exchange.conn.tgid, nginx.pid());
        assert_eq!(exchange.conn.cgroup_id, cgroup.id);
        assert!(
            exchange.conn.peer.starts_with("127.0.0.1:"),
            "peer {}",
            exchange.conn.peer
        );
        assert_eq!(exchange.exchange.request.method, "GET");
        assert_eq!(exchange.exchange.response.status_code, 200);
    }
    assert_eq!(
        first.conn.id, second.conn.id,
        "both exchanges on one connection"
    );
    assert_eq!(
        (first.index_on_connection, second.index_on_connection),
        (1, 2)
    );
    assert_eq!(first.exchange.request.target, "/small.txt?x=1");
    assert_eq!(second.exchange.request.target, "/large.txt");
    assert_eq!(first.exchange.response.body, small);
    assert!(second.exchange.response.body == large, "large body differs");
    assert!(!first.exchange.response.body_truncated && !second.exchange.response.body_truncated);

    let kernel = capture.kernel_counters();
    for index in [
        counter::DATA_RING_FULL,
        counter::CONTROL_RING_FULL,
        counter::READ_FAULT,
        counter::TRUNCATED_BYTES,
    ] {
        assert_eq!(
            kernel[index as usize], 0,
            "kernel counter {index}: {kernel:?}"
        );
    }
    assert!(kernel[counter::DATA_RECORDS as usize] >= 4, "{kernel:?}");
    assert_eq!(table.stats().gaps, 0);
}

#[test]
fn client_side_capture_of_curl_in_a_cgroup() {
    require_root!();
    let www = ScratchDir::new("www");
    let body = br#"{"kind":"client","ok":true}"#.to_vec();
    std::fs::write(www.0.join("data.json"), &body).expect("writing data.json");
    // nginx outside the cgroup: only the client (curl, connect path) is a target.
    let nginx = Nginx::start(&www.0, None);
    let cgroup = TestCgroup::new("curl");
    let mut capture = load(RingSizes {
        data: 1 << 20,
        control: 1 << 16,
    });
    capture
        .cgroup_targets
        .insert(cgroup.id, 1, 0)
        .expect("adding the cgroup target");

    let url = nginx.url("/data.json");
    let out = curl(Some(&cgroup), &["-sS", "-H", "X-Test: client-side", &url]);
    assert_eq!(out.as_bytes(), body.as_slice());

    let mut table = ConnectionTable::new(Limits::default(), 0);
    let (exchanges, drained) =
        collect_until(&mut capture, &mut table, Duration::from_secs(10), |e| {
            !e.is_empty()
        });
    assert_eq!(exchanges.len(), 1, "exchanges: {exchanges:#?}");
    let captured = &exchanges[0];
    assert_eq!(captured.conn.role, Role::Client);
    assert_eq!(captured.conn.peer, format!("127.0.0.1:{}", nginx.port));
    assert_eq!(captured.exchange.request.target, "/data.json");
    assert!(
        captured
            .exchange
            .request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(b"x-test") && h.value == b"client-side"),
        "request headers: {:?}",
        captured.exchange.request.headers
    );
    assert_eq!(captured.exchange.response.body, body);
    // curl closed the connection: the close event was seen and the connection finalised.
    let deadline = Instant::now() + Duration::from_secs(5);
    while table.open_connections() > 0 && Instant::now() < deadline {
        collect_until(&mut capture, &mut table, Duration::ZERO, |_| true);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(table.open_connections(), 0);
    assert!(drained.control_records >= 1);
}

#[test]
fn an_overfilled_data_ring_counts_its_losses() {
    require_root!();
    let www = ScratchDir::new("www");
    let large = body_of(1 << 20, 3);
    std::fs::write(www.0.join("big.txt"), &large).expect("writing big.txt");
    let cgroup = TestCgroup::new("overfill");
    let nginx = Nginx::start(&www.0, Some(&cgroup));
    // 64 KiB holds three 16 KiB chunks; the 1 MiB response is written before anything is read.
    let mut capture = load(RingSizes {
        data: 64 << 10,
        control: 1 << 16,
    });
    capture
        .cgroup_targets
        .insert(cgroup.id, 1, 0)
        .expect("adding the cgroup target");

    let url = nginx.url("/big.txt");
    let sizes = curl(
        None,
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_request} %{size_header} %{size_download}",
            &url,
        ],
    );
    let wire_bytes: u64 = sizes
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0))
        .sum();
    assert!(wire_bytes > 1 << 20, "curl sizes: {sizes}");

    let mut table = ConnectionTable::new(Limits::default(), 0);
    // Nothing can complete the exchange; read until the connection is over.
    let (mut exchanges, drained) =
        collect_until(&mut capture, &mut table, Duration::from_secs(3), |_| false);
    table.sweep(u64::MAX, 0);
    exchanges.extend(table.drain_exchanges());
    let kernel = capture.kernel_counters();
    let lost_records = kernel[counter::DATA_RING_FULL as usize];
    let lost_bytes = kernel[counter::DATA_RING_FULL_BYTES as usize];
    assert!(
        lost_records > 0,
        "the ring must have overflowed: {kernel:?}"
    );
    assert!(
        lost_bytes >= (1 << 20) - ((3 * 16) << 10),
        "lost bytes {lost_bytes}: {kernel:?}"
    );
    // Every byte on the wire was either delivered or counted as lost: nothing hidden.
    assert_eq!(
        drained.payload_bytes + lost_bytes + kernel[counter::TRUNCATED_BYTES as usize],
        wire_bytes,
        "delivered {} + lost {lost_bytes} vs wire {wire_bytes} ({kernel:?})",
        drained.payload_bytes
    );
    assert!(
        table.stats().gaps > 0,
        "the table must see the hole: {:?}",
        table.stats()
    );
    for captured in &exchanges {
        // Whatever the parser makes of the hole, it must not pass it off as the full body.
        assert!(
            captured.exchange.response.body != large || captured.exchange.response.body_truncated,
            "a body with a hole was reported complete"
        );
    }
}

#[test]
fn a_redirected_cgroup_reaches_the_mock_server_and_sees_its_original_peer() {
    require_root!();
    let mut capture = load(RingSizes::default());
    let cgroup = TestCgroup::new("redirect");
    // The "mock server": answers one line to whoever connects.
    let mock = TcpListener::bind("127.0.0.1:0").expect("binding the mock server");
    let mock_addr = match mock.local_addr().expect("mock address") {
        std::net::SocketAddr::V4(v4) => v4,
        other => panic!("unexpected address {other}"),
    };
    let server = std::thread::spawn(move || {
        let (mut stream, _) = mock.accept().expect("accepting the redirected client");
        std::io::Write::write_all(&mut stream, b"from the mock server\n").expect("answering");
    });
    capture
        .attach_redirect(&cgroup.path, cgroup.id, mock_addr)
        .expect("attaching the redirect");
    // Nothing listens on the original destination: only the redirect can answer.
    let original_port = free_port();
    let script = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {original_port}), timeout=5)\n\
         print(s.getpeername()[1])\nprint(s.makefile().readline().strip())\n"
    );
    let out = cgroup
        .spawn("python3", &["-c", &script])
        .output()
        .expect("running python3 in the test cgroup");
    capture.detach_redirect(cgroup.id);
    server.join().expect("mock server thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [original_port.to_string().as_str(), "from the mock server"],
        "getpeername returns the original destination; the bytes come from the mock server"
    );

    // Detached: the same connect now fails (nothing listens there).
    let out = cgroup
        .spawn("python3", &["-c", &script])
        .output()
        .expect("running python3 again");
    assert!(
        !out.status.success(),
        "without the redirect the connect must be refused"
    );
}
