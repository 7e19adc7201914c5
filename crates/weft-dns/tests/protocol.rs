//! answer()'s DNS protocol rules: rcodes and sections (RFC 1035, 2308,
//! 8020), EDNS (RFC 6891), truncation (RFC 2181 9), case (RFC 4343),
//! classes and zone transfers, ANY (RFC 8482), forwarding and
//! Pending::finish, autopath (CoreDNS autopath plugin), record order.

mod common;

use common::*;
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use weft_dns::answer::{answer, Action, Pending, Transport, UpstreamError, UDP_PAYLOAD};
use weft_dns::zone::{PodMode, Zone};

fn pending(zone: &Zone, request: &[u8], ctx: &weft_dns::answer::Ctx) -> Pending {
    match answer(zone, request, ctx, 1) {
        Action::Forward(p) => *p,
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// An upstream reply to `q` with the given rcode and A records.
fn upstream(q: &Query, rcode: ResponseCode, ips: &[&str]) -> Message {
    let mut m = Message::new();
    m.set_id(999)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_response_code(rcode);
    m.add_query(q.clone());
    for ip in ips {
        m.add_answer(Record::from_rdata(
            q.name().clone(),
            300,
            RData::A(A(ip.parse().unwrap())),
        ));
    }
    m
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap()
}

// ---- rcodes and sections ----

#[test]
fn existing_name_without_the_type_is_nodata_with_soa() {
    let m = ask(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert!(m.answers().is_empty());
    let soa = &m.name_servers()[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name(), &name("cluster.local."));
    let RData::SOA(s) = soa.data() else { panic!() };
    assert_eq!((soa.ttl(), s.minimum()), (5, 5));
}

#[test]
fn absent_name_is_nxdomain_with_soa() {
    let m = ask(&zone(), "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(m.authoritative());
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
}

#[test]
fn empty_non_terminals_are_nodata_not_nxdomain() {
    // RFC 8020: a name with names below it exists.
    let z = zone();
    for q in [
        "cluster.local.",
        "svc.cluster.local.",
        "default.svc.cluster.local.",
        "_tcp.kubernetes.default.svc.cluster.local.",
    ] {
        let m = ask(&z, q, RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NoError, "{q}");
        assert!(m.answers().is_empty(), "{q}");
    }
}

#[test]
fn apex_soa_query_answers_the_soa() {
    let z = zone();
    let m = ask(&z, "cluster.local.", RecordType::SOA);
    let RData::SOA(s) = m.answers()[0].data() else {
        panic!()
    };
    assert_eq!(s.serial(), z.serial());
}

#[test]
fn rd_is_copied_and_ra_set() {
    let m = ask(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert!(m.recursion_desired() && m.recursion_available());
    let mut q = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    q.set_recursion_desired(false);
    let m = ask_with(&zone(), &q.to_vec().unwrap(), &udp());
    assert!(!m.recursion_desired());
    assert_eq!(m.id(), 0x4242);
}

#[test]
fn mixed_case_query_matches_and_echoes_the_spelling() {
    let m = ask(
        &zone(),
        "KuberNetes.Default.SVC.cluster.LOCAL.",
        RecordType::A,
    );
    assert_eq!(rdata_strings(m.answers()), vec!["10.96.0.1"]);
    let asked = name("KuberNetes.Default.SVC.cluster.LOCAL.");
    assert!(m.queries()[0].name().eq_case(&asked));
    assert!(m.answers()[0].name().eq_case(&asked));
}

#[test]
fn any_query_answers_every_set_of_the_name() {
    let m = ask(
        &zone(),
        "dual.kube-system.svc.cluster.local.",
        RecordType::ANY,
    );
    assert_eq!(rdata_strings(m.answers()), vec!["10.96.0.10", "fd00::10"]);
}

// ---- malformed and unsupported requests ----

#[test]
fn short_packet_is_dropped() {
    assert!(matches!(
        answer(&zone(), &[0x12, 0x34, 0x01], &udp(), 0),
        Action::Drop
    ));
}

#[test]
fn response_packet_is_dropped() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    m.set_message_type(MessageType::Response);
    assert!(matches!(
        answer(&zone(), &m.to_vec().unwrap(), &udp(), 0),
        Action::Drop
    ));
}

#[test]
fn unparsable_body_with_readable_header_is_formerr() {
    let mut bytes = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    bytes.truncate(20);
    let m = ask_with(&zone(), &bytes, &udp());
    assert_eq!(m.response_code(), ResponseCode::FormErr);
    assert_eq!(m.id(), 0x4242);
}

#[test]
fn non_query_opcode_is_notimp() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    m.set_op_code(OpCode::Notify);
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert_eq!(r.response_code(), ResponseCode::NotImp);
    assert_eq!(r.op_code(), OpCode::Notify);
}

#[test]
fn two_questions_is_formerr() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    m.add_query(Query::query(
        name("web.default.svc.cluster.local."),
        RecordType::A,
    ));
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert_eq!(r.response_code(), ResponseCode::FormErr);
}

#[test]
fn no_question_is_formerr() {
    let mut m = query_msg("x.", RecordType::A);
    m.take_queries();
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert_eq!(r.response_code(), ResponseCode::FormErr);
}

#[test]
fn chaos_class_is_refused() {
    let mut m = query_msg("version.bind.", RecordType::TXT);
    m.queries_mut()[0].set_query_class(DNSClass::CH);
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert_eq!(r.response_code(), ResponseCode::Refused);
}

#[test]
fn any_class_is_notimp() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    m.queries_mut()[0].set_query_class(DNSClass::ANY);
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert_eq!(r.response_code(), ResponseCode::NotImp);
}

#[test]
fn axfr_is_refused_over_tcp_and_notimp_over_udp() {
    let q = query("cluster.local.", RecordType::AXFR);
    let z = zone();
    assert_eq!(
        ask_with(&z, &q, &udp()).response_code(),
        ResponseCode::NotImp
    );
    let tcp = ctx(Transport::Tcp, CLIENT);
    assert_eq!(
        ask_with(&z, &q, &tcp).response_code(),
        ResponseCode::Refused
    );
    let ixfr = query("cluster.local.", RecordType::IXFR);
    assert_eq!(
        ask_with(&z, &ixfr, &tcp).response_code(),
        ResponseCode::Refused
    );
}

// ---- EDNS ----

#[test]
fn opt_is_echoed_with_our_payload_size_only_when_the_client_sent_one() {
    let z = zone();
    let with = ask_with(
        &z,
        &query_edns("kubernetes.default.svc.cluster.local.", RecordType::A, 4096),
        &udp(),
    );
    assert_eq!(
        with.extensions().as_ref().map(Edns::max_payload),
        Some(UDP_PAYLOAD)
    );
    let without = ask(&z, "kubernetes.default.svc.cluster.local.", RecordType::A);
    assert!(without.extensions().is_none());
}

#[test]
fn do_bit_is_copied_into_our_opt() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    m.set_edns(e);
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    assert!(r.extensions().as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn edns_version_above_zero_is_badvers() {
    let mut m = query_msg("kubernetes.default.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let r = ask_with(&zone(), &m.to_vec().unwrap(), &udp());
    // BADVERS is 16 (shared with BADSIG in hickory's table).
    assert_eq!(u16::from(r.response_code()), 16);
    assert_eq!(r.extensions().as_ref().map(Edns::version), Some(0));
    assert!(r.answers().is_empty());
}

// ---- truncation ----

#[test]
fn udp_answer_too_big_for_the_client_sets_tc() {
    // 120 A records: ~1.9 KB, over 512 and over our 1232.
    let z = zone();
    let r = ask(&z, "big.default.svc.cluster.local.", RecordType::A);
    assert!(r.truncated());
    assert!(r.answers().is_empty());
    assert_eq!(r.queries().len(), 1);
    let r = ask_with(
        &z,
        &query_edns("big.default.svc.cluster.local.", RecordType::A, 4096),
        &udp(),
    );
    assert!(r.truncated());
    assert!(
        r.extensions().is_some(),
        "OPT stays in a truncated reply (RFC 6891 7)"
    );
}

#[test]
fn tcp_answer_carries_what_udp_could_not() {
    let tcp = ctx(Transport::Tcp, CLIENT);
    let r = ask_with(
        &zone(),
        &query("big.default.svc.cluster.local.", RecordType::A),
        &tcp,
    );
    assert!(!r.truncated());
    assert_eq!(r.answers().len(), 120);
}

#[test]
fn client_edns_size_is_honoured() {
    // 40 records fit in 1232 but not in 512.
    let svcs = vec![service(
        "default",
        "mid",
        serde_json::json!({"clusterIP": "None"}),
    )];
    let eps: Vec<serde_json::Value> = (1..=40)
        .map(|i| serde_json::json!({"addresses": [format!("10.8.0.{i}")]}))
        .collect();
    let slices = vec![slice(
        "default",
        "mid",
        0,
        "IPv4",
        serde_json::Value::Array(eps),
        serde_json::json!([]),
    )];
    let z = weft_dns::zone::compile(&config(PodMode::Disabled, false), &svcs, &slices, &[]);
    let plain = ask(&z, "mid.default.svc.cluster.local.", RecordType::A);
    assert!(plain.truncated());
    let small = ask_with(
        &z,
        &query_edns("mid.default.svc.cluster.local.", RecordType::A, 100),
        &udp(),
    );
    assert!(small.truncated(), "a size below 512 counts as 512");
    let edns = ask_with(
        &z,
        &query_edns("mid.default.svc.cluster.local.", RecordType::A, 1232),
        &udp(),
    );
    assert!(!edns.truncated());
    assert_eq!(edns.answers().len(), 40);
}

#[test]
fn additional_section_is_dropped_without_tc_when_only_it_does_not_fit() {
    // RFC 2181 9: TC is not set for what the additional section would add.
    let svcs = vec![service(
        "default",
        "srv",
        serde_json::json!({"clusterIP": "None", "ports": [{"name": "p", "port": 1}]}),
    )];
    let eps: Vec<serde_json::Value> = (1..=4)
        .map(|i| serde_json::json!({"addresses": [format!("10.8.0.{i}")],
                                     "hostname": format!("a-very-long-host-name-to-fill-the-packet-even-more-{i}")}))
        .collect();
    let slices = vec![slice(
        "default",
        "srv",
        0,
        "IPv4",
        serde_json::Value::Array(eps),
        serde_json::json!([{"name": "p", "port": 1, "protocol": "TCP"}]),
    )];
    let z = weft_dns::zone::compile(&config(PodMode::Disabled, false), &svcs, &slices, &[]);
    let q = query("_p._tcp.srv.default.svc.cluster.local.", RecordType::SRV);
    let tcp_bytes = reply_bytes(&z, &q, &ctx(Transport::Tcp, CLIENT));
    assert!(tcp_bytes.len() > 512, "{}", tcp_bytes.len());
    assert_eq!(parse(&tcp_bytes).additionals().len(), 4);
    let udp_reply = ask_with(&z, &q, &udp());
    assert!(!udp_reply.truncated());
    assert_eq!(udp_reply.answers().len(), 4);
    assert!(udp_reply.additionals().is_empty());
}

// ---- record order ----

#[test]
fn record_order_is_shuffled_by_the_seed_and_deterministic() {
    let z = zone();
    let q = query("big.default.svc.cluster.local.", RecordType::A);
    let tcp = ctx(Transport::Tcp, CLIENT);
    let order = |seed| match answer(&z, &q, &tcp, seed) {
        Action::Reply(b) => parse(&b)
            .answers()
            .iter()
            .map(|r| r.data().to_string())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));
    let mut a = order(1);
    let mut b = order(2);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

// ---- forwarding ----

#[test]
fn name_outside_the_domain_is_forwarded_as_asked() {
    let p = pending(&zone(), &query("Example.COM.", RecordType::A), &udp());
    assert!(p.question().name().eq_case(&name("Example.COM.")));
    assert_eq!(p.question().query_type(), RecordType::A);
}

#[test]
fn reverse_name_without_record_is_forwarded() {
    let p = pending(
        &zone(),
        &query("8.8.8.8.in-addr.arpa.", RecordType::PTR),
        &udp(),
    );
    assert_eq!(p.question().name(), &name("8.8.8.8.in-addr.arpa."));
}

#[test]
fn finish_gives_the_upstream_answer_under_the_client_id_and_question() {
    let p = pending(&zone(), &query("Example.COM.", RecordType::A), &udp());
    let up = upstream(p.question(), ResponseCode::NoError, &["192.0.2.1"]);
    let r = parse(&p.finish(Ok(&up)));
    assert_eq!(r.id(), 0x4242);
    assert!(r.queries()[0].name().eq_case(&name("Example.COM.")));
    assert_eq!(rdata_strings(r.answers()), vec!["192.0.2.1"]);
    assert!(!r.authoritative());
    assert!(r.recursion_available());
}

#[test]
fn finish_passes_upstream_nxdomain() {
    let p = pending(&zone(), &query("nothing.example.", RecordType::A), &udp());
    let up = upstream(p.question(), ResponseCode::NXDomain, &[]);
    assert_eq!(
        parse(&p.finish(Ok(&up))).response_code(),
        ResponseCode::NXDomain
    );
}

#[test]
fn finish_on_upstream_error_is_servfail() {
    let p = pending(&zone(), &query("example.com.", RecordType::A), &udp());
    assert_eq!(
        parse(&p.finish(Err(UpstreamError))).response_code(),
        ResponseCode::ServFail
    );
}

#[test]
fn finish_rejects_an_answer_to_another_question() {
    let p = pending(&zone(), &query("example.com.", RecordType::A), &udp());
    let other = Query::query(name("example.org."), RecordType::A);
    let up = upstream(&other, ResponseCode::NoError, &["192.0.2.1"]);
    assert_eq!(
        parse(&p.finish(Ok(&up))).response_code(),
        ResponseCode::ServFail
    );
}

#[test]
fn finish_replaces_the_upstream_opt_with_ours() {
    let p = pending(
        &zone(),
        &query_edns("example.com.", RecordType::A, 4096),
        &udp(),
    );
    let mut up = upstream(p.question(), ResponseCode::NoError, &["192.0.2.1"]);
    let mut e = Edns::new();
    e.set_max_payload(4000);
    up.set_edns(e);
    let r = parse(&p.finish(Ok(&up)));
    assert_eq!(
        r.extensions().as_ref().map(Edns::max_payload),
        Some(UDP_PAYLOAD)
    );
    let plain = pending(&zone(), &query("example.com.", RecordType::A), &udp());
    assert!(parse(&plain.finish(Ok(&up))).extensions().is_none());
}

#[test]
fn finish_truncates_to_the_client_size_over_udp() {
    let p = pending(&zone(), &query("many.example.", RecordType::A), &udp());
    let ips: Vec<String> = (1..=60).map(|i| format!("192.0.2.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let up = upstream(p.question(), ResponseCode::NoError, &refs);
    let r = parse(&p.finish(Ok(&up)));
    assert!(r.truncated());
    assert!(r.answers().is_empty());
}

#[test]
fn external_name_finish_prepends_the_cname() {
    let p = pending(
        &zone(),
        &query("ext.default.svc.cluster.local.", RecordType::A),
        &udp(),
    );
    let up = upstream(p.question(), ResponseCode::NoError, &["192.0.2.53"]);
    let r = parse(&p.finish(Ok(&up)));
    assert!(r.queries()[0]
        .name()
        .eq_case(&name("ext.default.svc.cluster.local.")));
    assert_eq!(r.answers().len(), 2);
    assert_eq!(
        r.answers()[0].data(),
        &RData::CNAME(CNAME(name("www.example.com.")))
    );
    assert_eq!(of_type(r.answers(), RecordType::A), vec!["192.0.2.53"]);
}

// ---- autopath ----

fn autopath_zone() -> Zone {
    zone_with(PodMode::Disabled, true)
}

#[test]
fn autopath_answers_the_first_search_name_that_exists_behind_a_cname() {
    // The pod in "default" asks kubernetes.default + its first search
    // domain: kubernetes.default.default.svc.cluster.local.
    let m = ask(
        &autopath_zone(),
        "kubernetes.default.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(
        m.answers()[0].data(),
        &RData::CNAME(CNAME(name("kubernetes.default.svc.cluster.local.")))
    );
    assert_eq!(
        m.answers()[0].name(),
        &name("kubernetes.default.default.svc.cluster.local.")
    );
    assert_eq!(of_type(m.answers(), RecordType::A), vec!["10.96.0.1"]);
}

#[test]
fn autopath_forwards_the_bare_name_and_prepends_the_cname() {
    let q = query("example.com.default.svc.cluster.local.", RecordType::A);
    let p = pending(&autopath_zone(), &q, &udp());
    assert_eq!(p.question().name(), &name("example.com."));
    let up = upstream(p.question(), ResponseCode::NoError, &["192.0.2.7"]);
    let r = parse(&p.finish(Ok(&up)));
    assert!(r.queries()[0]
        .name()
        .eq_case(&name("example.com.default.svc.cluster.local.")));
    assert_eq!(
        r.answers()[0].data(),
        &RData::CNAME(CNAME(name("example.com.")))
    );
    assert_eq!(of_type(r.answers(), RecordType::A), vec!["192.0.2.7"]);
}

#[test]
fn autopath_upstream_nxdomain_answers_nxdomain_for_the_original() {
    let q = query("nothing.example.default.svc.cluster.local.", RecordType::A);
    let p = pending(&autopath_zone(), &q, &udp());
    let up = upstream(p.question(), ResponseCode::NXDomain, &[]);
    let r = parse(&p.finish(Ok(&up)));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert!(r.answers().is_empty());
    assert!(r.queries()[0]
        .name()
        .eq_case(&name("nothing.example.default.svc.cluster.local.")));
    assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
    // An upstream failure too leaves the pod's search list to go on.
    let r = parse(&p.finish(Err(UpstreamError)));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
}

#[test]
fn autopath_ignores_clients_of_another_namespace() {
    let z = autopath_zone();
    let other = ctx(Transport::Udp, "10.2.0.6");
    let m = ask_with(
        &z,
        &query(
            "kubernetes.default.default.svc.cluster.local.",
            RecordType::A,
        ),
        &other,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn autopath_ignores_an_ip_claimed_by_two_namespaces() {
    let z = autopath_zone();
    assert_eq!(z.namespace_of("10.2.0.7".parse().unwrap()), None);
    let twin = ctx(Transport::Udp, "10.2.0.7");
    let m = ask_with(
        &z,
        &query("kubernetes.default.a.svc.cluster.local.", RecordType::A),
        &twin,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn autopath_ignores_host_network_pods() {
    let z = autopath_zone();
    assert_eq!(z.namespace_of("192.0.2.10".parse().unwrap()), None);
}

#[test]
fn without_autopath_the_first_search_name_is_nxdomain() {
    let m = ask(
        &zone(),
        "kubernetes.default.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn autopath_leaves_the_other_search_names_alone() {
    let z = autopath_zone();
    let m = ask(&z, "example.com.svc.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let m = ask(&z, "example.com.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn autopath_does_not_touch_an_existing_name() {
    let m = ask(
        &autopath_zone(),
        "web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(
        of_type(m.answers(), RecordType::CNAME),
        Vec::<String>::new()
    );
}

// ---- robustness ----

#[test]
fn every_reply_header_is_a_response_with_the_request_id() {
    let bytes = reply_bytes(
        &zone(),
        &query("web.default.svc.cluster.local.", RecordType::A),
        &udp(),
    );
    let h = Header::from_bytes(&bytes[..12]).unwrap();
    assert_eq!((h.id(), h.message_type()), (0x4242, MessageType::Response));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn small_zone() -> &'static Zone {
        use std::sync::OnceLock;
        static Z: OnceLock<Zone> = OnceLock::new();
        Z.get_or_init(|| zone_with(PodMode::Insecure, true))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_never_panic_and_replies_parse_with_the_same_id(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            tcp in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let t = if tcp { Transport::Tcp } else { Transport::Udp };
            if let Action::Reply(r) = answer(small_zone(), &bytes, &ctx(t, CLIENT), seed) {
                let m = Message::from_vec(&r).unwrap();
                prop_assert_eq!(m.message_type(), MessageType::Response);
                prop_assert_eq!(m.id(), u16::from_be_bytes([bytes[0], bytes[1]]));
                if !tcp {
                    prop_assert!(r.len() <= usize::from(UDP_PAYLOAD));
                }
            }
        }

        #[test]
        fn any_query_name_gets_a_parsable_reply_or_a_forward(
            labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 0..6),
            suffix in prop_oneof![
                Just("default.svc.cluster.local."), Just("svc.cluster.local."),
                Just("pod.cluster.local."), Just("in-addr.arpa."), Just("example.")],
            rtype in prop_oneof![
                Just(RecordType::A), Just(RecordType::AAAA), Just(RecordType::SRV),
                Just(RecordType::PTR), Just(RecordType::ANY), Just(RecordType::TXT)],
        ) {
            let q = format!("{}{}{suffix}", labels.join("."), if labels.is_empty() { "" } else { "." });
            let Ok(n) = Name::from_ascii(&q) else { return Ok(()) };
            let mut m = query_msg("x.", rtype);
            m.queries_mut()[0].set_name(n);
            let Ok(bytes) = m.to_vec() else { return Ok(()) };
            match answer(small_zone(), &bytes, &udp(), 3) {
                Action::Reply(r) => {
                    let m = Message::from_vec(&r).unwrap();
                    prop_assert_eq!(m.id(), 0x4242);
                }
                Action::Forward(p) => {
                    let up = upstream(p.question(), ResponseCode::NoError, &["192.0.2.1"]);
                    let r = Message::from_vec(&p.finish(Ok(&up))).unwrap();
                    prop_assert_eq!(r.id(), 0x4242);
                }
                Action::Drop => prop_assert!(false, "a well-formed query was dropped"),
            }
        }
    }
}

#[test]
fn only_answers_that_cannot_differ_are_marked_reusable() {
    use weft_dns::answer::answer_reusable;
    let z = zone();
    let reusable = |name: &str, t: RecordType| {
        let (action, reusable) = answer_reusable(&z, &query(name, t), &udp(), 7);
        assert!(matches!(action, Action::Reply(_)), "{name}");
        reusable
    };
    // One record, a negative answer, the version TXT: the same bytes every time.
    assert!(reusable(
        "kubernetes.default.svc.cluster.local.",
        RecordType::A
    ));
    assert!(reusable(
        "missing.default.svc.cluster.local.",
        RecordType::A
    ));
    assert!(reusable("dns-version.cluster.local.", RecordType::TXT));
    // A headless Service's several addresses come in a drawn order.
    assert!(!reusable("web.default.svc.cluster.local.", RecordType::A));
    // Forwards are not replies at all.
    let (action, reusable) = answer_reusable(&z, &query("example.com.", RecordType::A), &udp(), 7);
    assert!(matches!(action, Action::Forward(_)) && !reusable);
    // With autopath the answer depends on who asks.
    let z = zone_with(PodMode::Disabled, true);
    let (_, reusable) = answer_reusable(
        &z,
        &query("kubernetes.default.svc.cluster.local.", RecordType::A),
        &udp(),
        7,
    );
    assert!(!reusable);
}

#[test]
fn every_compiled_zone_has_its_own_generation() {
    let a = zone();
    let b = zone();
    assert_ne!(a.generation(), b.generation());
    assert_eq!(a.clone().generation(), a.generation());
}
