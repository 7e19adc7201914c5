//! The forwarder: questions for names outside the cluster domain go to the
//! node's upstream resolvers, through the [`Cache`].
//!
//! weft writes this small forwarder itself rather than using hickory-resolver
//! or hickory-client, so that the cache policy ([`crate::cache`]), every bound
//! (in-flight queries, record counts, CNAME hops, time per try) and the error
//! handling are weft's own and stated here; hickory-proto provides the wire
//! format only.
//!
//! Upstreams ([`Upstreams`]) come from `--upstream ADDR[:PORT]` arguments or from
//! the `nameserver` lines of a resolv.conf (resolv.conf(5)): the first three, as
//! glibc's MAXNS, less weft's own listen addresses (forwarding to itself would
//! loop).
//!
//! [`Forwarder::resolve`], per question:
//! 1. The cache answers if it can.
//! 2. Identical questions in flight share one upstream exchange (coalescing,
//!    keyed as the cache is): under a flood of the same name the upstreams see
//!    one query. The exchange runs in its own task, so a client giving up does
//!    not cancel it for the others. At most `max_in_flight` exchanges run at
//!    once; past that [`ForwardError::Busy`] is returned at once, so the server
//!    answers SERVFAIL quickly and memory stays bounded.
//! 3. An exchange sends the question with a fresh random id and RD=1, EDNS0 with
//!    a 1232-byte payload (the DNS Flag Day 2020 size: no IP fragmentation), from
//!    a new UDP socket on a kernel-chosen (randomised) ephemeral port, connected
//!    to the upstream so the kernel drops datagrams from any other address or
//!    port (RFC 5452 §9.2, §4: random id and source port per query). A datagram
//!    is accepted only if it parses, has QR=1, the same id and the same question
//!    (name compared case-insensitively, RFC 4343); anything else is ignored and
//!    the wait goes on until the try's timeout (RFC 5452 §3).
//! 4. TC=1 → the same question over TCP to the same upstream (RFC 7766 §5;
//!    RFC 1035 §4.2.2 two-byte length prefix).
//! 5. Timeout, a socket error, SERVFAIL, REFUSED, FORMERR, NOTIMP or another error
//!    code, or a reply failing the content checks → the next upstream, cycling
//!    through the list for `attempts` tries in total, starting with the upstream
//!    that answered last. Content checks: at most `max_records` records over all
//!    sections, and the CNAME chain from the question's name through the answer
//!    section neither loops nor has more than `max_cname_hops` links (RFC 1034
//!    §3.6.2 warns of CNAME loops and chains).
//! 6. NOERROR and NXDOMAIN replies are stored in the cache (which decides what
//!    it keeps) and returned.
//!
//! The returned message has the shape [`Cache::get`] gives: id 0, the caller's
//! question, the upstream's response code and records (fresh from upstream:
//! TTLs as it gave them; from the cache: aged), no EDNS; the caller sets the id
//! and adapts it to its client.
//!
//! Query ids come from `rand`'s thread-local generator (ChaCha, seeded from the
//! OS): unpredictable, as RFC 5452 §4.3 asks.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::cache::{Cache, Key};

/// Port of an upstream given without one, and of every resolv.conf nameserver.
pub const DNS_PORT: u16 = 53;
/// How many resolv.conf nameservers are used (glibc's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// The EDNS0 UDP payload size announced upstream.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for UDP replies; a datagram filling it is taken as truncated.
const UDP_BUFFER: usize = 4096;

// ---------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------

/// A non-empty list of upstream servers, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams(Vec<SocketAddr>);

impl Upstreams {
    /// The list as given; it must not be empty.
    pub fn new(addrs: Vec<SocketAddr>) -> Result<Upstreams, UpstreamsError> {
        if addrs.is_empty() {
            return Err(UpstreamsError::Empty);
        }
        Ok(Upstreams(addrs))
    }

    /// From `--upstream ADDR[:PORT]` arguments (see [`parse_upstream`]); an
    /// argument equal to one of `exclude` (weft's own listen addresses) is an
    /// error, as forwarding there would loop.
    pub fn from_args<S: AsRef<str>>(
        args: &[S],
        exclude: &[SocketAddr],
    ) -> Result<Upstreams, UpstreamsError> {
        let mut addrs = Vec::with_capacity(args.len());
        for arg in args {
            let arg = arg.as_ref();
            let addr = parse_upstream(arg)?;
            if exclude.contains(&addr) {
                return Err(UpstreamsError::BadUpstream {
                    arg: arg.to_string(),
                    reason: "is weft dns's own listen address: forwarding there would loop"
                        .to_string(),
                });
            }
            addrs.push(addr);
        }
        Upstreams::new(addrs)
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.0
    }
}

impl fmt::Display for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Why a list of upstreams could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamsError {
    #[error("no upstream server given")]
    Empty,
    #[error("upstream {arg:?}: {reason}")]
    BadUpstream { arg: String, reason: String },
    #[error("line {line} {text:?}: {reason}")]
    BadLine {
        line: usize,
        text: String,
        reason: String,
    },
    #[error("no usable nameserver line{}", ignored_list(.ignored))]
    NoNameservers { ignored: Vec<Ignored> },
    #[error("{path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: {error}")]
    InFile {
        path: String,
        error: Box<UpstreamsError>,
    },
}

fn ignored_list(ignored: &[Ignored]) -> String {
    if ignored.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = ignored.iter().map(Ignored::to_string).collect();
    format!(" (ignored: {})", parts.join("; "))
}

/// A resolv.conf `nameserver` line that is well-formed but not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// 1-based line number.
    pub line: usize,
    pub text: String,
    pub reason: IgnoredReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredReason {
    /// Past the third nameserver line (glibc uses the first three).
    BeyondMax,
    /// One of weft's own listen addresses.
    OwnAddress,
    /// An IPv6 address scoped by interface name (`fe80::1%eth0`): naming the
    /// interface index needs the host; write the numeric index (`%2`) instead.
    NamedScope,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            IgnoredReason::BeyondMax => "only the first three nameservers are used",
            IgnoredReason::OwnAddress => {
                "is weft dns's own listen address: forwarding there would loop"
            }
            IgnoredReason::NamedScope => {
                "scope given by interface name; use the numeric interface index (%N)"
            }
        };
        write!(f, "line {} {:?}: {why}", self.line, self.text)
    }
}

/// What a resolv.conf gives: the upstreams and the nameserver lines left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub upstreams: Upstreams,
    pub ignored: Vec<Ignored>,
}

/// An IP address with an optional IPv6 zone, as written in resolv.conf or an
/// `--upstream` argument. `Err(None)`: a named zone; `Err(Some(reason))`: not an
/// address.
fn parse_ip(s: &str) -> Result<(IpAddr, u32), Option<String>> {
    let (ip, zone) = match s.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| Some(format!("{ip:?} is not an IPv4 or IPv6 address")))?;
    let scope = match (zone, ip) {
        (None, _) => 0,
        (Some(_), IpAddr::V4(_)) => {
            return Err(Some(
                "a zone (%...) is only valid on an IPv6 address".into(),
            ))
        }
        (Some(z), IpAddr::V6(_)) if !z.is_empty() && z.bytes().all(|b| b.is_ascii_digit()) => z
            .parse()
            .map_err(|_| Some(format!("zone index {z:?} out of range")))?,
        (Some(""), IpAddr::V6(_)) => return Err(Some("empty zone after %".into())),
        (Some(_), IpAddr::V6(_)) => return Err(None),
    };
    Ok((ip, scope))
}

fn socket_addr(ip: IpAddr, scope: u32, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
    }
}

/// One `--upstream` value: `IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT`, IPv6 with a
/// numeric zone (`fe80::1%2`, `[fe80::1%2]:53`). Port 53 when none is given.
pub fn parse_upstream(arg: &str) -> Result<SocketAddr, UpstreamsError> {
    let bad = |reason: String| UpstreamsError::BadUpstream {
        arg: arg.to_string(),
        reason,
    };
    let s = arg.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("'[' without a closing ']'".into()))?;
        let port = match after {
            "" => DNS_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad(format!("{after:?} after ']' is not \":PORT\"")))?,
        };
        (host, port)
    } else if s.matches(':').count() == 1 {
        let (host, p) = s.split_once(':').unwrap_or((s, ""));
        let port = p
            .parse::<u16>()
            .map_err(|_| bad(format!("port {p:?} is not a number from 0 to 65535")))?;
        (host, port)
    } else {
        // An IPv4 address without a port, or a bare IPv6 address.
        (s, DNS_PORT)
    };
    if port == 0 {
        return Err(bad("port 0".into()));
    }
    let (ip, scope) = parse_ip(host).map_err(|e| {
        bad(e.unwrap_or_else(|| {
            "IPv6 zone given by interface name; use the numeric interface index (%N)".into()
        }))
    })?;
    Ok(socket_addr(ip, scope, port))
}

/// The upstreams a resolv.conf names (resolv.conf(5)): `nameserver ADDR` lines,
/// port 53, the first [`MAX_NAMESERVERS`] of them, less any in `exclude`.
/// Comments (`#`, `;`), other keywords and words after the address are
/// skipped, as glibc does. A `nameserver` line
/// without a valid address is an error naming the line; no usable nameserver
/// at all is an error listing what was left out.
pub fn parse_resolv_conf(text: &str, exclude: &[SocketAddr]) -> Result<ResolvConf, UpstreamsError> {
    let mut addrs = Vec::new();
    let mut ignored = Vec::new();
    let mut seen = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split(['#', ';']).next().unwrap_or("");
        let mut words = content.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let bad = |reason: String| UpstreamsError::BadLine {
            line,
            text: raw.trim().to_string(),
            reason,
        };
        let Some(addr) = words.next() else {
            return Err(bad("nameserver without an address".into()));
        };
        let ignore = |reason| Ignored {
            line,
            text: raw.trim().to_string(),
            reason,
        };
        seen += 1;
        if seen > MAX_NAMESERVERS {
            // Not read at all, as by glibc.
            ignored.push(ignore(IgnoredReason::BeyondMax));
            continue;
        }
        let (ip, scope) = match parse_ip(addr) {
            Ok(v) => v,
            Err(Some(reason)) => return Err(bad(reason)),
            Err(None) => {
                ignored.push(ignore(IgnoredReason::NamedScope));
                continue;
            }
        };
        let sa = socket_addr(ip, scope, DNS_PORT);
        if exclude.contains(&sa) {
            ignored.push(ignore(IgnoredReason::OwnAddress));
            continue;
        }
        addrs.push(sa);
    }
    if addrs.is_empty() {
        return Err(UpstreamsError::NoNameservers { ignored });
    }
    Ok(ResolvConf {
        upstreams: Upstreams(addrs),
        ignored,
    })
}

/// [`parse_resolv_conf`] of the file at `path`; errors name the file.
pub fn read_resolv_conf(path: &Path, exclude: &[SocketAddr]) -> Result<ResolvConf, UpstreamsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| UpstreamsError::Read {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    parse_resolv_conf(&text, exclude).map_err(|e| UpstreamsError::InFile {
        path: shown,
        error: Box::new(e),
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The transport of one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        })
    }
}

/// What went wrong in one try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no valid reply within {0:?}")]
    Timeout(Duration),
    #[error("{op}: {error}")]
    Io { op: &'static str, error: String },
    #[error("answered {}", rcode_name(*.0))]
    Rcode(ResponseCode),
    #[error("reply truncated (TC=1) over TCP")]
    TruncatedOverTcp,
    #[error("reply over TCP is not a valid answer to the query: {0}")]
    BadTcpReply(String),
    #[error("reply has {count} records, more than the limit of {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("CNAME chain loops back to {0}")]
    CnameLoop(String),
    #[error("CNAME chain longer than {0} links")]
    CnameChainTooLong(usize),
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("response code {}", u16::from(other)),
    }
}

/// One failed try: which upstream, over what, and what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{upstream} over {transport}: {failure}")]
pub struct TryError {
    pub upstream: SocketAddr,
    pub transport: Transport,
    pub failure: Failure,
}

/// Why [`Forwarder::resolve`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("not forwarding {query}: {limit} upstream queries in flight already (the limit)")]
    Busy { query: String, limit: usize },
    #[error("no upstream answered {query}: {}", tries_list(.tries))]
    Failed { query: String, tries: Vec<TryError> },
    #[error("the upstream exchange for {query} ended without a result")]
    Abandoned { query: String },
}

fn tries_list(tries: &[TryError]) -> String {
    let parts: Vec<String> = tries.iter().map(TryError::to_string).collect();
    parts.join("; ")
}

fn show(q: &Query) -> String {
    format!("{} {}", q.name(), q.query_type())
}

// ---------------------------------------------------------------------------
// Forwarder
// ---------------------------------------------------------------------------

/// Bounds and timing of the forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOpts {
    /// How long one try waits for a valid reply (UDP, or TCP after TC=1).
    pub timeout: Duration,
    /// Tries per question in total, cycling through the upstreams.
    pub attempts: usize,
    /// Upstream exchanges running at once; past that, [`ForwardError::Busy`].
    pub max_in_flight: usize,
    /// Records over all sections a reply may have.
    pub max_records: usize,
    /// CNAME links the answer section may chain.
    pub max_cname_hops: usize,
}

impl Default for ForwardOpts {
    /// 2 s per try and 3 tries (at most 6 s, within glibc's default 5 s × 2
    /// attempts of a client), 1,000 exchanges in flight, 512 records, 8 CNAME
    /// links.
    fn default() -> Self {
        ForwardOpts {
            timeout: Duration::from_secs(2),
            attempts: 3,
            max_in_flight: 1000,
            max_records: 512,
            max_cname_hops: 8,
        }
    }
}

/// Counter values, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardStats {
    /// Exchanges started (each sends one or more upstream queries).
    pub exchanges: u64,
    /// Questions that joined an exchange already in flight.
    pub coalesced: u64,
    /// Questions refused with [`ForwardError::Busy`].
    pub busy: u64,
    /// Upstream queries sent (UDP and TCP tries).
    pub upstream_queries: u64,
    /// Exchanges that ended in [`ForwardError::Failed`].
    pub failed: u64,
}

type Outcome = Arc<Result<Message, ForwardError>>;

struct Inner {
    upstreams: Upstreams,
    cache: Arc<Cache>,
    opts: ForwardOpts,
    in_flight: Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>,
    /// Index of the upstream that answered last: the first one tried.
    preferred: AtomicUsize,
    exchanges: AtomicU64,
    coalesced: AtomicU64,
    busy: AtomicU64,
    upstream_queries: AtomicU64,
    failed: AtomicU64,
}

/// Forwards questions to upstream servers through a cache. Cheap to clone
/// (shared state); use one per server.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("upstreams", &self.inner.upstreams)
            .field("opts", &self.inner.opts)
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock_map<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map operation: a poisoned lock holds a
    // consistent map.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes an exchange from the in-flight map when it ends, however it ends.
struct InFlightGuard {
    inner: Arc<Inner>,
    key: Key,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        lock_map(&self.inner.in_flight).remove(&self.key);
    }
}

impl Forwarder {
    pub fn new(upstreams: Upstreams, cache: Arc<Cache>, opts: ForwardOpts) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                upstreams,
                cache,
                opts,
                in_flight: Mutex::new(HashMap::new()),
                preferred: AtomicUsize::new(0),
                exchanges: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                upstream_queries: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// Upstream exchanges running now.
    pub fn in_flight(&self) -> usize {
        lock_map(&self.inner.in_flight).len()
    }

    pub fn stats(&self) -> ForwardStats {
        let i = &self.inner;
        ForwardStats {
            exchanges: i.exchanges.load(Ordering::Relaxed),
            coalesced: i.coalesced.load(Ordering::Relaxed),
            busy: i.busy.load(Ordering::Relaxed),
            upstream_queries: i.upstream_queries.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
        }
    }

    /// The answer to `q` (asked at `now`), from the cache or the upstreams; see
    /// the module documentation. Must run inside a tokio runtime.
    pub async fn resolve(&self, q: &Query, now: Instant) -> Result<Message, ForwardError> {
        if let Some(m) = self.inner.cache.get(q, now) {
            return Ok(m);
        }
        let key = Key::of(q);
        let mut rx = {
            let mut map = lock_map(&self.inner.in_flight);
            if let Some(rx) = map.get(&key) {
                self.inner.coalesced.fetch_add(1, Ordering::Relaxed);
                rx.clone()
            } else {
                if map.len() >= self.inner.opts.max_in_flight {
                    self.inner.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(ForwardError::Busy {
                        query: show(q),
                        limit: self.inner.opts.max_in_flight,
                    });
                }
                let (tx, rx) = watch::channel(None);
                map.insert(key.clone(), rx.clone());
                self.inner.exchanges.fetch_add(1, Ordering::Relaxed);
                let guard = InFlightGuard {
                    inner: Arc::clone(&self.inner),
                    key,
                };
                let q = q.clone();
                tokio::spawn(async move {
                    let outcome = guard.inner.exchange(&q, now).await;
                    tx.send_replace(Some(Arc::new(outcome)));
                    drop(guard);
                });
                rx
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match outcome.as_deref() {
            Some(Ok(m)) => {
                let mut m = m.clone();
                *m.queries_mut() = vec![q.clone()];
                Ok(m)
            }
            Some(Err(e)) => Err(e.clone()),
            None => Err(ForwardError::Abandoned { query: show(q) }),
        }
    }
}

/// The shape every answer is returned in (that of [`Cache::get`] at age 0).
fn normalise(q: &Query, reply: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(0)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(reply.recursion_available())
        .set_response_code(reply.response_code())
        .add_query(q.clone());
    m.insert_answers(reply.answers().to_vec());
    m.insert_name_servers(reply.name_servers().to_vec());
    m.insert_additionals(reply.additionals().to_vec());
    m
}

/// Whether `reply` answers the query with `id` for `q` (RFC 5452 §3).
fn matches(reply: &Message, id: u16, q: &Query) -> bool {
    reply.id() == id
        && reply.message_type() == MessageType::Response
        && reply.op_code() == OpCode::Query
        && reply.queries().len() == 1
        && reply.queries()[0].name() == q.name()
        && reply.queries()[0].query_type() == q.query_type()
        && reply.queries()[0].query_class() == q.query_class()
}

fn io(op: &'static str, e: std::io::Error) -> Failure {
    Failure::Io {
        op,
        error: e.to_string(),
    }
}

fn unspecified(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// One UDP try. `Ok(reply)` may have TC=1.
async fn udp_try(
    upstream: SocketAddr,
    wire: &[u8],
    id: u16,
    q: &Query,
    timeout: Duration,
) -> Result<Message, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    // A new socket per query: the kernel picks a random ephemeral port
    // (RFC 5452 §9.2); connecting it filters the source address and port.
    let sock = UdpSocket::bind(unspecified(upstream))
        .await
        .map_err(|e| io("bind a UDP socket", e))?;
    sock.connect(upstream)
        .await
        .map_err(|e| io("connect the UDP socket", e))?;
    sock.send(wire).await.map_err(|e| io("send", e))?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(Failure::Timeout(timeout)),
            Ok(Err(e)) => return Err(io("receive", e)),
            Ok(Ok(n)) => n,
        };
        let Ok(mut reply) = Message::from_vec(&buf[..n]) else {
            continue; // not DNS, or damaged: keep waiting (RFC 5452 §3)
        };
        if !matches(&reply, id, q) {
            continue;
        }
        if n == buf.len() {
            // May have been cut by the buffer: ask over TCP.
            reply.set_truncated(true);
        }
        return Ok(reply);
    }
}

/// One TCP try (RFC 7766; RFC 1035 §4.2.2 framing).
async fn tcp_try(
    upstream: SocketAddr,
    wire: &[u8],
    id: u16,
    q: &Query,
    timeout: Duration,
) -> Result<Message, Failure> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream)
            .await
            .map_err(|e| io("connect", e))?;
        let len = u16::try_from(wire.len())
            .map_err(|_| Failure::Encode(format!("query of {} bytes", wire.len())))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await.map_err(|e| io("send", e))?;
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|e| io("receive the length", e))?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io("receive the reply", e))?;
        let reply = Message::from_vec(&body).map_err(|e| Failure::BadTcpReply(e.to_string()))?;
        if !matches(&reply, id, q) {
            return Err(Failure::BadTcpReply(
                "id, QR flag, opcode or question differ".into(),
            ));
        }
        if reply.truncated() {
            return Err(Failure::TruncatedOverTcp);
        }
        Ok(reply)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(Failure::Timeout(timeout)),
        Ok(r) => r,
    }
}

impl Inner {
    /// Ask the upstreams until one gives a usable answer, cache it, return it.
    async fn exchange(&self, q: &Query, now: Instant) -> Result<Message, ForwardError> {
        let started = Instant::now();
        let ups = self.upstreams.addrs();
        let first = self.preferred.load(Ordering::Relaxed) % ups.len();
        let mut tries = Vec::new();
        for attempt in 0..self.opts.attempts.max(1) {
            let index = (first + attempt) % ups.len();
            let upstream = ups[index];
            match self.ask(upstream, q).await {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    let received = now + started.elapsed();
                    self.cache.put(q, &reply, received);
                    return Ok(normalise(q, &reply));
                }
                Err(e) => {
                    tracing::debug!(error = %e, query = %show(q), "upstream try failed");
                    tries.push(e);
                }
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        Err(ForwardError::Failed {
            query: show(q),
            tries,
        })
    }

    /// One try at one upstream: UDP, then TCP if truncated; a usable answer or
    /// why not.
    async fn ask(&self, upstream: SocketAddr, q: &Query) -> Result<Message, TryError> {
        let id: u16 = rand::random();
        let mut request = Message::new();
        request
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(q.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
        request.set_edns(edns);
        let fail = |transport, failure| TryError {
            upstream,
            transport,
            failure,
        };
        let wire = request
            .to_vec()
            .map_err(|e| fail(Transport::Udp, Failure::Encode(e.to_string())))?;
        self.upstream_queries.fetch_add(1, Ordering::Relaxed);
        let mut transport = Transport::Udp;
        let mut reply = udp_try(upstream, &wire, id, q, self.opts.timeout)
            .await
            .map_err(|f| fail(Transport::Udp, f))?;
        if reply.truncated() {
            transport = Transport::Tcp;
            self.upstream_queries.fetch_add(1, Ordering::Relaxed);
            reply = tcp_try(upstream, &wire, id, q, self.opts.timeout)
                .await
                .map_err(|f| fail(Transport::Tcp, f))?;
        }
        match reply.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            other => return Err(fail(transport, Failure::Rcode(other))),
        }
        check_content(&reply, q, &self.opts).map_err(|f| fail(transport, f))?;
        Ok(reply)
    }
}

/// The record-count bound and the CNAME chain checks (RFC 1034 §3.6.2).
fn check_content(reply: &Message, q: &Query, opts: &ForwardOpts) -> Result<(), Failure> {
    let count = reply.answers().len() + reply.name_servers().len() + reply.additionals().len();
    if count > opts.max_records {
        return Err(Failure::TooManyRecords {
            count,
            limit: opts.max_records,
        });
    }
    if matches!(q.query_type(), RecordType::CNAME | RecordType::ANY) {
        return Ok(());
    }
    let mut current: Name = q.name().clone();
    let mut seen = vec![current.clone()];
    let mut hops = 0usize;
    while let Some(target) = reply.answers().iter().find_map(|r| match r.data() {
        RData::CNAME(c) if r.name() == &current => Some(c.0.clone()),
        _ => None,
    }) {
        if seen.contains(&target) {
            return Err(Failure::CnameLoop(target.to_string()));
        }
        hops += 1;
        if hops > opts.max_cname_hops {
            return Err(Failure::CnameChainTooLong(opts.max_cname_hops));
        }
        seen.push(target.clone());
        current = target;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf_gives_nameservers_on_port_53_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\noptions ndots:5\nnameserver 2001:db8::53 # v6\nnameserver 192.0.2.2 trailing words\n";
        let rc = parse_resolv_conf(text, &[]).unwrap();
        assert_eq!(
            rc.upstreams.addrs(),
            &[
                sa("192.0.2.1:53"),
                sa("[2001:db8::53]:53"),
                sa("192.0.2.2:53")
            ]
        );
        assert!(rc.ignored.is_empty());
    }

    #[test]
    fn resolv_conf_uses_only_the_first_three_nameservers() {
        let text = "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver not-read\n";
        let rc = parse_resolv_conf(text, &[]).unwrap();
        assert_eq!(rc.upstreams.addrs().len(), 3);
        assert_eq!(rc.ignored.len(), 1);
        assert_eq!(rc.ignored[0].line, 4);
        assert_eq!(rc.ignored[0].reason, IgnoredReason::BeyondMax);
    }

    #[test]
    fn resolv_conf_skips_our_own_listen_address() {
        let text = "nameserver 10.96.0.10\nnameserver 192.0.2.1\n";
        let rc = parse_resolv_conf(text, &[sa("10.96.0.10:53")]).unwrap();
        assert_eq!(rc.upstreams.addrs(), &[sa("192.0.2.1:53")]);
        assert_eq!(rc.ignored[0].reason, IgnoredReason::OwnAddress);
    }

    #[test]
    fn resolv_conf_with_only_our_own_address_is_an_error_saying_so() {
        let err = parse_resolv_conf("nameserver 10.96.0.10\n", &[sa("10.96.0.10:53")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no usable nameserver"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        assert!(msg.contains("own listen address"), "{msg}");
    }

    #[test]
    fn resolv_conf_bad_address_is_an_error_naming_the_line() {
        let err = parse_resolv_conf("search x\nnameserver 192.0.2\n", &[]).unwrap_err();
        assert_eq!(
            err,
            UpstreamsError::BadLine {
                line: 2,
                text: "nameserver 192.0.2".into(),
                reason: "\"192.0.2\" is not an IPv4 or IPv6 address".into(),
            }
        );
        assert!(err.to_string().starts_with("line 2 "));
    }

    #[test]
    fn resolv_conf_nameserver_without_address_is_an_error() {
        let err = parse_resolv_conf("nameserver\n", &[]).unwrap_err();
        assert!(err.to_string().contains("line 1"));
        assert!(err.to_string().contains("without an address"));
    }

    #[test]
    fn resolv_conf_keeps_numeric_ipv6_zone_and_ignores_named_one() {
        let text = "nameserver fe80::1%eth0\nnameserver fe80::2%3\n";
        let rc = parse_resolv_conf(text, &[]).unwrap();
        let SocketAddr::V6(v6) = rc.upstreams.addrs()[0] else {
            panic!("not IPv6");
        };
        assert_eq!((v6.scope_id(), v6.port()), (3, 53));
        assert_eq!(rc.ignored[0].reason, IgnoredReason::NamedScope);
    }

    #[test]
    fn resolv_conf_zone_on_ipv4_is_an_error() {
        let err = parse_resolv_conf("nameserver 192.0.2.1%2\n", &[]).unwrap_err();
        assert!(err.to_string().contains("only valid on an IPv6"), "{err}");
    }

    #[test]
    fn resolv_conf_without_nameserver_is_an_error() {
        let err = parse_resolv_conf("search example.com\n", &[]).unwrap_err();
        assert_eq!(err, UpstreamsError::NoNameservers { ignored: vec![] });
    }

    #[test]
    fn missing_resolv_conf_file_is_an_error_naming_it() {
        let err = read_resolv_conf(Path::new("/nonexistent/weft/resolv.conf"), &[]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("/nonexistent/weft/resolv.conf: "));
    }

    #[test]
    fn upstream_argument_forms() {
        assert_eq!(parse_upstream("192.0.2.1").unwrap(), sa("192.0.2.1:53"));
        assert_eq!(
            parse_upstream("192.0.2.1:5353").unwrap(),
            sa("192.0.2.1:5353")
        );
        assert_eq!(
            parse_upstream("2001:db8::1").unwrap(),
            sa("[2001:db8::1]:53")
        );
        assert_eq!(
            parse_upstream("[2001:db8::1]").unwrap(),
            sa("[2001:db8::1]:53")
        );
        assert_eq!(
            parse_upstream("[2001:db8::1]:54").unwrap(),
            sa("[2001:db8::1]:54")
        );
        let SocketAddr::V6(v6) = parse_upstream("[fe80::1%2]:53").unwrap() else {
            panic!("not IPv6");
        };
        assert_eq!(v6.scope_id(), 2);
    }

    #[test]
    fn bad_upstream_arguments_are_errors_naming_them() {
        for bad in [
            "",
            "dns.example",
            "192.0.2.1:x",
            "192.0.2.1:0",
            "[::1",
            "[::1]x",
            "[fe80::1%eth0]",
        ] {
            let err = parse_upstream(bad).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("upstream {bad:?}: ")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn upstream_argument_equal_to_own_listen_address_is_an_error() {
        let err = Upstreams::from_args(&["127.0.0.1:53"], &[sa("127.0.0.1:53")]).unwrap_err();
        assert!(err.to_string().contains("would loop"));
        assert_eq!(
            Upstreams::from_args::<&str>(&[], &[]),
            Err(UpstreamsError::Empty)
        );
    }

    fn reply_with(answers: Vec<hickory_proto::rr::Record>) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response);
        m.insert_answers(answers);
        m
    }

    fn cname(from: &str, to: &str) -> hickory_proto::rr::Record {
        hickory_proto::rr::Record::from_rdata(
            from.parse().unwrap(),
            60,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(to.parse().unwrap())),
        )
    }

    #[test]
    fn cname_chain_of_exactly_the_limit_is_accepted_and_one_more_is_not() {
        let opts = ForwardOpts::default();
        let chain = |n: usize| {
            reply_with(
                (0..n)
                    .map(|i| cname(&format!("n{i}.example."), &format!("n{}.example.", i + 1)))
                    .collect(),
            )
        };
        let q = Query::query("N0.example.".parse().unwrap(), RecordType::A);
        assert_eq!(check_content(&chain(8), &q, &opts), Ok(()));
        assert_eq!(
            check_content(&chain(9), &q, &opts),
            Err(Failure::CnameChainTooLong(8))
        );
    }
}
