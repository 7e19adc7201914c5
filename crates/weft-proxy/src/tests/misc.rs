//! Services the proxy ignores, names and comments, counts, errors.

use serde_json::json;

use super::*;
use crate::CompileError;

fn skeleton_only(c: &Compiled) -> bool {
    c.ruleset == build(vec![], vec![]).ruleset
}

fn eps() -> Vec<Arc<EndpointSlice>> {
    vec![slice_of(
        "web",
        "web-1",
        http_port(),
        vec![ready(EP_LOCAL, "node-1")],
    )]
}

#[test]
fn services_for_another_proxy_or_labelled_headless_get_no_rules() {
    for label in [
        "service.kubernetes.io/service-proxy-name",
        "service.kubernetes.io/headless",
    ] {
        let mut svc = (*web(json!({}))).clone();
        svc.metadata.labels = Some([(label.to_string(), String::new())].into());
        let c = build(vec![Arc::new(svc)], eps());
        assert!(skeleton_only(&c), "{label}");
        assert_eq!(c.counts.services, 0);
        let t = tr(&c, tcp(POD, "10.96.0.10", 80));
        assert!(targets(&t).is_empty(), "{label}");
    }
}

#[test]
fn external_name_and_headless_services_get_no_rules() {
    let external = web(
        json!({"type": "ExternalName", "externalName": "db.example.com",
                              "clusterIP": null, "clusterIPs": null}),
    );
    let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
    let headless_new = web(json!({"clusterIP": null, "clusterIPs": ["None"]}));
    for svc in [external, headless, headless_new] {
        let c = build(vec![svc], eps());
        assert!(skeleton_only(&c));
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    }
}

#[test]
fn chains_carry_hashed_names_and_comments_name_the_service() {
    let c = build(vec![web(json!({}))], eps());
    let svc = "service-SUSTUHLJ-default/web/tcp/http";
    assert!(
        c.ruleset.chains.contains_key(svc),
        "{:?}",
        c.ruleset.chains.keys()
    );
    let e = &c.ruleset.sets["service-ips"].elements["10.96.0.10 . tcp . 80"];
    assert_eq!(e.value.as_deref(), Some(format!("goto {svc}").as_str()));
    assert_eq!(e.comment.as_deref(), Some("default/web:http"));
    assert!(c.ruleset.chains.keys().any(
        |k| k.starts_with("endpoint-") && k.ends_with("-default/web/tcp/http__10.244.0.5/8080")
    ));
}

#[test]
fn long_names_stay_within_nfts_limits() {
    let long = "n".repeat(63);
    let svc = service(json!({
        "metadata": {"namespace": long, "name": long},
        "spec": {"clusterIP": "10.96.0.77", "sessionAffinity": "ClientIP",
                 "ports": [{"name": "p".repeat(15), "port": 80}]},
    }));
    let sl = slice(json!({
        "metadata": {"namespace": long, "name": "s",
                     "labels": {"kubernetes.io/service-name": long}},
        "addressType": "IPv6",
        "ports": [{"name": "p".repeat(15), "port": 80}],
        "endpoints": [{"addresses": ["fd00:1234:5678:9abc:def0:1234:5678:9abc"]}],
    }));
    // build() validates names (≤ 255) and comments (≤ 128).
    let c = build(vec![svc], vec![sl]);
    assert_eq!(c.counts.service_ports, 1);
}

#[test]
fn counts_services_service_ports_and_endpoints() {
    let two_ports = web(json!({"ports": [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"}]}));
    let sl = slice_of(
        "web",
        "web-1",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"},
               {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")],
    );
    let c = build(vec![two_ports], vec![sl]);
    assert_eq!(
        c.counts,
        crate::Counts {
            services: 1,
            service_ports: 2,
            endpoints: 4
        }
    );
}

#[test]
fn a_bad_port_is_reported_and_the_rest_of_the_service_programmed() {
    let svc = web(json!({"ports": [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "weird", "port": 81, "protocol": "ICMP"}]}));
    let c = build(vec![svc], eps());
    assert_eq!(c.counts.service_ports, 1);
    assert_eq!(c.skipped.len(), 1);
    assert_eq!(c.skipped[0].object, "Service default/web");
    assert_eq!(c.skipped[0].field, "spec.ports[1].protocol");
}

#[test]
fn compile_is_deterministic_whatever_the_input_order() {
    let a = web(json!({}));
    let b = service(json!({"metadata": {"namespace": "default", "name": "api"},
                           "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 443}]}}));
    let s1 = slice_of("web", "web-1", http_port(), vec![ready(EP_LOCAL, "node-1")]);
    let s2 = slice_of(
        "web",
        "web-2",
        http_port(),
        vec![ready(EP_REMOTE, "node-2")],
    );
    let x = build(vec![a.clone(), b.clone()], vec![s1.clone(), s2.clone()]);
    let y = build(vec![b, a], vec![s2, s1]);
    assert_eq!(x, y);
}

#[test]
fn empty_node_name_is_an_error_naming_the_field() {
    let mut n = node();
    n.node_name.clear();
    let err = compile(&Snapshot::default(), &n).unwrap_err();
    assert!(matches!(
        err,
        CompileError::Node {
            field: "node_name",
            ..
        }
    ));
}
