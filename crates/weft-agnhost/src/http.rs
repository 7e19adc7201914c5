//! agnhost's HTTP layer on hyper: the HTTP/1.x server every command uses
//! (keep-alive, body limits, Go's reason phrases, `Date` and header case),
//! the GET client behind netexec's `/dial` (redirects followed like Go's
//! `http.Client`), and the Go `net/url` and `net/http` helpers handlers need
//! (query parsing, path cleaning, escaping).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, DATE, HOST, LOCATION, USER_AGENT};
use hyper::http::uri::PathAndQuery;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::gotime::http_date;
use crate::net::{errno_text, go_addr, resolve};

/// Most header lines a request may carry.
const MAX_HEADERS: usize = 200;
/// Largest request (server) or response (client) body read into memory.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long a connection may wait for (the rest of) a request head.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why serving a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("serving HTTP connection: {0}")]
    Hyper(#[from] hyper::Error),
}

/// A parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Decoded path ("/echo").
    pub path: String,
    /// Raw query string without '?'.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The peer, as Go renders `RemoteAddr`.
    pub remote_addr: String,
}

impl Request {
    /// A GET request for `target` ("/path?query"), as `http.NewRequest` builds it.
    pub fn synthetic(target: &str, remote_addr: String) -> Request {
        let (path, query) = split_target(target);
        Request {
            method: "GET".into(),
            path,
            query,
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr,
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `key` (first value, "" if absent), like `URL.Query().Get`.
    pub fn query_value(&self, key: &str) -> String {
        first_value(&parse_query(&self.query), key)
    }

    /// Like Go's `Request.FormValue`: url-encoded POST/PUT/PATCH body values
    /// first, then query values.
    pub fn form_value(&self, key: &str) -> String {
        let is_form = self
            .header("content-type")
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
        if is_form && matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            let body = String::from_utf8_lossy(&self.body);
            let pairs = parse_query(&body);
            if pairs.iter().any(|(k, _)| k == key) {
                return first_value(&pairs, key);
            }
        }
        self.query_value(key)
    }
}

fn first_value(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Splits "/path?query#frag" into (decoded path, raw query).
pub fn split_target(target: &str) -> (String, String) {
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q.to_string()),
        None => (target, String::new()),
    };
    let path = percent_decode(path, false).unwrap_or_else(|| path.to_string());
    let path = if path.is_empty() { "/".into() } else { path };
    (path, query)
}

/// Decodes %XX escapes (and '+' as space when `plus`); None on bad escapes.
pub fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Parses a query string like Go's `url.ParseQuery` (pairs with bad escapes
/// or semicolons are dropped).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) {
            out.push((k, v));
        }
    }
    out
}

/// Cleans a request path like Go's ServeMux (`path.Clean`, keeping a
/// trailing slash).
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// Escapes bytes that cannot appear raw in a request target (controls,
/// spaces, non-ASCII, and the `"`, `<`, `>` and backquote that hyper's URI parser refuses).
pub fn escape_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b <= 0x20 || b >= 0x7f || matches!(b, b'"' | b'<' | b'>' | b'`') {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Escapes text for an HTML attribute/body, as Go's `htmlEscape`.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Called once the response has been written and its connection closed.
pub type AfterSend = Box<dyn FnOnce() + Send + Sync>;

/// A response to write.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// Runs once the response is sent; implies `close`.
    pub after: Option<AfterSend>,
}

impl Response {
    /// A 200 response with a plain-text body (Go sniffs text as this type).
    pub fn text(body: impl Into<String>) -> Response {
        Response::status_text(200, body)
    }

    /// A plain-text response with `status`; an empty body has no Content-Type.
    pub fn status_text(status: u16, body: impl Into<String>) -> Response {
        let body: String = body.into();
        let headers = if body.is_empty() {
            Vec::new()
        } else {
            vec![(
                "Content-Type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            )]
        };
        Response {
            status,
            headers,
            body: body.into_bytes(),
            close: false,
            after: None,
        }
    }

    /// Like Go's `http.Error`.
    pub fn error(status: u16, msg: &str) -> Response {
        let mut r = Response::status_text(status, format!("{msg}\n"));
        r.headers
            .push(("X-Content-Type-Options".into(), "nosniff".into()));
        r
    }
}

/// The reason phrase Go uses for `code`.
pub fn status_text(code: u16) -> String {
    let text = match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return format!("status code {code}"),
    };
    text.to_string()
}

/// Boxed request handler.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// The [`Response::after`] callbacks of one connection, run once it closed.
type AfterSlot = Arc<Mutex<Vec<AfterSend>>>;

/// Accepts connections forever, serving each with `handler`.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    // Clients that hang up or send garbage are routine; Go's
                    // server does not log them either.
                    let _ = serve_conn(stream, peer, handler).await;
                });
            }
            Err(e) => {
                crate::log(&format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one connection (HTTP/1.x with keep-alive) until close, EOF, idle
/// timeout or error, then runs the `after` callbacks of its responses.
pub async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
) -> Result<(), HttpError> {
    let remote_addr = go_addr(peer);
    let after = AfterSlot::default();
    let slot = after.clone();
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let remote_addr = remote_addr.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(respond(req, remote_addr, &handler, &slot).await) }
    });
    let served = http1::Builder::new()
        // Go writes canonical header names ("Content-Type").
        .title_case_headers(true)
        .max_headers(MAX_HEADERS)
        // Bounds idle keep-alive connections too: the timer starts when
        // hyper waits for the next request head.
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    let callbacks = std::mem::take(&mut *after.lock().unwrap_or_else(PoisonError::into_inner));
    for callback in callbacks {
        callback();
    }
    served.map_err(HttpError::from)
}

/// Reads the whole request, runs `handler` and encodes its response.
async fn respond(
    req: hyper::Request<Incoming>,
    remote_addr: String,
    handler: &Handler,
    after: &AfterSlot,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match collect_limited(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let mut r = Response::error(413, "http: request body too large");
            r.close = true;
            return encode(r);
        }
        Err(BodyError::Malformed(_)) => {
            // What Go's server answers to a request it cannot read.
            let mut r = Response::status_text(400, "400 Bad Request");
            r.close = true;
            return encode(r);
        }
    };
    // Absolute-form targets ("http://host/path") carry the path after the authority.
    let target = parts
        .uri
        .path_and_query()
        .map(PathAndQuery::as_str)
        .unwrap_or("/");
    let (path, query) = split_target(target);
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), value)
        })
        .collect();
    let request = Request {
        method: parts.method.as_str().to_string(),
        path,
        query,
        headers,
        body: body.to_vec(),
        remote_addr,
    };
    let mut resp = handler(request).await;
    if let Some(callback) = resp.after.take() {
        // The callback runs once the connection has closed, so the response
        // is on the wire before, say, the process exits.
        resp.close = true;
        after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(callback);
    }
    encode(resp)
}

/// Why a message body could not be read.
enum BodyError {
    /// Longer than [`MAX_BODY`].
    TooLarge,
    /// Bad framing or a broken connection; the text says which.
    Malformed(String),
}

/// Reads a whole body of at most [`MAX_BODY`] bytes.
async fn collect_limited<B>(body: B) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A declared length over the limit is refused before reading anything.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Malformed(go_error_text(e.as_ref()))),
    }
}

/// A hyper error's text, with Go's "EOF" for a message cut short.
fn go_error_text(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_incomplete_message() => "EOF".to_string(),
        _ => e.to_string(),
    }
}

/// A header value as Go writes it: line breaks (and the other control
/// bytes HTTP forbids) become spaces.
fn header_value(v: &str) -> HeaderValue {
    let bytes: Vec<u8> = v
        .bytes()
        .map(|b| {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                b' '
            } else {
                b
            }
        })
        .collect();
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Turns a handler's [`Response`] into hyper's, with Go's reason phrases
/// and `Date` header.
fn encode(resp: Response) -> hyper::Response<Full<Bytes>> {
    // Go sends a 1xx code as an interim response followed by an implicit
    // 200; a hyper handler cannot send interim responses, so clients see
    // the final 200 only.
    let code = if (100..200).contains(&resp.status) {
        200
    } else {
        resp.status
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = status;
    if let Ok(reason) = ReasonPhrase::try_from(status_text(status.as_u16())) {
        out.extensions_mut().insert(reason);
    }
    let headers = out.headers_mut();
    for (k, v) in &resp.headers {
        if let Ok(name) = HeaderName::from_bytes(k.as_bytes()) {
            headers.append(name, header_value(v));
        }
    }
    if resp.close {
        // hyper closes the connection after a response that says so.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(DATE, header_value(&http_date()));
    out
}

/// A failed client GET, rendered like Go's `*url.Error`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Get \"{url}\": dial tcp {addr}: connect: {reason}")]
    Dial {
        url: String,
        addr: String,
        reason: String,
    },
    #[error(
        "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )]
    Timeout { url: String },
    #[error("Get \"{url}\": {reason}")]
    Other { url: String, reason: String },
}

struct Target {
    /// "host:port" as written in the URL (Host header).
    authority: String,
    host: String,
    port: u16,
    /// "/path?query".
    path: String,
}

fn parse_http_url(url: &str) -> Option<Target> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(pos) => (&rest[..pos], rest[pos..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let (host, port) = match crate::net::split_host_port(authority) {
        Ok((h, p)) => (h, p.parse().ok()?),
        Err(_) => (authority.to_string(), 80),
    };
    Some(Target {
        authority: authority.to_string(),
        host,
        port,
        path,
    })
}

fn resolve_location(current: &Target, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    if location.starts_with("//") {
        return format!("http:{location}");
    }
    if location.starts_with('/') {
        return format!("http://{}{}", current.authority, location);
    }
    let current_path = current.path.split('?').next().unwrap_or("/");
    let dir = match current_path.rfind('/') {
        Some(pos) => &current_path[..=pos],
        None => "/",
    };
    format!("http://{}{}{}", current.authority, dir, location)
}

/// One answer to a GET: status, `Location` header and body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: Bytes,
}

/// One GET on a fresh connection to `addr` (`Connection: close`).
async fn get_once(url: &str, target: &Target, addr: SocketAddr) -> Result<Answer, ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ClientError::Dial {
            url: url.to_string(),
            addr: addr.to_string(),
            reason: errno_text(&e),
        })?;
    let other = |reason: String| ClientError::Other {
        url: url.to_string(),
        reason,
    };
    let hyper_err = |e: hyper::Error| other(go_error_text(&e));
    let request = hyper::Request::get(escape_target(&target.path))
        .header(HOST, target.authority.as_str())
        .header(USER_AGENT, "Go-http-client/1.1")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| other(format!("parse {url:?}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(hyper_err)?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(hyper_err)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = collect_limited(response.into_body())
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => other("http: response body too large".into()),
                BodyError::Malformed(text) => other(text),
            })?;
        Ok(Answer {
            status,
            location,
            body,
        })
    };
    // The connection future moves the bytes; it ends once the exchange has
    // (Connection: close), or fails, which fails the exchange too.
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        answer = &mut exchange => answer,
        _ = conn => exchange.await,
    }
}

/// GETs `url` ("http://host:port/path"), following up to 10 redirects like
/// Go's `http.Client`; the whole exchange is bounded by `timeout`.
/// Returns the final status and body (any status is a success).
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), ClientError> {
    let first_url = url.to_string();
    let work = async {
        let mut url = first_url.clone();
        for _ in 0..=10 {
            let target = parse_http_url(&url).ok_or_else(|| ClientError::Other {
                url: url.clone(),
                reason: "unsupported protocol scheme".into(),
            })?;
            let addrs =
                resolve(&target.host, target.port)
                    .await
                    .map_err(|e| ClientError::Other {
                        url: url.clone(),
                        reason: format!("dial tcp: lookup {}: {}", target.host, errno_text(&e)),
                    })?;
            let addr = addrs[0];
            let answer = get_once(&url, &target, addr).await?;
            if matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
                if let Some(location) = &answer.location {
                    url = resolve_location(&target, location);
                    continue;
                }
            }
            return Ok((answer.status, answer.body.to_vec()));
        }
        Err(ClientError::Other {
            url: url.clone(),
            reason: "stopped after 10 redirects".into(),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { url: first_url }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_like_go() {
        let q = parse_query("request=echo?msg=x&a=b+c&bad=%zz&d=%41");
        assert_eq!(
            q,
            vec![
                ("request".to_string(), "echo?msg=x".to_string()),
                ("a".to_string(), "b c".to_string()),
                ("d".to_string(), "A".to_string()),
            ]
        );
        assert_eq!(
            split_target("/a%20b?x=1#f"),
            ("/a b".to_string(), "x=1".to_string())
        );
        assert_eq!(escape_target("/echo?msg=a b"), "/echo?msg=a%20b");
        assert_eq!(clean_path("//hostname"), "/hostname");
        assert_eq!(clean_path("/a/../b/./c/"), "/b/c/");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn request_targets_escape_what_hyper_refuses() {
        let target = escape_target("/a`b?msg=<x>\"y\"`");
        assert_eq!(target, "/a%60b?msg=%3Cx%3E%22y%22%60");
        assert!(target.parse::<hyper::Uri>().is_ok(), "{target}");
    }

    #[test]
    fn redirect_locations() {
        let t = parse_http_url("http://1.2.3.4:80/a/redirect?x=1").unwrap();
        assert_eq!(t.host, "1.2.3.4");
        assert_eq!(t.port, 80);
        assert_eq!(resolve_location(&t, "/echo"), "http://1.2.3.4:80/echo");
        assert_eq!(resolve_location(&t, "echo"), "http://1.2.3.4:80/a/echo");
        assert_eq!(resolve_location(&t, "http://x:1/y"), "http://x:1/y");
    }
}
