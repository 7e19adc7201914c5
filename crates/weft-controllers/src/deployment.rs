//! Deployment + its Pods → the pods to create and delete and the status to
//! write (pure). No ReplicaSets in this subset: the Deployment owns its Pods
//! directly, grouped by the `pod-template-hash` label.
//!
//! RollingUpdate follows upstream's arithmetic (maxSurge rounds up,
//! maxUnavailable down, both 25% by default): new-template pods are created
//! while the total stays within replicas + maxSurge, and old ones deleted while
//! at least replicas − maxUnavailable ready pods remain. Recreate deletes every
//! old pod first and creates new ones once they are gone.
//!
//! Bounded work per sync, as upstream's ReplicaSet controller: at most
//! [`BURST_REPLICAS`] creates and as many deletes per Deployment per sync
//! (the next sync, once the pod store shows them, does the next burst), and
//! the runtime sends the creates in slow-start batches ([`slow_start_batches`]:
//! 1, 2, 4, …, stopping at the first failing batch), so `replicas: 1000000`
//! costs a bounded amount of memory and API load at a time. When the API
//! refuses creates (the embedded API server's object cap, a ResourceQuota),
//! the Deployment gets upstream's `ReplicaFailure` condition (reason
//! `FailedCreate`, the refusal as message; upstream puts it on the
//! ReplicaSet) until a sync's creates are all accepted again
//! ([`record_create_outcome`]).

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::util::{controlled_by, controller_ref, pod_active, pod_ready, scaled_value, short_hash};

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Most pods created (and deleted) for one Deployment in one sync
/// (kube-controller-manager's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// Condition type for pods that could not be created (upstream's
/// `ReplicaSetReplicaFailure`, mirrored onto the Deployment).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Reason of [`REPLICA_FAILURE`] when a create was refused.
pub const FAILED_CREATE: &str = "FailedCreate";
/// First slow-start batch (upstream's `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// Sizes of the slow-start batches that create `total` pods: `initial`,
/// then doubling, the last one cut to what is left (upstream's
/// `slowStartBatch`). A batch is sent only when the one before succeeded.
pub fn slow_start_batches(total: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = total;
    let mut size = initial.max(1);
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size = size.saturating_mul(2);
    }
    out
}

/// What to do for one Deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentPlan {
    /// Pods to create; `metadata.generate_name` is `<deploy>-<hash>-` and
    /// `metadata.name` is unset: the apply layer appends 5 random characters.
    pub create: Vec<Pod>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status the Deployment should report.
    pub status: DeploymentStatus,
}

/// 10 safe characters hashing the pod template.
pub fn template_hash(d: &Deployment) -> String {
    let template = d.spec.as_ref().map(|s| &s.template);
    // k8s-openapi serializes fields in a fixed order and maps as BTreeMaps: stable.
    let json = serde_json::to_vec(&template).unwrap_or_default();
    short_hash(&json, 10)
}

/// A new pod of the Deployment's current template (without its random suffix).
pub fn new_pod(d: &Deployment, hash: &str) -> Pod {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{}-", d.name_any(), hash)),
            namespace: d.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// Which pod to delete first when scaling down (upstream's ranking, simplified):
/// unscheduled before scheduled, Pending before Unknown before Running, not
/// ready before ready, newer before older; name (descending) breaks ties.
pub fn scale_down_cmp(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase(a).cmp(&phase(b)))
        .then(pod_ready(a).cmp(&pod_ready(b)))
        .then(created(b).cmp(&created(a)))
        .then(b.name_any().cmp(&a.name_any()))
}

/// Ready for at least `min_ready` seconds at `now`.
fn available(pod: &Pod, min_ready: i64, now: Timestamp) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    since.is_some_and(|t| now.as_second() - t.as_second() >= min_ready)
}

/// A condition, keeping the old timestamps when nothing about it changed.
fn condition(
    old: &[DeploymentCondition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let status = if ok { "True" } else { "False" };
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
            Some(c) if same_all => c.last_update_time.clone(),
            _ => Some(Time(now)),
        },
    }
}

/// What became of one sync's pod creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Every create sent was accepted, or none was needed.
    Accepted,
    /// The API refused a create; the message says why.
    Refused(String),
    /// Creates were held back while backing off from an earlier refusal.
    HeldBack,
}

/// Sets `status`'s [`REPLICA_FAILURE`] condition for `outcome`, given the
/// conditions the Deployment had (`old`): added (or updated) on a refusal,
/// kept as it was while creates are held back, removed once creates are
/// accepted again (as upstream's ReplicaSet controller does).
pub fn record_create_outcome(
    status: &mut DeploymentStatus,
    old: &[DeploymentCondition],
    outcome: &CreateOutcome,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != REPLICA_FAILURE);
    match outcome {
        CreateOutcome::Accepted => {}
        CreateOutcome::Refused(message) => conditions.push(condition(
            old,
            REPLICA_FAILURE,
            true,
            FAILED_CREATE,
            message.clone(),
            now,
        )),
        CreateOutcome::HeldBack => {
            conditions.extend(old.iter().filter(|c| c.type_ == REPLICA_FAILURE).cloned());
        }
    }
}

/// The plan for one Deployment given every pod (those it controls are picked here).
pub fn plan(d: &Deployment, pods: &[Pod], now: Timestamp) -> DeploymentPlan {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let r = usize::try_from(replicas).unwrap_or(0);
    let hash = template_hash(d);
    let ns = d.namespace();
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace() == ns && controlled_by(*p, d))
        .collect();
    let is_new = |p: &&Pod| p.labels().get(POD_TEMPLATE_HASH) == Some(&hash);
    let active: Vec<&Pod> = owned.iter().copied().filter(|p| pod_active(p)).collect();
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = active.iter().copied().partition(is_new);

    let strategy = spec.strategy.clone().unwrap_or_default();
    let rolling = strategy.rolling_update.unwrap_or_default();
    let surge = scaled_value(rolling.max_surge.as_ref(), 25, replicas, true);
    let mut unavailable = scaled_value(rolling.max_unavailable.as_ref(), 25, replicas, false);
    if surge == 0 && unavailable == 0 {
        // Upstream rejects this; keep making progress instead of stalling.
        unavailable = 1;
    }
    let surge = usize::try_from(surge).unwrap_or(0);
    let unavailable = usize::try_from(unavailable).unwrap_or(0);

    let mut create = 0usize;
    let mut delete = Vec::new();
    if strategy.type_.as_deref() == Some("Recreate") {
        let old_terminating = owned.iter().any(|p| !pod_active(p) && !is_new(p));
        if !old.is_empty() {
            delete = old.clone();
        } else if !old_terminating {
            create = r.saturating_sub(new.len());
            delete = sorted_take(&new, new.len().saturating_sub(r));
        }
    } else {
        // Scale the new pods towards `replicas` within the surge budget.
        let room = (r + surge).saturating_sub(new.len() + old.len());
        create = r.saturating_sub(new.len()).min(room);
        delete = sorted_take(&new, new.len().saturating_sub(r));
        // Old pods: unready ones cost no availability; ready ones only down to
        // replicas − maxUnavailable ready pods in total.
        let (old_ready, old_unready): (Vec<&Pod>, Vec<&Pod>) =
            old.iter().copied().partition(|p| pod_ready(p));
        delete.extend(old_unready);
        let ready_total = active.iter().filter(|p| pod_ready(p)).count();
        let min_available = r.saturating_sub(unavailable);
        let budget = ready_total.saturating_sub(min_available);
        delete.extend(sorted_take(&old_ready, budget));
    }

    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let ready_n = active.iter().filter(|p| pod_ready(p)).count();
    let available_n = active
        .iter()
        .filter(|p| available(p, min_ready, now))
        .count();
    let as_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let old_conditions = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let min_ok = available_n >= r.saturating_sub(unavailable);
    let complete = new.len() == r && active.len() == r && available_n == r;
    let name = d.name_any();
    let conditions = vec![
        if min_ok {
            condition(
                &old_conditions,
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            )
        } else {
            condition(
                &old_conditions,
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            )
        },
        if complete {
            condition(
                &old_conditions,
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("Deployment {name:?} has successfully progressed."),
                now,
            )
        } else {
            condition(
                &old_conditions,
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!(
                    "Deployment {name:?} is progressing: {} updated, {} total, {available_n} available of {r} wanted.",
                    new.len(),
                    active.len()
                ),
                now,
            )
        },
    ];
    let status = DeploymentStatus {
        replicas: Some(as_i32(active.len())),
        updated_replicas: Some(as_i32(new.len())),
        ready_replicas: Some(as_i32(ready_n)),
        available_replicas: Some(as_i32(available_n)),
        unavailable_replicas: Some(as_i32(r.saturating_sub(available_n))),
        observed_generation: d.metadata.generation,
        conditions: Some(conditions),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        terminating_replicas: None,
    };

    let mut delete = dedup(delete.into_iter().map(|p| p.name_any()).collect());
    delete.truncate(BURST_REPLICAS);
    DeploymentPlan {
        create: (0..create.min(BURST_REPLICAS))
            .map(|_| new_pod(d, &hash))
            .collect(),
        delete,
        status,
    }
}

fn sorted_take<'a>(pods: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut pods = pods.to_vec();
    pods.sort_by(|a, b| scale_down_cmp(a, b));
    pods.truncate(n);
    pods
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|n| seen.insert(n.clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn deploy(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(3),
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

    #[test]
    fn huge_replicas_create_one_burst_per_sync() {
        let d = deploy(1_000_000, "img:1");
        let plan = plan(&d, &[], Timestamp::from_second(0).unwrap());
        assert_eq!(plan.create.len(), BURST_REPLICAS);
        assert_eq!(plan.status.unavailable_replicas, Some(1_000_000));
    }

    #[test]
    fn huge_scale_down_deletes_one_burst_per_sync() {
        let hash = template_hash(&deploy(0, "img:1"));
        let pods: Vec<Pod> = (0..BURST_REPLICAS + 10)
            .map(|i| owned(&format!("p{i}"), &hash).build())
            .collect();
        let plan = plan(
            &deploy(0, "img:1"),
            &pods,
            Timestamp::from_second(0).unwrap(),
        );
        assert_eq!(plan.delete.len(), BURST_REPLICAS);
    }

    #[test]
    fn slow_start_batches_double_and_cover_the_total() {
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(10, 1), vec![1, 2, 4, 3]);
        let b = slow_start_batches(BURST_REPLICAS, SLOW_START_INITIAL_BATCH);
        assert_eq!(b.iter().sum::<usize>(), BURST_REPLICAS);
        assert_eq!(b.len(), 9);
    }

    fn owned(name: &str, hash: &str) -> PodBuilder {
        pod("default", name)
            .labels(&[("app", "web"), (POD_TEMPLATE_HASH, hash)])
            .owner("Deployment", "web", "d-uid")
    }

    fn now() -> Timestamp {
        Timestamp::from_second(2_000_000).unwrap()
    }

    #[test]
    fn creates_pods_from_template() {
        let d = deploy(3, "a");
        let hash = template_hash(&d);
        assert_eq!(hash.len(), 10);
        let p = plan(&d, &[], now());
        assert_eq!(p.create.len(), 3);
        assert!(p.delete.is_empty());
        let pod = &p.create[0];
        assert_eq!(
            pod.metadata.generate_name.as_deref(),
            Some(format!("web-{hash}-").as_str())
        );
        assert_eq!(pod.labels()["app"], "web");
        assert_eq!(pod.labels()[POD_TEMPLATE_HASH], hash);
        let o = &pod.owner_references()[0];
        assert_eq!(
            (
                o.kind.as_str(),
                o.uid.as_str(),
                o.controller,
                o.block_owner_deletion
            ),
            ("Deployment", "d-uid", Some(true), Some(true))
        );
        assert_eq!(p.status.replicas, Some(0));
        assert_eq!(p.status.observed_generation, Some(3));
        let avail = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (avail.type_.as_str(), avail.status.as_str()),
            ("Available", "False")
        );
    }

    #[test]
    fn default_replicas_is_one_and_foreign_pods_ignored() {
        let mut d = deploy(1, "a");
        d.spec.as_mut().unwrap().replicas = None;
        let foreign = pod("default", "x")
            .labels(&[("app", "web")])
            .owner("Deployment", "web", "other-uid")
            .build();
        assert_eq!(plan(&d, &[foreign], now()).create.len(), 1);
    }

    #[test]
    fn scale_down_deletes_unready_then_newest() {
        let d = deploy(2, "a");
        let h = template_hash(&d);
        let pods = vec![
            owned("old-ready", &h)
                .node("n1")
                .ip("10.0.0.1")
                .ready()
                .created(100)
                .build(),
            owned("new-ready", &h)
                .node("n1")
                .ip("10.0.0.2")
                .ready()
                .created(300)
                .build(),
            owned("unready", &h)
                .node("n1")
                .ip("10.0.0.3")
                .created(50)
                .build(),
            owned("mid-ready", &h)
                .node("n1")
                .ip("10.0.0.4")
                .ready()
                .created(200)
                .build(),
            owned("gone", &h).deleting().build(),
        ];
        let p = plan(&d, &pods, now());
        assert!(p.create.is_empty());
        assert_eq!(p.delete, ["unready", "new-ready"]);
        assert_eq!(p.status.replicas, Some(4));
        assert_eq!(p.status.ready_replicas, Some(3));
        let avail = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(avail.status, "True");
    }

    #[test]
    fn unscheduled_pods_go_first() {
        let d = deploy(1, "a");
        let h = template_hash(&d);
        let pods = vec![
            owned("scheduled", &h).node("n1").created(300).build(),
            owned("pending", &h).created(100).build(),
        ];
        assert_eq!(plan(&d, &pods, now()).delete, ["pending"]);
    }

    #[test]
    fn rolling_update_respects_surge_and_unavailability() {
        let old = deploy(4, "a");
        let old_hash = template_hash(&old);
        let d = deploy(4, "b");
        let new_hash = template_hash(&d);
        assert_ne!(old_hash, new_hash);
        let mut pods: Vec<Pod> = (0..4)
            .map(|i| {
                owned(&format!("old-{i}"), &old_hash)
                    .node("n1")
                    .ip("10.0.0.1")
                    .ready()
                    .created(i)
                    .build()
            })
            .collect();
        // 4 replicas: surge 1, unavailable 1 → one new pod, one old pod deleted.
        let p = plan(&d, &pods, now());
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].labels()[POD_TEMPLATE_HASH], new_hash);
        assert_eq!(p.delete, ["old-3"]);

        // Next round: old-3 gone, one new pod not ready yet: 4 pods, 3 ready.
        pods.pop();
        pods.push(owned("new-0", &new_hash).node("n1").build());
        let p = plan(&d, &pods, now());
        assert_eq!(p.create.len(), 1);
        assert!(p.delete.is_empty(), "{:?}", p.delete);
        assert_eq!(p.status.updated_replicas, Some(1));

        // Once everything new is ready, the remaining old pods can go.
        let pods: Vec<Pod> = (0..4)
            .map(|i| {
                owned(&format!("new-{i}"), &new_hash)
                    .node("n1")
                    .ip("10.0.0.2")
                    .ready()
                    .build()
            })
            .chain([owned("old-0", &old_hash)
                .node("n1")
                .ip("10.0.0.1")
                .ready()
                .build()])
            .collect();
        let p = plan(&d, &pods, now());
        assert!(p.create.is_empty());
        assert_eq!(p.delete, ["old-0"]);
    }

    #[test]
    fn recreate_deletes_old_before_creating() {
        let old_hash = template_hash(&deploy(2, "a"));
        let mut d = deploy(2, "b");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        let pods = vec![
            owned("old-0", &old_hash).ready().build(),
            owned("old-1", &old_hash).build(),
        ];
        let p = plan(&d, &pods, now());
        assert!(p.create.is_empty());
        assert_eq!(p.delete.len(), 2);
        let terminating = vec![owned("old-0", &old_hash).deleting().build()];
        assert!(plan(&d, &terminating, now()).create.is_empty());
        assert_eq!(plan(&d, &[], now()).create.len(), 2);
    }

    fn replica_failure(status: &DeploymentStatus) -> Option<&DeploymentCondition> {
        status
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == REPLICA_FAILURE))
    }

    #[test]
    fn refused_create_sets_replica_failure_with_the_message() {
        let mut status = plan(&deploy(3, "a"), &[], now()).status;
        let msg = "pods \"web-1\" is forbidden: exceeded quota: q".to_string();
        record_create_outcome(
            &mut status,
            &[],
            &CreateOutcome::Refused(msg.clone()),
            now(),
        );
        let c = replica_failure(&status).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_ref()),
            ("True", Some(FAILED_CREATE), Some(&msg))
        );
        // Available and Progressing are still there.
        assert_eq!(status.conditions.as_ref().unwrap().len(), 3);
    }

    #[test]
    fn held_back_creates_keep_the_replica_failure_condition() {
        let mut failed = plan(&deploy(3, "a"), &[], now()).status;
        record_create_outcome(
            &mut failed,
            &[],
            &CreateOutcome::Refused("no room".into()),
            now(),
        );
        let old = failed.conditions.clone().unwrap();
        let mut later = plan(&deploy(3, "a"), &[], now()).status;
        let t = Timestamp::from_second(3_000_000).unwrap();
        record_create_outcome(&mut later, &old, &CreateOutcome::HeldBack, t);
        assert_eq!(replica_failure(&later), replica_failure(&failed));
    }

    #[test]
    fn accepted_creates_clear_the_replica_failure_condition() {
        let mut failed = plan(&deploy(3, "a"), &[], now()).status;
        record_create_outcome(
            &mut failed,
            &[],
            &CreateOutcome::Refused("no room".into()),
            now(),
        );
        let old = failed.conditions.clone().unwrap();
        let mut ok = plan(&deploy(3, "a"), &[], now()).status;
        record_create_outcome(&mut ok, &old, &CreateOutcome::Accepted, now());
        assert!(replica_failure(&ok).is_none());
    }

    #[test]
    fn status_is_stable_when_nothing_changes() {
        let mut d = deploy(1, "a");
        let h = template_hash(&d);
        let pods = vec![owned("p", &h).node("n1").ip("10.0.0.1").ready().build()];
        let first = plan(&d, &pods, now());
        assert_eq!(first.status.available_replicas, Some(1));
        d.status = Some(first.status.clone());
        let later = plan(&d, &pods, Timestamp::from_second(3_000_000).unwrap());
        assert_eq!(first.status, later.status);
    }
}
