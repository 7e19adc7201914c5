//! The kinds the embedded cluster serves, and the names users call them by.

use kube::api::ApiResource;
use kube::core::GroupVersionKind;

/// One served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Other names accepted on the command line (singular, short names).
    pub aliases: &'static [&'static str],
}

pub const KINDS: &[Kind] = &[
    Kind {
        kind: "Namespace",
        group: "",
        version: "v1",
        plural: "namespaces",
        namespaced: false,
        aliases: &["namespace", "ns"],
    },
    Kind {
        kind: "Node",
        group: "",
        version: "v1",
        plural: "nodes",
        namespaced: false,
        aliases: &["node", "no"],
    },
    Kind {
        kind: "Pod",
        group: "",
        version: "v1",
        plural: "pods",
        namespaced: true,
        aliases: &["pod", "po"],
    },
    Kind {
        kind: "Service",
        group: "",
        version: "v1",
        plural: "services",
        namespaced: true,
        aliases: &["service", "svc"],
    },
    Kind {
        kind: "Secret",
        group: "",
        version: "v1",
        plural: "secrets",
        namespaced: true,
        aliases: &["secret"],
    },
    Kind {
        kind: "ConfigMap",
        group: "",
        version: "v1",
        plural: "configmaps",
        namespaced: true,
        aliases: &["configmap", "cm"],
    },
    Kind {
        kind: "EndpointSlice",
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        namespaced: true,
        aliases: &["endpointslice"],
    },
    Kind {
        kind: "Deployment",
        group: "apps",
        version: "v1",
        plural: "deployments",
        namespaced: true,
        aliases: &["deployment", "deploy"],
    },
    Kind {
        kind: "StatefulSet",
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        namespaced: true,
        aliases: &["statefulset", "sts"],
    },
    Kind {
        kind: "ReplicaSet",
        group: "apps",
        version: "v1",
        plural: "replicasets",
        namespaced: true,
        aliases: &["replicaset", "rs"],
    },
    Kind {
        kind: "DaemonSet",
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        namespaced: true,
        aliases: &["daemonset", "ds"],
    },
    Kind {
        kind: "NetworkPolicy",
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        namespaced: true,
        aliases: &["networkpolicy", "netpol"],
    },
    Kind {
        kind: "Ingress",
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        namespaced: true,
        aliases: &["ingress", "ing"],
    },
    Kind {
        kind: "IngressClass",
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingressclasses",
        namespaced: false,
        aliases: &["ingressclass"],
    },
    Kind {
        kind: "ServiceAccount",
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        namespaced: true,
        aliases: &["serviceaccount", "sa"],
    },
    Kind {
        kind: "Role",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        namespaced: true,
        aliases: &["role"],
    },
    Kind {
        kind: "RoleBinding",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        namespaced: true,
        aliases: &["rolebinding"],
    },
    Kind {
        kind: "ClusterRole",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        namespaced: false,
        aliases: &["clusterrole"],
    },
    Kind {
        kind: "ClusterRoleBinding",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        namespaced: false,
        aliases: &["clusterrolebinding"],
    },
];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

/// Every kind name, for error messages.
pub fn supported() -> String {
    KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
}

/// Looks a kind up by what a user typed (`pods`, `po`, `Pod`, `svc`, …).
pub fn by_user_name(name: &str) -> Option<&'static Kind> {
    let lower = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.plural == lower
            || k.kind.eq_ignore_ascii_case(&lower)
            || k.aliases.contains(&lower.as_str())
    })
}

/// Looks a kind up by a manifest's apiVersion and kind.
pub fn by_manifest(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve() {
        assert_eq!(by_user_name("svc").unwrap().kind, "Service");
        assert_eq!(by_user_name("Pods").unwrap().kind, "Pod");
        assert_eq!(by_user_name("netpol").unwrap().plural, "networkpolicies");
        assert!(by_user_name("widgets").is_none());
        assert_eq!(
            by_manifest("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert!(by_manifest("v1", "Deployment").is_none());
        assert!(supported().contains("StatefulSet"));
    }
}
