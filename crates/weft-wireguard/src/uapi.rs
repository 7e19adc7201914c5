//! WireGuard's cross-platform configuration protocol (the "UAPI" of
//! <https://www.wireguard.com/xplatform/>): `get=1` and `set=1` requests of
//! `key=value` lines ending in an empty line, answered with `errno=N`. Both
//! userspace implementations (wireguard-go, boringtun, GotaTun) speak it,
//! so one writer configures any.
//!
//! [`Config`] is what a device should be; [`DeviceState`] what `get=1` says
//! it is; [`changes`] the `set=1` request that turns one into the other by
//! difference — peers that are unchanged are not touched, so their sessions
//! live on. A changed peer is removed and added again in the same request
//! (boringtun could not modify a peer in place: it panicked; GotaTun itself
//! replaces the peer on any change), which costs that peer one handshake.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::keys::{PrivateKey, PublicKey, KEY_LEN};

/// What a WireGuard device should be.
#[derive(Debug, Clone)]
pub struct Config {
    pub private_key: PrivateKey,
    pub listen_port: u16,
    pub peers: Vec<Peer>,
}

/// One peer: the packets for `allowed_ips` go to it, and only packets from
/// those addresses are accepted from it (cryptokey routing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
}

/// A device as `get=1` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Set when the implementation says it (boringtun: `own_public_key`;
    /// GotaTun and wireguard-go give `private_key`, from which it is
    /// derived).
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub peer: Peer,
    /// `last_handshake_time_sec`/`_nsec` as given: the protocol says since
    /// the Unix epoch (wireguard-go, GotaTun), boringtun gave the time
    /// elapsed since the handshake; the caller knows which it talks to.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UapiError {
    #[error("the WireGuard device refused the request: errno {0} ({1})")]
    Errno(i32, String),
    #[error("the WireGuard device answered a malformed line {line:?}: {why}")]
    Malformed { line: String, why: String },
    #[error("the WireGuard device's answer ended without errno=")]
    Truncated,
}

/// What must change to turn a device into a [`Config`], in the structured
/// form both writers express: [`Diff::to_uapi`] (userspace devices) and the
/// kernel's netlink request (`kernel`).
#[derive(Debug, Clone)]
pub struct Diff {
    /// Set when the device's key differs.
    pub private_key: Option<PrivateKey>,
    /// Set when the device's port differs.
    pub listen_port: Option<u16>,
    /// Peers the device has and should not.
    pub removed: Vec<PublicKey>,
    /// Peers to add or to change, by public key.
    pub peers: Vec<PeerChange>,
}

/// A peer to configure: new, or (`existed`) one whose endpoint, keepalive
/// or allowed IPs differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChange {
    pub peer: Peer,
    pub existed: bool,
}

/// The difference between `current` (which may be empty, for a new device)
/// and `want`; `None` when nothing differs. Peers are in public-key order.
pub fn diff(current: &DeviceState, want: &Config) -> Option<Diff> {
    let have: BTreeMap<PublicKey, &Peer> = current
        .peers
        .iter()
        .map(|p| (p.peer.public_key, &p.peer))
        .collect();
    let wanted: BTreeMap<PublicKey, &Peer> = want.peers.iter().map(|p| (p.public_key, p)).collect();
    let d = Diff {
        private_key: (current.public_key != Some(want.private_key.public()))
            .then(|| want.private_key.clone()),
        listen_port: (current.listen_port != Some(want.listen_port)).then_some(want.listen_port),
        removed: have
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect(),
        peers: wanted
            .iter()
            .filter_map(|(key, peer)| match have.get(key) {
                Some(old) if same(old, peer) => None,
                old => Some(PeerChange {
                    peer: (*peer).clone(),
                    existed: old.is_some(),
                }),
            })
            .collect(),
    };
    let empty = d.private_key.is_none()
        && d.listen_port.is_none()
        && d.removed.is_empty()
        && d.peers.is_empty();
    (!empty).then_some(d)
}

impl Diff {
    /// The `set=1` request. A changed peer is removed and added again in
    /// the same request (see the module's doc).
    pub fn to_uapi(&self) -> String {
        let mut out = String::from("set=1\n");
        if let Some(k) = &self.private_key {
            let _ = writeln!(out, "private_key={}", k.to_hex());
        }
        if let Some(port) = self.listen_port {
            let _ = writeln!(out, "listen_port={port}");
        }
        for key in &self.removed {
            let _ = writeln!(out, "public_key={}\nremove=true", key.to_hex());
        }
        for PeerChange { peer, existed } in &self.peers {
            let key = peer.public_key.to_hex();
            if *existed {
                let _ = writeln!(out, "public_key={key}\nremove=true");
            }
            let _ = writeln!(out, "public_key={key}");
            if let Some(e) = peer.endpoint {
                let _ = writeln!(out, "endpoint={e}");
            }
            if let Some(k) = peer.persistent_keepalive {
                let _ = writeln!(out, "persistent_keepalive_interval={k}");
            }
            let _ = writeln!(out, "replace_allowed_ips=true");
            for ip in &peer.allowed_ips {
                let _ = writeln!(out, "allowed_ip={ip}");
            }
        }
        out.push('\n');
        out
    }
}

/// The `set=1` request that makes a device configured as `current` (which
/// may be empty, for a new device) into `want`; `None` when nothing differs.
pub fn changes(current: &DeviceState, want: &Config) -> Option<String> {
    diff(current, want).map(|d| d.to_uapi())
}

/// Peers are the same when what the device keeps of them is: endpoint,
/// keepalive, and the allowed IPs as a set.
fn same(a: &Peer, b: &Peer) -> bool {
    let set = |p: &Peer| {
        let mut v: Vec<IpNet> = p.allowed_ips.iter().map(|n| n.trunc()).collect();
        v.sort();
        v.dedup();
        v
    };
    a.endpoint == b.endpoint
        && a.persistent_keepalive.unwrap_or(0) == b.persistent_keepalive.unwrap_or(0)
        && set(a) == set(b)
}

/// Checks the answer to a `set=1` request.
pub fn parse_set_answer(text: &str) -> Result<(), UapiError> {
    parse_get_answer(text).map(|_| ())
}

/// Parses the answer to `get=1` (its `errno=` line included).
pub fn parse_get_answer(text: &str) -> Result<DeviceState, UapiError> {
    let mut state = DeviceState::default();
    let mut peer: Option<PeerState> = None;
    let mut handshake = (None::<u64>, None::<u32>);
    let flush = |peer: &mut Option<PeerState>,
                 handshake: &mut (Option<u64>, Option<u32>),
                 state: &mut DeviceState| {
        if let Some(mut p) = peer.take() {
            p.last_handshake = match *handshake {
                (Some(s), n) => Some(Duration::new(s, n.unwrap_or(0))),
                _ => None,
            };
            // Both implementations print 0/0 for "never".
            if p.last_handshake == Some(Duration::ZERO) {
                p.last_handshake = None;
            }
            state.peers.push(p);
        }
        *handshake = (None, None);
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let malformed = |why: String| UapiError::Malformed {
            line: line.to_string(),
            why,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| malformed("no '='".into()))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| malformed(e.to_string()));
        match key {
            "errno" => {
                flush(&mut peer, &mut handshake, &mut state);
                let n: i32 = value
                    .parse()
                    .map_err(|_| malformed("not a number".into()))?;
                if n != 0 {
                    let what = nix::errno::Errno::from_raw(n).desc().to_string();
                    return Err(UapiError::Errno(n, what));
                }
                return Ok(state);
            }
            "public_key" => {
                flush(&mut peer, &mut handshake, &mut state);
                peer = Some(PeerState {
                    peer: Peer {
                        public_key: PublicKey(hex_key(value).map_err(malformed)?),
                        endpoint: None,
                        allowed_ips: Vec::new(),
                        persistent_keepalive: None,
                    },
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
            }
            _ if peer.is_some() => {
                let p = peer.as_mut().expect("checked");
                match key {
                    "endpoint" => {
                        p.peer.endpoint =
                            Some(value.parse().map_err(|_| malformed("not ip:port".into()))?)
                    }
                    "allowed_ip" => p
                        .peer
                        .allowed_ips
                        .push(value.parse().map_err(|_| malformed("not a CIDR".into()))?),
                    "persistent_keepalive_interval" => {
                        let k = num(value)?;
                        p.peer.persistent_keepalive = (k != 0)
                            .then(|| u16::try_from(k).map_err(|e| malformed(e.to_string())))
                            .transpose()?;
                    }
                    "last_handshake_time_sec" => handshake.0 = Some(num(value)?),
                    "last_handshake_time_nsec" => {
                        handshake.1 = Some(
                            u32::try_from(num(value)?)
                                .ok()
                                .filter(|n| *n < 1_000_000_000)
                                .ok_or_else(|| malformed("not below 10^9".into()))?,
                        )
                    }
                    "rx_bytes" => p.rx_bytes = num(value)?,
                    "tx_bytes" => p.tx_bytes = num(value)?,
                    // preshared_key, protocol_version, …: not kept.
                    _ => {}
                }
            }
            "own_public_key" => {
                state.public_key = Some(PublicKey(hex_key(value).map_err(malformed)?))
            }
            "private_key" => {
                let bytes = hex_key(value).map_err(malformed)?;
                state.public_key = Some(PrivateKey::from_bytes(bytes).public());
            }
            "listen_port" => {
                state.listen_port =
                    Some(u16::try_from(num(value)?).map_err(|e| malformed(e.to_string()))?)
            }
            _ => {}
        }
    }
    Err(UapiError::Truncated)
}

fn hex_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    if text.len() != 2 * KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("a key is {} hex digits", 2 * KEY_LEN));
    }
    let mut out = [0u8; KEY_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Keys and peers the unit tests of this crate build their devices from.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Peer;
    use crate::keys::PrivateKey;

    /// A fixed key: every byte `n`.
    pub fn key(n: u8) -> PrivateKey {
        PrivateKey::from_bytes([n; 32])
    }

    /// The peer with key `n` at `ip`:51820 routing `cidr`.
    pub fn peer(n: u8, ip: &str, cidr: &str) -> Peer {
        Peer {
            public_key: key(n).public(),
            endpoint: Some(format!("{ip}:51820").parse().unwrap()),
            allowed_ips: vec![cidr.parse().unwrap()],
            persistent_keepalive: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{key, peer};
    use super::*;

    fn state_of(c: &Config) -> DeviceState {
        DeviceState {
            public_key: Some(c.private_key.public()),
            listen_port: Some(c.listen_port),
            peers: c
                .peers
                .iter()
                .map(|p| PeerState {
                    peer: p.clone(),
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_device_gets_its_key_port_and_peers_in_one_request() {
        let want = Config {
            private_key: key(1),
            listen_port: 51820,
            peers: vec![peer(2, "192.168.1.11", "10.244.1.0/24")],
        };
        let text = changes(&DeviceState::default(), &want).unwrap();
        assert_eq!(
            text,
            format!(
                "set=1\nprivate_key={}\nlisten_port=51820\npublic_key={}\nendpoint=192.168.1.11:51820\n\
                 replace_allowed_ips=true\nallowed_ip=10.244.1.0/24\n\n",
                key(1).to_hex(),
                key(2).public().to_hex()
            )
        );
    }

    #[test]
    fn an_unchanged_device_needs_no_request_and_a_changed_peer_is_replaced_alone() {
        let mut want = Config {
            private_key: key(1),
            listen_port: 51820,
            peers: vec![
                peer(2, "192.168.1.11", "10.244.1.0/24"),
                peer(3, "192.168.1.12", "10.244.2.0/24"),
            ],
        };
        let current = state_of(&want);
        assert_eq!(changes(&current, &want), None);
        // Node 3 moved; node 4 joined; node 2 left.
        want.peers = vec![
            peer(3, "192.168.1.13", "10.244.2.0/24"),
            peer(4, "192.168.1.14", "10.244.3.0/24"),
        ];
        let text = changes(&current, &want).unwrap();
        let (k2, k3, k4) = (
            key(2).public().to_hex(),
            key(3).public().to_hex(),
            key(4).public().to_hex(),
        );
        assert_eq!(
            text,
            format!(
                "set=1\npublic_key={k2}\nremove=true\n\
                 public_key={k3}\nremove=true\npublic_key={k3}\nendpoint=192.168.1.13:51820\nreplace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n\
                 public_key={k4}\nendpoint=192.168.1.14:51820\nreplace_allowed_ips=true\nallowed_ip=10.244.3.0/24\n\n"
            )
        );
    }

    #[test]
    fn a_get_answer_is_read_into_peers_with_their_counters() {
        let k = key(2).public().to_hex();
        let text = format!(
            "own_public_key={}\nlisten_port=51820\npublic_key={k}\nendpoint=192.168.1.11:51820\n\
             allowed_ip=10.244.1.0/24\nlast_handshake_time_sec=3\nlast_handshake_time_nsec=5\n\
             rx_bytes=100\ntx_bytes=200\nerrno=0\n\n",
            key(1).public().to_hex()
        );
        let s = parse_get_answer(&text).unwrap();
        assert_eq!(s.public_key, Some(key(1).public()));
        assert_eq!(s.listen_port, Some(51820));
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.peers[0].peer, peer(2, "192.168.1.11", "10.244.1.0/24"));
        assert_eq!(s.peers[0].last_handshake, Some(Duration::new(3, 5)));
        assert_eq!((s.peers[0].rx_bytes, s.peers[0].tx_bytes), (100, 200));
    }

    #[test]
    fn errors_and_malformed_answers_are_named() {
        assert_eq!(
            parse_set_answer("errno=22\n\n"),
            Err(UapiError::Errno(22, "Invalid argument".into()))
        );
        assert_eq!(
            parse_set_answer("listen_port=1\n"),
            Err(UapiError::Truncated)
        );
        let e = parse_get_answer("public_key=zz\nerrno=0\n\n").unwrap_err();
        assert!(e.to_string().contains("public_key=zz"), "{e}");
    }
}
