//! Pods whose controlling Deployment or StatefulSet is gone (pure). The
//! embedded API server has no garbage collector, so the controllers delete
//! what their deleted owners leave behind.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::util::{controller_of, terminating};

/// (namespace, name) of every live pod controlled (apps/v1) by a Deployment or
/// StatefulSet uid that no longer exists.
pub fn orphaned_pods(
    pods: &[Pod],
    deployments: &[Deployment],
    statefulsets: &[StatefulSet],
) -> Vec<(String, String)> {
    let uids: BTreeSet<String> = deployments
        .iter()
        .filter_map(|d| d.uid())
        .chain(statefulsets.iter().filter_map(|s| s.uid()))
        .collect();
    pods.iter()
        .filter(|p| !terminating(*p))
        .filter(|p| {
            controller_of(*p).is_some_and(|r| {
                r.api_version == "apps/v1"
                    && (r.kind == "Deployment" || r.kind == "StatefulSet")
                    && !uids.contains(&r.uid)
            })
        })
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
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
        let pods = vec![
            pod("default", "kept")
                .owner("Deployment", "web", "alive")
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
        ];
        assert_eq!(
            orphaned_pods(&pods, &[d], &[]),
            [("default".to_string(), "orphan".to_string())]
        );
    }
}
