//! The cluster commands: up, down, apply, delete, get, exec, logs, status.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::Value;
use weft_cluster::{ClusterState, Layout, Placement};

use crate::api::{client, runtime, with_client};
use crate::manifests::{self, Manifest};
use crate::resources::{Catalog, Resource};
use crate::{procs, supervise, table, topology, Output};

fn step(msg: &str) {
    println!("  \u{2713} {msg}");
}

/// Prints a progress line, rewritten in place on a terminal.
struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stdout().is_terminal(),
            last: String::new(),
        }
    }

    fn update(&mut self, msg: String) {
        if msg == self.last {
            return;
        }
        if self.tty {
            print!("\r\x1b[2K  \u{2026} {msg}");
            let _ = std::io::stdout().flush();
        } else {
            println!("  \u{2026} {msg}");
        }
        self.last = msg;
    }

    fn done(&mut self, msg: &str) {
        if self.tty && !self.last.is_empty() {
            print!("\r\x1b[2K");
        }
        step(msg);
        self.last.clear();
    }
}

/// Flags of `weft up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Manifest files or directories to apply (repeatable).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Number of nodes (node-1 … node-N).
    #[arg(long, default_value_t = weft_cluster::DEFAULT_NODES)]
    pub nodes: usize,
    /// Fabric subnets the nodes are spread over (contiguous blocks: with 3
    /// nodes on 2, node-1 and node-2 on 192.168.1.0/24, node-3 on
    /// 192.168.2.0/24), routed by the fabric. Fixed when the cluster is created.
    #[arg(long, default_value_t = 1)]
    pub subnets: usize,
    /// Seconds to wait for nodes and pods to become Ready.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Cross-node datapath: vxlan (overlay), host-gw (direct routes via node IPs),
    /// auto (direct on the same subnet, vxlan otherwise). Fixed when the cluster is created.
    #[arg(long, default_value = "vxlan")]
    pub backend: weft_overlay::Backend,
}

pub fn up(layout: &Layout, args: &UpArgs) -> Result<ExitCode> {
    let placement = Placement::new(args.nodes, args.subnets)?;
    let files = &args.files;
    let manifests = manifests::read(files)?; // bad manifests fail before anything is built
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout);

    if procs::control_plane_pid(layout).is_some() {
        let running = layout.read_state()?.map_or(args.nodes, |s| s.nodes);
        println!(
            "weft up: cluster {:?} is running ({running} nodes); applying manifests",
            layout.name
        );
        return finish_up(layout, files, &manifests, running, (start, deadline), None);
    }
    if let Some(recorded) = restartable(layout) {
        // Only the control plane died: its state and the running pods are kept.
        println!(
            "weft up: cluster {:?} ({} nodes): restarting its control plane, state kept",
            layout.name, recorded.nodes
        );
        stop_node_runtimes(layout, recorded.nodes);
        let (url, cp) = start_control_plane(layout, deadline)?;
        step(&format!("control plane: API at {url}"));
        return finish_up(
            layout,
            files,
            &manifests,
            recorded.nodes,
            (start, deadline),
            Some(cp),
        );
    }
    println!(
        "weft up: cluster {:?} with {} nodes",
        layout.name, args.nodes
    );
    if !topology::cluster_netns(layout).is_empty() || layout.state_dir.exists() {
        let (ns, ps) = teardown(layout)?;
        step(&format!(
            "cleaned leftovers of an earlier run ({ns} namespaces, {ps} processes)"
        ));
    }
    for dir in [
        layout.state_dir.clone(),
        layout.logs_dir(),
        layout.pids_dir(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // The state holds the CA key and every token: its owner only.
    std::fs::set_permissions(
        &layout.state_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("chmod 0700 {}", layout.state_dir.display()))?;
    layout.write_state(&ClusterState {
        nodes: args.nodes,
        subnets: args.subnets,
        backend: args.backend.to_string(),
        api_port: None,
    })?;
    let node_layouts = layout.nodes_in(&placement)?;
    topology::ensure(layout, &placement)?;
    step(&format!(
        "network namespaces ({} backend): {} (fabric {}), {}, client 198.51.100.5",
        args.backend,
        layout.fabric_netns(),
        placement
            .fabric_subnets()
            .iter()
            .map(|s| s.net.to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        node_layouts
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (url, cp) = start_control_plane(layout, deadline)?;
    step(&format!(
        "control plane: API at {url}, kubeconfig {}",
        layout.kubeconfig_path().display()
    ));
    finish_up(
        layout,
        files,
        &manifests,
        args.nodes,
        (start, deadline),
        Some(cp),
    )
}

/// The state of a cluster whose control plane is gone but whose state and
/// namespaces are intact (so restarting the control plane is enough).
fn restartable(layout: &Layout) -> Option<ClusterState> {
    let state = layout.read_state().ok()??;
    let present = topology::cluster_netns(layout);
    let mut wanted = vec![layout.fabric_netns(), layout.client_netns()];
    let nodes = layout.nodes_in(&state.placement().ok()?).ok()?;
    wanted.extend(nodes.into_iter().map(|n| n.netns));
    (layout.api_dir().exists() && wanted.iter().all(|n| present.contains(n))).then_some(state)
}

/// Node runtimes and agents orphaned by a dead control plane (the new one
/// starts its own; pods keep running and are adopted, routes stay).
fn stop_node_runtimes(layout: &Layout, nodes: usize) {
    let pids: Vec<i32> = (1..=nodes)
        .flat_map(|i| [format!("node-{i}"), format!("agent-node-{i}")])
        .filter_map(|f| std::fs::read_to_string(layout.pids_dir().join(f)).ok())
        .filter_map(|s| s.trim().parse().ok())
        .filter(|pid| {
            let cmd = procs::cmdline(*pid);
            procs::alive(*pid) && (cmd.contains(" node-runtime ") || cmd.contains(" agent "))
        })
        .collect();
    procs::terminate(&pids, Duration::from_secs(2));
}

/// Waits for nodes, applies manifests, waits for their pods, prints the pods.
///
/// `cp` is the control plane this `weft up` started: if it ends meanwhile,
/// that is said at once, with how it ended (not after the deadline, as a
/// refused connection). One killed by a signal — not by weft up, which
/// sends none — is started once more with its state, as `weft up` does for
/// a cluster whose control plane died (the node runtimes it supervised are
/// replaced, their pods adopted), and the waiting goes on.
fn finish_up(
    layout: &Layout,
    files: &[PathBuf],
    manifests: &[Manifest],
    nodes: usize,
    (start, deadline): (Instant, Instant),
    mut cp: Option<Child>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut restarted = false;
    loop {
        let work = wait_and_apply(layout, files, manifests, nodes, deadline);
        let ended = rt.block_on(async {
            match cp.as_mut() {
                None => work.await.map(|()| None),
                Some(child) => tokio::select! {
                    r = work => r.map(|()| None),
                    status = ended(child) => Ok(Some(status)),
                },
            }
        })?;
        let Some(status) = ended else { break };
        let log = layout.logs_dir().join("control-plane.log");
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(sig) if !restarted => {
                eprintln!(
                    "weft up: the control plane was killed by {} (not by weft up); starting it again, state kept",
                    signal_name(sig)
                );
                stop_node_runtimes(layout, nodes);
                let (url, child) = start_control_plane(layout, deadline)?;
                step(&format!("control plane (again): API at {url}"));
                cp = Some(child);
                restarted = true;
            }
            Some(sig) => bail!(
                "the control plane was killed by {} again while weft up waited; its log: {}",
                signal_name(sig),
                log.display()
            ),
            None => bail!(
                "the control plane exited ({status}) while weft up waited; its log: {}",
                log.display()
            ),
        }
    }
    println!(
        "\nready in {:.1}s. Try: weft get pods -A -o wide | weft exec --node node-1 -- ip route | kubectl --kubeconfig $(weft kubeconfig) get svc",
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Completes when `child` has ended.
async fn ended(child: &mut Child) -> std::process::ExitStatus {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            // Not ours to wait for after all: nothing to watch.
            Err(_) => std::future::pending::<()>().await,
        }
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// The steps of [`finish_up`]: nodes and add-ons Ready, the manifests
/// applied and their workloads Ready, the pods printed.
async fn wait_and_apply(
    layout: &Layout,
    files: &[PathBuf],
    manifests: &[Manifest],
    nodes: usize,
    deadline: Instant,
) -> Result<()> {
    let client = client(layout)?;
    wait_nodes(&client, nodes, deadline).await?;
    if !manifests.is_empty() {
        apply_all(&client, manifests).await?;
        step(&format!(
            "applied {} objects from {}",
            manifests.len(),
            describe_paths(files)
        ));
        wait_workloads(&client, manifests, deadline).await?;
    }
    let pods = server_table(&client, &Resource::pods(), None, None).await?;
    if let Some(t) = table::render(&pods, true, true).filter(|_| has_rows(&pods)) {
        println!();
        print!("{t}");
    }
    Ok(())
}

fn describe_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a control plane that did not come up ended.
enum StartFailure {
    /// Killed by a signal it did not send itself, before serving anything.
    Signalled(i32),
    Other(anyhow::Error),
}

/// Starts the control plane and waits for its API. A control plane killed
/// by a signal before it served anything (it has written nothing a restart
/// could lose) is started once more, saying so; how it ended is named in
/// the error either way.
fn start_control_plane(layout: &Layout, deadline: Instant) -> Result<(String, Child)> {
    for attempt in 1..=2 {
        let child = supervise::spawn_control_plane(layout)?;
        match wait_for_api(layout, child, deadline) {
            Ok(up) => return Ok(up),
            Err(StartFailure::Signalled(sig)) if attempt == 1 => {
                eprintln!(
                    "weft up: the control plane was killed by {} during start-up (not by weft up); starting it again",
                    signal_name(sig)
                );
            }
            Err(StartFailure::Signalled(sig)) => bail!(
                "the control plane was killed by signal {sig} during start-up, twice; its log: {}",
                layout.logs_dir().join("control-plane.log").display()
            ),
            Err(StartFailure::Other(e)) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

fn wait_for_api(
    layout: &Layout,
    mut child: Child,
    deadline: Instant,
) -> std::result::Result<(String, Child), StartFailure> {
    use std::os::unix::process::ExitStatusExt;
    let log = layout.logs_dir().join("control-plane.log");
    loop {
        let url = crate::api::local_api_url(layout).map_err(StartFailure::Other)?;
        if let Some(url) = url {
            let addr = url
                .trim_start_matches("https://")
                .parse()
                .context("API address")
                .map_err(StartFailure::Other)?;
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok((url, child));
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                if let Some(sig) = status.signal() {
                    return Err(StartFailure::Signalled(sig));
                }
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "the control plane exited during start-up ({status}); its log: {}",
                    log.display()
                )));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(StartFailure::Other(
                    anyhow::Error::new(e).context("wait for the control plane"),
                ))
            }
        }
        if Instant::now() > deadline {
            return Err(StartFailure::Other(anyhow::anyhow!(
                "the API server did not come up in time; see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

async fn wait_nodes(client: &Client, want: usize, deadline: Instant) -> Result<()> {
    let kind = Resource::nodes();
    let mut progress = Progress::new();
    let mut last_error = None;
    loop {
        let nodes = match list(client, &kind, None, true).await {
            Ok(n) => n,
            Err(e) => {
                last_error = Some(format!("{e:#}"));
                Vec::new()
            }
        };
        let ready: Vec<String> = nodes
            .iter()
            .filter(|n| node_ready(n))
            .map(|n| {
                n.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        if ready.len() >= want {
            progress.done(&format!("nodes Ready: {}", ready.join(", ")));
            return wait_agents(client, want, deadline).await;
        }
        if Instant::now() > deadline {
            let listing = match &last_error {
                Some(e) if nodes.is_empty() => format!("; listing nodes failed: {e}"),
                _ => String::new(),
            };
            bail!(
                "only {}/{want} nodes Ready ({}){listing}; node runtime logs are in the state dir's logs/",
                ready.len(),
                if ready.is_empty() {
                    "none".to_string()
                } else {
                    ready.join(", ")
                }
            );
        }
        progress.update(format!("nodes Ready {}/{want}", ready.len()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node agents (the weft-agent DaemonSet) are Ready on
/// `want` nodes — a node is Ready once its agent wrote the CNI config, its
/// Services and routes once the agent's first sync is done — and then the
/// cluster DNS (its Deployment's replicas Ready: zone built, behind kube-dns)
/// and the gateway (route table built).
async fn wait_agents(client: &Client, want: usize, deadline: Instant) -> Result<()> {
    use crate::addons::{AGENT_DAEMONSET, AGENT_NAMESPACE, DNS_DEPLOYMENT, DNS_NAMESPACE};
    wait_ready_count(
        client,
        &Resource::apps("DaemonSet", "daemonsets"),
        (AGENT_NAMESPACE, AGENT_DAEMONSET),
        "/status/numberReady",
        want as u64,
        "node agents",
        deadline,
    )
    .await?;
    let (_, replicas) = crate::addons::dns_objects()?;
    wait_ready_count(
        client,
        &Resource::apps("Deployment", "deployments"),
        (DNS_NAMESPACE, DNS_DEPLOYMENT),
        "/status/readyReplicas",
        replicas,
        "cluster DNS pods",
        deadline,
    )
    .await?;
    let (_, replicas) = crate::addons::gateway_objects()?;
    wait_ready_count(
        client,
        &Resource::apps("Deployment", "deployments"),
        (
            crate::addons::GATEWAY_NAMESPACE,
            crate::addons::GATEWAY_DEPLOYMENT,
        ),
        "/status/readyReplicas",
        replicas,
        "gateway pods",
        deadline,
    )
    .await
}

/// Waits until the number at `pointer` in object `ns/name` of `kind`
/// reaches `want`, with progress output naming `what`.
async fn wait_ready_count(
    client: &Client,
    kind: &Resource,
    (ns, name): (&str, &str),
    pointer: &str,
    want: u64,
    what: &str,
    deadline: Instant,
) -> Result<()> {
    let api = api_for(client, kind, Some(ns));
    let mut progress = Progress::new();
    loop {
        let ready = match api.get_opt(name).await {
            Ok(Some(o)) => serde_json::to_value(o)?
                .pointer(pointer)
                .and_then(Value::as_u64)
                .unwrap_or(0),
            _ => 0,
        };
        if ready >= want {
            progress.done(&format!("{what} Ready {ready}/{want}"));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready}/{want} {what} ({} {ns}/{name}) Ready; see `weft get pods -n {ns}` and `weft logs -n {ns} POD`",
                kind.kind
            );
        }
        progress.update(format!("{what} Ready {ready}/{want}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_for(client: &Client, kind: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = kind.api_resource();
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        (true, None) => Api::all_with(client.clone(), &ar),
        (false, _) => Api::all_with(client.clone(), &ar),
    }
}

/// The namespace a manifest's object goes to; an error for a namespace on a
/// cluster-scoped kind.
fn namespace_of(m: &Manifest, kind: &Resource) -> Result<Option<String>> {
    if !kind.namespaced && m.namespace.is_some() {
        bail!(
            "{}: {}: metadata.namespace is set but {} is not namespaced",
            m.source,
            m.describe(),
            m.kind
        );
    }
    Ok(kind
        .namespaced
        .then(|| m.namespace.clone().unwrap_or_else(|| "default".into())))
}

/// Each manifest with the resource it names, resolved against what the
/// server serves; errors name the file and the object.
fn resolve<'a>(catalog: &'a Catalog, manifests: &[Manifest]) -> Result<Vec<&'a Resource>> {
    manifests
        .iter()
        .map(|m| {
            let r = catalog
                .by_manifest(&m.api_version, &m.kind)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", m.source))?;
            namespace_of(m, r)?;
            Ok(r)
        })
        .collect()
}

/// A Table of `kind` from the server (one object when `name` is given;
/// every namespace when `namespace` is None).
async fn server_table(
    client: &Client,
    kind: &Resource,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Value> {
    let mut path = kind.path(namespace);
    if let Some(n) = name {
        path = format!("{path}/{n}");
    }
    let req = http::Request::get(&path)
        .header(http::header::ACCEPT, table::ACCEPT_TABLE)
        .body(Vec::new())
        .context("build a table request")?;
    let text = client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(s) => anyhow::anyhow!("{}", s.message),
        other => anyhow::anyhow!("GET {path}: {other}"),
    })?;
    serde_json::from_str(&text).with_context(|| format!("GET {path}: the reply is not JSON"))
}

fn has_rows(table: &Value) -> bool {
    table["rows"].as_array().is_some_and(|r| !r.is_empty())
}

/// Explains an API error the way a user needs it: file, object, and the server's message (which names the field).
fn api_error(m: &Manifest, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => {
            anyhow::anyhow!("{}: {}: {}", m.source, m.describe(), status.message)
        }
        other => anyhow::anyhow!("{}: {}: {other}", m.source, m.describe()),
    }
}

async fn apply_all(client: &Client, manifests: &[Manifest]) -> Result<()> {
    let mut catalog = Catalog::discover(client).await?;
    // Namespaces first, so objects in them can be created in the same run;
    // then CustomResourceDefinitions, whose kinds the rest may use.
    let rank = |m: &Manifest| match m.kind.as_str() {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    };
    let mut ordered: Vec<&Manifest> = manifests.iter().collect();
    ordered.sort_by_key(|m| rank(m));
    let mut crds_applied = false;
    for m in ordered {
        if rank(m) == 2 && crds_applied {
            // The new kinds are served once the definitions are established.
            catalog = wait_served(client, m).await?;
            crds_applied = false;
        }
        crds_applied |= rank(m) == 1;
        let kind = catalog
            .by_manifest(&m.api_version, &m.kind)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", m.source))?;
        let ns = namespace_of(m, kind)?;
        let api = api_for(client, kind, ns.as_deref());
        let mut obj = m.object.clone();
        if let Some(ns) = &ns {
            obj["metadata"]["namespace"] = Value::String(ns.clone());
        }
        api.patch(
            &m.name,
            &PatchParams::apply("weft").force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| api_error(m, e))?;
    }
    Ok(())
}

/// Discovery again, until the kind `m` names is served (a definition
/// applied just before it is being established); 10 s at most.
async fn wait_served(client: &Client, m: &Manifest) -> Result<Catalog> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let catalog = Catalog::discover(client).await?;
        if catalog.by_manifest(&m.api_version, &m.kind).is_ok() || Instant::now() > deadline {
            return Ok(catalog);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every Pod, Deployment, StatefulSet and DaemonSet among `manifests` is Ready.
async fn wait_workloads(client: &Client, manifests: &[Manifest], deadline: Instant) -> Result<()> {
    let catalog = Catalog::discover(client).await?;
    let kinds = resolve(&catalog, manifests)?;
    let mut progress = Progress::new();
    loop {
        let mut want = 0i64;
        let mut ready = 0i64;
        let mut lagging = Vec::new();
        for (m, kind) in manifests.iter().zip(&kinds) {
            let ns = namespace_of(m, kind)?;
            let api = api_for(client, kind, ns.as_deref());
            let (w, r) = match m.kind.as_str() {
                "Pod" => {
                    let pod = api.get_opt(&m.name).await?;
                    let ok = pod
                        .as_ref()
                        .is_some_and(|p| pod_ready(&serde_json::to_value(p).unwrap_or_default()));
                    (1, i64::from(ok))
                }
                "Deployment" | "StatefulSet" => {
                    let obj = api
                        .get_opt(&m.name)
                        .await?
                        .map(|o| serde_json::to_value(o).unwrap_or_default());
                    let obj = obj.unwrap_or_default();
                    let w = obj
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    let r = obj
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    (w, r.min(w))
                }
                "DaemonSet" => {
                    let obj = api
                        .get_opt(&m.name)
                        .await?
                        .map(|o| serde_json::to_value(o).unwrap_or_default())
                        .unwrap_or_default();
                    let n = |p: &str| obj.pointer(p).and_then(Value::as_i64);
                    // Not yet seen by its controller: one pod at least is to come.
                    match n("/status/observedGeneration") {
                        None => (1, 0),
                        Some(_) => {
                            let w = n("/status/desiredNumberScheduled").unwrap_or(0);
                            (w, n("/status/numberReady").unwrap_or(0).min(w))
                        }
                    }
                }
                _ => continue,
            };
            want += w;
            ready += r;
            if r < w {
                lagging.push(format!("{} {r}/{w}", m.describe()));
            }
        }
        if ready >= want {
            progress.done(&format!("{ready}/{want} pods Ready"));
            return Ok(());
        }
        if Instant::now() > deadline {
            let why = not_ready_pods(client).await.unwrap_or_default();
            bail!("not Ready in time: {}{why}", lagging.join(", "));
        }
        progress.update(format!("pods Ready {ready}/{want}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// "; pod web-x: CrashLoopBackOff (message)" for every pod that is not Ready.
async fn not_ready_pods(client: &Client) -> Result<String> {
    let pods = list(client, &Resource::pods(), None, true).await?;
    let statuses = pod_statuses(client, None).await;
    let mut out = String::new();
    for p in pods.iter().filter(|p| !pod_ready(p)) {
        let name = p
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let message = p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find_map(|c| c.pointer("/state/waiting/message").and_then(Value::as_str))
            })
            .unwrap_or("");
        let status = statuses.get(name).map_or("?", String::as_str);
        out.push_str(&format!("; pod {name}: {status}"));
        if !message.is_empty() {
            out.push_str(&format!(" ({message})"));
        }
    }
    Ok(out)
}

/// Each pod's STATUS as the server prints it (CrashLoopBackOff, Pending…),
/// by name; empty when the table cannot be had.
async fn pod_statuses(client: &Client, namespace: Option<&str>) -> BTreeMap<String, String> {
    match server_table(client, &Resource::pods(), namespace, None).await {
        Ok(t) => table::column(&t, "Status").into_iter().collect(),
        Err(_) => BTreeMap::new(),
    }
}

async fn list(
    client: &Client,
    kind: &Resource,
    namespace: Option<&str>,
    all: bool,
) -> Result<Vec<Value>> {
    let api = api_for(client, kind, if all { None } else { namespace });
    let list = api.list(&ListParams::default()).await?;
    let mut items: Vec<Value> = list
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .collect();
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                v.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    // DynamicObject serialises without apiVersion/kind when the server left
    // them out of list items; fill them for -o json/yaml.
    for item in &mut items {
        item["apiVersion"] = Value::String(kind.api_version());
        item["kind"] = Value::String(kind.kind.clone());
    }
    Ok(items)
}

pub fn teardown(layout: &Layout) -> Result<(usize, usize)> {
    let mut processes = 0;
    if let Some(pid) = procs::control_plane_pid(layout) {
        procs::terminate(&[pid], Duration::from_secs(3));
        processes += 1;
    }
    let names = topology::cluster_netns(layout);
    let pids = weft_linux::netns::pids_in_netns(&names);
    procs::terminate(&pids, Duration::from_secs(2));
    processes += pids.len();
    let removed = topology::remove_all(layout)?;
    if layout.state_dir.exists() {
        std::fs::remove_dir_all(&layout.state_dir)
            .with_context(|| format!("remove state dir {}", layout.state_dir.display()))?;
    }
    Ok((removed.len(), processes))
}

pub fn down(layout: &Layout) -> Result<ExitCode> {
    if procs::control_plane_pid(layout).is_none()
        && topology::cluster_netns(layout).is_empty()
        && !layout.state_dir.exists()
    {
        println!(
            "weft down: cluster {:?} does not exist; nothing to do",
            layout.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (ns, ps) = teardown(layout)?;
    println!(
        "weft down: removed cluster {:?}: {ns} network namespaces, {ps} processes, state dir",
        layout.name
    );
    Ok(ExitCode::SUCCESS)
}

pub fn apply(layout: &Layout, files: &[PathBuf]) -> Result<ExitCode> {
    let manifests = manifests::read(files)?;
    with_client(layout, |client| async move {
        apply_all(&client, &manifests).await
    })?;
    let manifests = manifests::read(files)?;
    for m in &manifests {
        println!("{} applied", m.describe().to_ascii_lowercase());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(
    layout: &Layout,
    files: &[PathBuf],
    kind: Option<&str>,
    object: Option<&str>,
    namespace: Option<&str>,
) -> Result<ExitCode> {
    let from_files = if files.is_empty() {
        Vec::new()
    } else {
        manifests::read(files)?
    };
    if files.is_empty() && (kind.is_none() || object.is_none()) {
        bail!("say what to delete: `weft delete -f FILE` or `weft delete KIND NAME [-n NS]`");
    }
    let rt = runtime()?;
    let _in_runtime = rt.enter(); // kube spawns its client tasks on creation
    let client = client(layout)?;
    let mut missing = 0;
    rt.block_on(async {
        let catalog = Catalog::discover(&client).await?;
        let mut targets: Vec<(Resource, String, Option<String>)> = Vec::new();
        for (m, k) in from_files.iter().zip(resolve(&catalog, &from_files)?) {
            targets.push((k.clone(), m.name.clone(), namespace_of(m, k)?));
        }
        if let (Some(kind), Some(object)) = (kind, object) {
            let k = catalog.by_user_name(kind)?;
            let ns = k
                .namespaced
                .then(|| namespace.unwrap_or("default").to_string());
            targets.push((k.clone(), object.to_string(), ns));
        }
        for (kind, name, ns) in &targets {
            let api = api_for(&client, kind, ns.as_deref());
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => println!("{}/{name} deleted", kind.kind.to_ascii_lowercase()),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    eprintln!("{}/{name}: not found", kind.kind.to_ascii_lowercase());
                    missing += 1;
                }
                Err(e) => return Err(anyhow::anyhow!("delete {}/{name}: {e}", kind.kind)),
            }
        }
        Ok(())
    })?;
    Ok(if missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn get(
    layout: &Layout,
    kind: &str,
    object: Option<&str>,
    namespace: Option<&str>,
    all: bool,
    output: Option<Output>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let _in_runtime = rt.enter(); // kube spawns its client tasks on creation
    let client = client(layout)?;
    let ns = namespace.unwrap_or("default");
    rt.block_on(async {
        let catalog = Catalog::discover(&client).await?;
        let k = catalog.by_user_name(kind)?;
        let all = all && k.namespaced;
        if let Some(format @ (Output::Json | Output::Yaml)) = output {
            let doc = match object {
                Some(name) => {
                    let api = api_for(&client, k, Some(ns));
                    let Some(o) = api.get_opt(name).await? else {
                        bail!("{}", not_found(k, name, ns));
                    };
                    let mut v = serde_json::to_value(o)?;
                    v["apiVersion"] = Value::String(k.api_version());
                    v["kind"] = Value::String(k.kind.clone());
                    v
                }
                None => {
                    let items = list(&client, k, Some(ns), all || !k.namespaced).await?;
                    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
                }
            };
            if format == Output::Json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", serde_yaml::to_string(&doc)?);
            }
            return Ok(());
        }
        let scope = (!all).then_some(ns);
        let t = match server_table(&client, k, scope, object).await {
            Err(_) if object.is_some() => bail!("{}", not_found(k, object.unwrap_or(""), ns)),
            other => other?,
        };
        if !has_rows(&t) {
            if k.namespaced && !all {
                eprintln!("No resources found in {ns} namespace.");
            } else {
                eprintln!("No resources found");
            }
            return Ok(());
        }
        let rendered = table::render(&t, output == Some(Output::Wide), all)
            .with_context(|| format!("the server did not answer a Table for {}", k.qualified()))?;
        print!("{rendered}");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn not_found(k: &Resource, name: &str, ns: &str) -> String {
    if k.namespaced {
        format!("{} {name:?} not found in namespace {ns}", k.plural)
    } else {
        format!("{} {name:?} not found", k.plural)
    }
}

fn exit_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(
            128 + status
                .signal()
                .and_then(|s| u8::try_from(s).ok())
                .unwrap_or(0),
        ),
    }
}

fn run_in_netns(netns: &str, command: &[String]) -> Result<ExitCode> {
    if !topology::existing_netns().iter().any(|n| n == netns) {
        bail!("network namespace {netns} does not exist (is the cluster up?)");
    }
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(command)
        .status()
        .context("run ip netns exec")?;
    Ok(exit_of(status))
}

/// Looks a pod up and returns its JSON.
fn pod(layout: &Layout, name: &str, ns: &str) -> Result<Value> {
    let rt = runtime()?;
    let _in_runtime = rt.enter(); // kube spawns its client tasks on creation
    let client = client(layout)?;
    rt.block_on(async {
        let api = api_for(&client, &Resource::pods(), Some(ns));
        match api.get_opt(name).await? {
            Some(p) => Ok(serde_json::to_value(p)?),
            None => bail!("pod {name:?} not found in namespace {ns}"),
        }
    })
}

/// A running pod (its object) and its sandbox on its node: where its
/// namespaces and files are.
pub fn pod_sandbox(
    layout: &Layout,
    name: &str,
    ns: &str,
) -> Result<(Value, weft_node::sandbox::Sandbox)> {
    let p = pod(layout, name, ns)?;
    let s = |ptr: &str| {
        p.pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let node = s("/spec/nodeName");
    if node.is_empty() || s("/status/phase") == "Pending" && s("/status/podIP").is_empty() {
        let phase = s("/status/phase");
        bail!(
            "pod {name} is not running yet (phase {})",
            if phase.is_empty() { "Pending" } else { &phase }
        );
    }
    let uid = s("/metadata/uid");
    let dir = weft_node::pod_dir(layout, &node, ns, name, &uid);
    let node_layout = crate::components::node_layout(layout, &node)
        .with_context(|| format!("pod {name} is on node {node}"))?;
    let env = weft_node::sandbox::NodeEnv {
        layout: layout.clone(),
        node_netns: Some(Path::new("/run/netns").join(&node_layout.netns)),
        node: node_layout,
        cni_bin_dir: std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        helper: std::env::current_exe()?,
    };
    let sandbox = weft_node::sandbox::Sandbox::load(&env, &dir).with_context(|| {
        format!(
            "pod {name} has no sandbox on {node} yet ({})",
            dir.display()
        )
    })?;
    Ok((p, sandbox))
}

pub fn exec(
    layout: &Layout,
    pod_name: Option<&str>,
    namespace: Option<&str>,
    node: Option<&str>,
    external: bool,
    command: &[String],
) -> Result<ExitCode> {
    if external {
        return run_in_netns(&layout.client_netns(), command);
    }
    if let Some(node) = node {
        let n = crate::components::node_layout(layout, node)?;
        return run_in_netns(&n.netns, command);
    }
    let name = pod_name.context("name a pod, or use --node NODE or --external")?;
    let ns = namespace.unwrap_or("default");
    let (p, sandbox) = pod_sandbox(layout, name, ns)?;
    // As kubectl exec: in the first container's identity (uid, groups, capabilities).
    let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(p.clone())
        .with_context(|| format!("pod {ns}/{name}: read its spec"))?;
    let identity = match typed.spec.as_ref().and_then(|s| s.containers.first()) {
        Some(c) => weft_node::security::identity(&typed, c)
            .map_err(|e| anyhow::anyhow!("pod {ns}/{name}: {e}"))?,
        None => weft_node::security::Identity::default(),
    };
    // The same namespaces and files its containers get (node runtime's code).
    let mut vars: Vec<(String, String)> = ["PATH", "TERM", "HOME", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    if let Some(dir) = std::env::current_exe()?.parent() {
        let path = vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        vars.retain(|(k, _)| k != "PATH");
        vars.push(("PATH".into(), format!("{}:{path}", dir.display())));
    }
    // As kubectl exec, the container's environment: what every container
    // gets, then its literal `env` values (references to ConfigMaps and
    // Secrets are resolved by the node runtime only; not repeated here).
    vars.push((
        "KUBERNETES_SERVICE_HOST".into(),
        weft_cluster::KUBERNETES_SERVICE_IP.to_string(),
    ));
    vars.push(("KUBERNETES_SERVICE_PORT".into(), "443".into()));
    if let Some(c) = typed.spec.as_ref().and_then(|s| s.containers.first()) {
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                vars.retain(|(k, _)| k != &e.name);
                vars.push((e.name.clone(), v.clone()));
            }
        }
    }
    let launch = weft_node::sandbox::Launch {
        name: "exec".into(),
        argv: command.to_vec(),
        env: vars,
        working_dir: None,
        identity,
    };
    let mut cmd = sandbox
        .command(&launch)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    cmd.stdin(std::process::Stdio::inherit());
    let status = cmd
        .status()
        .with_context(|| format!("run {} in pod {name}", command[0]))?;
    Ok(exit_of(status))
}

pub fn logs(
    layout: &Layout,
    pod_name: &str,
    namespace: Option<&str>,
    container: Option<&str>,
) -> Result<ExitCode> {
    let ns = namespace.unwrap_or("default");
    let p = pod(layout, pod_name, ns)?;
    let containers: Vec<String> = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match container {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => bail!(
            "pod {pod_name} has no container {c:?} (it has {})",
            containers.join(", ")
        ),
        None if containers.len() == 1 => containers[0].clone(),
        None => bail!(
            "pod {pod_name} has several containers; choose one with -c: {}",
            containers.join(", ")
        ),
    };
    let node = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let uid = p
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let file = weft_node::plan::log_path(
        &weft_node::pod_dir(layout, node, ns, pod_name, uid),
        &container,
    );
    let text = std::fs::read(&file)
        .with_context(|| format!("no log yet for {pod_name}/{container} ({})", file.display()))?;
    // The file holds CRI log entries; print what the container wrote.
    let mut plain = Vec::new();
    weft_node::logs::render(&text, &weft_node::logs::LogOptions::default(), &mut plain);
    std::io::stdout().write_all(&plain)?;
    Ok(ExitCode::SUCCESS)
}

pub fn kubeconfig(layout: &Layout) -> Result<ExitCode> {
    let path = layout.kubeconfig_path();
    if !path.exists() {
        bail!(
            "cluster {:?} has no kubeconfig: start it with `weft up --name {}`",
            layout.name,
            layout.name
        );
    }
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn status(layout: &Layout) -> Result<ExitCode> {
    let Some(pid) = procs::control_plane_pid(layout) else {
        let left = topology::cluster_netns(layout);
        if left.is_empty() {
            println!("cluster {:?}: not running", layout.name);
        } else {
            println!("cluster {:?}: not running, but {} namespaces are left over; `weft down` removes them", layout.name, left.len());
        }
        return Ok(ExitCode::from(3));
    };
    let url = crate::api::local_api_url(layout)?.unwrap_or_default();
    let namespaces = topology::cluster_netns(layout);
    let mut rows = BTreeMap::new();
    rows.insert("cluster", layout.name.clone());
    rows.insert(
        "control plane",
        format!(
            "pid {pid}, API {url} (in the fabric: {})",
            layout.fabric_api_url()
        ),
    );
    rows.insert("kubeconfig", layout.kubeconfig_path().display().to_string());
    rows.insert("state dir", layout.state_dir.display().to_string());
    rows.insert(
        "namespaces",
        format!("{} ({}*)", namespaces.len(), layout.netns_prefix()),
    );
    for (k, v) in &rows {
        println!("{k:<14} {v}");
    }
    let rt = runtime()?;
    let _in_runtime = rt.enter(); // kube spawns its client tasks on creation
    let client = client(layout)?;
    let nodes = rt.block_on(server_table(&client, &Resource::nodes(), None, None))?;
    println!();
    print!("{}", table::render(&nodes, true, false).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
