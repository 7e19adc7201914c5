//! Kernel tests (root) of the ctnetlink client: real UDP traffic inside a
//! `weft-t…` namespace (a table made there turns on connection tracking,
//! and a DNAT rule rewrites one flow the way a Service does) is listed,
//! and deleted entry by entry. Nothing touches the machine's own
//! namespace; the namespace and its table go when the test ends.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use weft_linux::conntrack::{self, Conntrack, Flow, IPPROTO_UDP};
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};

const SERVICE: &str = "10.96.0.10:53";
const BACKEND: &str = "10.0.0.1:5353";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A namespace with tracked traffic in it: one UDP flow to the "Service"
/// address (DNATed to the backend), one plain UDP flow over IPv4 loopback,
/// one over IPv6 loopback, and one TCP connection.
struct Traffic {
    ns: TestNs,
    /// Source of the flow to the Service address.
    client: SocketAddr,
    /// (source, destination) of the loopback flows.
    v4: (SocketAddr, SocketAddr),
    v6: (SocketAddr, SocketAddr),
    tcp_port: u16,
    _sockets: Vec<UdpSocket>,
    _tcp: (TcpListener, TcpStream),
}

fn nft(ns: &TestNs, cmd: &str) {
    let out = ns.exec(&["nft", cmd]);
    assert!(
        out.status.success(),
        "nft {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `None` (the test is skipped) without root or nft.
fn traffic(test: &str) -> Option<Traffic> {
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return None;
    }
    let ns = TestNs::new("ct");
    ns.ip(&["link", "set", "lo", "up"]);
    // A veth pair kept in the namespace carries the addresses (this
    // kernel may have no dummy driver).
    ns.ip(&[
        "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
    ]);
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "svc0"]);
    ns.ip(&["link", "set", "svc0", "up"]);
    ns.ip(&["link", "set", "svc1", "up"]);
    ns.ip(&["route", "add", "10.96.0.0/12", "dev", "svc0"]);
    nft(&ns, "add table inet weft-t");
    // A `ct` expression of the inet family makes the kernel track this
    // namespace's IPv4 and IPv6 connections (the `dnat ip` below alone
    // would turn on IPv4 tracking only).
    nft(
        &ns,
        "add chain inet weft-t track { type filter hook output priority 0; }",
    );
    nft(&ns, "add rule inet weft-t track ct state new counter");
    nft(
        &ns,
        "add chain inet weft-t out { type nat hook output priority -100; }",
    );
    nft(
        &ns,
        &format!("add rule inet weft-t out ip daddr 10.96.0.10 udp dport 53 dnat ip to {BACKEND}"),
    );

    let t = ns.run(|| {
        let bind = |a: &str| UdpSocket::bind(a).unwrap();
        let backend = bind(BACKEND);
        let client = bind("10.0.0.1:0");
        client.send_to(b"q", SERVICE).unwrap();
        let mut buf = [0u8; 8];
        // The backend got the datagram sent to the Service address.
        backend.recv_from(&mut buf).unwrap();

        let (v4_dst, v4_src) = (bind("127.0.0.1:0"), bind("127.0.0.1:0"));
        v4_src.send_to(b"x", v4_dst.local_addr().unwrap()).unwrap();
        let (v6_dst, v6_src) = (bind("[::1]:0"), bind("[::1]:0"));
        v6_src.send_to(b"x", v6_dst.local_addr().unwrap()).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let client_addr = client.local_addr().unwrap();
        let v4 = (v4_src.local_addr().unwrap(), v4_dst.local_addr().unwrap());
        let v6 = (v6_src.local_addr().unwrap(), v6_dst.local_addr().unwrap());
        let tcp_port = listener.local_addr().unwrap().port();
        (
            client_addr,
            v4,
            v6,
            tcp_port,
            vec![backend, client, v4_dst, v4_src, v6_dst, v6_src],
            (listener, stream),
        )
    });
    Some(Traffic {
        ns,
        client: t.0,
        v4: t.1,
        v6: t.2,
        tcp_port: t.3,
        _sockets: t.4,
        _tcp: t.5,
    })
}

impl Traffic {
    fn flows(&self) -> Vec<Flow> {
        self.ns
            .run(conntrack::udp_flows)
            .unwrap_or_else(|e| panic!("list conntrack in {}: {e}", self.ns.name))
    }

    /// Polls the table (bounded) until `done` holds for it; returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&[Flow]) -> bool) -> Vec<Flow> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let flows = self.flows();
            if done(&flows) {
                return flows;
            }
            assert!(Instant::now() < deadline, "{what}; table: {flows:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn service_flow(&self) -> Flow {
        let flows = self.wait_for("no flow to the Service address", |f| {
            f.iter().any(|f| f.original.dst == addr(SERVICE))
        });
        *flows
            .iter()
            .find(|f| f.original.dst == addr(SERVICE))
            .unwrap()
    }
}

fn has(flows: &[Flow], src: SocketAddr, dst: SocketAddr) -> bool {
    flows
        .iter()
        .any(|f| f.original.src == src && f.original.dst == dst)
}

#[test]
fn a_dnat_flow_is_listed_with_the_backend_as_reply_source() {
    let Some(t) = traffic("a_dnat_flow_is_listed_with_the_backend_as_reply_source") else {
        return;
    };
    let f = t.service_flow();
    assert_eq!(f.proto, IPPROTO_UDP);
    assert_eq!(f.original.src, t.client);
    assert_eq!(f.reply.src, addr(BACKEND));
    assert_eq!(f.reply.dst, t.client);
    assert_eq!(f.zone, 0);
}

#[test]
fn ipv4_and_ipv6_flows_are_listed() {
    let Some(t) = traffic("ipv4_and_ipv6_flows_are_listed") else {
        return;
    };
    t.wait_for("the IPv4 and IPv6 loopback flows are missing", |f| {
        has(f, t.v4.0, t.v4.1) && has(f, t.v6.0, t.v6.1)
    });
}

#[test]
fn tcp_connections_are_not_listed() {
    let Some(t) = traffic("tcp_connections_are_not_listed") else {
        return;
    };
    let flows = t.wait_for("the UDP flows are missing", |f| has(f, t.v4.0, t.v4.1));
    assert!(flows.iter().all(|f| f.proto == IPPROTO_UDP), "{flows:#?}");
    assert!(
        !flows.iter().any(|f| f.original.dst.port() == t.tcp_port),
        "{flows:#?}"
    );
}

#[test]
fn delete_removes_the_flow_and_leaves_the_others() {
    let Some(t) = traffic("delete_removes_the_flow_and_leaves_the_others") else {
        return;
    };
    let f = t.service_flow();
    t.wait_for("the IPv4 loopback flow is missing", |fl| {
        has(fl, t.v4.0, t.v4.1)
    });
    t.ns.run(|| conntrack::delete(&f)).unwrap();
    let after = t.flows();
    assert!(!after.contains(&f), "still there: {f}; table: {after:#?}");
    assert!(
        has(&after, t.v4.0, t.v4.1),
        "unrelated flow went: {after:#?}"
    );
    assert!(
        has(&after, t.v6.0, t.v6.1),
        "unrelated flow went: {after:#?}"
    );
}

#[test]
fn deleting_a_flow_that_is_gone_is_not_an_error() {
    let Some(t) = traffic("deleting_a_flow_that_is_gone_is_not_an_error") else {
        return;
    };
    let f = t.service_flow();
    let mut ct = Conntrack::in_netns(&t.ns.open()).unwrap();
    assert!(ct.delete(&f).unwrap(), "the first delete finds the entry");
    assert!(!ct.delete(&f).unwrap(), "the second finds none");
    t.ns.run(|| conntrack::delete(&f)).unwrap();
}

#[test]
fn an_ipv6_flow_can_be_deleted() {
    let Some(t) = traffic("an_ipv6_flow_can_be_deleted") else {
        return;
    };
    let flows = t.wait_for("the IPv6 loopback flow is missing", |f| {
        has(f, t.v6.0, t.v6.1)
    });
    let f = *flows
        .iter()
        .find(|f| f.original.src == t.v6.0 && f.original.dst == t.v6.1)
        .unwrap();
    let mut ct = Conntrack::in_netns(&t.ns.open()).unwrap();
    assert!(ct.delete(&f).unwrap());
    assert!(!has(&ct.udp_flows().unwrap(), t.v6.0, t.v6.1));
}
