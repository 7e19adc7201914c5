//! Scale benchmark driver for weft's NetworkPolicy table, run by
//! `bench/policy-scale.sh` (see there for the topology). It builds a
//! cluster of 1,000 pods (10 namespaces × 100) and N NetworkPolicies as the
//! k8s-openapi objects the API would hand the agent, and:
//!
//! - `weft`: inside a node network namespace, times what the agent does —
//!   `Snapshot::new`, `Model::build`, `compile`, then `Syncer::sync` — from
//!   an empty table, then for single-policy edits (diff syncs), and
//!   measures the table's size;
//! - `iptables`: the anchor — the same policies as a chain-per-policy
//!   iptables filter table, loaded with `iptables-restore`;
//! - `serve` / `connect`: the TCP accept loop of the measured server pod,
//!   and the client that opens connections to it one at a time and records
//!   connect latency.
//!
//! The cluster (the same for every N):
//! - namespaces `bench-0` … `bench-9`, labels `team=t<k>`;
//! - in each, pods `pod-00` … `pod-99` (labels `app=a<j>`, `tier=t<j % 4>`,
//!   named container ports http 80, metrics 9090, grpc 50051/TCP), pod `j`
//!   on node `node-<1 + j % 10>`: the measured node `node-1` holds the ten
//!   pods `j % 10 == 0` of each namespace;
//! - two kinds of pods are real, the rest are addresses only:
//!   `bench-5/server` (slot 50, on node-1, 10.244.1.2: the accept loops on
//!   TCP 80 and 81) and the client pods `bench-3/client-NN` (label
//!   `app=client`, 10.244.0.2 and 10.244.0.10 upwards: one source address
//!   per rate run, all of them one network namespace).
//!
//! Policy `k` lives in `bench-<k % 10>` and selects three pods by `app In`:
//! one on node-1 and two elsewhere, so every policy is in node-1's table
//! (the worst case of a node: in a real cluster a node holds only the
//! policies of its own pods). Its one ingress rule is, by `k / 10 % 4`: a
//! podSelector peer with one port; a namespaceSelector + podSelector peer
//! with a named port; a podSelector peer with a port range (endPort); an
//! ipBlock with an except and two ports. The server is selected by exactly
//! ten policies (`k` = 5, 15, …, 95); the last of them in name order
//! (`k = 95`) admits the clients on TCP 80 and 81, so every new connection
//! to the server walks the chains of all ten and is allowed.
//!
//! Every subcommand prints one JSON object on stdout; progress goes to
//! stderr. The driver runs compile and sync in-process, not behind an API
//! server and the agent's watches.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::{info, warn};

use weft_linux::Netns;
use weft_nft::{full_sync, NftBackend, Ruleset, SyncKind, Syncer};
use weft_policy::model::{Peers, Ports, Ranges};
use weft_policy::{compile, Direction, Model, NodeCtx, Proto, Snapshot, TABLE};

/// Namespaces, and pod slots in each.
const NAMESPACES: usize = 10;
const SLOTS: usize = 100;
/// Nodes the pods are spread over; the measured one is `node-1`.
const NODES: usize = 10;
const NODE: &str = "node-1";
/// The server pod: its namespace, slot and address.
const SERVER_NS: usize = 5;
const SERVER_SLOT: usize = 50;
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// The client pods' namespace.
const CLIENT_NS: usize = 3;
/// At most this many client pods (one source address each).
const MAX_CLIENTS: usize = 80;
/// Policies selecting the server; the last (in name order) admits the clients.
const SERVER_POLICIES: usize = 10;
/// The ports the last server policy admits the clients on (the driver's
/// accept loop, and `bench/rr.py`'s).
const ALLOWED_PORTS: [u16; 2] = [80, 81];
/// A port of the server no policy admits the clients on (the script checks
/// that a connection to it is dropped).
const DENIED_PORT: u16 = 82;
/// The fewest policies the layout has (the server's ten are k = 5 … 95).
const MIN_POLICIES: usize = 10 * (SERVER_POLICIES - 1) + SERVER_NS + 1;
/// Policy names are `pol-NNNNNN`.
const MAX_POLICIES: usize = 1_000_000;

#[derive(Parser)]
#[command(about = "weft-policy scale benchmark driver (bench/policy-scale.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Snapshot + model + compile + Syncer::sync from empty, one-policy edits, table size.
    Weft(WeftArgs),
    /// The anchor: a chain-per-policy iptables filter table via iptables-restore.
    Iptables(IptablesArgs),
    /// Accept loop of the server: read 1 byte, echo it, wait for the close.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Connections to one address, one at a time, for a bounded time and count.
    Connect(ConnectArgs),
}

#[derive(Args)]
struct LayoutArgs {
    /// Number of NetworkPolicies (at least 96).
    #[arg(long)]
    policies: usize,
    /// Client pods: 10.244.0.2, then 10.244.0.10 upwards (the rate runs'
    /// source addresses must be among them to be admitted).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// The node network namespace to write (e.g. /run/netns/weft-bench-pol-weft-node).
    #[arg(long)]
    netns: PathBuf,
}

#[derive(Args)]
struct WeftArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// One-policy edits to time after the full sync.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Read the table back with `nft list table` (for its size in bytes)
    /// only up to this many policies.
    #[arg(long, default_value_t = 10_000)]
    list_max: usize,
}

#[derive(Args)]
struct IptablesArgs {
    #[command(flatten)]
    layout: LayoutArgs,
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

// --- the cluster -------------------------------------------------------------

/// How one policy is edited: its peer selector and its ports are functions
/// of these generations (0 = as created).
#[derive(Debug, Clone, Copy, Default)]
struct Gen {
    peer: usize,
    port: usize,
}

struct Cluster {
    policies: usize,
    /// Slots of `bench-3` holding client pods, in client order.
    client_slots: Vec<usize>,
}

fn is_local_slot(j: usize) -> bool {
    j.is_multiple_of(NODES)
}

/// A slot of a pod on another node, from any number.
fn remote_slot(x: usize) -> usize {
    let r = x % SLOTS;
    if is_local_slot(r) {
        r + 1
    } else {
        r
    }
}

fn client_ip(k: usize) -> Ipv4Addr {
    if k == 0 {
        Ipv4Addr::new(10, 244, 0, 2)
    } else {
        // k < MAX_CLIENTS, so this stays below .255.
        Ipv4Addr::new(10, 244, 0, 9 + k as u8)
    }
}

fn ns_name(ns: usize) -> String {
    format!("bench-{ns}")
}

impl Cluster {
    fn new(l: &LayoutArgs) -> Result<Cluster> {
        ensure!(
            (MIN_POLICIES..=MAX_POLICIES).contains(&l.policies),
            "--policies {}: expected {MIN_POLICIES} to {MAX_POLICIES} (the server's ten policies are k = 5, 15, …, 95)",
            l.policies
        );
        ensure!(
            (1..=MAX_CLIENTS).contains(&l.clients),
            "--clients {}: expected 1 to {MAX_CLIENTS}",
            l.clients
        );
        let client_slots = (0..SLOTS)
            .rev()
            .filter(|j| !is_local_slot(*j))
            .take(l.clients)
            .collect();
        Ok(Cluster {
            policies: l.policies,
            client_slots,
        })
    }

    fn namespaces(&self) -> Result<Vec<Namespace>> {
        (0..NAMESPACES)
            .map(|ns| {
                serde_json::from_value(json!({"metadata": {
                    "name": ns_name(ns),
                    "labels": {"team": format!("t{ns}")},
                }}))
                .context("namespace object")
            })
            .collect()
    }

    fn pods(&self) -> Result<Vec<Pod>> {
        let mut out = Vec::with_capacity(NAMESPACES * SLOTS);
        for ns in 0..NAMESPACES {
            for j in 0..SLOTS {
                let client = (ns == CLIENT_NS)
                    .then(|| self.client_slots.iter().position(|s| *s == j))
                    .flatten();
                let (name, ip, node, labels) = if ns == SERVER_NS && j == SERVER_SLOT {
                    (
                        "server".to_string(),
                        SERVER_IP,
                        NODE.to_string(),
                        json!({"app": format!("a{j}"), "tier": format!("t{}", j % 4), "role": "server"}),
                    )
                } else if let Some(k) = client {
                    (
                        format!("client-{k:02}"),
                        client_ip(k),
                        NODE.to_string(),
                        json!({"app": "client"}),
                    )
                } else {
                    (
                        format!("pod-{j:02}"),
                        Ipv4Addr::new(10, 244, 100 + ns as u8, 2 + j as u8),
                        format!("node-{}", 1 + j % NODES),
                        json!({"app": format!("a{j}"), "tier": format!("t{}", j % 4)}),
                    )
                };
                let ip = ip.to_string();
                out.push(
                    serde_json::from_value(json!({
                        "metadata": {"namespace": ns_name(ns), "name": name, "labels": labels},
                        "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [
                            {"name": "http", "containerPort": 80, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                            {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
                        ]}]},
                        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
                    }))
                    .context("pod object")?,
                );
            }
        }
        Ok(out)
    }

    /// Policy `k` selects the server (one of its ten).
    fn selects_server(k: usize) -> bool {
        k % NAMESPACES == SERVER_NS && k / NAMESPACES < SERVER_POLICIES
    }

    /// Policy `k`, edited `g`.
    fn policy(&self, k: usize, g: Gen) -> Result<NetworkPolicy> {
        let (ns, m) = (k % NAMESPACES, k / NAMESPACES);
        let local = if Self::selects_server(k) {
            SERVER_SLOT
        } else {
            let slots: Vec<usize> = (0..SLOTS)
                .filter(|j| is_local_slot(*j) && !(ns == SERVER_NS && *j == SERVER_SLOT))
                .collect();
            slots[m % slots.len()]
        };
        let app = |j: usize| format!("a{j}");
        let selected = [
            app(local),
            app(remote_slot(m * 7 + 3)),
            app(remote_slot(m * 13 + 5)),
        ];
        let tcp = |port: Value| json!({"protocol": "TCP", "port": port});
        let rule = if Self::selects_server(k) && m == SERVER_POLICIES - 1 {
            json!({
                "from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{CLIENT_NS}")}},
                          "podSelector": {"matchLabels": {"app": "client"}}}],
                "ports": ALLOWED_PORTS.iter().map(|p| tcp(json!(p))).collect::<Vec<_>>(),
            })
        } else {
            match m % 4 {
                0 => json!({
                    "from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                        "values": [app((m + 11 + g.peer * 17) % SLOTS), app((m + 23 + g.peer * 17) % SLOTS)]}]}}],
                    "ports": [tcp(json!(8000 + (m + g.port * 37) % 1000))],
                }),
                1 => json!({
                    "from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", (ns + 1) % NAMESPACES)}},
                              "podSelector": {"matchLabels": {"tier": format!("t{}", (m + g.peer) % 4)}}}],
                    "ports": [tcp(json!(["metrics", "grpc"][g.port % 2]))],
                }),
                2 => {
                    let lo = 30000 + ((m + g.port * 7) % 100) * 10;
                    json!({
                        "from": [{"podSelector": {"matchLabels": {"tier": format!("t{}", (m + g.peer) % 4)}}}],
                        "ports": [{"protocol": "TCP", "port": lo, "endPort": lo + 9}],
                    })
                }
                _ => {
                    let octet = 100 + (m + g.peer) % NAMESPACES;
                    json!({
                        "from": [{"ipBlock": {"cidr": format!("10.244.{octet}.0/24"),
                                              "except": [format!("10.244.{octet}.128/25")]}}],
                        "ports": [tcp(json!(443 + g.port % 1000)), tcp(json!(8443))],
                    })
                }
            }
        };
        serde_json::from_value(json!({
            "metadata": {"namespace": ns_name(ns), "name": format!("pol-{k:06}")},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": selected}]},
                "policyTypes": ["Ingress"],
                "ingress": [rule],
            },
        }))
        .context("policy object")
    }

    /// The policy edited by change `c` of `changes`: spread over the list,
    /// never one of the server's (the rate runs after the edits must see
    /// the same path).
    fn changed_policy(&self, c: usize, changes: usize) -> usize {
        let mut k = (c * self.policies / changes.max(1) + 3) % self.policies;
        while Self::selects_server(k) {
            k = (k + 1) % self.policies;
        }
        k
    }
}

/// The API objects of one state of the cluster.
struct Objects {
    pods: Vec<Pod>,
    namespaces: Vec<Namespace>,
    policies: Vec<NetworkPolicy>,
}

impl Objects {
    fn build(c: &Cluster) -> Result<Objects> {
        Ok(Objects {
            pods: c.pods()?,
            namespaces: c.namespaces()?,
            policies: (0..c.policies)
                .map(|k| c.policy(k, Gen::default()))
                .collect::<Result<_>>()?,
        })
    }

    /// What the agent does with its stores: snapshot, then model.
    /// Returns (model, snapshot seconds, model seconds).
    fn model(&self) -> (Model, f64, f64) {
        let t = Instant::now();
        let snap = Snapshot::new(&self.pods, &self.namespaces, &self.policies);
        let snapshot_s = secs(t);
        let t = Instant::now();
        let model = Model::build(snap);
        (model, snapshot_s, secs(t))
    }
}

fn node_ctx() -> NodeCtx {
    NodeCtx {
        node_name: NODE.into(),
    }
}

/// Checks the model has the layout the bench relies on: the server
/// isolated by its ten policies, every client admitted on the allowed
/// ports and not on the denied one. Returns the server's policy count.
fn check_model(model: &Model, clients: usize) -> Result<usize> {
    let server = model
        .find_pod(&ns_name(SERVER_NS), "server")
        .context("no server pod in the model")?;
    let isolating = model.isolating(server, Direction::Ingress).len();
    ensure!(
        isolating == SERVER_POLICIES,
        "the server is isolated by {isolating} policies, expected {SERVER_POLICIES}"
    );
    let dst = IpAddr::V4(SERVER_IP);
    for k in 0..clients {
        let src = IpAddr::V4(client_ip(k));
        for port in ALLOWED_PORTS {
            ensure!(
                weft_policy::allowed(model, src, dst, Proto::Tcp, port),
                "the model denies client {src} → server {dst} TCP {port}"
            );
        }
        ensure!(
            !weft_policy::allowed(model, src, dst, Proto::Tcp, DENIED_PORT),
            "the model admits client {src} → server {dst} TCP {DENIED_PORT}"
        );
    }
    Ok(isolating)
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
    let cluster = Cluster::new(&a.layout)?;
    let t = Instant::now();
    let objects = Objects::build(&cluster)?;
    let build_s = secs(t);
    info!(
        policies = cluster.policies,
        pods = objects.pods.len(),
        build_s,
        "built the API objects"
    );
    let ns = Netns::open(&a.layout.netns)
        .with_context(|| format!("open node namespace {}", a.layout.netns.display()))?;
    let mut out = ns
        .run(|| weft_in_node(&cluster, objects, a.layout.clients, a.changes, a.list_max))
        .with_context(|| format!("enter node namespace {}", a.layout.netns.display()))??;
    out["build_s"] = json!(build_s);
    Ok(out)
}

/// Full sync, size and one-policy edits, on a thread inside the node
/// namespace (the `nft` children inherit it).
fn weft_in_node(
    cluster: &Cluster,
    mut objects: Objects,
    clients: usize,
    changes: usize,
    list_max: usize,
) -> Result<Value> {
    let n = cluster.policies;
    let node = node_ctx();
    let mut syncer = Syncer::new(NftBackend);

    // Full sync from empty.
    let (model, snapshot_s, model_s) = objects.model();
    let server_policies = check_model(&model, clients)?;
    let t = Instant::now();
    let compiled = compile(&model, &node).context("compile")?;
    let compile_s = secs(t);
    ensure!(
        compiled.problems.is_empty(),
        "compile ignored parts of policies: {:?}",
        compiled.problems.first()
    );
    let on_node = compiled
        .ruleset
        .chains
        .keys()
        .filter(|c| c.starts_with("pol-in-"))
        .count();
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
        .context("full sync of table inet weft-policy")?;
    let sync_s = secs(t);
    let (nft_user, nft_sys) = cpu_since(before)?;
    ensure!(
        kind == SyncKind::Full,
        "first sync was {kind:?}, expected Full"
    );
    let pure_s = snapshot_s + model_s + compile_s;
    info!(
        policies = n,
        on_node,
        snapshot_s,
        model_s,
        compile_s,
        render_s,
        sync_s,
        nft_user,
        nft_sys,
        "weft: full sync"
    );

    // Size.
    let size = ruleset_size(&compiled.ruleset);
    let t = Instant::now();
    let listed = if n <= list_max {
        Some(output("nft", &["list", "table", "inet", TABLE])?)
    } else {
        None
    };
    let list_s = listed.as_ref().map(|_| secs(t));
    drop((model, compiled));

    // One-policy edits, each on another policy: even ones change the peer
    // selector (or ipBlock), odd ones the port.
    let mut samples: Vec<[f64; 9]> = Vec::new();
    let mut diff_statements = Vec::new();
    let mut edits: BTreeMap<usize, Gen> = BTreeMap::new();
    for c in 0..changes {
        let k = cluster.changed_policy(c, changes);
        let g = edits.entry(k).or_default();
        if c % 2 == 0 {
            g.peer += 1;
        } else {
            g.port += 1;
        }
        let g = *g;
        let Some(slot) = objects.policies.get_mut(k) else {
            bail!("no policy {k}");
        };
        *slot = cluster.policy(k, g)?;
        let (model, snap_s, model_s) = objects.model();
        let t = Instant::now();
        let compiled = compile(&model, &node).context("compile after an edit")?;
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
            .with_context(|| format!("diff sync after editing policy {k}"))?;
        let sync_s = secs(t);
        let (u, s) = cpu_since(before)?;
        ensure!(
            kind == SyncKind::Diff,
            "edit {c} (policy {k}, {g:?}) synced as {kind:?}, expected Diff"
        );
        let pure = snap_s + model_s + compile_s;
        samples.push([
            pure + sync_s,
            pure,
            snap_s,
            model_s,
            compile_s,
            sync_s,
            plan_s,
            u,
            s,
        ]);
    }
    let col = |c: usize| samples.iter().map(|s| s[c]).collect::<Vec<_>>();
    let total = col(0);
    info!(
        policies = n,
        changes = samples.len(),
        median_s = median(&total),
        "weft: one-policy edits"
    );
    Ok(json!({
        "policies": n,
        "pods": objects.pods.len(),
        "policies_on_node": on_node,
        "server_policies": server_policies,
        "server_ip": SERVER_IP.to_string(),
        "full": {
            "snapshot_s": snapshot_s,
            "model_s": model_s,
            "compile_s": compile_s,
            "pure_s": pure_s,
            "render_s": render_s,
            "sync_s": sync_s,
            "total_s": pure_s + sync_s,
            "nft_user_s": nft_user,
            "nft_sys_s": nft_sys,
            "statements": statements,
            "script_bytes": script_bytes,
        },
        "size": {
            "chains": size.chains,
            "rules": size.rules,
            "sets": size.sets,
            "elements": size.elements,
            "list_bytes": listed.as_ref().map(Vec::len),
            "list_s": list_s,
        },
        "change": {
            "count": samples.len(),
            "total_median_s": median(&total),
            "total_max_s": max(&total),
            "pure_median_s": median(&col(1)),
            "snapshot_median_s": median(&col(2)),
            "model_median_s": median(&col(3)),
            "compile_median_s": median(&col(4)),
            "sync_median_s": median(&col(5)),
            "sync_max_s": max(&col(5)),
            "plan_median_s": median(&col(6)),
            "nft_user_median_s": median(&col(7)),
            "nft_sys_median_s": median(&col(8)),
            "statements": diff_statements,
        },
    }))
}

struct Size {
    chains: usize,
    rules: usize,
    sets: usize,
    elements: usize,
}

fn ruleset_size(rs: &Ruleset) -> Size {
    Size {
        chains: rs.chains.len(),
        rules: rs.chains.values().map(|c| c.rules.len()).sum(),
        sets: rs.sets.len(),
        elements: rs.sets.values().map(|s| s.elements.len()).sum(),
    }
}

// --- the anchor: a chain-per-policy iptables filter table ----------------------

/// A chain name as kube-router spells its policy chains: `PREFIX` + 16
/// base32 characters of a hash (28 characters, iptables' limit).
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

/// The fewest CIDRs covering exactly `lo..=hi`.
fn cidrs(lo: u32, hi: u32) -> Vec<String> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u64::from(lo), u64::from(hi));
    while lo <= hi {
        // The largest aligned block starting at lo that fits.
        let mut size = if lo == 0 {
            1u64 << 32
        } else {
            1u64 << lo.trailing_zeros().min(32)
        };
        while lo + size - 1 > hi {
            size /= 2;
        }
        let len = 32 - size.trailing_zeros();
        out.push(format!("{}/{len}", Ipv4Addr::from(lo as u32)));
        lo += size;
    }
    out
}

fn v4_ranges(r: &Ranges) -> Vec<String> {
    r.v4.iter().flat_map(|(lo, hi)| cidrs(*lo, *hi)).collect()
}

fn proto_match(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "-p tcp -m tcp",
        Proto::Udp => "-p udp -m udp",
        Proto::Sctp => "-p sctp -m sctp",
    }
}

/// The filter table a chain-per-policy NetworkPolicy implementation (the
/// shape of kube-router's and of early Calico/Weave iptables modes,
/// without ipsets) writes on `node`, in iptables-restore format:
///
/// ```text
/// -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
/// -A FORWARD -d <selected local pod>/32 -j KUBE-NWPLCY-…   per policy, per selected pod
/// -A FORWARD -d <isolated local pod>/32 -j DROP            per isolated pod, last
/// -A KUBE-NWPLCY-… [-s <peer>] [-p tcp --dport <port>] -j ACCEPT   per peer × port
/// ```
///
/// A pod-selector peer is one rule per peer pod address, an ipBlock one
/// per CIDR of what its `except` leaves; a named port is resolved against
/// each selected local pod (`-d pod -p tcp --dport N`). Policies come in
/// the model's order (namespace, name). Returns (text, chains, rules).
fn chain_per_policy(model: &Model, node: &str) -> (String, usize, usize) {
    let local = |i: usize| model.pod(i).node.as_deref() == Some(node);
    let v4 = |i: usize| -> Vec<Ipv4Addr> {
        model
            .pod(i)
            .ips
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect()
    };
    let mut decl = String::new();
    let mut forward =
        String::from("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    let mut rules = String::new();
    let (mut n_chains, mut n_rules) = (0, 1);
    for (pi, p) in model.policies.iter().enumerate() {
        let Some(ingress) = &p.ingress else { continue };
        let selected: Vec<usize> = p.selected.iter().copied().filter(|i| local(*i)).collect();
        if selected.is_empty() {
            continue;
        }
        let key = p.key();
        let ch = chain("KUBE-NWPLCY-", &key);
        decl.push_str(&format!(":{ch} - [0:0]\n"));
        n_chains += 1;
        for &i in &selected {
            for ip in v4(i) {
                forward.push_str(&format!(
                    "-A FORWARD -d {ip}/32 -m comment --comment \"{key} selects {}\" -j {ch}\n",
                    model.pod(i).key()
                ));
                n_rules += 1;
            }
        }
        for r in ingress {
            let peers: Vec<String> = match &r.peers {
                Peers::All => vec![String::new()],
                Peers::Some { ranges, pods } => {
                    // model.policies[pi] is snapshot.policies[pi], resolved.
                    let by_block = model
                        .snapshot
                        .policies
                        .get(pi)
                        .and_then(|np| np.spec.as_ref()?.ingress.as_ref()?.get(r.index))
                        .and_then(|rule| rule.from.as_ref())
                        .is_some_and(|from| from.iter().any(|f| f.ip_block.is_some()));
                    if by_block {
                        v4_ranges(ranges)
                            .into_iter()
                            .map(|c| format!("-s {c} "))
                            .collect()
                    } else {
                        pods.iter()
                            .flat_map(|&i| v4(i))
                            .map(|ip| format!("-s {ip}/32 "))
                            .collect()
                    }
                }
            };
            let ports: Vec<String> = match &r.ports {
                Ports::All => vec![String::new()],
                Ports::Some { numeric, named } => {
                    let mut v: Vec<String> = numeric
                        .iter()
                        .map(|pr| {
                            let range = if pr.lo == pr.hi {
                                pr.lo.to_string()
                            } else {
                                format!("{}:{}", pr.lo, pr.hi)
                            };
                            format!("{} --dport {range} ", proto_match(pr.proto))
                        })
                        .collect();
                    for (proto, name) in named {
                        for &i in &selected {
                            let Some(port) = model.pod(i).named_port(name, *proto) else {
                                continue;
                            };
                            for ip in v4(i) {
                                v.push(format!(
                                    "-d {ip}/32 {} --dport {port} ",
                                    proto_match(*proto)
                                ));
                            }
                        }
                    }
                    v
                }
            };
            for peer in &peers {
                for port in &ports {
                    rules.push_str(&format!("-A {ch} {peer}{port}-j ACCEPT\n"));
                    n_rules += 1;
                }
            }
        }
    }
    for (&(i, d), pols) in &model.isolating {
        if d != Direction::Ingress || pols.is_empty() || !local(i) {
            continue;
        }
        for ip in v4(i) {
            forward.push_str(&format!(
                "-A FORWARD -d {ip}/32 -m comment --comment \"{} is isolated\" -j DROP\n",
                model.pod(i).key()
            ));
            n_rules += 1;
        }
    }
    let mut text = String::with_capacity(decl.len() + forward.len() + rules.len() + 128);
    text.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    text.push_str(&decl);
    text.push_str(&forward);
    text.push_str(&rules);
    text.push_str("COMMIT\n");
    (text, n_chains, n_rules)
}

fn iptables(a: &IptablesArgs) -> Result<Value> {
    let cluster = Cluster::new(&a.layout)?;
    let n = cluster.policies;
    let netns = &a.layout.netns;
    let objects = Objects::build(&cluster)?;
    let (model, snapshot_s, model_s) = objects.model();
    check_model(&model, a.layout.clients)?;
    let t = Instant::now();
    let (text, chains, rules) = chain_per_policy(&model, NODE);
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
            .with_context(|| format!("write the filter table to {}", a.restore.display()))?;
    }
    let done = child
        .wait_with_output()
        .with_context(|| format!("wait for {}", a.restore.display()))?;
    let restore_s = secs(t);
    let (user, sys) = cpu_since(before)?;
    if !done.status.success() {
        bail!(
            "{} refused the filter table of {n} policies: {}",
            a.restore.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    info!(policies = n, generate_s, restore_s, user, sys, restore = %a.restore.display(), "anchor: iptables-restore");

    let mut cmd = Command::new(&a.save);
    cmd.args(["-t", "filter"]).stdin(Stdio::null());
    open()?.enter_before_exec(&mut cmd);
    let t = Instant::now();
    let saved = cmd
        .output()
        .with_context(|| format!("run {}", a.save.display()))?;
    let save_s = secs(t);
    ensure!(
        saved.status.success(),
        "{} -t filter: {}",
        a.save.display(),
        String::from_utf8_lossy(&saved.stderr).trim()
    );
    let resolve_s = snapshot_s + model_s;
    Ok(json!({
        "policies": n,
        "server_ip": SERVER_IP.to_string(),
        "full": {
            "resolve_s": resolve_s,
            "generate_s": generate_s,
            "restore_s": restore_s,
            "total_s": resolve_s + generate_s + restore_s,
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
    let mut first_error_kind = None;
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
            first_error_kind.get_or_insert_with(|| format!("{:?}", e.kind()));
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
        "first_error_kind": first_error_kind,
        "secs": elapsed,
        "rate": lat_us.len() as f64 / elapsed,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": if lat_us.is_empty() { f64::NAN } else { lat_us.iter().sum::<f64>() / lat_us.len() as f64 },
        "max_us": sorted.last().copied(),
    }))
}
