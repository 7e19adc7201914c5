//! The records of the Kubernetes DNS-Based Service Discovery specification
//! 1.1.0 (kubernetes/dns docs/specification.md, "spec"), and the pod names
//! of CoreDNS's `pods` modes, as answer() serves them from a compiled zone.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use weft_dns::answer::{answer, Action};
use weft_dns::zone::PodMode;

#[test]
fn dns_version_txt_is_schema_1_1_0() {
    // spec 2.2
    let m = ask(&zone(), "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(rdata_strings(m.answers()), vec!["1.1.0"]);
}

#[test]
fn cluster_ip_service_answers_its_a_record() {
    // spec 2.3.1
    let m = ask(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert!(m.authoritative());
    assert_eq!(rdata_strings(m.answers()), vec!["10.96.0.1"]);
    assert_eq!(m.answers()[0].ttl(), 5);
}

#[test]
fn dual_stack_service_answers_aaaa_from_cluster_ips() {
    let z = zone();
    let a = ask(&z, "dual.kube-system.svc.cluster.local.", RecordType::A);
    let aaaa = ask(&z, "dual.kube-system.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata_strings(a.answers()), vec!["10.96.0.10"]);
    assert_eq!(rdata_strings(aaaa.answers()), vec!["fd00::10"]);
}

#[test]
fn srv_for_named_port_points_at_the_service_name() {
    // spec 2.3.2, with the A in the additional section.
    let m = ask(
        &zone(),
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        rdata_strings(m.answers()),
        vec!["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(of_type(m.additionals(), RecordType::A), vec!["10.96.0.1"]);
}

#[test]
fn srv_for_udp_port_uses_the_udp_label_and_both_families_in_additional() {
    let m = ask(
        &zone(),
        "_dns._udp.dual.kube-system.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        rdata_strings(m.answers()),
        vec!["0 100 53 dual.kube-system.svc.cluster.local."]
    );
    assert_eq!(of_type(m.additionals(), RecordType::AAAA), vec!["fd00::10"]);
}

#[test]
fn unnamed_port_has_no_srv_name() {
    // spec 2.3.2: "Unnamed ports do not have an SRV record" — only the
    // named port's `_udp` exists, no `_tcp` for the unnamed 9153.
    let m = ask(
        &zone(),
        "_tcp.dual.kube-system.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn ptr_for_cluster_ip_names_the_service() {
    // spec 2.3.3
    let m = ask(&zone(), "1.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert!(m.authoritative());
    assert_eq!(
        rdata_strings(m.answers()),
        vec!["kubernetes.default.svc.cluster.local."]
    );
}

#[test]
fn ptr_for_ipv6_cluster_ip_is_in_nibble_form() {
    let q = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    let m = ask(&zone(), q, RecordType::PTR);
    assert_eq!(
        rdata_strings(m.answers()),
        vec!["dual.kube-system.svc.cluster.local."]
    );
}

#[test]
fn headless_service_answers_every_ready_endpoint() {
    // spec 2.4.1; ready unset counts as ready, ready=false is left out.
    let m = ask(&zone(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata_strings(m.answers()), vec!["10.1.0.1", "10.1.0.2"]);
    let m6 = ask(&zone(), "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata_strings(m6.answers()), vec!["fd00::1:1"]);
}

#[test]
fn headless_endpoint_hostname_has_its_own_records() {
    let z = zone();
    let a = ask(&z, "web-0.web.default.svc.cluster.local.", RecordType::A);
    let aaaa = ask(&z, "web-0.web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata_strings(a.answers()), vec!["10.1.0.1"]);
    assert_eq!(rdata_strings(aaaa.answers()), vec!["fd00::1:1"]);
}

#[test]
fn unready_endpoint_hostname_does_not_exist() {
    let m = ask(
        &zone(),
        "web-2.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn headless_srv_targets_endpoint_hostnames_or_dashed_addresses() {
    // spec 2.4.2: one SRV per (ready endpoint, named port) with the
    // EndpointSlice port; an endpoint without hostname gets its dashed
    // address as the system-assigned hostname, and that name resolves.
    let z = zone();
    let m = ask(
        &z,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        rdata_strings(m.answers()),
        vec![
            "0 100 8080 10-1-0-2.web.default.svc.cluster.local.",
            "0 100 8080 web-0.web.default.svc.cluster.local.",
        ]
    );
    assert_eq!(
        of_type(m.additionals(), RecordType::A),
        vec!["10.1.0.1", "10.1.0.2"]
    );
    let derived = ask(&z, "10-1-0-2.web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata_strings(derived.answers()), vec!["10.1.0.2"]);
}

#[test]
fn headless_ptr_names_the_endpoint_hostname() {
    // spec 2.4.3
    let m = ask(&zone(), "1.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        rdata_strings(m.answers()),
        vec!["web-0.web.default.svc.cluster.local."]
    );
}

#[test]
fn headless_endpoint_without_hostname_has_no_ptr_and_is_forwarded() {
    let r = answer(
        &zone(),
        &query("2.0.1.10.in-addr.arpa.", RecordType::PTR),
        &udp(),
        1,
    );
    assert!(matches!(r, Action::Forward(_)), "{r:?}");
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    // spec 2.4.1: "If there are no ready endpoints ... NXDOMAIN"
    let z = zone();
    for q in [
        "empty.default.svc.cluster.local.",
        "10-1-1-1.empty.default.svc.cluster.local.",
    ] {
        let m = ask(&z, q, RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{q}");
        assert!(m.answers().is_empty());
    }
}

#[test]
fn publish_not_ready_addresses_includes_unready_endpoints() {
    let m = ask(&zone(), "unready.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata_strings(m.answers()), vec!["10.1.2.1"]);
}

#[test]
fn external_name_service_is_a_cname_resolved_upstream() {
    // spec 2.5: the CNAME, then the target's records from upstream.
    let r = answer(
        &zone(),
        &query("ext.default.svc.cluster.local.", RecordType::A),
        &udp(),
        1,
    );
    let Action::Forward(p) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.question().name(), &name("www.example.com."));
    assert_eq!(p.question().query_type(), RecordType::A);
}

#[test]
fn external_name_to_a_cluster_service_is_followed_in_the_zone() {
    let m = ask(&zone(), "alias.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 2);
    assert_eq!(
        m.answers()[0].data(),
        &RData::CNAME(hickory_proto::rr::rdata::CNAME(name(
            "kubernetes.default.svc.cluster.local."
        )))
    );
    assert_eq!(of_type(m.answers(), RecordType::A), vec!["10.96.0.1"]);
}

#[test]
fn external_name_cname_query_answers_the_cname_alone() {
    let m = ask(&zone(), "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(rdata_strings(m.answers()), vec!["www.example.com."]);
}

#[test]
fn external_name_has_no_srv_names() {
    let m = ask(
        &zone(),
        "_http._tcp.ext.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn service_without_a_usable_cluster_ip_or_type_is_skipped() {
    let z = zone();
    for q in [
        "pending.default.svc.cluster.local.",
        "broken.default.svc.cluster.local.",
        "weird.default.svc.cluster.local.",
    ] {
        assert_eq!(
            ask(&z, q, RecordType::A).response_code(),
            ResponseCode::NXDomain,
            "{q}"
        );
    }
    let skipped: Vec<&str> = z.skipped().iter().map(|s| s.object.as_str()).collect();
    assert!(skipped.contains(&"Service default/pending"), "{skipped:?}");
    assert!(skipped.contains(&"Service default/broken"), "{skipped:?}");
    assert!(skipped.contains(&"Service default/weird"), "{skipped:?}");
}

#[test]
fn verified_pod_record_needs_a_pod_with_that_ip() {
    let z = zone_with(PodMode::Verified, false);
    let hit = ask(&z, "10-2-0-5.default.pod.cluster.local.", RecordType::A);
    assert_eq!(rdata_strings(hit.answers()), vec!["10.2.0.5"]);
    // The IP belongs to a Pod of another namespace, or to no Pod.
    for q in [
        "10-2-0-6.default.pod.cluster.local.",
        "10-2-0-99.default.pod.cluster.local.",
    ] {
        assert_eq!(
            ask(&z, q, RecordType::A).response_code(),
            ResponseCode::NXDomain,
            "{q}"
        );
    }
}

#[test]
fn insecure_pod_record_answers_any_well_formed_address() {
    let z = zone_with(PodMode::Insecure, false);
    let m = ask(&z, "10-20-30-40.anyns.pod.cluster.local.", RecordType::A);
    assert_eq!(rdata_strings(m.answers()), vec!["10.20.30.40"]);
    let bad = ask(&z, "not-an-ip.anyns.pod.cluster.local.", RecordType::A);
    assert_eq!(bad.response_code(), ResponseCode::NXDomain);
}

#[test]
fn ipv6_pod_name_uses_dashes_for_colons() {
    let z = zone_with(PodMode::Verified, false);
    let m = ask(&z, "fd00--2-5.default.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata_strings(m.answers()), vec!["fd00::2:5"]);
}

#[test]
fn pod_name_of_the_other_family_is_nodata() {
    let z = zone_with(PodMode::Insecure, false);
    let m = ask(&z, "10-2-0-5.default.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
}

#[test]
fn disabled_pods_make_the_pod_subtree_nxdomain() {
    let z = zone();
    for q in ["pod.cluster.local.", "10-2-0-5.default.pod.cluster.local."] {
        assert_eq!(
            ask(&z, q, RecordType::A).response_code(),
            ResponseCode::NXDomain,
            "{q}"
        );
    }
}

#[test]
fn host_network_pods_have_no_verified_pod_record() {
    let z = zone_with(PodMode::Verified, false);
    let m = ask(&z, "192-0-2-10.default.pod.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn soa_serial_changes_with_the_content() {
    let a = zone();
    let mut more = services();
    more.push(service(
        "default",
        "extra",
        serde_json::json!({"clusterIP": "10.96.7.7"}),
    ));
    let b = weft_dns::zone::compile(&config(PodMode::Disabled, false), &more, &slices(), &pods());
    assert_ne!(a.serial(), b.serial());
    assert_eq!(a.serial(), zone().serial());
}

#[test]
fn the_inputs_digest_ignores_pod_status_churn_and_sees_what_the_zone_reads() {
    use weft_dns::zone::inputs_digest;
    let (svcs, eps, pods) = (services(), slices(), pods());
    let base = inputs_digest(&svcs, &eps, &pods);
    // The order of the stores' snapshots does not matter.
    let mut reversed = pods.clone();
    reversed.reverse();
    assert_eq!(inputs_digest(&svcs, &eps, &reversed), base);
    // A Pod's conditions change (a probe): the zone would be the same.
    let mut churned = pods.clone();
    let mut p = (*churned[0]).clone();
    p.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
        serde_json::json!({"type": "Ready", "status": "False"}),
    )
    .unwrap()]);
    p.metadata.resource_version = Some("999".into());
    churned[0] = std::sync::Arc::new(p);
    assert_eq!(inputs_digest(&svcs, &eps, &churned), base);
    // Its IP changes: a different zone.
    let mut moved = pods.clone();
    let mut p = (*moved[0]).clone();
    p.status.as_mut().unwrap().pod_ips = Some(vec![serde_json::from_value(
        serde_json::json!({"ip": "10.9.9.9"}),
    )
    .unwrap()]);
    moved[0] = std::sync::Arc::new(p);
    assert_ne!(inputs_digest(&svcs, &eps, &moved), base);
    // Any new version of a Service or EndpointSlice counts.
    let mut changed = svcs.clone();
    let mut s = (*changed[0]).clone();
    s.metadata.resource_version = Some("2".into());
    changed[0] = std::sync::Arc::new(s);
    assert_ne!(inputs_digest(&changed, &eps, &pods), base);
    // One object fewer.
    assert_ne!(inputs_digest(&svcs, &eps[1..], &pods), base);
}
