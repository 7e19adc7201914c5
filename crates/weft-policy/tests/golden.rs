//! Golden tests of the compile step: the exact nft statements compile
//! writes for small worlds, kept in tests/golden/*.nft so a change to the
//! table's layout shows up as a readable diff in review (connection marks
//! included). `WEFT_UPDATE_GOLDEN=1
//! cargo test -p weft-policy --test golden` rewrites them.

mod common;

use common::{model_world, policy, World};
use serde_json::json;
use weft_policy::{compile_marked, Marks, NodeCtx};

/// Compiled with connection marks, as the agent does: every accept rule
/// shows the mark statement of its policy.
fn check(name: &str, w: &World) {
    let model = w.model();
    let mut marks = Marks::default();
    marks.update_for(&model);
    let c = compile_marked(
        &model,
        &NodeCtx {
            node_name: "node-1".into(),
        },
        Some(&marks),
    )
    .unwrap();
    let mut text = c.ruleset.create_statements().join("\n");
    text.push('\n');
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.nft"));
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WEFT_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        text == want,
        "{name}: compile output differs from {}:\n{text}",
        path.display()
    );
}

#[test]
fn golden_without_policies() {
    check("no-policies", &model_world());
}

#[test]
fn golden_default_deny_ingress() {
    check(
        "default-deny",
        &model_world().with(policy("x", "deny", json!({"podSelector": {}}))),
    );
}

#[test]
fn golden_peers_ports_named_ports_and_egress() {
    let w = model_world().with(policy(
        "x",
        "mixed",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}},
                                     {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}],
                            "ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}, {"port": "serve-81-tcp"},
                                      {"port": 82, "protocol": "SCTP"}]}],
               "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                           "ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}),
    ));
    check("mixed", &w);
}
