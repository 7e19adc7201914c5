//! Pure tests: compiled datapaths (golden text) and the apply diffs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use weft_linux::{Fdb, Neighbour, Route};

use crate::apply::{diff_fdb, diff_neighbours, diff_routes};
use crate::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn local(i: u8) -> LocalNode {
    LocalNode {
        name: format!("node-{i}"),
        ip: Ipv4Addr::new(192, 168, 1, 9 + i),
        underlay: format!("192.168.1.{}/24", 9 + i).parse().unwrap(),
        underlay_mtu: 1500,
        pod_cidr: format!("10.244.{}.0/24", i - 1).parse().unwrap(),
    }
}

fn peer(i: u8) -> PeerNode {
    let ip = Ipv4Addr::new(192, 168, 1, 9 + i);
    PeerNode {
        name: format!("node-{i}"),
        ip,
        pod_cidr: Some(format!("10.244.{}.0/24", i - 1).parse().unwrap()),
        vtep_mac: Some(vtep_mac(ip)),
        wireguard_key: None,
    }
}

/// All three nodes as the API lists them (the local one included: compile
/// must skip it).
fn cluster() -> Vec<PeerNode> {
    vec![peer(3), peer(1), peer(2)]
}

fn cfg(backend: Backend) -> OverlayConfig {
    OverlayConfig {
        backend,
        ..OverlayConfig::default()
    }
}

fn golden(desired: &Desired, expected: &str) {
    let got = desired.to_string();
    assert_eq!(
        got, expected,
        "\n--- got ---\n{got}--- expected ---\n{expected}"
    );
}

#[test]
fn vxlan_three_nodes() {
    let d = compile(&local(1), &cluster(), &cfg(Backend::Vxlan)).unwrap();
    golden(
        &d,
        "\
link weft.vxlan vxlan id 1 dstport 4789 local 192.168.1.10 mtu 1450 address 0e:57:c0:a8:01:0a nolearning
addr 10.244.0.0/32 dev weft.vxlan
fdb 0e:57:c0:a8:01:0b dst 192.168.1.11 dev weft.vxlan self permanent
fdb 0e:57:c0:a8:01:0c dst 192.168.1.12 dev weft.vxlan self permanent
neigh 10.244.1.0 lladdr 0e:57:c0:a8:01:0b dev weft.vxlan permanent
neigh 10.244.2.0 lladdr 0e:57:c0:a8:01:0c dev weft.vxlan permanent
route 10.244.1.0/24 via 10.244.1.0 dev weft.vxlan onlink proto weft
route 10.244.2.0/24 via 10.244.2.0 dev weft.vxlan onlink proto weft
pod-mtu 1450
",
    );
    // Node 3's view is the mirror image.
    let d3 = compile(&local(3), &cluster(), &cfg(Backend::Vxlan)).unwrap();
    golden(
        &d3,
        "\
link weft.vxlan vxlan id 1 dstport 4789 local 192.168.1.12 mtu 1450 address 0e:57:c0:a8:01:0c nolearning
addr 10.244.2.0/32 dev weft.vxlan
fdb 0e:57:c0:a8:01:0a dst 192.168.1.10 dev weft.vxlan self permanent
fdb 0e:57:c0:a8:01:0b dst 192.168.1.11 dev weft.vxlan self permanent
neigh 10.244.0.0 lladdr 0e:57:c0:a8:01:0a dev weft.vxlan permanent
neigh 10.244.1.0 lladdr 0e:57:c0:a8:01:0b dev weft.vxlan permanent
route 10.244.0.0/24 via 10.244.0.0 dev weft.vxlan onlink proto weft
route 10.244.1.0/24 via 10.244.1.0 dev weft.vxlan onlink proto weft
pod-mtu 1450
",
    );
}

/// Backend wireguard: one device, a peer per node with its pod CIDR as
/// AllowedIPs and its node IP as endpoint, routes onto the device; a node
/// that has not published a key yet gets nothing and is named.
#[test]
fn wireguard_three_nodes() {
    let keyed = |i: u8| PeerNode {
        wireguard_key: Some([i; 32]),
        ..peer(i)
    };
    let cfg = cfg(Backend::Wireguard);
    let d = compile(&local(1), &[keyed(3), keyed(1), keyed(2)], &cfg).unwrap();
    golden(
        &d,
        "\
link weft.wg wireguard listen-port 51820 mtu 1420
addr 10.244.0.0/32 dev weft.wg
peer AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI= endpoint 192.168.1.11:51820 allowed-ips 10.244.1.0/24 dev weft.wg # node-2
peer AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM= endpoint 192.168.1.12:51820 allowed-ips 10.244.2.0/24 dev weft.wg # node-3
route 10.244.1.0/24 via 10.244.1.0 dev weft.wg onlink proto weft
route 10.244.2.0/24 via 10.244.2.0 dev weft.wg onlink proto weft
pod-mtu 1420
",
    );
    let d = compile(&local(1), &[keyed(3), peer(2)], &cfg).unwrap();
    golden(
        &d,
        "\
link weft.wg wireguard listen-port 51820 mtu 1420
addr 10.244.0.0/32 dev weft.wg
peer AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM= endpoint 192.168.1.12:51820 allowed-ips 10.244.2.0/24 dev weft.wg # node-3
route 10.244.2.0/24 via 10.244.2.0 dev weft.wg onlink proto weft
pod-mtu 1420
problem node node-2: no WireGuard public key published yet, its pods are unreachable for now
",
    );
    // The vxlan device name may not be reused for WireGuard's.
    let clash = OverlayConfig {
        wireguard_device: DEFAULT_DEVICE.to_string(),
        ..cfg
    };
    assert!(compile(&local(1), &[], &clash).is_err());
}

#[test]
fn host_gw_three_nodes() {
    let d = compile(&local(1), &cluster(), &cfg(Backend::HostGw)).unwrap();
    golden(
        &d,
        "\
route 10.244.1.0/24 via 192.168.1.11 proto weft
route 10.244.2.0/24 via 192.168.1.12 proto weft
pod-mtu 1500
",
    );
    assert!(d.vxlan.is_none());
    assert_eq!(
        d.device, "weft.vxlan",
        "apply must know which device to remove"
    );
}

#[test]
fn auto_on_one_subnet_is_host_gw_without_device() {
    let d = compile(&local(1), &cluster(), &cfg(Backend::Auto)).unwrap();
    golden(
        &d,
        "\
route 10.244.1.0/24 via 192.168.1.11 proto weft
route 10.244.2.0/24 via 192.168.1.12 proto weft
pod-mtu 1450
",
    );
}

fn far_peer() -> PeerNode {
    let ip = ip("10.0.5.20");
    PeerNode {
        name: "node-far".to_string(),
        ip,
        pod_cidr: Some("10.244.7.0/24".parse().unwrap()),
        vtep_mac: Some(vtep_mac(ip)),
        wireguard_key: None,
    }
}

#[test]
fn auto_mixes_host_gw_and_vxlan() {
    let mut peers = cluster();
    peers.push(far_peer());
    let d = compile(&local(1), &peers, &cfg(Backend::Auto)).unwrap();
    golden(
        &d,
        "\
link weft.vxlan vxlan id 1 dstport 4789 local 192.168.1.10 mtu 1450 address 0e:57:c0:a8:01:0a nolearning
addr 10.244.0.0/32 dev weft.vxlan
fdb 0e:57:0a:00:05:14 dst 10.0.5.20 dev weft.vxlan self permanent
neigh 10.244.7.0 lladdr 0e:57:0a:00:05:14 dev weft.vxlan permanent
route 10.244.1.0/24 via 192.168.1.11 proto weft
route 10.244.2.0/24 via 192.168.1.12 proto weft
route 10.244.7.0/24 via 10.244.7.0 dev weft.vxlan onlink proto weft
pod-mtu 1450
",
    );
}

#[test]
fn host_gw_refuses_a_peer_on_another_subnet() {
    let mut peers = cluster();
    peers.push(far_peer());
    let err = compile(&local(1), &peers, &cfg(Backend::HostGw)).unwrap_err();
    assert_eq!(
        err,
        CompileError::PeerNotOnSubnet {
            peer: "node-far".into(),
            peer_ip: ip("10.0.5.20"),
            node: "node-1".into(),
            node_ip: ip("192.168.1.10"),
            subnet: "192.168.1.0/24".parse().unwrap(),
        }
    );
    let msg = err.to_string();
    for needle in [
        "node-far",
        "10.0.5.20",
        "node-1",
        "192.168.1.10",
        "192.168.1.0/24",
    ] {
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }
}

#[test]
fn peers_without_mac_or_cidr_get_nothing_and_are_reported() {
    let mut peers = cluster();
    peers[0].vtep_mac = None; // node-3
    peers[2].pod_cidr = None; // node-2
    let d = compile(&local(1), &peers, &cfg(Backend::Vxlan)).unwrap();
    golden(
        &d,
        "\
link weft.vxlan vxlan id 1 dstport 4789 local 192.168.1.10 mtu 1450 address 0e:57:c0:a8:01:0a nolearning
addr 10.244.0.0/32 dev weft.vxlan
pod-mtu 1450
problem node node-2: no podCIDR yet
problem node node-3: no VTEP MAC published yet, its pods are unreachable for now
",
    );
    // host-gw does not need the MAC.
    let d = compile(&local(1), &peers, &cfg(Backend::HostGw)).unwrap();
    assert_eq!(d.routes.len(), 1);
    assert_eq!(d.problems, vec!["node node-2: no podCIDR yet".to_string()]);
}

#[test]
fn vxlan_device_exists_even_without_peers() {
    let d = compile(&local(1), &[], &cfg(Backend::Vxlan)).unwrap();
    assert!(d.vxlan.is_some());
    assert!(d.routes.is_empty() && d.neighbours.is_empty() && d.fdb.is_empty());
}

#[test]
fn own_cidr_and_overlaps_never_get_a_route() {
    let mut clash = peer(2);
    clash.name = "node-0".into();
    clash.ip = ip("192.168.1.20");
    clash.pod_cidr = Some("10.244.0.128/25".parse().unwrap()); // inside node-1's
    let mut twin = peer(3);
    twin.name = "node-4".into();
    twin.ip = ip("192.168.1.21"); // same podCIDR as node-3
    let mut peers = cluster();
    peers.push(clash);
    peers.push(twin);
    let d = compile(&local(1), &peers, &cfg(Backend::HostGw)).unwrap();
    let dsts: Vec<String> = d.routes.iter().map(|r| r.dst.to_string()).collect();
    // node-3 and node-4 claim one CIDR: neither is routed.
    assert_eq!(dsts, vec!["10.244.1.0/24"]);
    assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
    assert!(d.problems[0].contains("node-0") && d.problems[0].contains("node-1"));
    assert!(d.problems[1].starts_with("node node-3") && d.problems[1].contains("node-4"));
    assert!(d.problems[2].starts_with("node node-4") && d.problems[2].contains("node-3"));
}

#[test]
fn a_crafted_node_cannot_take_over_another_nodes_pod_cidr() {
    // Named to sort first, claiming node-2's CIDR (and a wider one inside
    // which node-3's lies): no route goes to the impostor.
    for cidr in ["10.244.1.0/24", "10.244.0.0/8"] {
        let mut impostor = peer(2);
        impostor.name = "aaa".into();
        impostor.ip = ip("192.168.1.99");
        impostor.pod_cidr = Some(cidr.parse().unwrap());
        let mut peers = cluster();
        peers.push(impostor);
        for backend in [Backend::Vxlan, Backend::HostGw] {
            let d = compile(&local(1), &peers, &cfg(backend)).unwrap();
            assert!(
                d.routes.iter().all(|r| r.via != ip("192.168.1.99")),
                "{cidr} {backend}: {d}"
            );
            assert!(
                d.fdb.iter().all(|f| f.dst != ip("192.168.1.99")),
                "{cidr} {backend}: {d}"
            );
            assert!(
                d.problems
                    .iter()
                    .any(|p| p.contains("aaa") && p.contains("overlaps")),
                "{:?}",
                d.problems
            );
        }
    }
}

#[test]
fn compile_is_deterministic_in_peer_order() {
    let mut reversed = cluster();
    reversed.reverse();
    for backend in [Backend::Vxlan, Backend::HostGw, Backend::Auto] {
        assert_eq!(
            compile(&local(2), &cluster(), &cfg(backend)).unwrap(),
            compile(&local(2), &reversed, &cfg(backend)).unwrap()
        );
    }
}

#[test]
fn mtu() {
    assert_eq!(pod_mtu(1500, Backend::Vxlan), 1450);
    assert_eq!(pod_mtu(1500, Backend::HostGw), 1500);
    assert_eq!(pod_mtu(9000, Backend::Auto), 8950);
    assert_eq!(pod_mtu(20, Backend::Vxlan), 0);
    let mut node = local(1);
    node.underlay_mtu = 9000;
    let d = compile(&node, &cluster(), &cfg(Backend::Vxlan)).unwrap();
    assert_eq!(d.pod_mtu, 8950);
    assert_eq!(d.vxlan.unwrap().mtu, 8950);
    node.underlay_mtu = 100;
    assert!(matches!(
        compile(&node, &cluster(), &cfg(Backend::Vxlan)),
        Err(CompileError::MtuTooSmall { pod_mtu: 50, .. })
    ));
}

#[test]
fn vtep_mac_is_stable_local_unicast_and_distinct() {
    let a = vtep_mac(ip("192.168.1.10"));
    assert_eq!(a, vtep_mac(ip("192.168.1.10")));
    assert_eq!(a, [0x0e, 0x57, 192, 168, 1, 10]);
    assert_eq!(a[0] & 0x02, 0x02, "locally administered");
    assert_eq!(a[0] & 0x01, 0, "unicast");
    assert_ne!(a, vtep_mac(ip("192.168.1.11")));
}

#[test]
fn backend_parses_and_prints() {
    for b in [Backend::Vxlan, Backend::HostGw, Backend::Auto] {
        assert_eq!(b.to_string().parse::<Backend>().unwrap(), b);
    }
    assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
    let err = "hostgw".parse::<Backend>().unwrap_err();
    assert!(err.to_string().contains("hostgw") && err.to_string().contains("host-gw"));
}

#[test]
fn config_is_validated() {
    let mut c = cfg(Backend::Vxlan);
    c.vni = 1 << 24;
    assert!(matches!(
        compile(&local(1), &[], &c),
        Err(CompileError::Config { field: "vni", .. })
    ));
    let mut c = cfg(Backend::Vxlan);
    c.device = "weft.vxlan.too.long".into();
    assert!(matches!(
        compile(&local(1), &[], &c),
        Err(CompileError::Config {
            field: "device",
            ..
        })
    ));
    let mut node = local(1);
    node.underlay = "10.0.0.1/24".parse().unwrap();
    assert!(matches!(
        compile(&node, &[], &cfg(Backend::Vxlan)),
        Err(CompileError::LocalNotOnUnderlay { .. })
    ));
}

// ------------------------------------------------------------------ diffs

fn route(dst: &str, via: &str, oif: Option<u32>, onlink: bool) -> Route {
    Route {
        dst: dst.parse().unwrap(),
        gateway: Some(via.parse().unwrap()),
        oif,
        scope_link: false,
        onlink,
    }
}

#[test]
fn route_diff_keeps_right_routes_replaces_wrong_and_removes_stray() {
    let want = vec![
        route("10.244.1.0/24", "10.244.1.0", Some(7), true),
        route("10.244.2.0/24", "192.168.1.12", None, false),
        route("10.244.3.0/24", "10.244.3.0", Some(7), true),
    ];
    let have = vec![
        route("10.244.1.0/24", "10.244.1.0", Some(7), true), // right
        route("10.244.2.0/24", "10.244.2.0", Some(7), true), // wrong: replaced in place
        route("10.244.9.0/24", "10.244.9.0", Some(7), true), // stray
                                                             // host-gw: the kernel reports the device it picked; still right.
    ];
    let d = diff_routes(&want, &have);
    assert_eq!(d.unchanged, 1);
    assert_eq!(d.add, vec![want[1].clone(), want[2].clone()]);
    assert_eq!(d.remove, vec![have[2].clone()]);

    let have = vec![route("10.244.2.0/24", "192.168.1.12", Some(2), false)];
    let d = diff_routes(&want[1..2], &have);
    assert_eq!((d.add.len(), d.remove.len(), d.unchanged), (0, 0, 1));
}

#[test]
fn neighbour_diff_only_removes_permanent_strays() {
    let mac = [0x0e, 0x57, 1, 2, 3, 4];
    let want: BTreeSet<DesiredNeighbour> = [DesiredNeighbour {
        ip: ip("10.244.1.0"),
        mac,
        dev: "weft.vxlan".into(),
    }]
    .into();
    let n = |addr: &str, mac: Option<[u8; 6]>, permanent| Neighbour {
        index: 7,
        ip: addr.parse().unwrap(),
        mac,
        permanent,
    };
    // Right IP but learned (not permanent): rewritten.
    let d = diff_neighbours(&want, &[n("10.244.1.0", Some(mac), false)]);
    assert_eq!((d.add.len(), d.unchanged), (1, 0));
    let d = diff_neighbours(
        &want,
        &[
            n("10.244.1.0", Some(mac), true),
            n("10.244.5.0", Some(mac), true),
            n("10.244.6.0", None, false),
        ],
    );
    assert_eq!((d.add.len(), d.unchanged), (0, 1));
    assert_eq!(d.remove, vec![n("10.244.5.0", Some(mac), true)]);
}

#[test]
fn fdb_diff() {
    let m1 = [0x0e, 0x57, 0, 0, 0, 1];
    let m2 = [0x0e, 0x57, 0, 0, 0, 2];
    let want: BTreeSet<DesiredFdb> = [
        DesiredFdb {
            mac: m1,
            dst: ip("192.168.1.11"),
            dev: "weft.vxlan".into(),
        },
        DesiredFdb {
            mac: m2,
            dst: ip("192.168.1.12"),
            dev: "weft.vxlan".into(),
        },
    ]
    .into();
    let f = |mac, dst: &str| Fdb {
        mac,
        dst: IpAddr::V4(dst.parse().unwrap()),
    };
    let d = diff_fdb(
        &want,
        &[
            f(m1, "192.168.1.11"),
            f(m2, "192.168.1.99"),
            f([0; 6], "192.168.1.50"),
        ],
    );
    assert_eq!(d.unchanged, 1);
    assert_eq!(d.add, vec![f(m2, "192.168.1.12")]);
    // m2's old remote is rewritten in place by the replace, not deleted.
    assert_eq!(d.remove, vec![f([0; 6], "192.168.1.50")]);
}
