//! What compile reads (a [`Snapshot`] of Services and EndpointSlices, and the
//! [`NodeCtx`] of the node it runs on), and the Kubernetes semantics that turn
//! them into plain per-family service ports with their endpoints: which
//! Services the proxy handles at all, which addresses of which family, which
//! endpoint port a (possibly named) targetPort resolves to, and endpoint
//! readiness as kube-proxy reads it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label that hands a Service to another proxy; weft skips such Services.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label that marks a Service headless for proxies; weft skips such Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label linking an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// The objects one compile reads (as the watch stores hand them out).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
}

/// The node the ruleset is compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCtx {
    /// Endpoints whose `nodeName` equals this are local.
    pub node_name: String,
    /// The node's own addresses (both families). Traffic from them to an
    /// external address of a Service with externalTrafficPolicy Local is
    /// treated as local traffic (masqueraded, may use any endpoint).
    pub node_ips: Vec<IpAddr>,
    /// The pod network(s): sources inside are "in-cluster" (never
    /// masqueraded to a ClusterIP); outside, off-cluster.
    pub cluster_cidrs: Vec<IpNet>,
    /// The node belongs to weft's embedded cluster. Compile output does not
    /// depend on it (the embedded cluster is a real cluster to the proxy).
    pub embedded: bool,
}

/// An IP family; the inet table holds both, with a map per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// `ip` / `ip6`: the payload expression keyword.
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// `ipv4_addr` / `ipv6_addr`: the set key type.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// Suffix of per-family object names: `service-ips` / `service-ips6`.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "",
            Family::V6 => "6",
        }
    }

    /// Loopback destinations, which never accept NodePort traffic.
    pub fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1",
        }
    }

    /// The EndpointSlice `addressType` of this family.
    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// A Service port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP` (also the default when unset), `UDP`, `SCTP`.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower case, as nft writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// externalTrafficPolicy / internalTrafficPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn parse(s: Option<&str>) -> TrafficPolicy {
        // The API server defaults both to Cluster; the legacy spelling
        // `OnlyLocal` of early releases still means Local.
        match s {
            Some("Local") | Some("OnlyLocal") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// One endpoint of one service port (deduplicated by address and port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (`nodeName` equals [`NodeCtx::node_name`]).
    pub local: bool,
}

/// One port of one Service in one IP family: the unit that gets chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (may be empty for a single-port Service).
    pub port_name: String,
    pub protocol: Protocol,
    pub family: Family,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    pub lb_ips: Vec<IpAddr>,
    /// loadBalancerSourceRanges of this family; `Some(empty)` when the
    /// Service restricts sources but none are of this family (all dropped).
    pub source_ranges: Option<Vec<IpNet>>,
    pub external_policy: TrafficPolicy,
    pub internal_policy: TrafficPolicy,
    /// ClientIP affinity timeout in seconds, when affinity is on.
    pub affinity_timeout: Option<u32>,
    pub health_check_node_port: Option<u16>,
    /// Sorted by address, then port.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `ns/name:port` (kube-proxy's ServicePortName string).
    pub fn display(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }

    /// NodePort, external IPs or load-balancer IPs: reachable from outside.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.lb_ips.is_empty()
    }
}

/// A Service (or part of one) left out of the ruleset, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// `Service ns/name` or `EndpointSlice ns/name`.
    pub object: String,
    /// The field at fault, e.g. `spec.ports[1].protocol`.
    pub field: String,
    pub why: String,
}

/// Every Service the proxy handles, as per-family service ports sorted by
/// (namespace, name, port name, protocol, family); objects or fields that
/// cannot be read are reported in `skipped` and left out (one bad Service
/// never stops the others).
pub fn service_ports(snap: &Snapshot, node: &NodeCtx) -> (Vec<ServicePort>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let slices = slices_by_service(snap);
    let mut services: Vec<&Service> = snap.services.iter().map(Arc::as_ref).collect();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let mut out = Vec::new();
    for svc in services {
        read_service(svc, &slices, node, &mut out, &mut skipped);
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, a.protocol, a.family).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            b.protocol,
            b.family,
        ))
    });
    (out, skipped)
}

type SliceIndex<'a> = BTreeMap<(String, String), Vec<&'a EndpointSlice>>;

/// EndpointSlices by (namespace, service name), each list sorted by slice name.
fn slices_by_service(snap: &Snapshot) -> SliceIndex<'_> {
    let mut by: SliceIndex = BTreeMap::new();
    for s in &snap.endpoint_slices {
        let labels = s.metadata.labels.as_ref();
        let Some(svc) = labels.and_then(|l| l.get(LABEL_SERVICE_NAME)) else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by.entry((ns, svc.clone())).or_default().push(s.as_ref());
    }
    for list in by.values_mut() {
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    by
}

/// A Kubernetes name part that can go into an nft object name as is.
fn plain_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
}

fn read_service(
    svc: &Service,
    slices: &SliceIndex,
    node: &NodeCtx,
    out: &mut Vec<ServicePort>,
    skipped: &mut Vec<Skipped>,
) {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let object = format!("Service {ns}/{name}");
    let mut skip = |field: &str, why: String| {
        tracing::warn!(%object, field, %why, "Service left out of the proxy ruleset");
        skipped.push(Skipped {
            object: object.clone(),
            field: field.to_string(),
            why,
        });
    };
    if let Some(labels) = &svc.metadata.labels {
        if labels.contains_key(LABEL_SERVICE_PROXY_NAME) || labels.contains_key(LABEL_HEADLESS) {
            return;
        }
    }
    let Some(spec) = &svc.spec else { return };
    if spec.type_.as_deref() == Some("ExternalName") {
        return;
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        return;
    }
    if !plain_name(&ns) || !plain_name(&name) || ns.is_empty() || name.is_empty() {
        skip(
            "metadata",
            "expected a namespace and name of lower-case letters, digits, '-' and '.'".into(),
        );
        return;
    }
    // clusterIPs (dual-stack) or, from older writers, clusterIP alone.
    let mut cluster_ips: BTreeMap<Family, IpAddr> = BTreeMap::new();
    let listed: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
        _ => Vec::new(),
    };
    if listed.iter().any(|s| s == "None") {
        return; // headless
    }
    for (i, s) in listed.iter().enumerate() {
        match s.parse::<IpAddr>() {
            Ok(ip) => {
                cluster_ips.entry(Family::of(&ip)).or_insert(ip);
            }
            Err(_) => skip(
                &format!("spec.clusterIPs[{i}]"),
                format!("{s:?} is not an IP address"),
            ),
        }
    }
    if cluster_ips.is_empty() {
        // Not allocated yet: nothing to program.
        return;
    }
    let ips_of = |field: &str, list: &[String], skip: &mut dyn FnMut(&str, String)| {
        let mut ips = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match s.trim().parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => skip(
                    &format!("{field}[{i}]"),
                    format!("{s:?} is not an IP address"),
                ),
            }
        }
        ips
    };
    let external_ips = ips_of(
        "spec.externalIPs",
        spec.external_ips.as_deref().unwrap_or_default(),
        &mut skip,
    );
    let is_lb = spec.type_.as_deref() == Some("LoadBalancer");
    let mut lb_ips = Vec::new();
    if is_lb {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_deref())
            .unwrap_or_default();
        for (i, ing) in ingress.iter().enumerate() {
            // ipMode Proxy: the load balancer proxies itself, and traffic
            // must reach it rather than be short-cut to the endpoints.
            if ing.ip_mode.as_deref() == Some("Proxy") {
                continue;
            }
            if let Some(s) = &ing.ip {
                match s.parse::<IpAddr>() {
                    Ok(ip) => lb_ips.push(ip),
                    Err(_) => skip(
                        &format!("status.loadBalancer.ingress[{i}].ip"),
                        format!("{s:?} is not an IP address"),
                    ),
                }
            }
        }
    }
    let mut ranges = Vec::new();
    let listed_ranges = spec
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    for (i, s) in listed_ranges.iter().enumerate() {
        match s.trim().parse::<IpNet>() {
            Ok(n) => ranges.push(n.trunc()),
            Err(_) => skip(
                &format!("spec.loadBalancerSourceRanges[{i}]"),
                format!("{s:?} is not a CIDR"),
            ),
        }
    }
    let restricts_sources = !listed_ranges.is_empty();
    let external_policy = TrafficPolicy::parse(spec.external_traffic_policy.as_deref());
    let internal_policy = TrafficPolicy::parse(spec.internal_traffic_policy.as_deref());
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let health_check_node_port = match (external_policy, spec.health_check_node_port) {
        (TrafficPolicy::Local, Some(p)) if is_lb => u16::try_from(p).ok().filter(|p| *p > 0),
        _ => None,
    };
    let empty = Vec::new();
    let svc_slices = slices.get(&(ns.clone(), name.clone())).unwrap_or(&empty);

    for (pi, p) in spec.ports.as_deref().unwrap_or_default().iter().enumerate() {
        let port_name = p.name.clone().unwrap_or_default();
        if !plain_name(&port_name) {
            skip(
                &format!("spec.ports[{pi}].name"),
                format!("{port_name:?}: expected lower-case letters, digits and '-'"),
            );
            continue;
        }
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            skip(
                &format!("spec.ports[{pi}].protocol"),
                format!("{:?}: expected TCP, UDP or SCTP", p.protocol),
            );
            continue;
        };
        let Some(port) = u16::try_from(p.port).ok().filter(|p| *p > 0) else {
            skip(
                &format!("spec.ports[{pi}].port"),
                format!("{}: expected 1-65535", p.port),
            );
            continue;
        };
        let node_port = match p.node_port {
            Some(np) if matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) => {
                u16::try_from(np).ok().filter(|p| *p > 0)
            }
            _ => None,
        };
        for (&family, &cluster_ip) in &cluster_ips {
            let of = |ips: &[IpAddr]| -> Vec<IpAddr> {
                let mut v: Vec<IpAddr> = ips
                    .iter()
                    .filter(|ip| Family::of(ip) == family)
                    .copied()
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let source_ranges = restricts_sources.then(|| {
                let mut r: Vec<IpNet> = ranges
                    .iter()
                    .filter(|n| Family::of_net(n) == family)
                    .copied()
                    .collect();
                r.sort();
                r.dedup();
                r
            });
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name: port_name.clone(),
                protocol,
                family,
                cluster_ip,
                port,
                node_port,
                external_ips: of(&external_ips),
                lb_ips: of(&lb_ips),
                source_ranges,
                external_policy,
                internal_policy,
                affinity_timeout,
                health_check_node_port,
                endpoints: endpoints(
                    svc_slices,
                    family,
                    &port_name,
                    protocol,
                    publish_not_ready,
                    node,
                ),
            });
        }
    }
}

/// The endpoints of one service port in one family. The endpoint port comes
/// from each slice's port with the service port's name and protocol — this
/// is how a named targetPort resolves per pod. Slices are read in name
/// order and the first occurrence of an address and port wins.
fn endpoints(
    slices: &[&EndpointSlice],
    family: Family,
    port_name: &str,
    protocol: Protocol,
    publish_not_ready: bool,
    node: &NodeCtx,
) -> Vec<Endpoint> {
    let mut by: BTreeMap<(IpAddr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != family.address_type() {
            continue;
        }
        let port = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            // kube-proxy's reading: ready unset means ready; serving unset
            // means "as ready"; terminating unset means not terminating.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = ep.node_name.as_deref() == Some(node.node_name.as_str());
            // The API guarantees one address per endpoint; read only the first.
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if Family::of(&ip) != family {
                continue;
            }
            by.entry((ip, port)).or_insert(Endpoint {
                ip,
                port,
                ready: ready || publish_not_ready,
                serving: serving || publish_not_ready,
                terminating: terminating && !publish_not_ready,
                local,
            });
        }
    }
    by.into_values().collect()
}
