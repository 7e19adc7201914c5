//! Builders for the objects the unit tests feed the compile functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodIP,
    PodSpec, PodStatus, Service, ServicePort, ServiceSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn ts(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

pub fn tp_int(n: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(n))
}

pub fn tp_name(n: &str) -> Option<IntOrString> {
    Some(IntOrString::String(n.into()))
}

pub fn service(
    ns: &str,
    name: &str,
    selector: &[(&str, &str)],
    ports: &[(&str, i32, Option<IntOrString>)],
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-svc-{name}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: (!selector.is_empty()).then(|| map(selector)),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, t)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        target_port: t.clone(),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub struct PodBuilder(Pod);

pub fn pod(ns: &str, name: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    })
}

impl PodBuilder {
    pub fn labels(mut self, kv: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(map(kv));
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        let st = self.0.status.get_or_insert_with(Default::default);
        st.pod_ip = Some(ip.into());
        st.pod_ips = Some(vec![PodIP { ip: ip.into() }]);
        st.phase = Some("Running".into());
        self
    }
    pub fn ready(mut self) -> Self {
        let st = self.0.status.get_or_insert_with(Default::default);
        st.conditions
            .get_or_insert_with(Vec::new)
            .push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        self
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self
    }
    pub fn node(mut self, node: &str) -> Self {
        self.0.spec.as_mut().unwrap().node_name = Some(node.into());
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(ts(1_000_000));
        self
    }
    pub fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(ts(secs));
        self
    }
    pub fn port(mut self, name: &str, n: i32) -> Self {
        self.0.spec.as_mut().unwrap().containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: Some(name.into()),
                container_port: n,
                ..Default::default()
            });
        self
    }
    pub fn host(mut self, hostname: &str, subdomain: &str) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.hostname = Some(hostname.into());
        spec.subdomain = Some(subdomain.into());
        self
    }
    pub fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }
    pub fn node_selector(mut self, kv: &[(&str, &str)]) -> Self {
        self.0.spec.as_mut().unwrap().node_selector = Some(map(kv));
        self
    }
    pub fn with(mut self, f: impl FnOnce(&mut Pod)) -> Self {
        f(&mut self.0);
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}

pub fn node(name: &str, ready: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(map(&[("kubernetes.io/hostname", name)])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        time_added: None,
    }
}
