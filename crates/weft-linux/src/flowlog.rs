//! The kernel's two passive flow sources, in one network namespace: new
//! connections from conntrack's event group (`NFNLGRP_CONNTRACK_NEW` of
//! ctnetlink — a connection is reported when its first packet was accepted
//! all the way, so an event is an allowed flow, with the connection mark
//! the accepting rules set) and logged packets of one NFLOG group
//! (`nfnetlink_log`, what `log group N` rules send — weft-policy's deny
//! chains log there with the policy in the prefix). `weft flows` stands on
//! these (issue 16).
//!
//! [`parse_conntrack`] and [`parse_nflog`] read one netlink message (pure;
//! the fuzz target `flow_log` feeds them). The framing and the attributes
//! are walked here, every length checked, for the reason nftrace gives
//! (netlink-packet-core 0.9's attribute parser panics on a truncated
//! header), and because neither message is typed by a maintained crate in
//! the form needed: `netlink-packet-netfilter` types NFLOG but not the
//! conntrack mark of an event. Values come from
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h` and
//! `nfnetlink_log.h`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::nftrace::{messages, nested};
use crate::{Error, Netns, Result};

/// ctnetlink's multicast group of new connections.
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFNL_SUBSYS_ULOG: u16 = 4;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

// enum ctattr_type, ctattr_tuple, ctattr_ip, ctattr_l4proto
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_MARK: u16 = 8;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

// enum nfulnl_attr_type, nfulnl_attr_config
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_MARK: u16 = 2;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_SEQ: u16 = 12;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULA_CFG_FLAGS: u16 = 6;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULNL_CFG_F_SEQ: u16 = 1;
/// Enough of a packet for its IP and transport headers.
const COPY_RANGE: u32 = 128;

/// Why a message is not a flow event weft reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("not a netlink message: {0}")]
    Netlink(String),
    #[error("{what} without {missing}")]
    Missing {
        what: &'static str,
        missing: &'static str,
    },
    #[error("{name}: {len} bytes, expected {expected}")]
    Length {
        name: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("logged packet: {0}")]
    Packet(String),
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A new connection conntrack reported (its first packet was accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1/58 ICMP: ports 0).
    pub proto: u8,
    /// As the client sent it (destination before DNAT).
    pub original: Tuple,
    /// As the answers come (source: the endpoint after DNAT; destination:
    /// the client after SNAT).
    pub reply: Tuple,
    /// The connection mark (`ct mark`) when the event was sent.
    pub mark: u32,
    pub zone: u16,
}

impl fmt::Display for NewConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proto {} {} -> {} (reply {} -> {}) mark {:#x}",
            self.proto,
            self.original.src,
            self.original.dst,
            self.reply.src,
            self.reply.dst,
            self.mark
        )
    }
}

/// The addresses and ports of a logged packet's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeaders {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 for protocols without ports (or a packet cut before them).
    pub sport: u16,
    pub dport: u16,
}

/// One packet an NFLOG rule logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The rule's `log prefix`.
    pub prefix: String,
    /// The netfilter hook number it was logged in.
    pub hook: u8,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    pub mark: u32,
    /// The instance's sequence number (gaps: packets the kernel could not
    /// queue to this socket).
    pub seq: Option<u32>,
    pub packet: PacketHeaders,
}

fn fixed<const N: usize>(v: &[u8], name: &'static str) -> std::result::Result<[u8; N], FlowError> {
    v.get(..N)
        .filter(|_| v.len() == N)
        .and_then(|b| b.try_into().ok())
        .ok_or(FlowError::Length {
            name,
            len: v.len(),
            expected: N,
        })
}

fn be16(v: &[u8], name: &'static str) -> std::result::Result<u16, FlowError> {
    Ok(u16::from_be_bytes(fixed::<2>(v, name)?))
}

fn be32(v: &[u8], name: &'static str) -> std::result::Result<u32, FlowError> {
    Ok(u32::from_be_bytes(fixed::<4>(v, name)?))
}

/// One netlink message: (type, nfgenmsg family, the attributes after
/// nfgenmsg), through nftrace's frame walk.
fn frame(bytes: &[u8]) -> std::result::Result<(u16, u8, &[u8]), FlowError> {
    let (kind, body) = crate::nftrace::frame(bytes).map_err(FlowError::Netlink)?;
    let family = body.first().copied().unwrap_or(0);
    Ok((kind, family, body.get(4..).unwrap_or(&[])))
}

fn tuple(v: &[u8]) -> std::result::Result<(u8, Tuple), FlowError> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
    for (kind, val) in nested(v) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, a) in nested(&val) {
                    match k {
                        CTA_IP_V4_SRC => src = Some(IpAddr::from(fixed::<4>(&a, "CTA_IP_V4_SRC")?)),
                        CTA_IP_V4_DST => dst = Some(IpAddr::from(fixed::<4>(&a, "CTA_IP_V4_DST")?)),
                        CTA_IP_V6_SRC => {
                            src = Some(IpAddr::from(fixed::<16>(&a, "CTA_IP_V6_SRC")?))
                        }
                        CTA_IP_V6_DST => {
                            dst = Some(IpAddr::from(fixed::<16>(&a, "CTA_IP_V6_DST")?))
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, a) in nested(&val) {
                    match k {
                        CTA_PROTO_NUM => proto = Some(fixed::<1>(&a, "CTA_PROTO_NUM")?[0]),
                        CTA_PROTO_SRC_PORT => sport = be16(&a, "CTA_PROTO_SRC_PORT")?,
                        CTA_PROTO_DST_PORT => dport = be16(&a, "CTA_PROTO_DST_PORT")?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let missing = |m| FlowError::Missing {
        what: "conntrack tuple",
        missing: m,
    };
    let (src, dst) = (
        src.ok_or(missing("a source"))?,
        dst.ok_or(missing("a destination"))?,
    );
    Ok((
        proto.ok_or(missing("a protocol"))?,
        Tuple {
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
        },
    ))
}

/// Reads one netlink message: the new connection it reports, `Ok(None)`
/// for any other message.
pub fn parse_conntrack(bytes: &[u8]) -> std::result::Result<Option<NewConnection>, FlowError> {
    let (kind, _, attrs) = frame(bytes)?;
    if kind != (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW) {
        return Ok(None);
    }
    let (mut original, mut reply, mut mark, mut zone) = (None, None, 0, 0);
    for (kind, val) in nested(attrs) {
        match kind {
            CTA_TUPLE_ORIG => original = Some(tuple(&val)?),
            CTA_TUPLE_REPLY => reply = Some(tuple(&val)?),
            CTA_MARK => mark = be32(&val, "CTA_MARK")?,
            CTA_ZONE => zone = be16(&val, "CTA_ZONE")?,
            _ => {}
        }
    }
    let missing = |m| FlowError::Missing {
        what: "conntrack event",
        missing: m,
    };
    let (proto, original) = original.ok_or(missing("an original tuple"))?;
    let (_, reply) = reply.ok_or(missing("a reply tuple"))?;
    Ok(Some(NewConnection {
        proto,
        original,
        reply,
        mark,
        zone,
    }))
}

/// The headers of an IP packet (as NFLOG copies it: from the network
/// header).
pub fn packet_headers(p: &[u8]) -> std::result::Result<PacketHeaders, FlowError> {
    let bad = |m: &str| FlowError::Packet(m.to_string());
    let version = p.first().ok_or_else(|| bad("empty payload"))? >> 4;
    let (proto, src, dst, l4) = match version {
        4 => {
            if p.len() < 20 {
                return Err(bad("IPv4 header cut short"));
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 {
                return Err(bad("IPv4 header length below 20"));
            }
            let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let src = IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).expect("4 bytes"));
            let dst = IpAddr::from(<[u8; 4]>::try_from(&p[16..20]).expect("4 bytes"));
            // A later fragment carries no transport header.
            let l4 = if frag_offset == 0 { p.get(ihl..) } else { None };
            (p[9], src, dst, l4)
        }
        6 => {
            if p.len() < 40 {
                return Err(bad("IPv6 header cut short"));
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).expect("16 bytes"));
            let dst = IpAddr::from(<[u8; 16]>::try_from(&p[24..40]).expect("16 bytes"));
            (p[6], src, dst, p.get(40..))
        }
        v => return Err(FlowError::Packet(format!("IP version {v}"))),
    };
    let (mut sport, mut dport) = (0, 0);
    if matches!(proto, 6 | 17 | 132) {
        if let Some(l4) = l4.filter(|l| l.len() >= 4) {
            sport = u16::from_be_bytes([l4[0], l4[1]]);
            dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
    }
    Ok(PacketHeaders {
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

/// Reads one netlink message: the logged packet it carries, `Ok(None)` for
/// any other message.
pub fn parse_nflog(bytes: &[u8]) -> std::result::Result<Option<LoggedPacket>, FlowError> {
    let (kind, _, attrs) = frame(bytes)?;
    if kind != (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET) {
        return Ok(None);
    }
    let mut out = LoggedPacket {
        prefix: String::new(),
        hook: 0,
        indev: None,
        outdev: None,
        mark: 0,
        seq: None,
        packet: PacketHeaders {
            proto: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            sport: 0,
            dport: 0,
        },
    };
    let mut payload = None;
    for (kind, val) in nested(attrs) {
        match kind {
            NFULA_PACKET_HDR => out.hook = fixed::<4>(&val, "NFULA_PACKET_HDR")?[2],
            NFULA_MARK => out.mark = be32(&val, "NFULA_MARK")?,
            NFULA_IFINDEX_INDEV => out.indev = Some(be32(&val, "NFULA_IFINDEX_INDEV")?),
            NFULA_IFINDEX_OUTDEV => out.outdev = Some(be32(&val, "NFULA_IFINDEX_OUTDEV")?),
            NFULA_SEQ => out.seq = Some(be32(&val, "NFULA_SEQ")?),
            NFULA_PREFIX => {
                let v = val.strip_suffix(&[0]).unwrap_or(&val);
                out.prefix = String::from_utf8_lossy(v).into_owned();
            }
            NFULA_PAYLOAD => payload = Some(val),
            _ => {}
        }
    }
    let payload = payload.ok_or(FlowError::Missing {
        what: "logged packet",
        missing: "a payload",
    })?;
    out.packet = packet_headers(&payload)?;
    Ok(Some(out))
}

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity((len + 3) & !3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize((len + 3) & !3, 0);
    out
}

/// The NFULNL_MSG_CONFIG request for `group` carrying `attrs`.
fn config_message(group: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&(NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, the group as resource id.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// The errno of an NLMSG_ERROR answer (0: an acknowledgement), None for
/// other messages.
fn ack_errno(m: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes([*m.get(4)?, *m.get(5)?]);
    if kind != NLMSG_ERROR {
        return None;
    }
    let e = m.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)?;
    Some(-i32::from_ne_bytes(e.try_into().ok()?))
}

/// One event of either source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    New(NewConnection),
    Logged(LoggedPacket),
}

/// A netlink socket that receives new connections or one NFLOG group in
/// the network namespace it was opened in.
pub struct FlowSocket {
    socket: Socket,
    buf: Vec<u8>,
    nflog: bool,
}

impl FlowSocket {
    fn raw() -> Result<Socket> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|e| Error::io("open a nfnetlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind the nfnetlink socket", e))?;
        let _ = socket.set_rx_buf_sz(4 << 20);
        Ok(socket)
    }

    /// Subscribes to conntrack's new connections in the calling thread's
    /// namespace (CAP_NET_ADMIN; events need `net.netfilter.nf_conntrack_events`
    /// not 0 — its default sends them while somebody listens).
    pub fn conntrack() -> Result<FlowSocket> {
        let socket = FlowSocket::raw()?;
        socket
            .add_membership(NFNLGRP_CONNTRACK_NEW)
            .map_err(|e| Error::io("join NFNLGRP_CONNTRACK_NEW", e))?;
        Ok(FlowSocket {
            socket,
            buf: vec![0u8; 1 << 16],
            nflog: false,
        })
    }

    /// Binds NFLOG group `group` in the calling thread's namespace: packets
    /// copied up to their transport header, sent at once (queue threshold
    /// 1), with sequence numbers. One socket per group and namespace: the
    /// kernel answers a second socket's bind with EPERM (EBUSY to the same
    /// socket binding twice), which the error explains.
    pub fn nflog(group: u16) -> Result<FlowSocket> {
        let socket = FlowSocket::raw()?;
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        let steps: [(&str, Vec<u8>); 5] = [
            ("bind", attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])),
            ("copy mode", attr(NFULA_CFG_MODE, &mode)),
            (
                "queue threshold",
                attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
            ),
            (
                "flush timeout",
                attr(NFULA_CFG_TIMEOUT, &1u32.to_be_bytes()),
            ),
            (
                "sequence numbers",
                attr(NFULA_CFG_FLAGS, &NFULNL_CFG_F_SEQ.to_be_bytes()),
            ),
        ];
        let mut buf = vec![0u8; 8192];
        for (i, (what, a)) in steps.iter().enumerate() {
            let msg = config_message(group, i as u32 + 1, a);
            socket
                .send(&msg, 0)
                .map_err(|e| Error::io(format!("NFLOG group {group}: send {what}"), e))?;
            loop {
                let n = socket
                    .recv(&mut &mut buf[..], 0)
                    .map_err(|e| Error::io(format!("NFLOG group {group}: {what}"), e))?;
                let errno = messages(&buf[..n]).into_iter().find_map(ack_errno);
                match errno {
                    None => continue,
                    Some(0) => break,
                    Some(e) => {
                        let err = io::Error::from_raw_os_error(e);
                        let hint = if e == nix::errno::Errno::EPERM as i32
                            || e == nix::errno::Errno::EBUSY as i32
                        {
                            " (another process already listens on this group in this namespace)"
                        } else {
                            ""
                        };
                        return Err(Error::io(format!("NFLOG group {group}: {what}{hint}"), err));
                    }
                }
            }
        }
        Ok(FlowSocket {
            socket,
            buf: vec![0u8; 1 << 16],
            nflog: true,
        })
    }

    /// Opens [`FlowSocket::conntrack`] or [`FlowSocket::nflog`] in `ns`.
    pub fn open_in<F>(ns: &Netns, open: F) -> Result<FlowSocket>
    where
        F: FnOnce() -> Result<FlowSocket> + Send,
    {
        ns.run(open)?
    }

    /// Non-blocking from now on.
    pub fn set_nonblocking(&self) -> Result<()> {
        self.socket
            .set_non_blocking(true)
            .map_err(|e| Error::io("make the flow socket non-blocking", e))
    }

    /// The events of the next datagram; a message that does not parse is an
    /// error naming why. ENOBUFS (events lost to a full receive buffer) is
    /// returned as the io error it is, for the caller to count.
    pub fn recv(&mut self) -> io::Result<Vec<std::result::Result<FlowEvent, FlowError>>> {
        let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
        let nflog = self.nflog;
        Ok(messages(&self.buf[..n])
            .into_iter()
            .filter_map(|m| {
                if nflog {
                    parse_nflog(m).map(|e| e.map(FlowEvent::Logged)).transpose()
                } else {
                    parse_conntrack(m)
                        .map(|e| e.map(FlowEvent::New))
                        .transpose()
                }
            })
            .collect())
    }
}

impl std::os::fd::AsFd for FlowSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + 4 + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[family, 0, 0, 0]);
        m.extend_from_slice(attrs);
        m
    }

    fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | 0x8000, &parts.concat())
    }

    fn tuple_attr(kind: u16, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        nest(
            kind,
            &[
                nest(
                    CTA_TUPLE_IP,
                    &[attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)],
                ),
                nest(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[6]),
                        attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    #[test]
    fn new_connection_reads_tuples_and_mark() {
        let attrs = [
            tuple_attr(CTA_TUPLE_ORIG, [10, 244, 0, 5], [10, 96, 0, 20], 40000, 80),
            tuple_attr(
                CTA_TUPLE_REPLY,
                [10, 244, 1, 3],
                [10, 244, 0, 5],
                8080,
                40000,
            ),
            attr(CTA_MARK, &0x0003_0002u32.to_be_bytes()),
        ]
        .concat();
        let ev = parse_conntrack(&msg(0x0100, 2, &attrs)).unwrap().unwrap();
        assert_eq!(ev.proto, 6);
        assert_eq!(ev.original.src, "10.244.0.5:40000".parse().unwrap());
        assert_eq!(ev.original.dst, "10.96.0.20:80".parse().unwrap());
        assert_eq!(ev.reply.src, "10.244.1.3:8080".parse().unwrap());
        assert_eq!(ev.mark, 0x0003_0002);
    }

    #[test]
    fn other_messages_are_not_events() {
        assert_eq!(parse_conntrack(&msg(0x0102, 2, &[])), Ok(None));
        assert_eq!(parse_nflog(&msg(0x0401, 2, &[])), Ok(None));
    }

    #[test]
    fn a_conntrack_event_without_a_reply_tuple_says_so() {
        let attrs = tuple_attr(CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        let err = parse_conntrack(&msg(0x0100, 2, &attrs)).unwrap_err();
        assert_eq!(err.to_string(), "conntrack event without a reply tuple");
    }

    fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn logged_packet_reads_prefix_and_headers() {
        let attrs = [
            attr(NFULA_PACKET_HDR, &[0x08, 0x00, 2, 0]),
            attr(NFULA_PREFIX, b"weft-policy:deny-ingress:shop/db:\0"),
            attr(NFULA_IFINDEX_INDEV, &7u32.to_be_bytes()),
            attr(NFULA_SEQ, &41u32.to_be_bytes()),
            attr(
                NFULA_PAYLOAD,
                &ipv4_tcp([10, 244, 0, 5], [10, 244, 1, 3], 40001, 5432),
            ),
        ]
        .concat();
        let p = parse_nflog(&msg(0x0400, 2, &attrs)).unwrap().unwrap();
        assert_eq!(p.prefix, "weft-policy:deny-ingress:shop/db:");
        assert_eq!(p.hook, 2);
        assert_eq!(p.indev, Some(7));
        assert_eq!(p.seq, Some(41));
        assert_eq!(p.packet.src, "10.244.0.5".parse::<IpAddr>().unwrap());
        assert_eq!((p.packet.sport, p.packet.dport), (40001, 5432));
    }

    #[test]
    fn later_fragments_and_short_packets_have_no_ports() {
        let mut p = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 5, 6);
        p[6] = 0x00;
        p[7] = 0x10; // fragment offset 16
        assert_eq!(packet_headers(&p).unwrap().dport, 0);
        let p = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 5, 6);
        assert_eq!(packet_headers(&p[..22]).unwrap().dport, 0);
        assert!(packet_headers(&p[..10]).is_err());
        assert!(packet_headers(&[0x70]).is_err());
    }

    #[test]
    fn the_bind_request_is_a_well_formed_config_message() {
        let m = config_message(100, 1, &attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]));
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0401);
        assert_eq!(&m[18..20], &100u16.to_be_bytes());
        assert_eq!(messages(&m).len(), 1);
    }
}
