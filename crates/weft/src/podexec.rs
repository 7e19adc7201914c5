//! Running a command inside a pod the way its containers run: the pod's
//! network namespace, a private mount namespace with the pod's
//! /etc/resolv.conf and /etc/hosts bound in, and a UTS namespace with the
//! pod's hostname. Nothing is mounted in the machine's own mount namespace.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where a pod's namespaces and files are.
#[derive(Debug, Clone)]
pub struct PodEnv {
    /// The pod's network namespace (`None` for hostNetwork pods: stay in the node's).
    pub netns: Option<PathBuf>,
    /// The node's network namespace (for hostNetwork pods).
    pub node_netns: PathBuf,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: String,
}

/// Runs `cmd` inside the pod and waits for it; stdio is inherited.
/// Call from a single-threaded process: the child allocates after fork.
pub fn run(env: &PodEnv, cmd: &[String]) -> Result<ExitStatus> {
    let (program, args) = cmd.split_first().context("no command given")?;
    let netns_path = env.netns.clone().unwrap_or_else(|| env.node_netns.clone());
    let netns = std::fs::File::open(&netns_path)
        .with_context(|| format!("open network namespace {} (is the pod running?)", netns_path.display()))?;
    for f in [&env.resolv_conf, &env.hosts] {
        anyhow::ensure!(f.exists(), "{} is missing (is the pod running?)", f.display());
    }
    let (resolv, hosts, hostname) = (env.resolv_conf.clone(), env.hosts.clone(), env.hostname.clone());
    let fd = netns.as_fd().as_raw_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes namespace and mount syscalls on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let to_io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(to_io)?;
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(to_io)?;
            // Make every mount private first, so the binds below never reach the machine.
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(to_io)?;
            mount(Some(&resolv), "/etc/resolv.conf", None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(to_io)?;
            mount(Some(&hosts), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(to_io)?;
            nix::unistd::sethostname(&hostname).map_err(to_io)?;
            Ok(())
        });
    }
    let status = command.status().with_context(|| format!("run {program} in the pod"))?;
    drop(netns);
    Ok(status)
}
