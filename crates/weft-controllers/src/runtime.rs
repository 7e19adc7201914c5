//! The apply side: each controller is a full level-triggered sync over shared
//! stores from the watch layer (`weft_kube`: one store per kind, shared by every
//! controller that reads it), run by its own bounded-frequency [`SyncRunner`]
//! behind one readiness gate over every store, and writing the difference
//! through the API.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info};
use weft_kube::{Bounds, Gate, Kind, Selector, Store, SyncError, SyncRunner, Watches};
use weft_linux::retry::Backoff;

use crate::endpointslice::{self, SliceAction};
use crate::events::{reference, Events, Record};
use crate::scheduler::{self, Decision};
use crate::util::{key, safe_encode, semantically_equal, terminating};
use crate::{daemonset, deployment, gc, replicaset, statefulset};

/// Every controller's runner: a burst of events within 50 ms makes one sync;
/// a sync at least every 10 s (retries unschedulable pods, minReadySeconds,
/// lost writes); 200 ms after a failed one, doubling (with jitter) up to 30 s
/// while it keeps failing; 200 ms after a conflict, quietly.
const SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(50),
    max_interval: Duration::from_secs(10),
    retry_interval: BACKOFF_MIN,
    retry_max_interval: BACKOFF_MAX,
};
/// The first and longest retry delay of a failing sync, and the per-owner
/// backoff of refused pod creates (exponential with jitter).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a write is trusted to show up in the stores before it is forgotten.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// A write that failed, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} {object}: {source}")]
    Api {
        verb: &'static str,
        kind: &'static str,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{count} writes failed, first: {first}")]
    Many { count: usize, first: Box<Error> },
}

impl Error {
    fn api(verb: &'static str, kind: &'static str, object: String, source: kube::Error) -> Self {
        Error::Api {
            verb,
            kind,
            object,
            source: Box::new(source),
        }
    }

    /// Only optimistic-concurrency or stale-store conflicts: retried quietly.
    fn is_conflict(&self) -> bool {
        match self {
            Error::Api { source, .. } => api_code(source) == Some(409),
            Error::Many { first, .. } => first.is_conflict(),
        }
    }

    fn collect(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            count => Err(Error::Many {
                count,
                first: Box::new(errors.remove(0)),
            }),
        }
    }
}

/// The API's own words for a failed write (the Status message), for
/// conditions a user reads; the whole chain for other failures.
fn refusal_message(e: &Error) -> String {
    match e {
        Error::Api { source, .. } => match &**source {
            kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
            other => other.to_string(),
        },
        Error::Many { first, .. } => refusal_message(first),
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_second(i64::try_from(d.as_secs()).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// 5 random-ish safe characters for a generated pod name.
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    safe_encode(
        std::collections::hash_map::RandomState::new().hash_one(n),
        5,
    )
}

fn snapshot<K: Kind>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| K::clone(o)).collect()
}

#[derive(Clone)]
struct Stores {
    pods: Store<Pod>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    nodes: Store<Node>,
}

/// One controller: a full level-triggered sync over the stores.
trait Controller {
    const NAME: &'static str;
    async fn reconcile(&mut self) -> Result<(), Error>;
}

/// Runs `c` behind `gate` by `runner`: on every change of the stores the
/// runner follows (coalesced), at least every max interval, and after a
/// failure again with the runner's backoff. Returns only if the gate can
/// never open.
async fn control_loop<C: Controller>(
    mut c: C,
    runner: SyncRunner,
    gate: Gate,
) -> Result<Infallible, weft_kube::Error> {
    runner
        .run_classified(&gate, async move || c.reconcile().await.map_err(classify))
        .await
}

/// A sync that failed only on an optimistic-concurrency or stale-store
/// conflict (409) is expected: the stores were behind the API, and the next
/// sync, a retry interval later, sees the newer objects. It is retried
/// quietly; every other failure backs off and is warned about.
fn classify(e: Error) -> SyncError<Error> {
    if e.is_conflict() {
        SyncError::Quiet(e)
    } else {
        SyncError::Failed(e)
    }
}

/// Owners whose pod creates the API refused, held back from creating again
/// until their own exponential backoff (with jitter) has passed: the sync
/// loop also runs on every pod or Deployment event, and without this each
/// of them would send another create into a full store.
struct CreateBackoff {
    policy: Backoff,
    owners: HashMap<String, Refused>,
}

struct Refused {
    retry_at: Instant,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
}

impl CreateBackoff {
    fn new(policy: Backoff) -> Self {
        CreateBackoff {
            policy,
            owners: HashMap::new(),
        }
    }

    /// Whether `owner`'s creates are still held back at `now`.
    fn holding(&self, owner: &str, now: Instant) -> bool {
        self.owners.get(owner).is_some_and(|r| now < r.retry_at)
    }

    /// A create of `owner` was refused at `now`: hold it back for the next
    /// delay. Returns that delay.
    fn refused(&mut self, owner: &str, now: Instant) -> Duration {
        let policy = self.policy;
        let r = self
            .owners
            .entry(owner.to_string())
            .or_insert_with(|| Refused {
                retry_at: now,
                delays: Box::new(policy.delays()),
            });
        let delay = r.delays.next().unwrap_or(policy.max);
        r.retry_at = now + delay;
        delay
    }

    /// `owner`'s creates went through (or none were needed): start afresh.
    fn accepted(&mut self, owner: &str) {
        self.owners.remove(owner);
    }
}

/// Pod writes made for one owner that the pod store has not shown yet; the
/// owner is left alone until it has (or the TTL passes), so a lagging store
/// never makes us create the same replica twice.
#[derive(Default)]
struct Expectations {
    pending: HashMap<String, Pending>,
}

struct Pending {
    namespace: String,
    creates: Vec<String>,
    deletes: Vec<String>,
    deadline: Instant,
}

impl Expectations {
    fn record(
        &mut self,
        owner: String,
        namespace: String,
        creates: Vec<String>,
        deletes: Vec<String>,
    ) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        let deadline = Instant::now() + EXPECTATION_TTL;
        self.pending.insert(
            owner,
            Pending {
                namespace,
                creates,
                deletes,
                deadline,
            },
        );
    }

    fn waiting(&mut self, owner: &str, pods: &Store<Pod>) -> bool {
        let Some(p) = self.pending.get(owner) else {
            return false;
        };
        let seen = |name: &String| pods.get_namespaced(&p.namespace, name);
        let done = p.creates.iter().all(|n| seen(n).is_some())
            && p.deletes
                .iter()
                .all(|n| seen(n).is_none_or(|pod| terminating(&*pod)));
        if done || Instant::now() > p.deadline {
            self.pending.remove(owner);
            false
        } else {
            true
        }
    }
}

async fn delete_pod(api: &Api<Pod>, ns: &str, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(Error::api("delete", "Pod", format!("{ns}/{name}"), e)),
    }
}

/// Creates a pod; an existing one of the same name counts as created.
async fn create_pod(api: &Api<Pod>, ns: &str, pod: &Pod) -> Result<(), Error> {
    match api.create(&PostParams::default(), pod).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) && pod.metadata.generate_name.is_none() => Ok(()),
        Err(e) => Err(Error::api(
            "create",
            "Pod",
            format!("{ns}/{}", pod.name_any()),
            e,
        )),
    }
}

struct EndpointSlices {
    client: Client,
    stores: Stores,
}

impl Controller for EndpointSlices {
    const NAME: &'static str = "endpointslices";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let services = snapshot(&self.stores.services);
        let pods = snapshot(&self.stores.pods);
        let existing = snapshot(&self.stores.slices);
        let desired = endpointslice::compile(&services, &pods);
        let mut errors = Vec::new();
        for action in endpointslice::plan(&desired, &existing) {
            let result = match &action {
                SliceAction::Create(s) => {
                    let api = Api::<EndpointSlice>::namespaced(
                        self.client.clone(),
                        &s.namespace().unwrap_or_default(),
                    );
                    api.create(&PostParams::default(), s)
                        .await
                        .map(|_| ())
                        .map_err(|e| ("create", key(s), e))
                }
                SliceAction::Update(s) => {
                    let api = Api::<EndpointSlice>::namespaced(
                        self.client.clone(),
                        &s.namespace().unwrap_or_default(),
                    );
                    api.replace(&s.name_any(), &PostParams::default(), s)
                        .await
                        .map(|_| ())
                        .map_err(|e| ("replace", key(s), e))
                }
                SliceAction::Delete { namespace, name } => {
                    let api = Api::<EndpointSlice>::namespaced(self.client.clone(), namespace);
                    match api.delete(name, &DeleteParams::default()).await {
                        Err(e) if api_code(&e) != Some(404) => {
                            Err(("delete", format!("{namespace}/{name}"), e))
                        }
                        _ => Ok(()),
                    }
                }
            };
            match result {
                Ok(()) => debug!(action = ?action_name(&action), "endpointslice written"),
                Err((verb, object, e)) => errors.push(Error::api(verb, "EndpointSlice", object, e)),
            }
        }
        Error::collect(errors)
    }
}

fn action_name(a: &SliceAction) -> String {
    match a {
        SliceAction::Create(s) => format!("create {}", key(s)),
        SliceAction::Update(s) => format!("update {}", key(s)),
        SliceAction::Delete { namespace, name } => format!("delete {namespace}/{name}"),
    }
}

/// Creates `pods` (named from their generateName plus a random suffix) in
/// upstream's slow-start batches, stopping at the first batch with a
/// failure: the names created, what became of the creates, and the errors.
async fn create_in_batches(
    api: &Api<Pod>,
    ns: &str,
    pods: Vec<Pod>,
) -> (Vec<Pod>, replicaset::CreateOutcome, Vec<Error>) {
    let mut created = Vec::new();
    let mut errors = Vec::new();
    let mut outcome = replicaset::CreateOutcome::Accepted;
    let mut pods = pods.into_iter();
    for size in replicaset::slow_start_batches(pods.len(), replicaset::SLOW_START_INITIAL_BATCH) {
        let batch: Vec<Pod> = pods
            .by_ref()
            .take(size)
            .map(|mut pod| {
                let name = format!(
                    "{}{}",
                    pod.metadata.generate_name.clone().unwrap_or_default(),
                    random_suffix()
                );
                pod.metadata.name = Some(name);
                pod
            })
            .collect();
        let results = futures::future::join_all(batch.iter().map(|p| create_pod(api, ns, p))).await;
        let mut failed = false;
        for (pod, r) in batch.into_iter().zip(results) {
            match r {
                Ok(()) => created.push(pod),
                Err(e) => {
                    if !failed {
                        outcome = replicaset::CreateOutcome::Refused(refusal_message(&e));
                    }
                    failed = true;
                    errors.push(e);
                }
            }
        }
        if failed {
            // Upstream's slow start: a failing batch (quota, a full API
            // server) stops this sync's creates.
            break;
        }
    }
    (created, outcome, errors)
}

/// Records SuccessfulCreate for each created pod and one FailedCreate for
/// the first refusal, regarding `owner` (upstream's pod control events).
async fn record_creates<K: kube::Resource<DynamicType = ()>>(
    events: &mut Events,
    owner: &K,
    created: &[Pod],
    outcome: &replicaset::CreateOutcome,
) {
    for p in created {
        events
            .publish(Record {
                regarding: reference(owner),
                related: Some(reference(p)),
                warning: false,
                reason: "SuccessfulCreate",
                action: "Create",
                note: format!("Created pod: {}", p.name_any()),
            })
            .await;
    }
    if let replicaset::CreateOutcome::Refused(message) = outcome {
        events
            .publish(Record {
                regarding: reference(owner),
                related: None,
                warning: true,
                reason: "FailedCreate",
                action: "Create",
                note: format!("Error creating: {message}"),
            })
            .await;
    }
}

/// Deletes the named pods of `owner`, recording SuccessfulDelete (or
/// FailedDelete) for each: the names deleted.
async fn delete_pods<K: kube::Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    ns: &str,
    names: Vec<String>,
    owner: &K,
    events: &mut Events,
    errors: &mut Vec<Error>,
) -> Vec<String> {
    let mut deleted = Vec::new();
    for name in names {
        let (warning, reason, note) = match delete_pod(api, ns, &name).await {
            Ok(()) => {
                deleted.push(name.clone());
                (false, "SuccessfulDelete", format!("Deleted pod: {name}"))
            }
            Err(e) => {
                let note = format!("Error deleting: {}", refusal_message(&e));
                errors.push(e);
                (true, "FailedDelete", note)
            }
        };
        events
            .publish(Record {
                regarding: reference(owner),
                related: None,
                warning,
                reason,
                action: "Delete",
                note,
            })
            .await;
    }
    deleted
}

struct Deployments {
    client: Client,
    stores: Stores,
    events: Events,
}

impl Controller for Deployments {
    const NAME: &'static str = "deployments";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let pods = snapshot(&self.stores.pods);
        let rss = snapshot(&self.stores.replicasets);
        let now = now();
        let mut errors = Vec::new();
        for d in snapshot(&self.stores.deployments) {
            if terminating(&d) {
                continue;
            }
            let owner = key(&d);
            let plan = deployment::plan(&d, &rss, &pods, now);
            let ns = d.namespace().unwrap_or_default();
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            for rs in &plan.create {
                match api.create(&PostParams::default(), rs).await {
                    Ok(_) => {}
                    // Our own, created a moment ago (the store lags): fine.
                    Err(e) if api_code(&e) == Some(409) => continue,
                    Err(e) => {
                        errors.push(Error::api("create", "ReplicaSet", key(rs), e));
                        continue;
                    }
                }
                let to = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                info!(deployment = %owner, replicaset = %rs.name_any(), replicas = to, "created replicaset");
                if to > 0 {
                    self.scaled(&d, rs, 0, to).await;
                }
            }
            for w in &plan.update {
                let patch = Patch::Merge(json!({
                    "metadata": {"annotations": w.annotations, "resourceVersion": w.resource_version},
                    "spec": {"replicas": w.replicas},
                }));
                match api.patch(&w.name, &PatchParams::default(), &patch).await {
                    Ok(rs) if w.from != w.replicas => {
                        info!(deployment = %owner, replicaset = %w.name, from = w.from, to = w.replicas, "scaled replicaset");
                        self.scaled(&d, &rs, w.from, w.replicas).await;
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(Error::api(
                        "scale",
                        "ReplicaSet",
                        format!("{ns}/{}", w.name),
                        e,
                    )),
                }
            }
            for name in &plan.delete {
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {
                        info!(deployment = %owner, replicaset = %name, "deleted old replicaset")
                    }
                    Err(e) if api_code(&e) == Some(404) => {}
                    Err(e) => errors.push(Error::api(
                        "delete",
                        "ReplicaSet",
                        format!("{ns}/{name}"),
                        e,
                    )),
                }
            }
            if let Some(rev) = &plan.revision {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                let patch = Patch::Merge(json!({
                    "metadata": {"annotations": {deployment::REVISION: rev}}
                }));
                if let Err(e) = api
                    .patch(&d.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    errors.push(Error::api("annotate", "Deployment", owner.clone(), e));
                }
            }
            let have = d.status.clone().unwrap_or_default();
            if !semantically_equal(&plan.status, &have) {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                let patch = Patch::Merge(json!({ "status": plan.status }));
                if let Err(e) = api
                    .patch_status(&d.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    errors.push(Error::api("patch status of", "Deployment", owner, e));
                }
            }
        }
        Error::collect(errors)
    }
}

impl Deployments {
    /// Upstream's ScalingReplicaSet event.
    async fn scaled(&mut self, d: &Deployment, rs: &ReplicaSet, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        self.events
            .publish(Record {
                regarding: reference(d),
                related: Some(reference(rs)),
                warning: false,
                reason: "ScalingReplicaSet",
                action: "Scale",
                note: format!(
                    "Scaled {direction} replica set {} from {from} to {to}",
                    rs.name_any()
                ),
            })
            .await;
    }
}

struct ReplicaSets {
    client: Client,
    stores: Stores,
    expectations: Expectations,
    create_backoff: CreateBackoff,
    events: Events,
}

impl Controller for ReplicaSets {
    const NAME: &'static str = "replicasets";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let pods = snapshot(&self.stores.pods);
        let now = now();
        let mut errors = Vec::new();
        for rs in snapshot(&self.stores.replicasets) {
            let owner = key(&rs);
            if terminating(&rs) || self.expectations.waiting(&owner, &self.stores.pods) {
                continue;
            }
            let mut plan = replicaset::plan(&rs, &pods, now);
            let ns = rs.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            for name in &plan.adopt {
                let patch = Patch::Merge(json!({
                    "metadata": {"ownerReferences": [crate::util::controller_ref(&rs)]}
                }));
                match api.patch(name, &PatchParams::default(), &patch).await {
                    Ok(_) => debug!(replicaset = %owner, pod = %name, "adopted pod"),
                    Err(e) => errors.push(Error::api("adopt", "Pod", format!("{ns}/{name}"), e)),
                }
            }
            let mut outcome = replicaset::CreateOutcome::Accepted;
            if !plan.create.is_empty() && self.create_backoff.holding(&owner, Instant::now()) {
                plan.create.clear();
                outcome = replicaset::CreateOutcome::HeldBack;
            }
            let (created, result, create_errors) =
                create_in_batches(&api, &ns, std::mem::take(&mut plan.create)).await;
            errors.extend(create_errors);
            if outcome == replicaset::CreateOutcome::Accepted {
                outcome = result;
            }
            match &outcome {
                replicaset::CreateOutcome::Accepted => self.create_backoff.accepted(&owner),
                replicaset::CreateOutcome::Refused(_) => {
                    // Nothing more is created for this ReplicaSet until its backoff passes.
                    let retry_in = self.create_backoff.refused(&owner, Instant::now());
                    debug!(replicaset = %owner, ?retry_in, "pod creates refused, holding back");
                }
                replicaset::CreateOutcome::HeldBack => {}
            }
            record_creates(&mut self.events, &rs, &created, &outcome).await;
            let created: Vec<String> = created.iter().map(|p| p.name_any()).collect();
            let deleted = delete_pods(
                &api,
                &ns,
                std::mem::take(&mut plan.delete),
                &rs,
                &mut self.events,
                &mut errors,
            )
            .await;
            if !created.is_empty() || !deleted.is_empty() {
                info!(replicaset = %owner, created = created.len(), deleted = ?deleted, "scaled pods");
            }
            self.expectations
                .record(owner.clone(), ns.clone(), created, deleted);
            let have = rs.status.clone().unwrap_or_default();
            replicaset::record_create_outcome(
                &mut plan.status,
                have.conditions.as_deref().unwrap_or_default(),
                &outcome,
                now,
            );
            if !semantically_equal(&plan.status, &have) {
                let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
                let mut status = serde_json::to_value(&plan.status).unwrap_or_default();
                // A merge patch must say null to remove a condition list.
                if plan.status.conditions.is_none() {
                    status["conditions"] = serde_json::Value::Null;
                }
                let patch = Patch::Merge(json!({ "status": status }));
                if let Err(e) = api
                    .patch_status(&rs.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    errors.push(Error::api("patch status of", "ReplicaSet", owner, e));
                }
            }
        }
        Error::collect(errors)
    }
}

struct DaemonSets {
    client: Client,
    stores: Stores,
    expectations: Expectations,
    create_backoff: CreateBackoff,
    events: Events,
}

impl Controller for DaemonSets {
    const NAME: &'static str = "daemonsets";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let pods = snapshot(&self.stores.pods);
        let nodes = snapshot(&self.stores.nodes);
        let now = now();
        let mut errors = Vec::new();
        for ds in snapshot(&self.stores.daemonsets) {
            let owner = key(&ds);
            if terminating(&ds) || self.expectations.waiting(&owner, &self.stores.pods) {
                continue;
            }
            let mut plan = daemonset::plan(&ds, &nodes, &pods, now);
            let ns = ds.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let mut creates = std::mem::take(&mut plan.create);
            let held_back =
                !creates.is_empty() && self.create_backoff.holding(&owner, Instant::now());
            if held_back {
                creates.clear();
            }
            let (created, outcome, create_errors) = create_in_batches(&api, &ns, creates).await;
            errors.extend(create_errors);
            match &outcome {
                replicaset::CreateOutcome::Refused(_) => {
                    self.create_backoff.refused(&owner, Instant::now());
                }
                _ if held_back => {}
                _ => self.create_backoff.accepted(&owner),
            }
            record_creates(&mut self.events, &ds, &created, &outcome).await;
            let created: Vec<String> = created.iter().map(|p| p.name_any()).collect();
            let deleted = delete_pods(
                &api,
                &ns,
                std::mem::take(&mut plan.delete),
                &ds,
                &mut self.events,
                &mut errors,
            )
            .await;
            if !created.is_empty() || !deleted.is_empty() {
                info!(daemonset = %owner, created = ?created, deleted = ?deleted, "synced daemon pods");
            }
            self.expectations
                .record(owner.clone(), ns.clone(), created, deleted);
            let have = ds.status.clone().unwrap_or_default();
            if !semantically_equal(&plan.status, &have) {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
                let patch = Patch::Merge(json!({ "status": plan.status }));
                if let Err(e) = api
                    .patch_status(&ds.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    errors.push(Error::api("patch status of", "DaemonSet", owner, e));
                }
            }
        }
        Error::collect(errors)
    }
}

struct StatefulSets {
    client: Client,
    stores: Stores,
    expectations: Expectations,
}

impl Controller for StatefulSets {
    const NAME: &'static str = "statefulsets";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let pods = snapshot(&self.stores.pods);
        let mut errors = Vec::new();
        for s in snapshot(&self.stores.statefulsets) {
            let owner = key(&s);
            if terminating(&s) || self.expectations.waiting(&owner, &self.stores.pods) {
                continue;
            }
            let plan = statefulset::plan(&s, &pods);
            let ns = s.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let (mut created, mut deleted) = (Vec::new(), Vec::new());
            for pod in &plan.create {
                match create_pod(&api, &ns, pod).await {
                    Ok(()) => created.push(pod.name_any()),
                    Err(e) => errors.push(e),
                }
            }
            for name in plan.delete {
                match delete_pod(&api, &ns, &name).await {
                    Ok(()) => deleted.push(name),
                    Err(e) => errors.push(e),
                }
            }
            if !created.is_empty() || !deleted.is_empty() {
                info!(statefulset = %owner, created = ?created, deleted = ?deleted, "scaled pods");
            }
            self.expectations
                .record(owner.clone(), ns.clone(), created, deleted);
            let have = s.status.clone().unwrap_or_default();
            if !semantically_equal(&plan.status, &have) {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
                let patch = Patch::Merge(json!({ "status": plan.status }));
                if let Err(e) = api
                    .patch_status(&s.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    errors.push(Error::api("patch status of", "StatefulSet", owner, e));
                }
            }
        }
        Error::collect(errors)
    }
}

/// Deletes pods and ReplicaSets whose controlling owner is gone (see [`gc`]).
struct GarbageCollector {
    client: Client,
    stores: Stores,
}

impl Controller for GarbageCollector {
    const NAME: &'static str = "garbage-collector";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let rss = snapshot(&self.stores.replicasets);
        let owners = gc::Owners::new(
            &snapshot(&self.stores.deployments),
            &rss,
            &snapshot(&self.stores.statefulsets),
            &snapshot(&self.stores.daemonsets),
        );
        let mut errors = Vec::new();
        for (ns, name) in gc::orphaned_replicasets(&rss, &owners) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(replicaset = %format!("{ns}/{name}"), "deleted replicaset of a deleted deployment")
                }
                Err(e) if api_code(&e) == Some(404) => {}
                Err(e) => errors.push(Error::api(
                    "delete",
                    "ReplicaSet",
                    format!("{ns}/{name}"),
                    e,
                )),
            }
        }
        for (ns, name) in gc::orphaned_pods(&snapshot(&self.stores.pods), &owners) {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            match delete_pod(&api, &ns, &name).await {
                Ok(()) => info!(pod = %format!("{ns}/{name}"), "deleted pod of a deleted owner"),
                Err(e) => errors.push(e),
            }
        }
        Error::collect(errors)
    }
}

struct Scheduler {
    client: Client,
    stores: Stores,
    events: Events,
    /// Bindings written but not yet seen in the store: pod key → (uid, node, deadline).
    assumed: HashMap<String, (Option<String>, String, Instant)>,
}

impl Controller for Scheduler {
    const NAME: &'static str = "scheduler";

    async fn reconcile(&mut self) -> Result<(), Error> {
        let mut pods = snapshot(&self.stores.pods);
        let nodes = snapshot(&self.stores.nodes);
        let by_key: BTreeMap<String, &Pod> = pods.iter().map(|p| (key(p), p)).collect();
        let instant = Instant::now();
        self.assumed.retain(|k, (uid, _, deadline)| {
            by_key.get(k).is_some_and(|p| {
                p.uid() == *uid
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                    && instant < *deadline
            })
        });
        // Pods bound a moment ago count on their node and are not bound twice.
        for p in &mut pods {
            if let Some((_, node, _)) = self.assumed.get(&key(p)) {
                if let Some(spec) = p.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
            }
        }
        let decisions = scheduler::schedule(&pods, &nodes);
        let by_key: BTreeMap<String, &Pod> = pods.iter().map(|p| (key(p), p)).collect();
        let now = now();
        let mut errors = Vec::new();
        for (k, decision) in decisions {
            let Some(pod) = by_key.get(&k) else { continue };
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            match decision {
                Decision::Bind(node) => {
                    // The embedded API server accepts a merge patch of spec.nodeName on an
                    // unscheduled pod in place of the /binding subresource.
                    let patch = Patch::Merge(json!({ "spec": { "nodeName": node } }));
                    match api
                        .patch(&pod.name_any(), &PatchParams::default(), &patch)
                        .await
                    {
                        Ok(_) => {
                            info!(pod = %k, node = %node, "bound");
                            self.events
                                .publish(Record {
                                    regarding: reference(*pod),
                                    related: None,
                                    warning: false,
                                    reason: "Scheduled",
                                    action: "Binding",
                                    note: format!("Successfully assigned {k} to {node}"),
                                })
                                .await;
                            self.assumed
                                .insert(k, (pod.uid(), node, instant + EXPECTATION_TTL));
                        }
                        Err(e) => errors.push(Error::api("bind", "Pod", k, e)),
                    }
                }
                Decision::Unschedulable(message) => {
                    let Some(conditions) = scheduler::unschedulable_conditions(pod, &message, now)
                    else {
                        continue;
                    };
                    info!(pod = %k, %message, "unschedulable");
                    self.events
                        .publish(Record {
                            regarding: reference(*pod),
                            related: None,
                            warning: true,
                            reason: "FailedScheduling",
                            action: "Scheduling",
                            note: message.clone(),
                        })
                        .await;
                    let patch = Patch::Merge(json!({ "status": { "conditions": conditions } }));
                    if let Err(e) = api
                        .patch_status(&pod.name_any(), &PatchParams::default(), &patch)
                        .await
                    {
                        errors.push(Error::api("patch status of", "Pod", k, e));
                    }
                }
            }
        }
        Error::collect(errors)
    }
}

/// A runner called `name` that follows the changes of `stores`.
fn runner(name: &str, stores: &[weft_kube::Changes]) -> SyncRunner {
    let mut runner = SyncRunner::new(name, SYNC);
    for changes in stores {
        runner.follow(changes.clone());
    }
    runner
}

/// Runs every controller until the future is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let watches = Watches::new(client.clone());
    let s = Stores {
        pods: watches.store(Selector::all()),
        services: watches.store(Selector::all()),
        slices: watches.store(Selector::all()),
        deployments: watches.store(Selector::all()),
        replicasets: watches.store(Selector::all()),
        statefulsets: watches.store(Selector::all()),
        daemonsets: watches.store(Selector::all()),
        nodes: watches.store(Selector::all()),
    };
    // No controller's first sync before every store has listed: acting on a
    // partial view would delete slices and pods that merely were not listed yet.
    let gate = Gate::new([
        s.pods.readiness(),
        s.services.readiness(),
        s.slices.readiness(),
        s.deployments.readiness(),
        s.replicasets.readiness(),
        s.statefulsets.readiness(),
        s.daemonsets.readiness(),
        s.nodes.readiness(),
    ]);
    gate.wait()
        .await
        .context("a controller store's watcher stopped before listing")?;
    info!("stores synced, controllers starting");
    let (pods, services, slices) = (s.pods.changes(), s.services.changes(), s.slices.changes());
    let (deployments, statefulsets, nodes) = (
        s.deployments.changes(),
        s.statefulsets.changes(),
        s.nodes.changes(),
    );
    let (replicasets, daemonsets) = (s.replicasets.changes(), s.daemonsets.changes());
    let c = client;
    let stopped = tokio::try_join!(
        control_loop(
            EndpointSlices {
                client: c.clone(),
                stores: s.clone()
            },
            runner(EndpointSlices::NAME, &[pods.clone(), services, slices]),
            gate.clone(),
        ),
        control_loop(
            Deployments {
                client: c.clone(),
                stores: s.clone(),
                events: Events::new(c.clone(), "deployment-controller"),
            },
            runner(
                Deployments::NAME,
                &[pods.clone(), deployments.clone(), replicasets.clone()]
            ),
            gate.clone(),
        ),
        control_loop(
            ReplicaSets {
                client: c.clone(),
                stores: s.clone(),
                expectations: Expectations::default(),
                create_backoff: CreateBackoff::new(Backoff::new(BACKOFF_MIN, BACKOFF_MAX)),
                events: Events::new(c.clone(), "replicaset-controller"),
            },
            runner(ReplicaSets::NAME, &[pods.clone(), replicasets.clone()]),
            gate.clone(),
        ),
        control_loop(
            DaemonSets {
                client: c.clone(),
                stores: s.clone(),
                expectations: Expectations::default(),
                create_backoff: CreateBackoff::new(Backoff::new(BACKOFF_MIN, BACKOFF_MAX)),
                events: Events::new(c.clone(), "daemonset-controller"),
            },
            runner(
                DaemonSets::NAME,
                &[pods.clone(), daemonsets.clone(), nodes.clone()]
            ),
            gate.clone(),
        ),
        control_loop(
            StatefulSets {
                client: c.clone(),
                stores: s.clone(),
                expectations: Expectations::default()
            },
            runner(StatefulSets::NAME, &[pods.clone(), statefulsets.clone()]),
            gate.clone(),
        ),
        control_loop(
            GarbageCollector {
                client: c.clone(),
                stores: s.clone()
            },
            runner(
                GarbageCollector::NAME,
                &[
                    pods.clone(),
                    deployments,
                    replicasets,
                    statefulsets,
                    daemonsets
                ]
            ),
            gate.clone(),
        ),
        control_loop(
            Scheduler {
                events: Events::new(c.clone(), "default-scheduler"),
                client: c,
                stores: s.clone(),
                assumed: HashMap::new()
            },
            runner(Scheduler::NAME, &[pods, nodes]),
            gate,
        ),
    );
    match stopped {
        Err(e) => Err(anyhow::Error::new(e).context("controllers stopped")),
        Ok((never, ..)) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota_refusal() -> Error {
        let status = kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "pods \"web-1\" is forbidden: exceeded quota: q".into(),
            ..Default::default()
        };
        Error::api(
            "create",
            "Pod",
            "default/web-1".into(),
            kube::Error::Api(Box::new(status)),
        )
    }

    #[test]
    fn quota_refusal_is_a_failure_not_a_quiet_conflict() {
        let e = quota_refusal();
        assert!(e.to_string().contains("create Pod default/web-1"), "{e}");
        // The runner warns about it and backs off.
        assert!(matches!(classify(e), SyncError::Failed(_)));
    }

    #[test]
    fn conflict_is_retried_quietly_alone_or_first_of_many() {
        assert!(matches!(classify(conflict()), SyncError::Quiet(_)));
        let many = Error::Many {
            count: 3,
            first: Box::new(conflict()),
        };
        assert!(matches!(classify(many), SyncError::Quiet(_)));
    }

    fn conflict() -> Error {
        let status = kube::core::Status {
            code: 409,
            reason: "Conflict".into(),
            message: "the object has been modified".into(),
            ..Default::default()
        };
        Error::api(
            "replace",
            "EndpointSlice",
            "default/web-abc".into(),
            kube::Error::Api(Box::new(status)),
        )
    }

    /// Fails its first sync with `first`, then succeeds; records when each began.
    struct Flaky {
        first: Option<Error>,
        starts: std::sync::Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    }

    impl Controller for Flaky {
        const NAME: &'static str = "flaky";

        async fn reconcile(&mut self) -> Result<(), Error> {
            self.starts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            self.first.take().map_or(Ok(()), Err)
        }
    }

    /// The start times (from the loop's start) and the outcomes of the syncs of a
    /// control loop whose first sync fails with `first`, until just before the
    /// first resync.
    async fn sync_starts(first: Error) -> (Vec<Duration>, weft_kube::Outcomes) {
        let t0 = tokio::time::Instant::now();
        let starts = std::sync::Arc::default();
        let flaky = Flaky {
            first: Some(first),
            starts: std::sync::Arc::clone(&starts),
        };
        let runner = SyncRunner::new("flaky", SYNC);
        let health = runner.health();
        let task = tokio::spawn(control_loop(flaky, runner, Gate::default()));
        tokio::time::sleep_until(t0 + SYNC.max_interval - Duration::from_millis(1)).await;
        task.abort();
        let starts = starts.lock().unwrap().clone();
        let starts = starts.into_iter().map(|t| t - t0).collect();
        (starts, health.outcomes())
    }

    #[tokio::test(start_paused = true)]
    async fn conflicted_sync_is_retried_quietly_after_the_retry_interval() {
        let (starts, outcomes) = sync_starts(conflict()).await;
        assert_eq!(starts, [Duration::ZERO, SYNC.retry_interval]);
        assert_eq!(
            (outcomes.runs, outcomes.failures, outcomes.quiet_retries),
            (2, 0, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_sync_is_retried_within_the_retry_interval_and_counted() {
        let (starts, outcomes) = sync_starts(quota_refusal()).await;
        assert_eq!(starts.len(), 2, "{starts:?}");
        // Less a jitter of up to a quarter.
        let retry = SYNC.retry_interval;
        assert!(
            starts[1] <= retry && starts[1] >= retry.mul_f64(0.75),
            "{starts:?}"
        );
        assert_eq!(
            (outcomes.runs, outcomes.failures, outcomes.quiet_retries),
            (2, 1, 0)
        );
    }

    #[test]
    fn refusal_message_is_the_api_servers_own() {
        let many = Error::Many {
            count: 2,
            first: Box::new(quota_refusal()),
        };
        assert_eq!(
            refusal_message(&many),
            "pods \"web-1\" is forbidden: exceeded quota: q"
        );
    }

    #[test]
    fn refused_owner_is_held_back_until_its_growing_delay_passes() {
        let mut b = CreateBackoff::new(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
        ));
        let t0 = Instant::now();
        assert!(!b.holding("default/web", t0));
        let first = b.refused("default/web", t0);
        assert!(b.holding("default/web", t0));
        assert!(!b.holding("default/other", t0));
        assert!(!b.holding("default/web", t0 + first));
        let second = b.refused("default/web", t0 + first);
        // Jitter adds up to one delay: the second is at least twice the base.
        assert!(second >= Duration::from_millis(200), "{second:?}");
        b.accepted("default/web");
        assert!(!b.holding("default/web", t0));
    }
}
