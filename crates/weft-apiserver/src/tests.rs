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
