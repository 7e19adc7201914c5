//! Kernel test (root) of the nftables trace reader: inside a `weft-t…`
//! namespace, a table marks one UDP flow for tracing and drops it in a
//! second chain; the events read back over netlink name the tables,
//! chains, rule handles and verdicts `nft -a list` shows, and carry the
//! packet's addresses and ports. The namespace goes when the test ends.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use weft_linux::nftrace::{TraceKind, TraceSocket, Verdict};
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};

fn nft(ns: &TestNs, script: &str) {
    let out = ns.exec(&["nft", script]);
    assert!(
        out.status.success(),
        "nft {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The handle `nft -a` prints for the rule containing `needle`.
fn handle_of(ns: &TestNs, table: &str, needle: &str) -> u64 {
    let out = ns.exec(&["nft", "-a", "list", "table", "inet", table]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit("# handle ").next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rule with {needle:?} in {text}"))
}

/// (table, chain, kind, rule handle, verdict) of one event.
type Seen = (String, String, TraceKind, Option<u64>, Option<Verdict>);

#[test]
fn a_traced_datagram_reports_every_rule_and_verdict_by_name() {
    let test = "a_traced_datagram_reports_every_rule_and_verdict_by_name";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let ns = TestNs::new("trace");
    ns.ip(&["link", "set", "lo", "up"]);
    nft(&ns, "add table inet weft-tracer");
    nft(
        &ns,
        "add chain inet weft-tracer flag { type filter hook output priority -350; }",
    );
    nft(
        &ns,
        "add rule inet weft-tracer flag udp dport 9999 meta nftrace set 1",
    );
    nft(&ns, "add table inet weft-t");
    nft(
        &ns,
        "add chain inet weft-t out { type filter hook output priority 0; }",
    );
    nft(&ns, "add chain inet weft-t deny");
    nft(&ns, "add rule inet weft-t out udp dport 9999 jump deny");
    nft(&ns, "add rule inet weft-t deny counter drop");
    let jump = handle_of(&ns, "weft-t", "jump deny");
    let drop = handle_of(&ns, "weft-t", "counter packets");

    let mut socket = TraceSocket::open_in(&ns.open()).unwrap();
    socket.set_nonblocking().unwrap();
    // A datagram that is traced and dropped, and one that is neither.
    let sent_from = ns.run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = s.send_to(b"x", "127.0.0.1:9998");
        let _ = s.send_to(b"traced", "127.0.0.1:9999");
        s.local_addr().unwrap().port()
    });

    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !events
        .iter()
        .any(|e: &weft_linux::nftrace::TraceEvent| e.verdict == Some(Verdict::Drop))
    {
        assert!(Instant::now() < deadline, "no drop event: {events:#?}");
        match socket.recv() {
            Ok(batch) => events.extend(batch.into_iter().map(Result::unwrap)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Until the socket has the next event (at most 100 ms).
                use std::os::fd::AsFd;
                weft_linux::testns::wait_readable(socket.as_fd(), 100);
            }
            Err(e) => panic!("trace socket: {e}"),
        }
    }
    // One packet: every event has its id, and its addresses and ports.
    let id = events[0].id;
    assert!(events.iter().all(|e| e.id == id), "{events:#?}");
    let p = events[0].packet().expect("the packet's headers");
    assert_eq!(p.dst.to_string(), "127.0.0.1");
    assert_eq!((p.proto, p.ports), (17, Some((sent_from, 9999))));
    let seen: Vec<Seen> = events
        .iter()
        .map(|e| {
            (
                e.table.clone(),
                e.chain.clone(),
                e.kind,
                e.rule_handle,
                // A base chain's end reports its policy.
                e.verdict.clone().or(e.policy.clone()),
            )
        })
        .collect();
    // The marking chain: its rule matched, then its policy accepted.
    assert!(seen.contains(&(
        "weft-tracer".into(),
        "flag".into(),
        TraceKind::Rule,
        seen.iter()
            .find(|s| s.1 == "flag" && s.2 == TraceKind::Rule)
            .and_then(|s| s.3),
        Some(Verdict::Continue)
    )));
    assert!(seen
        .iter()
        .any(|s| s.1 == "flag" && s.2 == TraceKind::Policy && s.4 == Some(Verdict::Accept)));
    // Then the jump and the drop, with the handles nft shows.
    assert!(
        seen.contains(&(
            "weft-t".into(),
            "out".into(),
            TraceKind::Rule,
            Some(jump),
            Some(Verdict::Jump("deny".into()))
        )),
        "{seen:#?}"
    );
    assert!(
        seen.contains(&(
            "weft-t".into(),
            "deny".into(),
            TraceKind::Rule,
            Some(drop),
            Some(Verdict::Drop)
        )),
        "{seen:#?}"
    );
    // The untraced datagram (port 9998) produced nothing: every event
    // with headers (the first of each base chain) is of port 9999.
    let with_headers: Vec<_> = events.iter().filter_map(|e| e.packet()).collect();
    assert!(with_headers.len() >= 2, "{events:#?}");
    assert!(with_headers
        .iter()
        .all(|p| p.ports.map(|p| p.1) == Some(9999)));
}
