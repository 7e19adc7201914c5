//! Cross-node pod network, end to end on 3-node embedded clusters, one per
//! backend: every pod reaches every other pod over TCP and UDP (netexec
//! /dial, all pairs) with its own source IP, every node reaches every pod,
//! the fabric carries what the backend says (VXLAN or bare pod addresses),
//! the pod MTU holds exactly (a DF packet of the MTU crosses nodes, one byte
//! more is refused), a deleted node's routes go away on the others and come
//! back when it registers again, and an agent restart keeps a long-lived TCP
//! connection alive (and, with wireguard, its key). A Service whose endpoint
//! is on another node answers with the client's address, and a NetworkPolicy
//! on a pod holds for clients on other nodes. Backend wireguard: the
//! fabric carries only WireGuard between node IPs, nothing readable, and
//! `weft rotate-key` replaces a node's key with traffic going on.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Four netexec pods: two on node-1, one on node-2, one on node-3.
const PODS: &[(&str, &str)] = &[
    ("n1a", "node-1"),
    ("n1b", "node-1"),
    ("n2", "node-2"),
    ("n3", "node-3"),
];

/// The pods ping across nodes: `ping` carries the file capability
/// cap_net_raw, which a pod without NET_RAW in its bounding set cannot exec.
/// Service `to-n3` (TCP 80 → 8080, UDP 81 → 8081) has n3 as its only
/// endpoint, across nodes from n1a.
fn manifest() -> String {
    let service =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: to-n3\nspec:\n  selector: {pod: n3}\n  \
                   ports:\n  - {name: http, port: 80, targetPort: 8080, protocol: TCP}\n  \
                   - {name: udp, port: 81, targetPort: 8081, protocol: UDP}\n";
    PODS.iter()
        .map(|(name, node)| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: net, pod: {name}}}\nspec:\n  nodeName: {node}\n  \
                 containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    \
                 args: [netexec, --http-port=8080, --udp-port=8081]\n    \
                 securityContext:\n      capabilities: {{add: [NET_RAW]}}\n    readinessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n"
            )
        })
        .chain(std::iter::once(service.to_string()))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Service `to-n3`'s ClusterIP, once its endpoint is ready (the proxy
/// programs it).
fn cluster_ip(c: &Cluster) -> String {
    let out = c.ok(&["get", "svc", "to-n3", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    field(&v, "/spec/clusterIP").to_string()
}

/// GET http://{ip}:8080{path} from inside a node's namespace.
fn get_from_node(c: &Cluster, node: &str, url: &str) -> String {
    let script = format!("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=10).read().decode())");
    c.ok(&["exec", "--node", node, "--", "python3", "-c", &script])
}

fn dial(c: &Cluster, from: &str, to: &str, request: &str, protocol: &str) -> Value {
    let port = if protocol == "udp" { 8081 } else { 8080 };
    let url = format!("http://{from}:8080/dial?request={request}&protocol={protocol}&host={to}&port={port}&tries=1");
    let out = get_from_node(c, "node-1", &url);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("dial {from} → {to}: not JSON: {out}"))
}

/// Pod name → IP.
fn pod_ips(c: &Cluster) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pods(c)
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == "net")
        .map(|p| {
            (
                field(p, "/metadata/name").to_string(),
                field(p, "/status/podIP").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn routes_on(c: &Cluster, node: &str) -> String {
    c.ok(&["exec", "--node", node, "--", "ip", "route"])
}

fn cross_node(backend: &str) {
    let c = Cluster::new(match backend {
        "vxlan" => "ovx",
        "host-gw" => "ohg",
        "wireguard" => "owg",
        _ => "oau",
    });
    let file = std::env::temp_dir().join(format!("{}-pods.yaml", c.name));
    std::fs::write(&file, manifest()).unwrap();
    c.ok(&[
        "up",
        "--nodes",
        "3",
        "--backend",
        backend,
        "-f",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    let ips = pod_ips(&c);
    assert_eq!(ips.len(), 4, "{ips:?}");
    // `weft get nodes -o wide` names each node's backend (and for
    // WireGuard the implementation auto chose: this kernel has none).
    let wide = c.ok(&["get", "nodes", "-o", "wide"]);
    let network = if backend == "wireguard" {
        "wireguard (userspace)"
    } else {
        backend
    };
    assert!(
        wide.lines().next().unwrap_or_default().contains("NETWORK"),
        "{wide}"
    );
    for node in ["node-1", "node-2", "node-3"] {
        assert!(
            wide.lines()
                .any(|l| l.starts_with(node) && l.trim_end().ends_with(network)),
            "{backend}: {node} not shown as {network}: {wide}"
        );
    }
    if backend == "wireguard" {
        // Every agent is ready only once every peer completed a handshake
        // with it, which — before any traffic between the nodes' pods —
        // the agents' own nudges start (`weft up` saw each agent ready
        // once; a peer that joined after that is waited for here).
        for (node, ip) in [
            ("node-1", "192.168.1.10"),
            ("node-2", "192.168.1.11"),
            ("node-3", "192.168.1.12"),
        ] {
            let mut m = String::new();
            wait_until(&format!("{node}: a handshake with every peer"), 15, || {
                m = get_from_node(&c, node, &format!("http://{ip}:9101/metrics"));
                m.contains("weft_agent_wireguard_peers_waiting_first_handshake 0")
                    && m.contains("weft_agent_wireguard_peers_with_handshake 2")
            });
            assert!(
                m.contains("weft_agent_wireguard_implementation{implementation=\"userspace\"} 1"),
                "{node}: {m}"
            );
            let probe = format!("import urllib.request,sys; sys.exit(urllib.request.urlopen('http://{ip}:9101/readyz', timeout=2).read() != b'ok\\n')");
            assert!(
                c.weft(&["exec", "--node", node, "--", "python3", "-c", &probe])
                    .status
                    .success(),
                "{node}: /readyz not ok with every peer handshaken"
            );
        }
    }
    // A Service whose only endpoint is across nodes, TCP and UDP, seen
    // with the client's own address (no masquerade inside the cluster).
    let vip = cluster_ip(&c);
    let n1a_ip = &ips.iter().find(|(n, _)| n == "n1a").unwrap().1;
    for (protocol, port) in [("http", 80), ("udp", 81)] {
        let url = format!("http://{n1a_ip}:8080/dial?request=hostname&protocol={protocol}&host={vip}&port={port}&tries=3");
        let mut last = String::new();
        wait_until(
            &format!("{backend}: {protocol} n1a → Service to-n3"),
            20,
            || {
                last = get_from_node(&c, "node-1", &url);
                last.contains("\"n3\"")
            },
        );
    }
    let url = format!(
        "http://{n1a_ip}:8080/dial?request=clientip&protocol=http&host={vip}&port=80&tries=1"
    );
    let seen = get_from_node(&c, "node-1", &url);
    assert!(
        seen.contains(&format!("\"{n1a_ip}:")),
        "{backend}: n1a → Service seen as {seen}"
    );

    // NetworkPolicy holds across nodes on this backend: with n3 open only
    // to n1a, n1a (node-1) still reaches it and n2 (node-2) no longer does —
    // which needs the true source address of each to arrive on node-3
    // (through the tunnel, for wireguard); without the policy, n2 again.
    let policy = std::env::temp_dir().join(format!("{}-policy.yaml", c.name));
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: only-n1a-to-n3\n\
         spec:\n  podSelector: {matchLabels: {pod: n3}}\n  policyTypes: [Ingress]\n  \
         ingress:\n  - from: [{podSelector: {matchLabels: {pod: n1a}}}]\n",
    )
    .unwrap();
    let n2_ip = &ips.iter().find(|(n, _)| n == "n2").unwrap().1;
    let n3_ip = &ips.iter().find(|(n, _)| n == "n3").unwrap().1;
    c.ok(&["apply", "-f", policy.to_str().unwrap()]);
    wait_until(
        &format!("{backend}: the policy refuses n2 → n3"),
        30,
        || !dials(&c, n2_ip, n3_ip, "n3"),
    );
    assert!(
        dials(&c, n1a_ip, n3_ip, "n3"),
        "{backend}: n1a → n3 must stay allowed by the policy"
    );
    c.ok(&["delete", "-f", policy.to_str().unwrap()]);
    let _ = std::fs::remove_file(&policy);
    wait_until(
        &format!("{backend}: n2 → n3 again without the policy"),
        30,
        || dials(&c, n2_ip, n3_ip, "n3"),
    );

    // `weft trace` follows a connection across nodes on this backend: out
    // of node-1 by the backend's device (the underlay itself for host-gw
    // and auto),
    // into node-3 by the same, delivered to the pod and answered.
    // (auto on one subnet routes directly, as host-gw does.)
    let device = match backend {
        "vxlan" => "weft.vxlan",
        "wireguard" => "weft.wg",
        _ => "eth0",
    };
    let out = c.weft(&["trace", "pod/n1a", "pod/n3", "--port", "8080", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{backend}: weft trace: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["verdict"], "DELIVERED", "{backend}: {v:#}");
    let hops = trace_hops(&v);
    let at = |f: &dyn Fn(&(String, String, String)) -> bool| {
        hops.iter()
            .position(f)
            .unwrap_or_else(|| panic!("{backend}: {hops:#?}"))
    };
    let leaves = at(&|h| h.0 == "node-1" && h.2.ends_with(&format!("out via {device})")));
    // The overlay peer: node-3's address (192.168.1.12) for VXLAN and
    // host-gw, the encrypted device for WireGuard.
    let peer = match backend {
        "vxlan" => "VXLAN to 192.168.1.12".to_string(),
        "wireguard" => "WireGuard (encrypted) to the peer of ".to_string(),
        _ => "routed to 192.168.1.12 (host-gw)".to_string(),
    };
    let via = at(&|h| h.0 == "node-1" && h.2.starts_with(&peer));
    assert!(leaves < via, "{backend}: {hops:#?}");
    let arrives = at(&|h| h.0 == "node-3" && h.2.contains(&format!("(in on {device}")));
    let delivered = at(&|h| h.0 == "pod default/n3" && !h.2.starts_with("answer"));
    let answered = at(&|h| h.0 == "pod default/n1a" && h.2.starts_with("answer"));
    assert!(
        leaves < arrives && arrives < delivered && delivered < answered,
        "{backend}: {hops:#?}"
    );
    // Every node reaches every pod.
    for node in ["node-1", "node-2", "node-3"] {
        for (name, ip) in &ips {
            assert_eq!(
                get_from_node(&c, node, &format!("http://{ip}:8080/hostname")),
                *name,
                "{backend}: {node} → {name}"
            );
        }
    }

    // What the fabric carries between node-1 and node-3.
    let n1a = &ips.iter().find(|(n, _)| n == "n1a").unwrap().1;
    let n3 = &ips.iter().find(|(n, _)| n == "n3").unwrap().1;
    let cross = || {
        dial(&c, n1a, n3, "hostname", "http");
    };
    if backend == "wireguard" {
        // Pod traffic between nodes is WireGuard only: while a request
        // whose URL and answer carry a marker crosses from node-1 to
        // node-3, every IPv4 packet between nodes (the control plane's
        // 192.168.1.2 aside: node runtimes and agents talk to the API over
        // TLS; and the agents' liveness probes of each other's metrics port
        // 9101, bare TCP connects that the LoadBalancer announcement makes
        // node to node, carrying no pod traffic) is UDP 51820 between node
        // IPs, and neither the marker nor a pod address is readable in any
        // of them (-A prints payloads).
        const MARKER: &str = "weft-wireguard-e2e-marker";
        let seen = capture(
            &c,
            "-A ip and not host 192.168.1.2 and not tcp port 9101",
            6,
            10,
            || {
                let v = dial(&c, n1a, n3, &format!("echo?msg={MARKER}"), "http");
                assert_eq!(v["responses"][0], MARKER, "{v}");
                // The same through the Service (DNAT on node-1, then the tunnel).
                let url = format!("http://{n1a}:8080/dial?request=echo?msg={MARKER}&protocol=http&host={vip}&port=80&tries=1");
                let v = get_from_node(&c, "node-1", &url);
                assert!(v.contains(MARKER), "{v}");
            },
        );
        assert!(
            seen.complete,
            "fewer than 6 packets between nodes: {}",
            seen.text
        );
        let headers: Vec<&str> = seen
            .text
            .lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()) && l.contains(" IP "))
            .collect();
        assert!(headers.len() >= 6, "{}", seen.text);
        for h in &headers {
            let wg = h.contains(".51820 > 192.168.1.") && h.contains(": UDP");
            assert!(
                wg && h.contains("IP 192.168.1."),
                "not WireGuard between nodes: {h}"
            );
        }
        assert!(
            !seen.text.contains(MARKER),
            "the marker crossed in the clear: {}",
            seen.text
        );
        assert!(
            !seen.text.contains(n1a.as_str())
                && !seen.text.contains(n3.as_str())
                && !seen.text.contains(vip.as_str()),
            "a pod or Service address crossed in the clear: {}",
            seen.text
        );
        // The agent reports the handshake and the bytes, peer by peer.
        wait_until(
            "node-1's agent to report its handshake with node-3",
            10,
            || {
                let m = get_from_node(&c, "node-1", "http://192.168.1.10:9101/metrics");
                let value = |name: &str| {
                    m.lines()
                        .find(|l| l.starts_with(&format!("{name}{{peer=\"node-3\"}} ")))
                        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                };
                value("weft_agent_wireguard_peer_last_handshake_age_seconds")
                    .is_some_and(|v| v >= 0.0)
                    && value("weft_agent_wireguard_peer_transmit_bytes").is_some_and(|v| v > 0.0)
                    && value("weft_agent_wireguard_peer_receive_bytes").is_some_and(|v| v > 0.0)
            },
        );
    } else if backend == "vxlan" {
        let seen = capture(&c, "udp port 4789", 4, 10, cross);
        assert!(seen.complete, "fewer than 4 VXLAN packets: {}", seen.text);
        assert!(
            seen.text.contains("VXLAN")
                && seen.text.contains(n1a.as_str())
                && seen.text.contains(n3.as_str()),
            "{}",
            seen.text
        );
    } else {
        // The bare pod addresses are on the wire…
        let seen = capture(&c, &format!("host {n3}"), 4, 10, cross);
        assert!(seen.complete, "fewer than 4 packets to {n3}: {}", seen.text);
        assert!(
            seen.text.contains(n1a.as_str()) && seen.text.contains(n3.as_str()),
            "{}",
            seen.text
        );
        // …and, with the same traffic, nothing is encapsulated.
        let encap = capture(&c, "udp port 4789", 1, 5, cross);
        assert_eq!(
            encap.packets, 0,
            "{backend} must not encapsulate: {}",
            encap.text
        );
    }

    // The agent's metrics and readiness.
    let metrics = get_from_node(&c, "node-1", "http://192.168.1.10:9101/metrics");
    assert!(
        metrics.contains("weft_agent_ready 1") && metrics.contains("weft_agent_peers 2"),
        "{metrics}"
    );
    assert_eq!(
        get_from_node(&c, "node-1", "http://192.168.1.10:9101/readyz").trim(),
        "ok"
    );

    // Traffic leaving the cluster is masqueraded to the node's address.
    if backend == "vxlan" || backend == "wireguard" {
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("weft-{}-client", c.name),
                WEFT,
                "netexec",
                "--http-port=8090",
                "--udp-port=-1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the outside server to listen", 20, || {
            let probe = "import urllib.request; urllib.request.urlopen('http://198.51.100.5:8090/hostname', timeout=2)";
            c.weft(&["exec", "--node", "node-1", "--", "python3", "-c", probe])
                .status
                .success()
        });
        let url = format!("http://{n1a}:8080/dial?request=clientip&protocol=http&host=198.51.100.5&port=8090&tries=3");
        let seen = get_from_node(&c, "node-1", &url);
        let _ = server.kill(); // `ip netns exec` execs netexec: this pid is the server
        let _ = server.wait();
        assert!(
            seen.contains("192.168.1.10:"),
            "pod → outside should leave as node-1's address: {seen}"
        );
    }

    // The pod MTU, end to end with DF set: 1450 under vxlan and auto (a packet
    // of 1450 bytes crosses nodes, one of 1451 is refused in the pod),
    // 1500 under host-gw. ICMP payload = packet − 28 bytes of headers.
    let mtu = match backend {
        "host-gw" => 1500,
        "wireguard" => 1420,
        _ => 1450,
    };
    let ping = |size: usize| {
        c.weft(&[
            "exec",
            "n1a",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            "-M",
            "do",
            "-s",
            &(size - 28).to_string(),
            n3,
        ])
    };
    let fits = ping(mtu);
    assert!(
        fits.status.success(),
        "{backend}: a DF packet of {mtu} bytes must cross nodes: {}{}",
        String::from_utf8_lossy(&fits.stdout),
        String::from_utf8_lossy(&fits.stderr)
    );
    let too_big = ping(mtu + 1);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&too_big.stdout),
        String::from_utf8_lossy(&too_big.stderr)
    );
    assert!(
        !too_big.status.success() && said.contains("message too long"),
        "{backend}: a DF packet of {} bytes must be refused: {said}",
        mtu + 1
    );

    // An agent restart keeps a long-lived TCP connection alive.
    let conn = LongLived::open(&c, n3, "restart");
    let wireguard_key = || published_key(&c, "node-1");
    let key_before = wireguard_key();
    assert_eq!(
        key_before.is_some(),
        backend == "wireguard",
        "{key_before:?}"
    );
    let old = agent_pid(&c, "node-1").expect("the agent runs on node-1");
    kill9_group(&old);
    wait_until("a new agent on node-1", 30, || {
        agent_pid(&c, "node-1").is_some_and(|p| p != old)
    });
    // Ready means its first sync is done: the datapath was re-applied.
    wait_until("the new agent's first sync (/readyz)", 20, || {
        let probe = "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://192.168.1.10:9101/readyz', timeout=2).read() != b'ok\\n')";
        c.weft(&["exec", "--node", "node-1", "--", "python3", "-c", probe])
            .status
            .success()
    });
    // A restarted agent keeps its WireGuard key (peers know it by it).
    assert_eq!(wireguard_key(), key_before, "{backend}: the key changed");
    let text = conn.finish();
    assert!(
        text.contains("first n3") && text.contains("second n3"),
        "{backend}: {text}"
    );

    if backend == "wireguard" {
        key_rotation(&c, &ips);
    } else {
        let out = c.weft(&["rotate-key", "node-1"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("not wireguard"),
            "{backend}: rotate-key must refuse a node without WireGuard: {said}"
        );
    }

    // Deleting a node removes its routes on the others. Its runtime is paused
    // meanwhile (it would register the Node again at once); resumed, it
    // registers again and the route comes back.
    let n3_cidr = "10.244.2.0/24";
    assert!(routes_on(&c, "node-1").contains(n3_cidr));
    let runtime = std::fs::read_to_string(c.state.join("pids/node-3")).unwrap();
    let runtime = nix::unistd::Pid::from_raw(runtime.trim().parse().unwrap());
    nix::sys::signal::kill(runtime, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let resume = Resume(runtime);
    c.ok(&["delete", "node", "node-3"]);
    wait_until(
        &format!("{backend}: node-3's route gone from node-1"),
        10,
        || !routes_on(&c, "node-1").contains(n3_cidr),
    );
    // …and, with WireGuard, its peer on every other node's device.
    let wg_peers = |node: &str, ip: &str| {
        get_from_node(&c, node, &format!("http://{ip}:9101/metrics"))
            .lines()
            .filter(|l| l.starts_with("weft_agent_wireguard_peer_last_handshake_age_seconds{"))
            .map(|l| l.split('"').nth(1).unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    if backend == "wireguard" {
        for (node, ip) in [("node-1", "192.168.1.10"), ("node-2", "192.168.1.11")] {
            wait_until(&format!("node-3's peer gone from {node}"), 10, || {
                wg_peers(node, ip).len() == 1
            });
        }
    }
    drop(resume);
    wait_until(
        &format!("{backend}: node-3 registered and routed again"),
        30,
        || {
            let node = c.weft(&["get", "node", "node-3", "-o", "json"]);
            let cidr = serde_json::from_slice::<Value>(&node.stdout)
                .ok()
                .and_then(|n| n.pointer("/spec/podCIDR")?.as_str().map(str::to_string));
            cidr.is_some_and(|cidr| routes_on(&c, "node-1").contains(&cidr))
        },
    );
    if backend == "wireguard" {
        // Back as a peer, and handshaken again without pod traffic: node-1
        // is ready again.
        wait_until("node-3 a peer of node-1 again, node-1 ready", 30, || {
            let probe = "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://192.168.1.10:9101/readyz', timeout=2).read() != b'ok\\n')";
            wg_peers("node-1", "192.168.1.10").len() == 2
                && c.weft(&["exec", "--node", "node-1", "--", "python3", "-c", probe])
                    .status
                    .success()
        });
    }
}

/// Whether pod `from` reaches pod `to` (named `to_name`) over HTTP now; a
/// failure is an answer, not a panic (for polling).
fn dials(c: &Cluster, from: &str, to: &str, to_name: &str) -> bool {
    let url = format!(
        "http://{from}:8080/dial?request=hostname&protocol=http&host={to}&port=8080&tries=1"
    );
    let script = format!("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=10).read().decode())");
    let out = c.weft(&["exec", "--node", "node-1", "--", "python3", "-c", &script]);
    serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["responses"][0] == to_name)
}

/// The Node's published WireGuard public key.
fn published_key(c: &Cluster, node: &str) -> Option<String> {
    c.ok(&["get", "node", node, "-o", "json"])
        .parse::<Value>()
        .ok()
        .and_then(|n| {
            let k = n.pointer("/metadata/annotations/weft.dev~1wireguard-public-key")?;
            k.as_str().map(str::to_string)
        })
}

/// One sample of an agent's metrics, `name{labels} value` or `name value`.
fn metric(c: &Cluster, node: &str, ip: &str, series: &str) -> Option<f64> {
    let m = get_from_node(c, node, &format!("http://{ip}:9101/metrics"));
    m.lines()
        .find(|l| l.starts_with(&format!("{series} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// `weft rotate-key node-1`: node-1 gets a new key (stored, published),
/// the other nodes shake hands with it anew, pods on node-1 reach the
/// others and back, and a connection open across the rotation goes on.
fn key_rotation(c: &Cluster, ips: &[(String, String)]) {
    let key_file = c
        .state
        .join("nodes/node-1/host/var/lib/weft/wireguard/private.key");
    let stored_before = std::fs::read(&key_file).expect("node-1's key file");
    let before = published_key(c, "node-1").expect("node-1 publishes a key");
    let n3 = &ips.iter().find(|(n, _)| n == "n3").unwrap().1;
    let conn = LongLived::open(c, n3, "rotate");
    let started = std::time::Instant::now();
    let printed = c.ok(&["rotate-key", "node-1"]);
    let after = published_key(c, "node-1").expect("node-1 still publishes a key");
    assert_ne!(after, before, "the published key did not change");
    assert!(
        printed.contains("node-1") && printed.contains(&before) && printed.contains(&after),
        "rotate-key prints the old and the new key: {printed}"
    );
    let stored_after = std::fs::read(&key_file).unwrap();
    assert_ne!(
        stored_after, stored_before,
        "the key file was not rewritten"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file's mode");
    assert_eq!(
        metric(
            c,
            "node-1",
            "192.168.1.10",
            "weft_agent_wireguard_key_rotations_total"
        ),
        Some(1.0),
        "node-1's agent counts the rotation"
    );
    // Pods on node-1 reach pods on the other nodes and back.
    let node_of = |name: &str| PODS.iter().find(|(p, _)| *p == name).unwrap().1;
    for (from_name, from) in ips {
        for (to_name, to) in ips {
            let (a, b) = (node_of(from_name), node_of(to_name));
            if a == b || (a != "node-1" && b != "node-1") {
                continue;
            }
            wait_until(
                &format!("{from_name} → {to_name} after node-1's key rotation"),
                20,
                || dials(c, from, to, to_name),
            );
        }
    }
    // Their handshakes with node-1 are new: made with its new key.
    for (node, ip) in [("node-2", "192.168.1.11"), ("node-3", "192.168.1.12")] {
        wait_until(&format!("{node}'s new handshake with node-1"), 10, || {
            let age = metric(
                c,
                node,
                ip,
                "weft_agent_wireguard_peer_last_handshake_age_seconds{peer=\"node-1\"}",
            );
            age.is_some_and(|a| a >= 0.0 && a <= started.elapsed().as_secs_f64())
        });
    }
    let text = conn.finish();
    assert!(
        text.contains("first n3") && text.contains("second n3"),
        "a connection open across the rotation goes on: {text}"
    );
    // The annotation alone (what `weft rotate-key` sets) asks the same.
    let n3_before = published_key(c, "node-3").expect("node-3 publishes a key");
    let out = c.kubectl(&[
        "annotate",
        "node",
        "node-3",
        "weft.dev/wireguard-rotate-key=by-kubectl",
        "--overwrite",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("node-3's agent to answer kubectl's request", 20, || {
        let node: Value = c
            .ok(&["get", "node", "node-3", "-o", "json"])
            .parse()
            .unwrap();
        node.pointer("/metadata/annotations/weft.dev~1wireguard-key-rotated")
            == Some(&Value::from("by-kubectl"))
    });
    assert_ne!(published_key(c, "node-3").as_ref(), Some(&n3_before));
    let n1a = &ips.iter().find(|(n, _)| n == "n1a").unwrap().1;
    wait_until("n1a → n3 after node-3's key rotation", 20, || {
        dials(c, n1a, n3, "n3")
    });
}

/// A TCP connection from pod n1a to `to`:8080 that sends one request, waits
/// for [`LongLived::finish`], then sends a second one on the same socket.
struct LongLived {
    child: std::process::Child,
    first: std::path::PathBuf,
    flag: std::path::PathBuf,
}

impl LongLived {
    fn open(c: &Cluster, to: &str, tag: &str) -> LongLived {
        let flag = std::env::temp_dir().join(format!("{}-{tag}-go", c.name));
        let first = std::env::temp_dir().join(format!("{}-{tag}-first", c.name));
        let _ = std::fs::remove_file(&flag);
        let _ = std::fs::remove_file(&first);
        let script = format!(
            "import socket,os,time,sys\n\
             s=socket.create_connection(('{to}',8080),timeout=10)\n\
             req=b'GET /hostname HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'\n\
             s.sendall(req); print('first', s.recv(4096).split(b'\\r\\n\\r\\n')[-1].decode(), flush=True)\n\
             open('{}','w').close()\n\
             t=time.time()\n\
             while not os.path.exists('{}') and time.time()-t<60: time.sleep(0.1)\n\
             s.sendall(req); print('second', s.recv(4096).split(b'\\r\\n\\r\\n')[-1].decode(), flush=True)\n",
            first.display(),
            flag.display()
        );
        let child = Command::new(WEFT)
            .args([
                "--name", &c.name, "exec", "n1a", "--", "python3", "-c", &script,
            ])
            .env("WEFT_STATE_DIR", &c.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first_seen = first.clone();
        let open = LongLived { child, first, flag };
        wait_until("the long-lived connection's first answer", 20, || {
            first_seen.exists()
        });
        open
    }

    /// Sends the second request; returns what the client printed.
    fn finish(self) -> String {
        std::fs::write(&self.flag, "go").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&self.first);
        let _ = std::fs::remove_file(&self.flag);
        format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Resumes a paused process when dropped (also when the test fails).
struct Resume(nix::unistd::Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn cross_node_vxlan() {
    if root_or_skip("cross_node_vxlan") {
        cross_node("vxlan");
    }
}

#[test]
fn cross_node_host_gw() {
    if root_or_skip("cross_node_host_gw") {
        cross_node("host-gw");
    }
}

#[test]
fn cross_node_auto() {
    if root_or_skip("cross_node_auto") {
        cross_node("auto");
    }
}

#[test]
fn cross_node_wireguard() {
    if root_or_skip("cross_node_wireguard") {
        cross_node("wireguard");
    }
}
