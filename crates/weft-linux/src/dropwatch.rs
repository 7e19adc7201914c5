//! The kernel's own reason for dropping packets: the `skb:kfree_skb`
//! tracepoint (every freed-not-consumed socket buffer, with its
//! `skb_drop_reason` and the function that dropped it), read through a
//! private tracefs instance so it never disturbs other users of tracing.
//! No kprobes, no BPF: tracepoints are compiled into kernels that have
//! `CONFIG_TRACEPOINTS`, these machines' included.
//!
//! [`DropWatch::start`] runs one thread which leaves the process's mount
//! namespace (`unshare(CLONE_NEWNS)`, then every mount private, so nothing
//! propagates back to the machine), mounts tracefs on a directory of its
//! own, creates instance `<name>` with only `skb/kfree_skb` enabled for one
//! protocol (IPv4 or IPv6), and reads its `trace_pipe` until stopped; then
//! it disables the event and removes the instance. The tracepoint carries no
//! addresses or namespace, so callers correlate by time: the drops seen
//! while their one packet was in flight. [`remove_stale`] removes instances
//! a killed watcher left (by name prefix and a dead owner pid).
//!
//! [`parse_line`] reads one `trace_pipe` line (pure: it only splits text
//! and never indexes past what it found).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Result};

/// One drop the kernel reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drop {
    /// `NETFILTER_DROP`, `IP_INNOROUTES`, `PKT_TOO_BIG`…
    pub reason: String,
    /// The function that dropped it (`ip_forward+0x1c4/0x4d0`, offsets cut).
    pub location: String,
    /// The ethertype (0x0800 IPv4, 0x86dd IPv6).
    pub protocol: u16,
}

/// Reads one `trace_pipe` line of `kfree_skb`:
/// `… kfree_skb: skbaddr=… rx_sk=… protocol=2048 location=ip_forward+0x1c4/0x4d0 reason: PKT_TOO_BIG`.
pub fn parse_line(line: &str) -> Option<Drop> {
    let rest = &line[line.find("kfree_skb: ")? + "kfree_skb: ".len()..];
    let protocol = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("protocol="))?
        .parse()
        .ok()?;
    let location = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("location="))
        .map(|l| l.split('+').next().unwrap_or(l).to_string())
        .unwrap_or_default();
    let reason = rest.split("reason: ").nth(1)?.trim().to_string();
    if reason.is_empty() {
        return None;
    }
    Some(Drop {
        reason,
        location,
        protocol,
    })
}

/// A running watcher.
pub struct DropWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Drop>>>,
    thread: Option<JoinHandle<()>>,
    ready: std::sync::mpsc::Receiver<std::result::Result<(), String>>,
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    fs::write(path, value)
}

impl DropWatch {
    /// Starts watching drops of `protocol` (0x0800 or 0x86dd) in a private
    /// tracefs instance named `name`; returns once the event is enabled, or
    /// the error that kept it from being (no tracefs, no tracepoint, not
    /// root), naming what failed.
    pub fn start(name: &str, protocol: u16) -> Result<DropWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Drop>>> = Arc::default();
        let (tx, ready) = std::sync::mpsc::channel();
        let name = name.to_string();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::Builder::new()
                .name("dropwatch".into())
                .spawn(move || watch(&name, protocol, &stop, &seen, &tx))
                .map_err(|e| Error::io("start the drop watcher", e))?
        };
        let mut w = DropWatch {
            stop,
            seen,
            thread: Some(thread),
            ready,
        };
        match w.ready.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(w),
            Ok(Err(e)) => {
                w.finish();
                Err(Error::io(
                    format!("kernel drop reasons: {e}"),
                    std::io::Error::other("tracefs"),
                ))
            }
            Err(_) => {
                w.finish();
                Err(Error::io(
                    "kernel drop reasons: the watcher did not start within 5 s",
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ))
            }
        }
    }

    /// The drops seen so far, in order.
    pub fn seen(&self) -> Vec<Drop> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops, cleans up (event off, instance removed) and returns the drops
    /// seen, in order.
    pub fn finish(&mut self) -> Vec<Drop> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl std::ops::Drop for DropWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Enters a private mount namespace and mounts tracefs there; the directory
/// it is mounted on.
fn private_tracefs(name: &str) -> std::result::Result<PathBuf, String> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare the mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make the private mounts private: {e}"))?;
    let dir = std::env::temp_dir().join(format!("{name}-tracefs"));
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if let Err(e) = mount(
        Some("tracefs"),
        &dir,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    ) {
        let _ = fs::remove_dir(&dir);
        return Err(format!("mount tracefs: {e}"));
    }
    Ok(dir)
}

fn watch(
    name: &str,
    protocol: u16,
    stop: &AtomicBool,
    seen: &Mutex<Vec<Drop>>,
    ready: &std::sync::mpsc::Sender<std::result::Result<(), String>>,
) {
    let dir = match private_tracefs(name) {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let instance = dir.join("instances").join(name);
    let set_up = || -> std::result::Result<fs::File, String> {
        match fs::create_dir(&instance) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("create tracing instance {name}: {e}")),
        }
        let event = instance.join("events/skb/kfree_skb");
        if !event.exists() {
            return Err("this kernel has no skb:kfree_skb tracepoint".into());
        }
        write(&event.join("filter"), &format!("protocol == {protocol}"))
            .map_err(|e| format!("filter kfree_skb: {e}"))?;
        write(&event.join("enable"), "1").map_err(|e| format!("enable kfree_skb: {e}"))?;
        fs::File::open(instance.join("trace_pipe")).map_err(|e| format!("open trace_pipe: {e}"))
    };
    let pipe = set_up();
    let pipe = match pipe {
        Ok(p) => {
            let _ = ready.send(Ok(()));
            p
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = fs::remove_dir(&instance);
            let _ = nix::mount::umount(&dir);
            let _ = fs::remove_dir(&dir);
            return;
        }
    };
    // trace_pipe blocks until there is data: poll it so `stop` is seen.
    {
        use std::os::fd::AsFd;
        let mut reader = BufReader::new(&pipe);
        let mut line = String::new();
        loop {
            let mut fds = [nix::poll::PollFd::new(
                pipe.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u8)).unwrap_or(0);
            if ready > 0 {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {}
                    Ok(_) => {
                        if let (Some(d), Ok(mut s)) = (parse_line(&line), seen.lock()) {
                            s.push(d);
                        }
                        continue;
                    }
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }
    drop(pipe);
    let _ = write(&instance.join("events/skb/kfree_skb/enable"), "0");
    let _ = fs::remove_dir(&instance);
    let _ = nix::mount::umount(&dir);
    let _ = fs::remove_dir(&dir);
}

/// Runs `f` on the instances directory of a tracefs mounted for the call
/// in a thread of its own mount namespace (unmounted afterwards).
fn with_instances<T: Send + 'static>(
    f: impl FnOnce(&Path) -> T + Send + 'static,
) -> std::result::Result<T, String> {
    std::thread::spawn(move || {
        let dir = private_tracefs(&format!("weft-tracefs-{}", std::process::id()))?;
        let out = f(&dir.join("instances"));
        let _ = nix::mount::umount(&dir);
        let _ = fs::remove_dir(&dir);
        Ok(out)
    })
    .join()
    .map_err(|_| "the tracefs thread panicked".to_string())?
}

/// The kernel's tracing instances, by name.
pub fn instances() -> Result<Vec<String>> {
    let listed = with_instances(|dir| {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string())
    });
    listed.and_then(|r| r).map_err(|e| {
        Error::io(
            format!("list tracing instances: {e}"),
            std::io::Error::other("tracefs"),
        )
    })
}

/// Removes tracing instances named `<prefix><pid>` whose pid no longer
/// runs (a watcher that was killed). Best effort.
pub fn remove_stale(prefix: &str) {
    let prefix = prefix.to_string();
    let _ = with_instances(move |dir| {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = n.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = write(&e.path().join("events/skb/kfree_skb/enable"), "0");
                let _ = fs::remove_dir(e.path());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_pipe_line_gives_reason_location_and_protocol() {
        let line = "          <idle>-0       [001] ..s2.  1234.5678: kfree_skb: skbaddr=000000009a1b2c3d rx_sk=0000000000000000 protocol=2048 location=ip_forward+0x1c4/0x4d0 reason: PKT_TOO_BIG\n";
        assert_eq!(
            parse_line(line),
            Some(Drop {
                reason: "PKT_TOO_BIG".into(),
                location: "ip_forward".into(),
                protocol: 2048,
            })
        );
    }

    #[test]
    fn other_lines_are_not_drops() {
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("consume_skb: skbaddr=1 location=x"), None);
        assert_eq!(
            parse_line("kfree_skb: skbaddr=1 protocol=zz reason: X"),
            None
        );
        assert_eq!(
            parse_line("kfree_skb: skbaddr=1 protocol=2048 reason: "),
            None
        );
    }
}
