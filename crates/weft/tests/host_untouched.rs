//! The machine's own (root) network namespace is never written to: its
//! links, addresses, routes, nft ruleset, iptables rules and the sysctls a
//! network plugin would be tempted to change are the same before and after a
//! whole cluster life cycle (up with the overlay and demo pods, traffic
//! across nodes and to the outside, down).

mod common;

use std::process::Command;

use common::*;

/// `cmd args…` in this (root) namespace; empty when the tool is absent.
fn run(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{cmd} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// Drops what the kernel changes by itself (address lifetimes, route
/// expiry, packet counters), keeps everything an agent could write.
fn stable(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut words: Vec<&str> = Vec::new();
            let mut it = l.split_whitespace().peekable();
            while let Some(w) = it.next() {
                match w {
                    "valid_lft" | "preferred_lft" | "expires" => {
                        it.next();
                    }
                    "counter" if it.peek() == Some(&"packets") => {
                        // counter packets N bytes M
                        for _ in 0..4 {
                            it.next();
                        }
                        words.push("counter");
                    }
                    _ if w.starts_with('[') && w.ends_with(']') && w.contains(':') => {
                        words.push("[counters]") // iptables-save's [packets:bytes]
                    }
                    _ => words.push(w),
                }
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const SYSCTLS: &[&str] = &[
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/default/rp_filter",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/all/proxy_arp",
    "net/ipv4/conf/all/send_redirects",
    "net/ipv4/ip_local_port_range",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/all/disable_ipv6",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/core/somaxconn",
];

/// Every part of the root namespace's network state, by name.
fn snapshot() -> Vec<(String, String)> {
    let mut parts = vec![
        ("links".into(), stable(&run("ip", &["-o", "link", "show"]))),
        (
            "addresses".into(),
            stable(&run("ip", &["-o", "addr", "show"])),
        ),
        (
            "ipv4 routes".into(),
            stable(&run("ip", &["-4", "route", "show", "table", "all"])),
        ),
        (
            "ipv6 routes".into(),
            stable(&run("ip", &["-6", "route", "show", "table", "all"])),
        ),
        ("rules".into(), stable(&run("ip", &["rule", "show"]))),
        (
            "nft ruleset".into(),
            stable(&run("nft", &["list", "ruleset"])),
        ),
        ("iptables".into(), stable(&run("iptables-save", &[]))),
    ];
    for s in SYSCTLS {
        let v =
            std::fs::read_to_string(format!("/proc/sys/{s}")).unwrap_or_else(|_| "(absent)".into());
        parts.push((s.to_string(), v.trim().to_string()));
    }
    parts
}

#[test]
fn a_cluster_life_cycle_leaves_the_machines_network_as_it_was() {
    if !root_or_skip("a_cluster_life_cycle_leaves_the_machines_network_as_it_was") {
        return;
    }
    let before = snapshot();
    // The snapshot sees the real thing: the loopback link and its address.
    assert!(before[0].1.contains("lo:"), "{}", before[0].1);
    assert!(before[1].1.contains("127.0.0.1/8"), "{}", before[1].1);

    let c = Cluster::new("hst");
    let demo = repo_root().join("examples/demo.yaml");
    c.ok(&[
        "up",
        "--nodes",
        "2",
        "--backend",
        "vxlan",
        "-f",
        demo.to_str().unwrap(),
    ]);
    // Traffic across nodes and out of the cluster, so NAT and the overlay are in use.
    let ips: Vec<String> = pods(&c)
        .iter()
        .filter(|p| field(p, "/status/phase") == "Running")
        .map(|p| field(p, "/status/podIP").to_string())
        .filter(|ip| !ip.is_empty())
        .collect();
    assert!(ips.len() >= 2, "{ips:?}");
    let out = c.weft(&[
        "exec",
        "--node",
        "node-1",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        &ips[ips.len() - 1],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let during = snapshot();
    c.ok(&["down"]);
    let after = snapshot();

    for (((what, b), (_, d)), (_, a)) in before.iter().zip(&during).zip(&after) {
        assert_eq!(b, d, "{what} of the machine changed while the cluster ran");
        assert_eq!(
            b, a,
            "{what} of the machine changed after the cluster's life cycle"
        );
    }
}
