//! Builds and removes the embedded cluster's namespaces: the fabric (the
//! "datacenter" bridge), one namespace per node, and the external client.
//! Everything happens inside `weft-<cluster>-*` namespaces; the machine's own
//! namespace is never written to.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use weft_cluster::{Layout, NodeLayout, CLIENT_ADDR, CLIENT_ROUTER, FABRIC_BRIDGE, FABRIC_ROUTER};
use weft_linux::{sysctl, Netns};

/// Names of the network namespaces that exist now.
pub fn existing_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
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

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs several `ip` commands inside one namespace in one process (`ip -batch`).
fn ip_batch(netns: &str, commands: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", netns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ip (install iproute2)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(commands.join("\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "in {netns}: ip: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn add_netns(name: &str) -> Result<()> {
    if existing_netns().iter().any(|n| n == name) {
        return Ok(());
    }
    ip(&["netns", "add", name])
}

fn set_forwarding(netns: &str) -> Result<()> {
    let ns = Netns::open(format!("/run/netns/{netns}"))?;
    ns.run(|| sysctl::ensure("net/ipv4/ip_forward", "1"))??;
    Ok(())
}

fn gro_on(netns: &str, link: &str) {
    if let Ok(ns) = Netns::open(format!("/run/netns/{netns}")) {
        let _ = ns.run(|| weft_linux::ethtool::set_gro(link, true));
    }
}

fn link_exists(netns: &str, link: &str) -> bool {
    Command::new("ip")
        .args(["-n", netns, "link", "show", "dev", link])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates what is missing of the fabric, the client and the nodes (idempotent).
pub fn ensure(layout: &Layout, nodes: &[NodeLayout]) -> Result<()> {
    let fabric = layout.fabric_netns();
    add_netns(&fabric)?;
    if !link_exists(&fabric, FABRIC_BRIDGE) {
        ip_batch(
            &fabric,
            &[
                format!("link add {FABRIC_BRIDGE} type bridge"),
                format!("link set {FABRIC_BRIDGE} up"),
                format!("addr add {FABRIC_ROUTER}/24 dev {FABRIC_BRIDGE}"),
                format!("addr add {}/24 dev {FABRIC_BRIDGE}", weft_cluster::API_ADDR),
                "link set lo up".to_string(),
            ],
        )?;
    }
    set_forwarding(&fabric)?;

    let client = layout.client_netns();
    add_netns(&client)?;
    if !link_exists(&fabric, "client0") {
        ip(&[
            "-n", &fabric, "link", "add", "client0", "type", "veth", "peer", "name", "eth0",
            "netns", &client,
        ])?;
        ip_batch(
            &fabric,
            &[
                format!("addr add {CLIENT_ROUTER}/24 dev client0"),
                "link set client0 up".into(),
            ],
        )?;
        ip_batch(
            &client,
            &[
                format!("addr add {CLIENT_ADDR}/24 dev eth0"),
                "link set eth0 up".into(),
                "link set lo up".into(),
                format!("route add default via {CLIENT_ROUTER}"),
            ],
        )?;
    }

    for node in nodes {
        add_netns(&node.netns)?;
        let port = format!("n{}", node.index);
        if !link_exists(&fabric, &port) {
            ip(&[
                "-n",
                &fabric,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ])?;
            ip_batch(
                &fabric,
                &[
                    format!("link set {port} master {FABRIC_BRIDGE}"),
                    format!("link set {port} up"),
                ],
            )?;
            ip_batch(
                &node.netns,
                &[
                    format!("addr add {}/24 dev eth0", node.ip),
                    "link set eth0 up".into(),
                    "link set lo up".into(),
                    format!("route add default via {FABRIC_ROUTER}"),
                ],
            )?;
        }
        set_forwarding(&node.netns)?;
        // GRO on the underlay veth, both ends (see weft_linux::ethtool).
        gro_on(&node.netns, "eth0");
        gro_on(&fabric, &port);
    }
    Ok(())
}

/// Deletes every namespace of the cluster; returns the names removed.
/// Deleting a namespace removes the links, addresses, routes and nft tables in it.
pub fn remove_all(layout: &Layout) -> Result<Vec<String>> {
    let names = cluster_netns(layout);
    let mut errors = Vec::new();
    for name in &names {
        if let Err(e) = ip(&["netns", "del", name]) {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!("could not remove namespaces: {}", errors.join("; "));
    }
    Ok(names)
}
