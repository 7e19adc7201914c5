//! Prometheus metrics (prometheus-client) and health endpoints of the agent,
//! served by the agent's HTTP server ([`weft_kube::http`]): `/metrics`,
//! `/healthz` (every sync runner has succeeded within twice its maximum
//! interval; JSON body), `/livez`, `/readyz` (every feature synced once).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use weft_kube::Health;

use weft_kube::http::{Handler, Reply};

/// Label of the proxy's sync counter: what a sync wrote.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncKindLabel {
    /// `full` (whole table), `diff` (changed chains and elements), `unchanged`.
    pub kind: &'static str,
}

/// Labels of the flow-log counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabel {
    /// `allowed` or `denied`.
    pub verdict: String,
    /// `namespace/name` of the policy that allowed (ingress, else egress) or
    /// denied it; empty when no policy isolates either end.
    pub policy: String,
}

/// Why flow records were lost.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LostLabel {
    /// `bound` (pushed out of the full log) or `kernel` (not delivered).
    pub reason: String,
}

/// Labels of the per-policy packet counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PolicyPackets {
    /// `namespace/name`.
    pub policy: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `allowed` (by one of its rules) or `denied` (of the pods it isolates,
    /// counted on the first isolating policy by name).
    pub verdict: String,
}

/// A WireGuard peer, by its node's name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// What the WireGuard device says of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardPeerStats {
    pub node: String,
    /// Time since the last completed handshake; `None`: never.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Which implementation runs the WireGuard device.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImplementationLabel {
    pub implementation: String,
}

/// Backend wireguard's metrics (`weft_agent_wireguard_…`).
#[derive(Debug, Default)]
struct WireguardMetrics {
    implementation: Family<ImplementationLabel, Gauge>,
    peers_waiting: Gauge,
    /// Peers (node names) that never completed a handshake with this
    /// node's device: /readyz is 503 while there is one.
    waiting: Mutex<Vec<String>>,
    peers_with_handshake: Gauge,
    rotations: Counter,
    handshake_age: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    rx: Family<PeerLabel, Gauge>,
    tx: Family<PeerLabel, Gauge>,
}

/// A LoadBalancerIPPool, by name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

/// LoadBalancer metrics (`weft_agent_lb_…`).
#[derive(Debug, Default)]
struct LbMetrics {
    pool_used: Family<PoolLabel, Gauge>,
    pool_size: Family<PoolLabel, Gauge>,
    announced: Gauge,
    takeovers: Counter,
    arp_replies: Counter,
    gratuitous: Counter,
    leader: Gauge,
    assignments: Counter,
    failures: Counter,
    dead_announcers: Gauge,
}

/// Label of the isolated-pods gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

/// NetworkPolicy metrics (`weft_agent_policy_…`).
#[derive(Debug)]
struct PolicyMetrics {
    syncs: Family<SyncKindLabel, Counter>,
    errors: Counter,
    sync_seconds: Histogram,
    policies: Gauge,
    isolated: Family<DirectionLabel, Gauge>,
    rules: Gauge,
    elements: Gauge,
    packets: Family<PolicyPackets, Gauge>,
    conntrack_deleted: Counter,
}

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
    proxy_syncs: Family<SyncKindLabel, Counter>,
    proxy_errors: Counter,
    proxy_sync_seconds: Histogram,
    proxy_services: Gauge,
    proxy_service_ports: Gauge,
    proxy_endpoints: Gauge,
    proxy_health_check_ports: Gauge,
    proxy_conntrack_deleted: Counter,
    proxy_last_sync: Gauge<f64, AtomicU64>,
    proxy_last_error: Gauge<f64, AtomicU64>,
    policy: PolicyMetrics,
    wireguard: WireguardMetrics,
    lb: LbMetrics,
    /// Local pod addresses the last applied policy table was compiled with
    /// (`None`: policy not enforced here, or not synced yet: see
    /// `policy_enabled`).
    policy_programmed: std::sync::RwLock<Option<std::collections::HashSet<std::net::IpAddr>>>,
    policy_enabled: std::sync::atomic::AtomicBool,
    /// The sync runners /healthz and /readyz look at, by feature name.
    runners: Mutex<Vec<(&'static str, Health)>>,
    flows: Family<FlowLabel, Counter>,
    flows_lost: Family<LostLabel, Counter>,
    /// The flow log `/flows` serves, once the feature runs.
    flow_log: std::sync::OnceLock<Arc<crate::flows::FlowLog>>,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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

        let flows = Family::<FlowLabel, Counter>::default();
        let flows_lost = Family::<LostLabel, Counter>::default();
        registry.register(
            "flows",
            "Flows the flow log recorded, by verdict and policy",
            flows.clone(),
        );
        registry.register(
            "flow_records_lost",
            "Flow records lost: pushed out of the full log (bound) or not delivered by the kernel (kernel)",
            flows_lost.clone(),
        );

        let lb = LbMetrics::default();
        let l = registry.sub_registry_with_prefix("lb");
        l.register(
            "pool_addresses_used",
            "Addresses of a LoadBalancerIPPool held by Services",
            lb.pool_used.clone(),
        );
        l.register(
            "pool_addresses",
            "Usable addresses of a LoadBalancerIPPool",
            lb.pool_size.clone(),
        );
        l.register(
            "announced_addresses",
            "LoadBalancer addresses this node answers ARP for",
            lb.announced.clone(),
        );
        l.register(
            "takeovers",
            "LoadBalancer addresses this node took over from another node",
            lb.takeovers.clone(),
        );
        l.register(
            "arp_replies",
            "ARP requests for announced addresses answered",
            lb.arp_replies.clone(),
        );
        l.register(
            "gratuitous_arps",
            "Gratuitous ARP replies sent on taking an address",
            lb.gratuitous.clone(),
        );
        l.register(
            "allocator_leader",
            "1 while this agent holds the allocator lease",
            lb.leader.clone(),
        );
        l.register(
            "status_writes",
            "Service statuses written by this agent as allocator",
            lb.assignments.clone(),
        );
        l.register(
            "allocation_failures",
            "Failures to give a Service an address, reported as events",
            lb.failures.clone(),
        );
        l.register(
            "dead_announcers",
            "Nodes whose agent does not answer its liveness probe",
            lb.dead_announcers.clone(),
        );
        let wireguard = WireguardMetrics::default();
        let wg = registry.sub_registry_with_prefix("wireguard");
        wg.register(
            "implementation",
            "The implementation running the WireGuard device (1 for the one in use: kernel or userspace)",
            wireguard.implementation.clone(),
        );
        wg.register(
            "peers_waiting_first_handshake",
            "WireGuard peers that never completed a handshake with this node (/readyz is 503 while any)",
            wireguard.peers_waiting.clone(),
        );
        wg.register(
            "peers_with_handshake",
            "WireGuard peers (other nodes) with a completed handshake",
            wireguard.peers_with_handshake.clone(),
        );
        wg.register(
            "key_rotations",
            "Times this agent replaced the node's WireGuard key (asked on its Node)",
            wireguard.rotations.clone(),
        );
        wg.register(
            "peer_last_handshake_age_seconds",
            "Seconds since the last completed handshake with the peer (-1: never)",
            wireguard.handshake_age.clone(),
        );
        wg.register(
            "peer_receive_bytes",
            "Bytes received from the peer by the WireGuard device (as it counts them)",
            wireguard.rx.clone(),
        );
        wg.register(
            "peer_transmit_bytes",
            "Bytes sent to the peer by the WireGuard device (as it counts them)",
            wireguard.tx.clone(),
        );

        let proxy_syncs = Family::<SyncKindLabel, Counter>::default();
        let proxy_errors = Counter::default();
        // 1 ms … ~65 s: a full sync of tens of thousands of Services takes seconds.
        let proxy_sync_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let (proxy_services, proxy_service_ports, proxy_endpoints, proxy_health_check_ports) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        let proxy_conntrack_deleted = Counter::default();
        let proxy_last_sync = Gauge::<f64, AtomicU64>::default();
        let proxy_last_error = Gauge::<f64, AtomicU64>::default();
        let proxy = registry.sub_registry_with_prefix("proxy");
        proxy.register(
            "syncs",
            "Service proxy syncs that succeeded, by what they wrote",
            proxy_syncs.clone(),
        );
        proxy.register(
            "sync_errors",
            "Service proxy syncs that failed",
            proxy_errors.clone(),
        );
        proxy.register(
            "sync_duration_seconds",
            "Duration of successful Service proxy syncs (compile and write)",
            proxy_sync_seconds.clone(),
        );
        proxy.register(
            "services",
            "Services with at least one programmed port",
            proxy_services.clone(),
        );
        proxy.register(
            "service_ports",
            "Service ports programmed (per port, protocol and IP family)",
            proxy_service_ports.clone(),
        );
        proxy.register(
            "endpoints",
            "Endpoint chains programmed (an endpoint of a service port)",
            proxy_endpoints.clone(),
        );
        proxy.register(
            "health_check_ports",
            "healthCheckNodePorts served",
            proxy_health_check_ports.clone(),
        );
        proxy.register(
            "conntrack_deleted",
            "Stale UDP conntrack entries deleted",
            proxy_conntrack_deleted.clone(),
        );
        proxy.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last successful sync",
            proxy_last_sync.clone(),
        );
        proxy.register(
            "last_error_timestamp_seconds",
            "Unix time of the last failed sync (0: none)",
            proxy_last_error.clone(),
        );
        let policy = PolicyMetrics {
            syncs: Family::default(),
            errors: Counter::default(),
            // 1 ms … ~65 s.
            sync_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            policies: Gauge::default(),
            isolated: Family::default(),
            rules: Gauge::default(),
            elements: Gauge::default(),
            packets: Family::default(),
            conntrack_deleted: Counter::default(),
        };
        let pr = registry.sub_registry_with_prefix("policy");
        pr.register(
            "syncs",
            "NetworkPolicy syncs that succeeded, by what they wrote",
            policy.syncs.clone(),
        );
        pr.register(
            "sync_errors",
            "NetworkPolicy syncs that failed",
            policy.errors.clone(),
        );
        pr.register(
            "sync_duration_seconds",
            "Duration of successful NetworkPolicy syncs (resolve, compile and write)",
            policy.sync_seconds.clone(),
        );
        pr.register(
            "conntrack_deleted",
            "Conntrack entries of UDP flows deleted because a policy change denies them",
            policy.conntrack_deleted.clone(),
        );
        pr.register(
            "policies",
            "NetworkPolicies in the cluster",
            policy.policies.clone(),
        );
        pr.register(
            "isolated_pods",
            "Pods of this node isolated by at least one policy, by direction",
            policy.isolated.clone(),
        );
        pr.register(
            "rules",
            "Policy rules programmed on this node",
            policy.rules.clone(),
        );
        pr.register(
            "set_elements",
            "Elements of the policy table's sets and maps",
            policy.elements.clone(),
        );
        pr.register(
            "packets",
            "New connections counted by the kernel per policy: allowed by its rules, or denied for pods it isolates (read every 5 s)",
            policy.packets.clone(),
        );
        Metrics {
            registry,
            policy,
            wireguard,
            lb,
            policy_programmed: std::sync::RwLock::new(None),
            policy_enabled: std::sync::atomic::AtomicBool::new(false),
            syncs,
            errors,
            sync_seconds,
            last_sync_seconds,
            peers,
            routes,
            problems,
            ready,
            proxy_syncs,
            proxy_errors,
            proxy_sync_seconds,
            proxy_services,
            proxy_service_ports,
            proxy_endpoints,
            proxy_health_check_ports,
            proxy_conntrack_deleted,
            proxy_last_sync,
            proxy_last_error,
            runners: Mutex::new(Vec::new()),
            flows,
            flows_lost,
            flow_log: std::sync::OnceLock::new(),
        }
    }
}

/// What one successful policy sync did, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct PolicySyncReport {
    pub kind: &'static str,
    pub took: Duration,
    pub policies: usize,
    pub isolated_ingress: usize,
    pub isolated_egress: usize,
    pub rules: usize,
    pub elements: usize,
}

/// What one successful proxy sync did, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ProxySyncReport {
    pub kind: &'static str,
    pub took: Duration,
    pub services: usize,
    pub service_ports: usize,
    pub endpoints: usize,
    pub health_check_ports: usize,
}

impl Metrics {
    pub fn record_sync(&self, took: Duration, peers: usize, routes: usize) {
        self.syncs.inc();
        self.sync_seconds.observe(took.as_secs_f64());
        self.last_sync_seconds.set(took.as_secs_f64());
        self.peers.set(gauge(peers));
        self.routes.set(gauge(routes));
        self.ready.set(1);
    }

    /// The WireGuard device's peers now (replaces what was there: a peer
    /// that left is no longer reported).
    pub fn record_wireguard(&self, peers: &[WireguardPeerStats]) {
        let w = &self.wireguard;
        w.handshake_age.clear();
        w.rx.clear();
        w.tx.clear();
        for p in peers {
            let label = PeerLabel {
                peer: p.node.clone(),
            };
            w.handshake_age
                .get_or_create(&label)
                .set(p.last_handshake.map_or(-1.0, |d| d.as_secs_f64()));
            w.rx.get_or_create(&label)
                .set(i64::try_from(p.rx_bytes).unwrap_or(i64::MAX));
            w.tx.get_or_create(&label)
                .set(i64::try_from(p.tx_bytes).unwrap_or(i64::MAX));
        }
        w.peers_with_handshake.set(gauge(
            peers.iter().filter(|p| p.last_handshake.is_some()).count(),
        ));
    }

    /// LoadBalancer: usage of every pool (replaces what was there).
    pub fn record_lb_pools(&self, usage: &[(String, u128, u128)]) {
        self.lb.pool_used.clear();
        self.lb.pool_size.clear();
        let g = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
        for (pool, used, total) in usage {
            let label = PoolLabel { pool: pool.clone() };
            self.lb.pool_used.get_or_create(&label).set(g(*used));
            self.lb.pool_size.get_or_create(&label).set(g(*total));
        }
    }

    pub fn record_lb_announced(&self, n: usize, takeovers: usize, dead: usize) {
        self.lb.announced.set(gauge(n));
        self.lb.takeovers.inc_by(takeovers as u64);
        self.lb.dead_announcers.set(gauge(dead));
    }

    pub fn record_lb_arp(&self, replies: u64, gratuitous: u64) {
        self.lb.arp_replies.inc_by(replies);
        self.lb.gratuitous.inc_by(gratuitous);
    }

    pub fn record_lb_leader(&self, leader: bool) {
        self.lb.leader.set(i64::from(leader));
    }

    pub fn record_lb_writes(&self, writes: usize, failures: usize) {
        self.lb.assignments.inc_by(writes as u64);
        self.lb.failures.inc_by(failures as u64);
    }

    /// The implementation the WireGuard device runs on (replaces the last).
    pub fn record_wireguard_implementation(&self, implementation: &str) {
        let f = &self.wireguard.implementation;
        f.clear();
        f.get_or_create(&ImplementationLabel {
            implementation: implementation.to_string(),
        })
        .set(1);
    }

    /// The peers (node names) that never completed a handshake.
    pub fn record_wireguard_waiting(&self, mut peers: Vec<String>) {
        peers.sort();
        self.wireguard.peers_waiting.set(gauge(peers.len()));
        *self
            .wireguard
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = peers;
    }

    pub fn record_wireguard_rotation(&self) {
        self.wireguard.rotations.inc();
    }

    pub fn record_problems(&self, n: usize) {
        self.problems.set(gauge(n));
    }

    pub fn record_error(&self) {
        self.errors.inc();
    }

    pub fn record_proxy_sync(&self, r: &ProxySyncReport) {
        self.proxy_syncs
            .get_or_create(&SyncKindLabel { kind: r.kind })
            .inc();
        self.proxy_sync_seconds.observe(r.took.as_secs_f64());
        self.proxy_services.set(gauge(r.services));
        self.proxy_service_ports.set(gauge(r.service_ports));
        self.proxy_endpoints.set(gauge(r.endpoints));
        self.proxy_health_check_ports
            .set(gauge(r.health_check_ports));
        self.proxy_last_sync.set(unix_now());
    }

    pub fn record_proxy_error(&self) {
        self.proxy_errors.inc();
        self.proxy_last_error.set(unix_now());
    }

    pub fn record_policy_sync(&self, r: &PolicySyncReport) {
        let p = &self.policy;
        p.syncs.get_or_create(&SyncKindLabel { kind: r.kind }).inc();
        p.sync_seconds.observe(r.took.as_secs_f64());
        p.policies.set(gauge(r.policies));
        p.isolated
            .get_or_create(&DirectionLabel {
                direction: "ingress",
            })
            .set(gauge(r.isolated_ingress));
        p.isolated
            .get_or_create(&DirectionLabel {
                direction: "egress",
            })
            .set(gauge(r.isolated_egress));
        p.rules.set(gauge(r.rules));
        p.elements.set(gauge(r.elements));
    }

    pub fn record_policy_conntrack_deleted(&self, n: usize) {
        self.policy
            .conntrack_deleted
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The policy feature runs here: `/policy/pods/…` answers.
    pub fn enable_policy(&self) {
        self.policy_enabled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The local pod addresses the table just applied was compiled with.
    pub fn record_policy_programmed(&self, ips: std::collections::HashSet<std::net::IpAddr>) {
        if let Ok(mut p) = self.policy_programmed.write() {
            *p = Some(ips);
        }
    }

    /// `/policy/pods/<ip>`: 200 once the applied policy table accounts for
    /// the local pod at `ip`, 503 until then, 404 when this agent does not
    /// enforce policy (the node runtime then does not wait).
    fn policy_pod(&self, ip: &str) -> Reply {
        if !self
            .policy_enabled
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Reply::text(
                StatusCode::NOT_FOUND,
                "network policy is not enforced by this agent\n",
            );
        }
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return Reply::text(
                StatusCode::BAD_REQUEST,
                format!("{ip:?} is not an IP address\n"),
            );
        };
        let programmed = self
            .policy_programmed
            .read()
            .map(|p| p.as_ref().is_some_and(|s| s.contains(&ip)))
            .unwrap_or(false);
        if programmed {
            Reply::text(StatusCode::OK, "programmed\n")
        } else {
            Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not in the policy table yet\n",
            )
        }
    }

    /// One flow recorded.
    pub fn record_flow(&self, verdict: &str, policy: &str) {
        self.flows
            .get_or_create(&FlowLabel {
                verdict: verdict.to_string(),
                policy: policy.to_string(),
            })
            .inc();
    }

    /// `n` flow records lost for `reason`.
    pub fn record_flows_lost(&self, reason: &str, n: u64) {
        self.flows_lost
            .get_or_create(&LostLabel {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// Serves `log` at `/flows`.
    pub fn serve_flow_log(&self, log: Arc<crate::flows::FlowLog>) {
        let _ = self.flow_log.set(log);
    }

    fn flow_page(&self, after: &str) -> Reply {
        let Some(log) = self.flow_log.get() else {
            return Reply::text(
                StatusCode::NOT_FOUND,
                "the flow log is off on this agent (--flow-log=false)\n",
            );
        };
        let after = if after.is_empty() {
            0
        } else {
            match after.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    return Reply::text(
                        StatusCode::BAD_REQUEST,
                        format!("/flows/after/{after}: not a record number\n"),
                    )
                }
            }
        };
        match serde_json::to_string(&log.page(after)) {
            Ok(body) => Reply::new(StatusCode::OK, "application/json", body + "\n"),
            Err(e) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }

    pub fn record_policy_error(&self) {
        self.policy.errors.inc();
    }

    /// Replaces the per-policy packet counts (policies gone disappear).
    pub fn record_policy_packets(&self, counts: std::collections::BTreeMap<PolicyPackets, u64>) {
        self.policy.packets.clear();
        for (k, n) in counts {
            self.policy
                .packets
                .get_or_create(&k)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn record_conntrack_deleted(&self, n: usize) {
        self.proxy_conntrack_deleted
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Adds a feature's sync runner to /healthz and /readyz.
    pub fn watch_runner(&self, feature: &'static str, health: Health) {
        self.lock_runners().push((feature, health));
    }

    fn lock_runners(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Health)>> {
        // The list is only pushed to; a panic cannot leave it half-written.
        self.runners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every feature has synced at least once, and (backend wireguard)
    /// every peer has completed a handshake once.
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`Metrics::ready`], with what is missing when not.
    pub fn readiness(&self) -> Result<(), String> {
        {
            let runners = self.lock_runners();
            let pending: Vec<&str> = runners
                .iter()
                .filter(|(_, h)| h.outcomes().last_success.is_none())
                .map(|(name, _)| *name)
                .collect();
            if runners.is_empty() {
                return Err("not synced yet".to_string());
            }
            if !pending.is_empty() {
                return Err(format!("not synced yet: {}", pending.join(", ")));
            }
        }
        let waiting = self
            .wireguard
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !waiting.is_empty() {
            return Err(format!(
                "waiting for a first WireGuard handshake with {}",
                waiting.join(", ")
            ));
        }
        Ok(())
    }

    /// /healthz: per feature, healthy or not, and the last error.
    pub fn health(&self, now: Instant) -> (bool, serde_json::Value) {
        let runners = self.lock_runners();
        let mut all = true;
        let mut features = serde_json::Map::new();
        for (name, h) in runners.iter() {
            let healthy = h.healthy(now);
            all &= healthy;
            let o = h.outcomes();
            let ago = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
            features.insert(
                (*name).to_string(),
                serde_json::json!({
                    "healthy": healthy,
                    "syncs": o.runs,
                    "failures": o.failures,
                    "consecutiveFailures": o.consecutive_failures,
                    "lastSuccessSecondsAgo": o.last_success.map(ago),
                    "lastError": o.last_error.as_ref().map(|(_, e)| e.clone()),
                    "lastErrorSecondsAgo": o.last_error.as_ref().map(|(t, _)| ago(*t)),
                }),
            );
        }
        (
            all,
            serde_json::json!({"healthy": all, "features": features}),
        )
    }

    /// OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The handler of the metrics server.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let m = self.clone();
        Arc::new(move |method, path| respond(method, path, &m, Instant::now()))
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request (pure but for `now`).
pub fn respond(method: &Method, path: &str, metrics: &Metrics, now: Instant) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match path {
        "/metrics" => Reply::new(StatusCode::OK, OPENMETRICS, metrics.render()),
        "/healthz" => {
            let (healthy, body) = metrics.health(now);
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Reply::new(status, "application/json", format!("{body}\n"))
        }
        "/livez" => Reply::text(StatusCode::OK, "ok\n"),
        "/readyz" => match metrics.readiness() {
            Ok(()) => Reply::text(StatusCode::OK, "ok\n"),
            Err(why) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        p if p.starts_with("/policy/pods/") => metrics.policy_pod(&p["/policy/pods/".len()..]),
        "/flows" => metrics.flow_page(""),
        p if p.starts_with("/flows/after/") => metrics.flow_page(&p["/flows/after/".len()..]),
        _ => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the endpoints until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    weft_kube::http::serve(listener, metrics.handler(), "metrics").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_kube::{Bounds, SyncRunner};

    fn now() -> Instant {
        Instant::now()
    }

    fn runner(max: Duration) -> SyncRunner {
        SyncRunner::new(
            "t",
            Bounds {
                max_interval: max,
                ..Bounds::default()
            },
        )
    }

    #[test]
    fn readiness_waits_for_every_runner_to_succeed_once() {
        let m = Metrics::default();
        assert_eq!(respond(&Method::GET, "/readyz", &m, now()).status, 503);
        // A registered runner that has not run: still not ready.
        m.watch_runner("overlay", runner(Duration::from_secs(30)).health());
        assert_eq!(respond(&Method::GET, "/readyz", &m, now()).status, 503);
    }

    #[tokio::test]
    async fn readiness_waits_for_a_first_handshake_with_every_wireguard_peer() {
        let m = Metrics::default();
        let r = runner(Duration::from_secs(30));
        let health = r.health();
        m.watch_runner("overlay", health.clone());
        let gate = weft_kube::Gate::new([]);
        let run = tokio::spawn(async move { r.run(&gate, async || Ok::<(), String>(())).await });
        while health.outcomes().last_success.is_none() {
            tokio::task::yield_now().await;
        }
        run.abort();
        assert_eq!(respond(&Method::GET, "/readyz", &m, now()).status, 200);
        m.record_wireguard_waiting(vec!["node-3".into(), "node-2".into()]);
        let r503 = respond(&Method::GET, "/readyz", &m, now());
        assert_eq!(r503.status, 503);
        assert_eq!(
            r503.body,
            "waiting for a first WireGuard handshake with node-2, node-3\n"
        );
        assert!(m
            .render()
            .contains("weft_agent_wireguard_peers_waiting_first_handshake 2"));
        m.record_wireguard_waiting(Vec::new());
        assert_eq!(respond(&Method::GET, "/readyz", &m, now()).status, 200);
        m.record_wireguard_implementation("userspace");
        assert!(m
            .render()
            .contains("weft_agent_wireguard_implementation{implementation=\"userspace\"} 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_is_503_when_a_runner_had_no_success_in_twice_its_max_interval() {
        let m = Metrics::default();
        m.watch_runner("proxy", runner(Duration::from_secs(1)).health());
        let r = respond(&Method::GET, "/healthz", &m, now());
        assert_eq!(r.status, 200, "{}", r.body);
        tokio::time::advance(Duration::from_millis(2100)).await;
        let r = respond(&Method::GET, "/healthz", &m, now());
        assert_eq!(r.status, 503, "{}", r.body);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["healthy"], false);
        assert_eq!(body["features"]["proxy"]["healthy"], false);
        assert_eq!(r.content_type, "application/json");
    }

    #[test]
    fn metrics_render_counters_gauges_and_the_sync_histogram() {
        let m = Metrics::default();
        m.record_sync(Duration::from_millis(3), 2, 2);
        m.record_error();
        m.record_problems(1);
        let r = respond(&Method::GET, "/metrics", &m, now());
        let body = r.body;
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("application/openmetrics-text"));
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
    fn proxy_metrics_count_syncs_by_kind_and_what_is_programmed() {
        let m = Metrics::default();
        let report = ProxySyncReport {
            kind: "full",
            took: Duration::from_millis(5),
            services: 3,
            service_ports: 4,
            endpoints: 7,
            health_check_ports: 1,
        };
        m.record_proxy_sync(&report);
        m.record_proxy_sync(&ProxySyncReport {
            kind: "diff",
            ..report
        });
        m.record_proxy_error();
        m.record_conntrack_deleted(2);
        let body = m.render();
        for want in [
            "weft_agent_proxy_syncs_total{kind=\"full\"} 1\n",
            "weft_agent_proxy_syncs_total{kind=\"diff\"} 1\n",
            "weft_agent_proxy_sync_errors_total 1\n",
            "weft_agent_proxy_sync_duration_seconds_count 2\n",
            "weft_agent_proxy_services 3\n",
            "weft_agent_proxy_service_ports 4\n",
            "weft_agent_proxy_endpoints 7\n",
            "weft_agent_proxy_health_check_ports 1\n",
            "weft_agent_proxy_conntrack_deleted_total 2\n",
        ] {
            assert!(body.contains(want), "missing {want:?} in\n{body}");
        }
        assert!(
            !body.contains("weft_agent_proxy_last_error_timestamp_seconds 0.0"),
            "{body}"
        );
    }

    #[test]
    fn only_get_on_known_paths() {
        let m = Metrics::default();
        assert_eq!(respond(&Method::POST, "/metrics", &m, now()).status, 405);
        assert_eq!(respond(&Method::GET, "/nope", &m, now()).status, 404);
        assert_eq!(respond(&Method::GET, "/livez", &m, now()).status, 200);
    }

    #[tokio::test]
    async fn the_server_answers_over_http_and_survives_garbage() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::default());
        let server = tokio::spawn(serve(listener, m));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A malformed request gets an error response, not a dead server.
        let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
        bad.write_all(b"\x00\x01 garbage\r\n\r\n").await.unwrap();
        let mut junk = Vec::new();
        let _ = bad.read_to_end(&mut junk).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("ok\n"), "{out}");
        server.abort();
    }

    #[test]
    fn policy_pods_answers_404_503_then_200_as_the_table_accounts_for_the_pod() {
        let m = Metrics::default();
        let path = "/policy/pods/10.244.0.7";
        assert_eq!(
            respond(&Method::GET, path, &m, now()).status,
            404,
            "not enforced"
        );
        m.enable_policy();
        assert_eq!(
            respond(&Method::GET, path, &m, now()).status,
            503,
            "no sync yet"
        );
        m.record_policy_programmed(["10.244.0.8".parse().unwrap()].into());
        assert_eq!(respond(&Method::GET, path, &m, now()).status, 503);
        m.record_policy_programmed(["10.244.0.7".parse().unwrap()].into());
        assert_eq!(respond(&Method::GET, path, &m, now()).status, 200);
        assert_eq!(
            respond(&Method::GET, "/policy/pods/nope", &m, now()).status,
            400
        );
    }
}
