//! The kernel's WireGuard, where it has one, in a weft- namespace: a
//! `wireguard` link made over rtnetlink, configured over generic netlink by
//! difference and read back. On a kernel without the module (these
//! machines) the same steps must fail in the way `auto` relies on to fall
//! back to the userspace device: the link kind is refused with EOPNOTSUPP
//! and the netlink family is reported missing, by name.

use weft_linux::testns::{root_or_skip, TestNs};
use weft_wireguard::kernel::{Kernel, KernelError};
use weft_wireguard::keys::PrivateKey;
use weft_wireguard::uapi::{diff, Config, Peer};

#[test]
fn the_kernel_device_is_configured_by_difference_or_refused_as_auto_expects() {
    if !root_or_skip("kernel_device") {
        return;
    }
    let ns = TestNs::new("wgk");
    let created = ns.run(|| weft_linux::Handle::new()?.create_wireguard("weft.wg", Some(1420)));
    match created {
        Err(e) => {
            assert!(e.is_not_supported(), "not EOPNOTSUPP: {e}");
            let opened = ns.run(|| Kernel::open("weft.wg"));
            let err = opened.expect_err("no wireguard link kind, yet a wireguard family");
            assert!(matches!(err, KernelError::NoFamily), "{err}");
            assert!(
                err.to_string().contains("the kernel has no WireGuard"),
                "{err}"
            );
            eprintln!("kernel_device: this kernel has no WireGuard; checked the refusal only");
        }
        Ok(()) => {
            let mut dev = ns
                .run(|| Kernel::open("weft.wg"))
                .expect("the family exists where the link kind does");
            let peer = |n: u8, ip: &str, cidr: &str| Peer {
                public_key: PrivateKey::from_bytes([n; 32]).public(),
                endpoint: Some(format!("{ip}:51820").parse().unwrap()),
                allowed_ips: vec![cidr.parse().unwrap()],
                persistent_keepalive: None,
            };
            let mut want = Config {
                private_key: PrivateKey::from_bytes([1; 32]),
                listen_port: 51820,
                peers: vec![
                    peer(2, "192.168.1.11", "10.244.1.0/24"),
                    peer(3, "192.168.1.12", "10.244.2.0/24"),
                ],
            };
            assert!(dev.configure(&want).unwrap(), "a new device changes");
            assert!(
                !dev.configure(&want).unwrap(),
                "the same again changes nothing"
            );
            want.peers = vec![peer(3, "192.168.1.13", "10.244.2.0/24")];
            assert!(dev.configure(&want).unwrap());
            let state = dev.state().unwrap();
            assert!(diff(&state, &want).is_none(), "{state:?}");
            assert_eq!(state.peers.len(), 1);
            assert_eq!(state.peers[0].last_handshake, None);
        }
    }
}
