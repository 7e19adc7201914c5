//! Prometheus metrics (prometheus-client) and health of `weft gateway`,
//! served on one port by the shared small HTTP server ([`weft_kube::http`]):
//! `/metrics`, `/healthz` (the process serves), `/readyz` (a route table
//! built from a complete listing of the API is installed: 200, else 503).
//!
//! Per route and backend: requests by status class and a latency histogram;
//! per port: connections opened and active; per table: builds and their
//! duration, routes and listeners in the current table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use weft_kube::http::{Handler, Reply};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `httproute/ns/name` or `ingress/ns/name`; "" when no route matched.
    pub route: String,
    /// `ns/service:port`; "" when no backend was chosen.
    pub backend: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: u16,
}

/// The gateway's metrics, in their own registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    connections: Family<PortLabels, Counter>,
    active: Family<PortLabels, Gauge>,
    builds: Counter,
    build_seconds: Histogram,
    routes: Gauge,
    ports: Gauge,
    status_writes: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route, backend and status class",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time from a request's headers to the response's headers, by route",
            duration.clone(),
        );
        let connections = Family::<PortLabels, Counter>::default();
        registry.register(
            "connections",
            "TCP connections accepted, by port",
            connections.clone(),
        );
        let active = Family::<PortLabels, Gauge>::default();
        registry.register(
            "connections_active",
            "TCP connections open, by port",
            active.clone(),
        );
        let builds = Counter::default();
        registry.register(
            "table_builds",
            "Route tables built and installed",
            builds.clone(),
        );
        let build_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "table_build_seconds",
            "Time to build a route table from the API objects",
            build_seconds.clone(),
        );
        let routes = Gauge::default();
        registry.register(
            "table_rules",
            "Rules (match, action) in the current table",
            routes.clone(),
        );
        let ports = Gauge::default();
        registry.register(
            "table_ports",
            "Ports the current table serves",
            ports.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "Status updates written to the API",
            status_writes.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            connections,
            active,
            builds,
            build_seconds,
            routes,
            ports,
            status_writes,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    pub fn request(&self, route: &str, backend: &str, status: u16, took: Duration) {
        let code = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                backend: backend.to_string(),
                code,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn connection_opened(&self, port: u16) {
        self.connections.get_or_create(&PortLabels { port }).inc();
        self.active.get_or_create(&PortLabels { port }).inc();
    }

    pub fn connection_closed(&self, port: u16) {
        self.active.get_or_create(&PortLabels { port }).dec();
    }

    pub fn table_built(&self, took: Duration, rules: usize, ports: usize) {
        self.builds.inc();
        self.build_seconds.observe(took.as_secs_f64());
        self.routes.set(rules as i64);
        self.ports.set(ports as i64);
        self.ready.store(true, Ordering::Release);
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// `/metrics`, `/healthz`, `/readyz` for [`weft_kube::http::serve`].
    pub fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |method: &Method, path: &str| {
            if method != Method::GET && method != Method::HEAD {
                return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
            }
            match path {
                "/metrics" => Reply::new(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    me.encode(),
                ),
                "/healthz" => Reply::text(StatusCode::OK, "ok\n"),
                "/readyz" if me.is_ready() => Reply::text(StatusCode::OK, "ok\n"),
                "/readyz" => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "no route table yet\n"),
                _ => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_answers_503_until_a_table_is_installed() {
        let m = Metrics::new();
        let h = m.handler();
        assert_eq!(
            h(&Method::GET, "/readyz").status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        m.table_built(Duration::from_millis(1), 3, 1);
        assert_eq!(h(&Method::GET, "/readyz").status, StatusCode::OK);
        assert_eq!(h(&Method::GET, "/healthz").status, StatusCode::OK);
    }

    #[test]
    fn requests_are_counted_by_route_backend_and_status_class() {
        let m = Metrics::new();
        m.request(
            "httproute/default/web",
            "default/web:80",
            204,
            Duration::from_millis(2),
        );
        m.request("", "", 404, Duration::from_millis(1));
        let text = m.encode();
        assert!(
            text.contains(r#"weft_gateway_requests_total{route="httproute/default/web",backend="default/web:80",code="2xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"code="4xx"} 1"#), "{text}");
    }
}
