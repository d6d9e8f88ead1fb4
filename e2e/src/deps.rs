//! Real dependencies for the mock tests, started by the test itself on loopback: a PostgreSQL
//! cluster (trust authentication, its own data directory), a Redis server, and a small HTTP
//! "rate API" stub. Each stops on `stop` or drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{free_port, wait_for};

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The newest PostgreSQL server binaries Debian installed.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (`apt-get install postgresql`)")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no initdb under /usr/lib/postgresql")
}

/// A throwaway PostgreSQL cluster run as the `postgres` user.
pub struct Postgres {
    pub port: u16,
    pub database: String,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

impl Postgres {
    pub fn start(scratch: &Path) -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let dir = scratch.join("pg");
        std::fs::create_dir_all(&dir)?;
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        )?;
        let data = dir.join("data");
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
            "initdb",
        )?;
        let port = free_port()?;
        let mut pg = Self {
            port,
            database: "orders".into(),
            dir,
            bin,
            running: false,
        };
        pg.pg_ctl("start")?;
        pg.running = true;
        wait_for("PostgreSQL", Duration::from_secs(30), || {
            Ok(listening(port).then_some(()))
        })?;
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "orders"]),
            "createdb",
        )?;
        Ok(pg)
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "-m", "fast"]);
        if action == "start" {
            cmd.args(["-o", &options]);
        }
        cmd.arg(action);
        run(&mut cmd, &format!("pg_ctl {action}"))
    }

    /// A libpq connection string for the test database.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={} sslmode=disable",
            self.port, self.database
        )
    }

    /// Runs SQL with psql (a real client); returns its output.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-d", &self.dsn(), "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.running = false;
            self.pg_ctl("stop")?;
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A child process stopped on drop.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    fn spawn(mut cmd: Command, port: u16, what: &str) -> anyhow::Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let server = Self {
            port,
            child: Some(child),
        };
        wait_for(what, Duration::from_secs(20), || {
            Ok(listening(port).then_some(()))
        })?;
        Ok(server)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's redis-server on a free loopback port, no persistence.
pub fn redis(scratch: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
    ])
    .arg(scratch);
    Server::spawn(cmd, port, "redis-server")
}

/// The outbound HTTP API the fixture calls: `GET /rate?from=USD&to=EUR` -> `{"rate": 0.92}`.
pub fn rate_stub() -> anyhow::Result<Server> {
    let port = free_port()?;
    let script = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"from": "USD", "to": "EUR", "rate": 0.92}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", script, &port.to_string()]);
    Server::spawn(cmd, port, "the rate API stub")
}

/// A throwaway MariaDB server (Debian's mariadb-server) on a free loopback port, its own data
/// directory, root without a password (the handshake then carries no secret to replay).
pub struct MariaDb {
    pub port: u16,
    pub database: String,
    server: Server,
}

impl MariaDb {
    pub fn start(scratch: &Path) -> anyhow::Result<Self> {
        let dir = scratch.join("mariadb");
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        run(
            Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--auth-root-authentication-method=normal",
                    "--user=root",
                ])
                .arg(format!("--datadir={}", data.display()))
                .arg("--skip-test-db"),
            "mariadb-install-db",
        )?;
        let port = free_port()?;
        let mut cmd = Command::new("mariadbd");
        cmd.args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"]);
        let server = Server::spawn(cmd, port, "mariadbd")?;
        let db = Self {
            port,
            database: "notes".into(),
            server,
        };
        db.sql("CREATE DATABASE notes")?;
        Ok(db)
    }

    /// Runs SQL with the mariadb client (a real client); returns its output.
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-h", "127.0.0.1", "-u", "root", "-N", "-B"])
            .arg(format!("--port={}", self.port))
            .args(["-e", sql])
            .output()
            .context("running the mariadb client")?;
        if !out.status.success() {
            bail!("mariadb: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}
