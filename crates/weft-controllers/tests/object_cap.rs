//! The embedded API server and the controllers together in-process: a
//! Deployment asking for a million replicas stops at the store's object cap,
//! says why in its conditions, and leaves the API responsive.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig, Limits};

const CAP: usize = 300;
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(tag: &str, limits: Limits) -> (kube::Client, TempDir) {
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
    (kube::Client::try_from(cfg).unwrap(), TempDir(dir))
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
            }
        }
    }))
    .unwrap()
}

/// The Deployment's ReplicaFailure condition as (reason, message), if any.
fn replica_failure(d: &Deployment) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_replicas_stop_at_the_object_cap_with_replica_failure() {
    // RUST_LOG=weft_controllers=debug shows the syncs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let limits = Limits {
        max_objects_per_namespace: CAP,
        ..Limits::default()
    };
    let (client, _dir) = start("cap", limits).await;
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 1_000_000))
        .await
        .unwrap();

    let start = Instant::now();
    let (failure, count) = loop {
        let d = deployments.get("web").await.unwrap();
        let count = pods.list(&ListParams::default()).await.unwrap().items.len();
        if let Some(f) = replica_failure(&d) {
            if count == CAP {
                break (f, count);
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no ReplicaFailure with {CAP} pods in time: {count} pods, status {:?}",
            d.status
        );
        // Poll again shortly (a polling interval, not a synchronisation).
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(count, CAP);
    let (reason, message) = failure;
    assert_eq!(reason, "FailedCreate");
    assert!(
        message.contains("is forbidden: exceeded quota")
            && message.contains(&format!("at most {CAP} pods per namespace")),
        "{message}"
    );

    // The API is still responsive, and the cap still holds.
    let d = tokio::time::timeout(Duration::from_secs(2), deployments.get("web"))
        .await
        .expect("GET answered in time")
        .unwrap();
    assert!(replica_failure(&d).is_some());
    let listed = pods.list(&ListParams::default()).await.unwrap().items.len();
    assert_eq!(listed, CAP);
    controllers.abort();
}
