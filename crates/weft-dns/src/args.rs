//! `weft dns`'s command-line flags (clap), owned here so the CLI only
//! flattens them.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hickory_proto::rr::Name;

use crate::daemon::DnsConfig;
use crate::forward::{read_resolv_conf, Upstreams};
use crate::zone::{self, PodMode};

/// Flags of `weft dns`.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsArgs {
    #[command(flatten)]
    pub api: weft_kube::ClientFlags,
    /// Address to serve DNS on, UDP and TCP (repeatable).
    #[arg(long = "listen", default_value = "0.0.0.0:53")]
    pub listen: Vec<SocketAddr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// TTL of the cluster's records, and of the negative answers' SOA (seconds).
    #[arg(long, default_value_t = 5)]
    pub ttl: u32,
    /// Pod records `<a-b-c-d>.<ns>.pod.<domain>`: disabled, insecure (any
    /// address answers) or verified (only the addresses of that namespace's pods).
    #[arg(long, default_value = "disabled")]
    pub pods: PodMode,
    /// Answer a pod's first search-path query for an outside name with the
    /// final answer (a CNAME to the name that resolves), as CoreDNS's autopath.
    #[arg(long)]
    pub autopath: bool,
    /// Upstream server for names outside the cluster, `ADDR[:PORT]`
    /// (repeatable; default: the nameservers of --resolv-conf; `none`: do
    /// not forward, refuse such names).
    #[arg(long = "upstream")]
    pub upstream: Vec<String>,
    /// Where the upstream servers come from when no --upstream is given.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Entries in the cache of upstream answers at most.
    #[arg(long, default_value_t = 10_000)]
    pub cache_size: usize,
    /// UDP sockets (each with its thread) per listen address; 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub sockets: usize,
    /// Prometheus metrics, /health and /ready (CoreDNS's metrics port).
    #[arg(long, default_value = "0.0.0.0:9153")]
    pub metrics: Option<SocketAddr>,
}

impl DnsArgs {
    /// What the server runs with; a bad flag is an error naming it.
    pub fn config(&self) -> Result<DnsConfig> {
        let domain = self.cluster_domain.trim_end_matches('.');
        if domain.is_empty() {
            bail!("--cluster-domain is empty");
        }
        let mut domain = Name::from_utf8(domain)
            .with_context(|| format!("--cluster-domain {:?}", self.cluster_domain))?;
        domain.set_fqdn(true);
        let upstreams = match self.upstream.as_slice() {
            [one] if one == "none" => None,
            list if list.iter().any(|u| u == "none") => {
                bail!("--upstream none (do not forward) cannot be combined with upstream addresses")
            }
            [] => {
                let rc = read_resolv_conf(&self.resolv_conf, &self.listen)
                    .with_context(|| format!("--resolv-conf {}", self.resolv_conf.display()))?;
                for ignored in &rc.ignored {
                    tracing::warn!(file = %self.resolv_conf.display(), %ignored, "nameserver not used");
                }
                Some(rc.upstreams)
            }
            list => Some(Upstreams::from_args(list, &self.listen).context("--upstream")?),
        };
        let sockets = match self.sockets {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(DnsConfig {
            zone: zone::Config {
                domain,
                ttl: self.ttl,
                pods: self.pods,
                autopath: self.autopath,
            },
            listen: self.listen.clone(),
            sockets_per_addr: sockets,
            upstreams,
            cache_entries: self.cache_size,
            metrics_addr: self.metrics,
        })
    }
}
