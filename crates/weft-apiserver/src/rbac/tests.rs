//! Golden tests of the RBAC authorizer, its messages, defaults and validation.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::status::ApiError;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn alice() -> UserInfo {
    user("alice", &["system:authenticated"])
}

/// A resource request; `resource` may be `pods/log`.
fn req(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes::Resource {
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn url(verb: &str, path: &str) -> Attributes {
    Attributes::NonResource {
        verb: verb.into(),
        path: path.into(),
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

fn crb(name: &str, role: &str, subjects: Value) -> Value {
    json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

fn rb(ns: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
    json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role}, "subjects": subjects})
}

fn user_subject(name: &str) -> Value {
    json!([{"kind": "User", "apiGroup": GROUP, "name": name}])
}

/// An index over objects of any of the four kinds (told apart by `kind`).
fn index(objs: &[Value]) -> RbacIndex {
    let of = |k: &'static str| objs.iter().filter(move |o| o["kind"] == k);
    RbacIndex::build(
        of("Role"),
        of("ClusterRole"),
        of("RoleBinding"),
        of("ClusterRoleBinding"),
    )
}

fn defaults_plus(extra: &[Value]) -> RbacIndex {
    let mut objs: Vec<Value> = default_objects().into_iter().map(|(_, o)| o).collect();
    objs.extend_from_slice(extra);
    index(&objs)
}

fn allowed(idx: &RbacIndex, u: &UserInfo, a: &Attributes) -> bool {
    idx.authorize(u, a).allowed
}

// ---- rule shapes × requests ------------------------------------------------

#[test]
fn rule_shapes_against_requests() {
    // (rule, request, allowed)
    let cases: Vec<(&str, Value, Attributes, bool)> = vec![
        (
            "verb * allows delete",
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}),
            req("delete", "", "pods", "d", "p"),
            true,
        ),
        (
            "verb get denies list",
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
            req("list", "", "pods", "d", ""),
            false,
        ),
        (
            "apiGroups * allows apps",
            json!({"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]}),
            req("get", "apps", "deployments", "d", "x"),
            true,
        ),
        (
            "apiGroups \"\" denies apps",
            json!({"apiGroups": [""], "resources": ["deployments"], "verbs": ["get"]}),
            req("get", "apps", "deployments", "d", "x"),
            false,
        ),
        (
            "apiGroups apps denies core",
            json!({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["get"]}),
            req("get", "", "pods", "d", "x"),
            false,
        ),
        (
            "apiGroups apps allows apps",
            json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}),
            req("get", "apps", "deployments", "d", "x"),
            true,
        ),
        (
            "resources * allows secrets",
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
            req("get", "", "secrets", "d", "s"),
            true,
        ),
        (
            "resources * allows a subresource",
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
            req("get", "", "pods/log", "d", "p"),
            true,
        ),
        (
            "pods/log allows pods/log",
            json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
            req("get", "", "pods/log", "d", "p"),
            true,
        ),
        (
            "pods/log denies pods",
            json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
            req("get", "", "pods", "d", "p"),
            false,
        ),
        (
            "pods denies pods/log",
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
            req("get", "", "pods/log", "d", "p"),
            false,
        ),
        (
            "pods/log denies services/log",
            json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
            req("get", "", "services/log", "d", "p"),
            false,
        ),
        (
            "*/scale allows deployments/scale",
            json!({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}),
            req("update", "apps", "deployments/scale", "d", "x"),
            true,
        ),
        (
            "*/scale denies deployments",
            json!({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}),
            req("update", "apps", "deployments", "d", "x"),
            false,
        ),
        // Upstream's ResourceMatches knows `*` and `*/<sub>` only: `*/*` is
        // a `*/<sub>` rule for a subresource literally named `*`.
        (
            "*/* is not a wildcard for subresources",
            json!({"apiGroups": [""], "resources": ["*/*"], "verbs": ["get"]}),
            req("get", "", "pods/log", "d", "p"),
            false,
        ),
        (
            "resourceNames allow get of a listed name",
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls"], "verbs": ["get", "list"]}),
            req("get", "", "secrets", "d", "tls"),
            true,
        ),
        (
            "resourceNames deny get of another name",
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls"], "verbs": ["get", "list"]}),
            req("get", "", "secrets", "d", "db"),
            false,
        ),
        (
            "resourceNames deny list (no name)",
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls"], "verbs": ["get", "list"]}),
            req("list", "", "secrets", "d", ""),
            false,
        ),
        (
            "resourceNames deny create without a name",
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls"], "verbs": ["create"]}),
            req("create", "", "secrets", "d", ""),
            false,
        ),
        (
            "nonResourceURL exact allows it",
            json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}),
            url("get", "/healthz"),
            true,
        ),
        (
            "nonResourceURL exact denies a longer path",
            json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}),
            url("get", "/healthz/etcd"),
            false,
        ),
        (
            "nonResourceURL prefix allows below it",
            json!({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}),
            url("get", "/apis/apps/v1"),
            true,
        ),
        (
            "nonResourceURL prefix denies a sibling",
            json!({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}),
            url("get", "/api"),
            false,
        ),
        (
            "nonResourceURL verb get denies post",
            json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}),
            url("post", "/healthz"),
            false,
        ),
        (
            "nonResourceURL * allows any path",
            json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            url("put", "/anything"),
            true,
        ),
        (
            "resource rule denies a non-resource request",
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
            url("get", "/healthz"),
            false,
        ),
        (
            "non-resource rule denies a resource request",
            json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            req("get", "", "pods", "d", "p"),
            false,
        ),
    ];
    let mut failed = Vec::new();
    for (what, rule, attrs, want) in cases {
        let idx = index(&[
            cluster_role("r", json!([rule])),
            crb("b", "r", user_subject("alice")),
        ]);
        let d = idx.authorize(&alice(), &attrs);
        let reason = if want {
            r#"RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to User "alice""#
        } else {
            ""
        };
        if d.allowed != want || d.reason != reason {
            failed.push(format!("{what}: got {d:?}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

// ---- bindings and subjects -------------------------------------------------

fn pods_reader() -> Value {
    cluster_role(
        "pods-reader",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
    )
}

#[test]
fn role_binding_to_cluster_role_grants_only_in_its_namespace() {
    let idx = index(&[
        pods_reader(),
        rb(
            "a",
            "read",
            "ClusterRole",
            "pods-reader",
            user_subject("alice"),
        ),
    ]);
    let d = idx.authorize(&alice(), &req("list", "", "pods", "a", ""));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by RoleBinding "read/a" of ClusterRole "pods-reader" to User "alice""#
    );
    assert!(!allowed(&idx, &alice(), &req("list", "", "pods", "b", "")));
    // Listing across namespaces is a cluster-scope request.
    assert!(!allowed(&idx, &alice(), &req("list", "", "pods", "", "")));
}

#[test]
fn cluster_role_binding_grants_in_every_namespace_and_cluster_wide() {
    let idx = index(&[
        pods_reader(),
        crb("read", "pods-reader", user_subject("alice")),
    ]);
    for ns in ["a", "b", ""] {
        assert!(
            allowed(&idx, &alice(), &req("list", "", "pods", ns, "")),
            "{ns:?}"
        );
    }
}

#[test]
fn role_binding_to_role_uses_the_role_of_its_own_namespace() {
    let rules = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]);
    let idx = index(&[
        // Same name, other namespace: must not be picked up by b's binding.
        role("a", "cm", rules),
        rb("b", "cm", "Role", "cm", user_subject("alice")),
    ]);
    assert!(!allowed(
        &idx,
        &alice(),
        &req("get", "", "configmaps", "b", "x")
    ));
    let idx = index(&[
        role(
            "b",
            "cm",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
        ),
        rb("b", "cm", "Role", "cm", user_subject("alice")),
    ]);
    let d = idx.authorize(&alice(), &req("get", "", "configmaps", "b", "x"));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by RoleBinding "cm/b" of Role "cm" to User "alice""#
    );
}

#[test]
fn missing_role_grants_nothing() {
    let idx = index(&[crb("read", "no-such-role", user_subject("alice"))]);
    let d = idx.authorize(&alice(), &req("get", "", "pods", "a", "p"));
    assert_eq!(
        d,
        Decision {
            allowed: false,
            reason: String::new()
        }
    );
}

#[test]
fn service_account_subject_with_empty_namespace_means_the_role_bindings() {
    let idx = index(&[
        pods_reader(),
        rb(
            "a",
            "sa",
            "ClusterRole",
            "pods-reader",
            json!([{"kind": "ServiceAccount", "name": "default"}]),
        ),
    ]);
    let sa_a = user(
        "system:serviceaccount:a:default",
        &["system:serviceaccounts"],
    );
    let d = idx.authorize(&sa_a, &req("list", "", "pods", "a", ""));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by RoleBinding "sa/a" of ClusterRole "pods-reader" to ServiceAccount "default/a""#
    );
    let sa_b = user(
        "system:serviceaccount:b:default",
        &["system:serviceaccounts"],
    );
    assert!(!allowed(&idx, &sa_b, &req("list", "", "pods", "a", "")));
}

#[test]
fn service_account_subject_in_another_namespace_is_named_with_it() {
    let idx = index(&[
        pods_reader(),
        rb(
            "a",
            "sa",
            "ClusterRole",
            "pods-reader",
            json!([{"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}]),
        ),
    ]);
    let bot = user("system:serviceaccount:ci:bot", &[]);
    let d = idx.authorize(&bot, &req("get", "", "pods", "a", "p"));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by RoleBinding "sa/a" of ClusterRole "pods-reader" to ServiceAccount "bot/ci""#
    );
}

#[test]
fn service_account_subject_without_namespace_in_cluster_binding_grants_nothing() {
    let idx = index(&[
        pods_reader(),
        crb(
            "sa",
            "pods-reader",
            json!([{"kind": "ServiceAccount", "name": "default"}]),
        ),
    ]);
    let sa = user("system:serviceaccount:a:default", &[]);
    assert!(!allowed(&idx, &sa, &req("list", "", "pods", "a", "")));
}

fn group_binding(group: &str) -> RbacIndex {
    index(&[
        pods_reader(),
        crb(
            "g",
            "pods-reader",
            json!([{"kind": "Group", "apiGroup": GROUP, "name": group}]),
        ),
    ])
}

#[test]
fn group_system_serviceaccounts_grants_every_service_account() {
    let idx = group_binding("system:serviceaccounts");
    let sa = user(
        "system:serviceaccount:x:y",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:x",
            "system:authenticated",
        ],
    );
    let d = idx.authorize(&sa, &req("list", "", "pods", "z", ""));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by ClusterRoleBinding "g" of ClusterRole "pods-reader" to Group "system:serviceaccounts""#
    );
    assert!(!allowed(&idx, &alice(), &req("list", "", "pods", "z", "")));
}

#[test]
fn group_system_serviceaccounts_of_a_namespace_grants_only_its_accounts() {
    let idx = group_binding("system:serviceaccounts:x");
    let in_x = user(
        "system:serviceaccount:x:y",
        &["system:serviceaccounts", "system:serviceaccounts:x"],
    );
    let in_w = user(
        "system:serviceaccount:w:y",
        &["system:serviceaccounts", "system:serviceaccounts:w"],
    );
    assert!(allowed(&idx, &in_x, &req("list", "", "pods", "z", "")));
    assert!(!allowed(&idx, &in_w, &req("list", "", "pods", "z", "")));
}

#[test]
fn system_masters_are_allowed_everything_without_any_binding() {
    let idx = index(&[]);
    let root = user("admin", &["system:masters"]);
    let d = idx.authorize(
        &root,
        &req(
            "delete",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "x",
        ),
    );
    // Upstream's privileged-group authorizer allows without a reason.
    assert_eq!(
        d,
        Decision {
            allowed: true,
            reason: String::new()
        }
    );
    assert!(allowed(&idx, &root, &url("post", "/anything")));
}

#[test]
fn cluster_bindings_are_reported_before_role_bindings_and_by_name() {
    let idx = index(&[
        pods_reader(),
        rb(
            "a",
            "a-first",
            "ClusterRole",
            "pods-reader",
            user_subject("alice"),
        ),
        crb("zz", "pods-reader", user_subject("alice")),
        crb("mm", "pods-reader", user_subject("alice")),
    ]);
    let d = idx.authorize(&alice(), &req("get", "", "pods", "a", "p"));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by ClusterRoleBinding "mm" of ClusterRole "pods-reader" to User "alice""#
    );
}

#[test]
fn reason_names_the_first_subject_that_applies() {
    let idx = index(&[
        pods_reader(),
        crb(
            "b",
            "pods-reader",
            json!([
                {"kind": "User", "apiGroup": GROUP, "name": "bob"},
                {"kind": "Group", "apiGroup": GROUP, "name": "system:authenticated"},
                {"kind": "User", "apiGroup": GROUP, "name": "alice"},
            ]),
        ),
    ]);
    let d = idx.authorize(&alice(), &req("get", "", "pods", "a", "p"));
    assert_eq!(
        d.reason,
        r#"RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "pods-reader" to Group "system:authenticated""#
    );
}

#[test]
fn aggregation_rule_collects_rules_of_labelled_cluster_roles() {
    let idx = index(&[
        json!({"kind": "ClusterRole", "metadata": {"name": "agg"},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"team": "x"}}]}, "rules": []}),
        json!({"kind": "ClusterRole", "metadata": {"name": "part", "labels": {"team": "x"}},
               "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}),
        crb("b", "agg", user_subject("alice")),
    ]);
    assert!(allowed(
        &idx,
        &alice(),
        &req("get", "example.com", "widgets", "a", "w")
    ));
}

// ---- default roles -----------------------------------------------------------

fn bind_in(ns: &str, role: &str) -> Value {
    rb(ns, role, "ClusterRole", role, user_subject("alice"))
}

#[test]
fn default_view_reads_pods_but_not_secrets() {
    let idx = defaults_plus(&[bind_in("a", "view")]);
    assert!(allowed(&idx, &alice(), &req("list", "", "pods", "a", "")));
    assert!(allowed(
        &idx,
        &alice(),
        &req("get", "", "pods/log", "a", "p")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("get", "apps", "deployments", "a", "d")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("get", "", "secrets", "a", "s")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("list", "", "secrets", "a", "")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("create", "", "pods", "a", "")
    ));
}

#[test]
fn default_edit_writes_workloads_and_secrets_but_not_rbac() {
    let idx = defaults_plus(&[bind_in("a", "edit")]);
    assert!(allowed(
        &idx,
        &alice(),
        &req("create", "apps", "deployments", "a", "")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("get", "", "secrets", "a", "s")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("update", "", "secrets", "a", "s")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("create", "", "pods/exec", "a", "p")
    ));
    // edit includes view through aggregation.
    assert!(allowed(&idx, &alice(), &req("watch", "", "pods", "a", "")));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("create", GROUP, "rolebindings", "a", "")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("create", "", "pods", "b", "")
    ));
}

#[test]
fn default_admin_manages_roles_and_bindings_in_its_namespace() {
    let idx = defaults_plus(&[bind_in("a", "admin")]);
    assert!(allowed(
        &idx,
        &alice(),
        &req("create", GROUP, "rolebindings", "a", "")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("delete", GROUP, "roles", "a", "r")
    ));
    assert!(allowed(
        &idx,
        &alice(),
        &req("delete", "", "secrets", "a", "s")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("create", GROUP, "clusterroles", "", "")
    ));
    assert!(!allowed(
        &idx,
        &alice(),
        &req("create", GROUP, "roles", "b", "")
    ));
}

#[test]
fn default_cluster_admin_allows_everything_and_is_bound_to_system_masters() {
    let idx = defaults_plus(&[crb("alice-admin", "cluster-admin", user_subject("alice"))]);
    assert!(allowed(
        &idx,
        &alice(),
        &req("delete", GROUP, "clusterroles", "", "x")
    ));
    assert!(allowed(&idx, &alice(), &url("get", "/metrics")));
    let crb = default_objects()
        .into_iter()
        .find(|(p, o)| *p == "clusterrolebindings" && o["metadata"]["name"] == "cluster-admin")
        .map(|(_, o)| o)
        .unwrap();
    assert_eq!(crb["roleRef"]["name"], "cluster-admin");
    assert_eq!(
        crb["subjects"],
        json!([{"apiGroup": GROUP, "kind": "Group", "name": "system:masters"}])
    );
}

#[test]
fn default_discovery_is_for_authenticated_users_and_public_info_for_everyone() {
    let idx = defaults_plus(&[]);
    let anon = user("system:anonymous", &["system:unauthenticated"]);
    for path in [
        "/api",
        "/apis/apps/v1",
        "/openapi/v3",
        "/version",
        "/healthz",
    ] {
        assert!(allowed(&idx, &alice(), &url("get", path)), "{path}");
    }
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        assert!(allowed(&idx, &anon, &url("get", path)), "{path}");
    }
    assert!(!allowed(&idx, &anon, &url("get", "/apis")));
    assert!(!allowed(&idx, &alice(), &url("get", "/metrics")));
    assert!(!allowed(&idx, &alice(), &url("post", "/api")));
}

#[test]
fn default_basic_user_may_ask_what_it_may_do() {
    let idx = defaults_plus(&[]);
    for r in ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] {
        let d = idx.authorize(&alice(), &req("create", "authorization.k8s.io", r, "", ""));
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated""#
        );
    }
    let anon = user("system:anonymous", &["system:unauthenticated"]);
    assert!(!allowed(
        &idx,
        &anon,
        &req(
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            ""
        )
    ));
}

#[test]
fn default_objects_are_labelled_and_pass_validation() {
    for (plural, mut obj) in default_objects() {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(
            obj["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults",
            "{name}"
        );
        let res = prepare(plural, &mut obj, None);
        assert!(res.is_ok(), "{name}: {res:?}");
    }
}

#[test]
fn default_aggregated_roles_are_stored_with_their_rules() {
    let objs = default_objects();
    let get = |n: &str| {
        objs.iter()
            .find(|(_, o)| o["metadata"]["name"] == n)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        get("view")["rules"],
        get("system:aggregate-to-view")["rules"]
    );
    let edit = get("edit")["rules"].as_array().unwrap().len();
    let view = get("view")["rules"].as_array().unwrap().len();
    let admin = get("admin")["rules"].as_array().unwrap().len();
    assert!(view < edit && edit < admin, "{view} {edit} {admin}");
}

// ---- rules_for (SelfSubjectRulesReview) ---------------------------------------

#[test]
fn rules_for_lists_the_rules_bound_in_the_namespace() {
    let idx = index(&[
        cluster_role(
            "mixed",
            json!([
                {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            ]),
        ),
        crb("c", "mixed", user_subject("alice")),
        role(
            "a",
            "cm",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        ),
        rb("a", "cm", "Role", "cm", user_subject("alice")),
    ]);
    let (res, non_res) = idx.rules_for(&alice(), "a");
    assert_eq!(
        res,
        vec![
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}),
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]}),
        ]
    );
    assert_eq!(
        non_res,
        vec![json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]})]
    );
    let (res_b, _) = idx.rules_for(&alice(), "b");
    assert_eq!(res_b.len(), 1, "{res_b:?}");
}

#[test]
fn rules_for_system_masters_reports_everything() {
    let (res, non_res) = index(&[]).rules_for(&user("root", &["system:masters"]), "a");
    assert_eq!(
        res,
        vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})]
    );
    assert_eq!(
        non_res,
        vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})]
    );
}

// ---- forbidden messages ------------------------------------------------------
// Shapes checked against upstream's forbiddenMessage in
// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go
// (resource = resource[/subresource]; "in the namespace %q" or "at the cluster
// scope"; non-resource: "cannot %s path %q") and NewForbidden in
// staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go
// (`<resource[.group]> "<name>" is forbidden: `, no name: `<gr> is forbidden: `,
// empty group-resource: `forbidden: `).

#[test]
fn forbidden_message_namespaced() {
    let sa = user("system:serviceaccount:a:default", &[]);
    assert_eq!(
        forbidden_message(&sa, &req("list", "", "secrets", "b", "")),
        r#"User "system:serviceaccount:a:default" cannot list resource "secrets" in API group "" in the namespace "b""#
    );
}

#[test]
fn forbidden_message_cluster_scope() {
    assert_eq!(
        forbidden_message(&alice(), &req("list", "", "nodes", "", "")),
        r#"User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
    );
}

#[test]
fn forbidden_message_subresource_and_group() {
    assert_eq!(
        forbidden_message(&alice(), &req("get", "", "pods/log", "d", "web")),
        r#"User "alice" cannot get resource "pods/log" in API group "" in the namespace "d""#
    );
    assert_eq!(
        forbidden_message(
            &alice(),
            &req("update", "apps", "deployments/scale", "d", "web")
        ),
        r#"User "alice" cannot update resource "deployments/scale" in API group "apps" in the namespace "d""#
    );
}

#[test]
fn forbidden_message_non_resource() {
    assert_eq!(
        forbidden_message(&alice(), &url("get", "/metrics")),
        r#"User "alice" cannot get path "/metrics""#
    );
}

#[test]
fn forbidden_error_is_kube_apiservers_status() {
    let e = forbidden_error(&alice(), &req("get", "", "pods/log", "d", "web"), "");
    assert_eq!(e.code, 403);
    assert_eq!(e.reason, "Forbidden");
    assert_eq!(
        e.message,
        r#"pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "d""#
    );
    assert_eq!(
        e.details,
        Some(json!({"name": "web", "group": "", "kind": "pods"}))
    );
    let e = forbidden_error(&alice(), &req("list", "apps", "deployments", "", ""), "");
    assert_eq!(
        e.message,
        r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope"#
    );
    let e = forbidden_error(&alice(), &url("get", "/metrics"), "no RBAC policy matched");
    assert_eq!(
        e.message,
        r#"forbidden: User "alice" cannot get path "/metrics": no RBAC policy matched"#
    );
}

// ---- validation --------------------------------------------------------------

fn prepare(plural: &str, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let cfg = crate::tests_support::config(std::path::Path::new("/nonexistent"));
    let kind = crate::kinds::by_plural(plural).unwrap();
    let ns = if kind.namespaced { "a" } else { "" };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let st = crate::store::State::empty();
    crate::validate::prepare(&cfg, &st, kind, ns, &name, obj, old)
}

fn with_api(mut obj: Value) -> Value {
    let kind = obj["kind"].as_str().unwrap().to_string();
    obj["apiVersion"] = json!(format!("{GROUP}/v1"));
    obj["kind"] = json!(kind);
    obj
}

/// The (field, reason) of every cause of a 422.
fn causes(e: &ApiError) -> Vec<(String, String)> {
    assert_eq!(e.code, 422, "{e}");
    e.details.as_ref().unwrap()["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn role_with(rule: Value) -> Value {
    with_api(role("a", "r", json!([rule])))
}

fn cluster_role_with(rule: Value) -> Value {
    with_api(cluster_role("r", json!([rule])))
}

#[test]
fn rejected_shapes_name_the_field() {
    let sa_rb = |s: Value| with_api(rb("a", "b", "ClusterRole", "view", json!([s])));
    let sa_crb = |s: Value| with_api(crb("b", "view", json!([s])));
    let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
        (
            "empty verbs",
            "roles",
            role_with(json!({"apiGroups": [""], "resources": ["pods"], "verbs": []})),
            "rules[0].verbs",
            "FieldValueRequired",
        ),
        (
            "missing verbs",
            "roles",
            role_with(json!({"apiGroups": [""], "resources": ["pods"]})),
            "rules[0].verbs",
            "FieldValueRequired",
        ),
        (
            "empty apiGroups",
            "roles",
            role_with(json!({"apiGroups": [], "resources": ["pods"], "verbs": ["get"]})),
            "rules[0].apiGroups",
            "FieldValueRequired",
        ),
        (
            "no resources",
            "clusterroles",
            cluster_role_with(json!({"apiGroups": [""], "verbs": ["get"]})),
            "rules[0].resources",
            "FieldValueRequired",
        ),
        (
            "resourceNames over two resources",
            "roles",
            role_with(
                json!({"apiGroups": [""], "resources": ["pods", "secrets"], "resourceNames": ["x"], "verbs": ["get"]}),
            ),
            "rules[0].resourceNames",
            "FieldValueRequired",
        ),
        (
            "unknown verb",
            "roles",
            role_with(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "gett"]})),
            "rules[0].verbs[1]",
            "FieldValueNotSupported",
        ),
        (
            "nonResourceURLs in a Role",
            "roles",
            role_with(json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]})),
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
        ),
        (
            "nonResourceURLs mixed with resources",
            "clusterroles",
            cluster_role_with(
                json!({"nonResourceURLs": ["/healthz"], "resources": ["pods"], "verbs": ["get"]}),
            ),
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
        ),
        (
            "nonResourceURL without /",
            "clusterroles",
            cluster_role_with(json!({"nonResourceURLs": ["healthz"], "verbs": ["get"]})),
            "rules[0].nonResourceURLs[0]",
            "FieldValueInvalid",
        ),
        (
            "nonResourceURL with inner *",
            "clusterroles",
            cluster_role_with(json!({"nonResourceURLs": ["/a/*/b"], "verbs": ["get"]})),
            "rules[0].nonResourceURLs[0]",
            "FieldValueInvalid",
        ),
        (
            "resource verb on a URL",
            "clusterroles",
            cluster_role_with(json!({"nonResourceURLs": ["/healthz"], "verbs": ["list"]})),
            "rules[0].verbs[0]",
            "FieldValueNotSupported",
        ),
        (
            "bad aggregation selector",
            "clusterroles",
            with_api(
                json!({"kind": "ClusterRole", "metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}}),
            ),
            "aggregationRule.clusterRoleSelectors[0]",
            "FieldValueInvalid",
        ),
        (
            "aggregationRule without selectors",
            "clusterroles",
            with_api(
                json!({"kind": "ClusterRole", "metadata": {"name": "r"}, "aggregationRule": {}}),
            ),
            "aggregationRule.clusterRoleSelectors",
            "FieldValueRequired",
        ),
        (
            "role name with /",
            "clusterroles",
            with_api(cluster_role("a/b", json!([]))),
            "metadata.name",
            "FieldValueInvalid",
        ),
        (
            "missing roleRef",
            "rolebindings",
            with_api(json!({"kind": "RoleBinding", "metadata": {"name": "b"}})),
            "roleRef",
            "FieldValueRequired",
        ),
        (
            "roleRef apiGroup",
            "rolebindings",
            with_api(
                json!({"kind": "RoleBinding", "metadata": {"name": "b"}, "roleRef": {"apiGroup": "", "kind": "Role", "name": "r"}}),
            ),
            "roleRef.apiGroup",
            "FieldValueNotSupported",
        ),
        (
            "roleRef kind",
            "rolebindings",
            with_api(
                json!({"kind": "RoleBinding", "metadata": {"name": "b"}, "roleRef": {"apiGroup": GROUP, "kind": "Pod", "name": "r"}}),
            ),
            "roleRef.kind",
            "FieldValueNotSupported",
        ),
        (
            "ClusterRoleBinding to a Role",
            "clusterrolebindings",
            with_api(
                json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"}}),
            ),
            "roleRef.kind",
            "FieldValueNotSupported",
        ),
        (
            "roleRef name empty",
            "clusterrolebindings",
            with_api(
                json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": ""}}),
            ),
            "roleRef.name",
            "FieldValueRequired",
        ),
        (
            "subject kind",
            "rolebindings",
            sa_rb(json!({"kind": "Robot", "name": "x"})),
            "subjects[0].kind",
            "FieldValueNotSupported",
        ),
        (
            "subject name empty",
            "rolebindings",
            sa_rb(json!({"kind": "User", "name": ""})),
            "subjects[0].name",
            "FieldValueRequired",
        ),
        (
            "ServiceAccount without name",
            "rolebindings",
            sa_rb(json!({"kind": "ServiceAccount", "name": ""})),
            "subjects[0].name",
            "FieldValueRequired",
        ),
        (
            "ServiceAccount bad name",
            "rolebindings",
            sa_rb(json!({"kind": "ServiceAccount", "name": "Bad_Name"})),
            "subjects[0].name",
            "FieldValueInvalid",
        ),
        (
            "ServiceAccount with apiGroup",
            "rolebindings",
            sa_rb(json!({"kind": "ServiceAccount", "name": "x", "apiGroup": GROUP})),
            "subjects[0].apiGroup",
            "FieldValueNotSupported",
        ),
        (
            "ServiceAccount without namespace in a ClusterRoleBinding",
            "clusterrolebindings",
            sa_crb(json!({"kind": "ServiceAccount", "name": "x"})),
            "subjects[0].namespace",
            "FieldValueRequired",
        ),
        (
            "User with another apiGroup",
            "clusterrolebindings",
            sa_crb(json!({"kind": "User", "name": "x", "apiGroup": "example.com"})),
            "subjects[0].apiGroup",
            "FieldValueNotSupported",
        ),
    ];
    let mut failed = Vec::new();
    for (what, plural, mut obj, field, reason) in cases {
        match prepare(plural, &mut obj, None) {
            Ok(()) => failed.push(format!("{what}: accepted")),
            Err(e) if e.code != 422 => failed.push(format!("{what}: {e}")),
            Err(e) => {
                let got = causes(&e);
                if !got.contains(&(field.to_string(), reason.to_string())) {
                    failed.push(format!("{what}: want {field} {reason}, got {got:?}"));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn unknown_verb_message_lists_the_supported_ones() {
    let mut r = role_with(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["gett"]}));
    let e = prepare("roles", &mut r, None).unwrap_err();
    assert!(
        e.message.contains(r#"rules[0].verbs[0]: Unsupported value: "gett": supported values: "*", "approve", "bind", "create""#),
        "{}",
        e.message
    );
    assert!(e.message.contains(r#""watch""#), "{}", e.message);
}

#[test]
fn empty_api_groups_message_is_upstreams() {
    let mut r = role_with(json!({"apiGroups": [], "resources": ["pods"], "verbs": ["get"]}));
    let e = prepare("roles", &mut r, None).unwrap_err();
    assert_eq!(
        e.message,
        r#"Role "r" is invalid: rules[0].apiGroups: Required value: resource rules must supply at least one api group"#
    );
}

#[test]
fn valid_rbac_objects_are_accepted_with_colon_names() {
    let mut cr = with_api(cluster_role(
        "system:reader",
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"nonResourceURLs": ["/healthz", "/apis/*", "*"], "verbs": ["get", "head"]},
        ]),
    ));
    assert_eq!(prepare("clusterroles", &mut cr, None), Ok(()));
    let mut b = with_api(rb(
        "a",
        "system:b",
        "ClusterRole",
        "system:reader",
        json!([
            {"kind": "ServiceAccount", "name": "default"},
            {"kind": "Group", "name": "system:serviceaccounts:a"},
        ]),
    ));
    assert_eq!(prepare("rolebindings", &mut b, None), Ok(()));
}

#[test]
fn user_and_group_subjects_get_the_rbac_api_group_by_default() {
    let mut b = with_api(crb(
        "b",
        "view",
        json!([{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "g"}]),
    ));
    prepare("clusterrolebindings", &mut b, None).unwrap();
    assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
    assert_eq!(b["subjects"][1]["apiGroup"], GROUP);
}

#[test]
fn role_ref_is_immutable_on_update() {
    let old = with_api(rb("a", "b", "ClusterRole", "view", user_subject("alice")));
    let mut new = with_api(rb("a", "b", "ClusterRole", "edit", user_subject("alice")));
    let e = prepare("rolebindings", &mut new, Some(&old)).unwrap_err();
    assert_eq!(
        e.message,
        r#"RoleBinding "b" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef"#
    );
    // Changing only the subjects is fine.
    let mut same = with_api(rb("a", "b", "ClusterRole", "view", user_subject("bob")));
    assert_eq!(prepare("rolebindings", &mut same, Some(&old)), Ok(()));
}

// ---- monotonicity --------------------------------------------------------------

fn pool_roles() -> Vec<Value> {
    vec![
        pods_reader(),
        cluster_role(
            "all",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
        cluster_role(
            "logs",
            json!([{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
        ),
        cluster_role(
            "named",
            json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get"]}]),
        ),
        cluster_role(
            "urls",
            json!([{"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}]),
        ),
        role(
            "a",
            "deploy",
            json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}]),
        ),
    ]
}

fn pool_subject(i: usize) -> Value {
    [
        json!({"kind": "User", "apiGroup": GROUP, "name": "alice"}),
        json!({"kind": "User", "apiGroup": GROUP, "name": "bob"}),
        json!({"kind": "Group", "apiGroup": GROUP, "name": "system:serviceaccounts"}),
        json!({"kind": "Group", "apiGroup": GROUP, "name": "devs"}),
        json!({"kind": "ServiceAccount", "name": "default", "namespace": "a"}),
        json!({"kind": "ServiceAccount", "name": "default"}),
    ][i % 6]
        .clone()
}

fn pool_user(i: usize) -> UserInfo {
    [
        user("alice", &["devs"]),
        user("bob", &[]),
        user(
            "system:serviceaccount:a:default",
            &["system:serviceaccounts", "system:serviceaccounts:a"],
        ),
        user(
            "system:serviceaccount:b:default",
            &["system:serviceaccounts", "system:serviceaccounts:b"],
        ),
    ][i % 4]
        .clone()
}

fn pool_request(i: usize) -> Attributes {
    [
        req("list", "", "pods", "a", ""),
        req("get", "", "pods", "b", "p"),
        req("get", "", "pods/log", "a", "p"),
        req("get", "", "secrets", "a", "s1"),
        req("list", "", "secrets", "b", ""),
        req("create", "apps", "deployments", "a", ""),
        req("list", "", "nodes", "", ""),
        url("get", "/apis/apps"),
        url("post", "/healthz"),
    ][i % 9]
        .clone()
}

/// A binding from indexes into the pools: cluster or namespace a/b, a role, two subjects.
fn pool_binding(n: usize, scope: usize, role_i: usize, s1: usize, s2: usize) -> Value {
    let names = ["pods-reader", "all", "logs", "named", "urls", "deploy"];
    let role_name = names[role_i % names.len()];
    let subjects = json!([pool_subject(s1), pool_subject(s2)]);
    match scope % 3 {
        0 if role_name != "deploy" => crb(&format!("b{n}"), role_name, subjects),
        0 | 1 => {
            let kind = if role_name == "deploy" {
                "Role"
            } else {
                "ClusterRole"
            };
            rb("a", &format!("b{n}"), kind, role_name, subjects)
        }
        _ => rb("b", &format!("b{n}"), "ClusterRole", role_name, subjects),
    }
}

type BindingSpec = (usize, usize, usize, usize);

fn binding_spec() -> impl Strategy<Value = BindingSpec> {
    (0..3usize, 0..6usize, 0..6usize, 0..6usize)
}

proptest! {
    #[test]
    fn adding_a_binding_never_turns_an_allow_into_a_deny(
        bindings in proptest::collection::vec(binding_spec(), 0..6),
        extra in binding_spec(),
        u in 0..4usize,
        r in 0..9usize,
    ) {
        let mut objs = pool_roles();
        for (n, (scope, role_i, s1, s2)) in bindings.iter().enumerate() {
            objs.push(pool_binding(n, *scope, *role_i, *s1, *s2));
        }
        let before = index(&objs).authorize(&pool_user(u), &pool_request(r));
        objs.push(pool_binding(99, extra.0, extra.1, extra.2, extra.3));
        let after = index(&objs).authorize(&pool_user(u), &pool_request(r));
        prop_assert!(!before.allowed || after.allowed, "{before:?} then {after:?}");
    }
}
