//! The compile step: the [`Model`] → the whole desired content of table
//! `inet weft-policy` on one node. Pure and deterministic.
//!
//! Layout (see the crate documentation for hooks and priorities):
//!
//! ```text
//! egress-forward, egress-input   ct established/related accept; jump egress
//! ingress-forward                ct established/related accept; jump ingress
//! egress:  ip saddr vmap @egress-pods4-<D>  (local pods isolated for egress)
//! ingress: ip daddr vmap @ingress-pods4-<D> (local pods isolated for ingress)
//!   → goto in-set-<H> / eg-set-<H>           one chain per distinct set of
//!                                            isolating policies
//!       jump pol-in-<policy> …               one per policy of the set
//!       goto deny-in-<first policy>          counter, NFLOG group 100 (100/s), drop
//! pol-in-<policy>: one rule per rule, family and port kind:
//!   ip saddr @peers4-<D> meta l4proto . th dport @ports-<D> counter accept
//!   ip saddr @… ip daddr . meta l4proto . th dport @named4-<D> counter accept
//! ```
//!
//! Sets are named by a digest `<D>` of their content and never change once
//! written: a new content is a new set, the rules that use it are rewritten
//! and the old set is deleted, in one transaction. Rules with the same
//! peers or ports share one set. Why: nft 1.0 answers any element statement
//! (`add element`, `delete element`) by first reading every element of
//! every set in the ruleset; with the ~2 sets a policy rule needs, at 10,000
//! policies that read took 9 s for a one-element change, while creating a
//! set with its elements stays at milliseconds (weft-nft creates sets with
//! their elements in one statement).
//!
//! A packet costs one map lookup per direction, then the rules of the
//! policies selecting its pod (set lookups each), whatever the number of
//! policies in the cluster. `accept` in a policy chain ends that base chain
//! only, so the ingress chain (a later priority) still runs for traffic
//! between two pods of this node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use weft_nft::{
    BaseChain, Chain, ChainType, Element, Family as NftFamily, Hook, ModelError, Priority, Rule,
    Ruleset, Set, SetFlag, Table,
};
use weft_proxy::names::hashed_name;

use crate::marks::Marks;
use crate::model::{Direction, Model, Peers, Ports, ResolvedPolicy, ResolvedRule};

/// The table weft's NetworkPolicy enforcement owns.
pub const TABLE: &str = "weft-policy";
/// The NFLOG group denied packets are logged to.
pub const NFLOG_GROUP: u16 = 100;
/// How many denied packets per second each deny chain logs (a burst of as
/// many more); the rest are dropped unlogged, counted by the chain's
/// counter, so a flood of denied packets cannot flood the flow log.
pub const NFLOG_RATE: &str = "limit rate 100/second burst 100 packets";
/// The priority of the egress chains (after the proxy's DNAT and its
/// filter chains at -10: policy sees endpoint addresses).
pub const EGRESS_PRIORITY: Priority = Priority::FILTER;
/// The ingress chain runs right after the egress chain in forward.
pub const INGRESS_PRIORITY: Priority = Priority::FILTER.offset(1);

/// The node the table is compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCtx {
    pub node_name: String,
}

/// Sizes of what was programmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub policies: usize,
    /// Local pods isolated for ingress / egress.
    pub isolated_ingress: usize,
    pub isolated_egress: usize,
    pub rules: usize,
    pub elements: usize,
}

/// Everything one compile produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub ruleset: Ruleset,
    pub counts: Counts,
    /// `ns/name: what` for every part of a policy that was ignored.
    pub problems: Vec<String>,
}

/// Why compile produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("node context: node_name must not be empty (local pods are found by it)")]
    NoNode,
    /// A bug in compile: the ruleset it built does not validate.
    #[error("compiled table inet {TABLE} is invalid: {0}")]
    Invalid(#[from] ModelError),
}

/// The readable, hashed base of a policy's chains and sets: weft-proxy's
/// `HASH-readable` names. The hash is of the real key; the readable part
/// keeps only what nft names may hold (an object the API server would have
/// refused must not make the table invalid). For a valid key this is
/// `hash_and_truncate(key)`.
pub fn policy_base(p: &ResolvedPolicy) -> String {
    let key = p.key();
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    hashed_name(&key, &clean)
}

/// Adds `set` under the name `<kind>-<digest of its content>` and returns
/// that name; a set with that content already there is shared.
fn sealed(rs: &mut Ruleset, kind: &str, mut set: Set) -> String {
    set.name = kind.to_string();
    let text = set.add_statement_with_elements(&rs.table);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{kind}-{hex}");
    if !rs.sets.contains_key(&name) {
        set.name = name.clone();
        rs.add_set(set);
    }
    name
}

/// Text safe inside an nft comment or quoted string.
fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '"' | '\\' | ' ' | ';' | '#') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn dir_short(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "in",
        Direction::Egress => "eg",
    }
}

/// `pol-in-<base>`: the chain of a policy's rules in one direction.
pub fn policy_chain(p: &ResolvedPolicy, d: Direction) -> String {
    format!("pol-{}-{}", dir_short(d), policy_base(p))
}

/// `deny-in-<base>`: where packets a policy isolated are counted and dropped.
pub fn deny_chain(p: &ResolvedPolicy, d: Direction) -> String {
    format!("deny-{}-{}", dir_short(d), policy_base(p))
}

/// The chain shared by the pods isolated by exactly `policies`.
fn set_chain(d: Direction, keys: &[String]) -> String {
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-set-{hex}", dir_short(d))
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An address range as an nft element: an address, a prefix or `a-b`.
fn v4_element(lo: u32, hi: u32) -> String {
    if lo == hi {
        return Ipv4Addr::from(lo).to_string();
    }
    let size = u64::from(hi) - u64::from(lo) + 1;
    if size.is_power_of_two() && u64::from(lo).is_multiple_of(size) {
        let len = 32 - size.trailing_zeros();
        return format!("{}/{len}", Ipv4Addr::from(lo));
    }
    format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi))
}

fn v6_element(lo: u128, hi: u128) -> String {
    if lo == hi {
        return Ipv6Addr::from(lo).to_string();
    }
    if lo == 0 && hi == u128::MAX {
        return "::/0".into();
    }
    let size = hi - lo + 1;
    if size.is_power_of_two() && lo.is_multiple_of(size) {
        let len = 128 - size.trailing_zeros();
        return format!("{}/{len}", Ipv6Addr::from(lo));
    }
    format!("{}-{}", Ipv6Addr::from(lo), Ipv6Addr::from(hi))
}

/// Compiles table `inet weft-policy` for `node`, without connection
/// marks.
pub fn compile(model: &Model, node: &NodeCtx) -> Result<Compiled, CompileError> {
    compile_marked(model, node, None)
}

/// Compiles table `inet weft-policy` for `node`; with `marks`, every accept
/// rule of a policy also writes that policy's id into its half of the
/// connection mark (see [`crate::marks`]).
pub fn compile_marked(
    model: &Model,
    node: &NodeCtx,
    marks: Option<&Marks>,
) -> Result<Compiled, CompileError> {
    if node.node_name.is_empty() {
        return Err(CompileError::NoNode);
    }
    let mut rs = skeleton();
    let mut counts = Counts {
        policies: model.policies.len(),
        ..Counts::default()
    };
    let local = |i: usize| model.pod(i).node.as_deref() == Some(node.node_name.as_str());
    let mut problems = Vec::new();
    for p in &model.policies {
        problems.extend(p.problems.iter().map(|e| format!("{}: {e}", p.key())));
    }
    // Policies this node needs: those isolating a local pod.
    let mut needed: BTreeSet<(usize, Direction)> = BTreeSet::new();
    for (&(pod, d), pols) in &model.isolating {
        if !local(pod) || model.pod(pod).ips.is_empty() {
            continue;
        }
        for &pi in pols {
            needed.insert((pi, d));
        }
        match d {
            Direction::Ingress => counts.isolated_ingress += 1,
            Direction::Egress => counts.isolated_egress += 1,
        }
        let keys: Vec<String> = pols.iter().map(|&pi| model.policies[pi].key()).collect();
        let chain = set_chain(d, &keys);
        if !rs.chains.contains_key(&chain) {
            let mut c = Chain::regular(chain.clone());
            for &pi in pols {
                c = c.rule(Rule::new(format!(
                    "jump {}",
                    policy_chain(&model.policies[pi], d)
                )));
            }
            let first = &model.policies[pols[0]];
            c = c.rule(Rule::new(format!("goto {}", deny_chain(first, d))));
            rs.add_chain(c);
        }
        // An address two pods claim (a transient of address reuse) belongs
        // to the one the model gives it to.
        for ip in model
            .pod(pod)
            .ips
            .iter()
            .filter(|ip| model.by_ip.get(ip) == Some(&pod))
        {
            let map = match (d, ip) {
                (Direction::Ingress, IpAddr::V4(_)) => "ingress-pods4",
                (Direction::Ingress, IpAddr::V6(_)) => "ingress-pods6",
                (Direction::Egress, IpAddr::V4(_)) => "egress-pods4",
                (Direction::Egress, IpAddr::V6(_)) => "egress-pods6",
            };
            let set = rs.sets.get_mut(map).expect("skeleton map");
            set.insert(
                Element::map(ip.to_string(), format!("goto {chain}")).with_comment(cut(
                    &clean_text(&model.pod(pod).key()),
                    weft_nft::model::COMMENT_MAX,
                )),
            );
        }
    }
    for &(pi, d) in &needed {
        let p = &model.policies[pi];
        let mark = marks.and_then(|m| m.id(&p.key()));
        add_policy(&mut rs, model, p, d, mark, &local, &mut counts);
    }
    // The pod maps, sealed like every set, and the chains that use them.
    for (chain, maps) in [
        (
            "egress",
            [("ip saddr", "egress-pods4"), ("ip6 saddr", "egress-pods6")],
        ),
        (
            "ingress",
            [
                ("ip daddr", "ingress-pods4"),
                ("ip6 daddr", "ingress-pods6"),
            ],
        ),
    ] {
        let mut c = Chain::regular(chain);
        for (field, map) in maps {
            let set = rs.sets.remove(map).expect("skeleton map");
            let name = sealed(&mut rs, map, set);
            c = c.rule(Rule::new(format!("{field} vmap @{name}")));
        }
        rs.add_chain(c);
    }
    counts.elements = rs.sets.values().map(|s| s.elements.len()).sum();
    rs.validate()?;
    Ok(Compiled {
        ruleset: rs,
        counts,
        problems,
    })
}

fn skeleton() -> Ruleset {
    let mut t = Table::new(NftFamily::Inet, TABLE);
    t.comment = Some("weft NetworkPolicy".into());
    let mut rs = Ruleset::new(t);
    let base = |name: &str, hook: Hook, prio: Priority, to: &str| {
        Chain::base(name, BaseChain::new(ChainType::Filter, hook, prio))
            .rule(Rule::new("ct state established,related accept"))
            .rule(Rule::new(format!("jump {to}")))
    };
    rs.add_chain(base(
        "egress-forward",
        Hook::Forward,
        EGRESS_PRIORITY,
        "egress",
    ))
    .add_chain(base("egress-input", Hook::Input, EGRESS_PRIORITY, "egress"))
    .add_chain(base(
        "ingress-forward",
        Hook::Forward,
        INGRESS_PRIORITY,
        "ingress",
    ));
    // The chains `egress` and `ingress` are added by `compile`, once the
    // maps they look up are complete (and named by their content).
    for (name, ty) in [
        ("egress-pods4", "ipv4_addr"),
        ("egress-pods6", "ipv6_addr"),
        ("ingress-pods4", "ipv4_addr"),
        ("ingress-pods6", "ipv6_addr"),
    ] {
        rs.add_set(Set::map(name, ty, "verdict"));
    }
    rs
}

fn add_policy(
    rs: &mut Ruleset,
    model: &Model,
    p: &ResolvedPolicy,
    d: Direction,
    mark: Option<u16>,
    local: &dyn Fn(usize) -> bool,
    counts: &mut Counts,
) {
    let key = clean_text(&p.key());
    let deny = deny_chain(p, d);
    let prefix = cut(&format!("weft-policy:deny-{}:{key}:", d.as_str()), 120);
    let deny_comment = cut(&format!("{key} isolates: {} denied", d.as_str()), 128);
    rs.add_chain(
        Chain::regular(deny)
            .rule(
                Rule::new(format!(
                    "counter {NFLOG_RATE} log prefix \"{prefix}\" group {NFLOG_GROUP}"
                ))
                .with_comment(deny_comment.clone()),
            )
            .rule(Rule::new("drop").with_comment(deny_comment)),
    );
    // `counter accept`, with this policy's half of the connection mark.
    let accept = match mark {
        Some(id) => format!(
            "counter {} accept",
            crate::marks::set_statement(id, d == Direction::Ingress)
        ),
        None => "counter accept".to_string(),
    };
    let mut chain = Chain::regular(policy_chain(p, d));
    let (peer_field, peer_field6) = match d {
        Direction::Ingress => ("ip saddr", "ip6 saddr"),
        Direction::Egress => ("ip daddr", "ip6 daddr"),
    };
    for r in p.rules(d).unwrap_or_default() {
        let comment = cut(&format!("{key} {}[{}]", d.as_str(), r.index), 128);
        for v6 in [false, true] {
            let field = if v6 { peer_field6 } else { peer_field };
            // The peer match, or None when no peer of this family exists.
            let peers = match &r.peers {
                Peers::All => Some(String::new()),
                Peers::Some { ranges, .. } => {
                    let elems: Vec<String> = if v6 {
                        ranges.v6.iter().map(|(l, h)| v6_element(*l, *h)).collect()
                    } else {
                        ranges.v4.iter().map(|(l, h)| v4_element(*l, *h)).collect()
                    };
                    if elems.is_empty() {
                        None
                    } else {
                        let mut s = Set::new("", if v6 { "ipv6_addr" } else { "ipv4_addr" })
                            .flag(SetFlag::Interval);
                        for e in elems {
                            s.insert(Element::key(e));
                        }
                        let name = sealed(rs, if v6 { "peers6" } else { "peers4" }, s);
                        Some(format!("{field} @{name} "))
                    }
                }
            };
            let Some(peers) = peers else { continue };
            match &r.ports {
                Ports::All => {
                    // A peer-less, port-less rule is family-independent.
                    if v6 && matches!(r.peers, Peers::All) {
                        continue;
                    }
                    chain = chain
                        .rule(Rule::new(format!("{peers}{accept}")).with_comment(comment.clone()));
                    counts.rules += 1;
                }
                Ports::Some { numeric, named } => {
                    if !numeric.is_empty() {
                        let mut s =
                            Set::new("", "inet_proto . inet_service").flag(SetFlag::Interval);
                        for pr in numeric {
                            let ports = if pr.lo == pr.hi {
                                pr.lo.to_string()
                            } else {
                                format!("{}-{}", pr.lo, pr.hi)
                            };
                            s.insert(Element::key(format!("{} . {ports}", pr.proto.as_str())));
                        }
                        let name = sealed(rs, "ports", s);
                        let both = !(v6 && matches!(r.peers, Peers::All));
                        if both {
                            chain = chain.rule(
                                Rule::new(format!(
                                    "{peers}meta l4proto . th dport @{name} {accept}"
                                ))
                                .with_comment(comment.clone()),
                            );
                            counts.rules += 1;
                        }
                    }
                    if !named.is_empty() {
                        let elems = named_elements(model, p, r, d, v6, local);
                        if elems.is_empty() {
                            continue;
                        }
                        let ty = if v6 {
                            "ipv6_addr . inet_proto . inet_service"
                        } else {
                            "ipv4_addr . inet_proto . inet_service"
                        };
                        let mut s = Set::new("", ty);
                        for e in elems {
                            s.insert(Element::key(e));
                        }
                        let name = sealed(rs, if v6 { "named6" } else { "named4" }, s);
                        let dst = if v6 { "ip6 daddr" } else { "ip daddr" };
                        chain = chain.rule(
                            Rule::new(format!(
                                "{peers}{dst} . meta l4proto . th dport @{name} {accept}"
                            ))
                            .with_comment(comment.clone()),
                        );
                        counts.rules += 1;
                    }
                }
            }
        }
    }
    rs.add_chain(chain);
}

/// `addr . proto . port` for every destination pod of `r` with a container
/// port of each named port's name and protocol: the selected local pods
/// (ingress) or the peer pods (egress).
fn named_elements(
    model: &Model,
    p: &ResolvedPolicy,
    r: &ResolvedRule,
    d: Direction,
    v6: bool,
    local: &dyn Fn(usize) -> bool,
) -> BTreeSet<String> {
    let Ports::Some { named, .. } = &r.ports else {
        return BTreeSet::new();
    };
    let dests: Vec<usize> = match d {
        Direction::Ingress => p.selected.iter().copied().filter(|i| local(*i)).collect(),
        Direction::Egress => match &r.peers {
            Peers::All => model
                .by_ip
                .values()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Peers::Some { pods, .. } => pods.iter().copied().collect(),
        },
    };
    let mut out = BTreeSet::new();
    for i in dests {
        let pod = model.pod(i);
        for (proto, name) in named {
            let Some(port) = pod.named_port(name, *proto) else {
                continue;
            };
            for ip in pod.ips.iter().filter(|ip| ip.is_ipv6() == v6) {
                // Egress: the address must be one the peers admit.
                if d == Direction::Egress && !r.peers.admits(*ip) {
                    continue;
                }
                out.insert(format!("{ip} . {} . {port}", proto.as_str()));
            }
        }
    }
    out
}

/// Chain name → (policy key, direction, whether its counters count
/// allowed packets (policy chain) or denied ones (deny chain)).
pub type ChainOwners = BTreeMap<String, (String, Direction, bool)>;

/// Policy chains → the policy's key, for counters read back from the
/// kernel (`nft -j list table`).
pub fn chain_owners(model: &Model) -> ChainOwners {
    let mut out = BTreeMap::new();
    for p in &model.policies {
        for d in [Direction::Ingress, Direction::Egress] {
            out.insert(policy_chain(p, d), (p.key(), d, true));
            out.insert(deny_chain(p, d), (p.key(), d, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_render_as_addresses_prefixes_or_ranges() {
        let a = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(v4_element(a("10.0.0.5"), a("10.0.0.5")), "10.0.0.5");
        assert_eq!(v4_element(a("10.0.0.0"), a("10.0.0.255")), "10.0.0.0/24");
        assert_eq!(
            v4_element(a("10.0.0.1"), a("10.0.0.255")),
            "10.0.0.1-10.0.0.255"
        );
        assert_eq!(v4_element(0, u32::MAX), "0.0.0.0/0");
        assert_eq!(v6_element(0, u128::MAX), "::/0");
    }
}
