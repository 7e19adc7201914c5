//! `weft gateway` end to end: the gateway `weft up` runs from
//! deploy/weft-gateway.yaml, reached from the external client
//! (198.51.100.5) through the gateway Service's node ports (30080 HTTP,
//! 30443 HTTPS) with curl `--resolve`, as the seeds' north-south path
//! (client → node → gateway → pod). Backends are agnhost netexec pods and
//! one HTTPS server of its own certificate (Python's ssl). Certificates are
//! made here with openssl: a test CA, leaves for a.example.com,
//! b.example.com and the backend's secure.default.svc.
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
const HTTP: u16 = 30080;
const HTTPS: u16 = 30443;

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

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// An HTTPS server with its own certificate (the Secret `secure-own`),
/// answering every GET with "secure over TLS <path>".
const SECURE_SERVER: &str = r#"import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("secure over TLS " + self.path).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("/cert/tls.crt", "/cert/tls.key")
s = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H); s.socket = ctx.wrap_socket(s.socket, server_side=True); s.serve_forever()
"#;

fn deployment(name: &str, replicas: u32, container: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{container}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n"
    )
}

fn netexec() -> String {
    format!("      containers:\n      - name: web\n        image: {AGNHOST}\n        args: [netexec, --http-port=8080]\n")
}

fn workloads() -> String {
    let mut y = String::new();
    y.push_str(&deployment("web-a", 1, &netexec()));
    y.push_str(&deployment("web-b", 1, &netexec()));
    y.push_str(&deployment("idle", 0, &netexec()));
    let secure = format!(
        "      containers:\n      - name: https\n        image: python:3\n        command: [python3, -c, {}]\n        volumeMounts: [{{name: cert, mountPath: /cert}}]\n      volumes: [{{name: cert, secret: {{secretName: secure-own}}}}]\n",
        serde_json::to_string(SECURE_SERVER).unwrap()
    );
    y.push_str(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: secure}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: secure}}}}\n  template:\n    metadata: {{labels: {{app: secure}}}}\n    spec:\n{secure}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: secure}}\nspec:\n  selector: {{app: secure}}\n  ports: [{{name: https, port: 443, targetPort: 8443}}]\n---\n"
    ));
    y
}

const GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web}
spec:
  gatewayClassName: weft
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: https-a
    port: 443
    protocol: HTTPS
    hostname: a.example.com
    tls: {certificateRefs: [{name: a-tls}]}
  - name: https-b
    port: 443
    protocol: HTTPS
    hostname: b.example.com
    tls: {certificateRefs: [{name: b-tls}]}
  - name: pass
    port: 443
    protocol: TLS
    hostname: secure.example.com
    tls: {mode: Passthrough}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: site-a}
spec:
  parentRefs: [{name: web, sectionName: https-a}]
  hostnames: [a.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /split}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: web-a, port: 80, weight: 80}, {name: web-b, port: 80, weight: 20}]
  - matches: [{path: {type: PathPrefix, value: /header}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Via-Gateway, value: weft}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Served-By, value: weft-gateway}]}}
    backendRefs: [{name: web-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /gone}}]
    backendRefs: [{name: nosuch, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /idle}}]
    backendRefs: [{name: idle, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-a, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: site-b}
spec:
  parentRefs: [{name: web, sectionName: https-b}]
  hostnames: [b.example.com]
  rules:
  - backendRefs: [{name: web-b, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-https}
spec:
  parentRefs: [{name: web, sectionName: http}]
  hostnames: [a.example.com]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 30443, statusCode: 301}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reencrypt}
spec:
  parentRefs: [{name: web, sectionName: http}]
  hostnames: [reencrypt.example.com]
  rules:
  - backendRefs: [{name: secure, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: secure}
spec:
  targetRefs: [{group: "", kind: Service, name: secure}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: test-ca}]
    hostname: secure.default.svc
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: pass}
spec:
  parentRefs: [{name: web, sectionName: pass}]
  hostnames: [secure.example.com]
  rules:
  - backendRefs: [{name: secure, port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: legacy}
spec:
  ingressClassName: weft
  rules:
  - host: legacy.example.com
    http:
      paths:
      - {path: /hostname, pathType: Exact, backend: {service: {name: web-b, port: {number: 80}}}}
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
    let d = &e.certs;
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=weft test CA",
        ],
    );
    leaf(d, "a", "a.example.com");
    leaf(d, "a2", "a.example.com");
    leaf(d, "b", "b.example.com");
    leaf(d, "secure", "secure.default.svc");
    let p = |f: &str| d.join(f).display().to_string();
    for (secret, name) in [("a-tls", "a"), ("b-tls", "b"), ("secure-own", "secure")] {
        let (crt, key) = (p(&format!("{name}.crt")), p(&format!("{name}.key")));
        kubectl_ok(
            &e.cluster,
            &[
                "create", "secret", "tls", secret, "--cert", &crt, "--key", &key,
            ],
        );
    }
    let ca = format!("--from-file=ca.crt={}", p("ca.crt"));
    kubectl_ok(&e.cluster, &["create", "configmap", "test-ca", &ca]);
    kubectl_apply(&e.cluster, &workloads());
    kubectl_apply(&e.cluster, GATEWAY);
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
    let (code, _) = http(
        e,
        "a.example.com",
        "/x?y=1",
        &["-o", "/dev/null", "-D", "/dev/stdout"],
    );
    assert_eq!(code, 301);
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

fn smuggling_attempts_get_400(e: &Env) {
    let code = format!(
        "import socket\ns=socket.create_connection(('{NODE}',{HTTP}),timeout=5)\ns.sendall(b'POST / HTTP/1.1\\r\\nHost: legacy.example.com\\r\\nContent-Length: 2\\r\\nContent-Length: 3\\r\\n\\r\\nabc')\nprint(s.recv(100).split(b'\\r\\n')[0].decode())"
    );
    let out = e
        .cluster
        .ok(&["exec", "--external", "--", "python3", "-c", &code]);
    assert_eq!(out.trim(), "HTTP/1.1 400 Bad Request");
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
    assert_eq!(
        refs, "BackendNotFound",
        "site-a names a Service that does not exist"
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
