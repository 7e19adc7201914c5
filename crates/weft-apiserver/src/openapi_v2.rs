//! `/openapi/v2`: the Swagger 2.0 definitions of the served kinds, in the
//! protobuf form client-go asks for (`Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, decoded as
//! gnostic's `openapi_v2.Document`, google/gnostic `openapiv2/OpenAPIv2.proto`).
//! kubectl 1.32 validates a `kind: List` file client-side against these
//! definitions (`kubectl/pkg/util/openapi/validation`: each item against
//! the definition carrying its `x-kubernetes-group-version-kind`), since
//! the `fieldValidation` check it does for single objects has no answer
//! for List. The definitions are those of [`crate::openapi`], converted;
//! descriptions are left out (kubectl explain reads the v3 documents).
//! Only the messages and fields this needs are declared here.

use std::sync::OnceLock;

use prost::Message;
use serde_json::Value;

use crate::kinds::KINDS;

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, optional, boxed, tag = "21")]
    additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

/// `oneof { Schema schema = 1; bool boolean = 2; }`; only the schema is
/// ever sent.
#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(message, optional, tag = "1")]
    schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

/// gnostic's `Any`: the value as YAML (field 2).
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

fn convert(v: &Value, depth: usize) -> Schema {
    let mut s = Schema::default();
    if depth > 64 {
        return s;
    }
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    if let Some(r) = str_of("$ref").strip_prefix(crate::openapi::REF_PREFIX) {
        s.r#ref = format!("#/definitions/{r}");
    }
    s.format = str_of("format").to_string();
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        s.r#type = Some(TypeItem {
            value: vec![t.to_string()],
        });
    }
    s.required = v
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    if let Some(ap) = v.get("additionalProperties").filter(|a| a.is_object()) {
        s.additional_properties = Some(Box::new(AdditionalPropertiesItem {
            schema: Some(convert(ap, depth + 1)),
        }));
    }
    if let Some(items) = v.get("items") {
        s.items = Some(ItemsItem {
            schema: vec![convert(items, depth + 1)],
        });
    }
    s.all_of = v
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| convert(a, depth + 1))
        .collect();
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        s.properties = Some(Properties {
            additional_properties: props
                .iter()
                .map(|(k, p)| NamedSchema {
                    name: k.clone(),
                    value: Some(convert(p, depth + 1)),
                })
                .collect(),
        });
    }
    if let Some(m) = v.as_object() {
        for (k, x) in m.iter().filter(|(k, _)| k.starts_with("x-kubernetes-")) {
            if let Ok(yaml) = serde_yaml::to_string(x) {
                s.vendor_extension.push(NamedAny {
                    name: k.clone(),
                    value: Some(Any { yaml }),
                });
            }
        }
    }
    s
}

/// The encoded document (built once).
pub(crate) fn document() -> Vec<u8> {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut defs = crate::openapi::definitions().clone();
        // Each served kind's definition names its GVK, as kube's do.
        for k in KINDS {
            if let Some(d) = crate::openapi::schema_name(k.plural).and_then(|n| defs.get_mut(n)) {
                d["x-kubernetes-group-version-kind"] =
                    serde_json::json!([{"group": k.group, "kind": k.kind, "version": k.version}]);
            }
        }
        let doc = Document {
            swagger: "2.0".into(),
            info: Some(Info {
                title: "Kubernetes".into(),
                version: "v1.33.0".into(),
            }),
            definitions: Some(Definitions {
                additional_properties: defs
                    .iter()
                    .map(|(name, s)| NamedSchema {
                        name: name.clone(),
                        value: Some(convert(s, 0)),
                    })
                    .collect(),
            }),
        };
        doc.encode_to_vec()
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_document_names_each_served_kind_with_its_gvk() {
        let doc = Document::decode(document().as_slice()).unwrap();
        let defs = doc.definitions.unwrap().additional_properties;
        let d = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
            .unwrap();
        let s = d.value.as_ref().unwrap();
        let gvk = s
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .unwrap();
        assert!(gvk
            .value
            .as_ref()
            .unwrap()
            .yaml
            .contains("kind: Deployment"));
        let props = &s.properties.as_ref().unwrap().additional_properties;
        let spec = props.iter().find(|p| p.name == "spec").unwrap();
        assert_eq!(
            spec.value.as_ref().unwrap().r#ref,
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
    }
}
