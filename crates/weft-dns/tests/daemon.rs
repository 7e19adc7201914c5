//! `weft dns` as a process against a real API server (weft's embedded one, in
//! process on 127.0.0.1): the zone follows Services through the shared watch
//! layer, answers come over real UDP and TCP sockets, `/ready` waits for the
//! first zone, and metrics count what was served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use weft_apiserver::{ApiServer, ApiServerConfig};
use weft_dns::daemon::{self, DnsConfig};
use weft_dns::zone;

async fn start_api(tag: &str) -> (Arc<ApiServer>, kube::Client, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("weft-dns-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = ApiServer::open(ApiServerConfig {
        state_dir: dir.clone(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api.clone().serve(listener));
    let cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    (api, kube::Client::try_from(cfg).unwrap(), dir)
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn config(dns: SocketAddr, metrics: SocketAddr) -> DnsConfig {
    DnsConfig {
        zone: zone::Config::new(Name::from_ascii("cluster.local.").unwrap()),
        listen: vec![dns],
        sockets_per_addr: 2,
        upstreams: None,
        cache_entries: 100,
        metrics_addr: Some(metrics),
    }
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u16
}

fn udp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query(name, t);
    s.send_to(&q, server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).expect("a UDP answer within 2 s");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.id(), u16::from_be_bytes([q[0], q[1]]));
    m
}

fn tcp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query(name, t);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// An HTTP/1.0 GET on the metrics port: (status, body).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .unwrap()
}

/// Polls `f` (on a blocking thread, it does socket I/O) until it is `Some`.
async fn poll<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl Fn() -> Option<T> + Send + Sync + 'static,
) -> T {
    let f = Arc::new(f);
    let deadline = Instant::now() + limit;
    loop {
        let g = f.clone();
        if let Some(v) = tokio::task::spawn_blocking(move || g()).await.unwrap() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_created_in_the_api_answers_within_a_second_and_is_gone_after_delete() {
    let (_api, client, dir) = start_api("follow").await;
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = tokio::spawn(daemon::run(client.clone(), config(dns, metrics)));

    // Ready once the first zone is built from complete listings.
    poll("/ready 200", Duration::from_secs(20), move || {
        get(metrics, "/ready").filter(|(s, _)| *s == 200)
    })
    .await;
    // The API server's own Service is in that first zone.
    let m = udp(dns, "kubernetes.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&m), ["10.96.0.1"], "{m}");

    let services: Api<Service> = Api::namespaced(client, "default");
    let created = services
        .create(&PostParams::default(), &service("shop"))
        .await
        .unwrap();
    let asked = Instant::now();
    let ip = created.spec.unwrap().cluster_ip.unwrap();
    let name = "shop.default.svc.cluster.local.";
    let got = poll(
        "the new Service's A record",
        Duration::from_secs(1),
        move || {
            let m = udp(dns, name, RecordType::A);
            (m.response_code() == ResponseCode::NoError && !m.answers().is_empty())
                .then(|| a_records(&m))
        },
    )
    .await;
    let took = asked.elapsed();
    assert_eq!(got, std::slice::from_ref(&ip));
    eprintln!("new Service answered {took:?} after the API accepted it");

    // TCP serves the same zone; SRV for the named port.
    let m = tcp(
        dns,
        "_http._tcp.shop.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let srv: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
    assert_eq!(srv, ["0 100 80 shop.default.svc.cluster.local."], "{m}");

    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    poll(
        "NXDOMAIN after the delete",
        Duration::from_secs(5),
        move || {
            (udp(dns, name, RecordType::A).response_code() == ResponseCode::NXDomain).then_some(())
        },
    )
    .await;

    // Every answer above was counted, by transport, type and rcode (the
    // UDP threads merge their tallies within 100 ms).
    let text = poll(
        "the UDP answers in /metrics",
        Duration::from_secs(5),
        move || {
            get(metrics, "/metrics").filter(|(status, text)| {
                *status == 200
                    && text.contains(
                        r#"weft_dns_queries_total{transport="udp",qtype="A",rcode="NXDOMAIN"}"#,
                    )
            })
        },
    )
    .await
    .1;
    assert!(
        text.contains(r#"weft_dns_queries_total{transport="tcp",qtype="SRV",rcode="NOERROR"} 1"#),
        "{text}"
    );
    assert!(text.contains("weft_dns_zone_syncs_total"), "{text}");
    server.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_api_the_server_answers_but_is_not_ready() {
    // An API that never answers: nothing listens on this port.
    let cfg = kube::Config::new(format!("http://127.0.0.1:{}", free_port()).parse().unwrap());
    let client = kube::Client::try_from(cfg).unwrap();
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = tokio::spawn(daemon::run(client, config(dns, metrics)));
    poll("/health 200", Duration::from_secs(20), move || {
        get(metrics, "/health").filter(|(s, _)| *s == 200)
    })
    .await;
    let (status, body) = get(metrics, "/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not been built"), "{body}");
    // The schema version answers from the empty zone; names outside the
    // cluster are refused, as no upstream is configured.
    let m = udp(dns, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(m.answers().len(), 1, "{m}");
    let m = udp(dns, "example.com.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::Refused, "{m}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_an_error_naming_it() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(cfg).unwrap();
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let err = daemon::run(client, config(addr, metrics))
        .await
        .expect_err("the UDP port is taken");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("bind UDP {addr}")), "{text}");
}
