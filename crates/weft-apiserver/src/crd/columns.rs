//! `additionalPrinterColumns`: server-side Tables of custom resources, as
//! apiextensions-apiserver's `tableconvertor` builds them (Name first, then
//! the columns; `Age` from `creationTimestamp` when a version defines none;
//! `date` cells shown as an age), with the JSONPath subset CRDs use:
//! `.a.b`, `.a[0].b`, `.a[*].b` and `.a[?(@.type=="Ready")].status`.

use serde_json::{json, Value};

/// One printer column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

impl Column {
    /// The columns of a version (`None`: the default Age column).
    pub fn parse_all(v: Option<&Value>) -> Vec<Column> {
        let cols: Vec<Column> = v
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                Column {
                    name: s("name"),
                    ty: s("type"),
                    format: s("format"),
                    description: s("description"),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    json_path: s("jsonPath"),
                }
            })
            .collect();
        if cols.is_empty() {
            return vec![Column {
                name: "Age".into(),
                ty: "date".into(),
                format: String::new(),
                description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }];
        }
        cols
    }
}

/// One step of a parsed JSON path.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, Value),
}

fn parse_path(p: &str) -> Option<Vec<Step>> {
    let p = p.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let mut out = Vec::new();
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                out.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                out.push(Step::All);
            } else if let Ok(i) = inner.parse::<usize>() {
                out.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                out.push(Step::Filter(k.trim().to_string(), json!(v)));
            } else {
                let key = inner.trim_matches(|c| c == '"' || c == '\'');
                out.push(Step::Field(key.to_string()));
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Step::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Some(out)
}

/// The values a JSON path selects.
pub fn select<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_path(path) else {
        return Vec::new();
    };
    let mut cur = vec![v];
    for st in &steps {
        let mut next = Vec::new();
        for c in cur {
            match st {
                Step::Field(f) => next.extend(c.get(f)),
                Step::Index(i) => next.extend(c.get(*i)),
                Step::All => match c {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(k, want) => {
                    for item in c.as_array().into_iter().flatten() {
                        if item.get(k) == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn age_of(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".to_string();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(t.as_second())
        .max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn cell(c: &Column, o: &Value) -> Value {
    let found = select(o, &c.json_path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match c.ty.as_str() {
        "date" => match first.as_str() {
            Some(ts) => json!(age_of(ts)),
            None => Value::Null,
        },
        "integer" | "number" | "boolean" if found.len() == 1 => (*first).clone(),
        _ => {
            let parts: Vec<String> = found
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// The Table of custom objects with `columns`.
pub fn table(columns: &[Column], items: &[&Value], rv: u64) -> Value {
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in columns {
        defs.push(json!({"name": c.name, "type": c.ty, "format": c.format,
                         "description": c.description, "priority": c.priority}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or_default()];
            cells.extend(columns.iter().map(|c| cell(c, o)));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": o.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_select_fields_indexes_and_filters() {
        let o = json!({"spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
        assert_eq!(select(&o, ".spec.replicas"), [&json!(3)]);
        assert_eq!(select(&o, ".spec.ports[1].port"), [&json!(443)]);
        assert_eq!(select(&o, ".spec.ports[*].port"), [&json!(80), &json!(443)]);
        assert_eq!(
            select(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            [&json!("True")]
        );
        assert!(select(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn cells_follow_column_types() {
        let cols = Column::parse_all(Some(&json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ports", "type": "string", "jsonPath": ".spec.ports[*].port"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.none"}])));
        let o = json!({"metadata": {"name": "w"}, "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]}});
        let t = table(&cols, &[&o], 7);
        assert_eq!(t["rows"][0]["cells"], json!(["w", 3, "80,443", null]));
        assert_eq!(t["columnDefinitions"][1]["name"], "Replicas");
    }

    #[test]
    fn no_columns_means_age() {
        let cols = Column::parse_all(None);
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].name, "Age");
    }
}
