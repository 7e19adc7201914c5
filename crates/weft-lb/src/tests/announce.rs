use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;
use crate::{allocate, announcers, weight, Announcement, ServiceKey};

fn services(list: &[Svc]) -> Vec<Service> {
    list.iter().cloned().map(Svc::build).collect()
}

/// Allocates, then chooses announcers: address → node.
fn announce(
    pools: &[Pool],
    svcs: &[Service],
    slices: &[EndpointSlice],
    nodes: &[NodeInfo],
) -> BTreeMap<IpAddr, String> {
    let alloc = allocate(pools, svcs);
    announcers(&alloc, pools, svcs, slices, nodes)
        .into_iter()
        .map(|(ip, a)| (ip, a.node))
        .collect()
}

/// `n` Services `s0`… with ExternalTrafficPolicy Cluster.
fn many(n: usize) -> Vec<Service> {
    services(
        &(0..n)
            .map(|i| Svc::lb(&format!("s{i}")))
            .collect::<Vec<_>>(),
    )
}

fn nodes(names: &[&str]) -> Vec<NodeInfo> {
    names.iter().map(|n| node(n, &[], true)).collect()
}

#[test]
fn weight_is_fnv1a_64_then_fmix64_and_fixed() {
    // Values computed apart from this crate (a few lines of Python over
    // the FNV-1a and fmix64 definitions); agents of two versions must
    // agree, so the hash must never change.
    let mut h = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut h, b"10.0.0.1/node-1");
    assert_eq!(std::hash::Hasher::finish(&h), 0xa668_3451_b98e_afb4);
    assert_eq!(weight(ip("10.0.0.1"), "node-1"), 0x00a2_9152_ba88_965a);
}

#[test]
fn cluster_service_is_announced_by_the_ready_node_of_highest_weight() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let svcs = services(&[Svc::lb("web")]);
    let ns = nodes(&["n1", "n2", "n3"]);
    let alloc = allocate(&pools, &svcs);
    let got = announcers(&alloc, &pools, &svcs, &[], &ns);
    let addr = ip("10.0.0.1");
    let best = ["n1", "n2", "n3"]
        .into_iter()
        .max_by_key(|n| weight(addr, n))
        .unwrap();
    assert_eq!(
        got,
        BTreeMap::from([(
            addr,
            Announcement {
                node: best.into(),
                services: vec![ServiceKey::new("default", "web")],
            }
        )])
    );
}

#[test]
fn local_service_is_announced_only_by_a_node_with_a_ready_local_endpoint() {
    let pools = [pool("default", &["10.0.0.0/24", "2001:db8::/120"])];
    let svcs = services(&[Svc::lb("web")
        .local("web")
        .families(&["IPv4", "IPv6"], "RequireDualStack")]);
    let slices = [
        slice(
            "web",
            "IPv4",
            &[
                ("10.244.2.5", "n2", true),
                ("10.244.3.5", "n3", false),
                ("10.244.9.5", "elsewhere", true),
            ],
        ),
        slice("web", "IPv6", &[("fd00:4::5", "n4", true)]),
        // Another Service's endpoint on n1 counts for nothing.
        slice("other", "IPv4", &[("10.244.1.5", "n1", true)]),
    ];
    let ns = nodes(&["n1", "n2", "n3", "n4", "n5"]);
    let got = announce(&pools, &svcs, &slices, &ns);
    assert_eq!(got[&ip("10.0.0.1")], "n2");
    // The IPv6 address: only where an IPv6 endpoint is.
    assert_eq!(got[&ip("2001:db8::")], "n4");
    // Without any ready local endpoint, nobody announces.
    let got = announce(&pools, &svcs, &slices[2..], &ns);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn local_sharers_need_a_node_with_endpoints_of_each() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let svcs = services(&[
        Svc::lb("http")
            .sharing("k")
            .ports(&[(80, "TCP")])
            .local("web"),
        Svc::lb("https")
            .sharing("k")
            .ports(&[(443, "TCP")])
            .local("web"),
    ]);
    let slices = [
        slice(
            "http",
            "IPv4",
            &[("10.244.1.5", "n1", true), ("10.244.2.5", "n2", true)],
        ),
        slice(
            "https",
            "IPv4",
            &[("10.244.2.5", "n2", true), ("10.244.3.5", "n3", true)],
        ),
    ];
    let alloc = allocate(&pools, &svcs);
    let got = announcers(&alloc, &pools, &svcs, &slices, &nodes(&["n1", "n2", "n3"]));
    let a = &got[&ip("10.0.0.1")];
    assert_eq!(a.node, "n2");
    assert_eq!(
        a.services,
        vec![
            ServiceKey::new("default", "http"),
            ServiceKey::new("default", "https")
        ]
    );
}

#[test]
fn node_selector_restricts_announcers() {
    let pools = [pool_with(
        "edge",
        &["10.0.0.0/24"],
        json!({"nodeSelector": {"matchLabels": {"edge": "true"}}}),
    )];
    let svcs = many(40);
    let ns = vec![
        node("inner-1", &[], true),
        node("edge-1", &[("edge", "true")], true),
        node("inner-2", &[("edge", "false")], true),
        node("edge-2", &[("edge", "true")], true),
    ];
    let got = announce(&pools, &svcs, &[], &ns);
    assert_eq!(got.len(), 40);
    assert!(got.values().all(|n| n.starts_with("edge-")), "{got:?}");
    assert!(got.values().any(|n| n == "edge-1") && got.values().any(|n| n == "edge-2"));
}

#[test]
fn not_ready_node_is_never_chosen() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let svcs = many(60);
    let mut ns = nodes(&["a", "b", "c"]);
    // Ready, it would announce some of them: the test means something.
    assert!(announce(&pools, &svcs, &[], &ns).values().any(|n| n == "b"));
    ns[1].ready = false;
    let got = announce(&pools, &svcs, &[], &ns);
    assert_eq!(got.len(), 60);
    assert!(got.values().all(|n| n != "b"));
    // No ready node at all: nobody announces.
    for n in &mut ns {
        n.ready = false;
    }
    assert!(announce(&pools, &svcs, &[], &ns).is_empty());
}

#[test]
fn removing_a_node_moves_only_the_addresses_it_announced() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let svcs = many(100);
    let all = nodes(&["n1", "n2", "n3", "n4", "n5"]);
    let before = announce(&pools, &svcs, &[], &all);
    let without_n3: Vec<NodeInfo> = all.iter().filter(|n| n.name != "n3").cloned().collect();
    let after = announce(&pools, &svcs, &[], &without_n3);
    assert_eq!(after.len(), 100);
    let mut moved = 0;
    for (ip, node) in &before {
        if node == "n3" {
            moved += 1;
            assert_ne!(after[ip], "n3");
        } else {
            assert_eq!(&after[ip], node, "{ip} moved off {node}");
        }
    }
    assert!(moved > 0);
}

#[test]
fn addresses_spread_over_nodes() {
    let pools = [pool("default", &["10.0.0.0/23"])];
    let svcs = many(400);
    let got = announce(
        &pools,
        &svcs,
        &[],
        &nodes(&["node-1", "node-2", "node-3", "node-4"]),
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for n in got.values() {
        *per.entry(n.as_str()).or_default() += 1;
    }
    // 100 each on average; a fair hash stays well within 60–140.
    assert_eq!(per.len(), 4, "{per:?}");
    assert!(per.values().all(|c| (60..=140).contains(c)), "{per:?}");
}

#[test]
fn node_input_order_does_not_matter() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let svcs = many(30);
    let mut ns = nodes(&["n1", "n2", "n3", "n4"]);
    let a = announce(&pools, &svcs, &[], &ns);
    ns.reverse();
    assert_eq!(announce(&pools, &svcs, &[], &ns), a);
}
