//! Kubernetes protobuf → Kubernetes JSON, for every message kube defines.
//!
//! Why this shape: k8s-pb (the prost bindings) has no serde and ships no
//! `.proto` files or descriptor set, so neither prost-reflect nor a serde
//! bridge can be had from it; hand-converting its hundreds of message
//! types would be thousands of lines. Instead the build script reads the
//! `#[prost(..., tag = "N")]` attributes of k8s-pb (see `build.rs`) into a
//! table of every message's fields (number, proto type, nested message),
//! and this module walks the protobuf wire format with that table. JSON
//! field names come from the k8s-openapi schemas ([`crate::openapi`]): a
//! proto field matches the JSON property whose name is equal ignoring case
//! and underscores (`pod_ip` ↔ `podIP`, `u_id` ↔ `uid`); a message without
//! a schema falls back to lowerCamelCase.
//!
//! Mapping as kube's JSON serialization of the same Go object
//! (apimachinery's `meta/v1` and `util/intstr` JSON marshallers): proto2
//! fields that are absent are omitted; singular empty strings too (kube's
//! Go structs carry them as non-pointer `omitempty` strings, which the
//! protobuf marshaller always writes); `bytes` fields are base64; maps are
//! objects; and the special types: `Time` → RFC 3339 seconds (zero → null),
//! `MicroTime` → RFC 3339 with microseconds, `IntOrString` → number or
//! string, `Quantity` → its string, `Duration` → Go's duration text,
//! `RawExtension`/`FieldsV1`/`JSON` → the JSON value of their bytes.
//! Unknown field numbers are skipped, as gogo-protobuf's unmarshaller does.
//! Malformed input is an error, never a panic; nesting is bounded.

use base64::Engine;
use serde_json::{json, Map, Value};

/// A proto scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Scalar(Scalar),
    Message(&'static str),
    /// `map<string, scalar>`.
    Map(Scalar),
    /// `map<string, message>`.
    MapMessage(&'static str),
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub tag: u32,
    /// k8s-pb's (snake_case) name.
    pub name: &'static str,
    pub ty: Ty,
    pub repeated: bool,
}

/// One message: its full name (`io.k8s.api.core.v1.Pod`) and fields.
#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

include!(concat!(env!("OUT_DIR"), "/pb_fields.rs"));

/// Messages nest at most this deep (kube objects nest about 15 deep; the
/// bound keeps hostile input from exhausting the stack).
const MAX_DEPTH: usize = 64;

/// A decoding failure: what was wrong, and where (a JSON-style path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbError(pub String);

impl std::fmt::Display for PbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(at: &str, what: impl std::fmt::Display) -> PbError {
    if at.is_empty() {
        PbError(what.to_string())
    } else {
        PbError(format!("{at}: {what}"))
    }
}

/// The message of that full name, if kube defines it.
pub(crate) fn message(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

/// The protobuf message of a kind, by the convention of kube's Go
/// packages: `apps/v1 Deployment` → `io.k8s.api.apps.v1.Deployment`, core
/// → `io.k8s.api.core.v1`, CRDs in apiextensions-apiserver.
pub(crate) fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    message(&format!("io.k8s.api.{package}.{version}.{kind}")).or_else(|| match group {
        "apiextensions.k8s.io" => message(&format!(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
        )),
        "meta.k8s.io" | "" => message(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")),
        _ => None,
    })
}

/// A protobuf wire reader.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self, at: &str) -> Result<u64, PbError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(err(at, "truncated varint"));
            };
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err(at, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, at: &str) -> Result<&'a [u8], PbError> {
        if n > self.buf.len() {
            return Err(err(
                at,
                format!("{n} bytes announced, {} left", self.buf.len()),
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn len_delimited(&mut self, at: &str) -> Result<&'a [u8], PbError> {
        let n = self.varint(at)?;
        let n = usize::try_from(n).map_err(|_| err(at, "length out of range"))?;
        self.take(n, at)
    }

    fn fixed64(&mut self, at: &str) -> Result<u64, PbError> {
        let b = self.take(8, at)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips a field of an unknown number.
    fn skip(&mut self, wire: u8, at: &str) -> Result<(), PbError> {
        match wire {
            0 => self.varint(at).map(drop),
            1 => self.take(8, at).map(drop),
            2 => self.len_delimited(at).map(drop),
            5 => self.take(4, at).map(drop),
            w => Err(err(at, format!("unsupported wire type {w}"))),
        }
    }
}

/// The JSON name of a proto field of `msg`.
fn json_name(msg: &Message, field: &Field) -> String {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = norm(field.name);
    if let Some(props) = crate::openapi::properties(msg.name) {
        if let Some(k) = props.keys().find(|k| norm(k) == want) {
            return k.clone();
        }
    }
    let mut out = String::new();
    let mut upper = false;
    for c in field.name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn scalar(s: Scalar, wire: u8, r: &mut Reader<'_>, at: &str) -> Result<Value, PbError> {
    let want = match s {
        Scalar::String | Scalar::Bytes => 2,
        Scalar::Double => 1,
        _ => 0,
    };
    if wire != want {
        return Err(err(at, format!("wire type {wire} for a {s:?} field")));
    }
    Ok(match s {
        Scalar::String => {
            let b = r.len_delimited(at)?;
            Value::String(
                std::str::from_utf8(b)
                    .map_err(|_| err(at, "string is not valid UTF-8"))?
                    .to_string(),
            )
        }
        Scalar::Bytes => {
            json!(base64::engine::general_purpose::STANDARD.encode(r.len_delimited(at)?))
        }
        Scalar::Bool => json!(r.varint(at)? != 0),
        // Varints of int32 are sign-extended to 64 bits; truncation is
        // what Go's decoder does.
        Scalar::Int32 => json!(r.varint(at)? as i32),
        Scalar::Int64 => json!(r.varint(at)? as i64),
        Scalar::Double => {
            let f = f64::from_bits(r.fixed64(at)?);
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| err(at, "a number that JSON cannot hold"))?
        }
    })
}

/// Decodes the fields of a `name` message (no envelope) into its JSON form.
pub(crate) fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, PbError> {
    let msg = message(name).ok_or_else(|| err("", format!("no protobuf message {name}")))?;
    value_of(msg, bytes, "", 0)
}

/// One message's value: a special type's JSON form, or an object.
fn value_of(msg: &'static Message, bytes: &[u8], at: &str, depth: usize) -> Result<Value, PbError> {
    if depth > MAX_DEPTH {
        return Err(err(at, "messages nested too deep"));
    }
    let mut out = Map::new();
    fields_into(msg, bytes, at, depth, &mut out)?;
    if is_special(msg.name) {
        special(msg.name, &out, at)
    } else {
        Ok(Value::Object(out))
    }
}

fn fields_into(
    msg: &'static Message,
    bytes: &[u8],
    at: &str,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), PbError> {
    let mut r = Reader { buf: bytes };
    while !r.buf.is_empty() {
        let key = r.varint(at)?;
        let tag = u32::try_from(key >> 3).map_err(|_| err(at, "field number out of range"))?;
        let wire = (key & 7) as u8;
        let Some(field) = msg.fields.iter().find(|f| f.tag == tag) else {
            r.skip(wire, at)?;
            continue;
        };
        let name = json_name(msg, field);
        let here = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        match field.ty {
            Ty::Scalar(s) => {
                if field.repeated && wire == 2 && !matches!(s, Scalar::String | Scalar::Bytes) {
                    // Packed numbers.
                    let mut inner = Reader {
                        buf: r.len_delimited(&here)?,
                    };
                    let wire = if s == Scalar::Double { 1 } else { 0 };
                    while !inner.buf.is_empty() {
                        let v = scalar(s, wire, &mut inner, &here)?;
                        push(out, &name, v);
                    }
                    continue;
                }
                let v = scalar(s, wire, &mut r, &here)?;
                if field.repeated {
                    push(out, &name, v);
                } else if v.as_str() == Some("") {
                    out.remove(&name);
                } else {
                    out.insert(name, v);
                }
            }
            Ty::Message(m) => {
                if wire != 2 {
                    return Err(err(&here, format!("wire type {wire} for a message")));
                }
                let b = r.len_delimited(&here)?;
                let sub = message(m).ok_or_else(|| err(&here, format!("no message {m}")))?;
                if field.repeated {
                    let v = value_of(sub, b, &here, depth + 1)?;
                    push(out, &name, v);
                } else {
                    let v = merge_into(sub, out.remove(&name), b, &here, depth + 1)?;
                    out.insert(name, v);
                }
            }
            Ty::Map(_) | Ty::MapMessage(_) => {
                if wire != 2 {
                    return Err(err(&here, format!("wire type {wire} for a map entry")));
                }
                let (k, v) = map_entry(field.ty, r.len_delimited(&here)?, &here, depth + 1)?;
                match out.entry(name).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(m) => {
                        m.insert(k, v);
                    }
                    _ => return Err(err(&here, "map and non-map values for one field")),
                }
            }
        }
    }
    Ok(())
}

/// A message field seen again merges into what came before (proto
/// semantics); special types take the last value.
fn merge_into(
    sub: &'static Message,
    before: Option<Value>,
    b: &[u8],
    at: &str,
    depth: usize,
) -> Result<Value, PbError> {
    if depth > MAX_DEPTH {
        return Err(err(at, "messages nested too deep"));
    }
    if is_special(sub.name) {
        return value_of(sub, b, at, depth);
    }
    let mut m = match before {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    fields_into(sub, b, at, depth, &mut m)?;
    Ok(Value::Object(m))
}

fn push(out: &mut Map<String, Value>, name: &str, v: Value) {
    match out
        .entry(name.to_string())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(a) => a.push(v),
        other => *other = Value::Array(vec![v]),
    }
}

fn map_entry(ty: Ty, bytes: &[u8], at: &str, depth: usize) -> Result<(String, Value), PbError> {
    let mut r = Reader { buf: bytes };
    let mut key = String::new();
    let mut val: Option<Value> = None;
    while !r.buf.is_empty() {
        let k = r.varint(at)?;
        let wire = (k & 7) as u8;
        match (k >> 3, ty) {
            (1, _) => {
                key = match scalar(Scalar::String, wire, &mut r, at)? {
                    Value::String(s) => s,
                    _ => String::new(),
                }
            }
            (2, Ty::Map(s)) => val = Some(scalar(s, wire, &mut r, &format!("{at}[{key:?}]"))?),
            (2, Ty::MapMessage(m)) => {
                if wire != 2 {
                    return Err(err(at, format!("wire type {wire} for a map value")));
                }
                let b = r.len_delimited(at)?;
                let sub = message(m).ok_or_else(|| err(at, format!("no message {m}")))?;
                val = Some(value_of(sub, b, &format!("{at}[{key:?}]"), depth + 1)?);
            }
            _ => r.skip(wire, at)?,
        }
    }
    let val = match (val, ty) {
        (Some(v), _) => v,
        // An absent value is the type's zero value.
        (None, Ty::Map(Scalar::Bool)) => json!(false),
        (None, Ty::Map(Scalar::String | Scalar::Bytes)) => json!(""),
        (None, Ty::Map(_)) => json!(0),
        (None, Ty::MapMessage(m)) => {
            let sub = message(m).ok_or_else(|| err(at, format!("no message {m}")))?;
            value_of(sub, &[], at, depth)?
        }
        (None, _) => Value::Null,
    };
    Ok((key, val))
}

fn is_special(name: &str) -> bool {
    matches!(
        name.strip_prefix("io.k8s.apimachinery.pkg."),
        Some(
            "apis.meta.v1.Time"
                | "apis.meta.v1.MicroTime"
                | "apis.meta.v1.Duration"
                | "apis.meta.v1.FieldsV1"
                | "util.intstr.IntOrString"
                | "api.resource.Quantity"
                | "runtime.RawExtension"
        )
    ) || name == "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
}

/// The JSON form of a special type from its decoded fields.
fn special(name: &str, fields: &Map<String, Value>, at: &str) -> Result<Value, PbError> {
    let int = |k: &str| fields.get(k).and_then(Value::as_i64).unwrap_or(0);
    let string = |k: &str| {
        fields
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let v = match name.rsplit('.').next().unwrap_or_default() {
        "Time" | "MicroTime" if fields.is_empty() => Value::Null,
        "Time" => json!(rfc3339(int("seconds"), None, at)?),
        "MicroTime" => json!(rfc3339(int("seconds"), Some(int("nanos")), at)?),
        "Duration" => json!(go_duration(int("duration"))),
        "IntOrString" => {
            if int("type") == 1 {
                json!(string("strVal"))
            } else {
                json!(int("intVal"))
            }
        }
        "Quantity" => json!(string("string")),
        // RawExtension, FieldsV1, apiextensions JSON: JSON in bytes.
        _ => {
            let b64 = string("raw");
            if b64.is_empty() {
                return Ok(Value::Null);
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| err(at, e))?;
            serde_json::from_slice(&raw).map_err(|e| err(at, format!("embedded JSON: {e}")))?
        }
    };
    Ok(v)
}

/// RFC 3339 in UTC: whole seconds (`Time`, whose protobuf nanos kube
/// drops) or with microseconds (`MicroTime`).
fn rfc3339(seconds: i64, nanos: Option<i64>, at: &str) -> Result<String, PbError> {
    let ts =
        jiff::Timestamp::new(seconds, 0).map_err(|e| err(at, format!("time out of range: {e}")))?;
    Ok(match nanos {
        None => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(n) => {
            let micros = n.clamp(0, 999_999_999) / 1000;
            format!("{}.{micros:06}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"))
        }
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64, digits: usize| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let s = format!("{rest:0digits$}");
            format!("{whole}.{}", s.trim_end_matches('0'))
        }
    };
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 1_000, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 1_000_000, 6))
    } else {
        let secs = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac(s * 1_000_000_000 + sub, 1_000_000_000, 9));
        out.push('s');
        out
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use prost::Message as _;

    fn decode(name: &str, m: &impl prost::Message) -> Value {
        decode_message(name, &m.encode_to_vec()).unwrap()
    }

    #[test]
    fn a_time_is_rfc3339_seconds_and_zero_is_null() {
        let m = meta::ObjectMeta {
            name: Some("x".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(5),
            }),
            deletion_timestamp: Some(meta::Time::default()),
            ..Default::default()
        };
        let v = decode("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &m);
        assert_eq!(v["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["deletionTimestamp"], Value::Null);
    }

    #[test]
    fn int_or_string_is_a_number_or_a_string() {
        let port = |t: IntOrString| core::ServicePort {
            port: Some(80),
            target_port: Some(t),
            ..Default::default()
        };
        let n = decode(
            "io.k8s.api.core.v1.ServicePort",
            &port(IntOrString {
                r#type: Some(0),
                int_val: Some(8080),
                str_val: None,
            }),
        );
        assert_eq!(n, json!({"port": 80, "targetPort": 8080}));
        let s = decode(
            "io.k8s.api.core.v1.ServicePort",
            &port(IntOrString {
                r#type: Some(1),
                int_val: None,
                str_val: Some("http".into()),
            }),
        );
        assert_eq!(s["targetPort"], "http");
    }

    #[test]
    fn quantities_are_strings_and_acronyms_keep_their_json_case() {
        let r = core::ResourceRequirements {
            limits: [(
                "cpu".to_string(),
                Quantity {
                    string: Some("500m".into()),
                },
            )]
            .into(),
            ..Default::default()
        };
        let v = decode("io.k8s.api.core.v1.ResourceRequirements", &r);
        assert_eq!(v, json!({"limits": {"cpu": "500m"}}));
        let st = core::PodStatus {
            pod_ip: Some("10.0.0.1".into()),
            host_ip: Some("192.168.1.10".into()),
            ..Default::default()
        };
        let v = decode("io.k8s.api.core.v1.PodStatus", &st);
        assert_eq!(v, json!({"podIP": "10.0.0.1", "hostIP": "192.168.1.10"}));
    }

    #[test]
    fn bytes_are_base64_and_maps_are_objects() {
        let s = core::Secret {
            data: [("tls.key".to_string(), b"\x00\xffkey".to_vec())].into(),
            string_data: [("a".to_string(), String::new())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode("io.k8s.api.core.v1.Secret", &s);
        assert_eq!(
            v,
            json!({"data": {"tls.key": "AP9rZXk="}, "stringData": {"a": ""}, "type": "Opaque"})
        );
    }

    #[test]
    fn nested_messages_and_lists_decode_with_absent_fields_omitted() {
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                namespace: Some(String::new()),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta::default()),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            args: vec!["-g".into(), String::new()],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode("io.k8s.api.apps.v1.Deployment", &d);
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {}, "spec": {"containers": [
                             {"name": "nginx", "image": "nginx", "args": ["-g", ""]}]}}}
            })
        );
    }

    #[test]
    fn micro_times_durations_and_raw_json_have_their_json_forms() {
        let mut b = Vec::new();
        meta::MicroTime {
            seconds: Some(1),
            nanos: Some(1_500_000),
        }
        .encode(&mut b)
        .unwrap();
        assert_eq!(
            decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", &b).unwrap(),
            "1970-01-01T00:00:01.001500Z"
        );
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        let raw = k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(br#"{"a":[1]}"#.to_vec()),
        };
        assert_eq!(
            decode("io.k8s.apimachinery.pkg.runtime.RawExtension", &raw),
            json!({"a": [1]})
        );
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_field() {
        // Field 1 (metadata) announces 10 bytes, carries 1.
        let e = decode_message("io.k8s.api.core.v1.Secret", &[0x0a, 10, 0]).unwrap_err();
        assert!(e.0.starts_with("metadata:"), "{e}");
        // Field 3 (type, a string) sent as a varint.
        let e = decode_message("io.k8s.api.core.v1.Secret", &[0x18, 1]).unwrap_err();
        assert!(e.0.contains("type"), "{e}");
        // Deep nesting is bounded, not a stack overflow: JSONSchemaProps
        // nests itself through allOf (field 25).
        let mut b: Vec<u8> = Vec::new();
        for _ in 0..200 {
            let mut outer = vec![0xca, 0x01];
            let mut len = b.len();
            while len >= 0x80 {
                outer.push((len as u8) | 0x80);
                len >>= 7;
            }
            outer.push(len as u8);
            outer.extend(b);
            b = outer;
        }
        let e = decode_message(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JsonSchemaProps",
            &b,
        )
        .unwrap_err();
        assert!(e.0.contains("nested too deep"), "{e}");
    }

    #[test]
    fn renamed_k8s_pb_types_still_get_kubes_json_names() {
        let h = core::HttpGetAction {
            http_headers: vec![core::HttpHeader {
                name: Some("X".into()),
                value: Some("y".into()),
            }],
            ..Default::default()
        };
        let v = decode("io.k8s.api.core.v1.HttpGetAction", &h);
        assert_eq!(v, json!({"httpHeaders": [{"name": "X", "value": "y"}]}));
        let fc = core::FcVolumeSource {
            target_ww_ns: vec!["w".into()],
            ..Default::default()
        };
        let v = decode("io.k8s.api.core.v1.FcVolumeSource", &fc);
        assert_eq!(v, json!({"targetWWNs": ["w"]}));
    }

    #[test]
    fn every_served_kind_has_a_protobuf_message() {
        for k in crate::kinds::KINDS {
            assert!(
                message_for(&k.api_version(), k.kind).is_some(),
                "{}",
                k.kind
            );
        }
        assert!(message_for("autoscaling/v1", "Scale").is_some());
    }
}
