//! The Service proxy feature of the agent (weft's kube-proxy replacement):
//! Services and EndpointSlices from the process's shared weft-kube stores →
//! weft-proxy's compile step → weft-nft's `Syncer`, the one writer of table
//! `inet weft-proxy` on this node. Each sync is one nft transaction: the whole
//! table at start and after a failed write (the kernel swaps it atomically;
//! conntrack keeps established connections on their backends), otherwise
//! only the chains and elements that changed, planned from the in-memory
//! mirror — the table is never read back. After the write, the
//! health-check node ports follow the compiled state, and when what is
//! served over UDP changed, the conntrack entries that still send a Service
//! address or NodePort to a backend no longer serving it are deleted (UDP has
//! no connection end; without this a client keeps sending to a dead pod for
//! as long as it keeps sending).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_kube::{Bounds, Gate, Selector, Store, SyncRunner, Watches};
use weft_nft::{NftBackend, SyncKind, Syncer};
use weft_proxy::conntrack::UdpServing;
use weft_proxy::{NodeCtx, Snapshot};

use crate::healthcheck::HealthServer;
use crate::metrics::{Metrics, ProxySyncReport};

/// The proxy sync: at most every 100 ms (bursts of EndpointSlice changes
/// coalesce), at least every 30 s, 1 s after a failure, backing off to 30 s
/// while failures go on.
pub const PROXY_SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(100),
    max_interval: Duration::from_secs(30),
    retry_interval: Duration::from_secs(1),
    retry_max_interval: Duration::from_secs(30),
};

/// The node the proxy programs.
#[derive(Debug, Clone)]
pub struct ProxyNode {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub cluster_cidrs: Vec<IpNet>,
}

/// Runs the proxy until an error makes it stop (only a store that can never
/// list).
pub async fn run(watches: &Watches, node: ProxyNode, metrics: Arc<Metrics>) -> Result<()> {
    let services = watches.store::<Service>(Selector::all());
    let slices = watches.store::<EndpointSlice>(Selector::all());
    let gate = Gate::new([services.readiness(), slices.readiness()]);
    let mut runner = SyncRunner::new("proxy", PROXY_SYNC);
    runner.follow(services.changes());
    runner.follow(slices.changes());
    metrics.watch_runner("proxy", runner.health());
    let mut sync = ProxySync {
        ctx: NodeCtx {
            node_name: node.name,
            node_ips: node.ips,
            cluster_cidrs: node.cluster_cidrs,
            embedded: false,
        },
        services,
        slices,
        syncer: Arc::new(Mutex::new(Syncer::new(NftBackend))),
        health: HealthServer::new(None, runner.health()),
        metrics,
        last_skipped: Vec::new(),
        last_problems: Vec::new(),
        udp_cleaned: None,
    };
    let Err(e) = runner.run(&gate, async move || sync.sync().await).await;
    Err(e).context("proxy sync")
}

struct ProxySync {
    ctx: NodeCtx,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// Used from a blocking thread (`nft` runs as a child process).
    syncer: Arc<Mutex<Syncer<NftBackend>>>,
    health: HealthServer,
    metrics: Arc<Metrics>,
    /// Reported again only when they change.
    last_skipped: Vec<String>,
    last_problems: Vec<String>,
    /// What was served over UDP when conntrack was last cleaned (`None`: not
    /// yet since the start: the first sync cleans whatever is stale).
    udp_cleaned: Option<UdpServing>,
}

impl ProxySync {
    async fn sync(&mut self) -> Result<()> {
        let result = self.sync_once().await;
        if result.is_err() {
            self.metrics.record_proxy_error();
        }
        result
    }

    async fn sync_once(&mut self) -> Result<()> {
        let started = Instant::now();
        let snapshot = Snapshot {
            services: self.services.state(),
            endpoint_slices: self.slices.state(),
        };
        let ctx = self.ctx.clone();
        let syncer = self.syncer.clone();
        // Compile and write off the async threads: at tens of thousands of
        // Services both take a while.
        let (compiled, kind) = tokio::task::spawn_blocking(move || -> Result<_> {
            let compiled = weft_proxy::compile(&snapshot, &ctx)?;
            let mut syncer = syncer
                .lock()
                .map_err(|_| anyhow::anyhow!("proxy syncer lock poisoned"))?;
            let kind = syncer.sync(&compiled.ruleset)?;
            Ok((compiled, kind))
        })
        .await
        .context("proxy sync task")??;
        self.report_skipped(&compiled.skipped);
        let mut problems = self.health.update(&compiled.health_checks).await;
        if let Err(e) = self.clean_conntrack(&compiled.udp_serving).await {
            // Not a failed sync (the table is right); tried again next sync.
            problems.push(format!("deleting stale UDP conntrack entries: {e:#}"));
        }
        self.report_problems(problems);
        let kind = match kind {
            SyncKind::Full => "full",
            SyncKind::Diff => "diff",
            SyncKind::Unchanged => "unchanged",
        };
        let c = compiled.counts;
        let report = ProxySyncReport {
            kind,
            took: started.elapsed(),
            services: c.services,
            service_ports: c.service_ports,
            endpoints: c.endpoints,
            health_check_ports: self.health.ports().len(),
        };
        self.metrics.record_proxy_sync(&report);
        if kind != "unchanged" {
            tracing::info!(
                kind,
                services = c.services,
                service_ports = c.service_ports,
                endpoints = c.endpoints,
                took_ms = report.took.as_millis() as u64,
                "services synced"
            );
        }
        Ok(())
    }

    /// Deletes the UDP conntrack entries `serving` makes stale, when it
    /// differs from what was served at the last cleaning.
    async fn clean_conntrack(&mut self, serving: &UdpServing) -> Result<()> {
        if self.udp_cleaned.as_ref() == Some(serving) {
            return Ok(());
        }
        let now = serving.clone();
        let previously = self.udp_cleaned.clone().unwrap_or_default();
        let deleted = tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut ct = weft_linux::conntrack::Conntrack::new()?;
            let mut deleted = 0;
            for flow in ct.udp_flows()? {
                if now.is_stale(&previously, &proxy_flow(&flow)) && ct.delete(&flow)? {
                    tracing::debug!(%flow, "deleted stale UDP conntrack entry");
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
        .await
        .context("conntrack task")??;
        if deleted > 0 {
            tracing::info!(deleted, "deleted stale UDP conntrack entries");
        }
        self.metrics.record_conntrack_deleted(deleted);
        self.udp_cleaned = Some(serving.clone());
        Ok(())
    }

    /// Services or fields compile left out: logged when the set changes.
    fn report_skipped(&mut self, skipped: &[weft_proxy::Skipped]) {
        let now: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}: {}", s.object, s.field, s.why))
            .collect();
        if now != self.last_skipped {
            for s in &now {
                tracing::warn!(skipped = %s, "service not programmed");
            }
            self.last_skipped = now;
        }
    }

    fn report_problems(&mut self, problems: Vec<String>) {
        if problems != self.last_problems {
            for p in &problems {
                tracing::warn!(problem = %p, "health check incomplete");
            }
            self.last_problems = problems;
        }
    }
}

/// weft-linux's flow as weft-proxy's pure filter reads it.
fn proxy_flow(f: &weft_linux::conntrack::Flow) -> weft_proxy::conntrack::Flow {
    let tuple = |t: &weft_linux::conntrack::Tuple| weft_proxy::conntrack::Tuple {
        src: t.src,
        dst: t.dst,
    };
    weft_proxy::conntrack::Flow {
        proto: f.proto,
        original: tuple(&f.original),
        reply: tuple(&f.reply),
    }
}
