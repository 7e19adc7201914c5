//! Fuzzes agnhost's command-line parsing: `weft_agnhost::parse_args` (the
//! pflag-style parser, every subcommand's flag specs and their validation
//! into options, Go durations, address lists) must refuse or accept any
//! argument vector without panicking.
//!
//! Input: the argument vector, one argument per line (a final newline is
//! ignored; invalid UTF-8 is replaced, as `std::env::args_os` lossy would).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_agnhost::{parse_args, Invocation};

fuzz_target!(|data: &[u8]| {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let args: Vec<String> = data
        .split(|&b| b == b'\n')
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    match parse_args(&args) {
        Ok(Invocation::Netexec(opts)) => {
            // Bind addresses are derived purely from the options.
            let _ = opts.binds();
        }
        Ok(_) => {}
        Err(rejected) => {
            assert!(
                matches!(rejected.code, 1 | 2),
                "exit code {} for {args:?}",
                rejected.code
            );
            assert!(!rejected.message.is_empty(), "empty message for {args:?}");
        }
    }
});
