//! weft's own components as the embedded cluster installs them: from the
//! very manifests in `deploy/` that install weft on a real cluster (built
//! into the binary), adapted where an embedded cluster differs, and applied
//! through the API like any user's objects.
//!
//! The one adaptation for the agent is where it finds the API. A pod's
//! in-cluster config names the `kubernetes` Service (10.96.0.1:443), but the
//! agent is what makes ClusterIPs work, so it cannot depend on one: as
//! Cilium's `k8sServiceHost` does, it is given the API server's own address
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`: the control plane on the fabric,
//! 192.168.1.2:6443), and the datapath backend `weft up` was asked for.
//! The other is where weft-cni keeps its address allocations: the plugin
//! runs on the machine (where the node runtime calls it), outside a pod's
//! view of the node, so the agent names each node's own IPAM directory in
//! the CNI config it writes (`<state>/nodes/$(NODE_NAME)/ipam`) rather than
//! the machine's `/var/lib/cni/networks` that every node would share.
//!
//! The cluster DNS (deploy/weft-dns.yaml) is installed as it is, with one
//! adaptation: the embedded cluster has no way out of its namespaces, so
//! names outside the cluster domain are not forwarded (`--upstream=none`:
//! answered REFUSED at once instead of timing out against the machine's
//! resolvers, which the pods must never reach).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// deploy/weft-agent.yaml, as built into this binary.
pub const AGENT_MANIFEST: &str = include_str!("../../../deploy/weft-agent.yaml");

/// The name of the agent DaemonSet (and its container).
pub const AGENT_DAEMONSET: &str = "weft-agent";
pub const AGENT_NAMESPACE: &str = "weft-system";

/// deploy/weft-dns.yaml, as built into this binary.
pub const DNS_MANIFEST: &str = include_str!("../../../deploy/weft-dns.yaml");

/// The cluster DNS Deployment (and its namespace).
pub const DNS_DEPLOYMENT: &str = "weft-dns";
pub const DNS_NAMESPACE: &str = "kube-system";

/// deploy/weft-gateway.yaml, as built into this binary.
pub const GATEWAY_MANIFEST: &str = include_str!("../../../deploy/weft-gateway.yaml");

/// The gateway Deployment (and its namespace).
pub const GATEWAY_DEPLOYMENT: &str = "weft-gateway";
pub const GATEWAY_NAMESPACE: &str = "weft-system";

/// The node ports the embedded cluster's gateway Service is given, so the
/// external client reaches it at a fixed `<node IP>:31080` (HTTP) and
/// `:31443` (HTTPS), as well as at the load-balancer address the default
/// LoadBalancerIPPool gives it (one of 203.0.113.0/24).
pub const GATEWAY_NODE_PORTS: [(&str, u16); 2] = [("http", 31080), ("https", 31443)];

/// The gateway's objects for an embedded cluster (deploy/weft-gateway.yaml
/// with fixed node ports on its Service), and the replicas `weft up` waits
/// for.
pub fn gateway_objects() -> Result<(Vec<Value>, u64)> {
    let mut docs = documents(GATEWAY_MANIFEST).context("deploy/weft-gateway.yaml")?;
    let replicas = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("deploy/weft-gateway.yaml has no Deployment")?
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let svc = docs
        .iter_mut()
        .find(|d| d["kind"] == "Service")
        .context("deploy/weft-gateway.yaml has no Service")?;
    let ports = svc
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
        .context("deploy/weft-gateway.yaml: the Service has no ports")?;
    for (name, node_port) in GATEWAY_NODE_PORTS {
        let port = ports
            .iter_mut()
            .find(|p| p["name"] == name)
            .with_context(|| format!("deploy/weft-gateway.yaml: the Service has no port {name}"))?;
        port["nodePort"] = json!(node_port);
    }
    Ok((docs, replicas))
}

/// Every document of a multi-document YAML text.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).with_context(|| format!("document {}", i + 1))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The agent's objects for an embedded cluster whose API listens on `api`
/// inside the fabric, running the `backend` datapath, with its nodes' state
/// under `nodes_dir`.
pub fn agent_objects(api: (Ipv4Addr, u16), backend: &str, nodes_dir: &Path) -> Result<Vec<Value>> {
    let mut docs = documents(AGENT_MANIFEST).context("deploy/weft-agent.yaml")?;
    let ds = docs
        .iter_mut()
        .find(|d| d["kind"] == "DaemonSet")
        .context("deploy/weft-agent.yaml has no DaemonSet")?;
    let Some(containers) = ds
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        bail!("deploy/weft-agent.yaml: the DaemonSet has no containers");
    };
    let Some(agent) = containers.iter_mut().find(|c| c["name"] == "agent") else {
        bail!("deploy/weft-agent.yaml: the DaemonSet has no container named agent");
    };
    let env = agent["env"]
        .as_array_mut()
        .context("deploy/weft-agent.yaml: the agent container has no env list")?;
    env.retain(|e| {
        e["name"] != "KUBERNETES_SERVICE_HOST" && e["name"] != "KUBERNETES_SERVICE_PORT"
    });
    env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": api.0.to_string()}));
    env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": api.1.to_string()}));
    let args = agent["args"]
        .as_array_mut()
        .context("deploy/weft-agent.yaml: the agent container has no args list")?;
    args.retain(|a| {
        !a.as_str()
            .is_some_and(|a| a.starts_with("--backend") || a.starts_with("--ipam-dir"))
    });
    args.push(json!(format!("--backend={backend}")));
    args.push(json!(format!(
        "--ipam-dir={}/$(NODE_NAME)/ipam",
        nodes_dir.display()
    )));
    Ok(docs)
}

/// The cluster DNS's objects for an embedded cluster, and how many replicas
/// its Deployment asks for (what `weft up` waits for).
pub fn dns_objects() -> Result<(Vec<Value>, u64)> {
    let mut docs = documents(DNS_MANIFEST).context("deploy/weft-dns.yaml")?;
    let deploy = docs
        .iter_mut()
        .find(|d| d["kind"] == "Deployment")
        .context("deploy/weft-dns.yaml has no Deployment")?;
    let replicas = deploy
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let Some(dns) = deploy
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .and_then(|c| c.iter_mut().find(|c| c["name"] == "dns"))
    else {
        bail!("deploy/weft-dns.yaml: the Deployment has no container named dns");
    };
    if dns.get("args").is_none() {
        dns["args"] = json!([]);
    }
    let args = dns["args"]
        .as_array_mut()
        .context("deploy/weft-dns.yaml: the dns container's args is not a list")?;
    args.retain(|a| !a.as_str().is_some_and(|a| a.starts_with("--upstream")));
    args.push(json!("--upstream=none"));
    Ok((docs, replicas))
}

/// The LoadBalancerIPPool every embedded cluster starts with: the
/// addresses of [`weft_cluster::LB_NET`] but the fabric's own
/// ([`weft_cluster::LB_ROUTER`]), announced by the nodes on the first
/// fabric bridge (where the fabric asks for them).
pub fn default_pool() -> Value {
    let net: ipnet::Ipv4Net = weft_cluster::LB_NET.parse().expect("LB_NET is a CIDR");
    let first = Ipv4Addr::from(u32::from(weft_cluster::LB_ROUTER) + 1);
    let last = Ipv4Addr::from(u32::from(net.broadcast()) - 1);
    json!({
        "apiVersion": format!("{}/{}", weft_lb::GROUP, weft_lb::VERSION),
        "kind": weft_lb::POOL_KIND,
        "metadata": {"name": "default", "labels": {"app.kubernetes.io/part-of": "weft"}},
        "spec": {
            "addresses": [format!("{first}-{last}")],
            "autoAssign": true,
            "nodeSelector": {"matchLabels": {weft_cluster::LABEL_FABRIC: weft_cluster::FABRIC_BRIDGE}},
        },
    })
}

/// Creates or updates `objects` through `client` (server-side apply, as
/// `weft apply` does), resolving their kinds by discovery.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> Result<()> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let catalog = crate::resources::Catalog::discover(client).await?;
    let pp = PatchParams::apply("weft").force();
    for obj in objects {
        let (api_version, kind) = (
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let r = catalog.by_manifest(api_version, kind)?;
        let ar = r.api_resource();
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        api.patch(name, &pp, &Patch::Apply(obj))
            .await
            .with_context(|| format!("apply {kind} {name}"))?;
    }
    Ok(())
}

/// [`apply`], once discovery serves every kind of `objects` (a
/// CustomResourceDefinition just created is served when established):
/// waits up to 10 s, then says which kind is missing.
pub async fn apply_when_served(client: &kube::Client, objects: &[Value]) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let catalog = crate::resources::Catalog::discover(client).await?;
        let missing = objects.iter().find_map(|o| {
            let (v, k) = (
                o["apiVersion"].as_str().unwrap_or_default(),
                o["kind"].as_str().unwrap_or_default(),
            );
            catalog
                .by_manifest(v, k)
                .err()
                .map(|e| format!("{k} ({v}): {e:#}"))
        });
        match missing {
            None => return apply(client, objects).await,
            Some(m) if std::time::Instant::now() > deadline => {
                bail!("not served after 10 s: {m}")
            }
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(objs: &[Value]) -> Value {
        objs.iter()
            .find(|d| d["kind"] == "DaemonSet")
            .and_then(|d| d.pointer("/spec/template/spec/containers/0"))
            .cloned()
            .unwrap()
    }

    #[test]
    fn the_embedded_agent_reaches_the_api_server_directly() {
        let objs = agent_objects(
            (Ipv4Addr::new(192, 168, 1, 2), 6443),
            "vxlan",
            Path::new("/s/nodes"),
        )
        .unwrap();
        let env = &agent(&objs)["env"];
        let value = |n: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .filter(|e| e["name"] == n)
                .map(|e| e["value"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("KUBERNETES_SERVICE_HOST"), ["192.168.1.2"]);
        assert_eq!(value("KUBERNETES_SERVICE_PORT"), ["6443"]);
        // The downward-API node name is kept.
        assert!(env
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "NODE_NAME"));
    }

    #[test]
    fn the_backend_and_each_nodes_ipam_dir_replace_the_manifests() {
        let objs = agent_objects(
            (Ipv4Addr::new(192, 168, 1, 2), 6443),
            "host-gw",
            Path::new("/s/nodes"),
        )
        .unwrap();
        let args: Vec<String> = agent(&objs)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let backends: Vec<&String> = args.iter().filter(|a| a.starts_with("--backend")).collect();
        assert_eq!(backends, ["--backend=host-gw"]);
        assert!(args.iter().any(|a| a == "--node=$(NODE_NAME)"), "{args:?}");
        let ipam: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("--ipam-dir"))
            .collect();
        assert_eq!(ipam, ["--ipam-dir=/s/nodes/$(NODE_NAME)/ipam"]);
    }

    #[test]
    fn the_embedded_gateway_gets_fixed_node_ports_and_keeps_the_rest_of_the_manifest() {
        let (objs, replicas) = gateway_objects().unwrap();
        assert_eq!(replicas, 1);
        let original = documents(GATEWAY_MANIFEST).unwrap();
        assert_eq!(objs.len(), original.len());
        for (a, b) in objs.iter().zip(&original) {
            if a["kind"] != "Service" {
                assert_eq!(a, b);
            }
        }
        let svc = objs.iter().find(|o| o["kind"] == "Service").unwrap();
        let node_ports: Vec<(String, u64)> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["nodePort"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            node_ports,
            [("http".into(), 31080), ("https".into(), 31443)]
        );
    }

    #[test]
    fn the_embedded_dns_forwards_nothing_and_keeps_the_rest_of_the_manifest() {
        let (objs, replicas) = dns_objects().unwrap();
        assert_eq!(replicas, 2);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
        let deploy = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let args: Vec<&str> = deploy
            .pointer("/spec/template/spec/containers/0/args")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args.iter().filter(|a| a.starts_with("--upstream")).count(),
            1
        );
        assert!(args.contains(&"--upstream=none"), "{args:?}");
        assert!(args.contains(&"--listen=0.0.0.0:53"), "{args:?}");
        let svc = objs.iter().find(|o| o["kind"] == "Service").unwrap();
        assert_eq!(
            svc["spec"]["clusterIP"],
            weft_cluster::DNS_SERVICE_IP.to_string()
        );
    }

    #[test]
    fn the_default_pool_parses_and_leaves_out_the_fabrics_own_address() {
        let pool = weft_lb::parse_pool(&default_pool()).unwrap();
        assert!(!pool.contains("203.0.113.1".parse().unwrap()));
        assert!(pool.contains("203.0.113.2".parse().unwrap()));
        assert!(pool.contains("203.0.113.254".parse().unwrap()));
        assert_eq!(pool.total(), 253);
        assert!(pool.auto_assign);
    }

    #[test]
    fn every_object_of_the_manifest_is_installed() {
        let objs = agent_objects(
            (Ipv4Addr::new(192, 168, 1, 2), 6443),
            "auto",
            Path::new("/s/nodes"),
        )
        .unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "DaemonSet"
            ]
        );
    }
}
