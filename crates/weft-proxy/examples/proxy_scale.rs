//! Scale benchmark driver for weft's Services table, run by
//! `bench/proxy-scale.sh` (see there for the topology). It builds N Services
//! with 10 endpoints each as the k8s-openapi objects the API would hand the
//! agent, and:
//!
//! - `weft`: inside a node network namespace, times what the agent does —
//!   `compile` then `Syncer::sync` — from an empty table, then for single
//!   endpoint changes (diff syncs), and measures the table's size;
//! - `iptables`: the anchor — the same Services as a kube-proxy
//!   iptables-mode nat table, loaded with `iptables-restore`;
//! - `serve` / `connect`: the TCP accept loop of the measured Service's
//!   backend, and the client that opens connections to its ClusterIP one at
//!   a time and records connect latency.
//!
//! Every subcommand prints one JSON object on stdout; progress goes to
//! stderr. The driver runs compile and sync in-process, not behind an API
//! server and the agent's watches.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::{info, warn};

use weft_linux::Netns;
use weft_nft::{full_sync, NftBackend, Ruleset, SyncKind, Syncer};
use weft_proxy::{compile, NodeCtx, Snapshot, TABLE};

/// Endpoints per Service.
const ENDPOINTS: usize = 10;
/// Service port (TCP) and the endpoints' targetPort.
const PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
/// Endpoint addresses of Services other than the measured one are taken
/// from 10.244.2.1–10.244.255.254 (254 × 254 addresses, reused round-robin:
/// nothing answers on them). 10.244.0.0/24 is the client pod's, and the
/// measured Service's endpoints are 10.244.1.2–.11 (the backend namespace).
const POOL: usize = 254 * 254;
/// The first ClusterIP; the rest follow it in 10.96.0.0/12.
const FIRST_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 0);
/// Addresses left in 10.96.0.0/12 after the first ClusterIP.
const MAX_SERVICES: usize = (1 << 20) - 256;

#[derive(Parser)]
#[command(about = "weft-proxy scale benchmark driver (bench/proxy-scale.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// compile + Syncer::sync from empty, one-endpoint changes, table size.
    Weft(WeftArgs),
    /// The anchor: a kube-proxy iptables-mode nat table via iptables-restore.
    Iptables(IptablesArgs),
    /// Accept loop of the backend: read 1 byte, echo it, wait for the close.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Connections to one address, one at a time, for a bounded time and count.
    Connect(ConnectArgs),
}

#[derive(Args)]
struct Layout {
    /// Number of Services (10 endpoints each).
    #[arg(long)]
    services: usize,
    /// The node network namespace to write (e.g. /run/netns/weft-bench-px-weft-node).
    #[arg(long)]
    netns: PathBuf,
}

#[derive(Args)]
struct WeftArgs {
    #[command(flatten)]
    layout: Layout,
    /// One-endpoint changes to time after the full sync.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Read the table back with `nft list table` (for its size in bytes)
    /// only up to this many Services: nft 1.0.6 takes over 10 minutes to
    /// list 50,000.
    #[arg(long, default_value_t = 10_000)]
    list_max: usize,
}

#[derive(Args)]
struct IptablesArgs {
    #[command(flatten)]
    layout: Layout,
    /// iptables-restore binary (e.g. iptables-legacy-restore).
    #[arg(long)]
    restore: PathBuf,
    /// The matching iptables-save binary (for the size of the table).
    #[arg(long)]
    save: PathBuf,
}

#[derive(Args)]
struct ConnectArgs {
    #[arg(long)]
    target: SocketAddrV4,
    /// Source address (every connection gets its own source port from
    /// 10000 upwards, so no 4-tuple repeats within a run).
    #[arg(long)]
    source: Ipv4Addr,
    /// Stop after this many seconds …
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// … or this many connections (at most 55000: one source port each).
    #[arg(long, default_value_t = 40000)]
    max: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let out = match Cli::parse().cmd {
        Cmd::Weft(a) => weft(&a)?,
        Cmd::Iptables(a) => iptables(&a)?,
        Cmd::Serve { listen } => serve(listen)?,
        Cmd::Connect(a) => connect(&a)?,
    };
    println!("{out}");
    Ok(())
}

// --- the Services ------------------------------------------------------------

/// The Service whose endpoints answer (in the middle of the list, so the
/// anchor's linear KUBE-SERVICES walk visits half the Services for it).
fn measured(n: usize) -> usize {
    n / 2
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    // i < MAX_SERVICES (checked in `check_layout`), so this stays in 10.96.0.0/12.
    Ipv4Addr::from(u32::from(FIRST_CLUSTER_IP) + i as u32)
}

fn pool_ip(p: usize) -> Ipv4Addr {
    let p = p % POOL;
    Ipv4Addr::new(10, 244, (2 + p / 254) as u8, (1 + p % 254) as u8)
}

/// Endpoint `j` of Service `i` of `n`.
fn endpoint_ip(n: usize, i: usize, j: usize) -> Ipv4Addr {
    if i == measured(n) {
        Ipv4Addr::new(10, 244, 1, 2 + j as u8)
    } else {
        pool_ip(i * ENDPOINTS + j)
    }
}

/// The address endpoint `j` of Service `i` moves to in a change: half the
/// pool away, so never one of the Service's own ten.
fn changed_ip(i: usize, j: usize) -> Ipv4Addr {
    pool_ip(i * ENDPOINTS + j + POOL / 2)
}

fn namespace(i: usize) -> String {
    format!("bench-{:03}", i / 1000)
}

fn name(i: usize) -> String {
    format!("svc-{i:06}")
}

fn service(i: usize) -> Service {
    let ip = cluster_ip(i).to_string();
    Service {
        metadata: ObjectMeta {
            namespace: Some(namespace(i)),
            name: Some(name(i)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some([("app".to_string(), name(i))].into()),
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(PORT),
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(i32::from(TARGET_PORT))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The EndpointSlice of Service `i`, with endpoint `changed.0` moved to
/// address `changed.1` when given.
fn slice(n: usize, i: usize, changed: Option<(usize, Ipv4Addr)>) -> EndpointSlice {
    let endpoints = (0..ENDPOINTS)
        .map(|j| {
            let ip = match changed {
                Some((cj, ip)) if cj == j => ip,
                _ => endpoint_ip(n, i, j),
            };
            Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(format!("node-{}", 1 + j % 3)),
                ..Endpoint::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace(i)),
            name: Some(format!("{}-{:05x}", name(i), i % 0x100000)),
            labels: Some([("kubernetes.io/service-name".to_string(), name(i))].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(TARGET_PORT)),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

fn check_layout(l: &Layout) -> Result<()> {
    ensure!(
        (1..=MAX_SERVICES).contains(&l.services),
        "--services {}: expected 1 to {MAX_SERVICES} (ClusterIPs come from 10.96.0.0/12)",
        l.services
    );
    Ok(())
}

fn node_ctx() -> Result<NodeCtx> {
    Ok(NodeCtx {
        node_name: "node-1".into(),
        node_ips: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))],
        cluster_cidrs: vec!["10.244.0.0/16".parse().context("cluster CIDR")?],
        embedded: false,
    })
}

// --- measuring helpers -------------------------------------------------------

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// CPU time (user, system) of all waited-for child processes so far: the
/// difference around a sync is what its `nft` (or iptables-restore) used,
/// userspace parsing and the kernel's work on the netlink batch apart.
fn children_cpu() -> Result<(f64, f64)> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok((s(u.user_time()), s(u.system_time())))
}

fn cpu_since(before: (f64, f64)) -> Result<(f64, f64)> {
    let now = children_cpu()?;
    Ok((now.0 - before.0, now.1 - before.1))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// Runs `prog args` in the calling thread's namespace and returns stdout.
fn output(prog: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

// --- weft --------------------------------------------------------------------

fn weft(a: &WeftArgs) -> Result<Value> {
    check_layout(&a.layout)?;
    let n = a.layout.services;
    let t = Instant::now();
    let mut snap = Snapshot {
        services: (0..n).map(|i| Arc::new(service(i))).collect(),
        endpoint_slices: (0..n).map(|i| Arc::new(slice(n, i, None))).collect(),
    };
    let build_s = secs(t);
    info!(services = n, build_s, "built the API objects");
    let node = node_ctx()?;
    let ns = Netns::open(&a.layout.netns)
        .with_context(|| format!("open node namespace {}", a.layout.netns.display()))?;
    let mut out = ns
        .run(|| weft_in_node(n, a.changes, a.list_max, &mut snap, &node))
        .with_context(|| format!("enter node namespace {}", a.layout.netns.display()))??;
    out["build_s"] = json!(build_s);
    Ok(out)
}

/// (a), (c) and (b), on a thread inside the node namespace (the `nft`
/// children inherit it).
fn weft_in_node(
    n: usize,
    changes: usize,
    list_max: usize,
    snap: &mut Snapshot,
    node: &NodeCtx,
) -> Result<Value> {
    let mut syncer = Syncer::new(NftBackend);

    // (a) full sync from empty.
    let t = Instant::now();
    let compiled = compile(snap, node).context("compile")?;
    let compile_s = secs(t);
    ensure!(
        compiled.skipped.is_empty(),
        "compile left out {:?}",
        compiled.skipped.first()
    );
    // The transaction alone (validate + render), to split the write into
    // weft's part and nft's.
    let t = Instant::now();
    let tx = full_sync(&compiled.ruleset).context("plan the full sync")?;
    let script = tx.render();
    let render_s = secs(t);
    let (statements, script_bytes) = (tx.statements().len(), script.len());
    drop((tx, script));
    let before = children_cpu()?;
    let t = Instant::now();
    let kind = syncer
        .sync(&compiled.ruleset)
        .context("full sync of table inet weft-proxy")?;
    let sync_s = secs(t);
    let (nft_user, nft_sys) = cpu_since(before)?;
    ensure!(
        kind == SyncKind::Full,
        "first sync was {kind:?}, expected Full"
    );
    info!(
        services = n,
        compile_s, render_s, sync_s, nft_user, nft_sys, "weft: full sync"
    );

    // (c) size.
    let size = ruleset_size(&compiled.ruleset);
    let t = Instant::now();
    let listed = if n <= list_max {
        Some(output("nft", &["list", "table", "inet", TABLE])?)
    } else {
        None
    };
    let list_s = listed.as_ref().map(|_| secs(t));

    // (b) one-endpoint changes, each on another Service.
    let mut samples: Vec<[f64; 6]> = Vec::new();
    let mut diff_statements = Vec::new();
    for k in 0..changes {
        let mut i = (k * n / changes.max(1) + 1) % n;
        if i == measured(n) {
            i = (i + 1) % n;
        }
        if i == measured(n) {
            break; // n == 1: no other Service to change
        }
        let Some(slot) = snap.endpoint_slices.get_mut(i) else {
            bail!("no EndpointSlice for Service {i}");
        };
        *slot = Arc::new(slice(n, i, Some((0, changed_ip(i, 0)))));
        let t = Instant::now();
        let compiled = compile(snap, node).context("compile after a change")?;
        let compile_s = secs(t);
        let t = Instant::now();
        let tx = syncer
            .mirror()
            .plan(&compiled.ruleset)
            .context("plan a diff")?;
        let plan_s = secs(t);
        diff_statements.push(tx.statements().len());
        drop(tx);
        let before = children_cpu()?;
        let t = Instant::now();
        let kind = syncer
            .sync(&compiled.ruleset)
            .with_context(|| format!("diff sync after changing {}/{}", namespace(i), name(i)))?;
        let sync_s = secs(t);
        let (u, s) = cpu_since(before)?;
        ensure!(
            kind == SyncKind::Diff,
            "change sync was {kind:?}, expected Diff"
        );
        samples.push([compile_s + sync_s, compile_s, sync_s, plan_s, u, s]);
    }
    let col = |c: usize| samples.iter().map(|s| s[c]).collect::<Vec<_>>();
    let total = col(0);
    info!(
        services = n,
        changes = samples.len(),
        median_s = median(&total),
        "weft: one-endpoint changes"
    );
    Ok(json!({
        "services": n,
        "measured_cluster_ip": cluster_ip(measured(n)).to_string(),
        "full": {
            "compile_s": compile_s,
            "render_s": render_s,
            "sync_s": sync_s,
            "total_s": compile_s + sync_s,
            "nft_user_s": nft_user,
            "nft_sys_s": nft_sys,
            "statements": statements,
            "script_bytes": script_bytes,
        },
        "size": {
            "chains": size.0,
            "rules": size.1,
            "elements": size.2,
            "list_bytes": listed.as_ref().map(|l| l.len()),
            "list_s": list_s,
        },
        "change": {
            "count": samples.len(),
            "total_median_s": median(&total),
            "total_max_s": max(&total),
            "compile_median_s": median(&col(1)),
            "sync_median_s": median(&col(2)),
            "sync_max_s": max(&col(2)),
            "plan_median_s": median(&col(3)),
            "nft_user_median_s": median(&col(4)),
            "nft_sys_median_s": median(&col(5)),
            "statements": diff_statements,
        },
    }))
}

/// (chains, rules, set and map elements).
fn ruleset_size(rs: &Ruleset) -> (usize, usize, usize) {
    let rules = rs.chains.values().map(|c| c.rules.len()).sum();
    let elements = rs.sets.values().map(|s| s.elements.len()).sum();
    (rs.chains.len(), rules, elements)
}

// --- the anchor: kube-proxy's iptables mode ------------------------------------

/// A kube-proxy-style chain name: `PREFIX` + 16 base32 characters of a hash.
fn chain(prefix: &str, key: &str) -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let d = Sha256::digest(key.as_bytes());
    let bits = d[..10].iter().fold(0u128, |a, b| (a << 8) | u128::from(*b));
    let mut s = String::from(prefix);
    for k in (0..16).rev() {
        s.push(char::from(BASE32[((bits >> (k * 5)) & 31) as usize]));
    }
    s
}

/// The nat table kube-proxy's iptables mode writes for these Services, in
/// iptables-restore format: PREROUTING and OUTPUT jump to KUBE-SERVICES,
/// which has one `-d CLUSTERIP/32 -p tcp --dport 80 -j KUBE-SVC-…` rule per
/// Service (then the NodePort catch-all); KUBE-SVC-… masquerades
/// off-cluster sources and picks an endpoint with `statistic --mode random
/// --probability 1/(n-i)`; KUBE-SEP-… marks hairpin traffic and DNATs;
/// KUBE-POSTROUTING masquerades marked packets. Written from that
/// description (comments as kube-proxy puts them on Service rules; none on
/// endpoint rules, as its large-cluster mode does). Returns (text, chains,
/// rules).
fn kube_proxy_nat(n: usize) -> (String, usize, usize) {
    let mut decl = String::new();
    let mut rules = String::new();
    let mut n_chains = 0;
    let mut n_rules = 0;
    let add = |s: &mut String, line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        add(&mut decl, format!(":{c} - [0:0]"));
        n_chains += 1;
    }
    let fixed = [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    ];
    for r in fixed {
        add(&mut rules, r.to_string());
        n_rules += 1;
    }
    let mut svc_rules = String::new();
    for i in 0..n {
        let port_name = format!("{}/{}:http", namespace(i), name(i));
        let svc = chain("KUBE-SVC-", &format!("{port_name}tcp"));
        let ip = cluster_ip(i);
        add(&mut decl, format!(":{svc} - [0:0]"));
        n_chains += 1;
        add(
            &mut svc_rules,
            format!(
                "-A KUBE-SERVICES -m comment --comment \"{port_name} cluster IP\" -d {ip}/32 -p tcp -m tcp --dport {PORT} -j {svc}"
            ),
        );
        add(
            &mut rules,
            format!(
                "-A {svc} -m comment --comment \"{port_name} cluster IP\" ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m tcp --dport {PORT} -j KUBE-MARK-MASQ"
            ),
        );
        n_rules += 2;
        for j in 0..ENDPOINTS {
            let ep = endpoint_ip(n, i, j);
            let sep = chain("KUBE-SEP-", &format!("{port_name}tcp{ep}:{TARGET_PORT}"));
            add(&mut decl, format!(":{sep} - [0:0]"));
            n_chains += 1;
            let left = ENDPOINTS - j;
            if left > 1 {
                add(
                    &mut rules,
                    format!(
                        "-A {svc} -m statistic --mode random --probability {:.11} -j {sep}",
                        1.0 / left as f64
                    ),
                );
            } else {
                add(&mut rules, format!("-A {svc} -j {sep}"));
            }
            add(&mut rules, format!("-A {sep} -s {ep}/32 -j KUBE-MARK-MASQ"));
            add(
                &mut rules,
                format!("-A {sep} -p tcp -m tcp -j DNAT --to-destination {ep}:{TARGET_PORT}"),
            );
            n_rules += 3;
        }
    }
    add(
        &mut svc_rules,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".into(),
    );
    n_rules += 1;
    let mut text = String::with_capacity(decl.len() + rules.len() + svc_rules.len() + 128);
    text.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    text.push_str(&decl);
    text.push_str(&svc_rules);
    text.push_str(&rules);
    text.push_str("COMMIT\n");
    (text, n_chains, n_rules)
}

fn iptables(a: &IptablesArgs) -> Result<Value> {
    check_layout(&a.layout)?;
    let n = a.layout.services;
    let netns = &a.layout.netns;
    let t = Instant::now();
    let (text, chains, rules) = kube_proxy_nat(n);
    let generate_s = secs(t);
    let open =
        || Netns::open(netns).with_context(|| format!("open node namespace {}", netns.display()));

    let mut cmd = Command::new(&a.restore);
    cmd.arg("-w")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    open()?.enter_before_exec(&mut cmd);
    let before = children_cpu()?;
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("run {}", a.restore.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("write the nat table to {}", a.restore.display()))?;
    }
    let done = child
        .wait_with_output()
        .with_context(|| format!("wait for {}", a.restore.display()))?;
    let restore_s = secs(t);
    let (user, sys) = cpu_since(before)?;
    if !done.status.success() {
        bail!(
            "{} refused the nat table of {n} Services: {}",
            a.restore.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    info!(services = n, generate_s, restore_s, user, sys, restore = %a.restore.display(), "anchor: iptables-restore");

    let mut cmd = Command::new(&a.save);
    cmd.args(["-t", "nat"]).stdin(Stdio::null());
    open()?.enter_before_exec(&mut cmd);
    let t = Instant::now();
    let saved = cmd
        .output()
        .with_context(|| format!("run {}", a.save.display()))?;
    let save_s = secs(t);
    ensure!(
        saved.status.success(),
        "{} -t nat: {}",
        a.save.display(),
        String::from_utf8_lossy(&saved.stderr).trim()
    );
    Ok(json!({
        "services": n,
        "measured_cluster_ip": cluster_ip(measured(n)).to_string(),
        "full": {
            "generate_s": generate_s,
            "restore_s": restore_s,
            "total_s": generate_s + restore_s,
            "restore_user_s": user,
            "restore_sys_s": sys,
            "script_bytes": text.len(),
        },
        "size": {"chains": chains, "rules": rules, "list_bytes": saved.stdout.len(), "list_s": save_s},
    }))
}

// --- traffic -----------------------------------------------------------------

fn serve(listen: SocketAddr) -> Result<Value> {
    let l = TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))?;
    info!(%listen, "serving");
    for conn in l.incoming() {
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept");
                continue;
            }
        };
        // A client that stops mid-exchange must not stall the loop.
        if s.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
            continue;
        }
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
            // Wait for the client's close (a reset), so this side keeps no
            // TIME_WAIT socket either.
            let mut rest = [0u8; 64];
            while matches!(s.read(&mut rest), Ok(k) if k > 0) {}
        }
    }
    Ok(json!({}))
}

fn connect(a: &ConnectArgs) -> Result<Value> {
    const FIRST_PORT: u16 = 10000;
    const LAST_PORT: u16 = 65000;
    let ports = usize::from(LAST_PORT - FIRST_PORT) + 1;
    ensure!(
        (1..=ports).contains(&a.max),
        "--max {}: expected 1 to {ports} (one source port per connection)",
        a.max
    );
    ensure!(
        a.secs > 0.0 && a.secs <= 600.0,
        "--secs {}: expected 0 to 600",
        a.secs
    );
    let target = SocketAddr::V4(a.target);
    let timeout = Duration::from_secs(2);
    let mut lat_us: Vec<f64> = Vec::with_capacity(a.max);
    let (mut connect_errors, mut exchange_errors) = (0usize, 0usize);
    let mut first_error = None;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.secs);
    let mut port = FIRST_PORT;
    while lat_us.len() + connect_errors + exchange_errors < a.max && Instant::now() < deadline {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .context("create a TCP socket")?;
        sock.set_reuse_address(true).context("SO_REUSEADDR")?;
        let src = SocketAddr::from((a.source, port));
        sock.bind(&src.into())
            .with_context(|| format!("bind {src}"))?;
        port = port.saturating_add(1);
        let t = Instant::now();
        if let Err(e) = sock.connect_timeout(&target.into(), timeout) {
            connect_errors += 1;
            first_error.get_or_insert_with(|| format!("connect {target} from {src}: {e}"));
            continue;
        }
        let us = t.elapsed().as_secs_f64() * 1e6;
        let mut s: TcpStream = sock.into();
        let mut b = [7u8; 1];
        let ok = s.set_read_timeout(Some(timeout)).is_ok()
            && s.write_all(&b).is_ok()
            && s.read_exact(&mut b).is_ok();
        // Close with a reset: no TIME_WAIT, and the source port is free.
        let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
        if ok {
            lat_us.push(us);
        } else {
            exchange_errors += 1;
            first_error.get_or_insert_with(|| format!("1-byte exchange with {target} from {src}"));
        }
    }
    let elapsed = secs(start);
    let mut sorted = lat_us.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let k = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
        sorted[k - 1]
    };
    if let Some(e) = &first_error {
        warn!(connect_errors, exchange_errors, first = %e, "connection errors");
    }
    Ok(json!({
        "conns": lat_us.len(),
        "connect_errors": connect_errors,
        "exchange_errors": exchange_errors,
        "first_error": first_error,
        "secs": elapsed,
        "rate": lat_us.len() as f64 / elapsed,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": if lat_us.is_empty() { f64::NAN } else { lat_us.iter().sum::<f64>() / lat_us.len() as f64 },
        "max_us": sorted.last().copied(),
    }))
}
