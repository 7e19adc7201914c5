//! Unscheduled Pods + Nodes → which node each pod is bound to, or why none
//! fits (pure). Filters: node Ready, not unschedulable, nodeSelector, required
//! node affinity, NoSchedule/NoExecute taints, room for one more pod under
//! the node's `status.allocatable.pods` (kube-scheduler's NodeResourcesFit
//! "Too many pods"; a node that reports no allocatable pods is not limited).
//! Score: fewest pods, then lowest name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::util::{key, labels_match, pod_terminal, terminating};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The outcome for one pending pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind(String),
    /// No node fits; the message says why, in upstream's words.
    Unschedulable(String),
}

/// The pod waits for this scheduler: no node yet, our schedulerName, not finished or deleted.
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = matches!(
        spec.scheduler_name.as_deref(),
        None | Some("") | Some(DEFAULT_SCHEDULER)
    );
    unbound && ours && !terminating(pod) && !pod_terminal(pod)
}

pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => {
            t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint of the node the pod does not tolerate.
pub(crate) fn untolerated<'a>(pod: &Pod, taints: &'a [Taint]) -> Option<&'a Taint> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let num = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(|v| num(v)),
                values.first().and_then(|v| num(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        // An empty term matches nothing (upstream).
        return false;
    }
    let name = node.name_any();
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels().get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity.
pub(crate) fn selector_fits(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector {
        if !labels_match(sel, node.labels()) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// The taint a node that is not Ready carries.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node's `status.allocatable.pods`, if it reports a whole number.
pub fn allocatable_pods(node: &Node) -> Option<usize> {
    node.status
        .as_ref()?
        .allocatable
        .as_ref()?
        .get("pods")?
        .0
        .trim()
        .parse()
        .ok()
}

/// Why a node holding `load` pods does not fit a pod, as upstream's message
/// fragment; None when it fits.
fn misfit(pod: &Pod, node: &Node, load: usize) -> Option<String> {
    // A node that is not Ready carries node.kubernetes.io/not-ready:NoSchedule
    // (upstream's TaintNodesByCondition): only pods that tolerate it — the
    // network's own DaemonSet, which makes the node Ready — go there.
    if !node_ready(node) {
        let taint = Taint {
            key: NOT_READY_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if untolerated(pod, std::slice::from_ref(&taint)).is_some() {
            return Some("node(s) were not ready".into());
        }
    }
    let spec = node.spec.clone().unwrap_or_default();
    if spec.unschedulable == Some(true) {
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if untolerated(pod, std::slice::from_ref(&taint)).is_some() {
            return Some("node(s) were unschedulable".into());
        }
    }
    if let Some(t) = untolerated(pod, spec.taints.as_deref().unwrap_or(&[])) {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        ));
    }
    // Upstream's filter order: unschedulable, taints, then affinity/selector.
    if !selector_fits(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    // Then NodeResourcesFit, whose pod-count message is just this.
    if allocatable_pods(node).is_some_and(|max| load >= max) {
        return Some("Too many pods".into());
    }
    None
}

/// Decisions for every pod waiting for this scheduler, oldest first; each
/// binding counts towards its node for the pods decided after it.
pub fn schedule(pods: &[Pod], nodes: &[Node]) -> BTreeMap<String, Decision> {
    let mut load: BTreeMap<String, usize> = nodes.iter().map(|n| (n.name_any(), 0)).collect();
    for p in pods.iter().filter(|p| !pod_terminal(p)) {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
            if let Some(c) = load.get_mut(n) {
                *c += 1;
            }
        }
    }
    let mut pending: Vec<&Pod> = pods.iter().filter(|p| wants_scheduling(p)).collect();
    pending.sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), key(*p)));

    let mut out = BTreeMap::new();
    for pod in pending {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, String)> = None;
        for node in nodes {
            let here = load.get(&node.name_any()).copied().unwrap_or(0);
            match misfit(pod, node, here) {
                Some(r) => *reasons.entry(r).or_default() += 1,
                None => {
                    let cand = (here, node.name_any());
                    if best.as_ref().is_none_or(|b| cand < *b) {
                        best = Some(cand);
                    }
                }
            }
        }
        let decision = match best {
            Some((_, name)) => {
                *load.entry(name.clone()).or_default() += 1;
                Decision::Bind(name)
            }
            None if nodes.is_empty() => {
                Decision::Unschedulable("0/0 nodes are available: no nodes registered.".into())
            }
            None => {
                let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                Decision::Unschedulable(format!(
                    "0/{} nodes are available: {}.",
                    nodes.len(),
                    parts.join(", ")
                ))
            }
        };
        out.insert(key(pod), decision);
    }
    out
}

/// The pod's conditions with PodScheduled=False/Unschedulable carrying
/// `message`; None when the pod already says exactly that (no write needed).
pub fn unschedulable_conditions(
    pod: &Pod,
    message: &str,
    now: Timestamp,
) -> Option<Vec<PodCondition>> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let wanted = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(c)
            if c.status == "False" && c.reason == wanted.reason && c.message == wanted.message =>
        {
            None
        }
        Some(c) => {
            let keep_time = c.status == "False";
            let time = c.last_transition_time.clone();
            *c = wanted;
            if keep_time {
                c.last_transition_time = time;
            }
            Some(conditions)
        }
        None => {
            conditions.push(wanted);
            Some(conditions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};

    fn bind(d: &BTreeMap<String, Decision>, pod: &str) -> String {
        match &d[&format!("default/{pod}")] {
            Decision::Bind(n) => n.clone(),
            other => panic!("{pod}: {other:?}"),
        }
    }

    #[test]
    fn spreads_by_pod_count_then_name() {
        let nodes = vec![node("n2", true), node("n1", true), node("n3", true)];
        let pods = vec![
            pod("default", "running").node("n1").build(),
            pod("default", "a").created(1).build(),
            pod("default", "b").created(2).build(),
            pod("default", "c").created(3).build(),
            pod("default", "done").node("n2").phase("Succeeded").build(),
        ];
        let d = schedule(&pods, &nodes);
        assert_eq!(d.len(), 3);
        assert_eq!(bind(&d, "a"), "n2");
        assert_eq!(bind(&d, "b"), "n3");
        assert_eq!(bind(&d, "c"), "n1");
    }

    #[test]
    fn a_pod_tolerating_the_not_ready_taint_goes_to_a_node_that_is_not_ready() {
        let nodes = vec![node("n1", false)];
        let d = schedule(&[pod("default", "plain").build()], &nodes);
        assert!(
            matches!(&d["default/plain"], Decision::Unschedulable(m) if m.contains("not ready"))
        );
        let network = pod("default", "agent")
            .with(|p| {
                p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]);
            })
            .build();
        let d = schedule(&[network], &nodes);
        assert_eq!(bind(&d, "agent"), "n1");
    }

    #[test]
    fn filters_not_ready_unschedulable_selector_and_taints() {
        let mut cordoned = node("n2", true);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let mut tainted = node("n3", true);
        tainted.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "db", "NoSchedule")]);
        let mut soft = node("n4", true);
        soft.spec.as_mut().unwrap().taints = Some(vec![taint("x", "", "PreferNoSchedule")]);
        soft.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("disk".into(), "ssd".into());
        let nodes = vec![node("n1", false), cordoned, tainted, soft];

        let d = schedule(&[pod("default", "p").build()], &nodes);
        assert_eq!(bind(&d, "p"), "n4");

        let d = schedule(
            &[pod("default", "p")
                .node_selector(&[("disk", "hdd")])
                .build()],
            &nodes,
        );
        let Decision::Unschedulable(msg) = &d["default/p"] else {
            panic!()
        };
        assert_eq!(
            msg,
            "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were not ready, \
             1 node(s) were unschedulable."
        );

        let tolerant = pod("default", "p")
            .node_selector(&[("kubernetes.io/hostname", "n3")])
            .with(|p| {
                p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
                    key: Some("dedicated".into()),
                    operator: Some("Equal".into()),
                    value: Some("db".into()),
                    effect: Some("NoSchedule".into()),
                    ..Default::default()
                }])
            })
            .build();
        assert_eq!(bind(&schedule(&[tolerant], &nodes), "p"), "n3");

        let exists_all = pod("default", "p")
            .node_selector(&[("kubernetes.io/hostname", "n3")])
            .with(|p| {
                p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }])
            })
            .build();
        assert_eq!(bind(&schedule(&[exists_all], &nodes), "p"), "n3");
    }

    #[test]
    fn node_affinity_and_skipped_pods() {
        let nodes = vec![node("n1", true), node("n2", true)];
        let pinned = pod("default", "p")
            .with(|p| {
                p.spec.as_mut().unwrap().affinity = Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_fields: Some(vec![NodeSelectorRequirement {
                                    key: "metadata.name".into(),
                                    operator: "In".into(),
                                    values: Some(vec!["n2".into()]),
                                }]),
                                ..Default::default()
                            }],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            })
            .build();
        let other_scheduler = pod("default", "q")
            .with(|p| p.spec.as_mut().unwrap().scheduler_name = Some("custom".into()))
            .build();
        let deleting = pod("default", "r").deleting().build();
        let d = schedule(&[pinned, other_scheduler, deleting], &nodes);
        assert_eq!(d.len(), 1);
        assert_eq!(bind(&d, "p"), "n2");
        assert!(matches!(
            &schedule(&[pod("default", "p").build()], &[])["default/p"],
            Decision::Unschedulable(_)
        ));
    }

    fn with_allocatable(mut n: Node, pods: &str) -> Node {
        n.status.as_mut().unwrap().allocatable = Some(
            [(
                "pods".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(pods.into()),
            )]
            .into(),
        );
        n
    }

    #[test]
    fn pods_beyond_allocatable_stay_unschedulable_with_upstream_message() {
        let nodes = vec![
            with_allocatable(node("n1", true), "2"),
            with_allocatable(node("n2", true), "1"),
        ];
        let pods = vec![
            pod("default", "a").created(1).build(),
            pod("default", "b").created(2).build(),
            pod("default", "c").created(3).build(),
            pod("default", "d").created(4).build(),
        ];
        let d = schedule(&pods, &nodes);
        assert_eq!(bind(&d, "a"), "n1");
        assert_eq!(bind(&d, "b"), "n2");
        assert_eq!(bind(&d, "c"), "n1");
        assert_eq!(
            d["default/d"],
            Decision::Unschedulable("0/2 nodes are available: 2 Too many pods.".into())
        );
    }

    #[test]
    fn running_pods_count_against_allocatable() {
        let nodes = vec![with_allocatable(node("n1", true), "110")];
        let mut pods: Vec<Pod> = (0..110)
            .map(|i| pod("default", &format!("r{i}")).node("n1").build())
            .collect();
        pods.push(pod("default", "new").build());
        let d = schedule(&pods, &nodes);
        assert_eq!(
            d["default/new"],
            Decision::Unschedulable("0/1 nodes are available: 1 Too many pods.".into())
        );
    }

    #[test]
    fn unschedulable_condition_written_once() {
        let now = Timestamp::from_second(100).unwrap();
        let p = pod("default", "p").build();
        let conds = unschedulable_conditions(&p, "why", now).unwrap();
        assert_eq!(conds[0].reason.as_deref(), Some("Unschedulable"));
        let mut p2 = p.clone();
        p2.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(unschedulable_conditions(&p2, "why", now), None);
        let changed =
            unschedulable_conditions(&p2, "other", Timestamp::from_second(200).unwrap()).unwrap();
        assert_eq!(changed[0].message.as_deref(), Some("other"));
        assert_eq!(changed[0].last_transition_time, Some(Time(now)));
    }
}
