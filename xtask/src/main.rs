//! `cargo xtask`: the one place that knows how to install the toolchain pieces, build the eBPF
//! object, run the tests, the demo and the benchmarks.

mod bench;
mod demo;
mod ebpf;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "kreplay developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what builds and tests need (idempotent: skips what is present).
    Setup,
    /// Build the eBPF capture object, then the agent and proxy binaries.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, and run every test (unit, capture, storage, end-to-end). Needs root.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Set up, build, start the proxy in local mode with an example deployment, record real
    /// requests and print the stored test cases.
    Demo,
    /// Benchmarks that print ratios side by side.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::run(),
        Command::Build { release } => ebpf::build_all(release),
        Command::Test { cargo_args } => {
            setup::run()?;
            ebpf::build_all(false)?;
            let mut args = vec!["test", "--workspace"];
            args.extend(cargo_args.iter().map(String::as_str));
            util::cargo(&args, &[])
        }
        Command::Demo => {
            setup::run()?;
            ebpf::build_all(true)?;
            demo::run()
        }
        Command::Bench { which } => {
            setup::run()?;
            ebpf::build_all(true)?;
            bench::run(which)
        }
    }
}
