//! Entry points of the per-node daemons as `weft` subcommands: each parses
//! its component crate's own `Args` and runs that crate on a tokio runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use weft_cluster::{Layout, Placement};

fn multi_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Node `name` of the cluster, placed as its state file says (one subnet
/// when there is no state file).
pub fn node_layout(layout: &Layout, name: &str) -> Result<weft_cluster::NodeLayout> {
    let placement = match layout.read_state()? {
        Some(state) => state.placement()?,
        None => Placement::single(weft_cluster::MAX_NODES)?,
    };
    layout.node_by_name_in(name, &placement).with_context(|| {
        format!(
            "no node {name:?} in cluster {:?} (it has node-1 … node-{})",
            layout.name,
            placement.nodes()
        )
    })
}

/// `weft node-runtime`: the node's kubelet and container runtime stand-in.
pub fn node_runtime(layout: &Layout, args: weft_node::NodeRuntimeArgs) -> Result<ExitCode> {
    crate::init_logging();
    let node = node_layout(layout, &args.node)?;
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
    multi_thread()?.block_on(async {
        let client = crate::credentials::Credentials::read_kubeconfig(
            &layout.node_kubeconfig_path(&args.node),
        )?
        .client()?;
        weft_node::run(
            client,
            weft_node::NodeConfig {
                layout: layout.clone(),
                node,
                weft_bin,
                cni_bin_dir,
                cni_config: args.cni_config,
                policy_gate: Some(args.policy_gate.clone()).filter(|g| !g.is_empty()),
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `weft install-cni`: what the agent DaemonSet's init container runs.
#[derive(clap::Args, Debug)]
pub struct InstallCniArgs {
    /// The CNI bin directory (the node's /opt/cni/bin, mounted into the container).
    #[arg(long, default_value = "/opt/cni/bin")]
    pub bin_dir: std::path::PathBuf,
    /// The plugin to install (default: weft-cni next to this binary).
    #[arg(long)]
    pub plugin: Option<std::path::PathBuf>,
}

/// Copies weft-cni into the bin directory atomically (a temporary file in the
/// same directory, then a rename), so a runtime calling the plugin meanwhile
/// runs the old or the new one, never half a file.
pub fn install_cni(args: &InstallCniArgs) -> Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let plugin = match &args.plugin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("find the weft binary")?
            .with_file_name("weft-cni"),
    };
    let data =
        std::fs::read(&plugin).with_context(|| format!("read the plugin {}", plugin.display()))?;
    std::fs::create_dir_all(&args.bin_dir)
        .with_context(|| format!("create {}", args.bin_dir.display()))?;
    let target = args.bin_dir.join("weft-cni");
    let tmp = args.bin_dir.join(".weft-cni.tmp");
    std::fs::write(&tmp, &data).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("make {} executable", tmp.display()))?;
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("move the plugin into place at {}", target.display()))?;
    println!(
        "installed {} ({} bytes) as {}",
        plugin.display(),
        data.len(),
        target.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `weft agent`: the per-node network agent.
pub fn agent(args: weft_agent::AgentArgs) -> Result<ExitCode> {
    crate::init_logging();
    multi_thread()?.block_on(async {
        let client = args.client().await?;
        weft_agent::run(client, args.config()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `weft dns`: the cluster DNS server. Flags are checked before the API is
/// reached, so a bad flag fails at once.
pub fn gateway(args: weft_gateway::GatewayArgs) -> Result<ExitCode> {
    crate::init_logging();
    let config = args.config()?;
    multi_thread()?.block_on(async {
        let client = args.api.client().await?;
        weft_gateway::daemon::run(client, config).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn dns(args: weft_dns::DnsArgs) -> Result<ExitCode> {
    crate::init_logging();
    let config = args.config()?;
    multi_thread()?.block_on(async {
        let client = args.api.client().await?;
        weft_dns::daemon::run(client, config).await
    })?;
    Ok(ExitCode::SUCCESS)
}
