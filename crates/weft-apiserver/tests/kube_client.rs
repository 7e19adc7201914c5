//! Integration over real sockets on 127.0.0.1 with kube-rs and kubectl.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-api-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn start(tag: &str) -> (Arc<ApiServer>, u16, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let api = ApiServer::open(ApiServerConfig {
        state_dir: dir.clone(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: None,
    })
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(api.clone().serve(l));
    (api, port, dir)
}

fn client(port: u16) -> kube::Client {
    let cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn kube_rs_crud_watch_conflict_invalid() {
    let (_api, port, dir) = start("kube").await;
    let client = client(port);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel();
    let wpods = pods.clone();
    tokio::spawn(async move {
        let mut s = watcher(wpods, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let label = match ev {
                Ok(watcher::Event::Apply(p)) => {
                    format!("apply {}", p.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::Delete(p)) => {
                    format!("delete {}", p.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => "initdone".to_string(),
                Ok(_) => continue,
                Err(e) => format!("error {e}"),
            };
            if etx.send(label).is_err() {
                return;
            }
        }
    });
    assert_eq!(next(&mut erx).await, "initdone");

    let created = pods
        .create(&PostParams::default(), &pod("a"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(next(&mut erx).await, "apply a");
    let got = pods.get("a").await.unwrap();
    assert_eq!(
        got.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Always")
    );
    let list = pods
        .list(&ListParams::default().labels("app in (web,db)"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let none = pods
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert!(none.items.is_empty());

    let patched = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["x"], "y");
    assert_eq!(next(&mut erx).await, "apply a");

    // Stale update → 409.
    let mut stale = got.clone();
    stale.metadata.labels = Some([("z".to_string(), "1".to_string())].into());
    let err = pods
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        e => panic!("unexpected {e}"),
    }

    // Server-side apply creates and replaces.
    let ssa = PatchParams::apply("test").force();
    pods.patch("b", &ssa, &Patch::Apply(pod("b")))
        .await
        .unwrap();
    assert_eq!(next(&mut erx).await, "apply b");

    pods.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut erx).await, "delete a");
    assert!(matches!(pods.get("a").await, Err(kube::Error::Api(s)) if s.code == 404));

    // Services: allocation and validation.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    let s = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = s.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.16"));
    assert_eq!(spec.ports.as_ref().unwrap()[0].node_port, Some(30000));
    let kubernetes = svcs.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
    let bad: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
        "spec": {"ports": [{"port": 0}]}
    }))
    .unwrap();
    match svcs.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec.ports[0].port"), "{}", s.message);
        }
        e => panic!("unexpected {e}"),
    }
    let taken: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
        "spec": {"clusterIP": "10.96.0.16", "ports": [{"port": 80}]}
    }))
    .unwrap();
    match svcs
        .create(&PostParams::default(), &taken)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("provided IP is already allocated"),
                "{}",
                s.message
            );
        }
        e => panic!("unexpected {e}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn next(erx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), erx.recv())
        .await
        .unwrap()
        .unwrap()
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works() {
    if !weft_linux::testns::tool_or_skip("kubectl_works", "kubectl") {
        return;
    }
    let (_api, port, dir) = start("kubectl").await;
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: weft\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: weft\n  context:\n    cluster: weft\n    user: weft\ncurrent-context: weft\nusers:\n- name: weft\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let manifests = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";
    let kc2 = kc.clone();
    let run = move |args: Vec<&'static str>, stdin: Option<&'static str>| {
        let kc = kc2.clone();
        async move {
            tokio::task::spawn_blocking(move || kubectl(&kc, &args, stdin))
                .await
                .unwrap()
        }
    };
    let (ok, out) = run(vec!["get", "pods", "-A", "-o", "json"], None).await;
    assert!(ok, "{out}");
    assert!(out.contains("\"items\""), "{out}");
    let (ok, out) = run(vec!["create", "-f", "-"], Some(manifests)).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("service/web created") && out.contains("pod/x created"),
        "{out}"
    );
    let (ok, out) = run(vec!["get", "svc"], None).await;
    assert!(ok, "{out}");
    assert!(out.contains("web") && out.contains("10.96.0.16"), "{out}");
    let (ok, out) = run(vec!["create", "-f", "-"], Some(manifests)).await;
    assert!(!ok);
    assert!(out.contains("already exists"), "{out}");
    let (ok, out) = run(vec!["delete", "pod", "x"], None).await;
    assert!(ok, "{out}");
    assert!(out.contains("pod \"x\" deleted"), "{out}");
    let (ok, out) = run(vec!["apply", "-f", "-"], Some(manifests)).await;
    assert!(ok, "{out}");
    let (ok, out) = run(vec!["apply", "--server-side", "-f", "-"], Some(manifests)).await;
    assert!(ok, "{out}");
    let (ok, out) = run(
        vec!["get", "pod", "x", "-o", "jsonpath={.metadata.name}"],
        None,
    )
    .await;
    assert!(ok && out == "x", "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends raw bytes and returns the status line and body of the response.
async fn raw_http(port: u16, head: String, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before the whole body is sent.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_bodies_get_413_over_the_socket() {
    let (_api, port, dir) = start("413").await;
    // Declared too large: refused before reading.
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        4 << 20
    );
    let out = raw_http(port, head, b"").await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        out.contains("Request entity too large: limit is 3145728"),
        "{out}"
    );
    // Chunked, no length up front: cut off at the limit.
    let head = "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_string();
    let chunk = vec![b' '; 1 << 20];
    let mut body = Vec::new();
    for _ in 0..4 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let out = raw_http(port, head, &body).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
