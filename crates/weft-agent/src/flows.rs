//! The flow log of one node (`weft flows`, issue 16): a passive record of
//! the connections pods make and the packets NetworkPolicy denies, from the
//! kernel's own reports — allowed flows from conntrack's new-connection
//! events (the allowing policies read from the connection mark the policy
//! table writes, [`weft_policy::marks`]), denied packets from NFLOG group
//! 100, where every deny chain logs (at most 100 packets/s each) with the
//! policy in its prefix. Only flows with a pod at one end are kept: the
//! node's own traffic (API watches, probes between agents) is not pod
//! traffic.
//!
//! The log is a ring of [`CAPACITY`] records: when it is full the oldest
//! record goes and is counted in `lost.bound`; events the kernel could not
//! hand over (a full socket buffer, a gap in NFLOG's sequence numbers) are
//! counted in `lost.kernel`. Nothing is dropped silently. The agent serves
//! it at `/flows` and `/flows/after/<seq>` (JSON, [`FlowPage`]) on its
//! metrics port, and counts flows per policy and verdict
//! (`weft_agent_flows_total`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, Service};
use serde::{Deserialize, Serialize};
use weft_kube::{Selector, Watches};
use weft_linux::flowlog::{FlowEvent, FlowSocket, LoggedPacket, NewConnection};
use weft_policy::Marks;

use crate::metrics::Metrics;

/// Records kept per node.
pub const CAPACITY: usize = 20_000;

/// One flow as `weft flows` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Position in this node's log (increasing, never reused).
    pub seq: u64,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub node: String,
    /// `allowed` or `denied`.
    pub verdict: String,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`… or the protocol number.
    pub proto: String,
    /// As the client sent it.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Where it went after Service DNAT, when that differs from `dst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_pod: Option<String>,
    /// The Service whose ClusterIP or address `dst` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Allowed: the policies whose rules accepted it (egress on the
    /// client's node, ingress on the server's); denied: the policy whose
    /// deny chain dropped it, with the direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_policy: Option<String>,
    /// The client is a pod of this node (this node saw the connection
    /// leave; the server's node sees it arrive).
    #[serde(default)]
    pub client_here: bool,
}

/// What was lost, never silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Records pushed out of the full ring before anybody could read them
    /// (counted whether or not they were read).
    pub bound: u64,
    /// Events the kernel could not deliver (socket overruns, NFLOG
    /// sequence gaps).
    pub kernel: u64,
}

/// `/flows` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPage {
    pub node: String,
    pub capacity: usize,
    /// The `seq` to ask after next time.
    pub next: u64,
    /// The oldest `seq` still held (records before it were lost to the bound).
    pub oldest: u64,
    pub lost: Lost,
    pub records: Vec<FlowRecord>,
}

/// The ring and its counts.
#[derive(Debug)]
pub struct FlowLog {
    node: String,
    capacity: usize,
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    records: VecDeque<FlowRecord>,
    next: u64,
    lost: Lost,
}

impl FlowLog {
    pub fn new(node: impl Into<String>, capacity: usize) -> FlowLog {
        FlowLog {
            node: node.into(),
            capacity: capacity.max(1),
            inner: Mutex::new(Ring::default()),
        }
    }

    /// Adds `r` (its `seq` and `node` are set here); the oldest record goes
    /// when the ring is full, counted (true then).
    pub fn push(&self, mut r: FlowRecord) -> bool {
        let Ok(mut ring) = self.inner.lock() else {
            return false;
        };
        r.seq = ring.next;
        r.node = self.node.clone();
        ring.next += 1;
        let full = ring.records.len() == self.capacity;
        if full {
            ring.records.pop_front();
            ring.lost.bound += 1;
        }
        ring.records.push_back(r);
        full
    }

    pub fn lost_in_kernel(&self, n: u64) {
        if let Ok(mut ring) = self.inner.lock() {
            ring.lost.kernel += n;
        }
    }

    /// The records with `seq >= after` (all with 0).
    pub fn page(&self, after: u64) -> FlowPage {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = ring.records.front().map_or(ring.next, |r| r.seq);
        FlowPage {
            node: self.node.clone(),
            capacity: self.capacity,
            next: ring.next,
            oldest,
            lost: ring.lost,
            records: ring
                .records
                .iter()
                .filter(|r| r.seq >= after)
                .cloned()
                .collect(),
        }
    }
}

/// `namespace/name` of pods and Services by address, refreshed from the
/// stores as they change.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pods: HashMap<IpAddr, String>,
    /// Addresses of this node's pods.
    local: std::collections::HashSet<IpAddr>,
    services: HashMap<IpAddr, String>,
}

impl Names {
    pub fn from_objects<'a>(
        node: &str,
        pods: impl IntoIterator<Item = &'a Pod>,
        services: impl IntoIterator<Item = &'a Service>,
    ) -> Names {
        let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("default"),
                m.name.as_deref().unwrap_or_default()
            )
        };
        let mut n = Names::default();
        for p in pods {
            let Some(status) = &p.status else { continue };
            // A hostNetwork pod has the node's address: not a pod flow.
            if p.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                continue;
            }
            let ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|i| i.ip.as_str())
                .chain(status.pod_ip.as_deref());
            let here = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
            for ip in ips.filter_map(|i| i.parse().ok()) {
                n.pods.insert(ip, key(&p.metadata));
                if here {
                    n.local.insert(ip);
                }
            }
        }
        for s in services {
            let Some(spec) = &s.spec else { continue };
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .chain(spec.external_ips.iter().flatten())
                .map(String::as_str)
                .chain(
                    s.status
                        .iter()
                        .filter_map(|st| st.load_balancer.as_ref())
                        .flat_map(|lb| lb.ingress.iter().flatten())
                        .filter_map(|i| i.ip.as_deref()),
                );
            for ip in ips.filter_map(|i| i.parse().ok()) {
                n.services.insert(ip, key(&s.metadata));
            }
        }
        n
    }

    fn pod(&self, ip: IpAddr) -> Option<String> {
        self.pods.get(&ip).cloned()
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The record of a new connection, or None when no pod is at either end.
pub fn allowed_record(c: &NewConnection, names: &Names, marks: &Marks) -> Option<FlowRecord> {
    let (src, dst, endpoint) = (c.original.src, c.original.dst, c.reply.src);
    let src_pod = names.pod(src.ip());
    let dst_pod = names.pod(endpoint.ip()).or_else(|| names.pod(dst.ip()));
    if src_pod.is_none() && dst_pod.is_none() {
        return None;
    }
    let (egress, ingress) = marks.decode(c.mark);
    Some(FlowRecord {
        seq: 0,
        time_ms: now_ms(),
        node: String::new(),
        verdict: "allowed".into(),
        proto: proto_name(c.proto),
        src,
        dst,
        endpoint: (endpoint != dst).then_some(endpoint),
        src_pod,
        dst_pod,
        service: names.services.get(&dst.ip()).cloned(),
        egress_policy: egress.map(str::to_string),
        ingress_policy: ingress.map(str::to_string),
        client_here: names.local.contains(&src.ip()),
    })
}

/// The record of a packet a deny chain logged: the prefix is
/// `weft-policy:deny-<direction>:<namespace>/<name>:` (weft-policy's
/// compile); a packet another rule logged to the group is not a policy
/// verdict and is left out.
pub fn denied_record(p: &LoggedPacket, names: &Names) -> Option<FlowRecord> {
    let rest = p.prefix.strip_prefix("weft-policy:deny-")?;
    let (direction, policy) = rest.split_once(':')?;
    let policy = policy.strip_suffix(':').unwrap_or(policy).to_string();
    let h = p.packet;
    let (src, dst) = (
        SocketAddr::new(h.src, h.sport),
        SocketAddr::new(h.dst, h.dport),
    );
    let (egress_policy, ingress_policy) = match direction {
        "egress" => (Some(policy), None),
        "ingress" => (None, Some(policy)),
        _ => return None,
    };
    Some(FlowRecord {
        seq: 0,
        time_ms: now_ms(),
        node: String::new(),
        verdict: "denied".into(),
        proto: proto_name(h.proto),
        src,
        dst,
        endpoint: None,
        src_pod: names.pod(h.src),
        dst_pod: names.pod(h.dst),
        service: None,
        egress_policy,
        ingress_policy,
        client_here: names.local.contains(&h.src),
    })
}

/// Runs the flow log: two reader threads (conntrack, NFLOG) in this
/// process's network namespace, and the name table kept from the stores.
/// An NFLOG group another process holds, or a kernel without ctnetlink
/// events, is said once and that source stays off; the other keeps going.
pub async fn run(
    watches: &Watches,
    log: Arc<FlowLog>,
    marks: Arc<Mutex<Marks>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let pods = watches.store::<Pod>(Selector::all());
    let services = watches.store::<Service>(Selector::all());
    let names: Arc<Mutex<Names>> = Arc::default();
    {
        let (log, names, marks, metrics) =
            (log.clone(), names.clone(), marks.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("flows-conntrack".into())
            .spawn(move || {
                reader(
                    "conntrack",
                    FlowSocket::conntrack,
                    &log,
                    &names,
                    &marks,
                    &metrics,
                )
            })?;
    }
    {
        let (log, names, marks, metrics) =
            (log.clone(), names.clone(), marks.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("flows-nflog".into())
            .spawn(move || {
                reader(
                    "NFLOG",
                    || FlowSocket::nflog(weft_policy::compile::NFLOG_GROUP),
                    &log,
                    &names,
                    &marks,
                    &metrics,
                )
            })?;
    }
    let mut changes = (pods.changes(), services.changes());
    loop {
        let p = pods.state();
        let s = services.state();
        let fresh = Names::from_objects(
            &log.node,
            p.iter().map(|x| x.as_ref()),
            s.iter().map(|x| x.as_ref()),
        );
        if let Ok(mut n) = names.lock() {
            *n = fresh;
        }
        tokio::select! {
            r = changes.0.changed() => r?,
            r = changes.1.changed() => r?,
        }
    }
}

fn reader(
    what: &str,
    open: impl FnOnce() -> weft_linux::Result<FlowSocket>,
    log: &FlowLog,
    names: &Mutex<Names>,
    marks: &Mutex<Marks>,
    metrics: &Metrics,
) {
    let mut socket = match open() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "flow log: {what} source unavailable; its flows are not recorded");
            return;
        }
    };
    let mut last_seq: Option<u32> = None;
    loop {
        let batch = match socket.recv() {
            Ok(b) => b,
            // ENOBUFS (105): the kernel dropped events.
            Err(e) if e.raw_os_error() == Some(105) => {
                // The kernel dropped events: at least one.
                log.lost_in_kernel(1);
                metrics.record_flows_lost("kernel", 1);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "flow log: {what} socket failed; its flows are no longer recorded");
                return;
            }
        };
        for ev in batch {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(error = %e, "flow log: {what} message skipped");
                    continue;
                }
            };
            let names = names.lock().unwrap_or_else(|e| e.into_inner());
            let record = match &ev {
                FlowEvent::New(c) => {
                    let marks = marks.lock().unwrap_or_else(|e| e.into_inner());
                    allowed_record(c, &names, &marks)
                }
                FlowEvent::Logged(p) => {
                    if let (Some(prev), Some(seq)) = (last_seq, p.seq) {
                        let gap = u64::from(seq.wrapping_sub(prev).saturating_sub(1));
                        if gap > 0 && gap < 1 << 31 {
                            log.lost_in_kernel(gap);
                            metrics.record_flows_lost("kernel", gap);
                        }
                    }
                    last_seq = p.seq.or(last_seq);
                    denied_record(p, &names)
                }
            };
            drop(names);
            if let Some(r) = record {
                let policy = r
                    .ingress_policy
                    .as_deref()
                    .or(r.egress_policy.as_deref())
                    .unwrap_or("");
                metrics.record_flow(&r.verdict, policy);
                if log.push(r) {
                    metrics.record_flows_lost("bound", 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_linux::flowlog::{PacketHeaders, Tuple};

    fn names() -> Names {
        let pod = |ns: &str, name: &str, ip: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"containers": []},
                "status": {"podIP": ip, "podIPs": [{"ip": ip}]}
            }))
            .unwrap()
        };
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"]}
        }))
        .unwrap();
        let pods = [
            pod("shop", "client", "10.244.0.5"),
            pod("shop", "web-0", "10.244.1.3"),
        ];
        Names::from_objects("node-1", pods.iter(), [&svc])
    }

    fn record(verdict: &str) -> FlowRecord {
        FlowRecord {
            seq: 0,
            time_ms: 0,
            node: String::new(),
            verdict: verdict.into(),
            proto: "TCP".into(),
            src: "10.244.0.5:4000".parse().unwrap(),
            dst: "10.244.1.3:80".parse().unwrap(),
            endpoint: None,
            src_pod: None,
            dst_pod: None,
            service: None,
            egress_policy: None,
            ingress_policy: None,
            client_here: false,
        }
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_counts_it() {
        let log = FlowLog::new("node-1", 3);
        for _ in 0..3 {
            assert!(!log.push(record("allowed")));
        }
        assert!(log.push(record("denied")));
        assert!(log.push(record("denied")));
        let page = log.page(0);
        assert_eq!(page.lost.bound, 2);
        assert_eq!(page.oldest, 2);
        assert_eq!(page.next, 5);
        assert_eq!(
            page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert!(page.records.iter().all(|r| r.node == "node-1"));
        // Asking after what was read gives only what came since.
        assert_eq!(log.page(4).records.len(), 1);
        assert!(log.page(5).records.is_empty());
    }

    #[test]
    fn a_service_connection_names_pods_service_endpoint_and_policies() {
        let mut marks = Marks::default();
        marks.update(["shop/allow-web", "shop/client-egress"]);
        let c = NewConnection {
            proto: 6,
            original: Tuple {
                src: "10.244.0.5:4000".parse().unwrap(),
                dst: "10.96.0.20:80".parse().unwrap(),
            },
            reply: Tuple {
                src: "10.244.1.3:8080".parse().unwrap(),
                dst: "10.244.0.5:4000".parse().unwrap(),
            },
            mark: (1 << 16) | 2,
            zone: 0,
        };
        let r = allowed_record(&c, &names(), &marks).unwrap();
        assert_eq!(r.src_pod.as_deref(), Some("shop/client"));
        assert_eq!(r.dst_pod.as_deref(), Some("shop/web-0"));
        assert_eq!(r.service.as_deref(), Some("shop/web"));
        assert_eq!(r.endpoint, Some("10.244.1.3:8080".parse().unwrap()));
        assert_eq!(r.ingress_policy.as_deref(), Some("shop/allow-web"));
        assert_eq!(r.egress_policy.as_deref(), Some("shop/client-egress"));
    }

    #[test]
    fn node_traffic_is_not_recorded() {
        let c = NewConnection {
            proto: 6,
            original: Tuple {
                src: "192.168.1.11:4000".parse().unwrap(),
                dst: "192.168.1.2:6443".parse().unwrap(),
            },
            reply: Tuple {
                src: "192.168.1.2:6443".parse().unwrap(),
                dst: "192.168.1.11:4000".parse().unwrap(),
            },
            mark: 0,
            zone: 0,
        };
        assert_eq!(allowed_record(&c, &names(), &Marks::default()), None);
    }

    #[test]
    fn a_denied_packet_names_the_policy_and_direction() {
        let p = LoggedPacket {
            prefix: "weft-policy:deny-ingress:shop/default-deny:".into(),
            hook: 2,
            indev: None,
            outdev: None,
            mark: 0,
            seq: Some(1),
            packet: PacketHeaders {
                proto: 6,
                src: "10.244.0.5".parse().unwrap(),
                dst: "10.244.1.3".parse().unwrap(),
                sport: 4001,
                dport: 5432,
            },
        };
        let r = denied_record(&p, &names()).unwrap();
        assert_eq!(r.verdict, "denied");
        assert_eq!(r.ingress_policy.as_deref(), Some("shop/default-deny"));
        assert_eq!(r.egress_policy, None);
        assert_eq!(r.dst_pod.as_deref(), Some("shop/web-0"));
        let other = LoggedPacket {
            prefix: "somebody else:".into(),
            ..p
        };
        assert_eq!(denied_record(&other, &names()), None);
    }
}
