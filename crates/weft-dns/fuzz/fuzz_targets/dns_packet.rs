//! Fuzzes weft's cluster DNS answer step (`weft_dns::answer::answer`): any
//! bytes a client can send over UDP or TCP against a small compiled zone
//! (ClusterIP, dual-stack, headless, ExternalName Services, insecure pod
//! names, autopath). Never a panic; every reply parses back as a response
//! carrying the request's id and, over UDP, fits the 1232-octet limit; a
//! forwarded question finishes into such a reply whether the upstream
//! answered or failed.
//!
//! Input: the first byte chooses the transport (bit 0: TCP) and the client
//! (bit 1: a Pod of namespace `default`, so autopath applies); the rest is
//! the DNS message.

#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use weft_dns::answer::{answer, Action, Ctx, Transport, UpstreamError, UDP_PAYLOAD};
use weft_dns::zone::{compile, Config, PodMode, Zone};

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let svc = |ns: &str, name: &str, spec: serde_json::Value| {
            Arc::new(serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap())
        };
        let services = vec![
            svc("default", "kubernetes", json!({"clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443}]})),
            svc("default", "dual", json!({"clusterIPs": ["10.96.0.10", "fd00::10"], "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]})),
            svc("default", "web", json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})),
            svc("default", "ext", json!({"type": "ExternalName", "externalName": "www.example.com"})),
            svc("default", "alias", json!({"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local"})),
            svc("default", "loop", json!({"type": "ExternalName", "externalName": "loop.default.svc.cluster.local"})),
        ];
        let endpoints: Vec<serde_json::Value> = (1..=40)
            .map(|i| json!({"addresses": [format!("10.1.0.{i}")], "hostname": format!("web-{i}")}))
            .collect();
        let slices = vec![Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "web-0", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }))
            .unwrap(),
        )];
        let pods = vec![Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "client"},
                "status": {"phase": "Running", "podIPs": [{"ip": "10.2.0.5"}]},
            }))
            .unwrap(),
        )];
        let mut cfg = Config::new(Name::from_ascii("cluster.local.").unwrap());
        cfg.pods = PodMode::Insecure;
        cfg.autopath = true;
        compile(&cfg, &services, &slices, &pods)
    })
}

fn check_reply(bytes: &[u8], id: u16, udp: bool) {
    let m = Message::from_vec(bytes).expect("a reply parses");
    assert_eq!(m.message_type(), MessageType::Response);
    assert_eq!(m.id(), id);
    if udp {
        assert!(bytes.len() <= usize::from(UDP_PAYLOAD), "UDP reply of {} octets", bytes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else {
        return;
    };
    let transport = if flags & 1 == 1 { Transport::Tcp } else { Transport::Udp };
    let client: IpAddr = if flags & 2 == 2 { [10, 2, 0, 5].into() } else { [10, 3, 0, 1].into() };
    let ctx = Ctx { transport, client };
    let udp = transport == Transport::Udp;
    let seed = u64::from(flags);
    match answer(zone(), packet, &ctx, seed) {
        Action::Drop => {}
        Action::Reply(bytes) => check_reply(&bytes, u16::from_be_bytes([packet[0], packet[1]]), udp),
        Action::Forward(pending) => {
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            check_reply(&pending.finish(Err(UpstreamError)), id, udp);
            let mut up = Message::new();
            up.set_id(1).set_message_type(MessageType::Response).set_response_code(ResponseCode::NoError);
            up.add_query(pending.question().clone());
            up.add_answer(Record::from_rdata(pending.question().name().clone(), 30, RData::A(A::new(192, 0, 2, 1))));
            check_reply(&pending.finish(Ok(&up)), id, udp);
        }
    }
});
