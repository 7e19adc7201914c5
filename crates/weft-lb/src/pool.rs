//! LoadBalancerIPPool objects read into [`Pool`]s: the address ranges a pool
//! hands out, which Services may take from it and which nodes may announce
//! its addresses.
//!
//! `spec.addresses` entries are a CIDR (`203.0.113.0/24`), a range of two
//! addresses of one family (`203.0.113.200-203.0.113.220`, both ends
//! included) or a single address. An IPv4 CIDR shorter than /31 loses its
//! network and broadcast addresses (`203.0.113.0/24` hands out `.1`–`.254`):
//! some hosts and routers on the segment still treat them as special, and
//! MetalLB's opt-in `avoidBuggyIPs` exists for the same reason; here it is
//! not optional. List `203.0.113.0` on its own to hand it out anyway. /31
//! and /32 (RFC 3021 point-to-point) and every IPv6 prefix keep all their
//! addresses. Ranges may overlap, within a pool or across pools; an address
//! is one address however often it is listed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;
use weft_policy::model::selector_matches;

use crate::{GROUP, POOL_KIND, VERSION};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// The API's name, as in `spec.ipFamilies` and EndpointSlice
    /// `addressType`: `IPv4`, `IPv6`.
    pub fn api_name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// Reads an API name (`IPv4`, `IPv6`).
    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// An address as a number (IPv4 in the low 32 bits), for range arithmetic.
pub(crate) fn to_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address `n` of family `f` (for IPv4, `n` fits in 32 bits: it comes
/// from a range of that family).
pub(crate) fn from_num(f: Family, n: u128) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Addresses `start` to `end`, both included, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl IpRange {
    /// `None` unless both ends are of one family and `start <= end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<IpRange> {
        (Family::of(&start) == Family::of(&end) && start <= end).then_some(IpRange { start, end })
    }

    pub fn single(ip: IpAddr) -> IpRange {
        IpRange { start: ip, end: ip }
    }

    /// The family of `start` (a range built by [`IpRange::new`] or
    /// [`parse_pool`] has one).
    pub fn family(&self) -> Family {
        Family::of(&self.start)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(&ip) == self.family() && self.start <= ip && ip <= self.end
    }

    /// How many addresses it holds (saturating: `::/0` counts `u128::MAX`).
    pub fn size(&self) -> u128 {
        (to_num(self.end).saturating_sub(to_num(self.start))).saturating_add(1)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A parsed LoadBalancerIPPool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    /// As listed in `spec.addresses`, IPv4 CIDRs shorter than /31 without
    /// their network and broadcast addresses.
    pub ranges: Vec<IpRange>,
    /// Which Services may take addresses from it; `None`: every Service.
    pub service_selector: Option<LabelSelector>,
    /// Which nodes may announce its addresses; `None`: every node.
    pub node_selector: Option<LabelSelector>,
    /// `false`: only Services asking for one of its addresses get one.
    pub auto_assign: bool,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn has_family(&self, f: Family) -> bool {
        self.ranges.iter().any(|r| r.family() == f)
    }

    /// Distinct addresses it holds (saturating).
    pub fn total(&self) -> u128 {
        [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|f| self.spans(f))
            .fold(0u128, |n, (lo, hi)| {
                n.saturating_add((hi - lo).saturating_add(1))
            })
    }

    /// May a Service with these labels take addresses from it?
    pub fn serves(&self, service_labels: &Labels) -> bool {
        self.service_selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, service_labels))
    }

    /// May a node with these labels announce its addresses?
    pub fn announcer(&self, node_labels: &Labels) -> bool {
        self.node_selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, node_labels))
    }

    /// Its addresses of family `f` as sorted, merged, non-adjacent numeric
    /// spans (both ends included).
    pub(crate) fn spans(&self, f: Family) -> Vec<(u128, u128)> {
        let mut spans: Vec<(u128, u128)> = self
            .ranges
            .iter()
            .filter(|r| r.family() == f)
            .map(|r| (to_num(r.start), to_num(r.end)))
            .collect();
        spans.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
        for (lo, hi) in spans {
            match out.last_mut() {
                Some(last) if last.1 >= lo || last.1.checked_add(1) == Some(lo) => {
                    last.1 = last.1.max(hi);
                }
                _ => out.push((lo, hi)),
            }
        }
        out
    }
}

/// A LoadBalancerIPPool that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LoadBalancerIPPool {pool:?}: {field}: expected {expected}, found {found}")]
pub struct PoolError {
    /// `metadata.name` (empty when that is what is missing).
    pub pool: String,
    /// The JSON path of the field at fault: `spec.addresses[2]`.
    pub field: String,
    pub expected: String,
    /// The value found, as JSON, or `nothing`.
    pub found: String,
}

/// Reads a LoadBalancerIPPool object (as a watch on
/// `weft.dev/v1alpha1/loadbalancerippools` hands it out). `apiVersion` and
/// `kind` are checked when present; unknown `spec` fields are ignored.
pub fn parse_pool(obj: &Value) -> Result<Pool, PoolError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let err = |field: &str, expected: &str, found: Option<&Value>| PoolError {
        pool: name.to_string(),
        field: field.to_string(),
        expected: expected.to_string(),
        found: found.map_or_else(|| "nothing".to_string(), Value::to_string),
    };
    if name.is_empty() {
        return Err(err(
            "metadata.name",
            "a name",
            obj.pointer("/metadata/name"),
        ));
    }
    let api_version = format!("{GROUP}/{VERSION}");
    if let Some(v) = obj.get("apiVersion") {
        if v.as_str() != Some(api_version.as_str()) {
            return Err(err("apiVersion", &format!("{api_version:?}"), Some(v)));
        }
    }
    if let Some(v) = obj.get("kind") {
        if v.as_str() != Some(POOL_KIND) {
            return Err(err("kind", &format!("{POOL_KIND:?}"), Some(v)));
        }
    }
    let Some(spec) = obj.get("spec").filter(|s| s.is_object()) else {
        return Err(err(
            "spec",
            "an object with spec.addresses",
            obj.get("spec"),
        ));
    };
    let addresses = match spec.get("addresses") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        other => {
            return Err(err(
                "spec.addresses",
                "a non-empty list of CIDRs, ranges or addresses",
                other,
            ))
        }
    };
    let mut ranges = Vec::with_capacity(addresses.len());
    for (i, a) in addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        let Some(s) = a.as_str() else {
            return Err(err(&field, ADDRESS_FORMS, Some(a)));
        };
        ranges.push(parse_range(s).map_err(|expected| err(&field, expected, Some(a)))?);
    }
    let auto_assign = match spec.get("autoAssign") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(err("spec.autoAssign", "true or false", Some(v))),
    };
    let selector = |field: &str| -> Result<Option<LabelSelector>, PoolError> {
        let v = match spec.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let path = format!("spec.{field}");
        let sel: LabelSelector = serde_json::from_value(v.clone()).map_err(|e| {
            err(
                &path,
                &format!("a label selector with matchLabels and matchExpressions ({e})"),
                Some(v),
            )
        })?;
        check_selector(&sel).map_err(|(j, leaf, expected)| {
            err(
                &format!("{path}.matchExpressions[{j}].{leaf}"),
                expected,
                v.pointer(&format!("/matchExpressions/{j}/{leaf}")),
            )
        })?;
        Ok(Some(sel))
    };
    Ok(Pool {
        name: name.to_string(),
        ranges,
        service_selector: selector("serviceSelector")?,
        node_selector: selector("nodeSelector")?,
        auto_assign,
    })
}

const ADDRESS_FORMS: &str =
    "a CIDR (203.0.113.0/24), a range (203.0.113.10-203.0.113.20) or an IP address";

/// One `spec.addresses` entry; the error says what was expected.
fn parse_range(s: &str) -> Result<IpRange, &'static str> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) else {
            return Err("a range of two IP addresses (203.0.113.10-203.0.113.20)");
        };
        if Family::of(&a) != Family::of(&b) {
            return Err("a range whose ends are of one IP family");
        }
        return IpRange::new(a, b).ok_or("a range whose start is not above its end");
    }
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| ADDRESS_FORMS)?;
        if net.addr() != net.network() {
            return Err("a CIDR naming its network address (203.0.113.0/24, not 203.0.113.5/24)");
        }
        return Ok(match net {
            // Network and broadcast addresses left out (module doc).
            IpNet::V4(n) if n.prefix_len() < 31 => IpRange {
                start: IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
                end: IpAddr::V4(Ipv4Addr::from(u32::from(n.broadcast()) - 1)),
            },
            n => IpRange {
                start: n.network(),
                end: n.broadcast(),
            },
        });
    }
    s.parse::<IpAddr>()
        .map(IpRange::single)
        .map_err(|_| ADDRESS_FORMS)
}

/// What the API server would refuse in a selector: the index of the
/// expression, its field at fault and what was expected there.
fn check_selector(sel: &LabelSelector) -> Result<(), (usize, &'static str, &'static str)> {
    for (j, e) in sel.match_expressions.iter().flatten().enumerate() {
        if e.key.is_empty() {
            return Err((j, "key", "a label key"));
        }
        let has_values = e.values.as_ref().is_some_and(|v| !v.is_empty());
        match e.operator.as_str() {
            "In" | "NotIn" if !has_values => {
                return Err((
                    j,
                    "values",
                    "a non-empty list of values (operators In and NotIn need them)",
                ))
            }
            "Exists" | "DoesNotExist" if has_values => {
                return Err((
                    j,
                    "values",
                    "no values (operators Exists and DoesNotExist take none)",
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => return Err((j, "operator", "In, NotIn, Exists or DoesNotExist")),
        }
    }
    Ok(())
}
