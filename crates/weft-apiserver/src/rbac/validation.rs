//! Create/update validation and defaulting of Roles, ClusterRoles and their
//! bindings, after upstream's `pkg/apis/rbac/validation/validation.go` and
//! `SetDefaults_Subject`, plus two checks upstream leaves out: verbs must be
//! ones some authorizer path uses (a typo such as `gett` otherwise grants
//! nothing, silently), and non-resource URLs must be paths (`/x`, `/x/*`, `*`).

use serde_json::{json, Value};

use super::GROUP;
use crate::selector::LabelSelector;
use crate::status::Cause;
use crate::validate::NameRule;

/// The verbs a resource rule may name.
pub const RESOURCE_VERBS: &[&str] = &[
    "*",
    "approve",
    "bind",
    "create",
    "delete",
    "deletecollection",
    "escalate",
    "get",
    "impersonate",
    "list",
    "patch",
    "proxy",
    "sign",
    "update",
    "use",
    "watch",
];

/// The verbs a non-resource rule may name: lowercase HTTP methods.
pub const NON_RESOURCE_VERBS: &[&str] = &[
    "*", "delete", "get", "head", "options", "patch", "post", "put",
];

fn required(field: impl Into<String>, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: format!("Required value: {detail}"),
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    super::strings(v, key)
}

/// Go's `%#v` of a `[]string`, as upstream's field errors print list values.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Validates (and defaults) one RBAC object of kind `plural`; `old` is the
/// stored object on update.
pub fn validate(plural: &str, obj: &mut Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    match plural {
        "roles" => rules(obj, true, causes),
        "clusterroles" => {
            rules(obj, false, causes);
            aggregation_rule(obj, causes);
        }
        "rolebindings" => binding(obj, old, true, causes),
        "clusterrolebindings" => binding(obj, old, false, causes),
        _ => {}
    }
}

fn rules(obj: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    let list = obj.get("rules").and_then(Value::as_array);
    for (i, r) in list.into_iter().flatten().enumerate() {
        policy_rule(r, namespaced, &format!("rules[{i}]"), causes);
    }
}

fn policy_rule(r: &Value, namespaced: bool, at: &str, causes: &mut Vec<Cause>) {
    let verbs = strings(r, "verbs");
    let groups = strings(r, "apiGroups");
    let resources = strings(r, "resources");
    let names = strings(r, "resourceNames");
    let urls = strings(r, "nonResourceURLs");
    if verbs.is_empty() {
        causes.push(required(
            format!("{at}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !urls.is_empty() {
        if namespaced {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                go_list(&urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                go_list(&urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        for (j, u) in urls.iter().enumerate() {
            let body = u.strip_suffix('*').unwrap_or(u);
            let ok = u == "*" || (body.starts_with('/') && !body.contains('*'));
            if !ok {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs[{j}]"),
                    format!("{u:?}"),
                    "must be \"*\" or a path starting with '/', with '*' only as its last character (e.g. \"/healthz\", \"/apis/*\")",
                ));
            }
        }
        known_verbs(&verbs, NON_RESOURCE_VERBS, at, causes);
        return;
    }
    if groups.is_empty() {
        causes.push(required(
            format!("{at}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if resources.is_empty() {
        causes.push(required(
            format!("{at}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
    if !names.is_empty() && resources.len() > 1 {
        causes.push(required(
            format!("{at}.resourceNames"),
            "resource names cannot apply to multiple resources",
        ));
    }
    known_verbs(&verbs, RESOURCE_VERBS, at, causes);
}

fn known_verbs(verbs: &[String], allowed: &[&str], at: &str, causes: &mut Vec<Cause>) {
    for (j, v) in verbs.iter().enumerate() {
        if !allowed.contains(&v.as_str()) {
            causes.push(Cause::unsupported(format!("{at}.verbs[{j}]"), v, allowed));
        }
    }
}

fn aggregation_rule(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(rule) = obj.get("aggregationRule").filter(|r| !r.is_null()) else {
        return;
    };
    let sels = rule.get("clusterRoleSelectors").and_then(Value::as_array);
    if sels.is_none_or(|s| s.is_empty()) {
        causes.push(required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (i, s) in sels.into_iter().flatten().enumerate() {
        if let Err(e) = LabelSelector::from_json(s) {
            causes.push(Cause::invalid(
                format!("aggregationRule.clusterRoleSelectors[{i}]"),
                s,
                &e,
            ));
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Upstream's `%#v` of the internal `rbac.RoleRef`.
fn show_role_ref(r: Option<&Value>) -> String {
    let get = |k: &str| r.map_or("", |r| str_at(r, k));
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        get("apiGroup"),
        get("kind"),
        get("name")
    )
}

fn binding(obj: &mut Value, old: Option<&Value>, namespaced: bool, causes: &mut Vec<Cause>) {
    let role_ref = obj.get("roleRef").filter(|r| r.is_object());
    if role_ref.is_none() {
        causes.push(Cause::required("roleRef"));
    } else {
        role_ref_fields(role_ref, namespaced, causes);
    }
    if let Some(old) = old {
        let key = |v: Option<&Value>| {
            ["apiGroup", "kind", "name"].map(|k| v.map_or("", |r| str_at(r, k)).to_string())
        };
        if key(old.get("roleRef")) != key(role_ref) {
            causes.push(Cause::invalid(
                "roleRef",
                show_role_ref(role_ref),
                "cannot change roleRef",
            ));
        }
    }
    let subjects = obj.get_mut("subjects").and_then(Value::as_array_mut);
    for (i, s) in subjects.into_iter().flatten().enumerate() {
        subject(s, namespaced, &format!("subjects[{i}]"), causes);
    }
}

fn role_ref_fields(role_ref: Option<&Value>, namespaced: bool, causes: &mut Vec<Cause>) {
    let group = role_ref.map_or("", |r| str_at(r, "apiGroup"));
    if group != GROUP {
        causes.push(Cause::unsupported("roleRef.apiGroup", group, &[GROUP]));
    }
    let kind = role_ref.map_or("", |r| str_at(r, "kind"));
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        causes.push(Cause::unsupported("roleRef.kind", kind, kinds));
    }
    let name = role_ref.map_or("", |r| str_at(r, "name"));
    if name.is_empty() {
        causes.push(Cause::required("roleRef.name"));
    } else {
        for m in NameRule::PathSegment.check(name) {
            causes.push(Cause::invalid("roleRef.name", format!("{name:?}"), &m));
        }
    }
}

fn subject(s: &mut Value, namespaced: bool, at: &str, causes: &mut Vec<Cause>) {
    let kind = str_at(s, "kind").to_string();
    // Upstream's SetDefaults_Subject.
    if matches!(kind.as_str(), "User" | "Group") && str_at(s, "apiGroup").is_empty() {
        s["apiGroup"] = json!(GROUP);
    }
    let name = str_at(s, "name");
    if name.is_empty() {
        causes.push(Cause::required(format!("{at}.name")));
    }
    let group = str_at(s, "apiGroup");
    match kind.as_str() {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in NameRule::Dns1123Subdomain.check(name) {
                    causes.push(Cause::invalid(
                        format!("{at}.name"),
                        format!("{name:?}"),
                        &m,
                    ));
                }
            }
            if !group.is_empty() {
                causes.push(Cause::unsupported(format!("{at}.apiGroup"), group, &[""]));
            }
            // In a RoleBinding an empty namespace means the binding's own.
            if !namespaced && str_at(s, "namespace").is_empty() {
                causes.push(Cause::required(format!("{at}.namespace")));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                causes.push(Cause::unsupported(
                    format!("{at}.apiGroup"),
                    group,
                    &[GROUP],
                ));
            }
        }
        other => causes.push(Cause::unsupported(
            format!("{at}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}
