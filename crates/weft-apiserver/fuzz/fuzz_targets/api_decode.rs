//! Request decoding + validation: the first byte picks the resource and
//! media type, the rest is the body `POST` would receive.
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
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let plural = PLURALS[usize::from(sel & 0x7f) % PLURALS.len()];
    let ct = if sel & 0x80 != 0 {
        "application/yaml"
    } else {
        "application/json"
    };
    let _ = weft_apiserver::validate_create(plural, ct, body);
});
