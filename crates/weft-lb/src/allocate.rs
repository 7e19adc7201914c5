//! Addresses for LoadBalancer Services from the pools they may use.
//!
//! [`allocate`] computes the whole assignment from the pools and Services
//! alone, the way weft-proxy compiles its whole table: the addresses a
//! Service shows in `status.loadBalancer.ingress` are the only memory, so
//! any agent (a new leader, a restarted one) computes the same result, and
//! a Service that already holds good addresses keeps them. Services are
//! processed in a fixed order, independent of the order of the inputs
//! (oldest `creationTimestamp` first, then namespace/name); earlier ones win
//! a contested address:
//!
//! 1. Holders: a Service keeps the addresses it holds when they all lie in
//!    one pool it may use (its serviceSelector matches; an autoAssign false
//!    pool only while the Service still asks for them), no earlier holder of
//!    them refuses to share, and, when it asks for addresses, they are the
//!    ones it asks for.
//! 2. Requests (`spec.loadBalancerIP`, annotation
//!    [`ANNOTATION_ADDRESSES`](crate::ANNOTATION_ADDRESSES)):
//!    exactly the addresses asked for, from one pool the Service may use
//!    (autoAssign false pools included). Requests go before automatic
//!    assignment so that a new Service asking for an address is not beaten
//!    to it by a new Service that would have been happy with any.
//! 3. PreferDualStack holders lacking a family (the pool had no free
//!    address of it before) get it from the pool of their other address
//!    when it has one now. (A RequireDualStack Service holding one family
//!    is no holder: it goes to step 4, which keeps its address when it
//!    can.)
//! 4. Automatic: pools with autoAssign whose serviceSelector matches, in
//!    name order, the lowest free address of each family from one pool
//!    (a pool holding an address the Service shows and may keep first).
//!    With a sharing key, an address a compatible Service with the same key
//!    already holds is taken first (from any such pool, before free ones),
//!    so sharers converge on one address.
//!
//! All addresses of one Service come from one pool: a pool meant for
//! dual-stack Services lists ranges of both families (as MetalLB's do), and
//! the pool's nodeSelector applies to all of them. Families: one address
//! per family the Service wants — SingleStack (or unset) the first of
//! `spec.ipFamilies` (IPv4 when unset); RequireDualStack both, or nothing;
//! PreferDualStack the families `spec.ipFamilies` lists, both when one pool
//! has both free, else one of the primary family, else one of the other.
//! A request names exactly the addresses wanted (for RequireDualStack one
//! of each family); nothing is added to it.
//!
//! Release is implicit: a Service that is gone or no longer wants an
//! address ([`wants_address`](fn@crate::wants_address)) is not in the result,
//! and its addresses are free for the next computation. A Service whose
//! request is invalid fails with [`Failure::BadRequest`] and so gives up
//! what it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};

use crate::pool::{from_num, Family, Pool};
use crate::service::{can_share, join, ServiceKey, StackPolicy, SvcInfo};
use crate::{wants_address, ANNOTATION_SHARING_KEY};

/// The addresses one Service gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// One per family, primary family (first of `spec.ipFamilies`) first.
    pub ips: Vec<IpAddr>,
    /// The pool they come from.
    pub pool: String,
}

/// The families a Service could not get addresses of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// SingleStack (or PreferDualStack with one family listed).
    One(Family),
    /// RequireDualStack.
    Both,
    /// PreferDualStack on a dual-stack cluster: any would have done.
    Either,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wanted::One(fam) => write!(f, "{fam}"),
            Wanted::Both => f.write_str("IPv4 and IPv6"),
            Wanted::Either => f.write_str("IPv4 or IPv6"),
        }
    }
}

/// Why a Service that wants an address got none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No pool with autoAssign whose serviceSelector matches has addresses
    /// of the families wanted.
    NoPool {
        service: ServiceKey,
        families: Wanted,
    },
    /// Every such pool is full (`pools` in name order).
    Exhausted {
        service: ServiceKey,
        families: Wanted,
        pools: Vec<String>,
    },
    /// The address asked for is held by a Service it may not share with.
    AddressTaken {
        service: ServiceKey,
        ip: IpAddr,
        by: ServiceKey,
    },
    /// The address asked for is in no pool the Service may use;
    /// `refused_by`: the pools that hold it but whose serviceSelector does
    /// not match the Service.
    AddressNotInPool {
        service: ServiceKey,
        ip: IpAddr,
        refused_by: Vec<String>,
    },
    /// The request (or the Service's families) cannot be met as written.
    BadRequest { service: ServiceKey, what: String },
}

impl Failure {
    /// The Service it is about.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Failure::NoPool { service, .. }
            | Failure::Exhausted { service, .. }
            | Failure::AddressTaken { service, .. }
            | Failure::AddressNotInPool { service, .. }
            | Failure::BadRequest { service, .. } => service,
        }
    }

    /// The `reason` of the Event reporting it (CamelCase, as Kubernetes
    /// event reasons are).
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NoPool { .. } => "NoMatchingPool",
            Failure::Exhausted { .. } => "PoolExhausted",
            Failure::AddressTaken { .. } => "AddressInUse",
            Failure::AddressNotInPool { .. } => "AddressNotInPool",
            Failure::BadRequest { .. } => "InvalidRequest",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoPool { service, families } => write!(
                f,
                "Service {service} gets no load-balancer address: no LoadBalancerIPPool \
                 with autoAssign and a serviceSelector matching the Service has {families} addresses"
            ),
            Failure::Exhausted {
                service,
                families,
                pools,
            } => {
                let (noun, verb) = if pools.len() == 1 {
                    ("LoadBalancerIPPool", "is")
                } else {
                    ("LoadBalancerIPPools", "are")
                };
                write!(
                    f,
                    "Service {service} gets no {families} load-balancer address: {noun} {} {verb} full",
                    join(pools)
                )
            }
            Failure::AddressTaken { service, ip, by } => write!(
                f,
                "Service {service} asks for {ip}, which Service {by} holds; two Services share an \
                 address only with the same {ANNOTATION_SHARING_KEY} annotation, no port and \
                 protocol in common, and the same externalTrafficPolicy (for Local, the same selector)"
            ),
            Failure::AddressNotInPool {
                service,
                ip,
                refused_by,
            } if refused_by.is_empty() => write!(
                f,
                "Service {service} asks for {ip}, which is in no LoadBalancerIPPool"
            ),
            Failure::AddressNotInPool {
                service,
                ip,
                refused_by,
            } => write!(
                f,
                "Service {service} asks for {ip}, which is only in LoadBalancerIPPool{} {}, whose \
                 serviceSelector does not match the Service",
                if refused_by.len() == 1 { "" } else { "s" },
                join(refused_by)
            ),
            Failure::BadRequest { service, what } => write!(f, "Service {service}: {what}"),
        }
    }
}

impl std::error::Error for Failure {}

/// How full a pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Distinct addresses of the pool held by some Service (a shared
    /// address counts once; an address listed by two pools counts in both).
    pub used: u128,
    /// Distinct addresses of the pool (saturating at `u128::MAX`).
    pub total: u128,
}

/// The result of [`allocate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    pub assigned: BTreeMap<ServiceKey, Assignment>,
    pub failed: BTreeMap<ServiceKey, Failure>,
    /// Every pool by name.
    pub usage: BTreeMap<String, PoolUsage>,
}

impl Allocation {
    /// Every assigned address with the Services holding it (sorted).
    pub fn by_address(&self) -> BTreeMap<IpAddr, Vec<ServiceKey>> {
        let mut by: BTreeMap<IpAddr, Vec<ServiceKey>> = BTreeMap::new();
        for (key, a) in &self.assigned {
            for ip in &a.ips {
                by.entry(*ip).or_default().push(key.clone());
            }
        }
        by
    }
}

/// Assigns addresses of `pools` to the `services` that want one (module
/// doc). Pools are taken by name, Services by namespace/name; a duplicate
/// name (which the API never hands out) is dropped.
pub fn allocate(pools: &[Pool], services: &[Service]) -> Allocation {
    let mut pools: Vec<&Pool> = pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    pools.dedup_by(|b, a| a.name == b.name);
    let mut svcs: Vec<SvcInfo> = services
        .iter()
        .filter(|s| wants_address(s))
        .filter_map(SvcInfo::read)
        .collect();
    svcs.sort_by(|a, b| a.key.cmp(&b.key));
    svcs.dedup_by(|b, a| a.key == b.key);
    svcs.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));

    let mut st = State {
        pools: &pools,
        svcs: &svcs,
        spans: pools
            .iter()
            .map(|p| [p.spans(Family::V4), p.spans(Family::V6)])
            .collect(),
        users: BTreeMap::new(),
        assigned: BTreeMap::new(),
        failed: BTreeMap::new(),
    };
    let mut partial = Vec::new();
    let mut requests = Vec::new();
    let mut auto = Vec::new();
    for (i, s) in svcs.iter().enumerate() {
        if let Some(what) = &s.invalid {
            st.fail(
                i,
                Failure::BadRequest {
                    service: s.key.clone(),
                    what: what.clone(),
                },
            );
            continue;
        }
        match st.keep_held(i) {
            Held::Complete => {}
            Held::Partly => partial.push(i),
            Held::No if s.requested.is_empty() => auto.push(i),
            Held::No => requests.push(i),
        }
    }
    for i in requests {
        st.request(i);
    }
    for i in partial {
        st.fill(i);
    }
    for i in auto {
        st.auto(i);
    }

    st.into_allocation()
}

/// What [`State::keep_held`] did.
enum Held {
    /// Not a holder (or its addresses are not good): allocate anew.
    No,
    /// Kept everything it wants.
    Complete,
    /// Kept its addresses, but a family it wants is missing.
    Partly,
}

/// One allocation in progress; services and pools are referred to by their
/// index in the sorted lists.
struct State<'a> {
    pools: &'a [&'a Pool],
    svcs: &'a [SvcInfo],
    /// Per pool, its IPv4 and IPv6 addresses as merged numeric spans.
    spans: Vec<[Vec<(u128, u128)>; 2]>,
    /// Address → the Services holding it, in the order they got it.
    users: BTreeMap<IpAddr, Vec<usize>>,
    /// Service → (pool, addresses in family order).
    assigned: BTreeMap<usize, (usize, Vec<IpAddr>)>,
    failed: BTreeMap<usize, Failure>,
}

impl State<'_> {
    fn into_allocation(self) -> Allocation {
        let usage = self
            .pools
            .iter()
            .map(|p| {
                let used = self.users.keys().filter(|ip| p.contains(**ip)).count() as u128;
                let total = p.total();
                (p.name.clone(), PoolUsage { used, total })
            })
            .collect();
        let key = |i: usize| self.svcs[i].key.clone();
        Allocation {
            assigned: self
                .assigned
                .iter()
                .map(|(&i, (pool, ips))| {
                    let pool = self.pools[*pool].name.clone();
                    (
                        key(i),
                        Assignment {
                            ips: ips.clone(),
                            pool,
                        },
                    )
                })
                .collect(),
            failed: self
                .failed
                .iter()
                .map(|(&i, f)| (key(i), f.clone()))
                .collect(),
            usage,
        }
    }

    fn fail(&mut self, i: usize, f: Failure) {
        self.failed.insert(i, f);
    }

    fn commit(&mut self, i: usize, pool: usize, mut ips: Vec<IpAddr>) {
        let s = &self.svcs[i];
        ips.sort_by_key(|ip| s.rank(ip));
        for ip in &ips {
            self.users.entry(*ip).or_default().push(i);
        }
        self.assigned.insert(i, (pool, ips));
    }

    /// The first holder of `ip` that Service `i` may not share it with.
    fn blocker(&self, i: usize, ip: IpAddr) -> Option<usize> {
        let s = &self.svcs[i];
        self.users
            .get(&ip)
            .into_iter()
            .flatten()
            .copied()
            .find(|u| *u != i && !can_share(s, &self.svcs[*u]))
    }

    fn spans_of(&self, p: usize, f: Family) -> &[(u128, u128)] {
        match f {
            Family::V4 => &self.spans[p][0],
            Family::V6 => &self.spans[p][1],
        }
    }

    /// May Service `i` take pool `p`'s addresses?
    fn serves(&self, p: usize, i: usize) -> bool {
        self.pools[p].serves(&self.svcs[i].labels)
    }

    fn keep_held(&mut self, i: usize) -> Held {
        let svcs = self.svcs;
        let s = &svcs[i];
        if s.held.is_empty() || (!s.requested.is_empty() && s.requested != s.held) {
            return Held::No;
        }
        // RequireDualStack holding one family (its policy changed, or a
        // pool lost its other family): it takes both anew in step 4, its
        // address first if it can (`held_pick`); reserving the one address
        // now could keep it from a request that then fails for nothing.
        if s.policy == StackPolicy::Require && s.held.len() < s.families.len() {
            return Held::No;
        }
        let Some(pool) = (0..self.pools.len()).find(|&p| {
            let pl = self.pools[p];
            s.held.iter().all(|ip| pl.contains(*ip))
                && self.serves(p, i)
                && (pl.auto_assign || !s.requested.is_empty())
        }) else {
            return Held::No;
        };
        if s.held.iter().any(|ip| self.blocker(i, *ip).is_some()) {
            return Held::No;
        }
        self.commit(i, pool, s.held.clone());
        if s.requested.is_empty() && s.held.len() < s.families.len() {
            Held::Partly
        } else {
            Held::Complete
        }
    }

    fn request(&mut self, i: usize) {
        let svcs = self.svcs;
        let s = &svcs[i];
        for ip in &s.requested {
            if !(0..self.pools.len()).any(|p| self.pools[p].contains(*ip) && self.serves(p, i)) {
                let refused_by = self
                    .pools
                    .iter()
                    .filter(|p| p.contains(*ip))
                    .map(|p| p.name.clone())
                    .collect();
                return self.fail(
                    i,
                    Failure::AddressNotInPool {
                        service: s.key.clone(),
                        ip: *ip,
                        refused_by,
                    },
                );
            }
        }
        let Some(pool) = (0..self.pools.len()).find(|&p| {
            s.requested.iter().all(|ip| self.pools[p].contains(*ip)) && self.serves(p, i)
        }) else {
            let what = format!(
                "the addresses asked for ({}) are in different LoadBalancerIPPools; a Service \
                 takes all its addresses from one pool",
                join(&s.requested)
            );
            return self.fail(
                i,
                Failure::BadRequest {
                    service: s.key.clone(),
                    what,
                },
            );
        };
        for ip in &s.requested {
            if let Some(u) = self.blocker(i, *ip) {
                let f = Failure::AddressTaken {
                    service: s.key.clone(),
                    ip: *ip,
                    by: self.svcs[u].key.clone(),
                };
                return self.fail(i, f);
            }
        }
        self.commit(i, pool, s.requested.clone());
    }

    /// Adds the families PreferDualStack holder `i` lacks, from its pool,
    /// when it can.
    fn fill(&mut self, i: usize) {
        let svcs = self.svcs;
        let s = &svcs[i];
        let Some(pool) = self.assigned.get(&i).map(|(p, _)| *p) else {
            return;
        };
        let added: Vec<IpAddr> = s
            .families
            .iter()
            .filter(|f| !s.held.iter().any(|ip| Family::of(ip) == **f))
            .filter_map(|f| self.pick(i, pool, *f))
            .collect();
        for ip in &added {
            self.users.entry(*ip).or_default().push(i);
        }
        if let Some((_, ips)) = self.assigned.get_mut(&i) {
            ips.extend(added);
            ips.sort_by_key(|ip| s.rank(ip));
        }
    }

    fn auto(&mut self, i: usize) {
        let svcs = self.svcs;
        let s = &svcs[i];
        let (wanted, combos): (Wanted, Vec<Vec<Family>>) = match (s.policy, s.families.as_slice()) {
            (StackPolicy::Require, fams) => (Wanted::Both, vec![fams.to_vec()]),
            (StackPolicy::Prefer, &[a, b]) => (Wanted::Either, vec![vec![a, b], vec![a], vec![b]]),
            (_, fams) => {
                let f = fams.first().copied().unwrap_or(Family::V4);
                (Wanted::One(f), vec![vec![f]])
            }
        };
        let candidates: Vec<usize> = (0..self.pools.len())
            .filter(|&p| self.pools[p].auto_assign && self.serves(p, i))
            .collect();
        let mut covering = false;
        let mut full = BTreeSet::new();
        for combo in &combos {
            let covers: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&p| combo.iter().all(|f| self.pools[p].has_family(*f)))
                .collect();
            covering |= !covers.is_empty();
            // A pool where it keeps an address it holds goes first: its
            // holding was not good as a whole, but what can stay, stays.
            for &p in &covers {
                if combo.iter().any(|f| self.held_pick(i, p, *f).is_some()) {
                    let picked: Option<Vec<IpAddr>> =
                        combo.iter().map(|f| self.pick(i, p, *f)).collect();
                    if let Some(ips) = picked {
                        return self.commit(i, p, ips);
                    }
                }
            }
            if s.sharing_key.is_some() {
                for &p in &covers {
                    let shared: Option<Vec<IpAddr>> =
                        combo.iter().map(|f| self.shareable(i, p, *f)).collect();
                    if let Some(ips) = shared {
                        return self.commit(i, p, ips);
                    }
                }
            }
            for &p in &covers {
                let picked: Option<Vec<IpAddr>> =
                    combo.iter().map(|f| self.pick(i, p, *f)).collect();
                match picked {
                    Some(ips) => return self.commit(i, p, ips),
                    None => {
                        full.insert(p);
                    }
                }
            }
        }
        let service = s.key.clone();
        let f = if covering {
            Failure::Exhausted {
                service,
                families: wanted,
                pools: full
                    .into_iter()
                    .map(|p| self.pools[p].name.clone())
                    .collect(),
            }
        } else {
            Failure::NoPool {
                service,
                families: wanted,
            }
        };
        self.fail(i, f);
    }

    /// An address of family `f` in pool `p` for Service `i`: the one it
    /// holds if it may have it, else one it may share, else the lowest free
    /// one.
    fn pick(&self, i: usize, p: usize, f: Family) -> Option<IpAddr> {
        self.held_pick(i, p, f)
            .or_else(|| self.shareable(i, p, f))
            .or_else(|| self.free(p, f))
    }

    /// The address of family `f` Service `i` holds, if pool `p` has it and
    /// nobody holding it refuses to share.
    fn held_pick(&self, i: usize, p: usize, f: Family) -> Option<IpAddr> {
        let s = &self.svcs[i];
        s.held.iter().copied().find(|ip| {
            Family::of(ip) == f && self.pools[p].contains(*ip) && self.blocker(i, *ip).is_none()
        })
    }

    /// The lowest address of family `f` in pool `p` already held, by
    /// Services that all may share it with Service `i`.
    fn shareable(&self, i: usize, p: usize, f: Family) -> Option<IpAddr> {
        let s = &self.svcs[i];
        s.sharing_key.as_ref()?;
        self.spans_of(p, f).iter().find_map(|&(lo, hi)| {
            self.users
                .range(from_num(f, lo)..=from_num(f, hi))
                .find(|(_, us)| {
                    !us.is_empty() && us.iter().all(|u| *u != i && can_share(s, &self.svcs[*u]))
                })
                .map(|(ip, _)| *ip)
        })
    }

    /// The lowest address of family `f` in pool `p` nobody holds.
    fn free(&self, p: usize, f: Family) -> Option<IpAddr> {
        for &(lo, hi) in self.spans_of(p, f) {
            let mut next = Some(lo);
            for ip in self
                .users
                .range(from_num(f, lo)..=from_num(f, hi))
                .map(|(ip, _)| ip)
            {
                match next {
                    Some(n) if from_num(f, n) == *ip => next = n.checked_add(1),
                    _ => break,
                }
            }
            if let Some(n) = next.filter(|n| *n <= hi) {
                return Some(from_num(f, n));
            }
        }
        None
    }
}

/// The patch of the `services/status` subresource that publishes
/// `assignment` (`None`: no address):
/// `{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.1","ipMode":"VIP"}]}}}`.
/// `ipMode: VIP` tells kube-proxy-like proxies (weft-proxy among them) to
/// deliver traffic for the address to the endpoints directly. With `None`
/// the ingress list is empty rather than absent, so the patch clears it as
/// a JSON merge patch and a strategic merge patch alike (an absent field
/// would leave the old addresses in place).
pub fn status_patch(assignment: Option<&Assignment>) -> Value {
    let ingress: Vec<Value> = assignment
        .into_iter()
        .flat_map(|a| &a.ips)
        .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
        .collect();
    json!({"status": {"loadBalancer": {"ingress": ingress}}})
}
