//! Node runtime of the embedded cluster: the stand-in for kubelet and a
//! container runtime, one process per node, running inside the node's
//! network namespace.
//!
//! It registers the Node and heartbeats it, watches the pods bound to the
//! node, and for each one makes a sandbox (a named network namespace wired
//! by the CNI plugin exactly as a runtime calls it, plus resolv.conf and
//! hosts files, the ServiceAccount token, the pod's volumes: [`volumes`]),
//! starts the pod's init (PID 1 of the pod's own PID, mount, UTS and IPC
//! namespaces: [`podinit`]), runs the containers as processes in those
//! namespaces, each with its volume mounts, as their `securityContext`
//! says (by default uid/gid 65534 without capabilities: [`security`]),
//! probes them, restarts them per
//! `restartPolicy` (backoff 1 s doubling to 30 s, shorter than upstream's
//! 10 s → 5 min), reports the pod's status and records kubelet's Events
//! ([`events`]). Deleted pods are stopped (SIGTERM, grace period, SIGKILL),
//! unwired (CNI DEL) and removed. The node is Ready once a CNI config exists
//! ([`CniConfig`]); until then only hostNetwork pods start. The API server
//! reaches it for logs, exec, attach and port-forward on the node's kubelet
//! socket ([`kubelet`]).
//!
//! Layout on disk, under `<state>/nodes/<node>/`:
//!
//! ```text
//! cni/10-weft.conflist                 network config (read at every pod creation)
//! kubelet.sock                         logs, exec, attach, port-forward ([`kubelet`]), 0600
//! ipam/                                weft-cni's address allocations
//! pods/<ns>_<name>_<uid8>/sandbox.json what the sandbox is made of (written before each step)
//!                         resolv.conf, hosts
//!                         pod.init         "<pid> <start> <pid 1> <start>" of the pod's init
//!                         serviceaccount/  token, ca.crt, namespace (bind-mounted read-only
//!                                          on /var/run/secrets/kubernetes.io/serviceaccount)
//!                         volumes/<name>/  emptyDir, or configMap/secret/downwardAPI/projected
//!                                          files (..data -> ..<timestamp>/)
//!                         <container>.mounts.json  the container's bind mounts
//! host/opt/cni/bin/ host/run/weft/ …       node-specific hostPaths (see [`volumes`])
//!                         <container>.log  stdout+stderr as CRI log entries ([`logs`])
//!                         <container>.previous.log  the same of the instance before a restart
//!                         <container>.pid  "<pid> <start time>" of the process group leader
//! ```
//!
//! When [`run`]'s future is dropped, containers keep running; the next
//! runtime adopts them (or `weft down` kills them by their pid files).

pub mod args;
pub mod channels;
pub mod events;
pub mod kubelet;
pub mod logs;
pub mod node;
pub mod plan;
pub mod podinit;
pub mod portforward_spdy;
pub mod probe;
mod runtime;
pub mod sandbox;
pub mod security;
pub mod serviceaccount;
pub mod spdy;
pub mod status;
pub mod volumes;

pub use args::NodeRuntimeArgs;
pub use sandbox::{Launch, NodeEnv, Sandbox, SandboxError};

/// What one node runtime needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Cluster name, state dir, naming helpers.
    pub layout: weft_cluster::Layout,
    /// This node: name, index, ip, pod_cidr, netns.
    pub node: weft_cluster::NodeLayout,
    /// The running `weft` binary (agnhost images run `weft agnhost`; its
    /// directory leads every container's PATH; `weft pod-init` is the
    /// helper of every pod process).
    pub weft_bin: std::path::PathBuf,
    /// Directory holding `weft-cni` (CNI_PATH).
    pub cni_bin_dir: std::path::PathBuf,
    /// Who writes the node's CNI network config.
    pub cni_config: CniConfig,
    /// The agent endpoint whose `/policy/pods/<ip>` gates container starts
    /// ([`args::NodeRuntimeArgs::policy_gate`]).
    pub policy_gate: Option<String>,
}

/// Who writes the node's CNI network config (`cni/10-weft.conflist`).
/// Until one exists the node is NotReady with kubelet's NetworkReady=false
/// message and only hostNetwork pods start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CniConfig {
    /// The runtime writes the default config (MTU 1500, no overlay) at
    /// start, when it is absent or different.
    WriteDefault,
    /// Someone else writes it: `weft agent` (as `weft up` runs it) or the
    /// agent DaemonSet's init container through the `/etc/cni/net.d`
    /// hostPath ([`NodeEnv::host_path`]).
    Wait,
}

/// Runs the node runtime until the future is dropped: registers and
/// heartbeats the Node, runs its pods. Must run inside the node's network
/// namespace (the CNI plugin and probes run in the runtime's own namespace).
pub async fn run(client: kube::Client, config: NodeConfig) -> anyhow::Result<()> {
    runtime::run(client, config).await
}

/// The directory of a pod's files and logs on its node.
pub fn pod_dir(
    layout: &weft_cluster::Layout,
    node: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> std::path::PathBuf {
    plan::pod_dir(layout, node, namespace, name, uid)
}
