//! Kernel test (root) of the drop-reason watcher: inside a `weft-t…`
//! namespace, nftables drops UDP to one port; a datagram sent there is
//! reported by `skb:kfree_skb` with reason NETFILTER_DROP, read through the
//! watcher's private tracefs instance; a datagram to a port nothing drops
//! (delivered to a listening socket) is not reported as that drop. After
//! the watcher finishes, its instance is gone and nothing stays mounted.

use std::net::UdpSocket;

use weft_linux::dropwatch::DropWatch;
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};

fn instances() -> Vec<String> {
    weft_linux::dropwatch::instances().expect("list tracing instances")
}

#[test]
fn a_netfilter_drop_is_reported_with_its_reason_and_the_instance_goes() {
    let test = "a_netfilter_drop_is_reported_with_its_reason_and_the_instance_goes";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let ns = TestNs::new("drops");
    ns.ip(&["link", "set", "lo", "up"]);
    for cmd in [
        "add table inet weft-t",
        "add chain inet weft-t out { type filter hook output priority 0; }",
        "add rule inet weft-t out udp dport 9411 drop",
    ] {
        let out = ns.exec(&["nft", cmd]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let name = format!("weft-test-drops-{}", std::process::id());
    let mut watch = DropWatch::start(&name, 0x0800).expect("the watcher starts");
    assert!(
        instances().contains(&name),
        "the instance exists while watching"
    );
    let before_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    ns.run(|| {
        let listener = UdpSocket::bind("127.0.0.1:9412").unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = s.send_to(b"dropped", "127.0.0.1:9411");
        s.send_to(b"delivered", "127.0.0.1:9412").unwrap();
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"delivered");
    });
    // The drop is in the ring before finish returns (the reader polls
    // every 10 ms and drains what is there when stopped).
    let mut drops = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !drops
        .iter()
        .any(|d: &weft_linux::dropwatch::Drop| d.reason == "NETFILTER_DROP")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no NETFILTER_DROP: {drops:?}"
        );
        drops = watch.seen();
    }
    let all = watch.finish();
    let d = all.iter().find(|d| d.reason == "NETFILTER_DROP").unwrap();
    assert_eq!(d.protocol, 0x0800);
    // Where netfilter dropped it: nft_do_chain, or nf_hook_slow on kernels
    // that account the drop to the hook.
    assert!(
        d.location.starts_with("nft_do_chain") || d.location.starts_with("nf_hook_slow"),
        "{d:?}"
    );
    assert!(!instances().contains(&name), "the instance is removed");
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        before_mounts,
        "nothing mounted in the process's mount namespace"
    );
}
