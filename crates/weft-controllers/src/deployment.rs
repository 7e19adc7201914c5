//! Deployment + its ReplicaSets (+ Pods) → the ReplicaSets to create, scale
//! and delete and the status to write (pure), as kube-controller-manager's
//! Deployment controller (`pkg/controller/deployment`: `sync.go`,
//! `rolling.go`, `recreate.go`, `progress.go`, `util/deployment_util.go`).
//!
//! A Deployment owns ReplicaSets named `<deploy>-<pod-template-hash>`, the
//! hash label added to their selector and template; the one whose template
//! equals the Deployment's (ignoring that label) is the new ReplicaSet, the
//! others are old. Each carries the annotations `deployment.kubernetes.io/
//! revision` (one more than the highest old revision when it becomes new;
//! the revisions it had before in `revision-history`), `desired-replicas`
//! and `max-replicas`, plus the Deployment's own annotations (so `kubectl
//! rollout history` shows `kubernetes.io/change-cause` and `kubectl rollout
//! undo` copies them back).
//!
//! RollingUpdate follows upstream's arithmetic (maxSurge rounds up,
//! maxUnavailable down, both 25% by default): the new ReplicaSet is scaled
//! up while the sum of every ReplicaSet's replicas stays within replicas +
//! maxSurge (and nothing else is done in a sync that scaled it up); old ones
//! are scaled down, unhealthy replicas first, while at least replicas −
//! maxUnavailable available pods remain. Recreate scales every old
//! ReplicaSet to zero, waits until their pods are gone, then scales the new
//! one up. Once a rollout is complete, old ReplicaSets without replicas
//! beyond `revisionHistoryLimit` (default 10) are deleted, lowest revision
//! first. Status sums the ReplicaSets' status; the conditions are
//! upstream's `Available` (MinimumReplicasAvailable/Unavailable),
//! `Progressing` (NewReplicaSetCreated, FoundNewReplicaSet,
//! ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded) and
//! `ReplicaFailure` mirrored from a ReplicaSet. A paused Deployment is only
//! scaled (its one active ReplicaSet follows `replicas`; no rollout, no
//! deadline) and says `Progressing` Unknown/DeploymentPaused, then
//! DeploymentResumed. Scaling a Deployment during a rollout is left to the
//! rolling arithmetic (no proportional scaling across ReplicaSets).
//!
//! Deployments of earlier weft versions owned their pods directly, labelled
//! with the same `pod-template-hash`: for each hash among such pods that no
//! ReplicaSet has yet, a ReplicaSet of that name is made (from the
//! Deployment's template when the hash is current, else from one of the
//! pods) with as many replicas as there are pods, and the ReplicaSet
//! controller adopts them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::replicaset::REPLICA_FAILURE;
use crate::util::{
    controlled_by, controller_ref, pod_active, scaled_value, semantically_equal, short_hash,
    terminating,
};

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment that are not copied onto its ReplicaSets
/// (upstream's `annotationsToSkip`, which kubectl's rollback skips too).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// `spec.revisionHistoryLimit` when unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// A change to an existing ReplicaSet: its replicas and annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct RsWrite {
    pub name: String,
    /// The resourceVersion the plan saw: the write is refused (409) if the
    /// ReplicaSet changed since, as upstream's update of its cached copy.
    pub resource_version: Option<String>,
    /// spec.replicas before (for the ScalingReplicaSet event).
    pub from: i32,
    pub replicas: i32,
    pub annotations: BTreeMap<String, String>,
}

/// What to do for one Deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentPlan {
    /// ReplicaSets to create, fully named.
    pub create: Vec<ReplicaSet>,
    /// ReplicaSets to scale or re-annotate.
    pub update: Vec<RsWrite>,
    /// Names of old ReplicaSets to delete (revision history cleanup).
    pub delete: Vec<String>,
    /// The Deployment's own `deployment.kubernetes.io/revision` annotation,
    /// when it should change to the new ReplicaSet's (upstream's
    /// `SetDeploymentRevision`; kubectl's rollback patches the annotations
    /// it expects to exist).
    pub revision: Option<String>,
    /// The status the Deployment should report.
    pub status: DeploymentStatus,
}

/// 10 safe characters hashing the pod template (and the collision count,
/// when there was a collision).
pub fn template_hash(d: &Deployment) -> String {
    let template = d.spec.as_ref().map(|s| &s.template);
    // k8s-openapi serializes fields in a fixed order and maps as BTreeMaps: stable.
    let mut json = serde_json::to_vec(&template).unwrap_or_default();
    if let Some(n) = d
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .filter(|n| *n > 0)
    {
        json.extend_from_slice(n.to_string().as_bytes());
    }
    short_hash(&json, 10)
}

/// The revision annotation of a ReplicaSet (0 when absent or not a number).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

fn available_of(rs: &ReplicaSet) -> i32 {
    status_of(rs).2
}

/// The ReplicaSet's template without the hash label equals `template`
/// (upstream's `EqualIgnoreHash`).
fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut t) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut want = template.clone();
    if let Some(labels) = want.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    semantically_equal(&t, &want)
}

/// The Deployment's annotations that its ReplicaSets carry.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A ReplicaSet `<deploy>-<hash>` of `template` for `d`.
fn replica_set(
    d: &Deployment,
    hash: &str,
    template: PodTemplateSpec,
    replicas: i32,
    annotations: BTreeMap<String, String>,
) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = template;
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let labels = tmeta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", d.name_any(), hash)),
            namespace: d.namespace(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// The annotations a ReplicaSet should have: its own, the Deployment's,
/// and the replica counts; `revision` when it is (or becomes) the new one.
fn rs_annotations(
    d: &Deployment,
    rs_annotations: &BTreeMap<String, String>,
    revision: Option<i64>,
    desired: i32,
    max: i32,
) -> BTreeMap<String, String> {
    let mut a = rs_annotations.clone();
    if let Some(rev) = revision {
        a.extend(copied_annotations(d));
        let old: i64 = a.get(REVISION).and_then(|v| v.parse().ok()).unwrap_or(0);
        if old < rev {
            if old > 0 {
                let mut history: Vec<String> = a
                    .get(REVISION_HISTORY)
                    .map(|h| h.split(',').map(String::from).collect())
                    .unwrap_or_default();
                history.push(old.to_string());
                a.insert(REVISION_HISTORY.into(), history.join(","));
            }
            a.insert(REVISION.into(), rev.to_string());
        }
    }
    a.insert(DESIRED_REPLICAS.into(), desired.to_string());
    a.insert(MAX_REPLICAS.into(), max.to_string());
    a
}

/// A condition, keeping the old timestamps when nothing about it changed;
/// with `touch` (progress was made) lastUpdateTime is `now` regardless.
fn condition(
    old: &[DeploymentCondition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    touch: bool,
    now: Timestamp,
) -> DeploymentCondition {
    let prev = old.iter().find(|c| c.type_ == type_);
    let same_status = prev.is_some_and(|c| c.status == status);
    let same_all = same_status
        && prev.is_some_and(|c| {
            c.reason.as_deref() == Some(reason) && c.message.as_ref() == Some(&message)
        });
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: match prev {
            Some(c) if same_status => c.last_transition_time.clone(),
            _ => Some(Time(now)),
        },
        last_update_time: match prev {
            Some(c) if same_all && !touch => c.last_update_time.clone(),
            _ => Some(Time(now)),
        },
    }
}

/// A ReplicaSet as the plan goes: the object and the replicas and
/// annotations it should end with.
struct Work {
    rs: ReplicaSet,
    replicas: i32,
    annotations: BTreeMap<String, String>,
    created: bool,
}

impl Work {
    fn new(rs: &ReplicaSet) -> Work {
        Work {
            replicas: spec_replicas(rs),
            annotations: rs.annotations().clone(),
            rs: rs.clone(),
            created: false,
        }
    }
    fn name(&self) -> String {
        self.rs.name_any()
    }
}

/// The rollout parameters of a Deployment (upstream's `ResolveFenceposts`,
/// `MaxSurge`, `MaxUnavailable`).
struct Rollout {
    replicas: i32,
    surge: i32,
    unavailable: i32,
    recreate: bool,
}

impl Rollout {
    fn of(d: &Deployment) -> Rollout {
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = spec.strategy.unwrap_or_default();
        if strategy.type_.as_deref() == Some("Recreate") {
            return Rollout {
                replicas,
                surge: 0,
                unavailable: 0,
                recreate: true,
            };
        }
        let rolling = strategy.rolling_update.unwrap_or_default();
        let surge = scaled_value(rolling.max_surge.as_ref(), 25, replicas, true);
        let mut unavailable = scaled_value(rolling.max_unavailable.as_ref(), 25, replicas, false);
        if surge == 0 && unavailable == 0 {
            // Upstream rejects this; keep making progress instead of stalling.
            unavailable = 1;
        }
        Rollout {
            replicas,
            surge,
            unavailable: unavailable.min(replicas),
            recreate: false,
        }
    }
}

/// Legacy pods (controlled by the Deployment itself) grouped by hash, for
/// hashes no ReplicaSet of that name exists for.
fn legacy_groups<'a>(
    d: &Deployment,
    rss: &[ReplicaSet],
    pods: &'a [Pod],
) -> BTreeMap<String, Vec<&'a Pod>> {
    let ns = d.namespace();
    let mut groups: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods
        .iter()
        .filter(|p| p.namespace() == ns && pod_active(p) && controlled_by(*p, d))
    {
        let Some(h) = p.labels().get(POD_TEMPLATE_HASH) else {
            continue;
        };
        let name = format!("{}-{h}", d.name_any());
        if rss
            .iter()
            .any(|rs| rs.namespace() == ns && rs.name_any() == name)
        {
            continue;
        }
        groups.entry(h.clone()).or_default().push(p);
    }
    groups
}

/// The plan for one Deployment given every ReplicaSet and pod (those it
/// controls are picked here).
pub fn plan(d: &Deployment, rss: &[ReplicaSet], pods: &[Pod], now: Timestamp) -> DeploymentPlan {
    let spec = d.spec.clone().unwrap_or_default();
    let ns = d.namespace();
    let ro = Rollout::of(d);
    let owned: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|rs| rs.namespace() == ns && controlled_by(*rs, d) && !terminating(*rs))
        .collect();
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let hash = template_hash(d);

    // Pods of an earlier weft's Deployment: give them ReplicaSets first.
    let legacy = legacy_groups(d, rss, pods);
    if !legacy.is_empty() {
        let mut rev = max_revision;
        let (current, others): (Vec<_>, Vec<_>) = legacy.into_iter().partition(|(h, _)| *h == hash);
        let create = others
            .into_iter()
            .chain(current)
            .map(|(h, group)| {
                rev += 1;
                let n = i32::try_from(group.len()).unwrap_or(i32::MAX);
                let template = if h == hash {
                    spec.template.clone()
                } else {
                    let p = group[0];
                    let mut pod_spec = p.spec.clone().unwrap_or_default();
                    pod_spec.node_name = None;
                    PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: p.metadata.labels.clone(),
                            annotations: p.metadata.annotations.clone(),
                            ..Default::default()
                        }),
                        spec: Some(pod_spec),
                    }
                };
                let annotations = rs_annotations(
                    d,
                    &BTreeMap::new(),
                    Some(rev),
                    ro.replicas,
                    ro.replicas + ro.surge,
                );
                replica_set(d, &h, template, n, annotations)
            })
            .collect();
        return DeploymentPlan {
            create,
            status: d.status.clone().unwrap_or_default(),
            ..Default::default()
        };
    }

    let mut new_rs: Option<&ReplicaSet> = None;
    for rs in owned
        .iter()
        .copied()
        .filter(|rs| same_template(rs, &spec.template))
    {
        // Oldest first, as upstream when several match.
        let key = |r: &ReplicaSet| (r.metadata.creation_timestamp.clone(), r.name_any());
        if new_rs.is_none_or(|n| key(rs) < key(n)) {
            new_rs = Some(rs);
        }
    }
    let mut work: Vec<Work> = owned
        .iter()
        .filter(|rs| new_rs.is_none_or(|n| n.name_any() != rs.name_any()))
        .map(|rs| Work::new(rs))
        .collect();
    let old_revision = work.iter().map(|w| revision(&w.rs)).max().unwrap_or(0);
    let paused = spec.paused == Some(true);

    if new_rs.is_none() && !paused {
        let name = format!("{}-{hash}", d.name_any());
        if rss
            .iter()
            .any(|rs| rs.namespace() == ns && rs.name_any() == name)
        {
            // The name is taken by a ReplicaSet of another template or owner:
            // hash again with one more collision (upstream's collisionCount).
            let mut status = d.status.clone().unwrap_or_default();
            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
            return DeploymentPlan {
                status,
                ..Default::default()
            };
        }
    }

    let mut new_work = new_rs.map(Work::new);
    let mut created_new = false;
    if !paused {
        if new_work.is_none() {
            let replicas = if ro.recreate {
                0
            } else {
                let current: i32 = work.iter().map(|w| w.replicas).sum();
                let room = (ro.replicas + ro.surge - current).max(0);
                room.min(ro.replicas)
            };
            let annotations = rs_annotations(
                d,
                &BTreeMap::new(),
                Some(old_revision + 1),
                ro.replicas,
                ro.replicas + ro.surge,
            );
            let rs = replica_set(d, &hash, spec.template.clone(), replicas, annotations);
            let mut w = Work::new(&rs);
            w.created = true;
            new_work = Some(w);
            created_new = true;
        }
        if let Some(n) = new_work.as_mut() {
            n.annotations = rs_annotations(
                d,
                &n.annotations,
                Some(old_revision + 1),
                ro.replicas,
                ro.replicas + ro.surge,
            );
        }
        if ro.recreate {
            recreate(&ro, &mut work, new_work.as_mut(), pods);
        } else if let Some(n) = new_work.as_mut() {
            rolling(&ro, &mut work, n);
        }
    } else {
        paused_scale(&ro, &mut work, new_work.as_mut());
    }

    let status = status(d, &ro, &work, new_work.as_ref(), created_new, now);
    let complete = complete(&ro, &status);

    let mut plan = DeploymentPlan {
        status,
        ..Default::default()
    };
    if let Some(rev) = new_work.as_ref().and_then(|w| w.annotations.get(REVISION)) {
        if d.annotations().get(REVISION) != Some(rev) {
            plan.revision = Some(rev.clone());
        }
    }
    if complete && !paused {
        plan.delete = history_cleanup(d, &work);
    }
    for w in work.iter().chain(new_work.as_ref()) {
        if w.created {
            let mut rs = w.rs.clone();
            if let Some(s) = rs.spec.as_mut() {
                s.replicas = Some(w.replicas);
            }
            rs.metadata.annotations = Some(w.annotations.clone());
            plan.create.push(rs);
        } else if plan.delete.contains(&w.name()) {
            continue;
        } else if w.replicas != spec_replicas(&w.rs) || &w.annotations != w.rs.annotations() {
            plan.update.push(RsWrite {
                name: w.name(),
                resource_version: w.rs.metadata.resource_version.clone(),
                from: spec_replicas(&w.rs),
                replicas: w.replicas,
                annotations: w.annotations.clone(),
            });
        }
    }
    plan
}

/// Sets an old ReplicaSet's replicas, with the replica annotations of a
/// scaled ReplicaSet.
fn scale(w: &mut Work, replicas: i32, ro: &Rollout) {
    if w.replicas == replicas {
        return;
    }
    w.replicas = replicas;
    w.annotations
        .insert(DESIRED_REPLICAS.into(), ro.replicas.to_string());
    w.annotations
        .insert(MAX_REPLICAS.into(), (ro.replicas + ro.surge).to_string());
}

/// A paused Deployment is only scaled (upstream's `sync`): when at most one
/// ReplicaSet has replicas, it (or else the newest) follows `replicas`;
/// a rollout caught mid-way by the pause stays as it is.
fn paused_scale(ro: &Rollout, old: &mut [Work], new: Option<&mut Work>) {
    let mut all: Vec<&mut Work> = old.iter_mut().chain(new).collect();
    if all.iter().filter(|w| w.replicas > 0).count() > 1 {
        return;
    }
    let pick = all
        .iter()
        .position(|w| w.replicas > 0)
        .or_else(|| (0..all.len()).max_by_key(|i| (revision(&all[*i].rs), all[*i].name())));
    if let Some(i) = pick {
        scale(all[i], ro.replicas, ro);
    }
}

/// Oldest first (upstream's `ReplicaSetsByCreationTimestamp`).
fn oldest_first(work: &mut [Work]) {
    work.sort_by_key(|w| (w.rs.metadata.creation_timestamp.clone(), w.name()));
}

/// Upstream's `rolloutRolling`: scale the new ReplicaSet up within the surge
/// (and stop there for this sync), else scale old ones down within the
/// availability budget.
fn rolling(ro: &Rollout, old: &mut [Work], new: &mut Work) {
    let current_new = new.replicas;
    if current_new > ro.replicas {
        new.replicas = ro.replicas;
        return;
    }
    if current_new < ro.replicas && !new.created {
        let total: i32 = old.iter().map(|w| w.replicas).sum::<i32>() + current_new;
        let max_total = ro.replicas + ro.surge;
        if total < max_total {
            new.replicas = current_new + (max_total - total).min(ro.replicas - current_new);
            return;
        }
    }
    let old_total: i32 = old.iter().map(|w| w.replicas).sum();
    if old_total == 0 {
        return;
    }
    let all_total = old_total + new.replicas;
    let min_available = ro.replicas - ro.unavailable;
    let new_unavailable = new.replicas - available_of(&new.rs);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    oldest_first(old);
    // Unhealthy replicas cost no availability: they go first.
    let mut cleaned = 0;
    for w in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = w.replicas - available_of(&w.rs);
        if w.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        cleaned += down;
        scale(w, w.replicas - down, ro);
    }
    // Then available ones, down to minAvailable.
    let available_total: i32 =
        old.iter().map(|w| available_of(&w.rs)).sum::<i32>() + available_of(&new.rs);
    if available_total <= min_available {
        return;
    }
    let total_down = available_total - min_available;
    let mut done = 0;
    for w in old.iter_mut() {
        if done >= total_down {
            break;
        }
        if w.replicas == 0 {
            continue;
        }
        let down = w.replicas.min(total_down - done);
        done += down;
        scale(w, w.replicas - down, ro);
    }
}

/// Upstream's `rolloutRecreate`: old ReplicaSets to zero; once none of
/// their pods runs, the new one to `replicas`.
fn recreate(ro: &Rollout, old: &mut [Work], new: Option<&mut Work>, pods: &[Pod]) {
    let mut scaled = false;
    for w in old.iter_mut().filter(|w| w.replicas > 0) {
        scale(w, 0, ro);
        scaled = true;
    }
    if scaled {
        return;
    }
    let old_running = pods
        .iter()
        .any(|p| !crate::util::pod_terminal(p) && old.iter().any(|w| controlled_by(p, &w.rs)));
    let old_counted = old.iter().any(|w| status_of(&w.rs).0 > 0);
    if old_running || old_counted {
        return;
    }
    if let Some(n) = new {
        n.replicas = ro.replicas;
    }
}

/// Old ReplicaSets beyond `revisionHistoryLimit` that hold no replicas,
/// lowest revision first (upstream's `cleanupDeployment`).
fn history_cleanup(d: &Deployment, old: &[Work]) -> Vec<String> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
        .max(0);
    let limit = usize::try_from(limit).unwrap_or(0);
    if old.len() <= limit {
        return Vec::new();
    }
    let mut idle: Vec<&Work> = old
        .iter()
        .filter(|w| {
            let observed = w.rs.status.as_ref().and_then(|s| s.observed_generation);
            w.replicas == 0 && status_of(&w.rs).0 == 0 && observed >= w.rs.metadata.generation
        })
        .collect();
    idle.sort_by_key(|w| (revision(&w.rs), w.name()));
    idle.into_iter()
        .take(old.len() - limit)
        .map(Work::name)
        .collect()
}

/// Upstream's `DeploymentComplete`.
fn complete(ro: &Rollout, s: &DeploymentStatus) -> bool {
    s.updated_replicas == Some(ro.replicas)
        && s.replicas == Some(ro.replicas)
        && s.available_replicas == Some(ro.replicas)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available
/// replicas, or fewer old ones, than the status said before.
fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Upstream's `calculateStatus` + `syncRolloutStatus`.
fn status(
    d: &Deployment,
    ro: &Rollout,
    old: &[Work],
    new: Option<&Work>,
    created_new: bool,
    now: Timestamp,
) -> DeploymentStatus {
    let before = d.status.clone().unwrap_or_default();
    let old_conditions = before.conditions.clone().unwrap_or_default();
    let all: Vec<&Work> = old.iter().chain(new).collect();
    let sum = |f: &dyn Fn(&Work) -> i32| all.iter().map(|w| f(w)).sum::<i32>();
    let replicas = sum(&|w| status_of(&w.rs).0);
    let ready = sum(&|w| status_of(&w.rs).1);
    let available = sum(&|w| status_of(&w.rs).2);
    let total = sum(&|w| w.replicas);
    let updated = new.map_or(0, |w| status_of(&w.rs).0);
    let mut status = DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        observed_generation: d.metadata.generation,
        conditions: None,
        collision_count: before.collision_count,
        terminating_replicas: None,
    };
    let mut conditions = vec![if available >= ro.replicas - ro.unavailable {
        condition(
            &old_conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            false,
            now,
        )
    } else {
        condition(
            &old_conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            false,
            now,
        )
    }];
    let previous = old_conditions.iter().find(|c| c.type_ == "Progressing");
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let was_paused = previous.is_some_and(|p| p.reason.as_deref() == Some("DeploymentPaused"));
    let pause_condition = |reason, message: &str, touch| {
        condition(
            &old_conditions,
            "Progressing",
            "Unknown",
            reason,
            message.into(),
            touch,
            now,
        )
    };
    if paused {
        // Upstream's checkPausedConditions; no deadline while paused.
        conditions.push(pause_condition(
            "DeploymentPaused",
            "Deployment is paused",
            false,
        ));
    } else if was_paused {
        conditions.push(pause_condition(
            "DeploymentResumed",
            "Deployment is resumed",
            true,
        ));
    } else if let Some(n) = new {
        let name = n.name();
        let deadline = d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600);
        let timed_out = previous
            .and_then(|c| c.last_update_time.as_ref())
            .is_some_and(|t| now.as_second() - t.0.as_second() > i64::from(deadline));
        let c = |status, reason, message: String, touch| {
            condition(
                &old_conditions,
                "Progressing",
                status,
                reason,
                message,
                touch,
                now,
            )
        };
        let progressing = if complete(ro, &status) {
            c(
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{name}\" has successfully progressed."),
                false,
            )
        } else if created_new {
            c(
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{name}\""),
                true,
            )
        } else if progressed(&before, &status) {
            c(
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{name}\" is progressing."),
                true,
            )
        } else if timed_out {
            c(
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{name}\" has timed out progressing."),
                false,
            )
        } else if let Some(p) = previous {
            p.clone()
        } else {
            c(
                "True",
                "FoundNewReplicaSet",
                format!("Found new replica set \"{name}\""),
                true,
            )
        };
        conditions.push(progressing);
    } else if let Some(p) = previous {
        conditions.push(p.clone());
    }
    // A ReplicaSet's ReplicaFailure (the new one's first) shows on the Deployment.
    let failure = new.into_iter().chain(old).find_map(|w| {
        w.rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            .cloned()
    });
    if let Some(f) = failure {
        conditions.push(condition(
            &old_conditions,
            REPLICA_FAILURE,
            "True",
            f.reason.as_deref().unwrap_or("FailedCreate"),
            f.message.unwrap_or_default(),
            false,
            now,
        ));
    }
    status.conditions = Some(conditions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetCondition, ReplicaSetStatus,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn deploy(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(3),
                annotations: Some(map(&[("kubernetes.io/change-cause", image)])),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "web")])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(map(&[("app", "web")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(2_000_000).unwrap()
    }

    /// The ReplicaSet the plan would create, as the API would store it, with
    /// `replicas` pods of which `available` are available.
    fn stored(mut rs: ReplicaSet, created: i64, replicas: i32, available: i32) -> ReplicaSet {
        rs.metadata.uid = Some(format!("uid-{}", rs.name_any()));
        rs.metadata.creation_timestamp = Some(ts(created));
        rs.metadata.generation = Some(1);
        rs.status = Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        });
        rs
    }

    fn apply(rs: &mut ReplicaSet, w: &RsWrite) {
        rs.spec.as_mut().unwrap().replicas = Some(w.replicas);
        rs.metadata.annotations = Some(w.annotations.clone());
    }

    #[test]
    fn first_sync_creates_a_hashed_replicaset_of_revision_one() {
        let d = deploy(3, "a");
        let hash = template_hash(&d);
        let p = plan(&d, &[], &[], now());
        assert_eq!(p.create.len(), 1);
        let rs = &p.create[0];
        assert_eq!(rs.name_any(), format!("web-{hash}"));
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let tlabels = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref();
        assert_eq!(tlabels.unwrap()[POD_TEMPLATE_HASH], hash);
        let a = rs.annotations();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
        assert_eq!(a["kubernetes.io/change-cause"], "a");
        assert_eq!(rs.owner_references()[0].uid, "d-uid");
        let progressing = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
        assert_eq!(p.revision.as_deref(), Some("1"));
    }

    #[test]
    fn huge_replicas_make_one_replicaset_of_that_size() {
        let p = plan(&deploy(1_000_000, "a"), &[], &[], now());
        assert_eq!(p.create[0].spec.as_ref().unwrap().replicas, Some(1_000_000));
        assert_eq!(p.status.unavailable_replicas, Some(1_000_000));
    }

    #[test]
    fn template_change_makes_revision_two_and_rolls_within_surge_and_unavailability() {
        let v1 = deploy(4, "a");
        let rs1 = stored(plan(&v1, &[], &[], now()).create.remove(0), 10, 4, 4);
        let d = deploy(4, "b");
        // 4 replicas: surge 1, unavailable 1 → a new ReplicaSet of 1, and the
        // old one down to 3 (4 available, 3 are enough) in the same sync.
        let p = plan(&d, std::slice::from_ref(&rs1), &[], now());
        assert_eq!(p.create.len(), 1);
        let rs2 = &p.create[0];
        assert_eq!(rs2.annotations()[REVISION], "2");
        assert_eq!(rs2.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(p.update.len(), 1);
        assert_eq!((p.update[0].from, p.update[0].replicas), (4, 3));

        // Next round: the new pod is not available yet: nothing more can go.
        let mut old = rs1.clone();
        apply(&mut old, &p.update[0]);
        old.status.as_mut().unwrap().replicas = 3;
        old.status.as_mut().unwrap().available_replicas = Some(3);
        let new = stored(rs2.clone(), 20, 1, 0);
        let p = plan(&d, &[old.clone(), new.clone()], &[], now());
        // The new one scales up to the surge limit: 3 + 2 = 5.
        assert_eq!(p.update.len(), 1, "{:?}", p.update);
        assert_eq!(
            (p.update[0].name.as_str(), p.update[0].replicas),
            (new.name_any().as_str(), 2)
        );

        // Once the new pods are available, old ones go down.
        let mut new2 = new.clone();
        new2.spec.as_mut().unwrap().replicas = Some(2);
        new2.status.as_mut().unwrap().replicas = 2;
        new2.status.as_mut().unwrap().available_replicas = Some(2);
        let p = plan(&d, &[old, new2], &[], now());
        let down: Vec<(i32, i32)> = p.update.iter().map(|w| (w.from, w.replicas)).collect();
        assert_eq!(down, [(3, 1)]);
        assert_eq!(p.status.updated_replicas, Some(2));
        assert_eq!(p.status.replicas, Some(5));
    }

    #[test]
    fn recreate_scales_old_to_zero_and_waits_for_their_pods() {
        let mut v1 = deploy(2, "a");
        let mut d = deploy(2, "b");
        for x in [&mut v1, &mut d] {
            x.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        let rs1 = stored(plan(&v1, &[], &[], now()).create.remove(0), 10, 2, 2);
        let p = plan(&d, std::slice::from_ref(&rs1), &[], now());
        assert_eq!(p.create[0].spec.as_ref().unwrap().replicas, Some(0));
        assert_eq!(p.update[0].replicas, 0);
        // Old scaled to 0 but a pod still runs: the new one stays at 0.
        let mut old = rs1.clone();
        old.spec.as_mut().unwrap().replicas = Some(0);
        let rs2 = stored(p.create[0].clone(), 20, 0, 0);
        let running = pod("default", "old-pod")
            .owner(
                "ReplicaSet",
                &old.name_any(),
                old.metadata.uid.as_deref().unwrap(),
            )
            .build();
        let p = plan(&d, &[old.clone(), rs2.clone()], &[running], now());
        assert!(p.update.is_empty(), "{:?}", p.update);
        old.status.as_mut().unwrap().replicas = 0;
        let p = plan(&d, &[old, rs2], &[], now());
        assert_eq!(p.update[0].replicas, 2);
    }

    #[test]
    fn rollback_reuses_the_old_replicaset_with_the_next_revision() {
        let v1 = deploy(1, "a");
        let rs1 = stored(plan(&v1, &[], &[], now()).create.remove(0), 10, 0, 0);
        let mut rs1 = rs1;
        rs1.spec.as_mut().unwrap().replicas = Some(0);
        let v2 = deploy(1, "b");
        let mut rs2 = stored(plan(&v2, &[], &[], now()).create.remove(0), 20, 1, 1);
        rs2.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "2".into());
        // The template goes back to "a" (kubectl rollout undo).
        let p = plan(&v1, &[rs1.clone(), rs2], &[], now());
        assert!(p.create.is_empty());
        let w = p.update.iter().find(|w| w.name == rs1.name_any()).unwrap();
        assert_eq!(w.annotations[REVISION], "3");
        assert_eq!(p.revision.as_deref(), Some("3"));
        assert_eq!(w.annotations[REVISION_HISTORY], "1");
        assert_eq!(w.replicas, 1);
    }

    #[test]
    fn complete_rollout_deletes_idle_replicasets_beyond_the_history_limit() {
        let mut d = deploy(1, "cur");
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        let mut rss: Vec<ReplicaSet> = (1..=4)
            .map(|i| {
                let mut rs = stored(
                    plan(&deploy(1, &format!("v{i}")), &[], &[], now())
                        .create
                        .remove(0),
                    i,
                    0,
                    0,
                );
                rs.spec.as_mut().unwrap().replicas = Some(0);
                rs.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(REVISION.into(), i.to_string());
                rs
            })
            .collect();
        let mut cur = stored(plan(&d, &[], &[], now()).create.remove(0), 100, 1, 1);
        cur.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "5".into());
        rss.push(cur);
        let p = plan(&d, &rss, &[], now());
        assert_eq!(p.delete, [rss[0].name_any(), rss[1].name_any()]);
        let progressing = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
    }

    #[test]
    fn legacy_pods_owned_by_the_deployment_get_replicasets() {
        let d = deploy(2, "b");
        let hash = template_hash(&d);
        let legacy = |name: &str, h: &str| {
            pod("default", name)
                .labels(&[("app", "web"), (POD_TEMPLATE_HASH, h)])
                .owner("Deployment", "web", "d-uid")
                .node("n1")
                .build()
        };
        let pods = vec![
            legacy("cur-0", &hash),
            legacy("old-0", "oldhash"),
            legacy("old-1", "oldhash"),
        ];
        let p = plan(&d, &[], &pods, now());
        let made: Vec<(String, Option<i32>, String)> = p
            .create
            .iter()
            .map(|rs| {
                (
                    rs.name_any(),
                    rs.spec.as_ref().unwrap().replicas,
                    rs.annotations()[REVISION].clone(),
                )
            })
            .collect();
        assert_eq!(
            made,
            [
                ("web-oldhash".to_string(), Some(2), "1".to_string()),
                (format!("web-{hash}"), Some(1), "2".to_string()),
            ]
        );
        let old_template = p.create[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap();
        assert_eq!(old_template.spec.as_ref().unwrap().node_name, None);
    }

    #[test]
    fn name_taken_by_another_template_bumps_the_collision_count() {
        let d = deploy(1, "a");
        let mut squatter = plan(&d, &[], &[], now()).create.remove(0);
        squatter
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .spec = None;
        let p = plan(&d, &[squatter], &[], now());
        assert!(p.create.is_empty());
        assert_eq!(p.status.collision_count, Some(1));
        let mut d2 = d.clone();
        d2.status = Some(p.status);
        assert_ne!(template_hash(&d2), template_hash(&d));
    }

    #[test]
    fn replica_failure_of_the_new_replicaset_shows_on_the_deployment() {
        let d = deploy(3, "a");
        let mut rs = stored(plan(&d, &[], &[], now()).create.remove(0), 10, 0, 0);
        rs.status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("exceeded quota".into()),
            last_transition_time: None,
        }]);
        let p = plan(&d, &[rs], &[], now());
        let c = p.status.conditions.unwrap();
        let f = c.iter().find(|c| c.type_ == REPLICA_FAILURE).unwrap();
        assert_eq!(
            (f.reason.as_deref(), f.message.as_deref()),
            (Some("FailedCreate"), Some("exceeded quota"))
        );
    }

    #[test]
    fn no_progress_past_the_deadline_is_progress_deadline_exceeded() {
        let mut d = deploy(2, "a");
        let rs = stored(plan(&d, &[], &[], now()).create.remove(0), 10, 2, 0);
        let first = plan(&d, std::slice::from_ref(&rs), &[], now());
        d.status = Some(first.status);
        let later = Timestamp::from_second(2_000_000 + 601).unwrap();
        let p = plan(&d, &[rs], &[], later);
        let progressing = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("False", Some("ProgressDeadlineExceeded"))
        );
    }

    #[test]
    fn status_is_stable_when_nothing_changes() {
        let mut d = deploy(1, "a");
        let rs = stored(plan(&d, &[], &[], now()).create.remove(0), 10, 1, 1);
        let first = plan(&d, std::slice::from_ref(&rs), &[], now());
        assert_eq!(first.status.available_replicas, Some(1));
        assert!(first.update.is_empty(), "{:?}", first.update);
        d.status = Some(first.status.clone());
        let later = plan(&d, &[rs], &[], Timestamp::from_second(3_000_000).unwrap());
        assert_eq!(first.status, later.status);
    }

    #[test]
    fn paused_deployment_scales_but_does_not_roll_and_says_so() {
        let v1 = deploy(2, "a");
        let rs1 = stored(plan(&v1, &[], &[], now()).create.remove(0), 10, 2, 2);
        let mut d = deploy(3, "b");
        d.spec.as_mut().unwrap().paused = Some(true);
        let p = plan(&d, std::slice::from_ref(&rs1), &[], now());
        assert!(p.create.is_empty());
        assert_eq!((p.update[0].from, p.update[0].replicas), (2, 3));
        let progressing = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("Unknown", Some("DeploymentPaused"))
        );
        // Resumed: the rollout starts, and the condition says so once.
        d.spec.as_mut().unwrap().paused = None;
        d.status = Some(p.status);
        let p = plan(&d, &[rs1], &[], now());
        assert_eq!(p.create.len(), 1);
        let progressing = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(progressing.reason.as_deref(), Some("DeploymentResumed"));
    }
}
