//! Fuzzes what weft-cni reads on stdin: a plugin's network config (with
//! `ipam`, `runtimeConfig`, `prevResult`, GC's valid attachments) and, when
//! the input is a conflist, each of its plugins as a runtime would hand them
//! over. Nothing may panic, and whatever validates must be self-consistent
//! (ranges allocatable inside themselves, results re-encodable in every
//! version). No kernel, no files.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weft_cni::{config, ipam, nat, spec};

fn one(bytes: &[u8]) {
    let _ = config::peek_version(bytes);
    let Ok(raw) = config::parse(bytes) else {
        return;
    };
    if let Some(prev) = &raw.prev_result {
        if let Ok(result) = spec::CniResult::from_json(prev) {
            for v in spec::SUPPORTED_VERSIONS {
                let _ = result.to_json(v);
            }
        }
    }
    for a in raw.valid_attachments.iter().flatten() {
        assert!(nat::tag(a).len() <= nat::COMMENT_MAX);
    }
    let Ok(cfg) = config::validate(raw) else {
        return;
    };
    let none = std::collections::BTreeSet::new();
    for set in &cfg.range_sets {
        for r in set {
            assert!(r.size() > 0, "validated range without room: {r:?}");
            for last in [None, Some(r.start), Some(r.end), Some(r.gateway)] {
                let a = ipam::next_free(set, &none, last).expect("a validated set has room");
                assert!(a.range.contains(a.ip) && a.ip != a.range.gateway, "{a:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    one(data);
    // A conflist: each plugin gets the list's name and cniVersion, as libcni does.
    let Ok(Value::Object(list)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(Value::Array(plugins)) = list.get("plugins") else {
        return;
    };
    for p in plugins {
        let Value::Object(mut p) = p.clone() else {
            continue;
        };
        for key in ["name", "cniVersion"] {
            if let Some(v) = list.get(key) {
                p.insert(key.to_string(), v.clone());
            }
        }
        if let Ok(bytes) = serde_json::to_vec(&Value::Object(p)) {
            one(&bytes);
        }
    }
});
