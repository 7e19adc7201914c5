//! The network config file (`10-weft.conflist`) that runs weft-cni on a node:
//! bridge cni0, this node's pod CIDR, the MTU the datapath leaves for pods.
//! `weft agent` writes it (as flannel writes its subnet file).

use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

pub const FILE_NAME: &str = "10-weft.conflist";

/// Pure: the conflist for a node.
pub fn conflist(pod_cidr: Ipv4Net, mtu: u32, ipam_dir: &Path, cluster_cidr: Ipv4Net) -> Value {
    let gateway = std::net::Ipv4Addr::from(u32::from(pod_cidr.network()) + 1);
    json!({
        "cniVersion": "1.1.0",
        "name": "weft",
        "plugins": [{
            "type": "weft-cni",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": true,
            "clusterCIDRs": [cluster_cidr.to_string()],
            "hairpinMode": true,
            "mtu": mtu,
            "capabilities": {"portMappings": true},
            "ipam": {
                "subnet": pod_cidr.to_string(),
                "gateway": gateway.to_string(),
                "dataDir": ipam_dir,
            }
        }]
    })
}

/// Writes `<dir>/10-weft.conflist` by rename when its content differs.
/// Returns whether it wrote.
pub fn write_if_changed(dir: &Path, conf: &Value) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE_NAME);
    let current = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    if current.as_ref() == Some(conf) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_string_pretty(conf).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_carries_subnet_gateway_and_mtu() {
        let c = conflist(
            "10.244.1.0/24".parse().unwrap(),
            1450,
            Path::new("/x/ipam"),
            "10.244.0.0/16".parse().unwrap(),
        );
        let p = &c["plugins"][0];
        assert_eq!(p["type"], "weft-cni");
        assert_eq!(p["mtu"], 1450);
        assert_eq!(p["ipam"]["subnet"], "10.244.1.0/24");
        assert_eq!(p["ipam"]["gateway"], "10.244.1.1");
        assert_eq!(p["clusterCIDRs"][0], "10.244.0.0/16");
    }

    #[test]
    fn writes_only_on_change() {
        let dir = std::env::temp_dir().join(format!("weft-agent-conf-{}", std::process::id()));
        let c = conflist(
            "10.244.0.0/24".parse().unwrap(),
            1500,
            Path::new("/x"),
            "10.244.0.0/16".parse().unwrap(),
        );
        assert!(write_if_changed(&dir, &c).unwrap());
        assert!(!write_if_changed(&dir, &c).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
