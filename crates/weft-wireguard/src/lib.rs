//! weft's WireGuard layer, for the `wireguard` backend (pod traffic between
//! nodes encrypted): the pieces that do not depend on how the agent wires
//! them in.
//!
//! - [`keys`] — a node's key pair, kept in a 0600 file across restarts.
//! - [`uapi`] — WireGuard's cross-platform configuration protocol: the
//!   desired device ([`uapi::Config`]), what a device reports
//!   ([`uapi::DeviceState`]), and the request that changes one into the
//!   other by difference.
//! - [`userspace`] — a device in this process (boringtun on a TUN
//!   interface) for kernels without WireGuard, configured through that
//!   protocol.
//!
//! Not here yet: the kernel's device over generic netlink, the compile
//! step from Node objects, and the agent's `--backend wireguard`.

pub mod keys;
pub mod uapi;
pub mod userspace;

/// The port WireGuard listens on by convention (and the kernel default of
/// `wg-quick`): UDP between node IPs.
pub const DEFAULT_PORT: u16 = 51820;
