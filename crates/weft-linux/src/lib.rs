//! Linux plumbing for weft: network namespaces, and a small synchronous
//! rtnetlink client for links (bridge, veth, vxlan), addresses, routes,
//! neighbours and FDB entries; the conntrack table (ctnetlink); and the
//! daemons' one retry/backoff policy.
//!
//! Everything here acts on whatever namespace its handle was opened in; nothing
//! reads Kubernetes objects or decides policy.

pub mod arp;
pub mod conntrack;
pub mod dropwatch;
mod error;
pub mod ethtool;
pub mod flowlog;
pub mod netlink;
pub mod netns;
pub mod nftrace;
pub mod retry;
pub mod sysctl;
#[cfg(feature = "test-support")]
pub mod testns;

pub use error::{Error, Result};
pub use netlink::{Fdb, Handle, Link, Neighbour, Route, VxlanInfo, RTPROT_WEFT};
pub use netns::Netns;
