//! Unit and property tests, with their objects written as the API serves
//! them (JSON into k8s-openapi types).

mod allocate;
mod announce;
mod pool;
mod props;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::{parse_pool, Family, NodeInfo, Pool, ANNOTATION_ADDRESSES, ANNOTATION_SHARING_KEY};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// A pool object with `addresses` and extra `spec` fields merged in.
pub fn pool_json(name: &str, addresses: &[&str], spec: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    });
    if let Value::Object(extra) = spec {
        for (k, v) in extra {
            obj["spec"][k] = v;
        }
    }
    obj
}

pub fn pool(name: &str, addresses: &[&str]) -> Pool {
    parse_pool(&pool_json(name, addresses, json!({}))).unwrap()
}

pub fn pool_with(name: &str, addresses: &[&str], spec: Value) -> Pool {
    parse_pool(&pool_json(name, addresses, spec)).unwrap()
}

/// A Service under construction: `type: LoadBalancer`, port 80/TCP, in
/// namespace `default`, created at 2024-01-01T00:00:00Z.
#[derive(Clone)]
pub struct Svc(pub Value);

/// The JSON, on one line (what a failing property prints).
impl std::fmt::Debug for Svc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Svc {
    pub fn lb(name: &str) -> Svc {
        Svc(json!({
            "metadata": {
                "namespace": "default",
                "name": name,
                "creationTimestamp": "2024-01-01T00:00:00Z",
            },
            "spec": {
                "type": "LoadBalancer",
                "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": name},
            },
        }))
    }

    pub fn ns(mut self, ns: &str) -> Svc {
        self.0["metadata"]["namespace"] = json!(ns);
        self
    }

    /// Created `secs` seconds after the base time.
    pub fn created(mut self, secs: u32) -> Svc {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        self.0["metadata"]["creationTimestamp"] =
            json!(format!("2024-01-01T{h:02}:{m:02}:{s:02}Z"));
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Svc {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Svc {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }

    pub fn addresses(self, list: &str) -> Svc {
        self.annotation(ANNOTATION_ADDRESSES, list)
    }

    pub fn sharing(self, key: &str) -> Svc {
        self.annotation(ANNOTATION_SHARING_KEY, key)
    }

    pub fn spec(mut self, k: &str, v: Value) -> Svc {
        self.0["spec"][k] = v;
        self
    }

    pub fn lb_ip(self, ip: &str) -> Svc {
        self.spec("loadBalancerIP", json!(ip))
    }

    pub fn ports(self, ports: &[(i32, &str)]) -> Svc {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(p, proto)| json!({"port": p, "protocol": proto}))
            .collect();
        self.spec("ports", json!(ports))
    }

    /// externalTrafficPolicy Local with selector `app=<app>`.
    pub fn local(self, app: &str) -> Svc {
        self.spec("externalTrafficPolicy", json!("Local"))
            .spec("selector", json!({"app": app}))
    }

    pub fn families(self, families: &[&str], policy: &str) -> Svc {
        self.spec("ipFamilies", json!(families))
            .spec("ipFamilyPolicy", json!(policy))
    }

    /// `status.loadBalancer.ingress` with these addresses.
    pub fn holding(mut self, list: &[&str]) -> Svc {
        let ingress: Vec<Value> = list
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        self.0["status"] = json!({"loadBalancer": {"ingress": ingress}});
        self
    }

    pub fn build(self) -> Service {
        serde_json::from_value(self.0).unwrap()
    }
}

/// An EndpointSlice of Service `default/<svc>`: `(address, node, ready)`.
pub fn slice(svc: &str, family: &str, endpoints: &[(&str, &str, bool)]) -> EndpointSlice {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(a, n, r)| json!({"addresses": [a], "nodeName": n, "conditions": {"ready": r}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "namespace": "default",
            "name": format!("{svc}-{}", family.to_lowercase()),
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": family,
        "endpoints": eps,
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

pub fn node(name: &str, labels: &[(&str, &str)], ready: bool) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ready,
    }
}
