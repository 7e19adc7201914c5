//! Kernel tests (root) of the vxlan, neighbour, FDB and route-protocol calls,
//! in a `weft-t…` namespace made here and removed on drop. Nothing touches
//! the machine's own namespace.

use std::net::IpAddr;

use weft_linux::testns::{root_or_skip, TestNs as Ns};
use weft_linux::{Fdb, Handle, Route, RTPROT_WEFT};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn vxlan_fdb_neighbours_and_route_protocol() {
    if !root_or_skip("vxlan_fdb_neighbours_and_route_protocol") {
        return;
    }
    let ns = Ns::new("linux");
    let nsf = ns.open();
    let mut h = Handle::in_netns(&nsf).unwrap();

    // An underlay: one end of a veth pair kept in the same namespace.
    h.create_veth("under0", "under1", &nsf, None, None).unwrap();
    let under = h.link_by_name("under0").unwrap().unwrap();
    h.add_address(under.index, "192.168.1.10/24".parse().unwrap())
        .unwrap();
    h.set_up(under.index).unwrap();

    let mac = [0x0e, 0x57, 192, 168, 1, 10];
    let local = "192.168.1.10".parse().unwrap();
    h.create_vxlan(
        "weft.vxlan",
        42,
        local,
        4789,
        Some(under.index),
        Some(1450),
        Some(mac),
    )
    .unwrap();
    let err = h
        .create_vxlan("weft.vxlan", 42, local, 4789, None, None, None)
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    let dev = h.link_by_name("weft.vxlan").unwrap().unwrap();
    assert_eq!(dev.kind.as_deref(), Some("vxlan"));
    assert_eq!((dev.mtu, dev.mac), (1450, Some(mac)));
    let info = h.vxlan_info(dev.index).unwrap().unwrap();
    assert_eq!(info.vni, 42);
    assert_eq!(info.local, Some(local));
    assert_eq!(info.port, 4789);
    assert_eq!(info.underlay, Some(under.index));
    assert!(!info.learning);
    assert!(h.vxlan_info(under.index).unwrap().is_none());
    h.set_up(dev.index).unwrap();
    let other_mac = [0x0e, 0x57, 0, 0, 0, 1];
    h.set_mac(dev.index, other_mac).unwrap();
    assert_eq!(
        h.link_by_index(dev.index).unwrap().unwrap().mac,
        Some(other_mac)
    );

    // FDB. The kernel keeps several remotes only for the all-zeros (flood)
    // and multicast MACs; an append for a unicast MAC with a remote already
    // there is ignored.
    let zero = [0u8; 6];
    h.append_fdb(dev.index, zero, ip("192.168.1.11")).unwrap();
    h.append_fdb(dev.index, zero, ip("192.168.1.21")).unwrap();
    let mut fdb = h.fdb_entries(dev.index).unwrap();
    fdb.sort();
    let entry = |mac, dst| Fdb { mac, dst: ip(dst) };
    assert_eq!(
        fdb,
        vec![entry(zero, "192.168.1.11"), entry(zero, "192.168.1.21")]
    );
    h.delete_fdb(dev.index, zero, ip("192.168.1.21")).unwrap();
    // Kernel quirk: a missing remote of a MAC that is there is not an error…
    h.delete_fdb(dev.index, zero, ip("192.168.1.21")).unwrap();
    h.delete_fdb(dev.index, zero, ip("192.168.1.11")).unwrap();
    // …a missing MAC is.
    let err = h
        .delete_fdb(dev.index, zero, ip("192.168.1.11"))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(h.fdb_entries(dev.index).unwrap().is_empty());

    let peer = [0x0e, 0x57, 192, 168, 1, 11];
    h.append_fdb(dev.index, peer, ip("192.168.1.11")).unwrap();
    h.replace_fdb(dev.index, peer, ip("192.168.1.12")).unwrap();
    h.replace_fdb(dev.index, peer, ip("192.168.1.12")).unwrap();
    assert_eq!(
        h.fdb_entries(dev.index).unwrap(),
        vec![entry(peer, "192.168.1.12")]
    );
    // Other devices' entries are not listed.
    assert!(h
        .fdb_entries(under.index)
        .unwrap()
        .iter()
        .all(|e| e.mac != peer));

    // Neighbours.
    h.replace_neighbour(dev.index, ip("10.244.1.0"), peer)
        .unwrap();
    h.replace_neighbour(dev.index, ip("10.244.1.0"), peer)
        .unwrap();
    let n = h.neighbours(Some(dev.index), false).unwrap();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(
        (n[0].ip, n[0].mac, n[0].permanent),
        (ip("10.244.1.0"), Some(peer), true)
    );
    assert!(h.neighbours(Some(under.index), false).unwrap().is_empty());
    h.delete_neighbour(dev.index, ip("10.244.1.0")).unwrap();
    let err = h.delete_neighbour(dev.index, ip("10.244.1.0")).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Routes with weft's protocol: replace is idempotent, listing shows the
    // protocol, and a protocol-scoped delete leaves others' routes alone.
    let weft = Route {
        dst: "10.244.1.0/24".parse().unwrap(),
        gateway: Some(ip("10.244.1.0")),
        oif: Some(dev.index),
        scope_link: false,
        onlink: true,
    };
    h.replace_route(&weft, RTPROT_WEFT).unwrap();
    h.replace_route(&weft, RTPROT_WEFT).unwrap();
    let boot = Route::via("10.244.5.0/24".parse().unwrap(), ip("192.168.1.15"));
    h.add_route(&boot).unwrap();
    let routes = h.routes_with_protocol(false).unwrap();
    let ours: Vec<&Route> = routes
        .iter()
        .filter(|(_, p)| *p == RTPROT_WEFT)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(ours, vec![&weft]);
    let err = h
        .delete_route_with_protocol(&Route::via(boot.dst, ip("192.168.1.15")), RTPROT_WEFT)
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    h.delete_route_with_protocol(&weft, RTPROT_WEFT).unwrap();
    h.delete_route(&boot).unwrap();
    assert!(h
        .routes_with_protocol(false)
        .unwrap()
        .iter()
        .all(|(_, p)| *p != RTPROT_WEFT));

    // Addresses come off again.
    h.add_address(dev.index, "10.244.0.0/32".parse().unwrap())
        .unwrap();
    h.delete_address(dev.index, "10.244.0.0/32".parse().unwrap())
        .unwrap();
    assert!(h
        .addresses(Some(dev.index))
        .unwrap()
        .iter()
        .all(|(_, a)| a.addr().is_ipv6()));
}

#[test]
fn gro_can_be_turned_on_for_a_veth() {
    if !root_or_skip("gro_can_be_turned_on_for_a_veth") {
        return;
    }
    let ns = Ns::new("gro");
    let nsf = ns.open();
    let mut h = Handle::in_netns(&nsf).unwrap();
    h.create_veth("gro0", "gro1", &nsf, None, None).unwrap();
    let state = |on: bool| {
        ns.run(|| weft_linux::ethtool::set_gro("gro0", on)).unwrap();
        let out = ns.exec(&["ethtool", "-k", "gro0"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("generic-receive-offload:"))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(state(true), "generic-receive-offload: on");
    assert_eq!(state(false), "generic-receive-offload: off");
    assert!(ns
        .run(|| weft_linux::ethtool::set_gro("nosuchlink", true))
        .is_err());
}
