//! End-to-end tests on loopback with ephemeral ports.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use weft_agnhost::http;
use weft_agnhost::net::hostname;
use weft_agnhost::netexec::{Binds, Netexec, NetexecOptions};
use weft_agnhost::serve_hostname::{ServeHostname, ServeHostnameOptions};

const T: Duration = Duration::from_secs(10);

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn loopback_binds() -> Binds {
    Binds {
        http: vec![lo(0)],
        udp: vec![lo(0)],
        sctp: vec![],
    }
}

async fn start(opts: NetexecOptions) -> Netexec {
    Netexec::start(opts, loopback_binds()).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (code, body) = http::get(&format!("http://{addr}{path}"), T).await.unwrap();
    (code, String::from_utf8(body).unwrap())
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(lo(0)).unwrap();
    l.local_addr().unwrap().port()
}

async fn udp_ask(addr: SocketAddr, msg: &str) -> (String, SocketAddr) {
    let sock = UdpSocket::bind(lo(0)).await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(msg.as_bytes(), addr).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(T, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netexec_http_endpoints() {
    let server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];

    assert_eq!(get(addr, "/hostname").await, (200, hostname()));
    assert_eq!(get(addr, "/hostName").await, (200, hostname()));
    assert_eq!(get(addr, "/echo?msg=hello%20world").await.1, "hello world");
    assert_eq!(
        get(addr, "/echo?msg=gone&code=404").await,
        (404, "gone".into())
    );
    assert_eq!(get(addr, "/healthz").await, (200, String::new()));
    assert_eq!(get(addr, "/readyz").await, (200, "ok".into()));
    let (code, now) = get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(now.starts_with("NOW: "), "{now}");
    assert!(get(addr, "/anything/else").await.1.starts_with("NOW: "));
    // Redirects are followed by the client, as Go's http.Client does.
    assert_eq!(
        get(addr, "/redirect?location=/echo%3Fmsg%3Dmoved").await,
        (200, "moved".into())
    );
    // The shell endpoint is off unless --enable-shell.
    assert_eq!(get(addr, "/shell?cmd=true").await.0, 403);
    server.begin_termination();
    assert_eq!(get(addr, "/readyz").await, (503, "shutting down".into()));
    assert_eq!(get(addr, "/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netexec_clientip_and_keepalive() {
    let server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let local = conn.local_addr().unwrap();
    conn.write_all(b"GET /clientip HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?msg=two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(T, conn.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert!(out.contains(&format!("\r\n\r\n{local}HTTP/1.1")), "{out}");
    assert!(out.ends_with("\r\n\r\ntwo"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netexec_dial_http_and_udp() {
    let client = start(NetexecOptions::default()).await;
    let target = start(NetexecOptions::default()).await;
    let c = client.http_addrs()[0];
    let th = target.http_addrs()[0];
    let tu = target.udp_addrs()[0];
    let want = format!("{{\"responses\":[\"{}\"]}}", hostname());

    let (code, body) = get(
        c,
        &format!(
            "/dial?request=hostname&protocol=http&host=127.0.0.1&port={}&tries=1",
            th.port()
        ),
    )
    .await;
    assert_eq!((code, body), (200, want.clone()));

    let (_, body) = get(
        c,
        &format!(
            "/dial?request=hostname&protocol=udp&host=127.0.0.1&port={}&tries=1",
            tu.port()
        ),
    )
    .await;
    assert_eq!(body, want);

    // The request may carry its own query.
    let (_, body) = get(
        c,
        &format!(
            "/dial?request=echo?msg=x&protocol=http&host=127.0.0.1&port={}&tries=2",
            th.port()
        ),
    )
    .await;
    assert_eq!(body, r#"{"responses":["x","x"]}"#);

    let (_, body) = get(
        c,
        &format!(
            "/dial?request=echo%20hi&protocol=udp&host=localhost&port={}",
            tu.port()
        ),
    )
    .await;
    assert_eq!(body, r#"{"responses":["hi"]}"#);

    // A leading slash gives "//hostname", which Go's mux redirects to "/hostname".
    let (_, body) = get(
        c,
        &format!(
            "/dial?request=/hostname&protocol=http&host=127.0.0.1&port={}",
            th.port()
        ),
    )
    .await;
    assert_eq!(body, want);

    // Failures are listed under "errors" and no responses are reported.
    let closed = closed_port();
    let (code, body) = get(
        c,
        &format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={closed}&tries=2"),
    )
    .await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(
        errors[0].as_str().unwrap().contains("connection refused"),
        "{body}"
    );
    assert!(v.get("responses").is_none(), "{body}");

    assert_eq!(get(c, "/dial?host=127.0.0.1&port=1").await.0, 400);
    assert_eq!(
        get(c, "/dial?request=x&host=127.0.0.1&port=1&protocol=nope")
            .await
            .0,
        400
    );
    assert_eq!(
        get(c, "/dial?request=x&host=127.0.0.1&port=1&tries=z")
            .await
            .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netexec_udp_commands() {
    let server = start(NetexecOptions::default()).await;
    let u = server.udp_addrs()[0];
    assert_eq!(udp_ask(u, "hostname").await.0, hostname());
    assert_eq!(udp_ask(u, "echo hello\n").await.0, "hello");
    let (answer, local) = udp_ask(u, "clientip").await;
    assert_eq!(answer, local.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netexec_override_and_exit() {
    let opts = NetexecOptions {
        http_override: "/echo?msg=over".into(),
        udp_port: None,
        ..NetexecOptions::default()
    };
    let server = Netexec::start(
        opts,
        Binds {
            http: vec![lo(0)],
            ..Binds::default()
        },
    )
    .await
    .unwrap();
    let addr = server.http_addrs()[0];
    assert_eq!(get(addr, "/hostname").await.1, "over");

    let mut server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];
    assert_eq!(get(addr, "/exit?code=3").await.0, 200);
    let code = tokio::time::timeout(T, server.wait_exit()).await.unwrap();
    assert_eq!(code, 3);
}

#[test]
fn connect_tcp_success_and_refused() {
    let listener = std::net::TcpListener::bind(lo(0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ok = weft_agnhost::main(vec![
        "connect".into(),
        format!("127.0.0.1:{port}"),
        "--timeout=5s".into(),
    ]);
    assert_eq!(ok, 0);
    let closed = closed_port();
    let refused = weft_agnhost::main(vec![
        "connect".into(),
        format!("127.0.0.1:{closed}"),
        "--timeout".into(),
        "2s".into(),
    ]);
    assert_eq!(refused, 1);
    let bad = weft_agnhost::main(vec!["connect".into(), "no-port".into()]);
    assert_eq!(bad, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_udp_to_netexec() {
    let server = start(NetexecOptions::default()).await;
    let port = server.udp_addrs()[0].port();
    let code = tokio::task::spawn_blocking(move || {
        weft_agnhost::main(vec![
            "connect".into(),
            format!("127.0.0.1:{port}"),
            "--protocol=udp".into(),
            "--timeout=3s".into(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let closed = closed_port();
    let code = tokio::task::spawn_blocking(move || {
        weft_agnhost::main(vec![
            "connect".into(),
            format!("127.0.0.1:{closed}"),
            "--protocol=udp".into(),
            "--timeout=2s".into(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
}

#[test]
fn bad_invocations_exit_2() {
    let run = |v: &[&str]| weft_agnhost::main(v.iter().map(|s| s.to_string()).collect());
    assert_eq!(run(&[]), 2);
    assert_eq!(run(&["nosuchcommand"]), 2);
    assert_eq!(run(&["netexec", "--bogus=1"]), 2);
    assert_eq!(run(&["netexec", "--http-port=abc"]), 2);
    assert_eq!(run(&["netexec", "--http-port"]), 2);
    assert_eq!(run(&["netexec", "extra-arg"]), 2);
    assert_eq!(run(&["connect"]), 2);
    assert_eq!(run(&["connect", "127.0.0.1:1", "--timeout=5"]), 2);
    assert_eq!(run(&["connect", "127.0.0.1:1", "--protocol=icmp"]), 2);
    assert_eq!(run(&["serve-hostname", "--port=-5"]), 2);
    assert_eq!(run(&["netexec", "--help"]), 0);
}

#[test]
fn serve_hostname_http_flag_conflict_is_fatal() {
    // --udp with the default --http=true is rejected, as upstream.
    assert_eq!(
        weft_agnhost::main(vec!["serve-hostname".into(), "--udp".into()]),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_hostname_modes() {
    let raw = ServeHostnameOptions {
        tcp: true,
        udp: true,
        http: false,
        close: false,
        port: 0,
    };
    let s = ServeHostname::start(&raw, lo(0)).await.unwrap();
    let mut conn = TcpStream::connect(s.tcp_addr.unwrap()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(T, conn.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, hostname());
    assert_eq!(udp_ask(s.udp_addr.unwrap(), "x").await.0, hostname());

    let web = ServeHostnameOptions {
        tcp: false,
        udp: false,
        http: true,
        close: true,
        port: 0,
    };
    let s = ServeHostname::start(&web, lo(0)).await.unwrap();
    let addr = s.http_addr.unwrap();
    assert_eq!(get(addr, "/any/path").await, (200, hostname()));
}

/// Sends `request` on a fresh connection and returns what the server wrote
/// until it closed the connection (a reset ends the read like a close).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(T, conn.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_size_overflow_is_rejected_and_server_keeps_serving() {
    let server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];
    // A first chunk, then a size no length counter can add to, then data
    // until the body limit is passed.
    let mut request = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        1\r\na\r\nffffffffffffffff\r\n"
        .to_vec();
    request.resize(request.len() + http::MAX_BODY, b'x');
    let out = raw_exchange(addr, &request).await;
    assert!(
        out.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{out}"
    );
    assert_eq!(get(addr, "/hostname").await, (200, hostname()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_size_gets_400_and_close() {
    let server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];
    let out = raw_exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n400 Bad Request"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lines_use_go_reason_phrases() {
    let server = start(NetexecOptions::default()).await;
    let addr = server.http_addrs()[0];
    let out = raw_exchange(
        addr,
        b"GET /echo?msg=big&code=413 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // hyper's own phrase for 413 is "Payload Too Large"; Go says this.
    assert!(
        out.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{out}"
    );
}
