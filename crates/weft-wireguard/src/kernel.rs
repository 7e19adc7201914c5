//! The kernel's WireGuard device, configured over generic netlink (family
//! `wireguard`, `WG_CMD_GET_DEVICE` / `WG_CMD_SET_DEVICE`, as `wg(8)`
//! does). The interface itself (`ip link add … type wireguard`) is made by
//! the caller over rtnetlink, as every other link; this module only talks
//! to the device.
//!
//! The messages are netlink-packet-wireguard's; the socket is a plain
//! synchronous netlink-sys one, like weft-linux's rtnetlink handle, opened
//! in the network namespace of the calling thread (the family resolves
//! device names in the socket's namespace).
//!
//! Changes go by [`Diff`](crate::uapi::Diff): unlike the userspace devices, the kernel
//! updates a peer in place (`WGPEER_F_REPLACE_ALLOWEDIPS`), so a changed
//! peer keeps its session. A configuration is sent in messages of at most
//! [`PEERS_PER_MESSAGE`] peers, as `wg` splits large ones; a `GET` dump may
//! split one peer's allowed IPs over several messages, which are merged.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr as NlAddr};

use crate::keys::PublicKey;
use crate::uapi::{Config, DeviceState, Diff, Peer, PeerState};

/// Peers per `SET_DEVICE` message (a peer with one allowed IP is ~100
/// bytes; this keeps a message well inside the default socket buffers).
pub const PEERS_PER_MESSAGE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("the kernel has no WireGuard (generic netlink family \"wireguard\" not found: the module is not loaded or not built)")]
    NoFamily,
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: the kernel's answer did not decode: {detail}")]
    Decode { op: String, detail: String },
}

impl KernelError {
    fn io(op: impl Into<String>, source: std::io::Error) -> KernelError {
        KernelError::Io {
            op: op.into(),
            source,
        }
    }
}

/// A kernel WireGuard interface, by name, and the socket that talks to it.
pub struct Kernel {
    name: String,
    socket: Socket,
    family: u16,
    seq: u32,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("family", &self.family)
            .finish()
    }
}

impl Kernel {
    /// Opens a generic netlink socket in the calling thread's namespace and
    /// resolves the `wireguard` family; [`KernelError::NoFamily`] when the
    /// kernel has none. The interface `name` is expected to exist.
    pub fn open(name: &str) -> Result<Kernel, KernelError> {
        let mut socket =
            Socket::new(NETLINK_GENERIC).map_err(|e| KernelError::io("open generic netlink", e))?;
        socket
            .bind_auto()
            .map_err(|e| KernelError::io("bind generic netlink", e))?;
        socket
            .connect(&NlAddr::new(0, 0))
            .map_err(|e| KernelError::io("connect generic netlink", e))?;
        let mut k = Kernel {
            name: name.to_string(),
            socket,
            family: 0,
            seq: 0,
        };
        let ask = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(
                WireguardMessage::family_name().to_string(),
            )],
        });
        let answers = match k.request(ask, NLM_F_ACK, "resolve the wireguard netlink family") {
            Err(KernelError::Io { source, .. })
                if source.raw_os_error() == Some(nix::libc::ENOENT) =>
            {
                return Err(KernelError::NoFamily)
            }
            other => other?,
        };
        k.family = answers
            .iter()
            .flat_map(|a| a.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(KernelError::NoFamily)?;
        Ok(k)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device as it is now; handshake times are ages (time since the
    /// handshake), as the userspace device gives them.
    pub fn state(&mut self) -> Result<DeviceState, KernelError> {
        let mut ask = GenlMessage::from_payload(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(self.name.clone())],
        });
        ask.set_resolved_family_id(self.family);
        let op = format!("read WireGuard device {}", self.name);
        let answers = self.request(ask, NLM_F_DUMP, &op)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(state_from(
            answers.iter().map(|a| a.payload.attributes.as_slice()),
            now,
        ))
    }

    /// Brings the device to `want` by difference; says whether anything
    /// was changed.
    pub fn configure(&mut self, want: &Config) -> Result<bool, KernelError> {
        let current = self.state()?;
        let Some(diff) = crate::uapi::diff(&current, want) else {
            return Ok(false);
        };
        for attributes in set_requests(&self.name, &diff) {
            let mut msg = GenlMessage::from_payload(WireguardMessage {
                cmd: WireguardCmd::SetDevice,
                attributes,
            });
            msg.set_resolved_family_id(self.family);
            let op = format!("configure WireGuard device {}", self.name);
            self.request(msg, NLM_F_ACK, &op)?;
        }
        Ok(true)
    }

    /// Sends one request and collects the answers up to the ACK or DONE.
    fn request<F>(
        &mut self,
        mut msg: GenlMessage<F>,
        flags: u16,
        op: &str,
    ) -> Result<Vec<GenlMessage<F>>, KernelError>
    where
        F: GenlFamily
            + netlink_packet_core::Emitable
            + netlink_packet_core::ParseableParametrized<[u8], GenlHeader>
            + std::fmt::Debug,
    {
        msg.finalize();
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| KernelError::io(op, e))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        let mut recv = Vec::with_capacity(64 * 1024);
        loop {
            recv.clear();
            let n = self
                .socket
                .recv(&mut recv, 0)
                .map_err(|e| KernelError::io(op, e))?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&recv[offset..n]).map_err(
                    |e| KernelError::Decode {
                        op: op.to_string(),
                        detail: e.to_string(),
                    },
                )?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(answers),
                            Some(code) => Err(KernelError::io(
                                op,
                                std::io::Error::from_raw_os_error(-code.get()),
                            )),
                        }
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
}

/// The attributes of the `SET_DEVICE` messages that apply `diff` to the
/// device `name` (pure): the key and port go with the first; removed peers
/// carry `REMOVE_ME`; every configured peer `REPLACE_ALLOWEDIPS`, its
/// endpoint and its keepalive (0 turns an old one off).
pub fn set_requests(name: &str, diff: &Diff) -> Vec<Vec<WireguardAttribute>> {
    let mut peers: Vec<WireguardPeer> = diff
        .removed
        .iter()
        .map(|k| {
            WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(k.0),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ])
        })
        .collect();
    peers.extend(diff.peers.iter().map(|c| peer_attributes(&c.peer)));
    let mut head = vec![WireguardAttribute::IfName(name.to_string())];
    if let Some(k) = &diff.private_key {
        head.push(WireguardAttribute::PrivateKey(k.to_bytes()));
    }
    if let Some(port) = diff.listen_port {
        head.push(WireguardAttribute::ListenPort(port));
    }
    let mut out = Vec::new();
    let mut chunks = peers.chunks(PEERS_PER_MESSAGE);
    let mut first = head;
    if let Some(chunk) = chunks.next() {
        first.push(WireguardAttribute::Peers(chunk.to_vec()));
    }
    out.push(first);
    for chunk in chunks {
        out.push(vec![
            WireguardAttribute::IfName(name.to_string()),
            WireguardAttribute::Peers(chunk.to_vec()),
        ]);
    }
    out
}

fn peer_attributes(p: &Peer) -> WireguardPeer {
    let mut attrs = vec![
        WireguardPeerAttribute::PublicKey(p.public_key.0),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
        WireguardPeerAttribute::PersistentKeepalive(p.persistent_keepalive.unwrap_or(0)),
    ];
    if let Some(e) = p.endpoint {
        attrs.push(WireguardPeerAttribute::Endpoint(e));
    }
    attrs.push(WireguardPeerAttribute::AllowedIps(
        p.allowed_ips
            .iter()
            .map(|net| {
                let family = match net {
                    IpNet::V4(_) => WireguardAddressFamily::Ipv4,
                    IpNet::V6(_) => WireguardAddressFamily::Ipv6,
                };
                WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(family),
                    WireguardAllowedIpAttr::IpAddr(net.network()),
                    WireguardAllowedIpAttr::Cidr(net.prefix_len()),
                ])
            })
            .collect(),
    ));
    WireguardPeer(attrs)
}

/// The device a `GET_DEVICE` dump describes (pure but for `now`, the time
/// since the epoch the kernel's handshake times are read against). A peer
/// that appears in several messages (its allowed IPs split) is merged.
pub fn state_from<'a>(
    messages: impl Iterator<Item = &'a [WireguardAttribute]>,
    now: Duration,
) -> DeviceState {
    let mut state = DeviceState::default();
    for attrs in messages {
        for a in attrs {
            match a {
                WireguardAttribute::PublicKey(k) => state.public_key = Some(PublicKey(*k)),
                WireguardAttribute::ListenPort(p) => state.listen_port = Some(*p),
                WireguardAttribute::Peers(peers) => {
                    for p in peers {
                        merge_peer(&mut state.peers, p, now);
                    }
                }
                _ => {}
            }
        }
    }
    state
}

fn merge_peer(into: &mut Vec<PeerState>, p: &WireguardPeer, now: Duration) {
    let Some(key) = p.0.iter().find_map(|a| match a {
        WireguardPeerAttribute::PublicKey(k) => Some(PublicKey(*k)),
        _ => None,
    }) else {
        return;
    };
    let at = match into.iter().position(|s| s.peer.public_key == key) {
        Some(i) => i,
        None => {
            into.push(PeerState {
                peer: Peer {
                    public_key: key,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    persistent_keepalive: None,
                },
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
            into.len() - 1
        }
    };
    let s = &mut into[at];
    for a in &p.0 {
        match a {
            WireguardPeerAttribute::Endpoint(e) => s.peer.endpoint = Some(unmapped(*e)),
            WireguardPeerAttribute::PersistentKeepalive(k) => {
                s.peer.persistent_keepalive = (*k != 0).then_some(*k)
            }
            // 0 (the epoch) is "never".
            WireguardPeerAttribute::LastHandshake(t) if t.seconds > 0 => {
                let at = Duration::new(
                    u64::try_from(t.seconds).unwrap_or(0),
                    u32::try_from(t.nano_seconds).unwrap_or(0).min(999_999_999),
                );
                s.last_handshake = Some(now.saturating_sub(at));
            }
            WireguardPeerAttribute::RxBytes(n) => s.rx_bytes = *n,
            WireguardPeerAttribute::TxBytes(n) => s.tx_bytes = *n,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let addr = ip.0.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::IpAddr(a) => Some(*a),
                        _ => None,
                    });
                    let cidr = ip.0.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::Cidr(c) => Some(*c),
                        _ => None,
                    });
                    if let Some(net) = addr.zip(cidr).and_then(|(a, c)| IpNet::new(a, c).ok()) {
                        s.peer.allowed_ips.push(net);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An IPv4 endpoint the kernel gave as IPv4-mapped IPv6, as IPv4.
fn unmapped(e: SocketAddr) -> SocketAddr {
    match e {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => e,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::uapi::fixtures::{key, peer};
    use crate::uapi::{diff, Config};
    use netlink_packet_wireguard::WireguardTimeSpec;

    /// What the kernel would report after applying `requests` to an empty
    /// device: the same attributes read back (no handshakes, no bytes).
    fn as_reported(requests: &[Vec<WireguardAttribute>]) -> DeviceState {
        let reported: Vec<Vec<WireguardAttribute>> = requests
            .iter()
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|a| match a {
                        WireguardAttribute::PrivateKey(k) => {
                            WireguardAttribute::PublicKey(PrivateKey::from_bytes(*k).public().0)
                        }
                        other => other.clone(),
                    })
                    .collect()
            })
            .collect();
        state_from(reported.iter().map(Vec::as_slice), Duration::ZERO)
    }

    #[test]
    fn a_new_device_is_one_message_with_key_port_and_every_peer_replacing_its_allowed_ips() {
        let want = Config {
            private_key: key(1),
            listen_port: 51820,
            peers: vec![
                peer(2, "192.168.1.11", "10.244.1.0/24"),
                peer(3, "192.168.1.12", "10.244.2.0/24"),
            ],
        };
        let d = diff(&DeviceState::default(), &want).unwrap();
        let requests = set_requests("weft.wg", &d);
        assert_eq!(requests.len(), 1);
        let m = &requests[0];
        assert_eq!(m[0], WireguardAttribute::IfName("weft.wg".into()));
        assert_eq!(m[1], WireguardAttribute::PrivateKey(key(1).to_bytes()));
        assert_eq!(m[2], WireguardAttribute::ListenPort(51820));
        let WireguardAttribute::Peers(peers) = &m[3] else {
            panic!("{m:?}")
        };
        assert_eq!(peers.len(), 2);
        assert!(peers[0].0.contains(&WireguardPeerAttribute::Flags(
            WireguardPeerFlags::ReplaceAllowedIps
        )));
        // Read back, the device is what was wanted: nothing left to change.
        let back = as_reported(&requests);
        assert!(diff(&back, &want).is_none(), "{back:?}");
    }

    #[test]
    fn a_left_peer_is_removed_and_a_moved_one_updated_in_place() {
        let mut want = Config {
            private_key: key(1),
            listen_port: 51820,
            peers: vec![
                peer(2, "192.168.1.11", "10.244.1.0/24"),
                peer(3, "192.168.1.12", "10.244.2.0/24"),
            ],
        };
        let current = as_reported(&set_requests(
            "weft.wg",
            &diff(&DeviceState::default(), &want).unwrap(),
        ));
        want.peers = vec![peer(3, "192.168.1.13", "10.244.2.0/24")];
        let requests = set_requests("weft.wg", &diff(&current, &want).unwrap());
        assert_eq!(
            requests,
            vec![vec![
                WireguardAttribute::IfName("weft.wg".into()),
                WireguardAttribute::Peers(vec![
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey(key(2).public().0),
                        WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
                    ]),
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey(key(3).public().0),
                        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                        WireguardPeerAttribute::PersistentKeepalive(0),
                        WireguardPeerAttribute::Endpoint("192.168.1.13:51820".parse().unwrap()),
                        WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                            WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                            WireguardAllowedIpAttr::IpAddr("10.244.2.0".parse().unwrap()),
                            WireguardAllowedIpAttr::Cidr(24),
                        ])]),
                    ]),
                ]),
            ]]
        );
    }

    #[test]
    fn many_peers_are_split_over_messages_and_only_the_first_carries_the_key() {
        let want = Config {
            private_key: key(1),
            listen_port: 51820,
            peers: (0..150u8)
                .map(|n| {
                    peer(
                        n.wrapping_add(10),
                        &format!("192.168.2.{n}"),
                        &format!("10.245.{n}.0/24"),
                    )
                })
                .collect(),
        };
        let requests = set_requests("weft.wg", &diff(&DeviceState::default(), &want).unwrap());
        assert_eq!(requests.len(), 3);
        let count = |m: &[WireguardAttribute]| {
            m.iter()
                .find_map(|a| match a {
                    WireguardAttribute::Peers(p) => Some(p.len()),
                    _ => None,
                })
                .unwrap_or(0)
        };
        assert_eq!(
            requests.iter().map(|m| count(m)).collect::<Vec<_>>(),
            [64, 64, 22]
        );
        assert!(requests[1..].iter().all(|m| m.len() == 2
            && !m
                .iter()
                .any(|a| matches!(a, WireguardAttribute::PrivateKey(_)))));
        assert!(diff(&as_reported(&requests), &want).is_none());
    }

    #[test]
    fn a_dump_is_read_with_handshake_ages_mapped_endpoints_and_split_peers_merged() {
        let k = key(2).public().0;
        let now = Duration::from_secs(1_000);
        let first = vec![
            WireguardAttribute::PublicKey(key(1).public().0),
            WireguardAttribute::ListenPort(51820),
            WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(k),
                WireguardPeerAttribute::Endpoint("[::ffff:192.168.1.11]:51820".parse().unwrap()),
                WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
                    seconds: 990,
                    nano_seconds: 0,
                }),
                WireguardPeerAttribute::RxBytes(100),
                WireguardPeerAttribute::TxBytes(200),
                WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                    WireguardAllowedIpAttr::IpAddr("10.244.1.0".parse().unwrap()),
                    WireguardAllowedIpAttr::Cidr(24),
                ])]),
            ])]),
        ];
        let second = vec![WireguardAttribute::Peers(vec![
            WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(k),
                WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                    WireguardAllowedIpAttr::IpAddr("10.250.0.0".parse().unwrap()),
                    WireguardAllowedIpAttr::Cidr(16),
                ])]),
            ]),
            WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(key(3).public().0),
                WireguardPeerAttribute::LastHandshake(WireguardTimeSpec::default()),
            ]),
        ])];
        let s = state_from([first.as_slice(), second.as_slice()].into_iter(), now);
        assert_eq!(s.public_key, Some(key(1).public()));
        assert_eq!(s.listen_port, Some(51820));
        assert_eq!(s.peers.len(), 2);
        let p = &s.peers[0];
        assert_eq!(p.peer.endpoint, Some("192.168.1.11:51820".parse().unwrap()));
        assert_eq!(p.last_handshake, Some(Duration::from_secs(10)));
        assert_eq!((p.rx_bytes, p.tx_bytes), (100, 200));
        assert_eq!(
            p.peer.allowed_ips,
            vec![
                "10.244.1.0/24".parse::<IpNet>().unwrap(),
                "10.250.0.0/16".parse().unwrap()
            ]
        );
        assert_eq!(s.peers[1].last_handshake, None, "0 is never");
    }
}
