//! LoadBalancer addresses for weft, pure parts (like MetalLB in L2 mode or
//! Cilium's LB-IPAM): [`parse_pool`] reads LoadBalancerIPPool objects,
//! [`allocate`](fn@allocate) gives every LoadBalancer Service weft serves its addresses
//! from them, [`status_patch`] is what publishes them in the Service's
//! status, and [`announcers`] picks the one node that answers ARP / NDP
//! for each address. No I/O, clock or randomness: the agent feeds in what
//! its watches hold and writes out what comes back, and every agent
//! computes the same answer from the same objects.
//!
//! The pool resource (cluster-scoped, `weft.dev/v1alpha1`):
//!
//! ```yaml
//! apiVersion: weft.dev/v1alpha1
//! kind: LoadBalancerIPPool
//! metadata: {name: default}
//! spec:
//!   addresses: ["203.0.113.0/24", "203.0.113.200-203.0.113.220", "2001:db8::/120", "198.51.100.7"]
//!   autoAssign: true          # default; false: only Services asking for one of its addresses
//!   serviceSelector: {matchLabels: {team: a}}  # optional: which Services may use it
//!   nodeSelector: {matchLabels: {edge: "true"}} # optional: which nodes may announce its addresses
//! ```
//!
//! A Service asks for addresses with `spec.loadBalancerIP` or the
//! annotation [`ANNOTATION_ADDRESSES`] (`203.0.113.9,2001:db8::9`), and
//! shares one with other Services carrying the same
//! [`ANNOTATION_SHARING_KEY`] when their ports do not clash. How an address
//! is chosen is in [`allocate`](mod@allocate), how the announcer is chosen
//! in [`announce`].

pub mod allocate;
pub mod announce;
pub mod pool;
mod service;

#[cfg(test)]
mod tests;

pub use allocate::{allocate, status_patch, Allocation, Assignment, Failure, PoolUsage, Wanted};
pub use announce::{announcers, weight, Announcement, NodeInfo, LABEL_SERVICE_NAME};
pub use pool::{parse_pool, Family, IpRange, Labels, Pool, PoolError};
pub use service::{wants_address, ServiceKey};

/// API group of the pool resource.
pub const GROUP: &str = "weft.dev";
pub const VERSION: &str = "v1alpha1";
pub const POOL_KIND: &str = "LoadBalancerIPPool";
pub const POOL_PLURAL: &str = "loadbalancerippools";
/// `spec.loadBalancerClass` of the Services weft serves (as are Services
/// without a class).
pub const LB_CLASS: &str = "weft.dev/lb";
/// Annotation on a Service: the addresses it asks for, comma-separated
/// (one per family at most).
pub const ANNOTATION_ADDRESSES: &str = "weft.dev/lb-addresses";
/// Annotation on a Service: Services with the same value may share an
/// address when their ports do not clash.
pub const ANNOTATION_SHARING_KEY: &str = "weft.dev/lb-sharing-key";
