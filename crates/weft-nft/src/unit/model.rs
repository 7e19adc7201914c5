use crate::model::*;
use crate::testdata;
use crate::{full_sync, Family};

const FULL: &str = r#"add table inet weft-proxy
delete table inet weft-proxy
add table inet weft-proxy { comment "weft Services" ; }
add chain inet weft-proxy endpoint-web-10.244.1.5
add chain inet weft-proxy endpoint-web-10.244.2.7
add chain inet weft-proxy external-web
add chain inet weft-proxy filter-forward { type filter hook forward priority -10 ; policy accept ; }
add chain inet weft-proxy filter-input { type filter hook input priority -10 ; policy accept ; }
add chain inet weft-proxy filter-output { type filter hook output priority -10 ; policy accept ; }
add chain inet weft-proxy mark-for-masquerade
add chain inet weft-proxy masquerading
add chain inet weft-proxy nat-output { type nat hook output priority -100 ; policy accept ; }
add chain inet weft-proxy nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }
add chain inet weft-proxy nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }
add chain inet weft-proxy reject-chain
add chain inet weft-proxy service-endpoints-check
add chain inet weft-proxy service-web
add chain inet weft-proxy services
add set inet weft-proxy affinity-web { type ipv4_addr ; flags timeout,dynamic ; timeout 10800s ; }
add set inet weft-proxy lb-source-ranges { type ipv4_addr ; flags interval ; elements = { 198.51.100.0/24, 203.0.113.0/25 } ; }
add map inet weft-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; elements = { 10.96.0.20 . tcp . 80 comment "default/empty:http" : goto reject-chain } ; }
add map inet weft-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, external IP and LB IP traffic" ; elements = { 10.96.0.10 . tcp . 80 comment "default/web:http" : goto service-web } ; }
add map inet weft-proxy service-nodeports { type inet_proto . inet_service : verdict ; elements = { tcp . 30080 : goto external-web } ; }
add rule inet weft-proxy endpoint-web-10.244.1.5 ip saddr 10.244.1.5 jump mark-for-masquerade comment "hairpin"
add rule inet weft-proxy endpoint-web-10.244.1.5 update @affinity-web { ip saddr }
add rule inet weft-proxy endpoint-web-10.244.1.5 meta l4proto tcp dnat ip to 10.244.1.5:8080
add rule inet weft-proxy endpoint-web-10.244.2.7 ip saddr 10.244.2.7 jump mark-for-masquerade comment "hairpin"
add rule inet weft-proxy endpoint-web-10.244.2.7 update @affinity-web { ip saddr }
add rule inet weft-proxy endpoint-web-10.244.2.7 meta l4proto tcp dnat ip to 10.244.2.7:8080
add rule inet weft-proxy external-web jump mark-for-masquerade
add rule inet weft-proxy external-web goto service-web
add rule inet weft-proxy filter-forward ct state new jump service-endpoints-check
add rule inet weft-proxy filter-input ct state new jump service-endpoints-check
add rule inet weft-proxy filter-output ct state new jump service-endpoints-check
add rule inet weft-proxy mark-for-masquerade meta mark set meta mark or 0x4000
add rule inet weft-proxy masquerading meta mark & 0x4000 == 0 return
add rule inet weft-proxy masquerading masquerade
add rule inet weft-proxy nat-output jump services
add rule inet weft-proxy nat-postrouting jump masquerading
add rule inet weft-proxy nat-prerouting jump services
add rule inet weft-proxy reject-chain reject with icmpx type port-unreachable
add rule inet weft-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule inet weft-proxy service-web ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule inet weft-proxy service-web numgen random mod 2 vmap { 0 : goto endpoint-web-10.244.1.5, 1 : goto endpoint-web-10.244.2.7 }
add rule inet weft-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule inet weft-proxy services fib daddr type local meta l4proto . th dport vmap @service-nodeports
"#;

#[test]
fn full_sync_replaces_the_table_with_chains_then_sets_with_their_elements_then_rules() {
    assert_eq!(full_sync(&testdata::services()).unwrap().render(), FULL);
}

#[test]
fn service_ruleset_is_valid() {
    testdata::services().validate().unwrap();
}

fn small() -> Ruleset {
    let mut rs = Ruleset::new(Table::new(Family::Inet, "t"));
    rs.add_chain(Chain::base(
        "pre",
        BaseChain::new(ChainType::Nat, Hook::Prerouting, Priority::DSTNAT),
    ))
    .add_chain(Chain::regular("svc"));
    rs
}

#[test]
fn rule_jumping_to_a_missing_chain_is_rejected() {
    let mut rs = small();
    rs.push_rule("pre", Rule::new("jump nowhere"));
    let e = rs.validate().unwrap_err();
    assert!(
        matches!(&e, ModelError::Dangling { name, kind: "chain", .. } if name == "nowhere"),
        "{e}"
    );
    assert!(e.to_string().contains("chain inet t pre rule 0"), "{e}");
}

#[test]
fn rule_using_a_missing_set_is_rejected() {
    let mut rs = small();
    rs.push_rule("svc", Rule::new("ip saddr @nope drop"));
    assert!(matches!(
        rs.validate(),
        Err(ModelError::Dangling {
            kind: "set or map",
            ..
        })
    ));
}

#[test]
fn jump_to_a_base_chain_is_rejected() {
    let mut rs = small();
    rs.push_rule("svc", Rule::new("jump pre"));
    assert!(matches!(
        rs.validate(),
        Err(ModelError::JumpToBaseChain { .. })
    ));
}

#[test]
fn map_element_pointing_at_a_missing_chain_is_rejected() {
    let mut rs = small();
    rs.add_set(
        Set::map("m", "ipv4_addr", "verdict").element(Element::map("10.0.0.1", "goto gone")),
    );
    assert!(matches!(rs.validate(), Err(ModelError::Dangling { .. })));
}

#[test]
fn names_must_be_nft_identifiers() {
    let mut rs = small();
    rs.add_chain(Chain::regular("1bad"));
    assert!(matches!(rs.validate(), Err(ModelError::Name { .. })));
    let mut rs = small();
    rs.add_chain(Chain::regular("has space"));
    assert!(matches!(rs.validate(), Err(ModelError::Name { .. })));
}

#[test]
fn comments_with_quotes_or_too_long_are_rejected() {
    let mut rs = small();
    rs.push_rule("svc", Rule::new("accept").with_comment("say \"hi\""));
    assert!(matches!(rs.validate(), Err(ModelError::Comment { .. })));
    let mut rs = small();
    rs.push_rule("svc", Rule::new("accept").with_comment("x".repeat(129)));
    assert!(matches!(rs.validate(), Err(ModelError::Comment { .. })));
}

#[test]
fn rule_expressions_that_would_break_the_script_are_rejected() {
    for bad in [
        "accept\nflush ruleset",
        "accept ; flush ruleset",
        "iifname \"eth0 accept",
        "vmap { 1 : drop",
        "accept comment \"x\"",
        " ",
    ] {
        let mut rs = small();
        rs.push_rule("svc", Rule::new(bad));
        assert!(
            matches!(
                rs.validate(),
                Err(ModelError::Field {
                    field: "expression",
                    ..
                })
            ),
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn element_key_must_have_as_many_parts_as_the_type() {
    let mut rs = small();
    rs.add_set(Set::new("s", "ipv4_addr . inet_service").element(Element::key("10.0.0.1")));
    let e = rs.validate().unwrap_err();
    assert!(
        e.to_string().contains("has 1 parts but its type has 2"),
        "{e}"
    );
}

#[test]
fn map_elements_need_values_and_set_elements_have_none() {
    let mut rs = small();
    rs.add_set(
        Set::map("m", "ipv4_addr", "ipv4_addr . inet_service").element(Element::key("10.0.0.1")),
    );
    assert!(rs.validate().is_err());
    let mut rs = small();
    rs.add_set(Set::new("s", "ipv4_addr").element(Element::map("10.0.0.1", "accept")));
    assert!(rs.validate().is_err());
}

#[test]
fn verdict_map_values_must_be_verdicts() {
    let mut rs = small();
    rs.add_set(
        Set::map("m", "ipv4_addr", "verdict").element(Element::map("10.0.0.1", "dnat to 1.2.3.4")),
    );
    assert!(rs
        .validate()
        .unwrap_err()
        .to_string()
        .contains("expected a verdict"));
}

#[test]
fn ipv6_keys_are_accepted_but_stray_colons_are_not() {
    let mut rs = small();
    rs.add_set(Set::new("s", "ipv6_addr . inet_service").element(Element::key("fd00::10 . 80")));
    rs.validate().unwrap();
    let mut rs = small();
    rs.add_set(Set::new("s", "ipv4_addr").element(Element::key("10.0.0.1 : drop")));
    assert!(rs.validate().is_err());
}

#[test]
fn nat_chains_cannot_hook_forward() {
    let mut rs = small();
    rs.add_chain(Chain::base(
        "f",
        BaseChain::new(ChainType::Nat, Hook::Forward, Priority::FILTER),
    ));
    assert!(rs.validate().unwrap_err().to_string().contains("hook"));
}

#[test]
fn timeouts_must_be_whole_seconds() {
    let mut rs = small();
    rs.add_set(Set::new("s", "ipv4_addr").timeout(std::time::Duration::from_millis(1500)));
    assert!(rs.validate().unwrap_err().to_string().contains("timeout"));
}

#[test]
fn named_priorities_resolve_to_numbers_with_offsets() {
    assert_eq!(Priority::parse("dstnat"), Some(Priority(-100)));
    assert_eq!(Priority::parse("srcnat + 10"), Some(Priority(110)));
    assert_eq!(Priority::parse("filter - 10"), Some(Priority(-10)));
    assert_eq!(Priority::parse("-150"), Some(Priority::MANGLE));
    assert_eq!(Priority::parse("bogus"), None);
    assert_eq!(Priority::DSTNAT.offset(-10).to_string(), "-110");
}

#[test]
fn references_finds_jumps_gotos_and_sets() {
    let refs = references("ip saddr @allowed numgen random mod 2 vmap { 0 : goto a, 1 : jump b }");
    assert_eq!(
        refs,
        vec![
            Reference::Set("allowed".into()),
            Reference::Chain("a".into()),
            Reference::Chain("b".into())
        ]
    );
}

#[test]
fn typeof_keys_render_as_typeof_and_only_known_expressions_validate() {
    let mut rs = small();
    let m = Set::map(
        "pick",
        "typeof ip daddr . th dport . numgen random mod 1",
        "verdict",
    );
    assert_eq!(
        m.add_statement(&rs.table),
        "add map inet t pick { typeof ip daddr . th dport . numgen random mod 1 : verdict ; }"
    );
    rs.add_set(m);
    rs.validate().unwrap();
    rs.add_set(Set::map("bad", "typeof ct original saddr", "verdict"));
    let e = rs.validate().unwrap_err().to_string();
    assert!(e.contains("bad") && e.contains("typeof"), "{e}");
}

#[test]
fn a_full_sync_creates_each_set_with_its_elements_and_no_element_statement() {
    let mut rs = small();
    let mut s = Set::new("many", "ipv4_addr");
    for i in 0..1001 {
        s.insert(Element::key(format!("10.0.{}.{}", i / 250, i % 250)));
    }
    rs.add_set(s);
    let statements = rs.create_statements();
    assert!(
        !statements.iter().any(|st| st.starts_with("add element")),
        "{statements:?}"
    );
    let add: Vec<&String> = statements
        .iter()
        .filter(|st| st.starts_with("add set inet t many"))
        .collect();
    assert_eq!(add.len(), 1);
    assert!(add[0].ends_with(" ; }"), "{}", add[0]);
    assert_eq!(add[0].matches(", ").count(), 1000, "1001 elements");
}
