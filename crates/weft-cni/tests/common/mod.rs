//! Harness for weft-cni's namespace tests: uniquely named `weft-t…`
//! namespaces removed on drop (so also when a test panics), a "node"
//! namespace the plugin runs in (never the machine's own), and a way to call
//! the plugin the way a runtime does.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
pub use weft_linux::testns::{root_or_skip, TestNs as Ns};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_weft-cni");
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// What one plugin call printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.json
    }

    /// Asserts a CNI error with `code` whose msg contains `needle`.
    pub fn err(self, code: u64, needle: &str) -> Value {
        assert!(
            !self.success,
            "plugin succeeded but should have failed: {}",
            self.stdout
        );
        assert_eq!(self.json["code"], code, "wrong code: {}", self.stdout);
        let msg = self.json["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "msg {msg:?} does not mention {needle:?}"
        );
        assert!(
            self.json["cniVersion"].is_string(),
            "error object without cniVersion: {}",
            self.stdout
        );
        self.json
    }
}

fn parse_outcome(out: Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        success: out.status.success(),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A node: the namespace the plugin runs in, with a private IPAM directory.
pub struct Node {
    pub ns: Ns,
    pub data_dir: PathBuf,
}

impl Node {
    pub fn new() -> Node {
        let ns = Ns::new("node");
        let data_dir = std::env::temp_dir().join(format!("{}-ipam", ns.name));
        Node { ns, data_dir }
    }

    /// The seeds' example network: bridge cni0, 10.244.1.0/24, gateway .1.
    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "podnet",
            "type": "weft-cni",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {
                "subnet": "10.244.1.0/24",
                "gateway": "10.244.1.1",
                "dataDir": self.data_dir,
            }
        })
    }

    /// Starts the plugin for `command` with the CNI environment, as a runtime does.
    pub fn spawn(
        &self,
        command: &str,
        id: &str,
        netns: Option<&str>,
        ifname: &str,
        conf: &Value,
        extra_env: &[(&str, &str)],
    ) -> std::process::Child {
        self.spawn_plugin(PLUGIN, command, id, netns, ifname, conf, extra_env)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn spawn_plugin(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        netns: Option<&str>,
        ifname: &str,
        conf: &Value,
        extra_env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name, plugin])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", REFERENCE_PLUGINS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !id.is_empty() {
            cmd.env("CNI_CONTAINERID", id);
        }
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", ns);
        }
        if !ifname.is_empty() {
            cmd.env("CNI_IFNAME", ifname);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn plugin");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
        drop(stdin);
        child
    }

    pub fn call(&self, command: &str, id: &str, pod: Option<&Ns>, conf: &Value) -> Outcome {
        let path = pod.map(Ns::path);
        let child = self.spawn(command, id, path.as_deref(), "eth0", conf, &[]);
        parse_outcome(child.wait_with_output().expect("wait plugin"))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn call_raw(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        netns: Option<&str>,
        ifname: &str,
        conf: &Value,
        extra_env: &[(&str, &str)],
    ) -> Outcome {
        let child = self.spawn_plugin(plugin, command, id, netns, ifname, conf, extra_env);
        parse_outcome(child.wait_with_output().expect("wait plugin"))
    }

    /// Gives the node an "underlay" address on a veth to a second namespace
    /// (a neighbour host): node 192.168.1.10/24, neighbour 192.168.1.100/24.
    pub fn with_neighbour(&self) -> Ns {
        let other = Ns::new("nbr");
        self.ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &other.name,
        ]);
        self.ns
            .ip(&["addr", "add", "192.168.1.10/24", "dev", "eth0"]);
        self.ns.ip(&["link", "set", "eth0", "up"]);
        other.ip(&["addr", "add", "192.168.1.100/24", "dev", "eth0"]);
        other.ip(&["link", "set", "eth0", "up"]);
        other.ip(&["link", "set", "lo", "up"]);
        other
    }

    /// Allocation files in the IPAM directory.
    pub fn allocations(&self, network: &str) -> Vec<String> {
        let dir = self.data_dir.join(network);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn links(&self) -> String {
        self.ns.ip(&["-br", "link"])
    }

    pub fn nft(&self) -> String {
        String::from_utf8_lossy(&self.ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The pod's address from an ADD result (first IP).
pub fn pod_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .expect("result has an IP");
    addr.split('/').next().unwrap_or_default().to_string()
}
