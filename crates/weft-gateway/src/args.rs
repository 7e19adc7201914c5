//! `weft gateway`'s command-line flags (clap), owned here so the CLI only
//! flattens them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::daemon::GatewayConfig;
use crate::server::{AccessLog, Limits};

/// Flags of `weft gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub api: weft_kube::ClientFlags,
    /// GatewayClasses and IngressClasses whose controller is this name are
    /// served.
    #[arg(long, default_value = crate::api::CONTROLLER_NAME)]
    pub controller_name: String,
    /// Address the listener ports are bound on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port Ingresses are served on in cleartext.
    #[arg(long, default_value_t = 80)]
    pub ingress_http_port: u16,
    /// Port Ingresses with `tls` are served on.
    #[arg(long, default_value_t = 443)]
    pub ingress_https_port: u16,
    /// An address written into Gateway and Ingress status (repeatable).
    #[arg(long = "address")]
    pub addresses: Vec<String>,
    /// `NAMESPACE/NAME` of the Service in front of the gateway: its
    /// load-balancer, external or cluster IPs are written into status.
    #[arg(long)]
    pub publish_service: Option<String>,
    /// Prometheus metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9180")]
    pub metrics: Option<SocketAddr>,
    /// One JSON line per request on stdout (`stdout`) or none (`off`).
    #[arg(long, default_value = "stdout")]
    pub access_log: String,
    /// Largest request body accepted, bytes (413 above).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: u64,
    /// Largest request header block, bytes.
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    pub max_header_bytes: usize,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs())]
    pub header_timeout: u64,
}

impl GatewayArgs {
    /// What the gateway runs with; a bad flag is an error naming it.
    pub fn config(&self) -> Result<GatewayConfig> {
        let access_log = match self.access_log.as_str() {
            "stdout" => AccessLog::Stdout,
            "off" => AccessLog::Off,
            other => bail!("--access-log {other:?}: stdout or off"),
        };
        let publish_service = match &self.publish_service {
            None => None,
            Some(s) => match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Some((ns.to_string(), name.to_string()))
                }
                _ => bail!("--publish-service {s:?}: NAMESPACE/NAME"),
            },
        };
        if self.header_timeout == 0 {
            bail!("--header-timeout must be at least 1 second");
        }
        if self.ingress_http_port == self.ingress_https_port {
            bail!("--ingress-http-port and --ingress-https-port must differ");
        }
        Ok(GatewayConfig {
            controller_name: self.controller_name.clone(),
            bind: self.bind,
            ingress_http_port: self.ingress_http_port,
            ingress_https_port: self.ingress_https_port,
            addresses: self.addresses.clone(),
            publish_service,
            metrics_addr: self.metrics,
            access_log,
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_header_bytes: self.max_header_bytes,
                header_timeout: Duration::from_secs(self.header_timeout),
                ..Limits::default()
            },
        })
    }
}
