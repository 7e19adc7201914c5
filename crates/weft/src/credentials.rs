//! Who is who in an embedded cluster: the static tokens of the admin, the
//! controllers and each node (made once, kept in the PKI directory, 0600),
//! the kubeconfigs that carry them with the CA (the admin's for `weft` and
//! kubectl, one per node for its runtime and agent; all 0600), and the RBAC
//! roles of weft's own components — the counterparts of kube's bootstrap
//! `system:node` and `system:kube-controller-manager` roles, scoped to what
//! the components call.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weft_apiserver::rbac::UserInfo;

/// The admin's user: in `system:masters`, as kind's and kubeadm's admin.
pub const ADMIN_USER: &str = "weft-admin";
/// The controllers' user (kube's controller manager name).
pub const CONTROLLERS_USER: &str = "system:kube-controller-manager";
/// The group every node's components are in (kube's).
pub const NODES_GROUP: &str = "system:nodes";

/// The static tokens of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub admin: String,
    pub controllers: String,
    /// Node name → token.
    pub nodes: BTreeMap<String, String>,
}

impl Tokens {
    /// The tokens in `dir/tokens.json`, made (or completed for new nodes)
    /// when missing.
    pub fn load_or_create(dir: &Path, nodes: &[String]) -> Result<Tokens> {
        let path = dir.join("tokens.json");
        let mut t: Tokens = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{}: not a tokens file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let before = t.clone();
        let new = || weft_apiserver::auth::random_token().map_err(|e| anyhow::anyhow!(e.0));
        if t.admin.is_empty() {
            t.admin = new()?;
        }
        if t.controllers.is_empty() {
            t.controllers = new()?;
        }
        for n in nodes {
            if !t.nodes.contains_key(n) {
                t.nodes.insert(n.clone(), new()?);
            }
        }
        if t != before {
            weft_apiserver::pki::write_private(&path, &serde_json::to_vec_pretty(&t)?)?;
        }
        Ok(t)
    }

    /// `(token, user)` pairs for the API server.
    pub fn users(&self) -> Vec<(String, UserInfo)> {
        let mut out = vec![
            (
                self.admin.clone(),
                UserInfo {
                    name: ADMIN_USER.into(),
                    uid: String::new(),
                    groups: vec!["system:masters".into()],
                },
            ),
            (
                self.controllers.clone(),
                UserInfo {
                    name: CONTROLLERS_USER.into(),
                    uid: String::new(),
                    groups: vec![],
                },
            ),
        ];
        for (node, token) in &self.nodes {
            out.push((
                token.clone(),
                UserInfo {
                    name: format!("system:node:{node}"),
                    uid: String::new(),
                    groups: vec![NODES_GROUP.into()],
                },
            ));
        }
        out
    }
}

/// What a weft kubeconfig holds: where the API is and how to prove who
/// you are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub server: String,
    pub ca_pem: String,
    pub token: String,
}

impl Credentials {
    /// A kube client with these credentials, with a read timeout long
    /// enough for watches. Call inside a tokio runtime.
    pub fn client(&self) -> Result<kube::Client> {
        use rustls_pki_types::pem::PemObject;
        let uri: http::Uri = self
            .server
            .parse()
            .with_context(|| format!("API URL {}", self.server))?;
        let mut config = kube::Config::new(uri);
        config.read_timeout = Some(Duration::from_secs(300));
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .context("the kubeconfig's CA certificate is not PEM")?;
        config.root_cert = Some(certs);
        config.auth_info.token = Some(self.token.clone().into());
        Ok(kube::Client::try_from(config)?)
    }

    /// Reads a kubeconfig written by [`Credentials::write_kubeconfig`].
    pub fn read_kubeconfig(path: &Path) -> Result<Credentials> {
        use base64::Engine;
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("read kubeconfig {}", path.display()))?;
        let bad = |what: &str| anyhow::anyhow!("kubeconfig {}: no {what}", path.display());
        let cluster = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| bad("cluster"))?;
        let server = cluster.server.clone().ok_or_else(|| bad("server"))?;
        let ca = cluster
            .certificate_authority_data
            .as_deref()
            .ok_or_else(|| bad("certificate-authority-data"))?;
        let ca_pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(ca.trim())
                .with_context(|| format!("kubeconfig {}: CA data is not base64", path.display()))?,
        )
        .with_context(|| format!("kubeconfig {}: CA data is not PEM text", path.display()))?;
        let token = kc
            .auth_infos
            .first()
            .and_then(|a| a.auth_info.as_ref())
            .and_then(|a| a.token.as_ref())
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_string())
            .ok_or_else(|| bad("user token"))?;
        Ok(Credentials {
            server,
            ca_pem,
            token,
        })
    }

    /// The kubeconfig of these credentials, named for `cluster`.
    pub fn kubeconfig(&self, cluster: &str) -> kube::config::Kubeconfig {
        use base64::Engine;
        use kube::config::{
            AuthInfo, Context as KContext, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
        };
        let id = format!("weft-{cluster}");
        Kubeconfig {
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            clusters: vec![NamedCluster {
                name: id.clone(),
                cluster: Some(kube::config::Cluster {
                    server: Some(self.server.clone()),
                    certificate_authority_data: Some(
                        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            contexts: vec![NamedContext {
                name: id.clone(),
                context: Some(KContext {
                    cluster: id.clone(),
                    user: Some(id.clone()),
                    namespace: Some("default".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            auth_infos: vec![NamedAuthInfo {
                name: id.clone(),
                auth_info: Some(AuthInfo {
                    token: Some(self.token.clone().into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            current_context: Some(id),
            ..Default::default()
        }
    }

    /// Writes the kubeconfig to `path`, readable by its owner only.
    pub fn write_kubeconfig(&self, cluster: &str, path: &Path) -> Result<()> {
        let text = serde_yaml::to_string(&self.kubeconfig(cluster))?;
        weft_apiserver::pki::write_private(path, text.as_bytes())?;
        Ok(())
    }
}

/// The ClusterRoles and ClusterRoleBindings of weft's own components.
pub fn component_rbac() -> Vec<(&'static str, Value)> {
    let all = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    let read = ["get", "list", "watch"];
    let label = json!({"app.kubernetes.io/managed-by": "weft"});
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": label}, "rules": rules})
    };
    let binding = |name: &str, kind: &str, subject: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name, "labels": label},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]})
    };
    vec![
        (
            "clusterroles",
            role(
                "system:weft:controllers",
                json!([
                    {"apiGroups": [""], "resources": ["pods", "pods/status", "endpoints", "events"], "verbs": all},
                    {"apiGroups": [""], "resources": ["services", "nodes", "namespaces"], "verbs": read},
                    {"apiGroups": ["apps"], "resources": ["deployments", "deployments/status", "replicasets", "replicasets/status", "statefulsets", "statefulsets/status", "daemonsets", "daemonsets/status"], "verbs": all},
                    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": all},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": all},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": all},
                ]),
            ),
        ),
        (
            "clusterrolebindings",
            binding("system:weft:controllers", "User", CONTROLLERS_USER),
        ),
        (
            "clusterroles",
            role(
                "system:weft:node",
                json!([
                    {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "update", "patch", "delete"]},
                    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "update", "patch"]},
                    {"apiGroups": [""], "resources": ["configmaps", "secrets", "services"], "verbs": read},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]},
                    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                ]),
            ),
        ),
        (
            "clusterrolebindings",
            binding("system:weft:node", "Group", NODES_GROUP),
        ),
    ]
}

/// Creates or replaces the component roles through `client` (the admin's).
pub async fn apply_component_rbac(client: &kube::Client) -> Result<()> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    let pp = PatchParams::apply("weft").force();
    for (plural, obj) in component_rbac() {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        api.patch(name, &pp, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("apply {kind} {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_reads_back_to_the_same_credentials() {
        let dir = std::env::temp_dir().join(format!("weft-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = Credentials {
            server: "https://127.0.0.1:4321".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            token: "t0k3n".into(),
        };
        let path = dir.join("kubeconfig");
        c.write_kubeconfig("demo", &path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Credentials::read_kubeconfig(&path).unwrap(), c);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("current-context: weft-demo"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_are_made_once_and_kept_for_new_nodes() {
        let dir = std::env::temp_dir().join(format!("weft-tok-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = Tokens::load_or_create(&dir, &["node-1".into()]).unwrap();
        let b = Tokens::load_or_create(&dir, &["node-1".into(), "node-2".into()]).unwrap();
        assert_eq!(a.admin, b.admin);
        assert_eq!(a.nodes["node-1"], b.nodes["node-1"]);
        assert_ne!(b.nodes["node-1"], b.nodes["node-2"]);
        assert_eq!(b.users()[2].1.name, "system:node:node-1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
