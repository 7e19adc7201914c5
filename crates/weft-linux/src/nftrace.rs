//! nftables trace events: what the kernel reports, rule by rule, for a
//! packet marked with `meta nftrace set 1` (`NFT_MSG_TRACE` on the
//! `NFNLGRP_NFTRACE` multicast group of `NETLINK_NETFILTER`, the events
//! `nft monitor trace` prints). Tracing needs no kprobes: it is part of
//! nf_tables, so it works wherever weft's tables do — the ground `weft
//! trace` stands on (issue 16).
//!
//! [`parse`] reads one netlink message (pure); [`TraceSocket`] subscribes in
//! one network namespace and yields the events. The attributes are typed
//! here from `include/uapi/linux/netfilter/nf_tables.h` (`enum
//! nft_trace_attributes`): `netlink-packet-netfilter` leaves them untyped,
//! and its attribute parser (netlink-packet-core 0.9) panics on a
//! truncated attribute header — the fuzz target found it — so the framing
//! (nlmsghdr, nfgenmsg, attributes) is walked here too, with every length
//! checked.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::NLA_TYPE_MASK;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::{Error, Netns, Result};

/// The multicast group of trace events (`NFNLGRP_NFTRACE`).
pub const NFNLGRP_NFTRACE: u32 = 9;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE`.
const TRACE_MSG_TYPE: u16 = (10 << 8) | 17;
const NLMSG_HDRLEN: usize = 16;

// enum nft_trace_attributes
const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;
// enum nft_verdict_attributes
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// What a trace event reports (`enum nft_trace_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// The chain's policy decided (end of a base chain).
    Policy,
    /// Returned from a chain (end of a regular chain without verdict).
    Return,
    /// A rule matched.
    Rule,
    Other(u32),
}

/// A verdict (`NF_*` and `NFT_*` codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
    Stolen,
    Queue,
    Repeat,
    Stop,
    /// The rule matched and evaluation goes on with the next rule.
    Continue,
    Break,
    Jump(String),
    Goto(String),
    Return,
    Other(i32),
}

impl Verdict {
    fn from_code(code: i32, chain: Option<String>) -> Verdict {
        let chain = chain.unwrap_or_default();
        match code {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            2 => Verdict::Stolen,
            3 => Verdict::Queue,
            4 => Verdict::Repeat,
            5 => Verdict::Stop,
            -1 => Verdict::Continue,
            -2 => Verdict::Break,
            -3 => Verdict::Jump(chain),
            -4 => Verdict::Goto(chain),
            -5 => Verdict::Return,
            // NF_DROP with an errno in the upper bits (NF_DROP_ERR).
            c if c & 0xff == 0 && c != 0 => Verdict::Drop,
            c => Verdict::Other(c),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Drop => f.write_str("drop"),
            Verdict::Accept => f.write_str("accept"),
            Verdict::Stolen => f.write_str("stolen"),
            Verdict::Queue => f.write_str("queue"),
            Verdict::Repeat => f.write_str("repeat"),
            Verdict::Stop => f.write_str("stop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Break => f.write_str("break"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Return => f.write_str("return"),
            Verdict::Other(c) => write!(f, "verdict {c}"),
        }
    }
}

/// Addresses and ports of the traced packet, from the headers the event
/// carries (IPv4 or IPv6, then TCP, UDP or SCTP ports when present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    pub ports: Option<(u16, u16)>,
    /// TCP's flags byte (SYN 0x02, RST 0x04, ACK 0x10).
    pub tcp_flags: Option<u8>,
    /// The IP packet's length in bytes (headers included), from its header.
    pub len: u32,
}

/// One trace event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The same for every event of one packet's pass through one hook.
    pub id: u32,
    /// The nfgenmsg family (`NFPROTO_INET` 1, `IPV4` 2, `IPV6` 10…).
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub rule_handle: Option<u64>,
    pub kind: TraceKind,
    pub verdict: Option<Verdict>,
    /// The base chain's policy, for [`TraceKind::Policy`].
    pub policy: Option<Verdict>,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    pub mark: Option<u32>,
    /// The hook's protocol family (for tables of family inet: 2 or 10).
    pub nfproto: Option<u32>,
    pub network_header: Vec<u8>,
    pub transport_header: Vec<u8>,
}

impl TraceEvent {
    /// The packet, when the event carries its network header.
    pub fn packet(&self) -> Option<Packet> {
        let n = &self.network_header;
        let (src, dst, proto, header_len, len) = match n.first()? >> 4 {
            4 if n.len() >= 20 => {
                let ihl = usize::from(n[0] & 0x0f) * 4;
                let src = Ipv4Addr::new(n[12], n[13], n[14], n[15]);
                let dst = Ipv4Addr::new(n[16], n[17], n[18], n[19]);
                let len = u32::from(u16::from_be_bytes([n[2], n[3]]));
                (IpAddr::V4(src), IpAddr::V4(dst), n[9], ihl, len)
            }
            6 if n.len() >= 40 => {
                let a = |at: usize| -> Ipv6Addr {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&n[at..at + 16]);
                    Ipv6Addr::from(b)
                };
                let len = 40 + u32::from(u16::from_be_bytes([n[4], n[5]]));
                (IpAddr::V6(a(8)), IpAddr::V6(a(24)), n[6], 40, len)
            }
            _ => return None,
        };
        // The transport header comes separately; without it, from behind
        // the network header when the event carried both in one.
        let t: &[u8] = if self.transport_header.is_empty() {
            n.get(header_len..).unwrap_or(&[])
        } else {
            &self.transport_header
        };
        let ports = match proto {
            6 | 17 | 132 if t.len() >= 4 => Some((
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            )),
            _ => None,
        };
        let tcp_flags = (proto == 6).then(|| t.get(13).copied()).flatten();
        Some(Packet {
            src,
            dst,
            proto,
            ports,
            tcp_flags,
            len,
        })
    }
}

/// Why a message is not a trace event weft reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("not a netlink message: {0}")]
    Netlink(String),
    #[error("trace event without {0}")]
    Missing(&'static str),
    #[error("trace attribute {name}: {len} bytes, expected {expected}")]
    Length {
        name: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("trace attribute {0} is not UTF-8 text")]
    Text(&'static str),
}

fn fixed<const N: usize>(v: &[u8], name: &'static str) -> std::result::Result<[u8; N], TraceError> {
    v.try_into().map_err(|_| TraceError::Length {
        name,
        len: v.len(),
        expected: N,
    })
}

fn be32(v: &[u8], name: &'static str) -> std::result::Result<u32, TraceError> {
    Ok(u32::from_be_bytes(fixed::<4>(v, name)?))
}

fn text(v: &[u8], name: &'static str) -> std::result::Result<String, TraceError> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    String::from_utf8(v.to_vec()).map_err(|_| TraceError::Text(name))
}

/// Attributes nested in `v` (type without flags, value).
pub(crate) fn nested(v: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= v.len() {
        let len = usize::from(u16::from_ne_bytes([v[at], v[at + 1]]));
        let kind = u16::from_ne_bytes([v[at + 2], v[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > v.len() {
            break;
        }
        out.push((kind, v[at + 4..at + len].to_vec()));
        at += (len + 3) & !3;
    }
    out
}

fn verdict(v: &[u8]) -> std::result::Result<Verdict, TraceError> {
    let mut code = None;
    let mut chain = None;
    for (kind, val) in nested(v) {
        match kind {
            NFTA_VERDICT_CODE => code = Some(be32(&val, "verdict code")? as i32),
            NFTA_VERDICT_CHAIN => chain = Some(text(&val, "verdict chain")?),
            _ => {}
        }
    }
    Ok(Verdict::from_code(
        code.ok_or(TraceError::Missing("a verdict code"))?,
        chain,
    ))
}

/// The event of `family` with attributes `nlas` (type, value).
pub fn from_attributes(
    family: u8,
    nlas: &[(u16, Vec<u8>)],
) -> std::result::Result<TraceEvent, TraceError> {
    let mut e = TraceEvent {
        id: 0,
        family,
        table: String::new(),
        chain: String::new(),
        rule_handle: None,
        kind: TraceKind::Other(0),
        verdict: None,
        policy: None,
        iif: None,
        oif: None,
        mark: None,
        nfproto: None,
        network_header: Vec::new(),
        transport_header: Vec::new(),
    };
    let (mut id, mut kind) = (None, None);
    for (attr, v) in nlas {
        let v = v.clone();
        match attr & NLA_TYPE_MASK {
            NFTA_TRACE_TABLE => e.table = text(&v, "table")?,
            NFTA_TRACE_CHAIN => e.chain = text(&v, "chain")?,
            NFTA_TRACE_RULE_HANDLE => {
                e.rule_handle = Some(u64::from_be_bytes(fixed::<8>(&v, "rule handle")?))
            }
            NFTA_TRACE_TYPE => kind = Some(be32(&v, "type")?),
            NFTA_TRACE_VERDICT => e.verdict = Some(verdict(&v)?),
            NFTA_TRACE_ID => id = Some(be32(&v, "id")?),
            NFTA_TRACE_NETWORK_HEADER => e.network_header = v,
            NFTA_TRACE_TRANSPORT_HEADER => e.transport_header = v,
            NFTA_TRACE_IIF => e.iif = Some(be32(&v, "iif")?),
            NFTA_TRACE_OIF => e.oif = Some(be32(&v, "oif")?),
            NFTA_TRACE_MARK => e.mark = Some(be32(&v, "mark")?),
            NFTA_TRACE_NFPROTO => e.nfproto = Some(be32(&v, "nfproto")?),
            NFTA_TRACE_POLICY => {
                e.policy = Some(Verdict::from_code(be32(&v, "policy")? as i32, None))
            }
            _ => {}
        }
    }
    e.id = id.ok_or(TraceError::Missing("an id"))?;
    e.kind = match kind.ok_or(TraceError::Missing("a type"))? {
        1 => TraceKind::Policy,
        2 => TraceKind::Return,
        3 => TraceKind::Rule,
        other => TraceKind::Other(other),
    };
    if e.table.is_empty() {
        return Err(TraceError::Missing("a table"));
    }
    Ok(e)
}

/// Reads one netlink message: its trace event, `Ok(None)` for any other
/// message (errors, other nftables notifications).
pub fn parse(bytes: &[u8]) -> std::result::Result<Option<TraceEvent>, TraceError> {
    let (kind, body) = frame(bytes).map_err(TraceError::Netlink)?;
    if kind != TRACE_MSG_TYPE {
        return Ok(None);
    }
    // nfgenmsg: family, version, resource id.
    let Some(&family) = body.first() else {
        return Err(TraceError::Netlink("trace message without nfgenmsg".into()));
    };
    let attrs = body.get(4..).unwrap_or(&[]);
    from_attributes(family, &nested(attrs)).map(Some)
}

/// One netlink message: (message type, its body), every length checked;
/// the error says what did not fit.
pub(crate) fn frame(bytes: &[u8]) -> std::result::Result<(u16, &[u8]), String> {
    if bytes.len() < NLMSG_HDRLEN {
        return Err(format!(
            "{} bytes, shorter than a netlink header",
            bytes.len()
        ));
    }
    let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len < NLMSG_HDRLEN || len > bytes.len() {
        return Err(format!(
            "length {len} does not fit the {} bytes received",
            bytes.len()
        ));
    }
    let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
    Ok((kind, &bytes[NLMSG_HDRLEN..len]))
}

/// The lengths of the netlink messages in `buf` (one datagram may hold
/// several), each a slice to [`parse`].
pub fn messages(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push(&buf[at..at + len]);
        at += (len + 3) & !3;
    }
    out
}

/// A netlink socket subscribed to the trace events of one network
/// namespace (the one it was opened in).
pub struct TraceSocket {
    socket: Socket,
    buf: Vec<u8>,
}

impl TraceSocket {
    /// Subscribes in the calling thread's namespace (CAP_NET_ADMIN).
    pub fn open() -> Result<TraceSocket> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|e| Error::io("open a nfnetlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind the nfnetlink socket", e))?;
        socket
            .add_membership(NFNLGRP_NFTRACE)
            .map_err(|e| Error::io("join NFNLGRP_NFTRACE", e))?;
        // Bursts of events must not be lost to a small receive buffer.
        let _ = socket.set_rx_buf_sz(4 << 20);
        Ok(TraceSocket {
            socket,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// Subscribes in `ns` (the socket stays bound to it when used from
    /// any thread).
    pub fn open_in(ns: &Netns) -> Result<TraceSocket> {
        ns.run(TraceSocket::open)?
    }

    /// Non-blocking from now on ([`TraceSocket::recv`] answers
    /// `WouldBlock` when nothing waits).
    pub fn set_nonblocking(&self) -> Result<()> {
        self.socket
            .set_non_blocking(true)
            .map_err(|e| Error::io("make the trace socket non-blocking", e))
    }

    /// The events of the next datagram (messages that are not trace events
    /// are skipped; one that does not parse is an error naming why).
    pub fn recv(&mut self) -> io::Result<Vec<std::result::Result<TraceEvent, TraceError>>> {
        let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
        Ok(messages(&self.buf[..n])
            .into_iter()
            .filter_map(|m| parse(m).transpose())
            .collect())
    }
}

impl std::os::fd::AsFd for TraceSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Nla = (u16, Vec<u8>);

    fn nla(kind: u16, v: &[u8]) -> Nla {
        (kind, v.to_vec())
    }

    fn verdict_nla(code: i32, chain: Option<&str>) -> Nla {
        let mut v = Vec::new();
        let mut push = |kind: u16, val: &[u8]| {
            let len = 4 + val.len();
            v.extend_from_slice(&(len as u16).to_ne_bytes());
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(val);
            while v.len() % 4 != 0 {
                v.push(0);
            }
        };
        push(NFTA_VERDICT_CODE, &code.to_be_bytes());
        if let Some(c) = chain {
            let mut s = c.as_bytes().to_vec();
            s.push(0);
            push(NFTA_VERDICT_CHAIN, &s);
        }
        (NFTA_TRACE_VERDICT | 0x8000, v)
    }

    /// A UDP datagram 10.244.0.2:40000 → 10.96.0.10:53 (IPv4 + UDP headers).
    fn udp_headers() -> (Vec<u8>, Vec<u8>) {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[10, 244, 0, 2, 10, 96, 0, 10]);
        let udp = [0x9c, 0x40, 0, 53, 0, 8, 0, 0].to_vec();
        (ip, udp)
    }

    fn rule_event(verdict: Nla) -> Vec<Nla> {
        let (ip, udp) = udp_headers();
        vec![
            nla(NFTA_TRACE_TABLE, b"weft-proxy\0"),
            nla(NFTA_TRACE_CHAIN, b"services\0"),
            nla(NFTA_TRACE_RULE_HANDLE, &7u64.to_be_bytes()),
            nla(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
            verdict,
            nla(NFTA_TRACE_ID, &0xdead_beefu32.to_be_bytes()),
            nla(NFTA_TRACE_NETWORK_HEADER, &ip),
            nla(NFTA_TRACE_TRANSPORT_HEADER, &udp),
            nla(NFTA_TRACE_IIF, &3u32.to_be_bytes()),
            nla(NFTA_TRACE_MARK, &0x4000u32.to_be_bytes()),
            nla(NFTA_TRACE_NFPROTO, &2u32.to_be_bytes()),
        ]
    }

    #[test]
    fn a_rule_event_names_table_chain_handle_verdict_and_packet() {
        let e = from_attributes(1, &rule_event(verdict_nla(-3, Some("service-X")))).unwrap();
        assert_eq!(
            (e.table.as_str(), e.chain.as_str()),
            ("weft-proxy", "services")
        );
        assert_eq!(e.rule_handle, Some(7));
        assert_eq!(e.kind, TraceKind::Rule);
        assert_eq!(e.verdict, Some(Verdict::Jump("service-X".into())));
        assert_eq!(e.id, 0xdead_beef);
        assert_eq!((e.iif, e.mark, e.nfproto), (Some(3), Some(0x4000), Some(2)));
        let p = e.packet().unwrap();
        assert_eq!(p.src, "10.244.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!((p.proto, p.ports), (17, Some((40000, 53))));
    }

    #[test]
    fn verdict_codes_read_as_nftables_names_them() {
        for (code, want) in [
            (0, Verdict::Drop),
            (1, Verdict::Accept),
            (-1, Verdict::Continue),
            (-5, Verdict::Return),
            // NF_DROP_ERR(-EPERM): drop with an errno in the upper bits.
            (((-1i32) << 16), Verdict::Drop),
        ] {
            let e = from_attributes(1, &rule_event(verdict_nla(code, None))).unwrap();
            assert_eq!(e.verdict, Some(want), "code {code}");
        }
        assert_eq!(Verdict::Goto("c".into()).to_string(), "goto c");
    }

    #[test]
    fn an_event_without_id_or_type_is_refused_naming_what_is_missing() {
        let mut attrs = rule_event(verdict_nla(1, None));
        attrs.retain(|a| a.0 != NFTA_TRACE_ID);
        assert_eq!(
            from_attributes(1, &attrs),
            Err(TraceError::Missing("an id"))
        );
        let bad = vec![nla(NFTA_TRACE_TABLE, b"t\0"), nla(NFTA_TRACE_ID, &[1, 2])];
        assert!(matches!(
            from_attributes(1, &bad),
            Err(TraceError::Length {
                name: "id",
                len: 2,
                expected: 4
            })
        ));
    }

    /// The netlink message the kernel sends for `attrs`.
    fn message(attrs: &[Nla]) -> Vec<u8> {
        let mut body = vec![1u8, 0, 0, 0];
        for (kind, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&TRACE_MSG_TYPE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_whole_message_parses_and_other_messages_are_not_events() {
        let m = message(&rule_event(verdict_nla(0, None)));
        let e = parse(&m).unwrap().unwrap();
        assert_eq!((e.family, e.verdict), (1, Some(Verdict::Drop)));
        let mut other = m.clone();
        other[4] = 6; // NFT_MSG_NEWRULE
        assert_eq!(parse(&other), Ok(None));
        // A truncated attribute header (what crashed netlink-packet-core).
        let mut cut = m[..16 + 4 + 2].to_vec();
        cut[0..4].copy_from_slice(&22u32.to_ne_bytes());
        assert!(parse(&cut).is_err());
    }

    #[test]
    fn garbage_is_no_message_and_a_buffer_splits_into_its_messages() {
        assert!(parse(&[1, 2, 3]).is_err());
        let mut two = Vec::new();
        for _ in 0..2 {
            two.extend_from_slice(&20u32.to_ne_bytes());
            two.extend_from_slice(&[0u8; 16]);
        }
        assert_eq!(messages(&two).len(), 2);
        assert!(messages(&[0xff; 10]).is_empty());
    }
}
