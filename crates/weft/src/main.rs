//! `weft`: the command line. Thin: each subcommand parses its arguments
//! (component crates own their flags) and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft::{cluster, components, control_plane, Output};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: the whole network of a Kubernetes cluster, and an embedded cluster to run it in",
    long_about = "weft runs the network of a Kubernetes cluster. `weft up` builds a complete multi-node \
cluster on this machine out of network namespaces (a fabric bridge, nodes, pods), with a \
Kubernetes-compatible API that kubectl and kube-rs use unchanged."
)]
struct Cli {
    /// Cluster name (several clusters can coexist).
    #[arg(long, global = true, env = "WEFT_CLUSTER", default_value = weft_cluster::DEFAULT_CLUSTER)]
    name: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the cluster if absent, start it, apply manifests, wait until nodes and pods are Ready.
    Up(cluster::UpArgs),
    /// Remove every namespace, process, mount and file of the cluster (a second call does nothing).
    Down,
    /// Create or update the objects in manifest files or directories.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete the objects in manifests (`-f`), or one object: `weft delete KIND NAME [-n NS]`.
    Delete {
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        kind: Option<String>,
        object: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// List or show objects of any kind the cluster serves, by plural, singular or short
    /// name (`pods`, `po`, `deploy`, `httproutes`), as the server's tables print them.
    Get {
        kind: String,
        object: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(short = 'A', long = "all-namespaces")]
        all: bool,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Run a command in a pod (its network, mount and UTS namespaces), on a node, or on the
    /// external client (198.51.100.5). The exit status is passed through.
    Exec {
        /// The pod (omit with --node or --external).
        pod: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Run in a node's namespace instead (e.g. `ip route`, `nft list ruleset`).
        #[arg(long, conflicts_with_all = ["pod", "external"])]
        node: Option<String>,
        /// Run in the external client's namespace.
        #[arg(long, conflicts_with = "pod")]
        external: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a pod's container log.
    Logs {
        pod: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'c', long)]
        container: Option<String>,
    },
    /// Why NetworkPolicy allows or denies a connection: which policies select each side
    /// and which rule allows it, or why none does (exit status 1 when denied).
    Explain(weft::explain::ExplainArgs),
    /// Replace nodes' WireGuard keys (backend wireguard) and wait until their
    /// agents publish the new public keys; traffic between nodes goes on.
    RotateKey(weft::rotate::RotateArgs),
    /// Follow one real connection attempt through the cluster with nftables
    /// tracing: every hop, rule and verdict, by Service, endpoint and
    /// NetworkPolicy name (exit status 1 when it was not delivered).
    Trace(weft::trace::TraceArgs),
    /// The flow logs of every node, merged: new pod connections with the
    /// NetworkPolicies that allowed them, and packets policies denied, by
    /// policy name; records lost to a log's bound are counted.
    Flows(weft::flows::FlowsArgs),
    /// Print the path of a kubeconfig for kubectl.
    Kubeconfig,
    /// Show whether the cluster runs, where its API is, and its nodes.
    Status,
    /// agnhost-compatible test commands: netexec, connect, serve-hostname.
    #[command(disable_help_flag = true)]
    Agnhost {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Short for `weft agnhost netexec …`.
    #[command(disable_help_flag = true)]
    Netexec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The per-node agent: cross-node routes/overlay and the node's CNI config.
    Agent(weft_agent::AgentArgs),
    /// Cluster DNS: Services, EndpointSlices and Pods as DNS names (the
    /// Kubernetes DNS-Based Service Discovery spec), other names forwarded.
    Dns(weft_dns::DnsArgs),
    /// The Ingress and Gateway API proxy: routes from the API, TLS by SNI
    /// (terminate, pass through, re-encrypt), tables swapped without reloads.
    Gateway(weft_gateway::GatewayArgs),
    /// Install the weft-cni plugin (found next to this binary) into a CNI bin directory:
    /// the agent DaemonSet's init container.
    InstallCni(components::InstallCniArgs),
    /// (internal) The control plane process: API server, controllers, node supervisor.
    #[command(hide = true)]
    ControlPlane(control_plane::Args),
    /// (internal) A node runtime, run inside the node's namespace.
    #[command(hide = true)]
    NodeRuntime(weft_node::NodeRuntimeArgs),
    /// (internal) A pod's init, or the init of one process in a pod (run by the node runtime).
    #[command(hide = true)]
    PodInit(weft_node::podinit::PodInitArgs),
}

/// A print into a pipe whose reader has gone (`weft get … | head`) ends
/// the command quietly, with the status a shell gives a process killed by
/// SIGPIPE (128 + 13), instead of the panic Rust's `println!` raises.
/// SIGPIPE itself stays ignored, as Rust leaves it: a command or daemon
/// writing to a socket whose peer died (weft up while the control plane
/// restarts) gets an error to handle, not a silent death.
fn quiet_on_broken_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_on_broken_stdout();
    // pod-init execs the containers' processes, which must start with
    // SIGPIPE at its default, as under runc (Rust ignores it in its own
    // processes, and an ignored disposition survives exec).
    if matches!(cli.command, Cmd::PodInit(_)) {
        // SAFETY: set before any thread exists; SIG_DFL is always a valid disposition.
        #[allow(unsafe_code)]
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    let result = match cli.command {
        Cmd::Agnhost { args } => return exit_code(weft_agnhost::main(args)),
        Cmd::Netexec { args } => {
            let mut all = vec!["netexec".to_string()];
            all.extend(args);
            return exit_code(weft_agnhost::main(all));
        }
        Cmd::Agent(args) => components::agent(args),
        Cmd::Dns(args) => components::dns(args),
        Cmd::Gateway(args) => components::gateway(args),
        Cmd::InstallCni(args) => components::install_cni(&args),
        // Single-threaded and before anything else: it forks.
        Cmd::PodInit(args) => return exit_code(weft_node::podinit::main(args)),
        command => run(&cli.name, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run(name: &str, command: Cmd) -> anyhow::Result<ExitCode> {
    let layout = weft::layout(name)?;
    match command {
        Cmd::Up(args) => cluster::up(&layout, &args),
        Cmd::Down => cluster::down(&layout),
        Cmd::Explain(args) => weft::explain::explain(&layout, &args),
        Cmd::RotateKey(args) => weft::rotate::rotate(&layout, &args).map(|()| ExitCode::SUCCESS),
        Cmd::Trace(args) => weft::trace::run(&layout, &args),
        Cmd::Flows(args) => weft::flows::run(&layout, &args),
        Cmd::Apply { files } => cluster::apply(&layout, &files),
        Cmd::Delete {
            files,
            kind,
            object,
            namespace,
        } => cluster::delete(
            &layout,
            &files,
            kind.as_deref(),
            object.as_deref(),
            namespace.as_deref(),
        ),
        Cmd::Get {
            kind,
            object,
            namespace,
            all,
            output,
        } => cluster::get(
            &layout,
            &kind,
            object.as_deref(),
            namespace.as_deref(),
            all,
            output,
        ),
        Cmd::Exec {
            pod,
            namespace,
            node,
            external,
            command,
        } => cluster::exec(
            &layout,
            pod.as_deref(),
            namespace.as_deref(),
            node.as_deref(),
            external,
            &command,
        ),
        Cmd::Logs {
            pod,
            namespace,
            container,
        } => cluster::logs(&layout, &pod, namespace.as_deref(), container.as_deref()),
        Cmd::Kubeconfig => cluster::kubeconfig(&layout),
        Cmd::Status => cluster::status(&layout),
        Cmd::ControlPlane(args) => control_plane::main(&layout, args),
        Cmd::NodeRuntime(args) => components::node_runtime(&layout, args),
        Cmd::Agnhost { .. }
        | Cmd::Netexec { .. }
        | Cmd::Agent(_)
        | Cmd::Dns(_)
        | Cmd::Gateway(_)
        | Cmd::InstallCni(_)
        | Cmd::PodInit(_) => {
            anyhow::bail!("agnhost, agent and pod-init are dispatched before the cluster commands")
        }
    }
}
