//! The connection-tracking table over ctnetlink (`NETLINK_NETFILTER`,
//! subsystem `CTNETLINK`), in the calling thread's network namespace: list
//! the tracked UDP flows of both IP families, and delete one flow by its
//! original tuple. The proxy uses it so UDP clients (DNS above all) never
//! keep talking to a backend that no longer serves.
//!
//! Messages come from `netlink-packet-netfilter` (rust-netlink, the same
//! family as `netlink-packet-route`), which types ctnetlink's tuples; only
//! the dump filter (`CTA_FILTER`, Linux 5.9+) and the zone are written here
//! as raw attributes, since that crate does not type them.
//!
//! A dump asks the kernel to send UDP entries only (`CTA_FILTER` on the
//! protocol number), one family at a time — the kernel refuses a tuple
//! filter without a family — and filters again here: kernels before 5.9
//! ignore the filter and send everything.
//!
//! ctnetlink is `nf_conntrack_netlink` (`CONFIG_NF_CT_NETLINK`). When it is
//! a module the kernel loads it on first use; when it cannot, requests fail
//! with [`Error::Unavailable`], which says so (the kernel's own answer is
//! `EPROTONOSUPPORT` from `socket` without nfnetlink, and `EINVAL`,
//! `EOPNOTSUPP` or `ENOENT` to a request without the ctnetlink subsystem).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    DefaultNla, Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLA_F_NESTED,
    NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple as CtTuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NlAddr};

use crate::Netns;

/// IANA protocol number of UDP (`IPPROTO_UDP`).
pub const IPPROTO_UDP: u8 = 17;

// Message and attribute numbers for what is written raw
// (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const IPCTNL_MSG_CT_GET: u8 = 1;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// `CTA_FILTER_F_CTA_PROTO_NUM` (net/netfilter/nf_internals.h; ABI).
const CTA_FILTER_F_PROTO_NUM: u32 = 1 << 3;

const RECV_BUF: usize = 64 * 1024;

// errno values this module branches on (no direct libc dependency).
const ENOENT: i32 = 2;
const EINVAL: i32 = 22;
const EPROTONOSUPPORT: i32 = 93;
const EOPNOTSUPP: i32 = 95;

/// One direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A tracked flow: what the first packet looked like (`original`) and what
/// the answers look like (`reply`; after DNAT its source is the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// L4 protocol number ([`IPPROTO_UDP`]).
    pub proto: u8,
    pub original: Tuple,
    pub reply: Tuple,
    /// Conntrack zone (0 unless something sets `ct zone`); needed to delete.
    pub zone: u16,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            IPPROTO_UDP => "udp".to_string(),
            6 => "tcp".to_string(),
            p => format!("proto {p}"),
        };
        write!(
            f,
            "{proto} {} -> {} (reply {} -> {})",
            self.original.src, self.original.dst, self.reply.src, self.reply.dst
        )?;
        if self.zone != 0 {
            write!(f, " zone {}", self.zone)?;
        }
        Ok(())
    }
}

/// Errors of conntrack requests; `op` names the request and its object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{op}: conntrack over netlink (ctnetlink) is not available in this kernel: \
         it needs nf_conntrack_netlink (CONFIG_NF_CT_NETLINK; `modprobe nf_conntrack_netlink`): \
         {source}"
    )]
    Unavailable {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: kernel answered: {source}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: cannot decode ctnetlink message: {detail}")]
    Decode { op: String, detail: String },
    #[error("delete conntrack entry {flow}: {why}")]
    Invalid { flow: String, why: &'static str },
    #[error(transparent)]
    Netns(#[from] crate::Error),
}

impl Error {
    /// The errno the kernel (or a syscall) answered, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Unavailable { source, .. }
            | Error::Io { source, .. }
            | Error::Kernel { source, .. } => source.raw_os_error(),
            Error::Netns(e) => e.errno(),
            Error::Decode { .. } | Error::Invalid { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every tracked UDP flow (IPv4 and IPv6) of the calling thread's namespace.
pub fn udp_flows() -> Result<Vec<Flow>> {
    Conntrack::new()?.udp_flows()
}

/// Deletes `flow` (found by its original tuple and zone) in the calling
/// thread's namespace. A flow that is already gone is not an error.
pub fn delete(flow: &Flow) -> Result<()> {
    Conntrack::new()?.delete(flow).map(drop)
}

/// One ctnetlink socket bound to the namespace it was opened in; reuse it
/// for many requests (one socket per delete would be wasteful).
pub struct Conntrack {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

impl Conntrack {
    /// A socket in the calling thread's namespace.
    pub fn new() -> Result<Self> {
        let op = "open ctnetlink socket";
        let socket = Socket::new(NETLINK_NETFILTER).map_err(|e| match e.raw_os_error() {
            // No nfnetlink at all in this kernel.
            Some(EPROTONOSUPPORT) => Error::Unavailable {
                op: op.into(),
                source: e,
            },
            _ => Error::Io {
                op: op.into(),
                source: e,
            },
        })?;
        let mut socket = socket;
        socket.bind_auto().map_err(|e| Error::Io {
            op: "bind ctnetlink socket".into(),
            source: e,
        })?;
        socket.connect(&NlAddr::new(0, 0)).map_err(|e| Error::Io {
            op: "connect ctnetlink socket".into(),
            source: e,
        })?;
        // Extended acks carry the kernel's reason for a refusal, when it has one.
        let _ = socket.set_ext_ack(true);
        Ok(Conntrack {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// A socket opened on a thread inside `ns`, then usable from anywhere.
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        ns.run(Conntrack::new)?
    }

    /// Every tracked UDP flow, IPv4 first, then IPv6.
    pub fn udp_flows(&mut self) -> Result<Vec<Flow>> {
        let mut flows = Vec::new();
        for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
            flows.extend(self.dump_udp(family)?);
        }
        Ok(flows)
    }

    /// Deletes `flow` by its original tuple and zone. `Ok(true)` when it was
    /// deleted, `Ok(false)` when there was no such entry (any more).
    pub fn delete(&mut self, flow: &Flow) -> Result<bool> {
        let family = match (flow.original.src.ip(), flow.original.dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => NetfilterProtoFamily::IPv4,
            (IpAddr::V6(_), IpAddr::V6(_)) => NetfilterProtoFamily::IPv6,
            _ => {
                return Err(Error::Invalid {
                    flow: flow.to_string(),
                    why: "the original tuple mixes IPv4 and IPv6 addresses",
                })
            }
        };
        let mut attrs = vec![ConntrackAttribute::CtaTupleOrig(tuple_attrs(
            flow.proto,
            &flow.original,
        ))];
        if flow.zone != 0 {
            attrs.push(ConntrackAttribute::Other(DefaultNla::new(
                CTA_ZONE,
                flow.zone.to_be_bytes().to_vec(),
            )));
        }
        let op = || format!("delete conntrack entry {flow}");
        match self.request(&op, family, ConntrackMessage::Delete(attrs), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One family's UDP entries: filtered in the kernel where it can, and
    /// here in any case.
    fn dump_udp(&mut self, family: NetfilterProtoFamily) -> Result<Vec<Flow>> {
        let name = match family {
            NetfilterProtoFamily::IPv6 => "IPv6",
            _ => "IPv4",
        };
        let op = || format!("list {name} UDP conntrack entries");
        let answers = match self.request(&op, family, udp_filter(), NLM_F_DUMP) {
            // A kernel that refuses the filter (none known; kernels before
            // 5.9 ignore it): dump the family unfiltered rather than not at all.
            Err(e) if matches!(e.errno(), Some(EINVAL | EOPNOTSUPP)) => {
                match self.request(&op, family, ConntrackMessage::Get(Vec::new()), NLM_F_DUMP) {
                    // A plain dump of one family is never invalid: nfnetlink
                    // answers EINVAL when the ctnetlink subsystem is missing
                    // (not built, or its module could not be loaded).
                    Err(Error::Kernel { op, source })
                        if matches!(source.raw_os_error(), Some(EINVAL | ENOENT)) =>
                    {
                        return Err(Error::Unavailable { op, source });
                    }
                    Err(other) => return Err(other),
                    Ok(answers) => {
                        tracing::warn!(error = %e, "ctnetlink refused the UDP dump filter; dumped {name} unfiltered");
                        answers
                    }
                }
            }
            Err(Error::Kernel { op, source }) if source.raw_os_error() == Some(ENOENT) => {
                return Err(Error::Unavailable { op, source });
            }
            other => other?,
        };
        let mut flows = Vec::new();
        let mut unreadable = 0usize;
        for m in answers {
            let attrs = match m {
                ConntrackMessage::New(a) | ConntrackMessage::Get(a) => a,
                _ => continue,
            };
            match flow_from(&attrs) {
                Some(f) if f.proto == IPPROTO_UDP => flows.push(f),
                Some(_) => {}
                None => unreadable += 1,
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                family = name,
                entries = unreadable,
                "conntrack entries without complete tuples were left out"
            );
        }
        Ok(flows)
    }

    /// Sends one request and collects the conntrack messages answered until
    /// the ACK or DONE.
    fn request(
        &mut self,
        op: &dyn Fn() -> String,
        family: NetfilterProtoFamily,
        message: ConntrackMessage,
        flags: u16,
    ) -> Result<Vec<ConntrackMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let body = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message);
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(body));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| Error::Io {
            op: op(),
            source: e,
        })?;

        let mut answers = Vec::new();
        loop {
            self.recv_buf.clear();
            let n = self
                .socket
                .recv(&mut self.recv_buf, 0)
                .map_err(|e| Error::Io {
                    op: op(),
                    source: e,
                })?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.recv_buf[offset..n];
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).map_err(|e| {
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
                            Some(code) => {
                                let source = io::Error::from_raw_os_error(-code.get());
                                Err(match -code.get() {
                                    // The subsystem is not registered and
                                    // could not be loaded.
                                    EOPNOTSUPP | EPROTONOSUPPORT => {
                                        Error::Unavailable { op: op(), source }
                                    }
                                    _ => Error::Kernel { op: op(), source },
                                })
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(ct),
                        ..
                    }) => answers.push(ct),
                    _ => {}
                }
            }
        }
    }
}

/// A dump request of UDP entries: `CTA_FILTER { ORIG_FLAGS = PROTO_NUM }`
/// and `CTA_TUPLE_ORIG { PROTO { NUM = udp } }`. Written as raw attributes:
/// netlink-packet-netfilter 0.4 drops `NLA_F_NESTED` from an `Other`
/// attribute, and the kernel parses `CTA_FILTER` strictly (no flag, `EINVAL`).
fn udp_filter() -> ConntrackMessage {
    let flags = DefaultNla::new(
        CTA_FILTER_ORIG_FLAGS,
        CTA_FILTER_F_PROTO_NUM.to_ne_bytes().to_vec(),
    );
    let tuple = [CtTuple::Proto(vec![ProtoTuple::Protocol(Protocol::Udp)])];
    ConntrackMessage::Other {
        message_type: IPCTNL_MSG_CT_GET,
        attributes: vec![
            DefaultNla::new(CTA_FILTER | NLA_F_NESTED, emitted(&[flags])),
            DefaultNla::new(CTA_TUPLE_ORIG | NLA_F_NESTED, emitted(&tuple)),
        ],
    }
}

/// The wire bytes of `nlas`, one after the other.
fn emitted<T: Nla>(nlas: &[T]) -> Vec<u8> {
    let mut buf = vec![0u8; nlas.buffer_len()];
    nlas.emit(&mut buf);
    buf
}

/// The nested `CTA_TUPLE_*` value of `t`.
fn tuple_attrs(proto: u8, t: &Tuple) -> Vec<CtTuple> {
    vec![
        CtTuple::Ip(vec![
            IPTuple::SourceAddress(t.src.ip()),
            IPTuple::DestinationAddress(t.dst.ip()),
        ]),
        CtTuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::from(proto)),
            ProtoTuple::SourcePort(t.src.port()),
            ProtoTuple::DestinationPort(t.dst.port()),
        ]),
    ]
}

/// A flow from one dumped entry; `None` without both complete tuples
/// (protocols without ports, e.g. ICMP, have none).
fn flow_from(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let mut original = None;
    let mut reply = None;
    let mut zone = 0;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => original = tuple_from(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple_from(t),
            ConntrackAttribute::Other(nla) if nla_kind(nla) == CTA_ZONE => {
                zone = nla_u16_be(nla).unwrap_or(0);
            }
            _ => {}
        }
    }
    let ((proto, original), (_, reply)) = (original?, reply?);
    Some(Flow {
        proto,
        original,
        reply,
        zone,
    })
}

fn tuple_from(parts: &[CtTuple]) -> Option<(u8, Tuple)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for p in parts {
        match p {
            CtTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            CtTuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(n) => proto = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(n) => sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto?,
        Tuple {
            src: SocketAddr::new(src?, sport?),
            dst: SocketAddr::new(dst?, dport?),
        },
    ))
}

/// The attribute type without the nested / byte-order flags.
fn nla_kind(nla: &DefaultNla) -> u16 {
    nla.kind() & NLA_TYPE_MASK
}

fn nla_u16_be(nla: &DefaultNla) -> Option<u16> {
    let mut value = vec![0u8; nla.value_len()];
    nla.emit_value(&mut value);
    Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sample() -> Flow {
        Flow {
            proto: IPPROTO_UDP,
            original: Tuple {
                src: addr("10.244.0.3:40000"),
                dst: addr("10.96.0.10:53"),
            },
            reply: Tuple {
                src: addr("10.244.1.7:5353"),
                dst: addr("10.244.0.3:40000"),
            },
            zone: 7,
        }
    }

    /// The attributes a dump answer carries for `f`.
    fn answer(f: &Flow) -> Vec<ConntrackAttribute> {
        vec![
            ConntrackAttribute::CtaTupleOrig(tuple_attrs(f.proto, &f.original)),
            ConntrackAttribute::CtaTupleReply(tuple_attrs(f.proto, &f.reply)),
            ConntrackAttribute::CtaTimeout(30),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, f.zone.to_be_bytes().to_vec())),
        ]
    }

    #[test]
    fn a_dumped_entry_reads_back_as_the_flow_it_describes() {
        let f = sample();
        assert_eq!(flow_from(&answer(&f)), Some(f));
    }

    #[test]
    fn an_entry_without_ports_is_not_a_flow() {
        let icmp = vec![CtTuple::Ip(vec![
            IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
            IPTuple::DestinationAddress("10.0.0.2".parse().unwrap()),
        ])];
        let attrs = vec![
            ConntrackAttribute::CtaTupleOrig(icmp.clone()),
            ConntrackAttribute::CtaTupleReply(icmp),
        ];
        assert_eq!(flow_from(&attrs), None);
    }

    #[test]
    fn the_udp_filter_is_marked_nested() {
        let ConntrackMessage::Other { attributes, .. } = udp_filter() else {
            panic!("the filter is written raw");
        };
        let buf = emitted(&attributes);
        // CTA_FILTER: len 12, type 25 | NLA_F_NESTED; inside ORIG_FLAGS.
        assert_eq!(&buf[..4], &[12, 0, 25, 0x80]);
        assert_eq!(&buf[4..8], &[8, 0, 1, 0]);
        assert_eq!(&buf[8..12], &CTA_FILTER_F_PROTO_NUM.to_ne_bytes());
        // CTA_TUPLE_ORIG | NLA_F_NESTED { PROTO | NLA_F_NESTED { NUM = 17 } }.
        assert_eq!(&buf[12..20], &[16, 0, 1, 0x80, 12, 0, 2, 0x80]);
        assert_eq!(&buf[20..25], &[5, 0, 1, 0, IPPROTO_UDP]);
    }

    #[test]
    fn the_kernel_accepts_the_udp_dump_filter() {
        let test = "the_kernel_accepts_the_udp_dump_filter";
        if !crate::testns::root_or_skip(test) {
            return;
        }
        let ns = crate::testns::TestNs::new("ctfilter");
        let mut ct = Conntrack::in_netns(&ns.open()).unwrap();
        for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
            let op = || format!("filtered dump {family:?}");
            ct.request(&op, family, udp_filter(), NLM_F_DUMP).unwrap();
        }
    }

    #[test]
    fn display_names_protocol_tuples_and_zone() {
        assert_eq!(
            sample().to_string(),
            "udp 10.244.0.3:40000 -> 10.96.0.10:53 (reply 10.244.1.7:5353 -> 10.244.0.3:40000) zone 7"
        );
    }
}
