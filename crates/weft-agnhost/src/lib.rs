//! agnhost-compatible test commands for weft's embedded cluster.
//!
//! Implements the subset of Kubernetes' `agnhost` test image that network
//! tests use — `netexec`, `connect`, `serve-hostname` and `pause` — with the
//! same flags and answers, so upstream manifests run unchanged with
//! `weft agnhost …` as the container command.

pub mod connect;
pub mod flags;
pub mod gotime;
pub mod http;
pub mod net;
pub mod netexec;
pub mod serve_hostname;

use std::io::Write;
use std::time::Duration;

use flags::{FlagError, Spec, Value};

/// Errors that end a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A feature weft does not provide (exit 2).
    #[error("{0}")]
    Unsupported(String),
    /// A fatal runtime condition, like upstream's `log.Fatal` (exit 1).
    #[error("{0}")]
    Fatal(String),
    #[error("failed to create listener for {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Unsupported(_) => 2,
            Error::Fatal(_) | Error::Bind(..) | Error::Io(_) => 1,
        }
    }
}

/// Writes a log line to stderr in Go's `log` format.
pub fn log(msg: &str) {
    eprintln!("{} {}", gotime::log_timestamp(), msg);
}

/// The supported subcommands with their descriptions.
pub const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "netexec",
        "Creates HTTP, UDP and (optionally) SCTP servers with various endpoints",
    ),
    (
        "connect",
        "Attempts a TCP, UDP or SCTP connection and returns useful errors",
    ),
    ("serve-hostname", "Serves the hostname over HTTP/TCP/UDP"),
    ("pause", "Pauses until SIGINT/SIGTERM"),
];

fn root_usage() -> String {
    let mut s = String::from("Usage: agnhost <subcommand> [flags]\n\nSupported subcommands:\n");
    for (name, help) in SUBCOMMANDS {
        s.push_str(&format!("  {name:<16} {help}\n"));
    }
    s
}

fn pause_specs() -> Vec<Spec> {
    vec![Spec::new(
        "delay-shutdown",
        Value::Int(0),
        "Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.",
    )]
}

fn specs_for(cmd: &str) -> Option<Vec<Spec>> {
    match cmd {
        "netexec" => Some(netexec::specs()),
        "connect" => Some(connect::specs()),
        "serve-hostname" => Some(serve_hostname::specs()),
        "pause" => Some(pause_specs()),
        _ => None,
    }
}

async fn pause(p: flags::Parsed) -> Result<i32, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let delay = p.int("delay-shutdown").max(0) as u64;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    let mut term = signal(SignalKind::terminate()).map_err(Error::Io)?;
    println!("Paused");
    let code = tokio::select! {
        _ = int.recv() => 1,
        _ = term.recv() => 2,
    };
    if delay > 0 {
        print!("Sleeping {delay} seconds before exit ...");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(delay)).await;
    }
    println!("exiting {code}");
    Ok(code)
}

async fn dispatch(cmd: &str, p: flags::Parsed) -> Result<i32, Error> {
    match cmd {
        "netexec" => netexec::run(netexec::NetexecOptions::from_flags(&p)?).await,
        "connect" => {
            let opts = connect::ConnectOptions::from_flags(&p)?;
            let outcome = connect::run(&opts).await;
            if let Some(msg) = outcome.message {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            Ok(outcome.code)
        }
        "serve-hostname" => {
            serve_hostname::run(serve_hostname::ServeHostnameOptions::from_flags(&p)?).await
        }
        "pause" => pause(p).await,
        other => Err(Error::Usage(format!("unknown command {other:?}"))),
    }
}

fn run_blocking(cmd: String, parsed: flags::Parsed) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(&format!("agnhost: cannot start runtime: {e}"));
            return 1;
        }
    };
    let result = rt.block_on(dispatch(&cmd, parsed));
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agnhost {cmd}: {e}");
            e.exit_code()
        }
    }
}

/// Runs `agnhost <args>` (args[0] is the subcommand: netexec, connect,
/// serve-hostname, pause). Returns the process exit code. Blocks (builds its
/// own tokio runtime; safe to call from inside another runtime).
pub fn main(args: Vec<String>) -> i32 {
    gotime::init_clock();
    let mut stderr = std::io::stderr();
    let Some(cmd) = args.first().cloned() else {
        let _ = write!(stderr, "agnhost: missing subcommand\n\n{}", root_usage());
        return 2;
    };
    if matches!(cmd.as_str(), "help" | "--help" | "-h") {
        print!("{}", root_usage());
        return 0;
    }
    let Some(specs) = specs_for(&cmd) else {
        let _ = write!(
            stderr,
            "agnhost: unknown subcommand {cmd:?}\n\n{}",
            root_usage()
        );
        return 2;
    };
    let parsed = match flags::parse(&specs, &args[1..]) {
        Ok(p) => p,
        Err(FlagError::Help) => {
            print!(
                "Usage: agnhost {cmd} [flags]\n\nFlags:\n{}",
                flags::usage(&specs)
            );
            return 0;
        }
        Err(e) => {
            let _ = write!(
                stderr,
                "agnhost {cmd}: {e}\n\nUsage: agnhost {cmd} [flags]\n\nFlags:\n{}",
                flags::usage(&specs)
            );
            return 2;
        }
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // block_on inside a runtime would panic: run on a plain thread.
        return std::thread::spawn(move || run_blocking(cmd, parsed))
            .join()
            .unwrap_or(1);
    }
    run_blocking(cmd, parsed)
}
