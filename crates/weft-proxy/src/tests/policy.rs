//! externalTrafficPolicy and internalTrafficPolicy Local, hairpin.

use serde_json::json;
use weft_nft::trace::Verdict;

use super::*;

fn local_np(endpoints: Vec<Value>) -> Compiled {
    let mut svc = (*web(json!({
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
        "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
    })))
    .clone();
    svc.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}))
            .unwrap(),
    );
    build(
        vec![Arc::new(svc)],
        vec![slice_of("web", "web-1", http_port(), endpoints)],
    )
}

fn both() -> Compiled {
    local_np(vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")])
}

#[test]
fn external_traffic_policy_local_golden() {
    golden("external_local", &both());
}

#[test]
fn external_local_sends_outside_clients_to_local_endpoints_keeping_their_address() {
    let c = both();
    for dst in [NODE_IP, "203.0.113.10"] {
        let port = if dst == NODE_IP { 30080 } else { 80 };
        let t = tr(&c, tcp(CLIENT, dst, port).to_local());
        assert_eq!(targets(&t), ["10.244.0.5:8080"], "{dst}");
        assert!(t.never_masquerades(), "{dst}");
    }
}

#[test]
fn external_local_still_lets_pods_and_the_node_use_any_endpoint() {
    let c = both();
    let t = tr(&c, tcp(POD, "203.0.113.10", 80));
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
    assert!(t.never_masquerades());
    let t = tr(&c, tcp(NODE_IP, NODE_IP, 30080).to_local().from_node());
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
    assert!(t.always_masquerades());
}

#[test]
fn external_local_without_a_local_endpoint_golden() {
    golden(
        "external_local_none_local",
        &local_np(vec![ready(EP_REMOTE, "node-2")]),
    );
}

#[test]
fn external_local_without_a_local_endpoint_drops_outside_clients() {
    let c = local_np(vec![ready(EP_REMOTE, "node-2")]);
    let t = tr(&c, tcp(CLIENT, NODE_IP, 30080).to_local());
    assert_eq!(verdicts(&t), [Verdict::Drop]);
    let t = tr(&c, tcp(CLIENT, "203.0.113.10", 80));
    assert_eq!(verdicts(&t), [Verdict::Drop]);
    // Pods and the node itself still reach the remote endpoint.
    let t = tr(&c, tcp(POD, "203.0.113.10", 80));
    assert_eq!(targets(&t), ["10.244.1.7:8080"]);
    assert_eq!(verdicts(&t), [Verdict::Accept]);
    let t = tr(&c, tcp(NODE_IP, "203.0.113.10", 80).from_node());
    assert_eq!(targets(&t), ["10.244.1.7:8080"]);
    assert_eq!(verdicts(&t), [Verdict::Accept]);
    assert!(t.always_masquerades());
}

#[test]
fn health_check_reports_the_node_port_and_local_ready_endpoints() {
    let hc = |c: &Compiled| c.health_checks.get("default/web").copied().unwrap();
    assert_eq!(hc(&both()).node_port, 32000);
    assert_eq!(hc(&both()).local_endpoints, 1);
    assert_eq!(
        hc(&local_np(vec![ready(EP_REMOTE, "node-2")])).local_endpoints,
        0
    );
    let cluster = build(vec![web(json!({}))], vec![]);
    assert!(cluster.health_checks.is_empty());
}

fn internal_local(endpoints: Vec<Value>) -> Compiled {
    build(
        vec![web(json!({"internalTrafficPolicy": "Local"}))],
        vec![slice_of("web", "web-1", http_port(), endpoints)],
    )
}

#[test]
fn internal_traffic_policy_local_golden() {
    golden(
        "internal_local",
        &internal_local(vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")]),
    );
}

#[test]
fn internal_local_uses_only_local_endpoints() {
    let c = internal_local(vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")]);
    assert_eq!(
        targets(&tr(&c, tcp(POD, "10.96.0.10", 80))),
        ["10.244.0.5:8080"]
    );
}

#[test]
fn internal_local_without_a_local_endpoint_drops() {
    let c = internal_local(vec![ready(EP_REMOTE, "node-2")]);
    assert_eq!(
        verdicts(&tr(&c, tcp(POD, "10.96.0.10", 80))),
        [Verdict::Drop]
    );
}

#[test]
fn pod_reaching_itself_through_its_service_is_masqueraded_only_then() {
    let c = both();
    let t = tr(&c, tcp(EP_LOCAL, "10.96.0.10", 80));
    assert_eq!(t.outcomes.len(), 2);
    for o in &t.outcomes {
        let to_self = o.dnat.unwrap().addr == ip(EP_LOCAL);
        assert_eq!(o.masquerade, to_self, "{o:?}");
    }
}
