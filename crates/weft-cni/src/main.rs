//! `weft-cni`: reads the CNI environment and the network config on stdin,
//! runs the verb, and prints the result or the spec's error object.

use std::io::{Read, Write};
use std::process::ExitCode;

use weft_cni::spec::{self, CniError};
use weft_cni::{config, invocation, plugin};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Errors are versioned like the request when the request named a version we speak.
    let version = config::peek_version(&stdin)
        .filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::LATEST.to_string());

    let outcome = read
        .map_err(|e| {
            CniError::new(
                spec::code::IO_FAILURE,
                format!("read network config from stdin: {e}"),
            )
        })
        .and_then(|_| invocation::from_env(|k| std::env::var(k).ok()))
        .and_then(|inv| plugin::run(&inv, &stdin));

    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(Some(answer)) => {
            let _ = writeln!(stdout, "{answer}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(stdout, "{}", err.to_json(&version));
            eprintln!("weft-cni: {err}");
            ExitCode::FAILURE
        }
    }
}
