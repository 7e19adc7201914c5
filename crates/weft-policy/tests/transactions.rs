//! What a change costs the kernel: the transactions weft-nft's diff makes
//! from one compiled table to the next never hold an element statement
//! (sets are named by their content and created with their elements; nft
//! reads every set of the ruleset before any element statement, seconds at
//! thousands of policies), and touch only what changed.

mod common;

use common::{model_world, pod, policy, World};
use serde_json::json;
use weft_nft::Fake;
use weft_policy::{compile, NodeCtx};

fn node1() -> NodeCtx {
    NodeCtx {
        node_name: "node-1".into(),
    }
}

fn base() -> World {
    model_world()
        .with(policy("x", "deny", json!({"podSelector": {}})))
        .with(policy(
            "x",
            "from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                "ports": [{"protocol": "TCP", "port": 80}]}]}),
        ))
}

/// The statements that turn `a`'s table into `b`'s, checked on the fake
/// kernel (which refuses a wrong order) to give `b`'s table.
fn transaction(a: &World, b: &World) -> Vec<String> {
    let (ta, tb) = (
        compile(&a.model(), &node1()).unwrap().ruleset,
        compile(&b.model(), &node1()).unwrap().ruleset,
    );
    let tx = weft_nft::diff(&ta, &tb).unwrap();
    let mut fake = Fake::new();
    fake.apply_tx(&weft_nft::full_sync(&ta).unwrap()).unwrap();
    fake.apply_tx(&tx).unwrap();
    assert_eq!(
        fake.table(tb.table.family, &tb.table.name),
        Some(&tb),
        "the diff gives the new table"
    );
    tx.statements().to_vec()
}

fn assert_no_element_statement(what: &str, tx: &[String]) {
    assert!(!tx.is_empty(), "{what}: nothing written");
    let elements: Vec<&String> = tx.iter().filter(|s| s.contains(" element ")).collect();
    assert!(elements.is_empty(), "{what}: {elements:#?}");
}

#[test]
fn a_policy_edit_replaces_sets_without_element_statements() {
    let a = base();
    let mut b = base();
    b.policies[1] = policy(
        "x",
        "from-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"protocol": "TCP", "port": 81}]}]}),
    );
    let tx = transaction(&a, &b);
    assert_no_element_statement("port 80 → 81", &tx);
    assert!(
        tx.iter()
            .any(|s| s.starts_with("add set inet weft-policy ports-")),
        "{tx:#?}"
    );
    assert!(
        tx.iter()
            .any(|s| s.starts_with("delete set inet weft-policy ports-")),
        "{tx:#?}"
    );
    // The other policy's chains are not touched.
    assert!(!tx.iter().any(|s| s.contains("x/deny ")), "{tx:#?}");
}

#[test]
fn new_pods_and_relabelled_pods_write_no_element_statement() {
    let a = base();
    let mut b = base();
    b.pods
        .push(pod("x", "d", "10.244.0.40", "node-1", json!({"pod": "d"})));
    assert_no_element_statement("a new pod isolated by x/deny", &transaction(&a, &b));
    // A new peer pod in y: from-y's peers change.
    let mut c = base();
    c.pods
        .push(pod("y", "d", "10.244.1.40", "node-2", json!({"pod": "d"})));
    assert_no_element_statement("a new peer in y", &transaction(&a, &c));
    // x/a relabelled out of from-y: its map entry changes.
    let mut d = base();
    let xa = d
        .pods
        .iter_mut()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some("x") && p.metadata.name.as_deref() == Some("a")
        })
        .unwrap();
    xa.metadata.labels = Some([("pod".to_string(), "e".to_string())].into());
    assert_no_element_statement("x/a relabelled", &transaction(&a, &d));
}

#[test]
fn rules_with_the_same_peers_share_one_set() {
    let w = base().with(policy(
        "x",
        "from-y-too",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"protocol": "TCP", "port": 8080}]}]}),
    ));
    let rs = compile(&w.model(), &node1()).unwrap().ruleset;
    let peers: Vec<&String> = rs
        .sets
        .keys()
        .filter(|n| n.starts_with("peers4-"))
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
}
