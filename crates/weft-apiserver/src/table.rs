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

fn array<'a>(o: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `k=v,k2=v2` of a string map (a selector, a nodeSelector).
fn pairs(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A pod's STATUS column as kubectl prints it: Terminating while deleted,
/// else the first container's waiting reason (CrashLoopBackOff,
/// ContainerCreating) or terminated reason (Completed, Error, OOMKilled),
/// else the phase.
pub fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for cs in array(pod, "/status/containerStatuses") {
        if let Some(reason) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return reason.into();
        }
        if let Some(reason) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return reason.into();
        }
    }
    match s(pod, "/status/phase") {
        "" => "Pending".into(),
        phase => phase.into(),
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
    human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

/// apimachinery's `duration.HumanDuration`, which kubectl's AGE columns use:
/// `45s`, `3m20s`, `2h5m`, `3d4h`, `1y20d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (minutes, hours) = (secs / 60, secs / 3600);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        with(minutes, "m", secs % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(hours / 24, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        with(hours / 24 / 365, "y", (hours / 24) % 365, "d")
    } else {
        format!("{}y", hours / 24 / 365)
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
            ("Network", 1),
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
        "networkpolicies" => vec![("Name", 0), ("Pod-Selector", 0), ("Age", 0)],
        "ingresses" => vec![
            ("Name", 0),
            ("Class", 0),
            ("Hosts", 0),
            ("Address", 0),
            ("Ports", 0),
            ("Age", 0),
        ],
        "ingressclasses" => vec![
            ("Name", 0),
            ("Controller", 0),
            ("Parameters", 0),
            ("Age", 0),
        ],
        "configmaps" => vec![("Name", 0), ("Data", 0), ("Age", 0)],
        "secrets" => vec![("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
        "serviceaccounts" => vec![("Name", 0), ("Secrets", 0), ("Age", 0)],
        "endpoints" => vec![("Name", 0), ("Endpoints", 0), ("Age", 0)],
        "leases" => vec![("Name", 0), ("Holder", 0), ("Age", 0)],
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
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
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
                json!(node_network(o)),
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
        "networkpolicies" => vec![
            name,
            json!(or_none(&pairs(o.pointer("/spec/podSelector/matchLabels")))),
            json!(age(o)),
        ],
        "ingresses" => {
            let hosts: Vec<&str> = array(o, "/spec/rules")
                .filter_map(|r| r["host"].as_str())
                .filter(|h| !h.is_empty())
                .collect();
            let address: Vec<&str> = array(o, "/status/loadBalancer/ingress")
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            let ports = if array(o, "/spec/tls").next().is_none() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(or_none(s(o, "/spec/ingressClassName"))),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(address.join(",")),
                json!(ports),
                json!(age(o)),
            ]
        }
        "ingressclasses" => {
            let params = o.pointer("/spec/parameters");
            let params = params.map_or_else(String::new, |p| {
                let group = p["apiGroup"].as_str().unwrap_or_default();
                let kind = p["kind"].as_str().unwrap_or_default();
                let n = p["name"].as_str().unwrap_or_default();
                if group.is_empty() {
                    format!("{kind}/{n}")
                } else {
                    format!("{kind}.{group}/{n}")
                }
            });
            vec![
                name,
                json!(s(o, "/spec/controller")),
                json!(or_none(&params)),
                json!(age(o)),
            ]
        }
        "configmaps" => {
            let count = |k: &str| o[k].as_object().map_or(0, |m| m.len());
            vec![
                name,
                json!(count("data") + count("binaryData")),
                json!(age(o)),
            ]
        }
        "secrets" => vec![
            name,
            json!(s(o, "/type")),
            json!(o["data"].as_object().map_or(0, |m| m.len())),
            json!(age(o)),
        ],
        "serviceaccounts" => vec![name, json!(array(o, "/secrets").count()), json!(age(o))],
        "endpoints" => {
            let mut eps = Vec::new();
            for subset in array(o, "/subsets") {
                let ports: Vec<i64> = array(subset, "/ports")
                    .filter_map(|p| p["port"].as_i64())
                    .collect();
                for a in array(subset, "/addresses") {
                    let ip = a["ip"].as_str().unwrap_or_default();
                    if ports.is_empty() {
                        eps.push(ip.to_string());
                    }
                    for p in &ports {
                        eps.push(format!("{ip}:{p}"));
                    }
                }
            }
            vec![name, json!(or_none(&eps.join(","))), json!(age(o))]
        }
        "leases" => vec![
            name,
            json!(or_none(s(o, "/spec/holderIdentity"))),
            json!(age(o)),
        ],
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

/// The Network column of a Node: the cross-node backend its weft agent
/// published, with the WireGuard implementation when there is one
/// (`wireguard (kernel)`); `<none>` without a weft agent.
fn node_network(o: &Value) -> String {
    let a = |k: &str| {
        o.pointer("/metadata/annotations")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
    };
    match (
        a("weft.dev/backend"),
        a("weft.dev/wireguard-implementation"),
    ) {
        (Some(b), Some(i)) if b == "wireguard" => format!("{b} ({i})"),
        (Some(b), _) => b.to_string(),
        (None, _) => "<none>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (200, "3m20s"),
            (180, "3m"),
            (900, "15m"),
            (4 * 3600 + 300, "4h5m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 20 * 86400, "3y20d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn pod_status_shows_the_waiting_reason_before_the_phase() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&pod), "CrashLoopBackOff");
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": "Completed"}}}]}});
        assert_eq!(pod_status(&done), "Completed");
        let gone = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(pod_status(&gone), "Terminating");
        assert_eq!(pod_status(&json!({})), "Pending");
    }

    #[test]
    fn a_nodes_network_column_names_its_backend_and_wireguard_implementation() {
        let node = |a: Value| json!({"metadata": {"name": "n", "annotations": a}});
        assert_eq!(node_network(&json!({"metadata": {"name": "n"}})), "<none>");
        assert_eq!(
            node_network(&node(json!({"weft.dev/backend": "vxlan"}))),
            "vxlan"
        );
        assert_eq!(
            node_network(&node(json!({"weft.dev/backend": "wireguard"}))),
            "wireguard"
        );
        assert_eq!(
            node_network(&node(json!({"weft.dev/backend": "wireguard",
                "weft.dev/wireguard-implementation": "userspace"}))),
            "wireguard (userspace)"
        );
    }
}
