//! kubectl (the machine's; 1.33 from scripts/setup.sh) against the secured server on 127.0.0.1
//! without flags: the imperative `create` commands and `expose` (protobuf
//! bodies), `apply -f` of a List and `create -f` (validation on, the
//! default), and `scale` (the scale subresource).

use std::process::Output;

use serde_json::Value;

mod common;

use common::Server;

async fn start(tag: &str) -> Server {
    common::start("kubectl", tag).await
}

/// Runs kubectl with the admin kubeconfig (its own cache dir, so runs do
/// not share discovery caches).
async fn kubectl(s: &Server, args: &[&str]) -> Output {
    let kc = s.kubeconfig.clone();
    let cache = s.dir.join("cache");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .arg("--cache-dir")
            .arg(&cache)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Runs kubectl and expects success.
async fn ok(s: &Server, args: &[&str]) -> String {
    let o = kubectl(s, args).await;
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}\n{}",
        text(&o.stderr),
        text(&o.stdout)
    );
    text(&o.stdout)
}

async fn get_json(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&ok(s, &a).await).unwrap()
}

fn have_kubectl(test: &str) -> bool {
    weft_linux::testns::tool_or_skip(test, "kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_configmap_and_serviceaccount_send_protobuf_that_decodes() {
    if !have_kubectl("create_namespace_configmap_and_serviceaccount") {
        return;
    }
    let s = start("basic").await;
    ok(&s, &["create", "namespace", "team"]).await;
    ok(
        &s,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "team",
            "--from-literal=colour=blue",
            "--from-literal=empty=",
        ],
    )
    .await;
    ok(&s, &["create", "serviceaccount", "robot", "-n", "team"]).await;
    let cm = get_json(&s, &["configmap", "cfg", "-n", "team"]).await;
    assert_eq!(cm["data"]["colour"], "blue");
    assert_eq!(cm["data"]["empty"], "");
    let sa = get_json(&s, &["serviceaccount", "robot", "-n", "team"]).await;
    assert_eq!(sa["metadata"]["namespace"], "team");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_tls_and_generic_store_base64_data() {
    use base64::Engine;
    if !have_kubectl("create_secret_tls_and_generic") {
        return;
    }
    let s = start("secrets").await;
    let ck = rcgen::generate_simple_self_signed(vec!["web.example".to_string()]).unwrap();
    let cert = s.dir.join("tls.crt");
    let key = s.dir.join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let cert_arg = format!("--cert={}", cert.display());
    let key_arg = format!("--key={}", key.display());
    ok(
        &s,
        &["create", "secret", "tls", "web-tls", &cert_arg, &key_arg],
    )
    .await;
    ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cret",
        ],
    )
    .await;
    let tls = get_json(&s, &["secret", "web-tls"]).await;
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let b64 = base64::engine::general_purpose::STANDARD;
    let crt = b64
        .decode(tls["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(crt).unwrap(), ck.cert.pem());
    let g = get_json(&s, &["secret", "creds"]).await;
    assert_eq!(g["type"], "Opaque");
    assert_eq!(g["data"]["password"], b64.encode("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment_then_expose_makes_a_service_on_the_port() {
    if !have_kubectl("create_deployment_then_expose") {
        return;
    }
    let s = start("expose").await;
    ok(&s, &["create", "deployment", "web", "--image=nginx:1.27"]).await;
    ok(&s, &["expose", "deployment", "web", "--port=80"]).await;
    let d = get_json(&s, &["deployment", "web"]).await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let svc = get_json(&s, &["service", "web"]).await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .starts_with("10."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_role_and_rolebinding_are_stored_as_rbac_objects() {
    if !have_kubectl("create_role_and_rolebinding") {
        return;
    }
    let s = start("rbac").await;
    ok(
        &s,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    )
    .await;
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "read-pods",
            "--role=pod-reader",
            "--serviceaccount=default:default",
        ],
    )
    .await;
    let r = get_json(&s, &["role", "pod-reader"]).await;
    assert_eq!(r["rules"][0]["resources"][0], "pods");
    assert_eq!(r["rules"][0]["verbs"], serde_json::json!(["get", "list"]));
    let rb = get_json(&s, &["rolebinding", "read-pods"]).await;
    assert_eq!(rb["roleRef"]["name"], "pod-reader");
    assert_eq!(rb["subjects"][0]["kind"], "ServiceAccount");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_of_a_list_passes_default_validation() {
    if !have_kubectl("apply_of_a_list") {
        return;
    }
    let s = start("list").await;
    let f = s.dir.join("list.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: one\n  data:\n    a: b\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: two\n  spec:\n    selector:\n      matchLabels: {app: two}\n    template:\n      metadata:\n        labels: {app: two}\n      spec:\n        containers:\n        - name: c\n          image: busybox\n",
    )
    .unwrap();
    let out = ok(&s, &["apply", "-f", f.to_str().unwrap()]).await;
    assert!(out.contains("configmap/one created"), "{out}");
    assert!(out.contains("deployment.apps/two created"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_an_unknown_field_fails_naming_it() {
    if !have_kubectl("create_with_an_unknown_field") {
        return;
    }
    let s = start("strict").await;
    let f = s.dir.join("cm.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: b\nspec:\n  foo: 1\n",
    )
    .unwrap();
    let o = kubectl(&s, &["create", "-f", f.to_str().unwrap()]).await;
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec\""),
        "{err}"
    );
    let o = kubectl(&s, &["get", "configmap", "bad"]).await;
    assert!(!o.status.success(), "the object must not have been created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_deployment_writes_spec_replicas() {
    if !have_kubectl("scale_deployment") {
        return;
    }
    let s = start("scale").await;
    ok(&s, &["create", "deployment", "web", "--image=nginx"]).await;
    let out = ok(&s, &["scale", "deployment", "web", "--replicas=3"]).await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let d = get_json(&s, &["deployment", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 3);
    let scale: Value = serde_json::from_str(
        &ok(
            &s,
            &[
                "get",
                "--raw",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
}
