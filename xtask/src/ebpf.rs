//! Builds the capture object (nightly, build-std, bpf-linker) and the user-space binaries.

use crate::util::{cargo, root, run};

/// Where the agent's build script looks for the object (agent/build.rs).
pub fn object_path() -> std::path::PathBuf {
    root().join("target/bpfel-unknown-none/release/kreplay-capture")
}

pub fn build_ebpf() -> anyhow::Result<()> {
    run(
        "rustup",
        &[
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
            // -Cdebuginfo=2 feeds BTF; the verifier needs func_info (aya#1649).
            "--config",
            r#"target.bpfel-unknown-none.rustflags=["-Cdebuginfo=2","-Clink-arg=--btf","--cfg=bpf_target_arch=\"x86_64\""]"#,
        ],
        // Let rustup pick nightly even when a parent cargo exported its own toolchain.
        &[("RUSTUP_TOOLCHAIN", "nightly")],
    )
}

pub fn build_all(release: bool) -> anyhow::Result<()> {
    build_ebpf()?;
    let object = object_path();
    let object = object.to_string_lossy();
    let mut args = vec!["build", "--package", "kreplay-agent", "--package", "kreplay-proxy"];
    if release {
        args.push("--release");
    }
    cargo(&args, &[("KREPLAY_CAPTURE_OBJECT", &object)])
}
