//! The embedded control plane's Kubernetes-compatible API server subset.
//!
//! Plain HTTP/1.1 (no TLS, no auth), JSON only. Enough of the API that
//! kube-rs clients/watchers and kubectl work unchanged: discovery,
//! get/list/watch (resourceVersion, bookmarks, 410 Gone), create/update/
//! delete/deletecollection, merge/strategic/JSON patch, server-side apply as
//! create-or-replace, status subresources, label and field selectors,
//! optimistic concurrency, Status errors, ClusterIP/NodePort/podCIDR
//! allocation, graceful pod deletion, finalizers, ownerReference GC and
//! namespace deletion. Objects persist as one JSON file each under
//! `state_dir`.
//!
//! ```no_run
//! # async fn f(cfg: weft_apiserver::ApiServerConfig) -> Result<(), weft_apiserver::Error> {
//! let api = weft_apiserver::ApiServer::open(cfg)?;
//! let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(weft_apiserver::Error::Bind)?;
//! tokio::spawn(api.clone().serve(l1));
//! # Ok(()) }
//! ```

mod http;
pub mod kinds;
mod patch;
mod registry;
pub mod selector;
pub mod status;
mod store;
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
}

/// The API server: an object store plus its HTTP front.
pub struct ApiServer {
    config: ApiServerConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("config", &self.config)
            .finish()
    }
}

impl ApiServer {
    /// Loads persisted objects and creates the defaults if absent: namespaces
    /// default, kube-system, kube-public, kube-node-lease; Service
    /// default/kubernetes (10.96.0.1:443 "https" → 6443) and its
    /// EndpointSlice (the configured endpoint, ready).
    pub fn open(config: ApiServerConfig) -> Result<Arc<ApiServer>, Error> {
        let state = State::load(&config.state_dir)?;
        let api = Arc::new(ApiServer {
            config,
            state: Mutex::new(state),
        });
        api.create_defaults()?;
        Ok(api)
    }

    /// The configuration this server was opened with.
    pub fn config(&self) -> &ApiServerConfig {
        &self.config
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
        }
    }
}
