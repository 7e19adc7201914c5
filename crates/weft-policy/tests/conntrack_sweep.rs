//! Which tracked UDP flows the agent deletes after a policy change
//! (weft-policy's `conntrack::Sweep`): the flows the new model denies whose
//! verdict is this node's, and nothing else.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use common::{model_world, policy};
use serde_json::json;
use weft_policy::conntrack::{Sweep, UdpFlow};

fn flow(src: &str, dst: &str) -> UdpFlow {
    UdpFlow {
        src: src.parse::<SocketAddr>().unwrap(),
        dst: dst.parse::<SocketAddr>().unwrap(),
    }
}

// model_world: x/a 10.244.0.10, x/b .11 (node-1); y/a 10.244.1.13 (node-2);
// z/c 10.244.1.18 (node-2).

#[test]
fn a_flow_into_a_pod_newly_isolated_for_ingress_is_swept_on_its_node() {
    let w = model_world().with(policy("x", "deny", json!({"podSelector": {}})));
    let model = w.model();
    let none = HashSet::new();
    let mut sweep = Sweep::new(&model, "node-1", &none);
    // y/a → x/b: x/b is on node-1, isolated, nothing allows it.
    assert!(sweep.denies(&flow("10.244.1.13:40000", "10.244.0.11:80")));
    // node-2 holds y/a, the source: its entry goes too (the verdict is the
    // whole connection's; the next packet is checked as new on both nodes).
    let mut on_2 = Sweep::new(&model, "node-2", &none);
    assert!(on_2.denies(&flow("10.244.1.13:40000", "10.244.0.11:80")));
}

#[test]
fn flows_the_model_allows_stay() {
    let w = model_world().with(policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
               "ports": [{"protocol": "UDP", "port": 80}]}]}),
    ));
    let model = w.model();
    let none = HashSet::new();
    let mut sweep = Sweep::new(&model, "node-1", &none);
    assert!(!sweep.denies(&flow("10.244.1.13:40000", "10.244.0.11:80")));
    // Same pods, another port: denied.
    assert!(sweep.denies(&flow("10.244.1.13:40000", "10.244.0.11:81")));
    // Without any policy nothing is swept.
    let open = model_world().model();
    let mut sweep = Sweep::new(&open, "node-1", &none);
    assert!(!sweep.denies(&flow("10.244.1.13:40000", "10.244.0.11:81")));
}

#[test]
fn flows_between_pods_of_other_nodes_are_left_to_those_nodes() {
    let w = model_world().with(policy("y", "deny", json!({"podSelector": {}})));
    let model = w.model();
    let none = HashSet::new();
    // z/c (node-2) → y/a (node-2): denied, but not node-1's verdict.
    let mut sweep = Sweep::new(&model, "node-1", &none);
    assert!(!sweep.denies(&flow("10.244.1.18:40000", "10.244.1.13:80")));
    let mut on_2 = Sweep::new(&model, "node-2", &none);
    assert!(on_2.denies(&flow("10.244.1.18:40000", "10.244.1.13:80")));
}

#[test]
fn the_nodes_own_flows_to_its_pods_are_never_swept() {
    let w = model_world().with(policy("x", "deny", json!({"podSelector": {}})));
    let model = w.model();
    let node_addrs: HashSet<IpAddr> = ["192.168.1.10".parse().unwrap()].into();
    let mut sweep = Sweep::new(&model, "node-1", &node_addrs);
    assert!(!sweep.denies(&flow("192.168.1.10:40000", "10.244.0.11:80")));
    // An outside address is no node's: the isolation applies.
    assert!(sweep.denies(&flow("203.0.113.7:40000", "10.244.0.11:80")));
}

#[test]
fn egress_isolation_sweeps_flows_leaving_a_local_pod() {
    let w = model_world().with(policy(
        "x",
        "no-egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
    ));
    let model = w.model();
    let none = HashSet::new();
    let mut sweep = Sweep::new(&model, "node-1", &none);
    // x/a → z/c (after DNAT: the reply's source is the pod).
    assert!(sweep.denies(&flow("10.244.0.10:40000", "10.244.1.18:80")));
    // x/b is not selected.
    assert!(!sweep.denies(&flow("10.244.0.11:40000", "10.244.1.18:80")));
}
