//! Services end to end on a 3-node embedded cluster: every agent runs the
//! nftables Service proxy (the default), backends are netexec pods, and each
//! test checks one behaviour a cluster relies on, the way upstream's
//! `test/e2e/network/service.go` checks it (the behaviours, not its code):
//! spread over endpoints, NodePort from outside on every node, the two
//! externalTrafficPolicy values (client IP, drop, health check node port),
//! ClientIP affinity, rejection without endpoints, endpoint removal for TCP
//! and UDP, hairpin, the API server's ClusterIP, publishNotReadyAddresses, an
//! agent restart.
//!
//! Each test owns its cluster (torn down on drop, also on failure); a lock
//! runs them one at a time so that three-node clusters do not compete for
//! two cores.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Skips `test` without root; otherwise waits for the other tests of this
/// file to finish and holds them off while the guard lives.
fn one_at_a_time(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !root_or_skip(test) {
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner()))
}

const NETEXEC: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// A Deployment of netexec pods (HTTP 8080, UDP 8081) labelled `app: NAME`.
fn deployment(name: &str, replicas: u32, readiness: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: {NETEXEC}\n        \
         args: [netexec, --http-port=8080, --udp-port=8081]\n        ports:\n        \
         - {{name: http, containerPort: 8080}}\n        - {{name: udp, containerPort: 8081, protocol: UDP}}\n        \
         readinessProbe:\n          {readiness}\n          periodSeconds: 1\n---\n"
    )
}

const READY_ON_HTTP: &str = "httpGet: {path: /healthz, port: http}";
/// Nothing listens on 9999: the pod never becomes ready.
const NEVER_READY: &str = "tcpSocket: {port: 9999}";

fn service(name: &str, app: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {app}}}\n{spec}---\n"
    )
}

const HTTP_PORT: &str = "  ports:\n  - {name: http, port: 80, targetPort: http}\n";

/// Starts a 3-node cluster with `manifest` and waits for its pods.
fn cluster(prefix: &str, manifest: &str) -> Cluster {
    let c = Cluster::new(prefix);
    let path = std::env::temp_dir().join(format!("{}-services.yaml", c.name));
    std::fs::write(&path, manifest).unwrap();
    let out = c.ok(&[
        "up",
        "-f",
        path.to_str().unwrap(),
        "--nodes",
        "3",
        "--timeout",
        "180",
    ]);
    let _ = std::fs::remove_file(path);
    assert!(out.contains("nodes Ready"), "{out}");
    c
}

/// Runs Python in a pod and returns its stdout (panics on failure).
fn py(c: &Cluster, pod: &str, code: &str) -> String {
    c.ok(&["exec", pod, "--", "python3", "-c", code])
}

/// Runs Python on the external client (198.51.100.5).
fn py_external(c: &Cluster, code: &str) -> String {
    c.ok(&["exec", "--external", "--", "python3", "-c", code])
}

/// An HTTP GET in Python, printing the body; an HTTP error prints `ERR
/// HTTPError <code> <body>`, any other failure `ERR <exception class> <text>`.
/// HTTPS URLs are verified with the pod's ServiceAccount CA.
fn get_code(url: &str, timeout: f64) -> String {
    format!(
        "import urllib.request,urllib.error,sys,ssl\nctx=ssl.create_default_context(cafile='/var/run/secrets/kubernetes.io/serviceaccount/ca.crt') if '{url}'.startswith('https') else None\ntry:\n  sys.stdout.write(urllib.request.urlopen('{url}', timeout={timeout}, context=ctx).read().decode())\n\
         except urllib.error.HTTPError as e:\n  sys.stdout.write('ERR HTTPError '+str(e.code)+' '+e.read().decode())\n\
         except Exception as e:\n  r=getattr(e,'reason',e); sys.stdout.write('ERR '+type(r).__name__+' '+str(r))\n"
    )
}

/// (name, IP, node) of the ready pods labelled `app`.
fn app_pods(c: &Cluster, app: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = pods(c)
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == app)
        .filter(|p| field(p, "/metadata/deletionTimestamp").is_empty())
        .map(|p| {
            (
                field(p, "/metadata/name").to_string(),
                field(p, "/status/podIP").to_string(),
                field(p, "/spec/nodeName").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn cluster_ip(c: &Cluster, svc: &str) -> String {
    let s = c.json(&["get", "svc", svc, "-o", "json"]);
    field(&s, "/spec/clusterIP").to_string()
}

fn node_ip(node: &str) -> String {
    let i: u32 = node.trim_start_matches("node-").parse().unwrap();
    format!("192.168.1.{}", 9 + i)
}

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// The pod IPs the proxy on `node` sends to for Service port `svc_ip:port`
/// are exactly `want` (the node's table is the ground truth of a sync).
fn wait_for_endpoints(c: &Cluster, node: &str, want: &BTreeSet<String>, absent: &[String]) {
    wait_until(&format!("{node}'s proxy to program {want:?}"), 60, || {
        let out = c.weft(&[
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
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success()
            && want
                .iter()
                .all(|ip| text.contains(&format!("dnat ip to {ip}:")))
            && absent
                .iter()
                .all(|ip| !text.contains(&format!("dnat ip to {ip}:")))
    });
}

fn web_manifest() -> String {
    deployment("web", 3, READY_ON_HTTP)
        + &service(
            "web",
            "web",
            "  ports:\n  - {name: http, port: 80, targetPort: http}\n  - {name: udp, port: 81, targetPort: udp, protocol: UDP}\n",
        )
}

/// Waits until 3 web pods are ready and every node programs them.
fn web_ready(c: &Cluster) -> Vec<(String, String, String)> {
    wait_until("3 web pods with IPs", 120, || {
        app_pods(c, "web")
            .iter()
            .filter(|p| !p.1.is_empty())
            .count()
            == 3
    });
    let web = app_pods(c, "web");
    let ips: BTreeSet<String> = web.iter().map(|p| p.1.clone()).collect();
    for n in NODES {
        wait_for_endpoints(c, n, &ips, &[]);
    }
    web
}

/// A client pod (netexec, one replica).
fn client_manifest() -> String {
    deployment("client", 1, READY_ON_HTTP)
}

fn client_pod(c: &Cluster) -> (String, String, String) {
    wait_until("the client pod", 120, || {
        app_pods(c, "client").iter().any(|p| !p.1.is_empty())
    });
    app_pods(c, "client").remove(0)
}

/// A 3-node cluster with the 3 web pods programmed on every node and one
/// client pod: the start of most tests.
struct WebAndClient {
    c: Cluster,
    web: Vec<(String, String, String)>,
    client: String,
    client_node: String,
    /// Service web's ClusterIP.
    ip: String,
}

fn web_and_client(prefix: &str) -> WebAndClient {
    let c = cluster(prefix, &(web_manifest() + &client_manifest()));
    let web = web_ready(&c);
    let (client, _, client_node) = client_pod(&c);
    let ip = cluster_ip(&c, "web");
    WebAndClient {
        c,
        web,
        client,
        client_node,
        ip,
    }
}

/// `n` new connections from `pod` to `http://ip/hostname`, counted by the
/// backend that answered.
fn hostnames(c: &Cluster, pod: &str, ip: &str, n: usize) -> BTreeMap<String, u64> {
    let out = py(
        c,
        pod,
        &format!(
            "import urllib.request,collections,json\n\
             c=collections.Counter(urllib.request.urlopen('http://{ip}/hostname',timeout=5).read().decode() for _ in range({n}))\n\
             print(json.dumps(c))"
        ),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out:?}"))
}

/// A Python script running in a pod while the test acts: it prints lines
/// as it goes and waits for the marker file (`{marker}` in the script) to
/// exist before its second half. The marker and the process go on drop.
struct PodScript {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    marker: std::path::PathBuf,
}

impl PodScript {
    fn start(c: &Cluster, pod: &str, what: &str, script: impl Fn(&str) -> String) -> PodScript {
        let marker = std::env::temp_dir().join(format!("{}-{what}", c.name));
        let _ = std::fs::remove_file(&marker);
        let mut child = Command::new(WEFT)
            .args(["--name", &c.name, "exec", pod, "--", "python3", "-c"])
            .arg(script(&marker.display().to_string()))
            .env("WEFT_STATE_DIR", &c.state)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        PodScript {
            child,
            lines,
            marker,
        }
    }

    fn line(&mut self) -> String {
        self.lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| "<the script ended>".into())
    }

    /// Lets the script go on past its wait.
    fn go(&self) {
        std::fs::write(&self.marker, b"go").unwrap();
    }

    /// Waits for the script; its exit status and the lines it still printed.
    fn finish(mut self) -> (bool, Vec<String>) {
        let status = self.child.wait().unwrap();
        let rest = self.lines.by_ref().map_while(Result::ok).collect();
        (status.success(), rest)
    }
}

impl Drop for PodScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.marker);
    }
}

#[test]
fn cluster_ip_spreads_300_connections_over_3_endpoints() {
    let Some(_one) = one_at_a_time("cluster_ip_spreads_300_connections_over_3_endpoints") else {
        return;
    };
    let WebAndClient {
        c, web, client, ip, ..
    } = web_and_client("svs");
    let counts = hostnames(&c, &client, &ip, 300);
    assert_eq!(counts.values().sum::<u64>(), 300, "{counts:?}");
    for (name, _, _) in &web {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (60..=141).contains(&n),
            "{name} got {n} of 300 connections (want 20%..47%): {counts:?}"
        );
    }
}

#[test]
fn node_port_answers_the_external_client_on_every_node() {
    let Some(_one) = one_at_a_time("node_port_answers_the_external_client_on_every_node") else {
        return;
    };
    let manifest = web_manifest()
        + &service(
            "web-np",
            "web",
            "  type: NodePort\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30090}\n",
        );
    let c = cluster("svn", &manifest);
    let web = web_ready(&c);
    let names: BTreeSet<String> = web.iter().map(|p| p.0.clone()).collect();
    for n in NODES {
        let out = py_external(
            &c,
            &get_code(&format!("http://{}:30090/hostname", node_ip(n)), 5.0),
        );
        assert!(
            names.contains(out.trim()),
            "NodePort on {n} answered {out:?}, not one of {names:?}"
        );
    }
}

/// The addresses the nodes hold (any of them may be a masquerade source).
fn node_addresses(c: &Cluster) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for n in NODES {
        let out = c.ok(&["exec", "--node", n, "--", "ip", "-o", "-4", "addr", "show"]);
        for line in out.lines() {
            if let Some(cidr) = line.split_whitespace().nth(3) {
                all.insert(cidr.split('/').next().unwrap_or("").to_string());
            }
        }
    }
    all
}

#[test]
fn external_traffic_policy_cluster_masquerades_to_a_node_address() {
    let Some(_one) = one_at_a_time("external_traffic_policy_cluster_masquerades_to_a_node_address")
    else {
        return;
    };
    let manifest = web_manifest()
        + &service(
            "web-np",
            "web",
            "  type: NodePort\n  externalTrafficPolicy: Cluster\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30090}\n",
        );
    let c = cluster("svc", &manifest);
    web_ready(&c);
    let nodes = node_addresses(&c);
    for n in NODES {
        let out = py_external(
            &c,
            &get_code(&format!("http://{}:30090/clientip", node_ip(n)), 5.0),
        );
        let seen = out.trim().rsplit_once(':').map(|(ip, _)| ip).unwrap_or("");
        assert!(
            nodes.contains(seen),
            "via {n} the backend saw {out:?}, not a node address ({nodes:?})"
        );
        assert_ne!(seen, "198.51.100.5");
    }
}

#[test]
fn external_traffic_policy_local_keeps_the_client_ip_and_only_nodes_with_endpoints_answer() {
    let Some(_one) = one_at_a_time(
        "external_traffic_policy_local_keeps_the_client_ip_and_only_nodes_with_endpoints_answer",
    ) else {
        return;
    };
    let manifest = deployment("solo", 1, READY_ON_HTTP)
        + &service(
            "solo",
            "solo",
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30091}\n",
        );
    let c = cluster("svl", &manifest);
    wait_until("the solo pod", 120, || {
        app_pods(&c, "solo").iter().any(|p| !p.1.is_empty())
    });
    let (_, solo_ip, home) = app_pods(&c, "solo").remove(0);
    for n in NODES {
        wait_for_endpoints(&c, n, &BTreeSet::from([solo_ip.clone()]), &[]);
    }
    let svc = c.json(&["get", "svc", "solo", "-o", "json"]);
    let hc = svc["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("healthCheckNodePort allocated");
    for n in NODES {
        let ip = node_ip(n);
        let health = py_external(&c, &get_code(&format!("http://{ip}:{hc}/"), 5.0));
        if n == home {
            let out = py_external(&c, &get_code(&format!("http://{ip}:30091/clientip"), 5.0));
            assert!(
                out.starts_with("198.51.100.5:"),
                "the backend on {n} saw {out:?}, not the client's address"
            );
            let body: Value = serde_json::from_str(&health)
                .unwrap_or_else(|_| panic!("health check on {n}: {health:?}"));
            assert_eq!(body["localEndpoints"], 1, "{body}");
            assert_eq!(body["service"]["name"], "solo", "{body}");
            assert_eq!(body["serviceProxyHealthy"], true, "{body}");
        } else {
            // Dropped, not refused: the client times out.
            let started = Instant::now();
            let out = py_external(&c, &get_code(&format!("http://{ip}:30091/clientip"), 1.5));
            assert!(
                out.starts_with("ERR") && out.to_lowercase().contains("timeout"),
                "{n} has no local endpoint, yet answered {out:?}"
            );
            assert!(started.elapsed() >= Duration::from_millis(1400));
            assert!(
                health.starts_with("ERR HTTPError 503 ")
                    && health.contains("\"localEndpoints\":0")
                    && health.contains("\"serviceProxyHealthy\":true"),
                "health check on {n}: {health:?}"
            );
        }
    }
}

#[test]
fn client_ip_affinity_pins_a_client_to_one_backend() {
    let Some(_one) = one_at_a_time("client_ip_affinity_pins_a_client_to_one_backend") else {
        return;
    };
    let manifest = web_manifest()
        + &client_manifest()
        + &service(
            "web-sticky",
            "web",
            &format!("  sessionAffinity: ClientIP\n{HTTP_PORT}"),
        );
    let c = cluster("sva", &manifest);
    web_ready(&c);
    let (client, _, _) = client_pod(&c);
    let count = |svc: &str| hostnames(&c, &client, &cluster_ip(&c, svc), 40);
    let sticky = count("web-sticky");
    assert_eq!(sticky.len(), 1, "affinity broken: {sticky:?}");
    // The same backends without affinity: more than one answers.
    let spread = count("web");
    assert!(spread.len() > 1, "{spread:?}");
}

#[test]
fn service_without_endpoints_refuses_connections_at_once() {
    let Some(_one) = one_at_a_time("service_without_endpoints_refuses_connections_at_once") else {
        return;
    };
    let manifest = client_manifest() + &service("nobody", "nothing-matches", HTTP_PORT);
    let c = cluster("sve", &manifest);
    let (client, _, _) = client_pod(&c);
    let ip = cluster_ip(&c, "nobody");
    // The reject rule is in place once every node lists the Service's port.
    for n in NODES {
        wait_until(&format!("{n} to program Service nobody"), 60, || {
            let t = c.weft(&[
                "exec",
                "--node",
                n,
                "--",
                "nft",
                "list",
                "map",
                "inet",
                "weft-proxy",
                "no-endpoint-services",
            ]);
            String::from_utf8_lossy(&t.stdout).contains(&ip)
        });
    }
    let out = py(
        &c,
        &client,
        &format!(
            "import socket,time\nt=time.monotonic()\ntry:\n  socket.create_connection(('{ip}',80),timeout=5); print('CONNECTED')\n\
             except ConnectionRefusedError:\n  print('REFUSED %.4f' % (time.monotonic()-t))\n\
             except Exception as e:\n  print('OTHER', type(e).__name__)\n"
        ),
    );
    let secs: f64 = out
        .trim()
        .strip_prefix("REFUSED ")
        .unwrap_or_else(|| panic!("connection to a Service without endpoints: {out:?}"))
        .parse()
        .unwrap();
    assert!(secs < 0.1, "refused after {secs} s");
}

#[test]
fn a_deleted_backend_gets_no_new_connections() {
    let Some(_one) = one_at_a_time("a_deleted_backend_gets_no_new_connections") else {
        return;
    };
    let WebAndClient {
        c,
        web,
        client,
        client_node,
        ip,
    } = web_and_client("svd");
    let (gone, gone_ip, _) = web[0].clone();
    c.ok(&["delete", "pod", &gone]);
    // Its replacement is scheduled; wait until the client's node programs
    // the new set without the deleted pod.
    wait_until("the replacement web pod", 120, || {
        let now = app_pods(&c, "web");
        now.len() == 3 && now.iter().all(|p| !p.1.is_empty() && p.0 != gone)
    });
    let ips: BTreeSet<String> = app_pods(&c, "web").into_iter().map(|p| p.1).collect();
    wait_for_endpoints(&c, &client_node, &ips, std::slice::from_ref(&gone_ip));
    let counts = hostnames(&c, &client, &ip, 100);
    assert_eq!(
        counts.values().sum::<u64>(),
        100,
        "every connection answered: {counts:?}"
    );
    assert!(
        !counts.contains_key(&gone),
        "{gone} still got connections: {counts:?}"
    );
}

#[test]
fn a_udp_client_keeps_working_through_endpoint_churn() {
    let Some(_one) = one_at_a_time("a_udp_client_keeps_working_through_endpoint_churn") else {
        return;
    };
    let WebAndClient { c, client, ip, .. } = web_and_client("svu");
    // One socket, one source port for the whole run: the conntrack entry is
    // the same one before and after the churn, unless the proxy deletes it.
    let mut script = PodScript::start(&c, &client, "udp-churn", |m| {
        format!(
            "import socket,time,os,sys\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',40000)); s.settimeout(0.3)\n\
             def ask():\n  s.sendto(b'hostname',('{ip}',81))\n  try:\n    return s.recvfrom(100)[0].decode()\n  except socket.timeout:\n    return None\n\
             first=None\n\
             while first is None: first=ask()\n\
             print('FIRST',first,flush=True)\n\
             while not os.path.exists('{m}'): time.sleep(0.05)\n\
             end=time.monotonic()+20; lost=0\n\
             while time.monotonic()<end:\n  a=ask()\n  if a is None: lost+=1; continue\n  if a!=first: print('THEN',a,lost,flush=True); sys.exit(0)\n\
             print('STUCK',lost,flush=True); sys.exit(1)\n"
        )
    });
    let first = script.line();
    let first_pod = first
        .strip_prefix("FIRST ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    c.ok(&["delete", "pod", &first_pod]);
    script.go();
    let (ok, rest) = script.finish();
    assert!(
        ok,
        "after {first_pod} was deleted the client stayed stuck: {rest:?}"
    );
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let Some(_one) = one_at_a_time("a_pod_reaches_itself_through_its_service") else {
        return;
    };
    let c = cluster("svh", &deployment("solo", 1, READY_ON_HTTP));
    wait_until("the solo pod", 120, || {
        app_pods(&c, "solo").iter().any(|p| !p.1.is_empty())
    });
    let (pod, pod_ip, node) = app_pods(&c, "solo").remove(0);
    let svc = std::env::temp_dir().join(format!("{}-solo-svc.yaml", c.name));
    std::fs::write(&svc, service("solo", "solo", HTTP_PORT)).unwrap();
    c.ok(&["apply", "-f", svc.to_str().unwrap()]);
    let _ = std::fs::remove_file(&svc);
    wait_for_endpoints(&c, &node, &BTreeSet::from([pod_ip.clone()]), &[]);
    let ip = cluster_ip(&c, "solo");
    let out = py(&c, &pod, &get_code(&format!("http://{ip}/hostname"), 5.0));
    assert_eq!(out.trim(), pod, "hairpin through {ip}");
}

#[test]
fn a_pod_reaches_the_api_server_at_10_96_0_1_port_443() {
    let Some(_one) = one_at_a_time("a_pod_reaches_the_api_server_at_10_96_0_1_port_443") else {
        return;
    };
    let c = cluster("svk", &client_manifest());
    let (client, _, node) = client_pod(&c);
    let slices = c.json(&["get", "endpointslices", "-o", "json"]);
    let api: BTreeSet<String> = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| field(s, "/metadata/name") == "kubernetes")
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect();
    assert!(!api.is_empty(), "no kubernetes EndpointSlice: {slices}");
    wait_for_endpoints(&c, &node, &api, &[]);
    // TLS verified against the CA mounted in the pod: the serving
    // certificate covers the ClusterIP.
    let out = py(&c, &client, &get_code("https://10.96.0.1:443/version", 5.0));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out:?}"));
    assert!(
        v["gitVersion"].as_str().is_some_and(|s| s.starts_with('v')),
        "{v}"
    );
}

#[test]
fn unready_pods_get_traffic_only_with_publish_not_ready_addresses() {
    let Some(_one) =
        one_at_a_time("unready_pods_get_traffic_only_with_publish_not_ready_addresses")
    else {
        return;
    };
    let manifest = deployment("unready", 1, NEVER_READY)
        + &service("unready", "unready", HTTP_PORT)
        + &service(
            "unready-published",
            "unready",
            &format!("  publishNotReadyAddresses: true\n{HTTP_PORT}"),
        );
    // `weft up` waits for Ready pods: the unready one never is, so start
    // without it and apply it after.
    let c = cluster("svr", &client_manifest());
    let path = std::env::temp_dir().join(format!("{}-unready.yaml", c.name));
    std::fs::write(&path, &manifest).unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let (client, _, node) = client_pod(&c);
    wait_until("the unready pod to run", 120, || {
        app_pods(&c, "unready").iter().any(|p| !p.1.is_empty())
    });
    let (pod, pod_ip, _) = app_pods(&c, "unready").remove(0);
    wait_for_endpoints(&c, &node, &BTreeSet::from([pod_ip]), &[]);
    let published = cluster_ip(&c, "unready-published");
    let out = py(
        &c,
        &client,
        &get_code(&format!("http://{published}/hostname"), 5.0),
    );
    assert_eq!(
        out.trim(),
        pod,
        "publishNotReadyAddresses: the unready pod answers"
    );
    let plain = cluster_ip(&c, "unready");
    let out = py(
        &c,
        &client,
        &get_code(&format!("http://{plain}/hostname"), 5.0),
    );
    assert!(
        out.starts_with("ERR ConnectionRefusedError"),
        "an unready pod got traffic without publishNotReadyAddresses: {out:?}"
    );
}

#[test]
fn an_agent_restart_keeps_an_open_tcp_connection_through_a_cluster_ip() {
    let Some(_one) =
        one_at_a_time("an_agent_restart_keeps_an_open_tcp_connection_through_a_cluster_ip")
    else {
        return;
    };
    let WebAndClient {
        c,
        client,
        client_node: node,
        ip,
        ..
    } = web_and_client("svg");
    let mut script = PodScript::start(&c, &client, "agent-restart", |m| {
        format!(
            "import http.client,os,time\n\
             h=http.client.HTTPConnection('{ip}',80,timeout=10)\n\
             h.request('GET','/hostname'); a=h.getresponse().read().decode(); print('FIRST',a,flush=True)\n\
             while not os.path.exists('{m}'): time.sleep(0.05)\n\
             port=h.sock.getsockname()[1]\n\
             h.request('GET','/hostname'); b=h.getresponse().read().decode()\n\
             print('SECOND',b,h.sock.getsockname()[1]==port,flush=True)\n"
        )
    });
    let first = script.line();
    let backend = first
        .strip_prefix("FIRST ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();

    let old = agent_pid(&c, &node).expect("the agent runs on the node");
    kill9_group(&old);
    let metrics = format!("http://{}:9101/metrics", node_ip(&node));
    // The new agent is up and has written its table again (a full sync).
    wait_until("the agent to restart and sync", 60, || {
        if agent_pid(&c, &node).is_none_or(|now| now == old) {
            return false;
        }
        let out = c.weft(&[
            "exec",
            "--node",
            &node,
            "--",
            "python3",
            "-c",
            &get_code(&metrics, 2.0),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .contains("weft_agent_proxy_syncs_total{kind=\"full\"} 1")
    });
    script.go();
    let second = script.line();
    let _ = script.finish();
    assert_eq!(
        second,
        format!("SECOND {backend} True"),
        "the connection did not survive the agent restart"
    );
}
