//! Kernel work of one attachment: the bridge, the veth pair, addresses and
//! routes inside the pod. Plans come in as plain values; this module only
//! writes them (and reads back what CHECK compares).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use weft_linux::netlink::format_mac;
use weft_linux::{sysctl, Handle, Link, Netns, Route};

use crate::spec::{code, CniError};

/// What ADD wires, fully decided before any kernel write.
#[derive(Debug, Clone)]
pub struct Plan {
    pub bridge: String,
    /// Addresses the bridge carries as the pods' gateway (`isGateway`).
    pub bridge_addrs: Vec<IpNet>,
    pub host_veth: String,
    pub ifname: String,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub hairpin: bool,
    /// Pod addresses with their subnet prefix.
    pub pod_addrs: Vec<IpNet>,
    /// Routes inside the pod, via the pod interface.
    pub pod_routes: Vec<(IpNet, Option<IpAddr>)>,
    /// Turn on forwarding in the node's namespace for these families (v4, v6).
    pub forward: (bool, bool),
}

/// What ADD made, for the result.
#[derive(Debug, Clone)]
pub struct Wired {
    pub bridge: Link,
    pub host: Link,
    pub pod: Link,
}

pub fn kernel_err(e: weft_linux::Error) -> CniError {
    CniError::new(code::KERNEL, e.to_string())
}

/// The host-side veth name: stable per (container, ifname), so DEL and GC
/// find it without a cache, and a retried ADD can clear a half-made one.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!(
        "veth{:08x}",
        crate::fnv64(format!("{container_id}/{ifname}").as_bytes()) as u32
    )
}

/// Is this a host veth name weft-cni could have made?
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 12 && name.starts_with("veth") && name[4..].chars().all(|c| c.is_ascii_hexdigit())
}

pub fn open_netns(path: &Path) -> Result<Netns, CniError> {
    Netns::open(path).map_err(|e| {
        if e.is_not_found() {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("network namespace {} does not exist", path.display()),
            )
        } else {
            kernel_err(e)
        }
    })
}

/// A fixed MAC for the bridge, so the pods' gateway MAC never changes when
/// ports come and go: `0a:58` + the IPv4 gateway (as kubenet did), else a
/// hash of the bridge name and its first address. Locally administered.
pub fn bridge_mac(name: &str, addrs: &[IpNet]) -> [u8; 6] {
    if let Some(IpAddr::V4(gw)) = addrs.iter().map(|a| a.addr()).find(IpAddr::is_ipv4) {
        let o = gw.octets();
        return [0x0a, 0x58, o[0], o[1], o[2], o[3]];
    }
    let seed = format!(
        "{name}/{}",
        addrs.first().map(|a| a.to_string()).unwrap_or_default()
    );
    let h = crate::fnv64(seed.as_bytes()).to_be_bytes();
    [0x0a, 0x58, h[0], h[1], h[2], h[3]]
}

/// Finds or creates the bridge and brings it up.
fn ensure_bridge(
    node: &mut Handle,
    name: &str,
    mtu: Option<u32>,
    mac: [u8; 6],
) -> Result<Link, CniError> {
    let link = match node.link_by_name(name).map_err(kernel_err)? {
        Some(l) => l,
        None => {
            match node.create_bridge(name, mtu, Some(mac)) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {} // another ADD won the race
                Err(e) => return Err(kernel_err(e)),
            }
            node.link_by_name(name)
                .map_err(kernel_err)?
                .ok_or_else(|| {
                    CniError::new(
                        code::KERNEL,
                        format!("bridge {name} vanished after creation"),
                    )
                })?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "bridge: {name} exists and is not a bridge (it is {})",
                link.kind.as_deref().unwrap_or("unknown")
            ),
        ));
    }
    if !link.up {
        node.set_up(link.index).map_err(kernel_err)?;
    }
    Ok(link)
}

/// Wires the pod. On error the caller runs [`unwire`] to remove what was made.
pub fn wire(node: &mut Handle, pod_ns: &Netns, plan: &Plan) -> Result<Wired, CniError> {
    let bridge = ensure_bridge(
        node,
        &plan.bridge,
        plan.mtu,
        bridge_mac(&plan.bridge, &plan.bridge_addrs),
    )?;
    for addr in &plan.bridge_addrs {
        match node.add_address(bridge.index, *addr) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(kernel_err(e)),
        }
    }
    if plan.forward.0 || plan.forward.1 {
        // The plugin runs in the node's namespace, so these are the node's sysctls.
        if plan.forward.0 {
            sysctl::ensure("net/ipv4/ip_forward", "1").map_err(kernel_err)?;
        }
        if plan.forward.1 {
            sysctl::ensure("net/ipv6/conf/all/forwarding", "1").map_err(kernel_err)?;
        }
    }

    // A veth of the same name can only be a leftover of an earlier ADD of this
    // very attachment that died half-way.
    node.delete_link_by_name(&plan.host_veth)
        .map_err(kernel_err)?;
    node.create_veth(&plan.host_veth, &plan.ifname, pod_ns, plan.mtu, plan.mac)
        .map_err(|e| {
            if e.is_exists() {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "CNI_IFNAME: interface {} already exists in {}",
                        plan.ifname,
                        pod_ns.path().display()
                    ),
                )
            } else {
                kernel_err(e)
            }
        })?;
    crate::stall_point("after-veth");
    let host = node
        .link_by_name(&plan.host_veth)
        .map_err(kernel_err)?
        .ok_or_else(|| {
            CniError::new(
                code::KERNEL,
                format!("veth {} vanished after creation", plan.host_veth),
            )
        })?;
    node.set_master(host.index, bridge.index)
        .map_err(kernel_err)?;
    if plan.hairpin {
        node.set_hairpin(host.index, true).map_err(kernel_err)?;
    }
    node.set_up(host.index).map_err(kernel_err)?;
    // GRO on both ends: streams cross the bridge and the overlay in
    // aggregates (an optimisation; a kernel without it just leaves it off).
    let _ = weft_linux::ethtool::set_gro(&plan.host_veth, true);
    let _ = pod_ns.run(|| weft_linux::ethtool::set_gro(&plan.ifname, true));

    let mut pod_h = Handle::in_netns(pod_ns).map_err(kernel_err)?;
    let pod = pod_h
        .link_by_name(&plan.ifname)
        .map_err(kernel_err)?
        .ok_or_else(|| {
            CniError::new(
                code::KERNEL,
                format!("{} missing in the pod after creation", plan.ifname),
            )
        })?;
    for addr in &plan.pod_addrs {
        pod_h.add_address(pod.index, *addr).map_err(kernel_err)?;
    }
    pod_h.set_up(pod.index).map_err(kernel_err)?;
    if let Some(lo) = pod_h.link_by_name("lo").map_err(kernel_err)? {
        if !lo.up {
            pod_h.set_up(lo.index).map_err(kernel_err)?;
        }
    }
    for (dst, gw) in &plan.pod_routes {
        let route = Route {
            dst: *dst,
            gateway: *gw,
            oif: Some(pod.index),
            scope_link: gw.is_none(),
            onlink: false,
        };
        match pod_h.add_route(&route) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(kernel_err(e)),
        }
    }
    // The bridge's MAC may have changed when the port joined; read it last.
    let bridge = node
        .link_by_index(bridge.index)
        .map_err(kernel_err)?
        .unwrap_or(bridge);
    Ok(Wired { bridge, host, pod })
}

/// Removes the attachment's veth pair by its host-side name: deleting one
/// end of a veth deletes both, so the pod namespace need not be entered, and
/// an interface in the pod that weft-cni did not make is never touched.
/// Missing is fine.
pub fn unwire(host_veth: &str) -> Result<(), CniError> {
    let mut node = Handle::new().map_err(kernel_err)?;
    node.delete_link_by_name(host_veth)
        .map_err(kernel_err)
        .map(drop)
}

/// Host veths weft-cni made (by name) that belong to `bridge`: its ports,
/// and unattached ones — an ADD killed between creating the veth and
/// attaching it leaves one, and a live attachment is never unattached.
pub fn our_ports(node: &mut Handle, bridge: &str) -> Result<Vec<Link>, CniError> {
    let bridge_index = node
        .link_by_name(bridge)
        .map_err(kernel_err)?
        .map(|b| b.index);
    Ok(node
        .links()
        .map_err(kernel_err)?
        .into_iter()
        .filter(|l| is_host_veth_name(&l.name) && (l.master.is_none() || l.master == bridge_index))
        .collect())
}

/// What CHECK expects to find, taken from the previous result.
#[derive(Debug, Clone)]
pub struct Expected {
    pub bridge: String,
    pub host_veth: String,
    pub ifname: String,
    pub mac: Option<String>,
    pub addrs: Vec<IpNet>,
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// Compares the kernel with `want`; every difference is listed.
pub fn check(node: &mut Handle, pod_ns: &Netns, want: &Expected) -> Result<(), CniError> {
    let mut problems = Vec::new();
    let bridge = node.link_by_name(&want.bridge).map_err(kernel_err)?;
    match &bridge {
        None => problems.push(format!("bridge {} is missing", want.bridge)),
        Some(b) if !b.up => problems.push(format!("bridge {} is down", want.bridge)),
        _ => {}
    }
    match node.link_by_name(&want.host_veth).map_err(kernel_err)? {
        None => problems.push(format!("host veth {} is missing", want.host_veth)),
        Some(h) => {
            if bridge.as_ref().is_some_and(|b| h.master != Some(b.index)) {
                problems.push(format!(
                    "host veth {} is not attached to bridge {}",
                    want.host_veth, want.bridge
                ));
            }
            if !h.up {
                problems.push(format!("host veth {} is down", want.host_veth));
            }
        }
    }
    let mut pod_h = Handle::in_netns(pod_ns).map_err(kernel_err)?;
    match pod_h.link_by_name(&want.ifname).map_err(kernel_err)? {
        None => problems.push(format!(
            "interface {} is missing in {}",
            want.ifname,
            pod_ns.path().display()
        )),
        Some(link) => {
            if let (Some(want_mac), Some(mac)) = (&want.mac, &link.mac) {
                if !want_mac.eq_ignore_ascii_case(&format_mac(mac)) {
                    problems.push(format!(
                        "{} has MAC {} but the result says {want_mac}",
                        want.ifname,
                        format_mac(mac)
                    ));
                }
            }
            if !link.up {
                problems.push(format!("{} is down", want.ifname));
            }
            let have: Vec<IpNet> = pod_h
                .addresses(Some(link.index))
                .map_err(kernel_err)?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
            for addr in &want.addrs {
                if !have.contains(addr) {
                    problems.push(format!("address {addr} is missing on {}", want.ifname));
                }
            }
            let mut routes = pod_h.routes(false).map_err(kernel_err)?;
            routes.extend(pod_h.routes(true).map_err(kernel_err)?);
            for (dst, gw) in &want.routes {
                let found = routes
                    .iter()
                    .any(|r| r.dst == *dst && (gw.is_none() || r.gateway == *gw));
                if !found {
                    let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
                    problems.push(format!("route {dst}{via} is missing in the pod"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::CHECK_FAILED,
            format!("CHECK failed: {}", problems.join("; ")),
        ))
    }
}

pub fn mac_string(link: &Link) -> Option<String> {
    link.mac.as_ref().map(format_mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_and_recognisable() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_eq!(a.len(), 12);
        assert!(is_host_veth_name(&a));
        assert!(!is_host_veth_name("veth0"));
        assert!(!is_host_veth_name("eth0abcdefgh"));
    }
}
