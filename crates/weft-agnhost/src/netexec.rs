//! `agnhost netexec`: HTTP, UDP and (optionally) SCTP servers with the
//! endpoints Kubernetes network tests use.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::flags::{Parsed, Spec, Value};
use crate::gotime::{format_duration, now_go, parse_duration};
use crate::http::{self, html_escape, parse_query, Handler, Request, Response};
use crate::net::{
    any_addr, bind_sctp, bind_tcp, bind_udp, errno_text, go_addr, hostname, parse_port, resolve,
    sctp_exchange, SctpStage,
};
use crate::{log, Error};

/// Per-try timeout of `/dial` (upstream: 5s client timeout / read deadline).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on `/dial?tries=`.
pub const MAX_TRIES: i64 = 1000;

/// netexec's flags.
pub fn specs() -> Vec<Spec> {
    vec![
        Spec::new("http-port", Value::Int(8080), "HTTP Listen Port"),
        Spec::new("udp-port", Value::Int(8081), "UDP Listen Port (-1 disables)"),
        Spec::new("sctp-port", Value::Int(-1), "SCTP Listen Port (-1 disables)"),
        Spec::new(
            "http-override",
            Value::Str(String::new()),
            "Override the HTTP handler to always respond as if it were a GET with this path & params",
        ),
        Spec::new(
            "udp-listen-addresses",
            Value::Str(String::new()),
            "A comma separated list of ip addresses the udp servers listen from",
        ),
        Spec::new(
            "delay-shutdown",
            Value::Int(0),
            "Number of seconds to delay shutdown when receiving SIGTERM.",
        ),
        Spec::new(
            "tls-cert-file",
            Value::Str(String::new()),
            "HTTPS certificate (not supported by weft; must be empty)",
        ),
        Spec::new(
            "tls-private-key-file",
            Value::Str(String::new()),
            "HTTPS private key (not supported by weft; must be empty)",
        ),
        Spec::new(
            "enable-shell",
            Value::Bool(false),
            "weft: enable the /shell endpoint (runs commands on the node; off by default)",
        ),
        Spec::new(
            "shell-path",
            Value::Str("/bin/sh".into()),
            "weft: the shell /shell runs commands with",
        ),
    ]
}

/// netexec's configuration.
#[derive(Clone, Debug)]
pub struct NetexecOptions {
    /// HTTP port (bound on all addresses by the CLI).
    pub http_port: u16,
    /// UDP port; None disables the UDP server.
    pub udp_port: Option<u16>,
    /// SCTP port; None (the default) disables the SCTP server.
    pub sctp_port: Option<u16>,
    /// Serve every request as a GET of this path and query.
    pub http_override: String,
    /// UDP listen addresses; empty means all addresses.
    pub udp_listen_addresses: Vec<IpAddr>,
    /// Delay between SIGTERM and exit.
    pub delay_shutdown: Duration,
    /// Whether `/shell` runs commands (upstream always does; weft runs pods as
    /// host processes, so it is opt-in).
    pub enable_shell: bool,
    pub shell_path: String,
}

impl Default for NetexecOptions {
    fn default() -> Self {
        NetexecOptions {
            http_port: 8080,
            udp_port: Some(8081),
            sctp_port: None,
            http_override: String::new(),
            udp_listen_addresses: Vec::new(),
            delay_shutdown: Duration::ZERO,
            enable_shell: false,
            shell_path: "/bin/sh".into(),
        }
    }
}

fn port_flag(p: &Parsed, name: &str) -> Result<Option<u16>, Error> {
    let v = p.int(name);
    if v == -1 {
        return Ok(None);
    }
    u16::try_from(v)
        .map(Some)
        .map_err(|_| Error::Usage(format!("invalid --{name}={v}: must be -1 or 0-65535")))
}

impl NetexecOptions {
    /// Builds options from parsed flags.
    pub fn from_flags(p: &Parsed) -> Result<NetexecOptions, Error> {
        if !p.positional.is_empty() {
            return Err(Error::Usage(format!(
                "netexec accepts no arguments, received {:?}",
                p.positional
            )));
        }
        if !p.string("tls-cert-file").is_empty() || !p.string("tls-private-key-file").is_empty() {
            return Err(Error::Unsupported(
                "netexec over HTTPS (--tls-cert-file) is not supported".into(),
            ));
        }
        let http_port = port_flag(p, "http-port")?
            .ok_or_else(|| Error::Usage("invalid --http-port=-1".into()))?;
        let mut udp_listen_addresses = Vec::new();
        let list = p.string("udp-listen-addresses");
        if !list.is_empty() {
            for a in list.split(',') {
                let ip: IpAddr = a
                    .trim()
                    .parse()
                    .map_err(|_| Error::Usage(format!("parseAddress: invalid address {a}")))?;
                if !udp_listen_addresses.contains(&ip) {
                    udp_listen_addresses.push(ip);
                }
            }
        }
        let delay = p.int("delay-shutdown").max(0) as u64;
        Ok(NetexecOptions {
            http_port,
            udp_port: port_flag(p, "udp-port")?,
            sctp_port: port_flag(p, "sctp-port")?,
            http_override: p.string("http-override"),
            udp_listen_addresses,
            delay_shutdown: Duration::from_secs(delay),
            enable_shell: p.bool("enable-shell"),
            shell_path: p.string("shell-path"),
        })
    }

    /// The addresses the CLI binds: HTTP on `[::]` (dual-stack, falling back
    /// to 0.0.0.0), UDP on each listen address or `[::]`, SCTP on `[::]`.
    pub fn binds(&self) -> Binds {
        let udp = match self.udp_port {
            None => Vec::new(),
            Some(port) if self.udp_listen_addresses.is_empty() => vec![any_addr(port)],
            Some(port) => self
                .udp_listen_addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect(),
        };
        Binds {
            http: vec![any_addr(self.http_port)],
            udp,
            sctp: self.sctp_port.map(any_addr).into_iter().collect(),
        }
    }
}

/// Where the servers listen.
#[derive(Clone, Debug, Default)]
pub struct Binds {
    pub http: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub sctp: Vec<SocketAddr>,
}

struct State {
    opts: NetexecOptions,
    /// Set once the UDP/SCTP servers run (upstream's serverReady).
    ready: AtomicBool,
    /// Set on SIGTERM: /readyz answers 503.
    terminating: AtomicBool,
    exit: watch::Sender<Option<i32>>,
}

/// A running netexec.
pub struct Netexec {
    http_addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    sctp_addrs: Vec<SocketAddr>,
    state: Arc<State>,
    exit: watch::Receiver<Option<i32>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Netexec {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Netexec {
    /// Binds every listener in `binds` and starts serving. Must be called
    /// inside a tokio runtime.
    pub async fn start(opts: NetexecOptions, binds: Binds) -> Result<Netexec, Error> {
        let (exit_tx, exit_rx) = watch::channel(None);
        let state = Arc::new(State {
            opts,
            ready: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            exit: exit_tx,
        });
        let mut http_listeners = Vec::new();
        for addr in &binds.http {
            let l = bind_tcp(*addr).map_err(|e| Error::Bind(format!("tcp {addr}"), e))?;
            http_listeners.push(l);
        }
        let mut udp_sockets = Vec::new();
        for addr in &binds.udp {
            let s = bind_udp(*addr).map_err(|e| Error::Bind(format!("udp {addr}"), e))?;
            udp_sockets.push(s);
        }
        let mut sctp_listeners = Vec::new();
        for addr in &binds.sctp {
            let l = bind_sctp(*addr).map_err(|e| Error::Bind(format!("sctp {addr}"), e))?;
            sctp_listeners.push(l);
        }
        let mut me = Netexec {
            http_addrs: Vec::new(),
            udp_addrs: Vec::new(),
            sctp_addrs: Vec::new(),
            state: state.clone(),
            exit: exit_rx,
            tasks: Vec::new(),
        };
        for s in udp_sockets {
            let addr = s.local_addr().map_err(Error::Io)?;
            log(&format!("Started UDP server on port {addr}"));
            me.udp_addrs.push(addr);
            me.tasks.push(tokio::spawn(udp_server(s)));
        }
        for l in sctp_listeners {
            let addr = l.local_addr().map_err(Error::Io)?;
            log(&format!("Started SCTP server on {addr}"));
            me.sctp_addrs.push(addr);
            me.tasks.push(tokio::spawn(sctp_server(l)));
        }
        // Upstream reports ready once a UDP/SCTP server runs; with neither
        // configured it would never be ready, which no test relies on.
        state.ready.store(true, Ordering::SeqCst);
        for l in http_listeners {
            let addr = l.local_addr().map_err(Error::Io)?;
            log(&format!("Started HTTP server on port {}", addr.port()));
            me.http_addrs.push(addr);
            me.tasks.push(tokio::spawn(http_server(l, state.clone())));
        }
        Ok(me)
    }

    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    pub fn sctp_addrs(&self) -> &[SocketAddr] {
        &self.sctp_addrs
    }

    /// Marks the server as terminating (SIGTERM): /readyz answers 503.
    pub fn begin_termination(&self) {
        self.state.terminating.store(true, Ordering::SeqCst);
    }

    /// Waits until `/exit` or `/shutdown` asks the process to exit; returns the code.
    pub async fn wait_exit(&mut self) -> i32 {
        loop {
            if let Some(code) = *self.exit.borrow_and_update() {
                return code;
            }
            if self.exit.changed().await.is_err() {
                return 0;
            }
        }
    }
}

async fn http_server(listener: TcpListener, state: Arc<State>) {
    let handler: Handler = Arc::new(move |req: Request| {
        let state = state.clone();
        Box::pin(async move { handle(state, req).await })
    });
    http::serve(listener, handler).await;
}

/// Answers a UDP/SCTP command; None for unknown or empty commands.
fn answer_datagram(data: &[u8], client: &str, proto: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data).trim().to_lowercase();
    if text == "hostname" {
        log(&format!("Sending {proto} hostName response"));
        Some(hostname())
    } else if let Some(rest) = text.strip_prefix("echo ") {
        log(&format!("Echoing {rest} to {proto} client {client}"));
        Some(rest.to_string())
    } else if text == "clientip" {
        log(&format!("Sending clientip back to {proto} client {client}"));
        Some(client.to_string())
    } else {
        if !text.is_empty() {
            log(&format!(
                "Unknown {proto} command received from {client}: {text}"
            ));
        }
        None
    }
}

async fn udp_server(sock: UdpSocket) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // ICMP errors from earlier replies surface here; keep serving.
                log(&format!("UDP receive error: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(answer) = answer_datagram(&buf[..n], &go_addr(peer), "udp") {
            if let Err(e) = sock.send_to(answer.as_bytes(), peer).await {
                log(&format!(
                    "failed to write to UDP client {}: {e}",
                    go_addr(peer)
                ));
            }
        }
    }
}

async fn sctp_server(listener: TcpListener) {
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                log(&format!("failed accepting SCTP connections: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await;
            if let Ok(Ok(n)) = read {
                if let Some(answer) = answer_datagram(&buf[..n], &go_addr(peer), "SCTP") {
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
            let _ = conn.shutdown().await;
        });
    }
}

/// Serializes like Go's `json.Marshal` (which escapes <, > and & in strings).
pub fn go_json<T: serde::Serialize>(v: &T) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

async fn handle(state: Arc<State>, req: Request) -> Response {
    let req = if state.opts.http_override.is_empty() {
        req
    } else {
        Request::synthetic(&state.opts.http_override, req.remote_addr)
    };
    let clean = http::clean_path(&req.path);
    if clean != req.path {
        // Go's ServeMux redirects unclean paths ("//hostname") to their clean form.
        let location = if req.query.is_empty() {
            clean
        } else {
            format!("{clean}?{}", req.query)
        };
        let mut r = Response::status_text(301, "");
        r.headers.push(("Location".into(), location.clone()));
        if req.method == "GET" || req.method == "HEAD" {
            r.headers
                .push(("Content-Type".into(), "text/html; charset=utf-8".into()));
            r.body = format!(
                "<a href=\"{}\">Moved Permanently</a>.\n\n",
                html_escape(&location)
            )
            .into_bytes();
        }
        return r;
    }
    match req.path.as_str() {
        "/clientip" => {
            log("GET /clientip");
            Response::text(req.remote_addr.clone())
        }
        "/header" => header_handler(&req),
        "/dial" => dial_handler(&req).await,
        "/echo" => echo_handler(&req),
        "/exit" => exit_handler(&state, &req).await,
        "/healthz" => {
            log("GET /healthz");
            if state.ready.load(Ordering::SeqCst) {
                Response::status_text(200, "")
            } else {
                Response::status_text(412, "")
            }
        }
        "/readyz" => {
            log("GET /readyz");
            if state.terminating.load(Ordering::SeqCst) {
                Response::status_text(503, "shutting down")
            } else if state.ready.load(Ordering::SeqCst) {
                Response::text("ok")
            } else {
                Response::status_text(412, "")
            }
        }
        "/hostname" | "/hostName" => {
            log(&format!("GET {}", req.path));
            Response::text(hostname())
        }
        "/redirect" => redirect_handler(&req),
        "/shell" => shell_handler(&state, &req).await,
        "/upload" => {
            log("GET /upload");
            let mut m = BTreeMap::new();
            m.insert("error", "Unable to upload file.");
            Response::text(go_json(&m))
        }
        "/shutdown" => {
            log("GET /shutdown");
            let tx = state.exit.clone();
            let mut r = Response::status_text(200, "");
            r.close = true;
            r.after = Some(Box::new(move || {
                let _ = tx.send(Some(0));
            }));
            r
        }
        _ => {
            log("GET /");
            Response::text(format!("NOW: {}", now_go()))
        }
    }
}

fn echo_handler(req: &Request) -> Response {
    let msg = req.form_value("msg");
    let code = req.form_value("code");
    log(&format!("GET /echo?msg={msg}&code={code}"));
    if code.is_empty() {
        return Response::text(msg);
    }
    match code.parse::<u16>() {
        Ok(c) if (100..=999).contains(&c) => Response::status_text(c, msg),
        Ok(_) => Response::error(500, "invalid status code"),
        Err(_) => Response::text(format!(
            "argument 'code' must be an integer or empty, got {code:?}\n"
        )),
    }
}

/// Canonical MIME header key, like Go's `textproto.CanonicalMIMEHeaderKey`.
fn canonical_header(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        upper = c == '-';
    }
    out
}

fn header_handler(req: &Request) -> Response {
    let key = req.form_value("key");
    if !key.is_empty() {
        log(&format!("GET /header?key={key}"));
        return Response::text(req.header(&key).unwrap_or("").to_string());
    }
    log("GET /header");
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("host") {
            continue;
        }
        map.entry(canonical_header(k)).or_default().push(v.clone());
    }
    Response::text(go_json(&map))
}

async fn exit_handler(state: &State, req: &Request) -> Response {
    let wait_s = req.form_value("wait");
    let timeout_s = req.form_value("timeout");
    let code_s = req.form_value("code");
    log(&format!(
        "GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}"
    ));
    let timeout = match parse_duration(&timeout_s) {
        Ok(d) => d,
        Err(_) if timeout_s.is_empty() => Duration::ZERO,
        Err(_) => {
            return Response::text(format!(
                "argument 'timeout' must be a valid golang duration or empty, got {timeout_s:?}\n"
            ))
        }
    };
    let wait = match parse_duration(&wait_s) {
        Ok(d) => d,
        Err(_) if wait_s.is_empty() => Duration::ZERO,
        Err(_) => {
            return Response::text(format!(
                "argument 'wait' must be a valid golang duration or empty, got {wait_s:?}\n"
            ))
        }
    };
    let code = match code_s.parse::<i32>() {
        Ok(c) => c,
        Err(_) if code_s.is_empty() => 0,
        Err(_) => {
            return Response::text(format!(
                "argument 'code' must be an integer [0-127] or empty, got {code_s:?}\n"
            ))
        }
    };
    log(&format!(
        "Will begin shutdown in {}, allowing {} for connections to close, then will exit with {code}",
        format_duration(wait),
        format_duration(timeout)
    ));
    tokio::time::sleep(wait).await;
    let tx = state.exit.clone();
    let mut r = Response::status_text(200, "");
    r.close = true;
    r.after = Some(Box::new(move || {
        let _ = tx.send(Some(code));
    }));
    r
}

fn redirect_handler(req: &Request) -> Response {
    let location = req.form_value("location");
    let code_s = req.form_value("code");
    log(&format!(
        "{} /redirect?msg={location}&code={code_s}",
        req.method
    ));
    let mut code = 302;
    if !code_s.is_empty() {
        match code_s.parse::<u16>() {
            Ok(c) if (100..=999).contains(&c) => code = c,
            Ok(_) => return Response::error(500, "invalid status code"),
            Err(_) => {
                return Response::text(format!(
                    "argument 'code' must be an integer or empty, got {code_s:?}\n"
                ))
            }
        }
    }
    // Like http.Redirect: relative locations resolve against the request path.
    let has_scheme = location
        .split_once(':')
        .map(|(s, _)| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .unwrap_or(false);
    let location = if has_scheme || location.starts_with('/') {
        location
    } else {
        let dir = match req.path.rfind('/') {
            Some(pos) => &req.path[..=pos],
            None => "/",
        };
        format!("{dir}{location}")
    };
    let mut r = Response::status_text(code, "");
    r.headers.push(("Location".into(), location.clone()));
    if matches!(req.method.as_str(), "GET" | "HEAD") {
        r.headers
            .push(("Content-Type".into(), "text/html; charset=utf-8".into()));
        r.body = format!(
            "<a href=\"{}\">{}</a>.\n\n",
            html_escape(&location),
            http::status_text(code)
        )
        .into_bytes();
    }
    r
}

async fn shell_handler(state: &State, req: &Request) -> Response {
    let mut cmd = req.form_value("shellCommand");
    if cmd.is_empty() {
        cmd = req.form_value("cmd");
    }
    log(&format!("GET /shell?cmd={cmd}"));
    if !state.opts.enable_shell {
        return Response::error(
            403,
            "the /shell endpoint is disabled in weft (start netexec with --enable-shell)",
        );
    }
    let shell = state.opts.shell_path.clone();
    let result = tokio::task::spawn_blocking(move || run_shell(&shell, &cmd)).await;
    let (output, error) = match result {
        Ok(v) => v,
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut m = BTreeMap::new();
    if !output.is_empty() {
        m.insert("output", String::from_utf8_lossy(&output).into_owned());
    }
    if let Some(e) = error {
        m.insert("error", e);
    }
    Response::text(go_json(&m))
}

/// Runs `shell -c cmd` with stdout and stderr combined.
fn run_shell(shell: &str, cmd: &str) -> (Vec<u8>, Option<String>) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let spawn = || -> std::io::Result<(Vec<u8>, std::process::ExitStatus)> {
        let (mut reader, writer) = std::io::pipe()?;
        let mut child = std::process::Command::new(shell)
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        let status = child.wait()?;
        Ok((out, status))
    };
    match spawn() {
        Ok((out, status)) => {
            let err = if status.success() {
                None
            } else if let Some(code) = status.code() {
                Some(format!("exit status {code}"))
            } else {
                Some(format!("signal: {}", status.signal().unwrap_or(0)))
            };
            (out, err)
        }
        Err(e) => (
            Vec::new(),
            Some(format!("fork/exec {shell}: {}", errno_text(&e))),
        ),
    }
}

#[derive(Clone, Copy)]
enum DialProto {
    Http,
    Udp,
    Sctp,
}

async fn dial_handler(req: &Request) -> Response {
    let q = parse_query(&req.query);
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let host = get("host");
    let port = get("port");
    let request = get("request");
    let protocol = get("protocol");
    let tries_s = get("tries");
    log(&format!(
        "GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_s}"
    ));
    let mut tries: i64 = 1;
    if !tries_s.is_empty() {
        match tries_s.parse::<i64>() {
            Ok(t) => tries = t.min(MAX_TRIES),
            Err(_) => {
                return Response::error(
                    400,
                    &format!(
                    "tries parameter is invalid. strconv.Atoi: parsing {tries_s:?}: invalid syntax"
                ),
                )
            }
        }
    }
    if request.is_empty() {
        return Response::error(400, "request parameter not specified. <nil>");
    }
    let proto = match protocol.to_lowercase().as_str() {
        "" | "http" => DialProto::Http,
        "udp" => DialProto::Udp,
        "sctp" => DialProto::Sctp,
        _ => return Response::error(400, &format!("unsupported protocol. {protocol}")),
    };
    let network = match proto {
        DialProto::Http => "tcp",
        DialProto::Udp => "udp",
        DialProto::Sctp => "sctp",
    };
    let addr = match parse_port(network, &port) {
        Ok(p) => match resolve(&host, p).await {
            Ok(addrs) => addrs[0],
            Err(e) => {
                return Response::error(
                    400,
                    &format!(
                        "host and/or port param are invalid. lookup {host}: {}",
                        errno_text(&e)
                    ),
                )
            }
        },
        Err(e) => return Response::error(400, &format!("host and/or port param are invalid. {e}")),
    };
    let mut errors = Vec::new();
    let mut responses = Vec::new();
    let mut last = String::new();
    for _ in 0..tries.max(0) {
        let result = match proto {
            DialProto::Http => dial_http(&request, addr).await,
            DialProto::Udp => dial_udp(&request, addr).await,
            DialProto::Sctp => dial_sctp(&request, addr).await,
        };
        match result {
            Ok(r) => {
                last = r.clone();
                responses.push(r);
            }
            Err(e) => {
                last.clear();
                errors.push(e);
            }
        }
    }
    let mut output: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // Upstream only reports responses when the last try returned a non-empty one.
    if !last.is_empty() {
        output.insert("responses", responses);
    }
    if !errors.is_empty() {
        output.insert("errors", errors);
    }
    Response::text(go_json(&output))
}

async fn dial_http(request: &str, addr: SocketAddr) -> Result<String, String> {
    let url = format!("http://{addr}/{request}");
    match http::get(&url, DIAL_TIMEOUT).await {
        Ok((_, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp dial failed. err:dial udp {addr}: {}", errno_text(&e)))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp dial failed. err:dial udp {addr}: {}", errno_text(&e)))?;
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    sock.send(request.as_bytes()).await.map_err(|e| {
        format!(
            "udp connection write failed. err:write udp {local}->{addr}: write: {}",
            errno_text(&e)
        )
    })?;
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(DIAL_TIMEOUT, sock.recv(&mut buf)).await {
        Err(_) => Err(format!(
            "reading from udp connection failed. err:'read udp {local}->{addr}: i/o timeout'"
        )),
        Ok(Err(e)) => Err(format!(
            "reading from udp connection failed. err:'read udp {local}->{addr}: read: {}'",
            errno_text(&e)
        )),
        Ok(Ok(0)) => Err("reading from udp connection failed. err:'<nil>'".to_string()),
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

async fn dial_sctp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let data = request.as_bytes().to_vec();
    let result =
        tokio::task::spawn_blocking(move || sctp_exchange(addr, &data, DIAL_TIMEOUT, 1024))
            .await
            .map_err(|e| format!("sctp dial failed. err:{e}"))?;
    match result {
        Ok(buf) if buf.is_empty() => {
            Err("reading from sctp connection failed. err:'EOF'".to_string())
        }
        Ok(buf) => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Err((SctpStage::Socket | SctpStage::Dial, e)) => {
            Err(format!("sctp dial failed. err:{}", errno_text(&e)))
        }
        Err((SctpStage::Write, e)) => Err(format!(
            "sctp connection write failed. err:{}",
            errno_text(&e)
        )),
        Err((SctpStage::Read, e)) => Err(format!(
            "reading from sctp connection failed. err:'{}'",
            errno_text(&e)
        )),
    }
}

/// `agnhost netexec` from parsed flags: runs until /exit, /shutdown or SIGTERM.
pub async fn run(opts: NetexecOptions) -> Result<i32, Error> {
    let binds = opts.binds();
    let delay = opts.delay_shutdown;
    let mut server = Netexec::start(opts, binds).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Io)?;
    tokio::select! {
        code = server.wait_exit() => Ok(code),
        _ = sigterm.recv() => {
            server.begin_termination();
            if !delay.is_zero() {
                log(&format!("Sleeping {} seconds before terminating...", delay.as_secs()));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    code = server.wait_exit() => return Ok(code),
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escapes_html() {
        let mut m = BTreeMap::new();
        m.insert("responses", vec!["<a&b>".to_string()]);
        assert_eq!(go_json(&m), r#"{"responses":["\u003ca\u0026b\u003e"]}"#);
    }

    #[test]
    fn datagram_commands() {
        assert_eq!(
            answer_datagram(b" Echo Hello \n", "1.2.3.4:5", "udp").as_deref(),
            Some("hello")
        );
        assert_eq!(
            answer_datagram(b"clientip", "1.2.3.4:5", "udp").as_deref(),
            Some("1.2.3.4:5")
        );
        assert_eq!(answer_datagram(b"HOSTNAME", "x", "udp"), Some(hostname()));
        assert_eq!(answer_datagram(b"nope", "x", "udp"), None);
        assert_eq!(answer_datagram(b"", "x", "udp"), None);
    }

    #[test]
    fn canonical_headers() {
        assert_eq!(canonical_header("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header("USER-AGENT"), "User-Agent");
    }
}
