//! `weft agent`: the per-node daemon. It watches Nodes, publishes this
//! node's VTEP, writes the node's CNI config (subnet, gateway, MTU) the way
//! flannel writes its subnet file, and keeps the cross-node datapath
//! (weft-overlay) equal to what the Nodes say. The Nodes come from the
//! process's shared weft-kube store; the sync runs behind its readiness gate
//! on a bounded-frequency runner, and converges from any state. Next to it,
//! on the same stores layer, runs the Service proxy ([`proxy`]).

pub mod args;
pub mod flows;
pub mod healthcheck;
pub mod lb;
pub mod metrics;
pub mod peers;
pub mod policy;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use weft_cni::netconf;
use weft_kube::{Bounds, Gate, Selector, Store, SyncRunner, Watches};
use weft_overlay::{Datapath, Desired, LocalNode, OverlayConfig};

pub use args::AgentArgs;
pub use peers::{
    ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC,
    ANNOTATION_WIREGUARD_IMPLEMENTATION, ANNOTATION_WIREGUARD_KEY, ANNOTATION_WIREGUARD_ROTATE,
    ANNOTATION_WIREGUARD_ROTATED,
};

/// How the agent is set up (from `weft agent` flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub overlay: OverlayConfig,
    /// Where the CNI config goes (`10-weft.conflist`).
    pub cni_conf_dir: PathBuf,
    /// weft-cni's IPAM directory on this node.
    pub ipam_dir: PathBuf,
    /// The cluster's pod CIDR: not masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// Prometheus metrics and /healthz, /readyz.
    pub metrics_addr: Option<SocketAddr>,
    /// Run the Service proxy (table `inet weft-proxy`).
    pub proxy: bool,
    /// Enforce NetworkPolicy (table `inet weft-policy`).
    pub network_policy: bool,
    /// LoadBalancer addresses: allocate (behind a Lease) and announce ([`lb`]).
    pub load_balancer: bool,
    /// Keep the flow log ([`flows`]).
    pub flow_log: bool,
    /// The node's WireGuard private key (backend wireguard).
    pub wireguard_key_file: PathBuf,
    /// Which WireGuard runs the device (backend wireguard).
    pub wireguard_implementation: weft_wireguard::Choice,
}

/// The overlay sync: at most every 100 ms (bursts of Node changes coalesce), at
/// least every 30 s (repairs drift), 1 s after a failure, doubling up to 30 s
/// while failures go on.
const OVERLAY_SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(100),
    max_interval: Duration::from_secs(30),
    retry_interval: Duration::from_secs(1),
    retry_max_interval: Duration::from_secs(30),
};

/// The underlay: the interface holding the node's IP, its prefix, and the
/// interface itself.
fn underlay_of(
    handle: &mut weft_linux::Handle,
    ip: Ipv4Addr,
) -> Result<(Ipv4Net, weft_linux::Link)> {
    let addrs = handle.addresses(None)?;
    let (index, net) = addrs
        .into_iter()
        .find(|(_, a)| a.addr() == std::net::IpAddr::V4(ip))
        .with_context(|| {
            format!("no interface in this network namespace has the node address {ip}")
        })?;
    let IpNet::V4(net) = net else {
        bail!("node address {ip} is not IPv4")
    };
    let link = handle
        .link_by_index(index)?
        .with_context(|| format!("link #{index} vanished"))?;
    Ok((net, link))
}

/// Runs the agent until the future is dropped.
pub async fn run(client: kube::Client, config: AgentConfig) -> Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind metrics {addr}"))?;
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    let watches = Watches::new(client.clone());
    let nodes = watches.store::<Node>(Selector::all());
    let gate = Gate::new([nodes.readiness()]);
    gate.wait().await.context("listing Nodes")?;

    let (node_ip, pod_cidr) = registered(&nodes, &config.node_name).await?;

    // Pods' traffic is routed through this node.
    weft_linux::sysctl::ensure("net/ipv4/ip_forward", "1")?;
    let mut handle = weft_linux::Handle::new()?;
    let (underlay, underlay_link) = underlay_of(&mut handle, node_ip)?;
    let underlay_mtu = underlay_link.mtu;
    let local = LocalNode {
        name: config.node_name.clone(),
        ip: node_ip,
        underlay,
        underlay_mtu,
        pod_cidr,
    };
    let pod_mtu = weft_overlay::pod_mtu(underlay_mtu, config.overlay.backend);
    let vtep = weft_overlay::vtep_mac(node_ip);

    // This node's VTEP, published on its Node so peers can reach it.
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_BACKEND.to_string(),
        config.overlay.backend.to_string(),
    );
    annotations.insert(
        ANNOTATION_VTEP_MAC.to_string(),
        weft_linux::netlink::format_mac(&vtep),
    );
    annotations.insert(ANNOTATION_VTEP_IP.to_string(), node_ip.to_string());
    let mut datapath = Datapath::new(handle);
    let wireguard = config.overlay.backend == weft_overlay::Backend::Wireguard;
    if wireguard {
        let key = weft_wireguard::keys::PrivateKey::load_or_create(&config.wireguard_key_file)?;
        tracing::info!(public_key = %key.public(), file = %config.wireguard_key_file.display(), "WireGuard key");
        annotations.insert(
            ANNOTATION_WIREGUARD_KEY.to_string(),
            key.public().to_base64(),
        );
        datapath.set_wireguard_key(key);
        datapath.set_wireguard_choice(config.wireguard_implementation);
    }

    let mut overlay = OverlaySync {
        cni_conf: netconf::conflist(pod_cidr, pod_mtu, &config.ipam_dir, config.cluster_cidr),
        cni_conf_dir: config.cni_conf_dir,
        pod_mtu,
        annotations,
        wireguard_key_file: wireguard.then(|| config.wireguard_key_file.clone()),
        local,
        overlay: config.overlay,
        nodes: nodes.clone(),
        api: Api::all(client.clone()),
        datapath: Arc::new(Mutex::new(datapath)),
        metrics: metrics.clone(),
        last_problems: Vec::new(),
    };
    // The CNI config first: pods can start as soon as it is there.
    overlay.write_cni_config()?;

    let metrics_for_proxy = metrics.clone();
    let metrics_for_policy = metrics.clone();
    let metrics_for_lb = metrics.clone();
    let metrics_for_flows = metrics.clone();
    let marks: Arc<Mutex<weft_policy::Marks>> = Arc::default();
    let marks_for_flows = marks.clone();
    let client_for_lb = client.clone();
    let mut runner = SyncRunner::new("overlay", OVERLAY_SYNC);
    runner.follow(nodes.changes());
    metrics.watch_runner("overlay", runner.health());
    let wireguard_stats =
        (overlay.overlay.backend == weft_overlay::Backend::Wireguard).then(|| {
            (
                overlay.datapath.clone(),
                overlay.nodes.clone(),
                metrics.clone(),
            )
        });
    let overlay_task = async move {
        let Err(e) = runner.run(&gate, async move || overlay.sync().await).await;
        Err::<(), _>(e).context("overlay sync")
    };
    // What the WireGuard device says of its peers, every 2 s (it keeps the
    // handshakes and counters; nothing else has them). A peer (by its key)
    // that never completed a handshake holds /readyz at 503 and gets a
    // nudge each round: WireGuard handshakes on demand, so an idle pair of
    // nodes would otherwise never have one.
    let wireguard_task = async move {
        let Some((datapath, nodes, metrics)) = wireguard_stats else {
            return std::future::pending::<Result<()>>().await;
        };
        let mut handshaken: std::collections::HashSet<[u8; 32]> = Default::default();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            // Key → (node name, its tunnel address: the pod CIDR's network
            // address, as weft_overlay::compile gives its device).
            let known: std::collections::HashMap<[u8; 32], (String, Option<std::net::Ipv4Addr>)> =
                nodes
                    .state()
                    .iter()
                    .filter_map(|n| {
                        let key = peers::wireguard_key(n)?;
                        let name = n.metadata.name.clone()?;
                        Some((key, (name, peers::pod_cidr(n).map(|c| c.network()))))
                    })
                    .collect();
            let dp = datapath.clone();
            let state = tokio::task::spawn_blocking(move || {
                let mut d = dp.lock().ok()?;
                let implementation = d.wireguard_implementation();
                d.wireguard_state().map(|s| (s, implementation))
            })
            .await;
            let (st, implementation) = match state {
                Ok(Some((Ok(st), implementation))) => (st, implementation),
                Ok(Some((Err(e), _))) => {
                    tracing::warn!(error = %e, "read the WireGuard device's peers");
                    continue;
                }
                Ok(None) | Err(_) => continue,
            };
            if let Some(i) = implementation {
                metrics.record_wireguard_implementation(&i.to_string());
            }
            let name_of = |key: &[u8; 32]| {
                known.get(key).map_or_else(
                    || weft_wireguard::keys::PublicKey(*key).to_base64(),
                    |(name, _)| name.clone(),
                )
            };
            let stats: Vec<metrics::WireguardPeerStats> = st
                .peers
                .iter()
                .map(|p| metrics::WireguardPeerStats {
                    node: name_of(&p.peer.public_key.0),
                    last_handshake: p.last_handshake,
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                })
                .collect();
            metrics.record_wireguard(&stats);
            // Keys no longer configured are forgotten (a node that leaves
            // and comes back with its key must handshake again).
            handshaken.retain(|k| st.peers.iter().any(|p| p.peer.public_key.0 == *k));
            handshaken.extend(
                st.peers
                    .iter()
                    .filter(|p| p.last_handshake.is_some())
                    .map(|p| p.peer.public_key.0),
            );
            let waiting: Vec<&weft_wireguard::uapi::PeerState> = st
                .peers
                .iter()
                .filter(|p| !handshaken.contains(&p.peer.public_key.0))
                .collect();
            metrics.record_wireguard_waiting(
                waiting
                    .iter()
                    .map(|p| name_of(&p.peer.public_key.0))
                    .collect(),
            );
            let targets: Vec<std::net::Ipv4Addr> = waiting
                .iter()
                .filter_map(|p| known.get(&p.peer.public_key.0)?.1)
                .collect();
            if !targets.is_empty() {
                let dp = datapath.clone();
                let sent = tokio::task::spawn_blocking(move || {
                    dp.lock().ok().map(|mut d| d.nudge(&targets))
                })
                .await;
                if let Ok(Some(Err(e))) = sent {
                    tracing::warn!(error = %e, "nudge WireGuard peers to a handshake");
                }
            }
        }
    };
    let proxy_task = async {
        if !config.proxy {
            return std::future::pending::<Result<()>>().await;
        }
        let node = proxy::ProxyNode {
            name: config.node_name.clone(),
            ips: vec![std::net::IpAddr::V4(node_ip)],
            cluster_cidrs: vec![IpNet::V4(config.cluster_cidr)],
        };
        proxy::run(&watches, node, metrics_for_proxy).await
    };
    let policy_task = async {
        if !config.network_policy {
            return std::future::pending::<Result<()>>().await;
        }
        policy::run(
            &watches,
            config.node_name.clone(),
            metrics_for_policy,
            marks,
        )
        .await
    };
    let lb_task = async {
        if !config.load_balancer {
            return std::future::pending::<Result<()>>().await;
        }
        let node = lb::LbNode {
            name: config.node_name.clone(),
            namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "weft-system".into()),
            ifindex: underlay_link.index,
            mac: underlay_link
                .mac
                .with_context(|| format!("underlay {} has no MAC address", underlay_link.name))?,
            probe_port: config.metrics_addr.map_or(9101, |a| a.port()),
        };
        lb::run(&watches, client_for_lb, node, metrics_for_lb).await
    };
    let flows_task = async {
        if !config.flow_log {
            return std::future::pending::<Result<()>>().await;
        }
        let log = Arc::new(flows::FlowLog::new(
            config.node_name.clone(),
            flows::CAPACITY,
        ));
        metrics_for_flows.serve_flow_log(log.clone());
        flows::run(&watches, log, marks_for_flows, metrics_for_flows).await
    };
    tokio::try_join!(
        overlay_task,
        proxy_task,
        policy_task,
        wireguard_task,
        lb_task,
        flows_task
    )
    .map(|_| ())
}

/// This node's address and pod CIDR, once its Node is registered with both.
async fn registered(nodes: &Store<Node>, name: &str) -> Result<(Ipv4Addr, Ipv4Net)> {
    let find = |nodes: &Store<Node>| {
        let node = nodes.get(name)?;
        Some((peers::internal_ip(&node)?, peers::pod_cidr(&node)?))
    };
    if let Some(found) = find(nodes) {
        return Ok(found);
    }
    tracing::info!(node = %name, "waiting for the Node with an InternalIP address and a pod CIDR");
    nodes
        .wait_for(find)
        .await
        .with_context(|| format!("waiting for Node {name}"))
}

/// The overlay feature: everything one sync needs, and what the last one left.
struct OverlaySync {
    cni_conf: serde_json::Value,
    cni_conf_dir: PathBuf,
    pod_mtu: u32,
    /// The VTEP annotations this node publishes.
    annotations: BTreeMap<String, String>,
    /// Where the node's WireGuard key is kept (backend wireguard).
    wireguard_key_file: Option<PathBuf>,
    local: LocalNode,
    overlay: OverlayConfig,
    nodes: Store<Node>,
    api: Api<Node>,
    /// Used from a blocking thread (netlink calls block).
    datapath: Arc<Mutex<Datapath>>,
    metrics: Arc<metrics::Metrics>,
    /// Reported again only when they change.
    last_problems: Vec<String>,
}

impl OverlaySync {
    /// One sync, counted in the metrics.
    async fn sync(&mut self) -> Result<()> {
        let result = self.sync_once().await;
        if result.is_err() {
            self.metrics.record_error();
        }
        result
    }

    /// Publishes the VTEP if this node's Node lacks it, writes the CNI config and
    /// makes the datapath equal to what the Nodes say.
    async fn sync_once(&mut self) -> Result<()> {
        let snapshot: Vec<Node> = self.nodes.state().iter().map(|n| (**n).clone()).collect();
        self.rotate_key_if_asked(&snapshot)?;
        // Publishing first: peers need our VTEP. A failure does not hold the
        // datapath back, but fails the sync so that it is retried soon.
        let published = self.publish_if_missing(&snapshot).await;
        self.write_cni_config()?;

        let peer_nodes = peers::peers(&snapshot, &self.local.name);
        let started = Instant::now();
        let desired = weft_overlay::compile(&self.local, &peer_nodes, &self.overlay)?;
        self.report_problems(&desired.problems);
        let routes = desired.routes.len();
        let report = self.apply(desired).await?;
        self.metrics
            .record_sync(started.elapsed(), peer_nodes.len(), routes);
        // Which WireGuard the device runs on is known once it is made:
        // published on the Node (`weft get nodes -o wide`).
        let implementation = self
            .datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?
            .wireguard_implementation()
            .map(|i| i.to_string());
        let published = match implementation {
            Some(i) if self.annotations.get(ANNOTATION_WIREGUARD_IMPLEMENTATION) != Some(&i) => {
                self.annotations
                    .insert(ANNOTATION_WIREGUARD_IMPLEMENTATION.to_string(), i);
                let again = self.publish_if_missing(&snapshot).await;
                published.and(again)
            }
            _ => published,
        };
        if report.added + report.removed > 0 {
            tracing::info!(
                added = report.added,
                removed = report.removed,
                unchanged = report.unchanged,
                "datapath synced"
            );
        }
        published
    }

    /// Replaces the node's WireGuard key when its Node asks for it
    /// ([`peers::rotation_asked`]): a new key is stored in the key file
    /// first (a crash before it is published makes the next agent rotate
    /// again, never lose the key it runs with), then given to the device and
    /// published with the value it answers, in this same sync. Peers
    /// replace the node's peer when they see its new public key; until then
    /// packets between them wait for the next handshake (TCP retransmits).
    fn rotate_key_if_asked(&mut self, snapshot: &[Node]) -> Result<()> {
        let Some(file) = self.wireguard_key_file.as_ref() else {
            return Ok(());
        };
        let own = snapshot
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.local.name.as_str()));
        let Some(asked) = own.and_then(peers::rotation_asked) else {
            return Ok(());
        };
        // Done already, not yet seen back from the API.
        if self.annotations.get(ANNOTATION_WIREGUARD_ROTATED) == Some(&asked) {
            return Ok(());
        }
        let key = weft_wireguard::keys::PrivateKey::generate()?;
        key.store(file).context("store the rotated WireGuard key")?;
        let public = key.public();
        self.datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?
            .set_wireguard_key(key);
        let old = self
            .annotations
            .insert(ANNOTATION_WIREGUARD_KEY.to_string(), public.to_base64());
        self.annotations
            .insert(ANNOTATION_WIREGUARD_ROTATED.to_string(), asked.clone());
        self.metrics.record_wireguard_rotation();
        tracing::info!(
            node = %self.local.name,
            asked = %asked,
            old = old.as_deref().unwrap_or("none"),
            new = %public,
            "WireGuard key rotated"
        );
        Ok(())
    }

    /// Publishes the VTEP annotations when this node's Node lacks them: at the
    /// first start, and after the Node was deleted and registered again.
    async fn publish_if_missing(&self, snapshot: &[Node]) -> Result<()> {
        let own = snapshot
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.local.name.as_str()));
        match own {
            Some(node) if !peers::has_annotations(node, &self.annotations) => {
                publish(&self.api, &self.local.name, &self.annotations).await?;
                tracing::info!(node = %self.local.name, "published the VTEP annotations");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn write_cni_config(&self) -> Result<()> {
        let dir = &self.cni_conf_dir;
        if netconf::write_if_changed(dir, &self.cni_conf)
            .with_context(|| format!("write the CNI config into {}", dir.display()))?
        {
            tracing::info!(dir = %dir.display(), mtu = self.pod_mtu, "wrote CNI config");
        }
        Ok(())
    }

    /// Peers the datapath cannot serve: logged when they change (a crafted or
    /// half-registered Node must be visible, not silently skipped), counted always.
    fn report_problems(&mut self, problems: &[String]) {
        if problems != self.last_problems.as_slice() {
            for p in problems {
                tracing::warn!(problem = %p, "datapath incomplete");
            }
            self.last_problems = problems.to_vec();
        }
        self.metrics.record_problems(problems.len());
    }

    async fn apply(&self, desired: Desired) -> Result<weft_overlay::ApplyReport> {
        let datapath = self.datapath.clone();
        tokio::task::spawn_blocking(move || {
            let mut datapath = datapath
                .lock()
                .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
            datapath.apply(&desired).map_err(anyhow::Error::from)
        })
        .await
        .context("datapath apply task")?
    }
}

/// Merges this node's annotations into its Node object.
async fn publish(
    nodes: &Api<Node>,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("publish the VTEP annotations on Node {name}"))?;
    Ok(())
}
