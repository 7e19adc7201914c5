use serde_json::json;

use super::*;
use crate::{allocate, status_patch, Allocation, Assignment, Failure, ServiceKey, Wanted};

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

fn run(pools: &[Pool], svcs: &[Svc]) -> Allocation {
    let svcs: Vec<Service> = svcs.iter().cloned().map(Svc::build).collect();
    allocate(pools, &svcs)
}

/// The addresses of `name`, as strings, or its failure's reason.
fn got(a: &Allocation, name: &str) -> Result<Vec<String>, &'static str> {
    if let Some(f) = a.failed.get(&key(name)) {
        return Err(f.reason());
    }
    Ok(a.assigned
        .get(&key(name))
        .map(|x| x.ips.iter().map(|ip| ip.to_string()).collect())
        .unwrap_or_default())
}

fn v(list: &[&str]) -> Result<Vec<String>, &'static str> {
    Ok(list.iter().map(|s| s.to_string()).collect())
}

#[test]
fn first_service_gets_lowest_free_address() {
    let pools = [pool(
        "default",
        &["203.0.113.0/30", "203.0.113.8-203.0.113.9"],
    )];
    let a = run(
        &pools,
        &[
            Svc::lb("a").created(1),
            Svc::lb("b").created(2),
            Svc::lb("c").created(3),
        ],
    );
    // .0 and .3 are the /30's network and broadcast addresses.
    assert_eq!(got(&a, "a"), v(&["203.0.113.1"]));
    assert_eq!(got(&a, "b"), v(&["203.0.113.2"]));
    assert_eq!(got(&a, "c"), v(&["203.0.113.8"]));
    assert_eq!(
        a.assigned[&key("a")],
        Assignment {
            ips: ips(&["203.0.113.1"]),
            pool: "default".into()
        }
    );
    let u = a.usage["default"];
    assert_eq!((u.used, u.total), (3, 4));
}

#[test]
fn current_addresses_are_kept_whatever_the_input_order() {
    let pools = [pool("default", &["10.0.0.0/29"])];
    // The newest holds the lowest address; an older newcomer does not take it.
    let svcs = [
        Svc::lb("old-new").created(1),
        Svc::lb("holder").created(9).holding(&["10.0.0.1"]),
        Svc::lb("other-holder").created(5).holding(&["10.0.0.5"]),
    ];
    let a = run(&pools, &svcs);
    assert_eq!(got(&a, "holder"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "other-holder"), v(&["10.0.0.5"]));
    assert_eq!(got(&a, "old-new"), v(&["10.0.0.2"]));
    let mut rev = svcs.to_vec();
    rev.reverse();
    assert_eq!(run(&pools, &rev), a);
}

#[test]
fn of_two_holders_of_one_address_the_older_keeps_it() {
    let pools = [pool("default", &["10.0.0.0/29"])];
    let a = run(
        &pools,
        &[
            Svc::lb("newer").created(5).holding(&["10.0.0.3"]),
            Svc::lb("older").created(1).holding(&["10.0.0.3"]),
        ],
    );
    assert_eq!(got(&a, "older"), v(&["10.0.0.3"]));
    assert_eq!(got(&a, "newer"), v(&["10.0.0.1"]));
}

#[test]
fn held_address_outside_every_usable_pool_is_replaced() {
    let pools = [pool_with(
        "team-a",
        &["10.0.0.0/29"],
        json!({"serviceSelector": {"matchLabels": {"team": "a"}}}),
    )];
    let a = run(
        &pools,
        &[
            // Held from a pool that is gone.
            Svc::lb("moved").label("team", "a").holding(&["192.0.2.1"]),
            // Its labels no longer match the pool.
            Svc::lb("relabelled")
                .label("team", "b")
                .holding(&["10.0.0.4"]),
        ],
    );
    assert_eq!(got(&a, "moved"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "relabelled"), Err("NoMatchingPool"));
}

#[test]
fn load_balancer_ip_is_honoured() {
    let pools = [pool("default", &["203.0.113.0/24"])];
    let a = run(&pools, &[Svc::lb("web").lb_ip("203.0.113.77")]);
    assert_eq!(got(&a, "web"), v(&["203.0.113.77"]));
}

#[test]
fn annotation_addresses_are_honoured_with_whitespace_trimmed() {
    let pools = [pool("dual", &["203.0.113.0/24", "2001:db8::/120"])];
    let a = run(
        &pools,
        &[Svc::lb("web")
            .families(&["IPv6", "IPv4"], "RequireDualStack")
            .addresses(" 203.0.113.9 ,2001:db8::9 ")],
    );
    // Primary family first.
    assert_eq!(got(&a, "web"), v(&["2001:db8::9", "203.0.113.9"]));
}

#[test]
fn requested_address_wins_over_a_new_service_that_would_take_any() {
    let pools = [pool("default", &["10.0.0.1-10.0.0.2"])];
    let a = run(
        &pools,
        &[
            Svc::lb("any").created(1),
            Svc::lb("picky").created(2).lb_ip("10.0.0.1"),
        ],
    );
    assert_eq!(got(&a, "picky"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "any"), v(&["10.0.0.2"]));
}

#[test]
fn changed_request_moves_a_holder() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[Svc::lb("web").holding(&["10.0.0.1"]).addresses("10.0.0.50")],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.0.50"]));
}

#[test]
fn bad_annotation_is_an_invalid_request_naming_the_annotation() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[Svc::lb("web")
            .addresses("10.0.0.5,10.0.0.x")
            .holding(&["10.0.0.5"])],
    );
    let f = &a.failed[&key("web")];
    assert_eq!(f.reason(), "InvalidRequest");
    assert_eq!(
        f.to_string(),
        "Service default/web: annotation weft.dev/lb-addresses: \"10.0.0.x\" is not an IP address"
    );
    let a = run(&pools, &[Svc::lb("two").addresses("10.0.0.5,10.0.0.6")]);
    assert!(a.failed[&key("two")]
        .to_string()
        .contains("one IPv4 address"));
    let a = run(&pools, &[Svc::lb("v6").addresses("2001:db8::1")]);
    assert!(a.failed[&key("v6")]
        .to_string()
        .contains("IPv4 addresses only"));
}

#[test]
fn requested_address_in_no_pool_fails() {
    let pools = [
        pool("default", &["10.0.0.0/24"]),
        pool_with(
            "team-a",
            &["10.1.0.0/24"],
            json!({"serviceSelector": {"matchLabels": {"team": "a"}}}),
        ),
    ];
    let a = run(
        &pools,
        &[
            Svc::lb("nowhere").lb_ip("192.0.2.1"),
            Svc::lb("excluded").lb_ip("10.1.0.5"),
            // The network address of a /24 is not handed out.
            Svc::lb("network").lb_ip("10.0.0.0"),
        ],
    );
    let f = &a.failed[&key("nowhere")];
    assert_eq!(f.reason(), "AddressNotInPool");
    assert_eq!(
        f.to_string(),
        "Service default/nowhere asks for 192.0.2.1, which is in no LoadBalancerIPPool"
    );
    assert_eq!(
        a.failed[&key("excluded")].to_string(),
        "Service default/excluded asks for 10.1.0.5, which is only in LoadBalancerIPPool \
         team-a, whose serviceSelector does not match the Service"
    );
    assert_eq!(got(&a, "network"), Err("AddressNotInPool"));
}

#[test]
fn requested_addresses_from_two_pools_fail() {
    let pools = [
        pool("v4", &["10.0.0.0/24"]),
        pool("v6", &["2001:db8::/120"]),
    ];
    let a = run(
        &pools,
        &[Svc::lb("web")
            .families(&["IPv4", "IPv6"], "RequireDualStack")
            .addresses("10.0.0.1,2001:db8::1")],
    );
    let f = &a.failed[&key("web")];
    assert_eq!(f.reason(), "InvalidRequest");
    assert!(
        f.to_string().contains("different LoadBalancerIPPools"),
        "{f}"
    );
}

#[test]
fn address_taken_names_the_holder() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("first").holding(&["10.0.0.7"]),
            Svc::lb("second").lb_ip("10.0.0.7"),
        ],
    );
    assert_eq!(got(&a, "first"), v(&["10.0.0.7"]));
    let f = &a.failed[&key("second")];
    assert_eq!(
        f,
        &Failure::AddressTaken {
            service: key("second"),
            ip: ip("10.0.0.7"),
            by: key("first"),
        }
    );
    assert_eq!(f.reason(), "AddressInUse");
    assert!(f.to_string().starts_with(
        "Service default/second asks for 10.0.0.7, which Service default/first holds;"
    ));
}

#[test]
fn same_key_and_different_ports_share_an_address() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("dns-tcp")
                .sharing("dns")
                .ports(&[(53, "TCP")])
                .created(1),
            Svc::lb("dns-udp")
                .sharing("dns")
                .ports(&[(53, "UDP")])
                .created(2),
            Svc::lb("web")
                .sharing("dns")
                .ports(&[(80, "TCP")])
                .lb_ip("10.0.0.1"),
        ],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "dns-tcp"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "dns-udp"), v(&["10.0.0.1"]));
    assert_eq!(a.usage["default"].used, 1);
    assert_eq!(a.by_address()[&ip("10.0.0.1")].len(), 3);
}

#[test]
fn sharers_converge_on_the_address_already_shared_in_another_pool() {
    // `b-pool` sorts after `a-pool`, yet the second sharer joins the first
    // there rather than taking a free address of `a-pool`.
    let pools = [
        pool("a-pool", &["10.0.0.1"]),
        pool("b-pool", &["10.0.1.1-10.0.1.9"]),
    ];
    let a = run(
        &pools,
        &[
            Svc::lb("first")
                .sharing("k")
                .ports(&[(80, "TCP")])
                .holding(&["10.0.1.5"]),
            Svc::lb("second").sharing("k").ports(&[(443, "TCP")]),
        ],
    );
    assert_eq!(got(&a, "second"), v(&["10.0.1.5"]));
    assert_eq!(a.assigned[&key("second")].pool, "b-pool");
}

#[test]
fn port_clash_refuses_sharing() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("a")
                .sharing("k")
                .ports(&[(80, "TCP"), (443, "TCP")])
                .lb_ip("10.0.0.1"),
            Svc::lb("b")
                .sharing("k")
                .ports(&[(443, "TCP")])
                .lb_ip("10.0.0.1")
                .created(1),
            Svc::lb("c").sharing("k").ports(&[(443, "TCP")]).created(2),
        ],
    );
    assert_eq!(got(&a, "b"), Err("AddressInUse"));
    // Auto-assigned: not next to its clashing peer.
    assert_eq!(got(&a, "c"), v(&["10.0.0.2"]));
}

#[test]
fn different_or_missing_keys_refuse_sharing() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("a")
                .sharing("k1")
                .ports(&[(80, "TCP")])
                .lb_ip("10.0.0.1"),
            Svc::lb("b")
                .sharing("k2")
                .ports(&[(81, "TCP")])
                .lb_ip("10.0.0.1")
                .created(1),
            Svc::lb("c")
                .ports(&[(82, "TCP")])
                .lb_ip("10.0.0.1")
                .created(2),
        ],
    );
    assert_eq!(got(&a, "a"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "b"), Err("AddressInUse"));
    assert_eq!(got(&a, "c"), Err("AddressInUse"));
}

#[test]
fn local_services_share_only_with_the_same_selector() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("a")
                .sharing("k")
                .ports(&[(80, "TCP")])
                .local("web")
                .lb_ip("10.0.0.1"),
            Svc::lb("same")
                .sharing("k")
                .ports(&[(81, "TCP")])
                .local("web")
                .lb_ip("10.0.0.1"),
            Svc::lb("other")
                .sharing("k")
                .ports(&[(82, "TCP")])
                .local("db")
                .lb_ip("10.0.0.1"),
            Svc::lb("cluster")
                .sharing("k")
                .ports(&[(83, "TCP")])
                .lb_ip("10.0.0.1"),
        ],
    );
    assert_eq!(got(&a, "same"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "other"), Err("AddressInUse"));
    assert_eq!(got(&a, "cluster"), Err("AddressInUse"));
}

#[test]
fn exhaustion_names_the_full_pools() {
    let pools = [
        pool("one", &["10.0.0.1"]),
        pool("two", &["10.0.1.1"]),
        pool_with("manual", &["10.0.2.1"], json!({"autoAssign": false})),
    ];
    let a = run(
        &pools,
        &[
            Svc::lb("a").created(1),
            Svc::lb("b").created(2),
            Svc::lb("c").created(3),
        ],
    );
    assert_eq!(got(&a, "a"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "b"), v(&["10.0.1.1"]));
    let f = &a.failed[&key("c")];
    assert_eq!(
        f,
        &Failure::Exhausted {
            service: key("c"),
            families: Wanted::One(Family::V4),
            pools: vec!["one".into(), "two".into()],
        }
    );
    assert_eq!(
        f.to_string(),
        "Service default/c gets no IPv4 load-balancer address: LoadBalancerIPPools one and two are full"
    );
    let u = a.usage["manual"];
    assert_eq!((u.used, u.total), (0, 1));
}

#[test]
fn service_selector_restricts_which_pool_serves() {
    let pools = [
        pool_with(
            "a-team",
            &["10.0.0.0/24"],
            json!({"serviceSelector": {"matchLabels": {"team": "a"}}}),
        ),
        pool_with(
            "b-rest",
            &["10.0.1.0/24"],
            json!({"serviceSelector": {"matchExpressions": [
                {"key": "team", "operator": "NotIn", "values": ["a"]}
            ]}}),
        ),
    ];
    let a = run(
        &pools,
        &[
            Svc::lb("mine").label("team", "a"),
            Svc::lb("theirs").label("team", "b"),
        ],
    );
    assert_eq!(a.assigned[&key("mine")].pool, "a-team");
    assert_eq!(a.assigned[&key("theirs")].pool, "b-rest");
}

#[test]
fn no_matching_pool_is_reported() {
    let pools = [pool_with(
        "a-team",
        &["10.0.0.0/24"],
        json!({"serviceSelector": {"matchLabels": {"team": "a"}}}),
    )];
    let a = run(&pools, &[Svc::lb("web")]);
    let f = &a.failed[&key("web")];
    assert_eq!(f.reason(), "NoMatchingPool");
    assert_eq!(
        f.to_string(),
        "Service default/web gets no load-balancer address: no LoadBalancerIPPool with \
         autoAssign and a serviceSelector matching the Service has IPv4 addresses"
    );
    // No pool at all: the same.
    assert_eq!(
        got(&run(&[], &[Svc::lb("web")]), "web"),
        Err("NoMatchingPool")
    );
}

#[test]
fn auto_assign_false_pool_serves_only_requests() {
    let pools = [pool_with(
        "reserved",
        &["10.0.0.0/24"],
        json!({"autoAssign": false}),
    )];
    let a = run(
        &pools,
        &[
            Svc::lb("asks").lb_ip("10.0.0.10"),
            Svc::lb("any"),
            // Held but no longer asked for: given up.
            Svc::lb("dropped-request").holding(&["10.0.0.20"]),
        ],
    );
    assert_eq!(got(&a, "asks"), v(&["10.0.0.10"]));
    assert_eq!(got(&a, "any"), Err("NoMatchingPool"));
    assert_eq!(got(&a, "dropped-request"), Err("NoMatchingPool"));
    // Still asked for: kept.
    let a = run(
        &pools,
        &[Svc::lb("asks").lb_ip("10.0.0.10").holding(&["10.0.0.10"])],
    );
    assert_eq!(got(&a, "asks"), v(&["10.0.0.10"]));
}

#[test]
fn require_dual_stack_takes_both_families_from_one_pool() {
    let pools = [
        pool("a-v4", &["10.0.0.0/24"]),
        pool("b-dual", &["10.0.1.0/24", "2001:db8::/120"]),
    ];
    let a = run(
        &pools,
        &[Svc::lb("web").families(&["IPv4", "IPv6"], "RequireDualStack")],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.1.1", "2001:db8::"]));
    assert_eq!(a.assigned[&key("web")].pool, "b-dual");
}

#[test]
fn require_dual_stack_without_a_dual_pool_fails() {
    let pools = [
        pool("v4", &["10.0.0.0/24"]),
        pool("v6", &["2001:db8::/120"]),
    ];
    let a = run(
        &pools,
        &[Svc::lb("web").families(&["IPv4", "IPv6"], "RequireDualStack")],
    );
    let f = &a.failed[&key("web")];
    assert_eq!(f.reason(), "NoMatchingPool");
    assert!(
        f.to_string().ends_with("has IPv4 and IPv6 addresses"),
        "{f}"
    );
    // One family listed: RequireDualStack still means both.
    let a = run(
        &[pool("v4", &["10.0.0.0/24"])],
        &[Svc::lb("web").families(&["IPv4"], "RequireDualStack")],
    );
    assert_eq!(got(&a, "web"), Err("NoMatchingPool"));
}

#[test]
fn prefer_dual_stack_takes_both_when_a_pool_has_both() {
    let pools = [
        pool("a-v4", &["10.0.0.0/24"]),
        pool("b-dual", &["10.0.1.0/24", "2001:db8::/120"]),
    ];
    let a = run(
        &pools,
        &[Svc::lb("web").families(&["IPv6", "IPv4"], "PreferDualStack")],
    );
    assert_eq!(got(&a, "web"), v(&["2001:db8::", "10.0.1.1"]));
}

#[test]
fn prefer_dual_stack_takes_what_it_can() {
    let pools = [pool("v4", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[Svc::lb("web").families(&["IPv6", "IPv4"], "PreferDualStack")],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.0.1"]));
    // The IPv6 range added later: the holder keeps its IPv4 address and
    // gains an IPv6 one.
    let pools = [pool("v4", &["10.0.0.0/24", "2001:db8::/120"])];
    let a = run(
        &pools,
        &[Svc::lb("web")
            .families(&["IPv6", "IPv4"], "PreferDualStack")
            .holding(&["10.0.0.9"])],
    );
    assert_eq!(got(&a, "web"), v(&["2001:db8::", "10.0.0.9"]));
}

#[test]
fn prefer_dual_stack_on_a_single_stack_cluster_takes_one() {
    let pools = [pool("dual", &["10.0.0.0/24", "2001:db8::/120"])];
    let a = run(
        &pools,
        &[Svc::lb("web").families(&["IPv4"], "PreferDualStack")],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.0.1"]));
}

#[test]
fn single_stack_uses_the_first_family_only() {
    let pools = [pool("dual", &["10.0.0.0/24", "2001:db8::/120"])];
    let a = run(
        &pools,
        &[
            Svc::lb("v6").families(&["IPv6", "IPv4"], "SingleStack"),
            Svc::lb("default"),
            // A held address of a family not wanted is dropped.
            Svc::lb("was-dual").holding(&["2001:db8::77", "10.0.0.77"]),
        ],
    );
    assert_eq!(got(&a, "v6"), v(&["2001:db8::"]));
    assert_eq!(got(&a, "default"), v(&["10.0.0.1"]));
    assert_eq!(got(&a, "was-dual"), v(&["10.0.0.77"]));
}

#[test]
fn services_of_another_class_or_type_are_ignored() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[
            Svc::lb("cloud").spec("loadBalancerClass", json!("example.com/cloud")),
            Svc::lb("ours").spec("loadBalancerClass", json!(crate::LB_CLASS)),
            Svc::lb("plain").spec("type", json!("ClusterIP")),
        ],
    );
    assert!(!a.assigned.contains_key(&key("cloud")) && !a.failed.contains_key(&key("cloud")));
    assert!(!a.assigned.contains_key(&key("plain")) && !a.failed.contains_key(&key("plain")));
    assert_eq!(got(&a, "ours"), v(&["10.0.0.1"]));
}

#[test]
fn type_change_releases_the_address() {
    let pools = [pool("default", &["10.0.0.1"])];
    let before = run(&pools, &[Svc::lb("web").holding(&["10.0.0.1"])]);
    assert_eq!(got(&before, "web"), v(&["10.0.0.1"]));
    let a = run(
        &pools,
        &[
            Svc::lb("web")
                .holding(&["10.0.0.1"])
                .spec("type", json!("NodePort")),
            Svc::lb("next"),
        ],
    );
    assert!(!a.assigned.contains_key(&key("web")));
    assert_eq!(got(&a, "next"), v(&["10.0.0.1"]));
}

#[test]
fn namespaces_keep_services_apart() {
    let pools = [pool("default", &["10.0.0.0/24"])];
    let a = run(
        &pools,
        &[Svc::lb("web").ns("a"), Svc::lb("web").ns("b").created(1)],
    );
    assert_eq!(a.assigned.len(), 2);
    assert_eq!(
        a.assigned[&ServiceKey::new("b", "web")].ips,
        ips(&["10.0.0.2"])
    );
    assert_eq!(ServiceKey::new("b", "web").to_string(), "b/web");
}

#[test]
fn status_patch_publishes_addresses_as_vip_or_clears_them() {
    let a = Assignment {
        ips: ips(&["203.0.113.1", "2001:db8::1"]),
        pool: "default".into(),
    };
    assert_eq!(
        status_patch(Some(&a)),
        json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "203.0.113.1", "ipMode": "VIP"},
            {"ip": "2001:db8::1", "ipMode": "VIP"},
        ]}}})
    );
    assert_eq!(
        status_patch(None),
        json!({"status": {"loadBalancer": {"ingress": []}}})
    );
}

#[test]
fn writing_the_result_back_changes_nothing() {
    let pools = [
        pool("a", &["10.0.0.1-10.0.0.3", "2001:db8::1-2001:db8::2"]),
        pool_with("b", &["10.0.1.0/30"], json!({"autoAssign": false})),
    ];
    let svcs = [
        Svc::lb("s1")
            .families(&["IPv4", "IPv6"], "PreferDualStack")
            .created(3),
        Svc::lb("s2").sharing("k").ports(&[(1, "TCP")]).created(1),
        Svc::lb("s3").sharing("k").ports(&[(2, "TCP")]).created(2),
        Svc::lb("s4").lb_ip("10.0.1.2"),
        Svc::lb("s5").families(&["IPv6"], "SingleStack"),
        Svc::lb("s6").families(&["IPv6"], "SingleStack"),
        Svc::lb("s7").families(&["IPv6"], "SingleStack").created(4),
    ];
    let first = run(&pools, &svcs);
    let again: Vec<Svc> = svcs
        .iter()
        .map(|s| {
            let name = s.0["metadata"]["name"].as_str().unwrap();
            let held: Vec<String> = got(&first, name).unwrap_or_default();
            let held: Vec<&str> = held.iter().map(String::as_str).collect();
            s.clone().holding(&held)
        })
        .collect();
    let second = run(&pools, &again);
    assert_eq!(second.assigned, first.assigned);
    assert_eq!(got(&first, "s1"), v(&["10.0.0.2"]));
    assert_eq!(got(&first, "s3"), v(&["10.0.0.1"]));
    assert_eq!(got(&first, "s7"), Err("PoolExhausted"));
    assert_eq!(got(&second, "s7"), Err("PoolExhausted"));
}

#[test]
fn require_dual_stack_holding_one_family_keeps_it_and_gains_the_other() {
    let pools = [pool("dual", &["10.0.0.0/24", "2001:db8::/120"])];
    let a = run(
        &pools,
        &[
            Svc::lb("first").created(1),
            Svc::lb("web")
                .families(&["IPv4", "IPv6"], "RequireDualStack")
                .holding(&["10.0.0.9"])
                .created(2),
        ],
    );
    assert_eq!(got(&a, "web"), v(&["10.0.0.9", "2001:db8::"]));
    assert_eq!(got(&a, "first"), v(&["10.0.0.1"]));
}

#[test]
fn require_dual_stack_holding_one_family_does_not_block_a_request() {
    // Found by `writing_the_result_back_keeps_every_assignment`: the holder
    // cannot get an IPv6 address, so it must not keep the request for its
    // IPv4 one from succeeding.
    let pools = [pool("v4", &["10.0.0.5-10.0.0.7"])];
    let a = run(
        &pools,
        &[
            Svc::lb("holder")
                .families(&["IPv4", "IPv6"], "RequireDualStack")
                .holding(&["10.0.0.6"]),
            Svc::lb("asks").lb_ip("10.0.0.6").created(1),
        ],
    );
    assert_eq!(got(&a, "asks"), v(&["10.0.0.6"]));
    assert_eq!(got(&a, "holder"), Err("NoMatchingPool"));
}
