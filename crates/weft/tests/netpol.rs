//! NetworkPolicy (networking.k8s.io/v1) end to end, on the model of the
//! upstream Kubernetes suite (test/e2e/network/netpol in kubernetes/kubernetes;
//! each check names the upstream case it mirrors; the code is our own).
//!
//! The model is upstream's: namespaces x, y and z (labelled `ns=<name>`, and
//! `kubernetes.io/metadata.name=<name>` by the fixture, as weft's API server
//! does not set that label itself), pods a, b and c in each (labelled
//! `pod=<name>`), every pod serving raw TCP and UDP on ports 80 and 81 (agnhost
//! `serve-hostname`, one container per port) with the named container ports
//! `serve-80-tcp`, `serve-80-udp`, `serve-81-tcp` and `serve-81-udp`, and a
//! ClusterIP Service `s-<ns>-<pod>` per pod with ports 80 and 81, TCP and UDP.
//!
//! A check declares a policy, then the truth table it expects: a predicate
//! over the probe (from, to, port, protocol, to the pod IP or through the
//! Service). Every pod probes every other pod on both ports and protocols,
//! both ways (9 × 8 × 4 × 2 = 576 probes), with `agnhost connect` in the source
//! pod: one `kubectl exec` per source pod that runs all its probes at once,
//! the nine sources in parallel. A blocked probe is a 1 s timeout, so a full
//! table takes a few seconds. The whole table is compared both ways: a probe
//! expected blocked must be blocked (enforcement missing fails) and one
//! expected allowed must be allowed (over-blocking fails). Probes from a pod to
//! itself are not made (upstream ignores them: their verdict is undefined).
//!
//! The manifests quote the namespace names: kubectl reads YAML 1.1, where
//! a bare `y` is the boolean true.
//!
//! Policies take effect asynchronously, so a table is polled: the wrong
//! entries are probed again until none is left (30 s at most), then the whole
//! table is probed once more. On that second look an entry expected blocked
//! that connects fails the check at once (a success is never a fluke), and one
//! expected allowed that fails is retried twice (a probe can lose the race for
//! a CPU on a loaded machine). A mismatch prints upstream-style truth tables
//! (rows: from, columns: to; `.` allowed, `X` blocked).
//!
//! Each check deletes its policies (and restores any label it changed) and
//! waits for the all-allowed table again, leaving the cluster as it found it.
//! As dns.rs, the target has its own harness (libtest-mimic) and one cluster
//! serves every check, brought down at the end, also when a check fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
const PROTOCOLS: [Proto; 2] = [Proto::Tcp, Proto::Udp];
/// `agnhost connect --timeout`: how long a blocked probe takes.
const CONNECT_TIMEOUT: &str = "1s";
/// How long a table may take to match after a change.
const CONVERGE: Duration = Duration::from_secs(30);
/// Retries of an entry expected allowed on the second look.
const RETRIES: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Proto {
    Tcp,
    Udp,
}

use Proto::{Tcp, Udp};

impl Proto {
    fn flag(self) -> &'static str {
        match self {
            Tcp => "tcp",
            Udp => "udp",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Tcp => "TCP",
            Udp => "UDP",
        }
    }
}

/// To the pod's own IP, or through its ClusterIP Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Via {
    Pod,
    Service,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Pod => "the pod IP",
            Via::Service => "the ClusterIP",
        }
    }
}

/// A pod of the model, `ns/pod`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Peer {
    ns: &'static str,
    pod: &'static str,
}

impl Peer {
    /// Whether this is `ns/pod` (as written in the checks: `"x/a"`).
    fn is(self, name: &str) -> bool {
        name.split_once('/') == Some((self.ns, self.pod))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}/{}", self.ns, self.pod))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Probe {
    from: Peer,
    to: Peer,
    port: u16,
    proto: Proto,
    via: Via,
}

/// What a probe saw: connected, or the first word of agnhost's error.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    allowed: bool,
    why: String,
}

struct Member {
    peer: Peer,
    ip: String,
    service_ip: String,
}

/// The shared cluster and its model pods' addresses.
struct Net {
    c: Cluster,
    members: Vec<Member>,
}

static FILES: AtomicUsize = AtomicUsize::new(0);

impl Net {
    fn member(&self, p: Peer) -> &Member {
        self.members
            .iter()
            .find(|m| m.peer == p)
            .unwrap_or_else(|| panic!("{p} is not a model pod"))
    }

    fn addr(&self, p: &Probe) -> String {
        let m = self.member(p.to);
        match p.via {
            Via::Pod => format!("{}:{}", m.ip, p.port),
            Via::Service => format!("{}:{}", m.service_ip, p.port),
        }
    }

    /// Every probe of a table: each pod to each other pod, both ports,
    /// both protocols, to the pod IP and through the Service.
    fn probes(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        for f in &self.members {
            for t in &self.members {
                if f.peer == t.peer {
                    continue;
                }
                for port in PORTS {
                    for proto in PROTOCOLS {
                        for via in [Via::Pod, Via::Service] {
                            out.push(Probe {
                                from: f.peer,
                                to: t.peer,
                                port,
                                proto,
                                via,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// `kubectl ARGS`, its stdout; a failure shows both streams.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.c.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {}: exit {:?}\n{}{}",
            args.join(" "),
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply` of a manifest (create or update).
    fn apply(&self, yaml: &str) {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{}-netpol-{n}.yaml", self.c.name));
        std::fs::write(&path, yaml).unwrap();
        let out = self.c.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "kubectl apply:\n{yaml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn delete_policy(&self, ns: &str, name: &str) {
        self.kubectl_ok(&["delete", "networkpolicy", "-n", ns, name]);
    }

    fn delete_policies(&self) {
        for ns in NAMESPACES {
            self.kubectl_ok(&["delete", "networkpolicy", "--all", "-n", ns]);
        }
    }

    fn label(&self, pod: &str, change: &str) {
        let (ns, name) = pod.split_once('/').unwrap();
        self.kubectl_ok(&["label", "pod", "-n", ns, name, change, "--overwrite"]);
    }
}

/// A model pod: one agnhost serve-hostname container per port, raw TCP and
/// UDP on it, with upstream's named container ports.
fn pod_manifest(ns: &str, name: &str, ready_delay: u32) -> String {
    let mut m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: \"{ns}\"\n  labels: {{pod: {name}}}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
    );
    for port in PORTS {
        m += &format!("  - name: cont-{port}\n");
        m += &format!("    image: {AGNHOST}\n");
        m += &format!(
            "    args: [serve-hostname, --tcp, --udp, --http=false, --port, \"{port}\"]\n"
        );
        m += "    ports:\n";
        m += &format!("    - {{name: serve-{port}-tcp, containerPort: {port}, protocol: TCP}}\n");
        m += &format!("    - {{name: serve-{port}-udp, containerPort: {port}, protocol: UDP}}\n");
        m += "    readinessProbe:\n";
        m += &format!("      tcpSocket: {{port: {port}}}\n");
        m += &format!("      initialDelaySeconds: {ready_delay}\n");
        m += "      periodSeconds: 1\n";
    }
    m + "---\n"
}

/// The namespaces, pods and Services of the model.
fn fixture() -> String {
    let mut m = String::new();
    for ns in NAMESPACES {
        // Upstream's API server labels every namespace with its name
        // (NamespaceDefaultLabelName); weft's does not, so the fixture does.
        m += &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  \
             labels: {{ns: \"{ns}\", kubernetes.io/metadata.name: \"{ns}\"}}\n---\n"
        );
    }
    for ns in NAMESPACES {
        for pod in PODS {
            m += &pod_manifest(ns, pod, 0);
            m += &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s-{ns}-{pod}\n  namespace: \"{ns}\"\n\
                 spec:\n  selector: {{pod: {pod}}}\n  ports:\n"
            );
            for port in PORTS {
                for proto in PROTOCOLS {
                    m += &format!(
                        "  - {{name: service-port-{}-{port}, port: {port}, targetPort: {port}, protocol: {}}}\n",
                        proto.flag(),
                        proto.name()
                    );
                }
            }
            m += "---\n";
        }
    }
    m
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    })
}

/// A 2-node cluster with the model, once its pods are Ready.
fn start() -> Net {
    let c = Cluster::new("np");
    let path = std::env::temp_dir().join(format!("{}-netpol.yaml", c.name));
    std::fs::write(&path, fixture()).unwrap();
    c.ok(&["up", "-f", path.to_str().unwrap(), "--timeout", "240"]);
    let _ = std::fs::remove_file(path);
    let mut members = Vec::new();
    wait_until("the 9 model pods Ready, with IPs and Services", 120, || {
        let pods = pods(&c);
        let services = c.json(&["get", "services", "-A", "-o", "json"]);
        let services = services["items"].as_array().cloned().unwrap_or_default();
        members.clear();
        for ns in NAMESPACES {
            for pod in PODS {
                let ip = pods
                    .iter()
                    .find(|p| {
                        field(p, "/metadata/namespace") == ns
                            && field(p, "/metadata/name") == pod
                            && is_ready(p)
                    })
                    .map(|p| field(p, "/status/podIP").to_string())
                    .unwrap_or_default();
                let service_ip = services
                    .iter()
                    .find(|s| {
                        field(s, "/metadata/namespace") == ns
                            && field(s, "/metadata/name") == format!("s-{ns}-{pod}")
                    })
                    .map(|s| field(s, "/spec/clusterIP").to_string())
                    .unwrap_or_default();
                if !ip.is_empty() && !service_ip.is_empty() {
                    members.push(Member {
                        peer: Peer { ns, pod },
                        ip,
                        service_ip,
                    });
                }
            }
        }
        members.len() == NAMESPACES.len() * PODS.len()
    });
    Net { c, members }
}

/// Runs `probes`, grouped by source pod: one `kubectl exec` per source, all
/// its probes in parallel inside it, all sources in parallel.
fn run_probes(net: &Net, probes: &[Probe]) -> Vec<Outcome> {
    let mut by_source: BTreeMap<Peer, Vec<usize>> = BTreeMap::new();
    for (i, p) in probes.iter().enumerate() {
        by_source.entry(p.from).or_default().push(i);
    }
    let mut out: Vec<Option<Outcome>> = vec![None; probes.len()];
    std::thread::scope(|s| {
        let running: Vec<_> = by_source
            .iter()
            .map(|(&from, idx)| {
                let jobs: Vec<Probe> = idx.iter().map(|&i| probes[i]).collect();
                (idx, s.spawn(move || probe_from(net, from, &jobs)))
            })
            .collect();
        for (idx, handle) in running {
            match handle.join() {
                Ok(results) => {
                    for (&i, r) in idx.iter().zip(results) {
                        out[i] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out.into_iter()
        .map(|o| o.expect("every probe answered"))
        .collect()
}

/// The probes of one source pod, in one `kubectl exec` (retried when the
/// exec itself fails or an answer is missing).
fn probe_from(net: &Net, from: Peer, jobs: &[Probe]) -> Vec<Outcome> {
    // `p INDEX PROTOCOL HOST:PORT` prints `INDEX EXIT-CODE ERROR-WORD`
    // (`TIMEOUT`, `REFUSED` …; nothing on success), one line per probe.
    let mut script = format!(
        "p() {{ out=$(weft agnhost connect --timeout={CONNECT_TIMEOUT} --protocol=$2 $3 2>&1); \
         echo \"$1 $? ${{out%%:*}}\"; }}\n"
    );
    for (i, p) in jobs.iter().enumerate() {
        script += &format!("p {i} {} {} &\n", p.proto.flag(), net.addr(p));
    }
    script += "wait\n";
    let mut last = String::new();
    for _ in 0..3 {
        let o = net.c.kubectl(&[
            "exec", "-n", from.ns, from.pod, "-c", "cont-80", "--", "sh", "-c", &script,
        ]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut got: Vec<Option<Outcome>> = vec![None; jobs.len()];
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(i), Some(code)) = (
                words.next().and_then(|w| w.parse::<usize>().ok()),
                words.next(),
            ) else {
                continue;
            };
            let why = words.next().unwrap_or("").to_string();
            let outcome = match code {
                "0" => Outcome {
                    allowed: true,
                    why,
                },
                "1" => Outcome {
                    allowed: false,
                    why,
                },
                other => panic!(
                    "agnhost connect in {from} exited {other} ({why}) for {}: the probe itself is broken\n{text}",
                    jobs.get(i).map(|p| net.addr(p)).unwrap_or_default()
                ),
            };
            if let Some(slot) = got.get_mut(i) {
                *slot = Some(outcome);
            }
        }
        if o.status.success() && got.iter().all(Option::is_some) {
            return got.into_iter().map(Option::unwrap).collect();
        }
        last = format!(
            "exit {:?}, {} of {} answers\nstdout: {text}\nstderr: {}",
            o.status.code(),
            got.iter().filter(|g| g.is_some()).count(),
            jobs.len(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    panic!("probing from {from} failed 3 times: {last}");
}

fn mark(allowed: bool) -> char {
    if allowed {
        '.'
    } else {
        'X'
    }
}

/// Upstream-style truth tables (rows: from, columns: to) of every
/// port/protocol/path that has a wrong entry: expected | observed | wrong.
fn grids(net: &Net, probes: &[Probe], want: &[bool], seen: &[Outcome]) -> String {
    let at: BTreeMap<Probe, usize> = probes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let peers: Vec<Peer> = net.members.iter().map(|m| m.peer).collect();
    let header: String = peers.iter().map(|p| format!("{p:>4}")).collect();
    let wrong = |i: usize| want[i] != seen[i].allowed;
    let mut out = String::new();
    for via in [Via::Pod, Via::Service] {
        for port in PORTS {
            for proto in PROTOCOLS {
                let cell = |from: Peer, to: Peer| {
                    at.get(&Probe {
                        from,
                        to,
                        port,
                        proto,
                        via,
                    })
                    .copied()
                };
                let any = peers
                    .iter()
                    .any(|&f| peers.iter().any(|&t| cell(f, t).is_some_and(wrong)));
                if !any {
                    continue;
                }
                out += &format!(
                    "\n{port}/{} to {}: expected | observed | wrong   (. allowed, X blocked, ! wrong, - not probed)\n",
                    proto.name(),
                    via.name()
                );
                out += &format!("    {header} |{header} |{header}\n");
                for &from in &peers {
                    let mut row = format!("{from:<4}");
                    for grid in 0..3 {
                        if grid > 0 {
                            row += " |";
                        }
                        for &to in &peers {
                            let c = match cell(from, to) {
                                None => '-',
                                Some(i) => match grid {
                                    0 => mark(want[i]),
                                    1 => mark(seen[i].allowed),
                                    _ if wrong(i) => '!',
                                    _ => '.',
                                },
                            };
                            row += &format!("{c:>4}");
                        }
                    }
                    out += &row;
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// What went wrong: the tables, the wrong probes, how to run one by hand,
/// and the state of the pods and policies.
fn report(net: &Net, probes: &[Probe], want: &[bool], seen: &[Outcome]) -> String {
    let mut out = grids(net, probes, want, seen);
    let wrong: Vec<usize> = (0..probes.len())
        .filter(|&i| want[i] != seen[i].allowed)
        .collect();
    out += &format!("\n{} of {} probes wrong:\n", wrong.len(), probes.len());
    for &i in wrong.iter().take(40) {
        let p = &probes[i];
        out += &format!(
            "  {} -> {} {}/{} via {} ({}): expected {}, got {}\n",
            p.from,
            p.to,
            p.port,
            p.proto.name(),
            via_short(p.via),
            net.addr(p),
            if want[i] { "allowed" } else { "blocked" },
            if seen[i].allowed {
                "allowed".to_string()
            } else {
                format!("blocked ({})", seen[i].why)
            }
        );
    }
    if let Some(&i) = wrong.first() {
        let p = &probes[i];
        out += &format!(
            "by hand: kubectl --kubeconfig {} exec -n {} {} -c cont-80 -- weft agnhost connect --timeout={CONNECT_TIMEOUT} --protocol={} {}\n",
            net.c.state.join("kubeconfig").display(),
            p.from.ns,
            p.from.pod,
            p.proto.flag(),
            net.addr(p)
        );
    }
    for args in [
        &["get", "pods", "-A", "-o", "wide"][..],
        &["get", "networkpolicies", "-A"][..],
    ] {
        let o = net.c.kubectl(args);
        out += &format!(
            "\nkubectl {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    out
}

fn via_short(v: Via) -> &'static str {
    match v {
        Via::Pod => "pod IP",
        Via::Service => "ClusterIP",
    }
}

/// The observed table once it matched.
struct Table {
    probes: Vec<Probe>,
    seen: Vec<Outcome>,
}

impl Table {
    /// The error words of the blocked probes (`TIMEOUT` when policy drops).
    fn blocked_reasons(&self) -> BTreeSet<String> {
        self.seen
            .iter()
            .filter(|o| !o.allowed)
            .map(|o| o.why.clone())
            .collect()
    }
}

/// Polls until the cluster's table is `expected`, then looks again (see the
/// module's comment); panics with the tables when it does not get there.
fn expect(net: &Net, what: &str, expected: impl Fn(&Probe) -> bool) -> Table {
    settle(net, what, &expected, true)
}

fn settle(net: &Net, what: &str, expected: &dyn Fn(&Probe) -> bool, confirm: bool) -> Table {
    let probes = net.probes();
    let want: Vec<bool> = probes.iter().map(expected).collect();
    let wrong_in = |seen: &[Outcome]| -> Vec<usize> {
        (0..probes.len())
            .filter(|&i| want[i] != seen[i].allowed)
            .collect()
    };
    let began = Instant::now();
    let mut seen = run_probes(net, &probes);
    let mut passes = 1;
    loop {
        let wrong = wrong_in(&seen);
        if wrong.is_empty() {
            break;
        }
        assert!(
            began.elapsed() < CONVERGE,
            "{what}: the table does not match after {:.1} s ({passes} passes)\n{}",
            began.elapsed().as_secs_f64(),
            report(net, &probes, &want, &seen)
        );
        let again: Vec<Probe> = wrong.iter().map(|&i| probes[i]).collect();
        for (&i, o) in wrong.iter().zip(run_probes(net, &again)) {
            seen[i] = o;
        }
        passes += 1;
    }
    let matched = began.elapsed();
    if confirm {
        // The second look, at the whole table.
        let first_look = Instant::now();
        seen = run_probes(net, &probes);
        for retry in 0..=RETRIES {
            let wrong = wrong_in(&seen);
            if wrong.is_empty() {
                break;
            }
            assert!(
                wrong.iter().all(|&i| want[i]),
                "{what}: the table had matched, but a second look connects where it must not\n{}",
                report(net, &probes, &want, &seen)
            );
            assert!(
                retry < RETRIES,
                "{what}: the table had matched, but a second look (and {RETRIES} retries) is blocked where it must not\n{}",
                report(net, &probes, &want, &seen)
            );
            let again: Vec<Probe> = wrong.iter().map(|&i| probes[i]).collect();
            for (&i, o) in wrong.iter().zip(run_probes(net, &again)) {
                seen[i] = o;
            }
        }
        eprintln!(
            "{what}: matched after {:.1} s ({passes} passes), confirmed in {:.1} s; {} of {} probes blocked",
            matched.as_secs_f64(),
            first_look.elapsed().as_secs_f64(),
            want.iter().filter(|w| !**w).count(),
            probes.len()
        );
    } else {
        eprintln!(
            "{what}: matched after {:.1} s ({passes} passes)",
            matched.as_secs_f64()
        );
    }
    Table { probes, seen }
}

/// The end of a check: its policies deleted, everything reachable again.
fn finish(net: &Net) {
    net.delete_policies();
    settle(net, "after deleting the check's policies", &|_| true, false);
}

/// The smallest CIDR that holds every model pod's IP.
fn covering_cidr(net: &Net) -> String {
    let ips: Vec<u32> = net
        .members
        .iter()
        .map(|m| u32::from(m.ip.parse::<Ipv4Addr>().expect("an IPv4 pod IP")))
        .collect();
    let diff = ips.iter().fold(0u32, |acc, ip| acc | (ip ^ ips[0]));
    let len = diff.leading_zeros();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    format!("{}/{len}", Ipv4Addr::from(ips[0] & mask))
}

/// x/a admits x/b only.
const X_A_ALLOWS_X_B: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-a-allows-x-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
"#;

const DENY_INGRESS_X: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#;

// ---------------------------------------------------------------- checks

/// Upstream: the model's set-up (initializeCluster waits until every pod
/// reaches every other pod before a case runs).
fn everything_is_reachable_without_policies(net: &Net) {
    expect(net, "no policies", |_| true);
}

/// Upstream: "should support a 'default-deny-ingress' policy" (TCP, and the
/// UDP variant).
fn default_deny_ingress_isolates_a_namespace(net: &Net) {
    net.apply(DENY_INGRESS_X);
    expect(net, "default-deny ingress in x", |p| p.to.ns != "x");
    finish(net);
}

/// Upstream: "should support allow-all policy" and "should enforce multiple
/// ingress policies with ingress allow-all policy taking precedence".
fn an_allow_all_ingress_policy_takes_precedence(net: &Net) {
    net.apply(DENY_INGRESS_X);
    expect(net, "default-deny ingress in x", |p| p.to.ns != "x");
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - {}
"#,
    );
    expect(net, "default-deny and allow-all ingress in x", |_| true);
    finish(net);
}

/// Upstream: "should deny egress from all pods in a namespace" (no DNS rule
/// needed: the probes dial IPs).
fn default_deny_egress_isolates_a_namespace(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
"#,
    );
    expect(net, "default-deny egress in x", |p| p.from.ns != "x");
    finish(net);
}

/// Upstream: "should enforce policy to allow traffic from pods within server
/// namespace based on PodSelector": a podSelector alone selects in the
/// policy's own namespace (y/b is not x/b).
fn a_pod_selector_admits_pods_of_its_own_namespace(net: &Net) {
    net.apply(X_A_ALLOWS_X_B);
    expect(net, "x/a admits x/b", |p| {
        !p.to.is("x/a") || p.from.is("x/b")
    });
    finish(net);
}

/// `weft flows` (issue 16) after real probes under a default deny and an
/// allowing policy: the allowed connection x/b → x/a comes from conntrack
/// with the allowing policy read from the connection mark, the denied
/// ones to x/a from NFLOG with the policy whose deny chain dropped them;
/// the agents count both per policy; nothing was lost. The same probes
/// with no policy give allowed flows with no policy named (paired negative:
/// the names come from the policies, not from the flow log itself).
fn flows_name_the_allowing_and_the_denying_policy(net: &Net) {
    net.apply(DENY_INGRESS_X);
    net.apply(X_A_ALLOWS_X_B);
    expect(net, "x/a admits only x/b, the rest of x is closed", |p| {
        p.to.ns != "x" || p.from.is("x/b") && p.to.is("x/a")
    });
    let rows_of = |out: &str| -> Vec<Value> {
        let doc: Value = serde_json::from_str(out).expect("weft flows -o json is JSON");
        doc["flows"].as_array().cloned().unwrap_or_default()
    };
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = || -> Option<(Value, Value, Value)> {
        let out = net
            .c
            .weft(&["flows", "-n", "x", "--pod", "a", "-o", "json"]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return None;
        }
        let rows = rows_of(&String::from_utf8_lossy(&out.stdout));
        let allowed = rows.iter().find(|r| {
            r["verdict"] == "allowed"
                && r["src_pod"] == "x/b"
                && r["dst_pod"] == "x/a"
                && r["ingress_policy"] == "x/x-a-allows-x-b"
        })?;
        let denied = rows.iter().find(|r| {
            r["verdict"] == "denied"
                && r["dst_pod"] == "x/a"
                && r["src_pod"] != "x/b"
                && r["ingress_policy"] == "x/deny-ingress"
        })?;
        let doc: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).ok()?;
        Some((allowed.clone(), denied.clone(), doc["lost"].clone()))
    };
    let (allowed, denied, lost) = loop {
        if let Some(found) = attempt() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "weft flows never showed both flows; last answer:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for r in [&allowed, &denied] {
        // The probes are TCP and UDP.
        assert!(r["proto"] == "TCP" || r["proto"] == "UDP", "{r}");
        assert!(
            r["nodes"].as_str().is_some_and(|n| n.starts_with("node-")),
            "{r}"
        );
    }
    // What the bounded logs lost is counted per node (the probes of the
    // checks before this one may have filled them).
    let lost = lost.as_object().expect("lost per node");
    assert_eq!(lost.len(), 2, "{lost:?}");
    for (node, l) in lost {
        assert!(l["bound"].is_u64() && l["kernel"].is_u64(), "{node}: {l}");
    }
    // The table names the policies too, and says what was lost.
    let table = net.c.ok(&["flows", "-n", "x", "--verdict", "denied"]);
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    assert!(
        table.contains("DENIED") && table.contains("ingress x/deny-ingress"),
        "{table}"
    );
    assert!(!table.contains("ALLOWED"), "--verdict denied: {table}");
    assert_lost_footer(&table);
    // Prometheus: the agents count flows per policy and verdict.
    let metrics = agents_metrics(net);
    assert!(
        metrics.contains(r#"weft_agent_flows_total{verdict="denied",policy="x/deny-ingress"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"weft_agent_flows_total{verdict="allowed",policy="x/x-a-allows-x-b"}"#),
        "{metrics}"
    );
    // -f: a new connection shows up in a running `weft flows -f`.
    let a_ip = net.kubectl_ok(&[
        "get",
        "pod",
        "-n",
        "x",
        "a",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let mut follow = Command::new(WEFT)
        .args([
            "--name",
            &net.c.name,
            "flows",
            "-f",
            "-o",
            "json",
            "-n",
            "x",
        ])
        .args(["--verdict", "allowed", "--pod", "a"])
        .env("WEFT_STATE_DIR", &net.c.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weft flows -f");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    net.kubectl_ok(&[
        "exec",
        "-n",
        "x",
        "b",
        "--",
        "weft",
        "agnhost",
        "connect",
        "--timeout=1s",
        &format!("{}:80", a_ip.trim()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let followed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "weft flows -f printed no new x/b → x/a flow: {seen:#?}"
        );
        let Ok(line) = rx.recv_timeout(left) else {
            continue;
        };
        let r: Value = serde_json::from_str(&line).expect("one JSON record per line");
        if r["src_pod"] == "x/b" && r["dst_pod"] == "x/a" && r["time_ms"].as_u64() >= Some(since) {
            break r;
        }
        seen.push(r);
    };
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(followed["ingress_policy"], "x/x-a-allows-x-b", "{followed}");
    finish(net);
    // Without policies (finish probed again), new flows name no policy.
    let rows = rows_of(
        &net.c
            .ok(&["flows", "-n", "x", "--since", "10s", "-o", "json"]),
    );
    assert!(!rows.is_empty(), "no flows after the probes");
    assert!(
        rows.iter().any(|r| r["verdict"] == "allowed"
            && r.get("ingress_policy").is_none()
            && r.get("egress_policy").is_none()),
        "{rows:?}"
    );
}

/// Every node's agent metrics, concatenated.
fn agents_metrics(net: &Net) -> String {
    let mut all = String::new();
    for node in ["node-1", "node-2"] {
        let out = net.c.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
        ]);
        let ip = String::from_utf8_lossy(&out.stdout).into_owned();
        let url = format!("http://{}:9101/metrics", ip.trim());
        all += &net
            .c
            .ok(&["exec", "--node", node, "--", "curl", "-sS", "-m", "5", &url]);
    }
    all
}

/// Upstream: "should enforce policy to allow traffic only from a different
/// namespace, based on NamespaceSelector" (with the namespace-name label).
fn a_namespace_selector_admits_the_selected_namespaces(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
"#,
    );
    expect(net, "x/a admits namespace y", |p| {
        !p.to.is("x/a") || p.from.ns == "y"
    });
    finish(net);
}

/// Upstream: "should enforce policy based on PodSelector and
/// NamespaceSelector": both selectors in one peer must match.
fn pod_and_namespace_selectors_in_one_peer_must_both_match(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-ns-y-z-pod-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
      podSelector: {matchLabels: {pod: b}}
"#,
    );
    expect(net, "x/a admits pod b of namespaces other than x", |p| {
        !p.to.is("x/a") || (p.from.ns != "x" && p.from.pod == "b")
    });
    finish(net);
}

/// Upstream: "should enforce policy based on PodSelector or
/// NamespaceSelector": two peers, either matches.
fn pod_and_namespace_selectors_as_two_peers_either_matches(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-ns-y-z-or-pod-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
    - podSelector: {matchLabels: {pod: b}}
"#,
    );
    expect(net, "x/a admits namespaces other than x, and x/b", |p| {
        !p.to.is("x/a") || p.from.ns != "x" || p.from.is("x/b")
    });
    finish(net);
}

/// Upstream: "should allow ingress access on one named port"; then the same
/// with a UDP named port (a name resolves per protocol on the target pod).
fn a_named_port_admits_only_that_port_and_protocol(net: &Net) {
    let policy = |port: &str, proto: &str| {
        format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-named-port, namespace: x}}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {{port: {port}{proto}}}
"#
        )
    };
    // No protocol: TCP.
    net.apply(&policy("serve-80-tcp", ""));
    expect(net, "x admits serve-80-tcp only", |p| {
        p.to.ns != "x" || (p.port == 80 && p.proto == Tcp)
    });
    net.apply(&policy("serve-81-udp", ", protocol: UDP"));
    expect(net, "x admits serve-81-udp only", |p| {
        p.to.ns != "x" || (p.port == 81 && p.proto == Udp)
    });
    finish(net);
}

/// Upstream: "should enforce policy based on Ports" with a port range
/// (endPort; upstream checks the field in network_policy_api.go, "should
/// support creating NetworkPolicy API with endport field"). The range is
/// inclusive at both ends and ports outside it stay blocked.
fn an_end_port_admits_a_range_of_ports(net: &Net) {
    let policy = |from: u16, to: u16, proto: &str| {
        format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-port-range, namespace: x}}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {{port: {from}, endPort: {to}, protocol: {proto}}}
"#
        )
    };
    net.apply(&policy(80, 81, "TCP"));
    expect(net, "x admits TCP 80-81", |p| {
        p.to.ns != "x" || p.proto == Tcp
    });
    net.apply(&policy(70, 80, "UDP"));
    expect(net, "x admits UDP 70-80", |p| {
        p.to.ns != "x" || (p.proto == Udp && p.port == 80)
    });
    finish(net);
}

/// Upstream: "should enforce except clause while egress access to server in
/// CIDR block", then "should ensure an IP overlapping both IPBlock.CIDR and
/// IPBlock.Except is allowed", then the same except clause on ingress. The
/// CIDR is the smallest that holds every pod IP; the except is one pod's /32.
/// Through a Service the policy sees the pod IP the ClusterIP was
/// translated to.
fn an_ip_block_admits_its_cidr_except_the_excepted(net: &Net) {
    let cidr = covering_cidr(net);
    let x_b = &net.member(Peer { ns: "x", pod: "b" }).ip;
    let z_c = &net.member(Peer { ns: "z", pod: "c" }).ip;
    net.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: x-a-egress-cidr-except-x-b, namespace: x}}
spec:
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {{cidr: "{cidr}", except: ["{x_b}/32"]}}
"#
    ));
    expect(net, &format!("x/a egress to {cidr} except {x_b}/32"), |p| {
        !(p.from.is("x/a") && p.to.is("x/b"))
    });
    net.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: x-a-egress-x-b, namespace: x}}
spec:
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {{cidr: "{x_b}/32"}}
"#
    ));
    expect(net, "x/a egress also to x/b's /32", |_| true);
    net.delete_policies();
    net.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: x-a-ingress-cidr-except-z-c, namespace: x}}
spec:
  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - ipBlock: {{cidr: "{cidr}", except: ["{z_c}/32"]}}
"#
    ));
    expect(
        net,
        &format!("x/a ingress from {cidr} except {z_c}/32"),
        |p| !(p.to.is("x/a") && p.from.is("z/c")),
    );
    finish(net);
}

/// Upstream: "should enforce egress policy allowing traffic to a server in a
/// different namespace based on PodSelector and NamespaceSelector", with a
/// port (as "should allow egress access on one named port" restricts one).
/// The policy has no policyTypes: the API's default applies — Ingress
/// always, Egress as it has egress rules — so x/a is ingress-isolated too.
fn egress_to_a_pod_selector_on_one_port(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-a-egress-to-y-b-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
      podSelector: {matchLabels: {pod: b}}
    ports:
    - {port: 81, protocol: TCP}
"#,
    );
    expect(
        net,
        "x/a reaches y/b on 81/TCP only, and admits nothing",
        |p| {
            !p.to.is("x/a")
                && (!p.from.is("x/a") || (p.to.is("y/b") && p.port == 81 && p.proto == Tcp))
        },
    );
    finish(net);
}

/// Upstream: "should deny ingress access to updated pod": the policy selects
/// a label no pod has; labelling x/b isolates it, removing the label
/// restores it.
fn a_pod_relabelled_into_a_policy_is_isolated(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress-via-label-selector, namespace: x}
spec:
  podSelector: {matchLabels: {target: isolated}}
  policyTypes: [Ingress]
"#,
    );
    expect(net, "no pod has target=isolated", |_| true);
    net.label("x/b", "target=isolated");
    expect(net, "x/b labelled target=isolated", |p| !p.to.is("x/b"));
    net.label("x/b", "target-");
    expect(net, "x/b's label removed", |_| true);
    finish(net);
}

/// Upstream: "should allow ingress access from updated pod": x/a admits pods
/// labelled pod=b,pod2=updated; labelling x/b admits it, removing the label
/// blocks it again.
fn a_peer_relabelled_into_a_selector_is_admitted(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client-a-via-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b, pod2: updated}}
"#,
    );
    expect(net, "no pod has pod2=updated", |p| !p.to.is("x/a"));
    net.label("x/b", "pod2=updated");
    expect(net, "x/b labelled pod2=updated", |p| {
        !p.to.is("x/a") || p.from.is("x/b")
    });
    net.label("x/b", "pod2-");
    expect(net, "x/b's label removed", |p| !p.to.is("x/a"));
    finish(net);
}

/// Upstream: "should enforce updated policy" (allow-all edited into
/// deny-all) and "should stop enforcing policies after they are deleted".
fn an_updated_and_a_deleted_policy_take_effect(net: &Net) {
    let allow_all = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-mutate-to-deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - {}
"#;
    net.apply(allow_all);
    expect(net, "allow-all ingress in x", |_| true);
    net.apply(&allow_all.replace("  ingress:\n  - {}\n", ""));
    expect(net, "the policy edited into deny-all", |p| p.to.ns != "x");
    net.delete_policy("x", "allow-all-mutate-to-deny-all");
    expect(net, "the policy deleted", |_| true);
}

/// A `kubectl exec` started by a check, killed (by its pid) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One UDP socket per target, each kept (same source port) for the whole
/// run, sending a datagram every 100 ms and printing one line per round:
/// `ok` or `lost` per target. Bounded: 40 s.
const UDP_FLOWS: &str = r#"
import socket, sys, time
socks = []
for a in sys.argv[1:]:
    h, p = a.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.connect((h, int(p)))
    socks.append(s)
end = time.time() + 40
while time.time() < end:
    seen = []
    for s in socks:
        try:
            s.send(b"flow\n")
            s.recv(512)
            seen.append("ok")
        except OSError:
            seen.append("lost")
    print(" ".join(seen), flush=True)
    time.sleep(0.1)
"#;

/// Not upstream's (its probes are new connections): a UDP flow that keeps
/// talking — to the pod IP and through the ClusterIP, one socket each — is
/// cut once a policy edit denies it, although conntrack knows it as
/// established (weft deletes the entries of UDP flows a change denies).
fn an_established_udp_flow_is_cut_by_a_policy_that_denies_it(net: &Net) {
    let to = net.member(Peer { ns: "x", pod: "b" });
    // What x/b's node's agent has deleted so far (earlier checks' probes
    // count too).
    let node = net.kubectl_ok(&[
        "get",
        "pod",
        "-n",
        "x",
        "b",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    let deleted = || {
        let out = net.c.weft(&[
            "exec",
            "--node",
            &node,
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:9101/metrics",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("weft_agent_policy_conntrack_deleted_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let before = deleted().expect("x/b's agent serves weft_agent_policy_conntrack_deleted_total");
    let kubeconfig = net.c.state.join("kubeconfig");
    let child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "exec", "-n", "y", "b", "-c", "cont-80", "--", "python3", "-c", UDP_FLOWS,
        ])
        .arg(format!("{}:80", to.ip))
        .arg(format!("{}:80", to.service_ip))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl exec");
    let mut flows = Running(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = flows.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Lines until `done` says stop, or `secs` pass (then what was seen).
    let read_until = |secs: u64, done: &mut dyn FnMut(&str) -> bool| -> Result<(), Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if done(&line) {
                        return Ok(());
                    }
                    seen.push(line);
                }
                Err(_) => break,
            }
        }
        Err(seen)
    };
    // Both flows answered: conntrack has them, established.
    if let Err(seen) = read_until(30, &mut |l| l == "ok ok") {
        panic!(
            "the UDP flows from y/b to x/b never both answered before any policy; lines: {seen:?}\nstderr: {}",
            {
                let _ = flows.0.kill();
                let mut e = String::new();
                let _ = std::io::Read::read_to_string(flows.0.stderr.as_mut().unwrap(), &mut e);
                e
            }
        );
    }
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#,
    );
    let started = Instant::now();
    // Cut: three rounds in a row where neither flow gets an answer.
    let mut lost_in_a_row = 0;
    if let Err(seen) = read_until(15, &mut |l| {
        lost_in_a_row = if l == "lost lost" {
            lost_in_a_row + 1
        } else {
            0
        };
        lost_in_a_row == 3
    }) {
        let tail = &seen[seen.len().saturating_sub(10)..];
        panic!("the established UDP flows from y/b to x/b still pass 15 s after deny-all in x; last rounds: {tail:?}");
    }
    println!(
        "established UDP flows cut {:.1} s after deny-all was applied",
        started.elapsed().as_secs_f64()
    );
    drop(flows);
    // The cut was the agent's deletion on x/b's node: both flows' entries
    // there (to the pod IP, and the ClusterIP flow after its DNAT on y/b's
    // node).
    wait_until(
        "x/b's agent counting the flows' deleted conntrack entries",
        10,
        || deleted().is_some_and(|n| n >= before + 2),
    );
    finish(net);
}

/// Upstream: "should not allow access by TCP when a policy specifies only
/// UDP" (here on the whole table: only 81/UDP reaches x/a).
fn a_udp_only_port_rule_does_not_admit_tcp(net: &Net) {
    net.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-only-udp-ingress-on-port-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {port: 81, protocol: UDP}
"#,
    );
    expect(net, "x/a admits 81/UDP only", |p| {
        !p.to.is("x/a") || (p.port == 81 && p.proto == Udp)
    });
    finish(net);
}

/// A child process, killed when dropped (also when the check fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A probe loop in a model pod against one address: each round tries 80
/// and 81, TCP and UDP, at once and prints `<round> <proto>:<port> <exit>
/// <error word>` per probe, then `round <n>`.
struct Prober {
    from: Peer,
    child: Option<KillOnDrop>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(net: &Net, from: Peer, ip: &str) -> Prober {
        let script = format!(
            "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); \
             for t in tcp:80 udp:80 tcp:81 udp:81; do \
             (out=$(weft agnhost connect --timeout={CONNECT_TIMEOUT} --protocol=${{t%%:*}} {ip}:${{t#*:}} 2>&1); \
             echo \"$i $t $? ${{out%%:*}}\") & done; wait; echo \"round $i\"; done"
        );
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(net.c.state.join("kubeconfig"))
            .args(["exec", "-n", from.ns, from.pod, "-c", "cont-80", "--"])
            .args(["sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl exec");
        let stdout = child.stdout.take().expect("kubectl's stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Prober {
            from,
            child: Some(KillOnDrop(child)),
            lines,
            reader: Some(reader),
        }
    }

    fn rounds(&self) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("round "))
            .count()
    }

    fn ended(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| !matches!(c.0.try_wait(), Ok(None)))
    }

    /// Ends the loop and returns every line it printed.
    fn stop(mut self) -> Vec<String> {
        drop(self.child.take());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// No upstream case: a pod started into a default-deny namespace must be
/// unreachable from its first packet. Four pods (all of y, and x/b) probe
/// it as soon as its IP shows in its status, until three rounds after it is
/// Ready (its readiness probe starts 2 s late, so it serves unready for a
/// while too). Any connection is a leak; when this datapath drops denied
/// packets (a blocked probe times out), so is any answer other than a
/// timeout, e.g. a refusal before the server listens. Afterwards, with the
/// policy deleted, the pod must be reachable: the probes could have seen it.
fn a_pod_started_into_a_default_deny_namespace_is_never_reachable(net: &Net) {
    net.apply(DENY_INGRESS_X);
    let table = expect(net, "default-deny ingress in x", |p| p.to.ns != "x");
    let reasons = table.blocked_reasons();
    let drops = reasons.iter().all(|w| w == "TIMEOUT");
    eprintln!(
        "denied probes here end with {reasons:?} ({} probes)",
        table.probes.len()
    );
    net.apply(&pod_manifest("x", "late", 2));
    let mut ip = String::new();
    wait_until("x/late has an IP in its status", 60, || {
        let o = net.c.kubectl(&[
            "get",
            "pod",
            "-n",
            "x",
            "late",
            "-o",
            "jsonpath={.status.podIP}",
        ]);
        ip = String::from_utf8_lossy(&o.stdout).trim().to_string();
        !ip.is_empty()
    });
    let ip_at = Instant::now();
    let sources = [("y", "a"), ("y", "b"), ("y", "c"), ("x", "b")];
    let mut probers: Vec<Prober> = sources
        .iter()
        .map(|&(ns, pod)| Prober::start(net, Peer { ns, pod }, &ip))
        .collect();
    wait_until("x/late Ready under default-deny ingress", 120, || {
        let o = net
            .c
            .kubectl(&["get", "pod", "-n", "x", "late", "-o", "json"]);
        serde_json::from_slice::<Value>(&o.stdout).is_ok_and(|p| is_ready(&p))
    });
    let ready_after = ip_at.elapsed();
    let at_ready: Vec<usize> = probers.iter().map(Prober::rounds).collect();
    wait_until("3 probe rounds after x/late is Ready", 60, || {
        probers
            .iter_mut()
            .zip(&at_ready)
            .all(|(p, &r)| p.rounds() >= r + 3 || p.ended())
    });
    let mut leaks = Vec::new();
    let mut probes = 0;
    for (p, before) in probers.into_iter().zip(at_ready) {
        let from = p.from;
        let lines = p.stop();
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [round, target, code, rest @ ..] = words.as_slice() else {
                continue;
            };
            if *round == "round" {
                continue;
            }
            probes += 1;
            let why = rest.first().copied().unwrap_or("");
            match *code {
                "0" => leaks.push(format!(
                    "{from} -> {ip} {target} (round {round}): connected"
                )),
                "1" if drops && why != "TIMEOUT" => {
                    leaks.push(format!("{from} -> {ip} {target} (round {round}): {why}"))
                }
                "1" => {}
                other => panic!("agnhost connect in {from} exited {other}: {line}"),
            }
        }
        eprintln!(
            "{from}: {} rounds, {before} before x/late was Ready",
            lines.iter().filter(|l| l.starts_with("round ")).count()
        );
    }
    eprintln!(
        "x/late ({ip}) was Ready {:.1} s after its IP showed; {probes} probes",
        ready_after.as_secs_f64()
    );
    assert!(probes > 0, "no probe ran against x/late");
    assert!(
        leaks.is_empty(),
        "x/late, started into default-deny namespace x, was reachable:\n{}",
        leaks.join("\n")
    );
    net.delete_policies();
    wait_until(
        "x/late reachable from y/a once the policy is gone",
        30,
        || {
            ["tcp", "udp"].iter().all(|proto| {
                net.c
                    .kubectl(&[
                        "exec",
                        "-n",
                        "y",
                        "a",
                        "-c",
                        "cont-80",
                        "--",
                        "weft",
                        "agnhost",
                        "connect",
                        "--timeout=1s",
                        &format!("--protocol={proto}"),
                        &format!("{ip}:80"),
                    ])
                    .status
                    .success()
            })
        },
    );
    net.kubectl_ok(&["delete", "pod", "-n", "x", "late"]);
    settle(net, "after deleting x/late", &|_| true, false);
}

/// Every IPv4 address in `s` as `IP` (addresses vary between runs).
fn mask_ips(s: &str) -> String {
    s.split_inclusive([' ', '(', ')', '\n'])
        .map(|w| {
            let core = w.trim_end_matches([' ', '(', ')', '\n']);
            if core.parse::<Ipv4Addr>().is_ok() {
                w.replacen(core, "IP", 1)
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// The output the README shows for `$ COMMAND` (the lines after it, up to
/// the next prompt or the end of its code block).
fn readme_output(command: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("$ {command}\n"))
        .unwrap_or_else(|| panic!("README shows no `$ {command}`"));
    let rest = &readme[start + command.len() + 3..];
    let end = rest
        .find("\n$ ")
        .map(|i| i + 1)
        .into_iter()
        .chain(rest.find("```"))
        .min()
        .unwrap();
    rest[..end].to_string()
}

/// The README's NetworkPolicy example (examples/netpol.yaml): its `kubectl
/// get netpol` and both `weft explain` outputs are what the cluster prints
/// (addresses and ages aside), the explained verdicts are the kernel's
/// (api reaches db, web does not), and a denied explanation exits 1.
fn netpol_readme_example_explains_an_allowed_and_a_denied_connection(net: &Net) {
    let example = repo_root().join("examples/netpol.yaml");
    let example = example.to_str().unwrap();
    net.kubectl_ok(&["apply", "-f", example]);
    wait_until("the shop pods Ready", 120, || {
        let out = net.c.kubectl(&["get", "pods", "-n", "shop", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3 && items.iter().all(is_ready)
    });
    let get = net.kubectl_ok(&["get", "netpol", "-n", "shop"]);
    let want = readme_output("kubectl get netpol -n shop");
    let cells = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| {
                let mut w: Vec<String> = l.split_whitespace().map(String::from).collect();
                w.pop(); // AGE
                w
            })
            .collect()
    };
    assert_eq!(cells(&get), cells(&want), "kubectl get netpol:\n{get}");
    let weft_get = net.c.ok(&["get", "netpol", "-n", "shop"]);
    assert_eq!(
        cells(&weft_get),
        cells(&want),
        "weft get netpol:\n{weft_get}"
    );
    let ip = |pod: &str| {
        net.kubectl_ok(&[
            "get",
            "pod",
            "-n",
            "shop",
            pod,
            "-o",
            "jsonpath={.status.podIP}",
        ])
    };
    for (from, allowed) in [("api", true), ("web", false)] {
        let command = format!("weft explain --from shop/{from} --to shop/db --port 5432/TCP");
        let out = net.c.weft(&[
            "explain",
            "--from",
            &format!("shop/{from}"),
            "--to",
            "shop/db",
            "--port",
            "5432/TCP",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(if allowed { 0 } else { 1 }),
            "{text}"
        );
        assert_eq!(
            mask_ips(&text),
            mask_ips(&readme_output(&command)),
            "`{command}` prints what the README shows"
        );
        // The kernel agrees with the explanation.
        let probe = net.c.kubectl(&[
            "exec",
            "-n",
            "shop",
            from,
            "--",
            "weft",
            "agnhost",
            "connect",
            "--timeout=1s",
            &format!("{}:5432", ip("db")),
        ]);
        assert_eq!(
            probe.status.success(),
            allowed,
            "shop/{from} → shop/db:5432: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    // Both connections are counted on db's node, per policy (the agent
    // reads the kernel's counters every 5 s).
    let node = net.kubectl_ok(&[
        "get",
        "pod",
        "-n",
        "shop",
        "db",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    let series = |verdict: &str| {
        format!(
            "weft_agent_policy_packets{{policy=\"shop/db-from-api\",direction=\"ingress\",verdict=\"{verdict}\"}} "
        )
    };
    let mut metrics = String::new();
    wait_until("the agent's per-policy packet counts", 30, || {
        let out = net.c.weft(&[
            "exec",
            "--node",
            &node,
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:9101/metrics",
        ]);
        metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        ["allowed", "denied"].iter().all(|v| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(series(v).as_str()))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n >= 1)
        })
    });
    // `weft flows` shows both connections with the policies that decided
    // them, as the README does (times, addresses and ports aside).
    let command = "weft flows -n shop --pod db";
    let want: Vec<[String; 3]> = readme_output(command)
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("lost:"))
        .map(flow_key)
        .collect();
    assert!(!want.is_empty(), "README shows rows of `{command}`");
    let mut flows = String::new();
    wait_until("weft flows shows the README's rows", 30, || {
        flows = net.c.ok(&["flows", "-n", "shop", "--pod", "db"]);
        let seen: Vec<[String; 3]> = flows.lines().skip(1).map(flow_key).collect();
        want.iter().all(|w| seen.contains(w))
    });
    eprintln!("{command}:\n{flows}");
    assert!(flows.starts_with("TIME (UTC)"), "{flows}");
    assert_lost_footer(&flows);
    net.kubectl_ok(&[
        "delete",
        "-f",
        example,
        "--wait=false",
        "--ignore-not-found",
    ]);
}

/// A `weft flows` table ends with what its logs lost: `lost: none`, or a
/// line per node that lost records.
fn assert_lost_footer(table: &str) {
    let last = table.trim_end().lines().last().unwrap_or("");
    assert!(
        last == "lost: none"
            || (last.starts_with("node-") && last.contains(" records lost to the log's bound, ")),
        "{table}"
    );
}

/// (verdict, source pod, destination pod + policy) of a `weft flows` table
/// line: what does not vary between runs (nodes do, with scheduling).
fn flow_key(line: &str) -> [String; 3] {
    let cells: Vec<&str> = line
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let pod = |c: &str| c.split(" (").next().unwrap_or("").to_string();
    let get = |i: usize| cells.get(i).copied().unwrap_or("");
    [
        get(2).to_string(),
        pod(get(4)),
        format!("{} | {}", pod(get(5)), get(6)),
    ]
}

/// After a failed check: its policies, labels and pod gone (best effort; the
/// next check polls its table anyway).
fn reset(net: &Net) {
    for ns in NAMESPACES {
        let _ = net
            .c
            .kubectl(&["delete", "networkpolicy", "--all", "-n", ns]);
        let _ = net
            .c
            .kubectl(&["label", "pods", "--all", "-n", ns, "target-", "pod2-"]);
    }
    let _ = net
        .c
        .kubectl(&["delete", "pod", "-n", "x", "late", "--ignore-not-found"]);
}

/// A check against the shared cluster.
type Check = fn(&Net);

const CHECKS: &[(&str, Check)] = &[
    (
        "everything_is_reachable_without_policies",
        everything_is_reachable_without_policies,
    ),
    (
        "default_deny_ingress_isolates_a_namespace",
        default_deny_ingress_isolates_a_namespace,
    ),
    (
        "an_allow_all_ingress_policy_takes_precedence",
        an_allow_all_ingress_policy_takes_precedence,
    ),
    (
        "default_deny_egress_isolates_a_namespace",
        default_deny_egress_isolates_a_namespace,
    ),
    (
        "a_pod_selector_admits_pods_of_its_own_namespace",
        a_pod_selector_admits_pods_of_its_own_namespace,
    ),
    (
        "a_namespace_selector_admits_the_selected_namespaces",
        a_namespace_selector_admits_the_selected_namespaces,
    ),
    (
        "pod_and_namespace_selectors_in_one_peer_must_both_match",
        pod_and_namespace_selectors_in_one_peer_must_both_match,
    ),
    (
        "pod_and_namespace_selectors_as_two_peers_either_matches",
        pod_and_namespace_selectors_as_two_peers_either_matches,
    ),
    (
        "a_named_port_admits_only_that_port_and_protocol",
        a_named_port_admits_only_that_port_and_protocol,
    ),
    (
        "flows_name_the_allowing_and_the_denying_policy",
        flows_name_the_allowing_and_the_denying_policy,
    ),
    (
        "an_end_port_admits_a_range_of_ports",
        an_end_port_admits_a_range_of_ports,
    ),
    (
        "an_ip_block_admits_its_cidr_except_the_excepted",
        an_ip_block_admits_its_cidr_except_the_excepted,
    ),
    (
        "egress_to_a_pod_selector_on_one_port",
        egress_to_a_pod_selector_on_one_port,
    ),
    (
        "a_pod_relabelled_into_a_policy_is_isolated",
        a_pod_relabelled_into_a_policy_is_isolated,
    ),
    (
        "a_peer_relabelled_into_a_selector_is_admitted",
        a_peer_relabelled_into_a_selector_is_admitted,
    ),
    (
        "an_updated_and_a_deleted_policy_take_effect",
        an_updated_and_a_deleted_policy_take_effect,
    ),
    (
        "an_established_udp_flow_is_cut_by_a_policy_that_denies_it",
        an_established_udp_flow_is_cut_by_a_policy_that_denies_it,
    ),
    (
        "a_udp_only_port_rule_does_not_admit_tcp",
        a_udp_only_port_rule_does_not_admit_tcp,
    ),
    (
        "a_pod_started_into_a_default_deny_namespace_is_never_reachable",
        a_pod_started_into_a_default_deny_namespace_is_never_reachable,
    ),
    (
        "netpol_readme_example_explains_an_allowed_and_a_denied_connection",
        netpol_readme_example_explains_an_allowed_and_a_denied_connection,
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
    let net = (wanted && root_or_skip("netpol")).then(|| Arc::new(start()));
    let trials = CHECKS
        .iter()
        .map(|&(name, check)| {
            let net = net.clone();
            Trial::test(name, move || match net {
                Some(net) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&net)))
                    .map_err(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".into());
                        reset(&net);
                        Failed::from(format!("{msg}\n{}", net.c.log_tails()))
                    }),
                None => Ok(()),
            })
        })
        .collect();
    // One cluster: one check at a time.
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials held the other references: this drop is `weft down`.
    drop(net);
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}
