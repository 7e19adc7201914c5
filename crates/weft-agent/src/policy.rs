//! The NetworkPolicy feature of the agent: Pods, Namespaces and
//! NetworkPolicies from the process's shared weft-kube stores →
//! weft-policy's model and compile step → weft-nft's `Syncer`, the one
//! writer of table `inet weft-policy` on this node (the whole table at start
//! and after a failed write, otherwise only the chains, sets and elements
//! that changed). Between syncs, the kernel's per-rule counters are read
//! back (`nft -t -j`, no set contents) into per-policy allowed and denied
//! packet counts. After a change, the conntrack entries of UDP flows the
//! new table denies are deleted (UDP flows have no end of their own).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use weft_kube::{Bounds, Gate, Selector, Store, SyncRunner, Watches};
use weft_nft::{NftBackend, SyncKind, Syncer};
use weft_policy::conntrack::{Sweep, UdpFlow};
use weft_policy::{Model, NodeCtx, Snapshot};

use crate::metrics::{Metrics, PolicyPackets, PolicySyncReport};

/// The policy sync: at most every 50 ms (a label change is enforced well
/// within the second the API promises), at least every 30 s, 1 s after a
/// failure, backing off to 30 s while failures go on.
pub const POLICY_SYNC: Bounds = Bounds {
    min_interval: Duration::from_millis(50),
    max_interval: Duration::from_secs(30),
    retry_interval: Duration::from_secs(1),
    retry_max_interval: Duration::from_secs(30),
};

/// Which policy each chain's counters belong to, shared with the reader.
type Owners = Arc<Mutex<weft_policy::compile::ChainOwners>>;

/// How often the kernel's counters are read back into the metrics.
const COUNTERS_EVERY: Duration = Duration::from_secs(5);

/// Runs the policy feature until an error makes it stop (only a store that
/// can never list).
pub async fn run(
    watches: &Watches,
    node: String,
    metrics: Arc<Metrics>,
    marks: Arc<Mutex<weft_policy::Marks>>,
) -> Result<()> {
    let pods = watches.store::<Pod>(Selector::all());
    let namespaces = watches.store::<Namespace>(Selector::all());
    let policies = watches.store::<NetworkPolicy>(Selector::all());
    let gate = Gate::new([
        pods.readiness(),
        namespaces.readiness(),
        policies.readiness(),
    ]);
    let mut runner = SyncRunner::new("policy", POLICY_SYNC);
    runner.follow(pods.changes());
    runner.follow(namespaces.changes());
    runner.follow(policies.changes());
    metrics.watch_runner("policy", runner.health());
    metrics.enable_policy();
    let owners: Owners = Arc::default();
    tokio::spawn(read_counters(owners.clone(), metrics.clone()));
    let mut sync = PolicySync {
        node: NodeCtx { node_name: node },
        pods,
        namespaces,
        policies,
        syncer: Arc::new(Mutex::new(Syncer::new(NftBackend))),
        metrics,
        owners,
        marks,
        last_problems: Vec::new(),
    };
    let Err(e) = runner.run(&gate, async move || sync.sync().await).await;
    Err(e).context("policy sync")
}

struct PolicySync {
    node: NodeCtx,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
    syncer: Arc<Mutex<Syncer<NftBackend>>>,
    metrics: Arc<Metrics>,
    /// Chain name → (policy, direction, allow?) for the counters reader.
    owners: Owners,
    /// Connection-mark ids of the policies, shared with the flow log.
    marks: Arc<Mutex<weft_policy::Marks>>,
    last_problems: Vec<String>,
}

impl PolicySync {
    async fn sync(&mut self) -> Result<()> {
        let result = self.sync_once().await;
        if result.is_err() {
            self.metrics.record_policy_error();
        }
        result
    }

    async fn sync_once(&mut self) -> Result<()> {
        let started = Instant::now();
        let pods = self.pods.state();
        let namespaces = self.namespaces.state();
        let policies = self.policies.state();
        let node = self.node.clone();
        let syncer = self.syncer.clone();
        let marks = self.marks.clone();
        let (compiled, kind, owners, local, swept) =
            tokio::task::spawn_blocking(move || -> Result<_> {
                let snapshot = Snapshot::new(
                    pods.iter().map(|p| p.as_ref()),
                    namespaces.iter().map(|n| n.as_ref()),
                    policies.iter().map(|p| p.as_ref()),
                );
                let model = Model::build(snapshot);
                // Ids for new policies before the table that uses them; the
                // flow log reads the same map.
                let marks = {
                    let mut m = marks
                        .lock()
                        .map_err(|_| anyhow::anyhow!("policy marks lock poisoned"))?;
                    m.update_for(&model);
                    m.clone()
                };
                let compiled = weft_policy::compile_marked(&model, &node, Some(&marks))?;
                let mut syncer = syncer
                    .lock()
                    .map_err(|_| anyhow::anyhow!("policy syncer lock poisoned"))?;
                let kind = syncer.sync(&compiled.ruleset)?;
                drop(syncer);
                // After the table changed: UDP flows it now denies lose their
                // conntrack entries, so their next packet is checked as new.
                let swept = if kind == SyncKind::Unchanged {
                    Ok(0)
                } else {
                    sweep_udp(&model, &node.node_name)
                };
                let local: std::collections::HashSet<std::net::IpAddr> = model
                    .snapshot
                    .pods
                    .iter()
                    .filter(|p| p.node.as_deref() == Some(node.node_name.as_str()))
                    .flat_map(|p| p.ips.iter().copied())
                    .collect();
                Ok((
                    compiled,
                    kind,
                    weft_policy::compile::chain_owners(&model),
                    local,
                    swept,
                ))
            })
            .await
            .context("policy sync task")??;
        match swept {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    deleted = n,
                    "deleted conntrack entries of UDP flows policy denies"
                );
                self.metrics.record_policy_conntrack_deleted(n);
            }
            // The table is written; entries left behind only age out. Said
            // once per sync that changed something, and counted as an error.
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "deleting conntrack entries of UDP flows policy denies");
                self.metrics.record_policy_error();
            }
        }
        self.metrics.record_policy_programmed(local);
        if let Ok(mut o) = self.owners.lock() {
            *o = owners;
        }
        if compiled.problems != self.last_problems {
            for p in &compiled.problems {
                tracing::warn!(problem = %p, "part of a NetworkPolicy ignored");
            }
            self.last_problems = compiled.problems.clone();
        }
        let kind = match kind {
            SyncKind::Full => "full",
            SyncKind::Diff => "diff",
            SyncKind::Unchanged => "unchanged",
        };
        let c = compiled.counts;
        let report = PolicySyncReport {
            kind,
            took: started.elapsed(),
            policies: c.policies,
            isolated_ingress: c.isolated_ingress,
            isolated_egress: c.isolated_egress,
            rules: c.rules,
            elements: c.elements,
        };
        self.metrics.record_policy_sync(&report);
        if kind != "unchanged" {
            tracing::info!(
                kind,
                policies = c.policies,
                isolated_ingress = c.isolated_ingress,
                isolated_egress = c.isolated_egress,
                rules = c.rules,
                took_ms = report.took.as_millis() as u64,
                "network policies synced"
            );
        }
        Ok(())
    }
}

/// Deletes the conntrack entries of the UDP flows `model` denies on this
/// node (see weft-policy's `conntrack`); how many went.
fn sweep_udp(model: &Model, node_name: &str) -> Result<usize> {
    let node_addrs: HashSet<IpAddr> = weft_linux::netlink::Handle::new()
        .and_then(|mut h| h.addresses(None))
        .context("listing this node's addresses")?
        .into_iter()
        .map(|(_, net)| net.addr())
        .collect();
    let mut ct = weft_linux::conntrack::Conntrack::new()?;
    let mut sweep = Sweep::new(model, node_name, &node_addrs);
    let mut deleted = 0;
    for flow in ct.udp_flows()? {
        let seen = UdpFlow {
            src: flow.original.src,
            dst: flow.reply.src,
        };
        if sweep.denies(&seen) && ct.delete(&flow)? {
            tracing::debug!(%flow, "deleted conntrack entry of a UDP flow policy denies");
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Reads the table's counters every few seconds into per-policy packet
/// counts (allowed: its rules' counters; denied: its deny chain's).
async fn read_counters(owners: Owners, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(COUNTERS_EVERY);
    loop {
        tick.tick().await;
        let owners = owners.lock().map(|o| o.clone()).unwrap_or_default();
        if owners.is_empty() {
            continue;
        }
        let listed = tokio::task::spawn_blocking(|| {
            weft_nft::list_table_terse(weft_nft::Family::Inet, weft_policy::TABLE)
        })
        .await;
        let Ok(Ok(Some(table))) = listed else {
            continue;
        };
        let mut counts: BTreeMap<PolicyPackets, u64> = BTreeMap::new();
        for r in &table.rules {
            let (Some(n), Some((policy, d, allow))) = (r.packets, owners.get(&r.chain)) else {
                continue;
            };
            let key = PolicyPackets {
                policy: policy.clone(),
                direction: d.as_str().to_string(),
                verdict: if *allow { "allowed" } else { "denied" }.to_string(),
            };
            *counts.entry(key).or_default() += n;
        }
        metrics.record_policy_packets(counts);
    }
}
