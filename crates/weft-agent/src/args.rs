//! `weft agent`'s command-line flags (clap), owned here so the CLI only
//! flattens them and a supervisor can render them back ([`AgentArgs::to_args`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use ipnet::Ipv4Net;
use weft_overlay::{Backend, OverlayConfig};

use crate::AgentConfig;

/// Where the agent keeps its WireGuard key (a hostPath in the DaemonSet).
pub const DEFAULT_WIREGUARD_KEY_FILE: &str = "/var/lib/weft/wireguard/private.key";

/// Flags of `weft agent`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AgentArgs {
    /// This node's name (its Node object).
    #[arg(long)]
    pub node: String,
    /// Where the API is.
    #[command(flatten)]
    pub api: weft_kube::ClientFlags,
    /// Cross-node datapath: vxlan, host-gw, auto or wireguard (encrypted).
    #[arg(long, default_value = "vxlan")]
    pub backend: Backend,
    /// UDP port of the VXLAN overlay.
    #[arg(long, default_value_t = weft_overlay::DEFAULT_PORT)]
    pub vxlan_port: u16,
    /// UDP port of WireGuard (backend wireguard), between node IPs.
    #[arg(long, default_value_t = weft_overlay::DEFAULT_WIREGUARD_PORT)]
    pub wireguard_port: u16,
    /// This node's WireGuard private key (backend wireguard): made on first
    /// start (mode 0600) and kept, so peers know the node across restarts.
    #[arg(long, default_value = DEFAULT_WIREGUARD_KEY_FILE)]
    pub wireguard_key_file: PathBuf,
    /// Which WireGuard runs the device (backend wireguard): auto (the
    /// kernel's where the kernel has WireGuard, else the userspace one in
    /// this process), kernel or userspace.
    #[arg(long, default_value = "auto")]
    pub wireguard_implementation: weft_wireguard::Choice,
    /// Where to write 10-weft.conflist.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// weft-cni's IPAM state directory on this node.
    #[arg(long, default_value = "/var/lib/cni/networks")]
    pub ipam_dir: PathBuf,
    /// The cluster's pod CIDR (traffic inside it is never masqueraded).
    #[arg(long, default_value = weft_cluster::CLUSTER_CIDR)]
    pub cluster_cidr: Ipv4Net,
    /// Prometheus metrics, /healthz and /readyz.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Run the Service proxy (`--proxy=false`: leave Services to another proxy).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub proxy: bool,
    /// Enforce NetworkPolicy (`--network-policy=false`: leave it to another
    /// implementation).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub network_policy: bool,
    /// Give LoadBalancer Services addresses from LoadBalancerIPPools and
    /// answer ARP for them (`--load-balancer=false`: leave them to another
    /// implementation, e.g. a cloud's or MetalLB).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub load_balancer: bool,
    /// Keep a flow log (`weft flows`): new pod connections from conntrack
    /// events, packets NetworkPolicy denies from NFLOG group 100
    /// (`--flow-log=false`: neither is listened to).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub flow_log: bool,
}

impl AgentArgs {
    /// Flags and values for defaults, e.g. the embedded cluster's agents.
    pub fn new(node: impl Into<String>) -> AgentArgs {
        AgentArgs {
            node: node.into(),
            api: weft_kube::ClientFlags::default(),
            backend: Backend::default(),
            vxlan_port: weft_overlay::DEFAULT_PORT,
            wireguard_port: weft_overlay::DEFAULT_WIREGUARD_PORT,
            wireguard_key_file: DEFAULT_WIREGUARD_KEY_FILE.into(),
            wireguard_implementation: weft_wireguard::Choice::Auto,
            cni_conf_dir: "/etc/cni/net.d".into(),
            ipam_dir: "/var/lib/cni/networks".into(),
            cluster_cidr: weft_cluster::CLUSTER_CIDR
                .parse()
                .expect("CLUSTER_CIDR is a valid prefix"),
            metrics_addr: None,
            proxy: true,
            network_policy: true,
            load_balancer: true,
            flow_log: true,
        }
    }

    /// The same flags as command-line arguments (what `weft agent` parses back).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--node".to_string(), self.node.clone()];
        args.extend(self.api.to_args());
        args.extend([
            "--backend".into(),
            self.backend.to_string(),
            "--vxlan-port".into(),
            self.vxlan_port.to_string(),
            "--wireguard-port".into(),
            self.wireguard_port.to_string(),
            "--wireguard-key-file".into(),
            self.wireguard_key_file.display().to_string(),
            "--wireguard-implementation".into(),
            self.wireguard_implementation.to_string(),
            "--cni-conf-dir".into(),
            self.cni_conf_dir.display().to_string(),
            "--ipam-dir".into(),
            self.ipam_dir.display().to_string(),
            "--cluster-cidr".into(),
            self.cluster_cidr.to_string(),
        ]);
        if let Some(m) = &self.metrics_addr {
            args.extend(["--metrics-addr".into(), m.to_string()]);
        }
        args.push(format!("--proxy={}", self.proxy));
        args.push(format!("--network-policy={}", self.network_policy));
        args.push(format!("--load-balancer={}", self.load_balancer));
        args.push(format!("--flow-log={}", self.flow_log));
        args
    }

    /// What the agent runs with.
    pub fn config(&self) -> AgentConfig {
        AgentConfig {
            node_name: self.node.clone(),
            overlay: OverlayConfig {
                backend: self.backend,
                port: self.vxlan_port,
                wireguard_port: self.wireguard_port,
                ..Default::default()
            },
            wireguard_key_file: self.wireguard_key_file.clone(),
            wireguard_implementation: self.wireguard_implementation,
            cni_conf_dir: self.cni_conf_dir.clone(),
            ipam_dir: self.ipam_dir.clone(),
            cluster_cidr: self.cluster_cidr,
            metrics_addr: self.metrics_addr,
            proxy: self.proxy,
            network_policy: self.network_policy,
            load_balancer: self.load_balancer,
            flow_log: self.flow_log,
        }
    }

    /// A client of the API the flags name.
    pub async fn client(&self) -> Result<kube::Client> {
        self.api.client().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AgentArgs,
    }

    #[test]
    fn to_args_parses_back_to_the_same_flags() {
        let mut a = AgentArgs::new("node-2");
        a.api.server = Some("http://192.168.1.2:6443".into());
        a.backend = Backend::Auto;
        a.cni_conf_dir = "/tmp/n2/cni".into();
        a.ipam_dir = "/tmp/n2/ipam".into();
        a.backend = Backend::Wireguard;
        a.wireguard_port = 51821;
        a.wireguard_key_file = "/tmp/n2/wg.key".into();
        a.wireguard_implementation = weft_wireguard::Choice::Userspace;
        a.metrics_addr = Some("192.168.1.11:9101".parse().unwrap());
        let mut argv = vec!["weft-agent".to_string()];
        argv.extend(a.to_args());
        assert_eq!(Cli::parse_from(argv).args, a);
    }

    #[test]
    fn defaults_match_new() {
        let parsed = Cli::parse_from(["weft-agent", "--node", "node-1"]).args;
        assert_eq!(parsed, AgentArgs::new("node-1"));
    }

    #[test]
    fn server_and_kubeconfig_conflict() {
        let r = Cli::try_parse_from([
            "weft-agent",
            "--node",
            "n",
            "--server",
            "http://x",
            "--kubeconfig",
            "/k",
        ]);
        assert!(r.is_err());
    }
}
