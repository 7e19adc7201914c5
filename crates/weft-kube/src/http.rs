//! The one small HTTP server (hyper) of weft's daemons, shared by the agent's
//! metrics/health endpoints and health-check node ports and by `weft dns`'s: each request is answered by a
//! pure function of its method and path, so answers are unit-tested without
//! sockets, and every listener gets the same connection handling (one task a
//! connection, a header-read timeout, accept errors backed off).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// One answer: status, content type, extra headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    fn into_response(self, head_only: bool) -> Response<Full<Bytes>> {
        let body = if head_only {
            Bytes::new()
        } else {
            Bytes::from(self.body)
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (k, v) in self.headers {
            headers.insert(k, v);
        }
        resp
    }
}

/// Answers a request from its method and path.
pub type Handler = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

/// Serves `handler` on `listener` until the task is dropped. `what` names
/// the server in logs.
pub async fn serve(listener: tokio::net::TcpListener, handler: Handler, what: &'static str) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(server = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let head_only = req.method() == Method::HEAD;
                let resp = handler(req.method(), req.uri().path()).into_response(head_only);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(server = what, error = %e, "connection ended with an error");
            }
        });
    }
}
