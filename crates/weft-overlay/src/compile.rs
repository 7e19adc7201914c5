//! Nodes → the desired cross-node datapath of one node (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use ipnet::Ipv4Net;
use weft_linux::netlink::format_mac;

/// How pod traffic crosses from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// Every peer through a vxlan tunnel (Flannel's `vxlan`).
    #[default]
    Vxlan,
    /// A plain route to each peer's node IP; all nodes on one L2 subnet
    /// (Flannel's `host-gw`).
    HostGw,
    /// host-gw for peers on this node's subnet, vxlan for the others
    /// (Calico's `CrossSubnet`, Flannel's `DirectRouting`).
    Auto,
    /// Every peer through a WireGuard device, encrypted (Flannel's
    /// `wireguard`): each peer's AllowedIPs are its pod CIDR.
    Wireguard,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::Auto => "auto",
            Backend::Wireguard => "wireguard",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown overlay backend {0:?}: expected vxlan, host-gw, auto or wireguard")]
pub struct ParseBackendError(pub String);

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "auto" => Ok(Backend::Auto),
            "wireguard" => Ok(Backend::Wireguard),
            other => Err(ParseBackendError(other.to_string())),
        }
    }
}

/// Cluster-wide overlay settings (the same on every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    pub backend: Backend,
    /// VXLAN network identifier, 1..=16777215.
    pub vni: u32,
    /// UDP destination port of the tunnel (IANA 4789).
    pub port: u16,
    /// Name of weft's vxlan device (at most 15 bytes).
    pub device: String,
    /// Name of weft's WireGuard device (at most 15 bytes).
    pub wireguard_device: String,
    /// UDP port WireGuard listens on, between node IPs.
    pub wireguard_port: u16,
}

pub const DEFAULT_DEVICE: &str = "weft.vxlan";
pub const DEFAULT_WIREGUARD_DEVICE: &str = "weft.wg";
pub const DEFAULT_WIREGUARD_PORT: u16 = 51820;
pub const DEFAULT_VNI: u32 = 1;
pub const DEFAULT_PORT: u16 = 4789;

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            backend: Backend::Vxlan,
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            device: DEFAULT_DEVICE.to_string(),
            wireguard_device: DEFAULT_WIREGUARD_DEVICE.to_string(),
            wireguard_port: DEFAULT_WIREGUARD_PORT,
        }
    }
}

/// The node this datapath is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node's InternalIP: tunnel endpoint and host-gw next hop.
    pub ip: Ipv4Addr,
    /// The node's underlay address with its prefix (e.g. 192.168.1.10/24):
    /// peers inside it are reachable directly.
    pub underlay: Ipv4Net,
    pub underlay_mtu: u32,
    pub pod_cidr: Ipv4Net,
}

/// Another node of the cluster, as its Node object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Not yet allocated when `None`.
    pub pod_cidr: Option<Ipv4Net>,
    /// The MAC the peer's agent published for its vxlan device.
    pub vtep_mac: Option<[u8; 6]>,
    /// The WireGuard public key the peer's agent published.
    pub wireguard_key: Option<[u8; 32]>,
}

/// weft's WireGuard device on this node (backend `wireguard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardDevice {
    pub name: String,
    pub port: u16,
    pub mtu: u32,
    /// As for vxlan: the pod CIDR's network address /32, the source of what
    /// the node itself sends to remote pods.
    pub address: Ipv4Net,
    /// In node name order.
    pub peers: Vec<WireguardPeer>,
}

/// A peer node as WireGuard knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardPeer {
    pub node: String,
    pub public_key: [u8; 32],
    pub endpoint: SocketAddrV4,
    /// The peer's pod CIDR: what is routed to it, and all it may send from.
    pub allowed_ips: Vec<Ipv4Net>,
}

/// weft's vxlan device on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// Tunnel source; the underlay device is the one holding this address.
    pub local: Ipv4Addr,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// The node's pod CIDR network address /32 (e.g. 10.244.0.0/32): the
    /// source of packets the node itself sends to remote pods, and the
    /// address peers route this node's pod CIDR through.
    pub address: Ipv4Net,
}

/// A route weft owns (written with `RTPROT_WEFT`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DesiredRoute {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    /// Output device by name; `None` lets the kernel pick the device on the
    /// gateway's subnet (host-gw).
    pub dev: Option<String>,
    /// The gateway is reachable on `dev` although no address covers it.
    pub onlink: bool,
}

/// A permanent neighbour entry on weft's vxlan device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DesiredNeighbour {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub dev: String,
}

/// A permanent FDB entry on weft's vxlan device: frames for `mac` go to the
/// VTEP at `dst`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DesiredFdb {
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub dev: String,
}

/// The whole cross-node datapath of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Name of weft's vxlan device, present or not, so apply can remove one
    /// left behind by an earlier mode.
    pub device: String,
    pub vxlan: Option<VxlanDevice>,
    pub wireguard: Option<WireguardDevice>,
    pub routes: BTreeSet<DesiredRoute>,
    pub neighbours: BTreeSet<DesiredNeighbour>,
    pub fdb: BTreeSet<DesiredFdb>,
    /// MTU pods of this node must use (handed to the CNI config).
    pub pod_mtu: u32,
    /// Peers left out for now, and why (no podCIDR, no VTEP MAC yet, …).
    pub problems: Vec<String>,
}

/// Why no datapath can be built: the cluster cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("overlay config: {field} is {value}, expected {expected}")]
    Config {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("node {node}: IP {ip} is not inside its underlay subnet {underlay}")]
    LocalNotOnUnderlay {
        node: String,
        ip: Ipv4Addr,
        underlay: Ipv4Net,
    },
    #[error(
        "node {node}: underlay MTU {underlay_mtu} leaves pods an MTU of {pod_mtu} with {backend}, \
         expected at least {MIN_POD_MTU}"
    )]
    MtuTooSmall {
        node: String,
        underlay_mtu: u32,
        pod_mtu: u32,
        backend: Backend,
    },
    #[error(
        "backend host-gw: node {peer} ({peer_ip}) is not on the subnet {subnet} of node {node} \
         ({node_ip}); host-gw needs every node on one L2 subnet, use backend vxlan or auto"
    )]
    PeerNotOnSubnet {
        peer: String,
        peer_ip: Ipv4Addr,
        node: String,
        node_ip: Ipv4Addr,
        subnet: Ipv4Net,
    },
}

/// The smallest MTU IPv4 allows every link to have (RFC 791).
pub const MIN_POD_MTU: u32 = 68;

/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Outer IPv6 (40, so the figure holds for either family) + UDP (8) +
/// WireGuard's data header (16) and tag (16): the 80 the kernel's default
/// MTU of 1420 on a 1500 link implies.
pub const WIREGUARD_OVERHEAD: u32 = 80;

/// The MTU pods must use over `underlay_mtu`. Auto takes the vxlan figure:
/// a pod's MTU is fixed when it is created, and any peer may be across the
/// tunnel.
pub fn pod_mtu(underlay_mtu: u32, backend: Backend) -> u32 {
    match backend {
        Backend::HostGw => underlay_mtu,
        Backend::Vxlan | Backend::Auto => underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
        Backend::Wireguard => underlay_mtu.saturating_sub(WIREGUARD_OVERHEAD),
    }
}

/// The MAC of a node's vxlan device: `0e:57` ("W", locally administered,
/// unicast) followed by the node IP, so it survives device re-creation and
/// agent restarts, and peers could even derive it.
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = node_ip.octets();
    [0x0e, 0x57, a, b, c, d]
}

/// Compiles the datapath `local` needs to reach the pods of `peers`.
///
/// Peers are taken in name order; a peer named like `local` is skipped. A peer
/// that cannot be served yet (no podCIDR, no VTEP MAC for vxlan, a podCIDR
/// clashing with another node's) gets nothing and is listed in `problems`.
/// With host-gw, any peer outside `local.underlay` (podCIDR or not) is an
/// error: the backend cannot work in that cluster.
pub fn compile(
    local: &LocalNode,
    peers: &[PeerNode],
    cfg: &OverlayConfig,
) -> Result<Desired, CompileError> {
    validate(local, cfg)?;
    let device = cfg.device.clone();
    let mut desired = Desired {
        device: device.clone(),
        vxlan: None,
        wireguard: None,
        routes: BTreeSet::new(),
        neighbours: BTreeSet::new(),
        fdb: BTreeSet::new(),
        pod_mtu: pod_mtu(local.underlay_mtu, cfg.backend),
        problems: Vec::new(),
    };

    let mut sorted: Vec<&PeerNode> = peers.iter().filter(|p| p.name != local.name).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    // (cidr, owner) of every pod CIDR routed so far, to refuse overlaps.
    let mut taken: Vec<(Ipv4Net, &str)> = vec![(local.pod_cidr, local.name.as_str())];
    let mut needs_vxlan = cfg.backend == Backend::Vxlan;
    // Peers whose pod CIDRs overlap each other: none of them is routed, so a
    // crafted Node can never take over another node's pods by its name order.
    let contested = contested_peers(&sorted, &local.name);
    let mut wg_peers = Vec::new();

    for (i, peer) in sorted.iter().enumerate() {
        if i > 0 && sorted[i - 1].name == peer.name {
            desired.problems.push(format!(
                "node {}: listed twice, first entry used",
                peer.name
            ));
            continue;
        }
        let direct = local.underlay.contains(&peer.ip);
        let over_vxlan = match cfg.backend {
            Backend::Vxlan => true,
            Backend::HostGw | Backend::Wireguard => false,
            Backend::Auto => !direct,
        };
        if cfg.backend == Backend::HostGw && !direct {
            return Err(CompileError::PeerNotOnSubnet {
                peer: peer.name.clone(),
                peer_ip: peer.ip,
                node: local.name.clone(),
                node_ip: local.ip,
                subnet: local.underlay.trunc(),
            });
        }
        if peer.ip == local.ip {
            desired.problems.push(format!(
                "node {}: has the IP {} of this node {}, skipped",
                peer.name, peer.ip, local.name
            ));
            continue;
        }
        let Some(cidr) = peer.pod_cidr else {
            desired
                .problems
                .push(format!("node {}: no podCIDR yet", peer.name));
            continue;
        };
        if over_vxlan {
            needs_vxlan = true;
        }
        if let Some(others) = contested.get(peer.name.as_str()) {
            desired.problems.push(format!(
                "node {}: podCIDR {cidr} overlaps the podCIDR of node {}; none of them is routed",
                peer.name,
                others.join(", node ")
            ));
            continue;
        }
        if let Some((other, owner)) = taken.iter().find(|(t, _)| overlaps(t, &cidr)) {
            desired.problems.push(format!(
                "node {}: podCIDR {cidr} overlaps {other} of node {owner}, skipped",
                peer.name
            ));
            continue;
        }
        if cfg.backend == Backend::Wireguard {
            let Some(key) = peer.wireguard_key else {
                desired.problems.push(format!(
                    "node {}: no WireGuard public key published yet, its pods are unreachable for now",
                    peer.name
                ));
                continue;
            };
            taken.push((cidr, peer.name.as_str()));
            wg_peers.push(WireguardPeer {
                node: peer.name.clone(),
                public_key: key,
                endpoint: SocketAddrV4::new(peer.ip, cfg.wireguard_port),
                allowed_ips: vec![cidr],
            });
            desired.routes.insert(DesiredRoute {
                dst: cidr,
                via: cidr.network(),
                dev: Some(cfg.wireguard_device.clone()),
                onlink: true,
            });
            continue;
        }
        if !over_vxlan {
            taken.push((cidr, peer.name.as_str()));
            desired.routes.insert(DesiredRoute {
                dst: cidr,
                via: peer.ip,
                dev: None,
                onlink: false,
            });
            continue;
        }
        let Some(mac) = peer.vtep_mac else {
            desired.problems.push(format!(
                "node {}: no VTEP MAC published yet, its pods are unreachable for now",
                peer.name
            ));
            continue;
        };
        taken.push((cidr, peer.name.as_str()));
        let gateway = cidr.network();
        desired.fdb.insert(DesiredFdb {
            mac,
            dst: peer.ip,
            dev: device.clone(),
        });
        desired.neighbours.insert(DesiredNeighbour {
            ip: gateway,
            mac,
            dev: device.clone(),
        });
        desired.routes.insert(DesiredRoute {
            dst: cidr,
            via: gateway,
            dev: Some(device.clone()),
            onlink: true,
        });
    }

    if cfg.backend == Backend::Wireguard {
        desired.wireguard = Some(WireguardDevice {
            name: cfg.wireguard_device.clone(),
            port: cfg.wireguard_port,
            mtu: pod_mtu(local.underlay_mtu, cfg.backend),
            address: Ipv4Net::from(local.pod_cidr.network()),
            peers: wg_peers,
        });
    }
    if needs_vxlan {
        desired.vxlan = Some(VxlanDevice {
            name: device,
            vni: cfg.vni,
            port: cfg.port,
            local: local.ip,
            mtu: local.underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
            mac: vtep_mac(local.ip),
            address: Ipv4Net::from(local.pod_cidr.network()),
        });
    }
    Ok(desired)
}

/// Name → the other peers its pod CIDR overlaps, for every peer that overlaps
/// at least one other (the first entry of each name; `local` excluded).
/// Sorted by network address, CIDRs overlap only by containment, so one sweep
/// keeping the widest block seen so far finds every pair with that block.
fn contested_peers<'a>(sorted: &[&'a PeerNode], local: &str) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut blocks: Vec<(u32, u32, &str)> = Vec::new();
    for (i, p) in sorted.iter().enumerate() {
        if p.name == local || (i > 0 && sorted[i - 1].name == p.name) {
            continue;
        }
        if let Some(c) = p.pod_cidr {
            blocks.push((
                u32::from(c.network()),
                u32::from(c.broadcast()),
                p.name.as_str(),
            ));
        }
    }
    blocks.sort();
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut widest: Option<(u32, &str)> = None;
    for (start, end, name) in blocks {
        match widest {
            Some((wend, wname)) if start <= wend => {
                out.entry(name).or_default().push(wname);
                out.entry(wname).or_default().push(name);
                if end > wend {
                    widest = Some((end, name));
                }
            }
            _ => widest = Some((end, name)),
        }
    }
    for others in out.values_mut() {
        others.sort();
        others.dedup();
    }
    out
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn validate(local: &LocalNode, cfg: &OverlayConfig) -> Result<(), CompileError> {
    if cfg.vni == 0 || cfg.vni > 0x00ff_ffff {
        return Err(CompileError::Config {
            field: "vni",
            value: cfg.vni.to_string(),
            expected: "1..=16777215",
        });
    }
    if cfg.port == 0 {
        return Err(CompileError::Config {
            field: "port",
            value: "0".to_string(),
            expected: "a UDP port 1..=65535",
        });
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
    };
    if cfg.backend == Backend::Wireguard {
        if cfg.wireguard_port == 0 {
            return Err(CompileError::Config {
                field: "wireguard_port",
                value: "0".to_string(),
                expected: "a UDP port 1..=65535",
            });
        }
        if !name_ok(&cfg.wireguard_device) || cfg.wireguard_device == cfg.device {
            return Err(CompileError::Config {
                field: "wireguard_device",
                value: format!("{:?}", cfg.wireguard_device),
                expected: "an interface name of 1 to 15 printable characters without '/' or ':', not the vxlan device's",
            });
        }
    }
    if !name_ok(&cfg.device) {
        return Err(CompileError::Config {
            field: "device",
            value: format!("{:?}", cfg.device),
            expected: "an interface name of 1 to 15 printable characters without '/' or ':'",
        });
    }
    if !local.underlay.contains(&local.ip) {
        return Err(CompileError::LocalNotOnUnderlay {
            node: local.name.clone(),
            ip: local.ip,
            underlay: local.underlay,
        });
    }
    let mtu = pod_mtu(local.underlay_mtu, cfg.backend);
    if mtu < MIN_POD_MTU {
        return Err(CompileError::MtuTooSmall {
            node: local.name.clone(),
            underlay_mtu: local.underlay_mtu,
            pod_mtu: mtu,
            backend: cfg.backend,
        });
    }
    Ok(())
}

/// One line per object, in `ip`/`bridge` syntax, for logs and golden tests.
impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.vxlan {
            writeln!(
                f,
                "link {} vxlan id {} dstport {} local {} mtu {} address {} nolearning",
                d.name,
                d.vni,
                d.port,
                d.local,
                d.mtu,
                format_mac(&d.mac)
            )?;
            writeln!(f, "addr {} dev {}", d.address, d.name)?;
        }
        if let Some(w) = &self.wireguard {
            writeln!(
                f,
                "link {} wireguard listen-port {} mtu {}",
                w.name, w.port, w.mtu
            )?;
            writeln!(f, "addr {} dev {}", w.address, w.name)?;
            for p in &w.peers {
                let ips: Vec<String> = p.allowed_ips.iter().map(|n| n.to_string()).collect();
                writeln!(
                    f,
                    "peer {} endpoint {} allowed-ips {} dev {} # {}",
                    base64(&p.public_key),
                    p.endpoint,
                    ips.join(","),
                    w.name,
                    p.node
                )?;
            }
        }
        for e in &self.fdb {
            writeln!(
                f,
                "fdb {} dst {} dev {} self permanent",
                format_mac(&e.mac),
                e.dst,
                e.dev
            )?;
        }
        for n in &self.neighbours {
            writeln!(
                f,
                "neigh {} lladdr {} dev {} permanent",
                n.ip,
                format_mac(&n.mac),
                n.dev
            )?;
        }
        for r in &self.routes {
            write!(f, "route {} via {}", r.dst, r.via)?;
            if let Some(dev) = &r.dev {
                write!(f, " dev {dev}")?;
            }
            if r.onlink {
                f.write_str(" onlink")?;
            }
            writeln!(f, " proto weft")?;
        }
        writeln!(f, "pod-mtu {}", self.pod_mtu)?;
        for p in &self.problems {
            writeln!(f, "problem {p}")?;
        }
        Ok(())
    }
}

/// Standard base64, as `wg` prints keys (44 characters for 32 bytes).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
