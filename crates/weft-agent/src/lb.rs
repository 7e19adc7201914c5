//! LoadBalancer addresses, the agent's half (weft-lb is the pure half):
//! Services of `type: LoadBalancer` get addresses from LoadBalancerIPPools,
//! and one node answers ARP for each, as MetalLB does in L2 mode.
//!
//! - **Allocation**: one agent at a time holds the Lease
//!   `weft-lb-allocator` (coordination.k8s.io, in the agent's namespace)
//!   and writes what [`weft_lb::allocate`] says into each Service's
//!   `status.loadBalancer.ingress`, with a condition
//!   [`CONDITION`] and an Event when a Service gets an address or cannot
//!   (pool exhausted, address taken, no pool matches). It also clears the
//!   addresses of a Service that stopped being a LoadBalancer of weft's.
//!   The Lease is taken as client-go's leader election takes one: a record
//!   that nobody renewed for its whole duration, as seen by this agent's
//!   own clock, is free (no clock comparison between nodes).
//! - **Announcement**: every agent computes [`weft_lb::announcers`] from
//!   the same objects — over the addresses published in the Services'
//!   status only, so no address is announced before the proxy programs
//!   it — and answers ARP on its underlay for the addresses it won
//!   (`weft_linux::arp`), sending gratuitous ARP when it takes one.
//! - **Failure detection**: a node whose agent died keeps its Ready
//!   condition for as long as the node runtime heartbeats, and would keep
//!   an address nobody answers for. So each agent probes the agents of the
//!   nodes announcing addresses (a TCP connect to their metrics port every
//!   [`PROBE_INTERVAL`]); [`PROBE_MISSES`] failures in a row count the node
//!   out of the announcer choice until a probe succeeds again. Only the
//!   announcers are probed, so the work grows with the addresses, not the
//!   nodes squared.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use weft_controllers::events::{Events, Record};
use weft_kube::{Bounds, Gate, Selector, Store, SyncRunner, Trigger, Watches};
use weft_lb::{Allocation, Failure, NodeInfo, Pool, ServiceKey};
use weft_linux::arp::{self, ArpSocket, Op};

use crate::metrics::Metrics;

/// The Lease naming the allocating agent.
pub const LEASE_NAME: &str = "weft-lb-allocator";
/// How long a Lease nobody renews stays held.
pub const LEASE_DURATION: Duration = Duration::from_secs(10);
/// How often the holder renews it (and the others look at it).
pub const LEASE_RENEW: Duration = Duration::from_secs(2);
/// The Service condition the allocator keeps.
pub const CONDITION: &str = "weft.dev/LoadBalancerAddress";
/// How often an announcing node's agent is probed, and how many failures in
/// a row count it out: 3 × 200 ms, with the 300 ms connect timeout, leaves
/// a new announcer well within 2 s of an agent's death.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
pub const PROBE_MISSES: u32 = 3;
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Gratuitous ARP after taking an address: at once and again, for a
/// neighbour that missed the first.
const GARP_AFTER: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// The LB sync: at most every 50 ms (a takeover must be quick), at least
/// every 30 s, retried after 1 s.
const LB_SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(50),
    max_interval: Duration::from_secs(30),
    retry_interval: Duration::from_secs(1),
    retry_max_interval: Duration::from_secs(30),
};

/// The LoadBalancerIPPool resource, as the stores hold it (the spec is read
/// by [`weft_lb::parse_pool`], which names what is wrong in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadBalancerIPPool {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}

impl kube::Resource for LoadBalancerIPPool {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(weft_lb::POOL_KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(weft_lb::GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(weft_lb::VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(weft_lb::POOL_PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the LB feature needs of its node.
#[derive(Debug, Clone)]
pub struct LbNode {
    pub name: String,
    /// The namespace of the allocator Lease (the agent's own).
    pub namespace: String,
    /// The underlay interface ARP is answered on, and its MAC.
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The agents' metrics port, probed for liveness on other nodes.
    pub probe_port: u16,
}

/// Runs the feature until an error stops it.
pub async fn run(
    watches: &Watches,
    client: kube::Client,
    node: LbNode,
    metrics: Arc<Metrics>,
) -> Result<()> {
    let services = watches.store::<Service>(Selector::all());
    let slices = watches.store::<EndpointSlice>(Selector::all());
    let nodes = watches.store::<Node>(Selector::all());
    let pools = watches.store::<LoadBalancerIPPool>(Selector::all());
    let gate = Gate::new([
        services.readiness(),
        slices.readiness(),
        nodes.readiness(),
        pools.readiness(),
    ]);
    let mut runner = SyncRunner::new("lb", LB_SYNC);
    runner.follow(services.changes());
    runner.follow(slices.changes());
    runner.follow(nodes.changes());
    runner.follow(pools.changes());

    let socket = ArpSocket::open(node.ifindex)
        .with_context(|| format!("open an ARP socket on interface #{}", node.ifindex))?;
    let (announce_tx, announce_rx) = watch::channel(BTreeSet::new());
    let (probe_tx, probe_rx) = watch::channel(BTreeMap::new());
    let dead = Arc::new(Mutex::new(BTreeSet::new()));
    let leader = Arc::new(AtomicBool::new(false));

    let lease = lease_loop(
        Api::namespaced(client.clone(), &node.namespace),
        node.name.clone(),
        leader.clone(),
        runner.trigger(),
        metrics.clone(),
    );
    let probe = probe_loop(probe_rx, dead.clone(), runner.trigger());
    let answer = arp_loop(socket, node.mac, announce_rx, metrics.clone());
    let mut sync = LbSync {
        node: node.clone(),
        services,
        slices,
        nodes,
        pools,
        api: client.clone(),
        events: Events::new(client, "weft-lb"),
        leader,
        dead,
        announce: announce_tx,
        probe: probe_tx,
        metrics,
        last_announcers: BTreeMap::new(),
        reported: HashMap::new(),
        bad_pools: BTreeMap::new(),
    };
    let sync_task = async move {
        let Err(e) = runner.run(&gate, async move || sync.sync().await).await;
        Err::<(), _>(e).context("LoadBalancer sync")
    };
    tokio::try_join!(sync_task, lease, probe, answer).map(|_| ())
}

struct LbSync {
    node: LbNode,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pools: Store<LoadBalancerIPPool>,
    api: kube::Client,
    events: Events,
    leader: Arc<AtomicBool>,
    /// Nodes whose agent failed its probes.
    dead: Arc<Mutex<BTreeSet<String>>>,
    /// The addresses this node answers for.
    announce: watch::Sender<BTreeSet<Ipv4Addr>>,
    /// The agents to probe: node name → its address.
    probe: watch::Sender<BTreeMap<String, SocketAddr>>,
    metrics: Arc<Metrics>,
    last_announcers: BTreeMap<IpAddr, String>,
    /// The last outcome reported per Service (as allocator): an Event is
    /// sent when it changes.
    reported: HashMap<ServiceKey, String>,
    /// Pools that do not parse, with the reason last logged.
    bad_pools: BTreeMap<String, String>,
}

fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn internal_ip(n: &Node) -> Option<IpAddr> {
    n.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

/// The allocation restricted to what is published: each Service's
/// assigned addresses that its status already lists.
fn published(alloc: &Allocation, services: &[Service]) -> Allocation {
    let held: HashMap<ServiceKey, Vec<IpAddr>> = services
        .iter()
        .filter_map(|s| Some((ServiceKey::of(s)?, ingress_ips(s))))
        .collect();
    let mut out = alloc.clone();
    out.assigned.retain(|k, a| {
        let ips = held.get(k).map(Vec::as_slice).unwrap_or(&[]);
        a.ips.retain(|ip| ips.contains(ip));
        !a.ips.is_empty()
    });
    out
}

impl LbSync {
    async fn sync(&mut self) -> Result<()> {
        let mut pools: Vec<Pool> = Vec::new();
        let mut bad = BTreeMap::new();
        for p in self.pools.state() {
            let obj = serde_json::to_value(&*p)?;
            match weft_lb::parse_pool(&obj) {
                Ok(pool) => pools.push(pool),
                Err(e) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if self.bad_pools.get(&name) != Some(&e.to_string()) {
                        tracing::warn!(pool = %name, error = %e, "LoadBalancerIPPool left out");
                    }
                    bad.insert(name, e.to_string());
                }
            }
        }
        self.bad_pools = bad;
        let services: Vec<Service> = self
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let alloc = weft_lb::allocate(&pools, &services);
        self.metrics.record_lb_pools(
            &alloc
                .usage
                .iter()
                .map(|(p, u)| (p.clone(), u.used, u.total))
                .collect::<Vec<_>>(),
        );
        let written = if self.leader.load(Ordering::Relaxed) {
            self.write_statuses(&pools, &alloc, &services).await
        } else {
            Ok(())
        };
        self.announce(&pools, &alloc, &services);
        written
    }

    /// Which addresses this node answers for, from the published allocation;
    /// which agents to probe.
    fn announce(&mut self, pools: &[Pool], alloc: &Allocation, services: &[Service]) {
        let published = published(alloc, services);
        let slices: Vec<EndpointSlice> =
            self.slices.state().iter().map(|s| (**s).clone()).collect();
        let nodes = self.nodes.state();
        let dead = self.dead.lock().map(|d| d.clone()).unwrap_or_default();
        let infos = |with_dead: bool| -> Vec<NodeInfo> {
            nodes
                .iter()
                .filter_map(|n| {
                    let name = n.metadata.name.clone()?;
                    let ready = node_ready(n) && (with_dead || !dead.contains(&name));
                    Some(NodeInfo {
                        labels: n.metadata.labels.clone().unwrap_or_default(),
                        ready,
                        name,
                    })
                })
                .collect()
        };
        let chosen = weft_lb::announcers(&published, pools, services, &slices, &infos(false));
        // The agents to watch: who would announce were every agent alive
        // (a dead one is probed until it answers again), and who does.
        let alive = weft_lb::announcers(&published, pools, services, &slices, &infos(true));
        let targets: BTreeMap<String, SocketAddr> = alive
            .values()
            .chain(chosen.values())
            .map(|a| a.node.clone())
            .filter(|n| *n != self.node.name)
            .filter_map(|name| {
                let ip = internal_ip(
                    nodes
                        .iter()
                        .find(|n| n.metadata.name.as_ref() == Some(&name))?,
                )?;
                Some((name, SocketAddr::new(ip, self.node.probe_port)))
            })
            .collect();
        self.probe.send_if_modified(|t| {
            let changed = *t != targets;
            *t = targets;
            changed
        });

        let mine: BTreeSet<Ipv4Addr> = chosen
            .iter()
            .filter(|(_, a)| a.node == self.node.name)
            .filter_map(|(ip, _)| match ip {
                IpAddr::V4(v4) => Some(*v4),
                // IPv6 (NDP) is not answered yet: the embedded cluster is
                // IPv4-only.
                IpAddr::V6(_) => None,
            })
            .collect();
        let takeovers = mine
            .iter()
            .filter(|ip| {
                self.last_announcers
                    .get(&IpAddr::V4(**ip))
                    .is_some_and(|n| *n != self.node.name)
            })
            .count();
        for ip in &mine {
            if self.last_announcers.get(&IpAddr::V4(*ip)) != Some(&self.node.name) {
                tracing::info!(address = %ip, takeover = takeovers > 0, "announcing");
            }
        }
        self.metrics
            .record_lb_announced(mine.len(), takeovers, dead.len());
        self.last_announcers = chosen.into_iter().map(|(ip, a)| (ip, a.node)).collect();
        self.announce.send_if_modified(|m| {
            let changed = *m != mine;
            *m = mine;
            changed
        });
    }

    /// As allocator: every Service's status made equal to the allocation,
    /// and what changed reported.
    async fn write_statuses(
        &mut self,
        pools: &[Pool],
        alloc: &Allocation,
        services: &[Service],
    ) -> Result<()> {
        let mut writes = 0;
        let mut failures = 0;
        let mut errors = Vec::new();
        for svc in services {
            let Some(key) = ServiceKey::of(svc) else {
                continue;
            };
            let current = ingress_ips(svc);
            let wants = weft_lb::wants_address(svc);
            // A Service that stopped being weft's LoadBalancer keeps
            // addresses of ours only until now.
            let theirs = !wants
                && (current.is_empty()
                    || !current
                        .iter()
                        .all(|ip| pools.iter().any(|p| p.contains(*ip)))
                    || svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.load_balancer_class.as_deref())
                        .is_some_and(|c| c != weft_lb::LB_CLASS));
            if theirs {
                self.reported.remove(&key);
                continue;
            }
            let assigned = alloc.assigned.get(&key).filter(|_| wants);
            let failure = alloc.failed.get(&key).filter(|_| wants);
            let want: Vec<IpAddr> = assigned.map(|a| a.ips.clone()).unwrap_or_default();
            let condition = condition(svc, assigned, failure);
            let condition_same = svc
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| {
                    c.type_ == CONDITION
                        && c.status == condition["status"]
                        && c.reason == condition["reason"]
                        && c.message == condition["message"]
                });
            if current != want || (wants && !condition_same) {
                let mut patch = weft_lb::status_patch(assigned);
                if wants {
                    patch["status"]["conditions"] = conditions_with(svc, condition);
                } else {
                    patch["status"]["conditions"] = conditions_without(svc);
                }
                let api: Api<Service> = Api::namespaced(self.api.clone(), &key.namespace);
                match api
                    .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => writes += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => continue,
                    Err(e) => {
                        errors.push(format!("Service {key}: {e}"));
                        continue;
                    }
                }
            }
            if !wants {
                self.reported.remove(&key);
                continue;
            }
            let (warning, reason, note) = match (assigned, failure) {
                (Some(a), _) => (
                    false,
                    "IPAllocated",
                    format!(
                        "Assigned {} from LoadBalancerIPPool {}",
                        join(&a.ips),
                        a.pool
                    ),
                ),
                (None, Some(f)) => (true, f.reason(), f.to_string()),
                (None, None) => continue,
            };
            if self.reported.get(&key) == Some(&note) {
                continue;
            }
            if warning {
                failures += 1;
                tracing::warn!(service = %key, reason, note = %note, "no LoadBalancer address");
            } else {
                tracing::info!(service = %key, note = %note, "LoadBalancer address assigned");
            }
            self.events
                .publish(Record {
                    regarding: weft_controllers::events::reference(svc),
                    related: None,
                    warning,
                    reason,
                    action: "Allocate",
                    note: note.clone(),
                })
                .await;
            self.reported.insert(key, note);
        }
        let live: BTreeSet<ServiceKey> = services.iter().filter_map(ServiceKey::of).collect();
        self.reported.retain(|k, _| live.contains(k));
        self.metrics.record_lb_writes(writes, failures);
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("writing Service statuses: {}", errors.join("; "))
        }
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The [`CONDITION`] of a Service as the allocation has it (its transition
/// time kept when its status does not change).
fn condition(
    svc: &Service,
    assigned: Option<&weft_lb::Assignment>,
    failure: Option<&Failure>,
) -> Value {
    let (status, reason, message) = match (assigned, failure) {
        (Some(a), _) => (
            "True",
            "Assigned".to_string(),
            format!("{} from LoadBalancerIPPool {}", join(&a.ips), a.pool),
        ),
        (None, Some(f)) => ("False", f.reason().to_string(), f.to_string()),
        (None, None) => (
            "False",
            "Pending".to_string(),
            "not allocated yet".to_string(),
        ),
    };
    let old = svc
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == CONDITION);
    let since = match old {
        Some(c) if c.status == status => serde_json::to_value(&c.last_transition_time).ok(),
        _ => None,
    }
    .unwrap_or_else(|| {
        json!(k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .ok())
    });
    json!({
        "type": CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": svc.metadata.generation.unwrap_or(0),
    })
}

fn other_conditions(svc: &Service) -> Vec<Value> {
    svc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != CONDITION)
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect()
}

/// The Service's conditions with [`CONDITION`] set to `ours` (a merge
/// patch replaces the whole list).
fn conditions_with(svc: &Service, ours: Value) -> Value {
    let mut all = other_conditions(svc);
    all.push(ours);
    Value::Array(all)
}

fn conditions_without(svc: &Service) -> Value {
    Value::Array(other_conditions(svc))
}

/// Holds or watches the allocator Lease; `leader` says which, and a change
/// of it runs the sync.
async fn lease_loop(
    api: Api<Lease>,
    me: String,
    leader: Arc<AtomicBool>,
    trigger: Trigger,
    metrics: Arc<Metrics>,
) -> Result<()> {
    // The last record seen (holder, renew time, resourceVersion) and when
    // this agent first saw it.
    let mut seen: Option<(String, Instant)> = None;
    let mut tick = tokio::time::interval(LEASE_RENEW);
    loop {
        tick.tick().await;
        let held = match try_lease(&api, &me, &mut seen).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), lease = LEASE_NAME, "allocator lease");
                false
            }
        };
        if leader.swap(held, Ordering::Relaxed) != held {
            tracing::info!(lease = LEASE_NAME, held, "LoadBalancer allocator lease");
            metrics.record_lb_leader(held);
            trigger.trigger();
        }
    }
}

/// One look at the Lease: renews it when this agent holds it, takes it
/// when it is free (absent, or not renewed for its duration as seen
/// here); whether this agent holds it now.
async fn try_lease(
    api: &Api<Lease>,
    me: &str,
    seen: &mut Option<(String, Instant)>,
) -> Result<bool> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let spec = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                ..Default::default()
            },
            spec: Some(spec(None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e).context("create the Lease"),
        };
    };
    let old = lease.spec.clone().unwrap_or_default();
    let holder = old.holder_identity.clone().unwrap_or_default();
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let record = format!("{holder}\0{version}");
    let fresh = match seen {
        Some((r, _)) if *r == record => false,
        _ => {
            *seen = Some((record, Instant::now()));
            true
        }
    };
    let duration = Duration::from_secs(old.lease_duration_seconds.unwrap_or(10).max(1) as u64);
    let expired = !fresh
        && seen
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= duration);
    if holder != me && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let transitions = old.lease_transitions.unwrap_or(0) + i32::from(holder != me);
    let acquired = (holder == me).then_some(old.acquire_time).flatten();
    lease.spec = Some(spec(acquired, transitions));
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(l) => {
            let version = l.metadata.resource_version.unwrap_or_default();
            *seen = Some((format!("{me}\0{version}"), Instant::now()));
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e).context("renew the Lease"),
    }
}

/// Probes the agents of `targets` for liveness; updates `dead` and runs the
/// sync when it changes.
async fn probe_loop(
    mut targets: watch::Receiver<BTreeMap<String, SocketAddr>>,
    dead: Arc<Mutex<BTreeSet<String>>>,
    trigger: Trigger,
) -> Result<()> {
    let mut misses: BTreeMap<String, u32> = BTreeMap::new();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = targets.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tick.tick() => {}
        }
        let now: BTreeMap<String, SocketAddr> = targets.borrow().clone();
        let mut probes = tokio::task::JoinSet::new();
        for (name, addr) in now.clone() {
            probes.spawn(async move {
                let ok = matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                (name, ok)
            });
        }
        let results: Vec<(String, bool)> = probes.join_all().await;
        misses.retain(|n, _| now.contains_key(n));
        let mut changed = false;
        if let Ok(mut dead) = dead.lock() {
            dead.retain(|n| now.contains_key(n));
            for (name, ok) in results {
                let m = misses.entry(name.clone()).or_default();
                *m = if ok { 0 } else { m.saturating_add(1) };
                let is_dead = *m >= PROBE_MISSES;
                if is_dead && dead.insert(name.clone()) {
                    tracing::warn!(node = %name, misses = *m, "node's agent does not answer: its LoadBalancer addresses move");
                    changed = true;
                } else if !is_dead && dead.remove(&name) {
                    tracing::info!(node = %name, "node's agent answers again");
                    changed = true;
                }
            }
        }
        if changed {
            trigger.trigger();
        }
    }
}

/// Answers ARP requests for the addresses in `announced`, and sends
/// gratuitous ARP for each one it gains.
async fn arp_loop(
    socket: ArpSocket,
    mac: [u8; 6],
    mut announced: watch::Receiver<BTreeSet<Ipv4Addr>>,
    metrics: Arc<Metrics>,
) -> Result<()> {
    // SAFETY: the AsyncFd owns the socket, so the descriptor stays open for
    // as long as it is registered.
    #[allow(unsafe_code)]
    let fd = unsafe { AsyncFd::register(socket) }
        .map_err(|e| anyhow::anyhow!("register the ARP socket: {e}"))?;
    let mut current: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut garps: Vec<(tokio::time::Instant, Ipv4Addr)> = Vec::new();
    let mut buf = [0u8; 1600];
    loop {
        let next = garps
            .iter()
            .map(|(t, _)| *t)
            .min()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            changed = announced.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let new = announced.borrow_and_update().clone();
                let now = tokio::time::Instant::now();
                for ip in new.difference(&current) {
                    for after in GARP_AFTER {
                        garps.push((now + after, *ip));
                    }
                }
                garps.retain(|(_, ip)| new.contains(ip));
                current = new;
            }
            _ = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                let mut sent = 0;
                garps.retain(|(t, ip)| {
                    if *t > now {
                        return true;
                    }
                    match fd.get_ref().send(&arp::gratuitous(*ip, mac)) {
                        Ok(()) => sent += 1,
                        Err(e) => tracing::warn!(address = %ip, error = %e, "gratuitous ARP"),
                    }
                    false
                });
                metrics.record_lb_arp(0, sent);
            }
            guard = fd.readable() => {
                let mut guard = guard.context("ARP socket")?;
                let mut replies = 0;
                loop {
                    match guard.try_io(|s| s.get_ref().recv(&mut buf)) {
                        Ok(Ok(Some(n))) => {
                            let Ok(p) = arp::parse(&buf[..n]) else { continue };
                            if p.op == Op::Request
                                && p.sender_mac != mac
                                && current.contains(&p.target_ip)
                            {
                                match fd.get_ref().send(&arp::reply_to(&p, mac)) {
                                    Ok(()) => replies += 1,
                                    Err(e) => tracing::warn!(address = %p.target_ip, error = %e, "ARP reply"),
                                }
                            }
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "ARP socket receive");
                            break;
                        }
                        Err(_would_block) => break,
                    }
                }
                metrics.record_lb_arp(replies, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    fn svc(name: &str, ips: &[&str]) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("default".into());
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        });
        s
    }

    #[test]
    fn only_addresses_a_service_status_lists_are_announced() {
        let mut alloc = Allocation::default();
        let a = |ips: &[&str]| weft_lb::Assignment {
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            pool: "default".into(),
        };
        alloc
            .assigned
            .insert(ServiceKey::new("default", "web"), a(&["203.0.113.2"]));
        alloc
            .assigned
            .insert(ServiceKey::new("default", "new"), a(&["203.0.113.3"]));
        let services = [svc("web", &["203.0.113.2"]), svc("new", &[])];
        let p = published(&alloc, &services);
        assert_eq!(
            p.assigned.keys().cloned().collect::<Vec<_>>(),
            vec![ServiceKey::new("default", "web")]
        );
    }

    #[test]
    fn the_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut s = svc("web", &[]);
        let first = condition(&s, None, None);
        assert_eq!(first["status"], "False");
        let c: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition =
            serde_json::from_value(json!({
                "type": CONDITION, "status": "False", "reason": "Pending", "message": "x",
                "lastTransitionTime": "2020-01-01T00:00:00Z"
            }))
            .unwrap();
        s.status.as_mut().unwrap().conditions = Some(vec![c]);
        assert_eq!(
            condition(&s, None, None)["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let assigned = weft_lb::Assignment {
            ips: vec!["203.0.113.2".parse().unwrap()],
            pool: "default".into(),
        };
        let now = condition(&s, Some(&assigned), None);
        assert_eq!(now["status"], "True");
        assert_ne!(now["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(conditions_with(&s, now).as_array().unwrap().len(), 1);
    }
}
