//! weft's kube-proxy replacement, compile step: Services + EndpointSlices →
//! the whole desired content of the nftables table `inet weft-proxy`
//! ([`compile`]), with the health-check and count values the agent serves
//! next to it. Pure: no kernel access, no clock, no randomness; the agent
//! hands the [`Ruleset`](weft_nft::Ruleset) to weft-nft's `Syncer`, the one
//! writer of this table.
//!
//! The design follows kube-proxy's nftables mode (`pkg/proxy/nftables`), in
//! one `inet` table for both IP families: every per-family set, map and
//! chain of IPv6 carries a `6` (`service-ips6`, `service6-HASH-…`).
//!
//! # Base chains and priorities
//!
//! | chain | type, hook | priority | does |
//! |---|---|---|---|
//! | `filter-prerouting-pre-dnat` | filter, prerouting | dstnat − 10 (−110) | `firewall-check`: loadBalancerSourceRanges drops |
//! | `filter-output-pre-dnat` | filter, output | dstnat − 10 | `firewall-check`, for the node's own packets |
//! | `nat-prerouting` | nat, prerouting | dstnat (−100) | `services`: DNAT |
//! | `nat-output` | nat, output | dstnat | `services`: DNAT of the node's own packets |
//! | `filter-input` | filter, input | filter − 10 (−10) | `nodeport-endpoints-check`, `service-endpoints-check`: no-endpoint rejects/drops |
//! | `filter-forward` | filter, forward | filter − 10 | `service-endpoints-check`, `cluster-ips-check` (unserved ClusterIP ports → reject) |
//! | `filter-output` | filter, output | filter − 10 | `service-endpoints-check`, `cluster-ips-check` |
//! | `nat-postrouting` | nat, postrouting | srcnat (100) | `masquerading`: masquerade packets marked 0x4000 |
//!
//! Source ranges are checked before DNAT, while the packet still carries
//! the load-balancer IP (as kube-proxy). The reject/drop checks run after
//! DNAT (as current kube-proxy): a packet still addressed to a Service
//! address there was not DNATed, because the port has no usable endpoint or
//! the ClusterIP does not serve it. They run just before the default filter
//! priority, so a table at `filter` (e.g. weft-policy, which must see
//! endpoint addresses and so hooks after dstnat) sees only what passed. A
//! `reject` is only written in chains reached from the input, forward and
//! output hooks (older kernels refuse it in prerouting); every check looks
//! at the first packet of a connection only (`ct state new`).
//!
//! # Dispatch
//!
//! `services` looks the destination up in `service-ips` (`ADDR . PROTO .
//! PORT : verdict`, ClusterIPs, external IPs, load-balancer IPs) and, for a
//! local, non-loopback destination (`fib daddr type local`), the
//! `service-nodeports` map (`PROTO . PORT : verdict`). A ClusterIP goes to
//! its internal policy chain (`service-HASH-ns/name/proto/port` for Cluster,
//! `local-…` for internalTrafficPolicy Local); the other addresses go to
//! `external-…`, which masquerades (externalTrafficPolicy Cluster) or keeps
//! the client address and goes to the `local-…` chain (Local; pod and node
//! sources still go to `service-…`). Policy chains pick an endpoint: first
//! a ClientIP affinity hit (`ip saddr @affinity-… goto endpoint-…`), else
//! uniformly over the chosen endpoints by kube-proxy's cascade: endpoint i
//! of N with probability 1/(N−i) (`numgen random mod N-i 0 goto endpoint-…`),
//! no set per Service (the kernel's per-set costs made full syncs quadratic). An
//! `endpoint-HASH-…__ip/port` chain marks hairpin traffic for masquerade,
//! records affinity (`update @affinity-… { ip saddr }`, timeout per Service)
//! and DNATs.
//!
//! Masquerade (mark 0x4000, `mark-for-masquerade`) happens exactly for:
//! external traffic with policy Cluster; node traffic to an external
//! address with policy Local; an endpoint reaching itself; and sources
//! outside the cluster CIDR reaching a ClusterIP. Pod-to-pod traffic through
//! a ClusterIP keeps its source. Without a cluster CIDR of a family, that
//! family's off-cluster ClusterIP traffic is not masqueraded (kube-proxy's
//! behaviour without a local-traffic detector).
//!
//! No usable endpoint: `no-endpoint-services` / `no-endpoint-nodeports` send
//! every address of the port to `reject-chain` (TCP reset, else ICMP port
//! unreachable); when endpoints exist but none fits a Local policy, the
//! verdict is `drop`.
//!
//! UDP conntrack entries that still lead to a backend no longer serving are
//! found by [`conntrack::stale_flows`] from [`Compiled::udp_serving`].

pub mod compile;
pub mod conntrack;
pub mod input;
pub mod names;

pub use compile::{compile, CompileError, Compiled, Counts, HealthCheck, MASQ_MARK, TABLE};
pub use input::{NodeCtx, Skipped, Snapshot};

#[cfg(test)]
mod tests;
