//! The `weft` command line and the embedded cluster it drives, as a library
//! so tests (and the thin binary in `main.rs`) can call every piece:
//!
//! - [`cluster`]: the user's commands (up, down, apply, get, exec, …);
//! - [`api`]: clients of the cluster's API;
//! - [`control_plane`]: the control plane process (API server, controllers,
//!   node supervision), startable without the CLI;
//! - [`supervise`]: starting weft's own processes and keeping them alive;
//! - [`components`]: the per-node daemons' entry points (agent, node runtime);
//! - [`topology`], [`procs`]: the cluster's namespaces and processes.

pub mod addons;
pub mod api;
pub mod cluster;
pub mod components;
pub mod control_plane;
pub mod credentials;
pub mod explain;
pub mod flows;
pub mod gateway_api;
mod manifests;
pub mod procs;
mod resources;
pub mod rotate;
pub mod supervise;
mod table;
pub mod topology;
pub mod trace;

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use weft_cluster::Layout;

/// `-o` of `weft get`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Output {
    Wide,
    Json,
    Yaml,
}

/// The layout of cluster `name`, with its state under `$WEFT_STATE_DIR` if set.
pub fn layout(name: &str) -> Result<Layout> {
    let state = std::env::var_os("WEFT_STATE_DIR").map(PathBuf::from);
    Ok(Layout::new(name, state)?)
}

/// Logs of weft's daemons: `WEFT_LOG` (an env filter), no colours (they go to files).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_ansi(false)
        .try_init();
}
