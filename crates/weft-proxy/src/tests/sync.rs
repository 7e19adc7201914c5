//! What a sync writes when the cluster changes a little: the transaction
//! weft-nft plans from the last compiled table to the next one touches only
//! the Service that changed (its chains and its map elements), and removing
//! a Service takes its chains away in the order the kernel accepts.

use serde_json::json;
use weft_nft::diff;

use super::*;

fn other() -> Arc<Service> {
    service(
        json!({"metadata": {"namespace": "default", "name": "other"},
        "spec": {"selector": {"app": "other"}, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}),
    )
}

fn slices(web_eps: Vec<Value>) -> Vec<Arc<EndpointSlice>> {
    vec![
        slice_of("web", "web-1", http_port(), web_eps),
        slice_of(
            "other",
            "other-1",
            http_port(),
            vec![
                ready("10.244.2.9", "node-3"),
                ready("10.244.2.10", "node-3"),
            ],
        ),
    ]
}

#[test]
fn a_one_endpoint_change_rewrites_only_that_services_chains_and_elements() {
    let before = build(
        vec![web(json!({})), other()],
        slices(vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")]),
    );
    let after = build(
        vec![web(json!({})), other()],
        slices(vec![
            ready(EP_LOCAL, "node-1"),
            ready("10.244.1.8", "node-2"),
        ]),
    );
    let tx = diff(&before.ruleset, &after.ruleset).unwrap();
    let statements = tx.statements();
    assert!(!statements.is_empty());
    for s in statements {
        assert!(
            s.contains("default/web"),
            "statement outside Service default/web: {s}"
        );
        assert!(!s.contains("default/other"), "{s}");
        assert!(
            !s.contains("add table") && !s.contains("delete table"),
            "{s}"
        );
    }
    // The old endpoint's chain goes, the new one comes, the kept one stays.
    let text = statements.join("\n");
    assert!(
        text.contains("delete chain inet weft-proxy endpoint-"),
        "{text}"
    );
    assert!(text.contains("10.244.1.8"), "{text}");
    assert!(
        !text.contains("add chain inet weft-proxy endpoint-4VJT4MCW"),
        "{text}"
    );
}

#[test]
fn an_unchanged_cluster_writes_nothing() {
    let a = build(
        vec![web(json!({})), other()],
        slices(vec![ready(EP_LOCAL, "node-1")]),
    );
    let b = build(
        vec![other(), web(json!({}))],
        slices(vec![ready(EP_LOCAL, "node-1")]),
    );
    assert!(diff(&a.ruleset, &b.ruleset).unwrap().is_empty());
}

#[test]
fn a_deleted_service_loses_its_elements_before_its_chains() {
    let before = build(
        vec![web(json!({})), other()],
        slices(vec![ready(EP_LOCAL, "node-1")]),
    );
    let after = build(vec![other()], slices(vec![]));
    let tx = diff(&before.ruleset, &after.ruleset).unwrap();
    let st = tx.statements();
    let first_chain_delete = st
        .iter()
        .position(|s| s.starts_with("delete chain"))
        .expect("web's chains are deleted");
    let last_element_delete = st
        .iter()
        .rposition(|s| s.starts_with("delete element"))
        .expect("web's map elements are deleted");
    assert!(last_element_delete < first_chain_delete, "{st:#?}");
    assert!(st.iter().all(|s| !s.contains("default/other")), "{st:#?}");
}
