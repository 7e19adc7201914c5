//! `weft agent`: the per-node daemon. It watches Nodes, publishes this
//! node's VTEP, writes the node's CNI config (subnet, gateway, MTU) the way
//! flannel writes its subnet file, and keeps the cross-node datapath
//! (weft-overlay) equal to what the Nodes say — one sync loop, coalesced and
//! bounded, that converges from any state.

pub mod args;
pub mod metrics;
pub mod peers;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use tokio::sync::Notify;
use weft_cni::netconf;
use weft_overlay::{Datapath, LocalNode, OverlayConfig};

pub use args::AgentArgs;
pub use peers::{ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC};

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
}

/// Fewest time between two syncs, and most time without one.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The underlay: the interface holding the node's IP, its prefix and MTU.
fn underlay_of(handle: &mut weft_linux::Handle, ip: Ipv4Addr) -> Result<(Ipv4Net, u32)> {
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
    Ok((net, link.mtu))
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
    let nodes: Api<Node> = Api::all(client.clone());

    // This node, once it is registered with an address and a pod CIDR.
    let (node_ip, pod_cidr) = loop {
        match nodes.get_opt(&config.node_name).await {
            Ok(Some(n)) => {
                if let (Some(ip), Some(cidr)) = (peers::internal_ip(&n), peers::pod_cidr(&n)) {
                    break (ip, cidr);
                }
                tracing::info!(node = %config.node_name, "waiting for the Node's address and pod CIDR");
            }
            Ok(None) => tracing::info!(node = %config.node_name, "waiting for the Node object"),
            Err(e) => tracing::warn!(error = %e, "cannot read the Node yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Pods' traffic is routed through this node.
    weft_linux::sysctl::ensure("net/ipv4/ip_forward", "1")?;
    let mut handle = weft_linux::Handle::new()?;
    let (underlay, underlay_mtu) = underlay_of(&mut handle, node_ip)?;
    let local = LocalNode {
        name: config.node_name.clone(),
        ip: node_ip,
        underlay,
        underlay_mtu,
        pod_cidr,
    };
    let pod_mtu = weft_overlay::pod_mtu(underlay_mtu, config.overlay.backend);
    let vtep = weft_overlay::vtep_mac(node_ip);

    // The CNI config first: pods can start as soon as it is there.
    let conf = netconf::conflist(pod_cidr, pod_mtu, &config.ipam_dir, config.cluster_cidr);
    if netconf::write_if_changed(&config.cni_conf_dir, &conf)? {
        tracing::info!(dir = %config.cni_conf_dir.display(), mtu = pod_mtu, "wrote CNI config");
    }

    // Publish this node's VTEP so peers can reach it.
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
    publish(&nodes, &config.node_name, &annotations).await?;

    let (store, writer) = reflector::store::<Node>();
    let wake = Arc::new(Notify::new());
    {
        let wake = wake.clone();
        let stream = watcher(nodes.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "node watch error (retrying)");
                }
                wake.notify_one();
            }
        });
    }
    store.wait_until_ready().await.context("node store")?;

    let datapath = Arc::new(std::sync::Mutex::new(Datapath::new(handle)));
    let mut last = Instant::now() - MIN_SYNC_INTERVAL;
    let mut last_problems: Vec<String> = Vec::new();
    loop {
        // Coalesce bursts: wait at least MIN_SYNC_INTERVAL between syncs.
        let since = last.elapsed();
        if since < MIN_SYNC_INTERVAL {
            tokio::time::sleep(MIN_SYNC_INTERVAL - since).await;
        }
        last = Instant::now();
        let snapshot: Vec<Node> = store.state().iter().map(|n| (**n).clone()).collect();
        // A Node deleted and registered again has lost our annotations.
        let own = snapshot
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()));
        if own.is_some_and(|n| !peers::has_annotations(n, &annotations)) {
            if let Err(e) = publish(&nodes, &config.node_name, &annotations).await {
                tracing::warn!(error = %e, "re-publishing the VTEP annotations failed; retrying");
            }
        }
        let peer_nodes = peers::peers(&snapshot, &config.node_name);
        let started = Instant::now();
        let outcome = match weft_overlay::compile(&local, &peer_nodes, &config.overlay) {
            Ok(desired) => {
                // Reported when they change (a crafted or half-registered Node
                // must be visible, not silently skipped), counted always.
                if desired.problems != last_problems {
                    for p in &desired.problems {
                        tracing::warn!(problem = %p, "datapath incomplete");
                    }
                    last_problems = desired.problems.clone();
                }
                metrics.record_problems(desired.problems.len());
                let routes = desired.routes.len();
                let dp = datapath.clone();
                tokio::task::spawn_blocking(move || {
                    let mut dp = dp
                        .lock()
                        .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
                    dp.apply(&desired)
                        .map_err(anyhow::Error::from)
                        .map(|r| (r, routes))
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
            }
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match outcome {
            Ok((report, routes)) => {
                metrics.record_sync(started.elapsed(), peer_nodes.len(), routes);
                if report.added + report.removed > 0 {
                    tracing::info!(
                        added = report.added,
                        removed = report.removed,
                        unchanged = report.unchanged,
                        "datapath synced"
                    );
                }
            }
            Err(e) => {
                metrics.record_error();
                tracing::error!(error = %e, "datapath sync failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(MAX_SYNC_INTERVAL, wake.notified()).await;
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
        .context("publish the VTEP annotations on the Node")?;
    Ok(())
}
