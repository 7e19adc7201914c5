//! Fixtures: pods, namespaces and policies as JSON (the API's own form),
//! and a verdict through the compiled rulesets of the nodes involved,
//! followed by weft-nft's packet tracer.

#![allow(dead_code)]

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use weft_nft::trace::{self, Packet, Verdict};
use weft_policy::{Model, NodeCtx, Proto, Snapshot};

pub struct World {
    pub pods: Vec<Pod>,
    pub namespaces: Vec<Namespace>,
    pub policies: Vec<NetworkPolicy>,
}

/// A pod `ns/name` at `ip` on `node` with `labels`, serving the upstream
/// e2e model's named ports (serve-80-tcp … serve-81-udp) and a SCTP port
/// serve-82-sctp.
pub fn pod(ns: &str, name: &str, ip: &str, node: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
            {"name": "serve-80-tcp", "containerPort": 80},
            {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
            {"name": "serve-81-tcp", "containerPort": 81, "protocol": "TCP"},
            {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
            {"name": "serve-82-sctp", "containerPort": 82, "protocol": "SCTP"},
        ]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

pub fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

pub fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// The upstream e2e model: namespaces x, y, z (label ns=<name>), pods a, b,
/// c in each (label pod=<name>); x's pods on node-1, y's on node-2, z's
/// split (a, b on node-1, c on node-2).
pub fn model_world() -> World {
    let mut pods = Vec::new();
    let mut namespaces = Vec::new();
    for (n, ns) in ["x", "y", "z"].iter().enumerate() {
        namespaces.push(namespace(ns, json!({"ns": ns})));
        for (m, p) in ["a", "b", "c"].iter().enumerate() {
            let node = match (*ns, *p) {
                ("x", _) | ("z", "a" | "b") => "node-1",
                _ => "node-2",
            };
            let subnet = if node == "node-1" { 0 } else { 1 };
            let ip = format!("10.244.{subnet}.{}", 10 + n * 3 + m);
            pods.push(pod(ns, p, &ip, node, json!({"pod": p})));
        }
    }
    World {
        pods,
        namespaces,
        policies: Vec::new(),
    }
}

impl World {
    pub fn with(mut self, p: NetworkPolicy) -> World {
        self.policies.push(p);
        self
    }

    pub fn model(&self) -> Model {
        Model::build(Snapshot::new(&self.pods, &self.namespaces, &self.policies))
    }

    pub fn ip(&self, key: &str) -> IpAddr {
        let (ns, name) = key.split_once('/').unwrap();
        let p = self
            .pods
            .iter()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .unwrap_or_else(|| panic!("no pod {key}"));
        p.status
            .as_ref()
            .unwrap()
            .pod_ip
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn node_of_ip(&self, ip: IpAddr) -> Option<String> {
        self.pods
            .iter()
            .find(|p| {
                p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some(ip.to_string().as_str())
            })
            .and_then(|p| p.spec.as_ref().unwrap().node_name.clone())
    }

    /// The verdict of the kernel rulesets for a new connection `src` →
    /// `dst`: traced on the source's node (egress) and the destination's
    /// node (ingress), or on the one node they share.
    pub fn traced(&self, src: IpAddr, dst: IpAddr, proto: Proto, port: u16) -> bool {
        let model = self.model();
        let mut nodes: Vec<String> = [self.node_of_ip(src), self.node_of_ip(dst)]
            .into_iter()
            .flatten()
            .collect();
        nodes.dedup();
        // With connection marks, as the agent compiles.
        let mut marks = weft_policy::Marks::default();
        marks.update_for(&model);
        nodes.iter().all(|node| {
            let c = weft_policy::compile_marked(
                &model,
                &NodeCtx {
                    node_name: node.clone(),
                },
                Some(&marks),
            )
            .expect("compile");
            let p = match proto {
                Proto::Tcp => trace::Proto::Tcp,
                Proto::Udp => trace::Proto::Udp,
                Proto::Sctp => trace::Proto::Sctp,
            };
            let t = trace::trace(&c.ruleset, &Packet::new(src, dst, p, port)).expect("trace");
            let v = t.verdicts();
            assert_eq!(v.len(), 1, "one verdict: {t:?}");
            v.contains(&Verdict::Accept)
        })
    }

    /// Traced verdict for `from` → `to` (pod keys), checked against the
    /// model's own verdict (what `weft explain` says).
    pub fn can(&self, from: &str, to: &str, proto: Proto, port: u16) -> bool {
        let (s, d) = (self.ip(from), self.ip(to));
        let traced = self.traced(s, d, proto, port);
        let model = weft_policy::allowed(&self.model(), s, d, proto, port);
        assert_eq!(
            traced, model,
            "{from} → {to} {port}/{proto}: ruleset says {traced}, model says {model}"
        );
        traced
    }

    /// Every ordered pod pair allowed for `proto`/`port`, as `from→to`.
    pub fn allowed_pairs(&self, proto: Proto, port: u16) -> Vec<String> {
        let keys: Vec<String> = self
            .pods
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap(),
                    p.metadata.name.as_deref().unwrap()
                )
            })
            .collect();
        let mut out = Vec::new();
        for f in &keys {
            // A pod to itself never leaves the pod: not a NetworkPolicy case.
            for t in keys.iter().filter(|t| *t != f) {
                if self.can(f, t, proto, port) {
                    out.push(format!("{f}→{t}"));
                }
            }
        }
        out
    }

    /// The pairs of `allowed_pairs` that are denied (every pair minus them).
    pub fn denied_pairs(&self, proto: Proto, port: u16) -> Vec<String> {
        let allowed = self.allowed_pairs(proto, port);
        let mut out = Vec::new();
        for f in &self.pods {
            for t in &self.pods {
                let k = format!(
                    "{}/{}→{}/{}",
                    f.metadata.namespace.as_deref().unwrap(),
                    f.metadata.name.as_deref().unwrap(),
                    t.metadata.namespace.as_deref().unwrap(),
                    t.metadata.name.as_deref().unwrap()
                );
                if !std::ptr::eq(f, t) && !allowed.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}
