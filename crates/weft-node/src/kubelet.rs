//! The node runtime's kubelet endpoint: kubelet's streaming paths served
//! over HTTP/1.1 on a unix socket (`<state>/nodes/<node>/kubelet.sock`),
//! which the API server proxies `pods/log`, `pods/exec` and
//! `pods/portforward` to (kubelet's `pkg/kubelet/server/server.go` paths):
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow&previous&timestamps
//!   &tailLines&sinceSeconds&sinceTime&limitBytes`: the container's CRI log
//!   ([`crate::logs`]) as plain text, streamed; following ends when the
//!   container's instance ends.
//! - `GET|POST /exec/{ns}/{pod}[/{uid}]/{container}?command=…&input=1
//!   &output=1&error=1&tty=1`: a WebSocket ([`crate::channels`]) to a
//!   command run in the pod's namespaces with the container's identity and
//!   environment ([`crate::sandbox::Sandbox::command`]); with a TTY on a
//!   pseudo-terminal whose size follows the resize channel.
//! - `GET|POST /attach/{ns}/{pod}[/{uid}]/{container}?input=1&output=1
//!   &error=1&tty=1`: a WebSocket carrying the container's output from now
//!   on (read back from its log as it grows), until the instance ends; for
//!   a container with `stdin: true`, input goes to its stdin FIFO
//!   ([`crate::plan::stdin_path`], relayed by its `pod-init run`), and for
//!   one with `tty: true` resizes go to its terminal. Input to a container
//!   without `stdin` (or whose `stdinOnce` input was used up) is dropped,
//!   as kubelet does.
//! - `GET|POST /portForward/{ns}/{pod}[/{uid}]?ports=…`: a WebSocket whose
//!   channels carry TCP connections to 127.0.0.1:<port> in the pod's
//!   network namespace; or, with WebSocket subprotocol
//!   `SPDY/3.1+portforward.k8s.io` (kubectl's), kubelet's SPDY
//!   port-forward protocol tunnelled in the binary messages
//!   ([`crate::portforward_spdy`]); or that protocol on a plain
//!   `Upgrade: SPDY/3.1` connection (kubectl's fallback).
//!
//! Errors are plain text with kubelet's status codes; the API server turns
//! them into Status objects. Who may call is decided by the file mode of
//! the socket (0600, root) and by the API server's RBAC.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};
use tokio_tungstenite::WebSocketStream;

use crate::channels::{self, Incoming, Outcome};
use crate::logs::{self, LogOptions};
use crate::portforward_spdy;
use crate::sandbox::{self, Launch, NodeEnv, Sandbox};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How often a followed log is checked for growth (kubelet uses inotify;
/// a short poll keeps this dependency-free and is cheap on one file).
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The running containers of this node, as the exec endpoint needs them:
/// their pod's sandbox and the launch (command, environment, identity) the
/// runtime last started them with.
#[derive(Debug, Default)]
pub struct Registry {
    pods: Mutex<HashMap<(String, String), PodEntry>>,
}

#[derive(Debug, Clone)]
struct PodEntry {
    uid: String,
    sandbox: Sandbox,
    launches: BTreeMap<String, Launch>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PodEntry>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records how a container of the pod in `sandbox` is started.
    pub fn set_launch(&self, sandbox: &Sandbox, launch: &Launch) {
        let r = &sandbox.record;
        let mut pods = self.lock();
        let entry = pods
            .entry((r.namespace.clone(), r.name.clone()))
            .or_insert_with(|| PodEntry {
                uid: r.uid.clone(),
                sandbox: sandbox.clone(),
                launches: BTreeMap::new(),
            });
        if entry.uid != r.uid {
            // A new pod of the same name replaced the old one.
            entry.uid = r.uid.clone();
            entry.launches.clear();
        }
        entry.sandbox = sandbox.clone();
        entry.launches.insert(launch.name.clone(), launch.clone());
    }

    /// Forgets a pod whose life on this node ended.
    pub fn forget(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.lock();
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|e| e.uid == uid) {
            pods.remove(&key);
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// What the endpoint serves from.
#[derive(Debug, Clone)]
pub struct Kubelet {
    pub env: NodeEnv,
    pub registry: Arc<Registry>,
}

/// Binds the socket (replacing a stale one, mode 0600) and serves until the
/// future is dropped.
pub async fn serve(kubelet: Kubelet, socket: PathBuf) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let kubelet = Arc::new(kubelet);
    loop {
        let (stream, _) = listener.accept().await?;
        let k = kubelet.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let k = k.clone();
                async move { Ok::<_, Infallible>(k.handle(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "kubelet connection ended with an error");
            }
        });
    }
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    logs::form_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

fn query_flag(query: &str, key: &str) -> bool {
    query_values(query, key)
        .last()
        .is_some_and(|v| v == "1" || v == "true")
}

impl Kubelet {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = req.method() == Method::GET;
        let get_or_post = get || req.method() == Method::POST;
        match segs.as_slice() {
            ["containerLogs", ns, pod, container] if get => {
                self.container_logs(ns, pod, container, &query).await
            }
            ["exec", ns, pod, container] | ["exec", ns, pod, _, container] if get_or_post => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.exec(req, &ns, &pod, &container, &query)
            }
            ["attach", ns, pod, container] | ["attach", ns, pod, _, container] if get_or_post => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.attach(req, &ns, &pod, &container, &query)
            }
            ["portForward", ns, pod] | ["portForward", ns, pod, _] if get_or_post => {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                self.port_forward(req, &ns, &pod, &query)
            }
            _ => text(StatusCode::NOT_FOUND, format!("no handler for {path}")),
        }
    }

    /// The pod's sandbox directory on this node.
    fn pod_dir(&self, ns: &str, pod: &str) -> Option<PathBuf> {
        if let Some(e) = self.registry.get(ns, pod) {
            return Some(e.sandbox.dir);
        }
        Sandbox::list(&self.env)
            .into_iter()
            .find(|s| s.record.namespace == ns && s.record.name == pod)
            .map(|s| s.dir)
    }

    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        query: &str,
    ) -> Response<Body> {
        let opts = match LogOptions::from_query(query, jiff::Timestamp::now()) {
            Ok(o) => o,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let Some(dir) = self.pod_dir(ns, pod) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on node {}", self.env.node.name),
            );
        };
        let path = if opts.previous {
            logs::previous_log_path(&dir, container)
        } else {
            crate::plan::log_path(&dir, container)
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) if opts.previous => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
            }
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("container {container:?} in pod {pod:?} is waiting to start"),
                )
            }
        };
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let follow = LogFollow {
            env: self.env.clone(),
            dir,
            container: container.to_string(),
            path,
        };
        tokio::spawn(follow.run(file, opts, tx));
        let body = StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        r
    }

    fn exec(
        &self,
        req: Request<hyper::body::Incoming>,
        ns: &str,
        pod: &str,
        container: &str,
        query: &str,
    ) -> Response<Body> {
        let Some(entry) = self.registry.get(ns, pod) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on node {}", self.env.node.name),
            );
        };
        let Some(base) = entry.launches.get(container) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?})"),
            );
        };
        let argv = query_values(query, "command");
        if argv.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 command",
            );
        }
        let opts = ExecOptions {
            stdin: query_flag(query, "input"),
            stdout: query_flag(query, "output"),
            stderr: query_flag(query, "error"),
            tty: query_flag(query, "tty"),
        };
        if !opts.stdin && !opts.stdout && !opts.stderr {
            return text(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 of stdin, stdout, stderr",
            );
        }
        let launch = Launch {
            name: base.name.clone(),
            argv,
            env: base.env.clone(),
            working_dir: base.working_dir.clone(),
            identity: base.identity.clone(),
        };
        let sandbox = entry.sandbox.clone();
        upgrade(req, &[channels::V5, channels::V4], move |ws, protocol| {
            exec_session(ws, protocol, sandbox, launch, opts)
        })
    }

    /// Attaches to the container's output from now on, and to its stdin and
    /// terminal when it has them.
    fn attach(
        &self,
        req: Request<hyper::body::Incoming>,
        ns: &str,
        pod: &str,
        container: &str,
        query: &str,
    ) -> Response<Body> {
        let Some(dir) = self.pod_dir(ns, pod) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on node {}", self.env.node.name),
            );
        };
        let follow = LogFollow {
            env: self.env.clone(),
            path: crate::plan::log_path(&dir, container),
            dir,
            container: container.to_string(),
        };
        if !follow.path.exists() {
            return text(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?})"),
            );
        }
        let stdin = crate::plan::stdin_path(&follow.dir, container);
        let resize = crate::plan::resize_path(&follow.dir, container);
        let opts = ExecOptions {
            stdin: query_flag(query, "input") && stdin.exists(),
            stdout: query_flag(query, "output"),
            stderr: query_flag(query, "error"),
            tty: query_flag(query, "tty") && resize.exists(),
        };
        let input = AttachInput {
            stdin: opts.stdin.then_some(stdin),
            resize: opts.tty.then_some(resize),
        };
        upgrade(req, &[channels::V5, channels::V4], move |ws, protocol| {
            attach_session(ws, protocol, follow, opts, input)
        })
    }

    fn port_forward(
        &self,
        req: Request<hyper::body::Incoming>,
        ns: &str,
        pod: &str,
        query: &str,
    ) -> Response<Body> {
        // kubectl's tunnelled SPDY names its ports in stream headers; the
        // channel protocol needs them in the query.
        let plain_spdy = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(SPDY_UPGRADE));
        let spdy = plain_spdy || offers(&req, portforward_spdy::WS_PROTOCOL);
        let ports = match channels::parse_ports(&query_values(query, "ports")) {
            Ok(p) => p,
            Err(_) if spdy => Vec::new(),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let Some(dir) = self.pod_dir(ns, pod) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on node {}", self.env.node.name),
            );
        };
        let Some(sandbox) = Sandbox::load(&self.env, &dir) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} has no sandbox"),
            );
        };
        let Some(init) = sandbox.init() else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("pod {ns}/{pod} is not running (its init is not)"),
            );
        };
        let netns = PathBuf::from(format!("/proc/{}/ns/net", init.pid1));
        if plain_spdy {
            return spdy_upgrade(req, netns);
        }
        upgrade(
            req,
            &[channels::V4, portforward_spdy::WS_PROTOCOL],
            move |ws, protocol| async move {
                if protocol == portforward_spdy::WS_PROTOCOL {
                    portforward_spdy::serve_websocket(ws, netns).await
                } else {
                    port_forward_session(ws, netns, ports).await
                }
            },
        )
    }
}

/// The plain (untunnelled) SPDY upgrade kubectl falls back to.
const SPDY_UPGRADE: &str = "SPDY/3.1";
/// The header naming the streaming protocols a SPDY client speaks.
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Serves kubelet's SPDY port-forward protocol on a plain
/// `Upgrade: SPDY/3.1` connection (`X-Stream-Protocol-Version` must offer
/// `portforward.k8s.io`, the only version there is).
fn spdy_upgrade(req: Request<hyper::body::Incoming>, netns: PathBuf) -> Response<Body> {
    const VERSION: &str = "portforward.k8s.io";
    let offered: Vec<String> = req
        .headers()
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    if !offered.iter().any(|o| o == VERSION) {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: {STREAM_PROTOCOL_HEADER} offers {offered:?}; supports [{VERSION:?}]"
            ),
        );
    }
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => portforward_spdy::serve_io(hyper_util::rt::TokioIo::new(up), netns).await,
            Err(e) => tracing::debug!(error = %e, "the SPDY upgrade failed"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    hs.insert(
        header::UPGRADE,
        header::HeaderValue::from_static(SPDY_UPGRADE),
    );
    hs.insert(
        STREAM_PROTOCOL_HEADER,
        header::HeaderValue::from_static(VERSION),
    );
    r
}

/// Whether the WebSocket upgrade offers subprotocol `protocol`.
fn offers(req: &Request<hyper::body::Incoming>, protocol: &str) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == protocol)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A log being read (and maybe followed) for one request.
struct LogFollow {
    env: NodeEnv,
    dir: PathBuf,
    container: String,
    path: PathBuf,
}

impl LogFollow {
    /// Whether the container instance writing `path` may still write: its
    /// process runs and the file was not replaced by a newer instance's.
    fn still_written(&self, ino: u64) -> bool {
        let same_file = std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == ino);
        let running = Sandbox::load(&self.env, &self.dir)
            .and_then(|s| s.recorded_pid(&self.container))
            .is_some_and(|(pid, started)| sandbox::alive(pid, started));
        same_file && running
    }

    async fn run(
        self,
        mut file: tokio::fs::File,
        opts: LogOptions,
        tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    ) {
        let ino = file.metadata().await.map(|m| m.ino()).unwrap_or(0);
        let mut data = Vec::new();
        if file.read_to_end(&mut data).await.is_err() {
            return;
        }
        let start = opts.tail_lines.map_or(0, |n| logs::tail_start(&data, n));
        data.drain(..start);
        let mut left = opts.limit_bytes.unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(FOLLOW_POLL);
        loop {
            let mut out = Vec::new();
            let used = logs::render(&data, &opts, &mut out);
            data.drain(..used);
            if !out.is_empty() {
                if (out.len() as u64) >= left {
                    out.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                    let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
                    return;
                }
                left -= out.len() as u64;
                if tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    return;
                }
            }
            if !opts.follow {
                return;
            }
            // Wait for more, or for the end of the instance.
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                let before = data.len();
                if file.read_to_end(&mut data).await.is_err() {
                    return;
                }
                if data.len() > before {
                    break;
                }
                if !self.still_written(ino) {
                    // One last read: what came between the two checks.
                    let _ = file.read_to_end(&mut data).await;
                    let mut out = Vec::new();
                    logs::render(&data, &opts, &mut out);
                    out.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                    if !out.is_empty() {
                        let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Answers a WebSocket upgrade with the negotiated sub-protocol and runs
/// `session` on the upgraded connection; anything else is refused as
/// kubelet refuses it.
fn upgrade<F, Fut>(
    req: Request<hyper::body::Incoming>,
    served: &[&'static str],
    session: F,
) -> Response<Body>
where
    F: FnOnce(
            WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
            &'static str,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_ws) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Upgrade request required: this endpoint speaks WebSocket streaming protocols only",
        );
    };
    let offered: Vec<String> = h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let Some(protocol) = channels::negotiate(offered.iter().map(String::as_str), served) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("requested protocol(s) are not supported: {offered:?}; supports {served:?}"),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => {
                let io = hyper_util::rt::TokioIo::new(up);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                session(ws, protocol).await;
            }
            Err(e) => tracing::debug!(error = %e, "the WebSocket upgrade failed"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    hs.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    hs.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(protocol),
    );
    r
}

#[derive(Debug, Clone, Copy)]
struct ExecOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// A pseudo-terminal: the master side (ours) and the slave (the command's).
pub(crate) struct Pty {
    pub(crate) master: std::os::fd::OwnedFd,
    pub(crate) slave: std::fs::File,
}

pub(crate) fn open_pty() -> std::io::Result<Pty> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(Path::new(std::ffi::OsStr::from_bytes(name.as_bytes())))?;
    Ok(Pty { master, slave })
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Runs one exec: the command, its streams over the channels, and its end
/// as a Status on the error channel.
async fn exec_session(
    ws: Ws,
    protocol: &'static str,
    sandbox: Sandbox,
    launch: Launch,
    opts: ExecOptions,
) {
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(32);
    // Tells the client the streams are open (kubelet writes an empty
    // message on the lowest channel it will write to).
    let first = if opts.stdout {
        channels::STDOUT
    } else if opts.stderr && !opts.tty {
        channels::STDERR
    } else {
        channels::ERROR
    };
    if sink.send(Message::binary(vec![first])).await.is_err() {
        return;
    }
    let argv = launch.argv.clone();
    let started = start_exec(&sandbox, &launch, opts, out_tx.clone());
    let (mut child, mut stdin, pty_master) = match started {
        Ok(s) => s,
        Err(msg) => {
            let status = channels::status(&Outcome::Failed(msg), &argv);
            let _ = sink
                .send(Message::binary(channels::frame(
                    channels::ERROR,
                    status.to_string().as_bytes(),
                )))
                .await;
            close_normally(&mut sink).await;
            return;
        }
    };
    drop(out_tx);
    let pid = child.id().unwrap_or(0);
    // Client → command.
    let reader = async {
        while let Some(msg) = source.next().await {
            let data = match msg {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Close(_)) | Err(_) => return false,
                Ok(_) => continue,
            };
            match channels::parse_incoming(protocol, &data) {
                Incoming::Stdin(d) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(d).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Incoming::Close(channels::STDIN) => stdin = None,
                Incoming::Resize { width, height } => {
                    if let Some(m) = &pty_master {
                        let size = rustix::termios::Winsize {
                            ws_row: height,
                            ws_col: width,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        let _ = rustix::termios::tcsetwinsize(m, size);
                    }
                }
                Incoming::Invalid(e) => tracing::debug!(error = %e, "ignored an exec message"),
                Incoming::Close(_) | Incoming::Ignored => {}
            }
        }
        false
    };
    // Command → client, until its outputs end.
    let writer = async {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::binary(frame)).await.is_err() {
                return Err(());
            }
        }
        Ok(sink)
    };
    let waited = child.wait();
    tokio::pin!(reader);
    let both = async { tokio::join!(writer, waited) };
    let (sent, status) = tokio::select! {
        r = both => r,
        _ = &mut reader => {
            // The client went away: the command goes with it.
            sandbox::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            return;
        }
    };
    let Ok(mut sink) = sent else {
        sandbox::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        return;
    };
    let outcome = match status {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            Outcome::Exited(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
        }
        Err(e) => Outcome::Failed(format!("wait for the command: {e}")),
    };
    let status = channels::status(&outcome, &argv);
    let _ = sink
        .send(Message::binary(channels::frame(
            channels::ERROR,
            status.to_string().as_bytes(),
        )))
        .await;
    close_normally(&mut sink).await;
}

/// The FIFOs an attach session writes to: the container's stdin and its
/// terminal's size.
struct AttachInput {
    stdin: Option<PathBuf>,
    resize: Option<PathBuf>,
}

/// Opens a FIFO for writing without waiting: `None` when nobody reads it
/// (a `stdinOnce` container whose input was used, or an instance that has
/// ended).
fn open_fifo_writer(path: &Path) -> Option<tokio::net::unix::pipe::Sender> {
    match tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::debug!(fifo = %path.display(), error = %e, "attach input not taken");
            None
        }
    }
}

type ExecStarted = (
    tokio::process::Child,
    Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    Option<std::os::fd::OwnedFd>,
);

/// Streams the container's new log entries on the stdout and stderr
/// channels until its instance ends (then Success on the error channel) or
/// the client leaves.
async fn attach_session(
    ws: Ws,
    protocol: &'static str,
    follow: LogFollow,
    opts: ExecOptions,
    input: AttachInput,
) {
    let (mut sink, mut source) = ws.split();
    let first = if opts.stdout {
        channels::STDOUT
    } else if opts.stderr {
        channels::STDERR
    } else {
        channels::ERROR
    };
    if sink.send(Message::binary(vec![first])).await.is_err() {
        return;
    }
    let Ok(mut file) = tokio::fs::File::open(&follow.path).await else {
        return;
    };
    let ino = file.metadata().await.map(|m| m.ino()).unwrap_or(0);
    // From now on: what was written before is the log's, not attach's.
    let mut skip = Vec::new();
    if file.read_to_end(&mut skip).await.is_err() {
        return;
    }
    // Input only after the skip: output it causes is attach's.
    let mut stdin = input.stdin.as_deref().and_then(open_fifo_writer);
    let mut resize = input.resize.as_deref().and_then(open_fifo_writer);
    let mut data = Vec::new();
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = source.next() => {
                let data = match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => continue,
                };
                match channels::parse_incoming(protocol, &data) {
                    Incoming::Stdin(d) => {
                        if let Some(w) = stdin.as_mut() {
                            // A container that does not read holds this up
                            // once the FIFO is full, as a pipe would.
                            if w.write_all(d).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Incoming::Close(channels::STDIN) => stdin = None,
                    Incoming::Resize { width, height } => {
                        if let Some(w) = resize.as_mut() {
                            let line = format!("{width} {height}\n");
                            if w.write_all(line.as_bytes()).await.is_err() {
                                resize = None;
                            }
                        }
                    }
                    Incoming::Invalid(e) => tracing::debug!(error = %e, "ignored an attach message"),
                    Incoming::Close(_) | Incoming::Ignored => {}
                }
                // Output is read on the next tick.
                continue;
            },
        }
        let ended = !follow.still_written(ino);
        if file.read_to_end(&mut data).await.is_err() {
            return;
        }
        let mut used = 0;
        while let Some(nl) = data[used..].iter().position(|b| *b == b'\n') {
            let line = &data[used..used + nl];
            used += nl + 1;
            let Some(e) = logs::parse_line(line) else {
                continue;
            };
            let channel = match e.stream {
                logs::Stream::Stdout if opts.stdout => channels::STDOUT,
                logs::Stream::Stderr if opts.stderr => channels::STDERR,
                _ => continue,
            };
            let mut out = e.content.to_vec();
            if !e.partial {
                out.push(b'\n');
            }
            if sink
                .send(Message::binary(channels::frame(channel, &out)))
                .await
                .is_err()
            {
                return;
            }
        }
        data.drain(..used);
        if ended {
            let status = channels::status(&Outcome::Exited(0), &[]);
            let _ = sink
                .send(Message::binary(channels::frame(
                    channels::ERROR,
                    status.to_string().as_bytes(),
                )))
                .await;
            close_normally(&mut sink).await;
            return;
        }
    }
}

/// Ends a stream with close code 1000: client-go reads only a normal
/// closure as the end of the streams (no code, 1005, is an error to it).
async fn close_normally(sink: &mut futures::stream::SplitSink<Ws, Message>) {
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// Starts the command with pipes or a pseudo-terminal; its outputs are
/// sent, framed, to `out`.
fn start_exec(
    sandbox: &Sandbox,
    launch: &Launch,
    opts: ExecOptions,
    out: mpsc::Sender<Vec<u8>>,
) -> Result<ExecStarted, String> {
    let mut cmd = sandbox.command(launch).map_err(|e| e.to_string())?;
    use std::process::Stdio;
    if opts.tty {
        let pty = open_pty().map_err(|e| format!("allocate a pseudo-terminal: {e}"))?;
        let dup = |f: &std::fs::File| {
            f.try_clone()
                .map_err(|e| format!("duplicate the terminal: {e}"))
        };
        cmd.stdin(Stdio::from(dup(&pty.slave)?))
            .stdout(Stdio::from(dup(&pty.slave)?))
            .stderr(Stdio::from(dup(&pty.slave)?));
        // SAFETY: one system call on the child's own descriptor 0, after the
        // setsid of `Sandbox::command`'s pre_exec (closures run in order).
        #[allow(unsafe_code)]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())
                    .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
            });
        }
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| format!("start {:?}: {e}", launch.argv[0]))?;
        drop(pty.slave);
        let resize = pty
            .master
            .try_clone()
            .map_err(|e| format!("duplicate the terminal: {e}"))?;
        let read = std::fs::File::from(
            pty.master
                .try_clone()
                .map_err(|e| format!("duplicate the terminal: {e}"))?,
        );
        let write = tokio::fs::File::from_std(std::fs::File::from(pty.master));
        if opts.stdout {
            tokio::spawn(copy_out(
                tokio::fs::File::from_std(read),
                channels::STDOUT,
                out,
            ));
        }
        let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = if opts.stdin {
            Some(Box::new(write))
        } else {
            None
        };
        return Ok((child, stdin, Some(resize)));
    }
    cmd.stdin(if opts.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(if opts.stdout {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stderr(if opts.stderr {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| format!("start {:?}: {e}", launch.argv[0]))?;
    if let Some(o) = child.stdout.take() {
        tokio::spawn(copy_out(o, channels::STDOUT, out.clone()));
    }
    if let Some(e) = child.stderr.take() {
        tokio::spawn(copy_out(e, channels::STDERR, out));
    }
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
    Ok((child, stdin, None))
}

/// Frames what `r` reads on `channel` until it ends (a pseudo-terminal
/// ends with EIO once the command and its children closed it).
async fn copy_out(
    mut r: impl tokio::io::AsyncRead + Unpin,
    channel: u8,
    out: mpsc::Sender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(channels::frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Connects to 127.0.0.1:<port> inside the pod's network namespace (on a
/// short-lived thread: setns never runs on a tokio worker).
pub(crate) async fn connect_in_pod(
    netns: &Path,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let std_stream = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<std::net::TcpStream> {
                let f = std::fs::File::open(&netns)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_secs(10),
                )
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

/// One port-forward WebSocket: each requested port gets one connection in
/// the pod; its bytes go on channel 2i, a failure to connect or a broken
/// connection as text on 2i+1.
async fn port_forward_session(ws: Ws, netns: PathBuf, ports: Vec<u16>) {
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(32);
    for (i, p) in ports.iter().enumerate() {
        for ch in [2 * i, 2 * i + 1] {
            let ch = u8::try_from(ch).unwrap_or(u8::MAX);
            if sink
                .send(Message::binary(channels::frame(
                    ch,
                    &channels::port_prefix(*p),
                )))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data = u8::try_from(2 * i).unwrap_or(u8::MAX);
        match connect_in_pod(&netns, *port).await {
            Ok(conn) => {
                let (r, w) = conn.into_split();
                writers.push(Some(w));
                tokio::spawn(copy_out(r, data, out_tx.clone()));
            }
            Err(e) => {
                writers.push(None);
                let msg =
                    format!("error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: {e}");
                let _ = out_tx.send(channels::frame(data + 1, msg.as_bytes())).await;
            }
        }
    }
    drop(out_tx);
    loop {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(f) => if sink.send(Message::binary(f)).await.is_err() { return },
                None => { close_normally(&mut sink).await; return }
            },
            msg = source.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                let Some((&ch, payload)) = data.split_first() else { continue };
                let i = usize::from(ch / 2);
                if ch % 2 != 0 || i >= ports.len() {
                    continue;
                }
                if let Some(Some(w)) = writers.get_mut(i) {
                    if w.write_all(payload).await.is_err() {
                        writers[i] = None;
                    }
                }
            }
        }
    }
}
