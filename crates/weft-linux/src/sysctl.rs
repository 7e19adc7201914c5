//! Network sysctls of the calling thread's namespace.
//!
//! `/proc/sys/net` resolves to the namespace of the thread that opens the file,
//! so call these from inside [`crate::Netns::run`] to reach another namespace.

use std::fs;

use crate::{Error, Result};

// Keys are slash-separated (`net/ipv4/conf/weft.vxlan/forwarding`) because
// interface names may contain dots.
fn path_of(key: &str) -> String {
    format!("/proc/sys/{key}")
}

/// Reads e.g. `net/ipv4/ip_forward`.
pub fn read(key: &str) -> Result<String> {
    fs::read_to_string(path_of(key))
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(format!("read sysctl {key}"), e))
}

/// Writes the value only when it differs, so repeated calls are cheap and
/// leave no trace.
pub fn ensure(key: &str, value: &str) -> Result<()> {
    if read(key)? == value {
        return Ok(());
    }
    fs::write(path_of(key), value).map_err(|e| Error::io(format!("write sysctl {key}={value}"), e))
}
