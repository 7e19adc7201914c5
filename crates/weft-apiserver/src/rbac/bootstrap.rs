//! The default ClusterRoles and ClusterRoleBindings the server creates at
//! startup when absent, written from the documented behaviour of
//! kube-apiserver's bootstrap policy (user-facing roles: `cluster-admin`,
//! `admin`, `edit`, `view`; discovery roles: `system:discovery`,
//! `system:public-info-viewer`, `system:basic-user`).
//!
//! As upstream, `view` is aggregated into `edit` and `edit` into `admin`
//! through the `rbac.authorization.k8s.io/aggregate-to-*` labels, so a
//! ClusterRole carrying such a label (e.g. for a CRD) extends them; the
//! stored `rules` of the aggregated roles are filled here with the same
//! union the index computes.

use serde_json::{json, Value};

use super::{cluster_role_rules, GROUP};

const BOOTSTRAP_LABEL: &str = "kubernetes.io/bootstrapping";
const BOOTSTRAP_VALUE: &str = "rbac-defaults";
const AGG_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
const AGG_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGG_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
/// Every verb of a resource: READ and WRITE together.
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn metadata(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(BOOTSTRAP_LABEL.into(), json!(BOOTSTRAP_VALUE));
    for (k, v) in extra_labels {
        labels.insert((*k).into(), json!(v));
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A ClusterRole whose rules are the union of those labelled `label: "true"`.
fn aggregated(name: &str, labels: &[(&str, &str)], label: &str) -> Value {
    let mut r = cluster_role(name, labels, Vec::new());
    r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// Read access to the namespaced resources a workload is made of, without
/// Secrets (reading a Secret is as good as using it: upstream keeps them out
/// of `view`).
fn view_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        rule(&[""], &["namespaces", "namespaces/status"], READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
    ]
}

/// Write access to the same resources, plus Secrets (read and write), pod
/// exec/attach/port-forward/proxy and ServiceAccount tokens and
/// impersonation; no RBAC objects (so `edit` cannot grant itself more).
fn edit_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            READ_WRITE,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["secrets"], READ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
    ]
}

/// Roles and RoleBindings inside the namespace, and asking what others may do there.
fn admin_rules() -> Vec<Value> {
    vec![
        rule(&[GROUP], &["rolebindings", "roles"], READ_WRITE),
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ]
}

/// The default ClusterRoles and ClusterRoleBindings, as `(plural, object)`,
/// labelled `kubernetes.io/bootstrapping: rbac-defaults`.
pub fn default_objects() -> Vec<(&'static str, Value)> {
    let mut roles = vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        aggregated("admin", &[], AGG_ADMIN),
        aggregated("edit", &[(AGG_ADMIN, "true")], AGG_EDIT),
        aggregated("view", &[(AGG_EDIT, "true")], AGG_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGG_ADMIN, "true")],
            admin_rules(),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGG_EDIT, "true")],
            edit_rules(),
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGG_VIEW, "true")],
            view_rules(),
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![url_rule(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
    ];
    // Fill the aggregated roles as upstream's aggregation controller would.
    let effective = cluster_role_rules(roles.iter());
    for r in &mut roles {
        if r.get("aggregationRule").is_none() {
            continue;
        }
        let name = r["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let filled: Vec<Value> = effective
            .get(&name)
            .into_iter()
            .flatten()
            .map(super::Rule::to_json)
            .collect();
        r["rules"] = json!(filled);
    }
    let bindings = vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
    ];
    roles
        .into_iter()
        .map(|r| ("clusterroles", r))
        .chain(bindings.into_iter().map(|b| ("clusterrolebindings", b)))
        .collect()
}
