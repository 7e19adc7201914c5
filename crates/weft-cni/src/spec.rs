//! CNI specification types (SPEC.md 1.1): versions, error objects, and the
//! result with its conversion to every version weft-cni speaks.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Versions this plugin speaks, oldest first (VERSION prints them in this order).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, used for errors when the input named no usable version.
pub const LATEST: &str = "1.1.0";

/// Well-known error codes (SPEC.md "Error"); 100+ are weft-cni's own.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Kernel refused a change (netlink or nftables).
    pub const KERNEL: u32 = 100;
    /// No free address left in a range set.
    pub const RANGE_EXHAUSTED: u32 = 101;
    /// A requested address is taken or outside every range.
    pub const ADDRESS_UNAVAILABLE: u32 = 102;
    /// CHECK found the container's network different from the result.
    pub const CHECK_FAILED: u32 = 103;
    /// A delegated IPAM plugin failed without a CNI error object.
    pub const DELEGATE_FAILED: u32 = 104;
}

/// A CNI error object: what goes to stdout, with a non-zero exit, when a verb fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), json!(cni_version));
        obj.insert("code".into(), json!(self.code));
        obj.insert("msg".into(), json!(self.msg));
        if !self.details.is_empty() {
            obj.insert("details".into(), json!(self.details));
        }
        Value::Object(obj)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Parses `major.minor.patch`; anything else is `None`.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Checks a config's `cniVersion` against [`SUPPORTED_VERSIONS`].
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        return Ok(());
    }
    let why = if parse_version(v).is_none() {
        format!("cniVersion {v:?} is not a version (expected e.g. \"1.1.0\")")
    } else {
        format!("cniVersion {v} is not supported")
    };
    Err(
        CniError::new(code::INCOMPATIBLE_VERSION, why).with_details(format!(
            "weft-cni supports {}",
            SUPPORTED_VERSIONS.join(", ")
        )),
    )
}

/// The VERSION answer.
pub fn version_info(cni_version: &str) -> Value {
    json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS })
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with the prefix of its subnet, e.g. `10.244.1.5/24`.
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteResult {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0 only, as are the four below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl RouteResult {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        RouteResult {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result in the newest model; [`CniResult::to_json`] writes any supported version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<RouteResult>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (a `prevResult` or a delegated
    /// IPAM plugin's answer). 0.3.x/0.4.0 `version` fields are ignored: the
    /// address says its family.
    pub fn from_json(value: &Value) -> Result<Self, CniError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("invalid result: {}: {}", e.path(), e.inner()),
            )
        })
    }

    /// Writes the result as `cni_version` defines it: 0.3.x and 0.4.0 carry a
    /// `version` per IP; fields added in 1.1.0 (interface mtu/socketPath/pciID,
    /// route mtu/advmss/priority/table/scope) are dropped for older versions.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let v11 = parse_version(cni_version).is_some_and(|v| v >= (1, 1, 0));
        let pre_v1 = parse_version(cni_version).is_some_and(|v| v < (1, 0, 0));

        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if !v11 {
                    i.mtu = None;
                    i.socket_path = None;
                    i.pci_id = None;
                }
                json!(i)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!(ip);
                if pre_v1 {
                    let family = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    v["version"] = json!(family);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                if v11 {
                    json!(r)
                } else {
                    json!(RouteResult::new(r.dst, r.gw))
                }
            })
            .collect();

        let mut obj = Map::new();
        obj.insert("cniVersion".into(), json!(cni_version));
        if !interfaces.is_empty() {
            obj.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !ips.is_empty() {
            obj.insert("ips".into(), Value::Array(ips));
        }
        if !routes.is_empty() {
            obj.insert("routes".into(), Value::Array(routes));
        }
        if !self.dns.is_empty() {
            obj.insert("dns".into(), json!(self.dns));
        }
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: Some("aa:bb:cc:dd:ee:01".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("aa:bb:cc:dd:ee:02".into()),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/p1".into()),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.1.5/24".parse().unwrap(),
                    gateway: Some("10.244.1.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00:10:244:1::5/64".parse().unwrap(),
                    gateway: Some("fd00:10:244:1::1".parse().unwrap()),
                    interface: Some(1),
                },
            ],
            routes: vec![RouteResult {
                mtu: Some(1400),
                ..RouteResult::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.244.1.1".parse().unwrap()),
                )
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn v1_1_keeps_new_fields() {
        let v = sample().to_json("1.1.0");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][1]["mtu"], 1450);
        assert_eq!(v["routes"][0]["mtu"], 1400);
        assert!(v["ips"][0].get("version").is_none());
        assert!(v.get("dns").is_none());
    }

    #[test]
    fn v1_0_drops_1_1_fields() {
        let v = sample().to_json("1.0.0");
        assert!(v["interfaces"][1].get("mtu").is_none());
        assert!(v["routes"][0].get("mtu").is_none());
        assert_eq!(v["routes"][0]["gw"], "10.244.1.1");
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn pre_v1_has_ip_versions() {
        for version in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_json(version);
            assert_eq!(v["cniVersion"], version);
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert_eq!(v["ips"][0]["address"], "10.244.1.5/24");
            assert_eq!(v["ips"][0]["interface"], 1);
        }
    }

    #[test]
    fn results_round_trip_from_any_version() {
        for version in SUPPORTED_VERSIONS {
            let back = CniResult::from_json(&sample().to_json(version)).unwrap();
            assert_eq!(back.ips, sample().ips, "version {version}");
            assert_eq!(back.interfaces.len(), 2);
        }
    }

    #[test]
    fn version_checks() {
        assert!(check_version("1.1.0").is_ok());
        assert!(check_version("0.3.0").is_ok());
        let e = check_version("0.2.0").unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("0.2.0"));
        assert!(e.details.contains("1.1.0"));
        assert!(check_version("banana")
            .unwrap_err()
            .msg
            .contains("not a version"));
        assert_eq!(version_info("1.1.0")["supportedVersions"][0], "0.3.0");
    }

    #[test]
    fn error_object_shape() {
        let e = CniError::new(code::INVALID_CONFIG, "bad").with_details("why");
        let v = e.to_json("1.0.0");
        assert_eq!(
            v,
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "why"})
        );
        let v = CniError::new(4, "x").to_json("1.1.0");
        assert!(v.get("details").is_none());
    }
}
