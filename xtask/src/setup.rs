//! Idempotent installation of everything builds and tests need on a fresh machine of this kind
//! (Debian 12, root, rustup with stable and nightly). A warm machine pays only the checks.

use anyhow::Context;

use crate::util::{have, output, run};

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
];

const BPF_LINKER_VERSION: &str = "0.13.0";

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

pub fn run_apt() -> anyhow::Result<()> {
    let missing = missing_apt_packages();
    if missing.is_empty() {
        return Ok(());
    }
    run("apt-get", &["update", "-qq"], &[])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing);
    run("apt-get", &args, &[("DEBIAN_FRONTEND", "noninteractive")])
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output("rustup", &["component", "list", "--toolchain", "nightly", "--installed"])
        .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    if output("rustup", &["run", "nightly", "rustc", "--version"]).is_none() {
        run("rustup", &["toolchain", "install", "nightly", "--profile", "minimal"], &[])?;
    }
    run("rustup", &["component", "add", "rust-src", "--toolchain", "nightly"], &[])
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(version) = output("bpf-linker", &["--version"]) {
        if version.contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    // bpf-linker must link an LLVM at least as new as rustc's (22); see TOOLCHAIN.md.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
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
        &[("LLVM_PREFIX", "/usr/lib/llvm-22"), ("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")],
    )
}

fn tracefs() -> anyhow::Result<()> {
    if std::path::Path::new("/sys/kernel/tracing/events/syscalls").exists() {
        return Ok(());
    }
    run("mount", &["-t", "tracefs", "nodev", "/sys/kernel/tracing"], &[])
}

pub fn run() -> anyhow::Result<()> {
    run_apt().context("installing Debian packages")?;
    nightly_rust_src().context("installing nightly rust-src")?;
    bpf_linker().context("installing bpf-linker")?;
    tracefs().context("mounting tracefs")?;
    if !have("nginx") && !std::path::Path::new("/usr/sbin/nginx").exists() {
        anyhow::bail!("nginx is still missing after setup");
    }
    Ok(())
}
