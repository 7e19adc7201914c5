//! Standalone `agnhost` binary for manual testing: `cargo run --example agnhost -- netexec`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(weft_agnhost::main(args));
}
