//! weft's WireGuard layer, for the `wireguard` backend (pod traffic between
//! nodes encrypted): the pieces that do not depend on how the agent wires
//! them in.
//!
//! - [`keys`] — a node's key pair, kept in a 0600 file across restarts.
//! - [`uapi`] — WireGuard's cross-platform configuration protocol: the
//!   desired device ([`uapi::Config`]), what a device reports
//!   ([`uapi::DeviceState`]), and the difference between them
//!   ([`uapi::Diff`]) as a request.
//! - [`kernel`] — the kernel's device, configured over generic netlink.
//! - [`userspace`] — a device in this process (GotaTun on a TUN
//!   interface) for kernels without WireGuard, configured through the UAPI
//!   protocol.
//! - [`Device`] — either, behind one interface; the caller (weft-overlay's
//!   apply) chooses, by [`Choice`].

pub mod kernel;
pub mod keys;
pub mod uapi;
pub mod userspace;

use std::fmt;

/// The port WireGuard listens on by convention (and the kernel default of
/// `wg-quick`): UDP between node IPs.
pub const DEFAULT_PORT: u16 = 51820;

/// Which implementation runs a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// The kernel's `wireguard` link, configured over generic netlink.
    Kernel,
    /// GotaTun on a TUN device, in the agent.
    Userspace,
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Implementation::Kernel => "kernel",
            Implementation::Userspace => "userspace",
        })
    }
}

/// Which implementation to use: `auto` takes the kernel's where it has
/// WireGuard and the userspace one where it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    #[default]
    Auto,
    Kernel,
    Userspace,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Choice::Auto => "auto",
            Choice::Kernel => "kernel",
            Choice::Userspace => "userspace",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown WireGuard implementation {0:?}: expected auto, kernel or userspace")]
pub struct UnknownChoice(pub String);

impl std::str::FromStr for Choice {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Choice, UnknownChoice> {
        match s {
            "auto" => Ok(Choice::Auto),
            "kernel" => Ok(Choice::Kernel),
            "userspace" => Ok(Choice::Userspace),
            other => Err(UnknownChoice(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Userspace(#[from] userspace::UserspaceError),
}

/// A running WireGuard device of either implementation. Handshake times in
/// its [`uapi::DeviceState`] are ages (time since the handshake) for both.
#[derive(Debug)]
pub enum Device {
    Kernel(kernel::Kernel),
    Userspace(userspace::Userspace),
}

impl Device {
    pub fn implementation(&self) -> Implementation {
        match self {
            Device::Kernel(_) => Implementation::Kernel,
            Device::Userspace(_) => Implementation::Userspace,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Device::Kernel(k) => k.name(),
            Device::Userspace(u) => u.name(),
        }
    }

    pub fn state(&mut self) -> Result<uapi::DeviceState, DeviceError> {
        Ok(match self {
            Device::Kernel(k) => k.state()?,
            Device::Userspace(u) => u.state()?,
        })
    }

    /// Brings the device to `want` by difference; says whether anything
    /// was changed.
    pub fn configure(&mut self, want: &uapi::Config) -> Result<bool, DeviceError> {
        Ok(match self {
            Device::Kernel(k) => k.configure(want)?,
            Device::Userspace(u) => u.configure(want)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_is_parsed_and_an_unknown_one_is_named() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("kernel".parse::<Choice>(), Ok(Choice::Kernel));
        assert_eq!("userspace".parse::<Choice>(), Ok(Choice::Userspace));
        let e = "boringtun".parse::<Choice>().unwrap_err();
        assert!(e.to_string().contains("\"boringtun\""), "{e}");
    }
}
