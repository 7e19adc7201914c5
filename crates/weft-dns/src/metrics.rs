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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
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
    duration: Latency,
    dropped: Counter,
    forward_errors: Counter,
    zone_syncs: Counter,
    zone_unchanged: Counter,
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
        let duration = Latency::default();
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
        let zone_unchanged = Counter::default();
        registry.register(
            "zone_syncs_unchanged",
            "Syncs that found nothing the zone reads changed (no rebuild)",
            zone_unchanged.clone(),
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
            zone_unchanged,
            zone_names,
            zone_build,
            ready: AtomicBool::new(false),
        }
    }
}

/// A UDP socket thread's own counts, merged into [`Metrics`] in batches
/// ([`Metrics::merge`]): with two threads answering ~100k queries/s each,
/// a shared counter and prometheus-client's histogram (a lock per
/// observation) on every query cost a fifth of the throughput.
#[derive(Debug)]
pub struct Tally {
    queries: HashMap<(&'static str, &'static str, &'static str), u64>,
    sources: HashMap<&'static str, u64>,
    dropped: u64,
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
    since: Instant,
}

impl Tally {
    /// Queries after which a tally is merged at the latest.
    pub const MAX_PENDING: u64 = 1024;
    /// Time after which a tally with anything in it is merged.
    pub const MAX_AGE: Duration = Duration::from_millis(100);

    fn new(buckets: usize) -> Tally {
        Tally {
            queries: HashMap::new(),
            sources: HashMap::new(),
            dropped: 0,
            buckets: vec![0; buckets],
            sum: 0.0,
            count: 0,
            since: Instant::now(),
        }
    }

    /// One answered query.
    pub fn query(
        &mut self,
        transport: &'static str,
        qtype: RecordType,
        rcode: ResponseCode,
        took: Duration,
    ) {
        *self
            .queries
            .entry((transport, qtype_label(qtype), rcode_label(rcode)))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    pub fn source(&mut self, source: &'static str) {
        *self.sources.entry(source).or_default() += 1;
    }

    pub fn dropped(&mut self) {
        self.dropped += 1;
    }

    /// Whether the tally should be merged now.
    pub fn due(&self, now: Instant) -> bool {
        let pending = self.count + self.dropped;
        pending >= Self::MAX_PENDING
            || (pending > 0 && now.duration_since(self.since) >= Self::MAX_AGE)
    }

    fn clear(&mut self) {
        self.queries.values_mut().for_each(|n| *n = 0);
        self.sources.values_mut().for_each(|n| *n = 0);
        self.dropped = 0;
        self.buckets.iter_mut().for_each(|n| *n = 0);
        self.sum = 0.0;
        self.count = 0;
        self.since = Instant::now();
    }
}

/// Upper bounds of the latency histogram's buckets: 10 µs × 2.5ⁿ, up to ~3.7 s
/// (then +Inf).
const LATENCY_BOUNDS: [f64; 15] = {
    let mut b = [0.0; 15];
    let mut i = 0;
    let mut v = 0.000_01;
    while i < 15 {
        b[i] = v;
        v *= 2.5;
        i += 1;
    }
    b
};

/// The request latency histogram, fed in batches ([`Tally`]) or one by
/// one (TCP, forwards); encoded as a Prometheus histogram.
#[derive(Debug, Clone)]
struct Latency {
    bounds: Vec<f64>,
    /// sum, count, per-bucket counts (not cumulative; the last is +Inf).
    inner: Arc<Mutex<(f64, u64, Vec<u64>)>>,
}

impl Default for Latency {
    fn default() -> Latency {
        let mut bounds = LATENCY_BOUNDS.to_vec();
        bounds.push(f64::MAX);
        let n = bounds.len();
        Latency {
            bounds,
            inner: Arc::new(Mutex::new((0.0, 0, vec![0; n]))),
        }
    }
}

impl Latency {
    fn observe(&self, secs: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len() - 1);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += secs;
        g.1 += 1;
        g.2[i] += 1;
    }

    fn add(&self, sum: f64, count: u64, buckets: &[u64]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += sum;
        g.1 += count;
        for (acc, n) in g.2.iter_mut().zip(buckets) {
            *acc += n;
        }
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            (g.0, g.1, g.2.clone())
        };
        let buckets: Vec<(f64, u64)> = self.bounds.iter().copied().zip(buckets).collect();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
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

    /// A fresh per-thread tally (see [`Tally`]).
    pub fn tally(&self) -> Tally {
        Tally::new(self.duration.bounds.len())
    }

    /// Adds a thread's tally to the shared metrics and empties it.
    pub fn merge(&self, t: &mut Tally) {
        for (&(transport, qtype, rcode), &n) in &t.queries {
            if n > 0 {
                self.queries
                    .get_or_create(&QueryLabels {
                        transport,
                        qtype,
                        rcode,
                    })
                    .inc_by(n);
            }
        }
        for (&source, &n) in &t.sources {
            if n > 0 {
                self.sources
                    .get_or_create(&SourceLabels { source })
                    .inc_by(n);
            }
        }
        if t.dropped > 0 {
            self.dropped.inc_by(t.dropped);
        }
        if t.count > 0 {
            self.duration.add(t.sum, t.count, &t.buckets);
        }
        t.clear();
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

    /// A sync that kept the snapshot: nothing the zone reads changed.
    pub fn record_zone_unchanged(&self) {
        self.zone_unchanged.inc();
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
    fn a_merged_tally_counts_as_single_records_would_and_empties() {
        let m = Metrics::default();
        let mut t = m.tally();
        for _ in 0..2 {
            t.query(
                "udp",
                RecordType::A,
                ResponseCode::NoError,
                Duration::from_micros(20),
            );
        }
        t.source("zone");
        t.dropped();
        m.merge(&mut t);
        m.merge(&mut t);
        m.record_query(
            "tcp",
            RecordType::A,
            ResponseCode::NoError,
            Duration::from_secs(10),
        );
        let text = m.encode();
        for line in [
            "weft_dns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NOERROR\"} 2",
            "weft_dns_queries_total{transport=\"tcp\",qtype=\"A\",rcode=\"NOERROR\"} 1",
            "weft_dns_answers_by_source_total{source=\"zone\"} 1",
            "weft_dns_dropped_total 1",
            "weft_dns_request_duration_seconds_count 3",
            // 20 µs is in the 25 µs bucket; 10 s only in +Inf.
            "weft_dns_request_duration_seconds_bucket{le=\"0.000025\"} 2",
            "weft_dns_request_duration_seconds_bucket{le=\"+Inf\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
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
