//! Endpoint choice: readiness, terminating fallback, affinity.

use serde_json::json;
use weft_nft::model::Element;

use super::*;

fn web_with(endpoints: Vec<Value>, spec: Value) -> Compiled {
    build(
        vec![web(spec)],
        vec![slice_of("web", "web-1", http_port(), endpoints)],
    )
}

#[test]
fn only_ready_endpoints_are_chosen_uniformly() {
    let c = web_with(
        vec![
            ready(EP_LOCAL, "node-1"),
            ready(EP_REMOTE, "node-2"),
            ep("10.244.2.2", "node-3", false, false, false),
            ep("10.244.2.3", "node-3", false, true, true),
        ],
        json!({}),
    );
    let t = tr(&c, tcp(POD, "10.96.0.10", 80));
    // numgen: one outcome per branch, each endpoint once.
    assert_eq!(t.outcomes.len(), 2);
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
    assert_eq!(c.counts.endpoints, 2);
}

#[test]
fn serving_terminating_endpoints_are_used_only_without_ready_ones() {
    let c = web_with(
        vec![
            ep(EP_LOCAL, "node-1", false, true, true),
            ep(EP_REMOTE, "node-2", false, true, true),
            ep("10.244.2.2", "node-3", false, false, true),
        ],
        json!({}),
    );
    let t = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(targets(&t), ["10.244.0.5:8080", "10.244.1.7:8080"]);
}

#[test]
fn local_policy_falls_back_to_local_terminating_even_when_remote_ready_exist() {
    // Cluster policy picks the ready remote endpoint; Local policy (decided
    // on its own) uses the serving+terminating local one.
    let c = web_with(
        vec![
            ep(EP_LOCAL, "node-1", false, true, true),
            ready(EP_REMOTE, "node-2"),
        ],
        json!({"type": "NodePort", "externalTrafficPolicy": "Local",
               "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
    );
    let internal = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(targets(&internal), ["10.244.1.7:8080"]);
    let external = tr(&c, tcp(CLIENT, NODE_IP, 30080).to_local());
    assert_eq!(targets(&external), ["10.244.0.5:8080"]);
}

#[test]
fn publish_not_ready_addresses_uses_endpoints_regardless_of_readiness() {
    let c = web_with(
        vec![ep(EP_LOCAL, "node-1", false, false, false)],
        json!({"publishNotReadyAddresses": true}),
    );
    assert_eq!(
        targets(&tr(&c, tcp(POD, "10.96.0.10", 80))),
        ["10.244.0.5:8080"]
    );
    let without = web_with(vec![ep(EP_LOCAL, "node-1", false, false, false)], json!({}));
    assert_eq!(
        verdicts(&tr(&without, tcp(POD, "10.96.0.10", 80))),
        [reset()]
    );
}

fn sticky(timeout: Option<i32>) -> Compiled {
    let mut spec = json!({"sessionAffinity": "ClientIP"});
    if let Some(t) = timeout {
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": t}});
    }
    web_with(
        vec![ready(EP_LOCAL, "node-1"), ready(EP_REMOTE, "node-2")],
        spec,
    )
}

#[test]
fn client_ip_affinity_golden() {
    golden("affinity", &sticky(Some(60)));
}

#[test]
fn affinity_sets_time_out_after_timeout_seconds_or_the_default() {
    let timeouts = |c: &Compiled| -> Vec<u64> {
        c.ruleset
            .sets
            .values()
            .filter(|s| s.name.starts_with("affinity-"))
            .map(|s| {
                assert!(s.is_dynamic());
                s.timeout.unwrap().as_secs()
            })
            .collect()
    };
    assert_eq!(timeouts(&sticky(Some(60))), [60, 60]);
    assert_eq!(timeouts(&sticky(None)), [10800, 10800]);
    assert!(timeouts(&web_with(vec![ready(EP_LOCAL, "node-1")], json!({}))).is_empty());
}

#[test]
fn client_recorded_in_an_affinity_set_goes_back_to_its_endpoint() {
    let mut c = sticky(None);
    let fresh = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(fresh.outcomes.len(), 2, "no affinity yet: numgen chooses");
    // What `update @affinity-… { ip saddr }` would have recorded.
    let set = c
        .ruleset
        .sets
        .values_mut()
        .find(|s| s.name.starts_with("affinity-") && s.name.ends_with("__10.244.1.7/8080"))
        .unwrap();
    set.insert(Element::key(POD));
    let t = tr(&c, tcp(POD, "10.96.0.10", 80));
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(targets(&t), ["10.244.1.7:8080"]);
    // Another client still gets either endpoint.
    assert_eq!(
        tr(&c, tcp("10.244.0.99", "10.96.0.10", 80)).outcomes.len(),
        2
    );
}

/// The probability of each endpoint chain, read from the policy chain's
/// cascade (`numgen random mod K 0 goto X` … `goto Y`).
fn cascade_probabilities(c: &Compiled, chain: &str) -> Vec<(String, f64)> {
    let mut left = 1.0;
    let mut out = Vec::new();
    for r in &c.ruleset.chains[chain].rules {
        let w: Vec<&str> = r.expr.split_whitespace().collect();
        match w.as_slice() {
            ["numgen", "random", "mod", k, "0", "goto", x] => {
                let p = left / k.parse::<f64>().unwrap();
                out.push((x.to_string(), p));
                left -= p;
            }
            ["goto", x] => {
                out.push((x.to_string(), left));
                left = 0.0;
            }
            _ => {}
        }
    }
    assert!(left.abs() < 1e-12, "the cascade leaves {left} unassigned");
    out
}

#[test]
fn the_endpoint_cascade_gives_every_endpoint_the_same_probability() {
    for n in [1usize, 2, 3, 7] {
        let eps: Vec<Value> = (0..n)
            .map(|i| ready(&format!("10.244.1.{}", i + 10), "node-2"))
            .collect();
        let c = web_with(eps, json!({}));
        let chain = c
            .ruleset
            .chains
            .keys()
            .find(|k| k.starts_with("service-"))
            .unwrap()
            .clone();
        let probs = cascade_probabilities(&c, &chain);
        assert_eq!(probs.len(), n, "{probs:?}");
        let chains: std::collections::BTreeSet<&String> = probs.iter().map(|(x, _)| x).collect();
        assert_eq!(chains.len(), n, "each endpoint once: {probs:?}");
        for (x, p) in &probs {
            assert!(
                (p - 1.0 / n as f64).abs() < 1e-12,
                "{x}: {p} with {n} endpoints"
            );
        }
        // No set of any kind per Service: the kernel's per-set costs grow
        // with the table (docs/benchmarks.md).
        assert!(
            c.ruleset.sets.keys().all(|s| !s.contains("default/web")),
            "{:?}",
            c.ruleset.sets.keys()
        );
    }
}
