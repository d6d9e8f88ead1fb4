//! Builds the capture object (nightly, build-std, bpf-linker) and the user-space binaries.

use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{cargo, root};

/// Where the agent's build script looks for the object (agent/build.rs).
pub fn object_path() -> std::path::PathBuf {
    root().join("target/bpfel-unknown-none/release/kreplay-capture")
}

/// The rustflags the object needs. `-Cdebuginfo=2` feeds BTF (`--btf`): the verifier needs
/// func_info for the `bpf_loop` callback and BTF-typed maps (aya#1649).
const EBPF_RUSTFLAGS: &str = r#"target.bpfel-unknown-none.rustflags=["-Cdebuginfo=2","-Clink-arg=--btf","--cfg=bpf_target_arch=\"x86_64\""]"#;

pub fn build_ebpf() -> anyhow::Result<()> {
    let args = [
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "-Z",
        "build-std=core",
        "--target",
        "bpfel-unknown-none",
        "--package",
        "kreplay-agent-ebpf",
        "--bin",
        "kreplay-capture",
        "--config",
        EBPF_RUSTFLAGS,
    ];
    eprintln!("+ rustup {}", args.join(" "));
    let status = Command::new("rustup")
        .args(args)
        .current_dir(root())
        // Let rustup pick nightly even when a parent cargo exported its own toolchain.
        .env("RUSTUP_TOOLCHAIN", "nightly")
        // RUSTFLAGS from the environment (a CI `-Dwarnings`, say) would replace the target's
        // rustflags above and silently drop BTF; so would a parent's RUSTC or wrapper.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .context("running rustup (is it installed? see `cargo xtask setup`)")?;
    if !status.success() {
        bail!("building the eBPF object failed: {status} (run `cargo xtask setup` first)");
    }
    let object = object_path();
    if !object.exists() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(())
}

pub fn build_all(release: bool) -> anyhow::Result<()> {
    build_ebpf()?;
    let object = object_path();
    let object = object.to_string_lossy();
    let mut args = vec![
        "build",
        "--package",
        "kreplay-agent",
        "--package",
        "kreplay-proxy",
    ];
    if release {
        args.push("--release");
    }
    cargo(&args, &[("KREPLAY_CAPTURE_OBJECT", &object)])
}
