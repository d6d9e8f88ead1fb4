//! Idempotent installation of everything builds and tests need on a fresh machine of this kind
//! (Debian 12, root, rustup with stable and nightly). A warm machine pays only the checks: one
//! `dpkg-query`, two `rustup` queries, `bpf-linker --version` and a stat of tracefs.
//!
//! The recipe is the verified one in `shared/TOOLCHAIN.md`; keep the two in step.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::util::{self, have, output};

/// Debian packages: LLVM for bpf-linker, protoc for tonic, the servers and clients tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "protobuf-compiler",
    "nginx-light",
    "python3-httpbin",
    "gunicorn",
    "wrk",
    "curl",
    // Dependencies of the mock tests' fixture service (PostgreSQL, Redis) and its clients.
    "postgresql",
    "redis-server",
    "python3-psycopg2",
    "python3-redis",
    "mariadb-server",
    "python3-pymysql",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// bpf-linker must link an LLVM at least as new as the nightly rustc's (22).
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const TRACEFS: &str = "/sys/kernel/tracing";

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("{what} needs root: run `cargo xtask setup` as root (CI runs as root)")
    }
}

/// Packages not in state "install ok installed", in one `dpkg-query` call.
fn missing_apt_packages() -> Vec<&'static str> {
    // dpkg-query exits non-zero when a package is unknown but still prints the known ones.
    let listed = std::process::Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${Status}\n")
        .args(APT_PACKAGES)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            !listed.lines().any(|line| {
                line.split_once(' ').is_some_and(|(name, status)| {
                    // Multi-arch packages are listed as name:arch.
                    name.split(':').next() == Some(*package)
                        && status.trim() == "install ok installed"
                })
            })
        })
        .collect()
}

fn apt() -> anyhow::Result<()> {
    let missing = missing_apt_packages();
    if missing.is_empty() {
        return Ok(());
    }
    need_root(&format!("installing {}", missing.join(" ")))?;
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    // Only a machine that needs packages pays for the index update.
    util::run("apt-get", &["update"], &env)?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    util::run("apt-get", &args, &env)?;
    let still = missing_apt_packages();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    if !have("rustup") {
        bail!("rustup is not on PATH; install it (https://rustup.rs) with the stable toolchain");
    }
    if output("rustup", &["run", "nightly", "rustc", "--version"]).is_none() {
        // TOOLCHAIN.md: the image carries nightly 1.97; a newer nightly may need a newer LLVM
        // for bpf-linker. The fallback without nightly is stable + rust-src + RUSTC_BOOTSTRAP=1.
        util::run(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
            &[],
        )?;
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if installed
        .lines()
        .any(|line| line.trim().starts_with("rust-src"))
    {
        return Ok(());
    }
    util::run(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
        &[],
    )
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"))
}

fn bpf_linker_version() -> Option<String> {
    output("bpf-linker", &["--version"]).or_else(|| {
        let path = cargo_bin_dir()?.join("bpf-linker");
        output(path.to_str()?, &["--version"])
    })
}

fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_version().is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION)) {
        return Ok(());
    }
    if !Path::new(LLVM_PREFIX).join("lib").exists() {
        bail!("{LLVM_PREFIX} is missing: llvm-22-dev did not install");
    }
    // Exactly the TOOLCHAIN.md command. Without LLVM_PREFIX the build looks in /usr and fails
    // with `unable to find library -lLLVM`.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    util::run(
        &cargo,
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ],
        &[("LLVM_PREFIX", LLVM_PREFIX)],
    )?;
    if bpf_linker_version().is_none() {
        bail!("bpf-linker installed but not runnable; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn tracefs() -> anyhow::Result<()> {
    if Path::new(TRACEFS).join("events/syscalls").exists() {
        return Ok(());
    }
    need_root("mounting tracefs")?;
    util::run("mount", &["-t", "tracefs", "nodev", TRACEFS], &[])?;
    if !Path::new(TRACEFS).join("events/syscalls").exists() {
        bail!("{TRACEFS} is mounted but has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS?)");
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    apt().context("installing Debian packages")?;
    nightly_rust_src().context("installing the nightly toolchain and rust-src")?;
    bpf_linker().context("installing bpf-linker")?;
    tracefs().context("mounting tracefs")?;
    Ok(())
}
