//! The pod subresources that stream from the pod's node: `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward`.
//!
//! As kube-apiserver does (`pkg/registry/core/pod/strategy.go`
//! `LogLocation`/`streamLocation`, apiserver's `UpgradeAwareHandler`): the
//! request is authenticated and authorized (exec, attach and port-forward
//! also need `create`, as kube-apiserver 1.35 checks for WebSocket GETs),
//! the pod and container are checked with kube's messages, the options
//! are turned into the kubelet's query, and the request goes to the node's
//! kubelet endpoint ([`crate::ApiServerConfig::kubelet_sockets`]). A log
//! comes back as a streamed body; an upgrade is forwarded, and once the
//! node answered 101 the client's and the node's connections are spliced
//! byte for byte, so the WebSocket protocol lives on the node only. Errors
//! of the node (non-2xx) become Status objects with its code and text.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::BoxBody;
use crate::kinds::by_plural;
use crate::status::ApiError;
use crate::ApiServer;

/// Which streaming subresource a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    Log,
    Exec,
    Attach,
    PortForward,
}

/// `/api/v1/namespaces/{ns}/pods/{name}/{log|exec|attach|portforward}`.
pub(crate) fn route(method: &Method, path: &str) -> Option<(Sub, String, String)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ["api", "v1", "namespaces", ns, "pods", name, sub] = segs.as_slice() else {
        return None;
    };
    let sub = match (*sub, method) {
        ("log", &Method::GET) => Sub::Log,
        ("exec", &Method::GET | &Method::POST) => Sub::Exec,
        ("attach", &Method::GET | &Method::POST) => Sub::Attach,
        ("portforward", &Method::GET | &Method::POST) => Sub::PortForward,
        _ => return None,
    };
    Some((sub, ns.to_string(), name.to_string()))
}

type Query = Vec<(String, String)>;

fn query_of(uri: &http::Uri) -> Query {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn last<'a>(q: &'a Query, key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn truthy(q: &Query, key: &str) -> bool {
    last(q, key).is_some_and(|v| v == "true" || v == "1")
}

/// The container a request names, or the pod's only one (kube's
/// messages for none and for a wrong one).
fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let inits = names("initContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&inits).any(|x| x == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The kubelet path and query for a request on `pod`.
fn kubelet_target(
    sub: Sub,
    ns: &str,
    name: &str,
    pod: &Value,
    q: &Query,
) -> Result<String, ApiError> {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut out = form_urlencoded::Serializer::new(String::new());
    let path = match sub {
        Sub::Log => {
            let c = container_of(pod, name, last(q, "container"))?;
            for key in ["follow", "previous", "timestamps"] {
                if truthy(q, key) {
                    out.append_pair(key, "true");
                }
            }
            for key in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
                if let Some(v) = last(q, key) {
                    out.append_pair(key, v);
                }
            }
            format!("/containerLogs/{}/{}/{}", enc(ns), enc(name), enc(&c))
        }
        Sub::Exec | Sub::Attach => {
            let c = container_of(pod, name, last(q, "container"))?;
            if sub == Sub::Exec {
                let mut any = false;
                for (k, v) in q.iter().filter(|(k, _)| k == "command") {
                    out.append_pair(k, v);
                    any = true;
                }
                if !any {
                    return Err(ApiError::bad_request("you must specify at least 1 command"));
                }
            }
            let tty = truthy(q, "tty");
            for (ours, theirs) in [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
            ] {
                // With a TTY stderr is merged into stdout (kube drops it).
                if truthy(q, ours) && !(tty && ours == "stderr") {
                    out.append_pair(theirs, "1");
                }
            }
            if tty {
                out.append_pair("tty", "1");
            }
            let verb = if sub == Sub::Exec { "exec" } else { "attach" };
            format!("/{verb}/{}/{}/{}", enc(ns), enc(name), enc(&c))
        }
        Sub::PortForward => {
            for (k, v) in q.iter().filter(|(k, _)| k == "ports") {
                out.append_pair(k, v);
            }
            format!("/portForward/{}/{}", enc(ns), enc(name))
        }
    };
    let query = out.finish();
    Ok(if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    })
}

fn error_response(e: &ApiError) -> Response<BoxBody> {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A node's answer that is not a success, as kube-apiserver reports it.
fn node_error(code: StatusCode, text: &str) -> ApiError {
    let reason = match code.as_u16() {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    ApiError::new(code.as_u16(), reason, text.trim().to_string())
}

impl ApiServer {
    /// Serves one streaming subresource request off a connection.
    pub(crate) async fn serve_streaming(
        &self,
        sub: Sub,
        ns: String,
        name: String,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
    ) -> Response<BoxBody> {
        match self.stream_inner(sub, &ns, &name, parts, body).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), ?sub, error = %e, "streaming request refused");
                error_response(&e)
            }
        }
    }

    async fn stream_inner(
        &self,
        sub: Sub,
        ns: &str,
        name: &str,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
    ) -> Result<Response<BoxBody>, ApiError> {
        let mut probe = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .body(Bytes::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        *probe.headers_mut() = parts.headers.clone();
        if let Some(user) = self.who(&probe)? {
            self.authorize(&probe, &user)?;
            if sub != Sub::Log && parts.method != Method::POST {
                // kube-apiserver 1.35: a WebSocket GET needs `create` too.
                *probe.method_mut() = Method::POST;
                self.authorize(&probe, &user)?;
            }
        }
        let pods = by_plural("pods").ok_or_else(|| ApiError::internal("no kind pods"))?;
        let pod = self
            .lock()
            .get(pods, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        let q = query_of(&parts.uri);
        let target = kubelet_target(sub, ns, name, &pod, &q)?;
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let template = self.config().kubelet_sockets.as_deref().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "no node connection configured: cannot reach node {node} for pod {ns}/{name}"
                ),
            )
        })?;
        let socket = template.replace("{node}", node);
        let stream = tokio::net::UnixStream::connect(&socket)
            .await
            .map_err(|e| {
                ApiError::new(
                    503,
                    "ServiceUnavailable",
                    format!("node {node} is not reachable (its kubelet endpoint {socket}: {e})"),
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| ApiError::internal(format!("connect to node {node}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(&target)
            .header(header::HOST, "kubelet");
        let upgrade = parts.headers.contains_key(header::UPGRADE);
        if upgrade {
            for h in [
                header::CONNECTION,
                header::UPGRADE,
                header::SEC_WEBSOCKET_KEY,
                header::SEC_WEBSOCKET_VERSION,
                header::SEC_WEBSOCKET_PROTOCOL,
                header::SEC_WEBSOCKET_EXTENSIONS,
                // SPDY upgrades (kubectl's fallback) name their protocol here.
                header::HeaderName::from_static("x-stream-protocol-version"),
            ] {
                for v in parts.headers.get_all(&h) {
                    out = out.header(&h, v);
                }
            }
        } else if sub != Sub::Log {
            return Err(ApiError::bad_request("Upgrade request required"));
        }
        let out = out
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut resp = sender
            .send_request(out)
            .await
            .map_err(|e| ApiError::internal(format!("node {node}: {e}")))?;
        let status = resp.status();
        if upgrade && status == StatusCode::SWITCHING_PROTOCOLS {
            let node_up = hyper::upgrade::on(&mut resp);
            let mut client_req = Request::from_parts(parts, body);
            let client_up = hyper::upgrade::on(&mut client_req);
            tokio::spawn(async move {
                let (Ok(c), Ok(n)) = (client_up.await, node_up.await) else {
                    return;
                };
                let mut c = hyper_util::rt::TokioIo::new(c);
                let mut n = hyper_util::rt::TokioIo::new(n);
                let _ = tokio::io::copy_bidirectional(&mut c, &mut n).await;
            });
            let mut r = Response::new(Empty::<Bytes>::new().boxed_unsync());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *r.headers_mut() = resp.headers().clone();
            return Ok(r);
        }
        if !status.is_success() {
            let text = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(node_error(status, &text));
        }
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let mut node_body = resp.into_body();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = node_body.frame().await {
                if let Ok(data) = frame.into_data() {
                    if tx.send(Ok(Frame::data(data))).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
        if let Some(ct) = content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"spec": {"containers": [{"name": "web"}, {"name": "side"}], "initContainers": [{"name": "setup"}]}})
    }

    fn q(s: &str) -> Query {
        form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    #[test]
    fn streaming_subresources_are_routed_by_path_and_method() {
        assert_eq!(
            route(&Method::GET, "/api/v1/namespaces/d/pods/p/log"),
            Some((Sub::Log, "d".into(), "p".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/v1/namespaces/d/pods/p/exec").map(|r| r.0),
            Some(Sub::Exec)
        );
        assert_eq!(
            route(&Method::POST, "/api/v1/namespaces/d/pods/p/log"),
            None
        );
        assert_eq!(
            route(&Method::GET, "/api/v1/namespaces/d/pods/p/status"),
            None
        );
    }

    #[test]
    fn a_pod_of_several_containers_needs_one_named() {
        let e = container_of(&pod(), "p", None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [web side] or one of the init containers: [setup]"
        );
        let e = container_of(&pod(), "p", Some("nope")).unwrap_err();
        assert_eq!(e.message, "container nope is not valid for pod p");
        assert_eq!(e.code, 400);
        assert_eq!(container_of(&pod(), "p", Some("side")).unwrap(), "side");
    }

    #[test]
    fn log_options_become_the_kubelet_query() {
        let t = kubelet_target(
            Sub::Log,
            "d",
            "p",
            &pod(),
            &q("container=web&follow=true&tailLines=3&timestamps=true&sinceSeconds=10"),
        )
        .unwrap();
        assert_eq!(
            t,
            "/containerLogs/d/p/web?follow=true&timestamps=true&sinceSeconds=10&tailLines=3"
        );
    }

    #[test]
    fn exec_options_become_the_kubelet_query() {
        let t = kubelet_target(
            Sub::Exec,
            "d",
            "p",
            &pod(),
            &q("container=web&command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=true"),
        )
        .unwrap();
        assert_eq!(
            t,
            "/exec/d/p/web?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1"
        );
        assert!(kubelet_target(Sub::Exec, "d", "p", &pod(), &q("container=web")).is_err());
    }
}
