//! What allocation reads of a Service: whether weft serves it, the families
//! it wants addresses of, the addresses it asks for and holds, and what
//! decides whether it may share an address.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pool::{Family, Labels};
use crate::{ANNOTATION_ADDRESSES, ANNOTATION_SHARING_KEY, LB_CLASS};

/// A Service's namespace and name; `Display` is `ns/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `None` for a Service without a name; no namespace reads as
    /// `default`.
    pub fn of(svc: &Service) -> Option<ServiceKey> {
        let name = svc.metadata.name.clone().filter(|n| !n.is_empty())?;
        let namespace = svc
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        Some(ServiceKey { namespace, name })
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Does weft give this Service an address? `type: LoadBalancer` with
/// `spec.loadBalancerClass` unset or [`LB_CLASS`]; any other class belongs
/// to another implementation (a cloud's, MetalLB's) and is left alone.
pub fn wants_address(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer")
            && s.load_balancer_class
                .as_deref()
                .is_none_or(|c| c == LB_CLASS)
    })
}

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StackPolicy {
    Single,
    Prefer,
    Require,
}

/// One Service as allocation sees it.
#[derive(Debug, Clone)]
pub(crate) struct SvcInfo {
    pub key: ServiceKey,
    pub created: Option<Time>,
    pub labels: Labels,
    /// The families it wants an address of, first = primary: one for
    /// SingleStack, `spec.ipFamilies` for PreferDualStack, both for
    /// RequireDualStack.
    pub families: Vec<Family>,
    pub policy: StackPolicy,
    /// Asked for by `spec.loadBalancerIP` and the addresses annotation, at
    /// most one per family, in `families` order (empty: none asked for).
    pub requested: Vec<IpAddr>,
    /// What makes the request or the Service unusable, as a clause after
    /// "Service ns/name: ".
    pub invalid: Option<String>,
    /// `status.loadBalancer.ingress[].ip` of wanted families, the first of
    /// each, in `families` order.
    pub held: Vec<IpAddr>,
    pub sharing_key: Option<String>,
    /// `(port, protocol)` of `spec.ports`.
    pub ports: BTreeSet<(i32, String)>,
    /// externalTrafficPolicy Local.
    pub local: bool,
    /// `spec.selector`.
    pub selector: Labels,
}

impl SvcInfo {
    /// `None` for a Service without a name.
    pub fn read(svc: &Service) -> Option<SvcInfo> {
        let key = ServiceKey::of(svc)?;
        let spec = svc.spec.clone().unwrap_or_default();
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        let mut problems: Vec<String> = Vec::new();

        let mut listed: Vec<Family> = Vec::new();
        for (i, f) in spec.ip_families.iter().flatten().enumerate() {
            match Family::parse(f) {
                Some(f) if !listed.contains(&f) => listed.push(f),
                Some(_) => {}
                None => problems.push(format!(
                    "spec.ipFamilies[{i}] is {f:?}, expected IPv4 or IPv6"
                )),
            }
        }
        let primary = listed.first().copied().unwrap_or(Family::V4);
        let policy = match spec.ip_family_policy.as_deref() {
            None | Some("SingleStack") => StackPolicy::Single,
            Some("PreferDualStack") => StackPolicy::Prefer,
            Some("RequireDualStack") => StackPolicy::Require,
            Some(other) => {
                problems.push(format!(
                    "spec.ipFamilyPolicy is {other:?}, expected SingleStack, PreferDualStack or RequireDualStack"
                ));
                StackPolicy::Single
            }
        };
        let families = match policy {
            StackPolicy::Single => vec![primary],
            // On a single-stack cluster the API server lists one family
            // even for PreferDualStack; an address of the other family
            // would have no ClusterIP to lead to.
            StackPolicy::Prefer if listed.len() > 1 => listed.clone(),
            StackPolicy::Prefer => vec![primary],
            StackPolicy::Require => vec![primary, primary.other()],
        };

        let mut asked: Vec<(String, IpAddr)> = Vec::new();
        if let Some(s) = spec.load_balancer_ip.as_deref().map(str::trim) {
            if !s.is_empty() {
                match s.parse::<IpAddr>() {
                    Ok(ip) => asked.push(("spec.loadBalancerIP".into(), ip)),
                    Err(_) => {
                        problems.push(format!("spec.loadBalancerIP {s:?} is not an IP address"))
                    }
                }
            }
        }
        if let Some(list) = annotations.get(ANNOTATION_ADDRESSES) {
            for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match s.parse::<IpAddr>() {
                    Ok(ip) => asked.push((format!("annotation {ANNOTATION_ADDRESSES}"), ip)),
                    Err(_) => problems.push(format!(
                        "annotation {ANNOTATION_ADDRESSES}: {s:?} is not an IP address"
                    )),
                }
            }
        }
        let mut requested: Vec<IpAddr> = Vec::new();
        for (from, ip) in &asked {
            let f = Family::of(ip);
            if let Some(other) = requested.iter().find(|r| Family::of(r) == f) {
                if other != ip {
                    problems.push(format!(
                        "{from} asks for {ip} but {other} is asked for too; a Service gets one {f} address"
                    ));
                }
                continue;
            }
            if !families.contains(&f) {
                problems.push(format!(
                    "{from} asks for the {f} address {ip}, but the Service gets {} addresses only (spec.ipFamilies, spec.ipFamilyPolicy)",
                    join(families.iter())
                ));
                continue;
            }
            requested.push(*ip);
        }
        requested.sort_by_key(|ip| family_rank(&families, ip));
        if policy == StackPolicy::Require && !requested.is_empty() && requested.len() < 2 {
            problems.push(format!(
                "RequireDualStack needs an address of each family, but only {} is asked for",
                join(requested.iter())
            ));
        }

        let mut held: Vec<IpAddr> = Vec::new();
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_deref())
            .unwrap_or_default();
        for ip in ingress
            .iter()
            .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok())
        {
            let f = Family::of(&ip);
            if families.contains(&f) && !held.iter().any(|h| Family::of(h) == f) {
                held.push(ip);
            }
        }
        held.sort_by_key(|ip| family_rank(&families, ip));

        let sharing_key = annotations
            .get(ANNOTATION_SHARING_KEY)
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
            .collect();
        // `OnlyLocal` is the spelling of early releases (as weft-proxy reads it).
        let local = matches!(
            spec.external_traffic_policy.as_deref(),
            Some("Local") | Some("OnlyLocal")
        );
        Some(SvcInfo {
            key,
            created: svc.metadata.creation_timestamp.clone(),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            families,
            policy,
            requested,
            invalid: (!problems.is_empty()).then(|| problems.join("; ")),
            held,
            sharing_key,
            ports,
            local,
            selector: spec.selector.unwrap_or_default(),
        })
    }

    /// Position of `ip`'s family in `families` (addresses are kept in that
    /// order, primary first).
    pub fn rank(&self, ip: &IpAddr) -> usize {
        family_rank(&self.families, ip)
    }
}

fn family_rank(families: &[Family], ip: &IpAddr) -> usize {
    let f = Family::of(ip);
    families
        .iter()
        .position(|x| *x == f)
        .unwrap_or(families.len())
}

/// May `a` and `b` hold the same address? Both carry the same sharing key,
/// no `(port, protocol)` is in both, and both have externalTrafficPolicy
/// Cluster, or both Local with the same selector (so that a node with a
/// local endpoint of one has one of the other, and one announcer serves
/// both).
pub(crate) fn can_share(a: &SvcInfo, b: &SvcInfo) -> bool {
    a.sharing_key.is_some()
        && a.sharing_key == b.sharing_key
        && a.ports.is_disjoint(&b.ports)
        && a.local == b.local
        && (!a.local || a.selector == b.selector)
}

/// `a, b and c`.
pub(crate) fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
