//! `weft gateway` end to end: the gateway `weft up` runs from
//! deploy/weft-gateway.yaml, reached from the external client
//! (198.51.100.5) through the gateway Service's node ports (31080 HTTP,
//! 31443 HTTPS) with curl `--resolve`, as the seeds' north-south path
//! (client → node → gateway → pod). The objects and certificates are the
//! README's: examples/gateway-certs.sh (a throw-away CA, leaves for
//! a.example.com, b.example.com and the backend's secure.default.svc) and
//! examples/gateway-tls.yaml (agnhost netexec backends, one HTTPS server of
//! its own certificate, the Gateway, routes, the BackendTLSPolicy, an
//! Ingress); the checks add a few rules of their own (EXTRAS).
//!
//! Behaviours checked, with the spec each comes from: Gateway API HTTPRoute
//! host/path matching, weights, header modifiers, RequestRedirect; TLS
//! termination by SNI (Gateway listeners' certificateRefs), TLSRoute
//! passthrough, BackendTLSPolicy re-encryption; Ingress (networking.k8s.io/v1)
//! host and path rules; Gateway and route status conditions.
//! One cluster for every check (own harness, one check at a time).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};

const NODE: &str = "192.168.1.10";
const HTTP: u16 = 31080;
const HTTPS: u16 = 31443;

struct Env {
    cluster: Cluster,
    certs: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    let kc = c.ok(&["kubeconfig"]);
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc.trim())
        .args(args)
        .output()
        .expect("run kubectl")
}

fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let out = kubectl(c, args);
    assert!(
        out.status.success(),
        "kubectl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_apply(c: &Cluster, yaml: &str) {
    let kc = c.ok(&["kubeconfig"]);
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", kc.trim(), "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A leaf `<name>.crt`/`<name>.key` for `dns`, signed by the test CA.
fn leaf(dir: &Path, name: &str, dns: &str) {
    let san = format!("subjectAltName=DNS:{dns}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={dns}"),
            "-addext",
            &san,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-copy_extensions",
            "copyall",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// curl on the external client; `-w` prints the status code last.
fn curl(e: &Env, args: &[&str]) -> (u16, String) {
    let mut all: Vec<String> = vec![
        "exec".into(),
        "--external".into(),
        "--".into(),
        "curl".into(),
        "-sS".into(),
        "--max-time".into(),
        "5".into(),
        "--cacert".into(),
        e.certs.join("ca.crt").display().to_string(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = e.cluster.weft(&refs);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {}: no status code: {text}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        body.to_string(),
    )
}

fn resolve(host: &str, port: u16) -> String {
    format!("{host}:{port}:{NODE}")
}

fn https(e: &Env, host: &str, path: &str) -> (u16, String) {
    let url = format!("https://{host}:{HTTPS}{path}");
    curl(e, &["--resolve", &resolve(host, HTTPS), &url])
}

fn http(e: &Env, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:{HTTP}{path}");
    let r = resolve(host, HTTP);
    let mut args = vec!["--resolve", r.as_str()];
    args.extend(extra);
    args.push(&url);
    curl(e, &args)
}

/// The SHA-256 fingerprint of the certificate the gateway presents for `sni`.
fn served_fingerprint(e: &Env, port: u16, sni: &str) -> String {
    let script = format!(
        "openssl s_client -connect {NODE}:{port} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let out = e
        .cluster
        .weft(&["exec", "--external", "--", "sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_fingerprint(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the checks add to examples/gateway-tls.yaml: a Service without
/// endpoints and a route with the rules only the checks need.
const EXTRAS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 0
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      containers:
      - {name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}
---
apiVersion: v1
kind: Service
metadata: {name: idle}
spec:
  selector: {app: idle}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: checks}
spec:
  parentRefs: [{name: web, sectionName: https-a}]
  hostnames: [a.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /header}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Via-Gateway, value: weft}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Served-By, value: weft-gateway}]}}
    backendRefs: [{name: web-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /gone}}]
    backendRefs: [{name: nosuch, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /idle}}]
    backendRefs: [{name: idle, port: 80}]
"#;

fn start() -> Env {
    let name = format!("gw{}", std::process::id() % 100_000);
    let cluster = Cluster {
        state: std::env::temp_dir().join(format!("weft-{name}")),
        name,
    };
    let certs = std::env::temp_dir().join(format!("weft-{}-certs", cluster.name));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).unwrap();
    let e = Env { cluster, certs };
    let out = e.cluster.ok(&["up", "--nodes", "2", "--timeout", "180"]);
    assert!(out.contains("gateway pods Ready"), "{out}");
    // The README's steps: the example's certificates, then its objects.
    let kubeconfig = e.cluster.ok(&["kubeconfig"]);
    let out = Command::new("bash")
        .arg(repo_root().join("examples/gateway-certs.sh"))
        .arg(&e.certs)
        .env("KUBECONFIG", kubeconfig.trim())
        .output()
        .expect("run examples/gateway-certs.sh");
    assert!(
        out.status.success(),
        "examples/gateway-certs.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A second certificate for a.example.com, for the rotation check.
    leaf(&e.certs, "a2", "a.example.com");
    let example = std::fs::read_to_string(repo_root().join("examples/gateway-tls.yaml")).unwrap();
    kubectl_apply(&e.cluster, &example);
    kubectl_apply(&e.cluster, EXTRAS);
    for d in ["web-a", "web-b", "secure"] {
        kubectl_ok(
            &e.cluster,
            &[
                "rollout",
                "status",
                &format!("deployment/{d}"),
                "--timeout=120s",
            ],
        );
    }
    // The table is built from the API: wait until the gateway serves the
    // routes (the route's own backend answers), not for a time.
    wait_until("the gateway to route a.example.com", 60, || {
        https(&e, "a.example.com", "/hostname").0 == 200
    });
    e
}

// --- the checks --------------------------------------------------------

fn host_and_path_routing_and_two_certificates_chosen_by_sni(e: &Env) {
    let (code, body) = https(e, "a.example.com", "/hostname");
    assert_eq!(code, 200);
    assert!(body.starts_with("web-a-"), "a.example.com/ → web-a: {body}");
    let (code, body) = https(e, "b.example.com", "/hostname");
    assert_eq!(code, 200);
    assert!(body.starts_with("web-b-"), "b.example.com → web-b: {body}");
    assert_eq!(
        served_fingerprint(e, HTTPS, "a.example.com"),
        file_fingerprint(&e.certs.join("a.crt"))
    );
    assert_eq!(
        served_fingerprint(e, HTTPS, "b.example.com"),
        file_fingerprint(&e.certs.join("b.crt"))
    );
}

fn http_redirects_to_https(e: &Env) {
    let (code, head) = http(
        e,
        "a.example.com",
        "/x?y=1",
        &["-o", "/dev/null", "-D", "/dev/stdout"],
    );
    assert_eq!(code, 301);
    assert!(
        head.to_ascii_lowercase()
            .contains("location: https://a.example.com:31443/x?y=1"),
        "{head}"
    );
    let (code, body) = http(
        e,
        "a.example.com",
        "/hostname",
        &["-L", "--resolve", &resolve("a.example.com", HTTPS)],
    );
    assert_eq!(code, 200, "after following the redirect: {body}");
    assert!(body.starts_with("web-a-"), "{body}");
}

fn passthrough_hands_the_client_the_backends_own_certificate(e: &Env) {
    // Same port as the terminating listeners: the SNI decides.
    let url = format!("https://secure.example.com:{HTTPS}/p");
    let r = resolve("secure.example.com", HTTPS);
    // The backend's certificate names secure.default.svc, not the name
    // dialled: -k here, and the certificate itself is compared below.
    let (code, body) = curl(e, &["--resolve", &r, "-k", &url]);
    assert_eq!(code, 200);
    assert_eq!(body, "secure over TLS /p");
    assert_eq!(
        served_fingerprint(e, HTTPS, "secure.example.com"),
        file_fingerprint(&e.certs.join("secure.crt")),
        "the client must see the backend's certificate, not the gateway's"
    );
}

fn reencryption_reaches_the_backend_over_tls(e: &Env) {
    let (code, body) = http(e, "reencrypt.example.com", "/r", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "secure over TLS /r");
}

fn weights_split_500_requests_about_80_20(e: &Env) {
    let url = format!("https://a.example.com:{HTTPS}/split/hostname");
    let r = resolve("a.example.com", HTTPS);
    let mut args = vec!["--resolve", r.as_str()];
    for _ in 0..500 {
        args.push(&url);
    }
    let (_, body) = curl(e, &args);
    let a = body.matches("web-a-").count();
    let b = body.matches("web-b-").count();
    assert_eq!(a + b, 500, "every request answered: {a} + {b}");
    // Binomial(500, 0.2): sd ≈ 8.9; ±4 sd.
    assert!(
        (64..=136).contains(&b),
        "web-b got {b} of 500 (want about 100)"
    );
}

fn header_modifiers_edit_request_and_response(e: &Env) {
    let (code, body) = https(e, "a.example.com", "/header");
    assert_eq!(code, 200);
    assert!(
        body.contains("X-Via-Gateway") && body.contains("weft"),
        "the backend saw the added header: {body}"
    );
    let url = format!("https://a.example.com:{HTTPS}/header");
    let r = resolve("a.example.com", HTTPS);
    let (_, head) = curl(
        e,
        &[
            "--resolve",
            &r,
            "-o",
            "/dev/null",
            "-D",
            "/dev/stdout",
            &url,
        ],
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-served-by: weft-gateway"),
        "{head}"
    );
}

fn no_match_is_404_invalid_backend_500_no_endpoint_503(e: &Env) {
    assert_eq!(https(e, "a.example.com", "/hostname").0, 200);
    assert_eq!(http(e, "nothing.example.com", "/", &[]).0, 404);
    assert_eq!(https(e, "a.example.com", "/gone").0, 500);
    assert_eq!(https(e, "a.example.com", "/idle").0, 503);
}

fn an_ingress_routes_by_host_and_path(e: &Env) {
    let (code, body) = http(e, "legacy.example.com", "/hostname", &[]);
    assert_eq!(code, 200);
    assert!(body.starts_with("web-b-"), "{body}");
    assert_eq!(
        http(e, "legacy.example.com", "/hostname/x", &[]).0,
        404,
        "Exact matches the one path only"
    );
}

/// RFC 9112 §6.3 and the issue's smuggling list: each attack carries a
/// second request behind it; the answer is one 400 and the connection
/// closed, the second request never answered.
fn smuggling_attempts_get_400(e: &Env) {
    let code = format!(
        r#"import socket
behind = b'GET /smuggled HTTP/1.1\r\nHost: legacy.example.com\r\n\r\n'
for attack in [
    b'POST / HTTP/1.1\r\nHost: legacy.example.com\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc',
    b'POST / HTTP/1.1\r\nHost: legacy.example.com\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
    b'POST / HTTP/1.1\r\nHost: legacy.example.com\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    b'POST / HTTP/1.1\r\nHost: legacy.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
]:
    s = socket.create_connection(('{NODE}', {HTTP}), timeout=5)
    s.sendall(attack + behind)
    got = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    print(got.split(b'\r\n')[0].decode(), got.count(b'HTTP/1.1 '))
"#
    );
    let out = e
        .cluster
        .ok(&["exec", "--external", "--", "python3", "-c", &code]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for line in lines {
        assert_eq!(line, "HTTP/1.1 400 Bad Request 1", "{out}");
    }
}

fn statuses_say_accepted_and_programmed(e: &Env) {
    let programmed = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "gateway",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status}",
        ],
    );
    assert_eq!(programmed, "True");
    let accepted = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "httproute",
            "site-a",
            "-o",
            "jsonpath={.status.parents[0].conditions[?(@.type==\"Accepted\")].status}",
        ],
    );
    assert_eq!(accepted, "True");
    let refs = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "httproute",
            "site-a",
            "-o",
            "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        ],
    );
    assert_eq!(refs, "ResolvedRefs");
    let missing = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "httproute",
            "checks",
            "-o",
            "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        ],
    );
    assert_eq!(
        missing, "BackendNotFound",
        "route checks names a Service that does not exist"
    );
    let attached = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "gateway",
            "web",
            "-o",
            "jsonpath={.status.listeners[?(@.name==\"http\")].attachedRoutes}",
        ],
    );
    assert_eq!(attached, "2");
}

fn the_gateway_class_and_the_ingress_carry_their_status(e: &Env) {
    let accepted = kubectl_ok(
        &e.cluster,
        &[
            "get",
            "gatewayclass",
            "weft",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
        ],
    );
    assert_eq!(accepted, "True");
    // --publish-service weft-system/weft-gateway: the address the
    // Service's load balancer has (weft's own LoadBalancer allocator gives
    // it one from the default pool), as ingress-nginx publishes it.
    let mut lb_ip = String::new();
    wait_until("the gateway Service's load-balancer address", 30, || {
        lb_ip = kubectl_ok(
            &e.cluster,
            &[
                "get",
                "svc",
                "-n",
                "weft-system",
                "weft-gateway",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        );
        !lb_ip.is_empty()
    });
    assert!(lb_ip.starts_with("203.0.113."), "{lb_ip}");
    wait_until("the Ingress status", 30, || {
        kubectl_ok(
            &e.cluster,
            &[
                "get",
                "ingress",
                "legacy",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        ) == lb_ip
    });
}

fn every_request_leaves_a_json_access_log_line(e: &Env) {
    assert_eq!(https(e, "b.example.com", "/hostname?log-check=1").0, 200);
    let mut line = String::new();
    wait_until("the access log line", 30, || {
        let logs = kubectl_ok(
            &e.cluster,
            &[
                "logs",
                "-n",
                "weft-system",
                "-l",
                "app.kubernetes.io/name=weft-gateway",
                "--tail=-1",
            ],
        );
        line = logs
            .lines()
            .rev()
            .find(|l| l.contains("log-check"))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["status"], 200, "{line}");
    assert_eq!(v["route"], "httproute/default/site-b", "{line}");
    assert_eq!(v["backend"], "default/web-b:80", "{line}");
    assert!(
        v["client"].as_str().is_some_and(|c| !c.is_empty()),
        "{line}"
    );
}

fn a_rotated_certificate_is_served_without_restart(e: &Env) {
    let before = file_fingerprint(&e.certs.join("a.crt"));
    let after = file_fingerprint(&e.certs.join("a2.crt"));
    assert_eq!(served_fingerprint(e, HTTPS, "a.example.com"), before);
    let p = |f: &str| e.certs.join(f).display().to_string();
    let yaml = kubectl_ok(
        &e.cluster,
        &[
            "create",
            "secret",
            "tls",
            "a-tls",
            "--cert",
            &p("a2.crt"),
            "--key",
            &p("a2.key"),
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    kubectl_apply(&e.cluster, &yaml);
    wait_until("the rotated certificate", 30, || {
        served_fingerprint(e, HTTPS, "a.example.com") == after
    });
    assert_eq!(https(e, "a.example.com", "/hostname").0, 200);
}

fn a_route_edited_under_load_fails_no_request(e: &Env) {
    let url = format!("https://b.example.com:{HTTPS}/hostname");
    let r = resolve("b.example.com", HTTPS);
    let ca = e.certs.join("ca.crt").display().to_string();
    let mut args: Vec<String> = [
        "--name",
        &e.cluster.name,
        "exec",
        "--external",
        "--",
        "curl",
        "-sS",
        "--cacert",
        &ca,
        "--resolve",
        &r,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..400 {
        args.push(url.clone());
    }
    let load = Command::new(WEFT)
        .args(&args)
        .env("WEFT_STATE_DIR", &e.cluster.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Edit site-b back and forth while the requests run.
    for i in 0..6 {
        let backend = if i % 2 == 0 { "web-a" } else { "web-b" };
        let patch = format!("{{\"spec\":{{\"rules\":[{{\"backendRefs\":[{{\"name\":\"{backend}\",\"port\":80}}]}}]}}}}");
        kubectl_ok(
            &e.cluster,
            &["patch", "httproute", "site-b", "--type=merge", "-p", &patch],
        );
    }
    let out = load.wait_with_output().unwrap();
    let codes = String::from_utf8_lossy(&out.stdout);
    let total = codes.lines().count();
    // Each line: the answering pod's name (netexec /hostname) and the status.
    let bad: Vec<&str> = codes.lines().filter(|c| !c.ends_with("200")).collect();
    assert_eq!(
        total,
        400,
        "every request answered ({total}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        bad.is_empty(),
        "{} of 400 failed during route edits, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let to_a = codes.lines().filter(|c| c.starts_with("web-a-")).count();
    assert!(
        to_a > 0 && to_a < 400,
        "the edits took effect during the load ({to_a} of 400 to web-a)"
    );
}

type Check = fn(&Env);

const CHECKS: &[(&str, Check)] = &[
    (
        "host_and_path_routing_and_two_certificates_chosen_by_sni",
        host_and_path_routing_and_two_certificates_chosen_by_sni,
    ),
    ("http_redirects_to_https", http_redirects_to_https),
    (
        "passthrough_hands_the_client_the_backends_own_certificate",
        passthrough_hands_the_client_the_backends_own_certificate,
    ),
    (
        "reencryption_reaches_the_backend_over_tls",
        reencryption_reaches_the_backend_over_tls,
    ),
    (
        "weights_split_500_requests_about_80_20",
        weights_split_500_requests_about_80_20,
    ),
    (
        "header_modifiers_edit_request_and_response",
        header_modifiers_edit_request_and_response,
    ),
    (
        "no_match_is_404_invalid_backend_500_no_endpoint_503",
        no_match_is_404_invalid_backend_500_no_endpoint_503,
    ),
    (
        "an_ingress_routes_by_host_and_path",
        an_ingress_routes_by_host_and_path,
    ),
    ("smuggling_attempts_get_400", smuggling_attempts_get_400),
    (
        "statuses_say_accepted_and_programmed",
        statuses_say_accepted_and_programmed,
    ),
    (
        "the_gateway_class_and_the_ingress_carry_their_status",
        the_gateway_class_and_the_ingress_carry_their_status,
    ),
    (
        "every_request_leaves_a_json_access_log_line",
        every_request_leaves_a_json_access_log_line,
    ),
    (
        "a_rotated_certificate_is_served_without_restart",
        a_rotated_certificate_is_served_without_restart,
    ),
    (
        "a_route_edited_under_load_fails_no_request",
        a_route_edited_under_load_fails_no_request,
    ),
];

fn selected(args: &Arguments, name: &str) -> bool {
    match &args.filter {
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
        None => true,
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    let wanted = !args.list && !args.ignored && CHECKS.iter().any(|(n, _)| selected(&args, n));
    let env = (wanted && root_or_skip("gateway")).then(|| Arc::new(start()));
    let trials = CHECKS
        .iter()
        .map(|&(name, check)| {
            let env = env.clone();
            Trial::test(name, move || match env {
                Some(e) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&e)))
                    .map_err(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".into());
                        Failed::from(format!("{msg}\n{}", e.cluster.log_tails()))
                    }),
                None => Ok(()),
            })
        })
        .collect();
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    if conclusion.has_failed() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}
