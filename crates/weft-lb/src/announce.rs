//! Which node answers ARP (IPv4) and neighbour solicitations (IPv6) for
//! each assigned address in L2 mode: exactly one, chosen by every agent
//! alike from the same inputs, with no coordination.
//!
//! Eligible nodes for an address: ready (the caller folds node liveness into
//! [`NodeInfo::ready`]), matching the nodeSelector of the pool of every
//! Service holding the address, and, for each such Service with
//! externalTrafficPolicy Local, holding a ready endpoint of it (an endpoint
//! of an EndpointSlice labelled `kubernetes.io/service-name` with the
//! Service's name, in its namespace, of the address's family, with
//! `conditions.ready` not false and `nodeName` the node): a Local Service
//! keeps the client's address only because traffic never leaves the node
//! it arrives at, so that node must serve it. An address without eligible
//! node is not announced.
//!
//! Among the eligible nodes the one with the highest rendezvous weight
//! wins (highest random weight hashing, Thaler & Ravishankar): the weight
//! of node `n` for address `a` is [`weight`]`(a, n)`. Adding or removing a
//! node moves only the addresses whose winner it becomes or was, and the
//! weights spread addresses evenly over nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::allocate::Allocation;
use crate::pool::{Family, Labels, Pool};
use crate::service::ServiceKey;

/// Label linking an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// What announcer choice needs of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// Ready and alive, as the caller judges it (Ready condition, lease).
    pub ready: bool,
}

/// The node that announces one address, and the Services behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub node: String,
    /// Sorted.
    pub services: Vec<ServiceKey>,
}

/// The rendezvous weight of `node` for `ip`: FNV-1a 64 of the bytes of
/// `"{ip}/{node}"` (the address as Rust formats it: dotted quad, RFC 5952
/// for IPv6), passed through the 64-bit finalizer of MurmurHash3
/// (`fmix64`): FNV-1a alone mixes its last input bytes into the high bits
/// of the hash poorly, and node names often differ only at the end
/// (`node-1`, `node-2`), which would skew the choice. Fixed: every agent
/// of every version must compute the same weights.
pub fn weight(ip: IpAddr, node: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(format!("{ip}/{node}").as_bytes());
    let mut k = h.finish();
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The announcing node of every assigned address that has an eligible node
/// (module doc). `services` and `slices` are those [`allocate`] saw and
/// their EndpointSlices; a Service missing from them counts as
/// externalTrafficPolicy Cluster, a pool missing from `pools` as one
/// without nodeSelector. Nodes are taken by name (a duplicate is dropped).
///
/// [`allocate`]: fn@crate::allocate
pub fn announcers(
    alloc: &Allocation,
    pools: &[Pool],
    services: &[Service],
    slices: &[EndpointSlice],
    nodes: &[NodeInfo],
) -> BTreeMap<IpAddr, Announcement> {
    let local = local_services(services);
    let ready_nodes = ready_endpoint_nodes(slices, &local);
    let mut nodes: Vec<&NodeInfo> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|b, a| a.name == b.name);
    let pools: BTreeMap<&str, &Pool> = pools.iter().map(|p| (p.name.as_str(), p)).collect();

    let mut out = BTreeMap::new();
    for (ip, users) in alloc.by_address() {
        let family = Family::of(&ip);
        let ip_pools: BTreeSet<&str> = users
            .iter()
            .filter_map(|k| alloc.assigned.get(k))
            .map(|a| a.pool.as_str())
            .collect();
        let eligible = nodes.iter().filter(|n| {
            n.ready
                && ip_pools
                    .iter()
                    .filter_map(|p| pools.get(p))
                    .all(|p| p.announcer(&n.labels))
                && users.iter().filter(|k| local.contains(*k)).all(|k| {
                    ready_nodes
                        .get(&(k.clone(), family))
                        .is_some_and(|ns| ns.contains(n.name.as_str()))
                })
        });
        // Strictly greater: on a (vanishingly unlikely) tie the first name wins.
        let mut best: Option<(&NodeInfo, u64)> = None;
        for n in eligible {
            let w = weight(ip, &n.name);
            if best.is_none_or(|(_, bw)| w > bw) {
                best = Some((n, w));
            }
        }
        if let Some((n, _)) = best {
            out.insert(
                ip,
                Announcement {
                    node: n.name.clone(),
                    services: users,
                },
            );
        }
    }
    out
}

/// Services with externalTrafficPolicy Local.
fn local_services(services: &[Service]) -> BTreeSet<ServiceKey> {
    services
        .iter()
        .filter(|s| {
            matches!(
                s.spec
                    .as_ref()
                    .and_then(|s| s.external_traffic_policy.as_deref()),
                Some("Local") | Some("OnlyLocal")
            )
        })
        .filter_map(ServiceKey::of)
        .collect()
}

/// (Service, family) → nodes with a ready endpoint of it, for the Services
/// in `of`.
fn ready_endpoint_nodes<'a>(
    slices: &'a [EndpointSlice],
    of: &BTreeSet<ServiceKey>,
) -> BTreeMap<(ServiceKey, Family), BTreeSet<&'a str>> {
    let mut by: BTreeMap<(ServiceKey, Family), BTreeSet<&str>> = BTreeMap::new();
    for s in slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        else {
            continue;
        };
        let key = ServiceKey::new(
            s.metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            svc.clone(),
        );
        // FQDN slices carry no addresses to forward to.
        let Some(family) = Family::parse(&s.address_type) else {
            continue;
        };
        if !of.contains(&key) {
            continue;
        }
        let nodes = by.entry((key, family)).or_default();
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if let (true, Some(n)) = (ready, e.node_name.as_deref()) {
                nodes.insert(n);
            }
        }
    }
    by
}
