//! Dependents whose controlling owner is gone (pure). The embedded API
//! server deletes dependents when their owner is deleted through it; this
//! catches what it could not (an owner removed while the dependent was being
//! created, or state from before the server did): pods of a deleted
//! Deployment, ReplicaSet, StatefulSet or DaemonSet, and ReplicaSets of a
//! deleted Deployment.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use crate::util::{controller_of, terminating};

/// Every owner that exists, by kind and uid.
#[derive(Default)]
pub struct Owners(BTreeSet<(&'static str, String)>);

impl Owners {
    pub fn new(
        deployments: &[Deployment],
        replicasets: &[ReplicaSet],
        statefulsets: &[StatefulSet],
        daemonsets: &[DaemonSet],
    ) -> Owners {
        let mut set = BTreeSet::new();
        let uids = |kind: &'static str, metas: Vec<Option<String>>| {
            metas.into_iter().flatten().map(move |u| (kind, u))
        };
        set.extend(uids(
            "Deployment",
            deployments.iter().map(ResourceExt::uid).collect(),
        ));
        set.extend(uids(
            "ReplicaSet",
            replicasets.iter().map(ResourceExt::uid).collect(),
        ));
        set.extend(uids(
            "StatefulSet",
            statefulsets.iter().map(ResourceExt::uid).collect(),
        ));
        set.extend(uids(
            "DaemonSet",
            daemonsets.iter().map(ResourceExt::uid).collect(),
        ));
        Owners(set)
    }

    /// `obj` is controlled (apps/v1) by one of `kinds` whose uid no longer exists.
    fn orphaned<K: Resource>(&self, obj: &K, kinds: &[&'static str]) -> bool {
        !terminating(obj)
            && controller_of(obj).is_some_and(|r| {
                r.api_version == "apps/v1"
                    && kinds.iter().any(|k| *k == r.kind)
                    && !self.0.iter().any(|(k, u)| *k == r.kind && *u == r.uid)
            })
    }
}

/// (namespace, name) of every live pod whose controlling owner is gone.
pub fn orphaned_pods(pods: &[Pod], owners: &Owners) -> Vec<(String, String)> {
    let kinds = ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"];
    pods.iter()
        .filter(|p| owners.orphaned(*p, &kinds))
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect()
}

/// (namespace, name) of every live ReplicaSet whose Deployment is gone.
pub fn orphaned_replicasets(rss: &[ReplicaSet], owners: &Owners) -> Vec<(String, String)> {
    rss.iter()
        .filter(|r| owners.orphaned(*r, &["Deployment"]))
        .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn finds_pods_of_deleted_owners_only() {
        let d = Deployment {
            metadata: ObjectMeta {
                uid: Some("alive".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                uid: Some("rs-alive".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let pods = vec![
            pod("default", "kept")
                .owner("Deployment", "web", "alive")
                .build(),
            pod("default", "kept-rs")
                .owner("ReplicaSet", "web-1", "rs-alive")
                .build(),
            pod("default", "orphan")
                .owner("StatefulSet", "db", "gone")
                .build(),
            pod("default", "going")
                .owner("StatefulSet", "db", "gone")
                .deleting()
                .build(),
            pod("default", "bare").build(),
            pod("default", "rs")
                .owner("ReplicaSet", "x", "gone")
                .build(),
            pod("default", "kind-mismatch")
                .owner("DaemonSet", "x", "alive")
                .build(),
        ];
        let owners = Owners::new(&[d], &[rs], &[], &[]);
        let names: Vec<String> = orphaned_pods(&pods, &owners)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(names, ["orphan", "rs", "kind-mismatch"]);
    }
}
