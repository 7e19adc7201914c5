//! agnhost-compatible test commands for weft's embedded cluster.
//!
//! Implements the subset of Kubernetes' `agnhost` test image that network
//! tests use — `netexec`, `connect`, `serve-hostname` and `pause` — with the
//! same flags and answers, so upstream manifests run unchanged with
//! `weft agnhost …` as the container command.
//!
//! [`parse_args`] turns a command line into an [`Invocation`] without side
//! effects (fuzzed by `fuzz/`); [`main`] runs it.

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

/// A command line, parsed and validated but not yet run.
#[derive(Debug)]
pub enum Invocation {
    /// Print this text on stdout and exit 0 (`help`, `<cmd> --help`).
    Help(String),
    Netexec(netexec::NetexecOptions),
    Connect(connect::ConnectOptions),
    ServeHostname(serve_hostname::ServeHostnameOptions),
    /// `pause`: wait for SIGINT/SIGTERM, then sleep `delay` before exiting.
    Pause {
        delay: Duration,
    },
}

impl Invocation {
    /// The subcommand's name, as error messages prefix it.
    fn name(&self) -> &'static str {
        match self {
            Invocation::Help(_) => "help",
            Invocation::Netexec(_) => "netexec",
            Invocation::Connect(_) => "connect",
            Invocation::ServeHostname(_) => "serve-hostname",
            Invocation::Pause { .. } => "pause",
        }
    }
}

/// A refused command line: the text for stderr and the exit code.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejected {
    pub message: String,
    pub code: i32,
}

/// Parses `agnhost <args>` (args[0] is the subcommand) into what to run,
/// with upstream's usage texts and exit codes for what it refuses. Pure:
/// prints nothing, binds nothing.
pub fn parse_args(args: &[String]) -> Result<Invocation, Rejected> {
    let Some(cmd) = args.first() else {
        return Err(Rejected {
            message: format!("agnhost: missing subcommand\n\n{}", root_usage()),
            code: 2,
        });
    };
    if matches!(cmd.as_str(), "help" | "--help" | "-h") {
        return Ok(Invocation::Help(root_usage()));
    }
    let Some(specs) = specs_for(cmd) else {
        return Err(Rejected {
            message: format!("agnhost: unknown subcommand {cmd:?}\n\n{}", root_usage()),
            code: 2,
        });
    };
    let p = match flags::parse(&specs, &args[1..]) {
        Ok(p) => p,
        Err(FlagError::Help) => {
            return Ok(Invocation::Help(format!(
                "Usage: agnhost {cmd} [flags]\n\nFlags:\n{}",
                flags::usage(&specs)
            )))
        }
        Err(e) => {
            return Err(Rejected {
                message: format!(
                    "agnhost {cmd}: {e}\n\nUsage: agnhost {cmd} [flags]\n\nFlags:\n{}",
                    flags::usage(&specs)
                ),
                code: 2,
            })
        }
    };
    let invocation = match cmd.as_str() {
        "netexec" => netexec::NetexecOptions::from_flags(&p).map(Invocation::Netexec),
        "connect" => connect::ConnectOptions::from_flags(&p).map(Invocation::Connect),
        "serve-hostname" => {
            serve_hostname::ServeHostnameOptions::from_flags(&p).map(Invocation::ServeHostname)
        }
        _ => Ok(Invocation::Pause {
            delay: Duration::from_secs(p.int("delay-shutdown").max(0).unsigned_abs()),
        }),
    };
    invocation.map_err(|e| Rejected {
        message: format!("agnhost {cmd}: {e}\n"),
        code: e.exit_code(),
    })
}

async fn pause(delay: Duration) -> Result<i32, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    let mut term = signal(SignalKind::terminate()).map_err(Error::Io)?;
    println!("Paused");
    let code = tokio::select! {
        _ = int.recv() => 1,
        _ = term.recv() => 2,
    };
    if !delay.is_zero() {
        print!("Sleeping {} seconds before exit ...", delay.as_secs());
        let _ = std::io::stdout().flush();
        tokio::time::sleep(delay).await;
    }
    println!("exiting {code}");
    Ok(code)
}

async fn dispatch(invocation: Invocation) -> Result<i32, Error> {
    match invocation {
        Invocation::Help(text) => {
            print!("{text}");
            Ok(0)
        }
        Invocation::Netexec(opts) => netexec::run(opts).await,
        Invocation::Connect(opts) => {
            let outcome = connect::run(&opts).await;
            if let Some(msg) = outcome.message {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            Ok(outcome.code)
        }
        Invocation::ServeHostname(opts) => serve_hostname::run(opts).await,
        Invocation::Pause { delay } => pause(delay).await,
    }
}

fn run_blocking(invocation: Invocation) -> i32 {
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
    let cmd = invocation.name();
    let result = rt.block_on(dispatch(invocation));
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
    let invocation = match parse_args(&args) {
        Ok(Invocation::Help(text)) => {
            print!("{text}");
            return 0;
        }
        Ok(invocation) => invocation,
        Err(rejected) => {
            let _ = write!(std::io::stderr(), "{}", rejected.message);
            return rejected.code;
        }
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // block_on inside a runtime would panic: run on a plain thread.
        return std::thread::spawn(move || run_blocking(invocation))
            .join()
            .unwrap_or(1);
    }
    run_blocking(invocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn option_validation_errors_are_rejected_with_their_exit_code() {
        assert_eq!(
            parse_args(&args(&["serve-hostname", "--port=-5"])).unwrap_err(),
            Rejected {
                message: "agnhost serve-hostname: invalid --port=-5\n".into(),
                code: 2,
            }
        );
    }

    #[test]
    fn valid_command_lines_become_options() {
        match parse_args(&args(&["netexec", "--udp-port=-1", "--http-port", "81"])) {
            Ok(Invocation::Netexec(opts)) => {
                assert_eq!((opts.http_port, opts.udp_port), (81, None));
            }
            other => panic!("{other:?}"),
        }
    }
}
