use serde_json::json;

use super::*;
use crate::{IpRange, Labels, PoolError};

fn parse_err(obj: Value) -> PoolError {
    parse_pool(&obj).unwrap_err()
}

fn labels(list: &[(&str, &str)]) -> Labels {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ipv4_cidr_skips_network_and_broadcast_addresses() {
    let p = pool("default", &["203.0.113.0/24"]);
    assert_eq!(
        p.ranges,
        vec![IpRange::new(ip("203.0.113.1"), ip("203.0.113.254")).unwrap()]
    );
    assert!(!p.contains(ip("203.0.113.0")));
    assert!(!p.contains(ip("203.0.113.255")));
    assert_eq!(p.total(), 254);
}

#[test]
fn ipv4_slash31_and_slash32_keep_every_address() {
    let p = pool("p2p", &["198.51.100.0/31", "198.51.100.9/32"]);
    assert_eq!(
        p.ranges,
        vec![
            IpRange::new(ip("198.51.100.0"), ip("198.51.100.1")).unwrap(),
            IpRange::single(ip("198.51.100.9")),
        ]
    );
    assert_eq!(p.total(), 3);
}

#[test]
fn dash_range_and_single_address_are_inclusive() {
    let p = pool(
        "default",
        &[
            "203.0.113.200-203.0.113.220",
            " 203.0.113.7 ",
            "203.0.113.10 - 203.0.113.11",
        ],
    );
    assert_eq!(
        p.ranges,
        vec![
            IpRange::new(ip("203.0.113.200"), ip("203.0.113.220")).unwrap(),
            IpRange::single(ip("203.0.113.7")),
            IpRange::new(ip("203.0.113.10"), ip("203.0.113.11")).unwrap(),
        ]
    );
    assert!(p.contains(ip("203.0.113.220")));
    assert_eq!(p.total(), 21 + 1 + 2);
}

#[test]
fn ipv6_cidr_keeps_every_address() {
    let p = pool("v6", &["2001:db8::/120", "2001:db8:1::5-2001:db8:1::6"]);
    assert_eq!(
        p.ranges[0],
        IpRange::new(ip("2001:db8::"), ip("2001:db8::ff")).unwrap()
    );
    assert!(p.has_family(Family::V6));
    assert!(!p.has_family(Family::V4));
    assert_eq!(p.total(), 256 + 2);
}

#[test]
fn total_counts_overlapping_ranges_once() {
    let p = pool(
        "overlap",
        &["10.0.0.0/29", "10.0.0.3-10.0.0.9", "10.0.0.4", "10.0.0.10"],
    );
    // .1–.6 from the CIDR, .3–.9, .10: .1–.10.
    assert_eq!(p.total(), 10);
    assert_eq!(pool("huge", &["::/0"]).total(), u128::MAX);
}

#[test]
fn auto_assign_defaults_to_true_and_false_is_kept() {
    assert!(pool("a", &["10.0.0.1"]).auto_assign);
    assert!(!pool_with("a", &["10.0.0.1"], json!({"autoAssign": false})).auto_assign);
    let e = parse_err(pool_json("a", &["10.0.0.1"], json!({"autoAssign": "no"})));
    assert_eq!(e.field, "spec.autoAssign");
}

#[test]
fn selectors_are_read_and_restrict() {
    let p = pool_with(
        "teams",
        &["10.0.0.1"],
        json!({
            "serviceSelector": {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
            },
            "nodeSelector": {"matchExpressions": [{"key": "edge", "operator": "Exists"}]},
        }),
    );
    assert!(p.serves(&labels(&[("team", "a")])));
    assert!(!p.serves(&labels(&[("team", "a"), ("tier", "db")])));
    assert!(!p.serves(&labels(&[("team", "b")])));
    assert!(p.announcer(&labels(&[("edge", "")])));
    assert!(!p.announcer(&labels(&[])));
    let open = pool("open", &["10.0.0.1"]);
    assert!(open.serves(&labels(&[])) && open.announcer(&labels(&[])));
}

#[test]
fn empty_or_missing_addresses_are_refused() {
    let e = parse_err(pool_json("default", &[], json!({})));
    assert_eq!(e.field, "spec.addresses");
    assert_eq!(e.found, "[]");
    let e = parse_err(json!({"metadata": {"name": "default"}, "spec": {}}));
    assert_eq!(e.field, "spec.addresses");
    assert_eq!(e.found, "nothing");
    let e = parse_err(json!({"metadata": {"name": "default"}}));
    assert_eq!(e.field, "spec");
}

#[test]
fn bad_entry_is_named_by_its_index() {
    let e = parse_err(pool_json(
        "default",
        &["203.0.113.0/24", "203.0.113.7", "203.0.113.300"],
        json!({}),
    ));
    assert_eq!(
        e.to_string(),
        "LoadBalancerIPPool \"default\": spec.addresses[2]: expected a CIDR (203.0.113.0/24), \
         a range (203.0.113.10-203.0.113.20) or an IP address, found \"203.0.113.300\""
    );
    let e = parse_err(json!({"metadata": {"name": "n"}, "spec": {"addresses": ["10.0.0.1", 7]}}));
    assert_eq!(e.field, "spec.addresses[1]");
    assert_eq!(e.found, "7");
}

#[test]
fn cidr_with_host_bits_is_refused() {
    let e = parse_err(pool_json("default", &["203.0.113.5/24"], json!({})));
    assert_eq!(e.field, "spec.addresses[0]");
    assert!(e.expected.contains("network address"), "{e}");
}

#[test]
fn ranges_across_families_or_backwards_are_refused() {
    let e = parse_err(pool_json("a", &["10.0.0.1-2001:db8::1"], json!({})));
    assert!(e.expected.contains("one IP family"), "{e}");
    let e = parse_err(pool_json("a", &["10.0.0.9-10.0.0.1"], json!({})));
    assert!(e.expected.contains("not above its end"), "{e}");
    let e = parse_err(pool_json("a", &["10.0.0.1-x"], json!({})));
    assert!(e.expected.contains("two IP addresses"), "{e}");
}

#[test]
fn unknown_selector_operator_is_refused() {
    let e = parse_err(pool_json(
        "a",
        &["10.0.0.1"],
        json!({"serviceSelector": {"matchExpressions": [
            {"key": "team", "operator": "In", "values": ["a"]},
            {"key": "team", "operator": "Matches", "values": ["a"]},
        ]}}),
    ));
    assert_eq!(e.field, "spec.serviceSelector.matchExpressions[1].operator");
    assert_eq!(e.found, "\"Matches\"");
    assert_eq!(e.expected, "In, NotIn, Exists or DoesNotExist");
}

#[test]
fn in_and_not_in_need_values_exists_takes_none() {
    let e = parse_err(pool_json(
        "a",
        &["10.0.0.1"],
        json!({"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "NotIn"}]}}),
    ));
    assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].values");
    let e = parse_err(pool_json(
        "a",
        &["10.0.0.1"],
        json!({"nodeSelector": {"matchExpressions": [
            {"key": "zone", "operator": "Exists", "values": ["x"]}
        ]}}),
    ));
    assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].values");
    let e = parse_err(pool_json(
        "a",
        &["10.0.0.1"],
        json!({"serviceSelector": "team=a"}),
    ));
    assert_eq!(e.field, "spec.serviceSelector");
}

#[test]
fn missing_name_or_other_kind_is_refused() {
    let e = parse_err(json!({"metadata": {}, "spec": {"addresses": ["10.0.0.1"]}}));
    assert_eq!((e.pool.as_str(), e.field.as_str()), ("", "metadata.name"));
    let mut obj = pool_json("a", &["10.0.0.1"], json!({}));
    obj["kind"] = json!("IPAddressPool");
    assert_eq!(parse_err(obj).field, "kind");
    // Without apiVersion and kind (a spec handed over alone) it reads.
    let p = parse_pool(&json!({"metadata": {"name": "a"}, "spec": {"addresses": ["10.0.0.1"]}}));
    assert!(p.is_ok());
}
