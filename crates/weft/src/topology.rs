//! Builds and removes the embedded cluster's namespaces: the fabric (one
//! bridge per subnet, routing between them), one namespace per node, and the
//! external client. Links, addresses and routes are written over rtnetlink
//! (weft-linux); namespaces are created and deleted with `ip netns`.
//! Everything happens inside `weft-<cluster>-*` namespaces; the machine's own
//! namespace is never written to.
//!
//! Idempotent: what exists is kept (a bridge, a node's veth), what is missing
//! is created; an address or route that is already there counts as written.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use weft_cluster::{Layout, Placement, CLIENT_ADDR, CLIENT_ROUTER};
use weft_linux::netns::NETNS_RUN_DIR;
use weft_linux::{sysctl, Handle, Netns, Route};

/// Names of the network namespaces that exist now.
pub fn existing_netns() -> Vec<String> {
    std::fs::read_dir(NETNS_RUN_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces of this cluster that exist now.
pub fn cluster_netns(layout: &Layout) -> Vec<String> {
    let prefix = layout.netns_prefix();
    let mut names: Vec<String> = existing_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

fn ip_netns(verb: &str, name: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", verb, name])
        .output()
        .context("run ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip netns {verb} {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A named namespace (created if missing) and a netlink handle inside it.
struct Ns {
    name: String,
    netns: Netns,
    nl: Handle,
}

impl Ns {
    fn ensure(name: &str) -> Result<Ns> {
        if !existing_netns().iter().any(|n| n == name) {
            ip_netns("add", name)?;
        }
        let netns = Netns::open(Path::new(NETNS_RUN_DIR).join(name))?;
        let nl = Handle::in_netns(&netns)?;
        Ok(Ns {
            name: name.to_string(),
            netns,
            nl,
        })
    }

    /// Index of link `link`, which must exist.
    fn index(&mut self, link: &str) -> Result<u32> {
        Ok(self
            .nl
            .link_by_name(link)?
            .with_context(|| format!("link {link} missing in {}", self.name))?
            .index)
    }

    fn has_link(&mut self, link: &str) -> Result<bool> {
        Ok(self.nl.link_by_name(link)?.is_some())
    }

    fn up(&mut self, link: &str) -> Result<()> {
        let index = self.index(link)?;
        Ok(self.nl.set_up(index)?)
    }

    /// Adds `addr/prefix` to `link`; already there is fine.
    fn address(&mut self, link: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let index = self.index(link)?;
        let net = IpNet::V4(Ipv4Net::new(addr, prefix)?);
        match self.nl.add_address(index, net) {
            Err(e) if e.is_exists() => Ok(()),
            other => Ok(other?),
        }
    }

    fn default_route(&mut self, via: Ipv4Addr) -> Result<()> {
        let route = Route::via("0.0.0.0/0".parse()?, IpAddr::V4(via));
        match self.nl.add_route(&route) {
            Err(e) if e.is_exists() => Ok(()),
            other => Ok(other?),
        }
    }

    fn forwarding(&self) -> Result<()> {
        self.netns
            .run(|| sysctl::ensure("net/ipv4/ip_forward", "1"))??;
        Ok(())
    }

    /// GRO on an underlay veth end (see weft_linux::ethtool); best effort.
    fn gro_on(&self, link: &str) {
        let _ = self.netns.run(|| weft_linux::ethtool::set_gro(link, true));
    }
}

/// Creates what is missing of the fabric, the client and the nodes (idempotent).
pub fn ensure(layout: &Layout, placement: &Placement) -> Result<()> {
    let mut fabric = Ns::ensure(&layout.fabric_netns())?;
    fabric.up("lo")?;
    // One bridge per subnet; the fabric routes between them (connected routes).
    for subnet in placement.fabric_subnets() {
        if !fabric.has_link(&subnet.bridge)? {
            fabric
                .nl
                .create_bridge(&subnet.bridge, None, None)
                .with_context(|| format!("in {}", fabric.name))?;
        }
        fabric.up(&subnet.bridge)?;
        fabric.address(&subnet.bridge, subnet.router, subnet.net.prefix_len())?;
        if subnet.index == 0 {
            fabric.address(
                &subnet.bridge,
                weft_cluster::API_ADDR,
                subnet.net.prefix_len(),
            )?;
            // LoadBalancer addresses are on this segment: the fabric asks
            // for them by ARP here, and the announcing node answers.
            fabric.address(&subnet.bridge, weft_cluster::LB_ROUTER, 24)?;
        }
    }
    fabric.forwarding()?;

    let mut client = Ns::ensure(&layout.client_netns())?;
    if !fabric.has_link("client0")? {
        fabric
            .nl
            .create_veth("client0", "eth0", &client.netns, None, None)
            .with_context(|| format!("in {}", fabric.name))?;
    }
    fabric.address("client0", CLIENT_ROUTER, 24)?;
    fabric.up("client0")?;
    client.address("eth0", CLIENT_ADDR, 24)?;
    client.up("eth0")?;
    client.up("lo")?;
    client.default_route(CLIENT_ROUTER)?;

    for node in layout.nodes_in(placement)? {
        let mut ns = Ns::ensure(&node.netns)?;
        let port = format!("n{}", node.index);
        if !fabric.has_link(&port)? {
            fabric
                .nl
                .create_veth(&port, "eth0", &ns.netns, None, None)
                .with_context(|| format!("in {}", fabric.name))?;
        }
        let (port_index, bridge) = (fabric.index(&port)?, fabric.index(&node.subnet.bridge)?);
        fabric.nl.set_master(port_index, bridge)?;
        fabric.up(&port)?;
        ns.address("eth0", node.ip, node.subnet.net.prefix_len())?;
        ns.up("eth0")?;
        ns.up("lo")?;
        ns.default_route(node.subnet.router)?;
        ns.forwarding()?;
        // GRO on the underlay veth, both ends.
        ns.gro_on("eth0");
        fabric.gro_on(&port);
    }
    Ok(())
}

/// Deletes every namespace of the cluster; returns the names removed.
/// Deleting a namespace removes the links, addresses, routes and nft tables in it.
pub fn remove_all(layout: &Layout) -> Result<Vec<String>> {
    let names = cluster_netns(layout);
    let mut errors = Vec::new();
    for name in &names {
        if let Err(e) = ip_netns("del", name) {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!("could not remove namespaces: {}", errors.join("; "));
    }
    Ok(names)
}
