//! Kernel test (root): the typed layer's full sync and diffs, applied by the
//! real `nft` inside a fresh network namespace, leave exactly the desired
//! chains, rules and elements — including the one-transaction delete order
//! (elements, flushes, then chains) that the kernel must accept.

use std::collections::BTreeMap;

use serde_json::Value;
use weft_linux::testns::{root_or_skip, tool_or_skip, TestNs};
use weft_nft::{
    BaseChain, Chain, ChainType, Element, Family, Hook, NftBackend, Priority, Rule, Ruleset, Set,
    SetFlag, SyncKind, Syncer, Table,
};

/// A Services-like table (the unit tests' shape, written independently here).
fn services() -> Ruleset {
    let mut t = Table::new(Family::Inet, "weft-proxy");
    t.comment = Some("weft Services".into());
    let mut rs = Ruleset::new(t);
    let base = |n: &str, k, h, p| Chain::base(n, BaseChain::new(k, h, p));
    rs.add_chain(
        base(
            "nat-prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            Priority::DSTNAT,
        )
        .rule(Rule::new("jump services")),
    )
    .add_chain(
        base("nat-output", ChainType::Nat, Hook::Output, Priority::DSTNAT)
            .rule(Rule::new("jump services")),
    )
    .add_chain(
        base(
            "nat-postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            Priority::SRCNAT,
        )
        .rule(Rule::new("jump masquerading")),
    )
    .add_chain(
        base(
            "filter-forward",
            ChainType::Filter,
            Hook::Forward,
            Priority::FILTER.offset(-10),
        )
        .rule(Rule::new(
            "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        )),
    )
    .add_chain(
        Chain::regular("services")
            .rule(Rule::new(
                "ip daddr . meta l4proto . th dport vmap @service-ips",
            ))
            .rule(Rule::new(
                "fib daddr type local meta l4proto . th dport vmap @service-nodeports",
            )),
    )
    .add_chain(
        Chain::regular("mark-for-masquerade").rule(Rule::new("meta mark set meta mark or 0x4000")),
    )
    .add_chain(
        Chain::regular("masquerading")
            .rule(Rule::new("meta mark & 0x4000 == 0 return"))
            .rule(Rule::new("masquerade")),
    )
    .add_chain(
        Chain::regular("reject-chain").rule(Rule::new("reject with icmpx type admin-prohibited")),
    )
    .add_chain(
        Chain::regular("firewall")
            .rule(Rule::new("ip saddr != @lb-source-ranges drop").with_comment("default/web LB")),
    )
    .add_chain(
        Chain::regular("service-web")
            .rule(Rule::new(
                "ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            ))
            .rule(Rule::new("ip saddr @affinity-web goto endpoint-1"))
            .rule(Rule::new(
                "numgen random mod 2 vmap { 0 : goto endpoint-1, 1 : goto endpoint-2 }",
            )),
    )
    .add_chain(
        Chain::regular("external-web")
            .rule(Rule::new("jump mark-for-masquerade"))
            .rule(Rule::new("goto service-web")),
    );
    for (n, ip) in [("endpoint-1", "10.244.1.5"), ("endpoint-2", "10.244.2.7")] {
        rs.add_chain(
            Chain::regular(n)
                .rule(
                    Rule::new(format!("ip saddr {ip} jump mark-for-masquerade"))
                        .with_comment("hairpin"),
                )
                .rule(Rule::new("update @affinity-web { ip saddr }"))
                .rule(Rule::new(format!("meta l4proto tcp dnat ip to {ip}:8080"))),
        );
    }
    let svc = "ipv4_addr . inet_proto . inet_service";
    rs.add_set(Set::map("service-ips", svc, "verdict").element(
        Element::map("10.96.0.10 . tcp . 80", "goto service-web").with_comment("default/web:http"),
    ))
    .add_set(
        Set::map("service-nodeports", "inet_proto . inet_service", "verdict")
            .element(Element::map("tcp . 30080", "goto external-web")),
    )
    .add_set(
        Set::map("no-endpoint-services", svc, "verdict")
            .element(Element::map("10.96.0.20 . tcp . 80", "goto reject-chain")),
    )
    .add_set(
        Set::new("affinity-web", "ipv4_addr")
            .flag(SetFlag::Dynamic)
            .flag(SetFlag::Timeout)
            .timeout(std::time::Duration::from_secs(10800)),
    )
    .add_set(
        Set::new("lb-source-ranges", "ipv4_addr")
            .flag(SetFlag::Interval)
            .element(Element::key("198.51.100.0/24"))
            .element(Element::key("203.0.113.0/25")),
    )
    .add_set(
        Set::map("endpoint-addrs", "ipv4_addr", "ipv4_addr . inet_service")
            .element(Element::map("10.96.0.10", "10.244.1.5 . 8080")),
    );
    rs
}

/// `services()` with: Service web removed (chains a map element and a
/// numgen vmap point at), a new Service, an element with a new value, a set
/// removed that a rule used, and a base chain with a new priority.
fn changed() -> Ruleset {
    let mut rs = services();
    for c in ["service-web", "external-web", "endpoint-1", "endpoint-2"] {
        rs.chains.remove(c);
    }
    rs.sets.remove("affinity-web");
    rs.sets.remove("lb-source-ranges");
    rs.chains.get_mut("firewall").unwrap().rules = vec![Rule::new("counter")];
    rs.chains
        .get_mut("nat-output")
        .unwrap()
        .base
        .as_mut()
        .unwrap()
        .priority = Priority::DSTNAT.offset(-5);
    rs.add_chain(
        Chain::regular("service-api").rule(Rule::new("meta l4proto tcp reject with tcp reset")),
    );
    let ips = rs.sets.get_mut("service-ips").unwrap();
    ips.elements.clear();
    ips.insert(
        Element::map("10.96.0.30 . tcp . 443", "goto service-api")
            .with_comment("default/api:https"),
    );
    rs.sets
        .get_mut("service-nodeports")
        .unwrap()
        .elements
        .clear();
    rs.sets
        .get_mut("no-endpoint-services")
        .unwrap()
        .insert(Element::map("10.96.0.20 . tcp . 80", "drop"));
    rs.sets
        .get_mut("endpoint-addrs")
        .unwrap()
        .insert(Element::map("10.96.0.10", "10.244.2.7 . 8080"));
    rs
}

/// One JSON value of an element key/value as weft writes it.
fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(Value::Array(parts)) = o.get("concat") {
                parts.iter().map(literal).collect::<Vec<_>>().join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", literal(&p["addr"]), p["len"])
            } else if let Some(Value::Array(r)) = o.get("range") {
                format!("{}-{}", literal(&r[0]), literal(&r[1]))
            } else if let Some(g) = o.get("goto") {
                format!("goto {}", literal(&g["target"]))
            } else if let Some(j) = o.get("jump") {
                format!("jump {}", literal(&j["target"]))
            } else if let Some((k, Value::Null)) = o.iter().next() {
                k.clone() // {"drop": null}
            } else {
                panic!("unexpected element value {v}")
            }
        }
        other => panic!("unexpected element value {other}"),
    }
}

/// What the kernel holds: chain → (base hook+priority, rule comments), and
/// set → elements (key → value, comment).
#[derive(Debug, PartialEq)]
struct Listed {
    chains: BTreeMap<String, ListedChain>,
    sets: BTreeMap<String, BTreeMap<String, ListedElement>>,
}

/// Hook and priority of a base chain, and its rules' comments.
type ListedChain = (Option<(String, i64)>, Vec<Option<String>>);
/// An element's value and comment.
type ListedElement = (Option<String>, Option<String>);

fn listed(ns: &TestNs) -> Listed {
    let out = ns.exec(&["nft", "-j", "list", "table", "inet", "weft-proxy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut l = Listed {
        chains: BTreeMap::new(),
        sets: BTreeMap::new(),
    };
    for item in json["nftables"].as_array().unwrap() {
        if let Some(c) = item.get("chain") {
            let base = c
                .get("hook")
                .map(|h| (h.as_str().unwrap().to_string(), c["prio"].as_i64().unwrap()));
            l.chains
                .insert(c["name"].as_str().unwrap().to_string(), (base, Vec::new()));
        } else if let Some(r) = item.get("rule") {
            let chain = r["chain"].as_str().unwrap();
            let comment = r.get("comment").and_then(Value::as_str).map(str::to_string);
            l.chains.get_mut(chain).unwrap().1.push(comment);
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            let mut elems = BTreeMap::new();
            for e in s
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (key, value) = match e {
                    Value::Array(kv) => (&kv[0], Some(literal(&kv[1]))),
                    k => (k, None),
                };
                let (key, comment) = match key.get("elem") {
                    Some(inner) => (
                        literal(&inner["val"]),
                        inner
                            .get("comment")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    ),
                    None => (literal(key), None),
                };
                elems.insert(key, (value, comment));
            }
            l.sets
                .insert(s["name"].as_str().unwrap().to_string(), elems);
        }
    }
    l
}

fn expected(rs: &Ruleset) -> Listed {
    Listed {
        chains: rs
            .chains
            .values()
            .map(|c| {
                let base = c
                    .base
                    .map(|b| (b.hook.as_str().to_string(), i64::from(b.priority.0)));
                (
                    c.name.clone(),
                    (base, c.rules.iter().map(|r| r.comment.clone()).collect()),
                )
            })
            .collect(),
        sets: rs
            .sets
            .values()
            .map(|s| {
                let elems = s
                    .elements
                    .values()
                    .map(|e| (e.key.clone(), (e.value.clone(), e.comment.clone())))
                    .collect();
                (s.name.clone(), elems)
            })
            .collect(),
    }
}

#[test]
fn full_sync_then_diffs_leave_exactly_the_desired_table() {
    let test = "full_sync_then_diffs_leave_exactly_the_desired_table";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let ns = TestNs::new("nft");
    let (a, b) = (services(), changed());
    let mut syncer = Syncer::new(NftBackend);

    assert_eq!(
        ns.run(|| syncer.sync(&a).map_err(|e| e.to_string())),
        Ok(SyncKind::Full)
    );
    assert_eq!(listed(&ns), expected(&a));

    assert_eq!(
        ns.run(|| syncer.sync(&b).map_err(|e| e.to_string())),
        Ok(SyncKind::Diff)
    );
    assert_eq!(listed(&ns), expected(&b));

    // And back: re-creates chains that map elements and rules point at.
    assert_eq!(
        ns.run(|| syncer.sync(&a).map_err(|e| e.to_string())),
        Ok(SyncKind::Diff)
    );
    assert_eq!(listed(&ns), expected(&a));

    assert_eq!(
        ns.run(|| syncer.sync(&a).map_err(|e| e.to_string())),
        Ok(SyncKind::Unchanged)
    );
}

#[test]
fn full_sync_removes_what_an_older_writer_left() {
    let test = "full_sync_removes_what_an_older_writer_left";
    if !root_or_skip(test) || !tool_or_skip(test, "nft") {
        return;
    }
    let ns = TestNs::new("nft");
    let mut old = weft_nft::Transaction::new();
    old.push("add table inet weft-proxy")
        .push("add chain inet weft-proxy stale")
        .push("add chain inet weft-proxy nat-output { type nat hook output priority 0 ; }")
        .push("add set inet weft-proxy lb-source-ranges { type ipv4_addr ; }");
    ns.run(|| old.apply()).unwrap();
    let a = services();
    let mut syncer = Syncer::new(NftBackend);
    assert_eq!(
        ns.run(|| syncer.sync(&a).map_err(|e| e.to_string())),
        Ok(SyncKind::Full)
    );
    assert_eq!(listed(&ns), expected(&a));
    // weft-nft's own listing agrees on the chains.
    let mine = ns
        .run(|| weft_nft::list_table(Family::Inet, "weft-proxy"))
        .unwrap()
        .unwrap();
    assert_eq!(mine.chains.len(), a.chains.len());
}
