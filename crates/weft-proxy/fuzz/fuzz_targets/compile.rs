//! Services and EndpointSlices as any user (or a buggy controller) could
//! write them → compile. The input is a JSON array of objects; each one
//! that decodes as a Service (has `spec`) or an EndpointSlice (has
//! `endpoints` or `addressType`) goes into the snapshot. Compile must never
//! panic, and what it builds must always validate (`CompileError::Invalid`
//! is a bug in compile, never a property of the input).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weft_proxy::{compile, CompileError, NodeCtx, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(objects)) = serde_json::from_slice(data) else {
        return;
    };
    let mut snap = Snapshot::default();
    for o in objects {
        if o.get("spec").is_some() {
            if let Ok(s) = serde_json::from_value(o) {
                snap.services.push(Arc::new(s));
            }
        } else if o.get("endpoints").is_some() || o.get("addressType").is_some() {
            if let Ok(s) = serde_json::from_value(o) {
                snap.endpoint_slices.push(Arc::new(s));
            }
        }
    }
    let node = NodeCtx {
        node_name: "node-1".into(),
        node_ips: vec!["192.168.1.10".parse().unwrap(), "fd00:1::10".parse().unwrap()],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        embedded: false,
    };
    match compile(&snap, &node) {
        Ok(c) => {
            if let Err(e) = c.ruleset.validate() {
                panic!("compiled ruleset does not validate: {e}");
            }
        }
        Err(CompileError::Invalid(e)) => panic!("compile built an invalid ruleset: {e}"),
        Err(e) => panic!("compile failed on a valid node: {e}"),
    }
});
