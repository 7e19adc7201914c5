//! In-process tests through `ApiServer::handle` (no sockets).

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::tests_support::config;
use crate::ApiServer;

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-api-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn call(api: &ApiServer, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder().method(method).uri(uri).body(b).unwrap();
    let resp = api.handle(req).await;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Reads `n` watch lines.
async fn watch_lines(api: &ApiServer, uri: &str, n: usize) -> Vec<Value> {
    let req = Request::builder().uri(uri).body(Bytes::new()).unwrap();
    let mut body = api.handle(req).await.into_body();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .unwrap();
        let Some(f) = f else { break };
        buf.extend_from_slice(f.unwrap().data_ref().unwrap());
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"metadata": {"name": name, "labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

#[tokio::test]
async fn watch_from_rv_and_gone() {
    let d = dir("watch");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, created) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("a", None)),
    )
    .await;
    assert_eq!(c, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let req = Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/pods/a")
        .header("content-type", "application/merge-patch+json")
        .body(Bytes::from(
            json!({"metadata": {"labels": {"app": "b"}}}).to_string(),
        ))
        .unwrap();
    assert_eq!(api.handle(req).await.status(), 200);
    // From the create's rv: the label change is a MODIFIED, and for a
    // watcher selecting app=a it is a DELETED.
    let lines = watch_lines(
        &api,
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"),
        1,
    )
    .await;
    assert_eq!(lines[0]["type"], "MODIFIED");
    let lines = watch_lines(
        &api,
        &format!("/api/v1/pods?watch=1&resourceVersion={rv}&labelSelector=app%3Da"),
        1,
    )
    .await;
    assert_eq!(lines[0]["type"], "DELETED");
    // rv 0: current state as ADDED, then a bookmark.
    let lines = watch_lines(
        &api,
        "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0&allowWatchBookmarks=true",
        2,
    )
    .await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(lines[1]["object"]["kind"], "Pod");
    // Too old → 410 Expired.
    api.lock().floor = 1_000_000;
    let lines = watch_lines(&api, "/api/v1/pods?watch=1&resourceVersion=5", 1).await;
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn deletion_semantics_and_restart() {
    let d = dir("delete");
    let api = ApiServer::open(config(&d)).unwrap();
    // Unknown namespace.
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/nope/pods",
        Some(pod("a", None)),
    )
    .await;
    assert_eq!((c, s["reason"].as_str()), (404, Some("NotFound")));
    // Graceful pod deletion.
    let (c, _) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("g", Some("n1"))),
    )
    .await;
    assert_eq!(c, 201);
    let (c, o) = call(&api, "DELETE", "/api/v1/namespaces/default/pods/g", None).await;
    assert_eq!(c, 200);
    assert!(o["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 30);
    let (c, _) = call(
        &api,
        "DELETE",
        "/api/v1/namespaces/default/pods/g?gracePeriodSeconds=0",
        None,
    )
    .await;
    assert_eq!(c, 200);
    assert_eq!(
        call(&api, "GET", "/api/v1/namespaces/default/pods/g", None)
            .await
            .0,
        404
    );
    // Finalizers.
    let mut cm = json!({"metadata": {"name": "f", "finalizers": ["x/y"]}, "data": {"a": "b"}});
    assert_eq!(
        call(
            &api,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(cm.clone())
        )
        .await
        .0,
        201
    );
    let (_, o) = call(
        &api,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/f",
        None,
    )
    .await;
    assert!(o["metadata"]["deletionTimestamp"].is_string());
    cm["metadata"]["finalizers"] = json!([]);
    assert_eq!(
        call(
            &api,
            "PUT",
            "/api/v1/namespaces/default/configmaps/f",
            Some(cm)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&api, "GET", "/api/v1/namespaces/default/configmaps/f", None)
            .await
            .0,
        404
    );
    // GC by ownerReferences + namespace deletion.
    assert_eq!(
        call(
            &api,
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "t"}}))
        )
        .await
        .0,
        201
    );
    let (_, owner) = call(
        &api,
        "POST",
        "/api/v1/namespaces/t/configmaps",
        Some(json!({"metadata": {"name": "owner"}})),
    )
    .await;
    let uid = owner["metadata"]["uid"].clone();
    let dep = json!({"metadata": {"name": "dep", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
    assert_eq!(
        call(&api, "POST", "/api/v1/namespaces/t/configmaps", Some(dep))
            .await
            .0,
        201
    );
    call(
        &api,
        "DELETE",
        "/api/v1/namespaces/t/configmaps/owner",
        None,
    )
    .await;
    assert_eq!(
        call(&api, "GET", "/api/v1/namespaces/t/configmaps/dep", None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &api,
            "POST",
            "/api/v1/namespaces/t/pods",
            Some(pod("p", None))
        )
        .await
        .0,
        201
    );
    let (c, o) = call(&api, "DELETE", "/api/v1/namespaces/t", None).await;
    assert_eq!(c, 200, "{o}");
    assert_eq!(call(&api, "GET", "/api/v1/namespaces/t", None).await.0, 404);
    assert_eq!(
        call(&api, "DELETE", "/api/v1/namespaces/default", None)
            .await
            .0,
        403
    );
    // Node podCIDRs.
    let (_, n1) = call(
        &api,
        "POST",
        "/api/v1/nodes",
        Some(json!({"metadata": {"name": "n1"}})),
    )
    .await;
    assert_eq!(n1["spec"]["podCIDR"], "10.244.0.0/24");
    let (_, n2) = call(
        &api,
        "POST",
        "/api/v1/nodes",
        Some(json!({"metadata": {"name": "n2"}})),
    )
    .await;
    assert_eq!(n2["spec"]["podCIDRs"], json!(["10.244.1.0/24"]));
    let (c, _) = call(
        &api,
        "POST",
        "/api/v1/nodes",
        Some(json!({"metadata": {"name": "n3"}, "spec": {"podCIDR": "10.244.1.0/24"}})),
    )
    .await;
    assert_eq!(c, 422);
    // Restart: same objects, rv continues.
    let rv = api.resource_version();
    drop(api);
    let api = ApiServer::open(config(&d)).unwrap();
    assert_eq!(api.resource_version(), rv);
    assert_eq!(
        call(&api, "GET", "/api/v1/nodes/n2", None).await.1["spec"]["podCIDR"],
        "10.244.1.0/24"
    );
    let (_, l) = call(&api, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 4);
    let _ = std::fs::remove_dir_all(d);
}

async fn call_raw(
    api: &ApiServer,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Bytes::from(body))
        .unwrap();
    let resp = api.handle(req).await;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn causes(status: &Value) -> Vec<(String, String)> {
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

#[tokio::test]
async fn pod_hostname_and_subdomain_must_be_dns_labels() {
    let d = dir("hostname");
    let api = ApiServer::open(config(&d)).unwrap();
    let mut p = pod("h1", None);
    p["spec"]["hostname"] = json!("Web_1");
    p["spec"]["subdomain"] = json!("a.b");
    let (c, s) = call(&api, "POST", "/api/v1/namespaces/default/pods", Some(p)).await;
    assert_eq!(c, 422, "{s}");
    assert_eq!(s["reason"], "Invalid");
    let fields: Vec<String> = causes(&s).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["spec.hostname", "spec.subdomain"], "{s}");
    assert!(
        s["message"].as_str().unwrap().contains("RFC 1123 label"),
        "{s}"
    );
    let mut long = pod("h2", None);
    long["spec"]["hostname"] = json!("a".repeat(64));
    let (c, s) = call(&api, "POST", "/api/v1/namespaces/default/pods", Some(long)).await;
    assert_eq!(c, 422, "{s}");
    assert!(
        causes(&s)[0]
            .1
            .contains("must be no more than 63 characters"),
        "{s}"
    );
    let mut ok = pod("h3", None);
    ok["spec"]["hostname"] = json!("web-0");
    ok["spec"]["subdomain"] = json!("web");
    let (c, s) = call(&api, "POST", "/api/v1/namespaces/default/pods", Some(ok)).await;
    assert_eq!(c, 201, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn deployment_template_hostname_is_validated() {
    let d = dir("tplhost");
    let api = ApiServer::open(config(&d)).unwrap();
    let dep = json!({"metadata": {"name": "w"}, "spec": {"selector": {"matchLabels": {"app": "w"}},
        "template": {"metadata": {"labels": {"app": "w"}},
                     "spec": {"hostname": "-x", "containers": [{"name": "c", "image": "i"}]}}}});
    let (c, s) = call(
        &api,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(dep),
    )
    .await;
    assert_eq!(c, 422, "{s}");
    assert_eq!(causes(&s)[0].0, "spec.template.spec.hostname");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_250_character_single_label_name_is_a_valid_subdomain() {
    let d = dir("longlabel");
    let api = ApiServer::open(config(&d)).unwrap();
    let name = "a".repeat(250);
    let cm = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(c, 201, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn names_follow_each_kinds_upstream_rule_and_say_which() {
    let d = dir("namerules");
    let api = ApiServer::open(config(&d)).unwrap();
    // Service: DNS-1035 label (must start with a letter).
    let svc = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/services",
        Some(svc),
    )
    .await;
    assert_eq!(c, 422, "{s}");
    let (field, msg) = &causes(&s)[0];
    assert_eq!(field, "metadata.name");
    assert!(msg.contains("a DNS-1035 label must"), "{msg}");
    let svc = json!({"metadata": {"name": "s".repeat(64)}, "spec": {"ports": [{"port": 80}]}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/services",
        Some(svc),
    )
    .await;
    assert_eq!(c, 422, "{s}");
    assert!(
        causes(&s)[0].1.contains(
            "must be no more than 63 characters (a Service name must be a DNS-1035 label)"
        ),
        "{s}"
    );
    // Namespace: DNS-1123 label (no dots).
    let ns = json!({"metadata": {"name": "a.b"}});
    let (c, s) = call(&api, "POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(c, 422, "{s}");
    assert!(causes(&s)[0].1.contains("RFC 1123 label"), "{s}");
    // ConfigMap: DNS-1123 subdomain (dots fine, 254 characters not).
    let cm = json!({"metadata": {"name": "a.b"}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(c, 201, "{s}");
    let cm = json!({"metadata": {"name": "a".repeat(254)}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(c, 422, "{s}");
    assert!(
        causes(&s)[0].1.contains(
            "must be no more than 253 characters (a ConfigMap name must be a lowercase RFC 1123 subdomain)"
        ),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn a_253_character_name_persists_and_reloads_after_restart() {
    let d = dir("name253");
    let name = format!("{}.{}", "a".repeat(200), "b".repeat(52));
    assert_eq!(name.len(), 253);
    {
        let api = ApiServer::open(config(&d)).unwrap();
        let (c, s) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(pod(&name, None)),
        )
        .await;
        assert_eq!(c, 201, "{s}");
        // A second write of the same object (the temp file again).
        let mut updated = s.clone();
        updated["metadata"]["labels"]["x"] = json!("y");
        let (c, s) = call(
            &api,
            "PUT",
            &format!("/api/v1/namespaces/default/pods/{name}"),
            Some(updated),
        )
        .await;
        assert_eq!(c, 200, "{s}");
    }
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, s) = call(
        &api,
        "GET",
        &format!("/api/v1/namespaces/default/pods/{name}"),
        None,
    )
    .await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(s["metadata"]["labels"]["x"], "y");
    let (c, _) = call(
        &api,
        "DELETE",
        &format!("/api/v1/namespaces/default/pods/{name}"),
        None,
    )
    .await;
    assert_eq!(c, 200);
    drop(api);
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, _) = call(
        &api,
        "GET",
        &format!("/api/v1/namespaces/default/pods/{name}"),
        None,
    )
    .await;
    assert_eq!(c, 404, "deleted object came back after restart");
    let _ = std::fs::remove_dir_all(d);
}

fn node_obj(name: &str, cidr: Option<&str>) -> Value {
    let mut n = json!({"metadata": {"name": name}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c});
    }
    n
}

async fn node_cause(api: &ApiServer, method: &str, uri: &str, n: Value) -> (String, String) {
    let (c, s) = call(api, method, uri, Some(n)).await;
    assert_eq!(c, 422, "{s}");
    assert_eq!(s["reason"], "Invalid");
    causes(&s).remove(0)
}

#[tokio::test]
async fn node_pod_cidr_overlapping_another_nodes_is_rejected() {
    let d = dir("cidroverlap");
    let api = ApiServer::open(config(&d)).unwrap();
    let (c, _) = call(
        &api,
        "POST",
        "/api/v1/nodes",
        Some(node_obj("n1", Some("10.244.0.0/23"))),
    )
    .await;
    assert_eq!(c, 201);
    let (field, msg) = node_cause(
        &api,
        "POST",
        "/api/v1/nodes",
        node_obj("n2", Some("10.244.1.0/24")),
    )
    .await;
    assert_eq!(field, "spec.podCIDR");
    assert!(
        msg.contains("overlaps 10.244.0.0/23, the pod CIDR of node \"n1\""),
        "{msg}"
    );
    // Allocation skips the overlapped range too.
    let (c, s) = call(&api, "POST", "/api/v1/nodes", Some(node_obj("n3", None))).await;
    assert_eq!(c, 201);
    assert_eq!(s["spec"]["podCIDR"], "10.244.2.0/24");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn node_pod_cidr_outside_the_cluster_cidr_is_rejected() {
    let d = dir("cidrout");
    let api = ApiServer::open(config(&d)).unwrap();
    let (field, msg) = node_cause(
        &api,
        "POST",
        "/api/v1/nodes",
        node_obj("n1", Some("10.245.0.0/24")),
    )
    .await;
    assert_eq!(field, "spec.podCIDR");
    assert!(
        msg.contains("must lie inside the cluster CIDR 10.244.0.0/16"),
        "{msg}"
    );
    let n = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["192.168.0.0/24"]}});
    let (field, _) = node_cause(&api, "POST", "/api/v1/nodes", n).await;
    assert_eq!(field, "spec.podCIDRs[0]");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn node_pod_cidr_shorter_than_the_cluster_cidr_is_rejected() {
    let d = dir("cidrwide");
    let api = ApiServer::open(config(&d)).unwrap();
    for wide in ["0.0.0.0/0", "10.0.0.0/8"] {
        let (field, msg) =
            node_cause(&api, "POST", "/api/v1/nodes", node_obj("n1", Some(wide))).await;
        assert_eq!(field, "spec.podCIDR");
        assert!(
            msg.contains("is shorter than the cluster CIDR's /16"),
            "{msg}"
        );
    }
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn node_pod_cidr_update_is_checked_too() {
    let d = dir("cidrupdate");
    let api = ApiServer::open(config(&d)).unwrap();
    let (_, n1) = call(&api, "POST", "/api/v1/nodes", Some(node_obj("n1", None))).await;
    let (c, mut n2) = call(&api, "POST", "/api/v1/nodes", Some(node_obj("n2", None))).await;
    assert_eq!(c, 201);
    n2["spec"]["podCIDR"] = n1["spec"]["podCIDR"].clone();
    n2["spec"]["podCIDRs"] = n1["spec"]["podCIDRs"].clone();
    let (field, msg) = node_cause(&api, "PUT", "/api/v1/nodes/n2", n2.clone()).await;
    assert_eq!(field, "spec.podCIDR");
    assert!(msg.contains("overlaps"), "{msg}");
    n2["spec"]["podCIDR"] = json!("0.0.0.0/0");
    n2["spec"]["podCIDRs"] = json!(["0.0.0.0/0"]);
    node_cause(&api, "PUT", "/api/v1/nodes/n2", n2).await;
    let req = Request::builder()
        .method("PATCH")
        .uri("/api/v1/nodes/n2")
        .header("content-type", "application/merge-patch+json")
        .body(Bytes::from(
            json!({"spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]}})
                .to_string(),
        ))
        .unwrap();
    assert_eq!(api.handle(req).await.status(), 422);
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn request_body_over_3_mib_is_413() {
    let d = dir("bigbody");
    let api = ApiServer::open(config(&d)).unwrap();
    let body = vec![b' '; (3 << 20) + 1];
    let (c, s) = call_raw(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        body,
    )
    .await;
    assert_eq!(c, 413, "{s}");
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert_eq!(s["message"], "Request entity too large: limit is 3145728");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn object_over_1_5_mib_is_413_naming_the_limit() {
    let d = dir("bigobj");
    let api = ApiServer::open(config(&d)).unwrap();
    let cm = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(2 << 20)}});
    let (c, s) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(c, 413, "{s}");
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("limit is 1572864 bytes"),
        "{s}"
    );
    let (c, _) = call(
        &api,
        "GET",
        "/api/v1/namespaces/default/configmaps/big",
        None,
    )
    .await;
    assert_eq!(c, 404);
    // A patch cannot grow an object past the limit either.
    let cm = json!({"metadata": {"name": "small"}, "data": {"k": "x".repeat(1 << 20)}});
    let (c, _) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(c, 201);
    let patch = json!([{"op": "copy", "from": "/data/k", "path": "/data/k2"}]);
    let (c, s) = call_raw(
        &api,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/small",
        "application/json-patch+json",
        patch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(c, 413, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_get_429_with_retry_after() {
    let d = dir("inflight");
    let limits = crate::Limits {
        max_requests_in_flight: 2,
        ..crate::Limits::default()
    };
    let api = ApiServer::open_with_limits(config(&d), limits).unwrap();
    let uri: http::Uri = "/api/v1/pods".parse().unwrap();
    let held: Vec<_> = (0..2).map(|_| api.admit(&uri).unwrap()).collect();
    let req = Request::builder()
        .uri("/api/v1/pods")
        .body(Bytes::new())
        .unwrap();
    let resp = api.handle(req).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let s: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(s["reason"], "TooManyRequests");
    drop(held);
    let (c, _) = call(&api, "GET", "/api/v1/pods", None).await;
    assert_eq!(c, 200);
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn watches_have_their_own_cap() {
    let d = dir("watchcap");
    let limits = crate::Limits {
        max_requests_in_flight: 1,
        max_watches_in_flight: 1,
        ..crate::Limits::default()
    };
    let api = ApiServer::open_with_limits(config(&d), limits).unwrap();
    let req = Request::builder()
        .uri("/api/v1/pods?watch=1")
        .body(Bytes::new())
        .unwrap();
    let first = api.handle(req).await;
    assert_eq!(first.status().as_u16(), 200);
    let req = Request::builder()
        .uri("/api/v1/pods?watch=1")
        .body(Bytes::new())
        .unwrap();
    let second = api.handle(req).await;
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    // The open watch does not use a non-watch permit.
    let (c, _) = call(&api, "GET", "/api/v1/pods", None).await;
    assert_eq!(c, 200);
    // Closing the stream frees its permit (poll: the watch task ends async).
    drop(first);
    let mut freed = false;
    for _ in 0..500 {
        let req = Request::builder()
            .uri("/api/v1/pods?watch=1")
            .body(Bytes::new())
            .unwrap();
        if api.handle(req).await.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(freed, "the closed watch's permit was never returned");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn yaml_bodies_decode_as_before() {
    let d = dir("yaml");
    let api = ApiServer::open(config(&d)).unwrap();
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  port: \"80\"\n  on: \"yes\"\n";
    let (c, s) = call_raw(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(s["data"], json!({"port": "80", "on": "yes"}));
    let (c, s) = call_raw(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        b"metadata: [unclosed".to_vec(),
    )
    .await;
    assert_eq!(c, 400, "{s}");
    assert!(
        s["message"].as_str().unwrap().contains("not valid YAML"),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn validate_create_is_the_post_pipeline_without_a_server() {
    let ok = crate::validate_create(
        "pods",
        "application/json",
        pod("p", None).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(ok["spec"]["restartPolicy"], "Always");
    assert_eq!(ok["metadata"]["namespace"], "default");
    let e = crate::validate_create(
        "services",
        "application/json",
        br#"{"metadata":{"name":"1x"}}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    let e = crate::validate_create("pods", "application/json", b"{").unwrap_err();
    assert_eq!(e.code, 400);
}

fn capped(d: &std::path::Path, per_namespace: usize) -> std::sync::Arc<ApiServer> {
    let limits = crate::Limits {
        max_objects_per_namespace: per_namespace,
        ..crate::Limits::default()
    };
    ApiServer::open_with_limits(config(d), limits).unwrap()
}

#[tokio::test]
async fn create_beyond_the_object_cap_is_a_403_quota_status() {
    let d = dir("capcreate");
    let api = capped(&d, 1);
    let uri = "/api/v1/namespaces/default/pods";
    let (c, _) = call(&api, "POST", uri, Some(pod("a", None))).await;
    assert_eq!(c, 201);
    let (c, s) = call(&api, "POST", uri, Some(pod("b", None))).await;
    assert_eq!(c, 403, "{s}");
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], "Forbidden");
    assert_eq!(s["code"], 403);
    assert_eq!(s["details"], json!({"name": "b", "kind": "pods"}));
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.starts_with("pods \"b\" is forbidden: exceeded quota: ")
            && msg.contains("the embedded cluster holds at most 1 pods per namespace"),
        "{msg}"
    );
    let (c, _) = call(&api, "GET", "/api/v1/namespaces/default/pods/b", None).await;
    assert_eq!(c, 404);
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn dry_run_create_beyond_the_cap_is_refused_too() {
    let d = dir("capdry");
    let api = capped(&d, 1);
    let uri = "/api/v1/namespaces/default/pods";
    let (c, _) = call(&api, "POST", uri, Some(pod("a", None))).await;
    assert_eq!(c, 201);
    let (c, s) = call(
        &api,
        "POST",
        &format!("{uri}?dryRun=All"),
        Some(pod("b", None)),
    )
    .await;
    assert_eq!(c, 403, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn server_side_apply_create_respects_the_object_cap() {
    let d = dir("capapply");
    let api = capped(&d, 1);
    let (c, _) = call(
        &api,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("a", None)),
    )
    .await;
    assert_eq!(c, 201);
    let (c, s) = call_raw(
        &api,
        "PATCH",
        "/api/v1/namespaces/default/pods/b?fieldManager=t",
        "application/apply-patch+yaml",
        pod("b", None).to_string().into_bytes(),
    )
    .await;
    assert_eq!(c, 403, "{s}");
    // Applying to an existing object is an update and takes no room.
    let (c, s) = call_raw(
        &api,
        "PATCH",
        "/api/v1/namespaces/default/pods/a?fieldManager=t",
        "application/apply-patch+yaml",
        pod("a", None).to_string().into_bytes(),
    )
    .await;
    assert_eq!(c, 200, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn deleting_an_object_frees_room_for_a_create() {
    let d = dir("capdelete");
    let api = capped(&d, 1);
    let uri = "/api/v1/namespaces/default/pods";
    let (c, _) = call(&api, "POST", uri, Some(pod("a", None))).await;
    assert_eq!(c, 201);
    let (c, _) = call(&api, "POST", uri, Some(pod("b", None))).await;
    assert_eq!(c, 403);
    let (c, _) = call(&api, "DELETE", &format!("{uri}/a"), None).await;
    assert_eq!(c, 200);
    let (c, s) = call(&api, "POST", uri, Some(pod("b", None))).await;
    assert_eq!(c, 201, "{s}");
    let _ = std::fs::remove_dir_all(d);
}

fn secret_body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn secret_string_data_is_stored_as_base64_data_and_type_defaults_to_opaque() {
    let s = crate::validate_create(
        "secrets",
        "application/json",
        &secret_body(json!({"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})),
    )
    .unwrap();
    assert_eq!(s["data"]["password"], "aHVudGVyMg==");
    assert!(s.get("stringData").is_none(), "{s}");
    assert_eq!(s["type"], "Opaque");
}

#[test]
fn a_tls_secret_needs_its_certificate_and_key() {
    let e = crate::validate_create(
        "secrets",
        "application/json",
        &secret_body(
            json!({"metadata": {"name": "web"}, "type": "kubernetes.io/tls",
                            "stringData": {"tls.crt": "x"}}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("data[tls.key]: Required value"),
        "{}",
        e.message
    );
    crate::validate_create(
        "secrets",
        "application/json",
        &secret_body(
            json!({"metadata": {"name": "web"}, "type": "kubernetes.io/tls",
                            "stringData": {"tls.crt": "x", "tls.key": "y"}}),
        ),
    )
    .unwrap();
}

#[test]
fn a_secret_key_outside_the_config_key_alphabet_is_invalid() {
    let e = crate::validate_create(
        "secrets",
        "application/json",
        &secret_body(json!({"metadata": {"name": "s"}, "stringData": {"a/b": "x"}})),
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(e.message.contains("data[a/b]"), "{}", e.message);
}

#[test]
fn secret_data_over_one_mebibyte_is_too_long() {
    let big = "x".repeat((1 << 20) + 1);
    let e = crate::validate_create(
        "secrets",
        "application/json",
        &secret_body(json!({"metadata": {"name": "s"}, "stringData": {"blob": big}})),
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("must have at most 1048576 bytes"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_secrets_type_cannot_change() {
    let d = dir("secret-type");
    let api = ApiServer::open(config(&d)).unwrap();
    let uri = "/api/v1/namespaces/default/secrets";
    let (code, _) = call(
        &api,
        "POST",
        uri,
        Some(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = call(
        &api,
        "PUT",
        &format!("{uri}/s"),
        Some(
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth",
                    "stringData": {"username": "u"}}),
        ),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("type: Invalid value"),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn namespaces_carry_their_name_label_whatever_the_client_sent() {
    let d = dir("nslabel");
    let api = ApiServer::open(config(&d)).unwrap();
    let ns = json!({"metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "other", "team": "a"}}});
    let (c, s) = call(&api, "POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(
        s["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "shop"
    );
    assert_eq!(s["metadata"]["labels"]["team"], "a");
    let (c, s) = call(&api, "GET", "/api/v1/namespaces/default", None).await;
    assert_eq!(c, 200, "{s}");
    assert_eq!(
        s["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "default"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[tokio::test]
async fn network_policies_get_upstreams_defaults() {
    let d = dir("npdefaults");
    let api = ApiServer::open(config(&d)).unwrap();
    let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}],
                 "egress": [{}]}});
    let (c, s) = call(
        &api,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        Some(np),
    )
    .await;
    assert_eq!(c, 201, "{s}");
    assert_eq!(s["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(s["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(s["spec"]["ingress"][0]["ports"][1]["protocol"], "UDP");
    let _ = std::fs::remove_dir_all(d);
}
