//! OpenAPI documents and server-side field validation, from the JSON
//! schemas k8s-openapi generates for every type (its `schemars` feature).
//!
//! - `/openapi/v3` and `/openapi/v3/{api/v1,apis/G/V}`: per group-version
//!   documents as kube-apiserver serves them (paths whose operations carry
//!   `x-kubernetes-group-version-kind` and the `fieldValidation` query
//!   parameter, and `components.schemas` with every type). kubectl 1.32
//!   (`cli-runtime/pkg/resource/query_param_verifier_v3.go`) looks for that
//!   parameter on the PATCH operation of the object's kind and, when it is
//!   there, leaves validation to the server. [`group_version_document`]
//!   builds a document from any list of kinds and schemas, so other kinds
//!   (CRDs) can be served the same way.
//! - `/openapi/v2`: see [`crate::openapi_v2`] (kubectl validates `kind:
//!   List` files client-side against it).
//! - Field validation (`fieldValidation=Strict|Warn|Ignore`, Warn when
//!   absent, as kube-apiserver since 1.27): fields the schema does not know
//!   are dropped from the object; Strict refuses the request with kube's
//!   `strict decoding error: unknown field "spec.foo"`, Warn answers with one
//!   `Warning: 299` header per field.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::kinds::{Kind, KINDS};
use crate::status::ApiError;

/// Where a document's schemas live (OpenAPI v3).
pub const REF_PREFIX: &str = "#/components/schemas/";

/// Every schema, by kube's name (`io.k8s.api.core.v1.Pod`), and the schema
/// name of each served kind.
struct Schemas {
    definitions: Map<String, Value>,
    /// (plural, schema name) of the served kinds, and of `Scale`.
    roots: Vec<(&'static str, String)>,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        use k8s_openapi::api::{
            apps, authentication, authorization, autoscaling, coordination, core, discovery,
            networking, rbac,
        };
        let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
        let mut roots = Vec::new();
        let mut root = |plural: &'static str, s: schemars::Schema| {
            let name = s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                .unwrap_or_default()
                .to_string();
            roots.push((plural, name));
        };
        root("namespaces", g.subschema_for::<core::v1::Namespace>());
        root("nodes", g.subschema_for::<core::v1::Node>());
        root("pods", g.subschema_for::<core::v1::Pod>());
        root("services", g.subschema_for::<core::v1::Service>());
        root("endpoints", g.subschema_for::<core::v1::Endpoints>());
        root("secrets", g.subschema_for::<core::v1::Secret>());
        root("configmaps", g.subschema_for::<core::v1::ConfigMap>());
        root("events", g.subschema_for::<core::v1::Event>());
        root(
            "serviceaccounts",
            g.subschema_for::<core::v1::ServiceAccount>(),
        );
        root("deployments", g.subschema_for::<apps::v1::Deployment>());
        root("statefulsets", g.subschema_for::<apps::v1::StatefulSet>());
        root("replicasets", g.subschema_for::<apps::v1::ReplicaSet>());
        root(
            "endpointslices",
            g.subschema_for::<discovery::v1::EndpointSlice>(),
        );
        root(
            "networkpolicies",
            g.subschema_for::<networking::v1::NetworkPolicy>(),
        );
        root("ingresses", g.subschema_for::<networking::v1::Ingress>());
        root(
            "ingressclasses",
            g.subschema_for::<networking::v1::IngressClass>(),
        );
        root("roles", g.subschema_for::<rbac::v1::Role>());
        root("clusterroles", g.subschema_for::<rbac::v1::ClusterRole>());
        root("rolebindings", g.subschema_for::<rbac::v1::RoleBinding>());
        root(
            "clusterrolebindings",
            g.subschema_for::<rbac::v1::ClusterRoleBinding>(),
        );
        root("leases", g.subschema_for::<coordination::v1::Lease>());
        root("scale", g.subschema_for::<autoscaling::v1::Scale>());
        root(
            "tokenrequests",
            g.subschema_for::<authentication::v1::TokenRequest>(),
        );
        root(
            "selfsubjectreviews",
            g.subschema_for::<authentication::v1::SelfSubjectReview>(),
        );
        root(
            "selfsubjectaccessreviews",
            g.subschema_for::<authorization::v1::SelfSubjectAccessReview>(),
        );
        root(
            "selfsubjectrulesreviews",
            g.subschema_for::<authorization::v1::SelfSubjectRulesReview>(),
        );
        Schemas {
            definitions: g.definitions().clone(),
            roots,
        }
    })
}

/// Every known schema by name (refs point at [`REF_PREFIX`]).
pub fn definitions() -> &'static Map<String, Value> {
    &schemas().definitions
}

/// The schema name of a served kind (or `scale`): `io.k8s.api.apps.v1.Deployment`.
pub fn schema_name(plural: &str) -> Option<&'static str> {
    schemas()
        .roots
        .iter()
        .find(|(p, _)| *p == plural)
        .map(|(_, n)| n.as_str())
}

/// The JSON properties of the schema `name`, if it has any.
///
/// Looked up ignoring case too: k8s-pb renames some types
/// (`JSONSchemaProps` → `JsonSchemaProps`, `HTTPGetAction` → `HttpGetAction`).
pub(crate) fn properties(name: &str) -> Option<&'static Map<String, Value>> {
    static LOWER: OnceLock<std::collections::HashMap<String, &'static str>> = OnceLock::new();
    let defs = definitions();
    let schema = defs.get(name).or_else(|| {
        let lower = LOWER.get_or_init(|| {
            defs.keys()
                .map(|k| (k.to_ascii_lowercase(), k.as_str()))
                .collect()
        });
        lower
            .get(&name.to_ascii_lowercase())
            .and_then(|k| defs.get(*k))
    })?;
    schema.get("properties").and_then(Value::as_object)
}

/// One kind of a group-version document.
#[derive(Debug, Clone)]
pub struct DocKind {
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// The kind's schema: a `$ref` into `definitions`, or inline.
    pub schema: Value,
}

/// An OpenAPI v3 document for one group-version: for each kind, the
/// collection and item paths with their operations (each with the kind's
/// `x-kubernetes-group-version-kind`, PATCH and PUT and POST with the
/// `fieldValidation` parameter), the kinds' schemas marked with their GVK,
/// and the `definitions` they refer to (`#/components/schemas/...`).
pub fn group_version_document(
    group: &str,
    version: &str,
    kinds: &[DocKind],
    definitions: &Map<String, Value>,
) -> Value {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = definitions.clone();
    for k in kinds {
        let gvk = json!({"group": group, "version": version, "kind": k.kind});
        let body = json!({"content": {"application/json": {"schema": k.schema},
                                     "application/yaml": {"schema": k.schema}}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": k.schema}}}});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let op = |verb: &str, write: bool| {
            let mut o = json!({
                "operationId": format!("{verb}{}", k.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            });
            if write {
                o["parameters"] = json!([
                    param("dryRun"),
                    param("fieldManager"),
                    param("fieldValidation")
                ]);
                o["requestBody"] = body.clone();
            }
            o
        };
        let collection = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", k.plural)
        } else {
            format!("{prefix}/{}", k.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": op("list", false), "post": op("post", true)}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op("get", false), "put": op("put", true), "patch": op("patch", true),
                   "delete": op("delete", false)}),
        );
        // The kind's own schema says which GVK it is (kubectl explain).
        let target = k
            .schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .map(String::from);
        if let Some(s) = target.and_then(|t| schemas.get_mut(&t)) {
            s["x-kubernetes-group-version-kind"] = json!([gvk]);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The document of one served group-version, the built-in kinds' and the
/// custom ones given (None if none is served).
pub(crate) fn served_document(group: &str, version: &str, custom: &[DocKind]) -> Option<Value> {
    let mut kinds: Vec<DocKind> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .filter_map(|k| {
            Some(DocKind {
                kind: k.kind.to_string(),
                plural: k.plural.to_string(),
                namespaced: k.namespaced,
                schema: json!({"$ref": format!("{REF_PREFIX}{}", schema_name(k.plural)?)}),
            })
        })
        .collect();
    kinds.extend(custom.iter().cloned());
    if kinds.is_empty() {
        return None;
    }
    Some(group_version_document(
        group,
        version,
        &kinds,
        definitions(),
    ))
}

/// The v3 discovery root: one entry per served group-version, the
/// built-in ones and the custom `(group, versions)` given.
pub(crate) fn v3_root(custom: &[(String, Vec<String>)]) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = Vec::new();
    for k in KINDS {
        let gv = (k.group.to_string(), k.version.to_string());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    for (g, vs) in custom {
        for v in vs {
            let gv = (g.clone(), v.clone());
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
    }
    for (g, v) in gvs {
        let p = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
        );
    }
    json!({"paths": paths})
}

/// How a write treats fields its schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// The `fieldValidation` query parameter (Warn when absent).
    pub fn parse(v: Option<&str>) -> Result<FieldValidation, ApiError> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", not {other:?}"
            ))),
        }
    }
}

/// Removes from `obj` every field the schema of `kind` does not define
/// and returns their paths (`spec.template.spec.containers[0].foo`), in
/// document order. Kinds without a schema are left alone.
pub fn prune_unknown(plural: &str, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(name) = schema_name(plural) {
        if let Some(s) = definitions().get(name) {
            prune(s, obj, "", &mut unknown, 0);
        }
    }
    unknown
}

fn resolve(schema: &'static Value) -> &'static Value {
    let mut s = schema;
    for _ in 0..8 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix(REF_PREFIX)
                .and_then(|n| definitions().get(n))
            {
                Some(t) => s = t,
                None => return s,
            }
        } else if let Some(first) = s.get("allOf").and_then(|a| a.get(0)) {
            s = first;
        } else {
            break;
        }
    }
    s
}

fn prune(schema: &'static Value, v: &mut Value, at: &str, unknown: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let s = resolve(schema);
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let mut drop = Vec::new();
                for (k, child) in m.iter_mut() {
                    let here = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    match props.get(k) {
                        Some(ps) => prune(ps, child, &here, unknown, depth + 1),
                        None => {
                            unknown.push(here);
                            drop.push(k.clone());
                        }
                    }
                }
                for k in drop {
                    m.remove(&k);
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m.iter_mut() {
                    let here = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    prune(ap, child, &here, unknown, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for (i, child) in a.iter_mut().enumerate() {
                    prune(items, child, &format!("{at}[{i}]"), unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Applies a field validation directive to a write of `kind`: unknown
/// fields dropped; Strict → kube's 400; otherwise the warnings to send.
pub fn validate_fields(
    kind: &Kind,
    obj: &mut Value,
    directive: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if kind.custom {
        // A custom object is pruned against its CRD's schema when it is
        // prepared (crate::crd), with its own warnings.
        return Ok(Vec::new());
    }
    let unknown = prune_unknown(kind.plural, obj);
    if unknown.is_empty() || directive == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if directive == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "{k} in version \"{v}\" cannot be handled as a {k}: strict decoding error: {}",
            list.join(", "),
            k = kind.kind,
            v = kind.version
        )));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_plural;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"any": "x"}},
               "spec": {"foo": 1, "selector": {"matchLabels": {"a": "b"}},
                        "template": {"spec": {"containers": [{"name": "c", "image": "i", "bogus": true}]}}}})
    }

    #[test]
    fn strict_refuses_unknown_fields_naming_each_path() {
        let mut d = deployment();
        let e = validate_fields(
            by_plural("deployments").unwrap(),
            &mut d,
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\", unknown field \"spec.template.spec.containers[0].bogus\""
        );
    }

    #[test]
    fn warn_and_ignore_drop_unknown_fields_and_keep_map_keys() {
        let mut d = deployment();
        let w = validate_fields(
            by_plural("deployments").unwrap(),
            &mut d,
            FieldValidation::Warn,
        )
        .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(d["spec"].get("foo").is_none());
        assert_eq!(d["metadata"]["labels"]["any"], "x");
        let mut d = deployment();
        let w = validate_fields(
            by_plural("deployments").unwrap(),
            &mut d,
            FieldValidation::Ignore,
        )
        .unwrap();
        assert!(w.is_empty());
        assert!(d["spec"]["template"]["spec"]["containers"][0]
            .get("bogus")
            .is_none());
    }

    #[test]
    fn the_directive_defaults_to_warn_and_rejects_other_values() {
        assert_eq!(FieldValidation::parse(None).unwrap(), FieldValidation::Warn);
        assert_eq!(
            FieldValidation::parse(Some("Strict")).unwrap(),
            FieldValidation::Strict
        );
        assert_eq!(
            FieldValidation::parse(Some("strict")).unwrap_err().code,
            400
        );
    }

    #[test]
    fn a_group_version_document_has_patch_with_field_validation_per_kind() {
        let doc = served_document("apps", "v1", &[]).unwrap();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(p["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "fieldValidation"));
        let s = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["group"], "apps");
    }
}
