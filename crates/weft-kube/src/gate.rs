//! The readiness gate: a feature's first sync waits until every store it reads has
//! completed its initial list (kube-proxy's `isInitialized()`), so it never programs
//! the kernel from a half-known cluster (e.g. deleting rules for Services it has not
//! listed yet).

use std::time::Duration;

use crate::store::{Readiness, StoreId};
use crate::Error;

/// How often a gate still closed says which stores it waits for.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Open once every store it names is ready. A gate over no store is open.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    stores: Vec<Readiness>,
}

impl Gate {
    pub fn new(stores: impl IntoIterator<Item = Readiness>) -> Self {
        Gate {
            stores: stores.into_iter().collect(),
        }
    }

    /// Whether every store has listed.
    pub fn is_open(&self) -> bool {
        self.stores.iter().all(Readiness::is_ready)
    }

    /// The stores that have not listed yet.
    pub fn pending(&self) -> Vec<&StoreId> {
        self.stores
            .iter()
            .filter(|r| !r.is_ready())
            .map(Readiness::id)
            .collect()
    }

    /// Resolves once every store has listed, logging the missing ones now and then.
    pub async fn wait(&self) -> Result<(), Error> {
        let all = futures::future::try_join_all(self.stores.iter().map(Readiness::wait));
        futures::pin_mut!(all);
        loop {
            tokio::select! {
                result = &mut all => return result.map(|_| ()),
                () = tokio::time::sleep(REPORT_EVERY) => {
                    let pending: Vec<String> = self.pending().iter().map(|id| id.to_string()).collect();
                    tracing::info!(stores = ?pending, "waiting for the first list of");
                }
            }
        }
    }
}

/// Resolves once every one of `stores` has completed its initial list.
pub async fn wait_ready(stores: &[Readiness]) -> Result<(), Error> {
    Gate::new(stores.iter().cloned()).wait().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{feed, Selector};
    use k8s_openapi::api::core::v1::{Node, Service};
    use kube::runtime::watcher::Event;

    #[test]
    fn gate_over_no_store_is_open() {
        assert!(Gate::default().is_open());
    }

    #[test]
    fn gate_opens_only_when_every_store_has_listed() {
        let (mut nodes, node_store) = feed::<Node>(Selector::all());
        let (mut services, service_store) = feed::<Service>(Selector::all());
        let gate = Gate::new([node_store.readiness(), service_store.readiness()]);
        nodes.apply(&Event::Init);
        nodes.apply(&Event::InitDone);
        assert!(!gate.is_open());
        let pending: Vec<String> = gate.pending().iter().map(|id| id.to_string()).collect();
        assert_eq!(pending, ["Service"]);
        services.apply(&Event::Init);
        services.apply(&Event::InitDone);
        assert!(gate.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn wait_resolves_after_the_last_store_lists() {
        let (mut nodes, node_store) = feed::<Node>(Selector::all());
        let (mut services, service_store) = feed::<Service>(Selector::all());
        let stores = [node_store.readiness(), service_store.readiness()];
        let waiter = tokio::spawn(async move { wait_ready(&stores).await });
        nodes.apply(&Event::InitDone);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished(), "one store has not listed yet");
        services.apply(&Event::InitDone);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn wait_fails_when_a_store_can_never_list() {
        let (feed, store) = feed::<Service>(Selector::all());
        drop(feed);
        let err = Gate::new([store.readiness()]).wait().await.unwrap_err();
        assert!(matches!(err, Error::StoreClosed { ref store, .. } if store == "Service"));
    }
}
