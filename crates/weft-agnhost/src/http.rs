//! A minimal HTTP/1.1 server and client on tokio, enough for agnhost: simple
//! requests with Content-Length or chunked bodies, keep-alive, redirects.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::gotime::http_date;
use crate::net::{errno_text, go_addr, resolve};

const MAX_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 200;
const MAX_BODY: usize = 32 * 1024 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// HTTP framing problems.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    #[error("HTTP message too large")]
    TooLarge,
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

/// Escapes bytes that cannot appear raw in a request target.
pub fn escape_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b <= 0x20 || b >= 0x7f || b == b'"' {
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

/// Called once the response has been written and flushed.
pub type AfterSend = Box<dyn FnOnce() + Send + Sync>;

/// A response to write.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
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

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<String>, HttpError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(HttpError::Malformed("unexpected EOF"));
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                line.extend_from_slice(&buf[..pos]);
                r.consume(pos + 1);
                break;
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
        if line.len() > MAX_LINE {
            return Err(HttpError::TooLarge);
        }
    }
    if line.len() > MAX_LINE {
        return Err(HttpError::TooLarge);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

async fn read_headers<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)
            .await?
            .ok_or(HttpError::Malformed("unexpected EOF in headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        let (k, v) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)
            .await?
            .ok_or(HttpError::Malformed("EOF in chunked body"))?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailers until an empty line.
            read_headers(r).await?;
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).await?;
        let crlf = read_line(r).await?;
        if crlf.as_deref() != Some("") {
            return Err(HttpError::Malformed("bad chunk terminator"));
        }
    }
}

async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    headers: &[(String, String)],
) -> Result<Option<Vec<u8>>, HttpError> {
    if has_token(headers, "transfer-encoding", "chunked") {
        return read_chunked(r).await.map(Some);
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        return Ok(Some(body));
    }
    Ok(None)
}

/// Boxed request handler.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Accepts connections forever, serving each with `handler`.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
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

async fn write_response<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    resp: &Response,
    head_only: bool,
    close: bool,
    // Some(keep_alive) for HTTP/1.0 requests.
    keep_alive_10: Option<bool>,
) -> io::Result<()> {
    // Go answers HTTP/1.0 requests with an HTTP/1.0 status line.
    let version = if keep_alive_10.is_some() {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let keep_alive_10 = keep_alive_10.unwrap_or(false);
    let mut out = format!("{version} {} {}\r\n", resp.status, status_text(resp.status));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    } else if keep_alive_10 {
        out.push_str("Connection: keep-alive\r\n");
    }
    out.push_str(&format!("Date: {}\r\n", http_date()));
    out.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Serves one connection until close, EOF, idle timeout or error.
pub async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
) -> Result<(), HttpError> {
    let remote_addr = go_addr(peer);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader)).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(line))) => line,
            Ok(Err(e)) => {
                let resp = Response::status_text(400, "400 Bad Request");
                let _ = write_response(&mut write, &resp, false, true, None).await;
                return Err(e);
            }
        };
        if line.is_empty() {
            // Tolerate stray CRLF between requests.
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (method, target, version) = match parts.as_slice() {
            [m, t, v] if v.starts_with("HTTP/1.") => (m.to_string(), t.to_string(), *v),
            _ => {
                let resp = Response::status_text(400, "400 Bad Request");
                let _ = write_response(&mut write, &resp, false, true, None).await;
                return Err(HttpError::Malformed("bad request line"));
            }
        };
        let http10 = version == "HTTP/1.0";
        let headers = match read_headers(&mut reader).await {
            Ok(h) => h,
            Err(e) => {
                let resp = Response::status_text(400, "400 Bad Request");
                let _ = write_response(&mut write, &resp, false, true, None).await;
                return Err(e);
            }
        };
        if has_token(&headers, "expect", "100-continue") && !http10 {
            write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = match read_body(&mut reader, &headers).await {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                let resp = Response::status_text(400, "400 Bad Request");
                let _ = write_response(&mut write, &resp, false, true, None).await;
                return Err(e);
            }
        };
        let keep_alive_10 = http10 && has_token(&headers, "connection", "keep-alive");
        let client_close = has_token(&headers, "connection", "close") || (http10 && !keep_alive_10);
        // Absolute-form targets ("http://host/path") carry the path after the authority.
        let origin = match target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))
        {
            Some(rest) => match rest.find('/') {
                Some(pos) => rest[pos..].to_string(),
                None => "/".to_string(),
            },
            None => target.clone(),
        };
        let (path, query) = split_target(&origin);
        let head_only = method == "HEAD";
        let req = Request {
            method,
            path,
            query,
            headers,
            body,
            remote_addr: remote_addr.clone(),
        };
        let mut resp = handler(req).await;
        let after = resp.after.take();
        let close = client_close || resp.close;
        write_response(
            &mut write,
            &resp,
            head_only,
            close,
            http10.then_some(keep_alive_10 && !close),
        )
        .await?;
        if let Some(after) = after {
            after();
        }
        if close {
            let _ = write.shutdown().await;
            return Ok(());
        }
    }
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

async fn get_once(
    url: &str,
    target: &Target,
    addr: SocketAddr,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ClientError> {
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
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n",
        escape_target(&target.path),
        target.authority
    );
    write
        .write_all(request.as_bytes())
        .await
        .map_err(|e| other(errno_text(&e)))?;
    let mut reader = BufReader::new(read);
    loop {
        let status_line = read_line(&mut reader)
            .await
            .map_err(|e| other(e.to_string()))?
            .ok_or_else(|| other("EOF".into()))?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code: u16 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|_| version.starts_with("HTTP/"))
            .ok_or_else(|| other(format!("malformed HTTP response {status_line:?}")))?;
        let headers = read_headers(&mut reader)
            .await
            .map_err(|e| other(e.to_string()))?;
        if (100..200).contains(&code) {
            continue;
        }
        if code == 204 || code == 304 {
            return Ok((code, headers, Vec::new()));
        }
        let body = match read_body(&mut reader, &headers)
            .await
            .map_err(|e| other(e.to_string()))?
        {
            Some(b) => b,
            None => {
                let mut b = Vec::new();
                (&mut reader)
                    .take(MAX_BODY as u64)
                    .read_to_end(&mut b)
                    .await
                    .map_err(|e| other(errno_text(&e)))?;
                b
            }
        };
        return Ok((code, headers, body));
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
            let (code, headers, body) = get_once(&url, &target, addr).await?;
            if matches!(code, 301 | 302 | 303 | 307 | 308) {
                if let Some(location) = header(&headers, "location") {
                    url = resolve_location(&target, location);
                    continue;
                }
            }
            return Ok((code, body));
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
    fn redirect_locations() {
        let t = parse_http_url("http://1.2.3.4:80/a/redirect?x=1").unwrap();
        assert_eq!(t.host, "1.2.3.4");
        assert_eq!(t.port, 80);
        assert_eq!(resolve_location(&t, "/echo"), "http://1.2.3.4:80/echo");
        assert_eq!(resolve_location(&t, "echo"), "http://1.2.3.4:80/a/echo");
        assert_eq!(resolve_location(&t, "http://x:1/y"), "http://x:1/y");
    }
}
