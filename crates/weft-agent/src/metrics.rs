//! Prometheus metrics and health endpoints of the agent, on a tiny HTTP/1.1
//! server (GET only): /metrics, /healthz, /readyz (ready after the first
//! successful sync).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Default)]
pub struct Metrics {
    syncs: AtomicU64,
    errors: AtomicU64,
    last_sync_micros: AtomicU64,
    peers: AtomicU64,
    routes: AtomicU64,
}

impl Metrics {
    pub fn record_sync(&self, took: Duration, peers: usize, routes: usize) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.last_sync_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.peers.store(peers as u64, Ordering::Relaxed);
        self.routes.store(routes as u64, Ordering::Relaxed);
    }

    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.syncs.load(Ordering::Relaxed) > 0
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP weft_agent_syncs_total Datapath syncs that succeeded.\n# TYPE weft_agent_syncs_total counter\nweft_agent_syncs_total {}\n\
             # HELP weft_agent_sync_errors_total Datapath syncs that failed.\n# TYPE weft_agent_sync_errors_total counter\nweft_agent_sync_errors_total {}\n\
             # HELP weft_agent_last_sync_seconds Duration of the last successful sync.\n# TYPE weft_agent_last_sync_seconds gauge\nweft_agent_last_sync_seconds {:.6}\n\
             # HELP weft_agent_peers Other nodes known.\n# TYPE weft_agent_peers gauge\nweft_agent_peers {}\n\
             # HELP weft_agent_routes Routes to peers' pod CIDRs programmed.\n# TYPE weft_agent_routes gauge\nweft_agent_routes {}\n\
             # HELP weft_agent_ready 1 once the datapath has been synced.\n# TYPE weft_agent_ready gauge\nweft_agent_ready {}\n",
            g(&self.syncs),
            g(&self.errors),
            g(&self.last_sync_micros) as f64 / 1e6,
            g(&self.peers),
            g(&self.routes),
            u8::from(self.ready()),
        )
    }
}

/// The answer to one request line (pure).
pub fn respond(request_line: &str, metrics: &Metrics) -> (u16, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return (405, "text/plain", "only GET\n".into());
    }
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        "/healthz" | "/livez" => (200, "text/plain", "ok\n".into()),
        "/readyz" if metrics.ready() => (200, "text/plain", "ok\n".into()),
        "/readyz" => (503, "text/plain", "datapath not synced yet\n".into()),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            else {
                return;
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            let (code, ctype, body) = respond(text.lines().next().unwrap_or(""), &metrics);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let head = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_first_sync() {
        let m = Metrics::default();
        assert_eq!(respond("GET /readyz HTTP/1.1", &m).0, 503);
        m.record_sync(Duration::from_millis(3), 2, 2);
        assert_eq!(respond("GET /readyz HTTP/1.1", &m).0, 200);
        let (_, _, body) = respond("GET /metrics HTTP/1.1", &m);
        assert!(body.contains("weft_agent_syncs_total 1\n"));
        assert!(body.contains("weft_agent_routes 2\n"));
        assert_eq!(respond("POST /metrics HTTP/1.1", &m).0, 405);
        assert_eq!(respond("GET /nope HTTP/1.1", &m).0, 404);
    }
}
