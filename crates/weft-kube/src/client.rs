//! How a weft daemon reaches the API: the `--server` / `--kubeconfig` flags
//! every daemon (`weft agent`, `weft dns`) flattens, and the client they make.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// Where the API is. Neither flag: the pod's ServiceAccount when running in a
/// pod, else kube's default (`$KUBECONFIG`, `~/.kube/config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ClientFlags {
    /// API server URL without credentials (an unauthenticated test server);
    /// the embedded cluster gives its daemons a `--kubeconfig` or a
    /// ServiceAccount instead.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// A kubeconfig file (default: in-cluster config, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

impl ClientFlags {
    /// The same flags as command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(s) = &self.server {
            args.extend(["--server".into(), s.clone()]);
        }
        if let Some(k) = &self.kubeconfig {
            args.extend(["--kubeconfig".into(), k.display().to_string()]);
        }
        args
    }

    /// A client of the API the flags name: `--server`, `--kubeconfig`, or
    /// the in-cluster / default config.
    pub async fn client(&self) -> Result<kube::Client> {
        match (&self.server, &self.kubeconfig) {
            (Some(url), _) => {
                let uri: http::Uri = url.parse().with_context(|| format!("--server {url}"))?;
                let mut config = kube::Config::new(uri);
                config.read_timeout = Some(Duration::from_secs(300));
                Ok(kube::Client::try_from(config)?)
            }
            (None, Some(path)) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("read --kubeconfig {}", path.display()))?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .with_context(|| format!("use --kubeconfig {}", path.display()))?;
                Ok(kube::Client::try_from(cfg)?)
            }
            // In a pod, the pod's own ServiceAccount first: kube's `infer`
            // would prefer a kubeconfig found in $HOME.
            (None, None) if in_pod() => {
                let cfg = kube::Config::incluster().context(
                    "read the in-cluster config (ServiceAccount token, KUBERNETES_SERVICE_HOST)",
                )?;
                Ok(kube::Client::try_from(cfg)?)
            }
            (None, None) => kube::Client::try_default()
                .await
                .context("no --server or --kubeconfig, and no in-cluster or default config"),
        }
    }
}

/// Whether this process runs in a pod: the API's address in the
/// environment and a ServiceAccount token mounted.
pub fn in_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
}
