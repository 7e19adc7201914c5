use crate::model::*;
use crate::testdata::{self, EP1, EP2, WEB};
use crate::{diff, full_sync, Fake, Mirror};

/// Diffs `a` → `b`, checks that the diff turns a fake holding `a` (written
/// by a full sync) into exactly `b`, and returns the diff's text.
fn checked_diff(a: &Ruleset, b: &Ruleset) -> String {
    let mut fake = Fake::new();
    fake.apply_tx(&full_sync(a).unwrap()).unwrap();
    assert_eq!(
        fake.table(a.table.family, &a.table.name),
        Some(a),
        "full sync of a"
    );
    let tx = diff(a, b).unwrap();
    fake.apply_tx(&tx)
        .unwrap_or_else(|e| panic!("{e}\n--- diff ---\n{}", tx.render()));
    assert_eq!(
        fake.table(b.table.family, &b.table.name),
        Some(b),
        "after diff:\n{}",
        tx.render()
    );
    if tx.is_empty() {
        String::new()
    } else {
        tx.render()
    }
}

#[test]
fn first_sync_is_a_full_sync() {
    let desired = testdata::services();
    let plan = Mirror::new().plan(&desired).unwrap();
    assert_eq!(plan, full_sync(&desired).unwrap());
    assert_eq!(
        &plan.statements()[..2],
        ["add table inet weft-proxy", "delete table inet weft-proxy"]
    );
}

#[test]
fn unchanged_ruleset_gives_an_empty_transaction() {
    let a = testdata::services();
    assert_eq!(checked_diff(&a, &a.clone()), "");
}

#[test]
fn one_changed_set_element_is_deleted_and_added() {
    let a = testdata::services();
    let mut b = a.clone();
    let s = b.sets.get_mut("lb-source-ranges").unwrap();
    s.elements.remove("203.0.113.0/25");
    s.insert(Element::key("203.0.113.128/25"));
    assert_eq!(
        checked_diff(&a, &b),
        "delete element inet weft-proxy lb-source-ranges { 203.0.113.0/25 }\n\
         add element inet weft-proxy lb-source-ranges { 203.0.113.128/25 }\n"
    );
}

#[test]
fn a_map_element_with_a_new_value_is_replaced() {
    let a = testdata::services();
    let mut b = a.clone();
    b.sets
        .get_mut("service-nodeports")
        .unwrap()
        .insert(Element::map("tcp . 30080", format!("goto {WEB}")));
    assert_eq!(
        checked_diff(&a, &b),
        "delete element inet weft-proxy service-nodeports { tcp . 30080 }\n\
         add element inet weft-proxy service-nodeports { tcp . 30080 : goto service-web }\n"
    );
}

#[test]
fn one_changed_chain_is_flushed_and_rewritten() {
    let a = testdata::services();
    let mut b = a.clone();
    b.chains.get_mut("masquerading").unwrap().rules[1] = Rule::new("masquerade fully-random");
    assert_eq!(
        checked_diff(&a, &b),
        "flush chain inet weft-proxy masquerading\n\
         add rule inet weft-proxy masquerading meta mark & 0x4000 == 0 return\n\
         add rule inet weft-proxy masquerading masquerade fully-random\n"
    );
}

#[test]
fn removed_service_deletes_map_elements_then_flushes_then_deletes_chains() {
    let a = testdata::services();
    let mut b = a.clone();
    for c in [WEB, EP1, EP2, "external-web"] {
        b.chains.remove(c);
    }
    b.sets.get_mut("service-ips").unwrap().elements.clear();
    b.sets
        .get_mut("service-nodeports")
        .unwrap()
        .elements
        .clear();
    assert_eq!(
        checked_diff(&a, &b),
        "delete element inet weft-proxy service-ips { 10.96.0.10 . tcp . 80 }\n\
         delete element inet weft-proxy service-nodeports { tcp . 30080 }\n\
         flush chain inet weft-proxy endpoint-web-10.244.1.5\n\
         flush chain inet weft-proxy endpoint-web-10.244.2.7\n\
         flush chain inet weft-proxy external-web\n\
         flush chain inet weft-proxy service-web\n\
         delete chain inet weft-proxy endpoint-web-10.244.1.5\n\
         delete chain inet weft-proxy endpoint-web-10.244.2.7\n\
         delete chain inet weft-proxy external-web\n\
         delete chain inet weft-proxy service-web\n"
    );
}

#[test]
fn removed_endpoint_rewrites_the_chain_that_jumped_to_it() {
    let a = testdata::services();
    let mut b = a.clone();
    b.chains.remove(EP2);
    b.chains.get_mut(WEB).unwrap().rules[1] = Rule::new(format!("goto {EP1}"));
    assert_eq!(
        checked_diff(&a, &b),
        "flush chain inet weft-proxy endpoint-web-10.244.2.7\n\
         flush chain inet weft-proxy service-web\n\
         delete chain inet weft-proxy endpoint-web-10.244.2.7\n\
         add rule inet weft-proxy service-web ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\
         add rule inet weft-proxy service-web goto endpoint-web-10.244.1.5\n"
    );
}

#[test]
fn removed_set_is_deleted_after_the_rules_using_it_are_flushed() {
    let mut a = testdata::services();
    a.chains
        .get_mut("external-web")
        .unwrap()
        .rules
        .insert(0, Rule::new("ip saddr != @lb-source-ranges drop"));
    let mut b = testdata::services();
    b.sets.remove("lb-source-ranges");
    assert_eq!(
        checked_diff(&a, &b),
        "flush chain inet weft-proxy external-web\n\
         delete set inet weft-proxy lb-source-ranges\n\
         add rule inet weft-proxy external-web jump mark-for-masquerade\n\
         add rule inet weft-proxy external-web goto service-web\n"
    );
}

#[test]
fn new_chain_set_and_map_element_are_created_in_order() {
    let a = testdata::services();
    let mut b = a.clone();
    b.add_chain(Chain::regular("service-api").rule(Rule::new("reject with tcp reset")));
    b.add_set(
        Set::new("allowed", "ipv4_addr . inet_service").element(Element::key("10.0.0.1 . 443")),
    );
    b.sets
        .get_mut("service-ips")
        .unwrap()
        .insert(Element::map("10.96.0.1 . tcp . 443", "goto service-api"));
    assert_eq!(
        checked_diff(&a, &b),
        "add chain inet weft-proxy service-api\n\
         add set inet weft-proxy allowed { type ipv4_addr . inet_service ; elements = { 10.0.0.1 . 443 } ; }\n\
         add element inet weft-proxy service-ips { 10.96.0.1 . tcp . 443 : goto service-api }\n\
         add rule inet weft-proxy service-api reject with tcp reset\n"
    );
}

#[test]
fn base_chain_with_a_new_priority_is_recreated_with_its_rules() {
    let a = testdata::services();
    let mut b = a.clone();
    b.chains
        .get_mut("nat-output")
        .unwrap()
        .base
        .as_mut()
        .unwrap()
        .priority = Priority::DSTNAT.offset(-5);
    assert_eq!(
        checked_diff(&a, &b),
        "flush chain inet weft-proxy nat-output\n\
         delete chain inet weft-proxy nat-output\n\
         add chain inet weft-proxy nat-output { type nat hook output priority -105 ; policy accept ; }\n\
         add rule inet weft-proxy nat-output jump services\n"
    );
}

#[test]
fn set_with_new_flags_is_recreated_and_its_users_rewritten() {
    let mut a = testdata::services();
    a.push_rule(
        "external-web",
        Rule::new("ip saddr @lb-source-ranges accept"),
    );
    let mut b = a.clone();
    let s = b.sets.get_mut("lb-source-ranges").unwrap();
    s.flags.clear();
    s.elements.clear();
    s.insert(Element::key("198.51.100.1"));
    assert_eq!(
        checked_diff(&a, &b),
        "flush chain inet weft-proxy external-web\n\
         delete set inet weft-proxy lb-source-ranges\n\
         add set inet weft-proxy lb-source-ranges { type ipv4_addr ; elements = { 198.51.100.1 } ; }\n\
         add rule inet weft-proxy external-web jump mark-for-masquerade\n\
         add rule inet weft-proxy external-web goto service-web\n\
         add rule inet weft-proxy external-web ip saddr @lb-source-ranges accept\n"
    );
}

#[test]
fn table_comment_change_is_a_full_sync() {
    let a = testdata::services();
    let mut b = a.clone();
    b.table.comment = Some("renamed".into());
    let text = checked_diff(&a, &b);
    assert_eq!(text, full_sync(&b).unwrap().render());
}

#[test]
fn dynamic_set_elements_are_left_to_the_packet_path() {
    let a = testdata::services();
    let mut fake = Fake::new();
    fake.apply_tx(&full_sync(&a).unwrap()).unwrap();
    // The kernel learnt an affinity entry; weft's desired state has none.
    fake.apply_tx(&{
        let mut tx = crate::Transaction::new();
        tx.push("add element inet weft-proxy affinity-web { 10.244.0.3 }");
        tx
    })
    .unwrap();
    let mut b = a.clone();
    b.chains.get_mut("masquerading").unwrap().rules[1] = Rule::new("masquerade fully-random");
    let tx = diff(&a, &b).unwrap();
    assert!(!tx.render().contains("affinity-web"), "{}", tx.render());
    fake.apply_tx(&tx).unwrap();
    let got = fake.table(crate::Family::Inet, "weft-proxy").unwrap();
    assert!(got.sets["affinity-web"].elements.contains_key("10.244.0.3"));
}

#[test]
fn invalid_desired_ruleset_is_refused_before_anything_is_written() {
    let a = testdata::services();
    let mut b = a.clone();
    b.push_rule("services", Rule::new("jump missing"));
    assert!(matches!(diff(&a, &b), Err(ModelError::Dangling { .. })));
    assert!(matches!(full_sync(&b), Err(ModelError::Dangling { .. })));
}
