//! `weft flows`: the flow logs of every node's agent, merged — new pod
//! connections (allowed, with the policies that allowed them) and packets
//! NetworkPolicy denied (with the policy that denied them), oldest first.
//! Each agent keeps its own bounded log ([`weft_agent::flows`]) and serves
//! it on its metrics port; this command asks every node's agent from inside
//! the node's namespace, so it needs no route into the cluster. Records a
//! log lost to its bound or that the kernel could not deliver are counted
//! per node under the table, never left out silently.
//!
//! One connection between pods of two nodes is seen by both: allowed on
//! the client's node (its egress policy), and allowed or denied on the
//! server's (its ingress policy). The two records are shown as one row when
//! they are the same connection (protocol, client and server address and
//! port, within 5 s): nodes `node-1→node-2`, both policies, and the verdict
//! of the node that decided.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use weft_agent::flows::{FlowPage, FlowRecord, Lost};
use weft_cluster::Layout;
use weft_linux::Netns;

/// `weft flows`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowsArgs {
    /// Only flows with a pod of this namespace at one end.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only flows with this pod at one end (NAME, or NAMESPACE/NAME).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only `allowed` or `denied` flows.
    #[arg(long, value_parser = ["allowed", "denied"])]
    pub verdict: Option<String>,
    /// Only flows of the last D (`30s`, `5m`, `2h`).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Keep printing new flows until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// `json`: one JSON document (with -f: one record per line).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `30s`, `5m`, `2h`, `1d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 5m, 2h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// One row: one record, or the two records of one connection seen on two
/// nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub time_ms: u64,
    /// `node-1`, or `node-1→node-2`.
    pub nodes: String,
    pub verdict: String,
    pub proto: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_policy: Option<String>,
}

impl Row {
    fn of(r: &FlowRecord) -> Row {
        Row {
            time_ms: r.time_ms,
            nodes: r.node.clone(),
            verdict: r.verdict.clone(),
            proto: r.proto.clone(),
            src: r.src,
            dst: r.dst,
            endpoint: r.endpoint,
            src_pod: r.src_pod.clone(),
            dst_pod: r.dst_pod.clone(),
            service: r.service.clone(),
            egress_policy: r.egress_policy.clone(),
            ingress_policy: r.ingress_policy.clone(),
        }
    }

    /// Where the connection really went.
    fn server(&self) -> SocketAddr {
        self.endpoint.unwrap_or(self.dst)
    }

    fn policy_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.egress_policy {
            parts.push(format!("egress {p}"));
        }
        if let Some(p) = &self.ingress_policy {
            parts.push(format!("ingress {p}"));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Records of every node → rows, oldest first, the two sightings of one
/// connection merged (pure).
pub fn merge(mut records: Vec<FlowRecord>) -> Vec<Row> {
    records.sort_by_key(|r| (r.time_ms, r.node.clone(), r.seq));
    let mut rows: Vec<Row> = Vec::new();
    for r in &records {
        let row = Row::of(r);
        // The client's node saw it first; the server's node sees the
        // connection to the endpoint (after DNAT) as its destination.
        let same = rows.iter_mut().rev().take(64).find(|o| {
            o.proto == row.proto
                && o.src == row.src
                && o.server() == row.server()
                && !o.nodes.contains('→')
                && o.nodes != row.nodes
                && row.time_ms.saturating_sub(o.time_ms) <= 5000
        });
        match same {
            Some(o) => {
                // Client's node first, whichever agent read its event first.
                o.nodes = if r.client_here {
                    format!("{}→{}", row.nodes, o.nodes)
                } else {
                    format!("{}→{}", o.nodes, row.nodes)
                };
                if row.verdict == "denied" {
                    o.verdict = row.verdict.clone();
                }
                o.egress_policy = o.egress_policy.take().or(row.egress_policy);
                o.ingress_policy = o.ingress_policy.take().or(row.ingress_policy);
                o.src_pod = o.src_pod.take().or(row.src_pod);
                o.dst_pod = o.dst_pod.take().or(row.dst_pod);
                o.service = o.service.take().or(row.service);
                o.endpoint = o.endpoint.or(row.endpoint);
            }
            None => rows.push(row),
        }
    }
    rows
}

/// Does `row` pass the filters?
fn wanted(row: &Row, args: &FlowsArgs, now_ms: u64) -> bool {
    let pods = [row.src_pod.as_deref(), row.dst_pod.as_deref()];
    if let Some(ns) = &args.namespace {
        let prefix = format!("{ns}/");
        if !pods.iter().flatten().any(|p| p.starts_with(&prefix)) {
            return false;
        }
    }
    if let Some(pod) = &args.pod {
        let full = if pod.contains('/') {
            pod.clone()
        } else {
            format!("{}/{pod}", args.namespace.as_deref().unwrap_or("default"))
        };
        if !pods.iter().flatten().any(|p| *p == full) {
            return false;
        }
    }
    if let Some(v) = &args.verdict {
        if &row.verdict != v {
            return false;
        }
    }
    if let Some(d) = args.since {
        if row.time_ms + (d.as_millis() as u64) < now_ms {
            return false;
        }
    }
    true
}

fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

fn end(addr: SocketAddr, pod: Option<&str>) -> String {
    match pod {
        Some(p) => format!("{p} ({addr})"),
        None => addr.to_string(),
    }
}

/// The table (aligned) of `rows`.
pub fn table(rows: &[Row], header_line: bool) -> String {
    let header = [
        "TIME (UTC)",
        "NODE",
        "VERDICT",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "POLICY",
    ];
    let mut cells: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let mut dst = end(
            r.dst,
            if r.service.is_some() {
                None
            } else {
                r.dst_pod.as_deref()
            },
        );
        if let Some(s) = &r.service {
            dst = format!("svc {s} ({})", r.dst);
            if let Some(p) = &r.dst_pod {
                dst.push_str(&format!(" → {p}"));
            }
            if let Some(e) = r.endpoint {
                dst.push_str(&format!(" ({e})"));
            }
        }
        cells.push(vec![
            clock(r.time_ms),
            r.nodes.clone(),
            r.verdict.to_uppercase(),
            r.proto.clone(),
            end(r.src, r.src_pod.as_deref()),
            dst,
            r.policy_text(),
        ]);
    }
    let text = crate::table::align(&header, &cells);
    let mut text = if header_line {
        text
    } else {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// GET `path` from the agent of the node whose namespace is `netns`, at
/// `addr` (its metrics port), connecting from inside that namespace.
async fn agent_get(netns: &str, addr: SocketAddr, path: &str) -> Result<FlowPage> {
    let ns = Netns::open(Path::new("/run/netns").join(netns))
        .with_context(|| format!("open network namespace {netns}"))?;
    let std_stream = ns
        .run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))?
        .with_context(|| format!("connect to the agent at {addr} (in {netns})"))?;
    std_stream.set_nonblocking(true)?;
    let stream = tokio::net::TcpStream::from_std(std_stream)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .with_context(|| format!("the agent at {addr} did not answer {path} within 5 s"))??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "the agent at {addr} answered {path} with {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("the agent's answer to {path}"))
}

struct Source {
    node: String,
    netns: String,
    addr: SocketAddr,
    next: u64,
    lost: Lost,
    error: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Asks every source for what came after its `next`.
async fn poll(sources: &mut [Source]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for s in sources.iter_mut() {
        let path = if s.next == 0 {
            "/flows".to_string()
        } else {
            format!("/flows/after/{}", s.next)
        };
        match agent_get(&s.netns, s.addr, &path).await {
            Ok(page) => {
                s.next = page.next;
                s.lost = page.lost;
                s.error = None;
                out.extend(page.records);
            }
            Err(e) => s.error = Some(format!("{e:#}")),
        }
    }
    out
}

fn footer(sources: &[Source]) -> String {
    let mut lines = Vec::new();
    for s in sources {
        if let Some(e) = &s.error {
            lines.push(format!("{}: no flow log ({e})", s.node));
        } else if s.lost.bound > 0 || s.lost.kernel > 0 {
            lines.push(format!(
                "{}: {} records lost to the log's bound, {} not delivered by the kernel",
                s.node, s.lost.bound, s.lost.kernel
            ));
        }
    }
    if lines.is_empty() {
        "lost: none".to_string()
    } else {
        lines.join("\n")
    }
}

/// Runs `weft flows`.
pub fn run(layout: &Layout, args: &FlowsArgs) -> Result<ExitCode> {
    if let Some(o) = args.output.as_deref().filter(|o| *o != "json") {
        bail!("unknown output format {o:?} (json)");
    }
    let json = args.output.is_some();
    let rt = crate::api::runtime()?;
    let client = {
        let _in = rt.enter();
        crate::api::client(layout)?
    };
    rt.block_on(async {
        let nodes = Api::<Node>::all(client)
            .list(&ListParams::default())
            .await
            .context("list nodes")?;
        let mut sources = Vec::new();
        for n in &nodes.items {
            let name = n.metadata.name.clone().unwrap_or_default();
            let l = crate::components::node_layout(layout, &name)?;
            sources.push(Source {
                node: name,
                netns: l.netns.clone(),
                addr: SocketAddr::new(std::net::IpAddr::V4(l.ip), 9101),
                next: 0,
                lost: Lost::default(),
                error: None,
            });
        }
        let started = now_ms();
        let records = poll(&mut sources).await;
        let rows: Vec<Row> = merge(records)
            .into_iter()
            .filter(|r| wanted(r, args, started))
            .collect();
        if !args.follow {
            if json {
                let lost: BTreeMap<&str, Lost> =
                    sources.iter().map(|s| (s.node.as_str(), s.lost)).collect();
                let errors: BTreeMap<&str, &str> = sources
                    .iter()
                    .filter_map(|s| Some((s.node.as_str(), s.error.as_deref()?)))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "flows": rows, "lost": lost, "errors": errors,
                    }))?
                );
            } else {
                print!("{}", table(&rows, true));
                println!("{}", footer(&sources));
            }
            let failed = sources.iter().all(|s| s.error.is_some());
            return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
        // Follow: print what is there, then what comes, every 500 ms.
        let print = |rows: &[Row], header: bool| -> Result<()> {
            if json {
                for r in rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if !rows.is_empty() || header {
                print!("{}", table(rows, header));
            }
            Ok(())
        };
        print(&rows, true)?;
        let mut lost_before: Vec<Lost> = sources.iter().map(|s| s.lost).collect();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
            let records = poll(&mut sources).await;
            let now = now_ms();
            let rows: Vec<Row> = merge(records)
                .into_iter()
                .filter(|r| wanted(r, args, now))
                .collect();
            print(&rows, false)?;
            for (s, before) in sources.iter().zip(lost_before.iter_mut()) {
                if s.lost != *before {
                    eprintln!(
                        "{}: {} more records lost to the log's bound, {} more not delivered by the kernel",
                        s.node,
                        s.lost.bound - before.bound.min(s.lost.bound),
                        s.lost.kernel - before.kernel.min(s.lost.kernel)
                    );
                    *before = s.lost;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        node: &str,
        t: u64,
        verdict: &str,
        dst: &str,
        ingress: Option<&str>,
        egress: Option<&str>,
    ) -> FlowRecord {
        FlowRecord {
            seq: t,
            time_ms: t,
            node: node.into(),
            verdict: verdict.into(),
            proto: "TCP".into(),
            src: "10.244.1.5:40000".parse().unwrap(),
            dst: dst.parse().unwrap(),
            endpoint: None,
            src_pod: Some("shop/client".into()),
            dst_pod: Some("shop/db-0".into()),
            service: None,
            egress_policy: egress.map(str::to_string),
            ingress_policy: ingress.map(str::to_string),
            client_here: false,
        }
    }

    #[test]
    fn one_connection_seen_on_two_nodes_is_one_row_with_both_policies() {
        let rows = merge(vec![
            FlowRecord {
                client_here: true,
                ..rec(
                    "node-2",
                    1000,
                    "allowed",
                    "10.244.2.3:5432",
                    None,
                    Some("shop/client-out"),
                )
            },
            rec(
                "node-1",
                990,
                "denied",
                "10.244.2.3:5432",
                Some("shop/default-deny"),
                None,
            ),
        ]);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].nodes, "node-2→node-1", "the client's node first");
        assert_eq!(rows[0].verdict, "denied");
        assert_eq!(
            rows[0].policy_text(),
            "egress shop/client-out, ingress shop/default-deny"
        );
    }

    #[test]
    fn distinct_connections_and_late_repeats_stay_apart() {
        let rows = merge(vec![
            rec("node-1", 1000, "allowed", "10.244.2.3:5432", None, None),
            rec("node-2", 9000, "allowed", "10.244.2.3:5432", None, None),
            rec("node-1", 1000, "allowed", "10.244.2.3:80", None, None),
        ]);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn filters_by_namespace_pod_verdict_and_age() {
        let row = Row::of(&rec(
            "node-1",
            1_000_000,
            "denied",
            "10.244.2.3:5432",
            None,
            None,
        ));
        let args =
            |ns: Option<&str>, pod: Option<&str>, v: Option<&str>, since: Option<u64>| FlowsArgs {
                namespace: ns.map(str::to_string),
                pod: pod.map(str::to_string),
                verdict: v.map(str::to_string),
                since: since.map(Duration::from_secs),
                follow: false,
                output: None,
            };
        let now = 1_000_000 + 10_000;
        assert!(wanted(&row, &args(Some("shop"), None, None, None), now));
        assert!(!wanted(&row, &args(Some("other"), None, None, None), now));
        assert!(wanted(
            &row,
            &args(Some("shop"), Some("db-0"), None, None),
            now
        ));
        assert!(wanted(
            &row,
            &args(None, Some("shop/client"), Some("denied"), None),
            now
        ));
        assert!(
            !wanted(&row, &args(None, Some("db-0"), None, None), now),
            "pod without namespace is in default"
        );
        assert!(!wanted(&row, &args(None, None, Some("allowed"), None), now));
        assert!(wanted(&row, &args(None, None, None, Some(60)), now));
        assert!(!wanted(&row, &args(None, None, None, Some(5)), now));
    }

    #[test]
    fn durations_name_what_is_wrong() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").unwrap_err().contains("not a duration"));
    }
}
