//! Kernel test (root): a compiled ruleset covering every construct compile
//! writes (NodePort, external and load-balancer IPs, source ranges,
//! affinity sets, Local policies, dual-stack, a Service without endpoints)
//! is accepted by the real `nft` inside a fresh network namespace, and the
//! table it leaves holds exactly the compiled chains.

use std::sync::Arc;

use serde_json::json;
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};
use weft_nft::{Family, NftBackend, SyncKind, Syncer};
use weft_proxy::{compile, NodeCtx, Snapshot};

fn snapshot() -> Snapshot {
    let svc = |v| Arc::new(serde_json::from_value(v).unwrap());
    let web = svc(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                 "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                 "externalIPs": ["192.168.1.100"], "sessionAffinity": "ClientIP",
                 "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
                 "loadBalancerSourceRanges": ["198.51.100.0/24", "10.0.0.0/8", "10.1.0.0/16"],
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                           {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"},
                           {"name": "sig", "port": 9999, "protocol": "SCTP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}, {"ip": "2001:db8::10"}]}},
    }));
    let empty = svc(json!({
        "metadata": {"namespace": "default", "name": "empty"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "internalTrafficPolicy": "Local",
                 "ports": [{"port": 80, "nodePort": 30090}]},
    }));
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                       {"name": "dns", "port": 5353, "protocol": "UDP"},
                       {"name": "sig", "port": 9000, "protocol": "SCTP"}]);
    let slice = |name: &str, family: &str, a: &str, b: &str| {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": name,
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": family,
                "ports": ports,
                "endpoints": [{"addresses": [a], "nodeName": "node-1"},
                              {"addresses": [b], "nodeName": "node-2"}],
            }))
            .unwrap(),
        )
    };
    Snapshot {
        services: vec![web, empty],
        endpoint_slices: vec![
            slice("web-4", "IPv4", "10.244.0.5", "10.244.1.7"),
            slice("web-6", "IPv6", "fd00:10:244::5", "fd00:10:244:1::7"),
        ],
    }
}

#[test]
fn nft_accepts_a_compiled_ruleset() {
    let test = "nft_accepts_a_compiled_ruleset";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let node = NodeCtx {
        node_name: "node-1".into(),
        node_ips: vec![
            "192.168.1.10".parse().unwrap(),
            "fd00:1::10".parse().unwrap(),
        ],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        embedded: true,
    };
    let compiled = compile(&snapshot(), &node).unwrap();
    assert!(compiled.skipped.is_empty(), "{:?}", compiled.skipped);
    let rs = compiled.ruleset;
    let ns = TestNs::new("proxy");
    let mut syncer = Syncer::new(NftBackend);
    assert_eq!(
        ns.run(|| syncer.sync(&rs).map_err(|e| e.to_string())),
        Ok(SyncKind::Full)
    );
    let listed = ns
        .run(|| weft_nft::list_table(Family::Inet, weft_proxy::TABLE))
        .unwrap()
        .expect("table exists after the sync");
    let mut chains = listed.chains.clone();
    chains.sort();
    let want: Vec<String> = rs.chains.keys().cloned().collect();
    assert_eq!(chains, want);
    let rules: usize = rs.chains.values().map(|c| c.rules.len()).sum();
    assert_eq!(listed.rules.len(), rules);
    assert_eq!(
        ns.run(|| syncer.sync(&rs).map_err(|e| e.to_string())),
        Ok(SyncKind::Unchanged)
    );
}
