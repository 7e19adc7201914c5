//! Cluster DNS end to end: `weft up` runs `weft dns` as two pods behind the
//! kube-dns Service (10.96.0.10, from deploy/weft-dns.yaml), and pods look
//! names up with `dig` (Debian dnsutils), `nslookup` and `getent hosts`,
//! through their own resolv.conf (search path, ndots:5). Each check names
//! the rule of the Kubernetes DNS-Based Service Discovery spec 1.1.0
//! (kubernetes/dns docs/specification.md) or of the DNS RFCs it proves; the
//! fixtures are our own.
//!
//! One cluster serves every check (a cluster start is the expensive part):
//! this test target has its own harness (libtest-mimic, the same output and
//! filters as libtest), starts the cluster once when a check is selected,
//! runs the checks one at a time and tears the cluster down afterwards —
//! also when a check fails, or the start itself.

mod common;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};

const NETEXEC: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// The client pod: dig, nslookup and getent run in it.
const DNSUTILS: &str = "\
apiVersion: v1\nkind: Pod\nmetadata: {name: dnsutils}\n\
spec:\n  containers:\n  - name: c\n    image: registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3\n    \
command: [sleep, infinity]\n---\n";

/// A Deployment of netexec pods labelled `app: NAME`, ready on HTTP.
fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: {NETEXEC}\n        \
         args: [netexec, --http-port=8080]\n        ports:\n        - {{name: http, containerPort: 8080}}\n        \
         readinessProbe:\n          httpGet: {{path: /healthz, port: http}}\n          periodSeconds: 1\n---\n"
    )
}

/// The seeds' objects: `web`, `api` and `backend` (ClusterIP, named port
/// http 80 → 8080 of the web pods), `cassandra` (headless, a StatefulSet of
/// 2), `db` (headless over 3 Deployment pods), `ext` (ExternalName),
/// `nobody` (headless, no pod matches).
fn manifest() -> String {
    let mut m = String::from(DNSUTILS);
    m += &deployment("web", 2);
    m += &deployment("db", 3);
    for svc in ["web", "api", "backend"] {
        m += &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}}}\nspec:\n  selector: {{app: web}}\n  \
             ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n---\n"
        );
    }
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  selector: {app: db}\n  \
          ports:\n  - {name: http, port: 8080}\n---\n";
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: nobody}\nspec:\n  clusterIP: None\n  selector: {app: none}\n  \
          ports:\n  - {name: http, port: 8080}\n---\n";
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: upstream.example.test\n---\n";
    m += "apiVersion: v1\nkind: Service\nmetadata: {name: cassandra}\nspec:\n  clusterIP: None\n  selector: {app: cassandra}\n  \
          ports:\n  - {name: cql, port: 9042}\n---\n";
    m += &format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: cassandra}}\nspec:\n  serviceName: cassandra\n  replicas: 2\n  \
         selector: {{matchLabels: {{app: cassandra}}}}\n  template:\n    metadata: {{labels: {{app: cassandra}}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: {NETEXEC}\n        args: [netexec, --http-port=9042]\n        \
         readinessProbe:\n          tcpSocket: {{port: 9042}}\n          periodSeconds: 1\n---\n"
    );
    m
}

fn is_ready(p: &serde_json::Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    })
}

/// A 2-node cluster with the seeds' objects, once every pod is Ready (`weft
/// up` itself waits for the DNS pods).
fn start_cluster() -> Cluster {
    let c = Cluster::new("dns");
    let path = std::env::temp_dir().join(format!("{}-dns.yaml", c.name));
    std::fs::write(&path, manifest()).unwrap();
    c.ok(&["up", "-f", path.to_str().unwrap(), "--timeout", "180"]);
    let _ = std::fs::remove_file(path);
    // dnsutils 1, web 2, db 3, cassandra 2.
    wait_until("every pod Ready", 120, || {
        let all = pods(&c);
        all.len() >= 8 && all.iter().all(is_ready)
    });
    c
}

/// The output of `dig ARGS` from the dnsutils pod (through its resolv.conf).
fn dig(c: &Cluster, args: &[&str]) -> String {
    let mut argv = vec!["exec", "dnsutils", "--", "dig", "+time=2", "+tries=2"];
    argv.extend_from_slice(args);
    let out = c.ok(&argv);
    // dig ran and got an answer: a header line, or +short's bare lines.
    assert!(
        !out.contains("connection timed out") && !out.contains("no servers could be reached"),
        "dig {}: {out}",
        args.join(" ")
    );
    out
}

/// The sorted answer lines of `dig +short NAME TYPE`.
fn short(c: &Cluster, name: &str, qtype: &str) -> Vec<String> {
    let out = dig(c, &["+short", name, qtype]);
    let mut lines: Vec<String> = out.lines().map(str::trim).map(String::from).collect();
    lines.retain(|l| !l.is_empty());
    lines.sort();
    lines
}

/// The status word of a full dig answer (`NOERROR`, `NXDOMAIN` …), and
/// whether its authority section holds the cluster's SOA.
fn status(c: &Cluster, name: &str, qtype: &str) -> (String, bool) {
    let out = dig(c, &[name, qtype]);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's answer:\n{out}"))
        .to_string();
    let soa = out.split(";; AUTHORITY SECTION:").nth(1).is_some_and(|a| {
        a.lines()
            .any(|l| l.starts_with("cluster.local.") && l.contains("SOA"))
    });
    (status, soa)
}

/// The answer lines of `dig +short -x IP` (a PTR query).
fn ptr(c: &Cluster, ip: &str) -> Vec<String> {
    let out = dig(c, &["+short", "-x", ip]);
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn service_ip(c: &Cluster, name: &str) -> String {
    c.json(&["get", "service", name, "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pod_ips(c: &Cluster, app: &str) -> Vec<String> {
    let mut ips: Vec<String> = pods(c)
        .iter()
        .filter(|p| field(p, "/metadata/labels/app") == app && is_ready(p))
        .map(|p| field(p, "/status/podIP").to_string())
        .collect();
    ips.sort();
    ips
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    pods(c)
        .into_iter()
        .find(|p| field(p, "/metadata/name") == name)
        .map(|p| field(&p, "/status/podIP").to_string())
        .unwrap_or_else(|| panic!("no pod {name}"))
}

fn a_clusterip_service_name_answers_its_clusterip(c: &Cluster) {
    let ip = service_ip(c, "web");
    assert_eq!(
        short(c, "web.default.svc.cluster.local", "A"),
        std::slice::from_ref(&ip)
    );
    // Names compare case-insensitively (RFC 4343).
    assert_eq!(
        short(c, "WEB.Default.SVC.cluster.LOCAL", "A"),
        std::slice::from_ref(&ip)
    );
}

fn the_schema_version_record_is_1_1_0(c: &Cluster) {
    assert_eq!(short(c, "dns-version.cluster.local", "TXT"), ["\"1.1.0\""]);
}

fn a_bare_name_resolves_through_the_pods_search_path(c: &Cluster) {
    let hosts = c.ok(&["exec", "dnsutils", "--", "getent", "hosts", "backend"]);
    let ip = service_ip(c, "backend");
    assert_eq!(
        hosts.split_whitespace().next(),
        Some(ip.as_str()),
        "getent hosts backend: {hosts}"
    );
    // The same through another namespace's search suffix.
    let hosts = c.ok(&[
        "exec",
        "dnsutils",
        "--",
        "getent",
        "hosts",
        "kube-dns.kube-system",
    ]);
    assert_eq!(
        hosts.split_whitespace().next(),
        Some("10.96.0.10"),
        "{hosts}"
    );
}

/// `kubectl ARGS`, its stdout; a failure shows both streams.
fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let o = c.kubectl(args);
    assert!(
        o.status.success(),
        "kubectl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// nslookup's answer for one name: the server line and the addresses.
fn nslookup(c: &Cluster, name: &str) -> (String, Vec<String>) {
    let out = kubectl_ok(c, &["exec", "dnsutils", "--", "nslookup", name]);
    let server = out
        .lines()
        .find_map(|l| l.strip_prefix("Server:"))
        .unwrap_or_else(|| panic!("no Server: line in nslookup's output:\n{out}"))
        .trim()
        .to_string();
    let answer = out.split_once("\n\n").map_or("", |(_, rest)| rest);
    let mut addrs: Vec<String> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect();
    addrs.sort();
    (server, addrs)
}

fn nslookup_shows_the_seeds_examples_through_kubectl_exec(c: &Cluster) {
    // As the seeds troubleshoot, and as the README shows it.
    let (server, addrs) = nslookup(c, "kubernetes.default");
    assert_eq!(server, "10.96.0.10");
    assert_eq!(addrs, ["10.96.0.1"]);
    let (_, addrs) = nslookup(c, "api.default.svc.cluster.local");
    assert_eq!(addrs, [service_ip(c, "api")]);
    let (_, addrs) = nslookup(c, "cassandra-0.cassandra.default.svc.cluster.local");
    assert_eq!(addrs, [pod_ip(c, "cassandra-0")]);
    // `<service>.<namespace>` through the search path.
    let (_, addrs) = nslookup(c, "kube-dns.kube-system");
    assert_eq!(addrs, ["10.96.0.10"]);
    // A headless Service: every pod's address.
    let (_, addrs) = nslookup(c, "db.default.svc.cluster.local");
    assert_eq!(addrs, pod_ips(c, "db"));
    // The seeds' SRV example, with dig.
    let srv = kubectl_ok(
        c,
        &[
            "exec",
            "dnsutils",
            "--",
            "dig",
            "+short",
            "SRV",
            "_http._tcp.api.default.svc.cluster.local",
        ],
    );
    assert_eq!(srv.trim(), "0 100 80 api.default.svc.cluster.local.");
    // And the DNS pods themselves, by the label the seeds look for.
    let pods = kubectl_ok(
        c,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "name",
        ],
    );
    assert_eq!(pods.lines().count(), 2, "{pods}");
    let logs = kubectl_ok(c, &["logs", "-n", "kube-system", "-l", "k8s-app=kube-dns"]);
    assert!(logs.contains("serving DNS"), "{logs}");
}

fn a_headless_service_answers_every_ready_pod(c: &Cluster) {
    let want = pod_ips(c, "db");
    assert_eq!(want.len(), 3);
    assert_eq!(short(c, "db.default.svc.cluster.local", "A"), want);
}

fn statefulset_pods_have_hostname_records_and_ptrs(c: &Cluster) {
    let ip = pod_ip(c, "cassandra-0");
    assert_eq!(
        short(c, "cassandra-0.cassandra.default.svc.cluster.local", "A"),
        std::slice::from_ref(&ip)
    );
    // A headless endpoint with a hostname has a PTR to that name (spec 2.4.3).
    assert_eq!(
        ptr(c, &ip),
        ["cassandra-0.cassandra.default.svc.cluster.local."]
    );
}

fn a_headless_service_without_ready_endpoints_is_nxdomain(c: &Cluster) {
    assert_eq!(
        status(c, "nobody.default.svc.cluster.local", "A"),
        ("NXDOMAIN".to_string(), true)
    );
}

fn named_ports_have_srv_records(c: &Cluster) {
    // The seeds' SRV: priority 0, weight 100, the port, the Service's name.
    assert_eq!(
        short(c, "_http._tcp.api.default.svc.cluster.local", "SRV"),
        ["0 100 80 api.default.svc.cluster.local."]
    );
    // Headless: one per ready endpoint, naming the endpoint (spec 2.4.2).
    assert_eq!(
        short(c, "_cql._tcp.cassandra.default.svc.cluster.local", "SRV"),
        [
            "0 100 9042 cassandra-0.cassandra.default.svc.cluster.local.",
            "0 100 9042 cassandra-1.cassandra.default.svc.cluster.local."
        ]
    );
    // A port name the Service does not have: the name does not exist.
    assert_eq!(
        status(c, "_nope._tcp.api.default.svc.cluster.local", "SRV").0,
        "NXDOMAIN"
    );
}

fn a_clusterip_has_a_ptr_record(c: &Cluster) {
    let ip = service_ip(c, "web");
    assert_eq!(ptr(c, &ip), ["web.default.svc.cluster.local."]);
}

fn an_externalname_service_is_a_cname(c: &Cluster) {
    let out = dig(c, &["+short", "ext.default.svc.cluster.local", "CNAME"]);
    assert_eq!(out.trim(), "upstream.example.test.");
}

fn an_absent_name_is_nxdomain_with_the_soa(c: &Cluster) {
    // RFC 2308 §3: the SOA in the authority section of a negative answer.
    assert_eq!(
        status(c, "missing.default.svc.cluster.local", "A"),
        ("NXDOMAIN".to_string(), true)
    );
}

fn a_name_without_the_type_is_nodata_with_the_soa(c: &Cluster) {
    // RFC 2308 §2.2: NOERROR, no answer, the SOA.
    assert_eq!(
        status(c, "web.default.svc.cluster.local", "MX"),
        ("NOERROR".to_string(), true)
    );
    assert!(short(c, "web.default.svc.cluster.local", "MX").is_empty());
    // An empty non-terminal (the namespace) exists too: NODATA, not NXDOMAIN.
    assert_eq!(
        status(c, "default.svc.cluster.local", "A"),
        ("NOERROR".to_string(), true)
    );
}

/// A child process, killed when dropped (also when the check fails) unless
/// it has ended and been reaped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn a_new_service_resolves_within_a_second(c: &Cluster) {
    // The pod asks until the name answers, then prints the time; the
    // Service is created while it asks. Pods share the machine's clock.
    let started = Instant::now();
    let mut asking = std::process::Command::new(WEFT)
        .args(["--name", &c.name, "exec", "dnsutils", "--", "sh", "-c"])
        .arg(
            "echo asking; \
             while ! dig +short +time=1 +tries=1 fresh.default.svc.cluster.local A | grep -q .; \
             do :; done; date +%s.%N",
        )
        .env("WEFT_STATE_DIR", &c.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(asking.stdout.take().unwrap());
    let mut asking = KillOnDrop(asking);
    let mut line = String::new();
    // The loop runs before the Service exists.
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "asking");
    let path = std::env::temp_dir().join(format!("{}-fresh.yaml", c.name));
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  selector: {app: web}\n  \
         ports:\n  - {port: 80, targetPort: 8080}\n",
    )
    .unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let _ = std::fs::remove_file(path);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let _ = asking.0.wait();
    let resolved: f64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the dig loop printed {out:?} after {:?}", started.elapsed()));
    let took = resolved - created;
    eprintln!("fresh.default answered {took:.3} s after `weft apply` returned");
    assert!(
        took < 1.0,
        "resolvable {took:.3} s after the Service was created"
    );
    assert_eq!(
        short(c, "fresh.default.svc.cluster.local", "A"),
        [service_ip(c, "fresh")]
    );
}

/// A selectorless headless Service `many` with one EndpointSlice of `n`
/// ready addresses (10.244.200.1 …), applied once.
fn many(c: &Cluster, n: usize) {
    if short(c, "many.default.svc.cluster.local", "A").len() == n {
        return;
    }
    let endpoints: String = (1..=n)
        .map(|i| format!("- addresses: [\"10.244.200.{i}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    let m = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: many}}\nspec:\n  clusterIP: None\n  \
         ports:\n  - {{name: http, port: 80}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-1\n  \
         labels: {{kubernetes.io/service-name: many}}\naddressType: IPv4\n\
         ports:\n- {{name: http, port: 80, protocol: TCP}}\nendpoints:\n{endpoints}"
    );
    let path = std::env::temp_dir().join(format!("{}-many.yaml", c.name));
    std::fs::write(&path, m).unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
    wait_until("many resolves", 30, || {
        short(c, "many.default.svc.cluster.local", "A").len() == n
    });
}

/// The answer's header flags (`qr aa rd tc` …).
fn flags(out: &str) -> Vec<String> {
    out.split("flags: ")
        .nth(1)
        .and_then(|f| f.split(';').next())
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(c: &Cluster) {
    many(c, 60);
    // Without EDNS a UDP answer holds 512 bytes (RFC 1035 §4.2.1): TC set.
    let udp = dig(
        c,
        &["+noedns", "+ignore", "many.default.svc.cluster.local", "A"],
    );
    assert!(flags(&udp).contains(&"tc".to_string()), "{udp}");
    // The same over TCP: all 60 (RFC 7766).
    let tcp = dig(
        c,
        &["+tcp", "+short", "many.default.svc.cluster.local", "A"],
    );
    assert_eq!(
        tcp.lines().filter(|l| !l.trim().is_empty()).count(),
        60,
        "{tcp}"
    );
    // With EDNS (dig's 1232 bytes) all 60 fit over UDP, no TC.
    let edns = dig(c, &["many.default.svc.cluster.local", "A"]);
    assert!(!flags(&edns).contains(&"tc".to_string()), "{edns}");
    assert_eq!(short(c, "many.default.svc.cluster.local", "A").len(), 60);
}

fn a_multi_record_answer_comes_in_shuffled_order(c: &Cluster) {
    many(c, 60);
    let orders: BTreeSet<String> = (0..5)
        .map(|_| dig(c, &["+short", "many.default.svc.cluster.local", "A"]))
        .collect();
    // Five answers in one order by chance: (1/60!)^4.
    assert!(orders.len() > 1, "always the same order: {orders:?}");
    for o in &orders {
        assert_eq!(o.lines().count(), 60, "{o}");
    }
}

fn the_embedded_cluster_refuses_names_it_cannot_forward(c: &Cluster) {
    // `weft up` runs weft dns with --upstream=none (no way out of its
    // namespaces): an outside name is REFUSED at once, not a timeout.
    let began = Instant::now();
    let (status, _) = status(c, "www.example.test", "A");
    assert_eq!(status, "REFUSED");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// dnsmasq on the external client (198.51.100.5:53), serving
/// `example.test` with a 300 s TTL, NXDOMAIN for `gone.test`, and logging
/// every query it gets; ended on drop.
struct Upstream {
    _child: KillOnDrop,
    log: std::path::PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Upstream {
    fn start(c: &Cluster) -> Upstream {
        let dnsmasq = "/usr/sbin/dnsmasq";
        assert!(
            std::path::Path::new(dnsmasq).exists(),
            "{dnsmasq} missing: run scripts/setup.sh (Debian dnsmasq-base)"
        );
        let log = std::env::temp_dir().join(format!("{}-dnsmasq.log", c.name));
        // `ip netns exec` execs dnsmasq: the child is dnsmasq.
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &format!("weft-{}-client", c.name), dnsmasq])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=198.51.100.5",
                "--port=53",
                "--local-ttl=300",
                "--neg-ttl=300",
                "--address=/example.test/192.0.2.10",
                "--local=/gone.test/",
                "--log-queries",
                "--pid-file=",
                "--user=root",
            ])
            .arg(format!("--log-facility={}", log.display()))
            .spawn()
            .unwrap();
        let up = Upstream {
            _child: KillOnDrop(child),
            log,
        };
        wait_until("dnsmasq answers on 198.51.100.5", 30, || {
            let o = c.weft(&[
                "exec",
                "--external",
                "--",
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                "@198.51.100.5",
                "probe.example.test",
            ]);
            String::from_utf8_lossy(&o.stdout).trim() == "192.0.2.10"
        });
        up
    }

    /// How many queries for `name` of type `qtype` dnsmasq has answered.
    fn queries_for(&self, qtype: &str, name: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("query[{qtype}] {name} ")))
            .count()
    }
}

/// Points the cluster's DNS at `upstream` as a user would (a JSON patch of
/// the weft-dns Deployment that replaces `--upstream=none`), and waits for
/// the rollout.
fn use_upstream(c: &Cluster, upstream: &str) {
    let d = c.json(&[
        "get",
        "deployment",
        "weft-dns",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]);
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let i = args
        .iter()
        .position(|a| a == "--upstream=none")
        .unwrap_or_else(|| panic!("no --upstream=none in {args:?}"));
    let patch = format!(
        "[{{\"op\":\"replace\",\"path\":\"/spec/template/spec/containers/0/args/{i}\",\"value\":\"--upstream={upstream}\"}}]"
    );
    let o = c.kubectl(&[
        "-n",
        "kube-system",
        "patch",
        "deployment",
        "weft-dns",
        "--type",
        "json",
        "-p",
        &patch,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = c.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/weft-dns",
        "--timeout=120s",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn names_outside_the_cluster_are_forwarded_and_cached(c: &Cluster) {
    let upstream = Upstream::start(c);
    use_upstream(c, "198.51.100.5");
    assert_eq!(short(c, "www.example.test", "A"), ["192.0.2.10"]);
    assert!(
        upstream.queries_for("A", "www.example.test") >= 1,
        "dnsmasq saw no query for www.example.test"
    );
    // Asked again: the caches answer (two DNS pods: at most two asks).
    for _ in 0..6 {
        assert_eq!(short(c, "www.example.test", "A"), ["192.0.2.10"]);
    }
    let asked = upstream.queries_for("A", "www.example.test");
    assert!(asked <= 2, "the upstream was asked {asked} times");
    // An ExternalName into the upstream's zone: the CNAME, then its answer.
    let out = short(c, "ext.default.svc.cluster.local", "A");
    assert_eq!(out, ["192.0.2.10", "upstream.example.test."], "{out:?}");
    // The upstream's NXDOMAIN comes through (dnsmasq's carries no SOA, so
    // it is not cached: RFC 2308 §5; negative caching has its own tests in
    // crates/weft-dns/tests/forward.rs).
    assert_eq!(status(c, "nothing.gone.test", "A").0, "NXDOMAIN");
    assert!(upstream.queries_for("A", "nothing.gone.test") >= 1);
}

/// The checks, in order: the forwarder changes the DNS Deployment, so it
/// runs last.
/// A check against the shared cluster.
type Check = fn(&Cluster);

const CHECKS: &[(&str, Check)] = &[
    (
        "a_clusterip_service_name_answers_its_clusterip",
        a_clusterip_service_name_answers_its_clusterip,
    ),
    (
        "the_schema_version_record_is_1_1_0",
        the_schema_version_record_is_1_1_0,
    ),
    (
        "a_bare_name_resolves_through_the_pods_search_path",
        a_bare_name_resolves_through_the_pods_search_path,
    ),
    (
        "nslookup_shows_the_seeds_examples_through_kubectl_exec",
        nslookup_shows_the_seeds_examples_through_kubectl_exec,
    ),
    (
        "a_headless_service_answers_every_ready_pod",
        a_headless_service_answers_every_ready_pod,
    ),
    (
        "statefulset_pods_have_hostname_records_and_ptrs",
        statefulset_pods_have_hostname_records_and_ptrs,
    ),
    (
        "a_headless_service_without_ready_endpoints_is_nxdomain",
        a_headless_service_without_ready_endpoints_is_nxdomain,
    ),
    ("named_ports_have_srv_records", named_ports_have_srv_records),
    ("a_clusterip_has_a_ptr_record", a_clusterip_has_a_ptr_record),
    (
        "an_externalname_service_is_a_cname",
        an_externalname_service_is_a_cname,
    ),
    (
        "an_absent_name_is_nxdomain_with_the_soa",
        an_absent_name_is_nxdomain_with_the_soa,
    ),
    (
        "a_name_without_the_type_is_nodata_with_the_soa",
        a_name_without_the_type_is_nodata_with_the_soa,
    ),
    (
        "a_new_service_resolves_within_a_second",
        a_new_service_resolves_within_a_second,
    ),
    (
        "an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp",
        an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp,
    ),
    (
        "a_multi_record_answer_comes_in_shuffled_order",
        a_multi_record_answer_comes_in_shuffled_order,
    ),
    (
        "the_embedded_cluster_refuses_names_it_cannot_forward",
        the_embedded_cluster_refuses_names_it_cannot_forward,
    ),
    (
        "names_outside_the_cluster_are_forwarded_and_cached",
        names_outside_the_cluster_are_forwarded_and_cached,
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
    let cluster = (wanted && root_or_skip("dns")).then(|| Arc::new(start_cluster()));
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
    // One cluster: one check at a time.
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials held the other references: this drop is `weft down`.
    drop(cluster);
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}
