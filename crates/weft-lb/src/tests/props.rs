//! Properties of allocation and announcer choice over random pools,
//! Services, EndpointSlices and nodes drawn from small address spaces (so
//! that pools overlap, run full and Services contend for addresses).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;
use serde_json::json;
use weft_policy::model::selector_matches;

use super::*;
use crate::{allocate, announcers, wants_address, weight, Allocation, ServiceKey, LB_CLASS};

/// Addresses Services ask for and hold: pools draw from the same space.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u8..18).prop_map(|i| format!("10.0.0.{i}")),
        3 => (0u8..7).prop_map(|i| format!("2001:db8::{i:x}")),
        1 => Just("192.0.2.1".to_string()),
    ]
}

fn pool_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..16, 0u8..4).prop_map(|(s, n)| format!("10.0.0.{s}-10.0.0.{}", s + n)),
        (0u8..2, 29u8..33).prop_map(|(i, len)| {
            let size = 1u8 << (32 - len);
            format!("10.0.0.{}/{len}", i * size)
        }),
        (0u8..16).prop_map(|i| format!("10.0.0.{i}")),
        (0u8..6, 0u8..3).prop_map(|(s, n)| format!("2001:db8::{s:x}-2001:db8::{:x}", s + n)),
    ]
}

fn selector() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!({"matchLabels": {"team": "a"}}))),
        1 => Just(Some(json!({"matchExpressions": [
            {"key": "team", "operator": "NotIn", "values": ["a"]}
        ]}))),
    ]
}

fn pools() -> impl Strategy<Value = Vec<Pool>> {
    prop::collection::vec(
        (
            prop::collection::vec(pool_entry(), 1..4),
            selector(),
            prop::option::of(Just(json!({"matchLabels": {"zone": "x"}}))),
            prop::bool::weighted(0.8),
        ),
        0..4,
    )
    .prop_map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(i, (addrs, svc_sel, node_sel, auto))| {
                let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
                let mut spec = json!({"autoAssign": auto});
                if let Some(s) = svc_sel {
                    spec["serviceSelector"] = s;
                }
                if let Some(s) = node_sel {
                    spec["nodeSelector"] = s;
                }
                pool_with(&format!("p{i}"), &addrs, spec)
            })
            .collect()
    })
}

const PORTS: [(i32, &str); 4] = [(80, "TCP"), (443, "TCP"), (53, "UDP"), (53, "TCP")];

fn service(i: usize) -> impl Strategy<Value = Svc> {
    let kind = (
        prop_oneof![8 => Just("LoadBalancer"), 1 => Just("ClusterIP")],
        prop_oneof![6 => Just(None), 1 => Just(Some(LB_CLASS)), 1 => Just(Some("other/lb"))],
        prop_oneof![Just("a"), Just("b")],
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        0u32..4,
    );
    let families = (
        prop_oneof![
            Just(vec![]),
            Just(vec!["IPv4"]),
            Just(vec!["IPv6"]),
            Just(vec!["IPv4", "IPv6"]),
            Just(vec!["IPv6", "IPv4"]),
        ],
        prop_oneof![
            Just(None),
            Just(Some("SingleStack")),
            Just(Some("PreferDualStack")),
            Just(Some("RequireDualStack")),
        ],
    );
    let request = (
        prop::option::weighted(0.2, address()),
        prop::option::weighted(0.2, prop::collection::vec(address(), 1..3)),
        prop::collection::vec(address(), 0..3),
    );
    let sharing = (
        prop_oneof![2 => Just(None), 1 => Just(Some("k1")), 1 => Just(Some("k2"))],
        prop::sample::subsequence(PORTS.to_vec(), 1..3),
        prop::bool::ANY,
        prop_oneof![Just("x"), Just("y")],
    );
    (kind, families, request, sharing).prop_map(
        move |(
            (type_, class, ns, team, created),
            (fams, policy),
            (lb_ip, annotation, held),
            (key, ports, local, app),
        )| {
            let mut s = Svc::lb(&format!("s{i}"))
                .ns(ns)
                .created(created)
                .spec("type", json!(type_))
                .ports(&ports);
            if let Some(c) = class {
                s = s.spec("loadBalancerClass", json!(c));
            }
            if let Some(t) = team {
                s = s.label("team", t);
            }
            if !fams.is_empty() {
                s = s.spec("ipFamilies", json!(fams));
            }
            if let Some(p) = policy {
                s = s.spec("ipFamilyPolicy", json!(p));
            }
            if let Some(ip) = lb_ip {
                s = s.lb_ip(&ip);
            }
            if let Some(list) = annotation {
                s = s.addresses(&list.join(","));
            }
            if let Some(k) = key {
                s = s.sharing(k);
            }
            if local {
                s = s.local(app);
            } else {
                s = s.spec("selector", json!({"app": app}));
            }
            let held: Vec<&str> = held.iter().map(String::as_str).collect();
            s.holding(&held)
        },
    )
}

fn services() -> impl Strategy<Value = Vec<Svc>> {
    (0usize..10).prop_flat_map(|n| (0..n).map(service).collect::<Vec<_>>())
}

fn build(svcs: &[Svc]) -> Vec<Service> {
    svcs.iter().cloned().map(Svc::build).collect()
}

fn key_of(s: &Service) -> ServiceKey {
    ServiceKey::of(s).unwrap()
}

/// The sharing rule, read from the objects themselves.
fn may_share(a: &Service, b: &Service) -> bool {
    let ann = |s: &Service| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|m| m.get(crate::ANNOTATION_SHARING_KEY).cloned())
            .filter(|k| !k.is_empty())
    };
    let spec = |s: &Service| s.spec.clone().unwrap_or_default();
    let ports = |s: &Service| -> BTreeSet<(i32, String)> {
        spec(s)
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.port, p.protocol.unwrap_or_else(|| "TCP".into())))
            .collect()
    };
    let local = |s: &Service| spec(s).external_traffic_policy.as_deref() == Some("Local");
    ann(a).is_some()
        && ann(a) == ann(b)
        && ports(a).is_disjoint(&ports(b))
        && local(a) == local(b)
        && (!local(a) || spec(a).selector == spec(b).selector)
}

/// The addresses a Service asks for, from the objects themselves.
fn asked(s: &Service) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    if let Some(ip) = s.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref()) {
        out.extend(ip.parse::<IpAddr>().ok());
    }
    if let Some(list) = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(crate::ANNOTATION_ADDRESSES))
    {
        out.extend(
            list.split(',')
                .filter_map(|a| a.trim().parse::<IpAddr>().ok()),
        );
    }
    out
}

fn nodes_and_slices() -> impl Strategy<Value = (Vec<NodeInfo>, Vec<EndpointSlice>)> {
    let nodes = prop::collection::vec((prop::bool::ANY, prop::bool::weighted(0.8)), 1..5).prop_map(
        |list| {
            list.into_iter()
                .enumerate()
                .map(|(i, (zone_x, ready))| {
                    let labels: &[(&str, &str)] = if zone_x { &[("zone", "x")] } else { &[] };
                    node(&format!("n{i}"), labels, ready)
                })
                .collect::<Vec<_>>()
        },
    );
    let slices = prop::collection::vec(
        (
            0usize..10,
            prop_oneof![Just("IPv4"), Just("IPv6")],
            prop::collection::vec((0usize..5, prop::bool::ANY), 0..4),
            prop_oneof![Just("a"), Just("b")],
        ),
        0..8,
    )
    .prop_map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(j, (svc, fam, eps, ns))| {
                let eps: Vec<(String, bool)> =
                    eps.into_iter().map(|(n, r)| (format!("n{n}"), r)).collect();
                let eps: Vec<(&str, &str, bool)> = eps
                    .iter()
                    .map(|(n, r)| ("10.244.0.1", n.as_str(), *r))
                    .collect();
                let mut s = slice(&format!("s{svc}"), fam, &eps);
                s.metadata.name = Some(format!("slice-{j}"));
                s.metadata.namespace = Some(ns.into());
                s
            })
            .collect()
    });
    (nodes, slices)
}

/// The nodes that may announce `ip`, read from the objects themselves.
fn eligible(
    ip: IpAddr,
    alloc: &Allocation,
    pools: &[Pool],
    svcs: &[Service],
    slices: &[EndpointSlice],
    nodes: &[NodeInfo],
) -> BTreeSet<String> {
    let users: Vec<&ServiceKey> = alloc
        .assigned
        .iter()
        .filter(|(_, a)| a.ips.contains(&ip))
        .map(|(k, _)| k)
        .collect();
    let fam = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    nodes
        .iter()
        .filter(|n| n.ready)
        .filter(|n| {
            users.iter().all(|k| {
                let pool = pools
                    .iter()
                    .find(|p| p.name == alloc.assigned[*k].pool)
                    .unwrap();
                let node_ok = pool
                    .node_selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, &n.labels));
                let svc = svcs.iter().find(|s| key_of(s) == **k).unwrap();
                let local = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.external_traffic_policy.as_deref())
                    == Some("Local");
                let endpoint_ok = !local
                    || slices.iter().any(|sl| {
                        sl.metadata.namespace.as_deref() == Some(k.namespace.as_str())
                            && sl
                                .metadata
                                .labels
                                .as_ref()
                                .and_then(|l| l.get(crate::LABEL_SERVICE_NAME))
                                == Some(&k.name)
                            && sl.address_type == fam
                            && sl.endpoints.iter().any(|e| {
                                e.node_name.as_deref() == Some(n.name.as_str())
                                    && e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                            })
                    });
                node_ok && endpoint_ok
            })
        })
        .map(|n| n.name.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn an_address_is_shared_only_by_services_that_may_share(
        pools in pools(), svcs in services()
    ) {
        let svcs = build(&svcs);
        let alloc = allocate(&pools, &svcs);
        let by_key: BTreeMap<ServiceKey, &Service> = svcs.iter().map(|s| (key_of(s), s)).collect();
        for (ip, users) in alloc.by_address() {
            for (i, a) in users.iter().enumerate() {
                for b in &users[i + 1..] {
                    prop_assert!(
                        may_share(by_key[a], by_key[b]),
                        "{ip} held by {a} and {b}, which may not share"
                    );
                }
            }
        }
    }

    #[test]
    fn assigned_addresses_lie_in_a_pool_the_service_may_use(
        pools in pools(), svcs in services()
    ) {
        let svcs = build(&svcs);
        let alloc = allocate(&pools, &svcs);
        for s in &svcs {
            let k = key_of(s);
            let wants = wants_address(s);
            prop_assert!(wants || (!alloc.assigned.contains_key(&k) && !alloc.failed.contains_key(&k)));
            prop_assert!(!(alloc.assigned.contains_key(&k) && alloc.failed.contains_key(&k)));
            if wants {
                prop_assert!(alloc.assigned.contains_key(&k) || alloc.failed.contains_key(&k));
            }
            let Some(a) = alloc.assigned.get(&k) else { continue };
            let pool = pools.iter().find(|p| p.name == a.pool).unwrap();
            let labels = s.metadata.labels.clone().unwrap_or_default();
            prop_assert!(pool.service_selector.as_ref().is_none_or(|sel| selector_matches(sel, &labels)));
            prop_assert!(!a.ips.is_empty() && a.ips.len() <= 2);
            prop_assert!(a.ips.len() < 2 || a.ips[0].is_ipv4() != a.ips[1].is_ipv4());
            let asked = asked(s);
            for ip in &a.ips {
                prop_assert!(pool.contains(*ip), "{ip} of {k} is not in pool {}", a.pool);
                prop_assert!(pool.auto_assign || asked.contains(ip), "{ip} of {k} from a manual pool unasked");
            }
            if !asked.is_empty() {
                prop_assert_eq!(&a.ips.iter().copied().collect::<BTreeSet<_>>(), &asked);
            }
        }
    }

    #[test]
    fn allocate_ignores_input_order(
        (pools, shuffled_pools) in pools().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        (svcs, shuffled) in services().prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle())),
    ) {
        prop_assert_eq!(
            allocate(&pools, &build(&svcs)),
            allocate(&shuffled_pools, &build(&shuffled))
        );
    }

    #[test]
    fn writing_the_result_back_keeps_every_assignment(
        pools in pools(), svcs in services()
    ) {
        let first = allocate(&pools, &build(&svcs));
        let again: Vec<Svc> = svcs
            .iter()
            .map(|s| {
                let k = key_of(&s.clone().build());
                let held: Vec<String> = first
                    .assigned
                    .get(&k)
                    .map(|a| a.ips.iter().map(|ip| ip.to_string()).collect())
                    .unwrap_or_default();
                let held: Vec<&str> = held.iter().map(String::as_str).collect();
                s.clone().holding(&held)
            })
            .collect();
        let second = allocate(&pools, &build(&again));
        prop_assert_eq!(&second.assigned, &first.assigned);
        prop_assert_eq!(
            second.failed.keys().collect::<Vec<_>>(),
            first.failed.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn announcer_is_the_heaviest_eligible_node(
        pools in pools(), svcs in services(), (nodes, slices) in nodes_and_slices()
    ) {
        let svcs = build(&svcs);
        let alloc = allocate(&pools, &svcs);
        let got = announcers(&alloc, &pools, &svcs, &slices, &nodes);
        for (ip, users) in alloc.by_address() {
            let ok = eligible(ip, &alloc, &pools, &svcs, &slices, &nodes);
            match got.get(&ip) {
                None => prop_assert!(ok.is_empty(), "{ip} unannounced, eligible {ok:?}"),
                Some(a) => {
                    prop_assert!(ok.contains(&a.node), "{ip} by {} not in {ok:?}", a.node);
                    let w = weight(ip, &a.node);
                    prop_assert!(ok.iter().all(|n| weight(ip, n) <= w));
                    prop_assert_eq!(&a.services, &users);
                }
            }
        }
        prop_assert!(got.keys().all(|ip| alloc.by_address().contains_key(ip)));
    }
}
