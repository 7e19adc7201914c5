//! `weft explain`: why a connection between two pods (or a pod and an
//! address) is allowed or denied by the cluster's NetworkPolicies. Reads
//! Pods, Namespaces and NetworkPolicies from the API and answers from
//! weft-policy's model, the one the agents compile their rulesets from.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use weft_cluster::Layout;
use weft_policy::{Model, Proto, Side, Snapshot};

/// `weft explain`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The client: NAMESPACE/POD, POD (namespace `default`) or an IP address.
    #[arg(long)]
    pub from: String,
    /// The server: NAMESPACE/POD, POD or an IP address.
    #[arg(long)]
    pub to: String,
    /// PORT[/PROTOCOL], protocol TCP (default), UDP or SCTP; the port as
    /// the server pod sees it (after Service DNAT).
    #[arg(long, value_parser = parse_port)]
    pub port: (u16, Proto),
    /// `json` prints the verdict and its reasons as JSON.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `80`, `80/TCP`, `53/udp`.
pub fn parse_port(s: &str) -> Result<(u16, Proto), String> {
    let (port, proto) = match s.split_once('/') {
        Some((p, pr)) => (p, pr.parse::<Proto>()?),
        None => (s, Proto::Tcp),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
    Ok((port, proto))
}

fn side(model: &Model, s: &str) -> Result<Side> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(match model.by_ip.get(&ip) {
            Some(i) => Side::Pod(*i),
            None => Side::Addr(ip),
        });
    }
    let (ns, name) = s.split_once('/').unwrap_or(("default", s));
    match model.find_pod(ns, name) {
        Some(i) if model.pod(i).ips.is_empty() => bail!("pod {ns}/{name} has no address yet"),
        Some(i) => Ok(Side::Pod(i)),
        None => bail!("pod {ns}/{name} not found (give NAMESPACE/POD or an IP address)"),
    }
}

fn label(model: &Model, s: &Side) -> String {
    match s {
        Side::Pod(i) => model.pod(*i).key(),
        Side::Addr(a) => a.to_string(),
    }
}

pub fn explain(layout: &Layout, args: &ExplainArgs) -> Result<ExitCode> {
    if let Some(o) = args.output.as_deref().filter(|o| *o != "json") {
        bail!("unknown output format {o:?} (json)");
    }
    let rt = crate::api::runtime()?;
    let _in_runtime = rt.enter();
    let client = crate::api::client(layout)?;
    let (pods, namespaces, policies) = rt.block_on(async {
        let lp = ListParams::default();
        let pods = Api::<Pod>::all(client.clone())
            .list(&lp)
            .await
            .context("list pods")?;
        let nss = Api::<Namespace>::all(client.clone())
            .list(&lp)
            .await
            .context("list namespaces")?;
        let pols = Api::<NetworkPolicy>::all(client)
            .list(&lp)
            .await
            .context("list networkpolicies")?;
        anyhow::Ok((pods.items, nss.items, pols.items))
    })?;
    let model = Model::build(Snapshot::new(&pods, &namespaces, &policies));
    let from = side(&model, &args.from)?;
    let to = side(&model, &args.to)?;
    let (port, proto) = args.port;
    let e = weft_policy::explain(&model, &from, &to, proto, port)
        .context("a side has no address of the other's family")?;
    if args.output.is_some() {
        let half = |h: &weft_policy::explain::Half| {
            serde_json::json!({"allowed": h.allowed, "isolatedBy": h.isolated_by,
                               "allowedBy": h.allowed_by, "reasons": h.reasons})
        };
        let doc = serde_json::json!({
            "from": label(&model, &from), "to": label(&model, &to),
            "source": e.src.to_string(), "destination": e.dst.to_string(),
            "port": port, "protocol": proto.api_name(),
            "allowed": e.allowed(), "egress": half(&e.egress), "ingress": half(&e.ingress),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", e.render(&label(&model, &from), &label(&model, &to)));
    }
    // Like `kubectl auth can-i`: the verdict is the exit status too.
    Ok(if e.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
