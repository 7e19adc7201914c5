//! The compile step: service ports and endpoints (from [`crate::input`]) →
//! the whole desired content of table `inet weft-proxy`, plus the
//! health-check and count values the agent serves next to it. Pure and
//! deterministic: the same snapshot always gives the same value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use weft_nft::{
    BaseChain, Chain, ChainType, Element, Family as NftFamily, Hook, ModelError, Priority, Rule,
    Ruleset, Set, SetFlag, Table,
};

use crate::conntrack::UdpServing;
use crate::input::{
    service_ports, Endpoint, Family, NodeCtx, Protocol, ServicePort, Skipped, Snapshot,
    TrafficPolicy,
};
use crate::names::{comment, endpoint_base, service_port_base};

/// The table weft's proxy owns.
pub const TABLE: &str = "weft-proxy";
/// The packet mark bit that asks `nat-postrouting` to masquerade.
pub const MASQ_MARK: &str = "0x4000";

// Fixed chains (see the crate documentation for hooks and priorities).
const SERVICES: &str = "services";
const MARK_MASQ: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";
const REJECT: &str = "reject-chain";
const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const FIREWALL_CHECK: &str = "firewall-check";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";

/// Everything one compile produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub ruleset: Ruleset,
    /// Services with externalTrafficPolicy Local and a healthCheckNodePort,
    /// keyed `ns/name`.
    pub health_checks: BTreeMap<String, HealthCheck>,
    pub counts: Counts,
    /// Services or fields left out, and why.
    pub skipped: Vec<Skipped>,
    /// UDP Service addresses and NodePorts with their serving endpoints:
    /// what [`crate::conntrack::stale_flows`] keeps conntrack entries to.
    pub udp_serving: UdpServing,
}

/// What the health-check server answers for one Service on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    pub node_port: u16,
    /// Distinct local, ready endpoint addresses over all the Service's ports.
    pub local_endpoints: usize,
}

/// Sizes of what was programmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Services (`ns/name`) with at least one programmed port.
    pub services: usize,
    /// Service ports, one per port, protocol and IP family.
    pub service_ports: usize,
    /// Endpoint chains (an endpoint of a service port in one family).
    pub endpoints: usize,
}

/// Why compile produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("node context: {field} {value:?}: {why}")]
    Node {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    /// A bug in compile: the ruleset it built does not validate.
    #[error("compiled table inet {TABLE} is invalid: {0}")]
    Invalid(#[from] ModelError),
}

/// Compiles the proxy table for `node` from `snap`.
pub fn compile(snap: &Snapshot, node: &NodeCtx) -> Result<Compiled, CompileError> {
    if node.node_name.is_empty() {
        return Err(CompileError::Node {
            field: "node_name",
            value: String::new(),
            why: "must not be empty (local endpoints are found by it)",
        });
    }
    let (ports, skipped) = service_ports(snap, node);
    let mut rs = skeleton();
    let mut counts = Counts::default();
    let mut services = BTreeSet::new();
    let mut health: BTreeMap<String, (u16, BTreeSet<IpAddr>)> = BTreeMap::new();
    let mut udp = UdpServing {
        node_ips: node.node_ips.iter().copied().collect(),
        ..UdpServing::default()
    };
    for sp in &ports {
        add_udp_serving(&mut udp, sp);
        services.insert(sp.service());
        counts.service_ports += 1;
        counts.endpoints += add_service_port(&mut rs, sp, node);
        if let Some(hc) = sp.health_check_node_port {
            let e = health.entry(sp.service()).or_insert((hc, BTreeSet::new()));
            e.1.extend(
                sp.endpoints
                    .iter()
                    .filter(|e| e.local && e.ready)
                    .map(|e| e.ip),
            );
        }
    }
    counts.services = services.len();
    rs.validate()?;
    tracing::debug!(
        services = counts.services,
        service_ports = counts.service_ports,
        endpoints = counts.endpoints,
        skipped = skipped.len(),
        "compiled table inet {TABLE}"
    );
    Ok(Compiled {
        ruleset: rs,
        health_checks: health
            .into_iter()
            .map(|(k, (node_port, eps))| {
                (
                    k,
                    HealthCheck {
                        node_port,
                        local_endpoints: eps.len(),
                    },
                )
            })
            .collect(),
        counts,
        skipped,
        udp_serving: udp,
    })
}

/// Records a UDP service port's addresses and NodePort with the endpoints
/// serving it — serving as the slice says, whatever the policies pick, so
/// that a policy change never cuts existing flows (kube-proxy's reading).
fn add_udp_serving(udp: &mut UdpServing, sp: &ServicePort) {
    if sp.protocol != Protocol::Udp {
        return;
    }
    let serving: BTreeSet<SocketAddr> = sp
        .endpoints
        .iter()
        .filter(|e| e.serving || e.ready)
        .map(|e| SocketAddr::new(e.ip, e.port))
        .collect();
    let addrs = std::iter::once(&sp.cluster_ip)
        .chain(&sp.external_ips)
        .chain(&sp.lb_ips);
    for a in addrs {
        udp.service_ports
            .entry(SocketAddr::new(*a, sp.port))
            .or_default()
            .extend(serving.iter().copied());
    }
    if let Some(np) = sp.node_port {
        udp.node_ports
            .entry(np)
            .or_default()
            .extend(serving.iter().copied());
    }
}

fn base(name: &str, kind: ChainType, hook: Hook, priority: Priority) -> Chain {
    Chain::base(name, BaseChain::new(kind, hook, priority))
}

/// `name` or `name6`: a per-family object name.
fn fam(name: &str, f: Family) -> String {
    format!("{name}{}", f.suffix())
}

/// `x` for one item, `{ x, y }` for several (an anonymous set).
fn one_or_set<T: ToString>(items: &[T]) -> String {
    match items {
        [one] => one.to_string(),
        _ => format!(
            "{{ {} }}",
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The table with every fixed chain, set and map, and no Service in it.
fn skeleton() -> Ruleset {
    let mut t = Table::new(NftFamily::Inet, TABLE);
    t.comment = Some("weft Services (kube-proxy replacement)".into());
    let mut rs = Ruleset::new(t);
    let new = |chain: &str| Rule::new(format!("ct state new jump {chain}"));
    // loadBalancerSourceRanges are checked before DNAT, on the Service
    // address; the no-endpoint and ClusterIP checks after it (a packet still
    // addressed to a Service address then was not DNATed), and before the
    // default filter priority so other tables see only what passed.
    let pre_dnat = Priority::DSTNAT.offset(-10);
    let filter = Priority::FILTER.offset(-10);
    rs.add_chain(
        base(
            "filter-prerouting-pre-dnat",
            ChainType::Filter,
            Hook::Prerouting,
            pre_dnat,
        )
        .rule(new(FIREWALL_CHECK)),
    )
    .add_chain(
        base(
            "filter-output-pre-dnat",
            ChainType::Filter,
            Hook::Output,
            pre_dnat,
        )
        .rule(new(FIREWALL_CHECK)),
    )
    .add_chain(
        base("filter-input", ChainType::Filter, Hook::Input, filter)
            .rule(new(NODEPORT_ENDPOINTS_CHECK))
            .rule(new(SERVICE_ENDPOINTS_CHECK)),
    )
    .add_chain(
        base("filter-forward", ChainType::Filter, Hook::Forward, filter)
            .rule(new(SERVICE_ENDPOINTS_CHECK))
            .rule(new(CLUSTER_IPS_CHECK)),
    )
    .add_chain(
        base("filter-output", ChainType::Filter, Hook::Output, filter)
            .rule(new(SERVICE_ENDPOINTS_CHECK))
            .rule(new(CLUSTER_IPS_CHECK)),
    )
    .add_chain(
        base(
            "nat-prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            Priority::DSTNAT,
        )
        .rule(Rule::new(format!("jump {SERVICES}"))),
    )
    .add_chain(
        base("nat-output", ChainType::Nat, Hook::Output, Priority::DSTNAT)
            .rule(Rule::new(format!("jump {SERVICES}"))),
    )
    .add_chain(
        base(
            "nat-postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            Priority::SRCNAT,
        )
        .rule(Rule::new(format!("jump {MASQUERADING}"))),
    )
    .add_chain(
        Chain::regular(MARK_MASQ)
            .rule(Rule::new(format!("meta mark set meta mark or {MASQ_MARK}"))),
    )
    .add_chain(
        Chain::regular(MASQUERADING)
            .rule(Rule::new(format!("meta mark & {MASQ_MARK} == 0 return")))
            .rule(Rule::new("masquerade")),
    )
    .add_chain(
        Chain::regular(REJECT)
            .rule(Rule::new("meta l4proto tcp reject with tcp reset"))
            .rule(Rule::new("reject with icmpx type port-unreachable")),
    );

    let mut services = Chain::regular(SERVICES);
    let mut endpoints_check = Chain::regular(SERVICE_ENDPOINTS_CHECK);
    let mut nodeport_check = Chain::regular(NODEPORT_ENDPOINTS_CHECK);
    let mut firewall_check = Chain::regular(FIREWALL_CHECK);
    let mut cluster_ips_check = Chain::regular(CLUSTER_IPS_CHECK);
    for f in Family::ALL {
        let (ip, addr) = (f.nft(), f.addr_type());
        let svc_key = format!("{addr} . inet_proto . inet_service");
        let lookup = |map: &str| format!("{ip} daddr . meta l4proto . th dport vmap @{map}");
        let not_lo = format!("{ip} daddr != {}", f.loopback());
        services
            .rules
            .push(Rule::new(lookup(&fam("service-ips", f))));
        services.rules.push(Rule::new(format!(
            "fib daddr type local {not_lo} meta l4proto . th dport vmap @{}",
            fam("service-nodeports", f)
        )));
        endpoints_check
            .rules
            .push(Rule::new(lookup(&fam("no-endpoint-services", f))));
        nodeport_check.rules.push(Rule::new(format!(
            "{not_lo} meta l4proto . th dport vmap @{}",
            fam("no-endpoint-nodeports", f)
        )));
        firewall_check
            .rules
            .push(Rule::new(lookup(&fam("firewall-ips", f))));
        cluster_ips_check.rules.push(
            Rule::new(format!(
                "{ip} daddr @{} goto {REJECT}",
                fam("cluster-ips", f)
            ))
            .with_comment("reject traffic to ports a ClusterIP does not serve"),
        );
        rs.add_set(Set::new(fam("cluster-ips", f), addr).with_comment("active ClusterIPs"))
            .add_set(
                Set::map(fam("service-ips", f), svc_key.clone(), "verdict")
                    .with_comment("ClusterIP, external IP and load-balancer IP traffic"),
            )
            .add_set(
                Set::map(
                    fam("service-nodeports", f),
                    "inet_proto . inet_service",
                    "verdict",
                )
                .with_comment("NodePort traffic"),
            )
            .add_set(
                Set::map(fam("no-endpoint-services", f), svc_key.clone(), "verdict")
                    .with_comment("reject or drop Service traffic with no usable endpoint"),
            )
            .add_set(
                Set::map(
                    fam("no-endpoint-nodeports", f),
                    "inet_proto . inet_service",
                    "verdict",
                )
                .with_comment("reject or drop NodePort traffic with no usable endpoint"),
            )
            .add_set(
                Set::map(fam("firewall-ips", f), svc_key, "verdict")
                    .with_comment("load-balancer IPs with loadBalancerSourceRanges"),
            );
    }
    rs.add_chain(services)
        .add_chain(endpoints_check)
        .add_chain(nodeport_check)
        .add_chain(firewall_check)
        .add_chain(cluster_ips_check);
    rs
}

/// Endpoints chosen for each traffic policy (kube-proxy's CategorizeEndpoints).
struct Categorized<'a> {
    /// For Cluster policy: ready endpoints, else serving-and-terminating ones.
    cluster: Vec<&'a Endpoint>,
    /// For Local policy: local ready ones, else local serving-and-terminating.
    local: Vec<&'a Endpoint>,
    /// Some endpoint anywhere is usable.
    any: bool,
}

fn categorize(sp: &ServicePort) -> Categorized<'_> {
    let eps = &sp.endpoints;
    let fallback = |e: &&Endpoint| e.serving && e.terminating;
    let ready: Vec<&Endpoint> = eps.iter().filter(|e| e.ready).collect();
    let usable_any = !ready.is_empty() || eps.iter().any(|e| fallback(&e));
    // Even with externalTrafficPolicy Local, pods and the node reaching an
    // external address use Cluster endpoints, so they are needed whenever
    // the port is externally reachable.
    let uses_cluster = sp.internal_policy == TrafficPolicy::Cluster || sp.externally_accessible();
    let uses_local = sp.internal_policy == TrafficPolicy::Local
        || (sp.externally_accessible() && sp.external_policy == TrafficPolicy::Local);
    let cluster = if !uses_cluster {
        Vec::new()
    } else if !ready.is_empty() {
        ready.clone()
    } else {
        eps.iter().filter(fallback).collect()
    };
    let local = if !uses_local {
        Vec::new()
    } else {
        let local_ready: Vec<&Endpoint> = ready.iter().copied().filter(|e| e.local).collect();
        if !local_ready.is_empty() {
            local_ready
        } else {
            eps.iter().filter(|e| e.local && fallback(e)).collect()
        }
    };
    Categorized {
        cluster,
        local,
        any: usable_any,
    }
}

/// The per-port object names.
struct Names {
    cluster: String,
    local: String,
    external: String,
    firewall: String,
    source_ranges: String,
}

impl Names {
    fn new(sp: &ServicePort) -> Names {
        let b = service_port_base(&sp.namespace, &sp.name, sp.protocol.as_str(), &sp.port_name);
        let s = sp.family.suffix();
        Names {
            cluster: format!("service{s}-{b}"),
            local: format!("local{s}-{b}"),
            external: format!("external{s}-{b}"),
            firewall: format!("firewall{s}-{b}"),
            source_ranges: format!("source-ranges{s}-{b}"),
        }
    }
}

fn endpoint_names(sp: &ServicePort, e: &Endpoint) -> (String, String) {
    let b = endpoint_base(
        &sp.namespace,
        &sp.name,
        sp.protocol.as_str(),
        &sp.port_name,
        e.ip,
        e.port,
    );
    (format!("endpoint-{b}"), format!("affinity-{b}"))
}

fn dnat_target(e: &Endpoint) -> String {
    match e.ip {
        IpAddr::V4(a) => format!("{a}:{}", e.port),
        IpAddr::V6(a) => format!("[{a}]:{}", e.port),
    }
}

fn insert(rs: &mut Ruleset, set: &str, e: Element) {
    if let Some(s) = rs.sets.get_mut(set) {
        s.insert(e);
    }
}

/// Adds one service port's chains, sets and map elements; returns the
/// number of endpoint chains.
fn add_service_port(rs: &mut Ruleset, sp: &ServicePort, node: &NodeCtx) -> usize {
    let f = sp.family;
    let ip = f.nft();
    let proto = sp.protocol.as_str();
    let names = Names::new(sp);
    let label = comment(&sp.display());
    let cat = categorize(sp);
    let cidrs: Vec<String> = node
        .cluster_cidrs
        .iter()
        .filter(|n| Family::of_net(n) == f)
        .map(|n| n.trunc().to_string())
        .collect();
    let node_ips: Vec<IpAddr> = {
        let mut v: Vec<IpAddr> = node
            .node_ips
            .iter()
            .filter(|a| Family::of(a) == f)
            .copied()
            .collect();
        v.sort();
        v.dedup();
        v
    };

    let uses_cluster_chain = !cat.cluster.is_empty();
    let uses_local_chain = !cat.local.is_empty();
    let (internal_chain, has_internal) = match sp.internal_policy {
        TrafficPolicy::Cluster => (&names.cluster, cat.any),
        TrafficPolicy::Local => (&names.local, cat.any && uses_local_chain),
    };
    let has_external = match sp.external_policy {
        TrafficPolicy::Cluster => cat.any,
        TrafficPolicy::Local => cat.any && uses_local_chain,
    };
    let uses_external_chain = cat.any && sp.externally_accessible();
    // No endpoint at all: reject. Endpoints, but none for this policy: drop.
    let no_endpoint_verdict = |has: bool| {
        if cat.any {
            (!has).then(|| "drop".to_string())
        } else {
            Some(format!("goto {REJECT}"))
        }
    };
    let key = |addr: &IpAddr| format!("{addr} . {proto} . {}", sp.port);

    // ClusterIP.
    insert(
        rs,
        &fam("cluster-ips", f),
        Element::key(sp.cluster_ip.to_string()),
    );
    match no_endpoint_verdict(has_internal) {
        None => insert(
            rs,
            &fam("service-ips", f),
            Element::map(key(&sp.cluster_ip), format!("goto {internal_chain}"))
                .with_comment(label.clone()),
        ),
        Some(v) => insert(
            rs,
            &fam("no-endpoint-services", f),
            Element::map(key(&sp.cluster_ip), v).with_comment(label.clone()),
        ),
    }
    // External IPs and load-balancer IPs.
    let external_verdict = no_endpoint_verdict(has_external);
    for addr in sp.external_ips.iter().chain(&sp.lb_ips) {
        if uses_external_chain {
            insert(
                rs,
                &fam("service-ips", f),
                Element::map(key(addr), format!("goto {}", names.external))
                    .with_comment(label.clone()),
            );
        }
        if let Some(v) = &external_verdict {
            insert(
                rs,
                &fam("no-endpoint-services", f),
                Element::map(key(addr), v.clone()).with_comment(label.clone()),
            );
        }
    }
    // loadBalancerSourceRanges: other sources are dropped before DNAT.
    let uses_firewall = !sp.lb_ips.is_empty() && sp.source_ranges.is_some();
    if let (true, Some(ranges)) = (uses_firewall, &sp.source_ranges) {
        let mut allowed = Set::new(&names.source_ranges, f.addr_type())
            .flag(SetFlag::Interval)
            .with_comment(comment(&format!(
                "loadBalancerSourceRanges of {}",
                sp.service()
            )));
        let mut nets = ranges.clone();
        // A load-balancer IP held by the node itself makes the node's own
        // requests to it come from it: allow them when the node may connect.
        if ranges
            .iter()
            .any(|r| node_ips.iter().any(|a| r.contains(a)))
        {
            nets.extend(sp.lb_ips.iter().map(|a| IpNet::from(*a)));
        }
        // An interval set refuses overlapping elements: merge them first.
        for n in IpNet::aggregate(&nets) {
            let key = if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            };
            allowed.insert(Element::key(key));
        }
        rs.add_set(allowed);
        rs.add_chain(Chain::regular(&names.firewall).rule(Rule::new(format!(
            "{ip} saddr != @{} drop",
            names.source_ranges
        ))));
        for a in &sp.lb_ips {
            insert(
                rs,
                &fam("firewall-ips", f),
                Element::map(key(a), format!("goto {}", names.firewall))
                    .with_comment(label.clone()),
            );
        }
    }
    // NodePort.
    if let Some(np) = sp.node_port {
        let k = format!("{proto} . {np}");
        if uses_external_chain {
            insert(
                rs,
                &fam("service-nodeports", f),
                Element::map(k.clone(), format!("goto {}", names.external))
                    .with_comment(label.clone()),
            );
        }
        if let Some(v) = external_verdict {
            insert(
                rs,
                &fam("no-endpoint-nodeports", f),
                Element::map(k, v).with_comment(label.clone()),
            );
        }
    }

    // Policy chains: pick an endpoint (affinity first, else uniformly).
    let masq_off_cluster = (!cidrs.is_empty()).then(|| {
        Rule::new(format!(
            "{ip} daddr {} {proto} dport {} {ip} saddr != {} jump {MARK_MASQ}",
            sp.cluster_ip,
            sp.port,
            one_or_set(&cidrs)
        ))
        .with_comment("masquerade off-cluster traffic to the ClusterIP")
    });
    // Endpoint choice, uniform over N endpoints, without any set: endpoint
    // i of N is taken with probability 1/(N-i) among those left
    // (`numgen random mod N-i 0 goto …`, the last unconditionally) — the
    // cascade kube-proxy's iptables mode builds with `statistic`. Sets were
    // tried and cost more than the few rules a new connection walks: an
    // inline `vmap { … }` is an anonymous set, and the kernel scans the whole
    // transaction for every anonymous set it binds (`__nft_set_trans_bind`);
    // a named map per Service makes the kernel walk the table's list of sets
    // for each new set and each lookup by name; one map shared by all
    // Services is walked whole for every rule that binds it. Each made a full
    // sync quadratic in the number of Services (docs/benchmarks.md).
    let policy_chain = |name: &str, eps: &[&Endpoint], internal: bool| {
        let mut c = Chain::regular(name);
        if internal {
            if let Some(r) = &masq_off_cluster {
                c.rules.push(r.clone());
            }
        }
        if sp.affinity_timeout.is_some() {
            for e in eps {
                let (chain, set) = endpoint_names(sp, e);
                c.rules
                    .push(Rule::new(format!("{ip} saddr @{set} goto {chain}")));
            }
        }
        let n = eps.len();
        for (i, e) in eps.iter().enumerate() {
            let chain = endpoint_names(sp, e).0;
            let left = n - i;
            c.rules.push(Rule::new(if left > 1 {
                format!("numgen random mod {left} 0 goto {chain}")
            } else {
                format!("goto {chain}")
            }));
        }
        c
    };
    if uses_cluster_chain {
        let internal = sp.internal_policy == TrafficPolicy::Cluster;
        rs.add_chain(policy_chain(&names.cluster, &cat.cluster, internal));
    }
    if uses_local_chain {
        let internal = sp.internal_policy == TrafficPolicy::Local;
        rs.add_chain(policy_chain(&names.local, &cat.local, internal));
    }
    // External chain: masquerade (Cluster) or keep the client address (Local).
    if uses_external_chain {
        let mut c = Chain::regular(&names.external);
        match sp.external_policy {
            TrafficPolicy::Cluster => {
                c.rules.push(
                    Rule::new(format!("jump {MARK_MASQ}"))
                        .with_comment("masquerade external traffic (it may cross nodes)"),
                );
            }
            TrafficPolicy::Local => {
                if !cidrs.is_empty() {
                    c.rules.push(
                        Rule::new(format!(
                            "{ip} saddr {} goto {}",
                            one_or_set(&cidrs),
                            names.cluster
                        ))
                        .with_comment("short-circuit pod traffic"),
                    );
                }
                if !node_ips.is_empty() {
                    let from_node = one_or_set(&node_ips);
                    c.rules.push(
                        Rule::new(format!("{ip} saddr {from_node} jump {MARK_MASQ}"))
                            .with_comment("masquerade node traffic"),
                    );
                    c.rules.push(
                        Rule::new(format!("{ip} saddr {from_node} goto {}", names.cluster))
                            .with_comment("short-circuit node traffic"),
                    );
                }
            }
        }
        if has_external {
            let policy = match sp.external_policy {
                TrafficPolicy::Cluster => &names.cluster,
                TrafficPolicy::Local => &names.local,
            };
            c.rules.push(Rule::new(format!("goto {policy}")));
        }
        rs.add_chain(c);
    }
    // Endpoint chains (and affinity sets) for every endpoint either uses.
    let mut all: BTreeMap<(IpAddr, u16), &Endpoint> = BTreeMap::new();
    for e in cat.cluster.iter().chain(&cat.local) {
        all.insert((e.ip, e.port), e);
    }
    for e in all.values() {
        let (chain, set) = endpoint_names(sp, e);
        let mut c = Chain::regular(&chain).rule(
            Rule::new(format!("{ip} saddr {} jump {MARK_MASQ}", e.ip))
                .with_comment("hairpin: the endpoint reaches itself"),
        );
        if let Some(t) = sp.affinity_timeout {
            rs.add_set(
                Set::new(&set, f.addr_type())
                    .flag(SetFlag::Dynamic)
                    .flag(SetFlag::Timeout)
                    .timeout(Duration::from_secs(u64::from(t)))
                    .with_comment(label.clone()),
            );
            c.rules
                .push(Rule::new(format!("update @{set} {{ {ip} saddr }}")));
        }
        c.rules.push(Rule::new(format!(
            "meta l4proto {proto} dnat {ip} to {}",
            dnat_target(e)
        )));
        rs.add_chain(c);
    }
    all.len()
}
