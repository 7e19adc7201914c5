//! kubelet's SPDY port-forward protocol (`portforward.k8s.io`, kubelet's
//! `cri/streaming/portforward/httpstream.go`; client-go's
//! `tools/portforward` is the other side), served over a byte stream of
//! SPDY/3.1 frames ([`crate::spdy`]). kubectl 1.31+ tunnels that stream in
//! the binary messages of a WebSocket with subprotocol
//! `SPDY/3.1+portforward.k8s.io` (apimachinery's `wsstream` tunneling).
//!
//! The client opens, per local connection, two streams sharing a
//! `requestid` header: `streamtype: error` (which it half-closes at once)
//! and `streamtype: data`, both with the `port`. Each stream is answered
//! with SYN_REPLY; once both are there a TCP connection is made to
//! 127.0.0.1:<port> in the pod's network namespace and relayed on the data
//! stream; a failure goes as text on the error stream. When the pod's side
//! ends, the data stream and then the error stream are closed (FIN), which
//! is what the client waits for. RST_STREAM drops a stream's relay; PING
//! is echoed; GOAWAY refuses new streams.
//!
//! Flow control (SPDY/3.1): received data is acknowledged with
//! WINDOW_UPDATE (stream and session) as it is handed to the pod, so a
//! peer that honours windows never stalls. The peer's own windows are
//! recorded but not waited on: spdystream sends no WINDOW_UPDATE at all,
//! so waiting would stop every transfer after 64 KiB.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::WebSocketStream;

use crate::spdy::{self, Frame, Headers};

/// The WebSocket subprotocol kubectl tunnels SPDY in.
pub const WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Data frames sent to the client carry at most this much.
const CHUNK: usize = 32 * 1024;

/// Acknowledge received data once this much is unacknowledged.
const ACK_AT: u32 = spdy::INITIAL_WINDOW / 2;

/// SPDY tunnelled in a WebSocket: the binary messages are a byte stream
/// of frames each way (other messages are ignored; Close ends it).
pub async fn serve_websocket<S>(ws: WebSocketStream<S>, netns: PathBuf)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, source) = ws.split();
    let input = source
        .take_while(|m| futures::future::ready(matches!(m, Ok(m) if !m.is_close())))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(Message::Binary(b)) => Some(b.to_vec()),
                _ => None,
            })
        });
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::binary(frame)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    serve(Box::pin(input), out_tx, netns).await;
    // The relays may still hold senders; the client is gone or done.
    writer.abort();
}

/// SPDY on a plain upgraded connection.
pub async fn serve_io<S>(io: S, netns: PathBuf)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, mut w) = tokio::io::split(io);
    let input = futures::stream::unfold((r, vec![0u8; CHUNK]), |(mut r, mut buf)| async move {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                Some((chunk, (r, buf)))
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    serve(Box::pin(input), out_tx, netns).await;
    writer.abort();
}

#[derive(Debug, Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
}

#[derive(Debug)]
struct DataStream {
    /// Bytes for the pod (None once the client sent FIN).
    to_pod: Option<mpsc::Sender<Vec<u8>>>,
    /// Received and not yet acknowledged.
    unacked: u32,
    relay: Option<tokio::task::AbortHandle>,
    /// Data that came before the pair was complete.
    early: Vec<Vec<u8>>,
    early_fin: bool,
}

/// Serves one SPDY port-forward connection: `input` yields the bytes the
/// client sends (in any chunking), `output` takes encoded frames in the
/// order they must go out. Returns when the input ends or is malformed.
pub async fn serve(
    mut input: impl Stream<Item = Vec<u8>> + Unpin,
    output: mpsc::Sender<Vec<u8>>,
    netns: PathBuf,
) {
    let mut headers = match Headers::new() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "SPDY port-forward: header compression unavailable");
            return;
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut data: HashMap<u32, DataStream> = HashMap::new();
    let mut session_unacked: u32 = 0;
    let mut gone_away = false;
    let mut last_stream = 0u32;
    'conn: while let Some(chunk) = input.next().await {
        buf.extend_from_slice(&chunk);
        loop {
            let (frame, used) = match spdy::parse(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY port-forward: malformed frame, closing");
                    let _ = output
                        .send(
                            Frame::GoAway {
                                last_good: last_stream,
                                status: 1,
                            }
                            .encode(),
                        )
                        .await;
                    break 'conn;
                }
            };
            buf.drain(..used);
            match frame {
                Frame::SynStream {
                    stream,
                    flags,
                    block,
                    ..
                } => {
                    // The block must be decoded even for a refused stream:
                    // the compression context spans the connection.
                    let block = match headers.decode(&block) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::debug!(error = %e, "SPDY port-forward: bad header block");
                            break 'conn;
                        }
                    };
                    last_stream = last_stream.max(stream);
                    if gone_away {
                        let _ = output.send(rst(stream, spdy::RST_REFUSED_STREAM)).await;
                        continue;
                    }
                    let kind = spdy::header(&block, "streamtype").unwrap_or_default();
                    let port = spdy::header(&block, "port").and_then(|p| p.parse::<u16>().ok());
                    let Some(port) = port.filter(|p| *p > 0) else {
                        let _ = output.send(rst(stream, spdy::RST_PROTOCOL_ERROR)).await;
                        continue;
                    };
                    // Clients without `requestid` (old kubectl): the pair
                    // is told by the error stream's id, the data stream
                    // being the next one (kubelet's rule).
                    let request = match spdy::header(&block, "requestid") {
                        Some(r) => r.to_string(),
                        None if kind == "data" => stream.saturating_sub(2).to_string(),
                        None => stream.to_string(),
                    };
                    let reply = match headers.encode(&[]) {
                        Ok(b) => Frame::SynReply {
                            stream,
                            flags: 0,
                            block: b,
                        },
                        Err(e) => {
                            tracing::debug!(error = %e, "SPDY port-forward: encode a reply");
                            break 'conn;
                        }
                    };
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    match kind {
                        "error" => pair.error = Some(stream),
                        "data" => {
                            pair.data = Some(stream);
                            data.insert(
                                stream,
                                DataStream {
                                    to_pod: None,
                                    unacked: 0,
                                    relay: None,
                                    early: Vec::new(),
                                    early_fin: flags & spdy::FLAG_FIN != 0,
                                },
                            );
                        }
                        _ => {
                            let _ = output.send(rst(stream, spdy::RST_PROTOCOL_ERROR)).await;
                            continue;
                        }
                    }
                    if output.send(reply.encode()).await.is_err() {
                        break 'conn;
                    }
                    if let Some(Pair {
                        port,
                        error: Some(err),
                        data: Some(d),
                    }) = pairs.get(&request)
                    {
                        let (port, err, d) = (*port, *err, *d);
                        pairs.remove(&request);
                        if let Some(ds) = data.get_mut(&d) {
                            start_relay(ds, netns.clone(), port, err, d, output.clone()).await;
                        }
                    }
                }
                Frame::Data {
                    stream,
                    flags,
                    data: bytes,
                } => {
                    let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                    session_unacked = session_unacked.saturating_add(n);
                    if let Some(ds) = data.get_mut(&stream) {
                        if !bytes.is_empty() {
                            let delivered = match &ds.to_pod {
                                Some(tx) => tx.send(bytes).await.is_ok(),
                                None if ds.relay.is_none() => {
                                    ds.early.push(bytes);
                                    true
                                }
                                None => true,
                            };
                            if !delivered {
                                ds.to_pod = None;
                            }
                        }
                        ds.unacked = ds.unacked.saturating_add(n);
                        if ds.unacked >= ACK_AT {
                            let delta = std::mem::take(&mut ds.unacked);
                            let _ = output
                                .send(Frame::WindowUpdate { stream, delta }.encode())
                                .await;
                        }
                        if flags & spdy::FLAG_FIN != 0 {
                            if ds.relay.is_none() {
                                ds.early_fin = true;
                            }
                            // Dropping the sender shuts the pod side's
                            // write half.
                            ds.to_pod = None;
                        }
                    }
                    if session_unacked >= ACK_AT {
                        let delta = std::mem::take(&mut session_unacked);
                        let _ = output
                            .send(Frame::WindowUpdate { stream: 0, delta }.encode())
                            .await;
                    }
                }
                Frame::RstStream { stream, .. } => {
                    if let Some(ds) = data.remove(&stream) {
                        if let Some(r) = ds.relay {
                            r.abort();
                        }
                    }
                }
                Frame::Ping { id } => {
                    // Pings of the peer's parity are echoed; ours (even)
                    // are never sent, so there is nothing else to match.
                    if id % 2 == 1 && output.send(Frame::Ping { id }.encode()).await.is_err() {
                        break 'conn;
                    }
                }
                Frame::Headers { block, .. } | Frame::SynReply { block, .. } => {
                    if headers.decode(&block).is_err() {
                        break 'conn;
                    }
                }
                Frame::GoAway { .. } => gone_away = true,
                Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        }
    }
    for (_, ds) in data {
        if let Some(r) = ds.relay {
            r.abort();
        }
    }
}

fn rst(stream: u32, status: u32) -> Vec<u8> {
    Frame::RstStream { stream, status }.encode()
}

fn fin(stream: u32, bytes: Vec<u8>) -> Vec<u8> {
    Frame::Data {
        stream,
        flags: spdy::FLAG_FIN,
        data: bytes,
    }
    .encode()
}

/// Connects to the port in the pod (on its own task, so the session keeps
/// reading) and relays it on data stream `d`; errors go on stream `err`.
async fn start_relay(
    ds: &mut DataStream,
    netns: PathBuf,
    port: u16,
    err: u32,
    d: u32,
    output: mpsc::Sender<Vec<u8>>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    for early in ds.early.drain(..) {
        let _ = tx.try_send(early);
    }
    if !ds.early_fin {
        ds.to_pod = Some(tx);
    }
    let task = tokio::spawn(async move {
        let conn = match crate::kubelet::connect_in_pod(&netns, port).await {
            Ok(c) => c,
            Err(e) => {
                let msg =
                    format!("error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: {e}");
                let _ = output.send(fin(err, msg.into_bytes())).await;
                let _ = output.send(fin(d, Vec::new())).await;
                return;
            }
        };
        let (mut r, mut w) = conn.into_split();
        let to_pod = async move {
            while let Some(bytes) = rx.recv().await {
                if w.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        };
        let out = output.clone();
        let from_pod = async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        let f = Frame::Data {
                            stream: d,
                            flags: 0,
                            data: buf[..n].to_vec(),
                        };
                        if out.send(f.encode()).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let msg = format!("error forwarding port {port} to pod: read: {e}");
                        let _ = out.send(fin(err, msg.into_bytes())).await;
                        let _ = out.send(fin(d, Vec::new())).await;
                        return;
                    }
                }
            }
            let _ = out.send(fin(d, Vec::new())).await;
            let _ = out.send(fin(err, Vec::new())).await;
        };
        // The pod's side ending ends the forward (as kubelet's copy does);
        // the client's FIN only half-closes.
        tokio::pin!(from_pod);
        tokio::select! {
            _ = &mut from_pod => {}
            _ = async { to_pod.await; std::future::pending::<()>().await } => {}
        }
    });
    ds.relay = Some(task.abort_handle());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the framing, for driving a session in memory.
    struct Client {
        headers: Headers,
        buf: Vec<u8>,
    }

    impl Client {
        fn syn(&mut self, stream: u32, kind: &str, port: &str, fin: bool) -> Vec<u8> {
            let block = self
                .headers
                .encode(&[("streamtype", kind), ("port", port), ("requestid", "0")])
                .unwrap();
            Frame::SynStream {
                stream,
                associated: 0,
                priority: 0,
                flags: if fin { spdy::FLAG_FIN } else { 0 },
                block,
            }
            .encode()
        }

        async fn next(&mut self, rx: &mut mpsc::Receiver<Vec<u8>>) -> Frame {
            loop {
                if let Some((f, used)) = spdy::parse(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    return f;
                }
                let more = rx.recv().await.expect("the session ended");
                self.buf.extend(more);
            }
        }
    }

    /// A session on an unreachable namespace, its input and its output.
    type Session = (
        mpsc::Sender<Vec<u8>>,
        mpsc::Receiver<Vec<u8>>,
        tokio::task::JoinHandle<()>,
        Client,
    );

    fn session() -> Session {
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(8);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(64);
        let input = futures::stream::poll_fn({
            let mut in_rx = in_rx;
            move |cx| in_rx.poll_recv(cx)
        });
        let task = tokio::spawn(serve(input, out_tx, PathBuf::from("/nonexistent/ns")));
        let client = Client {
            headers: Headers::new().unwrap(),
            buf: Vec::new(),
        };
        (in_tx, out_rx, task, client)
    }

    #[tokio::test]
    async fn a_failed_connection_is_reported_on_the_error_stream_then_both_close() {
        let (tx, mut rx, task, mut c) = session();
        tx.send(c.syn(1, "error", "80", true)).await.unwrap();
        tx.send(c.syn(3, "data", "80", false)).await.unwrap();
        let mut error_text = Vec::new();
        let (mut error_fin, mut data_fin) = (false, false);
        while !(error_fin && data_fin) {
            if let Frame::Data {
                stream,
                flags,
                data,
            } = c.next(&mut rx).await
            {
                let fin = flags & spdy::FLAG_FIN != 0;
                match stream {
                    1 => {
                        error_text.extend(data);
                        error_fin |= fin;
                    }
                    3 => data_fin |= fin,
                    s => panic!("data on stream {s}"),
                }
            }
        }
        let text = String::from_utf8(error_text).unwrap();
        assert!(text.contains("error forwarding port 80"), "{text}");
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn received_data_is_acknowledged_with_window_updates() {
        let (tx, mut rx, task, mut c) = session();
        tx.send(c.syn(1, "error", "80", true)).await.unwrap();
        tx.send(c.syn(3, "data", "80", false)).await.unwrap();
        for _ in 0..3 {
            let f = Frame::Data {
                stream: 3,
                flags: 0,
                data: vec![7u8; 16 * 1024],
            };
            tx.send(f.encode()).await.unwrap();
        }
        let (mut stream_acked, mut session_acked) = (0u32, 0u32);
        while stream_acked < ACK_AT || session_acked < ACK_AT {
            if let Frame::WindowUpdate { stream, delta } = c.next(&mut rx).await {
                match stream {
                    0 => session_acked += delta,
                    3 => stream_acked += delta,
                    s => panic!("window update for stream {s}"),
                }
            }
        }
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_ping_of_the_client_is_echoed() {
        let (tx, mut rx, task, mut c) = session();
        tx.send(Frame::Ping { id: 1 }.encode()).await.unwrap();
        assert_eq!(c.next(&mut rx).await, Frame::Ping { id: 1 });
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_is_answered_with_syn_reply_even_when_its_frame_is_split() {
        let (tx, mut rx, task, mut c) = session();
        let syn = c.syn(1, "error", "80", true);
        tx.send(syn[..5].to_vec()).await.unwrap();
        tx.send(syn[5..].to_vec()).await.unwrap();
        assert!(matches!(
            c.next(&mut rx).await,
            Frame::SynReply { stream: 1, .. }
        ));
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_without_a_port_is_reset() {
        let (tx, mut rx, task, mut c) = session();
        tx.send(c.syn(1, "data", "x", false)).await.unwrap();
        assert_eq!(
            c.next(&mut rx).await,
            Frame::RstStream {
                stream: 1,
                status: spdy::RST_PROTOCOL_ERROR
            }
        );
        drop(tx);
        task.await.unwrap();
    }
}
