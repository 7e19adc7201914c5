use std::net::IpAddr;

use crate::model::*;
use crate::testdata::{self, EP1, EP2, WEB};
use crate::trace::{trace, Packet, Proto, TraceError, Verdict};
use crate::Family;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const POD: &str = "10.244.0.3";
const NODE: &str = "192.168.1.10";

#[test]
fn pod_to_cluster_ip_is_dnatted_to_either_endpoint_without_masquerade() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip(POD), ip("10.96.0.10"), Proto::Tcp, 80),
    )
    .unwrap();
    assert_eq!(
        t.dnat_targets().into_iter().collect::<Vec<_>>(),
        ["10.244.1.5:8080", "10.244.2.7:8080"]
    );
    assert_eq!(
        t.verdicts().into_iter().collect::<Vec<_>>(),
        [Verdict::Accept]
    );
    assert!(t.never_masquerades());
    assert_eq!(
        t.outcomes[0].path,
        [
            "nat-prerouting",
            "services",
            WEB,
            EP1,
            "filter-forward",
            "service-endpoints-check",
            "nat-postrouting",
            "masquerading"
        ]
    );
}

#[test]
fn cluster_ip_from_outside_the_pod_network_is_masqueraded() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip("198.51.100.5"), ip("10.96.0.10"), Proto::Tcp, 80),
    )
    .unwrap();
    assert_eq!(t.outcomes.len(), 2);
    assert!(t.always_masquerades());
    assert!(t.outcomes.iter().all(|o| o.mark & 0x4000 != 0));
}

#[test]
fn endpoint_reaching_itself_through_the_service_is_masqueraded_only_on_that_branch() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip("10.244.1.5"), ip("10.96.0.10"), Proto::Tcp, 80),
    )
    .unwrap();
    for o in &t.outcomes {
        let to_self = o.dnat.unwrap().addr == ip("10.244.1.5");
        assert_eq!(o.masquerade, to_self, "{o:?}");
    }
    assert!(t.outcomes.iter().any(|o| o.path.contains(&EP2.to_string())));
}

#[test]
fn cluster_ip_without_endpoints_is_rejected() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip(POD), ip("10.96.0.20"), Proto::Tcp, 80),
    )
    .unwrap();
    assert_eq!(
        t.verdicts().into_iter().collect::<Vec<_>>(),
        [Verdict::Reject("icmpx type port-unreachable".into())]
    );
    assert!(t.dnat_targets().is_empty());
    assert_eq!(
        t.outcomes[0].path.last().map(String::as_str),
        Some("reject-chain")
    );
}

#[test]
fn unknown_port_of_a_cluster_ip_falls_through_untouched() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip(POD), ip("10.96.0.10"), Proto::Tcp, 81),
    )
    .unwrap();
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    assert_eq!(t.outcomes[0].dnat, None);
}

#[test]
fn udp_to_a_tcp_service_port_is_not_dnatted() {
    let t = trace(
        &testdata::services(),
        &Packet::new(ip(POD), ip("10.96.0.10"), Proto::Udp, 80),
    )
    .unwrap();
    assert!(t.dnat_targets().is_empty());
}

#[test]
fn node_port_on_a_local_address_is_dnatted_and_marked_for_masquerade() {
    let pkt = Packet::new(ip("198.51.100.5"), ip(NODE), Proto::Tcp, 30080)
        .to_local()
        .iif("eth0");
    let t = trace(&testdata::services(), &pkt).unwrap();
    assert_eq!(t.dnat_targets().len(), 2);
    assert!(t.always_masquerades());
    assert!(t.outcomes.iter().all(|o| o.mark == 0x4000));
    assert!(t.outcomes[0].path.starts_with(&[
        "nat-prerouting".into(),
        "services".into(),
        "external-web".into()
    ]));
}

#[test]
fn node_port_on_a_non_local_address_is_not_dnatted() {
    let pkt = Packet::new(ip("198.51.100.5"), ip("192.168.1.99"), Proto::Tcp, 30080);
    let t = trace(&testdata::services(), &pkt).unwrap();
    assert!(t.dnat_targets().is_empty());
    assert!(t.never_masquerades());
}

#[test]
fn node_to_cluster_ip_takes_the_output_hook() {
    let pkt = Packet::new(ip(NODE), ip("10.96.0.10"), Proto::Tcp, 80).from_node();
    let t = trace(&testdata::services(), &pkt).unwrap();
    assert_eq!(t.dnat_targets().len(), 2);
    assert_eq!(t.outcomes[0].path[0], "nat-output");
    assert!(t.always_masquerades());
}

#[test]
fn node_to_a_service_without_endpoints_is_rejected_in_output() {
    let pkt = Packet::new(ip(NODE), ip("10.96.0.20"), Proto::Tcp, 80).from_node();
    let t = trace(&testdata::services(), &pkt).unwrap();
    assert!(matches!(t.verdicts().first(), Some(Verdict::Reject(_))));
    assert!(t.outcomes[0].path.contains(&"filter-output".to_string()));
}

fn one_chain(rules: &[&str]) -> Ruleset {
    let mut rs = Ruleset::new(Table::new(Family::Inet, "t"));
    let mut c = Chain::base(
        "in",
        BaseChain::new(ChainType::Filter, Hook::Prerouting, Priority::FILTER),
    );
    for r in rules {
        c.rules.push(Rule::new(*r));
    }
    rs.add_chain(c)
        .add_chain(Chain::regular("loop").rule(Rule::new("jump loop2")))
        .add_chain(Chain::regular("loop2").rule(Rule::new("jump loop")))
        .add_set(
            Set::new("ports", "inet_service")
                .flag(SetFlag::Interval)
                .element(Element::key("8000-8100")),
        );
    rs
}

fn verdict(rules: &[&str], pkt: &Packet) -> Verdict {
    let t = trace(&one_chain(rules), pkt).unwrap();
    assert_eq!(t.outcomes.len(), 1);
    t.outcomes[0].verdict.clone()
}

fn pkt() -> Packet {
    Packet::new(ip(POD), ip("10.96.0.10"), Proto::Tcp, 8080)
}

#[test]
fn unsupported_expression_is_an_error_naming_it() {
    let e = trace(&one_chain(&["quota 10 mbytes accept"]), &pkt()).unwrap_err();
    assert!(
        matches!(&e, TraceError::Unsupported { at, .. } if at.starts_with("quota")),
        "{e}"
    );
}

#[test]
fn unsupported_expression_after_a_failing_match_is_still_an_error() {
    let e = trace(
        &one_chain(&["ip saddr 1.1.1.1 quota 10 mbytes accept"]),
        &pkt(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("quota"), "{e}");
}

#[test]
fn a_rate_limited_log_passes_the_packet_on_to_the_next_rule() {
    let t = trace(
        &one_chain(&[
            "counter limit rate 100/second burst 100 packets log prefix \"deny:x/p:\" group 100",
            "drop",
        ]),
        &pkt(),
    )
    .unwrap();
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert_eq!(t.outcomes[0].logged, vec!["deny:x/p:".to_string()]);
    for bad in [
        "limit rate 5/fortnight accept",
        "limit rate 5/second burst 3 bytes accept",
    ] {
        let e = trace(&one_chain(&[bad]), &pkt()).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }
}

#[test]
fn connection_mark_halves_are_set_and_kept() {
    let t = trace(
        &one_chain(&[
            "ct mark set ct mark and 0xffff0000 or 0x00000005",
            "ct mark set ct mark and 0x0000ffff or 0x00070000 accept",
        ]),
        &pkt(),
    )
    .unwrap();
    assert_eq!(t.outcomes[0].ct_mark, 0x0007_0005);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
}

#[test]
fn log_statements_pass_the_packet_on_and_are_recorded() {
    let t = trace(
        &one_chain(&["counter log prefix \"deny:x/p:\" group 100 drop"]),
        &pkt(),
    )
    .unwrap();
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert_eq!(t.outcomes[0].logged, vec!["deny:x/p:".to_string()]);
}

#[test]
fn port_ranges_in_sets_and_negated_prefixes_match() {
    assert_eq!(verdict(&["tcp dport @ports drop"], &pkt()), Verdict::Drop);
    assert_eq!(
        verdict(&["ip saddr != 10.0.0.0/8 drop"], &pkt()),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&["ip daddr { 10.96.0.1, 10.96.0.10 } drop"], &pkt()),
        Verdict::Drop
    );
}

#[test]
fn ip6_match_does_not_apply_to_ipv4() {
    assert_eq!(
        verdict(&["ip6 saddr != fd00::/8 drop"], &pkt()),
        Verdict::Accept
    );
}

#[test]
fn drop_policy_applies_when_no_rule_decides() {
    let mut rs = one_chain(&["tcp dport 9999 accept"]);
    rs.chains
        .get_mut("in")
        .unwrap()
        .base
        .as_mut()
        .unwrap()
        .policy = Policy::Drop;
    let t = trace(&rs, &pkt()).unwrap();
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
}

#[test]
fn reject_with_tcp_reset_and_admin_prohibited() {
    assert_eq!(
        verdict(&["reject with tcp reset"], &pkt()),
        Verdict::Reject("tcp reset".into())
    );
    assert_eq!(
        verdict(&["reject with icmpx type admin-prohibited"], &pkt()),
        Verdict::Reject("icmpx type admin-prohibited".into())
    );
}

#[test]
fn interface_and_mark_matches() {
    assert_eq!(
        verdict(&["iifname \"eth*\" drop"], &pkt().iif("eth0")),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&["iifname != \"eth0\" drop"], &pkt().iif("eth0")),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&["meta mark set 0x10", "meta mark 0x10 drop"], &pkt()),
        Verdict::Drop
    );
    assert_eq!(
        verdict(
            &["meta mark set 0x10", "meta mark & 0x10 != 0 drop"],
            &pkt()
        ),
        Verdict::Drop
    );
}

#[test]
fn ct_state_is_new() {
    assert_eq!(
        verdict(
            &["ct state established,related accept", "ct state new drop"],
            &pkt()
        ),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&["ct state { established, related } drop"], &pkt()),
        Verdict::Accept
    );
}

#[test]
fn source_port_rule_without_a_source_port_is_an_error() {
    assert!(trace(&one_chain(&["th sport 53 drop"]), &pkt()).is_err());
    assert_eq!(
        verdict(&["th sport 53 drop"], &pkt().sport(53)),
        Verdict::Drop
    );
}

#[test]
fn jump_loops_are_reported() {
    let e = trace(&one_chain(&["jump loop"]), &pkt()).unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");
}

#[test]
fn return_resumes_the_calling_chain() {
    let mut rs = one_chain(&["jump sub", "drop"]);
    rs.add_chain(
        Chain::regular("sub")
            .rule(Rule::new("return"))
            .rule(Rule::new("accept")),
    );
    assert_eq!(
        trace(&rs, &pkt()).unwrap().outcomes[0].verdict,
        Verdict::Drop
    );
}

#[test]
fn reject_with_icmpx_without_the_type_word() {
    assert_eq!(
        verdict(&["reject with icmpx port-unreachable"], &pkt()),
        Verdict::Reject("icmpx port-unreachable".into())
    );
}
