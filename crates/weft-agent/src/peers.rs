//! Nodes as the datapath sees them: address, pod CIDR, published VTEP (pure).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use weft_overlay::PeerNode;

pub const ANNOTATION_BACKEND: &str = "weft.dev/backend";
pub const ANNOTATION_VTEP_MAC: &str = "weft.dev/vtep-mac";
pub const ANNOTATION_VTEP_IP: &str = "weft.dev/vtep-ip";
/// The node's WireGuard public key (base64), when its backend is wireguard.
pub const ANNOTATION_WIREGUARD_KEY: &str = "weft.dev/wireguard-public-key";
/// Which implementation runs the node's WireGuard device: `kernel` or
/// `userspace` (published once the device is made).
pub const ANNOTATION_WIREGUARD_IMPLEMENTATION: &str = "weft.dev/wireguard-implementation";
/// Set (to any new value) by whoever wants the node's WireGuard key
/// replaced: `weft rotate-key NODE`, or `kubectl annotate node NODE
/// weft.dev/wireguard-rotate-key=$(date +%s) --overwrite`.
pub const ANNOTATION_WIREGUARD_ROTATE: &str = "weft.dev/wireguard-rotate-key";
/// The last value of [`ANNOTATION_WIREGUARD_ROTATE`] the node's agent
/// honoured, published with the new public key.
pub const ANNOTATION_WIREGUARD_ROTATED: &str = "weft.dev/wireguard-key-rotated";

pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// The node's IPv4 pod CIDR (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| c.parse::<Ipv4Net>().ok())
}

fn vtep_mac(node: &Node) -> Option<[u8; 6]> {
    let mac = node
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_VTEP_MAC)?;
    weft_linux::netlink::parse_mac(mac)
}

/// The WireGuard key the node's agent published; a malformed one counts as
/// none (the peer is then reported as having no key).
pub fn wireguard_key(node: &Node) -> Option<[u8; 32]> {
    let text = node
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_WIREGUARD_KEY)?;
    weft_wireguard::keys::PublicKey::parse(text, ANNOTATION_WIREGUARD_KEY)
        .ok()
        .map(|k| k.0)
}

/// The key rotation asked for on the node and not yet acknowledged by its
/// agent: the value of [`ANNOTATION_WIREGUARD_ROTATE`] when it differs from
/// [`ANNOTATION_WIREGUARD_ROTATED`].
pub fn rotation_asked(node: &Node) -> Option<String> {
    let annotations = node.metadata.annotations.as_ref()?;
    let asked = annotations.get(ANNOTATION_WIREGUARD_ROTATE)?;
    (annotations.get(ANNOTATION_WIREGUARD_ROTATED) != Some(asked)).then(|| asked.clone())
}

/// Whether the node carries every one of `wanted` with the same value.
pub fn has_annotations(node: &Node, wanted: &std::collections::BTreeMap<String, String>) -> bool {
    let have = node.metadata.annotations.as_ref();
    wanted
        .iter()
        .all(|(k, v)| have.and_then(|a| a.get(k)) == Some(v))
}

/// Every other node with an address, sorted by name.
pub fn peers(nodes: &[Node], local: &str) -> Vec<PeerNode> {
    let mut out: Vec<PeerNode> = nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            if name == local || n.metadata.deletion_timestamp.is_some() {
                return None;
            }
            Some(PeerNode {
                ip: internal_ip(n)?,
                pod_cidr: pod_cidr(n),
                vtep_mac: vtep_mac(n),
                wireguard_key: wireguard_key(n),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, cidr: Option<&str>, mac: Option<&str>) -> Node {
        let mut v = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
        if let Some(c) = cidr {
            v["spec"]["podCIDR"] = json!(c);
        }
        if let Some(m) = mac {
            v["metadata"]["annotations"] = json!({ANNOTATION_VTEP_MAC: m});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_rotation_is_asked_until_the_agent_acknowledges_that_value() {
        let with = |a: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n", "annotations": a}})).unwrap()
        };
        assert_eq!(rotation_asked(&with(json!({}))), None);
        assert_eq!(
            rotation_asked(&with(json!({ANNOTATION_WIREGUARD_ROTATE: "1"}))),
            Some("1".to_string())
        );
        assert_eq!(
            rotation_asked(&with(
                json!({ANNOTATION_WIREGUARD_ROTATE: "1", ANNOTATION_WIREGUARD_ROTATED: "1"})
            )),
            None
        );
        assert_eq!(
            rotation_asked(&with(
                json!({ANNOTATION_WIREGUARD_ROTATE: "2", ANNOTATION_WIREGUARD_ROTATED: "1"})
            )),
            Some("2".to_string())
        );
    }

    #[test]
    fn a_published_wireguard_key_is_read_and_a_malformed_one_is_none() {
        let key = weft_wireguard::keys::PrivateKey::from_bytes([9; 32]).public();
        let with = |text: &str| {
            let mut n = node("node-2", "192.168.1.11", Some("10.244.1.0/24"), None);
            n.metadata.annotations =
                Some([(ANNOTATION_WIREGUARD_KEY.to_string(), text.to_string())].into());
            n
        };
        let p = peers(&[with(&key.to_base64())], "node-1");
        assert_eq!(p[0].wireguard_key, Some(key.0));
        let p = peers(&[with("not a key")], "node-1");
        assert_eq!(p[0].wireguard_key, None);
    }

    #[test]
    fn peers_skip_self_and_read_annotations() {
        let nodes = vec![
            node(
                "node-2",
                "192.168.1.11",
                Some("10.244.1.0/24"),
                Some("0a:77:c0:a8:01:0b"),
            ),
            node("node-1", "192.168.1.10", Some("10.244.0.0/24"), None),
            node("node-3", "192.168.1.12", None, None),
        ];
        let p = peers(&nodes, "node-1");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "node-2");
        assert_eq!(p[0].vtep_mac, Some([0x0a, 0x77, 0xc0, 0xa8, 0x01, 0x0b]));
        assert_eq!(p[0].pod_cidr, Some("10.244.1.0/24".parse().unwrap()));
        assert_eq!(p[1].pod_cidr, None);
        assert_eq!(
            internal_ip(&nodes[1]),
            Some("192.168.1.10".parse().unwrap())
        );
    }
}
