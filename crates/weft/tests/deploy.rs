//! The manifests in deploy/ (what installs weft on a real cluster, and what
//! `weft up` installs) are well-formed Kubernetes objects: every document
//! parses into its k8s-openapi type and serialises back unchanged, so a
//! misspelt or misplaced field (which a typed client would silently drop)
//! fails here.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Numbers compared by value: a schema's `maximum: 65535` comes back from
/// its f64 field as 65535.0, which is the same number.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Parses `doc` as `T` and checks nothing was lost or changed.
fn round_trip<T: DeserializeOwned + Serialize>(where_: &str, doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{where_}: does not parse as its kind: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        numbers_as_f64(&back),
        numbers_as_f64(doc),
        "{where_}: fields were dropped or changed by the typed round trip"
    );
}

fn check(where_: &str, doc: &Value) {
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("v1"), Some("Namespace")) => round_trip::<Namespace>(where_, doc),
        (Some("v1"), Some("ServiceAccount")) => round_trip::<ServiceAccount>(where_, doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
            round_trip::<ClusterRole>(where_, doc)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            round_trip::<ClusterRoleBinding>(where_, doc)
        }
        (Some("apps/v1"), Some("DaemonSet")) => round_trip::<DaemonSet>(where_, doc),
        (Some("apps/v1"), Some("Deployment")) => round_trip::<Deployment>(where_, doc),
        (Some("v1"), Some("Service")) => round_trip::<Service>(where_, doc),
        (Some("gateway.networking.k8s.io/v1"), Some("GatewayClass")) => {
            round_trip::<weft_gateway::api::GatewayClass>(where_, doc)
        }
        (Some("networking.k8s.io/v1"), Some("IngressClass")) => {
            round_trip::<k8s_openapi::api::networking::v1::IngressClass>(where_, doc)
        }
        (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
            round_trip::<CustomResourceDefinition>(where_, doc)
        }
        (v, k) => panic!("{where_}: no typed check for {k:?} ({v:?}); add one here"),
    }
}

#[test]
fn every_deploy_manifest_parses_into_its_typed_kind_unchanged() {
    let files = yaml_files(&deploy_dir());
    assert!(!files.is_empty(), "no manifests under deploy/");
    let mut count = 0;
    for f in &files {
        for (i, doc) in documents(f).iter().enumerate() {
            check(&format!("{} document {}", f.display(), i + 1), doc);
            count += 1;
        }
    }
    assert!(count >= 5, "only {count} documents");
}

#[test]
fn the_agent_daemonset_runs_weft_on_the_host_network_with_the_cni_paths() {
    let docs = documents(&deploy_dir().join("weft-agent.yaml"));
    let ds: DaemonSet = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .expect("a DaemonSet");
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("weft-agent"));
    let agent = &spec.containers[0];
    assert_eq!(
        agent.command.as_deref(),
        Some(&["weft".to_string(), "agent".to_string()][..])
    );
    let node_env = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(node_env.as_deref(), Some("spec.nodeName"));
    let init = &spec.init_containers.unwrap()[0];
    assert_eq!(init.command.as_ref().unwrap()[..2], ["weft", "install-cni"]);
    let host_paths: Vec<String> = spec
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect();
    for p in ["/etc/cni/net.d", "/opt/cni/bin", "/run/netns"] {
        assert!(host_paths.iter().any(|h| h == p), "{p} in {host_paths:?}");
    }
}

#[test]
fn install_cni_puts_an_executable_plugin_in_the_bin_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("weft-install-cni-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("plugin-src");
    std::fs::write(&plugin, b"#!/bin/sh\necho plugin\n").unwrap();
    let bin = dir.join("opt/cni/bin");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["install-cni", "--bin-dir"])
        .arg(&bin)
        .arg("--plugin")
        .arg(&plugin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = bin.join("weft-cni");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&plugin).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["install-cni", "--bin-dir"])
        .arg(&bin)
        .arg("--plugin")
        .arg(dir.join("nope"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("nope"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_dns_deployment_serves_behind_kube_dns_with_only_port_53_privileges() {
    let docs = documents(&deploy_dir().join("weft-dns.yaml"));
    let d: Deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .expect("a Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("weft-dns"));
    let c = &pod.containers[0];
    assert_eq!(
        c.command.as_deref(),
        Some(&["weft".to_string(), "dns".to_string()][..])
    );
    let ready = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .unwrap();
    assert_eq!(ready.path.as_deref(), Some("/ready"));
    let sc = c.security_context.as_ref().unwrap();
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(
        caps.add.as_deref(),
        Some(&["NET_BIND_SERVICE".to_string()][..])
    );
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(sc.run_as_non_root, Some(true));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels.get("k8s-app").map(String::as_str), Some("kube-dns"));

    let svc: Service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .expect("a Service");
    assert_eq!(svc.metadata.name.as_deref(), Some("kube-dns"));
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    let ports: Vec<(i32, String)> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_default()))
        .collect();
    assert!(ports.contains(&(53, "UDP".into())), "{ports:?}");
    assert!(ports.contains(&(53, "TCP".into())), "{ports:?}");
}
