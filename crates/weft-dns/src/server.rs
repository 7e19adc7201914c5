//! The sockets of `weft dns`: UDP and TCP on every listen address, each
//! query handed to the pure [`answer`] over the current zone snapshot.
//!
//! - UDP: one socket per core on each address (`SO_REUSEPORT`, so the kernel
//!   spreads clients over them), each read by its own OS thread in a plain
//!   blocking loop — a zone answer is a lookup and a copy, and a thread per
//!   socket with no executor in between is the cheapest way to serve it.
//!   Queries that go upstream are handed to the tokio runtime (the forwarder
//!   is async); their answers are sent from the same socket.
//! - TCP (RFC 7766): a tokio listener; each connection may send many
//!   length-prefixed queries (answered in order); idle connections are
//!   closed after 10 s and at most [`MAX_TCP_CONNECTIONS`] are open at once —
//!   the rest are closed at accept, so a flood cannot exhaust memory.
//! - The zone snapshot is an `ArcSwap`: a query loads the current one without
//!   a lock, a sync swaps in a new one atomically ([`crate::daemon`]).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::answer::{answer, answer_reusable, Action, Ctx, Pending, Transport, UpstreamError};
use crate::forward::Forwarder;
use crate::metrics::{Metrics, Tally};
use crate::zone::Zone;

/// Open TCP connections at most; more are closed at accept.
pub const MAX_TCP_CONNECTIONS: usize = 1024;

/// A TCP connection with no query for this long is closed (RFC 7766 §6.2.3
/// recommends timeouts of the order of seconds for servers under load).
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every socket task shares.
pub struct Shared {
    pub zone: ArcSwap<Zone>,
    /// None: nothing is forwarded.
    pub forwarder: Option<Forwarder>,
    pub metrics: Arc<Metrics>,
}

/// A UDP socket bound to `addr` with `SO_REUSEPORT`, so several can share it.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Room for bursts; the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener on `addr` (non-blocking, for tokio).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The query type and response code of an answer we built (for the
/// metrics), read back with hickory-proto's decoder: the header and the one
/// question.
pub fn summary(response: &[u8]) -> (RecordType, ResponseCode) {
    let mut d = BinDecoder::new(response);
    let rcode = Header::read(&mut d)
        .map(|h| h.response_code())
        .unwrap_or(ResponseCode::ServFail);
    let qtype = Query::read(&mut d)
        .map(|q| q.query_type())
        .unwrap_or(RecordType::Unknown(0));
    (qtype, rcode)
}

/// A small per-thread generator for the answer order (xorshift64*): record
/// order needs spread, not secrecy.
struct Shuffle(u64);

impl Shuffle {
    fn new() -> Shuffle {
        use std::hash::{BuildHasher, RandomState};
        Shuffle(RandomState::new().hash_one(std::thread::current().id()) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Whole UDP answers a socket thread has built, by the request's bytes
/// after its id: a repeated question (pods ask the same few names again and
/// again) is answered by copying the bytes and patching the id, without
/// decoding or encoding. Only replies [`answer_reusable`] vouches for are
/// kept; the map empties whenever a new zone snapshot is swapped in, and
/// when it is full (memory stays bounded whatever a client sends).
struct Answers {
    /// The generation of the snapshot the answers came from.
    zone: u64,
    map: HashMap<Box<[u8]>, Reused, fnv::FnvBuildHasher>,
}

struct Reused {
    bytes: Box<[u8]>,
    qtype: RecordType,
    rcode: ResponseCode,
}

impl Answers {
    /// Entries per thread at most (~10 MB with typical answers).
    const MAX: usize = 50_000;

    fn new() -> Answers {
        Answers {
            zone: 0,
            map: HashMap::default(),
        }
    }

    /// Forgets everything if `zone` is not the snapshot the answers are from.
    fn follow(&mut self, zone: &Zone) {
        let id = zone.generation();
        if id != self.zone {
            self.map.clear();
            self.zone = id;
        }
    }

    fn get(&self, request: &[u8]) -> Option<&Reused> {
        self.map.get(request.get(2..)?)
    }

    fn put(&mut self, request: &[u8], bytes: &[u8]) {
        let (Some(key), true) = (request.get(2..), bytes.len() >= 2) else {
            return;
        };
        if self.map.len() >= Self::MAX {
            self.map.clear();
        }
        let (qtype, rcode) = summary(bytes);
        self.map.insert(
            key.into(),
            Reused {
                bytes: bytes.into(),
                qtype,
                rcode,
            },
        );
    }
}

/// Serves one UDP socket on the calling thread, forever (until the process
/// exits). Forwards run on `rt`.
pub fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>, rt: tokio::runtime::Handle) {
    // The largest UDP payload there is: a query is never cut short.
    let mut buf = vec![0u8; 65_535];
    let mut shuffle = Shuffle::new();
    let mut errors = 0u32;
    let mut tally = shared.metrics.tally();
    let mut answers = Answers::new();
    let mut out = Vec::with_capacity(4096);
    // A timeout so that an idle thread still merges its last counts.
    let _ = socket.set_read_timeout(Some(Tally::MAX_AGE));
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                shared.metrics.merge(&mut tally);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ENOMEM and friends: say so once, and do not spin.
                if errors == 0 {
                    tracing::warn!(error = %e, "UDP receive failed");
                }
                errors = errors.saturating_add(1);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let started = Instant::now();
        let zone = shared.zone.load();
        answers.follow(&zone);
        if let Some(r) = answers.get(&buf[..n]) {
            out.clear();
            out.extend_from_slice(&r.bytes);
            out[..2].copy_from_slice(&buf[..2]);
            let _ = socket.send_to(&out, peer);
            tally.source("zone");
            tally.query("udp", r.qtype, r.rcode, started.elapsed());
            if tally.due(started) {
                shared.metrics.merge(&mut tally);
            }
            continue;
        }
        let ctx = Ctx {
            transport: Transport::Udp,
            client: peer.ip(),
        };
        let (action, reusable) = answer_reusable(&zone, &buf[..n], &ctx, shuffle.next());
        match action {
            Action::Reply(bytes) => {
                let _ = socket.send_to(&bytes, peer);
                tally.source("zone");
                let (qtype, rcode) = summary(&bytes);
                tally.query("udp", qtype, rcode, started.elapsed());
                if reusable {
                    answers.put(&buf[..n], &bytes);
                }
            }
            Action::Forward(pending) if shared.forwarder.is_none() => {
                let bytes = pending.unforwarded();
                let _ = socket.send_to(&bytes, peer);
                tally.source("unforwarded");
                let (qtype, rcode) = summary(&bytes);
                tally.query("udp", qtype, rcode, started.elapsed());
            }
            Action::Forward(pending) => {
                let socket = socket.clone();
                let shared = shared.clone();
                rt.spawn(async move {
                    let bytes = forward(&shared, &pending).await;
                    let _ = socket.send_to(&bytes, peer);
                    record(&shared.metrics, "udp", &bytes, started);
                });
            }
            Action::Drop => tally.dropped(),
        }
        if tally.due(started) {
            shared.metrics.merge(&mut tally);
        }
    }
}

fn record(metrics: &Metrics, transport: &'static str, bytes: &[u8], started: Instant) {
    let (qtype, rcode) = summary(bytes);
    metrics.record_query(transport, qtype, rcode, started.elapsed());
}

/// Resolves a forwarded question (through the cache) and builds the
/// client's answer; a failure is SERVFAIL, logged at debug (a flood of
/// failures must not flood the log) and counted. With no upstream servers,
/// the answer [`Pending::unforwarded`] gives.
async fn forward(shared: &Shared, pending: &Pending) -> Vec<u8> {
    let Some(forwarder) = &shared.forwarder else {
        shared.metrics.record_source("unforwarded");
        return pending.unforwarded();
    };
    shared.metrics.record_source("forward");
    let result = forwarder.resolve(pending.question(), Instant::now()).await;
    if let Err(e) = &result {
        shared.metrics.record_forward_error();
        tracing::debug!(question = %pending.question(), error = %e, "forward failed");
    }
    pending.finish(result.as_ref().map_err(|_| UpstreamError))
}

/// Serves TCP connections on `listener` until the task is dropped.
pub async fn serve_tcp(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closing at once is the cheapest refusal.
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = tcp_connection(stream, peer, &shared).await {
                tracing::debug!(peer = %peer, error = %e, "TCP connection ended");
            }
        });
    }
}

/// One TCP connection: length-prefixed queries, answered in order, until
/// the client closes or is idle for [`TCP_IDLE`].
async fn tcp_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut shuffle = Shuffle::new();
    let ctx = Ctx {
        transport: Transport::Tcp,
        client: peer.ip(),
    };
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        buf.resize(usize::from(len), 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query cut short"))??;
        let started = Instant::now();
        let action = answer(&shared.zone.load(), &buf, &ctx, shuffle.next());
        let bytes = match action {
            Action::Reply(bytes) => {
                shared.metrics.record_source("zone");
                bytes
            }
            Action::Forward(pending) => forward(shared, &pending).await,
            Action::Drop => {
                // Not a query: the stream cannot be trusted to be in step.
                shared.metrics.record_dropped();
                return Ok(());
            }
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            return Err(io::Error::other("answer longer than 65535 bytes"));
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        record(&shared.metrics, "tcp", &bytes, started);
    }
}
