//! The watch layer against a real API server: weft's embedded one, in process on
//! 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig};
use weft_kube::{Gate, Selector, Watches};

/// Started as crates/weft-apiserver/tests/kube_client.rs does.
async fn start(tag: &str) -> (Arc<ApiServer>, kube::Client, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("weft-kube-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = ApiServer::open(ApiServerConfig {
        state_dir: dir.clone(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api.clone().serve(listener));
    let cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    (api, kube::Client::try_from(cfg).unwrap(), dir)
}

fn node(name: &str, role: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"role": role}},
    }))
    .unwrap()
}

/// Fails the test instead of hanging it when the condition never comes.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn store_lists_then_follows_creates_and_deletes() {
    let (_api, client, dir) = start("follow").await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &node("n1", "worker"))
        .await
        .unwrap();

    let watches = Watches::new(client);
    let store = watches.store::<Node>(Selector::all());
    within("the first list", Gate::new([store.readiness()]).wait())
        .await
        .unwrap();
    assert!(store.is_ready());
    assert!(store.get("n1").is_some(), "listed before ready");

    let mut changes = store.changes();
    nodes
        .create(&PostParams::default(), &node("n2", "worker"))
        .await
        .unwrap();
    within("n2", store.wait_for(|s| s.get("n2"))).await.unwrap();
    within("a change signal", changes.changed()).await.unwrap();

    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    within(
        "n1 gone",
        store.wait_for(|s| s.get("n1").is_none().then_some(())),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn label_selected_store_holds_only_matching_objects() {
    let (_api, client, dir) = start("labels").await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &node("w1", "worker"))
        .await
        .unwrap();
    nodes
        .create(&PostParams::default(), &node("e1", "edge"))
        .await
        .unwrap();

    let watches = Watches::new(client);
    let edge = watches.store::<Node>(Selector::labels("role=edge"));
    let all = watches.store::<Node>(Selector::all());
    within(
        "both lists",
        Gate::new([edge.readiness(), all.readiness()]).wait(),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 2);
    let names: Vec<_> = edge
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, ["e1"]);
    let _ = std::fs::remove_dir_all(dir);
}
