//! A WireGuard device in this process, for kernels without WireGuard:
//! boringtun's device (a TUN interface, the UDP socket, the handshakes and
//! timers on its own threads), configured through the UAPI protocol over a
//! socket pair rather than boringtun's usual `/var/run/wireguard/NAME.sock`
//! — one path for the whole machine, where weft runs a device of the same
//! name in every node's namespace.
//!
//! The TUN interface and the socket are made in the network namespace of
//! the thread that calls [`Userspace::start`], and boringtun's threads
//! (spawned from it) stay there. Addresses, MTU and routes of the interface
//! are the caller's (netlink), as for the kernel's device.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use boringtun::device::{DeviceConfig, DeviceHandle};

use crate::uapi::{self, Config, DeviceState, UapiError};

#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    #[error("create the userspace WireGuard device {name}: {why}")]
    Start { name: String, why: String },
    #[error("talk to the userspace WireGuard device: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Uapi(#[from] UapiError),
}

/// A running userspace device; dropping it removes the interface.
pub struct Userspace {
    name: String,
    api: BufReader<UnixStream>,
    handle: Option<DeviceHandle>,
}

impl std::fmt::Debug for Userspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Userspace")
            .field("name", &self.name)
            .finish()
    }
}

impl Userspace {
    /// Creates the interface `name` (a TUN device, down, without address)
    /// with `threads` worker threads.
    pub fn start(name: &str, threads: usize) -> Result<Userspace, UserspaceError> {
        let start = |why: String| UserspaceError::Start {
            name: name.to_string(),
            why,
        };
        if name.is_empty() || name.len() > 15 {
            return Err(start("an interface name is 1 to 15 bytes".into()));
        }
        let (ours, theirs) = UnixStream::pair()?;
        let theirs: OwnedFd = theirs.into();
        let handle = DeviceHandle::new(
            name,
            DeviceConfig {
                n_threads: threads.max(1),
                use_connected_socket: true,
                use_multi_queue: false,
                // boringtun owns (and closes) it from here on.
                uapi_fd: theirs.into_raw_fd(),
            },
        )
        .map_err(|e| start(format!("{e:?}")))?;
        Ok(Userspace {
            name: name.to_string(),
            api: BufReader::new(ours),
            handle: Some(handle),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device as it is now.
    pub fn state(&mut self) -> Result<DeviceState, UserspaceError> {
        let answer = self.request("get=1\n\n")?;
        Ok(uapi::parse_get_answer(&answer)?)
    }

    /// Brings the device to `want` by difference; says whether anything
    /// was changed.
    pub fn configure(&mut self, want: &Config) -> Result<bool, UserspaceError> {
        let current = self.state()?;
        let Some(set) = uapi::changes(&current, want) else {
            return Ok(false);
        };
        let answer = self.request(&set)?;
        uapi::parse_set_answer(&answer)?;
        Ok(true)
    }

    /// Sends one request and reads its answer, up to `errno=N` and the
    /// empty line after it.
    fn request(&mut self, text: &str) -> Result<String, UserspaceError> {
        self.api.get_mut().write_all(text.as_bytes())?;
        let mut answer = String::new();
        loop {
            let mut line = String::new();
            if self.api.read_line(&mut line)? == 0 {
                return Err(UapiError::Truncated.into());
            }
            let done = line.starts_with("errno=");
            answer.push_str(&line);
            if done {
                let mut blank = String::new();
                self.api.read_line(&mut blank)?;
                return Ok(answer);
            }
        }
    }
}

/// How long a drop waits for the device's threads to end.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Userspace {
    /// Removes the interface before returning: closing our end of the API
    /// socket makes the device's loop exit (boringtun treats it as the end
    /// of its controller); its threads are joined, and the last of them
    /// closes the TUN device, which the kernel unregisters at once. Without
    /// the join the interface outlived the drop by a scheduling delay, and a
    /// backend change could find it still there. A device that does not stop
    /// within [`STOP_WAIT`] is left to end on its own, logged, so a drop
    /// never wedges the agent.
    fn drop(&mut self) {
        let _ = self.api.get_ref().shutdown(std::net::Shutdown::Both);
        let Some(mut handle) = self.handle.take() else {
            return;
        };
        let (done, stopped) = std::sync::mpsc::channel();
        let joiner = std::thread::Builder::new()
            .name(format!("{}-stop", self.name))
            .spawn(move || {
                handle.wait();
                drop(handle);
                let _ = done.send(());
            });
        if joiner.is_err() || stopped.recv_timeout(STOP_WAIT).is_err() {
            tracing::warn!(device = %self.name, "the userspace WireGuard device did not stop in time; it is left to end on its own");
        }
    }
}
