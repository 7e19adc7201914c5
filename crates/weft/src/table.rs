//! `weft get` tables: columns per kind, computed from the objects as JSON
//! (pure; "now" is passed in), aligned like kubectl's.

use serde_json::Value;

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl-style age: 42s, 5m, 3h, 2d.
pub fn age(created: &str, now: jiff::Timestamp) -> String {
    let Ok(t) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (now.as_second() - t.as_second()).max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn selector(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// What a pod's STATUS column shows (kubectl's rules, simplified).
pub fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for cs in arr(pod, "/status/containerStatuses") {
        if let Some(reason) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return reason.into();
        }
        if let Some(reason) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            if s(pod, "/status/phase") != "Succeeded" {
                return reason.into();
            }
        }
    }
    let phase = s(pod, "/status/phase");
    if phase.is_empty() {
        "Pending".into()
    } else {
        phase.into()
    }
}

fn condition(obj: &Value, kind: &str) -> Option<String> {
    arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == kind)
        .map(|c| s(c, "/status").to_string())
}

/// Header and rows for `objects` of `kind` (plural name).
pub fn render(
    kind: &str,
    objects: &[Value],
    wide: bool,
    all_namespaces: bool,
    now: jiff::Timestamp,
) -> String {
    let (mut header, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        "nodes" => {
            let mut h = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
            if wide {
                h.extend(["INTERNAL-IP", "POD-CIDR"]);
            }
            let rows = objects
                .iter()
                .map(|o| {
                    let ready = if condition(o, "Ready").as_deref() == Some("True") {
                        "Ready"
                    } else {
                        "NotReady"
                    };
                    let mut r = vec![
                        s(o, "/metadata/name").into(),
                        ready.into(),
                        "<none>".into(),
                        age(s(o, "/metadata/creationTimestamp"), now),
                        none_if_empty(s(o, "/status/nodeInfo/kubeletVersion").into()),
                    ];
                    if wide {
                        let ip = arr(o, "/status/addresses")
                            .iter()
                            .find(|a| s(a, "/type") == "InternalIP")
                            .map(|a| s(a, "/address").to_string())
                            .unwrap_or_default();
                        r.push(none_if_empty(ip));
                        r.push(none_if_empty(s(o, "/spec/podCIDR").into()));
                    }
                    r
                })
                .collect();
            (h, rows)
        }
        "namespaces" => (
            vec!["NAME", "STATUS", "AGE"],
            objects
                .iter()
                .map(|o| {
                    vec![
                        s(o, "/metadata/name").into(),
                        none_if_empty(s(o, "/status/phase").into()),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        "pods" => {
            let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                h.extend(["IP", "NODE"]);
            }
            let rows = objects
                .iter()
                .map(|o| {
                    let statuses = arr(o, "/status/containerStatuses");
                    let total = arr(o, "/spec/containers").len();
                    let ready = statuses
                        .iter()
                        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                        .count();
                    let restarts: i64 = statuses.iter().map(|c| int(c, "/restartCount")).sum();
                    let mut r = vec![
                        s(o, "/metadata/name").into(),
                        format!("{ready}/{total}"),
                        pod_status(o),
                        restarts.to_string(),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ];
                    if wide {
                        r.push(none_if_empty(s(o, "/status/podIP").into()));
                        r.push(none_if_empty(s(o, "/spec/nodeName").into()));
                    }
                    r
                })
                .collect();
            (h, rows)
        }
        "services" => {
            let mut h = vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ];
            if wide {
                h.push("SELECTOR");
            }
            let rows = objects
                .iter()
                .map(|o| {
                    let ports = arr(o, "/spec/ports")
                        .iter()
                        .map(|p| {
                            let node_port = p
                                .get("nodePort")
                                .and_then(Value::as_i64)
                                .map(|n| format!(":{n}"))
                                .unwrap_or_default();
                            format!(
                                "{}{node_port}/{}",
                                int(p, "/port"),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    let external = arr(o, "/status/loadBalancer/ingress")
                        .iter()
                        .map(|i| s(i, "/ip").to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    let mut r = vec![
                        s(o, "/metadata/name").into(),
                        none_if_empty(s(o, "/spec/type").into()),
                        none_if_empty(s(o, "/spec/clusterIP").into()),
                        none_if_empty(external),
                        none_if_empty(ports),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ];
                    if wide {
                        r.push(none_if_empty(selector(o.pointer("/spec/selector"))));
                    }
                    r
                })
                .collect();
            (h, rows)
        }
        "endpointslices" => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let ports = arr(o, "/ports")
                        .iter()
                        .map(|p| int(p, "/port").to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    let endpoints = arr(o, "/endpoints")
                        .iter()
                        .flat_map(|e| arr(e, "/addresses").iter().filter_map(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![
                        s(o, "/metadata/name").into(),
                        s(o, "/addressType").into(),
                        none_if_empty(ports),
                        none_if_empty(endpoints),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        "deployments" => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let want = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    vec![
                        s(o, "/metadata/name").into(),
                        format!("{}/{want}", int(o, "/status/readyReplicas")),
                        int(o, "/status/updatedReplicas").to_string(),
                        int(o, "/status/availableReplicas").to_string(),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        "statefulsets" => (
            vec!["NAME", "READY", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let want = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    vec![
                        s(o, "/metadata/name").into(),
                        format!("{}/{want}", int(o, "/status/readyReplicas")),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        "networkpolicies" => (
            vec!["NAME", "POD-SELECTOR", "AGE"],
            objects
                .iter()
                .map(|o| {
                    vec![
                        s(o, "/metadata/name").into(),
                        none_if_empty(selector(o.pointer("/spec/podSelector/matchLabels"))),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        "ingresses" => (
            vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let hosts = arr(o, "/spec/rules")
                        .iter()
                        .map(|r| s(r, "/host").to_string())
                        .filter(|h| !h.is_empty())
                        .collect::<Vec<_>>();
                    let address = arr(o, "/status/loadBalancer/ingress")
                        .iter()
                        .map(|i| s(i, "/ip").to_string())
                        .collect::<Vec<_>>();
                    let ports = if arr(o, "/spec/tls").is_empty() {
                        "80"
                    } else {
                        "80, 443"
                    };
                    vec![
                        s(o, "/metadata/name").into(),
                        none_if_empty(s(o, "/spec/ingressClassName").into()),
                        if hosts.is_empty() {
                            "*".into()
                        } else {
                            hosts.join(",")
                        },
                        address.join(","),
                        ports.into(),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
        _ => (
            vec!["NAME", "AGE"],
            objects
                .iter()
                .map(|o| {
                    vec![
                        s(o, "/metadata/name").into(),
                        age(s(o, "/metadata/creationTimestamp"), now),
                    ]
                })
                .collect(),
        ),
    };
    let mut rows = rows;
    if all_namespaces {
        header.insert(0, "NAMESPACE");
        for (row, o) in rows.iter_mut().zip(objects) {
            row.insert(0, s(o, "/metadata/namespace").to_string());
        }
    }
    align(&header, &rows)
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
pub fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}   ", w = widths[i])
                }
            })
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn pods_wide_with_namespaces() {
        let pods = vec![
            json!({"metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2026-11-22T09:59:30Z"},
                   "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
                   "status": {"phase": "Running", "podIP": "10.244.0.5",
                              "containerStatuses": [{"name": "c", "ready": true, "restartCount": 1, "state": {"running": {}}}]}}),
            json!({"metadata": {"name": "db-0", "namespace": "data", "creationTimestamp": "2026-11-22T07:00:00Z"},
                   "spec": {"containers": [{"name": "c"}]}, "status": {}}),
        ];
        let t = render("pods", &pods, true, true, now());
        let want = "\
NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP           NODE
default     web-1   1/1     Running   1          30s   10.244.0.5   node-1
data        db-0    0/1     Pending   0          3h    <none>       <none>
";
        assert_eq!(t, want);
    }

    #[test]
    fn services_and_statuses() {
        let svc = vec![
            json!({"metadata": {"name": "web", "creationTimestamp": "2026-11-20T10:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}}),
        ];
        let t = render("services", &svc, true, false, now());
        assert!(
            t.contains("web    NodePort   10.96.0.20   <none>        80:30080/TCP   2d    app=web"),
            "{t}"
        );
        let waiting = json!({"status": {"containerStatuses": [{"state": {"waiting": {"reason": "NoCommand"}}}]}});
        assert_eq!(pod_status(&waiting), "NoCommand");
        assert_eq!(
            pod_status(&json!({"metadata": {"deletionTimestamp": "x"}})),
            "Terminating"
        );
        assert_eq!(age("2026-11-22T09:58:00Z", now()), "2m");
    }
}
