//! The long-running processes of an embedded cluster: the control plane (API
//! server on two listeners, controllers, and a supervisor that keeps one node
//! runtime per node alive) and the node runtime itself.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use weft_cluster::{Layout, NodeLayout, API_ADDR, API_PORT};
use weft_linux::Netns;

fn log_file(layout: &Layout, name: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(layout.logs_dir())?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.logs_dir().join(format!("{name}.log")))
        .with_context(|| format!("open log {name}"))
}

/// Starts `weft control-plane` detached (own session), logging to the state dir.
/// Returns its pid.
pub fn spawn_control_plane(layout: &Layout, nodes: usize) -> Result<i32> {
    let exe = std::env::current_exe().context("find the weft binary")?;
    let log = log_file(layout, "control-plane")?;
    // A port file left by an earlier control plane must not be mistaken for this one's.
    let _ = std::fs::remove_file(layout.local_port_file());
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--name",
        &layout.name,
        "control-plane",
        "--nodes",
        &nodes.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            Ok(())
        });
    }
    let child = cmd.spawn().context("start the control plane")?;
    std::fs::write(
        layout.pids_dir().join("control-plane"),
        child.id().to_string(),
    )?;
    Ok(child.id() as i32)
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_ansi(false)
        .try_init();
}

fn kubeconfig_text(name: &str, url: &str) -> String {
    let id = format!("weft-{name}");
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {id}\n  cluster:\n    server: {url}\n\
         contexts:\n- name: {id}\n  context:\n    cluster: {id}\n    user: {id}\n    namespace: default\n\
         current-context: {id}\nusers:\n- name: {id}\n  user: {{}}\n"
    )
}

/// Binds a listener inside a network namespace (the socket stays there).
fn bind_in(netns: &str, addr: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    let ns = Netns::open(Path::new("/run/netns").join(netns))?;
    let listener = ns
        .run(|| std::net::TcpListener::bind(addr))?
        .with_context(|| format!("bind {addr} in {netns}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

pub fn control_plane(layout: &Layout, nodes: usize) -> Result<ExitCode> {
    init_logging();
    std::fs::create_dir_all(layout.pids_dir())?;
    std::fs::write(
        layout.pids_dir().join("control-plane"),
        std::process::id().to_string(),
    )?;
    let node_layouts = layout.nodes(nodes)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let api = weft_apiserver::ApiServer::open(weft_apiserver::ApiServerConfig {
            state_dir: layout.api_dir(),
            service_cidr: weft_cluster::SERVICE_CIDR.parse()?,
            cluster_cidr: weft_cluster::CLUSTER_CIDR.parse()?,
            node_port_range: weft_cluster::NODE_PORT_RANGE,
            kubernetes_endpoint: (API_ADDR, API_PORT),
        })?;

        // 127.0.0.1 for weft and kubectl: keep the port of an earlier run if free.
        let previous: u16 = std::fs::read_to_string(layout.local_port_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let local = match tokio::net::TcpListener::bind(("127.0.0.1", previous)).await {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
        };
        let port = local.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let fabric = tokio::net::TcpListener::from_std(bind_in(
            &layout.fabric_netns(),
            (API_ADDR, API_PORT).into(),
        )?)?;
        tokio::spawn(api.clone().serve(fabric));
        tokio::spawn(api.clone().serve(local));
        std::fs::write(
            layout.kubeconfig_path(),
            kubeconfig_text(&layout.name, &url),
        )?;
        std::fs::write(layout.local_port_file(), port.to_string())?;
        tracing::info!(%url, fabric = %layout.fabric_api_url(), "API server listening");

        let client = crate::cluster::client_for(&url)?;
        tokio::spawn(async move {
            if let Err(e) = weft_controllers::run(client).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });

        let backend = std::fs::read_to_string(crate::cluster::backend_file(layout))
            .unwrap_or_else(|_| "vxlan".into())
            .trim()
            .to_string();
        let children = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
        for node in node_layouts {
            tokio::spawn(supervise(
                layout.clone(),
                node.clone(),
                Daemon::NodeRuntime,
                children.clone(),
            ));
            tokio::spawn(supervise(
                layout.clone(),
                node,
                Daemon::Agent {
                    backend: backend.clone(),
                },
                children.clone(),
            ));
        }

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: terminating node runtimes");
        let pids: Vec<i32> = children
            .lock()
            .map(|c| c.iter().map(|p| *p as i32).collect())
            .unwrap_or_default();
        crate::procs::terminate(&pids, Duration::from_secs(2));
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The per-node daemons the control plane keeps alive.
#[derive(Debug, Clone)]
enum Daemon {
    NodeRuntime,
    Agent { backend: String },
}

impl Daemon {
    /// Name of its log and pid files (`node-1`, `agent-node-1`).
    fn file_name(&self, node: &NodeLayout) -> String {
        match self {
            Daemon::NodeRuntime => node.name.clone(),
            Daemon::Agent { .. } => format!("agent-{}", node.name),
        }
    }

    fn args(&self, layout: &Layout, node: &NodeLayout) -> Vec<String> {
        let mut args = vec!["--name".to_string(), layout.name.clone()];
        match self {
            Daemon::NodeRuntime => {
                args.extend(["node-runtime".into(), "--node".into(), node.name.clone()])
            }
            Daemon::Agent { backend } => {
                let dir = layout.node_dir(&node.name);
                args.extend([
                    "agent".into(),
                    "--node".into(),
                    node.name.clone(),
                    "--server".into(),
                    layout.fabric_api_url(),
                    "--backend".into(),
                    backend.clone(),
                    "--cni-conf-dir".into(),
                    dir.join("cni").display().to_string(),
                    "--ipam-dir".into(),
                    dir.join("ipam").display().to_string(),
                    "--metrics-addr".into(),
                    format!("{}:9101", node.ip),
                ]);
            }
        }
        args
    }
}

/// Keeps one per-node daemon running inside the node's namespace,
/// restarting it with a growing delay when it exits.
async fn supervise(
    layout: Layout,
    node: NodeLayout,
    daemon: Daemon,
    children: Arc<std::sync::Mutex<Vec<u32>>>,
) {
    let mut delay = Duration::from_millis(500);
    let file = daemon.file_name(&node);
    loop {
        match start_in_node(&layout, &node, &file, &daemon.args(&layout, &node)) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                if let Ok(mut c) = children.lock() {
                    c.push(pid);
                }
                let _ = std::fs::write(layout.pids_dir().join(&file), pid.to_string());
                let status = child.wait().await;
                if let Ok(mut c) = children.lock() {
                    c.retain(|p| *p != pid);
                }
                tracing::warn!(node = %node.name, daemon = %file, ?status, "exited; restarting in {delay:?}");
            }
            Err(e) => {
                tracing::error!(node = %node.name, daemon = %file, error = %e, "cannot start")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

fn start_in_node(
    layout: &Layout,
    node: &NodeLayout,
    file: &str,
    args: &[String],
) -> Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let log = log_file(layout, file)?;
    let netns = std::fs::File::open(Path::new("/run/netns").join(&node.netns))
        .with_context(|| format!("open namespace {}", node.netns))?;
    let fd = netns.as_fd().as_raw_fd();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    if let Some(dir) = std::env::var_os("WEFT_STATE_DIR") {
        cmd.env("WEFT_STATE_DIR", dir);
    }
    // SAFETY: only setns (a syscall) between fork and exec, on an fd opened before.
    unsafe {
        cmd.pre_exec(move || {
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("spawn {file}"))?;
    drop(netns);
    Ok(child)
}

pub fn node_runtime(layout: &Layout, node: &str) -> Result<ExitCode> {
    init_logging();
    let node = layout
        .node_by_name(node)
        .with_context(|| format!("no node {node:?}"))?;
    let weft_bin = std::env::current_exe()?;
    let cni_bin_dir: PathBuf = weft_bin
        .parent()
        .map(Path::to_path_buf)
        .context("weft binary directory")?;
    anyhow::ensure!(
        cni_bin_dir.join("weft-cni").exists(),
        "weft-cni not found next to weft in {} (build the workspace: cargo build --release)",
        cni_bin_dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = crate::cluster::client_for(&layout.fabric_api_url())?;
        weft_node::run(
            client,
            weft_node::NodeConfig {
                layout: layout.clone(),
                node,
                weft_bin,
                cni_bin_dir,
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn agent(
    server: Option<&str>,
    kubeconfig: Option<&Path>,
    config: weft_agent::AgentConfig,
) -> Result<ExitCode> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = match (server, kubeconfig) {
            (Some(url), _) => crate::cluster::client_for(url)?,
            (None, Some(path)) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("read kubeconfig {}", path.display()))?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
                kube::Client::try_from(cfg)?
            }
            (None, None) => kube::Client::try_default()
                .await
                .context("no --server or --kubeconfig, and no in-cluster or default config")?,
        };
        weft_agent::run(client, config).await
    })?;
    Ok(ExitCode::SUCCESS)
}
