//! Test support (feature `test-support`): the one way weft's kernel tests
//! get root and namespaces. A test that needs root is skipped with a message
//! without it, but fails in CI; every namespace is `weft-t<pid>-<n>-<role>`
//! and is deleted when its guard drops — also when the test panics.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Handle, Netns};

/// True when the test may touch namespaces.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{test} needs root (network namespaces) and CI must run it as root");
    }
    skip(test, "needs root for network namespaces");
    false
}

/// Records that `test` skipped (part of) its checks: a line in the file
/// named by `WEFT_TEST_SKIP_LOG` (scripts/test.sh counts them in its summary
/// and fails a root run that skipped anything) and a message on stderr.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("WEFT_TEST_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {why}\n");
        // O_APPEND: lines from parallel tests never interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record the skip in {log:?}: {e}");
        }
    }
}

/// True when `tool` is on PATH; otherwise the skip is recorded for `test`.
pub fn tool_or_skip(test: &str, tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        skip(test, &format!("{tool} is not installed"));
    }
    found
}

/// Runs `ip` with `args`, panicking with its stderr on failure; returns stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace owned by a test.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new(role: &str) -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "weft-t{}-{}-{role}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        TestNs { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn open(&self) -> Netns {
        Netns::open(self.path()).expect("open test netns")
    }

    pub fn handle(&self) -> Handle {
        Handle::in_netns(&self.open()).expect("netlink handle in test netns")
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.open().run(f).expect("enter test netns")
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    /// Runs `ip …` inside the namespace and returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Waits until `fd` is readable or `ms` milliseconds pass (for tests that
/// read non-blocking netlink sockets until an event arrives).
pub fn wait_readable(fd: impl std::os::fd::AsFd, ms: u8) {
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}
