//! A small world of API objects for the table tests: namespaces, Services
//! with EndpointSlices, a GatewayClass of weft's, a Gateway `default/gw`,
//! an IngressClass `weft`, and builders for routes, Ingresses, Secrets
//! (certificates made with rcgen), ConfigMaps and policies.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};
use weft_gateway::api::{
    self, BackendTLSPolicy, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute,
};
use weft_gateway::compile::{self, Inputs, StatusUpdate};
use weft_gateway::table::{Action, Pick, Request, Table};

pub const ROUTE_NS: &str = "default";

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let v: Value =
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("fixture YAML: {e}\n{yaml}"));
    serde_json::from_value(v).unwrap_or_else(|e| panic!("fixture object: {e}\n{yaml}"))
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("fixture object: {e}\n{v}"))
}

/// Indents a YAML block under a key.
fn indent(block: &str, by: usize) -> String {
    block
        .lines()
        .map(|l| format!("{}{l}", " ".repeat(by)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Default, Clone)]
pub struct World {
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub http_routes: Vec<Arc<HTTPRoute>>,
    pub tls_routes: Vec<Arc<TLSRoute>>,
    pub grants: Vec<Arc<ReferenceGrant>>,
    pub policies: Vec<Arc<BackendTLSPolicy>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub config_maps: Vec<Arc<ConfigMap>>,
    pub namespaces: Vec<Arc<Namespace>>,
}

const SERVICES: &[&str] = &[
    "a", "b", "c", "root", "ab", "prefix", "exact", "foo", "bar", "wild", "api", "fallback", "new",
    "old", "idle",
];

impl World {
    /// Namespaces and Services only.
    pub fn bare() -> World {
        let mut w = World::default();
        for ns in ["default", "team-b"] {
            w.namespaces.push(Arc::new(from_json(
                json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}),
            )));
        }
        w
    }

    /// Services `a`, `b`, … in `default`, each port 80 (`http`) → 8080, one
    /// ready endpoint each (10.1.0.N) except `idle` (none); `a` also has a
    /// not-ready and a terminating endpoint.
    pub fn services(mut self) -> World {
        for (i, name) in SERVICES.iter().enumerate() {
            self.services.push(Arc::new(from_json(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}], "clusterIP": format!("10.96.1.{}", i + 1)}
            }))));
            if *name == "idle" {
                continue;
            }
            let mut endpoints = vec![
                json!({"addresses": [format!("10.1.0.{}", i + 1)], "conditions": {"ready": true}}),
            ];
            if *name == "a" {
                endpoints.push(json!({"addresses": ["10.1.0.2"], "conditions": {"ready": false}}));
                endpoints.push(json!({"addresses": ["10.1.0.3"], "conditions": {"ready": true, "terminating": true}}));
            }
            self.slices.push(Arc::new(from_json(json!({
                "metadata": {"name": format!("{name}-x1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))));
        }
        self
    }

    /// The usual world: namespaces, Services, weft's GatewayClass and
    /// IngressClass, and Gateway `default/gw` with listener `web` (port 80,
    /// HTTP, routes from all namespaces).
    pub fn new() -> World {
        World::bare()
            .services()
            .with_ingress_class("weft", api::CONTROLLER_NAME, false)
            .with_gateway_class("weft", api::CONTROLLER_NAME)
            .gateway_listeners("- {name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n")
    }

    pub fn with_gateway_class(mut self, name: &str, controller: &str) -> World {
        self.gateway_classes.push(Arc::new(from_json(json!({
            "metadata": {"name": name},
            "spec": {"controllerName": controller}
        }))));
        self
    }

    pub fn with_ingress_class(mut self, name: &str, controller: &str, default: bool) -> World {
        let mut meta = json!({"name": name});
        if default {
            meta["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
        }
        self.ingress_classes.push(Arc::new(from_json(
            json!({"metadata": meta, "spec": {"controller": controller}}),
        )));
        self
    }

    /// Replaces Gateway `default/gw`'s listeners (a YAML list).
    pub fn gateway_listeners(mut self, listeners: &str) -> World {
        self.gateways
            .retain(|g| g.metadata.name.as_deref() != Some("gw"));
        let yaml = format!(
            "metadata: {{name: gw, namespace: default, creationTimestamp: '2025-01-01T00:00:00Z', generation: 1}}\nspec:\n  gatewayClassName: weft\n  listeners:\n{}\n",
            indent(listeners.trim_end(), 2)
        );
        self.gateways.push(Arc::new(from_yaml(&yaml)));
        self
    }

    pub fn foreign_gateway(mut self) -> World {
        self = self.with_gateway_class("other", "example.com/other");
        self.gateways.push(Arc::new(from_yaml(
            "metadata: {name: foreign, namespace: default}\nspec: {gatewayClassName: other, listeners: [{name: web, port: 80, protocol: HTTP}]}\n",
        )));
        self
    }

    /// An HTTPRoute; without `parentRefs` in `spec` it attaches to `default/gw`.
    pub fn route(mut self, ns: &str, name: &str, created: &str, spec: &str) -> World {
        let mut spec_v: Value = serde_yaml::from_str(spec).expect("route spec YAML");
        if spec_v.get("parentRefs").is_none() {
            spec_v["parentRefs"] = json!([{"name": "gw", "namespace": "default"}]);
        }
        self.http_routes.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "generation": 1},
            "spec": spec_v,
        }))));
        self
    }

    pub fn tls_route(mut self, name: &str, spec: &str) -> World {
        let spec_v: Value = serde_yaml::from_str(spec).expect("route spec YAML");
        self.tls_routes.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec_v,
        }))));
        self
    }

    pub fn ingress(self, name: &str, created: &str, spec: &str) -> World {
        self.ingress_full(name, created, Some("weft"), spec)
    }

    pub fn ingress_with_class(self, name: &str, class: Option<&str>, spec: &str) -> World {
        self.ingress_full(name, "2026-01-01T00:00:00Z", class, spec)
    }

    fn ingress_full(mut self, name: &str, created: &str, class: Option<&str>, spec: &str) -> World {
        let mut spec_v: Value = serde_yaml::from_str(spec).expect("ingress spec YAML");
        if let Some(c) = class {
            spec_v["ingressClassName"] = json!(c);
        }
        self.ingresses.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": spec_v,
        }))));
        self
    }

    /// A `kubernetes.io/tls` Secret in `default` with a self-signed
    /// certificate for `hosts`.
    pub fn tls_secret(mut self, name: &str, hosts: &[&str]) -> World {
        let ck = rcgen::generate_simple_self_signed(
            hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        )
        .expect("make a certificate");
        let b64 = |s: String| k8s_openapi::ByteString(s.into_bytes());
        let mut data = std::collections::BTreeMap::new();
        data.insert("tls.crt".to_string(), b64(ck.cert.pem()));
        data.insert("tls.key".to_string(), b64(ck.signing_key.serialize_pem()));
        let mut s: Secret = from_json(
            json!({"metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/tls"}),
        );
        s.data = Some(data);
        self.secrets.push(Arc::new(s));
        self
    }

    /// Service `name` in `default` (port 80, `http`) with one ready
    /// endpoint at `addr` (replacing one of the same name).
    pub fn service_at(mut self, name: &str, addr: SocketAddr) -> World {
        self.services
            .retain(|s| s.metadata.name.as_deref() != Some(name));
        self.slices
            .retain(|s| s.metadata.name.as_deref() != Some(&format!("{name}-x1")));
        self.services.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": addr.port(), "protocol": "TCP"}]}
        }))));
        self.slices.push(Arc::new(from_json(json!({
            "metadata": {"name": format!("{name}-x1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}],
        }))));
        self
    }

    /// A `kubernetes.io/tls` Secret in `default` from PEM text.
    pub fn tls_secret_pem(mut self, name: &str, chain_pem: &str, key_pem: &str) -> World {
        self.secrets
            .retain(|s| s.metadata.name.as_deref() != Some(name));
        let mut data = std::collections::BTreeMap::new();
        data.insert(
            "tls.crt".to_string(),
            k8s_openapi::ByteString(chain_pem.as_bytes().to_vec()),
        );
        data.insert(
            "tls.key".to_string(),
            k8s_openapi::ByteString(key_pem.as_bytes().to_vec()),
        );
        let mut s: Secret = from_json(
            json!({"metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/tls"}),
        );
        s.data = Some(data);
        self.secrets.push(Arc::new(s));
        self
    }

    /// A ConfigMap with `ca.crt` from PEM text.
    pub fn ca_config_map_pem(mut self, name: &str, pem: &str) -> World {
        self.config_maps.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": "default"},
            "data": {"ca.crt": pem},
        }))));
        self
    }

    /// A ConfigMap holding a CA certificate under `ca.crt` (or, if not
    /// `valid`, under another key).
    pub fn ca_config_map(mut self, name: &str, valid: bool) -> World {
        let ck =
            rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).expect("make a CA");
        let key = if valid { "ca.crt" } else { "other.crt" };
        self.config_maps.push(Arc::new(from_json(json!({
            "metadata": {"name": name, "namespace": "default"},
            "data": {key: ck.cert.pem()},
        }))));
        self
    }

    pub fn policy(mut self, service: &str, config_map: &str, hostname: &str) -> World {
        self.policies.push(Arc::new(from_json(json!({
            "metadata": {"name": format!("{service}-tls"), "namespace": "default"},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": service}],
                "validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": config_map}], "hostname": hostname},
            },
        }))));
        self
    }

    /// A ReferenceGrant in `to_ns` letting `from_kind`s of `from_ns` refer to `to_kind`s.
    pub fn grant(mut self, to_ns: &str, from_kind: &str, from_ns: &str, to_kind: &str) -> World {
        self.grants.push(Arc::new(from_json(json!({
            "metadata": {"name": format!("from-{from_ns}"), "namespace": to_ns},
            "spec": {
                "from": [{"group": api::GROUP, "kind": from_kind, "namespace": from_ns}],
                "to": [{"group": "", "kind": to_kind}],
            },
        }))));
        self
    }

    pub fn compile_full(&self) -> compile::Compiled {
        let config = compile::Config {
            controller_name: api::CONTROLLER_NAME.into(),
            addresses: vec!["198.51.100.10".into()],
            ingress_http_port: 80,
            ingress_https_port: 443,
            now: Time("2026-06-01T00:00:00Z".parse().unwrap()),
        };
        compile::compile(
            &config,
            Inputs {
                gateway_classes: &self.gateway_classes,
                gateways: &self.gateways,
                http_routes: &self.http_routes,
                tls_routes: &self.tls_routes,
                reference_grants: &self.grants,
                backend_tls_policies: &self.policies,
                ingress_classes: &self.ingress_classes,
                ingresses: &self.ingresses,
                services: &self.services,
                slices: &self.slices,
                secrets: &self.secrets,
                config_maps: &self.config_maps,
                namespaces: &self.namespaces,
            },
        )
    }

    pub fn compile(&self) -> Compiled {
        Compiled(self.compile_full().table)
    }
}

/// What the table answers for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NoListener,
    NotFound,
    Redirect(u16, String),
    Invalid,
    NoEndpoints,
    Backend(String),
}

pub struct Compiled(pub Table);

impl Compiled {
    fn with_rule<R>(
        &self,
        port: u16,
        host: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        f: impl FnOnce(Result<&weft_gateway::table::Rule, Outcome>, &str, Option<&str>) -> R,
    ) -> R {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut hm = HeaderMap::new();
        for (k, v) in headers {
            hm.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let req = Request {
            method: &method,
            path,
            query,
            headers: &hm,
        };
        let Some(l) = self.0.listener(port, Some(host)) else {
            return f(Err(Outcome::NoListener), path, query);
        };
        match l.route(Some(host), &req) {
            Some(r) => f(Ok(r), path, query),
            None => f(Err(Outcome::NotFound), path, query),
        }
    }

    pub fn outcome_with(
        &self,
        port: u16,
        host: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Outcome {
        self.with_rule(port, host, method, target, headers, |r, path, query| {
            let rule = match r {
                Ok(r) => r,
                Err(o) => return o,
            };
            if let Some(red) = &rule.action.redirect {
                let scheme = if port == 443 { "https" } else { "http" };
                return Outcome::Redirect(
                    red.status,
                    red.location(scheme, host, port, path, query, &rule.matcher.path),
                );
            }
            match rule.action.pick(0) {
                Pick::Invalid => Outcome::Invalid,
                Pick::Backend(b) if b.endpoints.is_empty() => Outcome::NoEndpoints,
                Pick::Backend(b) => Outcome::Backend(b.name.clone()),
            }
        })
    }

    pub fn outcome(&self, port: u16, host: &str, method: &str, target: &str) -> Outcome {
        self.outcome_with(port, host, method, target, &[])
    }

    pub fn backend_with(
        &self,
        port: u16,
        host: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> String {
        match self.outcome_with(port, host, method, target, headers) {
            Outcome::Backend(b) => b,
            other => panic!("{method} {host}{target} on {port}: {other:?}, not a backend"),
        }
    }

    pub fn backend(&self, port: u16, host: &str, method: &str, target: &str) -> String {
        self.backend_with(port, host, method, target, &[])
    }

    pub fn action(&self, port: u16, host: &str, method: &str, target: &str) -> Arc<Action> {
        self.with_rule(port, host, method, target, &[], |r, _, _| match r {
            Ok(r) => r.action.clone(),
            Err(o) => panic!("{method} {host}{target}: {o:?}"),
        })
    }

    pub fn endpoints(&self, port: u16, host: &str, method: &str, target: &str) -> Vec<SocketAddr> {
        match self.action(port, host, method, target).pick(0) {
            Pick::Backend(b) => b.endpoints.clone(),
            Pick::Invalid => panic!("invalid backend"),
        }
    }

    pub fn certificate(&self, port: u16, sni: Option<&str>) -> bool {
        self.0
            .listener(port, sni)
            .is_some_and(|l| l.certificate.is_some())
    }
}

/// Our parent status entry of route `name`.
pub fn route_status(statuses: &[StatusUpdate], name: &str) -> Value {
    let s = statuses
        .iter()
        .find(|s| (s.kind == "HTTPRoute" || s.kind == "TLSRoute") && s.name == name)
        .unwrap_or_else(|| panic!("no status for route {name}: {statuses:?}"));
    s.status["parents"][0].clone()
}

pub fn gateway_status(statuses: &[StatusUpdate]) -> Value {
    statuses
        .iter()
        .find(|s| s.kind == "Gateway" && s.name == "gw")
        .unwrap_or_else(|| panic!("no Gateway status: {statuses:?}"))
        .status
        .clone()
}

pub fn listener_status(gw: &Value, name: &str) -> Value {
    gw["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no listener {name} in {gw}"))
}

/// (status, reason) of condition `type_`.
pub fn cond(v: &Value, type_: &str) -> (String, String) {
    let c = v["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {v}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

pub fn cond_message(v: &Value, type_: &str) -> String {
    v["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}
