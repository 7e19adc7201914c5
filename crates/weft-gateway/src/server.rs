//! The proxy: listening ports follow the current [`Table`], every
//! connection and request is answered from the table current when it
//! arrives, and a new table replaces the old one whole ([`Proxy::swap`]):
//! no reload, connections in flight keep the table they started with until
//! their next request.
//!
//! Per connection: cleartext ports speak HTTP/1.1 (and HTTP/2 with prior
//! knowledge); TLS ports read the ClientHello's SNI first, then either pass
//! the connection through unchanged to a TLSRoute backend or terminate TLS
//! with the certificate of the listener the SNI selects (ALPN h2 or
//! http/1.1). Per request: host and path normalized, the listener's rule
//! found, then a redirect, or a backend by weight and an endpoint, and the
//! request forwarded over a pooled connection (HTTP/1.1, h2c, or TLS
//! re-encryption).
//!
//! Limits and hygiene: header block size and count, a header read timeout
//! (slowloris), an idle timeout, the body size, a TLS handshake timeout;
//! request smuggling: a request with both Content-Length and
//! Transfer-Encoding, or more than one Content-Length, is refused with 400
//! and the connection closed before hyper reads it ([`framing`]); a transfer
//! coding other than chunked, or an unparsable length, is refused with 400
//! by hyper's parser and [`smuggling`]; hop-by-hop headers never cross;
//! X-Forwarded-For/-Proto/-Host/-Port and X-Request-Id are set.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::framing;
use crate::host;
use crate::metrics::Metrics;
use crate::table::{
    self, Action, Backend, Listener, Pick, Protocol, Request as RouteRequest, Table,
};
use crate::tls::{self, SniPeek};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Bodies both ways.
pub type Body = BoxBody<Bytes, BoxError>;

/// What a connection and a request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The request line and headers together, bytes.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Request bodies, bytes (413 above; ingress-nginx's default is 1 MiB).
    pub max_body_bytes: u64,
    /// Until a request's headers are in (slowloris).
    pub header_timeout: Duration,
    /// An HTTP/1.1 connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
}

/// The proxy's shared state.
pub struct Proxy {
    table: ArcSwap<Table>,
    limits: Limits,
    access_log: AccessLog,
    pub metrics: Arc<Metrics>,
    /// Pooled clients: cleartext HTTP/1.1, h2c, and one per TLS backend
    /// configuration (pruned when a table no longer names it).
    clients: Mutex<HashMap<ClientKey, Client<Connector, Body>>>,
    /// Listening ports and their accept loops.
    ports: Mutex<HashMap<u16, (Protocol, JoinHandle<()>)>>,
    /// The address the ports are bound on (0.0.0.0 or a test's 127.0.0.1).
    bind: std::net::IpAddr,
    /// Port as clients see it → port bound (tests bind ephemeral ports).
    port_map: Mutex<HashMap<u16, u16>>,
    /// One rustls configuration per TLS port (certificates resolve through
    /// the current table, so it never needs rebuilding).
    tls_configs: Mutex<HashMap<u16, Arc<rustls::ServerConfig>>>,
    request_ids: AtomicU64,
    id_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    h2c: bool,
    /// TLS: the configuration's address and the server name.
    tls: Option<(usize, String)>,
}

impl Proxy {
    pub fn new(
        bind: std::net::IpAddr,
        limits: Limits,
        access_log: AccessLog,
        metrics: Arc<Metrics>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: ArcSwap::from_pointee(Table::default()),
            limits,
            access_log,
            metrics,
            clients: Mutex::new(HashMap::new()),
            ports: Mutex::new(HashMap::new()),
            bind,
            port_map: Mutex::new(HashMap::new()),
            tls_configs: Mutex::new(HashMap::new()),
            request_ids: AtomicU64::new(0),
            id_seed: rand::random(),
        })
    }

    /// The table in use.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Installs a new table and makes the listening ports follow it: ports
    /// it names are bound (an error names the port that could not be),
    /// ports it no longer names stop accepting (their connections finish).
    pub fn swap(self: &Arc<Self>, table: Table) -> Vec<String> {
        let mut errors = Vec::new();
        let wanted: Vec<(u16, Protocol)> = table
            .ports
            .iter()
            .map(|(p, port)| (*p, port.protocol))
            .collect();
        let tls_keys: Vec<ClientKey> = backend_keys(&table);
        self.table.store(Arc::new(table));
        {
            let mut clients = lock(&self.clients);
            clients.retain(|k, _| k.tls.is_none() || tls_keys.contains(k));
        }
        let mut ports = lock(&self.ports);
        ports.retain(|port, (protocol, task)| {
            let keep = wanted.iter().any(|(p, pr)| p == port && pr == protocol);
            if !keep {
                task.abort();
                tracing::info!(port, "port no longer served");
            }
            keep
        });
        for (port, protocol) in wanted {
            if ports.contains_key(&port) {
                continue;
            }
            match self.bind_port(port, protocol) {
                Ok(task) => {
                    ports.insert(port, (protocol, task));
                }
                Err(e) => errors.push(format!("port {port}: {e}")),
            }
        }
        errors
    }

    /// Tests: serve table port `port` on an ephemeral port of the bind
    /// address instead; returns nothing, see [`Proxy::bound_port`].
    pub fn remap_port(&self, port: u16, to: u16) {
        lock(&self.port_map).insert(port, to);
    }

    /// The local port a table port is bound on, once bound.
    pub fn bound_port(&self, port: u16) -> Option<u16> {
        let map = lock(&self.port_map);
        let _ = lock(&self.ports).get(&port)?;
        Some(map.get(&port).copied().unwrap_or(port))
    }

    fn bind_port(self: &Arc<Self>, port: u16, protocol: Protocol) -> io::Result<JoinHandle<()>> {
        let local = lock(&self.port_map).get(&port).copied().unwrap_or(port);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(self.bind, local)),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        // Several proxies (one per core) may share a port; the kernel
        // spreads connections over them.
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(self.bind, local).into())?;
        socket.listen(1024)?;
        let listener = TcpListener::from_std(socket.into())?;
        let actual = listener.local_addr()?.port();
        if local == 0 {
            lock(&self.port_map).insert(port, actual);
        }
        tracing::info!(port, bound = actual, ?protocol, "serving port");
        let me = self.clone();
        Ok(tokio::spawn(async move {
            me.accept_loop(listener, port, protocol).await
        }))
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, port: u16, protocol: Protocol) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                me.metrics.connection_opened(port);
                match protocol {
                    Protocol::Http => me.serve_http(stream, peer, port, None, "http").await,
                    Protocol::Tls => me.serve_tls(stream, peer, port).await,
                }
                me.metrics.connection_closed(port);
            });
        }
    }

    async fn serve_tls(self: &Arc<Self>, mut stream: TcpStream, peer: SocketAddr, port: u16) {
        let deadline = Instant::now() + self.limits.tls_handshake_timeout;
        let mut buf = Vec::with_capacity(1024);
        let sni = loop {
            match tls::peek_sni(&buf) {
                SniPeek::Sni(s) => break s.and_then(|s| host::normalize(&s)),
                SniPeek::NotTls => {
                    tracing::debug!(port, %peer, "not a TLS ClientHello; closed");
                    return;
                }
                SniPeek::NeedMore => {}
            }
            if buf.len() >= 16 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
        };
        let table = self.table();
        let Some(listener) = table.listener(port, sni.as_deref()) else {
            tracing::debug!(port, %peer, sni = ?sni, "no listener for this SNI; closed");
            return;
        };
        if listener.passthrough.is_some() {
            let Some(action) = listener.passthrough(sni.as_deref()).cloned() else {
                return;
            };
            drop(table);
            self.passthrough(stream, buf, peer, port, &action).await;
            return;
        }
        if listener.certificate.is_none() {
            return;
        }
        let config = self.tls_config(port);
        let prefixed = Prefixed {
            head: buf,
            at: 0,
            inner: stream,
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = match tokio::time::timeout_at(deadline.into(), acceptor.accept(prefixed)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(port, %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        drop(table);
        self.serve_http(tls, peer, port, sni, "https").await;
    }

    /// One rustls configuration per port, resolving certificates through
    /// whatever table is current (so a Secret update is used by the next
    /// handshake).
    fn tls_config(self: &Arc<Self>, port: u16) -> Arc<rustls::ServerConfig> {
        let mut configs = lock(&self.tls_configs);
        if let Some(c) = configs.get(&port) {
            return c.clone();
        }
        let me = Arc::downgrade(self);
        let resolver = tls::CertResolver::new(
            port,
            Arc::new(move |port, sni| {
                let me = me.upgrade()?;
                let table = me.table();
                let sni = sni.and_then(host::normalize);
                table.listener(port, sni.as_deref())?.certificate.clone()
            }),
        );
        let config = tls::server_config(Arc::new(resolver), true);
        configs.insert(port, config.clone());
        config
    }

    async fn passthrough(
        &self,
        stream: TcpStream,
        head: Vec<u8>,
        peer: SocketAddr,
        port: u16,
        action: &Action,
    ) {
        let backend = match action.pick(rand::random()) {
            Pick::Backend(b) => b.clone(),
            Pick::Invalid => return,
        };
        let Some(ep) = pick_endpoint(&backend) else {
            tracing::debug!(port, %peer, backend = %backend.name, "passthrough: no ready endpoint");
            return;
        };
        let mut upstream =
            match tokio::time::timeout(self.limits.connect_timeout, TcpStream::connect(ep)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(port, %peer, endpoint = %ep, "passthrough: connect failed");
                    return;
                }
            };
        let _ = upstream.set_nodelay(true);
        let mut client = Prefixed {
            head,
            at: 0,
            inner: stream,
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }

    async fn serve_http<S>(
        self: &Arc<Self>,
        io: S,
        peer: SocketAddr,
        port: u16,
        sni: Option<String>,
        scheme: &'static str,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let me = self.clone();
        let sni = Arc::new(sni);
        let activity = Arc::new(Activity::new());
        let seen = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let me = me.clone();
            let sni = sni.clone();
            let busy = seen.busy();
            async move {
                let resp = me.handle(req, peer, port, sni.as_deref(), scheme).await;
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        });
        let io = Framed {
            inner: Watched {
                inner: io,
                activity: activity.clone(),
            },
            scanner: framing::Scanner::new(self.limits.max_header_bytes, self.limits.max_headers),
            ending: &[],
            port,
            peer,
        };
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192))
            .max_headers(self.limits.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.limits.max_header_bytes as u32);
        // No HTTP/2 pings: they would count as activity and keep an idle
        // connection open forever; the idle watch below closes both kinds.
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(port, %peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(idle) => {
                tracing::debug!(port, %peer, ?idle, "idle connection closed");
            }
        }
    }

    /// Answers one request.
    async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
        sni: Option<&str>,
        scheme: &'static str,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        // The request target as sent (path and query), as nginx logs $request_uri.
        let raw_path = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let request_id = self.request_id(req.headers());
        let (resp, route, backend) = self
            .route_and_forward(req, peer, port, sni, scheme, &request_id)
            .await;
        let mut resp = resp;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.request(&route, &backend, status, elapsed);
        if self.access_log == AccessLog::Stdout {
            let line = serde_json::json!({
                "time": jiff::Timestamp::now().to_string(),
                "client": peer.ip().to_string(),
                "port": port,
                "method": method.as_str(),
                "path": raw_path,
                "status": status,
                "route": route,
                "backend": backend,
                "duration_ms": (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                "request_id": request_id,
            });
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
        resp
    }

    fn request_id(&self, headers: &HeaderMap) -> String {
        if let Some(v) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            if !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()) {
                return v.to_string();
            }
        }
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016x}{:016x}",
            self.id_seed,
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n
        )
    }

    async fn route_and_forward(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
        sni: Option<&str>,
        scheme: &'static str,
        request_id: &str,
    ) -> (Response<Body>, String, String) {
        let none = || String::new();
        if let Some(why) = smuggling(req.headers()) {
            return (reply(StatusCode::BAD_REQUEST, why), none(), none());
        }
        // Host: HTTP/2's :authority, else the Host header.
        let raw_host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        let host = match raw_host.as_deref().map(host::normalize) {
            Some(Some(h)) => Some(h),
            Some(None) => {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        "the Host header is not a host name",
                    ),
                    none(),
                    none(),
                )
            }
            None if req.version() == http::Version::HTTP_11 => {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        "an HTTP/1.1 request needs a Host header",
                    ),
                    none(),
                    none(),
                )
            }
            None => None,
        };
        let Some(path) = table::normalize_path(req.uri().path()) else {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    "the request path must start with '/'",
                ),
                none(),
                none(),
            );
        };
        if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
            match len.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > self.limits.max_body_bytes => {
                    return (
                        reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the request body is too large",
                        ),
                        none(),
                        none(),
                    )
                }
                Some(_) => {}
                None => {
                    return (
                        reply(StatusCode::BAD_REQUEST, "Content-Length is not a number"),
                        none(),
                        none(),
                    )
                }
            }
        }
        let table = self.table();
        // TLS: the listener the SNI chose at the handshake; else by Host.
        let listener: Option<&Listener> = match sni {
            Some(s) => table.listener(port, Some(s)),
            None => table.listener(port, host.as_deref()),
        };
        let Some(listener) = listener else {
            return (
                reply(StatusCode::NOT_FOUND, "no route for this host"),
                none(),
                none(),
            );
        };
        let query = req.uri().query().map(str::to_string);
        let rr = RouteRequest {
            method: req.method(),
            path: &path,
            query: query.as_deref(),
            headers: req.headers(),
        };
        let Some(rule) = listener.route(host.as_deref(), &rr) else {
            return (
                reply(StatusCode::NOT_FOUND, "no route matches this request"),
                none(),
                none(),
            );
        };
        let route = rule.route.to_string();
        let action = rule.action.clone();
        let matched = rule.matcher.path.clone();
        drop(table);
        if let Some(r) = &action.redirect {
            let location = r.location(
                scheme,
                host.as_deref().unwrap_or(""),
                port,
                &path,
                query.as_deref(),
                &matched,
            );
            let mut resp = reply(
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND),
                "",
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            action.response_headers.apply(resp.headers_mut());
            return (resp, route, none());
        }
        let backend = match action.pick(rand::random()) {
            Pick::Backend(b) => b.clone(),
            Pick::Invalid => {
                return (
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the route has no valid backend for this request",
                    ),
                    route,
                    none(),
                )
            }
        };
        let Some(endpoint) = pick_endpoint(&backend) else {
            return (
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the backend has no ready endpoint",
                ),
                route,
                backend.name.clone(),
            );
        };

        // The request to the backend.
        let (mut parts, body) = req.into_parts();
        let client_ip = peer.ip().to_string();
        let mut headers = std::mem::take(&mut parts.headers);
        strip_hop_by_hop(&mut headers);
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {client_ip}"),
            None => client_ip,
        };
        set(&mut headers, "x-forwarded-for", &xff);
        set(&mut headers, "x-forwarded-proto", scheme);
        set(&mut headers, "x-forwarded-port", &port.to_string());
        if let Some(h) = raw_host.as_deref() {
            set(&mut headers, "x-forwarded-host", h);
            if !headers.contains_key(header::HOST) {
                set(&mut headers, "host", h);
            }
        }
        set(&mut headers, "x-request-id", request_id);
        let mut new_path = path.clone();
        if let Some(rw) = &action.rewrite {
            if let Some(h) = &rw.hostname {
                headers.insert(header::HOST, h.clone());
            }
            if let Some(p) = &rw.path {
                new_path = p.apply(&path, &matched);
            }
        }
        action.request_headers.apply(&mut headers);
        let pq = match &query {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        let upstream_scheme = if backend.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let uri: Uri = match format!("{upstream_scheme}://{endpoint}{pq}").parse() {
            Ok(u) => u,
            Err(_) => {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        "the request path cannot be forwarded",
                    ),
                    route,
                    backend.name.clone(),
                )
            }
        };
        let body: Body = Limited::new(body, self.limits.max_body_bytes as usize)
            .map_err(|e| -> BoxError { e })
            .boxed();
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.headers_mut() = headers;
        *up.version_mut() = if backend.h2c {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let client = self.client(&backend);
        let send = client.request(up);
        let result = match action.timeouts.request.or(action.timeouts.backend) {
            Some(t) => match tokio::time::timeout(t, send).await {
                Ok(r) => r,
                Err(_) => {
                    return (
                        reply(
                            StatusCode::GATEWAY_TIMEOUT,
                            "the backend did not answer in time",
                        ),
                        route,
                        backend.name.clone(),
                    )
                }
            },
            None => send.await,
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.to_string().contains("length limit exceeded"));
                if too_large {
                    return (
                        reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the request body is too large",
                        ),
                        route,
                        backend.name.clone(),
                    );
                }
                tracing::debug!(backend = %backend.name, %endpoint, error = %e, "backend request failed");
                return (
                    reply(StatusCode::BAD_GATEWAY, "the backend could not be reached"),
                    route,
                    backend.name.clone(),
                );
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        action.response_headers.apply(&mut parts.headers);
        let body: Body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        (
            Response::from_parts(parts, body),
            route,
            backend.name.clone(),
        )
    }

    fn client(&self, backend: &Backend) -> Client<Connector, Body> {
        let key = ClientKey {
            h2c: backend.h2c,
            tls: backend.tls.as_ref().map(|t| {
                (
                    Arc::as_ptr(&t.config) as usize,
                    server_name_str(&t.server_name),
                )
            }),
        };
        let mut clients = lock(&self.clients);
        clients
            .entry(key)
            .or_insert_with(|| {
                let connector = Connector {
                    tls: backend.tls.clone(),
                    connect_timeout: self.limits.connect_timeout,
                };
                let mut b = Client::builder(TokioExecutor::new());
                b.pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .set_host(false);
                if backend.h2c {
                    b.http2_only(true);
                }
                b.build(connector)
            })
            .clone()
    }
}

fn server_name_str(n: &rustls_pki_types::ServerName<'_>) -> String {
    match n {
        rustls_pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
        rustls_pki_types::ServerName::IpAddress(ip) => format!("{:?}", std::net::IpAddr::from(*ip)),
        _ => String::new(),
    }
}

fn backend_keys(table: &Table) -> Vec<ClientKey> {
    let mut out = Vec::new();
    for port in table.ports.values() {
        for (_, l) in port.listeners.iter() {
            for (_, rules) in l.routes.iter() {
                for r in rules.all() {
                    for w in &r.action.backends {
                        if let table::Target::Backend(b) = &w.target {
                            if let Some(t) = &b.tls {
                                out.push(ClientKey {
                                    h2c: b.h2c,
                                    tls: Some((
                                        Arc::as_ptr(&t.config) as usize,
                                        server_name_str(&t.server_name),
                                    )),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn pick_endpoint(b: &Backend) -> Option<SocketAddr> {
    match b.endpoints.len() {
        0 => None,
        1 => Some(b.endpoints[0]),
        n => Some(b.endpoints[rand::random_range(0..n)]),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// A plain-text answer of the proxy's own.
fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let body = if text.is_empty() {
        String::new()
    } else {
        format!("{text}\n")
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Why a request's framing headers are refused (RFC 9112 §6.3: a message
/// with both Transfer-Encoding and Content-Length is a smuggling attempt,
/// several differing lengths are invalid).
pub fn smuggling(headers: &HeaderMap) -> Option<&'static str> {
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return Some("a request must not carry both Transfer-Encoding and Content-Length");
    }
    if cl.len() > 1 {
        return Some("a request must carry at most one Content-Length");
    }
    if let Some(v) = cl.first() {
        if v.to_str().map(|s| s.contains(',')).unwrap_or(true) {
            return Some("a request must carry at most one Content-Length");
        }
    }
    if te.len() > 1 {
        return Some("a request must carry at most one Transfer-Encoding");
    }
    if let Some(v) = te.first() {
        if !v
            .to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("chunked"))
        {
            return Some("the only transfer coding accepted is chunked");
        }
    }
    None
}

/// Connection-level headers (RFC 9110 §7.6.1), and those the Connection
/// header names, are dropped at the proxy.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(n);
    }
}

/// What a connection did last: bytes either way, or a request being
/// answered. Idle means neither for [`Limits::idle_timeout`]; a slow
/// backend's request in flight is not idle.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last: AtomicU64,
    busy: std::sync::atomic::AtomicUsize,
}

/// A request in flight on the connection (dropped when it is answered).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Completes once nothing happened for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = idle.as_millis().max(1) as u64;
        loop {
            let now = self.start.elapsed().as_millis() as u64;
            let last = self.last.load(Ordering::Relaxed);
            let quiet = now.saturating_sub(last);
            if quiet >= idle_ms && self.busy.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wait = idle_ms.saturating_sub(quiet).max(idle_ms / 4).max(10);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// A connection's stream, noting each byte read or written in [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What replaces a refused head's last byte (its final LF): a NUL where
/// hyper's parser expects LF or a field name (invalid: 400, and the
/// connection closed), then the blank line hyper looks for before it parses
/// a head that came in several reads.
const REFUSED_ENDING: &[u8] = b"\0\r\n\r\n";

/// A client connection's bytes on their way to hyper, followed by a
/// [`framing::Scanner`]: a request whose length is ambiguous arrives with
/// its head's last byte replaced by [`REFUSED_ENDING`], which hyper refuses
/// with 400 before closing the connection; nothing after it is delivered.
struct Framed<S> {
    inner: S,
    scanner: framing::Scanner,
    /// What is left to deliver of [`REFUSED_ENDING`].
    ending: &'static [u8],
    port: u16,
    peer: SocketAddr,
}

impl<S: AsyncRead + Unpin> AsyncRead for Framed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if !me.scanner.following() {
            if me.scanner.refused() {
                // The rest of the replacement, then end of stream.
                let n = me.ending.len().min(buf.remaining());
                buf.put_slice(&me.ending[..n]);
                me.ending = &me.ending[n..];
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut me.inner).poll_read(cx, buf);
        }
        let start = buf.filled().len();
        std::task::ready!(Pin::new(&mut me.inner).poll_read(cx, buf))?;
        if let framing::Scan::Refuse { last, why } = me.scanner.scan(&buf.filled()[start..]) {
            tracing::debug!(port = me.port, peer = %me.peer, why, "request refused with 400");
            buf.set_filled(start + last);
            let n = REFUSED_ENDING.len().min(buf.remaining());
            buf.put_slice(&REFUSED_ENDING[..n]);
            me.ending = &REFUSED_ENDING[n..];
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Framed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A stream that first yields bytes already read from it (the ClientHello
/// the SNI was read from).
struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Connects to a backend endpoint (the request URI's authority is the
/// endpoint's address), with TLS when the backend re-encrypts.
#[derive(Clone)]
pub struct Connector {
    tls: Option<table::BackendTls>,
    connect_timeout: Duration,
}

/// A backend connection: TCP, or TLS over TCP.
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for BackendStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<BackendStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{uri}: not an endpoint address"),
                    )
                })?;
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {addr} timed out"),
                    )
                })??;
            let _ = tcp.set_nodelay(true);
            let stream = match tls {
                None => BackendStream::Plain(tcp),
                Some(t) => {
                    let connector = tokio_rustls::TlsConnector::from(t.config.clone());
                    let s = tokio::time::timeout(
                        timeout,
                        connector.connect(t.server_name.clone(), tcp),
                    )
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, format!("TLS to {addr} timed out"))
                    })??;
                    BackendStream::Tls(Box::new(s))
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}
