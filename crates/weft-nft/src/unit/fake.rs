use crate::model::*;
use crate::testdata::{self, WEB};
use crate::{full_sync, Backend, Fake, Family, SyncKind, Syncer, Transaction};

fn tx(lines: &[&str]) -> Transaction {
    let mut t = Transaction::new();
    for l in lines {
        t.push(*l);
    }
    t
}

fn with_services() -> Fake {
    let mut f = Fake::new();
    f.apply_tx(&full_sync(&testdata::services()).unwrap())
        .unwrap();
    f
}

#[test]
fn full_sync_on_the_fake_yields_the_desired_ruleset() {
    let f = with_services();
    assert_eq!(
        f.table(Family::Inet, "weft-proxy"),
        Some(&testdata::services())
    );
}

#[test]
fn full_sync_replaces_leftovers_of_an_older_writer() {
    let mut f = Fake::new();
    f.apply_tx(&tx(&[
        "add table inet weft-proxy",
        "add chain inet weft-proxy stale",
        "add chain inet weft-proxy nat-output { type nat hook output priority 0 ; policy accept ; }",
    ]))
    .unwrap();
    f.apply_tx(&full_sync(&testdata::services()).unwrap())
        .unwrap();
    assert_eq!(
        f.table(Family::Inet, "weft-proxy"),
        Some(&testdata::services())
    );
}

#[test]
fn statements_it_does_not_know_are_rejected_by_name() {
    let mut f = with_services();
    for s in [
        "insert rule inet weft-proxy services accept",
        "add flowtable inet weft-proxy ft { hook ingress priority 0 ; }",
        "delete rule inet weft-proxy services handle 4",
        "list ruleset",
    ] {
        let e = f.apply_tx(&tx(&[s])).unwrap_err();
        assert!(e.to_string().contains(s), "{e}");
    }
}

#[test]
fn deleting_a_chain_a_map_element_points_at_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&[
            "flush chain inet weft-proxy external-web",
            "delete chain inet weft-proxy external-web",
        ]))
        .unwrap_err();
    assert!(
        e.why
            .contains("element { tcp . 30080 } of map service-nodeports"),
        "{e}"
    );
}

#[test]
fn deleting_a_chain_a_rule_jumps_to_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&[
            "flush chain inet weft-proxy mark-for-masquerade",
            "delete chain inet weft-proxy mark-for-masquerade",
        ]))
        .unwrap_err();
    assert!(e.why.contains("still used by a rule"), "{e}");
}

#[test]
fn deleting_a_chain_with_rules_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&["delete chain inet weft-proxy nat-output"]))
        .unwrap_err();
    assert!(e.why.contains("still has rules"), "{e}");
}

#[test]
fn deleting_a_set_a_rule_uses_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&["delete map inet weft-proxy service-ips"]))
        .unwrap_err();
    assert!(
        e.why.contains("still used by a rule in chain services"),
        "{e}"
    );
}

#[test]
fn rule_jumping_to_a_missing_chain_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&["add rule inet weft-proxy services jump nowhere"]))
        .unwrap_err();
    assert!(e.why.contains("nowhere"), "{e}");
}

#[test]
fn element_added_again_with_another_value_fails() {
    let mut f = with_services();
    let e = f
        .apply_tx(&tx(&[
            "add element inet weft-proxy service-nodeports { tcp . 30080 : goto service-web }",
        ]))
        .unwrap_err();
    assert!(e.why.contains("exists with another value"), "{e}");
}

#[test]
fn deleting_a_missing_element_or_table_fails() {
    let mut f = with_services();
    assert!(f
        .apply_tx(&tx(&[
            "delete element inet weft-proxy lb-source-ranges { 1.2.3.4 }"
        ]))
        .is_err());
    assert!(f.apply_tx(&tx(&["delete table inet nothing"])).is_err());
}

#[test]
fn failed_transaction_changes_nothing() {
    let mut f = with_services();
    let before = f.table(Family::Inet, "weft-proxy").cloned();
    let e = f
        .apply_tx(&tx(&[
            "flush chain inet weft-proxy services",
            "add rule inet weft-proxy services jump nowhere",
        ]))
        .unwrap_err();
    assert_eq!(e.index, 1);
    assert_eq!(f.table(Family::Inet, "weft-proxy").cloned(), before);
}

#[test]
fn parses_comments_on_rules_and_elements() {
    let f = with_services();
    let rs = f.table(Family::Inet, "weft-proxy").unwrap();
    assert_eq!(
        rs.chains[testdata::EP1].rules[0].comment.as_deref(),
        Some("hairpin")
    );
    let e = &rs.sets["service-ips"].elements["10.96.0.10 . tcp . 80"];
    assert_eq!(e.comment.as_deref(), Some("default/web:http"));
    assert_eq!(e.value.as_deref(), Some("goto service-web"));
}

#[test]
fn syncer_writes_full_then_diffs_then_nothing() {
    let mut s = Syncer::new(Fake::new());
    let a = testdata::services();
    assert_eq!(s.sync(&a).unwrap(), SyncKind::Full);
    assert_eq!(s.sync(&a).unwrap(), SyncKind::Unchanged);
    let mut b = a.clone();
    b.chains.remove("external-web");
    b.sets
        .get_mut("service-nodeports")
        .unwrap()
        .elements
        .clear();
    assert_eq!(s.sync(&b).unwrap(), SyncKind::Diff);
    assert_eq!(s.backend().table(Family::Inet, "weft-proxy"), Some(&b));
    assert_eq!(s.backend().applied().len(), 2);
}

#[test]
fn syncer_after_a_failed_write_does_a_full_sync() {
    let mut s = Syncer::new(Fake::new());
    let a = testdata::services();
    s.sync(&a).unwrap();
    let mut b = a.clone();
    b.push_rule(WEB, Rule::new("drop"));
    s.backend_mut().fail_next("injected");
    assert!(s.sync(&b).is_err());
    assert!(s.mirror().written().is_none());
    assert_eq!(s.sync(&b).unwrap(), SyncKind::Full);
    assert_eq!(s.backend().table(Family::Inet, "weft-proxy"), Some(&b));
}

#[test]
fn fake_is_a_backend() {
    fn apply(b: &mut impl Backend, t: &Transaction) -> bool {
        b.apply(t).is_ok()
    }
    let mut f = Fake::new();
    assert!(apply(&mut f, &tx(&["add table ip t"])));
    assert!(f.table(Family::Ip, "t").is_some());
}
