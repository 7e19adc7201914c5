//! Prometheus metrics (prometheus-client) and health endpoints of `weft dns`,
//! served by the shared small HTTP server ([`weft_kube::http`]) on one port:
//! `/metrics`; `/health` (the process serves: 200 `OK`, as CoreDNS's health
//! plugin); `/ready` (the zone has been built from a complete listing of the
//! API at least once: 200, else 503 — what a readinessProbe asks before the
//! pod gets traffic, as CoreDNS's ready plugin).
//!
//! Query counters are labelled by query type and response code, so a flood
//! of one kind or a rise of SERVFAIL shows; the latency histogram covers the
//! whole handling of a query (zone answers, cache answers and forwards).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use weft_kube::http::{Handler, Reply};

use crate::forward::Forwarder;

/// Labels of a served query.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The query type (`A`, `SRV` …; `other` for rare ones, so a flood of
    /// random types cannot grow the label set).
    pub qtype: &'static str,
    /// The response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL` …).
    pub rcode: &'static str,
}

/// Labels of where an answer came from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `zone` (the cluster's own names), `forward` (upstream, through the
    /// cache), `unforwarded` (outside names with no upstream configured).
    pub source: &'static str,
}

/// The DNS server's metrics, registered once in their own registry.
pub struct Metrics {
    registry: Registry,
    queries: Family<QueryLabels, Counter>,
    sources: Family<SourceLabels, Counter>,
    duration: Histogram,
    dropped: Counter,
    forward_errors: Counter,
    zone_syncs: Counter,
    zone_names: Gauge,
    zone_build: Histogram,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft_dns");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register(
            "queries",
            "DNS queries answered, by transport, query type and response code",
            queries.clone(),
        );
        let sources = Family::<SourceLabels, Counter>::default();
        registry.register(
            "answers_by_source",
            "Answers from the cluster zone and from upstream servers (through the cache)",
            sources.clone(),
        );
        // 10 µs … ~5 s.
        let duration = Histogram::new(exponential_buckets(0.000_01, 2.5, 15));
        registry.register(
            "request_duration_seconds",
            "Time from receiving a query to sending its answer",
            duration.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "dropped",
            "Packets dropped without an answer (not a query, or too short to answer)",
            dropped.clone(),
        );
        let forward_errors = Counter::default();
        registry.register(
            "forward_errors",
            "Forwarded queries that failed (timeouts, bad upstream answers, too many in flight): answered SERVFAIL",
            forward_errors.clone(),
        );
        let zone_syncs = Counter::default();
        registry.register(
            "zone_syncs",
            "Cluster zone snapshots built and swapped in",
            zone_syncs.clone(),
        );
        let zone_names = Gauge::default();
        registry.register(
            "zone_names",
            "Names in the current cluster zone snapshot",
            zone_names.clone(),
        );
        // 100 µs … ~1.6 s.
        let zone_build = Histogram::new(exponential_buckets(0.000_1, 2.0, 15));
        registry.register(
            "zone_build_seconds",
            "Time to build a zone snapshot from the watched objects",
            zone_build.clone(),
        );
        Metrics {
            registry,
            queries,
            sources,
            duration,
            dropped,
            forward_errors,
            zone_syncs,
            zone_names,
            zone_build,
            ready: AtomicBool::new(false),
        }
    }
}

/// The label of a query type: the common ones by name, the rest `other`.
pub fn qtype_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::PTR => "PTR",
        RecordType::CNAME => "CNAME",
        RecordType::TXT => "TXT",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::MX => "MX",
        RecordType::ANY => "ANY",
        RecordType::HTTPS => "HTTPS",
        RecordType::SVCB => "SVCB",
        RecordType::AXFR => "AXFR",
        RecordType::IXFR => "IXFR",
        _ => "other",
    }
}

/// The label of a response code.
pub fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "other",
    }
}

impl Metrics {
    /// The metrics, with the cache's and the forwarder's counters read at
    /// each scrape.
    pub fn new(forwarder: Option<&Forwarder>) -> Metrics {
        let mut m = Metrics::default();
        if let Some(f) = forwarder {
            m.registry
                .register_collector(Box::new(ForwardCollector(f.clone())));
        }
        m
    }

    /// One answered query.
    pub fn record_query(
        &self,
        transport: &'static str,
        qtype: RecordType,
        rcode: ResponseCode,
        took: Duration,
    ) {
        self.queries
            .get_or_create(&QueryLabels {
                transport,
                qtype: qtype_label(qtype),
                rcode: rcode_label(rcode),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Where an answer came from (`zone` or `forward`).
    pub fn record_source(&self, source: &'static str) {
        self.sources.get_or_create(&SourceLabels { source }).inc();
    }

    pub fn record_dropped(&self) {
        self.dropped.inc();
    }

    pub fn record_forward_error(&self) {
        self.forward_errors.inc();
    }

    /// A zone snapshot swapped in: its size and how long it took to build.
    pub fn record_zone(&self, names: usize, took: Duration) {
        self.zone_syncs.inc();
        self.zone_names
            .set(i64::try_from(names).unwrap_or(i64::MAX));
        self.zone_build.observe(took.as_secs_f64());
        self.ready.store(true, Ordering::Release);
    }

    /// Whether a zone has been built from complete listings.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The answer to one HTTP request on the metrics port.
    pub fn reply(&self, method: &Method, path: &str) -> Reply {
        if method != Method::GET && method != Method::HEAD {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n").header(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
        }
        match path {
            "/metrics" => Reply::new(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.encode(),
            ),
            "/health" => Reply::text(StatusCode::OK, "OK\n"),
            "/ready" if self.is_ready() => Reply::text(StatusCode::OK, "OK\n"),
            "/ready" => Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster zone has not been built yet (waiting for the API's Services, EndpointSlices and Pods)\n",
            ),
            _ => Reply::text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /health or /ready\n",
            ),
        }
    }

    /// The handler for [`weft_kube::http::serve`].
    pub fn handler(self: &Arc<Self>) -> Handler {
        let m = self.clone();
        Arc::new(move |method, path| m.reply(method, path))
    }
}

/// The cache's and the forwarder's own counters, read when scraped.
#[derive(Debug)]
struct ForwardCollector(Forwarder);

impl Collector for ForwardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cache = self.0.cache().stats();
        let fwd = self.0.stats();
        let counters: [(&str, &str, u64); 8] = [
            (
                "cache_hits",
                "Forwarded questions answered from the cache",
                cache.hits,
            ),
            (
                "cache_misses",
                "Forwarded questions the cache could not answer",
                cache.misses,
            ),
            (
                "cache_evictions",
                "Live cache entries pushed out to make room",
                cache.evictions,
            ),
            (
                "cache_expired",
                "Cache entries dropped at the end of their TTL",
                cache.expired,
            ),
            (
                "forward_exchanges",
                "Exchanges with upstream servers started",
                fwd.exchanges,
            ),
            (
                "forward_coalesced",
                "Questions that joined an identical one in flight",
                fwd.coalesced,
            ),
            (
                "forward_busy",
                "Questions refused because too many were in flight",
                fwd.busy,
            ),
            (
                "upstream_queries",
                "Queries sent to upstream servers (UDP and TCP tries)",
                fwd.upstream_queries,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)?;
        }
        let entries = ConstGauge::new(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        let e = encoder.encode_descriptor(
            "cache_entries",
            "Entries in the cache of upstream answers",
            None,
            entries.metric_type(),
        )?;
        entries.encode(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_the_first_zone() {
        let m = Metrics::default();
        assert_eq!(
            m.reply(&Method::GET, "/ready").status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(m.reply(&Method::GET, "/health").status, StatusCode::OK);
        m.record_zone(12, Duration::from_millis(3));
        assert_eq!(m.reply(&Method::GET, "/ready").status, StatusCode::OK);
    }

    #[test]
    fn queries_are_counted_by_type_and_rcode() {
        let m = Metrics::default();
        m.record_query(
            "udp",
            RecordType::SRV,
            ResponseCode::NXDomain,
            Duration::from_micros(40),
        );
        m.record_query(
            "udp",
            RecordType::Unknown(65000),
            ResponseCode::NoError,
            Duration::from_micros(40),
        );
        let text = m.encode();
        assert!(
            text.contains(
                "weft_dns_queries_total{transport=\"udp\",qtype=\"SRV\",rcode=\"NXDOMAIN\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("qtype=\"other\""), "{text}");
        assert!(
            text.contains("weft_dns_request_duration_seconds_count 2"),
            "{text}"
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let m = Metrics::default();
        assert_eq!(m.reply(&Method::GET, "/x").status, StatusCode::NOT_FOUND);
        assert_eq!(
            m.reply(&Method::POST, "/metrics").status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
