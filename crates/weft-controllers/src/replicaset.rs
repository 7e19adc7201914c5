//! ReplicaSet + Pods → the pods to create, adopt and delete and the status to
//! write (pure), as kube-controller-manager's ReplicaSet controller
//! (`pkg/controller/replicaset/replica_set.go`).
//!
//! A ReplicaSet owns the active pods it controls; it adopts pods that match
//! its selector and have no controller, and (for clusters upgraded from
//! weft's earlier Deployments, which owned their pods directly) pods that
//! its own Deployment controls. Scaling up creates pods from the template,
//! scaling down deletes the lowest-ranked pods first, ranked as upstream's
//! `ActivePodsWithRanks` ([`deletion_cmp`]).
//!
//! Bounded work per sync, as upstream: at most [`BURST_REPLICAS`] creates
//! and as many deletes per ReplicaSet per sync (the next sync, once the pod
//! store shows them, does the next burst); the runtime sends creates in
//! slow-start batches ([`slow_start_batches`]: 1, 2, 4, …, stopping at the
//! first failing batch), so `replicas: 1000000` costs a bounded amount of
//! memory and API load at a time. When the API refuses creates (the embedded
//! API server's object cap, a ResourceQuota), the ReplicaSet gets upstream's
//! `ReplicaFailure` condition (reason `FailedCreate`, the refusal as
//! message) until a sync's creates are all accepted again
//! ([`record_create_outcome`]); its Deployment mirrors it.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::util::{
    controlled_by, controller_of, controller_ref, labels_match, pod_active, pod_ready,
    selector_matches,
};

/// Most pods created (and deleted) for one ReplicaSet in one sync
/// (kube-controller-manager's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// Condition type for pods that could not be created (upstream's
/// `ReplicaSetReplicaFailure`).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Reason of [`REPLICA_FAILURE`] when a create was refused.
pub const FAILED_CREATE: &str = "FailedCreate";
/// First slow-start batch (upstream's `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// Annotation that makes a pod cheaper (lower) or dearer to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

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

/// What to do for one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaSetPlan {
    /// Pods to create; `metadata.generate_name` is `<rs>-` and
    /// `metadata.name` is unset: the apply layer appends 5 random characters.
    pub create: Vec<Pod>,
    /// Names of pods to make this ReplicaSet's (controller reference set).
    pub adopt: Vec<String>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status the ReplicaSet should report.
    pub status: ReplicaSetStatus,
}

/// A new pod of the ReplicaSet's template (without its random suffix).
pub fn new_pod(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

fn assigned(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn ready_since(p: &Pod) -> Option<Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn deletion_cost(p: &Pod) -> i32 {
    p.annotations()
        .get(POD_DELETION_COST)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Which pod to delete first when scaling down, upstream's
/// `ActivePodsWithRanks` order: unassigned before assigned; Pending before
/// Unknown before Running; not ready before ready; lower
/// `pod-deletion-cost` first; more sibling pods on the same node (`rank`,
/// by pod name) first; ready for less time first; more container restarts
/// first; newer before older. Name (descending) breaks the last ties.
pub fn deletion_cmp(a: &Pod, b: &Pod, rank: &BTreeMap<String, usize>) -> Ordering {
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let rank_of = |p: &Pod| rank.get(&p.name_any()).copied().unwrap_or(0);
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| pod_ready(a).cmp(&pod_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_of(b).cmp(&rank_of(a)))
        .then_with(|| {
            if pod_ready(a) && pod_ready(b) {
                ready_since(b).cmp(&ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| b.name_any().cmp(&a.name_any()))
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn available(pod: &Pod, min_ready: i64, now: Timestamp) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| now.as_second() - t.as_second() >= min_ready)
}

/// The pod may be adopted by `rs`: it matches the selector and has no
/// controller, or its controller is the Deployment that controls `rs` (pods
/// of a Deployment from before ReplicaSets, on a cluster upgraded in place).
fn adoptable(pod: &Pod, rs: &ReplicaSet) -> bool {
    let Some(spec) = rs.spec.as_ref() else {
        return false;
    };
    if !pod_active(pod) || !selector_matches(&spec.selector, pod.labels()) {
        return false;
    }
    match (controller_of(pod), controller_of(rs)) {
        (None, _) => true,
        (Some(p), Some(owner)) => p.kind == "Deployment" && p.uid == owner.uid,
        _ => false,
    }
}

/// The plan for one ReplicaSet given every pod (those it controls or may
/// adopt are picked here).
pub fn plan(rs: &ReplicaSet, pods: &[Pod], now: Timestamp) -> ReplicaSetPlan {
    let spec = rs.spec.clone().unwrap_or_default();
    let r = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let ns = rs.namespace();
    let mut adopt = Vec::new();
    let mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace() == ns)
        .filter(|p| {
            if controlled_by(*p, rs) {
                return true;
            }
            let a = adoptable(p, rs);
            if a {
                adopt.push(p.name_any());
            }
            a
        })
        .collect();
    let active: Vec<&Pod> = mine.iter().copied().filter(|p| pod_active(p)).collect();

    let mut create = 0;
    let mut delete = Vec::new();
    if active.len() < r {
        create = (r - active.len()).min(BURST_REPLICAS);
    } else if active.len() > r {
        // Siblings on the same node, for the "doubled up" rank.
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for p in &active {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                *per_node.entry(n).or_default() += 1;
            }
        }
        let rank: BTreeMap<String, usize> = active
            .iter()
            .map(|p| {
                let n = p.spec.as_ref().and_then(|s| s.node_name.as_ref());
                let siblings = n.and_then(|n| per_node.get(n)).copied().unwrap_or(0);
                (p.name_any(), siblings)
            })
            .collect();
        let mut victims = active.clone();
        victims.sort_by(|a, b| deletion_cmp(a, b, &rank));
        delete = victims
            .into_iter()
            .take((active.len() - r).min(BURST_REPLICAS))
            .map(|p| p.name_any())
            .collect();
    }

    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| labels_match(&template_labels, p.labels()))),
        ready_replicas: Some(count(&pod_ready)),
        available_replicas: Some(count(&|p| available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    ReplicaSetPlan {
        create: (0..create).map(|_| new_pod(rs)).collect(),
        adopt,
        delete,
        status,
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
/// conditions the ReplicaSet had (`old`): added (or updated) on a refusal,
/// kept as it was while creates are held back, removed once creates are
/// accepted again (as upstream's ReplicaSet controller does).
pub fn record_create_outcome(
    status: &mut ReplicaSetStatus,
    old: &[ReplicaSetCondition],
    outcome: &CreateOutcome,
    now: Timestamp,
) {
    let mut conditions: Vec<ReplicaSetCondition> = old
        .iter()
        .filter(|c| c.type_ != REPLICA_FAILURE)
        .cloned()
        .collect();
    match outcome {
        CreateOutcome::Accepted => {}
        CreateOutcome::Refused(message) => {
            let prev = old.iter().find(|c| c.type_ == REPLICA_FAILURE);
            conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(FAILED_CREATE.into()),
                message: Some(message.clone()),
                last_transition_time: prev
                    .and_then(|c| c.last_transition_time.clone())
                    .or(Some(Time(now))),
            });
        }
        CreateOutcome::HeldBack => {
            conditions.extend(old.iter().filter(|c| c.type_ == REPLICA_FAILURE).cloned());
        }
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(2),
                owner_references: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        name: "web".into(),
                        uid: "d-uid".into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    },
                ]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "web"), ("pod-template-hash", "abc")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(map(&[("app", "web"), ("pod-template-hash", "abc")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some("img".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn owned(name: &str) -> PodBuilder {
        pod("default", name)
            .labels(&[("app", "web"), ("pod-template-hash", "abc")])
            .owner("ReplicaSet", "web-abc", "rs-uid")
    }

    fn now() -> Timestamp {
        Timestamp::from_second(2_000_000).unwrap()
    }

    #[test]
    fn creates_pods_from_the_template_owned_by_the_replicaset() {
        let p = plan(&rs(3), &[], now());
        assert_eq!(p.create.len(), 3);
        let pod = &p.create[0];
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.labels()["pod-template-hash"], "abc");
        let o = &pod.owner_references()[0];
        assert_eq!((o.kind.as_str(), o.uid.as_str()), ("ReplicaSet", "rs-uid"));
        assert_eq!(p.status.replicas, 0);
        assert_eq!(p.status.observed_generation, Some(2));
    }

    #[test]
    fn huge_replicas_create_one_burst_per_sync() {
        assert_eq!(
            plan(&rs(1_000_000), &[], now()).create.len(),
            BURST_REPLICAS
        );
    }

    #[test]
    fn slow_start_batches_double_and_cover_the_total() {
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(10, 1), vec![1, 2, 4, 3]);
        let b = slow_start_batches(BURST_REPLICAS, SLOW_START_INITIAL_BATCH);
        assert_eq!(b.iter().sum::<usize>(), BURST_REPLICAS);
        assert_eq!(b.len(), 9);
    }

    #[test]
    fn scale_down_ranks_unassigned_then_unready_then_doubled_up_then_newest() {
        let pods = vec![
            owned("old-ready").node("n1").ready().created(100).build(),
            owned("new-ready").node("n2").ready().created(300).build(),
            owned("unready").node("n3").created(50).build(),
            owned("pending").created(400).build(),
            owned("doubled").node("n1").ready().created(10).build(),
            owned("gone").deleting().build(),
        ];
        // 5 active, 1 wanted: 4 go, in rank order; n1 holds two ready pods
        // (doubled up), so they go before the lone ready (newer) pod on n2.
        let p = plan(&rs(1), &pods, now());
        assert_eq!(p.delete, ["pending", "unready", "old-ready", "doubled"]);
        assert_eq!(p.status.replicas, 5);
        assert_eq!(p.status.ready_replicas, Some(3));
    }

    #[test]
    fn deletion_cost_outranks_age() {
        let cheap = owned("cheap")
            .node("n1")
            .ready()
            .created(1)
            .with(|p| {
                p.metadata.annotations = Some(map(&[(POD_DELETION_COST, "-10")]));
            })
            .build();
        let pods = vec![
            cheap,
            owned("newer").node("n2").ready().created(500).build(),
        ];
        assert_eq!(plan(&rs(1), &pods, now()).delete, ["cheap"]);
    }

    #[test]
    fn adopts_orphans_and_its_deployments_pods_but_not_foreign_ones() {
        let pods = vec![
            pod("default", "orphan")
                .labels(&[("app", "web"), ("pod-template-hash", "abc")])
                .build(),
            pod("default", "legacy")
                .labels(&[("app", "web"), ("pod-template-hash", "abc")])
                .owner("Deployment", "web", "d-uid")
                .build(),
            pod("default", "foreign")
                .labels(&[("app", "web"), ("pod-template-hash", "abc")])
                .owner("ReplicaSet", "other", "other-uid")
                .build(),
            pod("default", "other-hash")
                .labels(&[("app", "web"), ("pod-template-hash", "def")])
                .owner("Deployment", "web", "d-uid")
                .build(),
        ];
        let p = plan(&rs(2), &pods, now());
        assert_eq!(p.adopt, ["orphan", "legacy"]);
        assert!(p.create.is_empty());
        assert_eq!(p.status.replicas, 2);
    }

    #[test]
    fn refused_create_sets_replica_failure_until_accepted() {
        let mut status = plan(&rs(3), &[], now()).status;
        let msg = "pods \"web-1\" is forbidden: exceeded quota: q".to_string();
        record_create_outcome(
            &mut status,
            &[],
            &CreateOutcome::Refused(msg.clone()),
            now(),
        );
        let c = status.conditions.clone().unwrap();
        assert_eq!(
            (
                c[0].type_.as_str(),
                c[0].reason.as_deref(),
                c[0].message.as_ref()
            ),
            (REPLICA_FAILURE, Some(FAILED_CREATE), Some(&msg))
        );
        let mut held = plan(&rs(3), &[], now()).status;
        record_create_outcome(&mut held, &c, &CreateOutcome::HeldBack, now());
        assert_eq!(held.conditions, Some(c.clone()));
        let mut ok = plan(&rs(3), &[], now()).status;
        record_create_outcome(&mut ok, &c, &CreateOutcome::Accepted, now());
        assert_eq!(ok.conditions, None);
    }
}
