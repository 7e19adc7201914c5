//! Network namespace handles.
//!
//! A thread's network namespace is per-thread state, so namespace-bound work
//! runs on a short-lived dedicated OS thread that `setns`es first and never
//! returns to a pool (the CNI reference plugins' `pkg/ns` explains why a Go
//! runtime thread cannot be trusted with this; the same holds for tokio workers).
//! Sockets opened on that thread stay bound to the namespace after it exits,
//! which is how [`crate::Handle::in_netns`] works.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

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

    /// True when both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &Netns) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}
