//! What the cluster serves, asked of the cluster: API discovery (`/api/v1`,
//! `/apis` and each group's preferred version) read into a catalog that
//! resolves what a user types (`po`, `pods`, `Pod`, `deploy`,
//! `httproutes.gateway.networking.k8s.io`) and what a manifest names
//! (apiVersion + kind) to a resource, as kubectl's RESTMapper does. Nothing
//! here lists kinds: a CustomResourceDefinition's kinds appear as soon as the
//! server serves them.
//!
//! kube-rs's `Discovery` drops the short names and singular names that
//! resolving user input needs, so the documents are read as k8s-openapi's
//! `APIGroupList` / `APIResourceList` directly.

use anyhow::{bail, Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use kube::Client;

/// One served resource (subresources are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
}

impl Resource {
    fn core(kind: &str, plural: &str, namespaced: bool) -> Resource {
        Resource {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: Vec::new(),
        }
    }

    /// A kind of the `apps/v1` group (namespaced), which `weft up` reads.
    pub fn apps(kind: &str, plural: &str) -> Resource {
        Resource {
            group: "apps".into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: Vec::new(),
        }
    }

    /// Pods, which the CLI itself reads (no discovery needed: core/v1 is
    /// every server's).
    pub fn pods() -> Resource {
        Resource::core("Pod", "pods", true)
    }

    /// Nodes, which the CLI itself waits for.
    pub fn nodes() -> Resource {
        Resource::core("Node", "nodes", false)
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    /// The URL path of the collection (in `namespace` when namespaced and given).
    pub fn path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// `plural` for the core group, `plural.group` otherwise (kubectl's
    /// fully qualified resource name).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Every served resource, preferred versions first.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: Vec<Resource>,
}

impl Catalog {
    /// Reads discovery from the server.
    pub async fn discover(client: &Client) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        let core: APIResourceList = get(client, "/api/v1").await?;
        catalog.add("", &core);
        let groups: APIGroupList = get(client, "/apis").await?;
        for g in &groups.groups {
            let mut versions: Vec<&str> = Vec::new();
            if let Some(p) = &g.preferred_version {
                versions.push(&p.version);
            }
            versions.extend(
                g.versions.iter().map(|v| v.version.as_str()).filter(|v| {
                    Some(*v) != g.preferred_version.as_ref().map(|p| p.version.as_str())
                }),
            );
            for v in versions {
                let list: APIResourceList = get(client, &format!("/apis/{}/{v}", g.name)).await?;
                catalog.add(&g.name, &list);
            }
        }
        Ok(catalog)
    }

    /// Adds one group-version's resources (subresources skipped).
    pub fn add(&mut self, group: &str, list: &APIResourceList) {
        let version = list
            .group_version
            .rsplit_once('/')
            .map_or(list.group_version.as_str(), |(_, v)| v);
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            self.resources.push(Resource {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
                singular: if r.singular_name.is_empty() {
                    r.kind.to_ascii_lowercase()
                } else {
                    r.singular_name.clone()
                },
                namespaced: r.namespaced,
                short_names: r.short_names.clone().unwrap_or_default(),
            });
        }
    }

    /// Resolves what a user typed: plural, singular, short name or kind
    /// (case-insensitive), optionally qualified by group (`rs.apps`,
    /// `gateways.gateway.networking.k8s.io`). The core group wins a tie, then
    /// discovery order (preferred versions first), as kubectl's does.
    pub fn by_user_name(&self, name: &str) -> Result<&Resource> {
        let lower = name.to_ascii_lowercase();
        let matches = |r: &Resource, n: &str| {
            r.plural == n
                || r.singular == n
                || r.kind.eq_ignore_ascii_case(n)
                || r.short_names.iter().any(|s| s == n)
        };
        let found = self
            .resources
            .iter()
            .find(|r| matches(r, &lower))
            .or_else(|| {
                let (n, group) = lower.split_once('.')?;
                self.resources
                    .iter()
                    .find(|r| r.group == group && matches(r, n))
            });
        match found {
            Some(r) => Ok(r),
            None => bail!(
                "the server doesn't have a resource type {name:?} (served: {})",
                self.names()
            ),
        }
    }

    /// Resolves a manifest's apiVersion and kind.
    pub fn by_manifest(&self, api_version: &str, kind: &str) -> Result<&Resource> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
            .with_context(|| {
                format!(
                    "kind {kind} ({api_version}) is not served by the cluster; served kinds: {}",
                    self.kinds()
                )
            })
    }

    /// The resource names, for error messages.
    pub fn names(&self) -> String {
        let mut names: Vec<String> = self.resources.iter().map(Resource::qualified).collect();
        names.dedup();
        names.join(", ")
    }

    fn kinds(&self) -> String {
        let mut kinds: Vec<String> = self
            .resources
            .iter()
            .map(|r| format!("{} ({})", r.kind, r.api_version()))
            .collect();
        kinds.dedup();
        kinds.join(", ")
    }
}

async fn get<T: serde::de::DeserializeOwned>(client: &Client, path: &str) -> Result<T> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .context("build a discovery request")?;
    client
        .request::<T>(req)
        .await
        .with_context(|| format!("API discovery: GET {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let core: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get"], "shortNames": ["po"]},
                {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "verbs": ["get"], "shortNames": ["ev"]},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["get"], "shortNames": ["no"]}
            ]
        }))
        .unwrap();
        c.add("", &core);
        let events: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "events.k8s.io/v1",
            "resources": [{"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "verbs": ["get"], "shortNames": ["ev"]}]
        }))
        .unwrap();
        c.add("events.k8s.io", &events);
        let gw: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "gateway.networking.k8s.io/v1",
            "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true, "kind": "HTTPRoute", "verbs": ["get"]}]
        }))
        .unwrap();
        c.add("gateway.networking.k8s.io", &gw);
        c
    }

    #[test]
    fn user_names_resolve_by_plural_singular_short_name_and_kind() {
        let c = catalog();
        for name in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(c.by_user_name(name).unwrap().plural, "pods", "{name}");
        }
        assert!(!c.by_user_name("no").unwrap().namespaced);
        assert_eq!(
            c.by_user_name("httproute").unwrap().group,
            "gateway.networking.k8s.io"
        );
    }

    #[test]
    fn the_core_group_wins_and_a_group_qualifies() {
        let c = catalog();
        assert_eq!(c.by_user_name("events").unwrap().group, "");
        assert_eq!(
            c.by_user_name("events.events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
    }

    #[test]
    fn subresources_are_not_resources() {
        let c = catalog();
        assert!(c.resources.iter().all(|r| !r.plural.contains('/')));
    }

    #[test]
    fn unknown_names_list_what_is_served() {
        let c = catalog();
        let e = c.by_user_name("widgets").unwrap_err().to_string();
        assert!(
            e.contains("\"widgets\"") && e.contains("httproutes.gateway.networking.k8s.io"),
            "{e}"
        );
        let e = c.by_manifest("v1", "Widget").unwrap_err().to_string();
        assert!(e.contains("Widget (v1)") && e.contains("Pod (v1)"), "{e}");
        assert_eq!(c.by_manifest("v1", "Pod").unwrap().plural, "pods");
    }

    #[test]
    fn paths_follow_group_and_scope() {
        let c = catalog();
        assert_eq!(
            c.by_user_name("po").unwrap().path(Some("x")),
            "/api/v1/namespaces/x/pods"
        );
        assert_eq!(
            c.by_user_name("no").unwrap().path(Some("x")),
            "/api/v1/nodes"
        );
        assert_eq!(
            c.by_user_name("httproutes").unwrap().path(None),
            "/apis/gateway.networking.k8s.io/v1/httproutes"
        );
    }
}
