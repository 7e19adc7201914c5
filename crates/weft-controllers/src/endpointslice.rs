//! Services + Pods → the EndpointSlices that should exist (pure), and the
//! create/update/delete steps that turn the existing slices into them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::util::{
    controller_ref, labels_match, pod_ready, pod_terminal, semantically_equal, short_hash,
    terminating,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.weft";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// (namespace, name) of a slice.
pub type SliceKey = (String, String);

/// One step towards the desired slices.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceAction {
    Create(EndpointSlice),
    /// The desired slice, carrying the existing slice's resourceVersion (for a replace).
    Update(EndpointSlice),
    Delete {
        namespace: String,
        name: String,
    },
}

/// The Service gets slices from this controller: it has a selector, is not
/// ExternalName, and is not default/kubernetes (the API server manages that one).
pub fn managed_service(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else {
        return false;
    };
    let has_selector = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
    let external = spec.type_.as_deref() == Some("ExternalName");
    let kubernetes =
        svc.namespace().as_deref() == Some("default") && svc.name_any() == "kubernetes";
    has_selector && !external && !kubernetes
}

/// The pod's IPv4 address, from status.podIPs (or status.podIP).
fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ips = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    ips.chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .map(str::to_owned)
}

/// A service port's target on one pod; `None` when a named targetPort names
/// no container port of the pod.
fn resolve_target(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A numeric string is a number (upstream's IntOrString parsing of "8080").
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port)
        }
    }
}

/// Ordered, comparable form of an EndpointPort (the k8s type is not `Ord`).
type PortKey = (String, String, i32, Option<String>);

fn port_of(k: &PortKey) -> EndpointPort {
    EndpointPort {
        name: Some(k.0.clone()),
        protocol: Some(k.1.clone()),
        port: Some(k.2),
        app_protocol: k.3.clone(),
    }
}

/// The endpoint of one pod for this Service.
fn endpoint(svc: &Service, pod: &Pod, ip: String) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let is_terminating = terminating(pod);
    let serving = pod_ready(pod);
    // publishNotReadyAddresses makes every live pod ready; a terminating pod is
    // never ready (upstream keeps it ready under publishNotReadyAddresses; we
    // follow weft's brief here).
    let ready = !is_terminating && (publish || serving);
    let spec = pod.spec.as_ref();
    let hostname = spec
        .filter(|s| s.subdomain.as_deref() == Some(svc.name_any().as_str()))
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(is_terminating),
        }),
        hostname,
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(pod.name_any()),
            namespace: pod.namespace(),
            uid: pod.uid(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The slices one Service should have: one per distinct resolved port set
/// (IPv4 only), or a single empty placeholder when no pod matches.
pub fn desired_for_service(svc: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
    if !managed_service(svc) {
        return Vec::new();
    }
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let selector = spec.selector.clone().unwrap_or_default();
    let ns = svc.namespace().unwrap_or_default();
    let svc_ports = spec.ports.as_deref().unwrap_or(&[]);

    let mut groups: BTreeMap<Vec<PortKey>, Vec<(String, Endpoint)>> = BTreeMap::new();
    for pod in pods {
        if pod.namespace().as_deref() != Some(ns.as_str())
            || !labels_match(&selector, pod.labels())
            || pod_terminal(pod)
        {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let ports: Option<Vec<PortKey>> = svc_ports
            .iter()
            .map(|p| {
                resolve_target(p, pod).map(|n| {
                    (
                        p.name.clone().unwrap_or_default(),
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        n,
                        p.app_protocol.clone(),
                    )
                })
            })
            .collect();
        // A pod where a named port does not resolve serves no port set: leave it out.
        let Some(ports) = ports else { continue };
        groups
            .entry(ports)
            .or_default()
            .push((pod.name_any(), endpoint(svc, pod, ip)));
    }
    if groups.is_empty() {
        // Upstream keeps one placeholder slice with no ports and no endpoints.
        groups.insert(Vec::new(), Vec::new());
    }

    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| {
            k.as_str() != SERVICE_NAME_LABEL
                && k.as_str() != MANAGED_BY_LABEL
                && k.as_str() != HEADLESS_LABEL
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }

    groups
        .into_iter()
        .map(|(ports, mut endpoints)| {
            endpoints.sort_by(|a, b| a.0.cmp(&b.0));
            // The name hashes the port set, so the same pods keep the same slice.
            let hash_input = format!("{ports:?}");
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!(
                        "{}-{}",
                        svc.name_any(),
                        short_hash(hash_input.as_bytes(), 5)
                    )),
                    namespace: Some(ns.clone()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![controller_ref(svc)]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: endpoints.into_iter().map(|(_, e)| e).collect(),
                ports: Some(ports.iter().map(port_of).collect()),
            }
        })
        .collect()
}

/// Every slice this controller wants, keyed by (namespace, name).
pub fn compile(services: &[Service], pods: &[Pod]) -> BTreeMap<SliceKey, EndpointSlice> {
    services
        .iter()
        .flat_map(|svc| desired_for_service(svc, pods))
        .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
        .collect()
}

/// The slice is one of ours (managed-by label and a service-name label).
pub fn managed_slice(slice: &EndpointSlice) -> bool {
    let labels = slice.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.contains_key(SERVICE_NAME_LABEL)
}

/// `existing` already says what `desired` says (ignoring server-set metadata,
/// and an empty list being stored as absent).
fn same_content(desired: &EndpointSlice, existing: &EndpointSlice) -> bool {
    desired.address_type == existing.address_type
        && semantically_equal(&desired.endpoints, &existing.endpoints)
        && semantically_equal(&desired.ports, &existing.ports)
        && desired.labels() == existing.labels()
        && desired.owner_references() == existing.owner_references()
}

/// The steps from `existing` (all slices seen) to `desired`: creates and
/// updates first (so a Service never briefly has no slice), then deletes.
/// Slices not managed by this controller are never touched.
pub fn plan(
    desired: &BTreeMap<SliceKey, EndpointSlice>,
    existing: &[EndpointSlice],
) -> Vec<SliceAction> {
    let ours: BTreeMap<SliceKey, &EndpointSlice> = existing
        .iter()
        .filter(|s| managed_slice(s))
        .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
        .collect();
    let mut actions = Vec::new();
    for (key, want) in desired {
        match ours.get(key) {
            None => actions.push(SliceAction::Create(want.clone())),
            Some(have) if !same_content(want, have) => {
                let mut update = want.clone();
                update.metadata.resource_version = have.resource_version();
                actions.push(SliceAction::Update(update));
            }
            Some(_) => {}
        }
    }
    for (ns, name) in ours.keys().filter(|k| !desired.contains_key(*k)) {
        actions.push(SliceAction::Delete {
            namespace: ns.clone(),
            name: name.clone(),
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn slice_for(slices: &[EndpointSlice], port: i32) -> &EndpointSlice {
        slices
            .iter()
            .find(|s| {
                s.ports
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|p| p.port == Some(port))
            })
            .unwrap()
    }

    fn names(s: &EndpointSlice) -> Vec<String> {
        s.endpoints
            .iter()
            .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
            .collect()
    }

    fn cond(s: &EndpointSlice, pod: &str) -> (bool, bool, bool) {
        let e = s
            .endpoints
            .iter()
            .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some(pod))
            .unwrap();
        let c = e.conditions.as_ref().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn ready_not_ready_terminating_and_metadata() {
        let svc = service(
            "default",
            "web",
            &[("app", "web")],
            &[("http", 80, tp_int(8080))],
        );
        let pods = vec![
            pod("default", "a")
                .labels(&[("app", "web")])
                .ip("10.244.0.5")
                .ready()
                .node("n1")
                .build(),
            pod("default", "b")
                .labels(&[("app", "web")])
                .ip("10.244.0.6")
                .build(),
            pod("default", "c")
                .labels(&[("app", "web")])
                .ip("10.244.0.7")
                .ready()
                .deleting()
                .build(),
            pod("default", "noip")
                .labels(&[("app", "web")])
                .ready()
                .build(),
            pod("default", "other")
                .labels(&[("app", "db")])
                .ip("10.244.0.8")
                .ready()
                .build(),
            pod("other", "a")
                .labels(&[("app", "web")])
                .ip("10.244.0.9")
                .ready()
                .build(),
            pod("default", "done")
                .labels(&[("app", "web")])
                .ip("10.244.0.10")
                .phase("Succeeded")
                .build(),
        ];
        let slices = desired_for_service(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(names(s), ["a", "b", "c"]);
        assert_eq!(cond(s, "a"), (true, true, false));
        assert_eq!(cond(s, "b"), (false, false, false));
        assert_eq!(cond(s, "c"), (false, true, true));
        assert_eq!(s.address_type, "IPv4");
        assert!(s.metadata.name.as_ref().unwrap().starts_with("web-"));
        assert_eq!(s.labels()[SERVICE_NAME_LABEL], "web");
        assert_eq!(s.labels()[MANAGED_BY_LABEL], MANAGED_BY);
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Service", "web")
        );
        assert_eq!(owner.controller, Some(true));
        let e = &s.endpoints[0];
        assert_eq!(e.addresses, ["10.244.0.5"]);
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        let t = e.target_ref.as_ref().unwrap();
        assert_eq!(t.uid.as_deref(), Some("uid-default-a"));
        assert_eq!(t.namespace.as_deref(), Some("default"));
        let p = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (p.name.as_deref(), p.protocol.as_deref(), p.port),
            (Some("http"), Some("TCP"), Some(8080))
        );
    }

    #[test]
    fn publish_not_ready_addresses() {
        let mut svc = service("default", "web", &[("app", "web")], &[("", 80, None)]);
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let pods = vec![
            pod("default", "a")
                .labels(&[("app", "web")])
                .ip("10.244.0.5")
                .build(),
            pod("default", "b")
                .labels(&[("app", "web")])
                .ip("10.244.0.6")
                .deleting()
                .build(),
        ];
        let s = &desired_for_service(&svc, &pods)[0];
        assert_eq!(cond(s, "a"), (true, false, false));
        assert_eq!(cond(s, "b"), (false, false, true));
        // No targetPort: the service port itself.
        assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(80));
    }

    #[test]
    fn named_ports_split_slices_and_drop_unresolved() {
        let svc = service(
            "default",
            "web",
            &[("app", "web")],
            &[
                ("http", 80, tp_name("web")),
                ("metrics", 9090, tp_int(9090)),
            ],
        );
        let pods = vec![
            pod("default", "a")
                .labels(&[("app", "web")])
                .ip("10.244.0.5")
                .port("web", 8080)
                .build(),
            pod("default", "b")
                .labels(&[("app", "web")])
                .ip("10.244.0.6")
                .port("web", 8080)
                .build(),
            pod("default", "c")
                .labels(&[("app", "web")])
                .ip("10.244.1.5")
                .port("web", 9000)
                .build(),
            pod("default", "d")
                .labels(&[("app", "web")])
                .ip("10.244.1.6")
                .port("other", 1)
                .build(),
        ];
        let slices = desired_for_service(&svc, &pods);
        assert_eq!(slices.len(), 2);
        assert_eq!(names(slice_for(&slices, 8080)), ["a", "b"]);
        assert_eq!(names(slice_for(&slices, 9000)), ["c"]);
        for s in &slices {
            assert_eq!(s.ports.as_ref().unwrap().len(), 2);
        }
        assert_ne!(slices[0].metadata.name, slices[1].metadata.name);
        // Same input, same names (stable, hashed).
        let again = desired_for_service(&svc, &pods);
        assert_eq!(slices, again);
    }

    #[test]
    fn statefulset_hostnames_only_for_matching_subdomain() {
        let svc = service("default", "db", &[("app", "db")], &[("", 5432, None)]);
        let pods = vec![
            pod("default", "db-0")
                .labels(&[("app", "db")])
                .ip("10.244.0.5")
                .host("db-0", "db")
                .build(),
            pod("default", "x")
                .labels(&[("app", "db")])
                .ip("10.244.0.6")
                .host("x", "other")
                .build(),
        ];
        let s = &desired_for_service(&svc, &pods)[0];
        assert_eq!(s.endpoints[0].hostname.as_deref(), Some("db-0"));
        assert_eq!(s.endpoints[1].hostname, None);
    }

    #[test]
    fn placeholder_headless_and_skipped_services() {
        let mut svc = service("default", "web", &[("app", "web")], &[("", 80, None)]);
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let slices = desired_for_service(&svc, &[]);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
        assert_eq!(slices[0].ports.as_deref(), Some(&[][..]));
        assert_eq!(slices[0].labels()[HEADLESS_LABEL], "");

        let no_selector = service("default", "ext", &[], &[("", 80, None)]);
        let kubernetes = service(
            "default",
            "kubernetes",
            &[("a", "b")],
            &[("https", 443, None)],
        );
        assert!(desired_for_service(&no_selector, &[]).is_empty());
        assert!(desired_for_service(&kubernetes, &[]).is_empty());
    }

    #[test]
    fn plan_creates_updates_deletes_only_ours() {
        let svc = service("default", "web", &[("app", "web")], &[("", 80, None)]);
        let p = pod("default", "a")
            .labels(&[("app", "web")])
            .ip("10.244.0.5")
            .ready()
            .build();
        let desired = compile(std::slice::from_ref(&svc), std::slice::from_ref(&p));
        // Nothing exists: create.
        let actions = plan(&desired, &[]);
        assert!(matches!(&actions[..], [SliceAction::Create(_)]));

        // Exists and equal: nothing to do.
        let mut have = desired.values().next().unwrap().clone();
        have.metadata.resource_version = Some("7".into());
        have.metadata.uid = Some("u".into());
        assert!(plan(&desired, std::slice::from_ref(&have)).is_empty());

        // Stale content: update carrying the resourceVersion.
        let mut stale = have.clone();
        stale.endpoints.clear();
        let actions = plan(&desired, &[stale]);
        match &actions[..] {
            [SliceAction::Update(s)] => {
                assert_eq!(s.metadata.resource_version.as_deref(), Some("7"))
            }
            other => panic!("{other:?}"),
        }

        // An orphan of ours goes; someone else's stays.
        let mut orphan = have.clone();
        orphan.metadata.name = Some("gone-abcde".into());
        let mut foreign = orphan.clone();
        foreign.metadata.name = Some("foreign".into());
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
        let actions = plan(&desired, &[have, orphan, foreign]);
        assert_eq!(
            actions,
            [SliceAction::Delete {
                namespace: "default".into(),
                name: "gone-abcde".into()
            }]
        );
    }
}
