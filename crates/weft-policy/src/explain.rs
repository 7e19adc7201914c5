//! `weft explain`: the verdict of the [`Model`] for one connection, with
//! its reasons — which policies select each side, which rule allows the
//! connection, or why none does. The compiled ruleset is built from the same
//! model (and tests hold the two to the same verdicts), so the answer is
//! what the kernel does.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::model::{Direction, Model, Peers, Ports, Proto, ResolvedRule};

/// One side of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A pod (index into the snapshot's pods).
    Pod(usize),
    /// An address that is no pod's (a node, something outside).
    Addr(IpAddr),
}

/// The verdict for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Half {
    pub allowed: bool,
    /// Policies (`ns/name`) isolating the pod of this side; empty: not
    /// isolated.
    pub isolated_by: Vec<String>,
    /// The rule that allows, as `ns/name ingress[i]`.
    pub allowed_by: Option<String>,
    pub reasons: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub port: u16,
    pub egress: Half,
    pub ingress: Half,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        self.egress.allowed && self.ingress.allowed
    }

    /// The text `weft explain` prints.
    pub fn render(&self, from: &str, to: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{from} ({}) → {to} ({}) port {}/{}: {}",
            self.src,
            self.dst,
            self.port,
            self.proto,
            if self.allowed() { "ALLOWED" } else { "DENIED" }
        );
        for (what, h) in [("egress of", &self.egress), ("ingress to", &self.ingress)] {
            let who = if what == "egress of" { from } else { to };
            let verdict = if h.allowed { "allowed" } else { "denied" };
            let _ = writeln!(s, "  {what} {who}: {verdict}");
            for r in &h.reasons {
                let _ = writeln!(s, "    {r}");
            }
        }
        s
    }
}

/// An address of `side` of the family of `other` when it has one.
fn address(model: &Model, side: &Side, like: Option<IpAddr>) -> Option<IpAddr> {
    match side {
        Side::Addr(a) => Some(*a),
        Side::Pod(i) => {
            let ips = &model.pod(*i).ips;
            match like {
                Some(l) => ips.iter().find(|ip| ip.is_ipv4() == l.is_ipv4()).copied(),
                None => ips.first().copied(),
            }
        }
    }
}

/// Why `r` does not admit the connection (`None`: it admits it).
fn mismatch(
    r: &ResolvedRule,
    peer: IpAddr,
    dst_pod: Option<&crate::model::PodInfo>,
    proto: Proto,
    port: u16,
) -> Option<String> {
    if !r.peers.admits(peer) {
        let n = match &r.peers {
            Peers::All => 0,
            Peers::Some { ranges, .. } => ranges.v4.len() + ranges.v6.len(),
        };
        let ranges = if n == 1 { "range" } else { "ranges" };
        return Some(format!(
            "{peer} is not one of its peers ({n} address {ranges})"
        ));
    }
    if r.admits(peer, dst_pod, proto, port) {
        return None;
    }
    let Ports::Some { numeric, named } = &r.ports else {
        return None;
    };
    let mut listed: Vec<String> = numeric
        .iter()
        .map(|p| {
            if p.lo == p.hi {
                format!("{}/{}", p.lo, p.proto)
            } else {
                format!("{}-{}/{}", p.lo, p.hi, p.proto)
            }
        })
        .collect();
    for (pr, n) in named {
        let resolved = dst_pod
            .and_then(|d| d.named_port(n, *pr))
            .map_or("not a port of the destination".to_string(), |p| {
                p.to_string()
            });
        listed.push(format!("{n:?}/{pr} (= {resolved})"));
    }
    Some(format!(
        "port {port}/{proto} is not one of {}",
        listed.join(", ")
    ))
}

fn half(
    model: &Model,
    d: Direction,
    isolated_pod: Option<usize>,
    peer: IpAddr,
    dst_pod: Option<usize>,
    proto: Proto,
    port: u16,
) -> Half {
    let Some(pod) = isolated_pod else {
        return Half {
            allowed: true,
            isolated_by: Vec::new(),
            allowed_by: None,
            reasons: vec!["not a pod: NetworkPolicy does not apply".into()],
        };
    };
    let info = model.pod(pod);
    if info.host_network {
        return Half {
            allowed: true,
            isolated_by: Vec::new(),
            allowed_by: None,
            reasons: vec![format!(
                "{} uses the host network: its traffic is its node's, which policies do not isolate",
                info.key()
            )],
        };
    }
    let pols = model.isolating(pod, d);
    if pols.is_empty() {
        return Half {
            allowed: true,
            isolated_by: Vec::new(),
            allowed_by: None,
            reasons: vec![format!(
                "{} is not isolated for {} (no policy selecting it has policyType {})",
                info.key(),
                d.as_str(),
                match d {
                    Direction::Ingress => "Ingress",
                    Direction::Egress => "Egress",
                }
            )],
        };
    }
    let dst_info = dst_pod.map(|i| model.pod(i));
    let mut reasons = Vec::new();
    let isolated_by: Vec<String> = pols.iter().map(|&i| model.policies[i].key()).collect();
    reasons.push(format!(
        "{} is isolated for {} by {}",
        info.key(),
        d.as_str(),
        isolated_by.join(", ")
    ));
    for &pi in pols {
        let p = &model.policies[pi];
        let rules = p.rules(d).unwrap_or_default();
        if rules.is_empty() {
            reasons.push(format!("{}: no {} rules (denies all)", p.key(), d.as_str()));
        }
        for r in rules {
            let name = format!("{} {}[{}]", p.key(), d.as_str(), r.index);
            match mismatch(r, peer, dst_info, proto, port) {
                None => {
                    reasons.push(format!("{name} allows it"));
                    return Half {
                        allowed: true,
                        isolated_by,
                        allowed_by: Some(name),
                        reasons,
                    };
                }
                Some(why) => reasons.push(format!("{name}: {why}")),
            }
        }
    }
    reasons.push("no rule allows it".into());
    Half {
        allowed: false,
        isolated_by,
        allowed_by: None,
        reasons,
    }
}

/// Explains a connection from `from` to `to` on `proto`/`port`; `None`
/// when a pod side has no address yet.
pub fn explain(
    model: &Model,
    from: &Side,
    to: &Side,
    proto: Proto,
    port: u16,
) -> Option<Explanation> {
    let dst = address(model, to, None)?;
    let src = address(model, from, Some(dst))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let from_pod = match from {
        Side::Pod(i) => Some(*i),
        Side::Addr(a) => model.by_ip.get(a).copied(),
    };
    let to_pod = match to {
        Side::Pod(i) => Some(*i),
        Side::Addr(a) => model.by_ip.get(a).copied(),
    };
    Some(Explanation {
        src,
        dst,
        proto,
        port,
        egress: half(model, Direction::Egress, from_pod, dst, to_pod, proto, port),
        ingress: half(model, Direction::Ingress, to_pod, src, to_pod, proto, port),
    })
}

/// The model's verdict for a new connection between two addresses.
pub fn allowed(model: &Model, src: IpAddr, dst: IpAddr, proto: Proto, port: u16) -> bool {
    explain(model, &Side::Addr(src), &Side::Addr(dst), proto, port).is_some_and(|e| e.allowed())
}
