//! CRD structural-schema validation: arbitrary JSON pruned, defaulted and
//! validated (keywords, list types, CEL rules) against a fixed schema, as a
//! create and as an update of a fixed old object; and arbitrary JSON parsed
//! as a schema. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use weft_apiserver::crd::{check_object, schema::Schema};

fn fixed() -> Schema {
    let raw = json!({"type": "object", "properties": {"spec": {
        "type": "object", "required": ["size"], "maxProperties": 12,
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas below minReplicas"},
            {"rule": "self.size == oldSelf.size", "message": "size is immutable"},
            {"rule": "self.ports.all(p, p.port > 0)", "messageExpression": "'ports: ' + string(size(self.ports))"}],
        "properties": {
            "size": {"type": "string", "enum": ["small", "large"]},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1, "multipleOf": 1},
            "minReplicas": {"type": "integer", "default": 0, "exclusiveMinimum": true, "minimum": -1},
            "ratio": {"type": "number", "maximum": 1.5, "exclusiveMaximum": true, "nullable": true},
            "host": {"type": "string", "pattern": "^[a-z0-9.-]+$", "maxLength": 20, "minLength": 1, "format": "hostname"},
            "when": {"type": "string", "format": "date-time"},
            "ip": {"type": "string", "format": "ipv4"},
            "target": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "uniqueItems": true, "x-kubernetes-list-type": "set", "minItems": 1, "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            "ports": {"type": "array", "maxItems": 3, "default": [],
                      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"],
                                "x-kubernetes-validations": [{"rule": "self.name.startsWith('p')", "fieldPath": ".name", "reason": "FieldValueForbidden"}],
                                "properties": {"name": {"type": "string"},
                                               "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80},
                                               "protocol": {"type": "string", "enum": ["TCP", "UDP"], "default": "TCP"}}}}}}}});
    let mut causes = Vec::new();
    Schema::parse(&raw, "openAPIV3Schema", &mut causes)
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let s = fixed();
    let old = json!({"apiVersion": "x.example.com/v1", "kind": "W", "metadata": {"name": "a"},
                     "spec": {"size": "small", "ports": [{"name": "p1", "port": 1}]}});
    let _ = check_object(&s, &mut v.clone(), None);
    let _ = check_object(&s, &mut v.clone(), Some(&old));
    let _ = check_object(&s, &mut json!({"spec": v.clone()}), Some(&old));
    let mut causes = Vec::new();
    let parsed = Schema::parse(&v, "openAPIV3Schema", &mut causes);
    let _ = check_object(&parsed, &mut old.clone(), Some(&old));
});
