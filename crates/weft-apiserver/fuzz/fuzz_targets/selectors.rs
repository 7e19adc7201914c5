//! Label and field selector parsing (and matching what parsed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_apiserver::selector::{FieldSelector, LabelSelector};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let obj = serde_json::json!({"metadata": {"name": "a", "namespace": "b", "labels": {"app": "web", "tier": "x"}},
                                 "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
    if let Ok(l) = LabelSelector::parse(s) {
        let _ = l.matches(&obj);
    }
    for plural in ["pods", "services", "events", "nodes"] {
        if let Ok(f) = FieldSelector::parse(s, plural) {
            let _ = f.matches(&obj);
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
        let _ = LabelSelector::from_json(&v);
    }
});
