//! The machine's kubectl against the embedded API server and the
//! controllers in-process: `kubectl rollout status`, `get rs`, `rollout
//! history`, `rollout undo` (kubectl's client-side rollback from the
//! ReplicaSets' revisions), `describe deployment` with its Events, `get
//! events`, and a DaemonSet's `rollout status` and `get ds`.
//! Skipped when kubectl is not installed.

mod common;

use common::{kubelets, make_node, start_on_port, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use weft_apiserver::Limits;
use weft_controllers::deployment::REVISION;

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: img:1
";

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: c
        image: agent:1
";

/// Runs kubectl with `kubeconfig`; (succeeded, stdout + stderr).
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if args.contains(&"-") {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.as_bytes()).await.unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rolls_out_lists_replicasets_undoes_and_describes_events() {
    if !weft_linux::testns::tool_or_skip("kubectl_rollout", "kubectl") {
        return;
    }
    let (client, dir, port) = start_on_port("kubectl", Limits::default()).await;
    make_node(&client, "n1", None).await;
    let kubelets = kubelets(client.clone());
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let kc = dir.0.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: weft\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: weft\n  context:\n    cluster: weft\n    user: weft\n    namespace: default\ncurrent-context: weft\nusers:\n- name: weft\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let run_with = |args: &'static [&'static str], stdin: &'static str| {
        let kc = kc.clone();
        async move { kubectl(&kc, args, stdin).await }
    };
    let run = |args: &'static [&'static str]| run_with(args, MANIFEST);

    let (ok, out) = run(&["apply", "-f", "-"]).await;
    assert!(ok, "{out}");
    let (ok, out) = run(&["rollout", "status", "deployment/web", "--timeout=30s"]).await;
    assert!(ok && out.contains("successfully rolled out"), "{out}");

    let (ok, out) = run(&["set", "image", "deployment/web", "c=img:2"]).await;
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ])
    .await;
    assert!(ok, "{out}");
    let (ok, out) = run(&["rollout", "status", "deployment/web", "--timeout=30s"]).await;
    assert!(ok && out.contains("successfully rolled out"), "{out}");

    let (ok, out) = run(&["get", "rs"]).await;
    assert!(ok, "{out}");
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("DESIRED") && header.contains("CURRENT") && header.contains("READY"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("web-")).count(),
        2,
        "{out}"
    );

    let (ok, out) = run(&["rollout", "history", "deployment/web"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1         first") || out.contains("1  "),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with('2')), "{out}");

    let (ok, out) = run(&["rollout", "undo", "deployment/web"]).await;
    assert!(ok && out.contains("rolled back"), "{out}");
    let (ok, out) = run(&["rollout", "status", "deployment/web", "--timeout=30s"]).await;
    assert!(ok && out.contains("successfully rolled out"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployments.get("web").await.unwrap();
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("img:1"));
    // The first ReplicaSet is new again, as revision 3.
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    wait_for("the first ReplicaSet back as revision 3", async || {
        let list = rss
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let revs: Vec<(String, Option<i32>)> = list
            .items
            .iter()
            .map(|rs| {
                (
                    rs.annotations()[REVISION].clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas),
                )
            })
            .collect();
        if revs.contains(&("3".to_string(), Some(2))) && revs.contains(&("2".to_string(), Some(0)))
        {
            Ok(())
        } else {
            Err(format!("{revs:?}"))
        }
    })
    .await;

    let (ok, out) = run(&["describe", "deployment", "web"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("NewReplicaSet:"), "{out}");
    assert!(
        out.contains("deployment.kubernetes.io/revision: 3"),
        "{out}"
    );
    let events = out.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("ScalingReplicaSet")
            && events.contains("deployment-controller")
            && events.contains("Scaled up replica set web-"),
        "{out}"
    );
    let (ok, out) = run(&["get", "events"]).await;
    assert!(
        ok && out.contains("Scheduled") && out.contains("pod/web-"),
        "{out}"
    );

    let (ok, out) = run_with(&["apply", "-f", "-"], DAEMONSET).await;
    assert!(ok, "{out}");
    let (ok, out) = run(&["rollout", "status", "daemonset/agent", "--timeout=30s"]).await;
    assert!(ok && out.contains("successfully rolled out"), "{out}");
    let (ok, out) = run(&["get", "ds", "agent"]).await;
    assert!(ok, "{out}");
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE
    assert_eq!(
        &row[..7],
        ["agent", "1", "1", "1", "1", "1", "<none>"],
        "{out}"
    );
    kubelets.abort();
    controllers.abort();
}
