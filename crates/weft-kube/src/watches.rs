//! The process-wide registry of stores: the first consumer asking for a (kind,
//! selector) starts its watcher; every later one gets the same store, so a process
//! runs one watch per kind and selector however many features read it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use crate::store::{feed, Feed, Kind, Selector, Store, TaskGuard};

/// Each store as `Store<K>` behind `Any`, keyed by `K`'s type and the selector.
type Registry = HashMap<(TypeId, Selector), Box<dyn Any + Send + Sync>>;

/// The stores of one process, keyed by kind and selector. Clones share the registry.
#[derive(Clone)]
pub struct Watches {
    client: kube::Client,
    stores: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.stores.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("Watches").field("stores", &count).finish()
    }
}

impl Watches {
    pub fn new(client: kube::Client) -> Self {
        Watches {
            client,
            stores: Arc::default(),
        }
    }

    /// The shared store of `K` objects matching `selector`, across all namespaces.
    /// The first call spawns its watcher on the current tokio runtime (list, then
    /// watch, relisting with kube-rs's default backoff after errors); the watcher
    /// stops when the registry and every handle of the store are dropped.
    pub fn store<K: Kind>(&self, selector: Selector) -> Store<K> {
        let key = (TypeId::of::<K>(), selector.clone());
        // The map holds plain values; a panic elsewhere while it was locked cannot
        // have left it half-written.
        let mut stores = self
            .stores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = stores.get(&key).and_then(|s| s.downcast_ref::<Store<K>>()) {
            return existing.clone();
        }
        let config = selector.watcher_config();
        let (feed, store) = feed::<K>(selector);
        let api: Api<K> = Api::all(self.client.clone());
        let task = tokio::spawn(watch(api, config, feed));
        let store = store.with_task(Arc::new(TaskGuard(task)));
        stores.insert(key, Box::new(store.clone()));
        store
    }
}

/// Feeds one store from its watcher for as long as the store is in use.
async fn watch<K: Kind>(api: Api<K>, config: watcher::Config, mut feed: Feed<K>) {
    let events = watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    tracing::debug!(store = %feed.id(), "watch started");
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => feed.apply(&event),
            Err(e) => {
                tracing::warn!(store = %feed.id(), error = %e, "watch failed; relisting after backoff")
            }
        }
    }
    // The backoff stream retries forever; ending is unexpected.
    tracing::error!(store = %feed.id(), "watch stream ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    /// A client for an address nothing listens on: the watchers only retry, which is
    /// all these tests need.
    fn unreachable_client() -> kube::Client {
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        kube::Client::try_from(cfg).unwrap()
    }

    #[tokio::test]
    async fn same_kind_and_selector_share_one_store() {
        let watches = Watches::new(unreachable_client());
        let a = watches.store::<Node>(Selector::all());
        let b = watches.clone().store::<Node>(Selector::all());
        assert!(a.same_as(&b));
    }

    #[tokio::test]
    async fn another_selector_gets_its_own_store() {
        let watches = Watches::new(unreachable_client());
        let all = watches.store::<Pod>(Selector::all());
        let local = watches.store::<Pod>(Selector::fields("spec.nodeName=n1"));
        assert!(!all.same_as(&local));
        assert_eq!(local.id().to_string(), "Pod{fields=spec.nodeName=n1}");
    }
}
