//! One shared cache of one kind: a kube-rs reflector store written by a single
//! [`Feed`], read through cheap [`Store`] handles, with a readiness flag (the first
//! full list is in) and a "something changed" signal for every consumer.
//!
//! The feed is synchronous and takes watcher events one at a time, so tests drive a
//! store by feeding `watcher::Event`s directly, without an API server (as kube-rs
//! tests `reflector::store::Writer::apply_watcher_event`).

use std::fmt;
use std::sync::Arc;

use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::Error;

/// The object kinds a store can hold: typed k8s-openapi resources.
pub trait Kind:
    kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Which objects of a kind a store holds: a label and/or field selector, as the API
/// server takes them (`app=web`, `spec.nodeName=node-1`). The default holds all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    pub labels: Option<String>,
    pub fields: Option<String>,
}

impl Selector {
    /// Every object of the kind.
    pub fn all() -> Self {
        Self::default()
    }

    /// Objects whose labels match `selector`.
    pub fn labels(selector: impl Into<String>) -> Self {
        Selector {
            labels: Some(selector.into()),
            fields: None,
        }
    }

    /// Objects whose fields match `selector`.
    pub fn fields(selector: impl Into<String>) -> Self {
        Selector {
            labels: None,
            fields: Some(selector.into()),
        }
    }

    /// The watcher configuration that lists and watches exactly these objects.
    pub(crate) fn watcher_config(&self) -> watcher::Config {
        let mut config = watcher::Config::default();
        if let Some(l) = &self.labels {
            config = config.labels(l);
        }
        if let Some(f) = &self.fields {
            config = config.fields(f);
        }
        config
    }
}

/// A store's name in logs, errors and readiness reports: the kind and its selector,
/// e.g. `Node` or `Pod{fields=spec.nodeName=node-1}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreId {
    pub kind: String,
    pub selector: Selector,
}

impl StoreId {
    pub(crate) fn of<K: Kind>(selector: Selector) -> Self {
        StoreId {
            kind: K::kind(&()).into_owned(),
            selector,
        }
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        let parts: Vec<String> = [
            ("labels", &self.selector.labels),
            ("fields", &self.selector.fields),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
        .collect();
        if !parts.is_empty() {
            write!(f, "{{{}}}", parts.join(","))?;
        }
        Ok(())
    }
}

/// The single writer of a store: applies watcher events to the reflector store, marks
/// the store ready when the first list completed and signals a change whenever what
/// readers see changed.
pub struct Feed<K: Kind> {
    writer: reflector::store::Writer<K>,
    changes: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    id: Arc<StoreId>,
}

impl<K: Kind> fmt::Debug for Feed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new, empty and not yet ready store and its feed. [`Watches`](crate::Watches)
/// connects the feed to a watcher; tests feed it events by hand.
pub fn feed<K: Kind>(selector: Selector) -> (Feed<K>, Store<K>) {
    let writer = reflector::store::Writer::<K>::default();
    let (changes, changes_rx) = watch::channel(0);
    let (ready, ready_rx) = watch::channel(false);
    let id = Arc::new(StoreId::of::<K>(selector));
    let store = Store {
        reader: writer.as_reader(),
        changes: changes_rx,
        ready: ready_rx,
        id: id.clone(),
        task: None,
    };
    let feed = Feed {
        writer,
        changes,
        ready,
        id,
    };
    (feed, store)
}

impl<K: Kind> Feed<K> {
    /// Applies one watcher event. Objects listed after `Init` are buffered by the
    /// reflector and swapped in whole at `InitDone` (so a relist also removes objects
    /// whose delete was missed); readers see a change at `InitDone`, `Apply` and
    /// `Delete`, never in the middle of a list.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        match event {
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                self.ready
                    .send_if_modified(|ready| !std::mem::replace(ready, true));
                self.bump();
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => self.bump(),
        }
    }

    /// The store this feed writes.
    pub fn id(&self) -> &StoreId {
        &self.id
    }

    fn bump(&self) {
        // Works with no receiver at all: a consumer that subscribes later starts from
        // the current generation.
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// Keeps a store's watcher task alive while any handle of the store exists.
#[derive(Debug)]
pub(crate) struct TaskGuard(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A read handle of a shared store; clones are cheap and see the same objects.
pub struct Store<K: Kind> {
    reader: reflector::Store<K>,
    changes: watch::Receiver<u64>,
    ready: watch::Receiver<bool>,
    id: Arc<StoreId>,
    task: Option<Arc<TaskGuard>>,
}

impl<K: Kind> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            reader: self.reader.clone(),
            changes: self.changes.clone(),
            ready: self.ready.clone(),
            id: self.id.clone(),
            task: self.task.clone(),
        }
    }
}

impl<K: Kind> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .field("ready", &self.is_ready())
            .field("len", &self.len())
            .finish()
    }
}

impl<K: Kind> Store<K> {
    pub(crate) fn with_task(mut self, task: Arc<TaskGuard>) -> Self {
        self.task = Some(task);
        self
    }

    /// Whether both handles are the same shared store (one watch behind both).
    pub fn same_as(&self, other: &Store<K>) -> bool {
        Arc::ptr_eq(&self.id, &other.id)
    }

    /// Kind and selector of this store.
    pub fn id(&self) -> &StoreId {
        &self.id
    }

    /// Every object in the store (empty until the first list completed).
    pub fn state(&self) -> Vec<Arc<K>> {
        self.reader.state()
    }

    /// The cluster-scoped object called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        self.reader.get(&ObjectRef::new(name))
    }

    /// The object `namespace/name`.
    pub fn get_namespaced(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.reader.get(&ObjectRef::new(name).within(namespace))
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.reader.len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// The underlying kube-rs reader (for `find`, `state_filter_selector` …).
    pub fn reader(&self) -> &reflector::Store<K> {
        &self.reader
    }

    /// Whether the first full list has been applied (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// This store's readiness, for a [`Gate`](crate::Gate).
    pub fn readiness(&self) -> Readiness {
        Readiness {
            ready: self.ready.clone(),
            id: self.id.clone(),
        }
    }

    /// A fresh subscription to this store's changes, starting from now.
    pub fn changes(&self) -> Changes {
        let mut rx = self.changes.clone();
        rx.borrow_and_update();
        Changes {
            rx,
            id: self.id.clone(),
        }
    }

    /// Waits until `f` finds what it looks for in the store, re-evaluating it after
    /// every change.
    pub async fn wait_for<T>(&self, mut f: impl FnMut(&Store<K>) -> Option<T>) -> Result<T, Error> {
        let mut changes = self.changes();
        loop {
            if let Some(found) = f(self) {
                return Ok(found);
            }
            changes.changed().await?;
        }
    }
}

/// Whether one store has completed its first list; cloned into [`Gate`](crate::Gate)s.
#[derive(Debug, Clone)]
pub struct Readiness {
    ready: watch::Receiver<bool>,
    id: Arc<StoreId>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn id(&self) -> &StoreId {
        &self.id
    }

    /// Resolves once the store is ready.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| Error::StoreClosed {
                store: self.id.to_string(),
                what: "waiting for its first list",
            })
    }
}

/// A subscription to "something changed in this store". Changes that happen while
/// nobody waits are remembered as one (coalescing further is the runner's job).
#[derive(Debug, Clone)]
pub struct Changes {
    rx: watch::Receiver<u64>,
    id: Arc<StoreId>,
}

impl Changes {
    /// Resolves at the next change not yet seen (at once if one already happened).
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.rx.changed().await.map_err(|_| Error::StoreClosed {
            store: self.id.to_string(),
            what: "waiting for a change",
        })
    }

    /// Marks every change so far as seen.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Whether a change happened that is not yet seen.
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }

    pub fn id(&self) -> &StoreId {
        &self.id
    }

    pub(crate) fn into_parts(self) -> (watch::Receiver<u64>, Arc<StoreId>) {
        (self.rx, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(store: &Store<Node>) -> Vec<String> {
        let mut v: Vec<String> = store
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn store_is_not_ready_and_empty_until_the_first_list_is_done() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(node("a")));
        assert!(!store.is_ready());
        assert!(
            store.is_empty(),
            "listed objects are buffered until InitDone"
        );
        feed.apply(&watcher::Event::InitDone);
        assert!(store.is_ready());
        assert_eq!(names(&store), ["a"]);
    }

    #[test]
    fn apply_and_delete_update_the_store() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitDone);
        feed.apply(&watcher::Event::Apply(node("a")));
        feed.apply(&watcher::Event::Apply(node("b")));
        feed.apply(&watcher::Event::Delete(node("a")));
        assert_eq!(names(&store), ["b"]);
        assert!(store.get("b").is_some());
        assert!(store.get("a").is_none());
    }

    #[test]
    fn relist_drops_objects_whose_delete_was_missed() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(node("a")));
        feed.apply(&watcher::Event::InitApply(node("b")));
        feed.apply(&watcher::Event::InitDone);
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(node("b")));
        assert_eq!(
            names(&store),
            ["a", "b"],
            "old state stays visible during a relist"
        );
        feed.apply(&watcher::Event::InitDone);
        assert_eq!(names(&store), ["b"]);
    }

    #[test]
    fn changes_are_signalled_at_init_done_apply_and_delete_only() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        let mut changes = store.changes();
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(node("a")));
        assert!(!changes.has_changed(), "no change in the middle of a list");
        feed.apply(&watcher::Event::InitDone);
        assert!(changes.has_changed());
        changes.mark_seen();
        feed.apply(&watcher::Event::Apply(node("b")));
        assert!(changes.has_changed());
        changes.mark_seen();
        feed.apply(&watcher::Event::Delete(node("b")));
        assert!(changes.has_changed());
    }

    #[test]
    fn every_subscriber_sees_a_change() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        let first = store.changes();
        let second = store.clone().changes();
        feed.apply(&watcher::Event::Apply(node("a")));
        assert!(first.has_changed() && second.has_changed());
    }

    #[tokio::test]
    async fn changed_resolves_for_a_change_made_before_waiting() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        let mut changes = store.changes();
        feed.apply(&watcher::Event::Apply(node("a")));
        changes.changed().await.unwrap();
        assert!(!changes.has_changed());
    }

    #[tokio::test]
    async fn wait_for_resolves_when_the_object_arrives() {
        let (mut feed, store) = feed::<Node>(Selector::all());
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for(|s| s.get("me")).await })
        };
        feed.apply(&watcher::Event::Apply(node("other")));
        feed.apply(&watcher::Event::Apply(node("me")));
        let found = waiter.await.unwrap().unwrap();
        assert_eq!(found.metadata.name.as_deref(), Some("me"));
    }

    #[tokio::test]
    async fn readiness_wait_fails_when_the_feed_is_gone() {
        let (feed, store) = feed::<Node>(Selector::all());
        drop(feed);
        let err = store.readiness().wait().await.unwrap_err();
        assert!(err.to_string().contains("Node store"), "{err}");
    }

    #[test]
    fn store_id_names_kind_and_selector() {
        assert_eq!(StoreId::of::<Node>(Selector::all()).to_string(), "Node");
        let id = StoreId::of::<Pod>(Selector {
            labels: Some("app=web".into()),
            fields: Some("spec.nodeName=n1".into()),
        });
        assert_eq!(
            id.to_string(),
            "Pod{labels=app=web,fields=spec.nodeName=n1}"
        );
    }

    #[test]
    fn namespaced_objects_are_found_by_namespace_and_name() {
        let (mut feed, store) = feed::<Pod>(Selector::all());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        feed.apply(&watcher::Event::Apply(pod));
        assert!(store.get_namespaced("ns1", "p").is_some());
        assert!(store.get_namespaced("ns2", "p").is_none());
    }
}
