//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the
//! access-control endpoints. kubectl's typed clients send protobuf: `auth
//! can-i` posts a SelfSubjectAccessReview (or, with `--list`, a
//! SelfSubjectRulesReview), `create token` a TokenRequest. The envelope is
//! kube's: the magic `k8s\0`, then a `runtime.Unknown` naming the kind and
//! carrying the object's bytes; k8s-pb (prost) decodes both, and the object
//! becomes the JSON the handlers already take. Replies stay JSON, which
//! client-go accepts whatever it sent. Other kinds in protobuf get 415
//! naming the media types that work.

use prost::Message;
use serde_json::{json, Map, Value};

use crate::status::ApiError;

/// kube's protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is invalid: {why}"))
}

fn put(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// Decodes one enveloped protobuf object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    use k8s_pb::api::{authentication::v1 as authn, authorization::v1 as authz};
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s protobuf magic"))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(raw).map_err(bad)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let bytes = unknown.raw.unwrap_or_default();
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    let mut spec = Map::new();
    match (api_version.as_str(), kind.as_str()) {
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let r = authz::SelfSubjectAccessReview::decode(bytes.as_slice()).map_err(bad)?;
            let s = r.spec.unwrap_or_default();
            if let Some(a) = s.resource_attributes {
                let mut m = Map::new();
                put(&mut m, "namespace", &a.namespace);
                put(&mut m, "verb", &a.verb);
                put(&mut m, "group", &a.group);
                put(&mut m, "version", &a.version);
                put(&mut m, "resource", &a.resource);
                put(&mut m, "subresource", &a.subresource);
                put(&mut m, "name", &a.name);
                spec.insert("resourceAttributes".into(), Value::Object(m));
            }
            if let Some(a) = s.non_resource_attributes {
                let mut m = Map::new();
                put(&mut m, "path", &a.path);
                put(&mut m, "verb", &a.verb);
                spec.insert("nonResourceAttributes".into(), Value::Object(m));
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            let r = authz::SelfSubjectRulesReview::decode(bytes.as_slice()).map_err(bad)?;
            put(&mut spec, "namespace", &r.spec.unwrap_or_default().namespace);
        }
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {}
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let r = authn::TokenRequest::decode(bytes.as_slice()).map_err(bad)?;
            let s = r.spec.unwrap_or_default();
            spec.insert("audiences".into(), json!(s.audiences));
            if let Some(e) = s.expiration_seconds {
                spec.insert("expirationSeconds".into(), json!(e));
            }
            if let Some(b) = s.bound_object_ref {
                let mut m = Map::new();
                put(&mut m, "kind", &b.kind);
                put(&mut m, "apiVersion", &b.api_version);
                put(&mut m, "name", &b.name);
                put(&mut m, "uid", &b.u_id);
                spec.insert("boundObjectRef".into(), Value::Object(m));
            }
        }
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("protobuf bodies are accepted only for the access reviews and TokenRequest, not for {api_version} {kind}; send application/json or application/yaml"),
            ))
        }
    }
    out.insert("spec".into(), Value::Object(spec));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::authorization::v1 as authz;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: None,
            content_type: None,
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn an_access_review_decodes_to_its_json_form() {
        let r = authz::SelfSubjectAccessReview {
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    namespace: Some("b".into()),
                    verb: Some("list".into()),
                    resource: Some("secrets".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            r.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "b", "verb": "list", "resource": "secrets"})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused_clearly() {
        let e = decode(&envelope("v1", "Secret", vec![])).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("v1 Secret"), "{}", e.message);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\xff\xff\xff").unwrap_err().code, 400);
    }
}
