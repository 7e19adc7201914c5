//! Property: for random rulesets A and B, the diff A → B applied to a fake
//! holding A yields exactly B (and the kernel-like checks of the fake never
//! refuse the order the diff chose).

use proptest::prelude::*;

use crate::model::*;
use crate::{diff, full_sync, Fake, Family};

const CHAINS: &[&str] = &["c0", "c1", "c2", "c3"];
const SETS: &[&str] = &["s0", "s1"];
const MAPS: &[&str] = &["m0", "m1"];

/// The raw choices a ruleset is built from.
#[derive(Debug, Clone)]
struct Spec {
    base_prio: Option<i32>,
    chains: Vec<(bool, Vec<u8>)>,
    sets: Vec<(bool, bool, Vec<u8>)>,
    maps: Vec<(bool, Vec<(u8, u8)>)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(prop::sample::select(vec![-100, -90, 0])),
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(0u8..12, 0..4)),
            CHAINS.len(),
        ),
        prop::collection::vec(
            (
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec(0u8..6, 0..4),
            ),
            SETS.len(),
        ),
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec((0u8..4, 0u8..4), 0..4)),
            MAPS.len(),
        ),
    )
        .prop_map(|(base_prio, chains, sets, maps)| Spec {
            base_prio,
            chains,
            sets,
            maps,
        })
}

fn build(spec: &Spec) -> Ruleset {
    let mut rs = Ruleset::new(Table::new(Family::Inet, "p"));
    let present: Vec<&str> = CHAINS
        .iter()
        .zip(&spec.chains)
        .filter(|(_, (on, _))| *on)
        .map(|(n, _)| *n)
        .collect();
    let sets: Vec<&str> = SETS
        .iter()
        .zip(&spec.sets)
        .filter(|(_, (on, ..))| *on)
        .map(|(n, _)| *n)
        .collect();
    let maps: Vec<&str> = MAPS
        .iter()
        .zip(&spec.maps)
        .filter(|(_, (on, _))| *on)
        .map(|(n, _)| *n)
        .collect();
    // A rule from a small pool, referring only to objects that exist.
    let rule = |i: u8| -> Rule {
        let pick = |names: &[&str]| {
            names
                .get(i as usize % names.len().max(1))
                .map(|s| s.to_string())
        };
        match i % 6 {
            0 => Rule::new("counter"),
            1 => pick(&present).map_or(Rule::new("accept"), |c| Rule::new(format!("jump {c}"))),
            2 => pick(&sets).map_or(Rule::new("drop"), |s| {
                Rule::new(format!("ip saddr @{s} drop"))
            }),
            3 => pick(&maps).map_or(Rule::new("return"), |m| {
                Rule::new(format!("ip daddr vmap @{m}"))
            }),
            4 => Rule::new(format!("tcp dport {} accept", 80 + u16::from(i)))
                .with_comment(format!("r{i}")),
            _ => Rule::new("ip daddr 10.0.0.1 drop"),
        }
    };
    for (name, (on, rules)) in CHAINS.iter().zip(&spec.chains) {
        if *on {
            let mut c = Chain::regular(*name);
            // Only jump "forward" (c0 → c1 …) so no loops arise.
            c.rules = rules
                .iter()
                .map(|r| rule(*r))
                .filter(|r| {
                    !r.expr.starts_with("jump") || r.expr.as_str() > format!("jump {name}").as_str()
                })
                .collect();
            rs.add_chain(c);
        }
    }
    if let Some(p) = spec.base_prio {
        let mut b = Chain::base(
            "pre",
            BaseChain::new(ChainType::Nat, Hook::Prerouting, Priority(p)),
        );
        b.rules = (0..6).map(rule).collect();
        rs.add_chain(b);
    }
    for (name, (on, interval, elems)) in SETS.iter().zip(&spec.sets) {
        if *on {
            let mut s = Set::new(*name, "ipv4_addr");
            if *interval {
                s = s.flag(SetFlag::Interval);
            }
            for e in elems {
                s.insert(Element::key(format!("10.1.0.{e}")));
            }
            rs.add_set(s);
        }
    }
    for (name, (on, elems)) in MAPS.iter().zip(&spec.maps) {
        if *on {
            let mut m = Set::map(*name, "ipv4_addr", "verdict");
            for (k, v) in elems {
                let value = match present.get(*v as usize) {
                    Some(c) => format!("goto {c}"),
                    None => "drop".into(),
                };
                let mut e = Element::map(format!("10.2.0.{k}"), value);
                if k % 2 == 0 {
                    e = e.with_comment(format!("e{k}"));
                }
                m.insert(e);
            }
            rs.add_set(m);
        }
    }
    rs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn diff_applied_to_a_fake_holding_a_yields_b(a in spec(), b in spec()) {
        let (a, b) = (build(&a), build(&b));
        a.validate().unwrap();
        b.validate().unwrap();
        let mut fake = Fake::new();
        fake.apply_tx(&full_sync(&a).unwrap()).unwrap();
        let tx = diff(&a, &b).unwrap();
        if let Err(e) = fake.apply_tx(&tx) {
            panic!("{e}\n--- diff ---\n{}", tx.render());
        }
        prop_assert_eq!(fake.table(Family::Inet, "p"), Some(&b));
        // And the way back.
        let back = diff(&b, &a).unwrap();
        fake.apply_tx(&back).unwrap();
        prop_assert_eq!(fake.table(Family::Inet, "p"), Some(&a));
    }

    #[test]
    fn full_sync_over_any_content_yields_b(a in spec(), b in spec()) {
        let (a, b) = (build(&a), build(&b));
        let mut fake = Fake::new();
        fake.apply_tx(&full_sync(&a).unwrap()).unwrap();
        fake.apply_tx(&full_sync(&b).unwrap()).unwrap();
        prop_assert_eq!(fake.table(Family::Inet, "p"), Some(&b));
    }
}
