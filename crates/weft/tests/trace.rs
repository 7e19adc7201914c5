//! `weft trace` end to end on one 2-node embedded cluster (VXLAN): real
//! connection attempts followed through the pods, nodes and fabric by
//! nftables tracing. Each check names what a trace must show for a path
//! the seeds walk: pod to pod on one node, pod to Service across nodes
//! (the DNAT and the chosen endpoint), external client to a NodePort
//! (masqueraded under externalTrafficPolicy Cluster, the client address
//! kept under Local), a NetworkPolicy drop (the policy named), a Service
//! without endpoints (the reject named); and that the tracer's tables are
//! gone after a trace, after an interrupted one, and after a killed one
//! (removed by the next trace).

mod common;

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const NETEXEC: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn manifest() -> String {
    let mut m = String::new();
    for (name, app, node) in [
        ("client", "client", "node-1"),
        ("web-1", "web", "node-1"),
        ("web-2", "web", "node-2"),
    ] {
        m += &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}, pod: {name}}}}}\nspec:\n  \
             nodeSelector: {{kubernetes.io/hostname: {node}}}\n  containers:\n  - name: c\n    image: {NETEXEC}\n    \
             args: [netexec, --http-port=8080]\n    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}\n---\n"
        );
    }
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  \
          ports: [{name: http, port: 80, targetPort: 8080}]\n---\n";
    // NodePorts in front of web-2 alone (node-2): Cluster and Local.
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: web2-cluster}\nspec:\n  type: NodePort\n  \
          selector: {pod: web-2}\n  ports: [{port: 80, targetPort: 8080, nodePort: 30091}]\n---\n";
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: web2-local}\nspec:\n  type: NodePort\n  \
          externalTrafficPolicy: Local\n  selector: {pod: web-2}\n  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]\n---\n";
    // UDP to web-2's netexec (its UDP echo on 8081) through node-1.
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: web2-udp}\nspec:\n  type: NodePort\n  \
          selector: {pod: web-2}\n  ports: [{port: 81, targetPort: 8081, protocol: UDP, nodePort: 30092}]\n---\n";
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  \
          ports: [{port: 80}]\n";
    m
}

fn start_cluster() -> Cluster {
    let c = Cluster::new("tr");
    let path = std::env::temp_dir().join(format!("{}-trace.yaml", c.name));
    std::fs::write(&path, manifest()).unwrap();
    c.ok(&["up", "-f", path.to_str().unwrap(), "--timeout", "180"]);
    let _ = std::fs::remove_file(path);
    wait_until("the three pods Ready", 120, || {
        let all = pods(&c);
        ["client", "web-1", "web-2"].iter().all(|n| {
            all.iter().any(|p| {
                field(p, "/metadata/name") == *n
                    && p.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
            })
        })
    });
    c
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    pods(c)
        .iter()
        .find(|p| field(p, "/metadata/name") == name)
        .map(|p| field(p, "/status/podIP").to_string())
        .unwrap()
}

/// `weft trace ARGS -o json`: (exit code, the report).
fn trace(c: &Cluster, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = c.weft(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "weft trace {}: not JSON: {text}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    no_tracer_tables_left(c);
    (out.status.code().unwrap_or(-1), v)
}

fn hops(v: &Value) -> Vec<(String, String, String)> {
    trace_hops(v)
}

fn position(
    hops: &[(String, String, String)],
    f: impl Fn(&(String, String, String)) -> bool,
) -> usize {
    hops.iter()
        .position(f)
        .unwrap_or_else(|| panic!("no such hop in {hops:#?}"))
}

/// The tracer tables (`weft-trace-*`) in the cluster's namespaces.
fn tracer_tables(c: &Cluster) -> Vec<String> {
    let mut found = Vec::new();
    for ns in netns_with_prefix(&format!("weft-{}-", c.name)) {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "list", "tables"])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.contains("weft-trace-") {
                found.push(format!("{ns}: {l}"));
            }
        }
    }
    found
}

fn no_tracer_tables_left(c: &Cluster) {
    let left = tracer_tables(c);
    assert!(left.is_empty(), "tracer tables left: {left:#?}");
    let instances = tracing_instances();
    assert!(
        !instances.iter().any(|i| i.starts_with("weft-trace-")),
        "tracing instances left: {instances:?}"
    );
}

/// The kernel's tracing instances (listed through a tracefs mounted in a
/// private mount namespace, as weft trace mounts it).
fn tracing_instances() -> Vec<String> {
    weft_linux::dropwatch::instances().expect("list tracing instances")
}

fn a_pod_reaches_a_pod_on_its_node_through_its_node_only(c: &Cluster) {
    let (code, v) = trace(c, &["pod/client", "pod/web-1", "--port", "8080"]);
    assert_eq!((code, field(&v, "/verdict")), (0, "DELIVERED"), "{v:#}");
    let h = hops(&v);
    let web1 = pod_ip(c, "web-1");
    let first = position(&h, |x| x.0 == "pod default/client");
    let node = position(&h, |x| x.0 == "node-1");
    let arrived = position(&h, |x| {
        x.0 == "pod default/web-1" && x.2.contains(&format!("→ {web1}:8080 (in on eth0)"))
    });
    assert!(first < node && node < arrived, "{h:#?}");
    assert!(
        h.iter().all(|x| x.0 != "node-2" && x.0 != "fabric"),
        "{h:#?}"
    );
    // The answer comes back to the client.
    assert!(
        h.iter()
            .any(|x| x.0 == "pod default/client" && x.2.starts_with("answer ")),
        "{h:#?}"
    );
}

fn a_service_trace_names_the_dnat_and_the_endpoint_across_nodes(c: &Cluster) {
    let web2 = pod_ip(c, "web-2");
    let want = format!("DNAT to {web2}:8080 for Service default/web http/tcp");
    // The endpoint is chosen at random: trace until it is web-2's (node-2).
    for _ in 0..30 {
        let (code, v) = trace(c, &["pod/client", "svc/web"]);
        assert_eq!((code, field(&v, "/verdict")), (0, "DELIVERED"), "{v:#}");
        let h = hops(&v);
        if !h.iter().any(|x| x.2 == want) {
            continue;
        }
        let dnat = position(&h, |x| x.0 == "node-1" && x.1 == "proxy" && x.2 == want);
        let chosen = position(&h, |x| {
            x.2 == format!("endpoint {web2}:8080 chosen for Service default/web http/tcp")
        });
        let vxlan = position(&h, |x| {
            x.0 == "node-1" && x.2.contains("out via weft.vxlan")
        });
        let over = position(&h, |x| x.0 == "node-2" && x.2.contains("in on weft.vxlan"));
        let arrived = position(&h, |x| {
            x.0 == "pod default/web-2" && !x.2.starts_with("answer")
        });
        assert!(chosen < dnat && dnat < over && over < arrived, "{h:#?}");
        assert!(vxlan < over, "{h:#?}");
        return;
    }
    panic!("30 traces never chose web-2");
}

fn external_to_a_cluster_nodeport_is_masqueraded(c: &Cluster) {
    let web2 = pod_ip(c, "web-2");
    // node-1 has no web-2: it forwards over the overlay, masqueraded.
    let (code, v) = trace(c, &["external", "192.168.1.10:30091"]);
    assert_eq!((code, field(&v, "/verdict")), (0, "DELIVERED"), "{v:#}");
    let h = hops(&v);
    position(&h, |x| x.0 == "fabric");
    position(&h, |x| {
        x.0 == "node-1" && x.2.starts_with("marked for masquerade")
    });
    position(&h, |x| {
        x.0 == "node-1"
            && x.2.contains(&format!(
                "DNAT to {web2}:8080 for Service default/web2-cluster"
            ))
    });
    let arrived = &h[position(&h, |x| {
        x.0 == "pod default/web-2" && !x.2.starts_with("answer")
    })];
    assert!(
        !arrived.2.starts_with("198.51.100.5:"),
        "not masqueraded: {arrived:?}"
    );
}

fn external_to_a_local_nodeport_keeps_the_client_address(c: &Cluster) {
    let (code, v) = trace(c, &["external", "192.168.1.11:30090"]);
    assert_eq!((code, field(&v, "/verdict")), (0, "DELIVERED"), "{v:#}");
    let h = hops(&v);
    let arrived = &h[position(&h, |x| {
        x.0 == "pod default/web-2" && !x.2.starts_with("answer")
    })];
    assert!(arrived.2.starts_with("198.51.100.5:"), "{arrived:?}");
    assert!(
        !h.iter().any(|x| x.2.starts_with("marked for masquerade")),
        "{h:#?}"
    );
}

fn a_networkpolicy_drop_names_the_policy(c: &Cluster) {
    let path = std::env::temp_dir().join(format!("{}-deny.yaml", c.name));
    std::fs::write(
        &path,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-1-closed}\nspec:\n  \
         podSelector: {matchLabels: {pod: web-1}}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
    let mut v = Value::Null;
    wait_until("the policy to drop the trace", 30, || {
        let (code, got) = trace(c, &["pod/client", "pod/web-1", "--port", "8080"]);
        v = got;
        code == 1
    });
    assert_eq!(field(&v, "/verdict"), "DROPPED", "{v:#}");
    let cause = field(&v, "/cause");
    assert!(
        cause.contains("NetworkPolicy default/web-1-closed") && cause.contains("ingress"),
        "{cause}"
    );
    assert!(!cause.contains("default deny of namespace"), "{cause}");
    let h = hops(&v);
    position(&h, |x| x.1 == "policy" && x.2.contains("web-1-closed"));
    // Never delivered: the pod is not among the hops.
    assert!(h.iter().all(|x| x.0 != "pod default/web-1"), "{h:#?}");
    c.ok(&["delete", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
    wait_until("web-1 reachable again", 30, || {
        trace(c, &["pod/client", "pod/web-1", "--port", "8080"]).0 == 0
    });
}

/// A namespace's default deny (every pod selected, no ingress rule) is
/// named as such, with its policy; paired with the pod-selecting policy of
/// `a_networkpolicy_drop_names_the_policy`, which is not called one.
fn a_default_deny_drop_names_the_namespace_and_the_policy(c: &Cluster) {
    let path = std::env::temp_dir().join(format!("{}-deny-all.yaml", c.name));
    std::fs::write(
        &path,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all}\nspec:\n  \
         podSelector: {}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
    let mut v = Value::Null;
    wait_until("the default deny to drop the trace", 30, || {
        let (code, got) = trace(c, &["pod/client", "pod/web-2", "--port", "8080"]);
        v = got;
        code == 1
    });
    let cause = field(&v, "/cause").to_string();
    c.ok(&["delete", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
    wait_until("web-2 reachable again", 30, || {
        trace(c, &["pod/client", "pod/web-2", "--port", "8080"]).0 == 0
    });
    assert!(
        cause.starts_with(
            "ingress denied — default deny of namespace default by NetworkPolicy default/deny-all"
        ),
        "{cause}"
    );
}

fn a_service_without_endpoints_is_named_as_rejected(c: &Cluster) {
    let (code, v) = trace(c, &["pod/client", "svc/empty"]);
    assert_eq!((code, field(&v, "/verdict")), (1, "DROPPED"), "{v:#}");
    assert!(
        field(&v, "/cause").contains("has no ready endpoints"),
        "{v:#}"
    );
    let h = hops(&v);
    position(&h, |x| {
        x.0 == "pod default/client" && x.2.starts_with("answer (TCP reset)")
    });
}

fn a_closed_port_is_refused_by_the_pod_itself(c: &Cluster) {
    let (code, v) = trace(c, &["pod/client", "pod/web-1", "--port", "9999"]);
    assert_eq!((code, field(&v, "/verdict")), (1, "DROPPED"), "{v:#}");
    let cause = field(&v, "/cause");
    assert!(
        cause.starts_with("refused by pod default/web-1: nothing listens"),
        "{cause}"
    );
}

fn a_missing_route_is_explained(c: &Cluster) {
    // Nothing in the cluster or its fabric routes 10.250.0.0/16.
    let (code, v) = trace(c, &["pod/client", "10.250.0.1:80"]);
    assert_eq!((code, field(&v, "/verdict")), (1, "DROPPED"), "{v:#}");
    let cause = field(&v, "/cause");
    assert!(
        cause.contains("last seen in fabric")
            && cause.contains("route lookup for 10.250.0.1 in fabric fails"),
        "{cause}"
    );
    let h = hops(&v);
    position(&h, |x| x.0 == "fabric");
    // The kernel saw it too: its drop reason is named next to the route.
    assert!(cause.contains("(kernel drop reason: "), "{cause}");
}

/// A datagram that fits the external client's link (1500) but not the
/// overlay (1450) is dropped by node-1 when it forwards it (Don't
/// Fragment): before any forward hook, so the trace events end in node-1's
/// prerouting and the kernel's own drop reason says why. Paired with the
/// same path with a small datagram, delivered (so the drop is the size's).
fn an_oversized_datagram_is_dropped_for_its_size_with_the_kernels_reason(c: &Cluster) {
    let (code, v) = trace(c, &["external", "192.168.1.10:30092", "--proto", "udp"]);
    assert_eq!(
        (code, field(&v, "/verdict")),
        (0, "DELIVERED"),
        "small: {v:#}"
    );
    let (code, v) = trace(
        c,
        &[
            "external",
            "192.168.1.10:30092",
            "--proto",
            "udp",
            "--size",
            "1460",
        ],
    );
    assert_eq!((code, field(&v, "/verdict")), (1, "DROPPED"), "{v:#}");
    let cause = field(&v, "/cause");
    assert!(cause.contains("last seen in node-1"), "{cause}");
    assert!(
        cause.contains("the kernel dropped it: PKT_TOO_BIG in ip_forward"),
        "{cause}"
    );
    let h = hops(&v);
    assert!(h.iter().all(|x| x.0 != "pod default/web-2"), "{h:#?}");
    // --size is refused for TCP, naming why.
    let out = c.weft(&["trace", "external", "192.168.1.10:30091", "--size", "100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--size is for --proto udp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The external client drops what comes to its TCP port 9 (no answer at
/// all) while this lives; the table goes on drop, also when a check fails.
struct Blackhole(String);

impl Blackhole {
    fn new(c: &Cluster) -> Blackhole {
        let b = Blackhole(format!("weft-{}-client", c.name));
        b.nft("add table inet weft-test-blackhole");
        b.nft("add chain inet weft-test-blackhole in { type filter hook input priority 0 ; }");
        b.nft("add rule inet weft-test-blackhole in tcp dport 9 drop");
        b
    }

    fn nft(&self, args: &str) {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "nft",
                "delete",
                "table",
                "inet",
                "weft-test-blackhole",
            ])
            .status();
    }
}

/// A trace that takes its whole 2 s (the port is blackholed, see
/// [`Blackhole`]), started in the background.
fn slow_trace(c: &Cluster) -> std::process::Child {
    Command::new(WEFT)
        .args(["--name", &c.name, "trace", "pod/client", "198.51.100.5:9"])
        .env("WEFT_STATE_DIR", &c.state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// With node-1's forwarding entry for node-2's VTEP gone, a packet to a
/// pod of node-2 leaves the VXLAN device with nowhere to go: the trace says
/// the forwarding database has no VTEP for the neighbour's MAC. The entry
/// is put back as it was (the agent would only restore it at its next
/// periodic sync), and the same trace is delivered again.
fn a_missing_vxlan_forwarding_entry_is_explained(c: &Cluster) {
    let node1 = format!("weft-{}-node-1", c.name);
    let bridge = |args: &[&str]| {
        Command::new("bridge")
            .args(["-n", &node1])
            .args(args)
            .output()
            .unwrap()
    };
    let fdb: Value =
        serde_json::from_slice(&bridge(&["-j", "fdb", "show", "dev", "weft.vxlan"]).stdout)
            .unwrap();
    let entry = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["dst"] == "192.168.1.11" && e["mac"] != "00:00:00:00:00:00")
        .unwrap_or_else(|| panic!("node-1 has no FDB entry for node-2's VTEP: {fdb:#}"))
        .clone();
    let mac = entry["mac"].as_str().unwrap().to_string();
    let restore = || {
        let _ = bridge(&[
            "fdb",
            "append",
            &mac,
            "dev",
            "weft.vxlan",
            "dst",
            "192.168.1.11",
            "self",
            "permanent",
        ]);
    };
    // The agent may put it back between a delete and the trace: again then.
    let mut cause = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cause.contains("forwarding database has no VTEP") {
        if std::time::Instant::now() > deadline {
            restore();
            panic!("never explained by the FDB: {cause}");
        }
        let _ = bridge(&[
            "fdb",
            "del",
            &mac,
            "dev",
            "weft.vxlan",
            "dst",
            "192.168.1.11",
        ]);
        let (code, v) = trace(c, &["pod/client", "pod/web-2", "--port", "8080"]);
        cause = field(&v, "/cause").to_string();
        if code == 0 {
            cause.clear();
        }
    }
    restore();
    assert!(cause.contains("last seen in node-1"), "{cause}");
    assert!(cause.contains(&format!("({mac}) on weft.vxlan")), "{cause}");
    wait_until("web-2 reachable again", 30, || {
        trace(c, &["pod/client", "pod/web-2", "--port", "8080"]).0 == 0
    });
}

/// Two traces at the same time: each is delivered and reports only its
/// own packet (its source port), none of the other's; both clean up.
fn two_traces_at_once_do_not_disturb_each_other(c: &Cluster) {
    let spawn = |args: &[&str]| {
        Command::new(WEFT)
            .args(["--name", &c.name, "trace"])
            .args(args)
            .args(["-o", "json"])
            .env("WEFT_STATE_DIR", &c.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&["pod/client", "pod/web-2", "--port", "8080"]);
    let b = spawn(&["external", "192.168.1.11:30090"]);
    let report = |child: std::process::Child| -> Value {
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let (a, b) = (report(a), report(b));
    for (v, other) in [(&a, &b), (&b, &a)] {
        assert_eq!(field(v, "/verdict"), "DELIVERED", "{v:#}");
        let mine = v["sourcePort"].as_u64().unwrap();
        let theirs = other["sourcePort"].as_u64().unwrap();
        assert_ne!(mine, theirs);
        let h = hops(v);
        assert!(
            h.iter().any(|x| x.2.contains(&format!(":{mine} "))),
            "{h:#?}"
        );
        assert!(
            !h.iter().any(|x| x.2.contains(&format!(":{theirs} "))),
            "the other trace's packet in this one: {h:#?}"
        );
    }
    no_tracer_tables_left(c);
}

fn an_interrupted_trace_removes_its_tables(c: &Cluster) {
    let _blackhole = Blackhole::new(c);
    let mut t = slow_trace(c);
    wait_until("the tracer's tables", 20, || !tracer_tables(c).is_empty());
    let _ = Command::new("kill")
        .args(["-INT", &t.id().to_string()])
        .status();
    let status = t.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    no_tracer_tables_left(c);
}

fn a_killed_trace_is_cleaned_up_by_the_next_one(c: &Cluster) {
    let blackhole = Blackhole::new(c);
    let mut t = slow_trace(c);
    wait_until("the tracer's tables", 20, || !tracer_tables(c).is_empty());
    kill9(&t.id().to_string());
    let _ = t.wait();
    assert!(
        !tracer_tables(c).is_empty(),
        "SIGKILL leaves the tables (nothing could remove them)"
    );
    drop(blackhole);
    // The next trace removes the tables of the dead one (and its own).
    let (code, _) = trace(c, &["pod/client", "pod/web-1", "--port", "8080"]);
    assert_eq!(code, 0);
}

type Check = fn(&Cluster);

const CHECKS: &[(&str, Check)] = &[
    (
        "a_default_deny_drop_names_the_namespace_and_the_policy",
        a_default_deny_drop_names_the_namespace_and_the_policy,
    ),
    (
        "an_oversized_datagram_is_dropped_for_its_size_with_the_kernels_reason",
        an_oversized_datagram_is_dropped_for_its_size_with_the_kernels_reason,
    ),
    (
        "a_pod_reaches_a_pod_on_its_node_through_its_node_only",
        a_pod_reaches_a_pod_on_its_node_through_its_node_only,
    ),
    (
        "a_service_trace_names_the_dnat_and_the_endpoint_across_nodes",
        a_service_trace_names_the_dnat_and_the_endpoint_across_nodes,
    ),
    (
        "external_to_a_cluster_nodeport_is_masqueraded",
        external_to_a_cluster_nodeport_is_masqueraded,
    ),
    (
        "external_to_a_local_nodeport_keeps_the_client_address",
        external_to_a_local_nodeport_keeps_the_client_address,
    ),
    (
        "a_networkpolicy_drop_names_the_policy",
        a_networkpolicy_drop_names_the_policy,
    ),
    (
        "a_service_without_endpoints_is_named_as_rejected",
        a_service_without_endpoints_is_named_as_rejected,
    ),
    (
        "a_closed_port_is_refused_by_the_pod_itself",
        a_closed_port_is_refused_by_the_pod_itself,
    ),
    ("a_missing_route_is_explained", a_missing_route_is_explained),
    (
        "a_missing_vxlan_forwarding_entry_is_explained",
        a_missing_vxlan_forwarding_entry_is_explained,
    ),
    (
        "two_traces_at_once_do_not_disturb_each_other",
        two_traces_at_once_do_not_disturb_each_other,
    ),
    (
        "an_interrupted_trace_removes_its_tables",
        an_interrupted_trace_removes_its_tables,
    ),
    (
        "a_killed_trace_is_cleaned_up_by_the_next_one",
        a_killed_trace_is_cleaned_up_by_the_next_one,
    ),
];

/// Whether libtest's filters select `name`.
fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |f: &str| {
        if args.exact {
            name == f
        } else {
            name.contains(f)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    let wanted = !args.list && !args.ignored && CHECKS.iter().any(|(n, _)| selected(&args, n));
    let cluster = (wanted && root_or_skip("trace")).then(|| Arc::new(start_cluster()));
    let trials = CHECKS
        .iter()
        .map(|&(name, check)| {
            let cluster = cluster.clone();
            Trial::test(name, move || match cluster {
                Some(c) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&c)))
                    .map_err(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".into());
                        Failed::from(format!("{msg}\n{}", c.log_tails()))
                    }),
                None => Ok(()),
            })
        })
        .collect();
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    drop(cluster);
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}
