//! `weft-pod-init pod-init …`: the `weft pod-init` helper on its own, so
//! this crate's sandbox tests run pods without building the whole `weft`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    PodInit(weft_node::podinit::PodInitArgs),
}

fn main() -> std::process::ExitCode {
    let Top::PodInit(args) = Cli::parse().command;
    std::process::ExitCode::from(u8::try_from(weft_node::podinit::main(args)).unwrap_or(1))
}
