//! `weft trace FROM TO`: one real connection attempt through the embedded
//! cluster, observed hop by hop with nftables tracing — no simulation.
//!
//! 1. FROM (`pod/NAME`, `node/NAME`, `external`) and TO (`pod/NAME`,
//!    `svc/NAME`, `IP:PORT`) are resolved to a network namespace and
//!    addresses; the attempt gets a source port nothing else uses.
//! 2. In every namespace of the cluster a table `inet weft-trace-<pid>`
//!    marks packets of that flow (`th sport P` / `th dport P`, both
//!    directions) with `meta nftrace set 1` at prerouting and output,
//!    priority -350 (before conntrack, DNAT and every weft table), and a
//!    [`TraceSocket`] per namespace listens to the trace events.
//! 3. The attempt is made from FROM's namespace (a TCP connect or a UDP
//!    datagram and its answer), then the events are stitched: every
//!    (namespace, trace id) is one pass of the packet through a hook, in
//!    the order they arrived, and rules of weft's tables are named by their
//!    chains and comments (read back with `nft -j -a list table`): the
//!    Service and endpoint of a DNAT, the NetworkPolicy that allowed or
//!    denied (a namespace's default deny named as such), the masquerade,
//!    the interface it came in or left by, and the overlay peer a node
//!    sends it to (VXLAN VTEP from route, neighbour and FDB; the host-gw
//!    gateway; the WireGuard device).
//! 4. A packet that vanished is explained from the last namespace it was
//!    seen in: route lookup, neighbour, reverse-path filter, MTU, then the
//!    kernel's drop reasons seen during the attempt
//!    ([`weft_linux::dropwatch`], `skb:kfree_skb` in a private tracefs
//!    instance; the tracepoint carries no addresses, so it is correlated by
//!    time, socket teardown left out).
//! 5. The tracer tables (written and removed one nft process per namespace,
//!    in parallel) and the tracing instance are removed when the trace ends,
//!    also on Ctrl-C; tables and instances left by a trace that was killed
//!    (their pid gone) are removed by the next one. A tracer table only sets
//!    the trace flag and accepts: it never changes a verdict.
//!
//! Not built: traces on a real cluster (the tracer would have to run in
//! every node's agent); the tables are written with nft processes, not
//! over netlink.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use weft_cluster::Layout;
use weft_linux::nftrace::{TraceEvent, TraceKind, TraceSocket, Verdict};
use weft_linux::Netns;

/// `weft trace`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Where the connection starts: pod/NAME, node/NAME or external.
    pub from: String,
    /// Where it goes: pod/NAME, svc/NAME or IP:PORT.
    pub to: String,
    /// The port (of the Service for svc/, of the pod for pod/).
    #[arg(long)]
    pub port: Option<u16>,
    /// tcp (default) or udp.
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// UDP only: the datagram's payload in bytes (Linux sets Don't Fragment
    /// while it knows no smaller path MTU, so a hop whose MTU is smaller
    /// drops it, and the trace says where and why).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=65000))]
    pub size: Option<u16>,
    /// Namespace of the pods and Services named.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// `json`: the verdict and the hops as JSON.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// The tracer's table in each namespace (with the tracing process's pid).
pub const TABLE_PREFIX: &str = "weft-trace-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// One hop of the packet, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub r#where: String,
    pub layer: String,
    pub what: String,
}

/// A namespace the trace watches, and what to call it.
struct Watched {
    netns: String,
    label: String,
    layer: &'static str,
}

/// Deletes the tracer tables on drop.
struct Tables {
    netns: Vec<String>,
    table: String,
}

impl Drop for Tables {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = nft(ns, &["delete", "table", "inet", &self.table]);
        }
    }
}

fn nft(netns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .output()
        .context("run nft (install nftables)")?;
    if !out.status.success() {
        bail!(
            "nft {} in {netns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nft_script(netns: &str, script: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run nft (install nftables)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The tracer table marking the flow with source or destination port `port`.
fn tracer_table(table: &str, proto: Proto, port: u16) -> String {
    // TCP: the SYN, and what answers it (SYN-ACK or RST): one packet
    // each way is the path; the rest of the connection follows it.
    let (l4, first) = match proto {
        Proto::Tcp => ("tcp", " tcp flags & (syn | rst) != 0"),
        Proto::Udp => ("udp", ""),
    };
    let mut s = format!(
        "table inet {table} {{\n  comment \"weft trace (pid {}): sets the trace flag only\"\n",
        std::process::id()
    );
    for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
        s += &format!(
            "  chain {chain} {{\n    type filter hook {hook} priority -350; policy accept;\n    \
             meta l4proto {l4} th sport {port}{first} meta nftrace set 1\n    \
             meta l4proto {l4} th dport {port}{first} meta nftrace set 1\n  }}\n"
        );
    }
    s + "}\n"
}

/// Deletes tracer tables whose trace process is gone (a killed trace).
fn sweep_stale(netns: &[String]) {
    std::thread::scope(|sc| {
        for ns in netns {
            sc.spawn(move || sweep_stale_in(ns));
        }
    });
}

fn sweep_stale_in(ns: &str) {
    {
        let Ok(list) = nft(ns, &["list", "tables"]) else {
            return;
        };
        for line in list.lines() {
            let Some(name) = line.trim().strip_prefix("table inet ") else {
                continue;
            };
            let Some(pid) = name.strip_prefix(TABLE_PREFIX) else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = nft(ns, &["delete", "table", "inet", name]);
            }
        }
    }
}

/// The attempt's endpoints.
struct Plan {
    from_netns: String,
    /// The node namespace of a pod FROM (its packets go through it next).
    from_node_netns: Option<String>,
    from_ip: IpAddr,
    to: SocketAddr,
    /// What TO was, for the headline.
    to_label: String,
    proto: Proto,
    /// UDP payload size (`--size`).
    size: Option<u16>,
}

fn resolve(layout: &Layout, args: &TraceArgs) -> Result<Plan> {
    let proto = match args.proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => bail!("--proto {other:?}: expected tcp or udp"),
    };
    if args.size.is_some() && proto != Proto::Udp {
        bail!("--size is for --proto udp (a TCP SYN carries no payload)");
    }
    let ns = args.namespace.as_deref().unwrap_or("default");
    let (from_netns, from_ip, from_node_netns) = match args.from.split_once('/') {
        None if args.from == "external" => (
            layout.client_netns(),
            IpAddr::V4(weft_cluster::CLIENT_ADDR),
            None,
        ),
        Some(("node", name)) => {
            let n = crate::components::node_layout(layout, name)?;
            (n.netns.clone(), IpAddr::V4(n.ip), None)
        }
        Some(("pod", name)) => {
            let (pod, sandbox) = crate::cluster::pod_sandbox(layout, name, ns)?;
            let ip: IpAddr = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("pod {ns}/{name} has no IP yet"))?;
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let node_netns = crate::components::node_layout(layout, node)?.netns;
            match sandbox.record.netns.clone() {
                Some(n) => (n, ip, Some(node_netns)),
                None => (node_netns, ip, None),
            }
        }
        _ => bail!(
            "FROM {:?}: expected pod/NAME, node/NAME or external",
            args.from
        ),
    };
    let (to, to_label) = match args.to.split_once('/') {
        Some(("pod", name)) => {
            let port = args
                .port
                .with_context(|| format!("TO pod/{name}: give the port with --port"))?;
            let pod = get_json::<k8s_openapi::api::core::v1::Pod>(layout, name, ns)?;
            let ip: IpAddr = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("pod {ns}/{name} has no IP yet"))?;
            (SocketAddr::new(ip, port), format!("pod {ns}/{name}"))
        }
        Some(("svc", name)) => {
            let svc = get_json::<k8s_openapi::api::core::v1::Service>(layout, name, ns)?;
            let ip: IpAddr = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("Service {ns}/{name} has no ClusterIP"))?;
            let ports = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let want = match proto {
                Proto::Tcp => "TCP",
                Proto::Udp => "UDP",
            };
            let of_proto = |p: &&Value| p["protocol"].as_str().unwrap_or("TCP") == want;
            let port = match args.port {
                Some(p) => {
                    if !ports.iter().filter(of_proto).any(|x| x["port"] == p) {
                        bail!("Service {ns}/{name} has no {want} port {p}");
                    }
                    p
                }
                None => ports
                    .iter()
                    .find(of_proto)
                    .and_then(|p| p["port"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                    .with_context(|| format!("Service {ns}/{name} has no {want} port"))?,
            };
            (
                SocketAddr::new(ip, port),
                format!("Service {ns}/{name} ({ip}:{port})"),
            )
        }
        None => {
            let addr: SocketAddr = args.to.parse().with_context(|| {
                format!("TO {:?}: expected pod/NAME, svc/NAME or IP:PORT", args.to)
            })?;
            (addr, addr.to_string())
        }
        _ => bail!("TO {:?}: expected pod/NAME, svc/NAME or IP:PORT", args.to),
    };
    Ok(Plan {
        from_netns,
        from_node_netns,
        from_ip,
        to,
        to_label,
        proto,
        size: args.size,
    })
}

/// Object `ns/name` of kind `K`, as JSON.
fn get_json<K>(layout: &Layout, name: &str, ns: &str) -> Result<Value>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let rt = crate::api::runtime()?;
    let _in = rt.enter();
    let client = crate::api::client(layout)?;
    rt.block_on(async {
        let api: kube::Api<K> = kube::Api::namespaced(client, ns);
        match api.get_opt(name).await? {
            Some(o) => Ok(serde_json::to_value(o)?),
            None => bail!("{} {ns}/{name} not found", K::kind(&())),
        }
    })
}

/// Every namespace of the cluster, named for the table: node-1, fabric,
/// external, and pods by namespace/name.
fn watched(layout: &Layout) -> Result<Vec<Watched>> {
    let prefix = layout.netns_prefix();
    // Pod namespaces, from the node runtimes' sandbox records.
    let mut pods: HashMap<String, String> = HashMap::new();
    let nodes = std::fs::read_dir(layout.state_dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten();
    for node in nodes {
        let dirs = std::fs::read_dir(node.path().join("pods"))
            .into_iter()
            .flatten()
            .flatten();
        for dir in dirs {
            let Ok(text) =
                std::fs::read_to_string(dir.path().join(weft_node::sandbox::RECORD_FILE))
            else {
                continue;
            };
            if let Ok(rec) = serde_json::from_str::<weft_node::sandbox::Record>(&text) {
                if let Some(netns) = rec.netns {
                    pods.insert(netns, format!("pod {}/{}", rec.namespace, rec.name));
                }
            }
        }
    }
    Ok(crate::topology::cluster_netns(layout)
        .into_iter()
        .map(|netns| {
            let short = netns.strip_prefix(&prefix).unwrap_or(&netns).to_string();
            let (label, layer) = if let Some(p) = pods.get(&netns) {
                (p.clone(), "pod")
            } else if short == "fabric" {
                ("fabric".to_string(), "fabric")
            } else if short == "client" {
                ("external client".to_string(), "client")
            } else if short.starts_with("node-") {
                (short.clone(), "node")
            } else {
                (short.clone(), "pod")
            };
            Watched {
                netns,
                label,
                layer,
            }
        })
        .collect())
}

/// A free source port in the ephemeral range, from the clock.
fn source_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    40000 + ((nanos ^ std::process::id().wrapping_mul(2654435761)) % 20000) as u16
}

/// What the attempt itself saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Answered,
    Refused,
    TimedOut,
    Failed(String),
}

fn attempt(plan: &Plan, sport: u16) -> Result<Outcome> {
    let ns = Netns::open(Path::new("/run/netns").join(&plan.from_netns))?;
    let (from, to, proto) = (SocketAddr::new(plan.from_ip, sport), plan.to, plan.proto);
    let size = plan.size;
    let outcome = ns.run(move || -> std::io::Result<Outcome> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = if to.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        match proto {
            Proto::Tcp => {
                let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
                s.set_reuse_address(true)?;
                s.bind(&from.into())?;
                Ok(
                    match s.connect_timeout(&to.into(), Duration::from_secs(2)) {
                        Ok(()) => Outcome::Answered,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            Outcome::Refused
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Outcome::TimedOut,
                        Err(e) => Outcome::Failed(e.to_string()),
                    },
                )
            }
            Proto::Udp => {
                let s = std::net::UdpSocket::bind(from)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                // A command agnhost's netexec (and weft's) answers.
                let mut payload = b"echo weft trace ".to_vec();
                if let Some(n) = size {
                    payload.resize(usize::from(n), b'.');
                    // Linux sends UDP with Don't Fragment while it knows
                    // no smaller path MTU (path MTU discovery, the default
                    // `IP_PMTUDISC_WANT`): a hop with a smaller MTU drops it.
                }
                match s.send_to(&payload, to) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(90) => {
                        // EMSGSIZE: larger than the source's own route MTU.
                        return Ok(Outcome::Failed(format!(
                            "the source cannot send {} bytes with Don't Fragment: {e}",
                            payload.len()
                        )));
                    }
                    Err(e) => return Err(e),
                }
                let mut buf = [0u8; 512];
                Ok(match s.recv_from(&mut buf) {
                    Ok(_) => Outcome::Answered,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        Outcome::TimedOut
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                })
            }
        }
    })?;
    outcome.with_context(|| format!("the connection attempt from {from}"))
}

/// A rule of a weft table: its chain and comment, by handle.
type Rules = HashMap<u64, (String, Option<String>)>;

fn rules_of(netns: &str, table: &str) -> Rules {
    let mut out = Rules::new();
    let Ok(text) = nft(netns, &["-j", "-a", "list", "table", "inet", table]) else {
        return out;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return out;
    };
    for item in v["nftables"].as_array().into_iter().flatten() {
        let r = &item["rule"];
        if let (Some(h), Some(chain)) = (r["handle"].as_u64(), r["chain"].as_str()) {
            out.insert(
                h,
                (chain.to_string(), r["comment"].as_str().map(str::to_string)),
            );
        }
    }
    out
}

/// `service-XXXX-ns/name/tcp/port` → `ns/name port`;
/// `endpoint-XXXX-ns/name/tcp/port__10.244.1.3/8080` → (Service, endpoint).
fn proxy_chain(chain: &str) -> Option<(String, Option<String>)> {
    let (_, rest) = chain.split_once('-')?;
    let (_, rest) = rest.split_once('-')?;
    let (svc, endpoint) = match rest.split_once("__") {
        Some((s, e)) => (s, Some(e.replacen('/', ":", 1))),
        None => (rest, None),
    };
    let parts: Vec<&str> = svc.split('/').collect();
    let name = match parts.as_slice() {
        [ns, name, proto, port] => format!("{ns}/{name} {port}/{proto}"),
        _ => return None,
    };
    Some((name, endpoint))
}

/// What one event says, in words (None: nothing worth a line).
fn describe(
    e: &TraceEvent,
    first_packet: Option<weft_linux::nftrace::Packet>,
    rules: &Rules,
) -> Option<(String, String)> {
    let rule = e.rule_handle.and_then(|h| rules.get(&h));
    let comment = rule.and_then(|(_, c)| c.clone());
    let table = e.table.as_str();
    if table.starts_with(TABLE_PREFIX) {
        return None;
    }
    let layer = match table {
        "weft-proxy" => "proxy",
        "weft-policy" => "policy",
        "weft-overlay" | "weft-masq" => "overlay",
        _ => "nftables",
    };
    let what = match (&e.kind, &e.verdict) {
        (TraceKind::Rule, Some(Verdict::Jump(c) | Verdict::Goto(c))) if table == "weft-proxy" => {
            if c == "mark-for-masquerade" {
                match &comment {
                    Some(why) => format!("marked for masquerade: {why}"),
                    None => "marked for masquerade".to_string(),
                }
            } else if c.starts_with("endpoint-") {
                let (svc, ep) = proxy_chain(c)?;
                format!("endpoint {} chosen for Service {svc}", ep.unwrap_or_default())
            } else if c.starts_with("service-") || c.starts_with("external-") {
                let (svc, _) = proxy_chain(c)?;
                format!("Service {svc} matched (chain {})", e.chain)
            } else {
                return None;
            }
        }
        (TraceKind::Rule, Some(Verdict::Accept)) if table == "weft-proxy" && e.chain.starts_with("endpoint-") => {
            let (svc, ep) = proxy_chain(&e.chain)?;
            format!("DNAT to {} for Service {svc}", ep.unwrap_or_default())
        }
        (TraceKind::Rule, Some(Verdict::Accept)) if table == "weft-policy" => match &comment {
            Some(c) => format!("allowed by NetworkPolicy {c}"),
            None => return None,
        },
        (TraceKind::Rule, Some(Verdict::Drop)) => match (&comment, table) {
            (Some(c), "weft-policy") => match c.split_once(" isolates: ") {
                Some((policy, dir)) => format!(
                    "DROPPED: {} — NetworkPolicy {policy} isolates the pod and none of its rules allows this",
                    dir.trim()
                ),
                None => format!("DROPPED: NetworkPolicy {c}"),
            },
            (_, "weft-proxy") if e.chain == "reject-chain" => format!(
                "DROPPED: rejected — the Service at {} has no ready endpoints",
                e.packet()
                    .or(first_packet)
                    .map(|p| match p.ports {
                        Some((_, d)) => format!("{}:{d}", p.dst),
                        None => p.dst.to_string(),
                    })
                    .unwrap_or_else(|| "this address".into())
            ),
            (Some(c), _) => format!("DROPPED: {c}"),
            (None, _) => format!("DROPPED: by {table} chain {}", e.chain),
        },
        (TraceKind::Rule, _) => match &comment {
            Some(c) if table == "weft-proxy" && c.contains("masquerade") => c.clone(),
            _ => return None,
        },
        (TraceKind::Policy, Some(Verdict::Drop)) | (TraceKind::Policy, None)
            if e.policy == Some(Verdict::Drop) =>
        {
            format!("DROPPED: by the policy of {table} chain {}", e.chain)
        }
        _ => return None,
    };
    Some((layer.to_string(), what))
}

/// The trace: hops in order and the headline.
pub struct Report {
    pub verdict: &'static str,
    pub cause: String,
    pub hops: Vec<Hop>,
}

pub fn run(layout: &Layout, args: &TraceArgs) -> Result<ExitCode> {
    let plan = resolve(layout, args)?;
    let namespaces = watched(layout)?;
    let names: Vec<String> = namespaces.iter().map(|w| w.netns.clone()).collect();
    sweep_stale(&names);
    let sport = source_port();
    let table = format!("{TABLE_PREFIX}{}", std::process::id());
    let script = tracer_table(&table, plan.proto, sport);

    // Listeners first, then the marks: no event is missed.
    let mut sockets = Vec::new();
    for w in &namespaces {
        let ns = Netns::open(Path::new("/run/netns").join(&w.netns))?;
        let s = TraceSocket::open_in(&ns)
            .with_context(|| format!("listen to trace events in {}", w.netns))?;
        s.set_nonblocking()?;
        sockets.push(s);
    }
    let tables = Tables {
        netns: Vec::new(),
        table: table.clone(),
    };
    let tables = Arc::new(std::sync::Mutex::new(tables));
    // The drop watcher (started below), shared with the signal handler.
    let dropwatch: Arc<std::sync::Mutex<Option<weft_linux::dropwatch::DropWatch>>> = Arc::default();
    // Ctrl-C and SIGTERM: the tables and the tracing instance go before
    // the process does.
    {
        let tables = tables.clone();
        let dropwatch = dropwatch.clone();
        let _ = ctrlc_cleanup(move || {
            remove_tables(&tables);
            if let Some(mut w) = dropwatch.lock().ok().and_then(|mut d| d.take()) {
                w.finish();
            }
        });
    }
    // One nft process per namespace, all at once (they are independent).
    // Every namespace is listed for removal first: a Ctrl-C in the middle
    // removes what was written (deleting a table not there is harmless).
    tables.lock().map_err(|_| anyhow::anyhow!("lock"))?.netns =
        namespaces.iter().map(|w| w.netns.clone()).collect();
    let written: Vec<Result<()>> = std::thread::scope(|sc| {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|w| sc.spawn(|| nft_script(&w.netns, &script)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an nft writer panicked")))
            })
            .collect()
    });
    if let Some(e) = written.into_iter().find_map(Result::err) {
        remove_tables(&tables);
        return Err(e);
    }

    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let done = done.clone();
        std::thread::spawn(move || collect(sockets, done))
    };
    // The kernel's drop reasons while the packet is in flight (best
    // effort: a kernel without the tracepoint traces without them).
    weft_linux::dropwatch::remove_stale(TABLE_PREFIX);
    let ethertype = if plan.to.is_ipv4() { 0x0800 } else { 0x86dd };
    match weft_linux::dropwatch::DropWatch::start(&table, ethertype) {
        Ok(w) => {
            if let Ok(mut d) = dropwatch.lock() {
                *d = Some(w);
            }
        }
        Err(e) => tracing::debug!(error = %e, "no kernel drop reasons"),
    }
    let started = Instant::now();
    let outcome = attempt(&plan, sport);
    // The kernel queues the events as it processes the packets; the
    // collector stops once the sockets stay quiet (see `collect`).
    done.store(true, Ordering::SeqCst);
    let events = collector
        .join()
        .map_err(|_| anyhow::anyhow!("the trace collector panicked"))?;
    let took = started.elapsed();
    let drops = dropwatch
        .lock()
        .ok()
        .and_then(|mut d| d.take())
        .map(|mut w| w.finish())
        .unwrap_or_default();
    // The tables go now (the guard again on every exit path).
    remove_tables(&tables);
    let outcome = outcome?;

    let mut report = stitch(
        sport,
        (plan.from_ip, plan.to),
        (&plan.from_netns, plan.from_node_netns.as_deref()),
        &namespaces,
        &events,
        &outcome,
        &drops,
    );
    report.cause = name_default_deny(layout, &report.cause);
    match args.output.as_deref() {
        Some("json") => {
            let hops: Vec<Value> = report
                .hops
                .iter()
                .map(|h| json!({"where": h.r#where, "layer": h.layer, "what": h.what}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "verdict": report.verdict,
                    "cause": report.cause,
                    "from": args.from,
                    "to": plan.to_label,
                    "sourcePort": sport,
                    "hops": hops,
                }))?
            );
        }
        Some(other) => bail!("-o {other:?}: expected json"),
        None => {
            let headline = if report.cause.is_empty() {
                report.verdict.to_string()
            } else {
                format!("{}: {}", report.verdict, report.cause)
            };
            println!(
                "{headline}   ({} {}:{sport} → {}, {} ms)\n",
                args.from,
                plan.from_ip,
                plan.to_label,
                took.as_millis()
            );
            let mut rows = Vec::new();
            for (i, h) in report.hops.iter().enumerate() {
                rows.push(vec![
                    (i + 1).to_string(),
                    h.r#where.clone(),
                    h.layer.clone(),
                    h.what.clone(),
                ]);
            }
            print!(
                "{}",
                crate::table::align(&["HOP", "WHERE", "LAYER", "WHAT"], &rows)
            );
        }
    }
    Ok(if report.verdict == "DELIVERED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// How node `netns` sends a packet for `dst` out of `dev` to another node:
/// `VXLAN to 192.168.1.11` (route, neighbour, FDB of the VXLAN device),
/// `WireGuard (encrypted) to the peer of 10.244.1.0` or, for a pod address
/// routed by a gateway, `routed to 192.168.1.11 (host-gw)`; None when it is
/// not a route to another node's pods.
fn overlay_peer(netns: &str, dev: &str, dst: IpAddr) -> Option<String> {
    let json = |cmd: &str, args: &[&str]| -> Option<Value> {
        let o = Command::new(cmd)
            .args(["-n", netns, "-j"])
            .args(args)
            .output()
            .ok()?;
        serde_json::from_slice(&o.stdout).ok()
    };
    let dst_s = dst.to_string();
    let route = json("ip", &["route", "get", &dst_s])?;
    let r = route.get(0)?;
    let gw = r["gateway"].as_str()?.to_string();
    match dev {
        "weft.vxlan" => {
            let neigh = json("ip", &["neigh", "show", &gw, "dev", dev])?;
            let mac = neigh.get(0)?["lladdr"].as_str()?.to_string();
            let fdb = json("bridge", &["fdb", "show", "dev", dev])?;
            let vtep = fdb
                .as_array()?
                .iter()
                .find(|e| e["mac"].as_str() == Some(mac.as_str()) && e["dst"].is_string())?["dst"]
                .as_str()?
                .to_string();
            Some(format!("VXLAN to {vtep}"))
        }
        "weft.wg" => Some(format!("WireGuard (encrypted) to the peer of {gw}")),
        _ if r["dev"].as_str() == Some(dev)
            && weft_cluster::CLUSTER_CIDR
                .parse::<ipnet::IpNet>()
                .is_ok_and(|n| n.contains(&dst)) =>
        {
            Some(format!("routed to {gw} (host-gw)"))
        }
        _ => None,
    }
}

/// A drop by a policy that selects every pod of its namespace and has no
/// rule for the direction is that namespace's default deny: said so, with
/// the policy (`ingress denied — default deny of namespace shop by
/// NetworkPolicy shop/default-deny`). Other causes, and policies that cannot be read,
/// stay as they are.
fn name_default_deny(layout: &Layout, cause: &str) -> String {
    let Some((dir, rest)) = cause.split_once(" — NetworkPolicy ") else {
        return cause.to_string();
    };
    let Some((key, tail)) = rest.split_once(" isolates the pod") else {
        return cause.to_string();
    };
    let Some((ns, name)) = key.split_once('/') else {
        return cause.to_string();
    };
    let Ok(p) = get_json::<k8s_openapi::api::networking::v1::NetworkPolicy>(layout, name, ns)
    else {
        return cause.to_string();
    };
    let everyone = p.pointer("/spec/podSelector").is_none_or(|s| {
        s.as_object()
            .is_none_or(|o| o.values().all(|v| v.is_null()))
    });
    let field = if dir.trim().starts_with("egress") {
        "egress"
    } else {
        "ingress"
    };
    let no_rules = p
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if everyone && no_rules {
        let tail = tail.trim_start_matches(" and none of its rules allows this");
        format!("{dir} — default deny of namespace {ns} by NetworkPolicy {key}{tail}")
    } else {
        cause.to_string()
    }
}

/// Deletes the tracer tables written so far (once).
fn remove_tables(tables: &std::sync::Mutex<Tables>) {
    if let Ok(mut t) = tables.lock() {
        let owned = std::mem::take(&mut t.netns);
        let table = t.table.clone();
        std::thread::scope(|sc| {
            for ns in &owned {
                let table = &table;
                sc.spawn(move || {
                    let _ = nft(ns, &["delete", "table", "inet", table]);
                });
            }
        });
    }
}

/// (namespace index, event), in arrival order per namespace.
type Collected = Vec<(usize, TraceEvent)>;

fn collect(mut sockets: Vec<TraceSocket>, done: Arc<AtomicBool>) -> Collected {
    use std::os::fd::AsFd;
    let mut out = Vec::new();
    // The attempt had ended before the last wait.
    let mut waited_after_done = false;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let mut any = false;
        for (i, s) in sockets.iter_mut().enumerate() {
            // Until it would block (or fails: nothing more from it).
            while let Ok(batch) = s.recv() {
                any = true;
                out.extend(batch.into_iter().filter_map(|e| e.ok()).map(|e| (i, e)));
            }
        }
        if waited_after_done && !any {
            return out;
        }
        // Wait for the next event on any socket (or 20 ms): once the
        // attempt is over, 20 ms without one ends the collection (events
        // of packets still between namespaces come within microseconds).
        let mut polls: Vec<nix::poll::PollFd<'_>> = sockets
            .iter()
            .map(|s| nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let _ = nix::poll::poll(&mut polls, nix::poll::PollTimeout::from(20u8));
        waited_after_done = finished;
    }
}

/// One pass of the packet (or its answer) through one namespace's hooks.
struct Pass<'a> {
    ns: usize,
    reply: bool,
    first: usize,
    events: Vec<&'a TraceEvent>,
}

/// Where a namespace lies on the path, counted from the source (the
/// answer walks it backwards). Trace events come on one socket per
/// namespace, so their order across namespaces is rebuilt from the
/// topology: source, its node, the fabric, other nodes, other pods.
fn position(w: &Watched, ns: usize, source: usize, source_node: Option<usize>) -> u8 {
    if ns == source {
        0
    } else if Some(ns) == source_node {
        1
    } else {
        match w.layer {
            "client" | "fabric" => 2,
            "node" => 3,
            _ => 4,
        }
    }
}

/// Hops from the events: the passes in path order, each with what weft's
/// rules did in it.
fn stitch(
    sport: u16,
    plan_from: (IpAddr, SocketAddr),
    from: (&str, Option<&str>),
    namespaces: &[Watched],
    events: &Collected,
    outcome: &Outcome,
    drops: &[weft_linux::dropwatch::Drop],
) -> Report {
    let source = namespaces
        .iter()
        .position(|w| w.netns == from.0)
        .unwrap_or(usize::MAX);
    let source_node = from
        .1
        .and_then(|n| namespaces.iter().position(|w| w.netns == n));
    let mut passes: Vec<Pass<'_>> = Vec::new();
    for (k, (i, e)) in events.iter().enumerate() {
        // Only the first event of a hook carries the packet's headers; the
        // others belong to the latest pass of the same id here.
        // Trace events go to every listener of the namespace: another
        // trace's packets (another source port) are not this one's.
        if e.packet()
            .and_then(|p| p.ports)
            .is_some_and(|(s, d)| s != sport && d != sport)
        {
            continue;
        }
        let Some(pkt) = e.packet() else {
            if let Some(p) = passes
                .iter_mut()
                .rev()
                .find(|p| p.ns == *i && p.events[0].id == e.id)
            {
                p.events.push(e);
            }
            continue;
        };
        let reply = pkt.ports.is_some_and(|(_, d)| d == sport);
        // Each base chain reports the headers again: the same packet
        // (id) in the same namespace is still the same pass.
        if let Some(p) = passes.iter_mut().rev().find(|p| p.ns == *i) {
            if p.events[0].id == e.id && p.reply == reply {
                p.events.push(e);
                continue;
            }
        }
        passes.push(Pass {
            ns: *i,
            reply,
            first: k,
            events: vec![e],
        });
    }
    let original = |p: &Pass<'_>| {
        p.events[0]
            .packet()
            .is_some_and(|k| k.src == plan_from.0 && k.dst == plan_from.1.ip())
            || p.events[0]
                .packet()
                .is_some_and(|k| k.dst == plan_from.0 && k.src == plan_from.1.ip())
    };
    let overlay_in = |p: &Pass<'_>| {
        p.events
            .iter()
            .find_map(|e| e.iif)
            .is_some_and(|i| link_name(&namespaces[p.ns].netns, i).starts_with("weft."))
    };
    passes.sort_by_key(|p| {
        let pos = position(&namespaces[p.ns], p.ns, source, source_node);
        let major = if p.reply { 4 - pos } else { pos };
        // Among nodes: the packet first meets the one it reaches from the
        // fabric or a pod, then the one it reaches over the overlay; on
        // the way in it is still the original packet, DNATed further on
        // (and the answer the other way round).
        let translated = !original(p);
        let sub = (
            overlay_in(p),
            if p.reply { !translated } else { translated },
        );
        (p.reply, major, sub, p.first)
    });

    let mut rules: BTreeMap<(usize, String), Rules> = BTreeMap::new();
    let mut links: HashMap<(usize, u32), String> = HashMap::new();
    let mut hops: Vec<Hop> = Vec::new();
    let mut drop_cause: Option<String> = None;
    let mut last_where = String::new();
    // The last place the packet (not its answer) was seen, for the
    // explanation when it vanished: namespace, its label, packet, iif.
    let mut last_forward: Option<(usize, weft_linux::nftrace::Packet, Option<String>)> = None;
    // An answer that reset the connection from the destination itself.
    let mut refused_by: Option<String> = None;
    for pass in &passes {
        let w = &namespaces[pass.ns];
        let mut ifname = |idx: u32| {
            links
                .entry((pass.ns, idx))
                .or_insert_with(|| link_name(&w.netns, idx))
                .clone()
        };
        let iif = pass.events.iter().find_map(|e| e.iif).map(&mut ifname);
        let oif = pass.events.iter().find_map(|e| e.oif).map(&mut ifname);
        let dir = match (iif, oif.clone()) {
            (Some(i), Some(o)) => format!(" (in on {i}, out via {o})"),
            (Some(i), None) => format!(" (in on {i})"),
            (None, Some(o)) => format!(" (out via {o})"),
            (None, None) => String::new(),
        };
        let pkt = pass
            .events
            .iter()
            .find_map(|e| e.packet())
            .map(|p| match p.ports {
                Some((s, d)) => format!("{}:{s} → {}:{d}", p.src, p.dst),
                None => format!("{} → {}", p.src, p.dst),
            })
            .unwrap_or_default();
        let rst = pass
            .events
            .iter()
            .find_map(|e| e.packet())
            .and_then(|p| p.tcp_flags)
            .is_some_and(|f| f & 0x04 != 0);
        let head = Hop {
            r#where: w.label.clone(),
            layer: w.layer.to_string(),
            what: format!(
                "{}{pkt}{dir}",
                match (pass.reply, rst) {
                    (true, true) => "answer (TCP reset) ",
                    (true, false) => "answer ",
                    (false, _) => "",
                }
            ),
        };
        // A retransmission walks the same hops again: shown once.
        if hops.contains(&head) {
            continue;
        }
        if !pass.reply {
            if let Some(p) = pass.events.iter().find_map(|e| e.packet()) {
                let iif = pass.events.iter().find_map(|e| e.iif).map(&mut ifname);
                last_forward = Some((pass.ns, p, iif));
            }
        } else if rst && pass.ns != source && w.layer == "pod" && refused_by.is_none() {
            refused_by = Some(w.label.clone());
        }
        last_where = w.label.clone();
        hops.push(head);
        // Where a node sends it on across the underlay: the overlay peer.
        let overlay = if w.layer == "node" {
            let last = pass.events.iter().rev().find_map(|e| e.packet());
            match (oif.as_deref(), last) {
                (Some(dev), Some(p)) if dev != "cni0" => overlay_peer(&w.netns, dev, p.dst),
                _ => None,
            }
        } else {
            None
        };
        for e in &pass.events {
            let r = rules.entry((pass.ns, e.table.clone())).or_insert_with(|| {
                if e.table.starts_with(TABLE_PREFIX) {
                    Rules::new()
                } else {
                    rules_of(&w.netns, &e.table)
                }
            });
            let first_packet = pass.events.iter().find_map(|e| e.packet());
            if let Some((layer, what)) = describe(e, first_packet, r) {
                if let Some(cause) = what.strip_prefix("DROPPED: ") {
                    drop_cause.get_or_insert_with(|| format!("{cause} (in {})", w.label));
                }
                let h = Hop {
                    r#where: w.label.clone(),
                    layer,
                    what,
                };
                if hops.last() != Some(&h) {
                    hops.push(h);
                }
            }
        }
        if let Some(what) = overlay {
            hops.push(Hop {
                r#where: w.label.clone(),
                layer: "overlay".into(),
                what,
            });
        }
    }
    // The kernel's reasons, most telling first (NOT_SPECIFIED last).
    let kernel = kernel_drops(drops);
    let vanished = || -> String {
        let Some((ns, p, iif)) = &last_forward else {
            return kernel
                .as_ref()
                .map(|k| format!("; the kernel dropped it: {k}"))
                .unwrap_or_default();
        };
        let w = &namespaces[*ns];
        match (
            explain_vanished(&w.netns, &w.label, p, iif.as_deref()),
            &kernel,
        ) {
            (Some(why), Some(k)) => format!(": {why} (kernel drop reason: {k})"),
            (Some(why), None) => format!(": {why}"),
            (None, Some(k)) => format!("; the kernel dropped it: {k}"),
            (None, None) => String::new(),
        }
    };
    let (verdict, cause) = match (outcome, drop_cause) {
        (Outcome::Answered, _) => ("DELIVERED", String::new()),
        (_, Some(c)) => ("DROPPED", c),
        (Outcome::Refused, None) if refused_by.is_some() => (
            "DROPPED",
            format!(
                "refused by {}: nothing listens on that port (TCP reset)",
                refused_by.unwrap_or_default()
            ),
        ),
        (Outcome::Refused, None) => (
            "DROPPED",
            format!("refused (TCP reset or ICMP port unreachable); last seen in {last_where}"),
        ),
        (Outcome::TimedOut, None) if hops.is_empty() => (
            "DROPPED",
            "no packet left the source (no route?)".to_string(),
        ),
        (Outcome::TimedOut, None) => (
            "DROPPED",
            format!(
                "no answer; the packet was last seen in {last_where}{}",
                vanished()
            ),
        ),
        (Outcome::Failed(e), None) => (
            "DROPPED",
            format!(
                "{e}; the packet was last seen in {last_where}{}",
                vanished()
            ),
        ),
    };
    Report {
        verdict,
        cause,
        hops,
    }
}

/// Why a packet seen last in `netns` went no further, in the order the
/// issue asks: the route lookup for that packet (from the interface it came
/// in on), the neighbour it is sent to, the reverse-path filter of the
/// interface it came in on, the MTU of the way out. `None` when none of them
/// explains it (the kernel's drop reason is added by the caller).
fn explain_vanished(
    netns: &str,
    label: &str,
    p: &weft_linux::nftrace::Packet,
    iif: Option<&str>,
) -> Option<String> {
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(["-n", netns])
            .args(args)
            .output()
            .ok()
    };
    let (src, dst) = (p.src.to_string(), p.dst.to_string());
    let mut args = vec!["-j", "route", "get", dst.as_str()];
    if let Some(i) = iif {
        args.extend(["from", src.as_str(), "iif", i]);
    }
    let out = ip(&args)?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr)
            .trim()
            .trim_start_matches("RTNETLINK answers: ")
            .to_string();
        return Some(format!("route lookup for {dst} in {label} fails: {why}"));
    }
    let route: Value = serde_json::from_slice(&out.stdout).ok()?;
    let r = route.get(0)?;
    if let Some(t @ ("unreachable" | "blackhole" | "prohibit")) = r["type"].as_str() {
        return Some(format!("{label} routes {dst} as {t}"));
    }
    let dev = r["dev"].as_str().unwrap_or_default().to_string();
    let via = r["gateway"].as_str().unwrap_or(&dst).to_string();
    // The route's MTU, else the device's.
    let mtu = r["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|m| m["mtu"].as_u64())
        .or_else(|| {
            ip(&["-j", "link", "show", "dev", &dev])
                .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                .and_then(|v| v.get(0).and_then(|l| l["mtu"].as_u64()))
        });
    let too_big = mtu.filter(|m| u64::from(p.len) > *m).map(|mtu| {
        format!(
            "the packet ({} bytes, Don't Fragment) is larger than the MTU {mtu} of {dev} in {label}",
            p.len
        )
    });
    if let Some(out) = ip(&["-j", "neigh", "show", &via, "dev", &dev]) {
        let n: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let states: Vec<String> = n
            .get(0)
            .and_then(|n| n["state"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        if states.iter().any(|s| s == "FAILED" || s == "INCOMPLETE") {
            return Some(format!(
                "{label} sends it to {via} on {dev}, which does not answer ARP ({})",
                states.join(",")
            ));
        }
        // A VXLAN device needs, for the neighbour's MAC, a forwarding entry
        // naming the remote VTEP; without one the frame has nowhere to go.
        let mac = n
            .get(0)
            .and_then(|n| n["lladdr"].as_str())
            .map(str::to_string);
        if let (Some(mac), true) = (mac, dev.starts_with("weft.vxlan")) {
            let fdb = Command::new("bridge")
                .args(["-n", netns, "-j", "fdb", "show", "dev", &dev])
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                .unwrap_or(Value::Null);
            let known = fdb
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["mac"].as_str() == Some(mac.as_str()) && e["dst"].is_string());
            if !known {
                return Some(format!(
                    "{label} sends it to {via} ({mac}) on {dev}, but its forwarding database has no VTEP for {mac}"
                ));
            }
        }
    }
    if let Some(i) = iif {
        let read = |conf: &str| -> u32 {
            Command::new("ip")
                .args(["netns", "exec", netns, "cat"])
                .arg(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"))
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(0)
        };
        if read("all").max(read(i)) == 1 {
            let back = ip(&["-j", "route", "get", &src])
                .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                .and_then(|v| v.get(0).and_then(|r| r["dev"].as_str().map(str::to_string)));
            if let Some(back) = back.filter(|b| b != i) {
                return Some(format!(
                    "strict reverse-path filter on {i} in {label}: packets from {src} are expected on {back}"
                ));
            }
        }
    }
    too_big
}

/// `PKT_TOO_BIG in ip_forward`, from the drops seen during the attempt:
/// the most frequent specific reason (NOT_SPECIFIED only when alone).
fn kernel_drops(drops: &[weft_linux::dropwatch::Drop]) -> Option<String> {
    // Sockets going away free what they still queue: not a packet in flight.
    const TEARDOWN: &[&str] = &[
        "QUEUE_PURGE",
        "SOCKET_CLOSE",
        "TCP_CLOSE",
        "UNIX_DISCONNECT",
        "UNIX_SKIP_OOB",
        "SOCKET_RCVBUFF",
        "PROTO_MEM",
    ];
    let mut counts: Vec<((&str, &str), usize)> = Vec::new();
    for d in drops
        .iter()
        .filter(|d| !TEARDOWN.contains(&d.reason.as_str()))
    {
        let key = (d.reason.as_str(), d.location.as_str());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    counts.sort_by_key(|((reason, _), n)| (*reason == "NOT_SPECIFIED", std::cmp::Reverse(*n)));
    let ((reason, location), n) = counts.first()?;
    let times = if *n > 1 {
        format!(" ×{n}")
    } else {
        String::new()
    };
    Some(if location.is_empty() {
        format!("{reason}{times}")
    } else {
        format!("{reason} in {location}{times}")
    })
}

fn link_name(netns: &str, index: u32) -> String {
    let name = Netns::open(Path::new("/run/netns").join(netns))
        .and_then(|ns| weft_linux::Handle::in_netns(&ns))
        .ok()
        .and_then(|mut h| h.link_by_index(index).ok().flatten())
        .map(|l| l.name);
    name.unwrap_or_else(|| format!("if#{index}"))
}

/// Runs `f` once on SIGINT or SIGTERM, then exits 130.
fn ctrlc_cleanup(f: impl Fn() + Send + 'static) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Blocked here and in every thread started from now on; one thread
    // waits for them.
    set.thread_block()?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            f();
            std::process::exit(130);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_chain_names_read_as_service_and_endpoint() {
        assert_eq!(
            proxy_chain("endpoint-TS2MUM6R-default/backend/tcp/http__10.244.1.3/8080"),
            Some((
                "default/backend http/tcp".into(),
                Some("10.244.1.3:8080".into())
            ))
        );
        assert_eq!(
            proxy_chain("service-RPYSWEXV-default/backend/tcp/http"),
            Some(("default/backend http/tcp".into(), None))
        );
    }

    #[test]
    fn the_tracer_table_only_sets_the_trace_flag_for_the_flows_port() {
        let t = tracer_table("weft-trace-1", Proto::Udp, 41000);
        assert!(t.contains("hook prerouting priority -350; policy accept;"));
        assert!(t.contains("hook output priority -350; policy accept;"));
        assert!(t.contains("meta l4proto udp th sport 41000 meta nftrace set 1"));
        assert!(t.contains("meta l4proto udp th dport 41000 meta nftrace set 1"));
        assert!(!t.contains("drop") && !t.contains("dnat") && !t.contains("mark set"));
    }
}
