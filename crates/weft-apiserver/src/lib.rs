//! The embedded control plane's Kubernetes-compatible API server subset.
//!
//! HTTP/1.1; JSON, YAML or kube's protobuf in, JSON out; over TLS with bearer-token authentication and RBAC
//! when opened with [`ApiServer::open_secured`] (what the embedded cluster
//! does), plain and open otherwise (in-process tests of the API semantics). Enough of the API that
//! kube-rs clients/watchers and kubectl work unchanged: discovery,
//! get/list/watch (resourceVersion, bookmarks, 410 Gone), create/update/
//! delete/deletecollection, merge/strategic/JSON patch, server-side apply as
//! create-or-replace, status and scale subresources, OpenAPI v2/v3 and
//! field validation, label and field selectors,
//! optimistic concurrency, Status errors, ClusterIP/NodePort/podCIDR
//! allocation, graceful pod deletion, finalizers, ownerReference GC and
//! namespace deletion; CustomResourceDefinitions and the custom resources
//! they define, validated against their structural schemas and CEL rules
//! ([`crd`]). Objects persist as one JSON file each under `state_dir`.
//!
//! Limits as kube-apiserver's ([`Limits`]): request bodies up to 3 MiB and
//! stored objects up to 1.5 MiB (413 RequestEntityTooLarge beyond), 400
//! non-watch requests and a separate number of watches in flight (429
//! TooManyRequests with `Retry-After` beyond), and a watch history bounded
//! by count and bytes (410 Gone for resumes from before it). The store holds
//! at most 10,000 objects of one kind per namespace and 50,000 of one kind in
//! the cluster (403 Forbidden, as a ResourceQuota refusal, beyond).
//!
//! ```no_run
//! # async fn f(cfg: weft_apiserver::ApiServerConfig) -> Result<(), weft_apiserver::Error> {
//! let api = weft_apiserver::ApiServer::open(cfg)?;
//! let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(weft_apiserver::Error::Bind)?;
//! tokio::spawn(api.clone().serve(l1));
//! # Ok(()) }
//! ```

mod access;
pub mod auth;
pub mod crd;
pub mod events_v1;
mod http;
pub mod kinds;
pub mod openapi;
mod openapi_v2;
mod patch;
pub mod pbjson;
pub mod pki;
mod protobuf;
pub mod rbac;
mod registry;
pub mod scale;
pub mod selector;
#[cfg(test)]
mod service_tests;
pub mod status;
mod store;
mod streaming;
mod table;
#[cfg(test)]
mod tests;
mod validate;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;

pub use crate::http::BoxBody;
use crate::store::State;

/// Where and how the API server keeps and allocates things.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Persistence directory (created if missing).
    pub state_dir: PathBuf,
    /// Service CIDR, e.g. 10.96.0.0/12.
    pub service_cidr: Ipv4Net,
    /// Cluster CIDR, e.g. 10.244.0.0/16 (node podCIDRs are /24s of it).
    pub cluster_cidr: Ipv4Net,
    /// NodePort range, inclusive, e.g. (30000, 32767).
    pub node_port_range: (u16, u16),
    /// The API endpoint published as default/kubernetes, e.g. 192.168.1.2:6443.
    pub kubernetes_endpoint: (Ipv4Addr, u16),
    /// Where each node's kubelet endpoint listens (a unix socket path,
    /// `{node}` standing for the node's name), for `pods/log`, `exec`,
    /// `attach` and `portforward`; `None`: those answer 404 "no node
    /// connection configured".
    pub kubelet_sockets: Option<String>,
}

/// Request and storage limits, kube-apiserver's defaults unless a test
/// needs smaller ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (kube-apiserver's `MaxRequestBodyBytes`, 3 MiB);
    /// larger → 413 RequestEntityTooLarge.
    pub max_request_body_bytes: usize,
    /// Largest object once serialized for storage (etcd's 1.5 MiB request
    /// limit); larger → 413.
    pub max_object_bytes: usize,
    /// Non-watch requests served at once (`--max-requests-inflight` 400);
    /// beyond → 429 TooManyRequests with `Retry-After: 1`.
    pub max_requests_in_flight: usize,
    /// Open watch streams (kube-apiserver exempts long-running requests
    /// from max-in-flight; a separate cap keeps their tasks bounded).
    pub max_watches_in_flight: usize,
    /// Events kept for resuming watches, by count…
    pub watch_history_len: usize,
    /// …and by serialized bytes (whichever bound is hit first).
    pub watch_history_bytes: usize,
    /// Objects of one kind in one namespace (e.g. pods in `default`).
    pub max_objects_per_namespace: usize,
    /// Objects of one kind in the whole cluster (namespaced kinds summed
    /// over namespaces; cluster-scoped kinds such as nodes too).
    ///
    /// Creates beyond either count get 403 Forbidden shaped like a
    /// ResourceQuota refusal (`exceeded quota: …`); deletes free the room.
    /// Why 10,000 and 50,000 on a development machine of about 24 GiB: the
    /// store keeps every object as a `serde_json::Value` (a pod of 2–4 KiB
    /// of JSON is some 20–40 KiB in memory), every watcher of the kind
    /// (controllers, each node's agent and runtime, DNS) holds its own typed
    /// copy, and each object is one file on disk (a 4 KiB block at least).
    /// 50,000 pods are then roughly 2 GiB in the API server, 1–2 GiB per
    /// full-copy watcher and 200 MiB of small files: a lot, but the machine
    /// survives and `kubectl` still answers, whereas `replicas: 1000000`
    /// unchecked would need tens of GiB. 10,000 per namespace keeps one
    /// runaway workload from taking the whole cluster-wide room, and is
    /// still 90 nodes' worth of kubelet's default 110 pods per node.
    pub max_objects_per_kind: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_body_bytes: 3 << 20,
            max_object_bytes: store::MAX_OBJECT_BYTES,
            max_requests_in_flight: 400,
            max_watches_in_flight: 1000,
            watch_history_len: store::HISTORY_LEN,
            watch_history_bytes: store::HISTORY_BYTES,
            max_objects_per_namespace: store::MAX_OBJECTS_PER_NAMESPACE,
            max_objects_per_kind: store::MAX_OBJECTS_PER_KIND,
        }
    }
}

/// Errors of opening and serving (request errors are `Status` responses).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: stored object is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("creating default object {what}: {message}")]
    Defaults { what: String, message: String },
    #[error("binding the API listener: {0}")]
    Bind(std::io::Error),
    #[error("accepting API connections: {0}")]
    Accept(std::io::Error),
    #[error("API security setup: {0}")]
    Security(String),
}

/// What a secured server authenticates with and serves TLS from.
pub(crate) struct Security {
    pub(crate) authn: auth::Authenticator,
    pub(crate) tls: tokio_rustls::TlsAcceptor,
    /// The CA certificate (PEM), published as ConfigMap `kube-root-ca.crt`
    /// in every namespace.
    pub(crate) ca_pem: String,
}

/// The API server: an object store plus its HTTP front.
pub struct ApiServer {
    config: ApiServerConfig,
    limits: Limits,
    state: Mutex<State>,
    /// TLS and authentication; `None` serves plain HTTP to anyone.
    pub(crate) security: Option<Security>,
    /// The RBAC index and the RBAC generation it was built at.
    pub(crate) rbac: Mutex<Option<(u64, Arc<rbac::RbacIndex>)>>,
    /// Permits for non-watch requests in flight.
    requests: Arc<tokio::sync::Semaphore>,
    /// Permits for open watch streams.
    watches: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ApiServer {
    /// Loads persisted objects and creates the defaults if absent: namespaces
    /// default, kube-system, kube-public, kube-node-lease; Service
    /// default/kubernetes (10.96.0.1:443 "https" → 6443) and its
    /// EndpointSlice (the configured endpoint, ready).
    pub fn open(config: ApiServerConfig) -> Result<Arc<ApiServer>, Error> {
        ApiServer::open_with_limits(config, Limits::default())
    }

    /// [`ApiServer::open`] with other limits than kube-apiserver's defaults.
    pub fn open_with_limits(
        config: ApiServerConfig,
        limits: Limits,
    ) -> Result<Arc<ApiServer>, Error> {
        ApiServer::open_inner(config, limits, None)
    }

    /// A server that speaks only HTTPS (the PKI's serving certificate),
    /// authenticates every request (the static `tokens` and ServiceAccount
    /// tokens signed by the PKI's key) and authorizes it with RBAC. Also
    /// creates the default RBAC roles and bindings, and publishes the CA in
    /// every namespace (ConfigMap `kube-root-ca.crt`).
    pub fn open_secured(
        config: ApiServerConfig,
        limits: Limits,
        pki: &pki::Pki,
        tokens: Vec<(String, rbac::UserInfo)>,
    ) -> Result<Arc<ApiServer>, Error> {
        let security = Security {
            authn: auth::Authenticator::new(pki, tokens).map_err(|e| Error::Security(e.0))?,
            tls: tokio_rustls::TlsAcceptor::from(
                pki.server_config()
                    .map_err(|e| Error::Security(e.to_string()))?,
            ),
            ca_pem: pki.ca_cert_pem.clone(),
        };
        ApiServer::open_inner(config, limits, Some(security))
    }

    fn open_inner(
        config: ApiServerConfig,
        limits: Limits,
        security: Option<Security>,
    ) -> Result<Arc<ApiServer>, Error> {
        let mut state = State::load(&config.state_dir)?;
        state.max_object_bytes = limits.max_object_bytes;
        state.history_max_len = limits.watch_history_len;
        state.history_max_bytes = limits.watch_history_bytes;
        state.caps = store::ObjectCaps {
            per_namespace: limits.max_objects_per_namespace,
            per_kind: limits.max_objects_per_kind,
        };
        let api = Arc::new(ApiServer {
            config,
            requests: Arc::new(tokio::sync::Semaphore::new(limits.max_requests_in_flight)),
            watches: Arc::new(tokio::sync::Semaphore::new(limits.max_watches_in_flight)),
            limits,
            state: Mutex::new(state),
            security,
            rbac: Mutex::new(None),
        });
        api.create_defaults()?;
        Ok(api)
    }

    /// The limits this server enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The configuration this server was opened with.
    pub fn config(&self) -> &ApiServerConfig {
        &self.config
    }

    /// The OpenAPI v3 schemas of the custom resources this server serves,
    /// per group-version (`group/version`): `(kind, openAPIV3Schema)` for
    /// each, to merge into `/openapi/v3` documents.
    pub fn custom_resource_schemas(
        &self,
    ) -> std::collections::BTreeMap<String, Vec<(String, serde_json::Value)>> {
        self.lock().custom.openapi_schemas()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written
        // (every write is a single insert/remove), so a poisoned lock is
        // still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Decodes and validates a create request body for the resource `plural`
/// (e.g. "pods") of media type `content_type`, exactly as `POST` would
/// before storing it, against an empty cluster with the embedded cluster's
/// ranges: the defaulted object, or the error `POST` would answer. Pure (no
/// sockets, no disk); the fuzzing entry point.
pub fn validate_create(
    plural: &str,
    content_type: &str,
    body: &[u8],
) -> Result<serde_json::Value, status::ApiError> {
    let kind = kinds::by_plural(plural).ok_or_else(|| status::ApiError::not_found_path(plural))?;
    let config = ApiServerConfig {
        state_dir: PathBuf::new(),
        service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
        cluster_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: None,
    };
    if body.len() > Limits::default().max_request_body_bytes {
        return Err(status::ApiError::too_large(format!(
            "limit is {}",
            Limits::default().max_request_body_bytes
        )));
    }
    let obj = http::parse_bytes(content_type, body)?;
    registry::prepare_create(&config, &store::State::empty(), kind, "default", obj)
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A config with the usual embedded-cluster ranges.
    pub fn config(dir: &std::path::Path) -> crate::ApiServerConfig {
        crate::ApiServerConfig {
            state_dir: dir.to_path_buf(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_port_range: (30000, 32767),
            kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
            kubelet_sockets: None,
        }
    }
}
