//! The resource table: every kind the server knows, with its group/version,
//! plural, scope, short names and subresources.

/// One served resource.
#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Has a `status` subresource: the main resource ignores `.status` on
    /// update and `.../status` changes only `.status`.
    pub status_sub: bool,
    /// Has a `.spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// The store's key for this resource, the same for every version of it:
    /// the plural for the static kinds (unique in this table), `plural.group`
    /// for custom resources (a CRD may reuse a built-in plural in its group).
    pub store_key: &'static str,
    /// Served from a CustomResourceDefinition (see `crate::crd`).
    pub custom: bool,
}

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Folder name used by persistence (unique across groups).
    pub fn storage_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[allow(clippy::too_many_arguments)]
const fn k(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status_sub: bool,
    has_spec: bool,
) -> Kind {
    Kind {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        status_sub,
        has_spec,
        store_key: plural,
        custom: false,
    }
}

/// All served kinds.
pub static KINDS: &[Kind] = &[
    k(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        true,
        true,
    ),
    k("", "nodes", "node", "Node", false, &["no"], true, true),
    k("", "pods", "pod", "Pod", true, &["po"], true, true),
    k(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        true,
        true,
    ),
    k(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
        false,
    ),
    k("", "secrets", "secret", "Secret", true, &[], false, false),
    k(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
        false,
    ),
    k("", "events", "event", "Event", true, &["ev"], false, false),
    k(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
        false,
    ),
    k(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
        true,
    ),
    k(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        true,
        true,
    ),
    k(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        true,
        true,
    ),
    k(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        true,
        true,
    ),
    k(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        false,
        false,
    ),
    k(
        "networking.k8s.io",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
        true,
    ),
    k(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        true,
        true,
    ),
    k(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        &[],
        false,
        true,
    ),
    k(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        false,
    ),
    k(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
        false,
    ),
    k(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
        true,
    ),
];

/// `autoscaling/v1` Scale, the body of the `scale` subresources (not a
/// stored kind: not in [`KINDS`]).
pub static SCALE: Kind = k(
    "autoscaling",
    "scale",
    "scale",
    "Scale",
    true,
    &[],
    false,
    false,
);

/// The groups (other than core) in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for kd in KINDS {
        if !kd.group.is_empty() && !out.contains(&kd.group) {
            out.push(kd.group);
        }
    }
    out
}

/// Looks a kind up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|kd| kd.group == group && kd.version == version && kd.plural == plural)
}

/// Looks a kind up by its plural (unique in this table).
pub fn by_plural(plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kd| kd.plural == plural)
}
