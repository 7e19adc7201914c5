//! NodePorts, external IPs, load-balancer IPs and source ranges, dual-stack
//! Services, and Services without endpoints on every address.

use serde_json::json;
use weft_nft::trace::{Packet, Proto, Verdict};

use super::*;

const EXTERNAL_IP: &str = "192.168.1.100";
const LB_IP: &str = "203.0.113.10";

fn lb_spec(extra: Value) -> Value {
    let mut spec = json!({
        "type": "LoadBalancer",
        "externalIPs": [EXTERNAL_IP],
        "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP",
                   "targetPort": "http"}],
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut spec, extra) {
        a.extend(b);
    }
    spec
}

fn lb_service(extra: Value) -> Arc<Service> {
    let mut svc = (*web(lb_spec(extra))).clone();
    svc.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": LB_IP}]}})).unwrap(),
    );
    Arc::new(svc)
}

fn lb(extra: Value) -> Compiled {
    build(
        vec![lb_service(extra)],
        vec![slice_of(
            "web",
            "web-1",
            http_port(),
            vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")],
        )],
    )
}

#[test]
fn load_balancer_with_node_port_and_external_ip_golden() {
    golden("load_balancer", &lb(json!({})));
}

#[test]
fn node_port_on_the_node_address_is_dnatted_and_masqueraded() {
    let t = tr(&lb(json!({})), tcp(CLIENT, NODE_IP, 30080).to_local());
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
    assert!(t.always_masquerades());
}

#[test]
fn node_port_on_loopback_is_not_a_service() {
    let t = tr(
        &lb(json!({})),
        tcp("127.0.0.1", "127.0.0.1", 30080).to_local().from_node(),
    );
    assert!(targets(&t).is_empty());
    assert_eq!(verdicts(&t), [Verdict::Accept]);
}

#[test]
fn node_port_on_a_non_local_address_is_not_a_service() {
    let t = tr(&lb(json!({})), tcp(CLIENT, "192.168.1.11", 30080));
    assert!(targets(&t).is_empty());
}

#[test]
fn external_ip_and_load_balancer_ip_are_dnatted_and_masqueraded() {
    let c = lb(json!({}));
    for dst in [EXTERNAL_IP, LB_IP] {
        let t = tr(&c, tcp(CLIENT, dst, 80));
        assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"], "{dst}");
        assert!(t.always_masquerades(), "{dst}");
    }
}

#[test]
fn load_balancer_ip_in_proxy_mode_is_left_to_the_load_balancer() {
    let mut svc = (*lb_service(json!({}))).clone();
    svc.status = Some(
        serde_json::from_value(
            json!({"loadBalancer": {"ingress": [{"ip": LB_IP, "ipMode": "Proxy"}]}}),
        )
        .unwrap(),
    );
    let c = build(
        vec![Arc::new(svc)],
        vec![slice_of(
            "web",
            "web-1",
            http_port(),
            vec![ready(EP_LOCAL, "node-1")],
        )],
    );
    assert!(targets(&tr(&c, tcp(CLIENT, LB_IP, 80))).is_empty());
}

fn restricted() -> Compiled {
    lb(json!({"loadBalancerSourceRanges": ["198.51.100.0/24", " 10.0.0.0/8 "]}))
}

#[test]
fn source_ranges_golden() {
    golden("source_ranges", &restricted());
}

#[test]
fn load_balancer_source_ranges_admit_listed_sources_and_drop_others() {
    let c = restricted();
    let t = tr(&c, tcp(CLIENT, LB_IP, 80));
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
    let t = tr(&c, tcp("203.0.113.99", LB_IP, 80));
    assert_eq!(verdicts(&t), [Verdict::Drop]);
    assert!(t.outcomes[0]
        .path
        .iter()
        .any(|p| p.starts_with("firewall-")));
    // NodePorts and external IPs are not subject to the ranges (as kube-proxy).
    assert!(!targets(&tr(&c, tcp("203.0.113.99", NODE_IP, 30080).to_local())).is_empty());
}

#[test]
fn node_inside_a_source_range_may_reach_its_own_load_balancer_ip() {
    let c = lb(json!({"loadBalancerSourceRanges": ["192.168.1.0/24"]}));
    let set = c
        .ruleset
        .sets
        .values()
        .find(|s| s.name.starts_with("source-ranges-"))
        .unwrap();
    assert!(set.elements.contains_key(LB_IP), "{set:?}");
}

#[test]
fn overlapping_source_ranges_are_merged_for_the_interval_set() {
    let c =
        lb(json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "10.1.0.0/16", "203.0.113.0/24"]}));
    let set = c
        .ruleset
        .sets
        .values()
        .find(|s| s.name.starts_with("source-ranges-"))
        .unwrap();
    let keys: Vec<&String> = set.elements.keys().collect();
    assert_eq!(keys, ["10.0.0.0/8", "203.0.113.0/24"]);
}

fn dual_stack() -> Compiled {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                 "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]},
    }));
    build(
        vec![svc],
        vec![
            slice_of(
                "web",
                "web-v4",
                http_port(),
                vec![ready(EP_LOCAL, "node-1")],
            ),
            slice_of(
                "web",
                "web-v6",
                http_port(),
                vec![ready("fd00:10:244::5", "node-1")],
            ),
        ],
    )
}

#[test]
fn dual_stack_service_golden() {
    golden("dual_stack", &dual_stack());
}

#[test]
fn dual_stack_service_serves_each_family_with_its_own_endpoints() {
    let c = dual_stack();
    assert_eq!(
        targets(&tr(&c, tcp(POD, "10.96.0.10", 80))),
        ["10.244.0.5:8080"]
    );
    let t = tr(&c, tcp("fd00:10:244::3", "fd00:96::10", 80));
    assert_eq!(targets(&t), ["[fd00:10:244::5]:8080"]);
    assert!(t.never_masquerades());
    let t = tr(&c, tcp("2001:db8::1", "fd00:1::10", 30080).to_local());
    assert_eq!(targets(&t), ["[fd00:10:244::5]:8080"]);
    assert!(t.always_masquerades());
    assert_eq!(c.counts.service_ports, 2);
    assert_eq!(c.counts.services, 1);
}

fn empty_lb() -> Compiled {
    build(vec![lb_service(json!({}))], vec![])
}

#[test]
fn service_without_endpoints_golden() {
    golden("no_endpoints", &empty_lb());
}

#[test]
fn service_without_endpoints_is_rejected_on_every_address() {
    let c = empty_lb();
    for p in [
        tcp(POD, "10.96.0.10", 80),
        tcp(CLIENT, NODE_IP, 30080).to_local(),
        tcp(CLIENT, EXTERNAL_IP, 80),
        tcp(CLIENT, LB_IP, 80),
        tcp(NODE_IP, "10.96.0.10", 80).from_node(),
    ] {
        let t = tr(&c, p.clone());
        assert_eq!(verdicts(&t), [reset()], "{p:?}");
        assert!(targets(&t).is_empty());
    }
    let t = tr(&c, Packet::new(ip(CLIENT), ip(LB_IP), Proto::Udp, 80));
    assert_eq!(
        verdicts(&t),
        [Verdict::Accept],
        "no UDP port: not a Service address"
    );
}

#[test]
fn source_ranges_of_one_family_drop_every_source_of_the_other() {
    let mut svc = (*lb_service(json!({
        "clusterIPs": ["10.96.0.10", "fd00:96::10"],
        "loadBalancerSourceRanges": ["198.51.100.0/24"],
    })))
    .clone();
    svc.status = Some(
        serde_json::from_value(
            json!({"loadBalancer": {"ingress": [{"ip": LB_IP}, {"ip": "2001:db8::10"}]}}),
        )
        .unwrap(),
    );
    let c = build(
        vec![Arc::new(svc)],
        vec![
            slice_of("web", "web-4", http_port(), vec![ready(EP_LOCAL, "node-1")]),
            slice_of(
                "web",
                "web-6",
                http_port(),
                vec![ready("fd00:10:244::5", "node-1")],
            ),
        ],
    );
    assert_eq!(
        targets(&tr(&c, tcp(CLIENT, LB_IP, 80))),
        ["10.244.0.5:8080"]
    );
    let t = tr(&c, tcp("2001:db8:99::1", "2001:db8::10", 80));
    assert_eq!(verdicts(&t), [Verdict::Drop]);
}
