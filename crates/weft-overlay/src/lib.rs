//! The cross-node pod datapath of weft: how a pod on one node reaches a pod
//! on another.
//!
//! [`compile`] turns this node and its peers (from Node objects) into a
//! [`Desired`] value: a vxlan device with FDB, neighbour and route entries
//! (backend `vxlan`, Flannel's design), plain routes via the peers' node IPs
//! (`host-gw`), host-gw on this node's subnet and vxlan across it (`auto`,
//! Calico's CrossSubnet), or a WireGuard device whose peers are the other
//! nodes (`wireguard`: encrypted; a userspace device, see [`Datapath`]). [`Datapath::apply`] writes the difference between
//! that value and the kernel, touching only objects weft owns.
//!
//! The agent publishes [`vtep_mac`] of its node IP for peers, and ensures
//! `net/ipv4/ip_forward` is on in the node's namespace.

mod apply;
mod compile;

pub use apply::{ApplyError, ApplyReport, Datapath};
pub use compile::{
    compile, pod_mtu, vtep_mac, Backend, CompileError, Desired, DesiredFdb, DesiredNeighbour,
    DesiredRoute, LocalNode, OverlayConfig, ParseBackendError, PeerNode, VxlanDevice,
    WireguardDevice, WireguardPeer, DEFAULT_DEVICE, DEFAULT_PORT, DEFAULT_VNI,
    DEFAULT_WIREGUARD_DEVICE, DEFAULT_WIREGUARD_PORT, MIN_POD_MTU, VXLAN_OVERHEAD,
    WIREGUARD_OVERHEAD,
};
pub use weft_linux::RTPROT_WEFT;

#[cfg(test)]
mod tests;
