//! weft's NetworkPolicy enforcement (networking.k8s.io/v1), pure parts:
//! [`model`] resolves NetworkPolicies against Pods and Namespaces as the
//! API defines them, [`compile`] turns the model into the content of table
//! `inet weft-policy` for one node, [`explain`] answers "why was this
//! allowed or dropped?" from the same model. The agent (`weft agent`)
//! applies the table with weft-nft's syncer, as it does for the proxy.
//!
//! Hooks and priorities on a node (all tables weft writes; lower runs first):
//!
//! | table | chain | hook | priority | does |
//! |---|---|---|---|---|
//! | weft-proxy | filter-prerouting-pre-dnat / filter-output-pre-dnat | prerouting / output | dstnat − 10 | loadBalancerSourceRanges |
//! | weft-proxy | nat-prerouting / nat-output | prerouting / output | dstnat (−100) | Service DNAT |
//! | weft-proxy | filter-input / filter-forward / filter-output | input / forward / output | filter − 10 | no-endpoint rejects |
//! | weft-policy | egress-forward, egress-input | forward, input | filter (0) | egress of local pods |
//! | weft-policy | ingress-forward | forward | filter + 1 | ingress to local pods |
//! | weft-proxy, weft-cni | nat-postrouting | postrouting | srcnat (100) | masquerade |
//!
//! So policy sees every connection after Service DNAT, on the pod address
//! and target port, whether the client dialled the pod IP, a ClusterIP or a
//! NodePort; and before masquerade, on the client's own address.
//!
//! What is checked where: a connection between two pods of one node passes
//! `forward` once (egress, then ingress); between nodes, the source node
//! checks egress and the destination node ingress. Traffic from the node
//! itself (probes, hostNetwork pods) to its pods leaves through `output`
//! and is never checked, as the API asks. Same-node pod traffic crosses the
//! node's bridge; it reaches these hooks because bridged IPv4/IPv6 is passed
//! to them (`net.bridge.bridge-nf-call-iptables=1`, what kube-proxy needs
//! too). Replies and related packets of an allowed connection pass
//! (`ct state established,related`); a policy change does not cut TCP or
//! SCTP connections already established. UDP flows have no end, so after
//! each change the agent deletes the conntrack entries of UDP flows the new
//! model denies ([`conntrack`]): their next packet is checked as new.

pub mod compile;
pub mod conntrack;
pub mod explain;
pub mod marks;
pub mod model;

pub use compile::{compile, compile_marked, CompileError, Compiled, Counts, NodeCtx, TABLE};
pub use explain::{allowed, explain, Explanation, Side};
pub use marks::Marks;
pub use model::{Direction, Model, PodInfo, Proto, Snapshot};
