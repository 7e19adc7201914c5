//! End to end on a 2-node embedded cluster: `weft up` with the demo
//! manifest, then what a user and kubectl see, then `weft down` leaving
//! nothing behind. One cluster for all checks (it takes seconds to build),
//! removed by a guard even when a check fails.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::Value;

#[test]
fn embedded_cluster_end_to_end() {
    if !root_or_skip("embedded_cluster_end_to_end") {
        return;
    }
    let cni = Path::new(WEFT).with_file_name("weft-cni");
    assert!(
        cni.exists(),
        "{} missing: build the workspace's binaries first (cargo build --workspace --bins)",
        cni.display()
    );
    let name = format!("e2e{}", std::process::id() % 100_000);
    let cluster = Cluster {
        state: std::env::temp_dir().join(format!("weft-{name}")),
        name,
    };
    let c = &cluster;

    // --- up: nodes Ready, demo pods Ready ------------------------------------------------
    let demo = repo_root().join("examples/demo.yaml");
    let started = Instant::now();
    let out = c.ok(&[
        "up",
        "-f",
        demo.to_str().unwrap(),
        "--nodes",
        "2",
        "--timeout",
        "120",
    ]);
    eprintln!(
        "weft up took {:.1}s:\n{out}",
        started.elapsed().as_secs_f64()
    );
    assert!(out.contains("nodes Ready"), "{out}");

    // The daemons ignore SIGPIPE (a peer closing a pipe or socket mid-write
    // is an error for them to handle, not their end); a command printing
    // into a closed pipe (`weft get | head`) ends quietly with 141, as a
    // shell reports a process ended by SIGPIPE.
    let daemons = [
        (
            "control plane",
            std::fs::read_to_string(c.state.join("pids/control-plane")).ok(),
        ),
        (
            "node-1 runtime",
            std::fs::read_to_string(c.state.join("pids/node-1")).ok(),
        ),
        (
            "node-1 agent",
            process_with(&["agent", "--node=node-1"], &c.state),
        ),
    ];
    for (what, pid) in daemons {
        let pid = pid.unwrap_or_else(|| panic!("no pid for the {what}"));
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no SigIgn in /proc/{pid}/status"));
        assert_ne!(
            ignored & (1 << (13 - 1)),
            0,
            "the {what} does not ignore SIGPIPE: {status}"
        );
    }
    let mut get = Command::new(WEFT)
        .args(["--name", &c.name, "get", "pods", "-A"])
        .env("WEFT_STATE_DIR", &c.state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(get.stdout.take()); // the reader is gone before the first line
    let got = get.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        got.status.code(),
        Some(141),
        "weft get into a closed pipe: {:?} {stderr}",
        got.status
    );

    // Pods get IPs from their node's pod CIDR, on both nodes.
    let all = pods(c);
    let demo_pods: Vec<&Value> = all
        .iter()
        .filter(|p| field(p, "/metadata/namespace") == "default")
        .collect();
    assert_eq!(
        demo_pods.len(),
        6,
        "frontend 2 + backend 3 + database 1: {all:#?}"
    );
    let mut nodes_used = std::collections::BTreeSet::new();
    for p in &demo_pods {
        let node = field(p, "/spec/nodeName");
        let ip = field(p, "/status/podIP");
        let want = match node {
            "node-1" => "10.244.0.",
            "node-2" => "10.244.1.",
            other => panic!("pod on unexpected node {other:?}"),
        };
        assert!(
            ip.starts_with(want),
            "{} on {node} has IP {ip}",
            field(p, "/metadata/name")
        );
        nodes_used.insert(node.to_string());
    }
    assert_eq!(nodes_used.len(), 2, "pods should spread over both nodes");
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("IP") && wide.contains("node-2"),
        "{wide}"
    );
    // `weft get` prints the server's Tables: any served kind, by any of its
    // names, with the columns kubectl shows; an unknown type is named.
    let sa = c.ok(&["get", "sa", "-A"]);
    assert!(
        sa.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["NAMESPACE", "NAME", "SECRETS", "AGE"]
            && sa.contains("kube-system"),
        "{sa}"
    );
    let roles = c.ok(&["get", "clusterroles.rbac.authorization.k8s.io"]);
    assert!(roles.contains("cluster-admin"), "{roles}");
    let unknown = c.weft(&["get", "widgets"]);
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && err.contains("\"widgets\"") && err.contains("pods"),
        "{err}"
    );

    // --- same-node traffic through netexec /dial, TCP and UDP --------------------------------
    let on_node1: Vec<&&Value> = demo_pods
        .iter()
        .filter(|p| {
            field(p, "/spec/nodeName") == "node-1" && field(p, "/metadata/labels/app") != "database"
        })
        .collect();
    assert!(on_node1.len() >= 2, "need two netexec pods on node-1");
    let (a, b) = (on_node1[0], on_node1[1]);
    let (a_ip, b_ip) = (field(a, "/status/podIP"), field(b, "/status/podIP"));
    let b_host = field(b, "/metadata/name");
    for protocol in ["http", "udp"] {
        let port = if protocol == "http" { 8080 } else { 8081 };
        let answer = dial(c, a_ip, b_ip, port, protocol);
        assert_eq!(
            answer["responses"][0], b_host,
            "{protocol} dial {a_ip} → {b_ip}: {answer}"
        );
    }
    // The receiver sees the sender's pod IP (no NAT on the node).
    let clientip = c.ok(&[
        "exec", "--node", "node-1", "--", "python3", "-c",
        &format!("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://{a_ip}:8080/dial?request=clientip&protocol=http&host={b_ip}&port=8080&tries=1', timeout=10).read().decode())"),
    ]);
    assert!(clientip.contains(&format!("{a_ip}:")), "{clientip}");

    // --- resolv.conf and hostname inside a pod ----------------------------------------------
    let pod_a = field(a, "/metadata/name");
    let resolv = c.ok(&["exec", pod_a, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    assert_eq!(c.ok(&["exec", pod_a, "--", "hostname"]).trim(), pod_a);
    let db = c.ok(&["exec", "database-0", "--", "hostname"]);
    assert_eq!(db.trim(), "database-0");
    // Exit status passes through.
    assert_eq!(
        c.weft(&["exec", pod_a, "--", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );

    // --- Services got addresses; EndpointSlices list the ready backends -------------------
    let svc = c.json(&["get", "svc", "backend", "-o", "json"]);
    assert!(
        field(&svc, "/spec/clusterIP").starts_with("10.96."),
        "{svc}"
    );
    let kubernetes = c.json(&["get", "svc", "kubernetes", "-o", "json"]);
    assert_eq!(field(&kubernetes, "/spec/clusterIP"), "10.96.0.1");
    let slices = c.json(&["get", "endpointslices", "-o", "json"]);
    let backend_eps: usize = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| field(s, "/metadata/labels/kubernetes.io~1service-name") == "backend")
        .map(|s| s["endpoints"].as_array().map(Vec::len).unwrap_or(0))
        .sum();
    assert_eq!(backend_eps, 3, "{slices:#}");

    // --- the README's Services walk-through holds on the demo cluster -------------------------
    readme_services_walk_through(c, &demo_pods, field(&svc, "/spec/clusterIP"));
    readme_loadbalancer_walk_through(c, &demo_pods);
    readme_trace_walk_through(c, &demo_pods);
    readme_trace_walks(c, &demo_pods);

    // --- kubectl works unchanged ---------------------------------------------------------------
    if weft_linux::testns::tool_or_skip("embedded_cluster_end_to_end (kubectl checks)", "kubectl") {
        let out = c.kubectl(&["get", "pods", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 6);
        let manifest = std::env::temp_dir().join(format!("{}-pod.yaml", c.name));
        std::fs::write(
            &manifest,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: by-kubectl\nspec:\n  containers:\n  - name: c\n    \
             image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [\"serve-hostname\"]\n",
        )
        .unwrap();
        let out = c.kubectl(&["create", "-f", manifest.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kubectl create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = c.kubectl(&["delete", "pod", "by-kubectl", "--wait=false"]);
        assert!(
            out.status.success(),
            "kubectl delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(manifest);
    }

    // --- an invalid Service is refused, naming the field ---------------------------------------
    let bad = std::env::temp_dir().join(format!("{}-bad.yaml", c.name));
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 70000\n",
    )
    .unwrap();
    let out = c.weft(&["apply", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Service/bad") && err.contains("spec.ports[0].port"),
        "{err}"
    );
    let _ = std::fs::remove_file(bad);

    // --- down leaves nothing ---------------------------------------------------------------
    let out = c.ok(&["down"]);
    assert!(out.contains("removed cluster"), "{out}");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!("weft-{}-", c.name);
    assert!(
        !left.iter().any(|n| n.starts_with(&prefix)),
        "namespaces left: {left:?}"
    );
    assert!(!c.state.exists(), "state dir left");
    let ps = Command::new("pgrep")
        .args(["-f", "--", &format!("--name {} ", c.name)])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    let out = c.ok(&["down"]);
    assert!(out.contains("nothing to do"), "{out}");
}

/// The pid of a weft process whose arguments after the binary start with
/// `args` and name this cluster's state dir (a container's main process,
/// not the pod-init that runs it).
fn process_with(args: &[&str], state: &Path) -> Option<String> {
    let ours = std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let of_cluster = argv.iter().any(|a| a.contains(&*state.to_string_lossy()));
        (argv.len() > args.len()
            && argv[0] == WEFT
            && argv[1..=args.len()].iter().zip(args).all(|(a, b)| a == b)
            && of_cluster)
            .then(|| pid.to_string())
    });
    ours
}

#[test]
fn a_control_plane_killed_while_weft_up_waits_is_named_and_started_again() {
    if !root_or_skip("a_control_plane_killed_while_weft_up_waits_is_named_and_started_again") {
        return;
    }
    use std::io::BufRead;
    let name = format!("ck{}", std::process::id() % 100_000);
    // Under the default state root (/var/lib/weft/<cluster>), as the README's
    // `weft up` runs: the agent DaemonSet's hostPath mounts must not hide
    // the state dir from the pods (a mount of all of /var/lib/weft did).
    let cluster = Cluster {
        state: Path::new("/var/lib/weft").join(&name),
        name,
    };
    let c = &cluster;
    let mut up = Command::new(WEFT)
        .args(["--name", &c.name, "up", "--nodes", "1", "--timeout", "120"])
        .env("WEFT_STATE_DIR", &c.state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run weft up");
    // Once the API line is out, weft up is waiting for the node.
    let mut stdout = std::io::BufReader::new(up.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "weft up ended before its control plane was up: {seen}"
        );
        seen.push_str(&line);
        if line.contains("control plane: API at") {
            break;
        }
    }
    let first = std::fs::read_to_string(c.state.join("pids/control-plane")).unwrap();
    kill9(&first);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = up.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weft up failed ({:?}): {seen}{rest}\n{stderr}\n{}",
        out.status,
        c.log_tails()
    );
    assert!(
        stderr.contains("the control plane was killed by SIGKILL (not by weft up); starting it again, state kept"),
        "{stderr}"
    );
    assert!(rest.contains("control plane (again): API at"), "{rest}");
    // The cluster weft up reported Ready is served by a new control plane.
    let second = std::fs::read_to_string(c.state.join("pids/control-plane")).unwrap();
    assert_ne!(first.trim(), second.trim());
    assert_eq!(
        field(
            &c.json(&["get", "nodes", "-o", "json"])["items"][0],
            "/metadata/name"
        ),
        "node-1"
    );
}

#[test]
fn crashes_are_recovered_and_down_cleans_after_kill_9() {
    if !root_or_skip("crashes_are_recovered_and_down_cleans_after_kill_9") {
        return;
    }
    let name = format!("cr{}", std::process::id() % 100_000);
    let cluster = Cluster {
        state: std::env::temp_dir().join(format!("weft-{name}")),
        name,
    };
    let c = &cluster;
    let manifest = std::env::temp_dir().join(format!("{}-echo.yaml", c.name));
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo\nspec:\n  replicas: 2\n  selector:\n    \
         matchLabels: {app: echo}\n  template:\n    metadata:\n      labels: {app: echo}\n    spec:\n      containers:\n      \
         - name: netexec\n        image: registry.k8s.io/e2e-test-images/agnhost:2.53\n        args: [netexec]\n",
    )
    .unwrap();
    c.ok(&["up", "-f", manifest.to_str().unwrap(), "--nodes", "2"]);
    let before = ready_pod_uids(c);
    assert_eq!(
        before.len(),
        7,
        "2 echo pods, 2 node agents, 2 cluster DNS pods and the gateway: {before:?}"
    );
    // A sandbox each for the echo, DNS and gateway pods (the agents use the
    // node's network).
    let pod_prefix = format!("weft-{}-p-", c.name);
    assert_eq!(netns_with_prefix(&pod_prefix).len(), 5);

    // A node runtime killed with -9 is restarted by the supervisor; its pods keep running.
    let on_node_1 = pods(c)
        .iter()
        .filter(|p| field(p, "/spec/nodeName") == "node-1")
        .count();
    let log = c.state.join("logs/node-1.log");
    let adopted = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("adopted a running container")
            .count()
    };
    let adopted_before = adopted();
    let pid_file = c.state.join("pids/node-1");
    let old = std::fs::read_to_string(&pid_file).unwrap();
    kill9(&old);
    wait_until("a new node-1 runtime", 20, || {
        std::fs::read_to_string(&pid_file)
            .is_ok_and(|p| p != old && Path::new(&format!("/proc/{}", p.trim())).exists())
    });
    // The new runtime has taken over every container of node-1's pods.
    wait_until("the new runtime to adopt node-1's containers", 20, || {
        adopted() >= adopted_before + on_node_1
    });
    assert_eq!(
        ready_pod_uids(c),
        before,
        "pods changed after the node runtime restarted"
    );
    assert_eq!(
        netns_with_prefix(&pod_prefix).len(),
        5,
        "a sandbox leaked or vanished"
    );

    // The control plane killed with -9: `weft up` restarts it with its state.
    let cp = std::fs::read_to_string(c.state.join("pids/control-plane")).unwrap();
    kill9(&cp);
    wait_until("the control plane to die", 10, || {
        !Path::new(&format!("/proc/{}", cp.trim())).exists() || {
            std::fs::read_to_string(format!("/proc/{}/stat", cp.trim()))
                .is_ok_and(|s| s.contains(") Z"))
        }
    });
    let out = c.ok(&["up", "--nodes", "2"]);
    assert!(out.contains("state kept"), "{out}");
    // The same pods (UIDs, IPs) Ready again: kept, not replaced. The new node
    // runtimes re-check their adopted containers, so readiness may blink first.
    wait_until("the same pods Ready again", 30, || {
        ready_pod_uids(c) == before
    });
    assert_eq!(netns_with_prefix(&pod_prefix).len(), 5);

    // Everything killed with -9 (control plane, node runtimes, containers): down still cleans all.
    let all: Vec<String> = netns_with_prefix(&format!("weft-{}-", c.name));
    let cp = std::fs::read_to_string(c.state.join("pids/control-plane")).unwrap();
    kill9(&cp);
    for ns in &all {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&out.stdout).lines() {
            kill9(pid);
        }
    }
    let out = c.ok(&["down"]);
    assert!(out.contains("removed cluster"), "{out}");
    assert!(netns_with_prefix(&format!("weft-{}-", c.name)).is_empty());
    assert!(!c.state.exists());
    let _ = std::fs::remove_file(manifest);
}

/// The README's `weft trace` of the Services walk-through: a frontend pod
/// to Service backend is DELIVERED, with the Service matched, an endpoint
/// chosen and the DNAT to it named on the frontend's node, then the
/// backend pod reached and the answer back at the frontend; the table
/// output has the README's columns.
fn readme_trace_walk_through(c: &Cluster, demo_pods: &[&Value]) {
    let (frontend, node) = demo_pods
        .iter()
        .find(|p| field(p, "/metadata/labels/app") == "frontend")
        .map(|p| {
            (
                field(p, "/metadata/name").to_string(),
                field(p, "/spec/nodeName").to_string(),
            )
        })
        .unwrap();
    let out = c.weft(&[
        "trace",
        &format!("pod/{frontend}"),
        "svc/backend",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("weft trace: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(field(&v, "/verdict"), "DELIVERED", "{v:#}");
    let hops = trace_hops(&v);
    let at = |f: &dyn Fn(&(String, String, String)) -> bool| {
        hops.iter()
            .position(f)
            .unwrap_or_else(|| panic!("{hops:#?}"))
    };
    let start =
        at(&|h| h.0 == format!("pod default/{frontend}") && h.2.contains(":80 (out via eth0)"));
    let matched =
        at(&|h| h.0 == node && h.2 == "Service default/backend http/tcp matched (chain services)");
    let dnat = at(&|h| {
        h.0 == node
            && h.2.starts_with("DNAT to ")
            && h.2.ends_with("for Service default/backend http/tcp")
    });
    let backend = at(&|h| h.0.starts_with("pod default/backend-") && !h.2.starts_with("answer"));
    let back = at(&|h| h.0 == format!("pod default/{frontend}") && h.2.starts_with("answer "));
    assert!(
        start < matched && matched < dnat && dnat < backend && backend < back,
        "{hops:#?}"
    );
    let table = c.ok(&["trace", &format!("pod/{frontend}"), "svc/backend"]);
    assert!(table.starts_with("DELIVERED   (pod/"), "{table}");
    assert!(table.contains("HOP   WHERE"), "{table}");
}

/// A trace's table with what varies between runs masked: digits (addresses,
/// ports, node numbers, hop numbers, milliseconds) and the generated parts
/// of pod names; columns re-spaced. The headline keeps its verdict only.
fn trace_shape(table: &str) -> Vec<String> {
    let mut lines = table.lines();
    let verdict = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let mut out = vec![verdict];
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let words: Vec<String> = l
            .split_whitespace()
            .map(|w| {
                let w = ["frontend-", "backend-", "database-"]
                    .iter()
                    .find_map(|app| w.find(app).map(|at| format!("{}{app}*", &w[..at])))
                    .unwrap_or_else(|| w.to_string());
                let mut masked = String::new();
                for c in w.chars() {
                    if c.is_ascii_digit() {
                        if !masked.ends_with('#') {
                            masked.push('#');
                        }
                    } else {
                        masked.push(c);
                    }
                }
                masked
            })
            .collect();
        out.push(words.join(" "));
    }
    out
}

/// The README block of `$ command` (up to the fence).
fn readme_block(command: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("README shows no `$ {command}`"));
    let rest = &readme[start + command.len() + 3..];
    rest[..rest.find("```").unwrap()].to_string()
}

/// The seeds' walks the README replays with `weft trace` (part 1: pod to
/// pod on one node; part 2: across nodes over VXLAN; part 3: the client to
/// my-app's load-balancer address): run on the demo cluster, each prints
/// the hops the README shows, hop for hop, addresses, ports, pod names and
/// node numbers aside.
fn readme_trace_walks(c: &Cluster, demo_pods: &[&Value]) {
    let of = |app: &str| -> Vec<(String, String)> {
        demo_pods
            .iter()
            .filter(|p| field(p, "/metadata/labels/app") == app)
            .map(|p| {
                (
                    field(p, "/metadata/name").to_string(),
                    field(p, "/spec/nodeName").to_string(),
                )
            })
            .collect()
    };
    let (frontend, node) = of("frontend").remove(0);
    let backends = of("backend");
    let same = backends.iter().find(|b| b.1 == node).unwrap_or_else(|| {
        panic!("no backend on {node} (the scheduler spreads 3 over 2 nodes): {backends:?}")
    });
    let other = backends
        .iter()
        .find(|b| b.1 != node)
        .unwrap_or_else(|| panic!("no backend off {node}: {backends:?}"));
    let readme = |needle: &str| -> String {
        let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
        let line = readme
            .lines()
            .find(|l| l.starts_with("$ weft trace") && l.contains(needle))
            .unwrap_or_else(|| panic!("README shows no `$ weft trace …{needle}…`"))
            .to_string();
        readme_block(line.trim_start_matches("$ "))
    };
    for (args, want) in [
        (
            vec![
                format!("pod/{frontend}"),
                format!("pod/{}", same.0),
                "--port".into(),
                "8080".into(),
            ],
            readme("-j5jj9 --port 8080"),
        ),
        (
            vec![
                format!("pod/{frontend}"),
                format!("pod/{}", other.0),
                "--port".into(),
                "8080".into(),
            ],
            readme("-7zk6c --port 8080"),
        ),
        (
            vec!["external".into(), "203.0.113.50:80".into()],
            readme("external 203.0.113.50:80"),
        ),
    ] {
        let args: Vec<&str> = std::iter::once("trace")
            .chain(args.iter().map(String::as_str))
            .collect();
        let got = c.ok(&args);
        assert_eq!(
            trace_shape(&got),
            trace_shape(&want),
            "`weft {}` prints what the README shows:\n{got}",
            args.join(" ")
        );
    }
}

/// The README's LoadBalancer walk-through on the demo cluster: Service
/// my-app gets the 203.0.113.50 it asks for, `weft get svc` shows it; with
/// the fabric's entry flushed, the client's request makes the fabric ask
/// who has it and exactly one node, one holding a backend pod, answer with
/// its eth0's MAC; the backend sees the client's own address (Local); the
/// answering node's `@service-ips` holds the address.
fn readme_loadbalancer_walk_through(c: &Cluster, demo_pods: &[&Value]) {
    let mut table = String::new();
    wait_until("my-app shows 203.0.113.50", 30, || {
        table = c.ok(&["get", "svc", "my-app"]);
        table.contains("203.0.113.50")
    });
    let row = table.lines().find(|l| l.starts_with("my-app ")).unwrap();
    assert!(
        row.contains("LoadBalancer") && row.contains("80:30081/TCP"),
        "{table}"
    );
    let curl = || {
        c.weft(&[
            "exec",
            "--external",
            "--",
            "curl",
            "-s",
            "-m",
            "2",
            "http://203.0.113.50/clientip",
        ])
    };
    wait_until("the client reaches 203.0.113.50", 20, || {
        curl().status.success()
    });
    let fabric = format!("weft-{}-fabric", c.name);
    let flush = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fabric,
            "ip",
            "neigh",
            "flush",
            "to",
            "203.0.113.50",
            "dev",
            "fabric0",
        ])
        .status()
        .unwrap();
    assert!(flush.success());
    let mut answer = String::new();
    let captured = capture(c, "arp and host 203.0.113.50", 2, 15, || {
        answer = String::from_utf8_lossy(&curl().stdout).into_owned();
    });
    assert!(
        answer.starts_with("198.51.100.5:"),
        "the backend saw {answer:?}"
    );
    assert!(
        captured
            .text
            .contains("Request who-has 203.0.113.50 tell 203.0.113.1"),
        "{}",
        captured.text
    );
    let replies: Vec<&str> = captured
        .text
        .lines()
        .filter(|l| l.contains("Reply 203.0.113.50 is-at"))
        .collect();
    assert_eq!(replies.len(), 1, "{}", captured.text);
    let answering = demo_pods
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == "backend")
        .map(|p| field(p, "/spec/nodeName").to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .find(|node| {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("weft-{}-{node}", c.name),
                    "cat",
                    "/sys/class/net/eth0/address",
                ])
                .output()
                .unwrap();
            replies[0].contains(String::from_utf8_lossy(&o.stdout).trim())
        })
        .unwrap_or_else(|| panic!("no node with a backend pod answered: {}", replies[0]));
    let map = c.ok(&[
        "exec",
        "--node",
        &answering,
        "--",
        "nft",
        "list",
        "map",
        "inet",
        "weft-proxy",
        "service-ips",
    ]);
    assert!(
        map.contains("203.0.113.50 . tcp . 80 comment \"default/my-app:http\" : goto external-"),
        "{map}"
    );
}

/// The commands of the README's "A packet to a Service" section, on the demo
/// cluster: a frontend pod reaches Service backend's ClusterIP; the external
/// client reaches NodePort 30080 on every node; the listed chains, map and
/// conntrack entry have the shape the README shows.
fn readme_services_walk_through(c: &Cluster, demo_pods: &[&Value], backend_ip: &str) {
    // The README's pod is on node-1; here whichever node a frontend pod
    // landed on (the scheduler places them, the cluster's own pods count).
    let (frontend, node) = demo_pods
        .iter()
        .find(|p| field(p, "/metadata/labels/app") == "frontend")
        .map(|p| {
            (
                field(p, "/metadata/name").to_string(),
                field(p, "/spec/nodeName").to_string(),
            )
        })
        .expect("a frontend pod");
    let node = node.as_str();
    let backends: Vec<(String, String)> = demo_pods
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == "backend")
        .map(|p| {
            (
                field(p, "/metadata/name").to_string(),
                field(p, "/status/podIP").to_string(),
            )
        })
        .collect();
    let nft = |args: &[&str]| -> String {
        let mut all = vec!["exec", "--node", node, "--", "nft", "list"];
        all.extend_from_slice(args);
        c.ok(&all)
    };
    // The proxy has programmed all three backends on that node.
    wait_until(
        "the node to program Service backend's endpoints",
        60,
        || {
            let t = c.weft(&[
                "exec",
                "--node",
                node,
                "--",
                "nft",
                "list",
                "table",
                "inet",
                "weft-proxy",
            ]);
            let t = String::from_utf8_lossy(&t.stdout);
            backends
                .iter()
                .all(|(_, ip)| t.contains(&format!("dnat ip to {ip}:8080")))
        },
    );
    let answer = c.ok(&[
        "exec",
        &frontend,
        "--",
        "python3",
        "-c",
        &format!("import urllib.request; print(urllib.request.urlopen('http://{backend_ip}/hostname', timeout=5).read().decode())"),
    ]);
    assert!(
        backends.iter().any(|(name, _)| answer.trim() == name),
        "ClusterIP {backend_ip} answered {answer:?}"
    );
    for node_ip in ["192.168.1.10", "192.168.1.11"] {
        let out = c.ok(&[
            "exec",
            "--external",
            "--",
            "python3",
            "-c",
            &format!("import urllib.request; print(urllib.request.urlopen('http://{node_ip}:30080/hostname', timeout=5).read().decode())"),
        ]);
        assert!(
            out.trim().starts_with("frontend-"),
            "NodePort 30080 on {node_ip}: {out:?}"
        );
    }
    let services = nft(&["chain", "inet", "weft-proxy", "services"]);
    assert!(
        services.contains("ip daddr . meta l4proto . th dport vmap @service-ips"),
        "{services}"
    );
    let map = nft(&["map", "inet", "weft-proxy", "service-ips"]);
    let key = format!("{backend_ip} . tcp . 80 comment \"default/backend:http\" : goto service-");
    assert!(map.contains(&key), "{map}");
    let chain_name = map
        .split(&key)
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '\n']).next())
        .map(|suffix| format!("service-{suffix}"))
        .expect("the backend's service chain");
    let chain = nft(&["chain", "inet", "weft-proxy", &chain_name]);
    // The cascade: 1/3, then 1/2, then the rest.
    assert!(
        chain.contains("numgen random mod 3 0 goto endpoint-"),
        "{chain}"
    );
    assert!(
        chain.contains("numgen random mod 2 0 goto endpoint-"),
        "{chain}"
    );
    assert_eq!(chain.matches("goto endpoint-").count(), 3, "{chain}");
    assert!(chain.contains("jump mark-for-masquerade"), "{chain}");
    let table = nft(&["table", "inet", "weft-proxy"]);
    for (_, ip) in &backends {
        assert!(
            table.contains(&format!(
                "ip saddr {ip} jump mark-for-masquerade comment \"hairpin"
            )),
            "{table}"
        );
    }
    if weft_linux::testns::tool_or_skip("embedded_cluster_end_to_end (conntrack -L)", "conntrack") {
        let ct = c.ok(&[
            "exec",
            "--node",
            node,
            "--",
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-dst",
            backend_ip,
        ]);
        assert!(
            ct.lines().any(|l| l.contains(&format!("dst={backend_ip}"))
                && backends
                    .iter()
                    .any(|(_, ip)| l.contains(&format!("src={ip} ")) && l.contains("sport=8080"))),
            "no conntrack entry from a frontend to {backend_ip} reversed from a backend: {ct}"
        );
    }
}
