//! The forwarder against real sockets on 127.0.0.1: small test upstreams built
//! in each test (answering with hickory-proto messages, misbehaving on purpose
//! where the test says so and counting the queries they receive), and a real
//! dnsmasq (Debian dnsmasq-base, from scripts/setup.sh).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use weft_dns::cache::Cache;
use weft_dns::forward::{ForwardError, ForwardOpts, Forwarder, Upstreams};

// ---------------------------------------------------------------------------
// Test upstream
// ---------------------------------------------------------------------------

/// What the test upstream sends back over UDP for one query.
enum Out {
    /// From the upstream's own socket.
    Reply(Message),
    /// The same, but from another socket (another source port).
    Spoof(Message),
}

type UdpFn = dyn Fn(&Message) -> Vec<Out> + Send + Sync;
type TcpFn = dyn Fn(&Message) -> Option<Message> + Send + Sync;

struct TestUpstream {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    /// Each query waits for one permit here before it is answered, when gated.
    release: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestUpstream {
    async fn start(
        udp: impl Fn(&Message) -> Vec<Out> + Send + Sync + 'static,
        tcp: impl Fn(&Message) -> Option<Message> + Send + Sync + 'static,
        gated: bool,
    ) -> TestUpstream {
        let (sock, listener) = bind_pair().await;
        let addr = sock.local_addr().unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let udp: Arc<UdpFn> = Arc::new(udp);
        let tcp: Arc<TcpFn> = Arc::new(tcp);
        let udp_task = {
            let count = Arc::clone(&udp_queries);
            let release = Arc::clone(&release);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        return;
                    };
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if gated {
                        release.notified().await;
                    }
                    for send in udp(&query) {
                        match send {
                            Out::Reply(m) => {
                                sock.send_to(&m.to_vec().unwrap(), from).await.unwrap();
                            }
                            Out::Spoof(m) => {
                                let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                                other.send_to(&m.to_vec().unwrap(), from).await.unwrap();
                            }
                        }
                    }
                }
            })
        };
        let tcp_task = {
            let count = Arc::clone(&tcp_queries);
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        continue;
                    }
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut body).await.is_err() {
                        continue;
                    }
                    let Ok(query) = Message::from_vec(&body) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(reply) = tcp(&query) {
                        let wire = reply.to_vec().unwrap();
                        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&wire);
                        let _ = stream.write_all(&framed).await;
                    }
                }
            })
        };
        TestUpstream {
            addr,
            udp_queries,
            tcp_queries,
            release,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Answers every UDP query with what `f` builds, TCP never.
    async fn udp(f: impl Fn(&Message) -> Message + Send + Sync + 'static) -> TestUpstream {
        TestUpstream::start(move |q| vec![Out::Reply(f(q))], |_| None, false).await
    }

    fn udp_count(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    fn tcp_count(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn query(s: &str) -> Query {
    Query::query(name(s), RecordType::A)
}

/// The response to `request` with `rcode`, no records.
fn response(request: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(rcode)
        .add_queries(request.queries().to_vec());
    m
}

fn a(owner: &Name, ttl: u32, last: u8) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    )
}

fn cname(from: &str, to: &str) -> Record {
    Record::from_rdata(name(from), 300, RData::CNAME(CNAME(name(to))))
}

fn soa(zone: &str) -> Record {
    Record::from_rdata(
        name(zone),
        3600,
        RData::SOA(SOA::new(
            name("ns.example."),
            name("hostmaster.example."),
            1,
            7200,
            900,
            1_209_600,
            300,
        )),
    )
}

/// NOERROR with one A record 192.0.2.`last`, TTL 300, for the asked name.
fn answer(request: &Message, last: u8) -> Message {
    let mut m = response(request, ResponseCode::NoError);
    m.add_answer(a(request.queries()[0].name(), 300, last));
    m
}

fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn opts() -> ForwardOpts {
    ForwardOpts {
        timeout: Duration::from_millis(300),
        ..ForwardOpts::default()
    }
}

fn forwarder(upstreams: &[&TestUpstream], opts: ForwardOpts) -> Forwarder {
    Forwarder::new(
        Upstreams::new(upstreams.iter().map(|u| u.addr).collect()).unwrap(),
        Arc::new(Cache::default()),
        opts,
    )
}

/// Waits (yielding to the other tasks) until `cond` holds, at most 10 s.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn answer_is_forwarded_and_asked_again_is_served_from_cache_with_aged_ttl() {
    let up = TestUpstream::udp(|q| answer(q, 1)).await;
    let fwd = forwarder(&[&up], opts());
    let q = query("www.example.com.");
    let t0 = Instant::now();
    let first = fwd.resolve(&q, t0).await.unwrap();
    assert_eq!(addresses(&first), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(first.queries(), std::slice::from_ref(&q));
    let second = fwd.resolve(&q, t0 + Duration::from_secs(10)).await.unwrap();
    assert_eq!(addresses(&second), [Ipv4Addr::new(192, 0, 2, 1)]);
    let ttl = second.answers()[0].ttl();
    assert!((290..=291).contains(&ttl), "TTL {ttl} not aged by 10 s");
    assert_eq!(up.udp_count(), 1, "second question reached the upstream");
    assert_eq!(fwd.cache().stats().hits, 1);
}

#[tokio::test]
async fn reply_with_wrong_id_is_ignored_and_the_right_one_accepted() {
    let up = TestUpstream::start(
        |q| {
            let mut wrong = answer(q, 66);
            wrong.set_id(q.id().wrapping_add(1));
            vec![Out::Reply(wrong), Out::Reply(answer(q, 1))]
        },
        |_| None,
        false,
    )
    .await;
    let fwd = forwarder(&[&up], opts());
    let got = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn reply_from_another_source_port_is_ignored() {
    let up = TestUpstream::start(
        |q| vec![Out::Spoof(answer(q, 66)), Out::Reply(answer(q, 1))],
        |_| None,
        false,
    )
    .await;
    let fwd = forwarder(&[&up], opts());
    let got = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn reply_for_another_question_is_ignored_but_case_differences_are_not() {
    let up = TestUpstream::start(
        |q| {
            let mut other = answer(q, 66);
            *other.queries_mut() = vec![query("evil.example.com.")];
            let mut upper = answer(q, 1);
            *upper.queries_mut() = vec![query("WWW.EXAMPLE.COM.")];
            vec![Out::Reply(other), Out::Reply(upper)]
        },
        |_| None,
        false,
    )
    .await;
    let fwd = forwarder(&[&up], opts());
    let got = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn query_is_sent_with_rd_and_edns_payload_1232() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let up = {
        let seen = Arc::clone(&seen);
        TestUpstream::udp(move |q| {
            *seen.lock().unwrap() = Some((q.recursion_desired(), q.max_payload()));
            answer(q, 1)
        })
        .await
    };
    let fwd = forwarder(&[&up], opts());
    fwd.resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some((true, 1232)));
}

#[tokio::test]
async fn truncated_udp_reply_is_asked_again_over_tcp_and_the_tcp_answer_cached() {
    let up = TestUpstream::start(
        |q| {
            let mut tc = response(q, ResponseCode::NoError);
            tc.set_truncated(true);
            vec![Out::Reply(tc)]
        },
        |q| {
            let mut m = response(q, ResponseCode::NoError);
            for i in 1..=3 {
                m.add_answer(a(q.queries()[0].name(), 300, i));
            }
            Some(m)
        },
        false,
    )
    .await;
    let fwd = forwarder(&[&up], opts());
    let q = query("big.example.com.");
    let t0 = Instant::now();
    let got = fwd.resolve(&q, t0).await.unwrap();
    assert_eq!(addresses(&got).len(), 3);
    assert!(!got.truncated());
    assert_eq!((up.udp_count(), up.tcp_count()), (1, 1));
    let again = fwd.resolve(&q, t0).await.unwrap();
    assert_eq!(addresses(&again).len(), 3);
    assert_eq!((up.udp_count(), up.tcp_count()), (1, 1), "not cached");
}

#[tokio::test]
async fn silent_upstream_is_passed_over_for_the_next_which_is_then_tried_first() {
    let silent = TestUpstream::start(|_| vec![], |_| None, false).await;
    let good = TestUpstream::udp(|q| answer(q, 2)).await;
    let fwd = forwarder(&[&silent, &good], opts());
    let got = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!((silent.udp_count(), good.udp_count()), (1, 1));
    fwd.resolve(&query("mail.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!((silent.udp_count(), good.udp_count()), (1, 2));
}

#[tokio::test]
async fn servfail_upstream_is_passed_over_for_the_next() {
    let failing = TestUpstream::udp(|q| response(q, ResponseCode::ServFail)).await;
    let good = TestUpstream::udp(|q| answer(q, 2)).await;
    let fwd = forwarder(&[&failing, &good], opts());
    let got = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap();
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!((failing.udp_count(), good.udp_count()), (1, 1));
}

#[tokio::test]
async fn refused_by_every_upstream_is_an_error_naming_each_and_not_cached() {
    let one = TestUpstream::udp(|q| response(q, ResponseCode::Refused)).await;
    let two = TestUpstream::udp(|q| response(q, ResponseCode::Refused)).await;
    let fwd = forwarder(
        &[&one, &two],
        ForwardOpts {
            attempts: 2,
            ..opts()
        },
    );
    let q = query("www.example.com.");
    let err = fwd.resolve(&q, Instant::now()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ForwardError::Failed { .. }), "{msg}");
    assert!(msg.contains("www.example.com."), "{msg}");
    assert!(
        msg.contains(&format!("{} over UDP: answered REFUSED", one.addr)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} over UDP: answered REFUSED", two.addr)),
        "{msg}"
    );
    fwd.resolve(&q, Instant::now()).await.unwrap_err();
    assert_eq!(one.udp_count() + two.udp_count(), 4);
}

#[tokio::test]
async fn looping_cname_chain_is_an_error() {
    let up = TestUpstream::udp(|q| {
        let mut m = response(q, ResponseCode::NoError);
        m.add_answer(cname("www.example.com.", "a.example.net."));
        m.add_answer(cname("a.example.net.", "b.example.net."));
        m.add_answer(cname("b.example.net.", "a.example.net."));
        m
    })
    .await;
    let fwd = forwarder(
        &[&up],
        ForwardOpts {
            attempts: 1,
            ..opts()
        },
    );
    let err = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("CNAME chain loops back to a.example.net."),
        "{msg}"
    );
    assert!(msg.contains(&up.addr.to_string()), "{msg}");
}

#[tokio::test]
async fn cname_chain_of_nine_links_is_an_error() {
    let up = TestUpstream::udp(|q| {
        let mut m = response(q, ResponseCode::NoError);
        m.add_answer(cname("www.example.com.", "c1.example.net."));
        for i in 1..9 {
            m.add_answer(cname(
                &format!("c{i}.example.net."),
                &format!("c{}.example.net.", i + 1),
            ));
        }
        m.add_answer(a(&name("c9.example.net."), 300, 1));
        m
    })
    .await;
    let fwd = forwarder(
        &[&up],
        ForwardOpts {
            attempts: 1,
            ..opts()
        },
    );
    let err = fwd
        .resolve(&query("www.example.com."), Instant::now())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("CNAME chain longer than 8 links"),
        "{err}"
    );
}

#[tokio::test]
async fn answer_with_more_records_than_the_bound_is_an_error() {
    let up = TestUpstream::udp(|q| {
        let mut m = response(q, ResponseCode::NoError);
        for i in 0..11 {
            m.add_answer(a(q.queries()[0].name(), 300, i));
        }
        m
    })
    .await;
    let fwd = forwarder(
        &[&up],
        ForwardOpts {
            attempts: 1,
            max_records: 10,
            ..opts()
        },
    );
    let err = fwd
        .resolve(&query("many.example.com."), Instant::now())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("reply has 11 records, more than the limit of 10"),
        "{err}"
    );
}

#[tokio::test]
async fn nxdomain_with_soa_is_returned_and_cached() {
    let up = TestUpstream::udp(|q| {
        let mut m = response(q, ResponseCode::NXDomain);
        m.add_name_server(soa("example.com."));
        m
    })
    .await;
    let fwd = forwarder(&[&up], opts());
    let q = query("nope.example.com.");
    let t0 = Instant::now();
    let got = fwd.resolve(&q, t0).await.unwrap();
    assert_eq!(got.response_code(), ResponseCode::NXDomain);
    let again = fwd.resolve(&q, t0 + Duration::from_secs(1)).await.unwrap();
    assert_eq!(again.response_code(), ResponseCode::NXDomain);
    assert_eq!(again.name_servers().len(), 1);
    assert_eq!(up.udp_count(), 1, "negative answer not cached");
}

#[tokio::test]
async fn nxdomain_without_soa_is_returned_but_not_cached() {
    let up = TestUpstream::udp(|q| response(q, ResponseCode::NXDomain)).await;
    let fwd = forwarder(&[&up], opts());
    let q = query("nope.example.com.");
    let t0 = Instant::now();
    assert_eq!(
        fwd.resolve(&q, t0).await.unwrap().response_code(),
        ResponseCode::NXDomain
    );
    fwd.resolve(&q, t0).await.unwrap();
    assert_eq!(up.udp_count(), 2);
}

#[tokio::test]
async fn concurrent_identical_questions_share_one_upstream_query() {
    let up = TestUpstream::start(|q| vec![Out::Reply(answer(q, 1))], |_| None, true).await;
    let fwd = forwarder(&[&up], opts());
    let t0 = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let fwd = fwd.clone();
            // Spelled differently: coalescing ignores case, as the cache does.
            let q = query(if i % 2 == 0 {
                "www.example.com."
            } else {
                "WWW.example.COM."
            });
            tokio::spawn(async move { (fwd.resolve(&q, t0).await, q) })
        })
        .collect();
    wait_until("19 questions to join the first", || {
        fwd.stats().coalesced == 19
    })
    .await;
    up.release.notify_one();
    for c in clients {
        let (got, q) = c.await.unwrap();
        let got = got.unwrap();
        assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(
            got.queries()[0].name().eq_case(q.name()),
            "asker's spelling"
        );
    }
    assert_eq!(up.udp_count(), 1);
    assert_eq!(fwd.stats().exchanges, 1);
}

#[tokio::test]
async fn question_beyond_the_in_flight_bound_is_refused_as_busy_at_once() {
    let up = TestUpstream::start(|q| vec![Out::Reply(answer(q, 1))], |_| None, true).await;
    let fwd = forwarder(
        &[&up],
        ForwardOpts {
            max_in_flight: 1,
            ..opts()
        },
    );
    let t0 = Instant::now();
    let first = {
        let fwd = fwd.clone();
        tokio::spawn(async move { fwd.resolve(&query("one.example.com."), t0).await })
    };
    wait_until("the first exchange to reach the upstream", || {
        up.udp_count() == 1
    })
    .await;
    let err = fwd
        .resolve(&query("two.example.com."), t0)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Busy { limit: 1, .. }), "{err}");
    assert!(err.to_string().contains("two.example.com."), "{err}");
    up.release.notify_one();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(fwd.in_flight(), 0);
    assert_eq!(up.udp_count(), 1);
}

// ---------------------------------------------------------------------------
// dnsmasq
// ---------------------------------------------------------------------------

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A dnsmasq started by the test, killed (by pid) when dropped.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn name_served_by_a_real_dnsmasq_is_forwarded() {
    assert!(
        std::path::Path::new(DNSMASQ).exists(),
        "{DNSMASQ} is missing: run scripts/setup.sh (Debian package dnsmasq-base)"
    );
    let port = free_udp_port();
    let child = Command::new(DNSMASQ)
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--address=/example.test/192.0.2.7",
            // dnsmasq answers its own names with TTL 0 (not cacheable) by default.
            "--local-ttl=60",
        ])
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {DNSMASQ}: {e}"));
    let _guard = Dnsmasq(child);
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let fwd = Forwarder::new(
        Upstreams::new(vec![upstream]).unwrap(),
        Arc::new(Cache::default()),
        ForwardOpts {
            timeout: Duration::from_millis(200),
            attempts: 1,
            ..ForwardOpts::default()
        },
    );
    // Wait until dnsmasq answers: failures are not cached, so asking again is
    // the poll.
    let q = query("www.example.test.");
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match fwd.resolve(&q, Instant::now()).await {
            Ok(m) => break m,
            Err(e) => assert!(Instant::now() < deadline, "dnsmasq never answered: {e}"),
        }
    };
    assert_eq!(got.response_code(), ResponseCode::NoError);
    assert_eq!(addresses(&got), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert!(
        fwd.cache().get(&q, Instant::now()).is_some(),
        "answer cached"
    );
}
