//! Structural OpenAPI v3 schemas of CustomResourceDefinitions: checking a
//! schema is structural, then pruning, defaulting and validating objects
//! against it.
//!
//! Behaviour follows kube-apiserver's apiextensions-apiserver
//! (`pkg/apiserver/schema`: structural schema rules, `pruning`, `defaulting`;
//! `pkg/apiserver/validation`: kube-openapi's validator with its errors turned
//! into field errors), so messages read as kubectl users know them:
//! `spec.port: Invalid value: 70000: spec.port in body should be less than or
//! equal to 65535`, `Unsupported value: "x": supported values: "a", "b"`,
//! `Too many: 3: must have at most 2 items`. Order as upstream: prune, then
//! default, then validate (schema keywords, list types, then the CEL rules of
//! [`super::cel`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::status::Cause;

use super::cel::Rule;

/// `additionalProperties` of an object node.
#[derive(Debug, Clone, Default)]
pub enum Additional {
    /// Not given: only `properties` are known.
    #[default]
    Unset,
    /// `true` (any value kept) or `false`.
    Any(bool),
    /// A map whose values follow this schema.
    Schema(Box<Schema>),
}

/// One node of a structural schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub ty: String,
    pub properties: BTreeMap<String, Schema>,
    pub items: Option<Box<Schema>>,
    pub additional: Additional,
    pub required: Vec<String>,
    pub enumeration: Vec<Value>,
    pub pattern: Option<(String, regex::Regex)>,
    pub format: String,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique_items: bool,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded: bool,
    pub list_type: String,
    pub list_map_keys: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Keywords a structural schema may not use (upstream's "must not be set").
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
    "id",
];

/// `Required value: <why>` at `field`.
pub fn required_why(field: impl Into<String>, why: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: format!("Required value: {why}"),
    }
}

/// kube's `field.TypeInvalid`: `Invalid value: <value>: <why>`.
fn type_invalid(field: impl Into<String>, value: impl std::fmt::Display, why: &str) -> Cause {
    Cause {
        reason: "FieldValueTypeInvalid",
        field: field.into(),
        message: format!("Invalid value: {value}: {why}"),
    }
}

fn u(v: &Map<String, Value>, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

impl Schema {
    /// Parses an `openAPIV3Schema` node, collecting what makes it
    /// non-structural as causes under `at`.
    pub fn parse(v: &Value, at: &str, causes: &mut Vec<Cause>) -> Schema {
        Schema::parse_node(v, at, causes, true)
    }

    fn parse_node(v: &Value, at: &str, causes: &mut Vec<Cause>, root: bool) -> Schema {
        let Some(m) = v.as_object() else {
            causes.push(Cause::invalid(at, "\"\"", "must be an object"));
            return Schema::default();
        };
        for k in FORBIDDEN {
            if m.contains_key(*k) {
                causes.push(Cause::forbidden(format!("{at}.{k}"), "must not be set"));
            }
        }
        let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut s = Schema {
            ty: m
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            required: m
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            enumeration: m
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            format: m
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            minimum: m.get("minimum").and_then(Value::as_f64),
            maximum: m.get("maximum").and_then(Value::as_f64),
            exclusive_minimum: flag("exclusiveMinimum"),
            exclusive_maximum: flag("exclusiveMaximum"),
            multiple_of: m.get("multipleOf").and_then(Value::as_f64),
            min_length: u(m, "minLength"),
            max_length: u(m, "maxLength"),
            min_items: u(m, "minItems"),
            max_items: u(m, "maxItems"),
            unique_items: flag("uniqueItems"),
            min_properties: u(m, "minProperties"),
            max_properties: u(m, "maxProperties"),
            nullable: flag("nullable"),
            default: m.get("default").cloned(),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            int_or_string: flag("x-kubernetes-int-or-string"),
            embedded: flag("x-kubernetes-embedded-resource"),
            list_type: m
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            list_map_keys: m
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            ..Schema::default()
        };
        if let Some(p) = m.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(p) {
                Ok(re) => s.pattern = Some((p.to_string(), re)),
                Err(e) => causes.push(Cause::invalid(
                    format!("{at}.pattern"),
                    format!("{p:?}"),
                    &format!("must be a valid regular expression, but isn't: {e}"),
                )),
            }
        }
        if let Some(props) = m.get("properties").and_then(Value::as_object) {
            for (k, pv) in props {
                let child = Schema::parse_node(pv, &format!("{at}.properties[{k}]"), causes, false);
                if child.ty.is_empty() && !child.int_or_string && !child.preserve_unknown {
                    causes.push(required_why(
                        format!("{at}.properties[{k}].type"),
                        "must not be empty for specified object fields",
                    ));
                }
                s.properties.insert(k.clone(), child);
            }
        }
        match m.get("additionalProperties") {
            None => {}
            Some(Value::Bool(b)) => s.additional = Additional::Any(*b),
            Some(a) => {
                let child =
                    Schema::parse_node(a, &format!("{at}.additionalProperties"), causes, false);
                if child.ty.is_empty() && !child.int_or_string && !child.preserve_unknown {
                    causes.push(required_why(
                        format!("{at}.additionalProperties.type"),
                        "must not be empty for specified object fields",
                    ));
                }
                s.additional = Additional::Schema(Box::new(child));
            }
        }
        if !s.properties.is_empty() && !matches!(s.additional, Additional::Unset) {
            causes.push(Cause::forbidden(
                format!("{at}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Some(it) = m.get("items") {
            if it.is_array() {
                causes.push(Cause::forbidden(
                    format!("{at}.items"),
                    "items must be a schema object and not an array",
                ));
            } else {
                let child = Schema::parse_node(it, &format!("{at}.items"), causes, false);
                if child.ty.is_empty() && !child.int_or_string && !child.preserve_unknown {
                    causes.push(required_why(
                        format!("{at}.items.type"),
                        "must not be empty for specified array items",
                    ));
                }
                s.items = Some(Box::new(child));
            }
        }
        if s.ty == "array" && s.items.is_none() {
            causes.push(required_why(format!("{at}.items"), "must be specified"));
        }
        if !s.ty.is_empty()
            && !matches!(
                s.ty.as_str(),
                "object" | "array" | "string" | "integer" | "number" | "boolean"
            )
        {
            causes.push(Cause::unsupported(
                format!("{at}.type"),
                &s.ty,
                &["array", "boolean", "integer", "number", "object", "string"],
            ));
        }
        if s.int_or_string && !s.ty.is_empty() {
            causes.push(Cause::invalid(
                format!("{at}.type"),
                format!("{:?}", s.ty),
                "must be empty if x-kubernetes-int-or-string is true",
            ));
        }
        if s.embedded && s.ty != "object" {
            causes.push(Cause::invalid(
                format!("{at}.type"),
                format!("{:?}", s.ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
        match s.list_type.as_str() {
            "" | "atomic" | "set" => {}
            "map" => {
                if s.list_map_keys.is_empty() {
                    causes.push(required_why(
                        format!("{at}.x-kubernetes-list-map-keys"),
                        "must not be empty if x-kubernetes-list-type is map",
                    ));
                }
                if s.items.as_ref().is_some_and(|i| i.ty != "object") {
                    causes.push(Cause::invalid(
                        format!("{at}.items.type"),
                        "\"\"",
                        "must be object if parent array's x-kubernetes-list-type is map",
                    ));
                }
            }
            other => causes.push(Cause::unsupported(
                format!("{at}.x-kubernetes-list-type"),
                other,
                &["atomic", "map", "set"],
            )),
        }
        if root {
            if s.ty != "object" {
                causes.push(Cause::invalid(
                    format!("{at}.type"),
                    format!("{:?}", s.ty),
                    "must be object at the root",
                ));
            }
            if let Some(meta) = s.properties.get("metadata") {
                let extra: Vec<&String> = meta
                    .properties
                    .keys()
                    .filter(|k| *k != "name" && *k != "generateName")
                    .collect();
                if !extra.is_empty() || meta.default.is_some() || !meta.rules.is_empty() {
                    causes.push(Cause::forbidden(
                        format!("{at}.properties[metadata]"),
                        "must not specify anything other than name and generateName, but metadata is implicitly specified",
                    ));
                }
            }
        }
        if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
            for (i, r) in rules.iter().enumerate() {
                match Rule::parse(r) {
                    Ok(rule) => s.rules.push(rule),
                    Err(why) => causes.push(required_why(
                        format!("{at}.x-kubernetes-validations[{i}].rule"),
                        &why,
                    )),
                }
            }
        }
        s
    }

    /// Whether unknown fields below this object node are kept.
    fn keeps_unknown(&self) -> bool {
        self.preserve_unknown || matches!(self.additional, Additional::Any(true))
    }

    /// The schema of the value under `key` of an object node.
    pub fn property(&self, key: &str) -> Option<&Schema> {
        match (&self.additional, self.properties.get(key)) {
            (_, Some(s)) => Some(s),
            (Additional::Schema(s), None) => Some(s),
            _ => None,
        }
    }
}

/// Drops fields the schema does not know (kept: `apiVersion`, `kind`,
/// `metadata` at the root and of embedded resources; everything below
/// `x-kubernetes-preserve-unknown-fields`). Returns the paths pruned.
pub fn prune(v: &mut Value, s: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    prune_at(v, s, true, "", &mut out);
    out
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn prune_at(v: &mut Value, s: &Schema, resource: bool, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let keep_meta = resource || s.embedded;
            let keeps = s.keeps_unknown();
            let mut drop = Vec::new();
            for (k, child) in m.iter_mut() {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    if let Some(cs) = s.properties.get(k) {
                        if k != "metadata" {
                            prune_at(child, cs, false, &join(at, k), out);
                        }
                    }
                    continue;
                }
                match s.property(k) {
                    Some(cs) => prune_at(child, cs, cs.embedded, &join(at, k), out),
                    None if keeps => {}
                    None => drop.push(k.clone()),
                }
            }
            for k in drop {
                out.push(join(at, &k));
                m.remove(&k);
            }
        }
        Value::Array(a) => {
            if let Some(is) = &s.items {
                for (i, item) in a.iter_mut().enumerate() {
                    prune_at(item, is, is.embedded, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent (or null, non-nullable) properties, top
/// down, and drops nulls of non-nullable properties without a default.
pub fn apply_defaults(v: &mut Value, s: &Schema) {
    match v {
        Value::Object(m) => {
            for (k, cs) in &s.properties {
                match m.get(k) {
                    None => {
                        if let Some(d) = &cs.default {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    Some(Value::Null) if !cs.nullable => match &cs.default {
                        Some(d) => {
                            m.insert(k.clone(), d.clone());
                        }
                        None => {
                            m.remove(k);
                        }
                    },
                    Some(_) => {}
                }
            }
            for (k, child) in m.iter_mut() {
                if let Some(cs) = s.property(k) {
                    apply_defaults(child, cs);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = &s.items {
                for item in a.iter_mut() {
                    apply_defaults(item, is);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type name kube-openapi reports for a value.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as kube's field errors print it (strings quoted, numbers bare).
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "" => true,
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integral(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// Checks a string against a `format` kube-openapi knows; unknown formats
/// pass (as upstream, which ignores formats it does not register).
pub fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.parse::<ipnet::IpNet>().is_ok(),
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok() && s.len() == 10,
        "uuid" => {
            let b = s.as_bytes();
            b.len() == 36
                && b.iter().enumerate().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        *c == b'-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "hostname" => {
            !s.is_empty()
                && s.len() <= 255
                && s.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "int32" | "int64" | "float" | "double" | "password" | "" => true,
        "email" => {
            let mut parts = s.splitn(2, '@');
            matches!((parts.next(), parts.next()), (Some(a), Some(d)) if !a.is_empty() && d.contains('.') && !d.contains('@'))
        }
        "uri" | "url" => s.contains("://") || s.starts_with('/'),
        "duration" => s.parse::<jiff::SignedDuration>().is_ok() || go_duration_ok(s),
        _ => true,
    }
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `10s`, `1.5h`, `300ms`.
fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn bound(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// Validates `v` against `s`, appending kube-shaped causes. `at` is the
/// field path (`spec.listeners[0].port`, empty at the root).
pub fn validate(v: &Value, s: &Schema, at: &str, causes: &mut Vec<Cause>) {
    let field = if at.is_empty() { "<root>" } else { at };
    let body = |why: String| format!("{field} in body {why}");
    if v.is_null() {
        if !s.nullable && !s.ty.is_empty() {
            causes.push(type_invalid(
                at,
                "\"null\"",
                &body(format!("must be of type {}: \"null\"", s.ty)),
            ));
        }
        return;
    }
    if s.int_or_string {
        if !(is_integral(v) || v.is_string()) {
            causes.push(type_invalid(
                at,
                format!("\"{}\"", type_name(v)),
                &body(format!(
                    "must be of type integer-or-string: \"{}\"",
                    type_name(v)
                )),
            ));
            return;
        }
    } else if !type_ok(&s.ty, v) {
        causes.push(type_invalid(
            at,
            format!("\"{}\"", type_name(v)),
            &body(format!("must be of type {}: \"{}\"", s.ty, type_name(v))),
        ));
        return;
    }
    if !s.enumeration.is_empty() && !s.enumeration.contains(v) {
        let allowed: Vec<String> = s.enumeration.iter().map(shown).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: at.to_string(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                allowed.join(", ")
            ),
        });
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(max) = s.maximum {
                if (s.exclusive_maximum && x >= max) || x > max {
                    let op = if s.exclusive_maximum {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    causes.push(Cause::invalid(
                        at,
                        n,
                        &body(format!("should be {op} {}", bound(max))),
                    ));
                }
            }
            if let Some(min) = s.minimum {
                if (s.exclusive_minimum && x <= min) || x < min {
                    let op = if s.exclusive_minimum {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(Cause::invalid(
                        at,
                        n,
                        &body(format!("should be {op} {}", bound(min))),
                    ));
                }
            }
            if let Some(m) = s.multiple_of.filter(|m| *m > 0.0) {
                let q = x / m;
                if (q - q.round()).abs() > 1e-9 {
                    causes.push(Cause::invalid(
                        at,
                        n,
                        &body(format!("should be a multiple of {}", bound(m))),
                    ));
                }
            }
        }
        Value::String(st) => {
            let len = st.chars().count() as u64;
            if let Some(max) = s.max_length {
                if len > max {
                    causes.push(Cause {
                        reason: "FieldValueTooLong",
                        field: at.to_string(),
                        message: format!("Too long: may not be more than {max} bytes"),
                    });
                }
            }
            if let Some(min) = s.min_length {
                if len < min {
                    causes.push(Cause::invalid(
                        at,
                        shown(v),
                        &body(format!("should be at least {min} chars long")),
                    ));
                }
            }
            if let Some((p, re)) = &s.pattern {
                if !re.is_match(st) {
                    causes.push(Cause::invalid(
                        at,
                        shown(v),
                        &body(format!("should match '{p}'")),
                    ));
                }
            }
            if !s.format.is_empty() && !format_ok(&s.format, st) {
                causes.push(Cause::invalid(
                    at,
                    shown(v),
                    &body(format!("must be of type {}: {}", s.format, shown(v))),
                ));
            }
        }
        Value::Array(a) => {
            let n = a.len() as u64;
            if let Some(max) = s.max_items {
                if n > max {
                    causes.push(Cause {
                        reason: "FieldValueTooMany",
                        field: at.to_string(),
                        message: format!("Too many: {n}: must have at most {max} items"),
                    });
                }
            }
            if let Some(min) = s.min_items {
                if n < min {
                    causes.push(Cause::invalid(
                        at,
                        shown(v),
                        &body(format!("should have at least {min} items")),
                    ));
                }
            }
            if s.unique_items && has_duplicates(a.iter()) {
                causes.push(Cause::invalid(
                    at,
                    shown(v),
                    &body("shouldn't contain duplicates".to_string()),
                ));
            }
            list_type(a, s, at, causes);
            if let Some(is) = &s.items {
                for (i, item) in a.iter().enumerate() {
                    validate(item, is, &format!("{at}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => {
            let n = m.len() as u64;
            if let Some(max) = s.max_properties {
                if n > max {
                    causes.push(Cause {
                        reason: "FieldValueTooMany",
                        field: at.to_string(),
                        message: format!("Too many: {n}: must have at most {max} items"),
                    });
                }
            }
            if let Some(min) = s.min_properties {
                if n < min {
                    causes.push(Cause::invalid(
                        at,
                        "\"object\"",
                        &body(format!("should have at least {min} properties")),
                    ));
                }
            }
            for r in &s.required {
                if !m.contains_key(r) {
                    causes.push(Cause::required(join(at, r)));
                }
            }
            if matches!(s.additional, Additional::Any(false)) && s.properties.is_empty() {
                for k in m.keys() {
                    causes.push(Cause::forbidden(
                        join(at, k),
                        "additional properties are not allowed",
                    ));
                }
            }
            if s.embedded {
                for k in ["apiVersion", "kind"] {
                    if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                        causes.push(required_why(join(at, k), "must not be empty"));
                    }
                }
            }
            for (k, child) in m {
                if let Some(cs) = s.property(k) {
                    validate(child, cs, &join(at, k), causes);
                }
            }
        }
        _ => {}
    }
}

fn has_duplicates<'a>(items: impl Iterator<Item = &'a Value>) -> bool {
    let mut seen: Vec<&Value> = Vec::new();
    for i in items {
        if seen.contains(&i) {
            return true;
        }
        seen.push(i);
    }
    false
}

/// `x-kubernetes-list-type`: `set` items unique, `map` items unique by
/// their `x-kubernetes-list-map-keys`.
fn list_type(a: &[Value], s: &Schema, at: &str, causes: &mut Vec<Cause>) {
    match s.list_type.as_str() {
        "set" => {
            for (i, item) in a.iter().enumerate() {
                if a[..i].contains(item) {
                    causes.push(Cause::duplicate(format!("{at}[{i}]"), shown(item)));
                }
            }
        }
        "map" => {
            let key_of = |item: &Value| -> Value {
                let mut k = Map::new();
                for name in &s.list_map_keys {
                    let v = item.get(name).cloned().or_else(|| {
                        s.items
                            .as_ref()
                            .and_then(|is| is.properties.get(name))
                            .and_then(|p| p.default.clone())
                    });
                    k.insert(name.clone(), v.unwrap_or(Value::Null));
                }
                Value::Object(k)
            };
            let keys: Vec<Value> = a.iter().map(key_of).collect();
            for (i, k) in keys.iter().enumerate() {
                if keys[..i].contains(k) {
                    causes.push(Cause::duplicate(format!("{at}[{i}]"), k));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        let mut c = Vec::new();
        let s = Schema::parse(
            &json!({"type": "object", "properties": {"spec": v}}),
            "s",
            &mut c,
        );
        assert!(c.is_empty(), "{c:?}");
        s
    }

    /// The causes of validating `{"spec": spec}`.
    fn check(s: Value, spec: Value) -> Vec<Cause> {
        let s = schema(s);
        let mut c = Vec::new();
        validate(&json!({ "spec": spec }), &s, "", &mut c);
        c
    }

    fn one(s: Value, spec: Value) -> String {
        let c = check(s, spec);
        assert_eq!(c.len(), 1, "{c:?}");
        format!("{}: {}", c[0].field, c[0].message)
    }

    #[test]
    fn type_mismatch_names_the_expected_type() {
        assert_eq!(
            one(json!({"type": "integer"}), json!("x")),
            "spec: Invalid value: \"string\": spec in body must be of type integer: \"string\""
        );
        assert!(check(json!({"type": "number"}), json!(1.5)).is_empty());
        assert!(check(json!({"type": "boolean"}), json!(true)).is_empty());
        assert_eq!(
            check(
                json!({"type": "array", "items": {"type": "string"}}),
                json!({})
            )
            .len(),
            1
        );
    }

    #[test]
    fn required_fields_are_named() {
        assert_eq!(
            one(
                json!({"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}}),
                json!({})
            ),
            "spec.port: Required value"
        );
    }

    #[test]
    fn enum_lists_supported_values() {
        assert_eq!(
            one(json!({"type": "string", "enum": ["a", "b"]}), json!("x")),
            "spec: Unsupported value: \"x\": supported values: \"a\", \"b\""
        );
    }

    #[test]
    fn pattern_is_matched() {
        assert_eq!(
            one(
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("A1")
            ),
            "spec: Invalid value: \"A1\": spec in body should match '^[a-z]+$'"
        );
    }

    #[test]
    fn formats_are_checked() {
        assert_eq!(
            one(json!({"type": "string", "format": "ipv4"}), json!("1.2.3")),
            "spec: Invalid value: \"1.2.3\": spec in body must be of type ipv4: \"1.2.3\""
        );
        for (f, good) in [
            ("date-time", "2024-01-01T00:00:00Z"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            ("hostname", "a.example.com"),
            ("duration", "1h30m"),
            ("cidr", "10.0.0.0/8"),
        ] {
            assert!(
                check(json!({"type": "string", "format": f}), json!(good)).is_empty(),
                "{f}"
            );
            assert_eq!(
                check(json!({"type": "string", "format": f}), json!("not valid!")).len(),
                1,
                "{f}"
            );
        }
    }

    #[test]
    fn maximum_and_minimum_bound_numbers() {
        assert_eq!(
            one(json!({"type": "integer", "maximum": 65535}), json!(70000)),
            "spec: Invalid value: 70000: spec in body should be less than or equal to 65535"
        );
        assert_eq!(
            one(json!({"type": "integer", "minimum": 1}), json!(0)),
            "spec: Invalid value: 0: spec in body should be greater than or equal to 1"
        );
        assert_eq!(
            one(
                json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                json!(10)
            ),
            "spec: Invalid value: 10: spec in body should be less than 10"
        );
        assert_eq!(
            check(
                json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
                json!(1)
            )
            .len(),
            1
        );
    }

    #[test]
    fn string_lengths_are_bounded() {
        assert_eq!(
            one(json!({"type": "string", "maxLength": 3}), json!("abcd")),
            "spec: Too long: may not be more than 3 bytes"
        );
        assert_eq!(
            one(json!({"type": "string", "minLength": 1}), json!("")),
            "spec: Invalid value: \"\": spec in body should be at least 1 chars long"
        );
    }

    #[test]
    fn item_counts_are_bounded() {
        let s =
            json!({"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "integer"}});
        assert_eq!(
            one(s.clone(), json!([1, 2, 3])),
            "spec: Too many: 3: must have at most 2 items"
        );
        assert!(one(s, json!([])).contains("should have at least 1 items"));
    }

    #[test]
    fn unique_items_refuses_duplicates() {
        assert!(one(
            json!({"type": "array", "uniqueItems": true, "items": {"type": "integer"}}),
            json!([1, 1])
        )
        .contains("shouldn't contain duplicates"));
    }

    #[test]
    fn property_counts_are_bounded() {
        let s = json!({"type": "object", "maxProperties": 1, "minProperties": 1, "additionalProperties": {"type": "string"}});
        assert_eq!(
            one(s.clone(), json!({"a": "1", "b": "2"})),
            "spec: Too many: 2: must have at most 1 items"
        );
        assert!(one(s, json!({})).contains("should have at least 1 properties"));
    }

    #[test]
    fn nullable_admits_null() {
        assert!(check(json!({"type": "string", "nullable": true}), Value::Null).is_empty());
        assert_eq!(check(json!({"type": "string"}), Value::Null).len(), 1);
    }

    #[test]
    fn additional_properties_schema_checks_map_values() {
        assert_eq!(
            one(
                json!({"type": "object", "additionalProperties": {"type": "integer"}}),
                json!({"a": 1, "b": "x"})
            ),
            "spec.b: Invalid value: \"string\": spec.b in body must be of type integer: \"string\""
        );
    }

    #[test]
    fn int_or_string_takes_either() {
        let s = json!({"x-kubernetes-int-or-string": true});
        assert!(check(s.clone(), json!(8080)).is_empty());
        assert!(check(s.clone(), json!("http")).is_empty());
        assert_eq!(check(s, json!(true)).len(), 1);
    }

    #[test]
    fn embedded_resources_need_api_version_and_kind() {
        let s = json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true});
        let c = check(s.clone(), json!({"metadata": {}}));
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.apiVersion", "spec.kind"]);
        assert!(check(s, json!({"apiVersion": "v1", "kind": "Pod", "spec": {}})).is_empty());
    }

    #[test]
    fn list_type_set_and_map_refuse_duplicates() {
        assert_eq!(
            one(
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
                json!(["a", "a"])
            ),
            "spec[1]: Duplicate value: \"a\""
        );
        let m = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                       "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}});
        assert_eq!(
            one(
                m,
                json!([{"name": "a", "port": 1}, {"name": "a", "port": 2}])
            ),
            "spec[1]: Duplicate value: {\"name\":\"a\"}"
        );
    }

    #[test]
    fn unknown_fields_are_pruned_but_preserved_where_asked() {
        let s = schema(json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}}}}));
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "other": 1,
                           "spec": {"a": "1", "b": 2, "free": {"any": {"thing": 1}}, "items": [{"x": 1, "y": 2}]}});
        let pruned = prune(&mut v, &s);
        assert_eq!(pruned, ["spec.items[0].y", "spec.b", "other"]);
        assert_eq!(
            v,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                             "spec": {"a": "1", "free": {"any": {"thing": 1}}, "items": [{"x": 1}]}})
        );
    }

    #[test]
    fn defaults_fill_absent_and_null_fields_top_down() {
        let s = schema(json!({"type": "object", "default": {}, "properties": {
            "port": {"type": "integer", "default": 80},
            "match": {"type": "object", "default": {}, "properties": {"type": {"type": "string", "default": "PathPrefix"}}},
            "gone": {"type": "string"}}}));
        let mut v = json!({"spec": {"port": null, "gone": null}});
        apply_defaults(&mut v, &s);
        assert_eq!(
            v,
            json!({"spec": {"port": 80, "match": {"type": "PathPrefix"}}})
        );
        let mut empty = json!({});
        apply_defaults(&mut empty, &s);
        assert_eq!(empty["spec"]["match"]["type"], "PathPrefix");
    }

    #[test]
    fn non_structural_schemas_are_refused() {
        let mut c = Vec::new();
        Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}},
                                                                 "list": {"type": "array"},
                                                                 "bad": {"type": "string", "$ref": "#/x"}}}),
            "s",
            &mut c,
        );
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "s.properties[bad].$ref",
                "s.properties[list].items",
                "s.properties[spec].type"
            ]
        );
    }
}
