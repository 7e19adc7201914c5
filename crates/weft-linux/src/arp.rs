//! ARP on one interface (RFC 826): the frames as bytes ([`parse`],
//! [`reply_to`], [`gratuitous`], pure) and a packet socket that receives and
//! sends them ([`ArpSocket`]). weft's L2 LoadBalancer announcement answers
//! requests for the addresses a node announces, the way MetalLB's speaker
//! does: the addresses live on no interface of the node (the Service
//! proxy's rules take their traffic in prerouting), so the kernel does not
//! answer for them, and its proxy ARP answers only for addresses routed out
//! of another interface.
//!
//! Written here rather than taken from a crate: the frame is 42 fixed
//! bytes, and the one packet-capture crate that would fit (pnet) brings a
//! datalink layer with its own threads where a non-blocking socket in the
//! agent's event loop is all that is needed.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// Length of an Ethernet II frame carrying an IPv4-over-Ethernet ARP packet
/// (without padding or FCS).
pub const FRAME_LEN: usize = 42;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Request,
    Reply,
}

/// An IPv4-over-Ethernet ARP packet with the Ethernet addresses of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub op: Op,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// Why a frame is not an ARP packet weft reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame of {0} bytes is shorter than an Ethernet ARP frame (42)")]
    Short(usize),
    #[error("EtherType {0:#06x} is not ARP (0x0806)")]
    NotArp(u16),
    #[error("ARP for hardware type {htype} / protocol {ptype:#06x} (lengths {hlen}/{plen}), not Ethernet/IPv4")]
    NotEthernetIpv4 {
        htype: u16,
        ptype: u16,
        hlen: u8,
        plen: u8,
    },
    #[error("ARP operation {0} is neither request (1) nor reply (2)")]
    Op(u16),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn mac(b: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

fn ip(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Reads an Ethernet frame (from its destination address on; trailing
/// padding is ignored).
pub fn parse(frame: &[u8]) -> Result<ArpPacket, ParseError> {
    if frame.len() < FRAME_LEN {
        return Err(ParseError::Short(frame.len()));
    }
    let ethertype = be16(frame, 12);
    if ethertype != ETH_P_ARP {
        return Err(ParseError::NotArp(ethertype));
    }
    let a = &frame[14..];
    let (htype, ptype, hlen, plen) = (be16(a, 0), be16(a, 2), a[4], a[5]);
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) {
        return Err(ParseError::NotEthernetIpv4 {
            htype,
            ptype,
            hlen,
            plen,
        });
    }
    let op = match be16(a, 6) {
        1 => Op::Request,
        2 => Op::Reply,
        other => return Err(ParseError::Op(other)),
    };
    Ok(ArpPacket {
        eth_dst: mac(frame, 0),
        eth_src: mac(frame, 6),
        op,
        sender_mac: mac(a, 8),
        sender_ip: ip(a, 14),
        target_mac: mac(a, 18),
        target_ip: ip(a, 24),
    })
}

/// The frame of `p`.
pub fn build(p: &ArpPacket) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&p.eth_dst);
    f[6..12].copy_from_slice(&p.eth_src);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    let op: u16 = match p.op {
        Op::Request => 1,
        Op::Reply => 2,
    };
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&p.sender_mac);
    f[28..32].copy_from_slice(&p.sender_ip.octets());
    f[32..38].copy_from_slice(&p.target_mac);
    f[38..42].copy_from_slice(&p.target_ip.octets());
    f
}

/// The reply of the interface with address `own_mac` to `request`, saying
/// that its target address is at `own_mac`: sent to the asker alone.
pub fn reply_to(request: &ArpPacket, own_mac: [u8; 6]) -> ArpPacket {
    ArpPacket {
        eth_dst: request.sender_mac,
        eth_src: own_mac,
        op: Op::Reply,
        sender_mac: own_mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    }
}

/// A gratuitous ARP reply announcing that `ip` is at `own_mac`, broadcast:
/// sender and target address both `ip`, target hardware address broadcast,
/// which Linux takes as gratuitous and lets replace a neighbour entry even
/// within its locktime (net/ipv4/arp.c, `is_garp`).
pub fn gratuitous(ip: Ipv4Addr, own_mac: [u8; 6]) -> ArpPacket {
    ArpPacket {
        eth_dst: BROADCAST,
        eth_src: own_mac,
        op: Op::Reply,
        sender_mac: own_mac,
        sender_ip: ip,
        target_mac: BROADCAST,
        target_ip: ip,
    }
}

/// A non-blocking `AF_PACKET` socket receiving and sending ARP frames on
/// one interface (needs CAP_NET_RAW in the interface's network namespace).
#[derive(Debug)]
pub struct ArpSocket {
    fd: OwnedFd,
    ifindex: u32,
}

fn sockaddr(ifindex: u32, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    if let Some(d) = dst {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&d);
    }
    addr
}

impl ArpSocket {
    /// Opens the socket on interface `ifindex` of the current network
    /// namespace.
    #[allow(unsafe_code)]
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        // SAFETY: socket(2) with constant arguments; the result is checked
        // and owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ETH_P_ARP.to_be() as i32,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = sockaddr(ifindex, None);
        // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpSocket { fd, ifindex })
    }

    /// Receives one frame into `buf`, giving its length; `Ok(None)` for a
    /// frame this host sent (a packet socket sees outgoing frames too).
    /// `WouldBlock` when none waits.
    #[allow(unsafe_code)]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut from = sockaddr(0, None);
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: `buf` is writable for its length; `from`/`len` describe a
        // sockaddr_ll the kernel fills.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Some(n as usize))
    }

    /// Sends `packet` (its frame) out of the interface.
    #[allow(unsafe_code)]
    pub fn send(&self, packet: &ArpPacket) -> io::Result<()> {
        let frame = build(packet);
        let addr = sockaddr(self.ifindex, Some(packet.eth_dst));
        // SAFETY: `frame` is readable for its length; `addr` is a valid
        // sockaddr_ll and its size is passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsFd for ArpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for ArpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKER: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const NODE: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn request(target: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            eth_dst: BROADCAST,
            eth_src: ASKER,
            op: Op::Request,
            sender_mac: ASKER,
            sender_ip: Ipv4Addr::new(203, 0, 113, 1),
            target_mac: [0; 6],
            target_ip: target,
        }
    }

    #[test]
    fn a_request_as_tcpdump_shows_it_parses() {
        // who-has 203.0.113.50 tell 203.0.113.1, with Ethernet padding.
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&ASKER);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&ASKER);
        frame.extend_from_slice(&[203, 0, 113, 1]);
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&[203, 0, 113, 50]);
        frame.extend_from_slice(&[0; 18]);
        assert_eq!(
            parse(&frame).unwrap(),
            request(Ipv4Addr::new(203, 0, 113, 50))
        );
    }

    #[test]
    fn building_and_parsing_give_back_the_packet() {
        let r = request(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(parse(&build(&r)).unwrap(), r);
        let g = gratuitous(Ipv4Addr::new(203, 0, 113, 9), NODE);
        assert_eq!(parse(&build(&g)).unwrap(), g);
    }

    #[test]
    fn the_reply_says_the_target_is_at_our_mac_and_goes_to_the_asker() {
        let req = request(Ipv4Addr::new(203, 0, 113, 50));
        let r = reply_to(&req, NODE);
        assert_eq!(r.op, Op::Reply);
        assert_eq!((r.eth_dst, r.eth_src), (ASKER, NODE));
        assert_eq!(
            (r.sender_mac, r.sender_ip),
            (NODE, Ipv4Addr::new(203, 0, 113, 50))
        );
        assert_eq!(
            (r.target_mac, r.target_ip),
            (ASKER, Ipv4Addr::new(203, 0, 113, 1))
        );
    }

    #[test]
    fn a_gratuitous_reply_names_the_address_twice_and_is_broadcast() {
        let g = gratuitous(Ipv4Addr::new(203, 0, 113, 7), NODE);
        assert_eq!(g.sender_ip, g.target_ip);
        assert_eq!((g.eth_dst, g.target_mac), (BROADCAST, BROADCAST));
        assert_eq!(g.op, Op::Reply);
    }

    #[test]
    fn what_is_not_ethernet_ipv4_arp_is_refused_with_the_reason() {
        let f = build(&request(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse(&f[..41]), Err(ParseError::Short(41)));
        let mut ip = f;
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ip), Err(ParseError::NotArp(0x0800)));
        let mut v6 = f;
        v6[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert!(matches!(
            parse(&v6),
            Err(ParseError::NotEthernetIpv4 { ptype: 0x86dd, .. })
        ));
        let mut op = f;
        op[21] = 3;
        assert_eq!(parse(&op), Err(ParseError::Op(3)));
    }
}
