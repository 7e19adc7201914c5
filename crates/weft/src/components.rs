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
            },
        )
        .await
    })?;
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
