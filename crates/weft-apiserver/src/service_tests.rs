//! In-process tests of Service defaulting, validation and port allocation
//! (traffic policies, session affinity, healthCheckNodePort) through
//! `ApiServer::handle`, as `tests.rs` does for the other kinds.

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::tests_support::config;
use crate::ApiServer;

const SVCS: &str = "/api/v1/namespaces/default/services";

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-api-svc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn send(
    api: &ApiServer,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(b)
        .unwrap();
    let resp = api.handle(req).await;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create(api: &ApiServer, svc: Value) -> (u16, Value) {
    send(api, "POST", SVCS, "application/json", Some(svc)).await
}

async fn put(api: &ApiServer, svc: Value) -> (u16, Value) {
    let name = svc["metadata"]["name"].as_str().unwrap().to_string();
    send(
        api,
        "PUT",
        &format!("{SVCS}/{name}"),
        "application/json",
        Some(svc),
    )
    .await
}

async fn merge_patch(api: &ApiServer, name: &str, patch: Value) -> (u16, Value) {
    send(
        api,
        "PATCH",
        &format!("{SVCS}/{name}"),
        "application/merge-patch+json",
        Some(patch),
    )
    .await
}

async fn delete(api: &ApiServer, name: &str) -> u16 {
    send(
        api,
        "DELETE",
        &format!("{SVCS}/{name}"),
        "application/json",
        None,
    )
    .await
    .0
}

/// A Service of `type` with one TCP port 80.
fn svc(name: &str, stype: &str) -> Value {
    json!({"metadata": {"name": name},
           "spec": {"type": stype, "selector": {"app": "a"}, "ports": [{"port": 80}]}})
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local`.
fn lb_local(name: &str) -> Value {
    let mut s = svc(name, "LoadBalancer");
    s["spec"]["externalTrafficPolicy"] = json!("Local");
    s
}

fn hc_port(s: &Value) -> Option<u64> {
    s["spec"]["healthCheckNodePort"].as_u64()
}

/// (field, message) of every cause of a 422, asserting it is one.
fn causes(code: u16, status: &Value) -> Vec<(String, String)> {
    assert_eq!(code, 422, "{status}");
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn names_field(code: u16, status: &Value, field: &str, says: &str) {
    let cs = causes(code, status);
    assert!(
        cs.iter().any(|(f, m)| f == field && m.contains(says)),
        "expected a cause on {field} saying {says:?}, got {cs:?}"
    );
}

#[tokio::test]
async fn load_balancer_with_local_policy_gets_a_health_check_node_port() {
    let d = dir("hc-alloc");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, s) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{s}");
    let hc = hc_port(&s).expect("healthCheckNodePort allocated");
    assert!(
        (30000..=32767).contains(&hc),
        "{hc} outside the node port range"
    );
    assert_ne!(Some(hc), s["spec"]["ports"][0]["nodePort"].as_u64());
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_health_check_node_port_used_as_another_services_node_port_is_rejected() {
    let d = dir("hc-taken-np");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut np = svc("np", "NodePort");
    np["spec"]["ports"][0]["nodePort"] = json!(30100);
    let (c, s) = create(&api, np).await;
    assert_eq!(c, 201, "{s}");
    let mut lb = lb_local("lb");
    lb["spec"]["healthCheckNodePort"] = json!(30100);
    let (c, s) = create(&api, lb).await;
    names_field(c, &s, "spec.healthCheckNodePort", "already allocated");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_health_check_node_port_used_by_another_health_check_is_rejected() {
    let d = dir("hc-taken-hc");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    let mut b = lb_local("b");
    b["spec"]["healthCheckNodePort"] = json!(hc_port(&first).unwrap());
    let (c, s) = create(&api, b).await;
    names_field(c, &s, "spec.healthCheckNodePort", "already allocated");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_health_check_node_port_equal_to_the_services_own_node_port_is_rejected() {
    let d = dir("hc-own-np");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = lb_local("a");
    s["spec"]["ports"][0]["nodePort"] = json!(30200);
    s["spec"]["healthCheckNodePort"] = json!(30200);
    let (c, s) = create(&api, s).await;
    names_field(c, &s, "spec.healthCheckNodePort", "already allocated");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_health_check_node_port_outside_the_range_is_rejected() {
    let d = dir("hc-range");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = lb_local("a");
    s["spec"]["healthCheckNodePort"] = json!(8080);
    let (c, s) = create(&api, s).await;
    names_field(c, &s, "spec.healthCheckNodePort", "30000-32767");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_health_check_node_port_on_a_service_that_does_not_need_one_is_rejected() {
    let d = dir("hc-not-needed");
    let api = ApiServer::open(config(&d)).unwrap();
    let says =
        "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
    let mut cluster_lb = svc("a", "LoadBalancer");
    cluster_lb["spec"]["healthCheckNodePort"] = json!(31000);
    let (c, s) = create(&api, cluster_lb).await;
    names_field(c, &s, "spec.healthCheckNodePort", says);
    let mut local_np = svc("b", "NodePort");
    local_np["spec"]["externalTrafficPolicy"] = json!("Local");
    local_np["spec"]["healthCheckNodePort"] = json!(31000);
    let (c, s) = create(&api, local_np).await;
    names_field(c, &s, "spec.healthCheckNodePort", says);
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn an_update_that_omits_the_health_check_node_port_keeps_it() {
    let d = dir("hc-keep");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    assert!(hc_port(&first).is_some(), "{first}");
    // A PUT of the original manifest (no ports allocated, no health check port).
    let mut again = lb_local("a");
    again["metadata"]["labels"] = json!({"x": "y"});
    let (c, s) = put(&api, again).await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(hc_port(&s), hc_port(&first));
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn changing_the_health_check_node_port_is_rejected() {
    let d = dir("hc-change");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    let (c, s) = merge_patch(&api, "a", json!({"spec": {"healthCheckNodePort": 32000}})).await;
    names_field(c, &s, "spec.healthCheckNodePort", "cannot change");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn switching_to_cluster_policy_clears_and_frees_the_health_check_node_port() {
    let d = dir("hc-switch");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    let hc = hc_port(&first).unwrap();
    // A merge patch keeps the old healthCheckNodePort in the body.
    let (c, s) = merge_patch(
        &api,
        "a",
        json!({"spec": {"externalTrafficPolicy": "Cluster"}}),
    )
    .await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(hc_port(&s), None, "{s}");
    let mut b = lb_local("b");
    b["spec"]["healthCheckNodePort"] = json!(hc);
    let (c, s) = create(&api, b).await;
    assert_eq!(c, 201, "freed port not reusable: {s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn switching_to_node_port_type_clears_the_health_check_node_port() {
    let d = dir("hc-type");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    assert!(hc_port(&first).is_some(), "{first}");
    let (c, s) = merge_patch(&api, "a", json!({"spec": {"type": "NodePort"}})).await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(hc_port(&s), None, "{s}");
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Local");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn deleting_a_service_frees_its_health_check_node_port() {
    let d = dir("hc-delete");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    assert_eq!(delete(&api, "a").await, 200);
    let mut b = lb_local("b");
    b["spec"]["healthCheckNodePort"] = json!(hc_port(&first).unwrap());
    let (c, s) = create(&api, b).await;
    assert_eq!(c, 201, "freed port not reusable: {s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn health_check_node_ports_stay_reserved_after_a_restart() {
    let d = dir("hc-restart");
    let hc = {
        let api = ApiServer::open(config(&d)).unwrap();
        let (c, first) = create(&api, lb_local("a")).await;
        assert_eq!(c, 201, "{first}");
        hc_port(&first).unwrap()
    };
    let api = ApiServer::open(config(&d)).unwrap();
    let mut b = lb_local("b");
    b["spec"]["healthCheckNodePort"] = json!(hc);
    let (c, s) = create(&api, b).await;
    names_field(c, &s, "spec.healthCheckNodePort", "already allocated");
    // Nor is it handed out again, to a node port or a health check port.
    let (c, s) = create(&api, lb_local("c")).await;
    assert_eq!(c, 201, "{s}");
    assert_ne!(hc_port(&s), Some(hc));
    assert_ne!(s["spec"]["ports"][0]["nodePort"].as_u64(), Some(hc));
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_node_port_added_later_avoids_the_kept_health_check_node_port() {
    let d = dir("hc-add-port");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, lb_local("a")).await;
    assert_eq!(c, 201, "{first}");
    let hc = hc_port(&first).unwrap();
    let mut more = first.clone();
    more["spec"]["ports"] = json!([
        first["spec"]["ports"][0].clone(),
        {"name": "b", "port": 81}
    ]);
    more["spec"]["ports"][0]["name"] = json!("a");
    let (c, s) = put(&api, more).await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(hc_port(&s), Some(hc));
    assert_ne!(s["spec"]["ports"][1]["nodePort"].as_u64(), Some(hc), "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn external_traffic_policy_on_a_cluster_ip_service_is_rejected() {
    let d = dir("etp-clusterip");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["externalTrafficPolicy"] = json!("Local");
    let (c, s) = create(&api, s).await;
    names_field(
        c,
        &s,
        "spec.externalTrafficPolicy",
        "may only be set for externally-accessible services",
    );
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn external_traffic_policy_is_allowed_and_defaulted_on_a_cluster_ip_with_external_ips() {
    let d = dir("etp-extips");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["externalIPs"] = json!(["203.0.113.7"]);
    let (c, s) = create(&api, s).await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn an_unknown_external_traffic_policy_is_rejected() {
    let d = dir("etp-unknown");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "NodePort");
    s["spec"]["externalTrafficPolicy"] = json!("Nearby");
    let (c, s) = create(&api, s).await;
    names_field(c, &s, "spec.externalTrafficPolicy", "supported values");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn traffic_policies_default_to_cluster() {
    let d = dir("tp-default");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, np) = create(&api, svc("np", "NodePort")).await;
    assert_eq!(c, 201, "{np}");
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(np["spec"]["internalTrafficPolicy"], "Cluster");
    let (c, cip) = create(&api, svc("cip", "ClusterIP")).await;
    assert_eq!(c, 201, "{cip}");
    assert_eq!(cip["spec"]["internalTrafficPolicy"], "Cluster");
    assert!(cip["spec"].get("externalTrafficPolicy").is_none(), "{cip}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn switching_to_cluster_ip_drops_the_external_traffic_policy() {
    let d = dir("etp-switch");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, first) = create(&api, svc("a", "NodePort")).await;
    assert_eq!(c, 201, "{first}");
    let mut cip = first.clone();
    cip["spec"]["type"] = json!("ClusterIP");
    let (c, s) = put(&api, cip).await;
    assert_eq!(c, 200, "{s}");
    assert!(s["spec"].get("externalTrafficPolicy").is_none(), "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn an_unknown_internal_traffic_policy_is_rejected() {
    let d = dir("itp-unknown");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["internalTrafficPolicy"] = json!("Nearby");
    let (c, s) = create(&api, s).await;
    names_field(c, &s, "spec.internalTrafficPolicy", "supported values");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn an_unknown_session_affinity_is_rejected() {
    let d = dir("sa-unknown");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["sessionAffinity"] = json!("Cookie");
    let (c, s) = create(&api, s).await;
    names_field(c, &s, "spec.sessionAffinity", "supported values");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn client_ip_affinity_timeout_defaults_to_three_hours() {
    let d = dir("sa-default");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["sessionAffinity"] = json!("ClientIP");
    let (c, s) = create(&api, s).await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(
        s["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn client_ip_affinity_timeout_outside_one_second_to_one_day_is_rejected() {
    let d = dir("sa-range");
    let api = ApiServer::open(config(&d)).unwrap();
    for (i, t) in [0, 86401].into_iter().enumerate() {
        let mut s = svc(&format!("a{i}"), "ClusterIP");
        s["spec"]["sessionAffinity"] = json!("ClientIP");
        s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": t}});
        let (c, s) = create(&api, s).await;
        names_field(
            c,
            &s,
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "must be greater than 0",
        );
    }
    let mut s = svc("ok", "ClusterIP");
    s["spec"]["sessionAffinity"] = json!("ClientIP");
    s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 86400}});
    let (c, s) = create(&api, s).await;
    assert_eq!(c, 201, "one day is allowed: {s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn affinity_config_is_dropped_when_affinity_is_none() {
    let d = dir("sa-none");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut s = svc("a", "ClusterIP");
    s["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 60}});
    let (c, s) = create(&api, s).await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(s["spec"]["sessionAffinity"], "None");
    assert!(s["spec"].get("sessionAffinityConfig").is_none(), "{s}");
    let _ = std::fs::remove_dir_all(d);
}
