//! Prometheus metrics (prometheus-client) and health endpoints of the agent,
//! served by hyper: `/metrics`, `/healthz`, `/livez`, `/readyz` (ready after
//! the first successful sync).

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The agent's metrics, registered once in their own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    syncs: Counter,
    errors: Counter,
    sync_seconds: Histogram,
    last_sync_seconds: Gauge<f64, AtomicU64>,
    peers: Gauge,
    routes: Gauge,
    problems: Gauge,
    ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft_agent");
        let syncs = Counter::default();
        let errors = Counter::default();
        // 1 ms … ~16 s.
        let sync_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let last_sync_seconds = Gauge::<f64, AtomicU64>::default();
        let (peers, routes, ready) = (Gauge::default(), Gauge::default(), Gauge::default());
        let problems = Gauge::default();
        registry.register("syncs", "Datapath syncs that succeeded", syncs.clone());
        registry.register("sync_errors", "Datapath syncs that failed", errors.clone());
        registry.register(
            "sync_duration_seconds",
            "Duration of successful datapath syncs",
            sync_seconds.clone(),
        );
        registry.register(
            "last_sync_seconds",
            "Duration of the last successful sync",
            last_sync_seconds.clone(),
        );
        registry.register("peers", "Other nodes known", peers.clone());
        registry.register(
            "routes",
            "Routes to peers' pod CIDRs programmed",
            routes.clone(),
        );
        registry.register(
            "datapath_problems",
            "Peers the datapath cannot serve (no podCIDR or VTEP yet, overlapping podCIDRs)",
            problems.clone(),
        );
        registry.register(
            "ready",
            "1 once the datapath has been synced",
            ready.clone(),
        );
        Metrics {
            registry,
            syncs,
            errors,
            sync_seconds,
            last_sync_seconds,
            peers,
            routes,
            problems,
            ready,
        }
    }
}

impl Metrics {
    pub fn record_sync(&self, took: Duration, peers: usize, routes: usize) {
        self.syncs.inc();
        self.sync_seconds.observe(took.as_secs_f64());
        self.last_sync_seconds.set(took.as_secs_f64());
        self.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
        self.routes.set(i64::try_from(routes).unwrap_or(i64::MAX));
        self.ready.set(1);
    }

    pub fn record_problems(&self, n: usize) {
        self.problems.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn record_error(&self) {
        self.errors.inc();
    }

    pub fn ready(&self) -> bool {
        self.syncs.get() > 0
    }

    /// OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request (pure): status, content type, body.
pub fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.render()),
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if metrics.ready() => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "datapath not synced yet\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn handle(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (code, ctype, body) = respond(req.method(), req.uri().path(), metrics);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves the endpoints until the task is dropped; one task per connection,
/// each bounded by a header-read timeout.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = handle(&req, &metrics);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_first_sync() {
        let m = Metrics::default();
        assert_eq!(respond(&Method::GET, "/readyz", &m).0, 503);
        m.record_sync(Duration::from_millis(3), 2, 2);
        assert_eq!(respond(&Method::GET, "/readyz", &m).0, 200);
    }

    #[test]
    fn metrics_render_counters_gauges_and_the_sync_histogram() {
        let m = Metrics::default();
        m.record_sync(Duration::from_millis(3), 2, 2);
        m.record_error();
        m.record_problems(1);
        let (code, ctype, body) = respond(&Method::GET, "/metrics", &m);
        assert_eq!(code, 200);
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(body.contains("weft_agent_syncs_total 1\n"), "{body}");
        assert!(body.contains("weft_agent_sync_errors_total 1\n"), "{body}");
        assert!(body.contains("weft_agent_routes 2\n"), "{body}");
        assert!(body.contains("weft_agent_peers 2\n"), "{body}");
        assert!(body.contains("weft_agent_ready 1\n"), "{body}");
        assert!(body.contains("weft_agent_datapath_problems 1\n"), "{body}");
        assert!(
            body.contains("weft_agent_sync_duration_seconds_count 1\n"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn only_get_on_known_paths() {
        let m = Metrics::default();
        assert_eq!(respond(&Method::POST, "/metrics", &m).0, 405);
        assert_eq!(respond(&Method::GET, "/nope", &m).0, 404);
        assert_eq!(respond(&Method::GET, "/livez", &m).0, 200);
    }

    #[tokio::test]
    async fn the_server_answers_over_http_and_survives_garbage() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::default());
        m.record_sync(Duration::from_millis(1), 0, 0);
        let server = tokio::spawn(serve(listener, m));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A malformed request gets an error response, not a dead server.
        let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
        bad.write_all(b"\x00\x01 garbage\r\n\r\n").await.unwrap();
        let mut junk = Vec::new();
        let _ = bad.read_to_end(&mut junk).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("ok\n"), "{out}");
        server.abort();
    }
}
