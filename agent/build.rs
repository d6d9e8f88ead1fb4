//! Embeds the capture object built by `cargo xtask build` (see xtask/src/ebpf.rs).
//!
//! The eBPF crate needs nightly, rust-src and bpf-linker, so it is not built from here: a plain
//! `cargo build` of the agent without the object still compiles (so `cargo clippy` and unit tests
//! work on any machine) but the agent then refuses to start capture with a clear error.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kreplay_capture_object)");
    println!("cargo:rerun-if-env-changed=KREPLAY_CAPTURE_OBJECT");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let default = manifest.join("../target/bpfel-unknown-none/release/kreplay-capture");
    let object = std::env::var_os("KREPLAY_CAPTURE_OBJECT")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-changed={}", object.display());
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("kreplay-capture");
    match std::fs::copy(&object, &out) {
        Ok(_) => println!("cargo:rustc-cfg=kreplay_capture_object"),
        Err(_) => {
            println!(
                "cargo:warning=capture object {} not found: run `cargo xtask build` first",
                object.display()
            );
            if let Err(e) = std::fs::write(&out, b"") {
                println!("cargo:warning=cannot write {}: {e}", out.display());
            }
        }
    }
}
