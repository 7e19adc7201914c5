//! Fixtures shared by the zone/answer tests: Kubernetes objects built from
//! JSON, queries built with hickory-proto, replies parsed back.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use weft_dns::answer::{answer, Action, Ctx, Transport};
use weft_dns::zone::{compile, Config, PodMode, Zone};

pub const CLIENT: &str = "10.2.0.5";

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

pub fn service(ns: &str, name: &str, spec: Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": spec,
        }))
        .unwrap(),
    )
}

pub fn slice(
    ns: &str,
    svc: &str,
    n: usize,
    family: &str,
    endpoints: Value,
    ports: Value,
) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": format!("{svc}-{n}"),
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family,
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap(),
    )
}

pub fn pod(ns: &str, name: &str, ips: &[&str], host_network: bool) -> Arc<Pod> {
    let ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"containers": [], "hostNetwork": host_network},
            "status": {"phase": "Running", "podIPs": ips},
        }))
        .unwrap(),
    )
}

pub fn services() -> Vec<Arc<Service>> {
    vec![
        service(
            "default",
            "kubernetes",
            json!({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                   "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}),
        ),
        service(
            "kube-system",
            "dual",
            json!({"clusterIPs": ["10.96.0.10", "fd00::10"], "ipFamilies": ["IPv4", "IPv6"],
                   "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 9153}]}),
        ),
        service(
            "default",
            "web",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
        ),
        service("default", "empty", json!({"clusterIP": "None"})),
        service(
            "default",
            "unready",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ),
        service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "www.example.com"}),
        ),
        service(
            "default",
            "alias",
            json!({"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local"}),
        ),
        service("default", "pending", json!({"type": "ClusterIP"})),
        service("default", "broken", json!({"clusterIP": "not-an-ip"})),
        service(
            "default",
            "weird",
            json!({"type": "Teleport", "clusterIP": "10.96.0.9"}),
        ),
        service("other", "db", json!({"clusterIP": "10.96.1.1"})),
        service("default", "big", json!({"clusterIP": "None"})),
    ]
}

pub fn slices() -> Vec<Arc<EndpointSlice>> {
    let big: Vec<Value> = (1..=120)
        .map(|i| json!({"addresses": [format!("10.9.{}.{}", i / 200, i % 200 + 1)]}))
        .collect();
    vec![
        slice(
            "default",
            "web",
            0,
            "IPv4",
            json!([
                {"addresses": ["10.1.0.1"], "hostname": "web-0", "conditions": {"ready": true}},
                {"addresses": ["10.1.0.2"], "conditions": {}},
                {"addresses": ["10.1.0.3"], "hostname": "web-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ),
        slice(
            "default",
            "web",
            1,
            "IPv6",
            json!([{"addresses": ["fd00::1:1"], "hostname": "web-0"}]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ),
        slice(
            "default",
            "empty",
            0,
            "IPv4",
            json!([{"addresses": ["10.1.1.1"], "conditions": {"ready": false}}]),
            json!([]),
        ),
        slice(
            "default",
            "unready",
            0,
            "IPv4",
            json!([{"addresses": ["10.1.2.1"], "conditions": {"ready": false}}]),
            json!([]),
        ),
        slice("default", "big", 0, "IPv4", Value::Array(big), json!([])),
    ]
}

pub fn pods() -> Vec<Arc<Pod>> {
    vec![
        pod("default", "client", &[CLIENT, "fd00::2:5"], false),
        pod("other", "worker", &["10.2.0.6"], false),
        pod("a", "twin-a", &["10.2.0.7"], false),
        pod("b", "twin-b", &["10.2.0.7"], false),
        pod("default", "hostnet", &["192.0.2.10"], true),
    ]
}

pub fn config(pods: PodMode, autopath: bool) -> Config {
    let mut cfg = Config::new(name("cluster.local."));
    cfg.pods = pods;
    cfg.autopath = autopath;
    cfg
}

pub fn zone_with(pod_mode: PodMode, autopath: bool) -> Zone {
    compile(&config(pod_mode, autopath), &services(), &slices(), &pods())
}

pub fn zone() -> Zone {
    zone_with(PodMode::Disabled, false)
}

pub fn query_msg(qname: &str, rtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let mut q = Query::query(name(qname), rtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m
}

pub fn query(qname: &str, rtype: RecordType) -> Vec<u8> {
    query_msg(qname, rtype).to_vec().unwrap()
}

pub fn query_edns(qname: &str, rtype: RecordType, payload: u16) -> Vec<u8> {
    let mut m = query_msg(qname, rtype);
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m.to_vec().unwrap()
}

pub fn ctx(transport: Transport, client: &str) -> Ctx {
    Ctx {
        transport,
        client: client.parse::<IpAddr>().unwrap(),
    }
}

pub fn udp() -> Ctx {
    ctx(Transport::Udp, CLIENT)
}

/// The reply bytes; panics on Forward/Drop.
pub fn reply_bytes(zone: &Zone, request: &[u8], ctx: &Ctx) -> Vec<u8> {
    match answer(zone, request, ctx, 7) {
        Action::Reply(bytes) => bytes,
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub fn ask_with(zone: &Zone, request: &[u8], ctx: &Ctx) -> Message {
    let bytes = reply_bytes(zone, request, ctx);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.message_type(), MessageType::Response);
    m
}

pub fn ask(zone: &Zone, qname: &str, rtype: RecordType) -> Message {
    ask_with(zone, &query(qname, rtype), &udp())
}

pub fn rdata_strings(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.data().to_string()).collect();
    v.sort();
    v
}

pub fn of_type(records: &[hickory_proto::rr::Record], t: RecordType) -> Vec<String> {
    let only: Vec<_> = records
        .iter()
        .filter(|r| r.record_type() == t)
        .cloned()
        .collect();
    rdata_strings(&only)
}
