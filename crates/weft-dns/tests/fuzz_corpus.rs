//! Writes the seed corpus of the `dns_packet` fuzz target
//! (`crates/weft-dns/fuzz/corpus/dns_packet/`): a few well-formed queries,
//! each prefixed with the target's flag byte (bit 0 TCP, bit 1 a Pod
//! client). Run on purpose: `cargo test -p weft-dns --test fuzz_corpus --
//! --ignored`.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0x1234)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        m.set_edns(Edns::new());
    }
    m.to_vec().unwrap()
}

#[test]
#[ignore = "writes the fuzz seed corpus into the source tree"]
fn write_dns_packet_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dns_packet");
    std::fs::create_dir_all(&dir).unwrap();
    let seeds: [(&str, u8, &str, RecordType, bool); 8] = [
        (
            "a-service",
            0,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            false,
        ),
        (
            "srv-headless",
            1,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            true,
        ),
        (
            "aaaa-dual",
            0,
            "dual.default.svc.cluster.local.",
            RecordType::AAAA,
            true,
        ),
        ("ptr", 0, "1.0.96.10.in-addr.arpa.", RecordType::PTR, false),
        (
            "externalname",
            0,
            "ext.default.svc.cluster.local.",
            RecordType::A,
            false,
        ),
        (
            "autopath",
            2,
            "kubernetes.default.default.svc.cluster.local.",
            RecordType::A,
            true,
        ),
        (
            "pod",
            0,
            "10-2-0-5.default.pod.cluster.local.",
            RecordType::A,
            false,
        ),
        ("outside", 0, "example.com.", RecordType::ANY, true),
    ];
    for (file, flags, name, rtype, edns) in seeds {
        let mut bytes = vec![flags];
        bytes.extend(query(name, rtype, edns));
        std::fs::write(dir.join(format!("seed-{file}")), bytes).unwrap();
    }
}
