//! The proxy end to end on loopback: real backends (hyper, some behind
//! TLS), a table compiled from API objects, requests from real clients
//! (raw TCP for what well-behaved clients never send, tokio-rustls for
//! TLS), tables swapped under load. Everything binds 127.0.0.1 only.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::World;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_gateway::metrics::Metrics;
use weft_gateway::server::{AccessLog, Limits, Proxy};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// (chain PEM, key PEM, leaf DER) for `names`, signed by `ca`.
fn leaf(ca: &Ca, names: &[&str]) -> (String, String, CertificateDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (
        format!("{}{}", cert.pem(), ca.pem()),
        key.serialize_pem(),
        cert.der().clone(),
    )
}

fn roots(ca: &Ca) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTP backend on 127.0.0.1 answering every request with what it saw,
/// as JSON; with `tls`, behind TLS with that certificate.
async fn backend(name: &'static str, tls: Option<(String, String)>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|(chain, key)| {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pki_types::pem::PemObject::pem_slice_iter(chain.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = rustls_pki_types::pem::PemObject::from_pem_slice(key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let is_tls = acceptor.is_some();
                let service = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let headers: serde_json::Map<String, Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        let body = json!({"backend": name, "tls": is_tls, "uri": req.uri().to_string(), "headers": headers, "version": format!("{:?}", req.version())});
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(body.to_string()),
                        )))
                    },
                );
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(s), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy on 127.0.0.1 serving `world`'s table, its ports 80 and 443 (and
/// any other) on ephemeral ports.
fn proxy(world: &World, ports: &[u16]) -> Arc<Proxy> {
    proxy_with(world, ports, Limits::default())
}

fn proxy_with(world: &World, ports: &[u16], limits: Limits) -> Arc<Proxy> {
    let p = Proxy::new(
        "127.0.0.1".parse().unwrap(),
        limits,
        AccessLog::Off,
        Metrics::new(),
    );
    for port in ports {
        p.remap_port(*port, 0);
    }
    let errors = p.swap(world.compile_full().table);
    assert!(errors.is_empty(), "{errors:?}");
    p
}

/// One request over a fresh connection (`Connection: close`), the raw
/// response back.
async fn raw(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy answered within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(port: u16, host: &str, path: &str) -> (u16, String) {
    let resp = raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    status_and_body(&resp)
}

fn status_and_body(resp: &str) -> (u16, String) {
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A request over TLS with `sni`, trusting only `roots`; the leaf the
/// server presented and the response.
async fn tls_get(
    port: u16,
    sni: &str,
    roots: rustls::RootCertStore,
    path: &str,
) -> Result<(CertificateDer<'static>, (u16, String)), String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok((leaf, status_and_body(&String::from_utf8_lossy(&out))))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("backend JSON: {e}: {body:?}"))
}

const TWO_HOSTS: &str = r#"
rules:
- host: a.example.com
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}]}
- host: b.example.com
  http: {paths: [{path: /api, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_host_and_path_with_forwarded_headers_and_a_request_id() {
    let (a, b) = (backend("a", None).await, backend("b", None).await);
    let w = World::new().service_at("a", a).service_at("b", b).ingress(
        "web",
        "2026-01-01T00:00:00Z",
        TWO_HOSTS,
    );
    let p = proxy(&w, &[80]);
    let port = p.bound_port(80).unwrap();
    let (status, body) = get(port, "a.example.com", "/x/../hello?q=1").await;
    assert_eq!(status, 200);
    let seen = json_of(&body);
    assert_eq!(seen["backend"], "a");
    assert_eq!(
        seen["uri"], "/hello?q=1",
        "the path is forwarded normalized"
    );
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["host"], "a.example.com");
    assert_eq!(seen["headers"]["x-forwarded-host"], "a.example.com");
    assert_eq!(
        seen["headers"]["x-forwarded-port"], "80",
        "the port the table serves"
    );
    let resp = raw(port, "GET /api/v1 HTTP/1.1\r\nHost: B.example.com:80\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n").await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 200);
    let seen = json_of(&body);
    assert_eq!(seen["backend"], "b");
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    let id = header(&resp, "x-request-id").expect("a request id on the response");
    assert_eq!(
        seen["headers"]["x-request-id"], id,
        "the backend saw the same request id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_no_valid_backend_500_and_no_ready_endpoint_503() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- host: h.example.com
  http:
    paths:
    - {path: /ok, pathType: Exact, backend: {service: {name: a, port: {number: 80}}}}
    - {path: /gone, pathType: Prefix, backend: {service: {name: nosuch, port: {number: 80}}}}
    - {path: /idle, pathType: Prefix, backend: {service: {name: idle, port: {number: 80}}}}
"#,
    );
    let p = proxy(&w, &[80]);
    let port = p.bound_port(80).unwrap();
    assert_eq!(get(port, "h.example.com", "/ok").await.0, 200);
    assert_eq!(get(port, "h.example.com", "/nothing").await.0, 404);
    assert_eq!(get(port, "h.example.com", "/gone").await.0, 500);
    assert_eq!(get(port, "h.example.com", "/idle").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_are_refused_with_400_and_nothing_behind_them_is_answered() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).route(
        common::ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        "rules: [{backendRefs: [{name: a, port: 80}]}]",
    );
    let p = proxy(&w, &[80]);
    let port = p.bound_port(80).unwrap();
    // Well-framed requests on one connection — a length, a chunked body
    // with an extension and a trailer, then a GET — are all answered (the
    // refusals below are not a dead proxy, nor a scanner lost in a body).
    let ok = raw(
        port,
        "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi\
         POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n0\r\nT: v\r\n\r\n\
         GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok.matches("HTTP/1.1 200 ").count(), 3, "{ok}");
    // Content-Length with Transfer-Encoding (either order), several
    // lengths (equal or not, as fields or a list), a coding other than
    // chunked: 400, and what was smuggled behind is never answered (the
    // connection ends although the client did not ask it to).
    for attack in [
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhiGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nhiGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ] {
        let resp = raw(port, attack).await;
        assert_eq!(status_and_body(&resp).0, 400, "{attack:?} → {resp}");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{attack:?} → {resp}");
    }
    // Behind a well-framed request on the same connection: it is answered,
    // the attack is refused.
    let resp = raw(port, "GET /first HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert_eq!(resp.matches("HTTP/1.1 400 ").count(), 1, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_terminated_with_the_certificate_the_sni_chooses() {
    let ca = new_ca("test CA");
    let (a_chain, a_key, a_der) = leaf(&ca, &["a.example.com"]);
    let (b_chain, b_key, b_der) = leaf(&ca, &["b.example.com"]);
    let (a, b) = (backend("a", None).await, backend("b", None).await);
    let w = World::new()
        .service_at("a", a)
        .service_at("b", b)
        .tls_secret_pem("a-tls", &a_chain, &a_key)
        .tls_secret_pem("b-tls", &b_chain, &b_key)
        .ingress(
            "web",
            "2026-01-01T00:00:00Z",
            &format!("tls: [{{hosts: [a.example.com], secretName: a-tls}}, {{hosts: [b.example.com], secretName: b-tls}}]\n{TWO_HOSTS}"),
        );
    let p = proxy(&w, &[80, 443]);
    let port = p.bound_port(443).unwrap();
    let (leaf_a, (status, body)) = tls_get(port, "a.example.com", roots(&ca), "/")
        .await
        .unwrap();
    assert_eq!(leaf_a, a_der);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["headers"]["x-forwarded-proto"], "https");
    let (leaf_b, (status, _)) = tls_get(port, "b.example.com", roots(&ca), "/api")
        .await
        .unwrap();
    assert_eq!(leaf_b, b_der);
    assert_eq!(status, 200);
    let unknown = tls_get(port, "c.example.com", roots(&ca), "/").await;
    assert!(
        unknown.is_err(),
        "a handshake for an unknown name must fail: {unknown:?}"
    );
    // And the HTTP port redirects TLS hosts.
    let resp = raw(
        p.bound_port(80).unwrap(),
        "GET /p?x=1 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&resp).0, 308);
    assert_eq!(
        header(&resp, "location"),
        Some("https://a.example.com/p?x=1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_by_the_next_handshake() {
    let ca = new_ca("test CA");
    let (c1, k1, d1) = leaf(&ca, &["a.example.com"]);
    let (c2, k2, d2) = leaf(&ca, &["a.example.com"]);
    let a = backend("a", None).await;
    let spec = format!("tls: [{{hosts: [a.example.com], secretName: a-tls}}]\n{TWO_HOSTS}");
    let w = World::new()
        .service_at("a", a)
        .tls_secret_pem("a-tls", &c1, &k1)
        .ingress("web", "2026-01-01T00:00:00Z", &spec);
    let p = proxy(&w, &[80, 443]);
    let port = p.bound_port(443).unwrap();
    assert_eq!(
        tls_get(port, "a.example.com", roots(&ca), "/")
            .await
            .unwrap()
            .0,
        d1
    );
    let rotated = w.tls_secret_pem("a-tls", &c2, &k2);
    assert!(p.swap(rotated.compile_full().table).is_empty());
    assert_eq!(
        tls_get(port, "a.example.com", roots(&ca), "/")
            .await
            .unwrap()
            .0,
        d2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_hands_the_client_the_backends_own_certificate() {
    let backend_ca = new_ca("backend CA");
    let (chain, key, der) = leaf(&backend_ca, &["secure.example.com"]);
    let a = backend("a", Some((chain, key))).await;
    let w = World::new()
        .service_at("a", a)
        .gateway_listeners("- {name: pass, port: 8443, protocol: TLS, tls: {mode: Passthrough}}\n")
        .tls_route("secure", "parentRefs: [{name: gw}]\nhostnames: [secure.example.com]\nrules: [{backendRefs: [{name: a, port: 80}]}]\n");
    let p = proxy(&w, &[8443]);
    let port = p.bound_port(8443).unwrap();
    let (seen_leaf, (status, body)) = tls_get(port, "secure.example.com", roots(&backend_ca), "/")
        .await
        .unwrap();
    assert_eq!(
        seen_leaf, der,
        "the client must see the backend's certificate"
    );
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["tls"], true);
    assert!(
        json_of(&body)["headers"].get("x-forwarded-for").is_none(),
        "passthrough does not touch HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_encryption_reaches_the_backend_over_tls_verified_with_the_policys_ca() {
    let backend_ca = new_ca("backend CA");
    let (chain, key, _) = leaf(&backend_ca, &["a.default.svc"]);
    let a = backend("a", Some((chain, key))).await;
    let route = "rules: [{backendRefs: [{name: a, port: 80}]}]";
    let w = World::new()
        .service_at("a", a)
        .ca_config_map_pem("a-ca", &backend_ca.pem())
        .policy("a", "a-ca", "a.default.svc")
        .route(common::ROUTE_NS, "r", "2026-01-01T00:00:00Z", route);
    let p = proxy(&w, &[80]);
    let (status, body) = get(p.bound_port(80).unwrap(), "h", "/").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["tls"], true, "the backend saw TLS");
    // A policy naming another hostname fails verification: 502, never plaintext.
    let wrong = World::new()
        .service_at("a", a)
        .ca_config_map_pem("a-ca", &backend_ca.pem())
        .policy("a", "a-ca", "other.default.svc")
        .route(common::ROUTE_NS, "r", "2026-01-01T00:00:00Z", route);
    let p = proxy(&wrong, &[80]);
    assert_eq!(get(p.bound_port(80).unwrap(), "h", "/").await.0, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_edits_under_load_fail_no_request() {
    let (a, b) = (backend("a", None).await, backend("b", None).await);
    let to = |svc: &str| format!("rules: [{{backendRefs: [{{name: {svc}, port: 80}}]}}]");
    let base = World::new().service_at("a", a).service_at("b", b);
    let v1 = base
        .clone()
        .route(common::ROUTE_NS, "r", "2026-01-01T00:00:00Z", &to("a"));
    let v2 = base.route(common::ROUTE_NS, "r", "2026-01-01T00:00:00Z", &to("b"));
    let p = proxy(&v1, &[80]);
    let port = p.bound_port(80).unwrap();
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (failed, done, seen_b) = (failed.clone(), done.clone(), seen_b.clone());
        clients.push(tokio::spawn(async move {
            // Keep-alive connections, as a load generator holds them.
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build_http::<Full<Bytes>>();
            for _ in 0..500 {
                let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                    .header("host", "h")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let body = r
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["backend"] == "b")
                        {
                            seen_b.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut swaps = 0;
    while done.load(Ordering::Relaxed) < 2000 {
        let t = if swaps % 2 == 0 { &v2 } else { &v1 };
        assert!(p.swap(t.compile_full().table).is_empty());
        swaps += 1;
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        swaps >= 10,
        "only {swaps} table swaps happened during the load"
    );
    assert!(
        seen_b.load(Ordering::Relaxed) > 0,
        "no request saw the edited route"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during {swaps} route edits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_to_clients_by_alpn_and_h2c_reaches_backends_that_ask_for_it() {
    let ca = new_ca("test CA");
    let (chain, key, _) = leaf(&ca, &["a.example.com"]);
    let a = backend("a", None).await;
    let mut w = World::new()
        .service_at("a", a)
        .tls_secret_pem("a-tls", &chain, &key)
        .ingress(
            "web",
            "2026-01-01T00:00:00Z",
            &format!("tls: [{{hosts: [a.example.com], secretName: a-tls}}]\n{TWO_HOSTS}"),
        );
    // The Service port asks for h2c (Gateway API / KEP-3726 appProtocol).
    let i = w
        .services
        .iter()
        .position(|s| s.metadata.name.as_deref() == Some("a"))
        .unwrap();
    let mut svc = (*w.services[i]).clone();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].app_protocol =
        Some("kubernetes.io/h2c".into());
    w.services[i] = Arc::new(svc);
    let p = proxy(&w, &[80, 443]);
    let port = p.bound_port(443).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("a.example.com").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the gateway chose h2"
    );
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.example.com/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "the backend was spoken to over h2c: {seen}"
    );
    assert_eq!(seen["backend"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_request_timeout_answers_504() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).route(
        common::ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        "rules: [{timeouts: {request: 300ms}, backendRefs: [{name: a, port: 80}]}]",
    );
    let p = proxy(&w, &[80]);
    let port = p.bound_port(80).unwrap();
    assert_eq!(get(port, "h", "/fast").await.0, 200);
    let started = std::time::Instant::now();
    assert_eq!(get(port, "h", "/slow").await.0, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_and_oversized_headers_431() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).route(
        common::ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        "rules: [{backendRefs: [{name: a, port: 80}]}]",
    );
    let limits = Limits {
        max_body_bytes: 1024,
        max_header_bytes: 16 * 1024,
        ..Limits::default()
    };
    let p = proxy_with(&w, &[80], limits);
    let port = p.bound_port(80).unwrap();
    let small = raw(
        port,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_and_body(&small).0, 200, "{small}");
    let big = raw(
        port,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&big).0, 413, "{big}");
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    let resp = raw(port, &huge_header).await;
    assert_eq!(
        status_and_body(&resp).0,
        431,
        "{}",
        &resp[..resp.len().min(200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).route(
        common::ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        "rules: [{backendRefs: [{name: a, port: 80}]}]",
    );
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let p = proxy_with(&w, &[80], limits);
    let port = p.bound_port(80).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Slowloris: a request line and one header, then nothing.
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the connection was still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early: {:?}",
        started.elapsed()
    );
    // The same proxy still answers a client that finishes its request.
    assert_eq!(get(port, "h", "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let a = backend("a", None).await;
    let w = World::new().service_at("a", a).route(
        common::ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        "rules: [{backendRefs: [{name: a, port: 80}]}]",
    );
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let p = proxy_with(&w, &[80], limits);
    let port = p.bound_port(80).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "first answer"
    );
    // Then nothing: the proxy closes the connection.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "an idle connection was still open after 5 s");
}
