//! Pure tests of the compiled table: golden text of what each feature adds
//! to the empty table (`testdata/*.nft`; the empty table itself is the
//! `skeleton` golden), and packet traces through the compiled ruleset with
//! weft-nft's tracer. Every compile here is also validated by weft-nft.
//!
//! Regenerate goldens with `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-proxy`
//! and review the diff.

mod cluster_ip;
mod endpoints;
mod external;
mod misc;
mod policy;
mod sync;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use weft_nft::trace::{trace, Packet, Proto, Trace, Verdict};

use crate::{compile, Compiled, NodeCtx, Snapshot};

pub const POD: &str = "10.244.0.3";
pub const NODE_IP: &str = "192.168.1.10";
pub const CLIENT: &str = "198.51.100.5";
/// Endpoints: EP_LOCAL on this node (node-1), EP_REMOTE on node-2.
pub const EP_LOCAL: &str = "10.244.0.5";
pub const EP_REMOTE: &str = "10.244.1.7";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn node() -> NodeCtx {
    NodeCtx {
        node_name: "node-1".into(),
        node_ips: vec![ip(NODE_IP), ip("fd00:1::10")],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        embedded: true,
    }
}

/// A Service from its JSON manifest.
pub fn service(v: Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// An EndpointSlice from its JSON manifest.
pub fn slice(v: Value) -> Arc<EndpointSlice> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// `default/web`: ClusterIP 10.96.0.10, port `http` 80/TCP → targetPort `http`.
pub fn web(spec_extra: Value) -> Arc<Service> {
    let mut spec = json!({
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
    });
    merge(&mut spec, spec_extra);
    service(json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec}))
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// One endpoint for [`slice_of`]: address, node, ready, serving, terminating.
pub fn ep(addr: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({
        "addresses": [addr],
        "nodeName": node,
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    })
}

pub fn ready(addr: &str, node: &str) -> Value {
    ep(addr, node, true, true, false)
}

/// An IPv4 slice `name` of Service `default/svc` with `ports` and endpoints.
pub fn slice_of(svc: &str, name: &str, ports: Value, endpoints: Vec<Value>) -> Arc<EndpointSlice> {
    let family = match endpoints.first().and_then(|e| e["addresses"][0].as_str()) {
        Some(a) if a.contains(':') => "IPv6",
        _ => "IPv4",
    };
    slice(json!({
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "ports": ports,
        "endpoints": endpoints,
    }))
}

/// `http` on 8080/TCP.
pub fn http_port() -> Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// Compiles and validates.
pub fn build(services: Vec<Arc<Service>>, slices: Vec<Arc<EndpointSlice>>) -> Compiled {
    let c = compile(
        &Snapshot {
            services,
            endpoint_slices: slices,
        },
        &node(),
    )
    .unwrap();
    c.ruleset.validate().unwrap();
    c
}

fn statements(c: &Compiled) -> Vec<String> {
    c.ruleset.create_statements()
}

/// Compares `text` with `testdata/NAME.nft` (or writes it when updating).
fn golden_file(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(format!("{name}.nft"));
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WEFT_UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(text, want, "golden {name} differs");
}

/// Golden of what `c` holds beyond the empty table, in create order.
pub fn golden(name: &str, c: &Compiled) {
    let empty: BTreeSet<String> = statements(&build(vec![], vec![])).into_iter().collect();
    let mut text: String = statements(c)
        .into_iter()
        .filter(|s| !empty.contains(s))
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    golden_file(name, &text);
}

pub fn tr(c: &Compiled, p: Packet) -> Trace {
    trace(&c.ruleset, &p).unwrap()
}

pub fn tcp(src: &str, dst: &str, port: u16) -> Packet {
    Packet::new(ip(src), ip(dst), Proto::Tcp, port)
}

pub fn targets(t: &Trace) -> Vec<String> {
    t.dnat_targets().into_iter().collect()
}

pub fn verdicts(t: &Trace) -> Vec<Verdict> {
    t.verdicts().into_iter().collect()
}

pub fn reset() -> Verdict {
    Verdict::Reject("tcp reset".into())
}

#[test]
fn empty_snapshot_compiles_to_the_fixed_skeleton() {
    let c = build(vec![], vec![]);
    let mut text = statements(&c).join("\n");
    text.push('\n');
    golden_file("skeleton", &text);
    assert_eq!(c.counts, crate::Counts::default());
}
