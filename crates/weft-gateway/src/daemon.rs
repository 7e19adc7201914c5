//! `weft gateway` as a process: the API objects follow the cluster through
//! the shared watch layer ([`weft_kube`]: one store per kind, a readiness
//! gate, a bounded-frequency sync runner); every sync compiles a new table
//! ([`crate::compile`]), hands it to the proxy ([`Proxy::swap`]) and writes
//! the statuses that changed. Until the first complete listing the proxy
//! serves an empty table (every request 404) and `/readyz` says 503.
//!
//! Gateway API kinds are watched only if the API serves them (a real
//! cluster may not have the CRDs installed): a kind the API does not serve
//! is an empty list, with a warning at start.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use weft_kube::{Bounds, Gate, Kind, Readiness, Selector, Store, SyncRunner, Watches};

use crate::api::{BackendTLSPolicy, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute};
use crate::compile::{self, Inputs, StatusUpdate};
use crate::metrics::Metrics;
use crate::server::{AccessLog, Limits, Proxy};

/// What `weft gateway` runs with (from its flags).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub controller_name: String,
    pub bind: IpAddr,
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    /// Fixed addresses for status.
    pub addresses: Vec<String>,
    /// A Service whose addresses (load-balancer ingress, external IPs, else
    /// cluster IP) are written into status, as ingress-nginx's
    /// `--publish-service`.
    pub publish_service: Option<(String, String)>,
    pub metrics_addr: Option<SocketAddr>,
    pub access_log: AccessLog,
    pub limits: Limits,
}

/// Table syncs: at most every 20 ms, so a route edit is served within
/// tens of milliseconds while a burst of changes costs at most 50 builds a
/// second; at least every 60 s.
const TABLE_SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(20),
    max_interval: Duration::from_secs(60),
    retry_interval: Duration::from_secs(1),
    retry_max_interval: Duration::from_secs(30),
};

/// A store of a kind the API may not serve.
struct Optional<K: Kind> {
    store: Option<Store<K>>,
}

impl<K: Kind> Optional<K> {
    fn state(&self) -> Vec<Arc<K>> {
        self.store.as_ref().map(|s| s.state()).unwrap_or_default()
    }
}

/// Which Gateway API kinds the API serves (plural names), by discovery.
async fn served_gateway_kinds(client: &kube::Client) -> Vec<String> {
    let mut out = Vec::new();
    for version in ["v1", "v1beta1", "v1alpha2", "v1alpha3"] {
        let path = format!("/apis/{}/{version}", crate::api::GROUP);
        let req = match http::Request::get(&path).body(Vec::new()) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let Ok(list) = client
            .request::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>(req)
            .await
        else {
            continue;
        };
        for r in list.resources {
            out.push(format!("{version}/{}", r.name));
        }
    }
    out
}

fn optional<K>(
    watches: &Watches,
    served: &[String],
    readiness: &mut Vec<Readiness>,
    runner: &mut SyncRunner,
) -> Optional<K>
where
    K: Kind + k8s_openapi::Resource,
{
    let want = format!("{}/{}", K::VERSION, K::URL_PATH_SEGMENT);
    if !served.contains(&want) {
        tracing::warn!(
            kind = K::KIND,
            version = K::API_VERSION,
            "the API does not serve this kind: it is not watched"
        );
        return Optional { store: None };
    }
    let store = watches.store::<K>(Selector::all());
    readiness.push(store.readiness());
    runner.follow(store.changes());
    Optional { store: Some(store) }
}

fn required<K: Kind>(
    watches: &Watches,
    readiness: &mut Vec<Readiness>,
    runner: &mut SyncRunner,
) -> Store<K> {
    let store = watches.store::<K>(Selector::all());
    readiness.push(store.readiness());
    runner.follow(store.changes());
    store
}

/// Runs the gateway until the future is dropped.
pub async fn run(client: kube::Client, config: GatewayConfig) -> Result<()> {
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind the metrics/health port {addr}"))?;
        tokio::spawn(weft_kube::http::serve(
            listener,
            metrics.handler(),
            "gateway-metrics",
        ));
    }
    let proxy = Proxy::new(
        config.bind,
        config.limits.clone(),
        config.access_log,
        metrics.clone(),
    );
    run_with(client, config, proxy).await
}

/// [`run`] with a proxy made by the caller (tests remap its ports).
pub async fn run_with(
    client: kube::Client,
    config: GatewayConfig,
    proxy: Arc<Proxy>,
) -> Result<()> {
    let metrics = proxy.metrics.clone();
    let served = served_gateway_kinds(&client).await;
    let watches = Watches::new(client.clone());
    let mut readiness = Vec::new();
    let mut runner = SyncRunner::new("gateway-table", TABLE_SYNC);
    let r = &mut readiness;
    let gateway_classes = optional::<GatewayClass>(&watches, &served, r, &mut runner);
    let gateways = optional::<Gateway>(&watches, &served, r, &mut runner);
    let http_routes = optional::<HTTPRoute>(&watches, &served, r, &mut runner);
    let tls_routes = optional::<TLSRoute>(&watches, &served, r, &mut runner);
    let grants = optional::<ReferenceGrant>(&watches, &served, r, &mut runner);
    let policies = optional::<BackendTLSPolicy>(&watches, &served, r, &mut runner);
    let ingress_classes = required::<IngressClass>(&watches, r, &mut runner);
    let ingresses = required::<Ingress>(&watches, r, &mut runner);
    let services = required::<Service>(&watches, r, &mut runner);
    let slices = required::<EndpointSlice>(&watches, r, &mut runner);
    let secrets = required::<Secret>(&watches, r, &mut runner);
    let config_maps = required::<ConfigMap>(&watches, r, &mut runner);
    let namespaces = required::<Namespace>(&watches, r, &mut runner);
    let gate = Gate::new(readiness);
    let writer = StatusWriter::new(client);
    let Err(e) = runner
        .run(&gate, async || -> Result<(), anyhow::Error> {
            let started = Instant::now();
            let (gcs, gws, hrs, trs, rgs, bps) = (
                gateway_classes.state(),
                gateways.state(),
                http_routes.state(),
                tls_routes.state(),
                grants.state(),
                policies.state(),
            );
            let (ics, ings, svcs, sls, secs, cms, nss) = (
                ingress_classes.state(),
                ingresses.state(),
                services.state(),
                slices.state(),
                secrets.state(),
                config_maps.state(),
                namespaces.state(),
            );
            let mut addresses = config.addresses.clone();
            if let Some((ns, name)) = &config.publish_service {
                addresses.extend(service_addresses(&services.get_namespaced(ns, name)));
            }
            let cc = compile::Config {
                controller_name: config.controller_name.clone(),
                addresses,
                ingress_http_port: config.ingress_http_port,
                ingress_https_port: config.ingress_https_port,
                now: Time(jiff::Timestamp::now()),
            };
            let compiled = compile::compile(
                &cc,
                Inputs {
                    gateway_classes: &gcs,
                    gateways: &gws,
                    http_routes: &hrs,
                    tls_routes: &trs,
                    reference_grants: &rgs,
                    backend_tls_policies: &bps,
                    ingress_classes: &ics,
                    ingresses: &ings,
                    services: &svcs,
                    slices: &sls,
                    secrets: &secs,
                    config_maps: &cms,
                    namespaces: &nss,
                },
            );
            for w in &compiled.warnings {
                tracing::warn!("{w}");
            }
            let rules: usize = compiled
                .table
                .ports
                .values()
                .flat_map(|p| p.listeners.iter().map(|(_, l)| l.routes.iter().map(|(_, r)| r.len()).sum::<usize>()))
                .sum();
            let ports = compiled.table.ports.len();
            for e in proxy.swap(compiled.table) {
                tracing::error!("cannot serve {e}");
            }
            metrics.table_built(started.elapsed(), rules, ports);
            // Status: only what changed, against the objects as they are.
            let current = CurrentStatus {
                gcs: &gcs,
                gws: &gws,
                hrs: &hrs,
                trs: &trs,
                bps: &bps,
                ings: &ings,
            };
            let mut failed = None;
            for s in compiled.statuses {
                if current.same(&s) {
                    continue;
                }
                match writer.write(&s).await {
                    Ok(()) => metrics.status_written(),
                    Err(e) => {
                        tracing::warn!(kind = s.kind, name = %s.name, error = %e, "status not written");
                        failed.get_or_insert(e);
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await;
    Err(e).context("the gateway's watches stopped")
}

/// A Service's addresses for status: load-balancer ingress, else external
/// IPs, else its cluster IP.
fn service_addresses(svc: &Option<Arc<Service>>) -> Vec<String> {
    let Some(svc) = svc else { return Vec::new() };
    let lb: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    if let Some(ext) = spec.external_ips.filter(|e| !e.is_empty()) {
        return ext;
    }
    spec.cluster_ip
        .into_iter()
        .filter(|ip| ip != "None")
        .collect()
}

/// The objects as the stores hold them, to skip writing a status they
/// already carry.
struct CurrentStatus<'a> {
    gcs: &'a [Arc<GatewayClass>],
    gws: &'a [Arc<Gateway>],
    hrs: &'a [Arc<HTTPRoute>],
    trs: &'a [Arc<TLSRoute>],
    bps: &'a [Arc<BackendTLSPolicy>],
    ings: &'a [Arc<Ingress>],
}

fn status_of<T: serde::Serialize>(
    objs: &[Arc<T>],
    meta: impl Fn(&T) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    s: &StatusUpdate,
) -> Option<Value> {
    let o = objs.iter().find(|o| {
        let m = meta(o);
        m.name.as_deref() == Some(s.name.as_str()) && m.namespace == s.namespace
    })?;
    serde_json::to_value(&**o).ok()?.get("status").cloned()
}

impl CurrentStatus<'_> {
    fn same(&self, s: &StatusUpdate) -> bool {
        let have = match s.kind {
            "GatewayClass" => status_of(self.gcs, |o| &o.metadata, s),
            "Gateway" => status_of(self.gws, |o| &o.metadata, s),
            "HTTPRoute" => status_of(self.hrs, |o| &o.metadata, s),
            "TLSRoute" => status_of(self.trs, |o| &o.metadata, s),
            "BackendTLSPolicy" => status_of(self.bps, |o| &o.metadata, s),
            "Ingress" => status_of(self.ings, |o| &o.metadata, s),
            _ => None,
        };
        have.is_some_and(|h| json_eq_ignoring_nulls(&h, &s.status))
    }
}

/// Equality where a null or absent field, an empty list and an empty
/// object are the same (the API drops them, typed objects write them).
fn json_eq_ignoring_nulls(a: &Value, b: &Value) -> bool {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.values().all(empty),
            _ => false,
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().all(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => json_eq_ignoring_nulls(p, q),
                (Some(v), None) | (None, Some(v)) => empty(v),
                (None, None) => true,
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq_ignoring_nulls(p, q))
        }
        _ => a == b || (empty(a) && empty(b)),
    }
}

/// Kind, namespace, name.
type ObjectKey = (&'static str, Option<String>, String);

/// Writes statuses with merge patches of the status subresource.
struct StatusWriter {
    client: kube::Client,
    /// What was last written per object, so an unchanged status is not
    /// rewritten while the store has not caught up yet.
    last: Mutex<HashMap<ObjectKey, Value>>,
}

impl StatusWriter {
    fn new(client: kube::Client) -> Self {
        StatusWriter {
            client,
            last: Mutex::new(HashMap::new()),
        }
    }

    async fn write(&self, s: &StatusUpdate) -> Result<()> {
        let key = (s.kind, s.namespace.clone(), s.name.clone());
        if self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            == Some(&s.status)
        {
            return Ok(());
        }
        let (group, version, plural) = match s.kind {
            "GatewayClass" => (crate::api::GROUP, "v1", "gatewayclasses"),
            "Gateway" => (crate::api::GROUP, "v1", "gateways"),
            "HTTPRoute" => (crate::api::GROUP, "v1", "httproutes"),
            "TLSRoute" => (
                crate::api::GROUP,
                <TLSRoute as k8s_openapi::Resource>::VERSION,
                "tlsroutes",
            ),
            "BackendTLSPolicy" => (
                crate::api::GROUP,
                <BackendTLSPolicy as k8s_openapi::Resource>::VERSION,
                "backendtlspolicies",
            ),
            "Ingress" => ("networking.k8s.io", "v1", "ingresses"),
            other => anyhow::bail!("no status writer for {other}"),
        };
        let gvk = kube::api::GroupVersionKind::gvk(group, version, s.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = match &s.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let patch = serde_json::json!({ "status": s.status });
        api.patch_status(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("write the status of {} {}", s.kind, s.name))?;
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, s.status.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_the_api_stored_without_empty_fields_counts_as_the_same() {
        let stored = json!({"parents": [{"conditions": [{"type": "Accepted", "status": "True"}]}]});
        let ours = json!({"parents": [{"conditions": [{"type": "Accepted", "status": "True", "observedGeneration": null}], "extra": []}]});
        assert!(json_eq_ignoring_nulls(&stored, &ours));
        let changed =
            json!({"parents": [{"conditions": [{"type": "Accepted", "status": "False"}]}]});
        assert!(!json_eq_ignoring_nulls(&stored, &changed));
    }
}
