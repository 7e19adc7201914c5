//! Small pure helpers shared by the controllers: pod state, owner references,
//! label selectors and stable hashed names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// The alphabet upstream uses for generated names (no vowels, no 0/1/3: no words, no confusables).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 64 bit: stable across Rust versions and processes (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// `len` characters of the safe alphabet derived from `value`.
pub fn safe_encode(mut value: u64, len: usize) -> String {
    let base = SAFE_ALPHABET.len() as u64;
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(char::from(SAFE_ALPHABET[(value % base) as usize]));
        value /= base;
    }
    out
}

/// A short stable hash of `bytes`, `len` safe characters.
pub fn short_hash(bytes: &[u8], len: usize) -> String {
    safe_encode(fnv1a(bytes), len)
}

/// Namespace/name of an object, for logs and map keys.
pub fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod is being deleted.
pub fn terminating<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The pod has finished for good (phase Succeeded or Failed).
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pod still counts as a replica: not terminal, not being deleted.
pub fn pod_active(pod: &Pod) -> bool {
    !terminating(pod) && !pod_terminal(pod)
}

/// An owner reference making `owner` the controller of a dependent object.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// `obj` is controlled by an object of kind `kind` with this uid (or, when the
/// owner has no uid yet, this name).
pub fn controlled_by<K: Resource, O: Resource<DynamicType = ()>>(obj: &K, owner: &O) -> bool {
    let Some(r) = controller_of(obj) else {
        return false;
    };
    if r.kind != O::kind(&()) {
        return false;
    }
    match owner.meta().uid.as_deref() {
        Some(uid) if !uid.is_empty() => r.uid == uid,
        _ => Some(r.name.as_str()) == owner.meta().name.as_deref(),
    }
}

/// Every key/value of `selector` is in `labels`. An empty selector matches everything.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A metav1.LabelSelector matches `labels` (matchLabels and matchExpressions).
/// An unknown operator matches nothing, as upstream rejects it.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels {
        if !labels_match(ml, labels) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Resolves an int-or-percent against `total` (maxSurge rounds up, maxUnavailable down).
pub fn scaled_value(
    v: Option<&IntOrString>,
    default_percent: i32,
    total: i32,
    round_up: bool,
) -> i32 {
    let percent = |p: i32| {
        let num = i64::from(p) * i64::from(total);
        let v = if round_up {
            (num + 99) / 100
        } else {
            num / 100
        };
        i32::try_from(v).unwrap_or(i32::MAX)
    };
    match v {
        None => percent(default_percent),
        Some(IntOrString::Int(i)) => (*i).max(0),
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<i32>) {
            Some(Ok(p)) => percent(p.max(0)),
            // Anything else is invalid upstream; fall back to the default.
            _ => percent(default_percent),
        },
    }
}

/// JSON with null, false, 0, "", [] and {} removed (recursively): what an API
/// server that drops empty values (Go's `omitempty`) would hand back.
fn normalized(v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) => {
            let a: Vec<Value> = a
                .into_iter()
                .map(|x| normalized(x).unwrap_or(Value::Null))
                .collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        Value::Object(o) => {
            let o: serde_json::Map<String, Value> = o
                .into_iter()
                .filter_map(|(k, v)| normalized(v).map(|v| (k, v)))
                .collect();
            (!o.is_empty()).then_some(Value::Object(o))
        }
        other => Some(other),
    }
}

/// `a` and `b` say the same once empty values are ignored; so a server that
/// drops `unavailableReplicas: 0` or `ports: []` does not cause endless rewrites.
pub fn semantically_equal<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => normalized(a) == normalized(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_safe() {
        assert_eq!(short_hash(b"abc", 10), short_hash(b"abc", 10));
        assert_ne!(short_hash(b"abc", 10), short_hash(b"abd", 10));
        let h = short_hash(b"anything", 10);
        assert_eq!(h.len(), 10);
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }

    #[test]
    fn empty_values_compare_equal() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let a = DeploymentStatus {
            unavailable_replicas: Some(0),
            replicas: Some(2),
            ..Default::default()
        };
        let b = DeploymentStatus {
            replicas: Some(2),
            ..Default::default()
        };
        assert!(semantically_equal(&a, &b));
        let c = DeploymentStatus {
            replicas: Some(3),
            ..Default::default()
        };
        assert!(!semantically_equal(&a, &c));
    }

    #[test]
    fn int_or_percent() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(None, 25, 4, true), 1);
        assert_eq!(scaled_value(None, 25, 1, true), 1);
        assert_eq!(scaled_value(None, 25, 1, false), 0);
        assert_eq!(scaled_value(Some(&p("50%")), 25, 5, false), 2);
        assert_eq!(scaled_value(Some(&IntOrString::Int(3)), 25, 5, false), 3);
    }
}
