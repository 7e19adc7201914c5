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

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

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

pub const FABRIC_BRIDGE: &str = "fabric0";
pub const FABRIC_NET: &str = "192.168.1.0/24";
pub const FABRIC_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The API server's address inside the fabric (for agents, node runtimes, pods).
pub const API_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const API_PORT: u16 = 6443;
pub const CLIENT_NET: &str = "198.51.100.0/24";
pub const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
pub const LB_NET: &str = "203.0.113.0/24";

/// A bad cluster name or node count, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("cluster name {0:?} is invalid: use 1-12 lowercase letters, digits or '-', starting with a letter")]
    Name(String),
    #[error("--nodes {0} is out of range: 1..={MAX_NODES}")]
    Nodes(usize),
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

    pub fn node(&self, index: usize) -> Result<NodeLayout, LayoutError> {
        if index == 0 || index > MAX_NODES {
            return Err(LayoutError::Nodes(index));
        }
        Ok(NodeLayout {
            index,
            name: format!("node-{index}"),
            netns: self.node_netns(index),
            ip: Ipv4Addr::new(192, 168, 1, (9 + index) as u8),
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, (index - 1) as u8, 0), 24)
                .expect("a /24 is a valid prefix"),
        })
    }

    /// Node `node-<i>` by name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeLayout> {
        let index: usize = name.strip_prefix("node-")?.parse().ok()?;
        self.node(index).ok()
    }

    pub fn nodes(&self, count: usize) -> Result<Vec<NodeLayout>, LayoutError> {
        if count == 0 || count > MAX_NODES {
            return Err(LayoutError::Nodes(count));
        }
        (1..=count).map(|i| self.node(i)).collect()
    }

    /// The API server as node runtimes, agents and pods reach it.
    pub fn fabric_api_url(&self) -> String {
        format!("http://{API_ADDR}:{API_PORT}")
    }

    /// The control plane's API objects.
    pub fn api_dir(&self) -> PathBuf {
        self.state_dir.join("api")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// Port of the API on 127.0.0.1 in the machine's namespace (written by the control plane).
    pub fn local_port_file(&self) -> PathBuf {
        self.state_dir.join("api-port")
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
        assert_eq!(l.fabric_api_url(), "http://192.168.1.2:6443");
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
}
