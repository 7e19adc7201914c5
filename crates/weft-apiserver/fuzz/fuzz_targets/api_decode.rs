//! Request decoding + validation: the first byte picks the resource (low 6
//! bits) and media type (JSON, YAML or kube's protobuf envelope), the rest
//! is the body `POST` would receive.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PLURALS: &[&str] = &[
    "pods",
    "services",
    "nodes",
    "namespaces",
    "deployments",
    "statefulsets",
    "replicasets",
    "endpointslices",
    "configmaps",
    "secrets",
    "networkpolicies",
    "ingresses",
    "serviceaccounts",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let plural = PLURALS[usize::from(sel & 0x3f) % PLURALS.len()];
    let ct = match sel >> 6 {
        2 => "application/yaml",
        3 => "application/vnd.kubernetes.protobuf",
        _ => "application/json",
    };
    let _ = weft_apiserver::validate_create(plural, ct, body);
});
