//! Namespace tests (root): three "node" namespaces on a fabric bridge, each
//! with one "pod" namespace behind it; compile + apply on every node, then
//! real traffic between pods of different nodes.
//!
//! Everything happens in `weft-t…` namespaces made here and removed on drop
//! (also when a test panics); kernel work goes through handles opened inside
//! them. The machine's own namespace is never touched.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use weft_linux::testns::{root_or_skip, TestNs as Ns};
use weft_linux::{sysctl, Handle, Route, RTPROT_WEFT};
use weft_overlay::{
    compile, vtep_mac, ApplyReport, Backend, Datapath, Desired, LocalNode, OverlayConfig, PeerNode,
};

fn ping(ns: &Ns, dst: &str) -> bool {
    ns.exec(&["ping", "-c1", "-W2", dst]).status.success()
}

fn up_lo(h: &mut Handle) {
    let lo = h.link_by_name("lo").unwrap().unwrap();
    h.set_up(lo.index).unwrap();
}

struct Node {
    ns: Ns,
    pod: Ns,
    local: LocalNode,
}

impl Node {
    fn pod_ip(&self) -> Ipv4Addr {
        let n = self.local.pod_cidr.network().octets();
        Ipv4Addr::new(n[0], n[1], n[2], 2)
    }
}

/// The fabric namespace (bridge `fab0`, 192.168.1.0/24) and three nodes:
/// node-i has eth0 192.168.1.(9+i)/24 and a pod 10.244.(i-1).2/24 behind a
/// veth whose node end is 10.244.(i-1).1/24 (the stand-in for cni0).
struct Cluster {
    nodes: Vec<Node>,
    // Dropped last: the nodes' veths go with their namespaces anyway.
    _fabric: Ns,
}

impl Cluster {
    fn new() -> Cluster {
        let fabric = Ns::new("fabric");
        let mut fh = fabric.handle();
        up_lo(&mut fh);
        fh.create_bridge("fab0", None, None).unwrap();
        let bridge = fh.link_by_name("fab0").unwrap().unwrap();
        fh.set_up(bridge.index).unwrap();

        let mut nodes = Vec::new();
        for i in 1..=3u8 {
            let ns = Ns::new(&format!("node{i}"));
            let pod = Ns::new(&format!("pod{i}"));
            let port = format!("n{i}");
            fh.create_veth(&port, "eth0", &ns.open(), None, None)
                .unwrap();
            let port = fh.link_by_name(&port).unwrap().unwrap();
            fh.set_master(port.index, bridge.index).unwrap();
            fh.set_up(port.index).unwrap();

            let underlay: ipnet::Ipv4Net = format!("192.168.1.{}/24", 9 + i).parse().unwrap();
            let pod_cidr: ipnet::Ipv4Net = format!("10.244.{}.0/24", i - 1).parse().unwrap();
            let mut nh = ns.handle();
            up_lo(&mut nh);
            let eth0 = nh.link_by_name("eth0").unwrap().unwrap();
            nh.add_address(eth0.index, underlay.into()).unwrap();
            nh.set_up(eth0.index).unwrap();
            nh.create_veth("pod", "eth0", &pod.open(), None, None)
                .unwrap();
            let gw = Ipv4Addr::new(10, 244, i - 1, 1);
            let veth = nh.link_by_name("pod").unwrap().unwrap();
            nh.add_address(veth.index, format!("{gw}/24").parse().unwrap())
                .unwrap();
            nh.set_up(veth.index).unwrap();
            ns.run(|| sysctl::ensure("net/ipv4/ip_forward", "1"))
                .unwrap();

            let mut ph = pod.handle();
            up_lo(&mut ph);
            let eth0 = ph.link_by_name("eth0").unwrap().unwrap();
            let pod_ip = Ipv4Addr::new(10, 244, i - 1, 2);
            ph.add_address(eth0.index, format!("{pod_ip}/24").parse().unwrap())
                .unwrap();
            ph.set_up(eth0.index).unwrap();
            ph.add_route(&Route::via("0.0.0.0/0".parse().unwrap(), IpAddr::V4(gw)))
                .unwrap();

            let local = LocalNode {
                name: format!("node-{i}"),
                ip: underlay.addr(),
                underlay,
                underlay_mtu: 1500,
                pod_cidr,
            };
            nodes.push(Node { ns, pod, local });
        }
        Cluster {
            nodes,
            _fabric: fabric,
        }
    }

    fn peers(&self) -> Vec<PeerNode> {
        self.nodes
            .iter()
            .map(|n| PeerNode {
                name: n.local.name.clone(),
                ip: n.local.ip,
                pod_cidr: Some(n.local.pod_cidr),
                vtep_mac: Some(vtep_mac(n.local.ip)),
                wireguard_key: None,
            })
            .collect()
    }

    fn desired(&self, i: usize, backend: Backend) -> Desired {
        let cfg = OverlayConfig {
            backend,
            ..OverlayConfig::default()
        };
        compile(&self.nodes[i].local, &self.peers(), &cfg).unwrap()
    }

    /// Compiles and applies on every node, each with a fresh Datapath (as an
    /// agent that just started).
    fn apply_all(&self, backend: Backend) -> Vec<ApplyReport> {
        (0..self.nodes.len())
            .map(|i| {
                let mut dp = Datapath::new(self.nodes[i].ns.handle());
                dp.apply(&self.desired(i, backend)).unwrap()
            })
            .collect()
    }
}

/// A TCP listener in `ns` on `ip:port`.
fn listen(ns: &Ns, ip: Ipv4Addr, port: u16) -> TcpListener {
    ns.run(|| TcpListener::bind((ip, port))).unwrap()
}

fn connect(ns: &Ns, ip: Ipv4Addr, port: u16) -> TcpStream {
    let s = ns
        .run(|| TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("connect to {ip}:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Connects from `from` to a fresh listener in `to` and returns the source
/// address the server saw.
fn seen_source(from: &Ns, to: &Ns, ip: Ipv4Addr, port: u16) -> IpAddr {
    let listener = listen(to, ip, port);
    let _client = connect(from, ip, port);
    let (_conn, peer) = listener.accept().unwrap();
    peer.ip()
}

fn echo(client: &mut TcpStream, server: &mut TcpStream, msg: &[u8]) {
    client.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
    server.write_all(&buf).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

fn weft_routes(h: &mut Handle) -> Vec<Route> {
    h.routes_with_protocol(false)
        .unwrap()
        .into_iter()
        .filter(|(_, p)| *p == RTPROT_WEFT)
        .map(|(r, _)| r)
        .collect()
}

fn assert_no_change(reports: &[ApplyReport]) {
    for (i, r) in reports.iter().enumerate() {
        assert_eq!((r.added, r.removed), (0, 0), "node-{}: {r:?}", i + 1);
    }
}

#[test]
fn vxlan_pods_reach_across_nodes_and_apply_converges() {
    if !root_or_skip("vxlan_pods_reach_across_nodes_and_apply_converges") {
        return;
    }
    let c = Cluster::new();
    let (n1, n3) = (&c.nodes[0], &c.nodes[2]);
    assert!(!ping(&n1.pod, &n3.pod_ip().to_string()), "no overlay yet");

    let first = c.apply_all(Backend::Vxlan);
    for r in &first {
        // device + address + 2 × (fdb, neighbour, route)
        assert_eq!((r.added, r.removed), (8, 0), "{r:?}");
    }

    // Every pod reaches every other pod, and sees the pod's own address.
    for (a, b) in [(0, 2), (2, 0), (1, 0), (0, 1)] {
        let (from, to) = (&c.nodes[a], &c.nodes[b]);
        assert!(ping(&from.pod, &to.pod_ip().to_string()), "ping {a} -> {b}");
        let src = seen_source(&from.pod, &to.pod, to.pod_ip(), 7000 + a as u16);
        assert_eq!(src, IpAddr::V4(from.pod_ip()), "{a} -> {b}");
    }
    // The node itself reaches a remote pod from its vxlan address.
    let src = seen_source(&n1.ns, &n3.pod, n3.pod_ip(), 7100);
    assert_eq!(src, "10.244.0.0".parse::<IpAddr>().unwrap());

    // The kernel holds what compile said.
    let mut h1 = n1.ns.handle();
    let dev = h1.link_by_name("weft.vxlan").unwrap().unwrap();
    assert_eq!(dev.mtu, 1450);
    assert_eq!(dev.mac, Some(vtep_mac(n1.local.ip)));
    let info = h1.vxlan_info(dev.index).unwrap().unwrap();
    assert_eq!((info.vni, info.port, info.learning), (1, 4789, false));
    assert_eq!(info.local, Some(n1.local.ip));
    let mut fdb = h1.fdb_entries(dev.index).unwrap();
    fdb.sort();
    assert_eq!(
        fdb.iter().map(|e| e.dst.to_string()).collect::<Vec<_>>(),
        ["192.168.1.11", "192.168.1.12"]
    );
    assert_eq!(weft_routes(&mut h1).len(), 2);

    // Idempotent: a second round writes nothing.
    let second = c.apply_all(Backend::Vxlan);
    assert_no_change(&second);
    assert_eq!(second[0].unchanged, 8);

    // Tamper: drop a weft route, add a stray one; a foreign route stays.
    let gone = Route {
        dst: "10.244.2.0/24".parse().unwrap(),
        gateway: Some("10.244.2.0".parse().unwrap()),
        oif: Some(dev.index),
        scope_link: false,
        onlink: true,
    };
    h1.delete_route(&gone).unwrap();
    let stray = Route {
        dst: "10.244.9.0/24".parse().unwrap(),
        gateway: Some("10.244.9.0".parse().unwrap()),
        oif: Some(dev.index),
        scope_link: false,
        onlink: true,
    };
    h1.replace_route(&stray, RTPROT_WEFT).unwrap();
    let foreign = Route {
        dst: "10.244.8.0/24".parse().unwrap(),
        gateway: Some("10.244.8.0".parse().unwrap()),
        oif: Some(dev.index),
        scope_link: false,
        onlink: true,
    };
    h1.add_route(&foreign).unwrap();
    // …and a stray FDB entry and neighbour on the device.
    let stray_mac = [0x0e, 0x57, 1, 1, 1, 1];
    h1.append_fdb(dev.index, stray_mac, "192.168.1.99".parse().unwrap())
        .unwrap();
    h1.replace_neighbour(dev.index, "10.244.9.0".parse().unwrap(), stray_mac)
        .unwrap();
    assert!(!ping(&n1.pod, &n3.pod_ip().to_string()));

    let fixed = Datapath::new(n1.ns.handle())
        .apply(&c.desired(0, Backend::Vxlan))
        .unwrap();
    assert_eq!((fixed.added, fixed.removed), (1, 3), "{fixed:?}");
    assert!(ping(&n1.pod, &n3.pod_ip().to_string()));
    let routes = h1.routes(false).unwrap();
    assert!(
        routes.iter().any(|r| r.dst == foreign.dst),
        "foreign route kept"
    );
    assert!(
        !routes.iter().any(|r| r.dst == stray.dst),
        "stray route removed"
    );
    assert_eq!(h1.fdb_entries(dev.index).unwrap().len(), 2);
    assert!(!h1
        .neighbours(Some(dev.index), false)
        .unwrap()
        .iter()
        .any(|n| n.ip == "10.244.9.0".parse::<IpAddr>().unwrap()));
    h1.delete_route(&foreign).unwrap();
}

#[test]
fn long_lived_connection_survives_agent_restart() {
    if !root_or_skip("long_lived_connection_survives_agent_restart") {
        return;
    }
    let c = Cluster::new();
    c.apply_all(Backend::Vxlan);
    let (n1, n3) = (&c.nodes[0], &c.nodes[2]);
    let listener = listen(&n3.pod, n3.pod_ip(), 7200);
    let mut client = connect(&n1.pod, n3.pod_ip(), 7200);
    let (mut server, _) = listener.accept().unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    echo(&mut client, &mut server, b"before");

    let index_before = n1
        .ns
        .handle()
        .link_by_name("weft.vxlan")
        .unwrap()
        .unwrap()
        .index;
    // A restarted agent: fresh Datapath, fresh handle, same desired state.
    let reports = c.apply_all(Backend::Vxlan);
    assert_no_change(&reports);
    echo(&mut client, &mut server, b"after restart");
    let index_after = n1
        .ns
        .handle()
        .link_by_name("weft.vxlan")
        .unwrap()
        .unwrap()
        .index;
    assert_eq!(index_before, index_after, "device kept, not re-created");

    // A peer's change (node-2 gone) touches only node-2's entries.
    let desired: Vec<Desired> = (0..3)
        .map(|i| {
            let peers: Vec<PeerNode> = c
                .peers()
                .into_iter()
                .filter(|p| p.name != "node-2")
                .collect();
            compile(&c.nodes[i].local, &peers, &OverlayConfig::default()).unwrap()
        })
        .collect();
    let r = Datapath::new(n1.ns.handle()).apply(&desired[0]).unwrap();
    assert_eq!((r.added, r.removed), (0, 3), "{r:?}");
    echo(&mut client, &mut server, b"after peer left");
}

#[test]
fn host_gw_pods_reach_across_nodes() {
    if !root_or_skip("host_gw_pods_reach_across_nodes") {
        return;
    }
    let c = Cluster::new();
    let first = c.apply_all(Backend::HostGw);
    for r in &first {
        assert_eq!((r.added, r.removed), (2, 0), "{r:?}");
    }
    for (a, b) in [(0, 2), (2, 1), (1, 0)] {
        let (from, to) = (&c.nodes[a], &c.nodes[b]);
        assert!(ping(&from.pod, &to.pod_ip().to_string()), "ping {a} -> {b}");
        let src = seen_source(&from.pod, &to.pod, to.pod_ip(), 7300 + a as u16);
        assert_eq!(src, IpAddr::V4(from.pod_ip()), "{a} -> {b}");
    }
    let mut h = c.nodes[0].ns.handle();
    let routes = weft_routes(&mut h);
    assert_eq!(
        routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.gateway.unwrap()))
            .collect::<Vec<_>>(),
        [
            "10.244.1.0/24 via 192.168.1.11",
            "10.244.2.0/24 via 192.168.1.12"
        ]
    );
    assert!(h.link_by_name("weft.vxlan").unwrap().is_none());
    assert_no_change(&c.apply_all(Backend::HostGw));
    assert_no_change(&c.apply_all(Backend::Auto));
}

#[test]
fn switching_vxlan_to_host_gw_removes_the_device() {
    if !root_or_skip("switching_vxlan_to_host_gw_removes_the_device") {
        return;
    }
    let c = Cluster::new();
    c.apply_all(Backend::Vxlan);
    let (n1, n3) = (&c.nodes[0], &c.nodes[2]);
    assert!(ping(&n1.pod, &n3.pod_ip().to_string()));

    let reports = c.apply_all(Backend::HostGw);
    for r in &reports {
        // 2 routes replaced in place; the device removed (its neighbours and
        // FDB entries go with it).
        assert_eq!((r.added, r.removed), (2, 1), "{r:?}");
    }
    for n in &c.nodes {
        let mut h = n.ns.handle();
        assert!(h.link_by_name("weft.vxlan").unwrap().is_none());
        assert!(weft_routes(&mut h)
            .iter()
            .all(|r| r.oif.is_some() && !r.onlink));
    }
    assert!(ping(&n1.pod, &n3.pod_ip().to_string()));
    let src = seen_source(&n1.pod, &n3.pod, n3.pod_ip(), 7400);
    assert_eq!(src, IpAddr::V4(n1.pod_ip()));

    // And back.
    c.apply_all(Backend::Vxlan);
    assert!(ping(&n1.pod, &n3.pod_ip().to_string()));
    assert!(c.nodes[0]
        .ns
        .handle()
        .link_by_name("weft.vxlan")
        .unwrap()
        .is_some());
}

impl Cluster {
    /// Backend wireguard: a new key per node, the peers with their public
    /// keys, and the config.
    fn wireguard(
        &self,
    ) -> (
        Vec<weft_wireguard::keys::PrivateKey>,
        Vec<PeerNode>,
        OverlayConfig,
    ) {
        let keys: Vec<weft_wireguard::keys::PrivateKey> = (0..self.nodes.len())
            .map(|_| weft_wireguard::keys::PrivateKey::generate().unwrap())
            .collect();
        let peers = self
            .peers()
            .into_iter()
            .zip(&keys)
            .map(|(p, k)| PeerNode {
                wireguard_key: Some(k.public().0),
                ..p
            })
            .collect();
        let cfg = OverlayConfig {
            backend: Backend::Wireguard,
            ..OverlayConfig::default()
        };
        (keys, peers, cfg)
    }
}

/// Backend wireguard: every node's userspace device, its peers the other
/// nodes (AllowedIPs their pod CIDRs); pods reach each other with their own
/// source addresses, the fabric carries WireGuard only, and a node that
/// leaves loses its peer and route.
#[test]
fn wireguard_pods_reach_across_nodes_encrypted() {
    if !root_or_skip("wireguard_pods_reach_across_nodes_encrypted") {
        return;
    }
    let c = Cluster::new();
    let (keys, peers, cfg) = c.wireguard();
    let mut datapaths: Vec<Datapath> = c
        .nodes
        .iter()
        .zip(&keys)
        .map(|(n, k)| {
            let mut dp = Datapath::in_netns(n.ns.open()).unwrap();
            dp.set_wireguard_key(k.clone());
            dp
        })
        .collect();
    for (i, dp) in datapaths.iter_mut().enumerate() {
        let d = compile(&c.nodes[i].local, &peers, &cfg).unwrap();
        assert_eq!(d.pod_mtu, 1420);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        dp.apply(&d).unwrap();
    }
    let mut h = c.nodes[0].ns.handle();
    let dev = h
        .link_by_name("weft.wg")
        .unwrap()
        .expect("the device exists");
    assert_eq!(dev.mtu, 1420);
    assert!(h.link_by_name("weft.vxlan").unwrap().is_none());

    // The capture on the fabric bridge, listening before the traffic.
    let pcap = std::env::temp_dir().join(format!("{}.pcap", c._fabric.name));
    let mut dump = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &c._fabric.name,
            "tcpdump",
            "-i",
            "fab0",
            "-n",
        ])
        .args(["--immediate-mode", "-U", "-w"])
        .arg(&pcap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    let mut dump_err = std::io::BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut dump_err, &mut line).unwrap() > 0,
            "tcpdump ended"
        );
    }
    for (a, b) in [(0, 2), (2, 1), (1, 0)] {
        let (from, to) = (&c.nodes[a], &c.nodes[b]);
        assert!(ping(&from.pod, &to.pod_ip().to_string()), "ping {a} -> {b}");
        let src = seen_source(&from.pod, &to.pod, to.pod_ip(), 7400 + a as u16);
        assert_eq!(src, IpAddr::V4(from.pod_ip()), "{a} -> {b}");
    }
    let (n1, n3) = (&c.nodes[0], &c.nodes[2]);
    let listener = listen(&n3.pod, n3.pod_ip(), 7410);
    let mut client = connect(&n1.pod, n3.pod_ip(), 7410);
    let (mut server, _) = listener.accept().unwrap();
    const MARKER: &[u8] = b"weft-overlay-wireguard-marker";
    echo(&mut client, &mut server, MARKER);
    let count = |filter: &str| -> usize {
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&pcap)
            .arg(filter)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    // 3 handshakes, 3 pings and 3 connections each way, and the echo: well
    // over 30 packets; wait until the file holds them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count("udp port 51820") < 30 {
        assert!(std::time::Instant::now() < deadline, "capture incomplete");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    dump.wait().unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    // IGMP reports (an interface coming up joins its multicast groups, from
    // 0.0.0.0) are link-local control, not traffic between nodes.
    let (wireguard, all) = (count("udp port 51820"), count("ip and not igmp"));
    let other = std::process::Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .arg("ip and not igmp and not udp port 51820")
        .output()
        .unwrap();
    std::fs::remove_file(&pcap).unwrap();
    assert_eq!(
        all,
        wireguard,
        "IPv4 on the fabric that is not WireGuard: {}",
        String::from_utf8_lossy(&other.stdout)
    );
    assert!(
        !bytes.windows(MARKER.len()).any(|w| w == MARKER),
        "the payload crossed the fabric in the clear"
    );

    // Applying the same again changes nothing, and the sessions stay.
    for (i, dp) in datapaths.iter_mut().enumerate() {
        let r = dp
            .apply(&compile(&c.nodes[i].local, &peers, &cfg).unwrap())
            .unwrap();
        assert_eq!((r.added, r.removed), (0, 0), "node-{}: {r:?}", i + 1);
    }
    echo(&mut client, &mut server, b"still there");
    let st = datapaths[0].wireguard_state().unwrap().unwrap();
    assert_eq!(st.peers.len(), 2);
    assert!(
        st.peers.iter().all(|p| p.last_handshake.is_some()),
        "{st:?}"
    );

    // node-3 leaves: node-1 drops its peer and its route, keeps node-2's.
    let without: Vec<PeerNode> = peers
        .iter()
        .filter(|p| p.name != "node-3")
        .cloned()
        .collect();
    datapaths[0]
        .apply(&compile(&c.nodes[0].local, &without, &cfg).unwrap())
        .unwrap();
    let st = datapaths[0].wireguard_state().unwrap().unwrap();
    assert_eq!(st.peers.len(), 1);
    assert_eq!(st.peers[0].peer.public_key, keys[1].public());
    let routes: Vec<String> = weft_routes(&mut h)
        .iter()
        .map(|r| r.dst.to_string())
        .collect();
    assert_eq!(routes, ["10.244.1.0/24"]);
    assert!(ping(&n1.pod, &c.nodes[1].pod_ip().to_string()));

    // Another backend: the device goes.
    datapaths[0]
        .apply(&compile(&c.nodes[0].local, &peers, &OverlayConfig::default()).unwrap())
        .unwrap();
    assert!(h.link_by_name("weft.wg").unwrap().is_none());
}

/// The WireGuard implementation, by choice: `kernel` on a kernel without
/// WireGuard is refused with a sentence naming the way out (and leaves no
/// device behind); `auto` runs the userspace device there (the kernel's
/// where there is one). Without any pod traffic, a nudge from each node to
/// its peer's tunnel address makes the devices complete a handshake.
#[test]
fn wireguard_implementation_by_choice_and_a_nudge_makes_the_handshake() {
    if !root_or_skip("wireguard_implementation_by_choice_and_a_nudge_makes_the_handshake") {
        return;
    }
    use weft_wireguard::{Choice, Implementation};
    let c = Cluster::new();
    let (keys, peers, cfg) = c.wireguard();
    let desired = |i: usize| compile(&c.nodes[i].local, &peers[..2], &cfg).unwrap();
    let datapath = |i: usize, choice: Choice| {
        let mut dp = Datapath::in_netns(c.nodes[i].ns.open()).unwrap();
        dp.set_wireguard_key(keys[i].clone());
        dp.set_wireguard_choice(choice);
        dp
    };
    let mut h = c.nodes[0].ns.handle();
    let mut forced = datapath(0, Choice::Kernel);
    let kernel_has_wireguard = match forced.apply(&desired(0)) {
        Ok(_) => {
            assert_eq!(
                forced.wireguard_implementation(),
                Some(Implementation::Kernel)
            );
            true
        }
        Err(e) => {
            let said = e.to_string();
            assert!(
                said.contains("the kernel has no WireGuard")
                    && said.contains("--wireguard-implementation=auto or userspace"),
                "{said}"
            );
            assert!(h.link_by_name("weft.wg").unwrap().is_none());
            false
        }
    };
    drop(forced);
    // node-1 and node-2 with auto, peers of each other only.
    let mut dps: Vec<Datapath> = (0..2).map(|i| datapath(i, Choice::Auto)).collect();
    for (i, dp) in dps.iter_mut().enumerate() {
        dp.apply(&desired(i)).unwrap();
        let want = if kernel_has_wireguard {
            Implementation::Kernel
        } else {
            Implementation::Userspace
        };
        assert_eq!(dp.wireguard_implementation(), Some(want));
    }
    let st = dps[0].wireguard_state().unwrap().unwrap();
    assert_eq!(st.peers.len(), 1);
    assert_eq!(st.peers[0].last_handshake, None, "no traffic yet");
    // node-2's tunnel address is its pod CIDR's network address.
    let target = c.nodes[1].local.pod_cidr.network();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        dps[0].nudge(&[target]).unwrap();
        let st = dps[0].wireguard_state().unwrap().unwrap();
        if st.peers[0].last_handshake.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no handshake after nudges: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(100)); // between polls of the device
    }
    let back = dps[1].wireguard_state().unwrap().unwrap();
    assert!(back.peers[0].last_handshake.is_some(), "{back:?}");
}
