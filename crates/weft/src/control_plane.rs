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

use crate::credentials::{Credentials, Tokens};
use crate::supervise::{Daemon, Supervisor};

/// The names and addresses the serving certificate covers: the machine's
/// loopback, the fabric address, the `kubernetes` Service's ClusterIP and
/// its DNS names.
fn serving_names() -> Vec<String> {
    let mut v = vec![
        "127.0.0.1".to_string(),
        API_ADDR.to_string(),
        weft_cluster::KUBERNETES_SERVICE_IP.to_string(),
        "localhost".to_string(),
    ];
    for n in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        v.push(n.to_string());
    }
    v
}

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

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&layout.state_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", layout.state_dir.display()))?;
        let nodes = layout.nodes_in(&placement)?;
        let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let pki = weft_apiserver::pki::Pki::load_or_create(&layout.pki_dir(), &serving_names())?;
        let tokens = Tokens::load_or_create(&layout.pki_dir(), &node_names)?;
        let api = weft_apiserver::ApiServer::open_secured(
            weft_apiserver::ApiServerConfig {
                state_dir: layout.api_dir(),
                service_cidr: weft_cluster::SERVICE_CIDR.parse()?,
                cluster_cidr: weft_cluster::CLUSTER_CIDR.parse()?,
                node_port_range: weft_cluster::NODE_PORT_RANGE,
                kubernetes_endpoint: (API_ADDR, API_PORT),
                kubelet_sockets: Some(layout.kubelet_socket("{node}").display().to_string()),
            },
            weft_apiserver::Limits::default(),
            &pki,
            tokens.users(),
        )?;
        let local = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = local.local_addr()?.port();
        let url = format!("https://127.0.0.1:{port}");
        let fabric = tokio::net::TcpListener::from_std(bind_in(
            &layout.fabric_netns(),
            (API_ADDR, API_PORT).into(),
        )?)?;
        tokio::spawn(api.clone().serve(fabric));
        tokio::spawn(api.clone().serve(local));
        let admin = Credentials {
            server: url.clone(),
            ca_pem: pki.ca_cert_pem.clone(),
            token: tokens.admin.clone(),
        };
        admin.write_kubeconfig(&layout.name, &layout.kubeconfig_path())?;
        for n in &nodes {
            std::fs::create_dir_all(layout.node_dir(&n.name))?;
            Credentials {
                server: layout.fabric_api_url(),
                ca_pem: pki.ca_cert_pem.clone(),
                token: tokens.nodes.get(&n.name).cloned().unwrap_or_default(),
            }
            .write_kubeconfig(&layout.name, &layout.node_kubeconfig_path(&n.name))?;
        }
        crate::credentials::apply_component_rbac(&admin.client()?).await?;
        crate::gateway_api::apply(&admin.client()?).await?;
        // weft's node agents, from deploy/ as on a real cluster: a DaemonSet
        // whose pods make each node's network (and so its Ready).
        let agent = crate::addons::agent_objects(
            (API_ADDR, API_PORT),
            &backend.to_string(),
            &layout.state_dir.join("nodes"),
        )?;
        crate::addons::apply(&admin.client()?, &agent).await?;
        // The cluster DNS, from deploy/ too: a Deployment behind kube-dns.
        let (dns, _) = crate::addons::dns_objects()?;
        crate::addons::apply(&admin.client()?, &dns).await?;
        // The Ingress and Gateway API proxy, from deploy/ as well, behind a
        // Service the external client reaches on fixed node ports.
        let (gateway, _) = crate::addons::gateway_objects()?;
        crate::addons::apply(&admin.client()?, &gateway).await?;
        // The default LoadBalancer pool (its CRD went in with the Gateway
        // API's, and is served once established).
        crate::addons::apply_when_served(&admin.client()?, &[crate::addons::default_pool()])
            .await?;
        // Last: `weft up` waits for the port to appear.
        layout.write_state(&weft_cluster::ClusterState {
            api_port: Some(port),
            ..state
        })?;
        tracing::info!(%url, fabric = %layout.fabric_api_url(), "API server listening");

        let client = Credentials {
            token: tokens.controllers.clone(),
            ..admin
        }
        .client()?;
        let controllers = tokio::spawn(async move {
            if let Err(e) = weft_controllers::run(client).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });

        let supervisor = Supervisor::new(layout.clone(), self.weft_bin.clone());
        let mut tasks = Vec::new();
        for node in nodes {
            tasks.push(supervisor.keep(node.clone(), Daemon::node_runtime(&node)));
        }

        shutdown.await;
        tracing::info!("stopping: terminating node runtimes");
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
    fn the_serving_certificate_covers_what_clients_dial() {
        let names = serving_names();
        for n in [
            "127.0.0.1",
            "192.168.1.2",
            "10.96.0.1",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
    }
}
