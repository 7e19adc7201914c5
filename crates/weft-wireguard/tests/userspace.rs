//! The userspace device between two network namespaces joined by a veth:
//! pods' addresses reach each other through it, and what crosses the veth
//! is WireGuard (UDP 51820) — neither the payload nor the inner addresses.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};
use weft_wireguard::keys::PrivateKey;
use weft_wireguard::uapi::{Config, Peer};
use weft_wireguard::userspace::Userspace;

const MARKER: &str = "weft-wireguard-marker-7f3a";

/// One end; the device goes before its namespace (fields drop in order).
struct Side {
    dev: Userspace,
    ns: TestNs,
    key: PrivateKey,
    underlay: &'static str,
    inner: &'static str,
    cidr: &'static str,
}

fn side(role: &str, underlay: &'static str, inner: &'static str, cidr: &'static str) -> Side {
    let ns = TestNs::new(role);
    let dev = ns
        .run(|| Userspace::start("weft.wg", 1))
        .expect("start the device");
    Side {
        dev,
        ns,
        key: PrivateKey::generate().unwrap(),
        underlay,
        inner,
        cidr,
    }
}

type SideSpec = (&'static str, &'static str, &'static str, &'static str);

/// Two sides joined by a veth (the underlay, made inside a, its peer moved
/// into b), each device up with its inner address and a route to the other
/// side's CIDR; not configured yet.
fn pair(sa: SideSpec, sb: SideSpec) -> (Side, Side) {
    let a = side(sa.0, sa.1, sa.2, sa.3);
    let b = side(sb.0, sb.1, sb.2, sb.3);
    a.ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.ns.name,
    ]);
    for s in [&a, &b] {
        s.ns.ip(&["addr", "add", &format!("{}/24", s.underlay), "dev", "eth0"]);
        s.ns.ip(&["link", "set", "eth0", "up"]);
        s.ns.ip(&["link", "set", "lo", "up"]);
        s.ns.ip(&["addr", "add", &format!("{}/32", s.inner), "dev", "weft.wg"]);
        s.ns.ip(&["link", "set", "weft.wg", "mtu", "1420", "up"]);
    }
    a.ns.ip(&["route", "add", b.cidr, "dev", "weft.wg"]);
    b.ns.ip(&["route", "add", a.cidr, "dev", "weft.wg"]);
    (a, b)
}

fn peer_of(s: &Side) -> Peer {
    Peer {
        public_key: s.key.public(),
        endpoint: Some(format!("{}:51820", s.underlay).parse().unwrap()),
        allowed_ips: vec![s.cidr.parse().unwrap()],
        persistent_keepalive: None,
    }
}

#[test]
fn pods_talk_through_the_userspace_device_and_the_wire_carries_only_wireguard() {
    if !root_or_skip("userspace_device") || !tool_or_skip("userspace_device", "tcpdump") {
        return;
    }
    let (mut a, mut b) = pair(
        ("wga", "192.168.77.1", "10.99.1.1", "10.99.1.0/24"),
        ("wgb", "192.168.77.2", "10.99.2.1", "10.99.2.0/24"),
    );
    let (pa, pb) = (peer_of(&a), peer_of(&b));
    let ca = Config {
        private_key: a.key.clone(),
        listen_port: 51820,
        peers: vec![pb],
    };
    let cb = Config {
        private_key: b.key.clone(),
        listen_port: 51820,
        peers: vec![pa],
    };
    assert!(a.dev.configure(&ca).unwrap(), "a new device is configured");
    assert!(b.dev.configure(&cb).unwrap());
    assert!(
        !a.dev.configure(&ca).unwrap(),
        "the same config again changes nothing"
    );

    // The capture on a's underlay, running before any packet is sent.
    let pcap = std::env::temp_dir().join(format!("{}.pcap", a.ns.name));
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.ns.name,
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "--immediate-mode",
            "-U",
            "-w",
        ])
        .arg(&pcap)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    let mut dump_err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            dump_err.read_line(&mut line).unwrap() > 0,
            "tcpdump ended: {line}"
        );
    }

    // Ping, then a TCP exchange carrying the marker, across the tunnel.
    let ping = a.ns.exec(&["ping", "-c", "3", "-W", "5", b.inner]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let server = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{}',8080))\ns.listen(1)\nprint('listening',flush=True)\nc,_=s.accept()\n\
         c.sendall(c.recv(100).upper())\nc.close()",
        b.inner
    );
    let mut srv = Command::new("ip")
        .args(["netns", "exec", &b.ns.name, "python3", "-c", &server])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut srv_out = BufReader::new(srv.stdout.take().unwrap());
    let mut ready = String::new();
    srv_out.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "listening");
    let client = format!(
        "import socket\ns=socket.create_connection(('{}',8080),timeout=10)\ns.sendall(b'{MARKER}')\nprint(s.recv(100).decode())",
        b.inner
    );
    let got = a.ns.exec(&["python3", "-c", &client]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        MARKER.to_uppercase(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let _ = srv.wait();

    // Both sides saw a handshake and counted bytes.
    let st = a.dev.state().unwrap();
    assert_eq!(st.peers.len(), 1);
    // An age (seconds ago), not a time since the epoch.
    assert!(
        st.peers[0]
            .last_handshake
            .is_some_and(|age| age < std::time::Duration::from_secs(60)),
        "{st:?}"
    );
    assert!(
        st.peers[0].rx_bytes > 0 && st.peers[0].tx_bytes > 0,
        "{st:?}"
    );

    let count = |filter: &str| -> usize {
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&pcap)
            .arg(filter)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    // Until the capture holds the exchange: a handshake (2), the pings (6)
    // and the TCP connection (at least 6) — the file lags the wire a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("udp port 51820") < 14 {
        assert!(
            std::time::Instant::now() < deadline,
            "the capture never showed the exchange"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    let _ = dump_err.read_to_string(&mut rest);
    dump.wait().unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    let wireguard = count("udp port 51820");
    // IGMP reports (a link coming up joins its groups) are not traffic.
    let all = count("ip and not igmp");
    std::fs::remove_file(&pcap).unwrap();
    // The capture saw the exchange, all of it as WireGuard between the
    // underlay addresses; the marker is nowhere in it.
    assert!(
        wireguard >= 14,
        "{wireguard} WireGuard packets captured ({rest})"
    );
    assert_eq!(
        all, wireguard,
        "IPv4 packets on the wire that are not WireGuard"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(MARKER),
        "the payload crossed the wire in the clear"
    );
    assert!(
        !bytes.windows(4).any(|w| w == [10, 99, 2, 1]),
        "an inner address crossed the wire in the clear"
    );
}

/// A new private key on a running device (what a key rotation does): the
/// device binds its port anew and the pair talks again once the other side
/// knows the new public key.
#[test]
fn a_running_device_takes_a_new_key_and_talks_again() {
    if !root_or_skip("userspace_new_key") {
        return;
    }
    let (mut a, mut b) = pair(
        ("wgra", "192.168.78.1", "10.98.1.1", "10.98.1.0/24"),
        ("wgrb", "192.168.78.2", "10.98.2.1", "10.98.2.0/24"),
    );
    let mut ca = Config {
        private_key: a.key.clone(),
        listen_port: 51820,
        peers: vec![peer_of(&b)],
    };
    let mut cb = Config {
        private_key: b.key.clone(),
        listen_port: 51820,
        peers: vec![peer_of(&a)],
    };
    a.dev.configure(&ca).unwrap();
    b.dev.configure(&cb).unwrap();
    let ping = |s: &Side, to: &str| {
        s.ns.exec(&["ping", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    assert!(ping(&a, b.inner), "before the new key");

    a.key = PrivateKey::generate().unwrap();
    ca.private_key = a.key.clone();
    assert!(a.dev.configure(&ca).unwrap(), "the new key is a change");
    cb.peers = vec![peer_of(&a)];
    assert!(b.dev.configure(&cb).unwrap());
    let st = a.dev.state().unwrap();
    assert_eq!(st.public_key, Some(a.key.public()));
    assert_eq!(st.listen_port, Some(51820));
    // The first packets wait for the new handshake.
    assert!(
        (0..5).any(|_| ping(&a, b.inner)),
        "no answer after the new key: {:?}",
        a.dev.state()
    );
    let st = b.dev.state().unwrap();
    assert!(
        st.peers[0].peer.public_key == a.key.public() && st.peers[0].last_handshake.is_some(),
        "{st:?}"
    );
}
