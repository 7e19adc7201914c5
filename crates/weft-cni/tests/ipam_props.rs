//! Property tests of the built-in IPAM: for IPv4 and IPv6 range sets at the
//! bottom, in the middle and at the top of the address space, the allocator
//! never hands out an address twice or outside its range, follows round robin
//! exactly, reports exhaustion with the CNI error, and gives back what it
//! releases. No root needed; each case uses its own temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use weft_cni::config::{self, Attachment, RangeSet};
use weft_cni::ipam::{next_free, Store};
use weft_cni::spec::code;

/// Where in the address space a subnet sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Bottom,
    Middle,
    Top,
}

/// One range: its place, prefix length, and optional rangeStart/rangeEnd
/// offsets from the network address.
#[derive(Debug, Clone)]
struct RangeSpec {
    place: Place,
    prefix: u8,
    start: Option<u32>,
    end: Option<u32>,
}

fn ip(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

fn network(v4: bool, place: Place, prefix: u8) -> u128 {
    let bits = if v4 { 32 } else { 128 };
    let size = 1u128 << (bits - u32::from(prefix));
    match (place, v4) {
        (Place::Bottom, _) => 0,
        (Place::Middle, true) => u128::from(u32::from(Ipv4Addr::new(10, 0, 0, 0))),
        (Place::Middle, false) => u128::from(
            "fd00::"
                .parse::<Ipv6Addr>()
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
        ),
        (Place::Top, true) => u128::from(u32::MAX) + 1 - size,
        (Place::Top, false) => u128::MAX - (size - 1),
    }
}

fn range_json(v4: bool, r: &RangeSpec) -> String {
    let bits: u32 = if v4 { 32 } else { 128 };
    let size = 1u128 << (bits - u32::from(r.prefix));
    let net = network(v4, r.place, r.prefix);
    let mut fields = vec![format!("\"subnet\":\"{}/{}\"", ip(v4, net), r.prefix)];
    let (mut s, mut e) = (r.start.map(u128::from), r.end.map(u128::from));
    if let (Some(a), Some(b)) = (s, e) {
        (s, e) = (Some(a.min(b)), Some(a.max(b)));
    }
    if let Some(s) = s {
        fields.push(format!("\"rangeStart\":\"{}\"", ip(v4, net + s % size)));
    }
    if let Some(e) = e {
        fields.push(format!("\"rangeEnd\":\"{}\"", ip(v4, net + e % size)));
    }
    format!("{{{}}}", fields.join(","))
}

/// Range sets as `validate` resolves them from JSON, or `None` when the
/// generated config is one `validate` rightly refuses (no room for pods).
fn resolve(sets: &[(bool, Vec<RangeSpec>)]) -> Option<Vec<RangeSet>> {
    let ranges: Vec<String> = sets
        .iter()
        .map(|(v4, rs)| {
            let inner: Vec<String> = rs.iter().map(|r| range_json(*v4, r)).collect();
            format!("[{}]", inner.join(","))
        })
        .collect();
    let json = format!(
        r#"{{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{{"ranges":[{}]}}}}"#,
        ranges.join(",")
    );
    let cfg = config::validate(config::parse(json.as_bytes()).ok()?).ok()?;
    Some(cfg.range_sets)
}

/// A range set of one family: one to three ranges at distinct places.
fn set_spec(v4: bool) -> impl Strategy<Value = (bool, Vec<RangeSpec>)> {
    let prefixes = if v4 { 27u8..=30 } else { 123u8..=126 };
    let range = (
        prefixes,
        proptest::option::of(0u32..32),
        proptest::option::of(0u32..32),
    );
    (
        proptest::sample::subsequence(vec![Place::Bottom, Place::Middle, Place::Top], 1..=3),
        proptest::collection::vec(range, 3),
        any::<bool>(),
    )
        .prop_map(move |(places, ranges, reverse)| {
            let mut specs: Vec<RangeSpec> = places
                .into_iter()
                .zip(ranges)
                .map(|(place, (prefix, start, end))| RangeSpec {
                    place,
                    prefix,
                    start,
                    end,
                })
                .collect();
            // Set order matters to round robin; try both.
            if reverse {
                specs.reverse();
            }
            (v4, specs)
        })
}

/// Every address a set may hand out, in round-robin order from its start.
fn candidates(set: &RangeSet) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for r in set {
        let v4 = r.start.is_ipv4();
        for n in config::ip_to_u128(r.start)..=config::ip_to_u128(r.end) {
            let a = ip(v4, n);
            if a != r.gateway {
                out.push(a);
            }
        }
    }
    out
}

fn in_set(set: &RangeSet, a: IpAddr) -> bool {
    set.iter().any(|r| r.contains(a) && a != r.gateway)
}

static CASE: AtomicUsize = AtomicUsize::new(0);

/// A fresh IPAM directory, removed when the case ends (also on failure).
struct TmpDir(PathBuf);

impl TmpDir {
    fn new() -> TmpDir {
        let n = CASE.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("weft-ipam-prop-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TmpDir(d)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn owner(i: u8) -> Attachment {
    Attachment {
        container_id: format!("pod-{i}"),
        ifname: "eth0".into(),
    }
}

fn files(dir: &std::path::Path) -> BTreeSet<IpAddr> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12).prop_map(Op::Allocate),
        1 => (0u8..12).prop_map(Op::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `next_free` is exactly "the first free candidate after `last`,
    /// wrapping": so never taken, never the gateway, never outside the set,
    /// and `None` only when every candidate is taken.
    #[test]
    fn next_free_is_round_robin_within_the_set(
        spec in prop_oneof![set_spec(true), set_spec(false)],
        taken_bits in proptest::collection::vec(any::<bool>(), 0..200),
        last_pick in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let Some(sets) = resolve(&[spec]) else { return Ok(()); };
        let set = &sets[0];
        let all = candidates(set);
        prop_assert_eq!(all.len() as u128, set.iter().map(|r| r.size()).sum::<u128>());
        let taken: BTreeSet<IpAddr> = all
            .iter()
            .zip(taken_bits.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, t)| **t)
            .map(|(a, _)| *a)
            .collect();
        let last = last_pick.map(|i| *i.get(&all));
        let got = next_free(set, &taken, last);

        let from = last.and_then(|l| all.iter().position(|a| *a == l)).map_or(0, |p| p + 1);
        let want = all[from..].iter().chain(&all[..from]).find(|a| !taken.contains(a));
        prop_assert_eq!(got.as_ref().map(|a| a.ip), want.copied());
        if let Some(a) = got {
            prop_assert!(a.range.contains(a.ip) && a.ip != a.range.gateway, "{:?}", a);
            prop_assert!(set.contains(&a.range));
        }
    }

    /// A random life of allocations and releases against the on-disk store:
    /// live addresses are distinct and inside their sets, the files on disk
    /// are exactly the live allocations, exhaustion is code 101 and only
    /// when a set is full, and a release makes room that the next ADD gets.
    #[test]
    fn store_allocations_stay_distinct_in_range_and_round_trip(
        v4_spec in proptest::option::of(set_spec(true)),
        v6_spec in proptest::option::of(set_spec(false)),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let specs: Vec<_> = v4_spec.into_iter().chain(v6_spec).collect();
        if specs.is_empty() { return Ok(()); }
        let Some(sets) = resolve(&specs) else { return Ok(()); };
        let capacity: Vec<usize> = sets.iter().map(|s| candidates(s).len()).collect();
        let dir = TmpDir::new();
        let store = Store::open(&dir.0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut live: BTreeMap<u8, Vec<IpAddr>> = BTreeMap::new();

        for op in ops {
            match op {
                Op::Allocate(i) => {
                    let full = capacity.iter().any(|c| live.len() >= *c);
                    match store.allocate(&sets, &owner(i), &[]) {
                        Ok(allocs) => {
                            let ips: Vec<IpAddr> = allocs.iter().map(|a| a.ip).collect();
                            prop_assert_eq!(ips.len(), sets.len());
                            for (a, set) in allocs.iter().zip(&sets) {
                                prop_assert!(in_set(set, a.ip), "{} outside {:?}", a.ip, set);
                            }
                            if let Some(held) = live.get(&i) {
                                prop_assert_eq!(held, &ips, "a retried ADD must get the same addresses");
                            } else {
                                prop_assert!(!full, "allocated {:?} from a full set", ips);
                                for (other, held) in &live {
                                    for a in &ips {
                                        prop_assert!(!held.contains(a), "{} also held by pod-{}", a, other);
                                    }
                                }
                                live.insert(i, ips);
                            }
                        }
                        Err(e) => {
                            prop_assert!(!live.contains_key(&i), "retried ADD failed: {}", e);
                            prop_assert!(full, "refused with room left: {}", e);
                            prop_assert_eq!(e.code, code::RANGE_EXHAUSTED, "{}", e.msg);
                        }
                    }
                }
                Op::Release(i) => {
                    let mut released = store.release(&owner(i)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    released.sort();
                    let mut held = live.remove(&i).unwrap_or_default();
                    held.sort();
                    prop_assert_eq!(&released, &held);
                    if !held.is_empty() {
                        // Round trip: the room just made is usable at once.
                        let again = store.allocate(&sets, &owner(i), &[]);
                        prop_assert!(again.is_ok(), "{:?}", again.err());
                        let ips = again.map(|a| a.into_iter().map(|a| a.ip).collect()).unwrap_or_default();
                        live.insert(i, ips);
                    }
                }
            }
            let want: BTreeSet<IpAddr> = live.values().flatten().copied().collect();
            prop_assert_eq!(want.len(), live.len() * sets.len(), "an address is held twice");
            prop_assert_eq!(files(&dir.0), want);
        }
    }
}
