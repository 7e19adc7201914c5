//! The network configuration weft-cni reads on stdin (`"type": "weft-cni"`),
//! parsed and validated into ranges the IPAM can use. Every error names the
//! field (`ipam.ranges[0][1].rangeEnd`) and the value.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::spec::{check_version, code, CniError};

pub const DEFAULT_BRIDGE: &str = "cni0";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub ip_masq: bool,
    /// Destinations that are not masqueraded with `ipMasq` (the cluster's pod
    /// CIDRs, typically). Defaults to the subnets of the ranges.
    #[serde(default, rename = "clusterCIDRs")]
    pub cluster_cidrs: Vec<IpNet>,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Option<IpamConf>,
    #[serde(default)]
    pub capabilities: Option<Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC input (SPEC.md 1.1): the attachments that are still in use.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(default, rename = "type")]
    pub ipam_type: Option<String>,
    #[serde(default)]
    pub ranges: Option<Vec<Vec<RangeConf>>>,
    #[serde(default)]
    pub subnet: Option<IpNet>,
    #[serde(default)]
    pub range_start: Option<IpAddr>,
    #[serde(default)]
    pub range_end: Option<IpAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: IpNet,
    #[serde(default)]
    pub range_start: Option<IpAddr>,
    #[serde(default)]
    pub range_end: Option<IpAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouteConf {
    pub dst: IpNet,
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// `runtimeConfig`: what the runtime passes for the capabilities we declare
/// (`portMappings`, `ips`, `mac`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// One usable range: addresses `start..=end` of `subnet`, `gateway` excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip)
            && ip_to_u128(ip) >= ip_to_u128(self.start)
            && ip_to_u128(ip) <= ip_to_u128(self.end)
    }

    /// Addresses this range can hand out (gateway excluded).
    pub fn size(&self) -> u128 {
        let (start, end) = (ip_to_u128(self.start), ip_to_u128(self.end));
        if end < start {
            return 0;
        }
        // `start` is at least the subnet's first host, so this cannot
        // overflow for ranges `validate` made; saturate for hand-made ones.
        let n = (end - start).saturating_add(1);
        if self.contains(self.gateway) {
            n - 1
        } else {
            n
        }
    }
}

/// A range set: one address family, one address per pod from any of its ranges.
pub type RangeSet = Vec<Range>;

/// Protocols a port mapping may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A validated port mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: Option<IpAddr>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: NetConf,
    pub bridge: String,
    pub is_gateway: bool,
    /// The built-in IPAM's range sets (empty when IPAM is delegated).
    pub range_sets: Vec<RangeSet>,
    /// `ipam.type` of a delegated IPAM plugin.
    pub delegate_ipam: Option<String>,
    pub routes: Vec<RouteConf>,
    pub data_dir: PathBuf,
    pub host_ports: Vec<HostPort>,
    pub requested_ips: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
}

/// Decodes stdin. Syntax errors are "failed to decode" (6); a known field of
/// the wrong type is "invalid network config" (7) naming the field.
pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                "network config".to_string()
            } else {
                path
            };
            CniError::new(code::INVALID_CONFIG, format!("{field}: {inner}"))
        } else {
            CniError::new(
                code::DECODE_FAILURE,
                format!("network config is not valid JSON: {inner}"),
            )
        }
    })
}

/// The `cniVersion` of raw input, if it has one (used to version error objects
/// even when the rest of the config is broken).
pub fn peek_version(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

/// Validates a parsed config for ADD/DEL/CHECK/GC/STATUS.
pub fn validate(raw: NetConf) -> Result<Config, CniError> {
    check_version(&raw.cni_version)?;
    if raw.name.is_empty() {
        return Err(invalid("name: must not be empty"));
    }
    if raw.name.contains('/') || raw.name == "." || raw.name == ".." {
        return Err(invalid(format!(
            "name: {:?} cannot be used as a directory name",
            raw.name
        )));
    }
    let bridge = raw
        .bridge
        .clone()
        .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
    crate::invocation::validate_ifname(&bridge)
        .map_err(|_| invalid(format!("bridge: {bridge:?} is not a valid interface name")))?;
    if let Some(mtu) = raw.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err(invalid(format!("mtu: {mtu} is outside 68..65535")));
        }
    }
    let ipam = raw.ipam.clone().ok_or_else(|| {
        invalid("ipam: missing; weft-cni needs an ipam section (subnet or ranges)")
    })?;

    let delegate_ipam = ipam
        .ipam_type
        .clone()
        .filter(|t| !t.is_empty() && t != "weft-cni");
    let range_sets = if delegate_ipam.is_some() {
        Vec::new()
    } else {
        range_sets_of(&ipam)?
    };

    let mut routes = Vec::new();
    for (i, r) in ipam.routes.iter().enumerate() {
        if r.dst != r.dst.trunc() {
            return Err(invalid(format!(
                "ipam.routes[{i}].dst: {} has host bits set (did you mean {}?)",
                r.dst,
                r.dst.trunc()
            )));
        }
        if let Some(gw) = r.gw {
            if gw.is_ipv4() != r.dst.addr().is_ipv4() {
                return Err(invalid(format!(
                    "ipam.routes[{i}].gw: {gw} is not of the family of {}",
                    r.dst
                )));
            }
        }
        routes.push(r.clone());
    }

    let mut host_ports = Vec::new();
    for (i, pm) in raw.runtime_config.port_mappings.iter().enumerate() {
        let field = format!("runtimeConfig.portMappings[{i}]");
        if pm.host_port == 0 || pm.container_port == 0 {
            return Err(invalid(format!(
                "{field}: hostPort and containerPort must be 1..65535"
            )));
        }
        let protocol = match pm
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("sctp") => Protocol::Sctp,
            Some(other) => {
                return Err(invalid(format!(
                    "{field}.protocol: {other:?} is not tcp, udp or sctp"
                )))
            }
        };
        let host_ip = match pm.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") | Some("::") => None,
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{field}.hostIP: {s:?} is not an IP address")))?,
            ),
        };
        host_ports.push(HostPort {
            host_port: pm.host_port,
            container_port: pm.container_port,
            protocol,
            host_ip,
        });
    }

    let mut requested_ips = Vec::new();
    for (i, s) in raw.runtime_config.ips.iter().enumerate() {
        let ip = s
            .parse::<IpNet>()
            .map(|n| n.addr())
            .or_else(|_| s.parse::<IpAddr>())
            .map_err(|_| {
                invalid(format!(
                    "runtimeConfig.ips[{i}]: {s:?} is not an IP address"
                ))
            })?;
        requested_ips.push(ip);
    }

    let mac = match raw.runtime_config.mac.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let mac = weft_linux::netlink::parse_mac(s)
                .ok_or_else(|| invalid(format!("runtimeConfig.mac: {s:?} is not a MAC address")))?;
            if mac[0] & 1 == 1 {
                return Err(invalid(format!(
                    "runtimeConfig.mac: {s} is a multicast address"
                )));
            }
            Some(mac)
        }
    };

    let data_dir = ipam
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
        .join(&raw.name);

    Ok(Config {
        bridge,
        is_gateway: raw.is_gateway || raw.is_default_gateway,
        range_sets,
        delegate_ipam,
        routes,
        data_dir,
        host_ports,
        requested_ips,
        mac,
        raw,
    })
}

/// Resolves `ipam.ranges` (or the lone-`subnet` shorthand) into range sets.
fn range_sets_of(ipam: &IpamConf) -> Result<Vec<RangeSet>, CniError> {
    let confs: Vec<(String, Vec<RangeConf>)> = match (&ipam.ranges, ipam.subnet) {
        (Some(_), Some(_)) => {
            return Err(invalid("ipam: give either subnet or ranges, not both"));
        }
        (Some(ranges), None) => ranges
            .iter()
            .enumerate()
            .map(|(i, set)| (format!("ipam.ranges[{i}]"), set.clone()))
            .collect(),
        (None, Some(subnet)) => vec![(
            "ipam".to_string(),
            vec![RangeConf {
                subnet,
                range_start: ipam.range_start,
                range_end: ipam.range_end,
                gateway: ipam.gateway,
            }],
        )],
        (None, None) => return Err(invalid("ipam: needs subnet or ranges")),
    };
    if confs.is_empty() {
        return Err(invalid("ipam.ranges: is empty"));
    }
    let mut sets: Vec<RangeSet> = Vec::new();
    for (set_field, set) in confs {
        if set.is_empty() {
            return Err(invalid(format!("{set_field}: range set is empty")));
        }
        let mut resolved: RangeSet = Vec::new();
        for (j, rc) in set.iter().enumerate() {
            let field = if set_field == "ipam" {
                set_field.clone()
            } else {
                format!("{set_field}[{j}]")
            };
            let range = resolve_range(&field, rc)?;
            if let Some(first) = resolved.first() {
                if first.subnet.addr().is_ipv4() != range.subnet.addr().is_ipv4() {
                    return Err(invalid(format!(
                        "{field}.subnet: {} mixes address families in one range set; use one set per family",
                        range.subnet
                    )));
                }
            }
            for (k, other) in resolved.iter().chain(sets.iter().flatten()).enumerate() {
                if overlaps(other, &range) {
                    return Err(invalid(format!(
                        "{field}: {}-{} overlaps range {} ({}-{}) #{k}",
                        range.start, range.end, other.subnet, other.start, other.end
                    )));
                }
            }
            resolved.push(range);
        }
        sets.push(resolved);
    }
    Ok(sets)
}

fn resolve_range(field: &str, rc: &RangeConf) -> Result<Range, CniError> {
    let subnet = rc.subnet;
    if subnet != subnet.trunc() {
        return Err(invalid(format!(
            "{field}.subnet: {subnet} has host bits set (did you mean {}?)",
            subnet.trunc()
        )));
    }
    // host-local's rules: the network address is never handed out, nor the
    // IPv4 broadcast; IPv6 keeps the last address. The prefix checks below
    // leave at least four addresses, so `+ 1` and `- 1` stay in the subnet
    // (also at the top and bottom of the address space).
    let (first_host, last_host) = match subnet {
        IpNet::V4(n) => {
            if n.prefix_len() > 30 {
                return Err(invalid(format!(
                    "{field}.subnet: {subnet} has no room for pods (need /30 or larger)"
                )));
            }
            (
                u128::from(u32::from(n.network())) + 1,
                u128::from(u32::from(n.broadcast())) - 1,
            )
        }
        IpNet::V6(n) => {
            if n.prefix_len() > 126 {
                return Err(invalid(format!(
                    "{field}.subnet: {subnet} has no room for pods (need /126 or larger)"
                )));
            }
            (u128::from(n.network()) + 1, u128::from(n.broadcast()))
        }
    };
    let v4 = subnet.addr().is_ipv4();
    let check_in = |name: &str, ip: IpAddr| -> Result<u128, CniError> {
        if ip.is_ipv4() != v4 || !subnet.contains(&ip) {
            return Err(invalid(format!(
                "{field}.{name}: {ip} is not in subnet {subnet}"
            )));
        }
        Ok(ip_to_u128(ip))
    };
    let start = match rc.range_start {
        Some(ip) => check_in("rangeStart", ip)?.max(first_host),
        None => first_host,
    };
    let end = match rc.range_end {
        Some(ip) => check_in("rangeEnd", ip)?.min(last_host),
        None => last_host,
    };
    // Every value here came from an address of the subnet's family, so the
    // conversion back cannot fail; refuse rather than truncate if it did.
    let addr = |n: u128| {
        ip_from_u128(n, v4).ok_or_else(|| {
            invalid(format!(
                "{field}.subnet: {subnet}: address {n} out of range"
            ))
        })
    };
    if start > end {
        return Err(invalid(format!(
            "{field}: rangeStart {} is after rangeEnd {}",
            addr(start)?,
            addr(end)?
        )));
    }
    let gateway = match rc.gateway {
        Some(ip) => {
            check_in("gateway", ip)?;
            ip
        }
        None => addr(first_host)?,
    };
    let range = Range {
        subnet,
        start: addr(start)?,
        end: addr(end)?,
        gateway,
    };
    if range.size() == 0 {
        return Err(invalid(format!(
            "{field}: range {}-{} has no room for pods once the gateway {} is taken out",
            range.start, range.end, range.gateway
        )));
    }
    Ok(range)
}

fn overlaps(a: &Range, b: &Range) -> bool {
    a.subnet.addr().is_ipv4() == b.subnet.addr().is_ipv4()
        && ip_to_u128(a.start) <= ip_to_u128(b.end)
        && ip_to_u128(b.start) <= ip_to_u128(a.end)
}

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of a family, if it is one: `None` for an IPv4 value that
/// does not fit in 32 bits (never truncated).
pub fn ip_from_u128(n: u128, v4: bool) -> Option<IpAddr> {
    if v4 {
        u32::try_from(n)
            .ok()
            .map(|v| IpAddr::V4(std::net::Ipv4Addr::from(v)))
    } else {
        Some(IpAddr::V6(std::net::Ipv6Addr::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<Config, CniError> {
        validate(parse(json.as_bytes())?)
    }

    #[test]
    fn lone_subnet_is_one_range_with_defaults() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni",
            "ipam":{"subnet":"10.244.1.0/24"}}"#,
        )
        .unwrap();
        assert_eq!(c.bridge, "cni0");
        assert_eq!(c.range_sets.len(), 1);
        let r = &c.range_sets[0][0];
        assert_eq!(r.start.to_string(), "10.244.1.1");
        assert_eq!(r.end.to_string(), "10.244.1.254");
        assert_eq!(r.gateway.to_string(), "10.244.1.1");
        assert_eq!(r.size(), 253);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/networks/n"));
    }

    #[test]
    fn dual_stack_ranges() {
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"weft-cni","isDefaultGateway":true,
            "ipam":{"ranges":[[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.10","rangeEnd":"10.244.1.20"}],
                              [{"subnet":"fd00:10:244:1::/64"}]],
                    "routes":[{"dst":"10.0.0.0/8"}], "dataDir":"/tmp/x"}}"#)
        .unwrap();
        assert!(c.is_gateway);
        assert_eq!(c.range_sets.len(), 2);
        assert_eq!(c.range_sets[0][0].size(), 11);
        assert_eq!(c.range_sets[1][0].gateway.to_string(), "fd00:10:244:1::1");
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.5/24"}}"#,
                "ipam.subnet: 10.244.1.5/24 has host bits set",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/32"}}"#,
                "no room",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24","rangeStart":"10.9.0.1"}}"#,
                "ipam.rangeStart: 10.9.0.1 is not in subnet 10.244.1.0/24",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.50","rangeEnd":"10.244.1.40"}}"#,
                "is after rangeEnd",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.1","rangeEnd":"10.244.1.1"}}"#,
                "no room for pods once the gateway",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"10.244.1.0/25"}]]}}"#,
                "overlaps",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"ranges":[[{"subnet":"10.244.1.0/24"},{"subnet":"fd00::/64"}]]}}"#,
                "ipam.ranges[0][1].subnet: fd00::/64 mixes address families",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni"}"#,
                "ipam: missing",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","mtu":20,"ipam":{"subnet":"10.244.1.0/24"}}"#,
                "mtu: 20",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24"},
                "runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}"#,
                "runtimeConfig.portMappings[0].protocol",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24"},
                "runtimeConfig":{"mac":"zz"}}"#,
                "runtimeConfig.mac",
            ),
        ];
        for (json, want) in cases {
            let e = conf(json).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{json}");
            assert!(e.msg.contains(want), "{} does not contain {want}", e.msg);
        }
    }

    #[test]
    fn wrong_types_and_bad_json() {
        let e = parse(br#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","mtu":"big"}"#)
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.starts_with("mtu:"), "{}", e.msg);
        let e = parse(br#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"ranges":[[{"subnet":"10.1"}]]}}"#)
            .unwrap_err();
        assert!(e.msg.contains("ipam.ranges[0][0].subnet"), "{}", e.msg);
        let e = parse(b"{not json").unwrap_err();
        assert_eq!(e.code, code::DECODE_FAILURE);
        let e = parse(br#"{"name":"n","type":"weft-cni"}"#).unwrap_err();
        assert!(e.msg.contains("cniVersion"), "{}", e.msg);
        let e = validate(parse(br#"{"cniVersion":"0.2.0","name":"n","type":"weft-cni"}"#).unwrap())
            .unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn unknown_fields_are_allowed() {
        conf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","somethingElse":{"a":1},
            "ipam":{"subnet":"10.244.1.0/24"}}"#,
        )
        .unwrap();
    }

    #[test]
    fn runtime_config_capabilities() {
        let c = conf(r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24"},
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"UDP","hostIP":"192.168.1.10"}],
                             "ips":["10.244.1.7/24"],"mac":"0a:58:0a:f4:01:07"}}"#)
        .unwrap();
        assert_eq!(c.host_ports[0].protocol, Protocol::Udp);
        assert_eq!(
            c.host_ports[0].host_ip,
            Some("192.168.1.10".parse().unwrap())
        );
        assert_eq!(
            c.requested_ips,
            vec!["10.244.1.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.mac, Some([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07]));
    }

    #[test]
    fn delegated_ipam_skips_ranges() {
        let c = conf(r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{"type":"host-local","subnet":"10.244.1.0/24"}}"#)
            .unwrap();
        assert_eq!(c.delegate_ipam.as_deref(), Some("host-local"));
        assert!(c.range_sets.is_empty());
    }
}
