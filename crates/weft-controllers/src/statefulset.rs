//! StatefulSet + its Pods → the pods to create and delete and the status to
//! write (pure). Pods are `<sts>-<ordinal>` with stable hostnames under the
//! governing Service (`spec.serviceName`).
//!
//! OrderedReady creates one pod at a time, the next only when every lower
//! ordinal is Ready, and removes one pod at a time from the highest ordinal;
//! Parallel does both all at once. A template change rolls (RollingUpdate,
//! honouring `partition`) one pod at a time from the highest ordinal, each only
//! when every pod is Ready; OnDelete leaves pods alone. No PersistentVolumeClaims.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::util::{
    controlled_by, controller_ref, pod_active, pod_ready, pod_terminal, short_hash, terminating,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What to do for one StatefulSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatefulSetPlan {
    /// Pods to create, fully named.
    pub create: Vec<Pod>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    pub status: StatefulSetStatus,
}

/// `<sts>-<hash of the pod template>`, the value of `controller-revision-hash`.
pub fn revision(sts: &StatefulSet) -> String {
    let template = sts.spec.as_ref().map(|s| &s.template);
    let json = serde_json::to_vec(&template).unwrap_or_default();
    format!("{}-{}", sts.name_any(), short_hash(&json, 10))
}

/// The pod of one ordinal.
pub fn pod_for(sts: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let spec = sts.spec.clone().unwrap_or_default();
    let tmeta = spec.template.metadata.unwrap_or_default();
    let name = format!("{}-{ordinal}", sts.name_any());
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut pod_spec = spec.template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.filter(|s| !s.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_ref(sts)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The ordinal of a pod named `<sts>-<n>`.
fn ordinal(sts_name: &str, pod_name: &str) -> Option<i32> {
    pod_name
        .strip_prefix(sts_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
        .filter(|n: &i32| *n >= 0)
}

/// The plan for one StatefulSet given every pod (those it controls are picked here).
pub fn plan(sts: &StatefulSet, pods: &[Pod]) -> StatefulSetPlan {
    let spec = sts.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let end = start.saturating_add(replicas);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let rev = revision(sts);
    let name = sts.name_any();
    let ns = sts.namespace();

    let by_ord: BTreeMap<i32, &Pod> = pods
        .iter()
        .filter(|p| p.namespace() == ns && controlled_by(*p, sts))
        .filter_map(|p| ordinal(&name, &p.name_any()).map(|o| (o, p)))
        .collect();

    let mut create = Vec::new();
    let mut delete = Vec::new();
    // Every wanted ordinal exists, is live and Ready.
    let mut all_ready = true;
    for ord in start..end {
        let blocked = match by_ord.get(&ord) {
            None => {
                create.push(pod_for(sts, ord, &rev));
                true
            }
            Some(p) if terminating(*p) => true,
            Some(p) if pod_terminal(p) => {
                // A finished pod is replaced: delete it, recreate once it is gone.
                delete.push(p.name_any());
                true
            }
            Some(p) => !pod_ready(p),
        };
        if blocked {
            all_ready = false;
            if !parallel {
                break;
            }
        }
    }
    let any_terminating = by_ord.values().any(|p| terminating(*p));
    let condemned: Vec<&Pod> = by_ord
        .iter()
        .rev()
        .filter(|(o, p)| (**o < start || **o >= end) && !terminating(**p))
        .map(|(_, p)| *p)
        .collect();
    if parallel {
        delete.extend(condemned.iter().map(|p| p.name_any()));
    } else if all_ready && !any_terminating {
        delete.extend(condemned.first().map(|p| p.name_any()));
    }

    // Rolling update: one outdated pod at a time, highest ordinal first.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref() != Some("OnDelete")
        && all_ready
        && !any_terminating
        && condemned.is_empty()
    {
        let partition = strategy
            .rolling_update
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let outdated = (start.max(partition)..end)
            .rev()
            .filter_map(|o| by_ord.get(&o))
            .find(|p| p.labels().get(REVISION_LABEL) != Some(&rev));
        delete.extend(outdated.map(|p| p.name_any()));
    }

    let active: Vec<&Pod> = by_ord.values().copied().filter(|p| pod_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let ready = count(&pod_ready);
    let updated = count(&|p: &Pod| p.labels().get(REVISION_LABEL) == Some(&rev));
    let old = sts.status.clone().unwrap_or_default();
    let current_revision = if updated == replicas {
        Some(rev.clone())
    } else {
        old.current_revision.clone().or_else(|| Some(rev.clone()))
    };
    let status = StatefulSetStatus {
        replicas: count(&|_| true),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(updated),
        updated_replicas: Some(updated),
        current_revision,
        update_revision: Some(rev),
        observed_generation: sts.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    };
    StatefulSetPlan {
        create,
        delete,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn sts(replicas: i32, image: &str, parallel: bool) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("default".into()),
                uid: Some("s-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("db-headless".into()),
                pod_management_policy: parallel.then(|| "Parallel".into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(map(&[("app", "db")])),
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

    fn member(s: &StatefulSet, ord: i32) -> PodBuilder {
        let rev = revision(s);
        pod("default", &format!("db-{ord}"))
            .labels(&[("app", "db"), (REVISION_LABEL, rev.as_str())])
            .owner("StatefulSet", "db", "s-uid")
    }

    fn created(p: &StatefulSetPlan) -> Vec<String> {
        p.create.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn pod_identity() {
        let s = sts(3, "a", false);
        let p = plan(&s, &[]);
        assert_eq!(created(&p), ["db-0"]);
        let pod = &p.create[0];
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("db-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        assert_eq!(pod.labels()[POD_NAME_LABEL], "db-0");
        assert_eq!(pod.labels()[POD_INDEX_LABEL], "0");
        assert_eq!(pod.labels()["app"], "db");
        assert_eq!(pod.owner_references()[0].kind, "StatefulSet");
        assert_eq!(pod.owner_references()[0].uid, "s-uid");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = sts(3, "a", false);
        // db-0 exists but is not ready: wait.
        let p = plan(&s, &[member(&s, 0).ip("10.0.0.1").build()]);
        assert!(p.create.is_empty());
        // db-0 ready: create db-1 only.
        let p = plan(&s, &[member(&s, 0).ip("10.0.0.1").ready().build()]);
        assert_eq!(created(&p), ["db-1"]);
        // db-1 disappeared while db-2 runs: recreate db-1.
        let pods = [member(&s, 0).ready().build(), member(&s, 2).ready().build()];
        assert_eq!(created(&plan(&s, &pods)), ["db-1"]);
        let status = plan(&s, &pods).status;
        assert_eq!((status.replicas, status.ready_replicas), (2, Some(2)));
    }

    #[test]
    fn parallel_creates_all() {
        let s = sts(3, "a", true);
        assert_eq!(created(&plan(&s, &[])), ["db-0", "db-1", "db-2"]);
    }

    #[test]
    fn scale_down_from_highest_ordinal() {
        let s = sts(1, "a", false);
        let pods: Vec<Pod> = (0..3).map(|i| member(&s, i).ready().build()).collect();
        let p = plan(&s, &pods);
        assert_eq!(p.delete, ["db-2"]);
        // While db-2 terminates, nothing else happens.
        let mut pods = pods;
        pods[2] = member(&s, 2).ready().deleting().build();
        assert!(plan(&s, &pods).delete.is_empty());
        // Parallel removes every condemned pod at once.
        let s = sts(1, "a", true);
        let pods: Vec<Pod> = (0..3).map(|i| member(&s, i).ready().build()).collect();
        assert_eq!(plan(&s, &pods).delete, ["db-2", "db-1"]);
    }

    #[test]
    fn rolling_update_highest_first_with_partition() {
        let old = sts(3, "a", false);
        let mut s = sts(3, "b", false);
        let pods: Vec<Pod> = (0..3).map(|i| member(&old, i).ready().build()).collect();
        assert_eq!(plan(&s, &pods).delete, ["db-2"]);
        assert_eq!(plan(&s, &pods).status.updated_replicas, Some(0));
        let mut pods2 = pods.clone();
        pods2[2] = member(&s, 2).ready().build();
        assert_eq!(plan(&s, &pods2).delete, ["db-1"]);
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        assert!(plan(&s, &pods2).delete.is_empty());
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(plan(&s, &pods).delete.is_empty());
    }
}
