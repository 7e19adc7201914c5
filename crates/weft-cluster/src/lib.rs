//! The embedded cluster's layout: every name, address and path `weft up`
//! uses, derived from the cluster name and node count alone (pure), so the
//! CLI, the control plane and the node runtimes always agree.
//!
//! ```text
//! netns weft-<c>-fabric   bridge fabric0 192.168.1.1/24 (router), 192.168.1.2 (API server :6443)
//!                         198.51.100.1/24 towards the client, 203.0.113.0/24 for LB IPs (later)
//! netns weft-<c>-node-i   eth0 192.168.1.(9+i)/24, default via 192.168.1.1; cni0 10.244.(i-1).1/24
//! netns weft-<c>-p-<id>   one per pod
//! netns weft-<c>-client   eth0 198.51.100.5/24, default via 198.51.100.1
//! ```
//!
//! With `--subnets N` the fabric has N bridges, `fabric<s>` with
//! 192.168.(s+1).1/24 (the fabric namespace routes between them), and the
//! nodes are placed in contiguous blocks: with 3 nodes on 2 subnets, node-1
//! and node-2 are on 192.168.1.0/24 and node-3 is 192.168.2.12 on
//! 192.168.2.0/24 (a node's host part is always 9 + its index). The API
//! address 192.168.1.2 stays on the first subnet, reached through the router.
//!
//! What a cluster was created with (node count, subnets, backend) and the
//! API port its control plane chose live in one typed state file
//! ([`ClusterState`], `<state>/cluster.json`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

mod state;
pub use state::{ClusterState, StateError};

pub const DEFAULT_CLUSTER: &str = "weft";
pub const DEFAULT_NODES: usize = 2;
/// Most nodes one cluster may have (pod CIDRs 10.244.0.0/24 … and node IPs .10 …).
pub const MAX_NODES: usize = 200;

pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// The bridge of the first fabric subnet (`fabric<s>` for subnet s).
pub const FABRIC_BRIDGE: &str = "fabric0";
/// Most fabric subnets (192.168.1.0/24 … 192.168.4.0/24).
pub const MAX_SUBNETS: usize = 4;
pub const FABRIC_NET: &str = "192.168.1.0/24";
pub const FABRIC_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The API server's address inside the fabric (for agents, node runtimes, pods).
pub const API_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const API_PORT: u16 = 6443;
pub const CLIENT_NET: &str = "198.51.100.0/24";
pub const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
/// LoadBalancer addresses: the default pool `weft up` creates. The fabric
/// holds [`LB_ROUTER`] on the first subnet's bridge, so it asks there (ARP)
/// for the addresses of this network, and the node announcing one answers.
pub const LB_NET: &str = "203.0.113.0/24";
pub const LB_ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Node label naming the fabric bridge a node's eth0 is on: the default
/// LoadBalancer pool is announced only by nodes on [`FABRIC_BRIDGE`].
pub const LABEL_FABRIC: &str = "weft.dev/fabric";

/// A bad cluster name or node count, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("cluster name {0:?} is invalid: use 1-12 lowercase letters, digits or '-', starting with a letter")]
    Name(String),
    #[error("--nodes {0} is out of range: 1..={MAX_NODES}")]
    Nodes(usize),
    #[error("--subnets {subnets} is out of range for {nodes} nodes: 1..={MAX_SUBNETS} and at most one per node")]
    Subnets { subnets: usize, nodes: usize },
}

/// How many nodes a cluster has and over how many fabric subnets they spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    nodes: usize,
    subnets: usize,
}

impl Placement {
    /// Checks the counts: 1..=MAX_NODES nodes, 1..=MAX_SUBNETS subnets, no empty subnet.
    pub fn new(nodes: usize, subnets: usize) -> Result<Placement, LayoutError> {
        if nodes == 0 || nodes > MAX_NODES {
            return Err(LayoutError::Nodes(nodes));
        }
        if subnets == 0 || subnets > MAX_SUBNETS || subnets > nodes {
            return Err(LayoutError::Subnets { subnets, nodes });
        }
        Ok(Placement { nodes, subnets })
    }

    /// Every node on the one subnet 192.168.1.0/24.
    pub fn single(nodes: usize) -> Result<Placement, LayoutError> {
        Placement::new(nodes, 1)
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    pub fn subnets(&self) -> usize {
        self.subnets
    }

    /// 0-based subnet of node `index` (1-based): contiguous blocks of
    /// ceil(nodes / subnets), so the first subnets are the fuller ones.
    pub fn subnet_of(&self, index: usize) -> usize {
        let per = self.nodes.div_ceil(self.subnets);
        ((index.max(1) - 1) / per).min(self.subnets - 1)
    }

    /// The fabric's subnets: bridge, network and router address of each.
    pub fn fabric_subnets(&self) -> Vec<FabricSubnet> {
        (0..self.subnets).map(FabricSubnet::new).collect()
    }
}

/// One L2 segment of the fabric: a bridge in the fabric namespace whose
/// address is the nodes' default router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricSubnet {
    /// 0-based.
    pub index: usize,
    pub bridge: String,
    pub net: Ipv4Net,
    pub router: Ipv4Addr,
}

impl FabricSubnet {
    fn new(index: usize) -> FabricSubnet {
        let third = (index + 1) as u8; // index < MAX_SUBNETS
        FabricSubnet {
            index,
            bridge: format!("fabric{index}"),
            net: Ipv4Net::new(Ipv4Addr::new(192, 168, third, 0), 24)
                .expect("a /24 is a valid prefix"),
            router: Ipv4Addr::new(192, 168, third, 1),
        }
    }
}

/// Names, addresses and paths of one embedded cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub state_dir: PathBuf,
}

/// One node of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// 1-based.
    pub index: usize,
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// The fabric subnet the node's eth0 is on (its bridge and default router).
    pub subnet: FabricSubnet,
}

impl NodeLayout {
    /// The bridge's (pods' gateway) address: first host of the pod CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_cidr.network()) + 1)
    }
}

/// Checks a cluster name: it becomes part of namespace and interface names.
pub fn validate_name(name: &str) -> Result<(), LayoutError> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LayoutError::Name(name.to_string()))
    }
}

impl Layout {
    /// The layout of cluster `name`, with its state under `$WEFT_STATE_DIR`
    /// (if given) or `/var/lib/weft/<name>`.
    pub fn new(name: &str, state_dir: Option<PathBuf>) -> Result<Layout, LayoutError> {
        validate_name(name)?;
        let state_dir = state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/weft").join(name));
        Ok(Layout {
            name: name.to_string(),
            state_dir,
        })
    }

    /// Prefix shared by every namespace of this cluster (`weft-<name>-`).
    pub fn netns_prefix(&self) -> String {
        format!("weft-{}-", self.name)
    }

    pub fn fabric_netns(&self) -> String {
        format!("weft-{}-fabric", self.name)
    }

    pub fn client_netns(&self) -> String {
        format!("weft-{}-client", self.name)
    }

    pub fn node_netns(&self, index: usize) -> String {
        format!("weft-{}-node-{index}", self.name)
    }

    /// Namespace of a pod, from a short stable id (e.g. 8 hex of its UID).
    pub fn pod_netns(&self, id: &str) -> String {
        format!("weft-{}-p-{id}", self.name)
    }

    /// Node `index` of a cluster on one subnet (see [`Layout::node_in`]).
    pub fn node(&self, index: usize) -> Result<NodeLayout, LayoutError> {
        self.node_in(index, &Placement::single(index.max(1))?)
    }

    /// Node `index` (1-based) of a cluster placed as `placement`.
    pub fn node_in(&self, index: usize, placement: &Placement) -> Result<NodeLayout, LayoutError> {
        if index == 0 || index > MAX_NODES || index > placement.nodes {
            return Err(LayoutError::Nodes(index));
        }
        let subnet = FabricSubnet::new(placement.subnet_of(index));
        let [a, b, c, _] = subnet.net.network().octets();
        Ok(NodeLayout {
            index,
            name: format!("node-{index}"),
            netns: self.node_netns(index),
            ip: Ipv4Addr::new(a, b, c, (9 + index) as u8),
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, (index - 1) as u8, 0), 24)
                .expect("a /24 is a valid prefix"),
            subnet,
        })
    }

    /// Node `node-<i>` by name, on one subnet.
    pub fn node_by_name(&self, name: &str) -> Option<NodeLayout> {
        let index: usize = name.strip_prefix("node-")?.parse().ok()?;
        self.node(index).ok()
    }

    /// Node `node-<i>` by name in a cluster placed as `placement`.
    pub fn node_by_name_in(&self, name: &str, placement: &Placement) -> Option<NodeLayout> {
        let index: usize = name.strip_prefix("node-")?.parse().ok()?;
        self.node_in(index, placement).ok()
    }

    /// `count` nodes on one subnet.
    pub fn nodes(&self, count: usize) -> Result<Vec<NodeLayout>, LayoutError> {
        self.nodes_in(&Placement::single(count)?)
    }

    pub fn nodes_in(&self, placement: &Placement) -> Result<Vec<NodeLayout>, LayoutError> {
        (1..=placement.nodes)
            .map(|i| self.node_in(i, placement))
            .collect()
    }

    /// The API server as node runtimes, agents and pods reach it.
    pub fn fabric_api_url(&self) -> String {
        format!("https://{API_ADDR}:{API_PORT}")
    }

    /// The cluster CA, serving certificate, token signing key and the
    /// components' tokens (0700).
    pub fn pki_dir(&self) -> PathBuf {
        self.state_dir.join("pki")
    }

    /// The kubeconfig of a node's runtime and agent (their own token).
    pub fn node_kubeconfig_path(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("kubeconfig")
    }

    /// The control plane's API objects.
    pub fn api_dir(&self) -> PathBuf {
        self.state_dir.join("api")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// The cluster's [`ClusterState`].
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("cluster.json")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.state_dir.join("pids")
    }

    /// Per-node directory: CNI config, IPAM state, pod files.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("nodes").join(node)
    }

    /// The node runtime's kubelet endpoint (logs, exec, attach,
    /// port-forward), a unix socket the API server proxies to.
    pub fn kubelet_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("kubelet.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_design() {
        let l = Layout::new("weft", None).unwrap();
        let n1 = l.node(1).unwrap();
        assert_eq!(n1.name, "node-1");
        assert_eq!(n1.ip, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(n1.pod_cidr.to_string(), "10.244.0.0/24");
        assert_eq!(n1.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        let n2 = l.node_by_name("node-2").unwrap();
        assert_eq!(n2.ip, Ipv4Addr::new(192, 168, 1, 11));
        assert_eq!(n2.pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(l.node_netns(2), "weft-weft-node-2");
        assert_eq!(l.state_dir, PathBuf::from("/var/lib/weft/weft"));
        assert_eq!(l.fabric_api_url(), "https://192.168.1.2:6443");
    }

    #[test]
    fn bad_names_and_counts() {
        assert!(Layout::new("Bad", None).is_err());
        assert!(Layout::new("a-very-long-cluster-name", None).is_err());
        assert!(Layout::new("1abc", None).is_err());
        let l = Layout::new("demo", None).unwrap();
        assert_eq!(l.nodes(0).unwrap_err(), LayoutError::Nodes(0));
        assert!(l.node_by_name("node-x").is_none());
        assert_eq!(l.nodes(3).unwrap().len(), 3);
    }

    #[test]
    fn two_subnets_put_the_first_block_on_a_and_the_rest_on_b() {
        let l = Layout::new("weft", None).unwrap();
        let p = Placement::new(3, 2).unwrap();
        let nodes = l.nodes_in(&p).unwrap();
        let on: Vec<(String, String, String)> = nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip.to_string(), n.subnet.bridge.clone()))
            .collect();
        assert_eq!(
            on,
            [
                ("node-1".into(), "192.168.1.10".into(), "fabric0".into()),
                ("node-2".into(), "192.168.1.11".into(), "fabric0".into()),
                ("node-3".into(), "192.168.2.12".into(), "fabric1".into()),
            ]
        );
        assert_eq!(nodes[2].subnet.router, Ipv4Addr::new(192, 168, 2, 1));
        assert_eq!(nodes[2].subnet.net.to_string(), "192.168.2.0/24");
        assert_eq!(nodes[2].pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(l.node_by_name_in("node-3", &p), Some(nodes[2].clone()));
    }

    #[test]
    fn fabric_subnets_are_one_bridge_and_router_each() {
        let subnets = Placement::new(4, 2).unwrap().fabric_subnets();
        let described: Vec<String> = subnets
            .iter()
            .map(|s| format!("{} {} via {}", s.bridge, s.net, s.router))
            .collect();
        assert_eq!(
            described,
            [
                "fabric0 192.168.1.0/24 via 192.168.1.1",
                "fabric1 192.168.2.0/24 via 192.168.2.1"
            ]
        );
        assert_eq!(subnets[0].bridge, FABRIC_BRIDGE);
        assert_eq!(subnets[0].router, FABRIC_ROUTER);
    }

    #[test]
    fn one_subnet_keeps_every_node_on_the_first() {
        let l = Layout::new("weft", None).unwrap();
        let nodes = l.nodes_in(&Placement::single(5).unwrap()).unwrap();
        assert!(nodes.iter().all(|n| n.subnet.bridge == FABRIC_BRIDGE));
        assert_eq!(l.node(5).unwrap(), nodes[4]);
    }

    #[test]
    fn subnet_counts_are_checked() {
        assert_eq!(
            Placement::new(1, 2).unwrap_err(),
            LayoutError::Subnets {
                subnets: 2,
                nodes: 1
            }
        );
        assert!(Placement::new(8, 0).is_err());
        assert!(Placement::new(8, MAX_SUBNETS + 1).is_err());
        let l = Layout::new("weft", None).unwrap();
        assert!(l.node_in(4, &Placement::new(3, 2).unwrap()).is_err());
    }
}
