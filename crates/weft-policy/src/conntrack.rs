//! Which tracked UDP flows a policy model denies, so the agent can delete
//! their conntrack entries after writing the table.
//!
//! The table accepts `ct state established,related` before any policy, so
//! an edit never cuts a TCP connection that is already up: TCP has an end,
//! and a new connection is checked. UDP has none: an entry lives for as
//! long as its peers keep talking (and 120 s after), so without deleting it a
//! peer that a new policy denies — a DNS client, a media stream, a probe
//! reusing its source port — would keep getting through. Deleting the entry
//! makes the flow's next packet a new one, checked by the table.
//!
//! Only flows this node's table decides are judged: one end is a pod of
//! this node. Flows the node itself started (its own addresses as source)
//! are never checked by the table (they leave through `output`), so they are
//! left alone, as are flows between pods of other nodes (their nodes judge).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::explain::allowed;
use crate::model::{Model, Proto};

/// A tracked UDP flow as policy sees it: the source of its first packet and
/// the address it really went to (after Service DNAT: the source of the
/// replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpFlow {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Judges flows against one model, remembering verdicts per
/// (source, destination, port) so many flows between the same pods cost one
/// evaluation.
pub struct Sweep<'a> {
    model: &'a Model,
    node_name: &'a str,
    node_addrs: &'a HashSet<IpAddr>,
    verdicts: HashMap<(IpAddr, IpAddr, u16), bool>,
}

impl<'a> Sweep<'a> {
    /// `node_addrs`: this node's own addresses (flows from them are the
    /// node's and never checked).
    pub fn new(model: &'a Model, node_name: &'a str, node_addrs: &'a HashSet<IpAddr>) -> Self {
        Sweep {
            model,
            node_name,
            node_addrs,
            verdicts: HashMap::new(),
        }
    }

    fn local_pod(&self, ip: IpAddr) -> bool {
        self.model
            .by_ip
            .get(&ip)
            .is_some_and(|&i| self.model.pod(i).node.as_deref() == Some(self.node_name))
    }

    /// True when the model denies `flow` and this node's table is the one
    /// that would drop it: its conntrack entry should go.
    pub fn denies(&mut self, flow: &UdpFlow) -> bool {
        let (src, dst) = (flow.src.ip(), flow.dst.ip());
        if self.node_addrs.contains(&src) {
            return false;
        }
        if !self.local_pod(src) && !self.local_pod(dst) {
            return false;
        }
        let key = (src, dst, flow.dst.port());
        let model = self.model;
        !*self
            .verdicts
            .entry(key)
            .or_insert_with(|| allowed(model, src, dst, Proto::Udp, key.2))
    }
}
