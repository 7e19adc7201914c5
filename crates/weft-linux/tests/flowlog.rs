//! Kernel test (root) of the flow-log sources: inside a `weft-t…`
//! namespace, a table sets a connection mark on accepted UDP flows to one
//! port and logs (NFLOG group 100, with a prefix) then drops those to
//! another. The conntrack socket reports the accepted flow with its mark;
//! the NFLOG socket reports the dropped one with the rule's prefix, its
//! addresses and ports — and nothing for the accepted one. A second bind of
//! the same group fails with a sentence saying another listener has it.

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use weft_linux::flowlog::{FlowEvent, FlowSocket};
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};

fn nft(ns: &TestNs, script: &str) {
    let out = ns.exec(&["nft", script]);
    assert!(
        out.status.success(),
        "nft {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Events from `socket` until `done` holds for what was read (5 s at most).
fn read_until(socket: &mut FlowSocket, done: impl Fn(&[FlowEvent]) -> bool) -> Vec<FlowEvent> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(&events) {
        assert!(Instant::now() < deadline, "not seen: {events:#?}");
        match socket.recv() {
            Ok(batch) => events.extend(batch.into_iter().map(Result::unwrap)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                weft_linux::testns::wait_readable(socket.as_fd(), 100);
            }
            Err(e) => panic!("flow socket: {e}"),
        }
    }
    events
}

#[test]
fn accepted_flows_come_with_their_mark_and_denied_packets_with_their_prefix() {
    let test = "accepted_flows_come_with_their_mark_and_denied_packets_with_their_prefix";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let ns = TestNs::new("flows");
    ns.ip(&["link", "set", "lo", "up"]);
    nft(&ns, "add table inet weft-t");
    nft(
        &ns,
        "add chain inet weft-t out { type filter hook output priority 0; }",
    );
    nft(
        &ns,
        "add rule inet weft-t out udp dport 9001 ct mark set ct mark and 0xffff0000 or 0x00000007 accept",
    );
    nft(
        &ns,
        "add rule inet weft-t out udp dport 9002 log prefix \"weft-t:deny:\" group 100 drop",
    );
    let handle = ns.open();
    let mut ct = FlowSocket::open_in(&handle, FlowSocket::conntrack).unwrap();
    ct.set_nonblocking().unwrap();
    let mut log = FlowSocket::open_in(&handle, || FlowSocket::nflog(100)).unwrap();
    log.set_nonblocking().unwrap();
    let second = FlowSocket::open_in(&handle, || FlowSocket::nflog(100))
        .err()
        .expect("a second listener on group 100");
    assert!(
        second
            .to_string()
            .contains("another process already listens"),
        "{second}"
    );

    let (allowed_from, denied_from) = ns.run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"allowed", "127.0.0.1:9001").unwrap();
        let d = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = d.send_to(b"denied", "127.0.0.1:9002");
        (a.local_addr().unwrap(), d.local_addr().unwrap())
    });

    let news = read_until(&mut ct, |ev| {
        ev.iter()
            .any(|e| matches!(e, FlowEvent::New(n) if n.original.src == allowed_from))
    });
    let FlowEvent::New(new) = news
        .iter()
        .find(|e| matches!(e, FlowEvent::New(n) if n.original.src == allowed_from))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(new.proto, 17);
    assert_eq!(new.original.dst.port(), 9001);
    assert_eq!(new.reply.src, new.original.dst);
    assert_eq!(new.mark, 7, "{new}");

    let logged = read_until(&mut log, |ev| !ev.is_empty());
    let FlowEvent::Logged(p) = &logged[0] else {
        panic!("{logged:?}")
    };
    assert_eq!(p.prefix, "weft-t:deny:");
    assert_eq!(p.packet.proto, 17);
    assert_eq!(p.packet.src, denied_from.ip());
    assert_eq!((p.packet.sport, p.packet.dport), (denied_from.port(), 9002));
    assert!(p.seq.is_some());
    // The dropped datagram never became a connection; the accepted one was
    // never logged.
    assert!(!news
        .iter()
        .any(|e| matches!(e, FlowEvent::New(n) if n.original.src == denied_from)));
    assert!(!logged
        .iter()
        .any(|e| matches!(e, FlowEvent::Logged(l) if l.packet.dport == 9001)));
}
