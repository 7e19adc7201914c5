//! A small packet tracer over a [`Ruleset`], for unit tests of compiled
//! rulesets ("pod to a ClusterIP with no endpoints → reject"), in the spirit
//! of kube-proxy's `runPacketFlowTests`.
//!
//! It follows the first packet of a new connection through the table's base
//! chains: `prerouting` (or `output` for a locally generated packet) in
//! priority order, then `input` or `forward`, then `postrouting`; it follows
//! `jump`/`goto`, verdict maps (concatenated keys, prefixes and ranges in
//! elements), `numgen random mod N` (every branch becomes its own outcome),
//! marks, DNAT and masquerade, and reports for each outcome the verdict, the
//! DNAT target, whether masquerade applied, and the chains it went through.
//!
//! It understands only the expression forms weft's compilers write (see
//! [`TraceError::Unsupported`]); anything else is an error naming the
//! expression, so a test can never pass because the tracer skipped a rule.
//! Assumptions: conntrack state is `new`; dynamic sets (affinity) are as the
//! ruleset holds them (usually empty); after a DNAT the new destination is not
//! a local address unless it is the original, local, destination; a packet
//! delivered locally stops after `input`. Simplification: every nat chain of a
//! hook runs (the kernel skips later nat chains once one has bound a NAT), so
//! a table should do its DNAT in one nat chain per hook, as weft's do.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Hook, Policy, Ruleset};

/// Deepest chain nesting followed before the trace reports a loop.
const MAX_DEPTH: usize = 32;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

/// The packet to trace (the first of a connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub dport: u16,
    /// Rules that test a source port fail the trace when this is `None`.
    pub sport: Option<u16>,
    /// The destination is an address of this node (`fib daddr type local`).
    pub dst_local: bool,
    /// Input interface; `iifname` matches compare with it.
    pub iif: Option<String>,
    /// Generated on this node (starts at `output`, not `prerouting`).
    pub local_origin: bool,
}

impl Packet {
    /// A packet arriving from outside (or a pod) with no optional fields.
    pub fn new(src: IpAddr, dst: IpAddr, proto: Proto, dport: u16) -> Self {
        Packet {
            src,
            dst,
            proto,
            dport,
            sport: None,
            dst_local: false,
            iif: None,
            local_origin: false,
        }
    }

    pub fn to_local(mut self) -> Self {
        self.dst_local = true;
        self
    }

    pub fn from_node(mut self) -> Self {
        self.local_origin = true;
        self
    }

    pub fn iif(mut self, name: impl Into<String>) -> Self {
        self.iif = Some(name.into());
        self
    }

    pub fn sport(mut self, port: u16) -> Self {
        self.sport = Some(port);
        self
    }
}

/// The fate of the packet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    /// `reject`, with what follows `with` (`tcp reset`, `icmpx type
    /// port-unreachable`), empty for a plain `reject`.
    Reject(String),
}

/// Where DNAT sent the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dnat {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl fmt::Display for Dnat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, Some(p)) => write!(f, "{a}:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// One possible path of the packet (several when `numgen` chooses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub dnat: Option<Dnat>,
    pub masquerade: bool,
    /// The packet mark at the end.
    pub mark: u32,
    /// The connection mark at the end (`ct mark set`).
    pub ct_mark: u32,
    /// Chains entered, in order.
    pub path: Vec<String>,
    /// The prefixes of the `log` statements passed, in order.
    pub logged: Vec<String>,
}

/// Every possible outcome of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub outcomes: Vec<Outcome>,
}

impl Trace {
    /// The distinct verdicts.
    pub fn verdicts(&self) -> BTreeSet<Verdict> {
        self.outcomes.iter().map(|o| o.verdict.clone()).collect()
    }

    /// The distinct DNAT targets, as `addr:port` text.
    pub fn dnat_targets(&self) -> BTreeSet<String> {
        self.outcomes
            .iter()
            .filter_map(|o| o.dnat.map(|d| d.to_string()))
            .collect()
    }

    /// True when every outcome masquerades.
    pub fn always_masquerades(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.masquerade)
    }

    /// True when no outcome masquerades.
    pub fn never_masquerades(&self) -> bool {
        self.outcomes.iter().all(|o| !o.masquerade)
    }
}

/// Why a trace could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("chain {chain} rule {rule} `{expr}`: unsupported expression at `{at}` (the tracer knows ip/ip6 saddr/daddr, meta l4proto, th/tcp/udp/sctp dport/sport, meta mark, iifname, fib daddr type local, ct state, numgen random mod N, vmap, @set lookups, update @set, counter, log prefix/group, limit rate, accept/drop/reject/return/jump/goto, dnat, masquerade, meta mark set, ct mark set)")]
    Unsupported {
        chain: String,
        rule: usize,
        expr: String,
        at: String,
    },
    #[error("chain {chain} rule {rule} `{expr}`: {why}")]
    Rule {
        chain: String,
        rule: usize,
        expr: String,
        why: String,
    },
    #[error("chain {chain}: {why}")]
    Chain { chain: String, why: String },
}

/// Traces `packet` through `rs`.
pub fn trace(rs: &Ruleset, packet: &Packet) -> Result<Trace, TraceError> {
    let start = St {
        src: packet.src,
        dst: packet.dst,
        dport: packet.dport,
        dst_local: packet.dst_local,
        mark: 0,
        ct_mark: 0,
        dnat: None,
        masquerade: false,
        path: Vec::new(),
        logged: Vec::new(),
    };
    let tracer = Tracer { rs, packet };
    let first = if packet.local_origin {
        Hook::Output
    } else {
        Hook::Prerouting
    };
    let mut outcomes = Vec::new();
    for (st, v) in tracer.hook(first, vec![start])? {
        if v.is_some() {
            outcomes.push((st, v));
            continue;
        }
        // Routing: local delivery goes to input and stops there; everything
        // else is forwarded (or sent) and passes postrouting.
        let after_routing = if packet.local_origin {
            vec![(st, None)]
        } else if st.dst_local {
            tracer.hook(Hook::Input, vec![st])?
        } else {
            tracer.hook(Hook::Forward, vec![st])?
        };
        for (st, v) in after_routing {
            if v.is_some() || (st.dst_local && !packet.local_origin) {
                outcomes.push((st, v));
            } else {
                outcomes.extend(tracer.hook(Hook::Postrouting, vec![st])?);
            }
        }
    }
    Ok(Trace {
        outcomes: outcomes
            .into_iter()
            .map(|(st, v)| Outcome {
                verdict: v.unwrap_or(Verdict::Accept),
                dnat: st.dnat,
                masquerade: st.masquerade,
                mark: st.mark,
                ct_mark: st.ct_mark,
                path: st.path,
                logged: st.logged,
            })
            .collect(),
    })
}

/// The packet's mutable state along one path.
#[derive(Debug, Clone)]
struct St {
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    dst_local: bool,
    mark: u32,
    ct_mark: u32,
    dnat: Option<Dnat>,
    masquerade: bool,
    path: Vec<String>,
    logged: Vec<String>,
}

/// How a chain ended.
#[derive(Debug, Clone)]
enum End {
    /// Fell off the end or `return`: the caller continues.
    Continue,
    Final(Verdict),
}

/// What one rule asks for.
#[derive(Debug, Clone)]
enum Out {
    /// Did not match (or matched without a verdict): next rule.
    Next,
    Jump(String),
    Goto(String),
    Return,
    Final(Verdict),
}

struct Tracer<'a> {
    rs: &'a Ruleset,
    packet: &'a Packet,
}

/// One value a selector yields.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Addr(IpAddr),
    Proto(Proto),
    Port(u16),
    Mark(u32),
    Name(String),
    Num(u32),
}

struct RuleCtx<'a> {
    chain: &'a str,
    rule: usize,
    expr: &'a str,
    toks: Vec<String>,
}

impl RuleCtx<'_> {
    fn unsupported(&self, pos: usize) -> TraceError {
        TraceError::Unsupported {
            chain: self.chain.to_string(),
            rule: self.rule,
            expr: self.expr.to_string(),
            at: self.toks[pos.min(self.toks.len())..].join(" "),
        }
    }

    fn err(&self, why: impl Into<String>) -> TraceError {
        TraceError::Rule {
            chain: self.chain.to_string(),
            rule: self.rule,
            expr: self.expr.to_string(),
            why: why.into(),
        }
    }

    fn tok(&self, pos: usize) -> Option<&str> {
        self.toks.get(pos).map(String::as_str)
    }
}

/// Splits an expression into tokens, with `{ } ,` as tokens of their own.
fn tokenize(expr: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(expr.len() + 8);
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                spaced.push(c);
            }
            '{' | '}' | ',' if !quoted => {
                spaced.push(' ');
                spaced.push(c);
                spaced.push(' ');
            }
            _ => spaced.push(c),
        }
    }
    spaced.split_whitespace().map(str::to_string).collect()
}

/// Words the evaluator knows; a rule with any other word (that is not a
/// literal) is unsupported even where an earlier match would have failed,
/// so a trace never passes by not reading a rule.
const KNOWN_WORDS: &[&str] = &[
    "ip",
    "ip6",
    "saddr",
    "daddr",
    "meta",
    "l4proto",
    "mark",
    "set",
    "or",
    "and",
    "th",
    "tcp",
    "udp",
    "sctp",
    "dport",
    "sport",
    "iifname",
    "fib",
    "type",
    "local",
    "ct",
    "state",
    "new",
    "established",
    "related",
    "invalid",
    "untracked",
    "numgen",
    "random",
    "mod",
    "vmap",
    "counter",
    "update",
    "add",
    "accept",
    "drop",
    "return",
    "continue",
    "reject",
    "with",
    "reset",
    "icmp",
    "icmpx",
    "icmpv6",
    "dnat",
    "to",
    "masquerade",
    "log",
    "prefix",
    "group",
    "limit",
    "rate",
    "burst",
    "packets",
    ".",
    "{",
    "}",
    ",",
    ":",
    "==",
    "!=",
    "&",
    "|",
];

fn precheck(cx: &RuleCtx) -> Result<(), TraceError> {
    let mut i = 0;
    while i < cx.toks.len() {
        let t = cx.toks[i].as_str();
        if t == "jump" || t == "goto" {
            i += 2;
            continue;
        }
        // The word after `icmp… [type]` names an ICMP type.
        if t.starts_with("icmp") && i > 0 && cx.toks[i - 1] == "with" {
            i += if cx.toks.get(i + 1).map(String::as_str) == Some("type") {
                3
            } else {
                2
            };
            continue;
        }
        let literal = t.starts_with('@')
            || t.starts_with('"')
            || t.starts_with('[')
            || t.chars().next().is_some_and(|c| c.is_ascii_digit())
            || t.contains(':')
            || t.split(',').all(|w| KNOWN_WORDS.contains(&w) && w != ",");
        if !literal && !KNOWN_WORDS.contains(&t) {
            return Err(cx.unsupported(i));
        }
        i += 1;
    }
    Ok(())
}

fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Does a literal (element key part, rule operand) match a value?
fn literal_matches(lit: &str, v: &Val) -> Option<bool> {
    let lit = lit.trim();
    Some(match v {
        Val::Addr(a) => {
            if let Some((lo, hi)) = lit.split_once('-') {
                let (lo, hi): (IpAddr, IpAddr) = (lo.parse().ok()?, hi.parse().ok()?);
                lo <= *a && *a <= hi
            } else if lit.contains('/') {
                lit.parse::<IpNet>().ok()?.contains(a)
            } else {
                lit.parse::<IpAddr>().ok()? == *a
            }
        }
        Val::Proto(p) => lit == p.as_str() || parse_num(lit) == Some(u32::from(p.number())),
        Val::Port(p) => match lit.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u16, u16) = (lo.parse().ok()?, hi.parse().ok()?);
                lo <= *p && *p <= hi
            }
            None => lit.parse::<u16>().ok()? == *p,
        },
        Val::Mark(m) | Val::Num(m) => parse_num(lit)? == *m,
        Val::Name(n) => {
            let want = lit.trim_matches('"');
            match want.strip_suffix('*') {
                Some(prefix) => n.starts_with(prefix),
                None => n == want,
            }
        }
    })
}

/// Does a (possibly concatenated) literal key match the values?
fn key_matches(key: &str, vals: &[Val]) -> Option<bool> {
    let parts: Vec<&str> = key.split(" . ").collect();
    if parts.len() != vals.len() {
        return Some(false);
    }
    for (p, v) in parts.iter().zip(vals) {
        if !literal_matches(p, v)? {
            return Some(false);
        }
    }
    Some(true)
}

impl<'a> Tracer<'a> {
    /// Runs every base chain of `hook` in priority order over each state.
    fn hook(&self, hook: Hook, states: Vec<St>) -> Result<Vec<(St, Option<Verdict>)>, TraceError> {
        let mut chains: Vec<_> = self
            .rs
            .chains
            .values()
            .filter_map(|c| c.base.map(|b| (b, c)))
            .filter(|(b, _)| b.hook == hook)
            .collect();
        chains.sort_by_key(|(b, c)| (b.priority, c.name.clone()));
        let mut live: Vec<St> = states;
        let mut done = Vec::new();
        for (base, chain) in chains {
            let mut next = Vec::new();
            for st in live {
                for (st, end) in self.chain(&chain.name, st, 0)? {
                    match end {
                        End::Final(Verdict::Accept) => next.push(st),
                        End::Final(v) => done.push((st, Some(v))),
                        End::Continue => match base.policy {
                            Policy::Accept => next.push(st),
                            Policy::Drop => done.push((st, Some(Verdict::Drop))),
                        },
                    }
                }
            }
            live = next;
        }
        done.extend(live.into_iter().map(|st| (st, None)));
        Ok(done)
    }

    fn chain(&self, name: &str, mut st: St, depth: usize) -> Result<Vec<(St, End)>, TraceError> {
        if depth > MAX_DEPTH {
            return Err(TraceError::Chain {
                chain: name.to_string(),
                why: format!("more than {MAX_DEPTH} nested jumps (a loop?)"),
            });
        }
        if !self.rs.chains.contains_key(name) {
            return Err(TraceError::Chain {
                chain: name.to_string(),
                why: "no such chain".into(),
            });
        }
        st.path.push(name.to_string());
        self.rules(name, 0, st, depth)
    }

    fn rules(
        &self,
        chain: &str,
        idx: usize,
        st: St,
        depth: usize,
    ) -> Result<Vec<(St, End)>, TraceError> {
        let Some(rule) = self.rs.chains.get(chain).and_then(|c| c.rules.get(idx)) else {
            return Ok(vec![(st, End::Continue)]);
        };
        let ctx = RuleCtx {
            chain,
            rule: idx,
            expr: &rule.expr,
            toks: tokenize(&rule.expr),
        };
        precheck(&ctx)?;
        let mut out = Vec::new();
        for (st, o) in self.eval(&ctx, 0, st)? {
            match o {
                Out::Next => out.extend(self.rules(chain, idx + 1, st, depth)?),
                Out::Return => out.push((st, End::Continue)),
                Out::Final(v) => out.push((st, End::Final(v))),
                Out::Jump(target) => {
                    for (st, end) in self.chain(&target, st, depth + 1)? {
                        match end {
                            End::Final(v) => out.push((st, End::Final(v))),
                            End::Continue => out.extend(self.rules(chain, idx + 1, st, depth)?),
                        }
                    }
                }
                Out::Goto(target) => out.extend(self.chain(&target, st, depth + 1)?),
            }
        }
        Ok(out)
    }

    /// Evaluates the rule's tokens from `pos`.
    fn eval(&self, cx: &RuleCtx, pos: usize, mut st: St) -> Result<Vec<(St, Out)>, TraceError> {
        let Some(t) = cx.tok(pos) else {
            return Ok(vec![(st, Out::Next)]);
        };
        let next = |n: usize| cx.tok(pos + n);
        match t {
            "counter" => self.eval(cx, pos + 1, st),
            "limit" => {
                // `limit rate N/UNIT [burst M packets]`: the tracer follows
                // one packet, which is always within any limit.
                let rate = next(2).unwrap_or_default();
                let unit_ok = rate.split_once('/').is_some_and(|(n, u)| {
                    n.parse::<u32>().is_ok()
                        && matches!(u, "second" | "minute" | "hour" | "day" | "week")
                });
                if next(1) != Some("rate") || !unit_ok {
                    return Err(cx.err("limit must be `limit rate N/second|minute|hour|day|week`"));
                }
                let mut at = pos + 3;
                if cx.tok(at) == Some("burst") {
                    cx.tok(at + 1)
                        .and_then(parse_num)
                        .ok_or_else(|| cx.err("limit burst without a number"))?;
                    if cx.tok(at + 2) != Some("packets") {
                        return Err(cx.err("limit burst must count packets"));
                    }
                    at += 3;
                }
                self.eval(cx, at, st)
            }
            "log" => {
                // `log [prefix "P"] [group N]`: no effect on the packet.
                let mut at = pos + 1;
                let mut prefix = String::new();
                loop {
                    match cx.tok(at) {
                        Some("prefix") => {
                            let p = cx
                                .tok(at + 1)
                                .ok_or_else(|| cx.err("log prefix without text"))?;
                            if !(p.len() >= 2 && p.starts_with('"') && p.ends_with('"')) {
                                return Err(cx.err("log prefix must be one quoted word"));
                            }
                            prefix = p.trim_matches('"').to_string();
                            at += 2;
                        }
                        Some("group") => {
                            cx.tok(at + 1)
                                .and_then(parse_num)
                                .ok_or_else(|| cx.err("log group without a number"))?;
                            at += 2;
                        }
                        _ => break,
                    }
                }
                st.logged.push(prefix);
                self.eval(cx, at, st)
            }
            "accept" => Ok(vec![(st, Out::Final(Verdict::Accept))]),
            "drop" => Ok(vec![(st, Out::Final(Verdict::Drop))]),
            "return" => Ok(vec![(st, Out::Return)]),
            "jump" | "goto" => {
                let target = next(1).ok_or_else(|| cx.err("jump/goto without a chain"))?;
                let o = if t == "jump" {
                    Out::Jump(target.to_string())
                } else {
                    Out::Goto(target.to_string())
                };
                self.expect_end(cx, pos + 2)?;
                Ok(vec![(st, o)])
            }
            "reject" => {
                let with = match next(1) {
                    None => String::new(),
                    Some("with") => {
                        let rest = cx.toks[pos + 2..].join(" ");
                        let known = ["tcp reset"];
                        // `icmpx type X` or (newer nft) `icmpx X`, likewise icmp, icmpv6.
                        let typed = ["icmpx ", "icmp ", "icmpv6 "].iter().any(|p| {
                            rest.strip_prefix(p)
                                .map(|ty| ty.strip_prefix("type ").unwrap_or(ty))
                                .is_some_and(|ty| !ty.is_empty() && !ty.contains(' '))
                        });
                        if !known.contains(&rest.as_str()) && !typed {
                            return Err(cx.unsupported(pos));
                        }
                        rest
                    }
                    Some(_) => return Err(cx.unsupported(pos + 1)),
                };
                if with == "tcp reset" && self.packet.proto != Proto::Tcp {
                    return Err(cx.err("`reject with tcp reset` reached by a non-TCP packet (nft would refuse such a rule without a tcp match)"));
                }
                Ok(vec![(st, Out::Final(Verdict::Reject(with)))])
            }
            "masquerade" => {
                self.expect_end(cx, pos + 1)?;
                st.masquerade = true;
                Ok(vec![(st, Out::Final(Verdict::Accept))])
            }
            "dnat" => self.dnat(cx, pos, st),
            "update" | "add" if next(1).is_some_and(|s| s.starts_with('@')) => {
                // `update @set { ip saddr }`: records affinity; no effect on
                // this packet. Skip the braces.
                if next(2) != Some("{") {
                    return Err(cx.unsupported(pos));
                }
                let close = cx.toks[pos..]
                    .iter()
                    .position(|t| t == "}")
                    .ok_or_else(|| cx.err("unclosed {"))?;
                self.eval(cx, pos + close + 1, st)
            }
            "meta" if next(1) == Some("mark") && next(2) == Some("set") => {
                let (mark, used) = match (next(3), next(4), next(5), next(6)) {
                    (Some("meta"), Some("mark"), Some("or" | "|"), Some(n)) => {
                        (st.mark | parse_num(n).ok_or_else(|| cx.err("bad mark"))?, 7)
                    }
                    (Some(n), ..) => (parse_num(n).ok_or_else(|| cx.unsupported(pos + 3))?, 4),
                    _ => return Err(cx.unsupported(pos)),
                };
                st.mark = mark;
                self.eval(cx, pos + used, st)
            }
            "fib" => {
                if next(1) != Some("daddr") || next(2) != Some("type") {
                    return Err(cx.unsupported(pos));
                }
                let (neg, at) = if next(3) == Some("!=") {
                    (true, 4)
                } else {
                    (false, 3)
                };
                if next(at) != Some("local") {
                    return Err(cx.unsupported(pos + at));
                }
                if st.dst_local != neg {
                    self.eval(cx, pos + at + 1, st)
                } else {
                    Ok(vec![(st, Out::Next)])
                }
            }
            "ct" if next(1) == Some("mark") && next(2) == Some("set") => {
                // `ct mark set N` or `ct mark set ct mark and A or B`.
                let (mark, used) = match (next(3), next(4), next(5), next(6), next(7), next(8)) {
                    (
                        Some("ct"),
                        Some("mark"),
                        Some("and" | "&"),
                        Some(a),
                        Some("or" | "|"),
                        Some(b),
                    ) => {
                        let a = parse_num(a).ok_or_else(|| cx.unsupported(pos + 6))?;
                        let b = parse_num(b).ok_or_else(|| cx.unsupported(pos + 8))?;
                        ((st.ct_mark & a) | b, 9)
                    }
                    (Some(n), ..) if parse_num(n).is_some() => (parse_num(n).unwrap_or(0), 4),
                    _ => return Err(cx.unsupported(pos + 3)),
                };
                st.ct_mark = mark;
                self.eval(cx, pos + used, st)
            }
            "ct" => {
                if next(1) != Some("state") {
                    return Err(cx.unsupported(pos));
                }
                let (neg, at) = if next(2) == Some("!=") {
                    (true, 3)
                } else {
                    (false, 2)
                };
                let (states, used) = self.operand_list(cx, pos + at)?;
                let known = ["new", "established", "related", "invalid", "untracked"];
                if let Some(bad) = states.iter().find(|s| !known.contains(&s.as_str())) {
                    return Err(cx.err(format!("unknown ct state {bad:?}")));
                }
                // The tracer follows the first packet of a connection.
                let is_new = states.iter().any(|s| s == "new");
                if is_new != neg {
                    self.eval(cx, pos + at + used, st)
                } else {
                    Ok(vec![(st, Out::Next)])
                }
            }
            _ => self.selector_expr(cx, pos, st),
        }
    }

    fn expect_end(&self, cx: &RuleCtx, pos: usize) -> Result<(), TraceError> {
        if pos < cx.toks.len() {
            Err(cx.unsupported(pos))
        } else {
            Ok(())
        }
    }

    /// `x`, `a,b` or `{ a, b }` → values and tokens used.
    fn operand_list(&self, cx: &RuleCtx, pos: usize) -> Result<(Vec<String>, usize), TraceError> {
        match cx.tok(pos) {
            Some("{") => {
                let close = cx.toks[pos..]
                    .iter()
                    .position(|t| t == "}")
                    .ok_or_else(|| cx.err("unclosed {"))?;
                let items = cx.toks[pos + 1..pos + close]
                    .iter()
                    .filter(|t| *t != ",")
                    .cloned()
                    .collect();
                Ok((items, close + 1))
            }
            Some(t) => Ok((t.split(',').map(str::to_string).collect(), 1)),
            None => Err(cx.err("expected a value")),
        }
    }

    fn dnat(&self, cx: &RuleCtx, pos: usize, mut st: St) -> Result<Vec<(St, Out)>, TraceError> {
        let mut at = pos + 1;
        if matches!(cx.tok(at), Some("ip" | "ip6")) {
            at += 1;
        }
        if cx.tok(at) != Some("to") {
            return Err(cx.unsupported(pos));
        }
        let target = cx
            .tok(at + 1)
            .ok_or_else(|| cx.err("dnat without a target"))?;
        self.expect_end(cx, at + 2)?;
        let bad = || {
            cx.err(format!(
                "dnat target {target:?}: expected ADDR, ADDR:PORT or [ADDR6]:PORT"
            ))
        };
        let d = if let Some(rest) = target.strip_prefix('[') {
            let (a, p) = rest.split_once("]:").ok_or_else(bad)?;
            Dnat {
                addr: a.parse().map_err(|_| bad())?,
                port: Some(p.parse().map_err(|_| bad())?),
            }
        } else if let Ok(a) = target.parse::<IpAddr>() {
            Dnat {
                addr: a,
                port: None,
            }
        } else {
            let (a, p) = target.rsplit_once(':').ok_or_else(bad)?;
            Dnat {
                addr: a.parse().map_err(|_| bad())?,
                port: Some(p.parse().map_err(|_| bad())?),
            }
        };
        if d.addr != st.dst {
            st.dst_local = false;
        }
        st.dst = d.addr;
        if let Some(p) = d.port {
            st.dport = p;
        }
        st.dnat = Some(d);
        Ok(vec![(st, Out::Final(Verdict::Accept))])
    }

    /// One field's possible values (numgen has several); `None` when the
    /// field does not apply to the packet (an `ip` match on IPv6, `tcp
    /// dport` on UDP), and the match fails.
    fn field(
        &self,
        cx: &RuleCtx,
        pos: usize,
        st: &St,
    ) -> Result<(Option<Vec<Val>>, usize), TraceError> {
        let a = cx.tok(pos).unwrap_or_default();
        let b = cx.tok(pos + 1).unwrap_or_default();
        let p = self.packet;
        let one = |v: Val| Some(vec![v]);
        Ok(match (a, b) {
            ("ip" | "ip6", "saddr" | "daddr") => {
                let addr = if b == "saddr" { st.src } else { st.dst };
                let fits = matches!((a, addr), ("ip", IpAddr::V4(_)) | ("ip6", IpAddr::V6(_)));
                (if fits { one(Val::Addr(addr)) } else { None }, 2)
            }
            ("meta", "l4proto") => (one(Val::Proto(p.proto)), 2),
            ("meta", "mark") => (one(Val::Mark(st.mark)), 2),
            ("th" | "tcp" | "udp" | "sctp", "dport" | "sport") => {
                let fits = a == "th" || a == p.proto.as_str();
                let port = if b == "dport" {
                    Some(st.dport)
                } else {
                    p.sport
                };
                let Some(port) = port else {
                    return Err(
                        cx.err("the rule tests a source port; give the packet one (Packet::sport)")
                    );
                };
                (if fits { one(Val::Port(port)) } else { None }, 2)
            }
            ("iifname", _) => (one(Val::Name(p.iif.clone().unwrap_or_default())), 1),
            ("numgen", "random") => {
                if cx.tok(pos + 2) != Some("mod") {
                    return Err(cx.unsupported(pos));
                }
                let n = cx
                    .tok(pos + 3)
                    .and_then(parse_num)
                    .filter(|n| *n > 0 && *n <= 4096)
                    .ok_or_else(|| cx.err("numgen random mod N needs 1 ≤ N ≤ 4096"))?;
                (Some((0..n).map(Val::Num).collect()), 4)
            }
            _ => return Err(cx.unsupported(pos)),
        })
    }

    /// `SELECTOR [. SELECTOR…] (vmap … | [==|!=] operand | & M == V)`.
    fn selector_expr(
        &self,
        cx: &RuleCtx,
        pos: usize,
        st: St,
    ) -> Result<Vec<(St, Out)>, TraceError> {
        // Each alternative is one tuple of values (numgen multiplies them).
        let mut tuples: Option<Vec<Vec<Val>>> = Some(vec![Vec::new()]);
        let mut at = pos;
        loop {
            let (vals, used) = self.field(cx, at, &st)?;
            tuples = match (tuples, vals) {
                (Some(ts), Some(vs)) => Some(
                    ts.iter()
                        .flat_map(|t| {
                            vs.iter().map(move |v| {
                                let mut t = t.clone();
                                t.push(v.clone());
                                t
                            })
                        })
                        .collect(),
                ),
                _ => None,
            };
            at += used;
            if cx.tok(at) == Some(".") {
                at += 1;
                continue;
            }
            break;
        }
        let arity = tuples.as_ref().map(|t| t.first().map_or(0, Vec::len));
        let Some(tuples) = tuples else {
            // A field does not apply: the rule cannot match (the rule's
            // words were checked for support before evaluation).
            return Ok(vec![(st, Out::Next)]);
        };
        let mut out = Vec::new();
        match cx.tok(at) {
            Some("vmap") => {
                for t in &tuples {
                    match self.vmap_lookup(cx, at + 1, t)? {
                        Some(verdict) => {
                            let (o, _) = self.verdict_words(cx, &verdict)?;
                            out.push((st.clone(), o));
                        }
                        None => out.push((st.clone(), Out::Next)),
                    }
                }
            }
            Some("&" | "and") => {
                let mask = cx
                    .tok(at + 1)
                    .and_then(parse_num)
                    .ok_or_else(|| cx.err("bad mask"))?;
                let (neg, vpos) = match cx.tok(at + 2) {
                    Some("==") => (false, at + 3),
                    Some("!=") => (true, at + 3),
                    _ => (false, at + 2),
                };
                let want = cx
                    .tok(vpos)
                    .and_then(parse_num)
                    .ok_or_else(|| cx.err("bad mark value"))?;
                for t in &tuples {
                    let Some(Val::Mark(m)) = t.first().filter(|_| t.len() == 1) else {
                        return Err(cx.unsupported(pos));
                    };
                    if ((m & mask) == want) != neg {
                        out.extend(self.eval(cx, vpos + 1, st.clone())?);
                    } else {
                        out.push((st.clone(), Out::Next));
                    }
                }
            }
            _ => {
                let (neg, opos) = match cx.tok(at) {
                    Some("!=") => (true, at + 1),
                    Some("==") => (false, at + 1),
                    _ => (false, at),
                };
                let (items, used) = self.operand_list(cx, opos)?;
                for t in &tuples {
                    let hit = if let [one] = items.as_slice() {
                        if let Some(set) = one.strip_prefix('@') {
                            self.set_contains(cx, set, t)?
                        } else {
                            self.literal_hit(cx, one, t, arity)?
                        }
                    } else {
                        let mut hit = false;
                        for i in &items {
                            hit |= self.literal_hit(cx, i, t, arity)?;
                        }
                        hit
                    };
                    if hit != neg {
                        out.extend(self.eval(cx, opos + used, st.clone())?);
                    } else {
                        out.push((st.clone(), Out::Next));
                    }
                }
            }
        }
        Ok(out)
    }

    fn literal_hit(
        &self,
        cx: &RuleCtx,
        lit: &str,
        t: &[Val],
        arity: Option<usize>,
    ) -> Result<bool, TraceError> {
        if arity != Some(1) {
            return Err(cx.err(format!(
                "a concatenation compared with literal {lit:?}; use a set"
            )));
        }
        key_matches(lit, t)
            .ok_or_else(|| cx.err(format!("cannot read {lit:?} as a value of this field")))
    }

    fn set_contains(&self, cx: &RuleCtx, name: &str, t: &[Val]) -> Result<bool, TraceError> {
        let set = self
            .rs
            .sets
            .get(name)
            .ok_or_else(|| cx.err(format!("@{name} does not exist")))?;
        if set.is_map() {
            return Err(cx.err(format!("@{name} is a map; a membership test needs a set")));
        }
        for key in set.elements.keys() {
            if key_matches(key, t)
                .ok_or_else(|| cx.err(format!("set {name}: cannot read element {key:?}")))?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The verdict text for a key in `@map` or `{ k : v, … }`; `None` on a miss.
    fn vmap_lookup(
        &self,
        cx: &RuleCtx,
        at: usize,
        t: &[Val],
    ) -> Result<Option<String>, TraceError> {
        match cx.tok(at) {
            Some(m) if m.starts_with('@') => {
                self.expect_end(cx, at + 1)?;
                let name = &m[1..];
                let map = self
                    .rs
                    .sets
                    .get(name)
                    .filter(|s| s.value_type.as_deref() == Some("verdict"))
                    .ok_or_else(|| cx.err(format!("@{name} is not a verdict map of this table")))?;
                for e in map.elements.values() {
                    if key_matches(&e.key, t)
                        .ok_or_else(|| cx.err(format!("map {name}: cannot read key {:?}", e.key)))?
                    {
                        return Ok(e.value.clone());
                    }
                }
                Ok(None)
            }
            Some("{") => {
                let close = cx.toks[at..]
                    .iter()
                    .position(|t| t == "}")
                    .ok_or_else(|| cx.err("unclosed {"))?;
                self.expect_end(cx, at + close + 1)?;
                let inner = cx.toks[at + 1..at + close].join(" ");
                for item in inner.split(',') {
                    let (k, v) = item.split_once(" : ").ok_or_else(|| {
                        cx.err(format!(
                            "vmap item {:?}: expected KEY : VERDICT",
                            item.trim()
                        ))
                    })?;
                    if key_matches(k, t)
                        .ok_or_else(|| cx.err(format!("cannot read vmap key {k:?}")))?
                    {
                        return Ok(Some(v.trim().to_string()));
                    }
                }
                Ok(None)
            }
            _ => Err(cx.unsupported(at)),
        }
    }

    fn verdict_words(&self, cx: &RuleCtx, v: &str) -> Result<(Out, usize), TraceError> {
        let w: Vec<&str> = v.split_whitespace().collect();
        Ok(match w.as_slice() {
            ["accept"] => (Out::Final(Verdict::Accept), 1),
            ["drop"] => (Out::Final(Verdict::Drop), 1),
            ["return"] => (Out::Return, 1),
            ["continue"] => (Out::Next, 1),
            ["jump", c] => (Out::Jump(c.to_string()), 2),
            ["goto", c] => (Out::Goto(c.to_string()), 2),
            _ => return Err(cx.err(format!("unsupported verdict {v:?} in a map"))),
        })
    }
}
