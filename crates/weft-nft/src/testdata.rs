//! A small, hand-written Services-like ruleset shared by the unit tests and
//! the kernel test (it is written the way the proxy compile step will write
//! its table, so the kernel accepts every statement).

use std::time::Duration;

use crate::model::{
    BaseChain, Chain, ChainType, Element, Hook, Priority, Rule, Ruleset, Set, SetFlag, Table,
};
use crate::Family;

pub const WEB: &str = "service-web";
pub const EP1: &str = "endpoint-web-10.244.1.5";
pub const EP2: &str = "endpoint-web-10.244.2.7";

fn base(name: &str, kind: ChainType, hook: Hook, priority: Priority) -> Chain {
    Chain::base(name, BaseChain::new(kind, hook, priority))
}

fn endpoint(name: &str, ip: &str) -> Chain {
    Chain::regular(name)
        .rule(Rule::new(format!("ip saddr {ip} jump mark-for-masquerade")).with_comment("hairpin"))
        .rule(Rule::new("update @affinity-web { ip saddr }"))
        .rule(Rule::new(format!("meta l4proto tcp dnat ip to {ip}:8080")))
}

/// `default/web` (ClusterIP 10.96.0.10:80, NodePort 30080, endpoints
/// 10.244.1.5 and 10.244.2.7 on 8080) and `default/empty` (10.96.0.20:80, no
/// endpoints).
pub fn services() -> Ruleset {
    let mut t = Table::new(Family::Inet, "weft-proxy");
    t.comment = Some("weft Services".into());
    let mut rs = Ruleset::new(t);
    let jump_services = Rule::new("jump services");
    rs.add_chain(
        base(
            "nat-prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            Priority::DSTNAT,
        )
        .rule(jump_services.clone()),
    )
    .add_chain(
        base("nat-output", ChainType::Nat, Hook::Output, Priority::DSTNAT).rule(jump_services),
    )
    .add_chain(
        base(
            "nat-postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            Priority::SRCNAT,
        )
        .rule(Rule::new("jump masquerading")),
    );
    for (name, hook) in [
        ("filter-input", Hook::Input),
        ("filter-forward", Hook::Forward),
        ("filter-output", Hook::Output),
    ] {
        rs.add_chain(
            base(name, ChainType::Filter, hook, Priority::FILTER.offset(-10))
                .rule(Rule::new("ct state new jump service-endpoints-check")),
        );
    }
    rs.add_chain(Chain::regular("service-endpoints-check").rule(Rule::new(
        "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    )))
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
        Chain::regular("reject-chain").rule(Rule::new("reject with icmpx type port-unreachable")),
    )
    .add_chain(
        Chain::regular(WEB)
            .rule(Rule::new(
                "ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            ))
            .rule(Rule::new(format!(
                "numgen random mod 2 vmap {{ 0 : goto {EP1}, 1 : goto {EP2} }}"
            ))),
    )
    .add_chain(
        Chain::regular("external-web")
            .rule(Rule::new("jump mark-for-masquerade"))
            .rule(Rule::new(format!("goto {WEB}"))),
    )
    .add_chain(endpoint(EP1, "10.244.1.5"))
    .add_chain(endpoint(EP2, "10.244.2.7"));

    let svc_key = "ipv4_addr . inet_proto . inet_service";
    rs.add_set(
        Set::map("service-ips", svc_key, "verdict")
            .with_comment("ClusterIP, external IP and LB IP traffic")
            .element(
                Element::map("10.96.0.10 . tcp . 80", format!("goto {WEB}"))
                    .with_comment("default/web:http"),
            ),
    )
    .add_set(
        Set::map("service-nodeports", "inet_proto . inet_service", "verdict")
            .element(Element::map("tcp . 30080", "goto external-web")),
    )
    .add_set(
        Set::map("no-endpoint-services", svc_key, "verdict").element(
            Element::map("10.96.0.20 . tcp . 80", "goto reject-chain")
                .with_comment("default/empty:http"),
        ),
    )
    .add_set(
        Set::new("affinity-web", "ipv4_addr")
            .flag(SetFlag::Dynamic)
            .flag(SetFlag::Timeout)
            .timeout(Duration::from_secs(10800)),
    )
    .add_set(
        Set::new("lb-source-ranges", "ipv4_addr")
            .flag(SetFlag::Interval)
            .element(Element::key("198.51.100.0/24"))
            .element(Element::key("203.0.113.0/25")),
    );
    rs
}
