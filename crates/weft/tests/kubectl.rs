//! kubectl (the machine's, 1.33 from scripts/setup.sh) against an embedded
//! cluster, as a user new to weft would drive it: imperative `create`
//! commands (which send protobuf), `apply` of a `kind: List` with kubectl's
//! default validation, `scale`, and weft's own Gateway API definitions that
//! `weft up` installs. One cluster for the checks (it takes seconds to
//! build), removed by its guard even when a check fails.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(c: &Cluster, args: &[&str]) -> String {
    let o = c.kubectl(args);
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// kubectl with `input` on stdin.
fn with_stdin(c: &Cluster, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.state.join("kubeconfig"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn kubectl_creates_applies_scales_and_uses_the_gateway_api_on_weft_up() {
    if !root_or_skip("kubectl_creates_applies_scales_and_uses_the_gateway_api_on_weft_up") {
        return;
    }
    let c = Cluster::new("kc");
    c.ok(&["up", "--nodes", "1"]);

    // Imperative creates: kubectl's typed clients send protobuf bodies.
    ok(&c, &["create", "namespace", "shop"]);
    ok(
        &c,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "shop",
            "--from-literal=color=blue",
        ],
    );
    let cm = ok(
        &c,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.color}",
        ],
    );
    assert_eq!(cm, "blue");
    ok(
        &c,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "shop",
            "--image=registry.k8s.io/e2e-test-images/agnhost:2.53",
            "--",
            "weft",
            "netexec",
            "--http-port=8080",
        ],
    );
    ok(
        &c,
        &[
            "expose",
            "deployment",
            "web",
            "-n",
            "shop",
            "--port=80",
            "--target-port=8080",
        ],
    );
    let port = ok(
        &c,
        &[
            "get",
            "svc",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ],
    );
    assert_eq!(port, "8080");
    ok(
        &c,
        &["scale", "deployment", "web", "-n", "shop", "--replicas=2"],
    );
    let replicas = ok(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas, "2");

    // A List, validated by kubectl (its default --validate=strict) before it is sent.
    let list = "apiVersion: v1\nkind: List\nitems:\n\
                - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one, namespace: shop}\n  data: {a: \"1\"}\n\
                - apiVersion: v1\n  kind: Secret\n  metadata: {name: two, namespace: shop}\n  stringData: {b: \"2\"}\n";
    let o = with_stdin(&c, &["apply", "-f", "-"], list);
    assert!(o.status.success(), "apply of a List: {}", text(&o));
    let o = with_stdin(
        &c,
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: shop}\ndatta: {a: \"1\"}\n",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("datta"),
        "unknown field: {}",
        text(&o)
    );

    // weft's own Gateway API definitions are served from the start.
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
                   metadata: {name: edge, namespace: shop}\n\
                   spec:\n  gatewayClassName: weft\n  listeners:\n  - {name: http, protocol: HTTP, port: 80}\n\
                   ---\n\
                   apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
                   metadata: {name: web, namespace: shop}\n\
                   spec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n";
    let o = with_stdin(&c, &["apply", "-f", "-"], gateway);
    assert!(
        o.status.success(),
        "apply of a Gateway and an HTTPRoute: {}",
        text(&o)
    );
    let path = ok(
        &c,
        &[
            "get",
            "httproute",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.rules[0].matches[0].path.type}",
        ],
    );
    assert_eq!(path, "PathPrefix", "the schema's default match");
    let routes = c.ok(&["get", "httproutes", "-n", "shop"]);
    assert!(routes.contains("web"), "{routes}");
    let bad = gateway.replace("port: 80}", "port: 70000}");
    let o = with_stdin(&c, &["apply", "-f", "-"], &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("spec.listeners[0].port"),
        "a bad listener port: {}",
        text(&o)
    );
}
