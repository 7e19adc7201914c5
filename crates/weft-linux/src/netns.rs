//! Network namespace handles.
//!
//! A thread's network namespace is per-thread state, so namespace-bound work
//! runs on a short-lived dedicated OS thread that `setns`es first and never
//! returns to a pool (the CNI reference plugins' `pkg/ns` explains why a Go
//! runtime thread cannot be trusted with this; the same holds for tokio workers).
//! Sockets opened on that thread stay bound to the namespace after it exits,
//! which is how [`crate::Handle::in_netns`] works.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::{Error, Result};

/// An open network namespace (a file descriptor on its nsfs inode).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path` (e.g. `/var/run/netns/weft-p-1` or
    /// `/proc/<pid>/ns/net`). A missing path is `Error::Io` with `ENOENT`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)
            .map_err(|e| Error::io(format!("open network namespace {}", path.display()), e))?;
        Ok(Netns { file, path })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace, and
    /// returns its result. The calling thread's namespace is never changed.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        Error::io(
                            format!("enter network namespace {}", self.path.display()),
                            std::io::Error::from_raw_os_error(errno as i32),
                        )
                    })?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Makes `cmd` enter this namespace between fork and exec, so the program
    /// starts inside it (what `ip netns exec` does, without the extra process).
    /// The descriptor moves into the hook and stays open until `cmd` is dropped.
    /// For a `tokio::process::Command`, pass `cmd.as_std_mut()`.
    pub fn enter_before_exec(self, cmd: &mut Command) {
        let file = self.file;
        // SAFETY: the hook only makes one system call (setns) on a descriptor
        // opened before the fork: no allocation, no locks.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || enter_in_child(&file));
        }
    }

    /// True when both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &Netns) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// Enters the network namespace `ns` on the calling thread, for use inside a
/// `pre_exec` hook that does more than [`Netns::enter_before_exec`] (the pod
/// sandbox also unshares and mounts). Only a system call: async-signal-safe,
/// as code between fork and exec must be.
pub fn enter_in_child(ns: impl AsFd) -> std::io::Result<()> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))
}

/// The directory where named namespaces are bind-mounted (`ip netns add`).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// (device, inode) of a namespace file: nsfs inodes are the same for the bind
/// mount under /run/netns and for /proc/<pid>/ns/net.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Pids of the processes (other than this one) whose network namespace is
/// one of the named namespaces under [`NETNS_RUN_DIR`]. Names that do not
/// exist are skipped; processes that exit while /proc is read are too.
pub fn pids_in_netns(names: &[String]) -> Vec<i32> {
    let wanted: BTreeSet<(u64, u64)> = names
        .iter()
        .filter_map(|n| ns_id(&Path::new(NETNS_RUN_DIR).join(n)))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != me && ns_id(&entry.path().join("ns/net")).is_some_and(|id| wanted.contains(&id)) {
            out.push(pid);
        }
    }
    out
}

impl AsFd for Netns {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_in_netns_of_no_existing_namespace_is_empty() {
        assert!(pids_in_netns(&["weft-t-does-not-exist".to_string()]).is_empty());
    }

    #[test]
    fn enter_before_exec_runs_the_program_in_the_namespace() {
        if !crate::testns::root_or_skip("enter_before_exec_runs_the_program_in_the_namespace") {
            return;
        }
        let ns = crate::testns::TestNs::new("exec");
        let mut cmd = Command::new("readlink");
        cmd.arg("/proc/self/ns/net");
        ns.open().enter_before_exec(&mut cmd);
        let out = cmd.output().expect("run readlink");
        assert!(out.status.success());
        let inside = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let expected = format!(
            "net:[{}]",
            std::fs::metadata(ns.path()).expect("netns file").ino()
        );
        assert_eq!(inside, expected);
    }

    #[test]
    fn pids_in_netns_finds_a_process_started_inside() {
        if !crate::testns::root_or_skip("pids_in_netns_finds_a_process_started_inside") {
            return;
        }
        let ns = crate::testns::TestNs::new("pids");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        ns.open().enter_before_exec(&mut cmd);
        let mut child = cmd.spawn().expect("start sleep");
        let found = pids_in_netns(std::slice::from_ref(&ns.name));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![child.id() as i32]);
    }
}
