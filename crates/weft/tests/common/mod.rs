//! Shared harness of the end-to-end tests: a cluster owned by a test (torn
//! down on drop, also when the test fails) and small helpers to drive it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

pub use weft_linux::testns::root_or_skip;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A cluster owned by the test; `weft down` on drop.
pub struct Cluster {
    pub name: String,
    pub state: PathBuf,
}

impl Cluster {
    pub fn weft(&self, args: &[&str]) -> Output {
        Command::new(WEFT)
            .args(["--name", &self.name])
            .args(args)
            .env("WEFT_STATE_DIR", &self.state)
            .output()
            .expect("run weft")
    }

    /// Runs weft and returns stdout, panicking with both streams on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {}: exit {:?}\nstdout: {}\nstderr: {}\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of every component log (the state dir, logs
    /// included, is gone once the cluster is dropped).
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.state.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {} (last {} lines)\n{}\n",
                f.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("weft printed JSON")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.state.join("kubeconfig"))
            .args(args)
            .output()
            .expect("run kubectl")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.weft(&["down"]);
    }
}

pub fn pods(c: &Cluster) -> Vec<Value> {
    c.json(&["get", "pods", "-A", "-o", "json"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn field<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// netexec's /dial from `from` (a pod name) to host:port over `protocol`, as upstream e2e tests do.
pub fn dial(c: &Cluster, from_ip: &str, to_ip: &str, port: u16, protocol: &str) -> Value {
    let url = format!(
        "http://{from_ip}:8080/dial?request=hostname&protocol={protocol}&host={to_ip}&port={port}&tries=1"
    );
    let script = format!(
        "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=10).read().decode())"
    );
    let out = c.ok(&["exec", "--node", "node-1", "--", "python3", "-c", &script]);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("dial answer is not JSON: {out}"))
}

pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

pub fn kill9(pid: &str) {
    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
}

/// SIGKILL to a process group (a container's: its leader and children).
pub fn kill9_group(leader: &str) {
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{}", leader.trim())])
        .status();
}

/// The pid of the node agent on `node`: the process group leader of the
/// `agent` container of its weft-agent DaemonSet pod (from the node
/// runtime's pid file), if it runs.
pub fn agent_pid(c: &Cluster, node: &str) -> Option<String> {
    let pods = c.state.join("nodes").join(node).join("pods");
    let dir = std::fs::read_dir(pods).ok()?.flatten().find(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("weft-system_weft-agent-")
    })?;
    let text = std::fs::read_to_string(dir.path().join("agent.pid")).ok()?;
    let pid = text.split_whitespace().next()?.to_string();
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn ready_pod_uids(c: &Cluster) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pods(c)
        .iter()
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map(|p| {
            (
                field(p, "/metadata/uid").to_string(),
                field(p, "/status/podIP").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

impl Cluster {
    /// A new cluster name/state for a test (not started yet).
    pub fn new(prefix: &str) -> Cluster {
        let name = format!("{prefix}{}", std::process::id() % 100_000);
        Cluster {
            state: std::env::temp_dir().join(format!("weft-{name}")),
            name,
        }
    }
}

/// What tcpdump saw on the fabric bridge.
pub struct Captured {
    /// tcpdump's packet lines.
    pub text: String,
    pub packets: usize,
    /// It saw all the packets asked for (exit 0) rather than running out of time.
    pub complete: bool,
}

/// Runs tcpdump on the fabric bridge (`filter`, at most `count` packets or
/// `secs` seconds) while `traffic` runs. Waits until tcpdump says it is
/// listening before the traffic starts, and fails unless tcpdump itself ran
/// cleanly: a capture that saw nothing is then a real "nothing on the wire".
pub fn capture(
    c: &Cluster,
    filter: &str,
    count: usize,
    secs: u64,
    traffic: impl FnOnce(),
) -> Captured {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let fabric = format!("weft-{}-fabric", c.name);
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &fabric, "timeout", &secs.to_string()])
        .args([
            "tcpdump",
            "-nn",
            "-l",
            "-c",
            &count.to_string(),
            "-i",
            "fabric0",
        ])
        .args(filter.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump (install tcpdump)");
    let mut stderr = BufReader::new(tcpdump.stderr.take().expect("tcpdump stderr"));
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read tcpdump's stderr");
        said.push_str(&line);
        if line.contains("listening on") {
            break;
        }
        assert!(n > 0, "tcpdump ended before it listened: {said}");
    }
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    traffic();
    let out = tcpdump.wait_with_output().expect("wait for tcpdump");
    let rest = drain.join().unwrap_or_default();
    let code = out.status.code();
    // 0: saw `count` packets; 124: `timeout` ended it first.
    assert!(
        matches!(code, Some(0) | Some(124)),
        "tcpdump failed ({code:?}): {said}{rest}"
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Captured {
        packets: text.lines().filter(|l| !l.trim().is_empty()).count(),
        text,
        complete: code == Some(0),
    }
}

/// The (where, layer, what) of every hop of a `weft trace -o json` report.
pub fn trace_hops(v: &Value) -> Vec<(String, String, String)> {
    v["hops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                field(h, "/where").to_string(),
                field(h, "/layer").to_string(),
                field(h, "/what").to_string(),
            )
        })
        .collect()
}
