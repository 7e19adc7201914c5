//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an
//! approximation of strategic merge patch.
//!
//! Strategic merge patch is applied as a merge patch, except that lists of
//! objects whose elements carry a known merge key (`name` for containers,
//! env, volumes, ports with names…, `containerPort` for container ports,
//! `port` for service ports, `type` for conditions, `mountPath` for volume
//! mounts, `ip` for hostAliases) are merged element by element, `$patch:
//! delete` elements are removed, and the other `$` directives
//! (`$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`) are
//! dropped.

use serde_json::Value;

use crate::status::ApiError;

/// RFC 7386.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// RFC 6902 (add, remove, replace, move, copy, test).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(doc, &p).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    let has = |k: &str| sample.get(k).is_some();
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "readinessGates"
            if has("name") =>
        {
            Some("name")
        }
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" if has("port") => Some("port"),
        "conditions" if has("type") => Some("type"),
        "volumeMounts" | "volumeDevices" if has("mountPath") => Some("mountPath"),
        "hostAliases" if has("ip") => Some("ip"),
        "taints" if has("key") => Some("key"),
        _ => None,
    }
}

/// Strategic merge patch, approximated (see the module docs).
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(pm) = patch else {
        *doc = strip_directives(patch);
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(serde_json::Map::new());
    }
    let Value::Object(dm) = doc else {
        return;
    };
    for (k, pv) in pm {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            dm.remove(k);
            continue;
        }
        match (dm.get_mut(k), pv) {
            (Some(dv @ Value::Object(_)), Value::Object(_)) => strategic_merge(dv, pv),
            (Some(Value::Array(da)), Value::Array(pa)) => {
                let key = pa.first().and_then(|s| merge_key(k, s));
                match key {
                    Some(key) => merge_list(da, pa, key),
                    None => *da = pa.iter().map(strip_directives).collect(),
                }
            }
            _ => {
                dm.insert(k.clone(), strip_directives(pv));
            }
        }
    }
}

fn merge_list(da: &mut Vec<Value>, pa: &[Value], key: &str) {
    for pe in pa {
        let kv = pe.get(key).cloned();
        let pos = da
            .iter()
            .position(|de| kv.is_some() && de.get(key) == kv.as_ref());
        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                da.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut da[i], pe),
            (None, false) => da.push(strip_directives(pe)),
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut d = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(d, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
                {"op": "remove", "path": "/list/0"},
                {"op": "add", "path": "/list/-", "value": 9},
                {"op": "test", "path": "/list/0", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"metadata": {"labels": {"a": "3", "b/c": "2"}}, "list": [2, 9]})
        );
        let e = json_patch(
            &mut d,
            &json!([{"op": "test", "path": "/list/0", "value": 5}]),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(json_patch(&mut d, &json!({"op": "x"})).is_err());
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut d = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y:1"}
        ]}});
        strategic_merge(
            &mut d,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "$patch": "delete"}]}}),
        );
        assert_eq!(
            d,
            json!({"spec": {"containers": [{"name": "a", "image": "x:2", "ports": [{"containerPort": 80}]}]}})
        );
    }
}
