//! The control plane of an embedded cluster: the API server on two
//! listeners (127.0.0.1 for the CLI and kubectl, the fabric address for
//! nodes and pods), the controllers, and a [`Supervisor`] keeping a node
//! runtime and an agent alive per node. [`ControlPlane::run`] is the whole
//! process as a library call (tests start it without the CLI); [`main`] is
//! `weft control-plane`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use weft_cluster::{Layout, API_ADDR, API_PORT};
use weft_linux::Netns;

use crate::supervise::{Daemon, Supervisor};

/// Flags of `weft control-plane` (internal: `weft up` starts it).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The `weft` binary the per-node daemons run (default: this one).
    #[arg(long)]
    pub weft_bin: Option<PathBuf>,
}

/// One cluster's control plane; what it runs comes from the cluster's state file.
pub struct ControlPlane {
    pub layout: Layout,
    /// The `weft` binary the node runtimes and agents run.
    pub weft_bin: PathBuf,
}

/// The admin kubeconfig for the API at `url` (no credentials yet: the
/// embedded API does not authenticate).
pub fn kubeconfig(cluster: &str, url: &str) -> kube::config::Kubeconfig {
    use kube::config::{
        Context as KContext, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
    };
    let id = format!("weft-{cluster}");
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: id.clone(),
            cluster: Some(kube::config::Cluster {
                server: Some(url.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: id.clone(),
            context: Some(KContext {
                cluster: id.clone(),
                user: Some(id.clone()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: id.clone(),
            auth_info: Some(Default::default()),
            ..Default::default()
        }],
        current_context: Some(id),
        ..Default::default()
    }
}

/// Binds a listener inside a network namespace (the socket stays there).
fn bind_in(netns: &str, addr: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    let ns = Netns::open(Path::new(weft_linux::netns::NETNS_RUN_DIR).join(netns))?;
    let listener = ns
        .run(|| std::net::TcpListener::bind(addr))?
        .with_context(|| format!("bind {addr} in {netns}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl ControlPlane {
    /// Serves until `shutdown` completes, then stops the per-node daemons
    /// (their pods keep running; the next control plane adopts them).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let layout = &self.layout;
        let state = layout.read_state()?.with_context(|| {
            format!(
                "cluster {:?} has no state file {} (create it with `weft up`)",
                layout.name,
                layout.state_file().display()
            )
        })?;
        let placement = state.placement()?;
        let backend: weft_overlay::Backend = state
            .backend
            .parse()
            .with_context(|| format!("{}: field backend", layout.state_file().display()))?;
        std::fs::create_dir_all(layout.pids_dir())?;
        std::fs::write(
            layout.pids_dir().join("control-plane"),
            std::process::id().to_string(),
        )?;

        let api = weft_apiserver::ApiServer::open(weft_apiserver::ApiServerConfig {
            state_dir: layout.api_dir(),
            service_cidr: weft_cluster::SERVICE_CIDR.parse()?,
            cluster_cidr: weft_cluster::CLUSTER_CIDR.parse()?,
            node_port_range: weft_cluster::NODE_PORT_RANGE,
            kubernetes_endpoint: (API_ADDR, API_PORT),
        })?;
        let local = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = local.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let fabric = tokio::net::TcpListener::from_std(bind_in(
            &layout.fabric_netns(),
            (API_ADDR, API_PORT).into(),
        )?)?;
        tokio::spawn(api.clone().serve(fabric));
        tokio::spawn(api.clone().serve(local));
        let kubeconfig = serde_yaml::to_string(&kubeconfig(&layout.name, &url))?;
        std::fs::write(layout.kubeconfig_path(), kubeconfig)
            .with_context(|| format!("write {}", layout.kubeconfig_path().display()))?;
        // Last: `weft up` waits for the port to appear.
        layout.write_state(&weft_cluster::ClusterState {
            api_port: Some(port),
            ..state
        })?;
        tracing::info!(%url, fabric = %layout.fabric_api_url(), "API server listening");

        let client = crate::api::client_for(&url)?;
        let controllers = tokio::spawn(async move {
            if let Err(e) = weft_controllers::run(client).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });

        let supervisor = Supervisor::new(layout.clone(), self.weft_bin.clone());
        let mut tasks = Vec::new();
        for node in layout.nodes_in(&placement)? {
            tasks.push(supervisor.keep(node.clone(), Daemon::node_runtime(&node)));
            tasks.push(supervisor.keep(node.clone(), Daemon::agent(layout, &node, backend)));
        }

        shutdown.await;
        tracing::info!("stopping: terminating node runtimes and agents");
        for t in &tasks {
            t.abort();
        }
        controllers.abort();
        crate::procs::terminate(&supervisor.pids(), Duration::from_secs(2));
        Ok(())
    }
}

/// `weft control-plane`: runs until SIGTERM or Ctrl-C.
pub fn main(layout: &Layout, args: Args) -> Result<ExitCode> {
    crate::init_logging();
    let weft_bin = match args.weft_bin {
        Some(b) => b,
        None => std::env::current_exe().context("find the weft binary")?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        ControlPlane {
            layout: layout.clone(),
            weft_bin,
        }
        .run(shutdown)
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_the_server_and_reads_back_with_kube() {
        let text = serde_yaml::to_string(&kubeconfig("demo", "http://127.0.0.1:4321")).unwrap();
        let back = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(back.current_context.as_deref(), Some("weft-demo"));
        let cluster = back.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:4321"));
        let ctx = back.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("default"));
        assert_eq!(ctx.user.as_deref(), Some("weft-demo"));
        assert!(text.contains("kind: Config"), "{text}");
    }
}
