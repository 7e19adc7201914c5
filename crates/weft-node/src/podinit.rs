//! `weft pod-init`: the two small processes every pod is made of besides
//! its containers — the pod's init (the pause container) and the init of
//! each container process (what tini is to a container).
//!
//! Why a helper program and not only `pre_exec`: a process that calls
//! `setns(CLONE_NEWPID)` or `unshare(CLONE_NEWPID)` stays in its own PID
//! namespace; only its children are born in the new one, and a fresh
//! `/proc` must be mounted by a process inside it. So the runtime's
//! `pre_exec` (raw system calls only, see [`crate::sandbox`]) enters or
//! creates the namespaces and execs this program, which forks once:
//!
//! - `pod-init sandbox` is exec'd after `unshare(NEWNS|NEWUTS|NEWIPC|NEWPID)`
//!   (and `setns` into the pod's network namespace). Its child is PID 1 of
//!   the pod's new PID namespace: it mounts a fresh procfs on /proc in the
//!   pod's private mount namespace, remounts /sys for the pod's network,
//!   bind-mounts resolv.conf, hosts and the ServiceAccount directory, sets
//!   the hostname and, in the pod's own network namespace only, the sysctls
//!   container runtimes set (`ip_unprivileged_port_start=0`,
//!   `ping_group_range=0 2147483647`); hostNetwork pods leave the node's
//!   namespace alone. Then it only holds the namespaces: SIGCHLD is ignored,
//!   so the kernel reaps every orphan of the pod at once (no zombies), and
//!   SIGTERM/SIGINT end it. The parent prints `ready <pid of the child>`
//!   (or `error <why>`) on stdout and waits for it; killing the pod's init
//!   (or its parent: `PR_SET_PDEATHSIG`) kills every process of the pod.
//! - `pod-init run` is exec'd after `setns` into the pod init's network,
//!   UTS, IPC, mount and PID namespaces, for a container, an exec probe or
//!   `weft exec`. Its child is born in the pod's PID namespace (so it is
//!   never PID 1 and SIGTERM without a handler still ends it); given
//!   `--mount`s, it gets a mount namespace of its own (a private copy of the
//!   pod's) with the container's volumes bind-mounted ([`crate::volumes`]),
//!   so containers of one pod each see their own `volumeMounts`; it takes the
//!   container's identity ([`crate::security::Identity`]: setgroups, setgid,
//!   setuid in that order; capabilities through the `caps` crate, which
//!   wraps capset/prctl without pulling in libcap; no_new_privs) and execs
//!   the command. The parent stays outside the pod's PID namespace as the
//!   process the runtime started, waits, and ends exactly as the command
//!   did: the same exit code, or killed by the same signal. The runtime
//!   signals the process group, which both share, so the command gets each
//!   signal once; the parent relays a signal itself only when the command
//!   has left that group (a shell with job control).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
#[cfg(test)]
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI32, Ordering};

use caps::{CapSet, Capability, CapsHashSet};
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, setgid, setgroups, sethostname, setuid, ForkResult, Gid, Uid};

use crate::volumes::MountSpec;

/// Where every container finds its ServiceAccount token, CA and namespace.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `weft pod-init …` (hidden): the pod's init or a container's init.
#[derive(Debug, Clone, clap::Args)]
pub struct PodInitArgs {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Mode {
    /// Hold a new pod's namespaces (PID 1 of its PID namespace).
    Sandbox(SandboxArgs),
    /// Run one command in the pod with a container's identity.
    Run(RunArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    #[arg(long)]
    pub hostname: String,
    /// Bind-mounted over /etc/resolv.conf.
    #[arg(long)]
    pub resolv_conf: PathBuf,
    /// Bind-mounted over /etc/hosts.
    #[arg(long)]
    pub hosts: PathBuf,
    /// Bind-mounted read-only on [`SERVICE_ACCOUNT_MOUNT`].
    #[arg(long)]
    pub service_account: Option<PathBuf>,
    /// The pod has its own network namespace (not hostNetwork): remount
    /// /sys and set the pod's network sysctls.
    #[arg(long)]
    pub pod_network: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub uid: u32,
    #[arg(long)]
    pub gid: u32,
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<u32>,
    /// Canonical capability names the command keeps.
    #[arg(long, value_delimiter = ',')]
    pub caps: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long)]
    pub workdir: Option<String>,
    /// A volume mount of the container, as JSON
    /// ([`crate::volumes::MountSpec`]); repeated. With any, the command gets
    /// its own mount namespace, a copy of the pod's, with these bind mounts.
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// Write the command's stdout and stderr to this process's stdout as
    /// CRI log entries (timestamped lines, [`crate::logs`]) instead of
    /// passing the descriptors through.
    #[arg(long)]
    pub cri_log: bool,
    /// Feed the command's stdin from this FIFO (what `attach -i` sessions
    /// write); without `--stdin-once` it stays open across sessions.
    #[arg(long)]
    pub stdin_fifo: Option<PathBuf>,
    /// Close the command's stdin when the first writer of `--stdin-fifo`
    /// leaves (core/v1 `stdinOnce`).
    #[arg(long)]
    pub stdin_once: bool,
    /// Run the command on a pseudo-terminal of its own (core/v1 `tty`):
    /// its output is logged as stdout, `--stdin-fifo` is its input.
    #[arg(long)]
    pub tty: bool,
    /// Terminal sizes for `--tty`, as lines "<cols> <rows>".
    #[arg(long)]
    pub resize_fifo: Option<PathBuf>,
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// Runs `weft pod-init`; the return value is the exit code (a command
/// killed by a signal kills this process with the same signal instead).
pub fn main(args: PodInitArgs) -> i32 {
    match args.mode {
        Mode::Sandbox(a) => sandbox(&a),
        Mode::Run(a) => run(&a),
    }
}

fn sandbox(a: &SandboxArgs) -> i32 {
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            println!("error create a pipe: {e}");
            return 1;
        }
    };
    // SAFETY: this process is single-threaded (pod-init starts no threads),
    // so the child may run any code.
    #[allow(unsafe_code)]
    match unsafe { fork() } {
        Err(e) => {
            println!("error fork the pod's init: {e}");
            1
        }
        Ok(ForkResult::Child) => {
            drop(rd);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let result = setup_pod(a);
            let msg = match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error {e}"),
            };
            let mut w = File::from(wr);
            let _ = w.write_all(msg.as_bytes());
            drop(w);
            if result.is_err() {
                std::process::exit(1);
            }
            hold()
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut msg = String::new();
            let _ = File::from(rd).read_to_string(&mut msg);
            let line = if msg == "ok" {
                format!("ready {child}")
            } else if msg.is_empty() {
                "error the pod's init ended before it was ready".to_string()
            } else {
                msg
            };
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            quiet_stdio();
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 1,
                }
            }
        }
    }
}

/// Points stdin and stdout at /dev/null, so whoever reads the pod init's
/// output sees its end.
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors; `null` stays valid here.
        #[allow(unsafe_code)]
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

fn bind(src: &Path, dst: &str) -> Result<(), String> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("bind-mount {} on {dst}: {e}", src.display()))
}

/// What PID 1 of a new pod sets up in the pod's (private) mount, UTS and
/// network namespaces before any container joins.
fn setup_pod(a: &SandboxArgs) -> Result<(), String> {
    // A procfs mounted from inside the new PID namespace lists only the pod.
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mount a fresh /proc: {e}"))?;
    if a.pod_network {
        // /sys shows the interfaces of the namespace that mounted it;
        // remount as `ip netns exec` does (best effort).
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
    bind(&a.resolv_conf, "/etc/resolv.conf")?;
    bind(&a.hosts, "/etc/hosts")?;
    if let Some(dir) = &a.service_account {
        // An empty mount point outside the state dir (under /run, a tmpfs,
        // so gone at reboot), like the mount points of volumeMounts. Nothing
        // is ever written into it on the machine's side.
        std::fs::create_dir_all(SERVICE_ACCOUNT_MOUNT)
            .map_err(|e| format!("create the mount point {SERVICE_ACCOUNT_MOUNT}: {e}"))?;
        bind(dir, SERVICE_ACCOUNT_MOUNT)?;
        mount(
            None::<&str>,
            SERVICE_ACCOUNT_MOUNT,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("make {SERVICE_ACCOUNT_MOUNT} read-only: {e}"))?;
    }
    sethostname(&a.hostname).map_err(|e| format!("set hostname {:?}: {e}", a.hostname))?;
    if a.pod_network {
        // /proc/sys/net is the opener's network namespace: the pod's own
        // (only pods with their own namespace get here).
        for (key, value) in [
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
        ] {
            std::fs::write(format!("/proc/sys/{key}"), value)
                .map_err(|e| format!("set sysctl {key}={value} in the pod's namespace: {e}"))?;
        }
    }
    Ok(())
}

extern "C" fn exit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(0)
    }
}

/// PID 1 of the pod: holds the namespaces until killed.
fn hold() -> ! {
    quiet_stdio();
    // SAFETY: setting dispositions; the handler only calls _exit.
    #[allow(unsafe_code)]
    unsafe {
        // Ignored SIGCHLD: the kernel reaps orphans re-parented here at once.
        let _ = signal(Signal::SIGCHLD, SigHandler::SigIgn);
        let _ = signal(Signal::SIGTERM, SigHandler::Handler(exit_now));
        let _ = signal(Signal::SIGINT, SigHandler::Handler(exit_now));
    }
    loop {
        nix::unistd::pause();
    }
}

/// The command's pid, for the relay handler (0 until it exists).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals the parent of a container relays.
const RELAYED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGWINCH,
];

extern "C" fn relay(sig: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child <= 0 {
        return;
    }
    // SAFETY: getpgid, getpgrp and kill are async-signal-safe system calls.
    #[allow(unsafe_code)]
    unsafe {
        // A signal to our process group reached the command already.
        if libc::getpgid(child) != libc::getpgrp() {
            libc::kill(child, sig);
        }
    }
}

fn parse_caps(names: &[String]) -> Result<CapsHashSet, String> {
    names
        .iter()
        .map(|n| Capability::from_str(n).map_err(|_| format!("unknown capability {n:?}")))
        .collect()
}

fn run(a: &RunArgs) -> i32 {
    let keep = match parse_caps(&a.caps) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("weft pod-init: {e}");
            return 126;
        }
    };
    let argv: Result<Vec<CString>, _> = a.argv.iter().map(|s| CString::new(s.as_str())).collect();
    let Ok(argv) = argv else {
        eprintln!("weft pod-init: the command has a NUL byte");
        return 126;
    };
    let mounts: Result<Vec<MountSpec>, _> = a
        .mounts
        .iter()
        .map(|m| serde_json::from_str::<MountSpec>(m).map_err(|e| format!("--mount {m:?}: {e}")))
        .collect();
    let mounts = match mounts {
        Ok(m) => m,
        Err(e) => {
            eprintln!("weft pod-init: {e}");
            return 126;
        }
    };
    let mut all = SigSet::empty();
    for s in RELAYED {
        all.add(s);
    }
    let pipes = if a.cri_log {
        let make = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
        match (make(), make()) {
            (Ok(out), Ok(err)) => Some((out, err)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("weft pod-init: create the log pipes: {e}");
                return 126;
            }
        }
    } else {
        None
    };
    let input = match open_input(a) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("weft pod-init: {e}");
            return 126;
        }
    };
    // Blocked across fork: a signal that comes before the child's pid is
    // known waits instead of being lost.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    for s in RELAYED {
        // SAFETY: the handler only makes async-signal-safe system calls.
        #[allow(unsafe_code)]
        unsafe {
            let _ = signal(s, SigHandler::Handler(relay));
        }
    }
    // SAFETY: single-threaded process; the child execs or exits.
    #[allow(unsafe_code)]
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("weft pod-init: fork: {e}");
            126
        }
        Ok(ForkResult::Child) => {
            for s in RELAYED {
                // SAFETY: restoring the default disposition.
                #[allow(unsafe_code)]
                unsafe {
                    let _ = signal(s, SigHandler::SigDfl);
                }
            }
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
            if let Err(e) = mount_volumes(&mounts) {
                eprintln!("weft pod-init: {e}");
                std::process::exit(126);
            }
            if let Some(((_, out), (_, err))) = &pipes {
                // dup2 clears close-on-exec on the standard descriptors only.
                if rustix::stdio::dup2_stdout(out)
                    .and_then(|()| rustix::stdio::dup2_stderr(err))
                    .is_err()
                {
                    std::process::exit(126);
                }
            }
            if let Err(e) = input.child_side() {
                eprintln!("weft pod-init: {e}");
                std::process::exit(126);
            }
            if let Err(e) = become_container(a, &keep) {
                eprintln!("weft pod-init: {e}");
                std::process::exit(126);
            }
            if matches!(input, Input::Tty { .. }) {
                // Its own session leaves our process group: the runtime's
                // SIGKILL of the group would miss it, our death must not.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            }
            let err = match nix::unistd::execvp(&argv[0], &argv) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            eprintln!("weft pod-init: exec {:?}: {err}", a.argv[0]);
            std::process::exit(if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            });
        }
        Ok(ForkResult::Parent { child }) => {
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
            let (inputs, terminal) = match input.parent_side(a) {
                Ok(i) => i,
                Err(e) => {
                    // Logged where the container's output goes.
                    eprintln!("weft pod-init: {e}");
                    (Inputs::default(), None)
                }
            };
            if let Some(((out, _), (err, _))) = pipes {
                match terminal {
                    // The terminal is the command's only output.
                    Some(master) => relay_logs(child, master, None, inputs),
                    None => relay_logs(child, out, Some(err), inputs),
                }
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => die_by(sig),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("weft pod-init: wait for the command: {e}");
                        return 255;
                    }
                }
            }
        }
    }
}

/// Copies the command's stdout and stderr to this process's stdout as CRI
/// log entries until the command has exited (a pidfd says when; what its
/// pipes still hold then is read to the end of what is there) or both
/// pipes are closed; meanwhile feeds its input ([`Inputs`]).
///
/// `err: None` is a terminal's output (the master side): every read is
/// logged at once, an unfinished line (a prompt) as a partial entry, so
/// `attach` shows what a terminal would.
///
/// One poll loop, no threads: this process has entered the pod's PID
/// namespace for its children, and the kernel refuses `CLONE_THREAD` then.
fn relay_logs(
    child: nix::unistd::Pid,
    out: std::os::fd::OwnedFd,
    err: Option<std::os::fd::OwnedFd>,
    mut inputs: Inputs,
) {
    use crate::logs::{LineSplitter, Stream};
    use rustix::event::{PollFd, PollFlags};
    let pidfd = rustix::process::Pid::from_raw(child.as_raw())
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let terminal = err.is_none();
    let mut streams = [
        (Some(out), LineSplitter::new(Stream::Stdout)),
        (err, LineSplitter::new(Stream::Stderr)),
    ];
    let mut log = std::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    while streams.iter().any(|(fd, _)| fd.is_some()) {
        // 0, 1: the outputs; 2: the pidfd; 3: stdin's FIFO or, while input
        // waits to be taken, the command's input; 4: the resize FIFO.
        let mut ready = [false; 5];
        {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let mut which = Vec::new();
            for (i, (fd, _)) in streams.iter().enumerate() {
                if let Some(fd) = fd {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    which.push(i);
                }
            }
            if let Some(p) = &pidfd {
                fds.push(PollFd::new(p, PollFlags::IN));
                which.push(2);
            }
            if let Some(s) = &inputs.stdin {
                if s.pending.is_empty() {
                    if let Some(f) = &s.fifo {
                        fds.push(PollFd::new(f, PollFlags::IN));
                        which.push(3);
                    }
                } else {
                    fds.push(PollFd::new(&s.into, PollFlags::OUT));
                    which.push(3);
                }
            }
            if let Some(r) = &inputs.resize {
                fds.push(PollFd::new(&r.fifo, PollFlags::IN));
                which.push(4);
            }
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            for (fd, i) in fds.iter().zip(which) {
                if !fd.revents().is_empty() {
                    ready[i] = true;
                }
            }
        }
        if ready[2] {
            // The command is gone: take what its pipes hold now, then stop
            // (a process it left behind may keep them open forever).
            for (fd, split) in streams.iter_mut() {
                if let Some(f) = fd.as_ref() {
                    let _ = rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::NONBLOCK);
                    while let Ok(n) = rustix::io::read(f, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        write_entries(&mut log, split, &buf[..n]);
                    }
                }
                finish_entries(&mut log, split);
                *fd = None;
            }
            return;
        }
        if ready[3] {
            inputs.stdin = inputs.stdin.take().and_then(|s| s.step(&mut buf));
        }
        if ready[4] {
            inputs.resize = inputs.resize.take().and_then(|r| r.step(&mut buf));
        }
        for (i, (fd, split)) in streams.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let Some(f) = fd.as_ref() else { continue };
            match rustix::io::read(f, &mut buf) {
                // A terminal's master shares the input's non-blocking mode.
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Ok(0) | Err(_) => {
                    finish_entries(&mut log, split);
                    *fd = None;
                }
                Ok(n) => {
                    write_entries(&mut log, split, &buf[..n]);
                    if terminal {
                        finish_entries(&mut log, split);
                    }
                }
            }
        }
    }
}

/// What feeds a container's input while [`relay_logs`] runs.
#[derive(Default)]
struct Inputs {
    stdin: Option<StdinRelay>,
    resize: Option<ResizeRelay>,
}

/// Copies what writers of the stdin FIFO send to the command's input
/// (non-blocking both ways: a command that does not read its input never
/// holds up the logging of its output). With `once` the FIFO is open for
/// reading only, so the first writer's leaving reads as its end, and the
/// input is closed then (EOF on a pipe); otherwise it is also open for
/// writing here, so writers come and go and the input never ends.
struct StdinRelay {
    /// `None` once the writer left under `once`: what is pending is
    /// delivered, then the relay ends.
    fifo: Option<File>,
    into: std::os::fd::OwnedFd,
    pending: Vec<u8>,
}

impl StdinRelay {
    fn open(fifo: &Path, into: std::os::fd::OwnedFd, once: bool) -> Result<StdinRelay, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let from = std::fs::OpenOptions::new()
            .read(true)
            .write(!once)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .map_err(|e| format!("open {}: {e}", fifo.display()))?;
        rustix::fs::fcntl_setfl(&into, rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| format!("make the input non-blocking: {e}"))?;
        Ok(StdinRelay {
            fifo: Some(from),
            into,
            pending: Vec::new(),
        })
    }

    /// One step after poll said ready; `None`: the input is finished.
    fn step(mut self, buf: &mut [u8]) -> Option<StdinRelay> {
        if self.pending.is_empty() {
            let f = self.fifo.as_ref()?;
            match rustix::io::read(f, &mut *buf) {
                Ok(0) => self.fifo = None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => self.fifo = None,
            }
        }
        while !self.pending.is_empty() {
            match rustix::io::write(&self.into, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => break,
                // The command closed its input: nothing more to give.
                Err(_) => return None,
            }
        }
        if self.fifo.is_none() && self.pending.is_empty() {
            return None;
        }
        Some(self)
    }
}

/// Applies each "<cols> <rows>" line written to the resize FIFO (held
/// open for writing too: never at its end) to the terminal.
struct ResizeRelay {
    fifo: File,
    master: std::os::fd::OwnedFd,
    line: Vec<u8>,
}

impl ResizeRelay {
    fn step(mut self, buf: &mut [u8]) -> Option<ResizeRelay> {
        match rustix::io::read(&self.fifo, &mut *buf) {
            Ok(0) => return None,
            Ok(n) => self.line.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return Some(self),
            Err(_) => return None,
        }
        while let Some(nl) = self.line.iter().position(|b| *b == b'\n') {
            let size = std::str::from_utf8(&self.line[..nl])
                .ok()
                .and_then(parse_size);
            if let Some((cols, rows)) = size {
                let size = rustix::termios::Winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                let _ = rustix::termios::tcsetwinsize(&self.master, size);
            }
            self.line.drain(..=nl);
        }
        // A writer that never ends its line does not grow this for ever.
        if self.line.len() > 64 {
            self.line.clear();
        }
        Some(self)
    }
}

/// Where a container's stdin comes from, made before the fork.
enum Input {
    /// /dev/null, as the runtime left it.
    Null,
    /// A pipe fed from `--stdin-fifo`.
    Pipe {
        read: std::os::fd::OwnedFd,
        write: std::os::fd::OwnedFd,
    },
    /// A pseudo-terminal: stdin, stdout and stderr of the command.
    Tty(crate::kubelet::Pty),
}

fn open_input(a: &RunArgs) -> Result<Input, String> {
    if a.tty {
        if !a.cri_log {
            return Err("--tty needs --cri-log".into());
        }
        return crate::kubelet::open_pty()
            .map(Input::Tty)
            .map_err(|e| format!("allocate a pseudo-terminal: {e}"));
    }
    if a.stdin_fifo.is_none() {
        return Ok(Input::Null);
    }
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("create the stdin pipe: {e}"))?;
    Ok(Input::Pipe { read, write })
}

impl Input {
    /// In the child, before exec: the descriptors become its stdio.
    fn child_side(&self) -> Result<(), String> {
        match self {
            Input::Null => Ok(()),
            Input::Pipe { read, .. } => {
                rustix::stdio::dup2_stdin(read).map_err(|e| format!("take the stdin pipe: {e}"))
            }
            Input::Tty(pty) => {
                rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
                rustix::process::ioctl_tiocsctty(&pty.slave)
                    .map_err(|e| format!("take the terminal: {e}"))?;
                rustix::stdio::dup2_stdin(&pty.slave)
                    .and_then(|()| rustix::stdio::dup2_stdout(&pty.slave))
                    .and_then(|()| rustix::stdio::dup2_stderr(&pty.slave))
                    .map_err(|e| format!("take the terminal: {e}"))
            }
        }
    }

    /// In the parent, after the fork: the relays of the command's input,
    /// and a terminal's master side (the command's output).
    fn parent_side(self, a: &RunArgs) -> Result<(Inputs, Option<std::os::fd::OwnedFd>), String> {
        let mut inputs = Inputs::default();
        match self {
            Input::Null => Ok((inputs, None)),
            Input::Pipe { read, write } => {
                drop(read);
                if let Some(fifo) = &a.stdin_fifo {
                    inputs.stdin = Some(StdinRelay::open(fifo, write, a.stdin_once)?);
                }
                Ok((inputs, None))
            }
            Input::Tty(pty) => {
                drop(pty.slave);
                let dup = || {
                    pty.master
                        .try_clone()
                        .map_err(|e| format!("duplicate the terminal: {e}"))
                };
                if let Some(fifo) = &a.stdin_fifo {
                    inputs.stdin = Some(StdinRelay::open(fifo, dup()?, a.stdin_once)?);
                }
                if let Some(fifo) = &a.resize_fifo {
                    let from = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(fifo)
                        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
                    rustix::fs::fcntl_setfl(&from, rustix::fs::OFlags::NONBLOCK)
                        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
                    inputs.resize = Some(ResizeRelay {
                        fifo: from,
                        master: dup()?,
                        line: Vec::new(),
                    });
                }
                Ok((inputs, Some(pty.master)))
            }
        }
    }
}

/// "<cols> <rows>" as numbers; anything else is ignored.
fn parse_size(line: &str) -> Option<(u16, u16)> {
    let mut it = line.split_ascii_whitespace();
    let cols = it.next()?.parse().ok()?;
    let rows = it.next()?.parse().ok()?;
    it.next().is_none().then_some((cols, rows))
}

fn write_entries(log: &mut std::io::Stdout, split: &mut crate::logs::LineSplitter, data: &[u8]) {
    let mut out = Vec::new();
    split.feed(jiff::Timestamp::now(), data, &mut out);
    if !out.is_empty() {
        let _ = log.write_all(&out);
        let _ = log.flush();
    }
}

fn finish_entries(log: &mut std::io::Stdout, split: &mut crate::logs::LineSplitter) {
    let mut out = Vec::new();
    split.finish(jiff::Timestamp::now(), &mut out);
    if !out.is_empty() {
        let _ = log.write_all(&out);
        let _ = log.flush();
    }
}

/// Ends this process with the signal that ended the command, so the runtime
/// sees the same termination (no core file of our own).
fn die_by(sig: Signal) -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on values owned here.
    #[allow(unsafe_code)]
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        let _ = signal(sig, SigHandler::SigDfl);
    }
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
    // Signals whose default is to be ignored (SIGWINCH) end up here.
    std::process::exit(128 + sig as i32)
}

/// Where a mount's source is: `source`, or its `sub_path` inside it,
/// which must stay inside the volume once symlinks are followed (kubelet's
/// subpath check); a missing subPath is made a directory, as kubelet does.
pub fn resolve_source(m: &MountSpec) -> Result<PathBuf, String> {
    let base = std::fs::canonicalize(&m.source)
        .map_err(|e| format!("volume path {}: {e}", m.source.display()))?;
    let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(base);
    };
    let joined = base.join(sub);
    let within = |p: &Path| -> Result<PathBuf, String> {
        let real = std::fs::canonicalize(p).map_err(|e| format!("subpath {}: {e}", p.display()))?;
        if real.starts_with(&base) {
            Ok(real)
        } else {
            Err(format!(
                "subpath {sub:?} is not within volume path {}",
                base.display()
            ))
        }
    };
    if std::fs::metadata(&joined).is_err() {
        // The deepest part that exists must already be inside the volume.
        let mut existing = joined.as_path();
        while std::fs::metadata(existing).is_err() {
            existing = existing.parent().unwrap_or(&base);
        }
        within(existing)?;
        std::fs::create_dir_all(&joined)
            .map_err(|e| format!("create subpath {}: {e}", joined.display()))?;
    }
    within(&joined)
}

/// Makes `target` a mount point for `source`: an empty directory for a
/// directory, an empty file for anything else; an existing one must be of
/// the same kind.
fn make_mount_point(source: &Path, target: &Path) -> Result<(), String> {
    let dir = std::fs::metadata(source)
        .map_err(|e| format!("mount source {}: {e}", source.display()))?
        .is_dir();
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() == dir => Ok(()),
        Ok(_) => Err(format!(
            "cannot mount {} on {}: one is a directory, the other is not",
            source.display(),
            target.display()
        )),
        Err(_) if dir => std::fs::create_dir_all(target)
            .map_err(|e| format!("create the mount point {}: {e}", target.display())),
        Err(_) => {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("create {}: {e}", parent.display()))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)
                .map(drop)
                .map_err(|e| format!("create the mount point {}: {e}", target.display()))
        }
    }
}

/// Gives the command its own mount namespace (a private copy of the pod's)
/// with the container's volumes bind-mounted, recursively, in order; a
/// read-only one is remounted read-only keeping the flags (nosuid, nodev,
/// noexec) its source has.
fn mount_volumes(mounts: &[MountSpec]) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("make the container's mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make the container's mounts private: {e}"))?;
    for m in mounts {
        let source = resolve_source(m)?;
        let target = Path::new(&m.target);
        make_mount_point(&source, target)?;
        mount(
            Some(&source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("bind-mount {} on {}: {e}", source.display(), m.target))?;
        if m.read_only {
            use nix::sys::statvfs::{statvfs, FsFlags};
            let kept = statvfs(target)
                .map(|s| s.flags())
                .map_err(|e| format!("statvfs {}: {e}", m.target))?;
            let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            for (st, ms) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if kept.contains(st) {
                    flags |= ms;
                }
            }
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
                .map_err(|e| format!("make {} read-only: {e}", m.target))?;
        }
    }
    Ok(())
}

/// Takes the container's identity, in the order the kernel needs: the
/// bounding set while still root, supplementary groups before gid before
/// uid, then the capability sets (ambient for a non-root uid so they
/// survive exec), parent-death signal, no_new_privs, working directory.
fn become_container(a: &RunArgs, keep: &CapsHashSet) -> Result<(), String> {
    let supported = caps::runtime::thread_all_supported();
    // What this process may pass on at all: `privileged` on a machine whose
    // root lacks a capability gets all the others.
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("read the permitted capabilities: {e}"))?;
    let keep: CapsHashSet = keep
        .intersection(&supported)
        .filter(|c| permitted.contains(c))
        .copied()
        .collect();
    let sorted: BTreeSet<String> = supported
        .difference(&keep)
        .map(ToString::to_string)
        .collect();
    for name in &sorted {
        if let Ok(c) = Capability::from_str(name) {
            caps::drop(None, CapSet::Bounding, c)
                .map_err(|e| format!("drop {name} from the bounding set: {e}"))?;
        }
    }
    let non_root = a.uid != 0;
    if non_root && !keep.is_empty() {
        nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keep capabilities: {e}"))?;
    }
    let groups: Vec<Gid> = a.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| format!("setgroups {:?}: {e}", a.groups))?;
    setgid(Gid::from_raw(a.gid)).map_err(|e| format!("setgid {}: {e}", a.gid))?;
    setuid(Uid::from_raw(a.uid)).map_err(|e| format!("setuid {}: {e}", a.uid))?;
    // Effective first (it must stay within permitted), permitted last.
    for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
        caps::set(None, set, &keep).map_err(|e| format!("set {set:?} capabilities: {e}"))?;
    }
    if non_root {
        for c in &keep {
            caps::raise(None, CapSet::Ambient, *c)
                .map_err(|e| format!("raise ambient {c}: {e}"))?;
        }
    }
    // Set after setuid: a change of credentials clears it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if a.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("set no_new_privs: {e}"))?;
    }
    let dir = a
        .workdir
        .as_deref()
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    std::env::set_current_dir(dir).map_err(|e| format!("change to working directory {dir}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_size_is_two_numbers_and_nothing_else() {
        assert_eq!(parse_size("100 30"), Some((100, 30)));
        assert_eq!(parse_size("100"), None);
        assert_eq!(parse_size("100 30 1"), None);
        assert_eq!(parse_size("wide 30"), None);
        assert_eq!(parse_size("70000 30"), None);
    }

    fn fifo(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("weft-podinit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        path
    }

    /// Steps the relay until it ends or `n` steps passed.
    fn run(mut relay: Option<StdinRelay>, n: usize) -> Option<StdinRelay> {
        let mut buf = vec![0u8; 64];
        for _ in 0..n {
            relay = relay?.step(&mut buf);
        }
        relay
    }

    #[test]
    fn stdin_once_delivers_the_first_writers_input_then_closes_it() {
        let path = fifo("once");
        let (read, write) = rustix::pipe::pipe().unwrap();
        let relay = StdinRelay::open(&path, write, true).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(b"hello\n").unwrap();
        drop(w);
        // Data, then the writer's end, then the input is closed.
        assert!(run(Some(relay), 4).is_none(), "the relay ended");
        let mut got = String::new();
        File::from(read).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello\n", "EOF after the first writer's input");
        // Nobody reads the FIFO any more: a later writer is refused.
        let late = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        assert!(late.is_err(), "a second session gets no input");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn stdin_without_once_outlives_its_writers() {
        let path = fifo("many");
        let (read, write) = rustix::pipe::pipe().unwrap();
        let mut relay = Some(StdinRelay::open(&path, write, false).unwrap());
        for word in ["a\n", "b\n"] {
            let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            w.write_all(word.as_bytes()).unwrap();
            drop(w);
            relay = run(relay, 2);
            assert!(relay.is_some(), "a writer leaving does not end the input");
        }
        drop(relay);
        let mut got = String::new();
        File::from(read).read_to_string(&mut got).unwrap();
        assert_eq!(got, "a\nb\n");
        let _ = std::fs::remove_file(&path);
    }
}
