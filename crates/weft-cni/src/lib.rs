//! weft-cni: a CNI 1.1 plugin that wires a pod to its node — a veth pair from
//! the pod's namespace to a Linux bridge, addresses from a crash-safe IPAM,
//! routes, and (in nftables) masquerade and hostPort DNAT.

pub mod config;
pub mod delegate;
pub mod invocation;
pub mod ipam;
pub mod nat;
pub mod net;
pub mod netconf;
pub mod plugin;
pub mod spec;

/// FNV-1a, 64 bit: stable short names for kernel objects derived from a
/// container ID (interfaces, nft chains). Not for security.
pub fn fnv64(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// Fault injection for the crash tests: with `WEFT_CNI_TEST_STALL=<stage>` ADD
/// sleeps at that stage, so a test can SIGKILL it exactly there and prove a
/// later DEL or GC cleans up. Stages: `after-ipam`, `after-veth` (veth made, not yet on the bridge),
/// `after-wire`. Compiled only with the `test-stall` feature (the crate's
/// tests turn it on); otherwise this is a no-op and the variable is not read.
#[cfg(feature = "test-stall")]
pub fn stall_point(stage: &str) {
    if std::env::var("WEFT_CNI_TEST_STALL").is_ok_and(|s| s == stage) {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Without the `test-stall` feature there is no fault injection.
#[cfg(not(feature = "test-stall"))]
#[inline(always)]
pub fn stall_point(_stage: &str) {}

#[cfg(test)]
mod fnv_tests {
    /// Kernel object names derive from this hash: it must stay FNV-1a 64
    /// (published test vectors), or upgraded plugins would not find the
    /// veths and chains they made before.
    #[test]
    fn fnv64_is_fnv1a_64() {
        assert_eq!(super::fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
