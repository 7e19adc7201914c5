//! Pod sandboxes in the kernel: the pod's named network namespace, the CNI
//! calls that wire it (libcni's conflist semantics), its files, the pod's
//! init (PID 1 of the pod's own PID, mount, UTS and IPC namespaces, see
//! [`crate::podinit`]) and the container processes started inside those
//! namespaces (own process group, pid files so a restarted runtime can find
//! and adopt them; `pod.init` records the pod's init the same way).
//!
//! Every call here blocks (it waits for `ip` and the CNI plugin); the
//! runtime calls it from blocking threads. Namespace changes only ever
//! happen in child processes (`pre_exec`, raw system calls on descriptors
//! opened before the fork, no allocation), never in a runtime thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::io::{BufRead, BufReader};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{setsid, Pid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weft_cluster::{Layout, NodeLayout};

use crate::plan;
use crate::security::Identity;

/// Where named network namespaces live (`ip netns add`).
pub const NETNS_DIR: &str = "/run/netns";
/// Record of a sandbox in its pod directory, written before anything is created.
pub const RECORD_FILE: &str = "sandbox.json";
/// Record of the pod's init in its pod directory:
/// `<pid> <start time> <pid of PID 1> <its start time>`.
pub const INIT_FILE: &str = "pod.init";
/// The pod's ServiceAccount files (token, ca.crt, namespace) in its pod
/// directory, bind-mounted on [`crate::podinit::SERVICE_ACCOUNT_MOUNT`].
pub const SERVICE_ACCOUNT_DIR: &str = "serviceaccount";
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A sandbox operation that failed, naming the pod and the step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("pod {pod}: {step}: {source}")]
    Io {
        pod: String,
        step: String,
        source: std::io::Error,
    },
    #[error("pod {pod}: {step}: {msg}")]
    Failed {
        pod: String,
        step: String,
        msg: String,
    },
    #[error("pod {pod}: CNI {command} with plugin {plugin:?} failed: {msg}")]
    Cni {
        pod: String,
        command: String,
        plugin: String,
        msg: String,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<SandboxError>),
}

type Result<T> = std::result::Result<T, SandboxError>;

/// What sandboxes of one node share.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    pub layout: Layout,
    pub node: NodeLayout,
    pub cni_bin_dir: PathBuf,
    /// The node's namespace for CNI plugins, hostNetwork containers and
    /// net probes; `None` means the runtime's own (it runs inside the node's
    /// namespace in production; tests give a `weft-t…` namespace here).
    pub node_netns: Option<PathBuf>,
    /// The program that runs `pod-init` (the `weft` binary): the pod's init
    /// and every process started in a pod.
    pub helper: PathBuf,
}

impl NodeEnv {
    pub fn node_dir(&self) -> PathBuf {
        self.layout.node_dir(&self.node.name)
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.node_dir().join("cni")
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.node_dir().join("pods")
    }

    /// Where a pod's `hostPath` is on the machine for this node: the
    /// node-specific prefixes (`/etc/cni/net.d` → [`NodeEnv::cni_conf_dir`],
    /// `/opt/cni/bin`, `/var/lib/cni`, `/var/lib/weft`, `/run/weft`) resolve
    /// under the node's directory, other paths are the real ones
    /// ([`crate::volumes::map_host_path`]). `Err` for a path that is not
    /// absolute, goes back (`..`) or holds a node-specific prefix.
    pub fn host_path(&self, path: &str) -> std::result::Result<PathBuf, String> {
        crate::volumes::map_host_path(&self.node_dir(), path)
    }

    /// Whether the node's network is ready (kubelet's NetworkReady): a CNI
    /// network config exists in [`NodeEnv::cni_conf_dir`].
    pub fn network_ready(&self) -> bool {
        self.read_conflist().is_ok()
    }

    /// Writes `cni/10-weft.conflist` when absent or different (MTU 1500, no
    /// overlay). Returns whether it wrote. The runtime leaves the file to
    /// `weft agent`; this is for tests and for nodes run without an agent.
    pub fn ensure_conflist(&self) -> std::io::Result<bool> {
        let want = plan::default_conflist(&self.node, &self.node_dir());
        weft_cni::netconf::write_if_changed(&self.cni_conf_dir(), &want)
    }

    /// The network config as libcni picks it: the first `.conflist`,
    /// `.conf` or `.json` of the config directory in name order.
    pub fn read_conflist(&self) -> std::result::Result<Value, String> {
        let dir = self.cni_conf_dir();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("read CNI config dir {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let file = files
            .first()
            .ok_or_else(|| format!("no network config (*.conflist) in {}", dir.display()))?;
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
        plan::parse_net_config(&text, &file.display().to_string())
    }
}

/// Writes a file by rename so readers never see half of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// What a sandbox is made of, stored as `sandbox.json` in the pod dir
/// before each step, so a crashed runtime can undo any half-made sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub id: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Named network namespace; `None` for hostNetwork pods.
    pub netns: Option<String>,
    pub hostname: String,
    /// The network config used for ADD (DEL uses the same, like libcni's cache).
    pub conflist: Option<Value>,
    /// The ADD result (DEL's prevResult).
    pub result: Option<Value>,
}

/// One pod's sandbox on this node.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub env: NodeEnv,
    pub dir: PathBuf,
    pub record: Record,
}

/// What one container process runs.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Who the process runs as (default: nobody, no capabilities).
    pub identity: Identity,
}

/// The pod's init as recorded in [`INIT_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRecord {
    /// The process the runtime started (outside the pod's PID namespace).
    pub pid: u32,
    pub started: u64,
    /// PID 1 of the pod (its pid as the machine sees it): the namespaces.
    pub pid1: u32,
    pub pid1_started: u64,
}

fn run_ip(pod: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SandboxError::Io {
            pod: pod.into(),
            step: format!("run ip {}", args.join(" ")),
            source: e,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::Failed {
            pod: pod.into(),
            step: format!("ip {}", args.join(" ")),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether the named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Start time of a process (field 22 of /proc/<pid>/stat), to tell a pid
/// from a later process that reused it.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')': split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is still the process recorded with `started` (and not a zombie).
pub fn alive(pid: u32, started: u64) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    !zombie && start_time(pid) == Some(started)
}

/// Sends `sig` to what is left of the process group of a leader that has
/// exited and been reaped: only if some process other than `pgid` itself is
/// still in the group. While such a member lives the kernel keeps the group
/// id allocated, so it cannot name a newer process; with no member left,
/// `killpg` could reach an unrelated process that has since been given the
/// same pid and leads a group of its own (pid_max is often 32768, and every
/// `setsid` makes a group leader).
pub fn signal_stragglers(pgid: u32, sig: Signal) {
    let members = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != pgid)
                .any(|pid| process_group(pid) == Some(pgid))
        })
        .unwrap_or(false);
    if members {
        signal_group(pgid, sig);
    }
}

/// Field 5 of /proc/<pid>/stat.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Sends `sig` to the process group led by `pid` (each container is one);
/// the leader must not have been reaped yet (see [`signal_stragglers`]).
pub fn signal_group(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        if p > 1 {
            let _ = killpg(Pid::from_raw(p), sig);
        }
    }
}

impl Sandbox {
    /// The record of the sandbox in `dir`, if it has one.
    pub fn load(env: &NodeEnv, dir: &Path) -> Option<Sandbox> {
        let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
        let record: Record = serde_json::from_str(&text).ok()?;
        Some(Sandbox {
            env: env.clone(),
            dir: dir.to_path_buf(),
            record,
        })
    }

    /// Every sandbox recorded under this node's pods directory.
    pub fn list(env: &NodeEnv) -> Vec<Sandbox> {
        let mut out: Vec<Sandbox> = std::fs::read_dir(env.pods_dir())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| Sandbox::load(env, &e.path()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        out
    }

    /// A new (not yet created) sandbox for a pod.
    pub fn new(
        env: &NodeEnv,
        namespace: &str,
        name: &str,
        uid: &str,
        hostname: &str,
        host_network: bool,
    ) -> Sandbox {
        let id = plan::pod_id(uid);
        Sandbox {
            env: env.clone(),
            dir: plan::pod_dir(&env.layout, &env.node.name, namespace, name, uid),
            record: Record {
                uid: uid.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                netns: (!host_network).then(|| env.layout.pod_netns(&id)),
                id,
                container_id: plan::container_id(uid),
                hostname: hostname.to_string(),
                conflist: None,
                result: None,
            },
        }
    }

    fn pod(&self) -> String {
        format!("{}/{}", self.record.namespace, self.record.name)
    }

    fn io(&self, step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
        let step = step.into();
        move |source| SandboxError::Io {
            pod: self.pod(),
            step,
            source,
        }
    }

    fn save(&self) -> Result<()> {
        let text =
            serde_json::to_string_pretty(&self.record).map_err(|e| SandboxError::Failed {
                pod: self.pod(),
                step: "encode sandbox record".into(),
                msg: e.to_string(),
            })?;
        write_atomic(&self.dir.join(RECORD_FILE), text.as_bytes())
            .map_err(self.io("write sandbox record"))
    }

    pub fn netns_path(&self) -> Option<PathBuf> {
        self.record
            .netns
            .as_ref()
            .map(|n| Path::new(NETNS_DIR).join(n))
    }

    /// The pod's IP: from the CNI result, or the node's for hostNetwork pods.
    pub fn pod_ip(&self) -> Option<String> {
        match &self.record.netns {
            None => Some(self.env.node.ip.to_string()),
            Some(_) => self
                .record
                .result
                .as_ref()
                .and_then(plan::result_ip)
                .map(|ip| ip.to_string()),
        }
    }

    /// Whether the sandbox is complete (network wired, or hostNetwork).
    pub fn ready(&self) -> bool {
        match &self.record.netns {
            None => true,
            Some(ns) => self.record.result.is_some() && netns_exists(ns),
        }
    }

    /// Creates the pod directory, the network namespace (with lo up) and
    /// calls CNI ADD with `port_mappings`. Idempotent: a half-made sandbox
    /// (crash during ADD) is cleaned with DEL before ADD again; a complete
    /// one is left as it is.
    pub fn create(&mut self, port_mappings: &[Value]) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(self.io(format!("create {}", self.dir.display())))?;
        if let Some(old) = Sandbox::load(&self.env, &self.dir) {
            if old.record.uid == self.record.uid {
                self.record.conflist = old.record.conflist;
                self.record.result = old.record.result;
            }
        }
        if self.ready() {
            return Ok(());
        }
        // Recorded before the namespace exists: whatever happens next, a
        // later teardown knows about it.
        self.save()?;
        let Some(ns) = self.record.netns.clone() else {
            return Ok(());
        };
        if self.record.conflist.is_some() {
            // An earlier ADD did not finish: release what it may have taken.
            self.cni_del()?;
            self.record.conflist = None;
            self.record.result = None;
            self.save()?;
        }
        if !netns_exists(&ns) {
            run_ip(&self.pod(), &["netns", "add", &ns])?;
        }
        run_ip(&self.pod(), &["-n", &ns, "link", "set", "lo", "up"])?;
        let conflist = self
            .env
            .read_conflist()
            .map_err(|msg| SandboxError::Failed {
                pod: self.pod(),
                step: "read network config".into(),
                msg,
            })?;
        self.record.conflist = Some(conflist.clone());
        self.save()?;
        let runtime = json!({ "portMappings": port_mappings });
        let mut prev: Option<Value> = None;
        for plugin in conflist["plugins"].as_array().into_iter().flatten() {
            let conf = plan::plugin_config(&conflist, plugin, &runtime, prev.as_ref());
            prev = Some(self.cni_exec("ADD", plugin, &conf)?);
        }
        self.record.result = prev;
        self.save()?;
        if self.pod_ip().is_none() {
            return Err(SandboxError::Failed {
                pod: self.pod(),
                step: "CNI ADD".into(),
                msg: "the result has no IPv4 address".into(),
            });
        }
        Ok(())
    }

    /// Runs one plugin with the CNI environment; its stdout as JSON.
    fn cni_exec(&self, command: &str, plugin: &Value, conf: &Value) -> Result<Value> {
        let ty = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let err = |msg: String| SandboxError::Cni {
            pod: self.pod(),
            command: command.into(),
            plugin: ty.clone(),
            msg,
        };
        if ty.is_empty() || ty.contains('/') {
            return Err(err(format!("plugin type {ty:?} is not a binary name")));
        }
        let bin = self.env.cni_bin_dir.join(&ty);
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", PLUGIN_PATH)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.record.container_id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.env.cni_bin_dir)
            .env(
                "CNI_ARGS",
                plan::cni_args(
                    &self.record.namespace,
                    &self.record.name,
                    &self.record.container_id,
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = self.netns_path().filter(|p| p.exists()) {
            cmd.env("CNI_NETNS", p);
        }
        enter_netns_on_exec(&mut cmd, self.env.node_netns.as_deref())
            .map_err(|e| err(e.to_string()))?;
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("start {}: {e}", bin.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| err(format!("write config to {}: {e}", bin.display())))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("wait for {}: {e}", bin.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = serde_json::from_str(stdout.trim()).ok();
        if out.status.success() {
            return Ok(parsed.unwrap_or(Value::Null));
        }
        let msg = match parsed {
            Some(e) if e.get("msg").is_some() => format!(
                "{} (code {}){}",
                e["msg"].as_str().unwrap_or_default(),
                e["code"],
                e.get("details")
                    .and_then(Value::as_str)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{}: {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        Err(err(msg))
    }

    /// CNI DEL with the config and result of ADD, plugins in reverse order.
    fn cni_del(&self) -> Result<()> {
        let Some(conflist) = &self.record.conflist else {
            return Ok(());
        };
        let mut errors = Vec::new();
        for plugin in conflist["plugins"].as_array().into_iter().flatten().rev() {
            let conf =
                plan::plugin_config(conflist, plugin, &json!({}), self.record.result.as_ref());
            if let Err(e) = self.cni_exec("DEL", plugin, &conf) {
                errors.push(e);
            }
        }
        many(errors)
    }

    /// Writes the pod's resolv.conf and hosts.
    pub fn write_files(&self, resolv_conf: &str, hosts: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(self.io("create pod dir"))?;
        write_atomic(&self.dir.join("resolv.conf"), resolv_conf.as_bytes())
            .map_err(self.io("write resolv.conf"))?;
        write_atomic(&self.dir.join("hosts"), hosts.as_bytes()).map_err(self.io("write hosts"))
    }

    pub fn pid_file(&self, container: &str) -> PathBuf {
        self.dir.join(format!("{container}.pid"))
    }

    /// The recorded process of a container: (pid, start time).
    pub fn recorded_pid(&self, container: &str) -> Option<(u32, u64)> {
        let text = std::fs::read_to_string(self.pid_file(container)).ok()?;
        let mut words = text.split_whitespace();
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    }

    /// Every recorded container process still alive.
    pub fn live_processes(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(c) = name.strip_suffix(".pid") {
                if let Some((pid, started)) = self.recorded_pid(c) {
                    if alive(pid, started) {
                        out.push((c.to_string(), pid));
                    }
                }
            }
        }
        out
    }

    /// The numbers of [`INIT_FILE`], if it exists.
    fn init_numbers(&self) -> Option<Vec<u64>> {
        let text = std::fs::read_to_string(self.dir.join(INIT_FILE)).ok()?;
        Some(
            text.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect(),
        )
    }

    /// The pod's init, when it is recorded and its PID 1 still runs.
    pub fn init(&self) -> Option<InitRecord> {
        let n = self.init_numbers()?;
        let [pid, started, pid1, pid1_started] = n[..] else {
            return None;
        };
        let rec = InitRecord {
            pid: u32::try_from(pid).ok()?,
            started,
            pid1: u32::try_from(pid1).ok()?,
            pid1_started,
        };
        alive(rec.pid1, rec.pid1_started).then_some(rec)
    }

    /// Starts the pod's init unless it runs already ([`crate::podinit`]):
    /// new mount (private), UTS, IPC and PID namespaces in the pod's network
    /// namespace (the node's for hostNetwork), with /proc, /sys, resolv.conf,
    /// hosts, the ServiceAccount directory (when `service_account`) and the
    /// hostname set up. Blocks until the init says it is ready.
    pub fn start_init(&self, service_account: bool) -> Result<InitRecord> {
        if let Some(rec) = self.init() {
            return Ok(rec);
        }
        let pod = self.pod();
        let failed = |msg: String| SandboxError::Failed {
            pod: pod.clone(),
            step: "start the pod's init".into(),
            msg,
        };
        let netns = match (self.netns_path(), &self.env.node_netns) {
            (Some(p), _) => Some(p),
            (None, node) => node.clone(),
        };
        let netns_file = match &netns {
            Some(p) => Some(
                File::open(p)
                    .map_err(|e| failed(format!("open network namespace {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let mut cmd = Command::new(&self.env.helper);
        cmd.args(["pod-init", "sandbox", "--hostname", &self.record.hostname])
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .arg("--hosts")
            .arg(self.dir.join("hosts"));
        if service_account {
            cmd.arg("--service-account")
                .arg(self.dir.join(SERVICE_ACCOUNT_DIR));
        }
        if self.record.netns.is_some() {
            cmd.arg("--pod-network");
        }
        cmd.env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: the closure only makes raw system calls on values prepared
        // before the fork (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let sys = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
                if let Some(f) = &netns_file {
                    weft_linux::netns::enter_in_child(f)?;
                }
                unshare(
                    CloneFlags::CLONE_NEWNS
                        | CloneFlags::CLONE_NEWUTS
                        | CloneFlags::CLONE_NEWIPC
                        | CloneFlags::CLONE_NEWPID,
                )
                .map_err(sys)?;
                // Private first: nothing the init mounts may propagate to the machine.
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(sys)?;
                setsid().map_err(sys)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            failed(format!(
                "run {} pod-init sandbox: {e}",
                self.env.helper.display()
            ))
        })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let line = line.trim();
        let pid1 = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid1) = pid1 else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(
                line.strip_prefix("error ")
                    .unwrap_or(if line.is_empty() {
                        "the pod's init ended without a word"
                    } else {
                        line
                    })
                    .to_string(),
            ));
        };
        let rec = InitRecord {
            pid: child.id(),
            started: start_time(child.id()).unwrap_or(0),
            pid1,
            pid1_started: start_time(pid1).unwrap_or(0),
        };
        // The child handle is dropped without waiting: the init outlives this
        // call; `kill_init` reaps it.
        write_atomic(
            &self.dir.join(INIT_FILE),
            format!(
                "{} {} {} {}\n",
                rec.pid, rec.started, rec.pid1, rec.pid1_started
            )
            .as_bytes(),
        )
        .map_err(self.io("write the pod's init record"))?;
        Ok(rec)
    }

    /// Kills the pod's init (and so every process left in the pod's PID
    /// namespace) and reaps it when this process started it.
    pub fn kill_init(&self) {
        let Some(n) = self.init_numbers() else {
            return;
        };
        for pair in n.chunks(2) {
            if let [pid, started] = *pair {
                if let Ok(pid) = u32::try_from(pid) {
                    if alive(pid, started) {
                        if let Ok(p) = i32::try_from(pid) {
                            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                        }
                    }
                }
            }
        }
        if let [pid, started, ..] = n[..] {
            // Ours to reap only if this process started it (ECHILD otherwise);
            // the start time (a zombie keeps it) rules out a reused pid.
            if let Ok(p) = u32::try_from(pid) {
                if start_time(p) == Some(started) {
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(p as i32), None);
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join(INIT_FILE));
    }

    /// A command that runs `launch` inside the pod: `pod-init run` entered
    /// into the network, UTS, IPC, mount and PID namespaces of the pod's
    /// init, its own session and process group, with the volume mounts
    /// recorded for the container named `launch.name`
    /// ([`crate::volumes::read_mounts`]) in a mount namespace of its own,
    /// taking `launch.identity` before it execs `launch.argv` in the pod's
    /// PID namespace. `Err` when the pod's init does not run.
    pub fn command(&self, launch: &Launch) -> Result<Command> {
        self.command_with(launch, &[])
    }

    /// [`Sandbox::command`] with more options of `pod-init run` (before the
    /// command), e.g. `--cri-log`.
    pub fn command_with(&self, launch: &Launch, options: &[&str]) -> Result<Command> {
        let pod = self.pod();
        let failed = |step: &str, msg: String| SandboxError::Failed {
            pod: pod.clone(),
            step: step.into(),
            msg,
        };
        if launch.argv.is_empty() {
            return Err(failed(
                "start container",
                format!("container {:?} has an empty command", launch.name),
            ));
        }
        let init = self.init().ok_or_else(|| {
            failed(
                "enter the pod",
                "the pod's init (PID 1 of its namespaces) is not running".into(),
            )
        })?;
        let open = |kind: &str| {
            let path = format!("/proc/{}/ns/{kind}", init.pid1);
            File::open(&path).map_err(|e| failed("enter the pod", format!("open {path}: {e}")))
        };
        // Mount last: after it, paths resolve in the pod's mount namespace.
        let namespaces = [
            (open("net")?, CloneFlags::CLONE_NEWNET),
            (open("uts")?, CloneFlags::CLONE_NEWUTS),
            (open("ipc")?, CloneFlags::CLONE_NEWIPC),
            (open("pid")?, CloneFlags::CLONE_NEWPID),
            (open("mnt")?, CloneFlags::CLONE_NEWNS),
        ];
        // The descriptors are the init's, not a later process's with its pid.
        if !alive(init.pid1, init.pid1_started) {
            return Err(failed(
                "enter the pod",
                "the pod's init ended while its namespaces were opened".into(),
            ));
        }
        let mounts = crate::volumes::read_mounts(&self.dir, &launch.name)
            .map_err(|e| failed("enter the pod", e))?;
        let mut cmd = Command::new(&self.env.helper);
        cmd.args(["pod-init", "run"])
            .args(launch.identity.to_args())
            .args(options);
        for m in &mounts {
            let json = serde_json::to_string(m).map_err(|e| {
                failed(
                    "enter the pod",
                    format!("encode a mount of {:?}: {e}", launch.name),
                )
            })?;
            cmd.arg(format!("--mount={json}"));
        }
        if let Some(dir) = launch.working_dir.as_deref().filter(|d| !d.is_empty()) {
            cmd.arg(format!("--workdir={dir}"));
        }
        cmd.arg("--")
            .args(&launch.argv)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        // SAFETY: the closure only makes raw system calls on values prepared
        // before the fork (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let sys = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
                for (f, kind) in &namespaces {
                    setns(f, *kind).map_err(sys)?;
                }
                setsid().map_err(sys)?;
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// A container's command with stdout and stderr appended to its log as
    /// CRI log entries ([`crate::logs`]); the log of the instance before
    /// (if any) becomes the previous log. The program is looked up first (as execvp will, in the container's
    /// PATH), so a missing one is a start error, not an exit code.
    ///
    /// With `io.stdin` the command reads from the FIFO
    /// [`plan::stdin_path`] (`attach -i` writes to it), with `io.tty` it
    /// runs on a terminal of its own whose output is its stdout log and
    /// whose size comes through [`plan::resize_path`].
    pub fn container_command(&self, launch: &Launch, io: plan::ContainerIo) -> Result<Command> {
        if let Some(prog) = launch.argv.first() {
            let path = launch
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str())
                .unwrap_or("/usr/local/bin:/usr/bin:/bin");
            find_program(prog, path).map_err(|msg| SandboxError::Failed {
                pod: self.pod(),
                step: format!("start container {:?}", launch.name),
                msg,
            })?;
        }
        let mut options = vec!["--cri-log".to_string()];
        if io.stdin {
            let fifo = plan::stdin_path(&self.dir, &launch.name);
            make_fifo(&fifo).map_err(self.io(format!("create {}", fifo.display())))?;
            options.push(format!("--stdin-fifo={}", fifo.display()));
            if io.stdin_once {
                options.push("--stdin-once".into());
            }
        }
        if io.tty {
            let fifo = plan::resize_path(&self.dir, &launch.name);
            make_fifo(&fifo).map_err(self.io(format!("create {}", fifo.display())))?;
            options.push("--tty".into());
            options.push(format!("--resize-fifo={}", fifo.display()));
        }
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let mut cmd = self.command_with(launch, &options)?;
        let log = plan::log_path(&self.dir, &launch.name);
        if log.exists() {
            let previous = crate::logs::previous_log_path(&self.dir, &launch.name);
            std::fs::rename(&log, &previous)
                .map_err(self.io(format!("keep the previous log as {}", previous.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(self.io(format!("open log {}", log.display())))?;
        let err = file.try_clone().map_err(self.io("duplicate log file"))?;
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        Ok(cmd)
    }

    /// Records a container's process so a restarted runtime finds it.
    pub fn record_pid(&self, container: &str, pid: u32) -> Result<()> {
        let started = start_time(pid).unwrap_or(0);
        write_atomic(
            &self.pid_file(container),
            format!("{pid} {started}\n").as_bytes(),
        )
        .map_err(self.io("write pid file"))
    }

    /// Kills every recorded container process group and the pod's init
    /// (SIGKILL).
    pub fn kill_all(&self) {
        for (_, pid) in self.live_processes() {
            signal_group(pid, Signal::SIGKILL);
        }
        self.kill_init();
    }

    /// Gives the network back (CNI DEL, namespace removed) but keeps the pod
    /// directory and its logs: what happens when a pod finishes.
    pub fn release_network(&mut self) -> Result<()> {
        let Some(ns) = self.record.netns.clone() else {
            return Ok(());
        };
        self.cni_del()?;
        if netns_exists(&ns) {
            run_ip(&self.pod(), &["netns", "del", &ns])?;
        }
        self.record.conflist = None;
        self.record.result = None;
        self.save()
    }

    /// Removes the sandbox: kills what is left of its processes, CNI DEL
    /// (same config and prevResult as ADD), deletes the namespace and the
    /// pod directory. Keeps going after a failure and reports all of them;
    /// after one, the record stays so a later teardown can retry.
    pub fn teardown(&self) -> Result<()> {
        self.kill_all();
        let mut errors = Vec::new();
        if self.record.netns.is_some() {
            if let Err(e) = self.cni_del() {
                errors.push(e);
            }
        }
        if let Some(ns) = &self.record.netns {
            if netns_exists(ns) {
                if let Err(e) = run_ip(&self.pod(), &["netns", "del", ns]) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(SandboxError::Io {
                        pod: self.pod(),
                        step: "remove pod dir".into(),
                        source: e,
                    });
                }
            }
        }
        many(errors)
    }
}

/// Where execvp would find `prog` in `path`; `Err` says why it would fail.
pub fn find_program(prog: &str, path: &str) -> std::result::Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return if runnable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!(
                "exec: {prog:?}: permission denied (not an executable file)"
            ))
        } else {
            Err(format!("exec: {prog:?}: no such file or directory"))
        };
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .find(|p| runnable(p))
        .ok_or_else(|| format!("exec: {prog:?}: executable file not found in $PATH ({path})"))
}

fn many(mut errors: Vec<SandboxError>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(SandboxError::Many(errors)),
    }
}

/// Makes `cmd` enter the namespace at `netns` (if any) before exec.
fn enter_netns_on_exec(cmd: &mut Command, netns: Option<&Path>) -> weft_linux::Result<()> {
    if let Some(path) = netns {
        weft_linux::Netns::open(path)?.enter_before_exec(cmd);
    }
    Ok(())
}

/// CNI GC (spec 1.1): releases every attachment of this node's network but
/// those of `valid` container ids (IPs, host veths, NAT rules). Plugins of
/// older versions are skipped.
pub fn cni_gc(env: &NodeEnv, valid: &[String]) -> std::result::Result<(), String> {
    let conflist = env.read_conflist()?;
    if conflist.get("cniVersion").and_then(Value::as_str) != Some("1.1.0") {
        return Ok(());
    }
    let attachments: Vec<Value> = valid
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    for plugin in conflist["plugins"].as_array().into_iter().flatten() {
        let mut conf = plan::plugin_config(&conflist, plugin, &json!({}), None);
        conf["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
        let ty = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bin = env.cni_bin_dir.join(ty);
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", PLUGIN_PATH)
            .env("CNI_COMMAND", "GC")
            .env("CNI_PATH", &env.cni_bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        enter_netns_on_exec(&mut cmd, env.node_netns.as_deref()).map_err(|e| e.to_string())?;
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("CNI GC: start {}: {e}", bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("CNI GC: wait {}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "CNI GC with {ty}: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    Ok(())
}

/// A fresh FIFO at `path` (0600; one left by an earlier instance is
/// replaced, so no old writer or reader shares it).
fn make_fifo(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn signal_stragglers_kills_what_a_reaped_leader_left_in_its_group() {
        // The leader starts a sleeper in its group, prints its pid and exits.
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let leader = out.id();
        let out = out.wait_with_output().unwrap();
        let straggler: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(
            process_group(straggler),
            Some(leader),
            "the sleeper is in the leader's group"
        );
        signal_stragglers(leader, Signal::SIGKILL);
        // The sleeper is not our child (its parent, sh, is gone): it is
        // reaped by init; wait until it is no longer in the group.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_group(straggler) == Some(leader)
            && !std::fs::read_to_string(format!("/proc/{straggler}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the straggler survived"
            );
            std::thread::yield_now();
        }
    }
}
