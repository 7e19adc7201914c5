//! A synchronous rtnetlink client: one socket, one request at a time, every
//! request acknowledged. Small on purpose: CNI plugins are short-lived
//! processes where an async runtime only adds start-up time.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Netns, Result};

/// A link as weft cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Index of the bridge (or other controller) this link is a port of.
    pub master: Option<u32>,
    pub up: bool,
    /// `bridge`, `veth`, `vxlan`… (`IFLA_INFO_KIND`), if the kernel said.
    pub kind: Option<String>,
}

/// A route in the main table, as weft writes and reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Link scope for on-link routes (no gateway); universe otherwise.
    pub scope_link: bool,
    /// `RTNH_F_ONLINK`: the gateway is reachable on `oif` even if no address covers it.
    pub onlink: bool,
}

impl Route {
    pub fn via(dst: IpNet, gateway: IpAddr) -> Self {
        Route {
            dst,
            gateway: Some(gateway),
            oif: None,
            scope_link: false,
            onlink: false,
        }
    }
}

/// The routing protocol number weft stamps on the routes it writes
/// (`proto 0x57`, "W"), so its own routes can be listed and told apart from
/// the kernel's, the CNI's (`boot`) and a routing daemon's. Unused by the
/// kernel and by iproute2's `rt_protos` (bird, zebra, babel, bgp… sit elsewhere).
pub const RTPROT_WEFT: u8 = 0x57;

/// The protocol `add_route` writes (`boot`, iproute2's default).
pub const RTPROT_BOOT: u8 = 3;

/// What a vxlan device was created with, as far as weft decides whether an
/// existing device can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    /// UDP destination port (host order).
    pub port: u16,
    /// Index of the underlay device (`dev …`), if one was given.
    pub underlay: Option<u32>,
    pub learning: bool,
}

/// An IP neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    /// Absent for incomplete and failed entries.
    pub mac: Option<[u8; 6]>,
    /// `NUD_PERMANENT`: written by someone, never aged or probed by the kernel.
    pub permanent: bool,
}

/// A forwarding-database entry of a vxlan device (`bridge fdb … self`):
/// frames for `mac` go to the VTEP at `dst`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fdb {
    pub mac: [u8; 6],
    pub dst: IpAddr,
}

/// One rtnetlink socket bound to the namespace it was opened in.
pub struct Handle {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

const RECV_BUF: usize = 64 * 1024;

impl Handle {
    /// A handle for the calling thread's namespace.
    pub fn new() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open rtnetlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind rtnetlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect rtnetlink socket", e))?;
        // Ask for extended acks so a failing request carries the kernel's reason.
        let _ = socket.set_ext_ack(true);
        Ok(Handle {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// A handle whose socket lives in `ns`: opened on a thread inside `ns`,
    /// then used from anywhere.
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        ns.run(Handle::new)?
    }

    pub fn raw_fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }

    /// Sends one request and collects every answer until the ACK or DONE.
    fn request(
        &mut self,
        op: &dyn Fn() -> String,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| Error::io(op(), e))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            self.recv_buf.clear();
            let n = self
                .socket
                .recv(&mut self.recv_buf, 0)
                .map_err(|e| Error::io(op(), e))?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.recv_buf[offset..n];
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        Error::Decode {
                            op: op(),
                            detail: e.to_string(),
                        }
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(answers),
                            Some(code) => Err(Error::Netlink {
                                op: op(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    // ---------------------------------------------------------------- links

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let answers = self.request(
            &|| "list links".to_string(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &|| format!("get link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(&l)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            &|| format!("get link #{index}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(&l)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge; `EEXIST` is an error the caller may treat as success.
    /// A bridge with no address of its own takes the lowest MAC of its ports,
    /// which changes as ports come and go; give one to keep it fixed.
    pub fn create_bridge(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            &|| format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Creates a veth pair: `name` here, `peer_name` directly inside `peer_ns`
    /// (so the pod side never appears in this namespace, and an interface name
    /// already taken in the pod shows up as `EEXIST`).
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_ns: &Netns,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd_for_netlink()));
        if let Some(mtu) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            &|| {
                format!(
                    "create veth {name} with peer {peer_name} in {}",
                    peer_ns.path().display()
                )
            },
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    fn set_link(&mut self, op: &dyn Fn() -> String, msg: LinkMessage) -> Result<()> {
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.set_link(&|| format!("set link #{index} up"), msg)
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(&|| format!("set link #{index} mtu {mtu}"), msg)
    }

    /// Makes link `index` a port of bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.set_link(&|| format!("attach link #{index} to bridge #{master}"), msg)
    }

    /// Hairpin mode on a bridge port: frames may leave by the port they came in
    /// on, so a pod can reach itself through a Service VIP.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        // Port attributes go through RTM_NEWLINK on an existing link.
        self.request(
            &|| format!("set hairpin {on} on link #{index}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Reads the hairpin flag of a bridge port.
    pub fn hairpin(&mut self, index: u32) -> Result<Option<bool>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let answers = self.request(
            &|| format!("get link #{index}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        )?;
        for answer in answers {
            if let RouteNetlinkMessage::NewLink(l) = answer {
                for attr in &l.attributes {
                    if let LinkAttribute::LinkInfo(infos) = attr {
                        for info in infos {
                            if let LinkInfo::PortData(InfoPortData::BridgePort(port)) = info {
                                for p in port {
                                    if let InfoBridgePort::HairpinMode(on) = p {
                                        return Ok(Some(*on));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            &|| format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Deletes the link called `name`; true if there was one.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &|| format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------ addresses

    /// Adds `addr` (address + prefix) to link `index`. IPv6 addresses skip
    /// duplicate address detection: the IPAM already guarantees uniqueness and
    /// DAD would leave the address unusable for a second or more.
    pub fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(&addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if addr.addr().is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        self.request(
            &|| format!("add address {addr} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Addresses of link `index` (all links when `None`), as (index, address).
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<(u32, IpNet)>> {
        let answers = self.request(
            &|| "list addresses".to_string(),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(a) = answer else {
                continue;
            };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer
            // on point-to-point links, so prefer LOCAL when both are there.
            let local = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                    out.push((a.header.index, net));
                }
            }
        }
        Ok(out)
    }

    // --------------------------------------------------------------- routes

    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let msg = route_message(route);
        self.request(
            &|| format!("add route {}", describe_route(route)),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        let mut msg = route_message(route);
        // Deleting matches on the given fields only; protocol/type must not
        // narrow the match to ones we did not set.
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        self.request(
            &|| format!("delete route {}", describe_route(route)),
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Routes of the main table for one address family.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let answers = self.request(
            &|| "list routes".to_string(),
            RouteNetlinkMessage::GetRoute(req),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(r) = answer else {
                continue;
            };
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            let dst_addr = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => route_ip(d),
                _ => None,
            });
            let dst_addr = dst_addr.unwrap_or(if v6 {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            });
            let Ok(dst) = IpNet::new(dst_addr, r.header.destination_prefix_length) else {
                continue;
            };
            let gateway = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => route_ip(g),
                _ => None,
            });
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            out.push(Route {
                dst,
                gateway,
                oif,
                scope_link: r.header.scope == RouteScope::Link,
                onlink: r.header.flags.bits() & RTNH_F_ONLINK != 0,
            });
        }
        Ok(out)
    }
}

const RTNH_F_ONLINK: u32 = 4;

fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_message(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(&route.dst.addr());
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if route.scope_link {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if route.onlink {
        msg.header.flags = netlink_packet_route::route::RouteFlags::from_bits_retain(RTNH_F_ONLINK);
    }
    if route.dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_address(
                route.dst.network(),
            )));
    }
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(route_address(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

fn describe_route(route: &Route) -> String {
    let mut s = route.dst.to_string();
    if let Some(gw) = route.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = route.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    s
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        master: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                link.mac = Some(mac);
            }
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with dashes).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

impl Netns {
    fn as_raw_fd_for_netlink(&self) -> i32 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("0a:58:0A:f4:01:05").unwrap();
        assert_eq!(format_mac(&mac), "0a:58:0a:f4:01:05");
        assert!(parse_mac("0a:58:0a:f4:01").is_none());
        assert!(parse_mac("0a:58:0a:f4:01:zz").is_none());
    }

    #[test]
    fn route_message_carries_destination_and_gateway() {
        let route = Route::via(
            "10.244.1.0/24".parse().unwrap(),
            "192.168.1.11".parse().unwrap(),
        );
        let msg = route_message(&route);
        assert_eq!(msg.header.destination_prefix_length, 24);
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                "192.168.1.11".parse().unwrap()
            ))));
    }
}
