//! LoadBalancer Services end to end on one 3-node embedded cluster: the
//! default pool `weft up` creates, the allocator's status, condition and
//! Events, the external client (198.51.100.5) reaching an address through
//! the node that answers ARP for it, the client address kept under
//! externalTrafficPolicy Local, failover when the announcing node loses its
//! endpoint or its agent (measured from the client), requested and shared
//! addresses, an exhausted pool, and release. The behaviours are those the
//! Kubernetes Service API documents for `type: LoadBalancer` and MetalLB's
//! L2 mode documents for announcement (one node per address, gratuitous ARP
//! on failover); the fixtures are weft's own.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const NETEXEC: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// Two netexec pods behind `web` (Local), pinned to node-1 and node-2 (a
/// deleted one comes back on its node), and one behind `plain` (Cluster).
fn manifest() -> String {
    let mut m = String::new();
    for (name, app, node) in [
        ("web-1", "web", "node-1"),
        ("web-2", "web", "node-2"),
        ("plain", "plain", "node-3"),
    ] {
        m += &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  \
             selector: {{matchLabels: {{app: {app}, d: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {app}, d: {name}}}}}\n    \
             spec:\n      nodeSelector: {{kubernetes.io/hostname: {node}}}\n      containers:\n      - name: c\n        image: {NETEXEC}\n        \
             args: [netexec, --http-port=8080]\n        ports: [{{name: http, containerPort: 8080}}]\n        \
             readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}\n---\n"
        );
    }
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: LoadBalancer\n  \
          externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n---\n";
    m
}

fn start_cluster() -> Cluster {
    let c = Cluster::new("lb");
    let path = std::env::temp_dir().join(format!("{}-lb.yaml", c.name));
    std::fs::write(&path, manifest()).unwrap();
    c.ok(&[
        "up",
        "-f",
        path.to_str().unwrap(),
        "--nodes",
        "3",
        "--timeout",
        "180",
    ]);
    let _ = std::fs::remove_file(path);
    wait_until("every web pod Ready on its own node", 120, || {
        web_nodes(&c).len() == 2
    });
    c
}

fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(c: &Cluster, yaml: &str) {
    let path = std::env::temp_dir().join(format!("{}-apply-{}.yaml", c.name, std::process::id()));
    std::fs::write(&path, yaml).unwrap();
    kubectl_ok(c, &["apply", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
}

fn service_json(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&kubectl_ok(c, &["get", "svc", name, "-o", "json"])).unwrap()
}

/// `status.loadBalancer.ingress[].ip` of Service `name`.
fn ingress(c: &Cluster, name: &str) -> Vec<String> {
    service_json(c, name)
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(String::from))
        .collect()
}

/// The one address of `name`, once it has one.
fn address(c: &Cluster, name: &str) -> String {
    let mut got = Vec::new();
    wait_until(&format!("Service {name} gets an address"), 30, || {
        got = ingress(c, name);
        !got.is_empty()
    });
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

/// Nodes holding a ready `app=web` pod.
fn web_nodes(c: &Cluster) -> BTreeSet<String> {
    pods(c)
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == "web")
        .filter(|p| field(p, "/metadata/deletionTimestamp").is_empty())
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map(|p| field(p, "/spec/nodeName").to_string())
        .collect()
}

/// node name → MAC of its eth0 (on the fabric).
fn node_macs(c: &Cluster) -> Vec<(String, String)> {
    (1..=3)
        .map(|i| {
            let node = format!("node-{i}");
            let out = Command::new("ip")
                .args(["netns", "exec", &format!("weft-{}-{node}", c.name)])
                .args(["cat", "/sys/class/net/eth0/address"])
                .output()
                .unwrap();
            (
                node,
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        })
        .collect()
}

/// The MAC the fabric's neighbour table holds for `ip` (empty: none).
fn fabric_neighbour(c: &Cluster, ip: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("weft-{}-fabric", c.name)])
        .args(["ip", "neigh", "show", ip, "dev", "fabric0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// The node whose eth0 the fabric sends `ip` to.
fn announcer(c: &Cluster, ip: &str) -> String {
    let mac = fabric_neighbour(c, ip);
    node_macs(c)
        .into_iter()
        .find(|(_, m)| *m == mac)
        .map(|(n, _)| n)
        .unwrap_or_default()
}

/// netexec's /clientip through `ip` from the external client.
fn curl_external(c: &Cluster, url: &str) -> String {
    c.ok(&["exec", "--external", "--", "curl", "-sS", "-m", "5", url])
}

/// Connects to HOST:PORT every 50 ms for SECS seconds (200 ms connect
/// timeout, one HTTP request each); prints attempts, failures and the
/// longest stretch of failures.
const PROBE: &str = r#"
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + secs
attempts = fails = 0
first_fail = None
longest = 0.0
while time.monotonic() < end:
    t = time.monotonic()
    attempts += 1
    try:
        s = socket.create_connection((host, port), timeout=0.2)
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        s.settimeout(0.5)
        ok = s.recv(1024).startswith(b"HTTP/1.")
        s.close()
    except OSError:
        ok = False
    if ok and attempts - fails == 1:
        print("answering", flush=True)
    if ok:
        if first_fail is not None:
            longest = max(longest, time.monotonic() - first_fail)
            first_fail = None
    else:
        fails += 1
        if first_fail is None:
            first_fail = t
    time.sleep(max(0, 0.05 - (time.monotonic() - t)))
if first_fail is not None:
    longest = max(longest, time.monotonic() - first_fail)
print(f"attempts={attempts} failures={fails} longest_outage_ms={longest*1000:.0f}", flush=True)
"#;

/// A client connection loop running on the external client.
struct Probe(std::process::Child, BufReader<std::process::ChildStdout>);

impl Probe {
    /// Starts the loop and returns once its first request was answered.
    fn start(c: &Cluster, ip: &str, secs: u32) -> Probe {
        let mut child = Command::new(WEFT)
            .args(["--name", &c.name, "exec", "--external", "--"])
            .args(["python3", "-c", PROBE, ip, "80", &secs.to_string()])
            .env("WEFT_STATE_DIR", &c.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "answering",
            "the probe never got an answer: {line}"
        );
        Probe(child, out)
    }

    /// (attempts, failures, longest outage).
    fn finish(mut self) -> (u64, u64, Duration) {
        let mut text = String::new();
        self.1.read_to_string(&mut text).unwrap();
        let out = self.0.wait_with_output().unwrap();
        let num = |k: &str| -> u64 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "probe printed no {k}: {text} {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
        };
        (
            num("attempts"),
            num("failures"),
            Duration::from_millis(num("longest_outage_ms")),
        )
    }
}

/// A counter of `node`'s agent metrics (0 when absent).
fn agent_metric(c: &Cluster, node: &str, name: &str) -> f64 {
    let ip = kubectl_ok(
        c,
        &[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
        ],
    );
    let url = format!("http://{}:9101/metrics", ip.trim());
    let out = c.ok(&["exec", "--node", node, "--", "curl", "-sS", "-m", "5", &url]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn events_for(c: &Cluster, name: &str) -> String {
    kubectl_ok(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
    )
}

// ---- the checks ----

fn a_loadbalancer_service_gets_an_address_from_the_default_pool(c: &Cluster) {
    let pools = kubectl_ok(c, &["get", "loadbalancerippools"]);
    assert!(
        pools.contains("default") && pools.contains("203.0.113.2-203.0.113.254"),
        "{pools}"
    );
    let ip = address(c, "web");
    let last: u8 = ip.strip_prefix("203.0.113.").unwrap().parse().unwrap();
    assert!(last >= 2, "{ip}");
    // weft get svc and kubectl show it as EXTERNAL-IP.
    let table = c.ok(&["get", "svc"]);
    let row = table.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(row.contains(&ip), "{table}");
    let kubectl = kubectl_ok(c, &["get", "svc", "web"]);
    assert!(kubectl.contains(&ip), "{kubectl}");
    // The condition and the Event say where it came from.
    let svc = service_json(c, "web");
    let cond = svc["status"]["conditions"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "weft.dev/LoadBalancerAddress")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no condition: {svc}"));
    assert_eq!(cond["status"], "True", "{cond}");
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    wait_until("the IPAllocated event", 10, || {
        events_for(c, "web").contains(&format!("Assigned {ip} from LoadBalancerIPPool default"))
    });
}

fn the_external_client_reaches_it_and_the_backend_sees_the_client_address(c: &Cluster) {
    let ip = address(c, "web");
    let mut answer = String::new();
    wait_until("the external client reaches the address", 20, || {
        answer = c
            .weft(&[
                "exec",
                "--external",
                "--",
                "curl",
                "-sS",
                "-m",
                "2",
                &format!("http://{ip}/clientip"),
            ])
            .stdout
            .iter()
            .map(|b| *b as char)
            .collect();
        !answer.is_empty()
    });
    // Local keeps the client's address: no masquerade on the way in.
    assert!(answer.starts_with("198.51.100.5:"), "{answer}");
}

fn exactly_one_node_with_a_local_endpoint_answers_arp(c: &Cluster) {
    let ip = address(c, "web");
    let fabric = format!("weft-{}-fabric", c.name);
    // Forget the address, so the next packet asks for it anew.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &fabric, "ip", "neigh", "flush", "to", &ip, "dev", "fabric0",
        ])
        .status();
    let captured = capture(c, &format!("arp and host {ip}"), 2, 10, || {
        curl_external(c, &format!("http://{ip}/hostname"));
    });
    assert!(
        captured
            .text
            .contains(&format!("Request who-has {ip} tell 203.0.113.1")),
        "tcpdump saw no request: {}",
        captured.text
    );
    let replies: Vec<&str> = captured
        .text
        .lines()
        .filter(|l| l.contains(&format!("Reply {ip} is-at")))
        .collect();
    assert_eq!(replies.len(), 1, "one answer: {}", captured.text);
    let node = announcer(c, &ip);
    assert!(!node.is_empty(), "the fabric has no entry for {ip}");
    let mac = node_macs(c)
        .into_iter()
        .find(|(n, _)| *n == node)
        .unwrap()
        .1;
    assert!(replies[0].contains(&mac), "{} vs {mac}", replies[0]);
    assert!(web_nodes(c).contains(&node), "{node} holds no web pod");
}

fn deleting_the_announcers_endpoint_moves_the_address_within_2s(c: &Cluster) {
    let ip = address(c, "web");
    curl_external(c, &format!("http://{ip}/hostname"));
    let before = announcer(c, &ip);
    assert!(web_nodes(c).contains(&before), "{before}");
    let others: Vec<String> = web_nodes(c).into_iter().filter(|n| *n != before).collect();
    assert_eq!(others.len(), 1, "{others:?}");
    let taken = agent_metric(c, &others[0], "weft_agent_lb_takeovers_total");
    let pod = pods(c)
        .into_iter()
        .find(|p| field(p, "/metadata/labels/app") == "web" && field(p, "/spec/nodeName") == before)
        .unwrap();
    let probe = Probe::start(c, &ip, 6);
    let mut moved = None;
    // ARP on the fabric while it happens: ends after 4 s (`timeout`).
    let captured = capture(c, &format!("arp and host {ip}"), 1000, 4, || {
        let deleted = Instant::now();
        kubectl_ok(
            c,
            &[
                "delete",
                "pod",
                field(&pod, "/metadata/name"),
                "--wait=false",
            ],
        );
        // The other node with an endpoint takes the address (the
        // replacement pod may land on the first node again and win it
        // back later).
        wait_until("a takeover by the other node", 10, || {
            if agent_metric(c, &others[0], "weft_agent_lb_takeovers_total") > taken {
                moved = Some(deleted.elapsed());
            }
            moved.is_some()
        });
    });
    // The new announcer said so unasked: a gratuitous reply with its MAC.
    let mac = node_macs(c)
        .into_iter()
        .find(|(n, _)| *n == others[0])
        .unwrap()
        .1;
    assert!(
        captured.text.contains(&format!("Reply {ip} is-at {mac}")),
        "no gratuitous ARP from {}: {}",
        others[0],
        captured.text
    );
    let (attempts, failures, outage) = probe.finish();
    let moved = moved.unwrap();
    assert!(moved < Duration::from_secs(2), "took over after {moved:?}");
    assert!(
        attempts > 50 && failures < attempts / 2,
        "{attempts} attempts, {failures} failed"
    );
    assert!(
        outage < Duration::from_secs(2),
        "connections failed for {outage:?}"
    );
    wait_until("two web pods again", 60, || web_nodes(c).len() == 2);
    let after = announcer(c, &ip);
    assert!(web_nodes(c).contains(&after), "{after} holds no web pod");
    println!(
        "endpoint deleted on {before}: {} took over within {moved:?}; {failures}/{attempts} failed, longest outage {outage:?}",
        others[0]
    );
}

fn stopping_the_announcers_agent_moves_the_address_within_2s(c: &Cluster) {
    let ip = address(c, "web");
    curl_external(c, &format!("http://{ip}/hostname"));
    let before = announcer(c, &ip);
    let others: Vec<String> = web_nodes(c).into_iter().filter(|n| *n != before).collect();
    assert_eq!(others.len(), 1, "{others:?}");
    let taken = agent_metric(c, &others[0], "weft_agent_lb_takeovers_total");
    let pid = agent_pid(c, &before).expect("the announcer's agent runs");
    let probe = Probe::start(c, &ip, 5);
    let killed = Instant::now();
    kill9_group(&pid);
    // The other node with an endpoint takes the address: within 2 s of the
    // kill, its agent counts a takeover.
    let mut moved = None;
    wait_until("a takeover by the other node", 10, || {
        let now = agent_metric(c, &others[0], "weft_agent_lb_takeovers_total");
        if now > taken && moved.is_none() {
            moved = Some(killed.elapsed());
        }
        moved.is_some()
    });
    let (attempts, failures, outage) = probe.finish();
    let moved = moved.unwrap();
    assert!(moved < Duration::from_secs(2), "took over after {moved:?}");
    assert!(attempts > 50, "{attempts}");
    assert!(
        outage < Duration::from_secs(2),
        "connections failed for {outage:?}"
    );
    println!(
        "agent stopped on {before}: {} took over within {moved:?}; {failures}/{attempts} failed",
        others[0]
    );
    wait_until("the agent back", 60, || agent_pid(c, &before).is_some());
}

fn a_service_asking_for_an_address_gets_it(c: &Cluster) {
    apply(
        c,
        "apiVersion: v1\nkind: Service\nmetadata: {name: asks}\nspec:\n  type: LoadBalancer\n  \
         loadBalancerIP: 203.0.113.77\n  selector: {app: plain}\n  ports: [{port: 80, targetPort: 8080}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: annotated\n  annotations: {weft.dev/lb-addresses: 203.0.113.78}\n\
         spec:\n  type: LoadBalancer\n  selector: {app: plain}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    assert_eq!(address(c, "asks"), "203.0.113.77");
    assert_eq!(address(c, "annotated"), "203.0.113.78");
    // Cluster policy: any node may announce, the proxy forwards (and
    // masquerades) to the one pod.
    let mut answer = String::new();
    wait_until("the asked-for address answers", 20, || {
        let o = c.weft(&[
            "exec",
            "--external",
            "--",
            "curl",
            "-sS",
            "-m",
            "2",
            "http://203.0.113.77/hostname",
        ]);
        answer = String::from_utf8_lossy(&o.stdout).into_owned();
        answer.starts_with("plain-")
    });
    kubectl_ok(c, &["delete", "svc", "asks", "annotated"]);
}

fn services_with_one_sharing_key_share_an_address_and_others_may_not(c: &Cluster) {
    let svc = |name: &str, port: u16, key: Option<&str>, ip: &str| {
        let ann = key
            .map(|k| format!("  annotations: {{weft.dev/lb-sharing-key: {k}}}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{ann}spec:\n  type: LoadBalancer\n  \
             loadBalancerIP: {ip}\n  selector: {{app: plain}}\n  ports: [{{port: {port}, targetPort: 8080}}]\n---\n"
        )
    };
    apply(
        c,
        &(svc("share-a", 80, Some("k"), "203.0.113.90")
            + &svc("share-b", 81, Some("k"), "203.0.113.90")),
    );
    assert_eq!(address(c, "share-a"), "203.0.113.90");
    assert_eq!(address(c, "share-b"), "203.0.113.90");
    apply(c, &svc("intruder", 82, None, "203.0.113.90"));
    wait_until("the AddressInUse event", 15, || {
        let ev = events_for(c, "intruder");
        ev.contains("AddressInUse") && ev.contains("203.0.113.90")
    });
    assert!(ingress(c, "intruder").is_empty());
    kubectl_ok(c, &["delete", "svc", "share-a", "share-b", "intruder"]);
}

fn an_exhausted_pool_leaves_the_service_pending_with_an_event_until_one_is_freed(c: &Cluster) {
    // A one-address pool for Services labelled tier=tiny, which the
    // default pool no longer serves.
    apply(
        c,
        "apiVersion: weft.dev/v1alpha1\nkind: LoadBalancerIPPool\nmetadata: {name: tiny}\nspec:\n  \
         addresses: [203.0.113.200/32]\n  serviceSelector: {matchLabels: {tier: tiny}}\n",
    );
    kubectl_ok(
        c,
        &[
            "patch",
            "loadbalancerippool",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"serviceSelector":{"matchExpressions":[{"key":"tier","operator":"NotIn","values":["tiny"]}]}}}"#,
        ],
    );
    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{tier: tiny}}\nspec:\n  \
             type: LoadBalancer\n  selector: {{app: plain}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n"
        )
    };
    apply(c, &svc("tiny-1"));
    assert_eq!(address(c, "tiny-1"), "203.0.113.200");
    apply(c, &svc("tiny-2"));
    wait_until("the PoolExhausted event", 15, || {
        let ev = events_for(c, "tiny-2");
        ev.contains("PoolExhausted") && ev.contains("tiny")
    });
    let table = kubectl_ok(c, &["get", "svc", "tiny-2"]);
    assert!(table.contains("<pending>"), "{table}");
    let cond = service_json(c, "tiny-2")["status"]["conditions"].clone();
    assert!(cond.to_string().contains("PoolExhausted"), "{cond}");
    // Release on deletion: the freed address goes to the waiting Service.
    kubectl_ok(c, &["delete", "svc", "tiny-1"]);
    assert_eq!(address(c, "tiny-2"), "203.0.113.200");
    kubectl_ok(c, &["delete", "svc", "tiny-2"]);
    kubectl_ok(c, &["delete", "loadbalancerippool", "tiny"]);
    kubectl_ok(
        c,
        &[
            "patch",
            "loadbalancerippool",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/serviceSelector"}]"#,
        ],
    );
}

fn changing_the_type_releases_the_address(c: &Cluster) {
    apply(
        c,
        "apiVersion: v1\nkind: Service\nmetadata: {name: flip}\nspec:\n  type: LoadBalancer\n  \
         loadBalancerIP: 203.0.113.120\n  selector: {app: plain}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    assert_eq!(address(c, "flip"), "203.0.113.120");
    kubectl_ok(
        c,
        &[
            "patch",
            "svc",
            "flip",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP","loadBalancerIP":null}}"#,
        ],
    );
    wait_until("the address cleared", 15, || ingress(c, "flip").is_empty());
    let fabric = format!("weft-{}-fabric", c.name);
    // Nobody answers for it any more: the fabric cannot resolve it.
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fabric,
            "ip",
            "neigh",
            "flush",
            "to",
            "203.0.113.120",
            "dev",
            "fabric0",
        ])
        .status();
    let o = c.weft(&[
        "exec",
        "--external",
        "--",
        "curl",
        "-sS",
        "-m",
        "2",
        "http://203.0.113.120/hostname",
    ]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // While the web address still answers (the same path, so the failure
    // above is the release, not a broken client).
    let ip = address(c, "web");
    curl_external(c, &format!("http://{ip}/hostname"));
    kubectl_ok(c, &["delete", "svc", "flip"]);
}

type Check = fn(&Cluster);

const CHECKS: &[(&str, Check)] = &[
    (
        "a_loadbalancer_service_gets_an_address_from_the_default_pool",
        a_loadbalancer_service_gets_an_address_from_the_default_pool,
    ),
    (
        "the_external_client_reaches_it_and_the_backend_sees_the_client_address",
        the_external_client_reaches_it_and_the_backend_sees_the_client_address,
    ),
    (
        "exactly_one_node_with_a_local_endpoint_answers_arp",
        exactly_one_node_with_a_local_endpoint_answers_arp,
    ),
    (
        "deleting_the_announcers_endpoint_moves_the_address_within_2s",
        deleting_the_announcers_endpoint_moves_the_address_within_2s,
    ),
    (
        "stopping_the_announcers_agent_moves_the_address_within_2s",
        stopping_the_announcers_agent_moves_the_address_within_2s,
    ),
    (
        "a_service_asking_for_an_address_gets_it",
        a_service_asking_for_an_address_gets_it,
    ),
    (
        "services_with_one_sharing_key_share_an_address_and_others_may_not",
        services_with_one_sharing_key_share_an_address_and_others_may_not,
    ),
    (
        "an_exhausted_pool_leaves_the_service_pending_with_an_event_until_one_is_freed",
        an_exhausted_pool_leaves_the_service_pending_with_an_event_until_one_is_freed,
    ),
    (
        "changing_the_type_releases_the_address",
        changing_the_type_releases_the_address,
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
    let cluster = (wanted && root_or_skip("lb")).then(|| Arc::new(start_cluster()));
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
    // One cluster: one check at a time, in order.
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    drop(cluster);
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}
