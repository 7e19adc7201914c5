//! `pods/log` through the API server over a real socket: proxied to a
//! node's kubelet endpoint (here a small unix-socket server standing in for
//! the node), its errors as Status objects, and the answer without a node
//! connection.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-api-stream-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn start(dir: &std::path::Path, sockets: Option<String>) -> kube::Client {
    let api = ApiServer::open(ApiServerConfig {
        state_dir: dir.join("api"),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: sockets,
    })
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(api.serve(l));
    let cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

async fn pod_on_node_1(client: &kube::Client) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods
}

/// Answers `/containerLogs/...` with the path and query it was asked
/// (so the test sees what the API server sent), or 400 for `previous`.
async fn fake_kubelet(socket: std::path::PathBuf) {
    let l = tokio::net::UnixListener::bind(&socket).unwrap();
    loop {
        let Ok((s, _)) = l.accept().await else { return };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let target = req.uri().to_string();
                    let mut resp = http::Response::new(Full::new(Bytes::from(target.clone())));
                    if target.contains("previous=true") {
                        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
                        *resp.body_mut() = Full::new(Bytes::from(
                            "previous terminated container \"c\" in pod \"web\" not found",
                        ));
                    }
                    Ok::<_, Infallible>(resp)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        });
    }
}

#[tokio::test]
async fn a_log_request_is_proxied_to_the_node_with_kubelets_query() {
    let dir = temp_dir("proxy");
    tokio::spawn(fake_kubelet(dir.join("node-1.sock")));
    let template = dir.join("{node}.sock").display().to_string();
    let client = start(&dir, Some(template)).await;
    let pods = pod_on_node_1(&client).await;
    let params = LogParams {
        tail_lines: Some(2),
        timestamps: true,
        ..LogParams::default()
    };
    let got = pods.logs("web", &params).await.unwrap();
    assert_eq!(
        got,
        "/containerLogs/default/web/c?timestamps=true&tailLines=2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_node_error_comes_back_as_a_status_with_its_code() {
    let dir = temp_dir("err");
    tokio::spawn(fake_kubelet(dir.join("node-1.sock")));
    let template = dir.join("{node}.sock").display().to_string();
    let client = start(&dir, Some(template)).await;
    let pods = pod_on_node_1(&client).await;
    let params = LogParams {
        previous: true,
        ..LogParams::default()
    };
    match pods.logs("web", &params).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 400);
            assert_eq!(e.reason, "BadRequest");
            assert_eq!(
                e.message,
                "previous terminated container \"c\" in pod \"web\" not found"
            );
        }
        other => panic!("expected a 400 Status, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_a_node_connection_logs_are_not_found_and_say_why() {
    let dir = temp_dir("none");
    let client = start(&dir, None).await;
    let pods = pod_on_node_1(&client).await;
    match pods.logs("web", &LogParams::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 404);
            assert!(
                e.message.contains("no node connection configured"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
