//! The one ethtool setting weft changes: generic receive offload on veths.
//!
//! A veth does no GRO unless asked (it then runs NAPI), so every packet of a
//! TCP stream crosses the bridge, the routing table and the overlay one by
//! one. Turning GRO on for both ends of a pod's veth and for the node's
//! underlay veth measured +25% cross-node throughput here (bench/overlay.sh).
//! Uses the legacy `ETHTOOL_SGRO` ioctl on a socket of the calling thread's
//! network namespace: run it inside [`crate::Netns::run`] for another one.

use std::os::fd::AsRawFd;

use crate::{Error, Result};

const SIOCETHTOOL: nix::libc::c_ulong = 0x8946;
const ETHTOOL_SGRO: u32 = 0x0000_002c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Turns GRO on or off for interface `name` in the calling thread's namespace.
pub fn set_gro(name: &str, on: bool) -> Result<()> {
    let op = || format!("set gro {} on {name}", if on { "on" } else { "off" });
    if name.is_empty() || name.len() > 15 {
        return Err(Error::io(
            op(),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let socket =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"));
    let socket = socket.map_err(|e| Error::io(op(), e))?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: SIOCETHTOOL reads an ifreq whose data points at a live
    // ethtool_value; both outlive the call.
    #[allow(unsafe_code)]
    let rc =
        unsafe { nix::libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(Error::io(op(), std::io::Error::last_os_error()));
    }
    Ok(())
}
