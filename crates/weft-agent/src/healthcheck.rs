//! The health-check node ports of Services with `externalTrafficPolicy:
//! Local`: for each such Service the node answers HTTP on its
//! `healthCheckNodePort` (any path) so that an external load balancer sends
//! traffic only to nodes with a local, ready endpoint — 200 when this node
//! has one and the proxy is healthy, else 503, with kube-proxy's JSON body
//! `{"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":bool}`
//! and its `X-Load-Balancing-Endpoint-Weight` header.
//!
//! The listeners follow the compiled state after every proxy sync: ports
//! opened for new Services, closed for removed ones; what a listener answers
//! is read per request from a shared table, so an endpoint change needs no
//! new socket. A port that cannot be bound (taken by another process) is
//! reported and tried again at the next sync; it never fails the sync.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::task::JoinHandle;
use weft_kube::Health;
use weft_proxy::HealthCheck;

use weft_kube::http::{Handler, Reply};

/// What one port answers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    namespace: String,
    name: String,
    local_endpoints: usize,
}

type Table = Arc<RwLock<BTreeMap<u16, Entry>>>;

/// The answer on health-check port `port` (pure).
fn respond(method: &Method, table: &BTreeMap<u16, Entry>, port: u16, proxy_healthy: bool) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let Some(e) = table.get(&port) else {
        // The Service went away between accept and answer.
        return Reply::text(StatusCode::SERVICE_UNAVAILABLE, "no such service\n");
    };
    let body = serde_json::json!({
        "service": {"namespace": e.namespace, "name": e.name},
        "localEndpoints": e.local_endpoints,
        "serviceProxyHealthy": proxy_healthy,
    });
    let status = if e.local_endpoints > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let weight = HeaderValue::from(e.local_endpoints);
    Reply::new(status, "application/json", format!("{body}\n"))
        .header(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        )
        .header(
            HeaderName::from_static("x-load-balancing-endpoint-weight"),
            weight,
        )
}

/// The listeners of this node's health-check node ports.
pub struct HealthServer {
    /// Where to listen; `None`: every address of the node, both families.
    bind: Option<IpAddr>,
    table: Table,
    listeners: BTreeMap<u16, JoinHandle<()>>,
    proxy: Health,
}

impl HealthServer {
    /// `proxy`: the proxy runner's health, part of every answer.
    pub fn new(bind: Option<IpAddr>, proxy: Health) -> HealthServer {
        HealthServer {
            bind,
            table: Arc::default(),
            listeners: BTreeMap::new(),
            proxy,
        }
    }

    /// Ports served now.
    pub fn ports(&self) -> Vec<u16> {
        self.listeners.keys().copied().collect()
    }

    /// Serves exactly `checks` (`ns/name` → port and local endpoints).
    /// Returns the problems (ports that could not be bound).
    pub async fn update(&mut self, checks: &BTreeMap<String, HealthCheck>) -> Vec<String> {
        let mut wanted = BTreeMap::new();
        for (key, hc) in checks {
            let (namespace, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            wanted.insert(
                hc.node_port,
                Entry {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    local_endpoints: hc.local_endpoints,
                },
            );
        }
        {
            let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
            *table = wanted.clone();
        }
        self.listeners.retain(|port, task| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
                tracing::info!(port, "closed health check node port");
            }
            keep
        });
        let mut problems = Vec::new();
        for (port, entry) in &wanted {
            if self.listeners.contains_key(port) {
                continue;
            }
            match self.bind(*port).await {
                Ok(listener) => {
                    let handler = self.handler(*port);
                    let task =
                        tokio::spawn(weft_kube::http::serve(listener, handler, "health-check"));
                    self.listeners.insert(*port, task);
                    tracing::info!(port, service = %format!("{}/{}", entry.namespace, entry.name),
                        "serving health check node port");
                }
                Err(e) => problems.push(format!(
                    "healthCheckNodePort {port} of Service {}/{}: cannot listen: {e}",
                    entry.namespace, entry.name
                )),
            }
        }
        problems
    }

    async fn bind(&self, port: u16) -> std::io::Result<tokio::net::TcpListener> {
        match self.bind {
            Some(ip) => tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await,
            // `[::]` takes IPv4 too (v6only is off by default); a node without
            // IPv6 gets the IPv4 wildcard.
            None => match tokio::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
                Ok(l) => Ok(l),
                Err(_) => tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await,
            },
        }
    }

    fn handler(&self, port: u16) -> Handler {
        let table = self.table.clone();
        let proxy = self.proxy.clone();
        Arc::new(move |method, _path| {
            let healthy = proxy.healthy(tokio::time::Instant::now());
            let table = table.read().unwrap_or_else(|p| p.into_inner());
            respond(method, &table, port, healthy)
        })
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for task in self.listeners.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weft_kube::{Bounds, SyncRunner};

    fn table(local: usize) -> BTreeMap<u16, Entry> {
        BTreeMap::from([(
            30100,
            Entry {
                namespace: "default".into(),
                name: "web".into(),
                local_endpoints: local,
            },
        )])
    }

    #[test]
    fn local_endpoints_and_a_healthy_proxy_answer_200_with_kube_proxys_body() {
        let r = respond(&Method::GET, &table(2), 30100, true);
        assert_eq!(r.status, 200);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"service": {"namespace": "default", "name": "web"},
                               "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "x-load-balancing-endpoint-weight" && v == "2"));
    }

    #[test]
    fn no_local_endpoint_answers_503() {
        let r = respond(&Method::GET, &table(0), 30100, true);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("\"localEndpoints\":0"), "{}", r.body);
    }

    #[test]
    fn an_unhealthy_proxy_answers_503_even_with_local_endpoints() {
        let r = respond(&Method::GET, &table(1), 30100, false);
        assert_eq!(r.status, 503);
        assert!(
            r.body.contains("\"serviceProxyHealthy\":false"),
            "{}",
            r.body
        );
    }

    async fn get(port: u16, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn listeners_follow_the_compiled_checks() {
        let runner = SyncRunner::new("proxy", Bounds::default());
        let mut server = HealthServer::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), runner.health());
        let port = free_port();
        let mut checks = BTreeMap::from([(
            "default/web".to_string(),
            HealthCheck {
                node_port: port,
                local_endpoints: 0,
            },
        )]);
        assert!(server.update(&checks).await.is_empty());
        let out = get(port, "/any/path").await;
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        // An endpoint appears: same socket, new answer.
        checks.get_mut("default/web").unwrap().local_endpoints = 1;
        server.update(&checks).await;
        let out = get(port, "/").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("\"localEndpoints\":1"), "{out}");
        // The Service goes: the port closes.
        server.update(&BTreeMap::new()).await;
        assert!(server.ports().is_empty());
        let mut closed = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(closed, "port {port} still accepts connections");
    }

    #[tokio::test]
    async fn a_taken_port_is_a_problem_not_a_failure() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let runner = SyncRunner::new("proxy", Bounds::default());
        let mut server = HealthServer::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), runner.health());
        let checks = BTreeMap::from([(
            "default/web".to_string(),
            HealthCheck {
                node_port: port,
                local_endpoints: 1,
            },
        )]);
        let problems = server.update(&checks).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("default/web"), "{problems:?}");
        assert!(server.ports().is_empty());
    }
}
