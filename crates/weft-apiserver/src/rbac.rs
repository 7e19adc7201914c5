//! RBAC v1 authorization: compiles the stored Roles, ClusterRoles and their
//! bindings into an index keyed by subject, and decides requests against it
//! the way kube-apiserver's RBAC authorizer does (pure: no locks, no I/O).
//!
//! Semantics follow upstream's `plugin/pkg/auth/authorizer/rbac/rbac.go` and
//! `pkg/registry/rbac/validation/rule.go` (read, not copied):
//! - ClusterRoleBindings grant everywhere; RoleBindings grant only in their
//!   own namespace, also when they reference a ClusterRole.
//! - Rules are purely additive; the first rule that matches allows, and the
//!   reason names the binding, role and subject that granted it
//!   (`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`).
//!   ClusterRoleBindings are visited before RoleBindings, each in name order.
//! - A ServiceAccount subject is the user `system:serviceaccount:<ns>:<name>`;
//!   in a RoleBinding an empty subject namespace means the binding's.
//! - Members of `system:masters` are allowed everything (upstream's privileged
//!   group authorizer, which runs before RBAC and gives no reason).
//! - ClusterRoles with an `aggregationRule` get, as upstream's aggregation
//!   controller writes into them, the union of the rules of the ClusterRoles
//!   their selectors match (computed here at index build; the stored object
//!   keeps whatever `rules` it was written with).

mod bootstrap;
#[cfg(test)]
mod tests;
pub(crate) mod validation;

use std::collections::HashMap;

use serde_json::{json, Value};

pub use bootstrap::default_objects;

use crate::selector::LabelSelector;
use crate::status::ApiError;

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// Upstream's `user.SystemPrivilegedGroup`: allowed everything, always.
pub const PRIVILEGED_GROUP: &str = "system:masters";
/// Prefix of a ServiceAccount's user name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who is asking (as authentication found them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// What is being asked: upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        verb: String,
        api_group: String,
        resource: String,
        subresource: String,
        /// "" = cluster scope (a cluster-scoped kind, or a list across namespaces).
        namespace: String,
        /// "" = no object named (list, watch, create without a name).
        name: String,
    },
    NonResource {
        /// The lowercase HTTP method.
        verb: String,
        path: String,
    },
}

impl Attributes {
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }

    /// The namespace of a resource request ("" for cluster scope and for
    /// non-resource requests).
    pub fn namespace(&self) -> &str {
        match self {
            Attributes::Resource { namespace, .. } => namespace,
            Attributes::NonResource { .. } => "",
        }
    }
}

/// The authorizer's answer; `reason` says which binding allowed, empty on deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// One compiled `PolicyRule`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

impl Rule {
    fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    /// Upstream's `ResourceMatches`: `*`, the exact `resource[/subresource]`,
    /// or `*/<subresource>` for a subresource request.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            match r.split_once('/') {
                Some((res, sub)) => sub == subresource && (res == resource || res == "*"),
                None => false,
            }
        })
    }

    fn allows(&self, attrs: &Attributes) -> bool {
        match attrs {
            Attributes::Resource {
                verb,
                api_group,
                resource,
                subresource,
                name,
                ..
            } => {
                self.verb_matches(verb)
                    && self.api_groups.iter().any(|g| g == "*" || g == api_group)
                    && self.resource_matches(resource, subresource)
                    // A rule naming objects matches only requests for one of
                    // them: never list/watch/create-without-name (name "").
                    && (self.resource_names.is_empty()
                        || self.resource_names.iter().any(|n| n == name))
            }
            Attributes::NonResource { verb, path } => {
                self.verb_matches(verb)
                    && self.non_resource_urls.iter().any(|u| {
                        u == "*"
                            || u == path
                            || u.strip_suffix('*')
                                .is_some_and(|prefix| path.starts_with(prefix))
                    })
            }
        }
    }

    /// The SelfSubjectRulesReview `resourceRules` entry (empty lists omitted).
    fn resource_json(&self) -> Value {
        let mut v = json!({"verbs": self.verbs});
        for (key, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
        ] {
            if !list.is_empty() {
                v[key] = json!(list);
            }
        }
        v
    }

    /// The rule as a stored `PolicyRule` (empty lists omitted).
    fn to_json(&self) -> Value {
        let mut v = self.resource_json();
        if !self.non_resource_urls.is_empty() {
            v["nonResourceURLs"] = json!(self.non_resource_urls);
        }
        v
    }

    fn non_resource_json(&self) -> Value {
        json!({"verbs": self.verbs, "nonResourceURLs": self.non_resource_urls})
    }
}

/// One binding, its role resolved to an entry of `RbacIndex::rule_sets`.
#[derive(Debug)]
struct Binding {
    /// "" for a ClusterRoleBinding.
    namespace: String,
    name: String,
    role_kind: String,
    role_name: String,
    /// None when the referenced role does not exist (grants nothing).
    rules: Option<usize>,
    /// Upstream's `describeSubject` of each subject, by subject index.
    subjects: Vec<String>,
}

impl Binding {
    /// Upstream's `clusterRoleBindingDescriber`/`roleBindingDescriber`.
    fn describe(&self, subject: usize) -> String {
        let subject = self.subjects.get(subject).map_or("", String::as_str);
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {subject}",
                self.name, self.role_kind, self.role_name
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {subject}",
                format!("{}/{}", self.name, self.namespace),
                self.role_kind,
                self.role_name
            )
        }
    }
}

/// (binding index, subject index): one subject of one binding names the user.
type Grant = (usize, usize);

/// The grants of one scope (a namespace, or "" for ClusterRoleBindings).
#[derive(Debug, Default)]
struct Scope {
    users: HashMap<String, Vec<Grant>>,
    groups: HashMap<String, Vec<Grant>>,
}

/// Compiled from the stored RBAC objects (`serde_json::Value` as the store
/// keeps them). Rebuild it whenever an RBAC object changes.
#[derive(Debug, Default)]
pub struct RbacIndex {
    /// Resolved rule lists, one per role (after aggregation).
    rule_sets: Vec<Vec<Rule>>,
    /// ClusterRoleBindings first (name order), then RoleBindings ((namespace, name) order):
    /// the order upstream visits them in, so the first grant found is the reported one.
    bindings: Vec<Binding>,
    scopes: HashMap<String, Scope>,
}

fn meta<'a>(o: &'a Value, field: &str) -> &'a str {
    str_at(o, &format!("/metadata/{field}"))
}

fn rules_of(o: &Value) -> Vec<Rule> {
    o.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Rule::from_json)
        .collect()
}

/// The ClusterRoles' rules by name, with `aggregationRule`s applied to a
/// fixed point (an aggregated role may itself be aggregated, as `view` is
/// into `edit` and `edit` into `admin`).
fn cluster_role_rules<'a>(
    cluster_roles: impl Iterator<Item = &'a Value>,
) -> HashMap<String, Vec<Rule>> {
    struct Cr<'a> {
        name: String,
        obj: &'a Value,
        selectors: Option<Vec<LabelSelector>>,
    }
    let mut crs: Vec<Cr> = cluster_roles
        .map(|o| Cr {
            name: meta(o, "name").to_string(),
            obj: o,
            selectors: o
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .map(|sels| {
                    // Validation refuses selectors that do not parse; one
                    // that slipped in selects nothing rather than everything.
                    sels.iter()
                        .filter_map(|s| LabelSelector::from_json(s).ok())
                        .collect()
                }),
        })
        .collect();
    crs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rules: HashMap<String, Vec<Rule>> = crs
        .iter()
        .map(|c| (c.name.clone(), rules_of(c.obj)))
        .collect();
    // Each round can only add rules; the number of roles bounds the depth.
    for _ in 0..=crs.len() {
        let mut changed = false;
        for c in crs.iter().filter(|c| c.selectors.is_some()) {
            let sels = c.selectors.as_deref().unwrap_or_default();
            let mut agg: Vec<Rule> = Vec::new();
            for other in crs.iter().filter(|o| o.name != c.name) {
                if !sels.iter().any(|s| s.matches(other.obj)) {
                    continue;
                }
                for r in rules.get(&other.name).into_iter().flatten() {
                    if !agg.contains(r) {
                        agg.push(r.clone());
                    }
                }
            }
            if rules.get(&c.name) != Some(&agg) {
                rules.insert(c.name.clone(), agg);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    rules
}

/// Upstream's `describeSubject`: `Kind "name"`, ServiceAccounts as `"name/namespace"`.
fn describe_subject(s: &Value, binding_ns: &str) -> String {
    let kind = str_at(s, "/kind");
    let name = str_at(s, "/name");
    if kind == "ServiceAccount" {
        let ns = match str_at(s, "/namespace") {
            "" => binding_ns,
            ns => ns,
        };
        format!("{kind} {:?}", format!("{name}/{ns}"))
    } else {
        format!("{kind} {name:?}")
    }
}

impl RbacIndex {
    pub fn build<'a>(
        roles: impl Iterator<Item = &'a Value>,
        cluster_roles: impl Iterator<Item = &'a Value>,
        role_bindings: impl Iterator<Item = &'a Value>,
        cluster_role_bindings: impl Iterator<Item = &'a Value>,
    ) -> RbacIndex {
        let mut idx = RbacIndex::default();
        let mut cluster_set: HashMap<String, usize> = HashMap::new();
        for (name, rules) in cluster_role_rules(cluster_roles) {
            cluster_set.insert(name, idx.rule_sets.len());
            idx.rule_sets.push(rules);
        }
        let mut role_set: HashMap<(String, String), usize> = HashMap::new();
        for r in roles {
            let key = (
                meta(r, "namespace").to_string(),
                meta(r, "name").to_string(),
            );
            role_set.insert(key, idx.rule_sets.len());
            idx.rule_sets.push(rules_of(r));
        }

        let mut crbs: Vec<&Value> = cluster_role_bindings.collect();
        crbs.sort_by_key(|b| meta(b, "name"));
        let mut rbs: Vec<&Value> = role_bindings.collect();
        rbs.sort_by_key(|b| (meta(b, "namespace"), meta(b, "name")));
        let crbs = crbs.into_iter().map(|b| (b, ""));
        let rbs = rbs.into_iter().map(|b| (b, meta(b, "namespace")));
        for (b, ns) in crbs.chain(rbs) {
            let role_kind = str_at(b, "/roleRef/kind");
            let role_name = str_at(b, "/roleRef/name");
            let rules = match role_kind {
                "ClusterRole" => cluster_set.get(role_name).copied(),
                // A ClusterRoleBinding cannot reference a Role (validation
                // refuses it; upstream looks in namespace "" and finds none).
                "Role" if !ns.is_empty() => role_set
                    .get(&(ns.to_string(), role_name.to_string()))
                    .copied(),
                _ => None,
            };
            let subjects: Vec<&Value> = b
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let bi = idx.bindings.len();
            idx.bindings.push(Binding {
                namespace: ns.to_string(),
                name: meta(b, "name").to_string(),
                role_kind: role_kind.to_string(),
                role_name: role_name.to_string(),
                rules,
                subjects: subjects.iter().map(|s| describe_subject(s, ns)).collect(),
            });
            if rules.is_none() {
                continue;
            }
            let scope = idx.scopes.entry(ns.to_string()).or_default();
            for (si, s) in subjects.iter().enumerate() {
                let name = str_at(s, "/name");
                let (map, key) = match str_at(s, "/kind") {
                    "User" => (&mut scope.users, name.to_string()),
                    "Group" => (&mut scope.groups, name.to_string()),
                    "ServiceAccount" => {
                        let sa_ns = match str_at(s, "/namespace") {
                            "" => ns,
                            sa_ns => sa_ns,
                        };
                        if sa_ns.is_empty() || name.is_empty() {
                            continue;
                        }
                        (
                            &mut scope.users,
                            format!("{SERVICE_ACCOUNT_PREFIX}{sa_ns}:{name}"),
                        )
                    }
                    _ => continue,
                };
                map.entry(key).or_default().push((bi, si));
            }
        }
        idx
    }

    /// The bindings naming `user` that apply in `namespace` (cluster ones
    /// first), each once with the first subject that names the user.
    fn grants(&self, user: &UserInfo, namespace: &str) -> Vec<Grant> {
        let mut out: Vec<Grant> = Vec::new();
        let scopes = std::iter::once("").chain((!namespace.is_empty()).then_some(namespace));
        for scope in scopes.filter_map(|s| self.scopes.get(s)) {
            out.extend(scope.users.get(&user.name).into_iter().flatten());
            for g in &user.groups {
                out.extend(scope.groups.get(g).into_iter().flatten());
            }
        }
        out.sort_unstable();
        out.dedup_by_key(|g| g.0);
        out
    }

    fn rules(&self, binding: usize) -> &[Rule] {
        self.bindings
            .get(binding)
            .and_then(|b| b.rules)
            .and_then(|i| self.rule_sets.get(i))
            .map_or(&[], Vec::as_slice)
    }

    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        for (b, s) in self.grants(user, attrs.namespace()) {
            if self.rules(b).iter().any(|r| r.allows(attrs)) {
                let why = self
                    .bindings
                    .get(b)
                    .map(|x| x.describe(s))
                    .unwrap_or_default();
                return Decision {
                    allowed: true,
                    reason: format!("RBAC: allowed by {why}"),
                };
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }

    /// For SelfSubjectRulesReview (`kubectl auth can-i --list`): the
    /// resource and non-resource rules that apply to `user` in `namespace`,
    /// in the review's `resourceRules`/`nonResourceRules` shapes.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let mut resource = Vec::new();
        let mut non_resource = Vec::new();
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            // What upstream's privileged group authorizer reports.
            resource.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            non_resource.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        }
        for (b, _) in self.grants(user, namespace) {
            for r in self.rules(b) {
                if !r.resources.is_empty() {
                    resource.push(r.resource_json());
                }
                if !r.non_resource_urls.is_empty() {
                    non_resource.push(r.non_resource_json());
                }
            }
        }
        (resource, non_resource)
    }
}

/// kube-apiserver's 403 message (upstream's `forbiddenMessage` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`),
/// e.g. `User "system:serviceaccount:a:default" cannot list resource "secrets" in API group "" in the namespace "b"`,
/// `... cannot get resource "pods/log" in API group "" in the namespace "b"`,
/// `... cannot list resource "nodes" in API group "" at the cluster scope`,
/// `User "u" cannot get path "/metrics"`. The object name is not part of it
/// ([`forbidden_error`] puts it in front).
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    match attrs {
        Attributes::NonResource { verb, path } => {
            format!("User {:?} cannot {verb} path {path:?}", user.name)
        }
        Attributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let res = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            format!(
                "User {:?} cannot {verb} resource {res:?} in API group {api_group:?} {scope}",
                user.name
            )
        }
    }
}

/// The whole 403 `Status` kube-apiserver sends: `NewForbidden(groupResource,
/// name, message[: reason])`, i.e. `pods "web" is forbidden: User ...`,
/// `deployments.apps is forbidden: User ...` (no name) or `forbidden: User
/// ... cannot get path "/x"` (non-resource). `reason` is the authorizers'
/// reason, appended when not empty.
pub fn forbidden_error(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let mut why = forbidden_message(user, attrs);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    match attrs {
        Attributes::NonResource { .. } => {
            ApiError::new(403, "Forbidden", format!("forbidden: {why}"))
        }
        Attributes::Resource {
            api_group,
            resource,
            name,
            ..
        } => {
            let gr = if api_group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{api_group}")
            };
            let message = if name.is_empty() {
                format!("{gr} is forbidden: {why}")
            } else {
                format!("{gr} {name:?} is forbidden: {why}")
            };
            let mut e = ApiError::new(403, "Forbidden", message);
            e.details = Some(json!({"name": name, "group": api_group, "kind": resource}));
            e
        }
    }
}
