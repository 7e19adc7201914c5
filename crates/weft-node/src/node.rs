//! The Node object: registration and heartbeat. Ready is True once the
//! node's network is ready; before, False with kubelet's reason and message
//! for a container runtime whose CNI config is missing (kubelet's
//! `setNodeReadyCondition` and the CRI runtime's NetworkReady condition).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_cluster::NodeLayout;
use weft_linux::retry::Backoff;

/// How often the node's status is refreshed (upstream's default node status update period is 10 s).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Node object as registered (metadata and spec).
pub fn node_object(node: &NodeLayout) -> Node {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
        (weft_cluster::LABEL_FABRIC, node.subnet.bridge.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut n = Node::default();
    n.metadata.name = Some(node.name.clone());
    n.metadata.labels = Some(labels);
    n.spec = Some(NodeSpec {
        pod_cidr: Some(node.pod_cidr.to_string()),
        pod_cidrs: Some(vec![node.pod_cidr.to_string()]),
        ..Default::default()
    });
    n
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The reason kubelet gives while the container runtime has no CNI config.
pub const NETWORK_NOT_READY: &str = "container runtime network not ready: NetworkReady=false \
     reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

/// The Ready condition: True, or False with kubelet's reason and message
/// while the network is not ready.
pub fn ready_condition(network_ready: bool, now: Timestamp, since: Timestamp) -> NodeCondition {
    let (status, reason, message) = if network_ready {
        (
            "True",
            "KubeletReady",
            "weft node runtime is posting ready status".to_string(),
        )
    } else {
        ("False", "KubeletNotReady", NETWORK_NOT_READY.to_string())
    };
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    }
}

/// The node's status at `now`; `ready_since` is Ready's transition time.
pub fn node_status(
    node: &NodeLayout,
    now: Timestamp,
    ready_since: Timestamp,
    network_ready: bool,
) -> NodeStatus {
    let pods: BTreeMap<String, Quantity> = [("pods".to_string(), Quantity("110".into()))].into();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node.name.clone(),
            },
        ]),
        conditions: Some(vec![ready_condition(network_ready, now, ready_since)]),
        capacity: Some(pods.clone()),
        allocatable: Some(pods),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            operating_system: "linux".into(),
            os_image: "weft embedded node".into(),
            kernel_version: kernel_version(),
            container_runtime_version: format!("weft://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: format!("v1.33.0-weft.{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            boot_id: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the Node (or brings labels and podCIDR of an existing one up to date).
pub async fn register(api: &Api<Node>, node: &NodeLayout) -> Result<(), kube::Error> {
    let obj = node_object(node);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({
                "metadata": {"labels": obj.metadata.labels},
                "spec": {"podCIDR": node.pod_cidr.to_string(), "podCIDRs": [node.pod_cidr.to_string()]},
            });
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    }
}

/// Patches the node's status (the heartbeat).
pub async fn heartbeat(
    api: &Api<Node>,
    node: &NodeLayout,
    ready_since: Timestamp,
    network_ready: bool,
) -> Result<(), kube::Error> {
    let status = node_status(node, Timestamp::now(), ready_since, network_ready);
    api.patch_status(
        &node.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(drop)
}

/// Registers the node and keeps its status fresh, forever; re-registers
/// when the Node disappears. `network` says whether the node's network is
/// ready; a change is posted at once.
pub async fn keep_registered(
    api: Api<Node>,
    node: NodeLayout,
    mut network: tokio::sync::watch::Receiver<bool>,
) {
    let mut ready = *network.borrow_and_update();
    let mut ready_since = Timestamp::now();
    let mut registered = false;
    let policy = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let mut delays = policy.delays();
    loop {
        if !registered {
            match register(&api, &node).await {
                Ok(()) => {
                    registered = true;
                    delays = policy.delays();
                    tracing::info!(node = %node.name, "node registered");
                }
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "registering the node failed; retrying")
                }
            }
        }
        if registered {
            match heartbeat(&api, &node, ready_since, ready).await {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    registered = false;
                    continue;
                }
                Err(e) => tracing::warn!(node = %node.name, error = %e, "node heartbeat failed"),
            }
        }
        let wait = if registered {
            HEARTBEAT
        } else {
            delays.next().unwrap_or(Duration::from_secs(5))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = network.changed() => {
                if changed.is_err() {
                    // The runtime stopped watching the network: keep the last word.
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let now_ready = *network.borrow_and_update();
        if now_ready != ready {
            ready = now_ready;
            ready_since = Timestamp::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_status() {
        let layout = weft_cluster::Layout::new("demo", None).unwrap();
        let n = layout.node(2).unwrap();
        let obj = node_object(&n);
        assert_eq!(obj.metadata.name.as_deref(), Some("node-2"));
        let labels = obj.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "node-2");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let spec = obj.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));
        assert_eq!(spec.pod_cidrs.unwrap(), ["10.244.1.0/24"]);
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_010).unwrap();
        let s = node_status(&n, t1, t0, true);
        let addrs = s.addresses.unwrap();
        assert_eq!(addrs[0].type_, "InternalIP");
        assert_eq!(addrs[0].address, "192.168.1.11");
        assert_eq!(addrs[1].address, "node-2");
        let ready = &s.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(s.capacity.unwrap()["pods"], Quantity("110".into()));
        assert_eq!(s.node_info.unwrap().operating_system, "linux");
    }

    #[test]
    fn a_node_without_a_cni_config_is_not_ready_with_kubelets_message() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let c = ready_condition(false, t0, t0);
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("Ready", "False"));
        assert_eq!(c.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:Network plugin returns error: \
                 cni plugin not initialized"
            )
        );
    }
}
