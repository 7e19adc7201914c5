//! An embedded API server on a loopback port, in-process, for the
//! controllers' integration tests, Node objects, a stand-in for the
//! kubelets, and polling helpers.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig, Limits};

pub const DEADLINE: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(50);

/// Removes the server's state directory when the test ends, pass or fail.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain-HTTP API server with `limits`, and a client for it.
pub async fn start(tag: &str, limits: Limits) -> (kube::Client, TempDir) {
    let (client, dir, _) = start_on_port(tag, limits).await;
    (client, dir)
}

/// [`start`], also saying the server's port.
pub async fn start_on_port(tag: &str, limits: Limits) -> (kube::Client, TempDir, u16) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = std::env::temp_dir().join(format!("weft-ctrl-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = ApiServer::open_with_limits(
        ApiServerConfig {
            state_dir: dir.clone(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_port_range: (30000, 32767),
            kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
            kubelet_sockets: None,
        },
        limits,
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(api.serve(l));
    let cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    (kube::Client::try_from(cfg).unwrap(), TempDir(dir), port)
}

/// Polls `check` until it returns Some, failing with `what` (and the last
/// value seen, from `check`'s Err) after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; last seen: {last}"
            ),
        }
        // Poll again shortly (a polling interval, not a synchronisation).
        tokio::time::sleep(POLL).await;
    }
}

/// A Ready node, optionally tainted.
pub async fn make_node(client: &kube::Client, name: &str, taint: Option<&str>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut spec = json!({});
    if let Some(key) = taint {
        spec = json!({"taints": [{"key": key, "value": "x", "effect": "NoSchedule"}]});
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Marks every bound pod Running and Ready, as its kubelet would, until aborted.
pub fn kubelets(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    if !bound || running || p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap());
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                    let _ = api
                        .patch_status(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&status),
                        )
                        .await;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
