//! Readiness and liveness probes: parsing a container's probe (pure), the
//! threshold state machine (pure), and running tcpSocket/httpGet checks from
//! the node's network namespace against the pod's IP.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_linux::Netns;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Exec {
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn resolve_port(port: &IntOrString, container: &Container, field: &str) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{field}: port {n} is not in 1..=65535")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "{field}: container {:?} has no port named {name:?}",
                        container.name
                    )
                })
        }
    }
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

/// A container's probe (`what` is `readinessProbe` or `livenessProbe`, for
/// messages), with the API defaults: period 10 s, timeout 1 s, success 1,
/// failure 3. Liveness probes always use a success threshold of 1.
pub fn parse_probe(probe: &Probe, container: &Container, what: &str) -> Result<ProbeSpec, String> {
    let field = format!("container {:?} {what}", container.name);
    let action = if let Some(tcp) = &probe.tcp_socket {
        ProbeAction::Tcp {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: resolve_port(&tcp.port, container, &format!("{field}.tcpSocket"))?,
        }
    } else if let Some(http) = &probe.http_get {
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        ProbeAction::Http {
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: resolve_port(&http.port, container, &format!("{field}.httpGet"))?,
            path: if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            },
            https: http
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    } else if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(format!("{field}.exec.command is empty"));
        }
        ProbeAction::Exec { command }
    } else if probe.grpc.is_some() {
        return Err(format!(
            "{field}.grpc: gRPC probes are not supported by the embedded cluster"
        ));
    } else {
        return Err(format!("{field}: no handler (tcpSocket, httpGet or exec)"));
    };
    let liveness = what.starts_with("liveness");
    Ok(ProbeSpec {
        action,
        initial_delay: secs(probe.initial_delay_seconds, 0, 0),
        period: secs(probe.period_seconds, 10, 1),
        timeout: secs(probe.timeout_seconds, 1, 1),
        success_threshold: if liveness {
            1
        } else {
            probe.success_threshold.unwrap_or(1).max(1) as u32
        },
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    })
}

/// Consecutive results against thresholds: the verdict flips to success
/// after `success_threshold` successes in a row and to failure after
/// `failure_threshold` failures in a row.
#[derive(Debug, Clone)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    streak: u32,
    last: Option<bool>,
    pub verdict: bool,
}

impl Tracker {
    /// `initial`: readiness starts failed, liveness starts passed.
    pub fn new(spec: &ProbeSpec, initial: bool) -> Self {
        Tracker {
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
            streak: 0,
            last: None,
            verdict: initial,
        }
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.streak = 1;
            self.last = Some(ok);
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.streak >= threshold && self.verdict != ok {
            self.verdict = ok;
            return Some(ok);
        }
        None
    }
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}:{port}: {e}"))?
        .collect();
    let mut last = format!("{host}:{port}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("dial tcp {addr}: {e}"),
        }
    }
    Err(last)
}

/// An httpGet probe over a connection already made (in the pod's or node's
/// namespace): one GET with kubelet's headers, success on 200–399 as kubelet
/// judges it.
async fn http_get(
    stream: TcpStream,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let fail = |e: &dyn std::fmt::Display| format!("GET {url}: {e}");
    stream.set_nonblocking(true).map_err(|e| fail(&e))?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        // Ends with the response or the connection; the error is the request's.
        let _ = conn.await;
    });
    let mut req = Request::get(path);
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        req = req.header("Host", format!("{host}:{port}"));
    }
    if !has("user-agent") {
        req = req.header("User-Agent", "kube-probe/1.33");
    }
    if !has("accept") {
        req = req.header("Accept", "*/*");
    }
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .header("Connection", "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
    let code = resp.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// The status code of one `GET url` (`http://host:port/path`) from this
/// process's namespace, within `timeout`.
pub async fn http_get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(path)
            .header("Host", format!("{host}:{port}"))
            .header("Connection", "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(resp.status().as_u16())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("GET {url}: timed out")))
}

/// Runs a tcpSocket or httpGet check against `pod_ip` on a dedicated OS
/// thread, inside `netns` when given (else in the runtime's own namespace,
/// which is the node's). `Err` is the failure message.
pub async fn check_net(
    action: &ProbeAction,
    pod_ip: &str,
    timeout: Duration,
    netns: Option<Arc<Netns>>,
) -> Result<(), String> {
    let (host, port, http) = match action {
        ProbeAction::Tcp { host, port } => (host, *port, None),
        ProbeAction::Http { https: true, .. } => {
            return Err("HTTPS probes are not supported by the embedded cluster".to_string())
        }
        ProbeAction::Http {
            host,
            port,
            path,
            headers,
            ..
        } => (host, *port, Some((path, headers))),
        ProbeAction::Exec { .. } => {
            return Err("exec probes run inside the pod, not from the node".to_string())
        }
    };
    let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
    let work = async {
        // The socket is made on a thread inside the namespace and stays there;
        // the HTTP exchange then runs on it from here.
        let stream = connect_in(netns, host.clone(), port, timeout).await?;
        match http {
            Some((path, headers)) => http_get(stream, &host, port, path, headers).await,
            None => Ok(()),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
    }
}

/// Connects to `host:port` from `netns` (or this process's namespace) on a
/// dedicated OS thread: namespace-bound work never runs on a tokio worker.
async fn connect_in(
    netns: Option<Arc<Netns>>,
    host: String,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("weft-probe".into())
        .spawn(move || {
            let work = || connect(&host, port, timeout);
            let result = match netns {
                Some(ns) => ns.run(work).unwrap_or_else(|e| Err(e.to_string())),
                None => work(),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| format!("start probe thread: {e}"))?;
    rx.await
        .unwrap_or_else(|_| Err("probe thread ended without a result".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, TCPSocketAction,
    };
    use std::io::{Read, Write};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn parse_defaults_and_named_ports() {
        let p = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-A".into(),
                    value: "b".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = parse_probe(&p, &container(), "readinessProbe").unwrap();
        assert_eq!(
            s.action,
            ProbeAction::Http {
                host: None,
                port: 8080,
                path: "/healthz".into(),
                https: false,
                headers: vec![("X-A".into(), "b".into())]
            }
        );
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert_eq!(s.initial_delay, Duration::ZERO);

        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(53),
                host: None,
            }),
            initial_delay_seconds: Some(2),
            period_seconds: Some(0),
            timeout_seconds: Some(5),
            success_threshold: Some(2),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let s = parse_probe(&p, &container(), "readinessProbe").unwrap();
        assert_eq!(
            s.action,
            ProbeAction::Tcp {
                host: None,
                port: 53
            }
        );
        assert_eq!(s.period, Duration::from_secs(1), "period is at least 1 s");
        assert_eq!(s.initial_delay, Duration::from_secs(2));
        assert_eq!((s.success_threshold, s.failure_threshold), (2, 1));
        let live = parse_probe(&p, &container(), "livenessProbe").unwrap();
        assert_eq!(live.success_threshold, 1);

        let p = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["cat".into(), "/tmp/ok".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(
            parse_probe(&p, &container(), "readinessProbe")
                .unwrap()
                .action,
            ProbeAction::Exec {
                command: vec!["cat".into(), "/tmp/ok".into()]
            }
        );
        let bad = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("grpc".into()),
                host: None,
            }),
            ..Default::default()
        };
        let err = parse_probe(&bad, &container(), "readinessProbe").unwrap_err();
        assert!(err.contains("no port named \"grpc\""), "{err}");
        assert!(parse_probe(&Probe::default(), &container(), "readinessProbe").is_err());
    }

    #[test]
    fn thresholds() {
        let spec = ProbeSpec {
            action: ProbeAction::Tcp {
                host: None,
                port: 1,
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut t = Tracker::new(&spec, false);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
    }

    #[tokio::test]
    async fn net_checks_on_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Unavailable"
                };
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        let t = Duration::from_secs(2);
        let ok = ProbeAction::Http {
            host: None,
            port,
            path: "/ok".into(),
            https: false,
            headers: vec![],
        };
        check_net(&ok, "127.0.0.1", t, None).await.unwrap();
        let bad = ProbeAction::Http {
            host: None,
            port,
            path: "/bad".into(),
            https: false,
            headers: vec![],
        };
        let err = check_net(&bad, "127.0.0.1", t, None).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        server.join().unwrap();
        // Nothing listens there any more.
        let err = check_net(&ProbeAction::Tcp { host: None, port }, "127.0.0.1", t, None)
            .await
            .unwrap_err();
        assert!(err.contains("127.0.0.1"), "{err}");
    }
}
