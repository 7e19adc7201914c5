//! ClusterIP Services: protocols, several ports, named targetPorts,
//! selectorless Services, unserved ports.

use serde_json::json;
use weft_nft::trace::{Packet, Proto, Verdict};

use super::*;

/// `default/dns`: 53 on TCP and UDP, 9999 on SCTP, two endpoints.
fn dns() -> Compiled {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "dns"},
        "spec": {"selector": {"app": "dns"}, "clusterIP": "10.96.0.10",
                 "ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                           {"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "sig", "port": 9999, "protocol": "SCTP"}]},
    }));
    let ports = json!([{"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                       {"name": "dns", "port": 5353, "protocol": "UDP"},
                       {"name": "sig", "port": 9000, "protocol": "SCTP"}]);
    build(
        vec![svc],
        vec![slice_of(
            "dns",
            "dns-1",
            ports,
            vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")],
        )],
    )
}

#[test]
fn cluster_ip_ports_on_tcp_udp_and_sctp_golden() {
    golden("cluster_ip_protocols", &dns());
}

#[test]
fn same_port_on_tcp_and_udp_goes_to_each_protocols_endpoints() {
    let c = dns();
    for proto in [Proto::Tcp, Proto::Udp] {
        let t = tr(&c, Packet::new(ip(POD), ip("10.96.0.10"), proto, 53));
        assert_eq!(
            targets(&t),
            ["10.244.0.5:5353", "10.244.1.7:5353"],
            "{proto:?}"
        );
        assert!(t.outcomes.iter().all(|o| o
            .path
            .iter()
            .any(|c| c.contains(&format!("-default/dns/{}/", proto.as_str())))));
    }
    let t = tr(
        &c,
        Packet::new(ip(POD), ip("10.96.0.10"), Proto::Sctp, 9999),
    );
    assert_eq!(targets(&t), ["10.244.0.5:9000", "10.244.1.7:9000"]);
}

#[test]
fn pod_to_cluster_ip_is_not_masqueraded() {
    let t = tr(&dns(), tcp(POD, "10.96.0.10", 53));
    assert_eq!(verdicts(&t), [Verdict::Accept]);
    assert!(t.never_masquerades());
}

#[test]
fn off_cluster_source_to_cluster_ip_is_masqueraded() {
    let t = tr(&dns(), tcp(NODE_IP, "10.96.0.10", 53));
    assert_eq!(t.outcomes.len(), 2);
    assert!(t.always_masquerades());
}

#[test]
fn node_itself_to_cluster_ip_is_dnatted_and_masqueraded() {
    let t = tr(&dns(), tcp(NODE_IP, "10.96.0.10", 53).from_node());
    assert_eq!(targets(&t), ["10.244.0.5:5353", "10.244.1.7:5353"]);
    assert!(t.always_masquerades());
}

#[test]
fn cluster_ip_on_a_port_it_does_not_serve_is_rejected() {
    let c = dns();
    let t = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(verdicts(&t), [reset()]);
    let t = tr(&c, Packet::new(ip(POD), ip("10.96.0.10"), Proto::Udp, 54));
    assert_eq!(
        verdicts(&t),
        [Verdict::Reject("icmpx type port-unreachable".into())]
    );
    // The node's own packets are caught after nat-output.
    let t = tr(&c, tcp(NODE_IP, "10.96.0.10", 80).from_node());
    assert_eq!(verdicts(&t), [reset()]);
}

#[test]
fn named_target_port_resolves_per_endpoint_slice() {
    // Two versions of the pod name port `http` differently.
    let c = build(
        vec![web(json!({}))],
        vec![
            slice_of("web", "web-a", http_port(), vec![ready(EP_LOCAL, "node-1")]),
            slice_of(
                "web",
                "web-b",
                json!([{"name": "http", "port": 9090, "protocol": "TCP"}]),
                vec![ready(EP_REMOTE, "node-2")],
            ),
        ],
    );
    let t = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:9090"]);
    golden("named_target_port", &c);
}

#[test]
fn slice_port_of_another_name_or_protocol_is_not_used() {
    let c = build(
        vec![web(json!({}))],
        vec![slice_of(
            "web",
            "web-a",
            json!([{"name": "metrics", "port": 9100, "protocol": "TCP"},
                   {"name": "http", "port": 8080, "protocol": "UDP"}]),
            vec![ready(EP_LOCAL, "node-1")],
        )],
    );
    // No endpoint for http/TCP: the port has no endpoints at all.
    assert_eq!(verdicts(&tr(&c, tcp(POD, "10.96.0.10", 80))), [reset()]);
}

#[test]
fn service_without_selector_uses_hand_made_slices() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "ext-db"},
        "spec": {"clusterIP": "10.96.0.50",
                 "ports": [{"port": 5432, "protocol": "TCP"}]},
    }));
    let sl = slice(json!({
        "metadata": {"namespace": "default", "name": "ext-db-manual",
                     "labels": {"kubernetes.io/service-name": "ext-db"}},
        "addressType": "IPv4",
        "ports": [{"port": 5432, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["192.168.1.50"]}],
    }));
    let c = build(vec![svc], vec![sl]);
    let t = tr(&c, tcp(POD, "10.96.0.50", 5432));
    assert_eq!(targets(&t), ["192.168.1.50:5432"]);
    golden("selectorless", &c);
}

#[test]
fn slice_of_another_namespace_is_not_used() {
    let sl = slice(json!({
        "metadata": {"namespace": "other", "name": "web-x",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": http_port(),
        "endpoints": [ready(EP_LOCAL, "node-1")],
    }));
    let c = build(vec![web(json!({}))], vec![sl]);
    assert_eq!(verdicts(&tr(&c, tcp(POD, "10.96.0.10", 80))), [reset()]);
}
