//! Kernel test (root): a compiled ruleset covering every construct compile
//! writes (verdict maps, set chains, peer interval sets of both families,
//! protocol-port interval sets, named-port concatenations, NFLOG) is
//! accepted by the real `nft` in a fresh network namespace; the table holds
//! exactly the compiled chains; and one policy edit is applied as a small
//! incremental transaction that the kernel also accepts.

mod common;

use common::{model_world, pod, policy};
use serde_json::json;
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};
use weft_nft::{Family, NftBackend, SyncKind, Syncer};
use weft_policy::NodeCtx;

fn world() -> common::World {
    let mut w = model_world();
    w.pods.push(pod(
        "x",
        "six",
        "fd00:10:244::20",
        "node-1",
        json!({"pod": "six"}),
    ));
    w.with(policy("x", "deny", json!({"podSelector": {}})))
        .with(policy(
            "x",
            "mixed",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}},
                                         {"ipBlock": {"cidr": "fd00::/8"}},
                                         {"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                "ports": [{"port": 80, "endPort": 90, "protocol": "UDP"}, {"port": "serve-81-tcp"},
                                          {"port": 82, "protocol": "SCTP"}]}, {}],
                   "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}),
        ))
}

#[test]
fn nft_accepts_a_compiled_policy_table_and_an_incremental_edit() {
    let test = "nft_accepts_a_compiled_policy_table_and_an_incremental_edit";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let node = NodeCtx {
        node_name: "node-1".into(),
    };
    let w = world();
    // With connection marks, as the agent compiles: nft must take the
    // mark statements too.
    let mut marks = weft_policy::Marks::default();
    let model = w.model();
    marks.update_for(&model);
    let compiled = weft_policy::compile_marked(&model, &node, Some(&marks)).unwrap();
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
    let rs = compiled.ruleset;
    let ns = TestNs::new("policy");
    let mut syncer = Syncer::new(NftBackend);
    assert_eq!(
        ns.run(|| syncer.sync(&rs).map_err(|e| e.to_string())),
        Ok(SyncKind::Full)
    );
    let listed = ns
        .run(|| weft_nft::list_table(Family::Inet, weft_policy::TABLE))
        .unwrap()
        .expect("table exists after the sync");
    let mut chains = listed.chains.clone();
    chains.sort();
    assert_eq!(chains, rs.chains.keys().cloned().collect::<Vec<_>>());
    let rules: usize = rs.chains.values().map(|c| c.rules.len()).sum();
    assert_eq!(listed.rules.len(), rules);

    // Edit one policy: only its objects change, in an incremental write.
    let mut edited = world();
    edited.policies[1] = policy(
        "x",
        "mixed",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
    );
    let edited_model = edited.model();
    marks.update_for(&edited_model);
    let rs2 = weft_policy::compile_marked(&edited_model, &node, Some(&marks))
        .unwrap()
        .ruleset;
    let tx = weft_nft::diff(&rs, &rs2).unwrap();
    let text = tx.statements().join("\n");
    assert!(
        !text.contains("deny-in-") || text.contains("mixed"),
        "{text}"
    );
    assert!(
        tx.statements().iter().all(|s| !s.contains("/deny")),
        "the other policy is untouched:\n{text}"
    );
    assert_eq!(
        ns.run(|| syncer.sync(&rs2).map_err(|e| e.to_string())),
        Ok(SyncKind::Diff)
    );
}
