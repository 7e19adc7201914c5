//! Label selectors (full string syntax) and field selectors (a fixed set of
//! fields per kind), parsed once and matched against stored JSON objects.

use serde_json::Value;

use crate::status::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: all requirements must hold (comma = AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Req>);

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {why} in labelSelector {s:?}"
            ))
        };
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("empty requirement"));
            }
            if let Some(key) = part.strip_prefix('!') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(bad(&format!("invalid label key {key:?}")));
                }
                reqs.push(Req::NotExists(key.to_string()));
                continue;
            }
            let (key, op, rest) = if let Some(i) = part.find("!=") {
                (&part[..i], "!=", &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], "=", &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], "=", &part[i + 1..])
            } else if let Some(open) = part.find('(') {
                let head = part[..open].trim();
                let Some(body) = part[open + 1..].strip_suffix(')') else {
                    return Err(bad("missing ')'"));
                };
                let mut words = head.split_whitespace();
                let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
                    return Err(bad(&format!("cannot parse {part:?}")));
                };
                (key, op, body)
            } else {
                (part, "", "")
            };
            let key = key.trim();
            if !valid_key(key) {
                return Err(bad(&format!("invalid label key {key:?}")));
            }
            let value = rest.trim();
            match op {
                "" => reqs.push(Req::Exists(key.to_string())),
                "=" | "!=" => {
                    if !valid_value(value) {
                        return Err(bad(&format!("invalid label value {value:?}")));
                    }
                    if op == "=" {
                        reqs.push(Req::Eq(key.to_string(), value.to_string()));
                    } else {
                        reqs.push(Req::NotEq(key.to_string(), value.to_string()));
                    }
                }
                "in" | "notin" => {
                    let mut vals = Vec::new();
                    for v in value.split(',') {
                        let v = v.trim();
                        if !valid_value(v) {
                            return Err(bad(&format!("invalid label value {v:?}")));
                        }
                        vals.push(v.to_string());
                    }
                    if op == "in" {
                        reqs.push(Req::In(key.to_string(), vals));
                    } else {
                        reqs.push(Req::NotIn(key.to_string(), vals));
                    }
                }
                other => return Err(bad(&format!("unknown operator {other:?}"))),
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds a selector from a `metav1.LabelSelector` JSON value
    /// (`matchLabels` + `matchExpressions`).
    pub fn from_json(sel: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("matchLabels.{k} must be a string"))?;
                reqs.push(Req::Eq(k.clone(), v.to_string()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for (i, e) in exprs.iter().enumerate() {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let vals: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => reqs.push(Req::In(key, vals)),
                    "NotIn" => reqs.push(Req::NotIn(key, vals)),
                    "Exists" => reqs.push(Req::Exists(key)),
                    "DoesNotExist" => reqs.push(Req::NotExists(key)),
                    op => {
                        return Err(format!(
                            "matchExpressions[{i}].operator: {op:?} is not supported"
                        ))
                    }
                }
            }
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches a label map (`metadata.labels`, may be absent).
    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

/// One field requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldReq>);

/// The fields a kind supports in field selectors beyond metadata.name/namespace.
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "status.phase",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "nodes" => &["spec.unschedulable"],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
        "services" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `metadata.name=x,spec.nodeName!=y` for a kind.
    pub fn parse(s: &str, plural: &str) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(reqs));
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, value, negate) = if let Some(i) = part.find("!=") {
                (&part[..i], &part[i + 2..], true)
            } else if let Some(i) = part.find("==") {
                (&part[..i], &part[i + 2..], false)
            } else if let Some(i) = part.find('=') {
                (&part[..i], &part[i + 1..], false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {part:?}; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || field == "metadata.namespace"
                || kind_fields(plural).contains(&field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldReq {
                field: field.to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let pointer = format!("/{}", r.field.replace('.', "/"));
            let actual = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            (actual == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns1", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selector_full_syntax() {
        let s = LabelSelector::parse(
            "app=web, tier==front,env!=prod,zone in (a, b),x notin (y),has,!gone",
        )
        .unwrap();
        assert_eq!(s.0.len(), 7);
        assert_eq!(s.0[3], Req::In("zone".into(), vec!["a".into(), "b".into()]));
        let o = obj(json!({"app": "web", "tier": "front", "zone": "b", "has": ""}));
        assert!(s.matches(&o));
        let o2 = obj(json!({"app": "web", "tier": "front", "zone": "c", "has": ""}));
        assert!(!s.matches(&o2));
        let o3 = obj(json!({"app": "web", "tier": "front", "zone": "a", "has": "", "gone": "1"}));
        assert!(!s.matches(&o3));
        assert!(LabelSelector::parse("").unwrap().matches(&obj(Value::Null)));
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("x notin (y)")
            .unwrap()
            .matches(&obj(json!({}))));
    }

    #[test]
    fn label_selector_from_json() {
        let s = LabelSelector::from_json(&json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "t", "operator": "Exists"}]})).unwrap();
        assert!(s.matches(&obj(json!({"app": "web", "t": "1"}))));
        assert!(!s.matches(&obj(json!({"app": "web"}))));
    }

    #[test]
    fn field_selector() {
        let s = FieldSelector::parse(
            "metadata.name=a,spec.nodeName!=n2,status.phase==Running",
            "pods",
        )
        .unwrap();
        assert!(s.matches(&obj(json!({}))));
        let s = FieldSelector::parse("spec.nodeName=n2", "pods").unwrap();
        assert!(!s.matches(&obj(json!({}))));
        let s = FieldSelector::parse("metadata.namespace!=ns1", "pods").unwrap();
        assert!(!s.matches(&obj(json!({}))));
        let e = FieldSelector::parse("spec.foo=1", "pods").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("spec.foo"), "{}", e.message);
        assert!(FieldSelector::parse("spec.nodeName=x", "services").is_err());
    }
}
