//! `agnhost connect <host:port>`: tries a TCP, UDP or SCTP connection and
//! reports failures with the fixed prefixes tests check for: UNKNOWN,
//! TIMEOUT, DNS, REFUSED, OTHER. Exit 0 on success, 1 on failure.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

use crate::flags::{Parsed, Spec, Value};
use crate::net::{
    errno_text, parse_port, resolve, sctp_exchange, sctp_unsupported, split_host_port,
};
use crate::Error;

/// connect's flags.
pub fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "timeout",
            Value::Dur(Duration::ZERO),
            "Maximum time before returning an error",
        ),
        Spec::new(
            "protocol",
            Value::Str("tcp".into()),
            "The protocol to use to perform the connection, can be tcp, udp or sctp",
        ),
        Spec::new(
            "udp-data",
            Value::Str("hostname".into()),
            "The UDP payload send to the server",
        ),
        Spec::new(
            "sctp-data",
            Value::Str("hostname".into()),
            "The SCTP payload send to the server",
        ),
    ]
}

/// The connection protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// connect's configuration.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub dest: String,
    /// Zero means no timeout (as upstream).
    pub timeout: Duration,
    pub protocol: Protocol,
    pub udp_data: String,
    pub sctp_data: String,
}

impl ConnectOptions {
    pub fn from_flags(p: &Parsed) -> Result<ConnectOptions, Error> {
        let dest = match p.positional.as_slice() {
            [d] => d.clone(),
            other => {
                return Err(Error::Usage(format!(
                    "connect accepts 1 arg(s) (host:port), received {}",
                    other.len()
                )))
            }
        };
        let protocol = match p.string("protocol").as_str() {
            "" | "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            other => return Err(Error::Usage(format!("Unsupported protocol {other}"))),
        };
        Ok(ConnectOptions {
            dest,
            timeout: p.duration("timeout"),
            protocol,
            udp_data: p.string("udp-data"),
            sctp_data: p.string("sctp-data"),
        })
    }
}

/// The outcome of a connect attempt: the exit code and the stderr message.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub message: Option<String>,
}

fn fail(message: String) -> Outcome {
    Outcome {
        code: 1,
        message: Some(message),
    }
}

const OK: Outcome = Outcome {
    code: 0,
    message: None,
};

async fn resolve_dest(dest: &str, network: &str) -> Result<Vec<SocketAddr>, Outcome> {
    let (host, port) = split_host_port(dest).map_err(|e| fail(format!("UNKNOWN: {e}")))?;
    let port = parse_port(network, &port).map_err(|e| fail(format!("DNS: address {dest}: {e}")))?;
    resolve(&host, port)
        .await
        .map_err(|e| fail(format!("DNS: lookup {host}: {}", errno_text(&e))))
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    if timeout.is_zero() {
        Some(fut.await)
    } else {
        tokio::time::timeout(timeout, fut).await.ok()
    }
}

async fn connect_tcp(opts: &ConnectOptions) -> Outcome {
    let addrs = match resolve_dest(&opts.dest, "tcp").await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let attempt = async {
        let mut first_err: Option<io::Error> = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| io::Error::other("no addresses")))
    };
    match with_timeout(opts.timeout, attempt).await {
        None => fail("TIMEOUT".into()),
        Some(Ok(())) => OK,
        Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => fail("REFUSED".into()),
        Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => fail("TIMEOUT".into()),
        Some(Err(e)) => fail(format!(
            "OTHER: dial tcp {}: connect: {}",
            opts.dest,
            errno_text(&e)
        )),
    }
}

async fn connect_udp(opts: &ConnectOptions) -> Outcome {
    let addr = match resolve_dest(&opts.dest, "udp").await {
        Ok(a) => a[0],
        Err(o) => return o,
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return fail(format!("OTHER: dial udp {addr}: {}", errno_text(&e))),
    };
    if let Err(e) = sock.connect(addr).await {
        return fail(format!("OTHER: dial udp {addr}: {}", errno_text(&e)));
    }
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let classify = |e: io::Error, op: &str| {
        let text = format!("{op} udp {local}->{addr}: {op}: {}", errno_text(&e));
        if e.kind() == io::ErrorKind::ConnectionRefused {
            fail(format!("REFUSED: {text}"))
        } else {
            fail(format!("UNKNOWN: {text}"))
        }
    };
    let timeout_text = |op: &str| fail(format!("TIMEOUT: {op} udp {local}->{addr}: i/o timeout"));
    let payload = format!("{}\n", opts.udp_data);
    match with_timeout(opts.timeout, sock.send(payload.as_bytes())).await {
        None => return timeout_text("write"),
        Some(Err(e)) => return classify(e, "write"),
        Some(Ok(_)) => {}
    }
    let mut buf = vec![0u8; 1024];
    match with_timeout(opts.timeout, sock.recv(&mut buf)).await {
        None => timeout_text("read"),
        Some(Err(e)) => classify(e, "read"),
        Some(Ok(0)) => fail(
            "OTHER: No data received from the server. Cannot guarantee the server received the request."
                .into(),
        ),
        Some(Ok(_)) => OK,
    }
}

async fn connect_sctp(opts: &ConnectOptions) -> Outcome {
    let addr = match resolve_dest(&opts.dest, "sctp").await {
        Ok(a) => a[0],
        Err(o) => return o,
    };
    let data = format!("{}\n", opts.sctp_data).into_bytes();
    // The blocking exchange bounds itself too, so its thread cannot linger forever.
    let inner_timeout = if opts.timeout.is_zero() {
        Duration::from_secs(60)
    } else {
        opts.timeout
    };
    let job = tokio::task::spawn_blocking(move || sctp_exchange(addr, &data, inner_timeout, 1024));
    match with_timeout(opts.timeout, job).await {
        None => fail("TIMEOUT".into()),
        Some(Err(e)) => fail(format!("OTHER: {e}")),
        Some(Ok(Ok(_))) => OK,
        Some(Ok(Err((_, e)))) if sctp_unsupported(&e) => Outcome {
            code: 2,
            message: Some(format!(
                "OTHER: sctp not supported by this kernel: {}",
                errno_text(&e)
            )),
        },
        Some(Ok(Err((_, e)))) if e.kind() == io::ErrorKind::TimedOut => fail("TIMEOUT".into()),
        Some(Ok(Err((_, e)))) if e.kind() == io::ErrorKind::WouldBlock => fail("TIMEOUT".into()),
        Some(Ok(Err((_, e)))) => fail(format!("OTHER: {}", errno_text(&e))),
    }
}

/// Runs one connect attempt.
pub async fn run(opts: &ConnectOptions) -> Outcome {
    match opts.protocol {
        Protocol::Tcp => connect_tcp(opts).await,
        Protocol::Udp => connect_udp(opts).await,
        Protocol::Sctp => connect_sctp(opts).await,
    }
}
