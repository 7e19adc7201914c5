//! The cluster's processes: pid files, liveness, and stopping them. (Every
//! process in the cluster's namespaces is found by
//! `weft_linux::netns::pids_in_netns`, so `weft down` works even after every
//! weft process was killed with -9; starting them is in `supervise`.)

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use weft_cluster::Layout;

pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The control plane's pid, if it is alive and really ours.
pub fn control_plane_pid(layout: &Layout) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(layout.pids_dir().join("control-plane"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmd = cmdline(pid);
    (alive(pid) && cmd.contains("control-plane") && cmd.contains(&layout.name)).then_some(pid)
}

/// SIGTERM, wait up to `grace`, then SIGKILL whatever is left.
pub fn terminate(pids: &[i32], grace: Duration) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}
