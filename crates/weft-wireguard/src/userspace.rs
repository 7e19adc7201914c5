//! A WireGuard device in this process, for kernels without WireGuard:
//! GotaTun's device (Mullvad's maintained fork of boringtun: a TUN
//! interface, the UDP socket, handshakes and timers as tasks on a tokio
//! runtime of its own), configured through the UAPI protocol over a socket
//! pair rather than the usual `/var/run/wireguard/NAME.sock` — one path for
//! the whole machine, where weft runs a device of the same name in every
//! node's namespace.
//!
//! GotaTun rather than boringtun: on this project's 2-CPU machines it moves
//! 1.7× wireguard-go's TCP throughput between two namespaces where
//! boringtun 0.7 moved 0.8× (docs/benchmarks.md), and it is maintained.
//!
//! The TUN interface and the sockets are made in the network namespace of
//! the thread that calls [`Userspace::start`]: the device's thread (and its
//! runtime's threads, spawned from it) inherit it. Addresses, MTU and routes
//! of the interface are the caller's (netlink), as for the kernel's device.
//! GotaTun gives handshake times since the Unix epoch (as wireguard-go
//! does); [`Userspace::state`] turns them into ages.
//!
//! A new key (or port) makes GotaTun 0.10 close its UDP socket and bind a
//! new one at once, but the old socket is released by a task that ends a
//! moment later: the bind fails with EADDRINUSE and the device is left
//! without a socket (a key rotation then cuts the node off). The device
//! therefore binds through [`RetryingUdp`], which waits (bounded) for the
//! port to be free.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gotatun::device::uapi::UapiServer;
use gotatun::device::DeviceBuilder;
use gotatun::udp::socket::{UdpSocket, UdpSocketFactory};
use gotatun::udp::{UdpTransportFactory, UdpTransportFactoryParams};

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
    /// Tells the device's thread to stop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Says the device stopped and its interface is gone.
    stopped: mpsc::Receiver<()>,
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
    /// run by `threads` worker threads; returns once it exists.
    pub fn start(name: &str, threads: usize) -> Result<Userspace, UserspaceError> {
        let start = |why: String| UserspaceError::Start {
            name: name.to_string(),
            why,
        };
        if name.is_empty() || name.len() > 15 {
            return Err(start("an interface name is 1 to 15 bytes".into()));
        }
        let (ours, theirs) = UnixStream::pair()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
        let dev_name = name.to_string();
        std::thread::Builder::new()
            .name(format!("{name}-wg"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(format!("{dev_name}-wg"))
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("start its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let built = async {
                        DeviceBuilder::new()
                            .with_udp(RetryingUdp(UdpSocketFactory::default()))
                            .create_tun(&dev_name)
                            .map_err(|e| e.to_string())?
                            .with_uapi(UapiServer::from_read_write(theirs))
                            .build()
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match built.await {
                        Ok(device) => {
                            let _ = ready_tx.send(Ok(()));
                            // Until dropped (or the Userspace is gone).
                            let _ = stop_rx.await;
                            device.stop().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                // The runtime and the TUN are gone: the kernel removed the
                // interface.
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Userspace {
                name: name.to_string(),
                api: BufReader::new(ours),
                stop: Some(stop_tx),
                stopped: stopped_rx,
            }),
            Ok(Err(why)) => Err(start(why)),
            Err(_) => Err(start("its thread ended before it was ready".into())),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device as it is now, handshake times as ages.
    pub fn state(&mut self) -> Result<DeviceState, UserspaceError> {
        let answer = self.request("get=1\n\n")?;
        let mut state = uapi::parse_get_answer(&answer)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for p in &mut state.peers {
            p.last_handshake = p.last_handshake.map(|at| age(now, at));
        }
        Ok(state)
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

/// GotaTun's UDP sockets, bound again while the port is still held by the
/// socket a reconfiguration just closed (see the module's doc), for up to
/// [`BIND_WAIT`].
struct RetryingUdp(UdpSocketFactory);

/// How long a bind waits for its port to be released.
const BIND_WAIT: Duration = Duration::from_secs(3);

impl UdpTransportFactory for RetryingUdp {
    type Send = UdpSocket;
    type Recv = UdpSocket;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> std::io::Result<(UdpSocket, UdpSocket)> {
        let deadline = std::time::Instant::now() + BIND_WAIT;
        loop {
            match self.0.bind(params).await {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    // Poll until the closing socket is gone.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                other => return other,
            }
        }
    }
}

/// The age of a handshake made at `at` (since the epoch) when it is `now`;
/// a clock that went back reads as a handshake just made.
fn age(now: Duration, at: Duration) -> Duration {
    now.saturating_sub(at)
}

/// How long a drop waits for the device to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl Drop for Userspace {
    /// Removes the interface before returning: the device is stopped, its
    /// runtime ends and the TUN device is closed, which the kernel
    /// unregisters at once (without the wait the interface outlived the
    /// drop by a scheduling delay, and a backend change could find it still
    /// there). A device that does not stop within [`STOP_WAIT`] is left to
    /// end on its own, logged, so a drop never wedges the agent.
    fn drop(&mut self) {
        let _ = self.api.get_ref().shutdown(std::net::Shutdown::Both);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.stopped.recv_timeout(STOP_WAIT).is_err() {
            tracing::warn!(device = %self.name, "the userspace WireGuard device did not stop in time; it is left to end on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_time_since_the_epoch_reads_as_its_age() {
        let now = Duration::from_secs(1_000);
        assert_eq!(age(now, Duration::from_secs(990)), Duration::from_secs(10));
        assert_eq!(age(now, Duration::from_secs(1_005)), Duration::ZERO);
    }
}
