//! `weft node-runtime`'s command-line flags (clap), owned here so the CLI
//! only flattens them and the supervisor renders them back.

/// Flags of the node runtime.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NodeRuntimeArgs {
    /// The node this runtime is (`node-<i>`); it runs inside that node's namespace.
    #[arg(long)]
    pub node: String,
    /// Who writes the node's CNI config: `wait` for `weft agent` (or the
    /// agent DaemonSet's init container) to write it, or `write-default`.
    #[arg(long, value_enum, default_value = "wait")]
    pub cni_config: crate::CniConfig,
    /// The node agent's HTTP endpoint (`weft agent --metrics-addr`); a pod's
    /// containers start once the agent's NetworkPolicy table accounts for
    /// the pod (`/policy/pods/<ip>`), so no policy-isolated pod serves a
    /// connection its policy denies. Empty: do not wait.
    #[arg(long, default_value = DEFAULT_POLICY_GATE)]
    pub policy_gate: String,
}

/// Where the agent DaemonSet (deploy/weft-agent.yaml) serves on a node.
pub const DEFAULT_POLICY_GATE: &str = "http://127.0.0.1:9101";

impl NodeRuntimeArgs {
    /// The same flags as command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        use clap::ValueEnum;
        let mut v = vec!["--node".to_string(), self.node.clone()];
        if let Some(value) = self.cni_config.to_possible_value() {
            v.push(format!("--cni-config={}", value.get_name()));
        }
        v.push(format!("--policy-gate={}", self.policy_gate));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeRuntimeArgs,
    }

    #[test]
    fn to_args_parses_back_to_the_same_flags() {
        let a = NodeRuntimeArgs {
            node: "node-3".into(),
            cni_config: crate::CniConfig::WriteDefault,
            policy_gate: String::new(),
        };
        let mut argv = vec!["node-runtime".to_string()];
        argv.extend(a.to_args());
        assert_eq!(Cli::parse_from(argv).args, a);
    }
}
