//! Workloads of a real embedded cluster end to end with the machine's
//! kubectl (root; clusters in `weft-…` namespaces, removed on drop): a
//! Deployment's ReplicaSets (`kubectl get rs`), a template change rolled out
//! and undone (`kubectl rollout status/history/undo`), the Events shown by
//! `kubectl describe deployment` and `kubectl get events`, and a DaemonSet
//! with a pod on every node — all through the controllers' own RBAC role.

mod common;

use std::collections::BTreeSet;

use common::{field, pods, root_or_skip, wait_until, Cluster};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn manifest() -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: {AGNHOST}\n        \
         args: [netexec, --http-port=8080]\n        ports: [{{name: http, containerPort: 8080}}]\n        \
         readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}\n---\n\
         apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  \
         selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: {AGNHOST}\n        \
         args: [netexec, --http-port=8081]\n"
    )
}

fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let o = c.kubectl(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "kubectl {}: {text}\n{}",
        args.join(" "),
        c.log_tails()
    );
    text
}

#[test]
fn deployments_roll_back_with_kubectl_and_daemonsets_cover_every_node() {
    if !root_or_skip("deployments_roll_back_with_kubectl_and_daemonsets_cover_every_node")
        || !weft_linux::testns::tool_or_skip("rollout", "kubectl")
    {
        return;
    }
    let c = Cluster::new("wro");
    let path = std::env::temp_dir().join(format!("{}-rollout.yaml", c.name));
    std::fs::write(&path, manifest()).unwrap();
    let out = c.ok(&[
        "up",
        "-f",
        path.to_str().unwrap(),
        "--nodes",
        "2",
        "--timeout",
        "180",
    ]);
    let _ = std::fs::remove_file(path);
    assert!(out.contains("nodes Ready"), "{out}");

    let rs = kubectl_ok(&c, &["get", "rs", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "{rs}");

    kubectl_ok(&c, &["set", "env", "deployment/web", "ROLL=2"]);
    let out = kubectl_ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = kubectl_ok(&c, &["rollout", "history", "deployment/web"]);
    assert!(history.lines().any(|l| l.starts_with('2')), "{history}");

    let out = kubectl_ok(&c, &["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = kubectl_ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let env = kubectl_ok(
        &c,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ],
    );
    assert!(!env.contains("ROLL"), "{env}");
    let rs = kubectl_ok(&c, &["get", "rs"]);
    assert_eq!(
        rs.lines().filter(|l| l.starts_with("web-")).count(),
        2,
        "{rs}"
    );

    let describe = kubectl_ok(&c, &["describe", "deployment", "web"]);
    let events = describe.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled down replica set web-"),
        "{describe}"
    );
    let events = kubectl_ok(&c, &["get", "events"]);
    assert!(
        events.contains("Scheduled") && events.contains("SuccessfulCreate"),
        "{events}"
    );

    let out = kubectl_ok(
        &c,
        &["rollout", "status", "daemonset/agent", "--timeout=120s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_until("a running agent pod on each node", 60, || {
        let nodes: BTreeSet<String> = pods(&c)
            .iter()
            .filter(|p| field(p, "/metadata/labels/app") == "agent")
            .filter(|p| field(p, "/status/phase") == "Running")
            .map(|p| field(p, "/spec/nodeName").to_string())
            .collect();
        nodes.len() == 2
    });
}
