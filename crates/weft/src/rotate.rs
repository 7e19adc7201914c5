//! `weft rotate-key`: replaces nodes' WireGuard keys. It only asks — it
//! sets the node's `weft.dev/wireguard-rotate-key` annotation to a new value
//! — and waits until the node's agent answers with a new public key and the
//! same value in `weft.dev/wireguard-key-rotated`. The agent makes the key,
//! stores it (mode 0600) and gives it to its device; the other nodes' agents
//! replace the peer when they see the new public key. `kubectl annotate node
//! NODE weft.dev/wireguard-rotate-key=$(date +%s) --overwrite` does the same
//! without waiting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use weft_agent::{
    ANNOTATION_BACKEND, ANNOTATION_WIREGUARD_KEY, ANNOTATION_WIREGUARD_ROTATE,
    ANNOTATION_WIREGUARD_ROTATED,
};
use weft_cluster::Layout;

/// `weft rotate-key`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// The nodes whose keys to replace.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub nodes: Vec<String>,
    /// Every node whose backend is wireguard.
    #[arg(long)]
    pub all: bool,
    /// Seconds to wait for the agents to publish their new keys.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

fn annotations(node: &Node) -> BTreeMap<String, String> {
    node.metadata.annotations.clone().unwrap_or_default()
}

/// Why `node` cannot have its WireGuard key rotated, if it cannot.
fn refusal(node: &Node) -> Option<String> {
    let name = node.metadata.name.as_deref().unwrap_or("?");
    let a = annotations(node);
    match a.get(ANNOTATION_BACKEND).map(String::as_str) {
        Some("wireguard") => None,
        Some(other) => Some(format!(
            "node {name} runs backend {other:?}, not wireguard: it has no WireGuard key"
        )),
        None => Some(format!(
            "node {name} has no {ANNOTATION_BACKEND} annotation: its agent has not started yet"
        )),
    }
}

pub fn rotate(layout: &Layout, args: &RotateArgs) -> Result<()> {
    let rt = crate::api::runtime()?;
    let _in_runtime = rt.enter();
    let client = crate::api::client(layout)?;
    rt.block_on(rotate_async(Api::<Node>::all(client), args))
}

async fn rotate_async(api: Api<Node>, args: &RotateArgs) -> Result<()> {
    let nodes: Vec<Node> = if args.all {
        let all = api
            .list(&ListParams::default())
            .await
            .context("list nodes")?;
        let chosen: Vec<Node> = all
            .items
            .into_iter()
            .filter(|n| refusal(n).is_none())
            .collect();
        if chosen.is_empty() {
            bail!(
                "no node runs the wireguard backend (start the cluster with --backend wireguard)"
            );
        }
        chosen
    } else {
        let mut v = Vec::new();
        for name in &args.nodes {
            let node = api
                .get_opt(name)
                .await
                .with_context(|| format!("get node {name}"))?
                .with_context(|| format!("node {name} not found"))?;
            if let Some(why) = refusal(&node) {
                bail!(why);
            }
            v.push(node);
        }
        v
    };
    // One value for the whole call, unique per call.
    let asked = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string();
    let mut waiting = Vec::new();
    for node in &nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = annotations(node).get(ANNOTATION_WIREGUARD_KEY).cloned();
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_WIREGUARD_ROTATE: asked}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("annotate node {name}"))?;
        waiting.push((name, old));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut rows = Vec::new();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (name, old) in waiting {
            let node = api
                .get(&name)
                .await
                .with_context(|| format!("get node {name}"))?;
            let a = annotations(&node);
            let new = a.get(ANNOTATION_WIREGUARD_KEY).cloned();
            if a.get(ANNOTATION_WIREGUARD_ROTATED) == Some(&asked) && new.is_some() && new != old {
                rows.push((name, old, new.unwrap_or_default()));
            } else {
                still.push((name, old));
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let names: Vec<&str> = waiting.iter().map(|(n, _)| n.as_str()).collect();
            bail!(
                "the agents of {} did not publish a new key within {} s (is its agent running?); the request stays on the Node and is honoured when the agent runs",
                names.join(", "),
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rows.sort();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  OLD PUBLIC KEY                                NEW PUBLIC KEY",
        "NODE"
    );
    for (name, old, new) in rows {
        println!(
            "{name:width$}  {:44}  {new}",
            old.as_deref().unwrap_or("<none>")
        );
    }
    Ok(())
}
