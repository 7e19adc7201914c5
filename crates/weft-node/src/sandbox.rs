//! Pod sandboxes in the kernel: the pod's named network namespace, the CNI
//! calls that wire it (libcni's conflist semantics), its files, and the
//! container processes started inside it (own mount + UTS namespace, own
//! process group, pid files so a restarted runtime can find them).
//!
//! Every call here blocks (it waits for `ip` and the CNI plugin); the
//! runtime calls it from blocking threads. Namespace changes only ever
//! happen in child processes (`pre_exec`), never in a runtime thread.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{sethostname, setsid, Pid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weft_cluster::{Layout, NodeLayout};

use crate::plan;

/// Where named network namespaces live (`ip netns add`).
pub const NETNS_DIR: &str = "/run/netns";
/// Record of a sandbox in its pod directory, written before anything is created.
pub const RECORD_FILE: &str = "sandbox.json";
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

/// Sends `sig` to the process group led by `pid` (each container is one).
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

    /// A command that runs `argv` inside the pod: its network namespace (or
    /// the node's for hostNetwork), a new mount namespace (made private, then
    /// resolv.conf and hosts bind-mounted over /etc's), a new UTS namespace
    /// with the pod's hostname, and its own session and process group.
    pub fn command(&self, launch: &Launch) -> Result<Command> {
        let pod = self.pod();
        let failed = |step: &str, msg: String| SandboxError::Failed {
            pod: pod.clone(),
            step: step.into(),
            msg,
        };
        let Some((prog, args)) = launch.argv.split_first() else {
            return Err(failed(
                "start container",
                format!("container {:?} has an empty command", launch.name),
            ));
        };
        let netns = match (self.netns_path(), &self.env.node_netns) {
            (Some(p), _) => Some(p),
            (None, node) => node.clone(),
        };
        let netns_file =
            match &netns {
                Some(p) => Some(File::open(p).map_err(|e| {
                    failed("open network namespace", format!("{}: {e}", p.display()))
                })?),
                None => None,
            };
        let remount_sys = self.record.netns.is_some();
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|e| failed("path", e.to_string()))
        };
        let resolv = cstr(&self.dir.join("resolv.conf"))?;
        let hosts = cstr(&self.dir.join("hosts"))?;
        let hostname = self.record.hostname.clone();
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(dir) = launch.working_dir.as_deref().filter(|d| !d.is_empty()) {
            cmd.current_dir(dir);
        }
        // SAFETY: the closure only makes raw system calls on values prepared
        // before the fork (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let sys = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
                if let Some(f) = &netns_file {
                    weft_linux::netns::enter_in_child(f)?;
                }
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(sys)?;
                // Private first: nothing below may propagate to the machine.
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(sys)?;
                if remount_sys {
                    // /sys shows the interfaces of the namespace that mounted
                    // it; remount as `ip netns exec` does (best effort).
                    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
                        let _ = mount(
                            Some("sysfs"),
                            "/sys",
                            Some("sysfs"),
                            MsFlags::empty(),
                            None::<&str>,
                        );
                    }
                }
                mount(
                    Some(resolv.as_c_str()),
                    "/etc/resolv.conf",
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys)?;
                mount(
                    Some(hosts.as_c_str()),
                    "/etc/hosts",
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys)?;
                sethostname(&hostname).map_err(sys)?;
                setsid().map_err(sys)?;
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// A container's command with stdout and stderr appended to its log.
    pub fn container_command(&self, launch: &Launch) -> Result<Command> {
        let mut cmd = self.command(launch)?;
        let log = plan::log_path(&self.dir, &launch.name);
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

    /// Kills every recorded container process group (SIGKILL).
    pub fn kill_all(&self) {
        for (_, pid) in self.live_processes() {
            signal_group(pid, Signal::SIGKILL);
        }
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
