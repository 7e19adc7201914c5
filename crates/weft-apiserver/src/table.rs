//! Server-side printing: `meta.k8s.io/v1` Table responses for `kubectl get`.

use serde_json::{json, Value};

use crate::kinds::Kind;

fn s<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

/// `5s`, `3m`, `2h`, `4d` like kubectl.
fn age(o: &Value) -> String {
    since(s(o, "/metadata/creationTimestamp"))
}

/// How long ago an RFC 3339 time was, as [`age`] prints it.
fn since(time: &str) -> String {
    let Ok(t) = time.parse::<jiff::Timestamp>() else {
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

fn columns(kind: &Kind) -> Vec<(&'static str, i32)> {
    match kind.plural {
        "pods" => vec![
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
        ],
        "services" => vec![
            ("Name", 0),
            ("Type", 0),
            ("Cluster-IP", 0),
            ("External-IP", 0),
            ("Port(s)", 0),
            ("Age", 0),
            ("Selector", 1),
        ],
        "nodes" => vec![
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
        ],
        "namespaces" => vec![("Name", 0), ("Status", 0), ("Age", 0)],
        "deployments" => vec![
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
        ],
        "statefulsets" => vec![("Name", 0), ("Ready", 0), ("Age", 0)],
        "replicasets" => vec![
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Age", 0),
        ],
        "daemonsets" => vec![
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Node Selector", 0),
            ("Age", 0),
        ],
        "events" => vec![
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Message", 0),
        ],
        "endpointslices" => vec![
            ("Name", 0),
            ("AddressType", 0),
            ("Ports", 0),
            ("Endpoints", 0),
            ("Age", 0),
        ],
        "roles" | "clusterroles" => vec![("Name", 0), ("Created At", 0)],
        "rolebindings" | "clusterrolebindings" => vec![
            ("Name", 0),
            ("Role", 0),
            ("Age", 0),
            ("Users", 1),
            ("Groups", 1),
            ("ServiceAccounts", 1),
        ],
        _ => vec![("Name", 0), ("Age", 0)],
    }
}

/// A binding's subjects of one kind, comma-separated as kubectl prints them
/// (ServiceAccounts as `namespace/name`).
fn subjects(o: &Value, kind: &str) -> String {
    let names: Vec<String> = o["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|sub| sub["kind"] == kind)
        .map(|sub| {
            let name = sub["name"].as_str().unwrap_or_default();
            match sub["namespace"].as_str() {
                Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                _ => name.to_string(),
            }
        })
        .collect();
    names.join(", ")
}

fn cells(kind: &Kind, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    match kind.plural {
        "pods" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |c| {
                c.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            let restarts: i64 = statuses.map_or(0, |c| {
                c.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            let phase = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                s(o, "/status/phase")
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(phase),
                json!(restarts),
                json!(age(o)),
                json!(or_none(s(o, "/status/podIP"))),
                json!(or_none(s(o, "/spec/nodeName"))),
            ]
        }
        "services" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let ext: Vec<String> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(String::from))
                .collect();
            let ext = if !ext.is_empty() {
                ext.join(",")
            } else if s(o, "/spec/type") == "LoadBalancer" {
                "<pending>".into()
            } else if s(o, "/spec/type") == "ExternalName" {
                s(o, "/spec/externalName").to_string()
            } else {
                "<none>".into()
            };
            let sel: Vec<String> = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            vec![
                name,
                json!(s(o, "/spec/type")),
                json!(or_none(s(o, "/spec/clusterIP"))),
                json!(ext),
                json!(or_none(&ports.join(","))),
                json!(age(o)),
                json!(or_none(&sel.join(","))),
            ]
        }
        "nodes" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let ip = o
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .unwrap_or_default();
            vec![
                name,
                json!(ready),
                json!("<none>"),
                json!(age(o)),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(or_none(ip)),
            ]
        }
        "namespaces" => vec![name, json!(s(o, "/status/phase")), json!(age(o))],
        "deployments" | "statefulsets" => {
            let want = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = o
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let mut c = vec![name, json!(format!("{ready}/{want}"))];
            if kind.plural == "deployments" {
                c.push(json!(o
                    .pointer("/status/updatedReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)));
                c.push(json!(o
                    .pointer("/status/availableReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)));
            }
            c.push(json!(age(o)));
            c
        }
        "endpointslices" => {
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64().map(|p| p.to_string()))
                .collect();
            let addrs: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                name,
                json!(s(o, "/addressType")),
                json!(or_none(&ports.join(","))),
                json!(or_none(&addrs.join(","))),
                json!(age(o)),
            ]
        }
        "roles" | "clusterroles" => vec![name, json!(s(o, "/metadata/creationTimestamp"))],
        "rolebindings" | "clusterrolebindings" => vec![
            name,
            json!(format!(
                "{}/{}",
                s(o, "/roleRef/kind"),
                s(o, "/roleRef/name")
            )),
            json!(age(o)),
            json!(subjects(o, "User")),
            json!(subjects(o, "Group")),
            json!(subjects(o, "ServiceAccount")),
        ],
        "replicasets" => {
            let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            vec![
                name,
                json!(o
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)),
                json!(n("/status/replicas")),
                json!(n("/status/readyReplicas")),
                json!(age(o)),
            ]
        }
        "daemonsets" => {
            let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let selector: Vec<String> = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            vec![
                name,
                json!(n("/status/desiredNumberScheduled")),
                json!(n("/status/currentNumberScheduled")),
                json!(n("/status/numberReady")),
                json!(n("/status/updatedNumberScheduled")),
                json!(n("/status/numberAvailable")),
                json!(or_none(&selector.join(","))),
                json!(age(o)),
            ]
        }
        "events" => {
            // kubectl's printEvent: the series' last time, else lastTimestamp,
            // else the first time (firstTimestamp or eventTime).
            let first = match s(o, "/firstTimestamp") {
                "" => s(o, "/eventTime"),
                t => t,
            };
            let last = match (s(o, "/series/lastObservedTime"), s(o, "/lastTimestamp")) {
                ("", "") => first,
                ("", t) | (t, _) => t,
            };
            vec![
                json!(since(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(format!(
                    "{}/{}",
                    s(o, "/involvedObject/kind").to_ascii_lowercase(),
                    s(o, "/involvedObject/name")
                )),
                json!(s(o, "/message").trim()),
            ]
        }
        _ => vec![name, json!(age(o))],
    }
}

/// A Table of the given objects.
pub fn table(kind: &Kind, items: &[&Value], rv: u64) -> Value {
    let cols: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(n, p)| {
            let format = if n == "Name" { "name" } else { "" };
            json!({"name": n, "type": "string", "format": format, "description": n, "priority": p})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({"cells": cells(kind, o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": cols, "rows": rows})
}
