//! Request decoding + validation: the first byte picks the resource (low 6
//! bits) and media type (JSON, YAML or kube's protobuf envelope), the rest
//! is the body `POST` would receive; in mode 1 the rest is the protobuf
//! object itself, wrapped here in a well-formed envelope naming the kind,
//! so every input reaches the general protobuf decoder.
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
        1 => {
            let Some(kind) = weft_apiserver::kinds::by_plural(plural) else {
                return;
            };
            let env = envelope(&kind.api_version(), kind.kind, body);
            let _ = weft_apiserver::validate_create(plural, PROTOBUF, &env);
            return;
        }
        2 => "application/yaml",
        3 => PROTOBUF,
        _ => "application/json",
    };
    let _ = weft_apiserver::validate_create(plural, ct, body);
});

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag << 3 | 2);
    varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    field(&mut tm, 1, api_version.as_bytes());
    field(&mut tm, 2, kind.as_bytes());
    let mut out = b"k8s\0".to_vec();
    field(&mut out, 1, &tm);
    field(&mut out, 2, raw);
    out
}
