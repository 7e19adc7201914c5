//! `agnhost serve-hostname`: serves the hostname over HTTP (default), raw
//! TCP and/or UDP on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::flags::{Parsed, Spec, Value};
use crate::http::{self, Handler, Request, Response};
use crate::net::{any_addr, bind_tcp, bind_udp, go_addr, hostname};
use crate::{log, Error};

/// How long upstream lingers after SIGTERM ("Awaiting pod deletion").
pub const TERM_LINGER: Duration = Duration::from_secs(60);

/// serve-hostname's flags.
pub fn specs() -> Vec<Spec> {
    vec![
        Spec::new("tcp", Value::Bool(false), "Serve raw over TCP."),
        Spec::new("udp", Value::Bool(false), "Serve raw over UDP."),
        Spec::new("http", Value::Bool(true), "Serve HTTP."),
        Spec::new(
            "close",
            Value::Bool(false),
            "Close connection per each HTTP request.",
        ),
        Spec::new("port", Value::Int(9376), "Port number."),
    ]
}

/// serve-hostname's configuration.
#[derive(Clone, Debug)]
pub struct ServeHostnameOptions {
    pub tcp: bool,
    pub udp: bool,
    pub http: bool,
    pub close: bool,
    pub port: u16,
}

impl ServeHostnameOptions {
    pub fn from_flags(p: &Parsed) -> Result<ServeHostnameOptions, Error> {
        if !p.positional.is_empty() {
            return Err(Error::Usage(format!(
                "serve-hostname accepts no arguments, received {:?}",
                p.positional
            )));
        }
        let port = u16::try_from(p.int("port"))
            .map_err(|_| Error::Usage(format!("invalid --port={}", p.int("port"))))?;
        Ok(ServeHostnameOptions {
            tcp: p.bool("tcp"),
            udp: p.bool("udp"),
            http: p.bool("http"),
            close: p.bool("close"),
            port,
        })
    }
}

/// A running serve-hostname.
pub struct ServeHostname {
    pub tcp_addr: Option<SocketAddr>,
    pub udp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ServeHostname {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ServeHostname {
    /// Starts the configured servers on `bind` (its port overrides
    /// `opts.port`; with port 0 UDP reuses the port TCP/HTTP got).
    pub async fn start(opts: &ServeHostnameOptions, bind: SocketAddr) -> Result<Self, Error> {
        if opts.http && (opts.tcp || opts.udp) {
            return Err(Error::Fatal(
                "Can't server TCP/UDP mode and HTTP mode at the same time".into(),
            ));
        }
        let name = hostname();
        let mut me = ServeHostname {
            tcp_addr: None,
            udp_addr: None,
            http_addr: None,
            tasks: Vec::new(),
        };
        let mut bind = bind;
        if opts.tcp {
            let l = bind_tcp(bind).map_err(|e| Error::Bind(format!("tcp {bind}"), e))?;
            let addr = l.local_addr().map_err(Error::Io)?;
            bind.set_port(addr.port());
            me.tcp_addr = Some(addr);
            me.tasks.push(tokio::spawn(tcp_server(l, name.clone())));
        }
        if opts.udp {
            let s = bind_udp(bind).map_err(|e| Error::Bind(format!("udp {bind}"), e))?;
            me.udp_addr = Some(s.local_addr().map_err(Error::Io)?);
            me.tasks.push(tokio::spawn(udp_server(s, name.clone())));
        }
        if opts.http {
            let l = bind_tcp(bind).map_err(|e| Error::Bind(format!("tcp {bind}"), e))?;
            me.http_addr = Some(l.local_addr().map_err(Error::Io)?);
            let close = opts.close;
            let handler: Handler = Arc::new(move |req: Request| {
                let name = name.clone();
                Box::pin(async move {
                    log(&format!("HTTP request from {}", req.remote_addr));
                    let mut r = Response::text(name);
                    r.close = close;
                    r
                })
            });
            me.tasks.push(tokio::spawn(http::serve(l, handler)));
        }
        Ok(me)
    }
}

async fn tcp_server(listener: TcpListener, name: String) {
    loop {
        match listener.accept().await {
            Ok((mut conn, peer)) => {
                log(&format!("TCP request from {}", go_addr(peer)));
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = conn.write_all(name.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
            Err(e) => {
                log(&format!("Error from Accept(): {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn udp_server(sock: UdpSocket, name: String) {
    let mut buf = [0u8; 16];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((_, peer)) => {
                log(&format!("UDP request from {}", go_addr(peer)));
                let _ = sock.send_to(name.as_bytes(), peer).await;
            }
            Err(e) => {
                log(&format!("Error from ReadFrom(): {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// `agnhost serve-hostname`: serves until SIGTERM, then lingers like upstream.
pub async fn run(opts: ServeHostnameOptions) -> Result<i32, Error> {
    let _server = ServeHostname::start(&opts, any_addr(opts.port)).await?;
    log(&format!("Serving on port {}.", opts.port));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Io)?;
    sigterm.recv().await;
    log("Shutting down after receiving signal: terminated.");
    log("Awaiting pod deletion.");
    tokio::time::sleep(TERM_LINGER).await;
    Ok(0)
}
