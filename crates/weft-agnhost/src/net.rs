//! Socket helpers: dual-stack listeners, address formatting as Go prints it,
//! hostname lookup, name resolution and SCTP (one-to-one style) sockets.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// IPPROTO_SCTP.
const IPPROTO_SCTP: i32 = 132;

/// The host's (UTS namespace's) hostname, like Go's `os.Hostname()`.
pub fn hostname() -> String {
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    if let Ok(name) = std::env::var("HOSTNAME") {
        if !name.is_empty() {
            return name;
        }
    }
    "localhost".to_string()
}

/// Renders a peer address as Go does: IPv4-mapped IPv6 addresses as plain IPv4.
pub fn go_addr(addr: SocketAddr) -> String {
    SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
}

/// An io::Error's text as Go prints errno errors ("connection refused").
pub fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

/// The wildcard address for `port`: `[::]` (dual-stack) when `ip` is None.
pub fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Option<Protocol>) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, ty, proto)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// Runs `f` on `addr`; when `addr` is `[::]` and that fails (no IPv6 in this
/// network namespace), retries on `0.0.0.0` with the same port.
fn with_v4_fallback<T>(addr: SocketAddr, f: impl Fn(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    match f(addr) {
        Ok(v) => Ok(v),
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            f(v4).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// A TCP listener on `addr` (SO_REUSEADDR, dual-stack for `[::]`).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    with_v4_fallback(addr, |addr| {
        let socket = new_socket(addr, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    })
}

/// A UDP socket on `addr` (dual-stack for `[::]`).
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    with_v4_fallback(addr, |addr| {
        let socket = new_socket(addr, Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket.into())
    })
}

/// Whether an error from `socket(…, IPPROTO_SCTP)` means the kernel has no SCTP.
pub fn sctp_unsupported(e: &io::Error) -> bool {
    // EPROTONOSUPPORT, ESOCKTNOSUPPORT, EAFNOSUPPORT
    matches!(e.raw_os_error(), Some(93) | Some(94) | Some(97))
}

/// An SCTP one-to-one listener on `addr`. One-to-one SCTP sockets follow the
/// TCP socket API (accept/read/write/getpeername), so they are driven through
/// tokio's TCP types.
pub fn bind_sctp(addr: SocketAddr) -> io::Result<TcpListener> {
    with_v4_fallback(addr, |addr| {
        let socket = new_socket(addr, Type::STREAM, Some(Protocol::from(IPPROTO_SCTP)))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    })
}

/// Where an SCTP exchange failed.
#[derive(Debug)]
pub enum SctpStage {
    Socket,
    Dial,
    Write,
    Read,
}

/// Connects over SCTP, writes `data` and reads one answer (blocking; run it
/// on a blocking thread). `timeout` bounds the connect and the read.
pub fn sctp_exchange(
    addr: SocketAddr,
    data: &[u8],
    timeout: Duration,
    buf_len: usize,
) -> Result<Vec<u8>, (SctpStage, io::Error)> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::from(IPPROTO_SCTP)))
        .map_err(|e| (SctpStage::Socket, e))?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .map_err(|e| (SctpStage::Dial, e))?;
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| (SctpStage::Read, e))?;
    stream.write_all(data).map_err(|e| (SctpStage::Write, e))?;
    let mut buf = vec![0u8; buf_len];
    let n = stream.read(&mut buf).map_err(|e| (SctpStage::Read, e))?;
    buf.truncate(n);
    Ok(buf)
}

/// Resolves `host` (an IP literal or a DNS name) to addresses with `port`,
/// IPv4 first as Go's resolver prefers.
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bare = bare.split('%').next().unwrap_or(bare);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = if host.is_empty() { "localhost" } else { host };
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup, port)).await?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such host"));
    }
    Ok(addrs)
}

/// Splits "host:port" / "[v6]:port" like Go's `net.SplitHostPort`.
pub fn split_host_port(hostport: &str) -> Result<(String, String), String> {
    let missing = || format!("address {hostport}: missing port in address");
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(missing)?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        if port.contains(':') {
            return Err(format!("address {hostport}: too many colons in address"));
        }
        return Ok((host.to_string(), port.to_string()));
    }
    let colon = hostport.rfind(':').ok_or_else(missing)?;
    let host = &hostport[..colon];
    if host.contains(':') {
        return Err(format!("address {hostport}: too many colons in address"));
    }
    Ok((host.to_string(), hostport[colon + 1..].to_string()))
}

/// Parses a port the way Go's resolver accepts numeric ports ("" means 0).
pub fn parse_port(network: &str, port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Ok(0);
    }
    match port {
        "http" => return Ok(80),
        "https" => return Ok(443),
        _ => {}
    }
    port.parse::<u16>()
        .map_err(|_| format!("lookup {network}/{port}: unknown port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_ports() {
        assert_eq!(
            split_host_port("a:80").unwrap(),
            ("a".to_string(), "80".to_string())
        );
        assert_eq!(
            split_host_port("[::1]:80").unwrap(),
            ("::1".to_string(), "80".to_string())
        );
        assert!(split_host_port("a").is_err());
        assert!(split_host_port("::1:80").is_err());
    }

    #[test]
    fn go_style_addresses() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5".parse().unwrap();
        assert_eq!(go_addr(mapped), "10.1.2.3:5");
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(go_addr(v6), "[::1]:5");
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&e), "connection refused");
    }
}
