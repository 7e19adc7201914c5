//! `weft node-runtime`'s command-line flags (clap), owned here so the CLI
//! only flattens them and the supervisor renders them back.

/// Flags of the node runtime.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NodeRuntimeArgs {
    /// The node this runtime is (`node-<i>`); it runs inside that node's namespace.
    #[arg(long)]
    pub node: String,
}

impl NodeRuntimeArgs {
    /// The same flags as command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        vec!["--node".to_string(), self.node.clone()]
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
        };
        let mut argv = vec!["node-runtime".to_string()];
        argv.extend(a.to_args());
        assert_eq!(Cli::parse_from(argv).args, a);
    }
}
