//! The semantic model: NetworkPolicies resolved against the Pods and
//! Namespaces they name, as the networking.k8s.io/v1 API documentation
//! defines them. Both the nft compile step ([`crate::compile`]) and the
//! explainer ([`crate::explain`]) read this one model, so what `weft
//! explain` says is what the ruleset does.
//!
//! Rules of the API this module implements (kubernetes.io "Network
//! Policies" and the NetworkPolicy API reference):
//! - `policyTypes` unset: Ingress always, Egress when `egress` has rules.
//! - A pod is isolated for a direction when a policy selecting it lists that
//!   type; then only what the union of those policies' rules allows passes.
//!   An empty rule list denies all; a rule `{}` allows all.
//! - Peers: `podSelector` alone = pods of the policy's namespace;
//!   `namespaceSelector` alone = every pod of the matching namespaces; both in
//!   one peer = pods matching both; `ipBlock` = the CIDR minus its `except`s
//!   (only its own). Separate peers and separate rules are ORed. No `from` /
//!   `to` = every source / destination; no `ports` = every port.
//! - Ports: a number or a named port (the named container port of the
//!   destination pod: the selected pod for ingress, each peer pod for
//!   egress), `endPort` for ranges, protocol TCP (default), UDP or SCTP.
//! - hostNetwork pods are never selected and never match a pod peer (their
//!   traffic is their node's); pods that finished (Succeeded, Failed) match
//!   nothing (their addresses may be reused).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label every namespace carries with its own name (set by the API
/// server since Kubernetes 1.21; added here when a namespace lacks it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

/// A transport protocol a policy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The nft `inet_proto` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The API's name (`TCP`, `UDP`, `SCTP`).
    pub fn api_name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Proto::Tcp),
            "UDP" => Ok(Proto::Udp),
            "SCTP" => Ok(Proto::Sctp),
            _ => Err(format!("unknown protocol {s:?} (TCP, UDP or SCTP)")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// A direction of traffic relative to the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A named container port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedPort {
    pub name: String,
    pub proto: Proto,
    pub port: u16,
}

/// What the model needs of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    pub host_network: bool,
    /// Succeeded or Failed.
    pub finished: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone()?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        let mut ports = Vec::new();
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            for p in c.ports.iter().flatten() {
                let (Some(n), Ok(port)) = (&p.name, u16::try_from(p.container_port)) else {
                    continue;
                };
                let proto = p
                    .protocol
                    .as_deref()
                    .map_or(Ok(Proto::Tcp), Proto::from_str)
                    .unwrap_or(Proto::Tcp);
                ports.push(NamedPort {
                    name: n.clone(),
                    proto,
                    port,
                });
            }
        }
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        Some(PodInfo {
            namespace,
            name,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ips,
            node: spec.and_then(|s| s.node_name.clone()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            finished: matches!(phase, "Succeeded" | "Failed"),
            ports,
        })
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Can be selected by a policy and match a pod peer.
    fn counts(&self) -> bool {
        !self.host_network && !self.finished
    }

    /// The port number of the named port `name` for `proto`.
    pub fn named_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.proto == proto)
            .map(|p| p.port)
    }
}

/// The inputs of one compile.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub pods: Vec<PodInfo>,
    /// Namespace name → labels.
    pub namespaces: BTreeMap<String, Labels>,
    pub policies: Vec<NetworkPolicy>,
}

impl Snapshot {
    pub fn new<'a>(
        pods: impl IntoIterator<Item = &'a Pod>,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        policies: impl IntoIterator<Item = &'a NetworkPolicy>,
    ) -> Snapshot {
        let mut pods: Vec<PodInfo> = pods.into_iter().filter_map(PodInfo::from_pod).collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        // Names are unique in the API; a caller's duplicate is dropped (the
        // first stays), so chain and set names stay one object's.
        pods.dedup_by(|b, a| a.namespace == b.namespace && a.name == b.name);
        let namespaces = namespaces
            .into_iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                Some((name, n.metadata.labels.clone().unwrap_or_default()))
            })
            .collect();
        let mut policies: Vec<NetworkPolicy> = policies.into_iter().cloned().collect();
        policies.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        policies.dedup_by(|b, a| {
            a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name
        });
        Snapshot {
            pods,
            namespaces,
            policies,
        }
    }

    /// A namespace's labels, with its name label.
    fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.entry(NAMESPACE_NAME_LABEL.into())
            .or_insert_with(|| ns.to_string());
        l
    }
}

/// A metav1.LabelSelector over `labels`: matchLabels and matchExpressions
/// (In, NotIn, Exists, DoesNotExist); an unknown operator matches nothing
/// (the API server refuses it). An empty selector matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &selector.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// Address ranges of one family, sorted, merged, never overlapping or
/// adjacent (what an nft interval set holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

fn merge<T: Copy + Ord + num_like::Step>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if last.1 >= lo || last.1.next() == Some(lo) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Removes `cut` (sorted, merged) from `from` (sorted, merged).
fn subtract<T: Copy + Ord + num_like::Step>(from: &[(T, T)], cut: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for &(lo, hi) in from {
        let mut start = Some(lo);
        for &(clo, chi) in cut {
            let Some(s) = start else { break };
            if chi < s || clo > hi {
                continue;
            }
            if clo > s {
                out.push((s, clo.prev().expect("clo > s ≥ min")));
            }
            start = chi.next().filter(|n| *n <= hi);
        }
        if let Some(s) = start {
            out.push((s, hi));
        }
    }
    out
}

mod num_like {
    pub trait Step: Sized {
        fn next(self) -> Option<Self>;
        fn prev(self) -> Option<Self>;
    }
    impl Step for u32 {
        fn next(self) -> Option<u32> {
            self.checked_add(1)
        }
        fn prev(self) -> Option<u32> {
            self.checked_sub(1)
        }
    }
    impl Step for u128 {
        fn next(self) -> Option<u128> {
            self.checked_add(1)
        }
        fn prev(self) -> Option<u128> {
            self.checked_sub(1)
        }
    }
}

fn net_range(n: &IpNet) -> Result<(u32, u32), (u128, u128)> {
    match n {
        IpNet::V4(n) => Ok((u32::from(n.network()), u32::from(n.broadcast()))),
        IpNet::V6(n) => Err((u128::from(n.network()), u128::from(n.broadcast()))),
    }
}

impl Ranges {
    fn add_net(&mut self, n: &IpNet) {
        match net_range(n) {
            Ok(r) => self.v4.push(r),
            Err(r) => self.v6.push(r),
        }
    }

    fn add_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.push((u32::from(a), u32::from(a))),
            IpAddr::V6(a) => self.v6.push((u128::from(a), u128::from(a))),
        }
    }

    fn normalize(&mut self) {
        self.v4 = merge(std::mem::take(&mut self.v4));
        self.v6 = merge(std::mem::take(&mut self.v6));
    }

    fn minus(&self, cut: &Ranges) -> Ranges {
        Ranges {
            v4: subtract(&self.v4, &cut.v4),
            v6: subtract(&self.v6, &cut.v6),
        }
    }

    fn extend(&mut self, other: &Ranges) {
        self.v4.extend_from_slice(&other.v4);
        self.v6.extend_from_slice(&other.v6);
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|(lo, hi)| *lo <= a && a <= *hi)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|(lo, hi)| *lo <= a && a <= *hi)
            }
        }
    }
}

/// Who a rule admits (the sources of an ingress rule, the destinations of
/// an egress rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// No `from`/`to`: everyone.
    All,
    Some {
        /// Every admitted address (pod addresses and ipBlocks).
        ranges: Ranges,
        /// The pods admitted (by selectors, or whose address an ipBlock
        /// admits): indexes into [`Snapshot::pods`].
        pods: BTreeSet<usize>,
    },
}

impl Peers {
    pub fn admits(&self, ip: IpAddr) -> bool {
        match self {
            Peers::All => true,
            Peers::Some { ranges, .. } => ranges.contains(ip),
        }
    }
}

/// A numeric port entry: protocol and an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub proto: Proto,
    pub lo: u16,
    pub hi: u16,
}

/// Which ports a rule admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// No `ports`: every port of every protocol.
    All,
    Some {
        numeric: Vec<PortRange>,
        /// Named ports: resolved against the destination pod.
        named: Vec<(Proto, String)>,
    },
}

/// One rule of a policy, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Its index in the policy's `ingress` or `egress` list.
    pub index: usize,
    pub peers: Peers,
    pub ports: Ports,
}

impl ResolvedRule {
    /// Does this rule admit traffic with the other side at `peer_ip`, to
    /// `dst_pod` (the destination pod, for named ports) on `proto`/`port`?
    pub fn admits(
        &self,
        peer_ip: IpAddr,
        dst_pod: Option<&PodInfo>,
        proto: Proto,
        port: u16,
    ) -> bool {
        if !self.peers.admits(peer_ip) {
            return false;
        }
        match &self.ports {
            Ports::All => true,
            Ports::Some { numeric, named } => {
                numeric
                    .iter()
                    .any(|r| r.proto == proto && r.lo <= port && port <= r.hi)
                    || named.iter().any(|(p, n)| {
                        *p == proto && dst_pod.and_then(|d| d.named_port(n, proto)) == Some(port)
                    })
            }
        }
    }
}

/// One policy, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPolicy {
    pub namespace: String,
    pub name: String,
    /// Pods it selects: indexes into [`Snapshot::pods`].
    pub selected: BTreeSet<usize>,
    /// `Some`: the policy isolates its pods for ingress, with these rules.
    pub ingress: Option<Vec<ResolvedRule>>,
    pub egress: Option<Vec<ResolvedRule>>,
    /// What was ignored in it, and why (things the API server would refuse).
    pub problems: Vec<String>,
}

impl ResolvedPolicy {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn rules(&self, d: Direction) -> Option<&[ResolvedRule]> {
        match d {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// Every policy resolved against the snapshot.
#[derive(Debug, Clone)]
pub struct Model {
    pub snapshot: Snapshot,
    pub policies: Vec<ResolvedPolicy>,
    /// Pod index → the policies (indexes) isolating it, per direction.
    pub isolating: BTreeMap<(usize, Direction), Vec<usize>>,
    /// Address → pod index (pods that count, with addresses).
    pub by_ip: BTreeMap<IpAddr, usize>,
}

impl Model {
    pub fn build(snapshot: Snapshot) -> Model {
        let ns_labels: BTreeMap<String, Labels> = snapshot
            .pods
            .iter()
            .map(|p| p.namespace.clone())
            .chain(snapshot.namespaces.keys().cloned())
            .chain(
                snapshot
                    .policies
                    .iter()
                    .filter_map(|p| p.metadata.namespace.clone()),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|ns| {
                let l = snapshot.namespace_labels(&ns);
                (ns, l)
            })
            .collect();
        let cx = Cx {
            snap: &snapshot,
            ns_labels: &ns_labels,
        };
        let policies: Vec<ResolvedPolicy> =
            snapshot.policies.iter().map(|p| cx.resolve(p)).collect();
        let mut isolating: BTreeMap<(usize, Direction), Vec<usize>> = BTreeMap::new();
        for (i, p) in policies.iter().enumerate() {
            for &pod in &p.selected {
                if p.ingress.is_some() {
                    isolating
                        .entry((pod, Direction::Ingress))
                        .or_default()
                        .push(i);
                }
                if p.egress.is_some() {
                    isolating
                        .entry((pod, Direction::Egress))
                        .or_default()
                        .push(i);
                }
            }
        }
        let mut by_ip = BTreeMap::new();
        for (i, p) in snapshot.pods.iter().enumerate() {
            if p.counts() {
                for ip in &p.ips {
                    by_ip.entry(*ip).or_insert(i);
                }
            }
        }
        Model {
            snapshot,
            policies,
            isolating,
            by_ip,
        }
    }

    pub fn pod(&self, i: usize) -> &PodInfo {
        &self.snapshot.pods[i]
    }

    /// The policies isolating pod `i` in direction `d` (empty: not isolated).
    pub fn isolating(&self, i: usize, d: Direction) -> &[usize] {
        self.isolating.get(&(i, d)).map_or(&[], Vec::as_slice)
    }

    pub fn find_pod(&self, namespace: &str, name: &str) -> Option<usize> {
        self.snapshot
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
    }
}

struct Cx<'a> {
    snap: &'a Snapshot,
    ns_labels: &'a BTreeMap<String, Labels>,
}

impl Cx<'_> {
    fn resolve(&self, np: &NetworkPolicy) -> ResolvedPolicy {
        let namespace = np
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = np.metadata.name.clone().unwrap_or_default();
        let default_spec = NetworkPolicySpec::default();
        let spec = np.spec.as_ref().unwrap_or(&default_spec);
        let mut problems = Vec::new();
        let selected = self
            .snap
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.counts() && p.namespace == namespace)
            .filter(|(_, p)| {
                spec.pod_selector
                    .as_ref()
                    .is_none_or(|sel| selector_matches(sel, &p.labels))
            })
            .map(|(i, _)| i)
            .collect();
        let (ingress_type, egress_type) = match &spec.policy_types {
            Some(types) => {
                let mut i = false;
                let mut e = false;
                for t in types {
                    match t.as_str() {
                        "Ingress" => i = true,
                        "Egress" => e = true,
                        other => problems.push(format!("unknown policyType {other:?} ignored")),
                    }
                }
                (i, e)
            }
            None => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
        };
        let ingress = ingress_type.then(|| {
            spec.ingress
                .iter()
                .flatten()
                .enumerate()
                .map(|(index, r)| ResolvedRule {
                    index,
                    peers: self.peers(
                        &namespace,
                        r.from.as_deref(),
                        &mut problems,
                        "ingress",
                        index,
                    ),
                    ports: ports(r.ports.as_deref(), &mut problems, "ingress", index),
                })
                .collect()
        });
        let egress = egress_type.then(|| {
            spec.egress
                .iter()
                .flatten()
                .enumerate()
                .map(|(index, r)| ResolvedRule {
                    index,
                    peers: self.peers(&namespace, r.to.as_deref(), &mut problems, "egress", index),
                    ports: ports(r.ports.as_deref(), &mut problems, "egress", index),
                })
                .collect()
        });
        ResolvedPolicy {
            namespace,
            name,
            selected,
            ingress,
            egress,
            problems,
        }
    }

    fn peers(
        &self,
        namespace: &str,
        peers: Option<&[NetworkPolicyPeer]>,
        problems: &mut Vec<String>,
        dir: &str,
        rule: usize,
    ) -> Peers {
        let Some(peers) = peers.filter(|p| !p.is_empty()) else {
            return Peers::All;
        };
        let mut ranges = Ranges::default();
        let mut pods = BTreeSet::new();
        for (j, peer) in peers.iter().enumerate() {
            let by_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
            if let Some(block) = &peer.ip_block {
                if by_selector {
                    problems.push(format!(
                        "{dir}[{rule}] peer {j}: ipBlock together with a selector is invalid; ignored"
                    ));
                    continue;
                }
                let cidr: IpNet = match block.cidr.parse() {
                    Ok(c) => c,
                    Err(_) => {
                        problems.push(format!(
                            "{dir}[{rule}] peer {j}: ipBlock cidr {:?} is not a CIDR; ignored",
                            block.cidr
                        ));
                        continue;
                    }
                };
                let mut r = Ranges::default();
                r.add_net(&cidr);
                let mut cut = Ranges::default();
                for e in block.except.iter().flatten() {
                    match e.parse::<IpNet>() {
                        Ok(n) => cut.add_net(&n),
                        Err(_) => problems.push(format!(
                            "{dir}[{rule}] peer {j}: except {e:?} is not a CIDR; ignored"
                        )),
                    }
                }
                cut.normalize();
                let r = r.minus(&cut);
                // Pods whose address the block admits (for named ports).
                for (i, p) in self.snap.pods.iter().enumerate() {
                    if p.counts() && p.ips.iter().any(|ip| r.contains(*ip)) {
                        pods.insert(i);
                    }
                }
                ranges.extend(&r);
                continue;
            }
            if !by_selector {
                problems.push(format!(
                    "{dir}[{rule}] peer {j}: names no podSelector, namespaceSelector or ipBlock; ignored"
                ));
                continue;
            }
            for (i, p) in self.snap.pods.iter().enumerate() {
                if !p.counts() {
                    continue;
                }
                let ns_ok = match &peer.namespace_selector {
                    None => p.namespace == namespace,
                    Some(sel) => self
                        .ns_labels
                        .get(&p.namespace)
                        .is_some_and(|l| selector_matches(sel, l)),
                };
                let pod_ok = peer
                    .pod_selector
                    .as_ref()
                    .is_none_or(|sel| selector_matches(sel, &p.labels));
                if ns_ok && pod_ok {
                    pods.insert(i);
                    for ip in &p.ips {
                        ranges.add_ip(*ip);
                    }
                }
            }
        }
        ranges.normalize();
        Peers::Some { ranges, pods }
    }
}

fn ports(
    ports: Option<&[NetworkPolicyPort]>,
    problems: &mut Vec<String>,
    dir: &str,
    rule: usize,
) -> Ports {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return Ports::All;
    };
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    for (j, p) in ports.iter().enumerate() {
        let proto = match p
            .protocol
            .as_deref()
            .map_or(Ok(Proto::Tcp), Proto::from_str)
        {
            Ok(pr) => pr,
            Err(e) => {
                problems.push(format!("{dir}[{rule}] port {j}: {e}; ignored"));
                continue;
            }
        };
        match &p.port {
            None => numeric.push(PortRange {
                proto,
                lo: 0,
                hi: u16::MAX,
            }),
            Some(IntOrString::Int(n)) => {
                let Ok(lo) = u16::try_from(*n).map_err(|_| ()).and_then(|v| {
                    if v == 0 {
                        Err(())
                    } else {
                        Ok(v)
                    }
                }) else {
                    problems.push(format!(
                        "{dir}[{rule}] port {j}: {n} is not a port (1-65535); ignored"
                    ));
                    continue;
                };
                let hi = match p.end_port {
                    None => lo,
                    Some(e) => match u16::try_from(e) {
                        Ok(e) if e >= lo => e,
                        _ => {
                            problems.push(format!(
                                "{dir}[{rule}] port {j}: endPort {e} is below port {lo} or not a port; ignored"
                            ));
                            continue;
                        }
                    },
                };
                numeric.push(PortRange { proto, lo, hi });
            }
            Some(IntOrString::String(s)) => {
                if let Ok(n) = s.parse::<u16>() {
                    // "80" as a string is a number to the API server too.
                    numeric.push(PortRange {
                        proto,
                        lo: n,
                        hi: n,
                    });
                    continue;
                }
                if p.end_port.is_some() {
                    problems.push(format!(
                        "{dir}[{rule}] port {j}: endPort with a named port {s:?} is invalid; endPort ignored"
                    ));
                }
                named.push((proto, s.clone()));
            }
        }
    }
    numeric.sort();
    numeric.dedup();
    named.sort();
    named.dedup();
    Ports::Some { numeric, named }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_adjacent_and_overlapping() {
        assert_eq!(
            merge(vec![(5u32, 9), (1, 3), (4, 4), (20, 30), (25, 26)]),
            vec![(1, 9), (20, 30)]
        );
    }

    #[test]
    fn subtract_cuts_holes_and_edges() {
        assert_eq!(
            subtract(&[(0u32, 100)], &[(0, 9), (50, 59), (95, 200)]),
            vec![(10, 49), (60, 94)]
        );
        assert_eq!(subtract(&[(0u32, 10)], &[(0, 10)]), vec![]);
        assert_eq!(
            subtract(&[(0u32, u32::MAX)], &[(u32::MAX, u32::MAX)]),
            vec![(0, u32::MAX - 1)]
        );
    }
}
