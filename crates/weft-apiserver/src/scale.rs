//! The `scale` subresource of Deployments, StatefulSets and ReplicaSets:
//! an `autoscaling/v1` Scale whose `spec.replicas` reads and writes the
//! object's, with `status.replicas` and `status.selector` (the label
//! selector as text) from the object, as kube-apiserver's apps registries
//! (`pkg/registry/apps/*/storage`, `scaleFromDeployment` and friends) do.
//! GET, PUT and PATCH (merge, strategic merge, JSON patch) of the Scale.

use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::status::{ApiError, Cause};
use crate::store::{meta_str, State};
use crate::ApiServer;

/// Kinds that have a scale subresource.
pub fn has_scale(kind: &Kind) -> bool {
    matches!(kind.plural, "deployments" | "statefulsets" | "replicasets")
}

/// A label selector (`matchLabels`, `matchExpressions`) as kube's
/// `labels.Selector.String()` writes it: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// The Scale of a stored workload.
pub fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let mut m = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": m,
        "spec": {"replicas": replicas},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

impl ApiServer {
    /// GET of `…/{name}/scale`.
    pub(crate) fn get_scale(
        &self,
        st: &State,
        kind: &'static Kind,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        st.get(kind, ns, name)
            .map(scale_of)
            .ok_or_else(|| ApiError::not_found(kind.plural, name))
    }

    /// Writes a Scale (PUT, or the result of a PATCH) through to the
    /// workload: its `spec.replicas` and nothing else.
    pub(crate) fn put_scale(
        &self,
        st: &mut State,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        scale: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !scale.is_object() {
            return Err(ApiError::bad_request("the Scale must be a JSON object"));
        }
        match (
            scale.get("apiVersion").and_then(Value::as_str),
            scale.get("kind").and_then(Value::as_str),
        ) {
            (Some(av), _) if !av.is_empty() && av != "autoscaling/v1" => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version (autoscaling/v1)"
                )))
            }
            (_, Some(k)) if !k.is_empty() && k != "Scale" => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind (Scale)"
                )))
            }
            _ => {}
        }
        if let Some(n) = meta_str(scale, "name").filter(|n| !n.is_empty() && *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let Some(mut obj) = st.get(kind, ns, name).cloned() else {
            return Err(ApiError::not_found(kind.plural, name));
        };
        if let Some(rv) = meta_str(scale, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(&obj, "resourceVersion") {
                return Err(ApiError::conflict(kind.plural, name));
            }
        }
        let invalid = |c: Cause| ApiError::invalid("Scale", kind.plural, name, vec![c]);
        let replicas = match scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| invalid(Cause::invalid("spec.replicas", v, "must be an integer")))?,
        };
        if replicas < 0 {
            return Err(invalid(Cause::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )));
        }
        if replicas > i64::from(i32::MAX) {
            return Err(invalid(Cause::invalid(
                "spec.replicas",
                replicas,
                "must be at most 2147483647",
            )));
        }
        obj["spec"]["replicas"] = json!(replicas);
        // The workload's own resourceVersion was checked above against
        // the Scale's; the update must not check it again.
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let updated = self.update(st, kind, ns, name, obj, false, dry_run)?;
        Ok(scale_of(&updated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_is_written_as_kube_writes_it() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
                         "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                                              {"key": "d", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(Some(&sel)), "a=1,b=2,c in (x,y),!d");
        assert_eq!(selector_string(None), "");
    }

    #[test]
    fn a_scale_shows_spec_and_status_replicas() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
                       "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
