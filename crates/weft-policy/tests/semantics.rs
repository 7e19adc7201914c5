//! One test per rule of networking.k8s.io/v1 NetworkPolicy semantics (the
//! API reference and the kubernetes.io "Network Policies" page; cases
//! modelled on the upstream e2e suite, test/e2e/network/netpol): each
//! compiles the rulesets of the nodes involved and traces packets through
//! them with weft-nft's tracer, and every traced verdict is also held equal
//! to the model's (what `weft explain` answers) by `World::can`.

mod common;

use common::{model_world, namespace, pod, policy, World};
use serde_json::json;
use weft_policy::Proto::{Sctp, Tcp, Udp};

fn pairs_to(w: &World, ns: &str) -> usize {
    w.denied_pairs(Tcp, 80)
        .iter()
        .filter(|p| p.split('→').nth(1).unwrap().starts_with(&format!("{ns}/")))
        .count()
}

#[test]
fn without_policies_every_pod_reaches_every_pod() {
    let w = model_world();
    assert!(w.denied_pairs(Tcp, 80).is_empty());
    assert!(w.denied_pairs(Udp, 81).is_empty());
}

#[test]
fn default_deny_ingress_isolates_the_pods_of_its_namespace_only() {
    let w = model_world().with(policy("x", "deny", json!({"podSelector": {}})));
    // Every pair into x (9 sources × 3 pods, minus the 3 pods to themselves,
    // which never leave the pod) is denied; nothing else.
    let denied = w.denied_pairs(Tcp, 80);
    assert_eq!(denied.len(), 24, "{denied:?}");
    assert_eq!(pairs_to(&w, "x"), 24);
    assert!(w.can("x/a", "y/a", Tcp, 80), "egress is not isolated");
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_has_rules() {
    // No policyTypes, an egress rule: Egress and Ingress (no ingress rules:
    // all ingress denied).
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(w.can("x/a", "x/b", Tcp, 80));
    assert!(!w.can("x/a", "x/c", Tcp, 80), "egress isolated");
    assert!(!w.can("x/b", "x/a", Tcp, 80), "ingress isolated too");
}

#[test]
fn an_empty_egress_list_without_policy_types_isolates_ingress_only() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": []}),
    ));
    assert!(w.can("x/a", "y/c", Tcp, 80), "egress not isolated");
    assert!(!w.can("y/c", "x/a", Tcp, 80));
}

#[test]
fn policy_types_egress_alone_leaves_ingress_open() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    ));
    assert!(w.can("y/a", "x/a", Tcp, 80));
    assert!(!w.can("x/a", "y/a", Tcp, 80));
    assert!(
        !w.can("x/a", "x/b", Tcp, 80),
        "egress denied even in-namespace"
    );
}

#[test]
fn a_rule_that_is_empty_allows_everything() {
    let w = model_world()
        .with(policy("x", "deny", json!({"podSelector": {}})))
        .with(policy(
            "x",
            "all",
            json!({"podSelector": {}, "ingress": [{}]}),
        ));
    assert!(w.denied_pairs(Tcp, 80).is_empty());
    assert!(w.denied_pairs(Sctp, 82).is_empty());
}

#[test]
fn the_allowed_set_is_the_union_of_every_policy_selecting_the_pod() {
    let w = model_world()
        .with(policy(
            "x",
            "from-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ))
        .with(policy(
            "x",
            "from-c",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
        ));
    assert!(w.can("x/b", "x/a", Tcp, 80));
    assert!(w.can("x/c", "x/a", Tcp, 80));
    assert!(!w.can("y/b", "x/a", Tcp, 80), "pod selectors stay in x");
}

#[test]
fn a_pod_selector_alone_means_the_policys_namespace() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(w.can("x/b", "x/a", Tcp, 80));
    assert!(!w.can("y/b", "x/a", Tcp, 80));
    assert!(!w.can("z/b", "x/c", Tcp, 80));
}

#[test]
fn a_namespace_selector_alone_means_every_pod_of_those_namespaces() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    ));
    for p in ["a", "b", "c"] {
        assert!(w.can(&format!("y/{p}"), "x/a", Tcp, 80));
    }
    assert!(!w.can("x/b", "x/a", Tcp, 80), "not even its own namespace");
    assert!(!w.can("z/a", "x/a", Tcp, 80));
}

#[test]
fn the_namespace_name_label_is_there_even_when_a_namespace_lacks_it() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector":
            {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["z"]}]}}]}]}),
    ));
    assert!(w.can("z/c", "x/a", Tcp, 80));
    assert!(!w.can("y/c", "x/a", Tcp, 80));
}

#[test]
fn both_selectors_in_one_peer_are_anded_in_two_peers_ored() {
    let and = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"ns": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(and.can("y/b", "x/a", Tcp, 80));
    assert!(!and.can("y/a", "x/a", Tcp, 80));
    assert!(!and.can("x/b", "x/a", Tcp, 80));
    let or = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
            {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(or.can("y/b", "x/a", Tcp, 80));
    assert!(or.can("y/a", "x/a", Tcp, 80));
    assert!(or.can("x/b", "x/a", Tcp, 80));
    assert!(!or.can("z/b", "x/a", Tcp, 80));
}

#[test]
fn match_expressions_select_with_in_notin_exists_and_doesnotexist() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]},
               "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "Exists"}]},
                                      "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["c"]},
                                                                          {"key": "other", "operator": "DoesNotExist"}]}}]}]}),
    ));
    assert!(w.can("y/b", "x/a", Tcp, 80), "x/a is not selected");
    assert!(!w.can("y/b", "x/b", Tcp, 80));
    assert!(w.can("z/c", "x/b", Tcp, 80));
}

#[test]
fn ip_block_except_trims_only_its_own_peer() {
    let w = model_world();
    let b = w.ip("y/b");
    let w = w.with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.1.0/24", "except": [format!("{b}/32")]}},
            {"podSelector": {}, "namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    ));
    // y/b is cut from the block, but the second peer still admits it.
    assert!(w.can("y/b", "x/a", Tcp, 80));
    let w2 = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.1.0/24", "except": [format!("{b}/32")]}}]}]}),
    ));
    assert!(!w2.can("y/b", "x/a", Tcp, 80));
    assert!(w2.can("y/a", "x/a", Tcp, 80));
    assert!(w2.can("z/c", "x/a", Tcp, 80), "z/c is on node-2's subnet");
    assert!(!w2.can("z/a", "x/a", Tcp, 80), "z/a is not in the block");
}

#[test]
fn a_named_port_resolves_against_the_selected_pod_for_ingress() {
    let mut w = model_world();
    // x/b calls 8080 "serve-80-tcp".
    w.pods.retain(|p| {
        p.metadata.name.as_deref() != Some("b") || p.metadata.namespace.as_deref() != Some("x")
    });
    let mut b = pod("x", "b", "10.244.0.11", "node-1", json!({"pod": "b"}));
    b.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 8080;
    w.pods.push(b);
    let w = w.with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    ));
    assert!(w.can("y/a", "x/a", Tcp, 80));
    assert!(!w.can("y/a", "x/a", Tcp, 8080));
    assert!(w.can("y/a", "x/b", Tcp, 8080));
    assert!(!w.can("y/a", "x/b", Tcp, 80));
    assert!(!w.can("y/a", "x/a", Udp, 80), "serve-80-tcp is TCP");
    assert!(!w.can("y/a", "x/a", Tcp, 81));
}

#[test]
fn a_named_port_resolves_against_each_peer_pod_for_egress() {
    let mut w = model_world();
    w.pods.retain(|p| {
        p.metadata.name.as_deref() != Some("c") || p.metadata.namespace.as_deref() != Some("y")
    });
    let mut c = pod("y", "c", "10.244.1.15", "node-2", json!({"pod": "c"}));
    c.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[2]
        .container_port = 9081;
    w.pods.push(c);
    let w = w.with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                           "ports": [{"port": "serve-81-tcp", "protocol": "TCP"}]}]}),
    ));
    assert!(w.can("x/a", "y/a", Tcp, 81));
    assert!(!w.can("x/a", "y/c", Tcp, 81), "y/c's serve-81-tcp is 9081");
    assert!(w.can("x/a", "y/c", Tcp, 9081));
    assert!(!w.can("x/a", "y/a", Tcp, 9081));
    assert!(!w.can("x/a", "z/c", Tcp, 81), "z is not a peer");
}

#[test]
fn end_port_allows_the_whole_range() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}]}),
    ));
    assert!(w.can("y/a", "x/a", Udp, 80));
    assert!(w.can("y/a", "x/a", Udp, 81));
    assert!(!w.can("y/a", "x/a", Udp, 82));
    assert!(!w.can("y/a", "x/a", Tcp, 80));
}

#[test]
fn sctp_is_never_matched_as_tcp() {
    let tcp = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 82, "protocol": "TCP"}]}]}),
    ));
    assert!(tcp.can("y/a", "x/a", Tcp, 82));
    assert!(!tcp.can("y/a", "x/a", Sctp, 82));
    let sctp = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-82-sctp", "protocol": "SCTP"}]}]}),
    ));
    assert!(sctp.can("y/a", "x/a", Sctp, 82));
    assert!(!sctp.can("y/a", "x/a", Tcp, 82));
}

#[test]
fn a_port_without_protocol_is_tcp() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    ));
    assert!(w.can("y/a", "x/a", Tcp, 80));
    assert!(!w.can("y/a", "x/a", Udp, 80));
}

#[test]
fn a_protocol_without_port_allows_every_port_of_it() {
    let w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}),
    ));
    assert!(w.can("y/a", "x/a", Udp, 1));
    assert!(w.can("y/a", "x/a", Udp, 65535));
    assert!(!w.can("y/a", "x/a", Tcp, 80));
}

#[test]
fn a_connection_needs_the_sources_egress_and_the_destinations_ingress() {
    let w = model_world()
        .with(policy(
            "x",
            "egress-to-y",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ))
        .with(policy(
            "y",
            "ingress-from-z",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        ));
    assert!(!w.can("x/a", "y/a", Tcp, 80), "x may send, y refuses");
    assert!(w.can("z/a", "y/a", Tcp, 80));
    assert!(
        !w.can("x/a", "z/a", Tcp, 80),
        "y accepts only z, x sends only to y"
    );
}

#[test]
fn same_node_traffic_is_checked_for_egress_and_ingress() {
    // x/a and x/b share node-1: one forward pass checks both directions.
    let w = model_world()
        .with(policy(
            "x",
            "a-out",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{}]}),
        ))
        .with(policy(
            "x",
            "b-in",
            json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
        ));
    assert!(
        !w.can("x/a", "x/b", Tcp, 80),
        "b's ingress still runs after a's egress accepted"
    );
    assert!(w.can("x/c", "x/b", Tcp, 80));
}

#[test]
fn host_network_pods_are_never_selected() {
    let mut w = model_world();
    let mut h = pod("x", "h", "192.168.1.10", "node-1", json!({"pod": "h"}));
    h.spec.as_mut().unwrap().host_network = Some(true);
    w.pods.push(h);
    let w = w.with(policy("x", "deny", json!({"podSelector": {}})));
    let m = w.model();
    let hi = m.find_pod("x", "h").unwrap();
    assert!(m.isolating(hi, weft_policy::Direction::Ingress).is_empty());
    assert!(!m
        .isolating(
            m.find_pod("x", "a").unwrap(),
            weft_policy::Direction::Ingress
        )
        .is_empty());
}

#[test]
fn finished_pods_match_no_peer() {
    let mut w = model_world();
    let mut done = pod("y", "done", "10.244.1.50", "node-2", json!({"pod": "b"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    w.pods.push(done);
    let w = w.with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(!w.traced("10.244.1.50".parse().unwrap(), w.ip("x/a"), Tcp, 80));
    assert!(w.can("y/b", "x/a", Tcp, 80));
}

#[test]
fn denied_packets_are_logged_to_nflog_with_the_isolating_policy() {
    let w = model_world().with(policy("x", "deny-all", json!({"podSelector": {}})));
    let c = weft_policy::compile(
        &w.model(),
        &weft_policy::NodeCtx {
            node_name: "node-1".into(),
        },
    )
    .unwrap();
    let t = weft_nft::trace::trace(
        &c.ruleset,
        &weft_nft::trace::Packet::new(w.ip("y/a"), w.ip("x/a"), weft_nft::trace::Proto::Tcp, 80),
    )
    .unwrap();
    let o = &t.outcomes[0];
    assert_eq!(o.verdict, weft_nft::trace::Verdict::Drop);
    assert_eq!(
        o.logged,
        vec!["weft-policy:deny-ingress:x/deny-all:".to_string()]
    );
    let rule = c
        .ruleset
        .chains
        .values()
        .flat_map(|ch| &ch.rules)
        .find(|r| r.expr.contains("log prefix"))
        .unwrap();
    assert!(rule.expr.contains("group 100"), "{}", rule.expr);
    // An allowed packet is not logged.
    let ok = weft_nft::trace::trace(
        &c.ruleset,
        &weft_nft::trace::Packet::new(w.ip("y/a"), w.ip("y/b"), weft_nft::trace::Proto::Tcp, 80),
    )
    .unwrap();
    assert!(ok.outcomes[0].logged.is_empty());
}

#[test]
fn replies_of_allowed_connections_pass_every_base_chain() {
    let w = model_world().with(policy("x", "deny", json!({"podSelector": {}})));
    let c = weft_policy::compile(
        &w.model(),
        &weft_policy::NodeCtx {
            node_name: "node-1".into(),
        },
    )
    .unwrap();
    for ch in c.ruleset.chains.values().filter(|c| c.base.is_some()) {
        assert_eq!(
            ch.rules[0].expr, "ct state established,related accept",
            "chain {}",
            ch.name
        );
    }
}

#[test]
fn invalid_parts_of_a_policy_are_reported_and_match_nothing() {
    let w = model_world().with(policy(
        "x",
        "bad",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}],
                                                "ports": [{"port": 80, "protocol": "ICMP"}]}]}),
    ));
    let m = w.model();
    let problems = &m.policies[0].problems;
    assert!(
        problems.iter().any(|p| p.contains("not-a-cidr")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("ICMP")), "{problems:?}");
    assert!(
        !w.can("y/a", "x/a", Tcp, 80),
        "still isolates, admits nothing"
    );
}

#[test]
fn other_namespaces_pods_and_labels_are_found_after_a_label_change() {
    let mut w = model_world().with(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}),
    ));
    assert!(!w.can("y/a", "x/a", Tcp, 80));
    w.namespaces[1] = namespace("y", json!({"ns": "y", "team": "blue"}));
    assert!(w.can("y/a", "x/a", Tcp, 80));
}

#[test]
fn names_the_api_server_would_refuse_still_compile_to_a_valid_table() {
    // Found by the fuzz target: nft names and strings hold only so much.
    let w = model_world().with(policy(
        "x",
        "p (copy); #2 \"é\"",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    assert!(w.can("x/b", "x/a", Tcp, 80));
    assert!(!w.can("y/b", "x/a", Tcp, 80));
}

#[test]
fn an_address_two_pods_claim_is_judged_as_the_model_judges_it() {
    // Address reuse in flight: the ruleset follows the model's owner.
    let mut w = model_world();
    let ip = w.ip("x/a").to_string();
    w.pods
        .push(pod("w", "twin", &ip, "node-1", json!({"pod": "twin"})));
    let w = w.with(policy("x", "deny", json!({"podSelector": {}})));
    let src = w.ip("x/b");
    let dst = w.ip("x/a");
    let model = weft_policy::allowed(&w.model(), src, dst, Tcp, 80);
    assert_eq!(w.traced(src, dst, Tcp, 80), model);
}
