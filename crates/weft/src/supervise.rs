//! Starting weft's own processes and keeping them alive: the detached
//! control plane, and the per-node daemons (the node runtimes; the agents
//! are DaemonSet pods, see [`crate::addons`]), each
//! started inside its node's network namespace and restarted with backoff
//! (jittered, [`weft_linux::retry`]) when it exits. Every process logs to
//! `<state>/logs/<name>.log` and has its pid in `<state>/pids/<name>`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weft_cluster::{Layout, NodeLayout};
use weft_linux::retry::Backoff;
use weft_linux::Netns;
use weft_node::NodeRuntimeArgs;

/// Restart delays of a per-node daemon: 0.5 s doubling to 30 s, plus jitter.
pub const RESTART_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// A daemon that ran this long was healthy: its next restart starts the
/// backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Opens (appending) the log file `<state>/logs/<name>.log`.
pub fn log_file(layout: &Layout, name: &str) -> Result<std::fs::File> {
    let dir = layout.logs_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open log {}", path.display()))
}

fn write_pid(layout: &Layout, name: &str, pid: u32) -> Result<()> {
    let dir = layout.pids_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, pid.to_string()).with_context(|| format!("write {}", path.display()))
}

/// Starts `weft control-plane` detached (own session), logging to the state
/// dir. Returns its pid. The API port of an earlier control plane is
/// forgotten first, so it cannot be mistaken for the new one's.
pub fn spawn_control_plane(layout: &Layout) -> Result<std::process::Child> {
    if let Some(mut state) = layout.read_state()? {
        state.api_port = None;
        layout.write_state(&state)?;
    }
    let exe = std::env::current_exe().context("find the weft binary")?;
    let log = log_file(layout, "control-plane")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--name", &layout.name, "control-plane"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            Ok(())
        });
    }
    let child = cmd.spawn().context("start the control plane")?;
    write_pid(layout, "control-plane", child.id())?;
    Ok(child)
}

/// A per-node daemon the control plane keeps alive, with its flags.
#[derive(Debug, Clone)]
pub enum Daemon {
    NodeRuntime(NodeRuntimeArgs),
}

impl Daemon {
    pub fn node_runtime(node: &NodeLayout) -> Daemon {
        Daemon::NodeRuntime(NodeRuntimeArgs {
            node: node.name.clone(),
            // The node's `weft agent` writes the CNI config.
            cni_config: weft_node::CniConfig::Wait,
            policy_gate: weft_node::args::DEFAULT_POLICY_GATE.into(),
        })
    }

    /// Name of its log and pid files (`node-1`).
    pub fn file_name(&self) -> String {
        match self {
            Daemon::NodeRuntime(a) => a.node.clone(),
        }
    }

    /// The `weft` command line that runs it.
    pub fn args(&self, layout: &Layout) -> Vec<String> {
        let mut args = vec!["--name".to_string(), layout.name.clone()];
        match self {
            Daemon::NodeRuntime(a) => {
                args.push("node-runtime".into());
                args.extend(a.to_args());
            }
        }
        args
    }
}

/// Keeps per-node daemons running and knows their pids (to stop them).
#[derive(Clone)]
pub struct Supervisor {
    layout: Layout,
    weft_bin: PathBuf,
    children: Arc<Mutex<Vec<u32>>>,
}

impl Supervisor {
    /// Daemons run `weft_bin` (the `weft` binary).
    pub fn new(layout: Layout, weft_bin: PathBuf) -> Supervisor {
        Supervisor {
            layout,
            weft_bin,
            children: Arc::default(),
        }
    }

    /// Starts `daemon` in `node`'s namespace on a tokio task, restarting it
    /// whenever it exits, until the task is aborted.
    pub fn keep(&self, node: NodeLayout, daemon: Daemon) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().keep_running(node, daemon))
    }

    /// Pids of the daemons running now.
    pub fn pids(&self) -> Vec<i32> {
        self.children
            .lock()
            .map(|c| c.iter().map(|p| *p as i32).collect())
            .unwrap_or_default()
    }

    async fn keep_running(self, node: NodeLayout, daemon: Daemon) {
        let file = daemon.file_name();
        let mut delays = RESTART_BACKOFF.delays();
        loop {
            let started = Instant::now();
            match self.start_in_node(&node, &file, &daemon.args(&self.layout)) {
                Ok(mut child) => {
                    let pid = child.id().unwrap_or(0);
                    if let Ok(mut c) = self.children.lock() {
                        c.push(pid);
                    }
                    if let Err(e) = write_pid(&self.layout, &file, pid) {
                        tracing::warn!(daemon = %file, error = %e, "cannot record pid");
                    }
                    let status = child.wait().await;
                    if let Ok(mut c) = self.children.lock() {
                        c.retain(|p| *p != pid);
                    }
                    if started.elapsed() >= HEALTHY_RUN {
                        delays = RESTART_BACKOFF.delays();
                    }
                    tracing::warn!(node = %node.name, daemon = %file, ?status, "exited; restarting");
                }
                Err(e) => {
                    tracing::error!(node = %node.name, daemon = %file, error = %e, "cannot start")
                }
            }
            // Unbounded backoff: the iterator never ends.
            let delay = delays.next().unwrap_or(RESTART_BACKOFF.max);
            tokio::time::sleep(delay).await;
        }
    }

    fn start_in_node(
        &self,
        node: &NodeLayout,
        file: &str,
        args: &[String],
    ) -> Result<tokio::process::Child> {
        let log = log_file(&self.layout, file)?;
        let netns = Netns::open(Path::new(weft_linux::netns::NETNS_RUN_DIR).join(&node.netns))?;
        let mut cmd = tokio::process::Command::new(&self.weft_bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(false);
        // The daemon derives its layout from `--name` and this.
        cmd.env("WEFT_STATE_DIR", &self.layout.state_dir);
        netns.enter_before_exec(cmd.as_std_mut());
        cmd.spawn().with_context(|| format!("spawn {file}"))
    }
}
