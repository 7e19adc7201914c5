//! The compile step: Services, EndpointSlices and Pods → an immutable
//! [`Zone`] snapshot holding every record the cluster domain serves, built
//! once so that answering is a hash lookup. Pure and deterministic: no I/O,
//! no clock, no randomness; the same objects always give the same zone.
//!
//! The records are those of the Kubernetes DNS-Based Service Discovery
//! specification 1.1.0 (kubernetes/dns `docs/specification.md`, "spec" below):
//!
//! - `dns-version.<domain>` TXT `"1.1.0"` (spec 2.2);
//! - a Service with cluster IPs: A/AAAA per `spec.clusterIPs` (dual-stack),
//!   SRV `_<port>._<proto>.<svc>.<ns>.svc.<domain>` per named port pointing at
//!   the Service name, PTR per cluster IP (spec 2.3);
//! - a headless Service (`clusterIP: None`): A/AAAA per ready endpoint address,
//!   A/AAAA per endpoint hostname, SRV per (ready endpoint, named port) and PTR
//!   for endpoints with a hostname (spec 2.4). An endpoint is ready unless its
//!   `conditions.ready` is `false` (unset counts as ready, EndpointSlice API),
//!   or always when the Service sets `publishNotReadyAddresses`. A headless
//!   Service without a ready endpoint has no name at all (NXDOMAIN, spec 2.4.1);
//! - an ExternalName Service: CNAME to `spec.externalName`, no SRV (spec 2.5);
//! - Pod names `<a-b-c-d>.<ns>.pod.<domain>` behind [`PodMode`] (CoreDNS
//!   kubernetes plugin `pods disabled|insecure|verified`), answered by
//!   [`Zone::lookup`] from the address in the first label.
//!
//! The spec's _hostname_ of an endpoint without `hostname` is "a unique,
//! system-assigned identifier"; here it is the address with `.`/`:` turned
//! into `-` (`10-1-2-3`, `fd00--5`), as CoreDNS does: unique within the
//! Service, stable while the endpoint lives, and a client can tell which
//! endpoint a SRV target names. Such names get A/AAAA records too, so every
//! SRV target resolves (RFC 2782), but no PTR (the spec asks PTR only for
//! endpoints with a hostname). Headless SRV port numbers are the EndpointSlice
//! port (what the endpoint listens on; clients of a headless Service connect
//! to it directly).
//!
//! Names are keyed by their lowercased wire form (RFC 4343: comparisons are
//! case-insensitive). Every ancestor of a name with records, up to the domain,
//! is kept as an empty non-terminal, so a name that exists without records of
//! the asked type is told apart (NODATA) from one that does not exist at all
//! (NXDOMAIN, RFC 8020). The zone also carries the autopath table: the
//! namespace of each Pod IP (status.podIPs of Pods not on the host network and
//! not finished), an IP claimed in two namespaces belonging to none.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use fnv::{FnvBuildHasher, FnvHasher};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The schema version served at `dns-version.<domain>` (spec 2.2).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Default record TTL, as CoreDNS's kubernetes plugin.
pub const DEFAULT_TTL: u32 = 5;
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether and how `<ip>.<ns>.pod.<domain>` names answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodMode {
    /// The `pod` subtree does not exist (NXDOMAIN).
    #[default]
    Disabled,
    /// Any well-formed address name answers with that address.
    Insecure,
    /// Only when a Pod in that namespace has that IP.
    Verified,
}

impl std::str::FromStr for PodMode {
    type Err = String;

    /// CoreDNS's names for the modes: `disabled`, `insecure`, `verified`.
    fn from_str(s: &str) -> Result<PodMode, String> {
        match s {
            "disabled" => Ok(PodMode::Disabled),
            "insecure" => Ok(PodMode::Insecure),
            "verified" => Ok(PodMode::Verified),
            other => Err(format!(
                "unknown pod mode {other:?}: expected disabled, insecure or verified"
            )),
        }
    }
}

/// What the zone is compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cluster domain, e.g. `cluster.local.`.
    pub domain: Name,
    /// TTL of every record, and the SOA minimum (negative-answer TTL).
    pub ttl: u32,
    pub pods: PodMode,
    /// Answer the search path of a Pod's resolv.conf in one go (CoreDNS
    /// autopath plugin); see [`crate::answer`].
    pub autopath: bool,
}

impl Config {
    /// The defaults for `domain`: TTL 5, pods disabled, no autopath.
    pub fn new(domain: Name) -> Self {
        Self {
            domain,
            ttl: DEFAULT_TTL,
            pods: PodMode::Disabled,
            autopath: false,
        }
    }
}

/// An object (or one field of it) compile left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `kind ns/name`.
    pub object: String,
    pub why: String,
}

/// The records of one type at one name, plus what the additional section
/// carries with them (the A/AAAA of SRV targets, RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    pub rtype: RecordType,
    pub records: Vec<Record>,
    pub additional: Vec<Record>,
}

/// One existing name: its record sets (none for an empty non-terminal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub sets: Vec<RecordSet>,
}

impl Node {
    /// The set of `rtype`, if the name has one.
    pub fn get(&self, rtype: RecordType) -> Option<&RecordSet> {
        self.sets.iter().find(|s| s.rtype == rtype)
    }

    fn push(&mut self, record: Record) {
        let rtype = record.record_type();
        match self.sets.iter_mut().find(|s| s.rtype == rtype) {
            Some(set) => set.records.push(record),
            None => self.sets.push(RecordSet {
                rtype,
                records: vec![record],
                additional: Vec::new(),
            }),
        }
    }
}

/// What a name is in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'z> {
    /// A name of the zone (or of a reverse zone) with these sets.
    Node(&'z Node),
    /// A Pod name: its one address record, owned by the name as asked.
    Pod(Box<Record>),
    /// A name of the pod subtree that exists without records.
    PodEmpty,
    /// A name inside the cluster domain that does not exist.
    NxDomain,
    /// Not ours: outside the cluster domain, or a reverse name without a
    /// record here (answered upstream).
    Outside,
}

/// Where a name lies relative to what this server is authoritative for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Inside the cluster domain.
    Cluster,
    /// Under `in-addr.arpa.` or `ip6.arpa.`.
    Reverse,
    Elsewhere,
}

/// The compiled, immutable snapshot.
#[derive(Debug, Clone)]
pub struct Zone {
    domain: Name,
    ttl: u32,
    pods: PodMode,
    autopath: bool,
    serial: u32,
    /// Unique to this compile in this process (see [`Zone::generation`]).
    generation: u64,
    soa: Record,
    soa_in_addr: Record,
    soa_ip6: Record,
    names: HashMap<Box<[u8]>, Node, FnvBuildHasher>,
    /// IP → namespaces of the running Pods with it (Verified pod records).
    pod_ips: HashMap<IpAddr, Vec<Arc<str>>, FnvBuildHasher>,
    /// Namespaces with at least one such Pod.
    pod_namespaces: HashSet<Arc<str>, FnvBuildHasher>,
    /// Client IP → namespace (autopath); `None` when claimed by two.
    client_ns: HashMap<IpAddr, Option<Arc<str>>, FnvBuildHasher>,
    skipped: Vec<Skipped>,
}

/// The longest wire-form name (RFC 1035 3.1) fits.
pub(crate) struct KeyBuf {
    buf: [u8; 256],
    len: usize,
}

impl KeyBuf {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    /// The lowercased wire form of `name` (labels with length octets, no
    /// root octet), or `None` past 255 octets (never for a parsed name).
    pub(crate) fn of(&mut self, name: &Name) -> Option<&[u8]> {
        self.len = 0;
        for label in name.iter() {
            let end = self.len + 1 + label.len();
            if end > self.buf.len() || label.len() > 63 {
                return None;
            }
            self.buf[self.len] = label.len() as u8;
            for (dst, src) in self.buf[self.len + 1..end].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            self.len = end;
        }
        Some(&self.buf[..self.len])
    }
}

fn key(name: &Name) -> Option<Box<[u8]>> {
    KeyBuf::new().of(name).map(Box::from)
}

impl Zone {
    /// The cluster domain, lowercase.
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn autopath(&self) -> bool {
        self.autopath
    }

    /// A number no other zone compiled by this process has (clones share
    /// it): what caches of answers key on to notice a new snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SOA serial: a digest of the zone's records, so it changes when
    /// the content does (compile has no clock to take a time from).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The SOA of the cluster domain (authority of negative answers,
    /// RFC 2308 3).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA to put in a negative answer about `name`: the cluster
    /// domain's, or that of the reverse zone `name` lies in.
    pub fn soa_for(&self, name: &Name) -> &Record {
        if self.soa_ip6.name().zone_of(name) {
            &self.soa_ip6
        } else if self.soa_in_addr.name().zone_of(name) {
            &self.soa_in_addr
        } else {
            &self.soa
        }
    }

    /// Number of existing names (records and empty non-terminals).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// What compile left out.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The verified namespace of a client (autopath): the namespace of the
    /// one Pod namespace claiming that IP.
    pub fn namespace_of(&self, client: IpAddr) -> Option<&str> {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
            v4 => v4,
        };
        self.client_ns.get(&client)?.as_deref()
    }

    /// Where `name` lies.
    pub fn area(&self, name: &Name) -> Area {
        if self.domain.zone_of(name) {
            Area::Cluster
        } else if self.soa_in_addr.name().zone_of(name) || self.soa_ip6.name().zone_of(name) {
            Area::Reverse
        } else {
            Area::Elsewhere
        }
    }

    /// Looks `name` up (case-insensitively).
    pub fn lookup(&self, name: &Name) -> Lookup<'_> {
        let mut buf = KeyBuf::new();
        self.lookup_with(name, &mut buf)
    }

    pub(crate) fn lookup_with(&self, name: &Name, buf: &mut KeyBuf) -> Lookup<'_> {
        let area = self.area(name);
        if area == Area::Elsewhere {
            return Lookup::Outside;
        }
        let Some(k) = buf.of(name) else {
            return Lookup::Outside;
        };
        if let Some(node) = self.names.get(k) {
            return Lookup::Node(node);
        }
        if area == Area::Reverse {
            return Lookup::Outside;
        }
        self.lookup_pod(name)
    }

    /// The pod subtree: `pod.<domain>`, `<ns>.pod.<domain>`,
    /// `<ip>.<ns>.pod.<domain>`.
    fn lookup_pod(&self, name: &Name) -> Lookup<'_> {
        let below = usize::from(name.num_labels()) - usize::from(self.domain.num_labels());
        let mut labels = name.iter().take(below).rev();
        let Some(first) = labels.next() else {
            return Lookup::NxDomain;
        };
        if !first.eq_ignore_ascii_case(b"pod") || self.pods == PodMode::Disabled {
            return Lookup::NxDomain;
        }
        let Some(ns) = labels.next() else {
            return Lookup::PodEmpty;
        };
        let Ok(ns) = std::str::from_utf8(ns).map(str::to_ascii_lowercase) else {
            return Lookup::NxDomain;
        };
        let Some(ip_label) = labels.next() else {
            return match self.pods {
                PodMode::Verified if !self.pod_namespaces.contains(ns.as_str()) => Lookup::NxDomain,
                _ => Lookup::PodEmpty,
            };
        };
        if labels.next().is_some() {
            return Lookup::NxDomain;
        }
        let Some(ip) = pod_label_ip(ip_label) else {
            return Lookup::NxDomain;
        };
        let verified = || {
            self.pod_ips
                .get(&ip)
                .is_some_and(|namespaces| namespaces.iter().any(|n| **n == *ns))
        };
        if self.pods == PodMode::Verified && !verified() {
            return Lookup::NxDomain;
        }
        Lookup::Pod(Box::new(address_record(name.clone(), self.ttl, ip)))
    }
}

/// `1-2-3-4` → 1.2.3.4, `fd00--1` → fd00::1.
fn pod_label_ip(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    if let Ok(v4) = text.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    text.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The label an address gets as an endpoint's system-assigned hostname.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

/// A Kubernetes object name usable as one DNS label (RFC 1123 label:
/// letters, digits, `-`), lowercased.
fn dns_label(s: &str) -> Option<String> {
    let ok =
        !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| s.to_ascii_lowercase())
}

struct Builder {
    domain: Name,
    ttl: u32,
    names: HashMap<Box<[u8]>, (Name, Node), FnvBuildHasher>,
    skipped: Vec<Skipped>,
}

impl Builder {
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
        name.set_fqdn(false);
        name.append_domain(&self.domain).ok()
    }

    fn node(&mut self, name: &Name) -> Option<&mut Node> {
        let k = key(name)?;
        Some(
            &mut self
                .names
                .entry(k)
                .or_insert_with(|| (name.clone(), Node::default()))
                .1,
        )
    }

    fn add(&mut self, record: Record) {
        let name = record.name().clone();
        if let Some(node) = self.node(&name) {
            node.push(record);
        }
    }

    fn skip(&mut self, object: String, why: impl Into<String>) {
        self.skipped.push(Skipped {
            object,
            why: why.into(),
        });
    }
}

/// A digest of exactly what [`compile`] reads: each Service's and
/// EndpointSlice's uid and resourceVersion, and of each Pod only its
/// namespace, host network, terminal phase and IPs — so that the status
/// churn of Pods (conditions, probes, restarts) does not rebuild a zone of
/// thousands of Services. The order of the inputs does not matter.
pub fn inputs_digest(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    pods: &[Arc<Pod>],
) -> u64 {
    fn one(tag: u8, parts: &[Option<&str>]) -> u64 {
        let mut h = FnvHasher::default();
        h.write_u8(tag);
        for p in parts {
            match p {
                Some(s) => {
                    h.write_u8(1);
                    h.write(s.as_bytes());
                    h.write_u8(0);
                }
                None => h.write_u8(2),
            }
        }
        h.finish()
    }
    let version = |tag: u8, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        one(
            tag,
            &[
                m.uid.as_deref(),
                m.resource_version.as_deref(),
                m.name.as_deref(),
                m.namespace.as_deref(),
            ],
        )
    };
    let mut sum = 0u64;
    for s in services {
        sum = sum.wrapping_add(version(b's', &s.metadata));
    }
    for s in slices {
        sum = sum.wrapping_add(version(b'e', &s.metadata));
    }
    for p in pods {
        let host_network = p
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let status = p.status.as_ref();
        let terminal = status
            .and_then(|s| s.phase.as_deref())
            .filter(|ph| matches!(*ph, "Succeeded" | "Failed"));
        let mut parts: Vec<Option<&str>> = vec![
            p.metadata.namespace.as_deref(),
            Some(if host_network { "host" } else { "pod" }),
            terminal,
            status.and_then(|s| s.pod_ip.as_deref()),
        ];
        parts.extend(
            status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|ip| Some(ip.ip.as_str())),
        );
        sum = sum.wrapping_add(one(b'p', &parts));
    }
    sum ^ ((services.len() as u64) << 40) ^ ((slices.len() as u64) << 20) ^ pods.len() as u64
}

/// Builds the zone. Objects that cannot give a record are left out and
/// listed in [`Zone::skipped`]; nothing here fails or panics.
pub fn compile(
    cfg: &Config,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    pods: &[Arc<Pod>],
) -> Zone {
    let mut domain = cfg.domain.to_lowercase();
    domain.set_fqdn(true);
    let mut b = Builder {
        domain: domain.clone(),
        ttl: cfg.ttl,
        names: HashMap::default(),
        skipped: Vec::new(),
    };

    // Slices by (namespace, service name).
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let Some(svc) = svc {
            by_service
                .entry((ns, svc.as_str()))
                .or_default()
                .push(slice);
        }
    }

    for svc in services {
        add_service(&mut b, svc, &by_service);
    }

    // dns-version TXT (spec 2.2).
    if let Some(name) = b.name(&["dns-version"]) {
        b.add(Record::from_rdata(
            name,
            cfg.ttl,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
        ));
    }
    if let Some(svc) = b.name(&["svc"]) {
        b.node(&svc);
    }

    // Empty non-terminals: every ancestor of a name inside the domain.
    let inside: Vec<Name> = b
        .names
        .values()
        .map(|(n, _)| n.clone())
        .filter(|n| domain.zone_of(n))
        .collect();
    for name in inside {
        let mut up = name.base_name();
        while up.num_labels() > domain.num_labels() {
            b.node(&up);
            up = up.base_name();
        }
    }

    // One canonical order per set, duplicates (an address in two slices)
    // once.
    for (_, node) in b.names.values_mut() {
        for set in &mut node.sets {
            set.records.sort();
            set.records.dedup();
        }
    }

    // The additional section of each SRV set: its targets' A/AAAA.
    let targets: Vec<(Box<[u8]>, Vec<Record>)> = b
        .names
        .iter()
        .filter_map(|(k, (_, node))| {
            let srv = node.get(RecordType::SRV)?;
            let mut extra = Vec::new();
            for r in &srv.records {
                let RData::SRV(s) = r.data() else { continue };
                let Some(target) = key(s.target()).and_then(|t| b.names.get(&t)) else {
                    continue;
                };
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Some(set) = target.1.get(rtype) {
                        extra.extend(set.records.iter().cloned());
                    }
                }
            }
            extra.sort();
            extra.dedup();
            Some((k.clone(), extra))
        })
        .collect();
    for (k, extra) in targets {
        if let Some((_, node)) = b.names.get_mut(&k) {
            if let Some(set) = node.sets.iter_mut().find(|s| s.rtype == RecordType::SRV) {
                set.additional = extra;
            }
        }
    }

    // Pods: verified records and the autopath table.
    let mut pod_ips: HashMap<IpAddr, Vec<Arc<str>>, FnvBuildHasher> = HashMap::default();
    let mut pod_namespaces = HashSet::default();
    let mut client_ns: HashMap<IpAddr, Option<Arc<str>>, FnvBuildHasher> = HashMap::default();
    for pod in pods {
        let Some(ns) = pod.metadata.namespace.as_deref().and_then(dns_label) else {
            continue;
        };
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) || host_network {
            continue;
        }
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .pod_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        let ns: Arc<str> = Arc::from(ns);
        for ip in ips {
            pod_namespaces.insert(ns.clone());
            let namespaces = pod_ips.entry(ip).or_default();
            if !namespaces.contains(&ns) {
                namespaces.push(ns.clone());
            }
            client_ns
                .entry(ip)
                .and_modify(|have| {
                    if have.as_deref() != Some(&*ns) {
                        *have = None;
                    }
                })
                .or_insert_with(|| Some(ns.clone()));
        }
    }

    let soa_of = |apex: Name, serial: u32| -> Record {
        let mname = Name::from_labels(["ns", "dns"])
            .and_then(|n| n.append_domain(&domain))
            .unwrap_or_else(|_| domain.clone());
        let rname = Name::from_labels(["hostmaster"])
            .and_then(|n| n.append_domain(&domain))
            .unwrap_or_else(|_| domain.clone());
        let ttl = i32::try_from(cfg.ttl).unwrap_or(i32::MAX);
        Record::from_rdata(
            apex,
            cfg.ttl,
            RData::SOA(SOA::new(
                mname,
                rname,
                serial,
                7200,
                1800,
                86400,
                ttl.unsigned_abs(),
            )),
        )
    };

    // Serial: an order-independent digest of every record.
    let mut serial: u32 = 0;
    for (_, node) in b.names.values() {
        for set in &node.sets {
            for r in &set.records {
                let mut h = FnvHasher::default();
                h.write(&r.to_bytes().unwrap_or_default());
                serial = serial.wrapping_add(h.finish() as u32);
            }
        }
    }

    // The apex SOA (a name with records of its own).
    let soa = soa_of(domain.clone(), serial);
    b.add(soa.clone());
    let reverse = |labels: [&str; 2]| Name::from_labels(labels).unwrap_or_else(|_| Name::root());
    let soa_in_addr = soa_of(reverse(["in-addr", "arpa"]), serial);
    let soa_ip6 = soa_of(reverse(["ip6", "arpa"]), serial);

    let mut skipped = b.skipped;
    skipped.sort_by(|a, b| (&a.object, &a.why).cmp(&(&b.object, &b.why)));
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Zone {
        generation,
        domain,
        ttl: cfg.ttl,
        pods: cfg.pods,
        autopath: cfg.autopath,
        serial,
        soa,
        soa_in_addr,
        soa_ip6,
        names: b.names.into_iter().map(|(k, (_, n))| (k, n)).collect(),
        pod_ips,
        pod_namespaces,
        client_ns,
        skipped,
    }
}

/// A named port: `(name, number, proto)` for the SRV owner
/// `_<name>._<proto>` (RFC 2782), or `None` for unnamed or invalid ones.
fn srv_port(
    name: Option<&str>,
    port: Option<i32>,
    proto: Option<&str>,
) -> Option<(String, u16, String)> {
    let name = dns_label(name?)?;
    let port = u16::try_from(port?).ok().filter(|p| *p != 0)?;
    let proto = dns_label(proto.unwrap_or("TCP"))?;
    Some((name, port, proto))
}

fn add_service(
    b: &mut Builder,
    svc: &Service,
    slices: &HashMap<(&str, &str), Vec<&EndpointSlice>>,
) {
    let raw_ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let raw_name = svc.metadata.name.as_deref().unwrap_or_default();
    let object = format!("Service {raw_ns}/{raw_name}");
    let (Some(ns), Some(name)) = (dns_label(raw_ns), dns_label(raw_name)) else {
        b.skip(object, "namespace or name is not a DNS label");
        return;
    };
    let Some(spec) = svc.spec.as_ref() else {
        b.skip(object, "no spec");
        return;
    };
    let Some(svc_name) = b.name(&[&name, &ns, "svc"]) else {
        b.skip(object, "name too long");
        return;
    };
    let ttl = b.ttl;

    match spec.type_.as_deref() {
        Some("ExternalName") => {
            let target = spec.external_name.as_deref().unwrap_or_default().trim();
            let target = Name::from_ascii(target)
                .ok()
                .filter(|t| !t.is_root() && !target.is_empty())
                .map(|mut t| {
                    t.set_fqdn(true);
                    t.to_lowercase()
                });
            match target {
                Some(t) => b.add(Record::from_rdata(svc_name, ttl, RData::CNAME(CNAME(t)))),
                None => b.skip(object, "externalName is not a domain name"),
            }
            return;
        }
        None | Some("ClusterIP" | "NodePort" | "LoadBalancer") => {}
        Some(other) => {
            b.skip(object, format!("unknown type {other:?}"));
            return;
        }
    }

    let ips: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    if ips
        .first()
        .is_some_and(|ip| ip.eq_ignore_ascii_case("None"))
    {
        add_headless(
            b,
            spec,
            &ns,
            &name,
            &svc_name,
            &object,
            slices.get(&(raw_ns, raw_name)),
        );
        return;
    }
    let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    if ips.is_empty() {
        b.skip(object, "no valid cluster IP");
        return;
    }
    for &ip in &ips {
        b.add(address_record(svc_name.clone(), ttl, ip));
        b.add(Record::from_rdata(
            Name::from(ip),
            ttl,
            RData::PTR(PTR(svc_name.clone())),
        ));
    }
    for port in spec.ports.iter().flatten() {
        let Some((pname, number, proto)) = srv_port(
            port.name.as_deref(),
            Some(port.port),
            port.protocol.as_deref(),
        ) else {
            continue;
        };
        let owner = b.name(&[
            &format!("_{pname}"),
            &format!("_{proto}"),
            &name,
            &ns,
            "svc",
        ]);
        if let Some(owner) = owner {
            b.add(Record::from_rdata(
                owner,
                ttl,
                RData::SRV(SRV::new(0, 100, number, svc_name.clone())),
            ));
        }
    }
}

fn add_headless(
    b: &mut Builder,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    ns: &str,
    name: &str,
    svc_name: &Name,
    object: &str,
    slices: Option<&Vec<&EndpointSlice>>,
) {
    let ttl = b.ttl;
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    for slice in slices.into_iter().flatten() {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let ports: Vec<(String, u16, String)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| srv_port(p.name.as_deref(), p.port, p.protocol.as_deref()))
            .collect();
        for ep in &slice.endpoints {
            let ready =
                publish_not_ready || ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready {
                continue;
            }
            let hostname = ep.hostname.as_deref().and_then(dns_label);
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    b.skip(
                        object.to_owned(),
                        format!("endpoint address {addr:?} is not an IP"),
                    );
                    continue;
                };
                let label = hostname.clone().unwrap_or_else(|| dashed(ip));
                let Some(host_name) = b.name(&[&label, name, ns, "svc"]) else {
                    continue;
                };
                b.add(address_record(svc_name.clone(), ttl, ip));
                b.add(address_record(host_name.clone(), ttl, ip));
                if hostname.is_some() {
                    b.add(Record::from_rdata(
                        Name::from(ip),
                        ttl,
                        RData::PTR(PTR(host_name.clone())),
                    ));
                }
                for (pname, number, proto) in &ports {
                    let owner =
                        b.name(&[&format!("_{pname}"), &format!("_{proto}"), name, ns, "svc"]);
                    if let Some(owner) = owner {
                        b.add(Record::from_rdata(
                            owner,
                            ttl,
                            RData::SRV(SRV::new(0, 100, *number, host_name.clone())),
                        ));
                    }
                }
            }
        }
    }
}
