//! DaemonSet + Nodes + Pods → the pods to create and delete and the status
//! to write (pure), as kube-controller-manager's DaemonSet controller
//! (`pkg/controller/daemon/daemon_controller.go`, `update.go`, and
//! `util/daemonset_util.go`).
//!
//! One pod per eligible node: a node is eligible when it fits the
//! template's nodeSelector and required node affinity and every NoSchedule
//! and NoExecute taint is tolerated, counting the tolerations the controller
//! adds to every daemon pod ([`default_tolerations`]); a pod stays on a node
//! with an untolerated NoSchedule taint, not with a NoExecute one. Pods are
//! created with `spec.affinity` pinning their node (a required
//! `matchFields` term on `metadata.name`), so the scheduler binds them,
//! labelled `controller-revision-hash` (a hash of the template; no
//! ControllerRevision objects are kept) and `pod-template-generation`.
//! Failed pods are deleted and replaced; extra pods on a node are deleted,
//! oldest kept.
//!
//! RollingUpdate replaces pods of an older template: with maxSurge 0 (the
//! default), old pods are deleted while fewer than maxUnavailable (default
//! one) nodes lack an available pod (unavailable old pods always go) and the
//! next sync creates their replacements; with maxSurge, a new pod is created
//! beside the old one on up to maxSurge nodes and the old pod deleted once
//! the new one is available. OnDelete replaces only pods a user deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::replicaset::available;
use crate::scheduler::{selector_fits, tolerates};
use crate::util::{
    controlled_by, controller_ref, pod_ready, scaled_value, short_hash, terminating,
};

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// What to do for one DaemonSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonSetPlan {
    /// Pods to create; `metadata.generate_name` is `<ds>-`.
    pub create: Vec<Pod>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

/// 10 safe characters hashing the pod template.
pub fn template_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let json = serde_json::to_vec(&template).unwrap_or_default();
    short_hash(&json, 10)
}

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`):
/// not-ready and unreachable (NoExecute), disk/memory/pid pressure and
/// unschedulable (NoSchedule), and network-unavailable for host-network pods.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(exists(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// A pod of the DaemonSet's template (no node yet), with the default
/// tolerations and the revision labels.
fn template_pod(ds: &DaemonSet, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.unwrap_or_default();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            tolerations.push(t);
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `pod` pinned to `node` (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`):
/// every required term's matchFields becomes `metadata.name In [node]`.
fn pin(mut pod: Pod, node: &str) -> Pod {
    let pinned = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![pinned.clone()]);
    }
    pod
}

/// A new daemon pod for `node` (without its random suffix).
pub fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    pin(template_pod(ds, hash), node)
}

/// Whether a daemon pod should run on `node`, and whether one already there
/// may keep running (upstream's `NodeShouldRunDaemonPod`), for a pod of the
/// DaemonSet's template (`template`, default tolerations included).
pub fn should_run(template: &Pod, node: &Node) -> (bool, bool) {
    if let Some(n) = template.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        if !n.is_empty() && n != node.name_any() {
            return (false, false);
        }
    }
    if !selector_fits(template, node) {
        return (false, false);
    }
    let tolerations = template
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    (!no_execute && !no_schedule, !no_execute)
}

/// The node a daemon pod is for: its nodeName, else the node its required
/// affinity pins (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or(&[]);
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

fn failed(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), p.name_any()));
}

/// One node's view: should it run a daemon pod, and the pods there.
struct NodePods<'a> {
    name: String,
    run: bool,
    keep: bool,
    /// Not terminating, not failed; oldest first.
    running: Vec<&'a Pod>,
    terminating: bool,
}

/// The plan for one DaemonSet given every node and pod.
pub fn plan(ds: &DaemonSet, nodes: &[Node], pods: &[Pod], now: Timestamp) -> DaemonSetPlan {
    let spec = ds.spec.clone().unwrap_or_default();
    let hash = template_hash(ds);
    let template = template_pod(ds, &hash);
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let ns = ds.namespace();
    let mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace() == ns && controlled_by(*p, ds))
        .collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut delete: Vec<String> = Vec::new();
    for p in &mine {
        match target_node(p) {
            Some(n) => by_node.entry(n).or_default().push(p),
            None if !terminating(*p) => delete.push(p.name_any()),
            None => {}
        }
    }
    let mut sorted_nodes: Vec<&Node> = nodes.iter().collect();
    sorted_nodes.sort_by_key(|n| n.name_any());
    let mut views: Vec<NodePods> = Vec::new();
    for node in sorted_nodes {
        let name = node.name_any();
        let (run, keep) = should_run(&template, node);
        let here = by_node.remove(&name).unwrap_or_default();
        let mut running = Vec::new();
        let mut term = false;
        for p in here {
            if terminating(p) {
                term = true;
            } else if failed(p) {
                // Upstream deletes failed daemon pods so they are replaced.
                delete.push(p.name_any());
                term = true;
            } else {
                running.push(p);
            }
        }
        oldest_first(&mut running);
        views.push(NodePods {
            name,
            run,
            keep,
            running,
            terminating: term,
        });
    }
    // Pods for nodes that no longer exist.
    for p in by_node.into_values().flatten() {
        if !terminating(p) {
            delete.push(p.name_any());
        }
    }

    let is_new = |p: &Pod| p.labels().get(REVISION_LABEL) == Some(&hash);
    let is_available = |p: &Pod| available(p, min_ready, now);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    let desired = views.iter().filter(|v| v.run).count();
    let desired_i32 = i32::try_from(desired).unwrap_or(i32::MAX);
    let rolling = strategy.rolling_update.unwrap_or_default();
    let surge = rolling
        .max_surge
        .as_ref()
        .map_or(0, |v| scaled_value(Some(v), 0, desired_i32, true));
    let mut max_unavailable = scaled_value(
        Some(
            rolling
                .max_unavailable
                .as_ref()
                .unwrap_or(&IntOrString::Int(1)),
        ),
        0,
        desired_i32,
        true,
    );
    if surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let (surge, max_unavailable) = (
        usize::try_from(surge).unwrap_or(0),
        usize::try_from(max_unavailable).unwrap_or(0),
    );

    let mut create = Vec::new();
    for v in &views {
        if !v.keep {
            delete.extend(v.running.iter().map(|p| p.name_any()));
        } else if v.running.is_empty() {
            if v.run && !v.terminating {
                create.push(new_pod(ds, &hash, &v.name));
            }
        } else if v.running.len() > 1 {
            // Keep one: the oldest new one during a surge, else the oldest.
            let keep = if surge > 0 {
                v.running
                    .iter()
                    .position(|p| is_new(p) && is_available(p))
                    .or_else(|| {
                        (!v.running.iter().any(|p| is_new(p) && !is_available(p))).then_some(0)
                    })
            } else {
                Some(0)
            };
            // None: an old pod and a new one still starting; keep both for now.
            if let Some(k) = keep {
                delete.extend(
                    v.running
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != k)
                        .map(|(_, p)| p.name_any()),
                );
            }
        }
    }

    if !on_delete {
        let mut unavailable = views
            .iter()
            .filter(|v| v.run)
            .filter(|v| !v.running.iter().any(|p| is_available(p)))
            .count();
        let mut surging = views
            .iter()
            .filter(|v| v.run && v.running.len() > 1)
            .count();
        for v in views
            .iter()
            .filter(|v| v.run && v.running.len() == 1 && !is_new(v.running[0]))
        {
            let old = v.running[0];
            if surge == 0 {
                if !is_available(old) {
                    delete.push(old.name_any());
                } else if unavailable < max_unavailable {
                    unavailable += 1;
                    delete.push(old.name_any());
                }
            } else if !is_available(old) {
                create.push(new_pod(ds, &hash, &v.name));
            } else if surging < surge {
                surging += 1;
                create.push(new_pod(ds, &hash, &v.name));
            }
        }
    }

    let count = |f: &dyn Fn(&NodePods) -> bool| {
        i32::try_from(views.iter().filter(|v| f(v)).count()).unwrap_or(i32::MAX)
    };
    fn first<'a>(v: &NodePods<'a>) -> Option<&'a Pod> {
        v.running.first().copied()
    }
    let status = DaemonSetStatus {
        desired_number_scheduled: desired_i32,
        current_number_scheduled: count(&|v| v.run && !v.running.is_empty()),
        number_misscheduled: count(&|v| !v.run && !v.running.is_empty()),
        number_ready: count(&|v| v.run && first(v).is_some_and(pod_ready)),
        number_available: Some(count(&|v| v.run && first(v).is_some_and(is_available))),
        number_unavailable: Some(
            desired_i32 - count(&|v| v.run && first(v).is_some_and(is_available)),
        ),
        updated_number_scheduled: Some(count(&|v| v.run && first(v).is_some_and(is_new))),
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    let mut seen = std::collections::BTreeSet::new();
    delete.retain(|n| seen.insert(n.clone()));
    DaemonSetPlan {
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
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn ds(image: &str) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "agent")])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(map(&[("app", "agent")])),
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

    fn tainted(name: &str, key: &str, effect: &str) -> Node {
        let mut n = node(name, true);
        n.spec.as_mut().unwrap().taints = Some(vec![taint(key, "", effect)]);
        n
    }

    /// A daemon pod on `node` of template `hash`.
    fn daemon(name: &str, node_name: &str, hash: &str) -> PodBuilder {
        pod("default", name)
            .labels(&[("app", "agent"), (REVISION_LABEL, hash)])
            .owner("DaemonSet", "agent", "ds-uid")
            .node(node_name)
    }

    fn targets(p: &DaemonSetPlan) -> Vec<String> {
        p.create.iter().filter_map(target_node).collect()
    }

    #[test]
    fn one_pinned_pod_per_eligible_node() {
        let nodes = vec![node("n1", true), node("n2", false)];
        let p = plan(&ds("a"), &nodes, &[], now());
        // A not-ready node still gets its pod (the not-ready taint is tolerated).
        assert_eq!(targets(&p), ["n1", "n2"]);
        let pod = &p.create[0];
        let term = &pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let f = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (f.key.as_str(), f.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(pod.labels()[REVISION_LABEL], template_hash(&ds("a")));
        assert_eq!(pod.labels()[TEMPLATE_GENERATION_LABEL], "1");
        let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert!(tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));
        assert_eq!(p.status.desired_number_scheduled, 2);
        assert_eq!(p.status.current_number_scheduled, 0);
    }

    #[test]
    fn taints_exclude_nodes_unless_tolerated() {
        let nodes = vec![
            node("plain", true),
            tainted("no-schedule", "dedicated", "NoSchedule"),
            tainted("no-execute", "dedicated", "NoExecute"),
            tainted("soft", "dedicated", "PreferNoSchedule"),
            tainted("pressure", "node.kubernetes.io/disk-pressure", "NoSchedule"),
        ];
        let p = plan(&ds("a"), &nodes, &[], now());
        assert_eq!(targets(&p), ["plain", "pressure", "soft"]);

        let mut tolerant = ds("a");
        tolerant
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert_eq!(plan(&tolerant, &nodes, &[], now()).create.len(), 5);
    }

    #[test]
    fn node_selector_and_affinity_pick_nodes() {
        let mut ssd = node("ssd", true);
        ssd.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("disk".into(), "ssd".into());
        let nodes = vec![node("hdd", true), ssd];
        let mut d = ds("a");
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some(map(&[("disk", "ssd")]));
        assert_eq!(targets(&plan(&d, &nodes, &[], now())), ["ssd"]);
    }

    #[test]
    fn untolerated_no_schedule_keeps_running_pods_but_no_execute_evicts() {
        let h = template_hash(&ds("a"));
        let nodes = vec![
            tainted("ns", "dedicated", "NoSchedule"),
            tainted("ne", "dedicated", "NoExecute"),
        ];
        let pods = vec![
            daemon("on-ns", "ns", &h).ready().build(),
            daemon("on-ne", "ne", &h).ready().build(),
        ];
        let p = plan(&ds("a"), &nodes, &pods, now());
        assert!(p.create.is_empty());
        assert_eq!(p.delete, ["on-ne"]);
        assert_eq!(p.status.number_misscheduled, 2);
        assert_eq!(p.status.desired_number_scheduled, 0);
    }

    #[test]
    fn failed_and_extra_pods_are_deleted_and_missing_ones_created() {
        let h = template_hash(&ds("a"));
        let nodes = vec![node("n1", true), node("n2", true), node("n3", true)];
        let pods = vec![
            daemon("failed", "n1", &h).phase("Failed").build(),
            daemon("older", "n2", &h).created(1).ready().build(),
            daemon("newer", "n2", &h).created(2).ready().build(),
            daemon("gone-node", "n9", &h).build(),
        ];
        let p = plan(&ds("a"), &nodes, &pods, now());
        assert_eq!(p.delete, ["failed", "gone-node", "newer"]);
        // n1 waits for its failed pod to go; n3 gets one now.
        assert_eq!(targets(&p), ["n3"]);
        assert_eq!(p.status.number_ready, 1);
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable_at_a_time() {
        let old = template_hash(&ds("a"));
        let d = ds("b");
        let new = template_hash(&d);
        let nodes: Vec<Node> = (1..=4).map(|i| node(&format!("n{i}"), true)).collect();
        let pods: Vec<Pod> = (1..=4)
            .map(|i| {
                daemon(&format!("p{i}"), &format!("n{i}"), &old)
                    .ready()
                    .build()
            })
            .collect();
        // maxUnavailable 1: one old pod goes.
        let p = plan(&d, &nodes, &pods, now());
        assert_eq!(p.delete, ["p1"]);
        assert!(p.create.is_empty());
        assert_eq!(p.status.updated_number_scheduled, Some(0));

        // Its node got a new pod that is not ready yet: nothing else goes.
        let mut pods2 = pods[1..].to_vec();
        pods2.push(daemon("q1", "n1", &new).build());
        let p = plan(&d, &nodes, &pods2, now());
        assert!(p.delete.is_empty(), "{:?}", p.delete);
        assert_eq!(p.status.updated_number_scheduled, Some(1));
        assert_eq!(p.status.number_unavailable, Some(1));

        // Once it is ready, the next old pod goes.
        pods2.pop();
        pods2.push(daemon("q1", "n1", &new).ready().build());
        assert_eq!(plan(&d, &nodes, &pods2, now()).delete, ["p2"]);

        // maxUnavailable 2 lets two go at once.
        let mut d2 = d.clone();
        d2.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::String("50%".into())),
                max_surge: None,
            }),
        });
        assert_eq!(plan(&d2, &nodes, &pods, now()).delete, ["p1", "p2"]);
    }

    #[test]
    fn surge_creates_beside_the_old_pod_and_deletes_it_once_available() {
        let old = template_hash(&ds("a"));
        let mut d = ds("b");
        d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        });
        let new = template_hash(&d);
        let nodes = vec![node("n1", true), node("n2", true)];
        let pods = vec![
            daemon("p1", "n1", &old).ready().created(1).build(),
            daemon("p2", "n2", &old).ready().created(1).build(),
        ];
        let p = plan(&d, &nodes, &pods, now());
        assert!(p.delete.is_empty());
        assert_eq!(targets(&p), ["n1"]);
        let mut pods2 = pods.clone();
        pods2.push(daemon("q1", "n1", &new).created(2).build());
        let p = plan(&d, &nodes, &pods2, now());
        assert!(p.delete.is_empty() && p.create.is_empty(), "{p:?}");
        pods2.pop();
        pods2.push(daemon("q1", "n1", &new).created(2).ready().build());
        assert_eq!(plan(&d, &nodes, &pods2, now()).delete, ["p1"]);
    }

    #[test]
    fn on_delete_leaves_old_pods_alone() {
        let old = template_hash(&ds("a"));
        let mut d = ds("b");
        d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        let nodes = vec![node("n1", true), node("n2", true)];
        let pods = vec![daemon("p1", "n1", &old).ready().build()];
        let p = plan(&d, &nodes, &pods, now());
        assert!(p.delete.is_empty());
        assert_eq!(targets(&p), ["n2"]);
        assert_eq!(p.create[0].labels()[REVISION_LABEL], template_hash(&d));
    }

    #[test]
    fn scheduler_binds_a_pinned_daemon_pod_to_its_node() {
        let nodes = vec![node("n1", true), node("n2", true)];
        let mut p = plan(&ds("a"), &nodes, &[], now()).create.remove(1);
        p.metadata.name = Some("agent-x".into());
        let d = crate::scheduler::schedule(&[p], &nodes);
        assert_eq!(
            d["default/agent-x"],
            crate::scheduler::Decision::Bind("n2".into())
        );
    }
}
