//! Pods, Namespaces and NetworkPolicies as any user could write them →
//! the model, compile and the explainer. The input is a JSON array of
//! objects, each decoded by its `kind` (Pod, Namespace, NetworkPolicy).
//! Nothing may panic; what compile builds must validate (an invalid
//! ruleset is a bug in compile, never a property of the input); and for
//! the first pods, the packet tracer over the compiled table must reach
//! the same verdict as the model (what `weft explain` says).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_nft::trace::{self, Packet, Verdict};
use weft_policy::{compile, CompileError, Model, NodeCtx, Proto, Side, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(objects)) = serde_json::from_slice(data) else {
        return;
    };
    let (mut pods, mut nss, mut pols) = (Vec::new(), Vec::new(), Vec::new());
    for o in objects {
        match o.get("kind").and_then(|k| k.as_str()) {
            Some("Pod") => pods.extend(serde_json::from_value(o).ok()),
            Some("Namespace") => nss.extend(serde_json::from_value(o).ok()),
            Some("NetworkPolicy") => pols.extend(serde_json::from_value(o).ok()),
            _ => {}
        }
    }
    let model = Model::build(Snapshot::new(&pods, &nss, &pols));
    let node = NodeCtx {
        node_name: "node-1".into(),
    };
    let c = match compile(&model, &node) {
        Ok(c) => c,
        Err(CompileError::Invalid(e)) => panic!("compile built an invalid ruleset: {e}"),
        Err(e) => panic!("compile failed on a valid node: {e}"),
    };
    let n = model.snapshot.pods.len().min(4);
    for i in 0..n {
        for j in 0..n {
            for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
                let Some(e) = weft_policy::explain(&model, &Side::Pod(i), &Side::Pod(j), proto, 80)
                else {
                    continue;
                };
                let _ = e.render("a", "b");
                let local = |k: usize| model.pod(k).node.as_deref() == Some("node-1");
                // Only a connection whose both ends are this node's is
                // decided by this node's table alone.
                if i == j || !local(i) || !local(j) || e.src == e.dst {
                    continue;
                }
                if model.by_ip.get(&e.src) != Some(&i) || model.by_ip.get(&e.dst) != Some(&j) {
                    continue;
                }
                let p = match proto {
                    Proto::Tcp => trace::Proto::Tcp,
                    Proto::Udp => trace::Proto::Udp,
                    Proto::Sctp => trace::Proto::Sctp,
                };
                let t = trace::trace(&c.ruleset, &Packet::new(e.src, e.dst, p, 80))
                    .unwrap_or_else(|err| panic!("trace: {err}"));
                let accepted = t.verdicts() == [Verdict::Accept].into();
                assert_eq!(accepted, e.allowed(), "ruleset and model disagree: {e:?}");
            }
        }
    }
});
