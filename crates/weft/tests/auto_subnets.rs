//! The `auto` backend on a fabric of two subnets (`weft up --subnets 2`):
//! node-1 and node-2 share 192.168.1.0/24, node-3 is alone on
//! 192.168.2.0/24 behind the fabric's router. A pod on node-1 reaches its
//! same-subnet peer by a direct route via the node IP (the bare pod
//! addresses are on the wire, no VXLAN), and its other-subnet peer over
//! VXLAN (UDP 4789 carrying the pod addresses) — seen with tcpdump on the
//! fabric ports of the receiving nodes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// One netexec pod per node.
const PODS: &[(&str, &str)] = &[("a", "node-1"), ("b", "node-2"), ("c", "node-3")];

fn manifest() -> String {
    PODS.iter()
        .map(|(name, node)| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: net}}\nspec:\n  nodeName: {node}\n  \
                 containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    \
                 args: [netexec, --http-port=8080, --udp-port=8081]\n    readinessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    pods(c)
        .iter()
        .find(|p| field(p, "/metadata/name") == name)
        .map(|p| field(p, "/status/podIP").to_string())
        .unwrap_or_default()
}

/// netexec /dial from pod IP `from` to pod IP `to` (asked from node-1).
fn dial(c: &Cluster, from: &str, to: &str) -> Value {
    let url = format!(
        "http://{from}:8080/dial?request=hostname&protocol=http&host={to}&port=8080&tries=1"
    );
    let script = format!("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=10).read().decode())");
    let out = c.ok(&["exec", "--node", "node-1", "--", "python3", "-c", &script]);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("dial {from} → {to}: not JSON: {out}"))
}

/// The line of node-1's `ip route` for `cidr`.
fn route_line(c: &Cluster, cidr: &str) -> String {
    c.ok(&["exec", "--node", "node-1", "--", "ip", "route"])
        .lines()
        .find(|l| l.starts_with(cidr))
        .unwrap_or_default()
        .to_string()
}

/// tcpdump on one interface of the fabric namespace, started by this test
/// (pid kept to stop it), its output collected line by line.
struct Capture {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: mpsc::Receiver<String>,
}

impl Capture {
    /// Starts tcpdump and returns once it says it is listening.
    fn start(c: &Cluster, interface: &str, filter: &str) -> Capture {
        let fabric = weft_linux::Netns::open(format!("/run/netns/weft-{}-fabric", c.name))
            .expect("open the fabric namespace");
        let mut cmd = Command::new("tcpdump");
        cmd.args(["-nn", "-l", "-i", interface])
            .args(filter.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        fabric.enter_before_exec(&mut cmd);
        let mut child = cmd.spawn().expect("run tcpdump (install tcpdump)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("tcpdump stdout");
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("tcpdump stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => continue,
                Err(_) => panic!("tcpdump on {interface} did not start listening"),
            }
        }
        Capture {
            child,
            lines,
            reader: Some(reader),
            stderr,
        }
    }

    /// Waits until the lines printed so far satisfy `want`.
    fn wait_for(&self, what: &str, want: impl Fn(&[String]) -> bool) {
        wait_until(what, 10, || want(&self.lines.lock().unwrap()));
    }

    /// Stops tcpdump (SIGINT, as a user would), checks it exited cleanly
    /// and counted packets, and returns what it printed.
    fn stop(mut self) -> Vec<String> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).expect("signal tcpdump");
        let status = self.child.wait().expect("wait for tcpdump");
        assert!(status.success(), "tcpdump exited with {status}");
        let stats: Vec<String> = self.stderr.iter().collect();
        let captured: u64 = stats
            .iter()
            .find_map(|l| l.strip_suffix(" packets captured")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("tcpdump printed no packet count: {stats:?}"));
        assert!(captured > 0, "tcpdump captured nothing: {stats:?}");
        // The reader ends at EOF, which came with the exit.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("tcpdump reader");
        }
        let lines = self.lines.lock().unwrap().clone();
        assert!(
            !lines.is_empty(),
            "tcpdump counted {captured} packets but printed none"
        );
        lines
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn auto_routes_directly_on_the_subnet_and_tunnels_across_subnets() {
    if !root_or_skip("auto_routes_directly_on_the_subnet_and_tunnels_across_subnets") {
        return;
    }
    let c = Cluster::new("oas");
    let file = std::env::temp_dir().join(format!("{}-pods.yaml", c.name));
    std::fs::write(&file, manifest()).unwrap();
    c.ok(&[
        "up",
        "--nodes",
        "3",
        "--subnets",
        "2",
        "--backend",
        "auto",
        "-f",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);

    // The layout: node-3 is on the second subnet.
    let nodes = c.json(&["get", "nodes", "-o", "json"]);
    let address = |name: &str| -> String {
        nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| field(n, "/metadata/name") == name)
            .and_then(|n| n.pointer("/status/addresses/0/address"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(address("node-2"), "192.168.1.11");
    assert_eq!(address("node-3"), "192.168.2.12");

    let (a, b, cc) = (pod_ip(&c, "a"), pod_ip(&c, "b"), pod_ip(&c, "c"));
    assert!(
        !a.is_empty() && !b.is_empty() && !cc.is_empty(),
        "{a} {b} {cc}"
    );

    // node-1's routes: via node-2's IP directly, node-3 through the tunnel.
    wait_until("node-1's routes to both peers", 20, || {
        route_line(&c, "10.244.1.0/24").contains("via 192.168.1.11 dev eth0")
            && route_line(&c, "10.244.2.0/24").contains("dev weft.vxlan")
    });

    // Same subnet: the bare pod addresses reach node-2's port, no VXLAN does.
    let same = Capture::start(
        &c,
        "n2",
        &format!("(host {a} and host {b}) or udp port 4789"),
    );
    assert_eq!(dial(&c, &a, &b)["responses"][0], "b");
    // (Were any encapsulated, the `udp port 4789` half of the filter would show it.)
    same.wait_for("a packet from pod a to pod b", |lines| {
        lines
            .iter()
            .any(|l| l.contains(&format!(" {a}.")) && l.contains(&format!("> {b}.8080:")))
    });
    let lines = same.stop();
    assert!(
        lines.iter().all(|l| !l.contains("VXLAN")),
        "same-subnet traffic must not be encapsulated: {lines:#?}"
    );

    // Across subnets: VXLAN on UDP 4789 carrying the pod addresses reaches node-3.
    let cross = Capture::start(&c, "n3", "udp port 4789");
    assert_eq!(dial(&c, &a, &cc)["responses"][0], "c");
    // tcpdump prints the outer header's line, then the inner packet's.
    cross.wait_for("VXLAN from node-1 carrying pod a to pod c", |lines| {
        lines.windows(2).any(|w| {
            w[0].contains(" 192.168.1.10.")
                && w[0].contains("> 192.168.2.12.4789: VXLAN")
                && w[1].contains(&format!(" {a}."))
                && w[1].contains(&format!("> {cc}.8080:"))
        })
    });
    let lines = cross.stop();
    assert!(lines.iter().any(|l| l.contains("VXLAN")), "{lines:#?}");

    // And back: node-3's pod reaches the pods on the other subnet.
    assert_eq!(dial(&c, &cc, &a)["responses"][0], "a");
    assert_eq!(dial(&c, &cc, &b)["responses"][0], "b");
}
