//! Clients of an embedded cluster's API: from a URL, or from the port the
//! control plane recorded in the cluster's state file.

use anyhow::{bail, Context, Result};
use kube::Client;
use weft_cluster::Layout;

use crate::procs;

/// A current-thread tokio runtime for one CLI command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")
}

/// The API URL on 127.0.0.1, if the control plane recorded its port.
pub fn local_api_url(layout: &Layout) -> Result<Option<String>> {
    Ok(layout.read_state()?.and_then(|s| s.local_api_url()))
}

/// A client of a running cluster's API on 127.0.0.1 with the admin's
/// credentials (the cluster's kubeconfig); an error that says how to start
/// the cluster when it does not run. Call inside a tokio runtime.
pub fn client(layout: &Layout) -> Result<Client> {
    if procs::control_plane_pid(layout).is_none() {
        bail!(
            "cluster {:?} is not running: start it with `weft up --name {}`",
            layout.name,
            layout.name
        );
    }
    local_api_url(layout)?.context("the control plane has not written its API port yet")?;
    crate::credentials::Credentials::read_kubeconfig(&layout.kubeconfig_path())?.client()
}

/// Runs `f` with a client of the cluster's API on a short-lived runtime
/// (kube's client must be made inside one).
pub fn with_client<T, Fut>(layout: &Layout, f: impl FnOnce(Client) -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    runtime()?.block_on(async { f(client(layout)?).await })
}
