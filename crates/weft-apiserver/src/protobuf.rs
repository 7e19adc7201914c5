//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//! kubectl's typed clients send protobuf (`create namespace`, `create
//! secret`, `expose`, `auth can-i`, `create token`...). The envelope is
//! kube's (`k8s.io/apimachinery/pkg/runtime/serializer/protobuf`): the
//! magic `k8s\0`, then a `runtime.Unknown` naming the kind and carrying the
//! object's bytes; k8s-pb (prost) decodes the envelope, and the object
//! becomes the JSON the handlers take through the general decoder in
//! [`crate::pbjson`]. Replies stay JSON: client-go sends `Accept:
//! application/vnd.kubernetes.protobuf, application/json` and decodes by
//! the reply's Content-Type. A kind kube defines no protobuf message for
//! gets 415 naming the media types that work.

use prost::Message;
use serde_json::{json, Map, Value};

use crate::status::ApiError;

/// kube's protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is invalid: {why}"))
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("{what}; send application/json or application/yaml"),
    )
}

/// Decodes one enveloped protobuf object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s protobuf magic"))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(raw).map_err(bad)?;
    if let Some(enc) = unknown
        .content_encoding
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        return Err(unsupported(&format!(
            "protobuf bodies with content encoding {enc:?} are not accepted"
        )));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let msg = crate::pbjson::message_for(&api_version, &kind).ok_or_else(|| {
        unsupported(&format!(
            "kube defines no protobuf message for {api_version} {kind}"
        ))
    })?;
    let bytes = unknown.raw.unwrap_or_default();
    let fields = crate::pbjson::decode_message(msg.name, &bytes)
        .map_err(|e| bad(format!("{api_version} {kind}: {e}")))?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    if let Value::Object(m) = fields {
        out.extend(m);
    }
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
        let e = decode(&envelope("v1", "NoSuchKind", vec![])).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("v1 NoSuchKind"), "{}", e.message);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\xff\xff\xff").unwrap_err().code, 400);
    }
}
