//! weft-cni's nftables table (`inet weft-cni`): masquerade for `ipMasq` and
//! DNAT for hostPorts. Compiling statements is pure; [`apply`] and
//! [`remove`] run them.
//!
//! Layout (rules of one attachment are tagged with a comment, see [`tag`], so
//! DEL and GC find exactly theirs):
//!
//! ```text
//! table inet weft-cni
//!   prerouting  (nat, dstnat)   fib daddr type local jump hostports
//!   output      (nat, dstnat)   fib daddr type local jump hostports
//!   postrouting (nat, srcnat)   mark 0x2000 → masquerade (hairpin); jump masq
//!   hostports                   jump hp-<hash>            comment "<id>/<ifname>"
//!   hp-<hash>                   [ip saddr <pod subnet> mark 0x2000] dnat to <pod>:<port>
//!   masq                        ip saddr <pod> ip daddr != <cluster> masquerade  comment "<id>/<ifname>"
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use weft_nft::{quote, Family, ListedTable, Transaction};

use crate::config::{Attachment, HostPort};
use crate::invocation::{validate_container_id, validate_ifname};
use crate::spec::{code, CniError};

pub const TABLE: &str = "weft-cni";
const FAMILY: Family = Family::Inet;
/// Packet mark for hostPort traffic from a pod's own subnet, which must be
/// masqueraded or the reply would skip the node's conntrack (hairpin).
pub const HAIRPIN_MARK: u32 = 0x2000;

/// nft refuses rule comments longer than this (`NFTNL_UDATA_COMMENT_MAXLEN`).
pub const COMMENT_MAX: usize = 128;

/// Start of a hashed tag; verbatim tags never start with it (a container ID
/// cannot contain ':').
const HASHED_PREFIX: &str = "h:";
/// Hex digits of SHA-256 kept in a hashed tag (128 bits).
const HASH_HEX: usize = 32;
/// Bytes of the (sanitised) container ID shown after the hash, for humans.
const READABLE_MAX: usize = 64;

/// The comment that tags one attachment's rules. Distinct attachments get
/// distinct tags, and every tag fits nft's comment limit:
///
/// - `<id>/<ifname>` verbatim when both pass the CNI_CONTAINERID/CNI_IFNAME
///   validation and the whole fits in [`COMMENT_MAX`] bytes. Validation
///   leaves only `[a-zA-Z0-9_.-]` in the ID and no `/` in the ifname, so the
///   text needs no quoting and splits back at its only `/`. This is also
///   exactly what earlier versions wrote (they stripped `"`, which validated
///   IDs never contain), so DEL and GC find rules from before the change.
/// - otherwise `h:<32 hex>:<readable>`: the first 128 bits of SHA-256 over
///   the length-prefixed ID and the ifname, then up to 64 bytes of the ID
///   with anything outside `[a-zA-Z0-9_.-]` as `_` so a human can still tell
///   whose rule it is. It has no `/`, so it never equals a verbatim tag. Only
///   attachments whose `<id>/<ifname>` exceeds 128 bytes (or those named by GC's
///   `cni.dev/valid-attachments`, which the runtime does not validate for
///   us) take this form; earlier versions could not write rules for those
///   (nft refused the comment), so there is nothing old to find.
pub fn tag(owner: &Attachment) -> String {
    let verbatim = format!("{}/{}", owner.container_id, owner.ifname);
    let valid = validate_container_id(&owner.container_id).is_ok()
        && validate_ifname(&owner.ifname).is_ok();
    if valid && verbatim.len() <= COMMENT_MAX {
        return verbatim;
    }
    let mut h = Sha256::new();
    h.update((owner.container_id.len() as u64).to_be_bytes());
    h.update(owner.container_id.as_bytes());
    h.update(owner.ifname.as_bytes());
    let mut out = String::with_capacity(HASHED_PREFIX.len() + HASH_HEX + 1 + READABLE_MAX);
    out.push_str(HASHED_PREFIX);
    for b in h.finalize().iter().take(HASH_HEX / 2) {
        out.push_str(&format!("{b:02x}"));
    }
    out.push(':');
    out.extend(owner.container_id.chars().take(READABLE_MAX).map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// Whether a rule comment in our per-attachment chains is an attachment tag
/// (either form of [`tag`], or a verbatim one from earlier versions).
pub fn is_tag(comment: &str) -> bool {
    let hashed = comment.strip_prefix(HASHED_PREFIX).is_some_and(|rest| {
        rest.len() > HASH_HEX
            && rest.as_bytes()[HASH_HEX] == b':'
            && rest.as_bytes()[..HASH_HEX]
                .iter()
                .all(u8::is_ascii_hexdigit)
    });
    hashed || comment.contains('/')
}

/// Per-attachment chain name: short, stable, and safe as an nft identifier.
pub fn chain_name(owner: &Attachment) -> String {
    chain_of_tag(&tag(owner))
}

/// The hostPort chain of the attachment a tag names. 64-bit FNV keeps the
/// names of chains written by earlier versions; a clash needs two live
/// attachments among 2^64 names, which is left to chance.
fn chain_of_tag(tag: &str) -> String {
    format!("hp-{:016x}", crate::fnv64(tag.as_bytes()))
}

fn t() -> String {
    format!("{} {TABLE}", FAMILY.as_str())
}

/// Table and base chains. Base chains are flushed and refilled in the same
/// transaction, so this is idempotent and safe to repeat from concurrent
/// plugin processes (the kernel serialises transactions).
pub fn base_statements(tx: &mut Transaction) {
    let t = t();
    tx.push(format!("add table {t}"));
    tx.push(format!(
        "add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}"
    ));
    tx.push(format!(
        "add chain {t} output {{ type nat hook output priority -100; policy accept; }}"
    ));
    tx.push(format!(
        "add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"
    ));
    tx.push(format!("add chain {t} hostports"));
    tx.push(format!("add chain {t} masq"));
    for chain in ["prerouting", "output", "postrouting"] {
        tx.push(format!("flush chain {t} {chain}"));
    }
    tx.push(format!(
        "add rule {t} prerouting fib daddr type local jump hostports"
    ));
    tx.push(format!(
        "add rule {t} output fib daddr type local jump hostports"
    ));
    tx.push(format!(
        "add rule {t} postrouting meta mark & {HAIRPIN_MARK:#x} == {HAIRPIN_MARK:#x} masquerade"
    ));
    tx.push(format!("add rule {t} postrouting jump masq"));
}

fn family_kw(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn multicast_net(v4: bool) -> &'static str {
    if v4 {
        "224.0.0.0/4"
    } else {
        "ff00::/8"
    }
}

/// Statements that add one attachment's rules: masquerade of `pod_ips`
/// (when `masq_excludes` is given) and DNAT of `host_ports` to them.
pub fn add_statements(
    tx: &mut Transaction,
    owner: &Attachment,
    pod_ips: &[IpNet],
    masq_excludes: Option<&[IpNet]>,
    host_ports: &[HostPort],
) {
    let t = t();
    let comment = quote(&tag(owner));
    if let Some(excludes) = masq_excludes {
        for pod in pod_ips {
            let fam = family_kw(&pod.addr());
            let mut skip: Vec<String> = excludes
                .iter()
                .filter(|n| n.addr().is_ipv4() == pod.addr().is_ipv4())
                .map(|n| n.trunc().to_string())
                .collect();
            skip.push(multicast_net(pod.addr().is_ipv4()).to_string());
            tx.push(format!(
                "add rule {t} masq {fam} saddr {} {fam} daddr != {{ {} }} masquerade comment {comment}",
                pod.addr(),
                skip.join(", ")
            ));
        }
    }
    if !host_ports.is_empty() {
        let chain = chain_name(owner);
        tx.push(format!("add chain {t} {chain}"));
        tx.push(format!("flush chain {t} {chain}"));
        for hp in host_ports {
            for pod in pod_ips {
                let fam = family_kw(&pod.addr());
                if hp
                    .host_ip
                    .is_some_and(|h| h.is_ipv4() != pod.addr().is_ipv4())
                {
                    continue;
                }
                let mut m = format!(
                    "meta nfproto {}",
                    if pod.addr().is_ipv4() { "ipv4" } else { "ipv6" }
                );
                if let Some(h) = hp.host_ip {
                    m.push_str(&format!(" {fam} daddr {h}"));
                }
                m.push_str(&format!(" {} dport {}", hp.protocol.as_str(), hp.host_port));
                tx.push(format!(
                    "add rule {t} {chain} {m} {fam} saddr {} meta mark set meta mark | {HAIRPIN_MARK:#x}",
                    pod.trunc()
                ));
                let to = match pod.addr() {
                    IpAddr::V4(a) => format!("{a}:{}", hp.container_port),
                    IpAddr::V6(a) => format!("[{a}]:{}", hp.container_port),
                };
                tx.push(format!("add rule {t} {chain} {m} dnat {fam} to {to}"));
            }
        }
        tx.push(format!(
            "add rule {t} hostports jump {chain} comment {comment}"
        ));
    }
}

/// Statements that remove the rules and chains of every attachment for which
/// `doomed` is true, given the table as listed.
pub fn remove_statements(
    tx: &mut Transaction,
    listed: &ListedTable,
    doomed: &dyn Fn(&str) -> bool,
) {
    let t = t();
    let mut keep_chains = BTreeSet::new();
    for rule in &listed.rules {
        let Some(comment) = rule.comment.as_deref() else {
            continue;
        };
        if !matches!(rule.chain.as_str(), "hostports" | "masq") {
            continue;
        }
        if doomed(comment) {
            tx.push(format!(
                "delete rule {t} {} handle {}",
                rule.chain, rule.handle
            ));
        } else if is_tag(comment) {
            keep_chains.insert(chain_of_tag(comment));
        }
    }
    // hp- chains of doomed attachments, and orphans of an ADD that died
    // between creating the chain and jumping to it.
    for chain in &listed.chains {
        if chain.starts_with("hp-") && !keep_chains.contains(chain) {
            tx.push(format!("flush chain {t} {chain}"));
            tx.push(format!("delete chain {t} {chain}"));
        }
    }
}

fn nft_error(e: weft_nft::Error) -> CniError {
    CniError::new(
        code::KERNEL,
        format!("nftables table {} {TABLE}: {e}", FAMILY.as_str()),
    )
}

/// Adds one attachment's rules (and the base chains) in one transaction. A
/// retried ADD first clears whatever an earlier attempt left.
pub fn apply(
    owner: &Attachment,
    pod_ips: &[IpNet],
    masq_excludes: Option<&[IpNet]>,
    host_ports: &[HostPort],
    retry: bool,
) -> Result<(), CniError> {
    let mut tx = Transaction::new();
    if retry {
        if let Some(listed) = weft_nft::list_table(FAMILY, TABLE).map_err(nft_error)? {
            let mine = tag(owner);
            remove_statements(&mut tx, &listed, &|c| c == mine);
        }
    }
    base_statements(&mut tx);
    add_statements(&mut tx, owner, pod_ips, masq_excludes, host_ports);
    tx.apply().map_err(nft_error)
}

/// Removes the rules of every attachment `doomed` says; a missing table is fine.
pub fn remove(doomed: &dyn Fn(&str) -> bool) -> Result<(), CniError> {
    let Some(listed) = weft_nft::list_table(FAMILY, TABLE).map_err(nft_error)? else {
        return Ok(());
    };
    let mut tx = Transaction::new();
    remove_statements(&mut tx, &listed, doomed);
    tx.apply().map_err(nft_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use weft_nft::ListedRule;

    fn owner() -> Attachment {
        Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn golden_masquerade_and_hostport() {
        let mut tx = Transaction::new();
        let pods: Vec<IpNet> = vec!["10.244.1.5/24".parse().unwrap()];
        let cluster: Vec<IpNet> = vec!["10.244.0.0/16".parse().unwrap()];
        let ports = vec![
            HostPort {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            HostPort {
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: Some("192.168.1.10".parse().unwrap()),
            },
        ];
        add_statements(&mut tx, &owner(), &pods, Some(&cluster), &ports);
        let chain = chain_name(&owner());
        let want = format!(
            "add rule inet weft-cni masq ip saddr 10.244.1.5 ip daddr != {{ 10.244.0.0/16, 224.0.0.0/4 }} masquerade comment \"c1/eth0\"
add chain inet weft-cni {chain}
flush chain inet weft-cni {chain}
add rule inet weft-cni {chain} meta nfproto ipv4 tcp dport 8080 ip saddr 10.244.1.0/24 meta mark set meta mark | 0x2000
add rule inet weft-cni {chain} meta nfproto ipv4 tcp dport 8080 dnat ip to 10.244.1.5:80
add rule inet weft-cni {chain} meta nfproto ipv4 ip daddr 192.168.1.10 udp dport 5353 ip saddr 10.244.1.0/24 meta mark set meta mark | 0x2000
add rule inet weft-cni {chain} meta nfproto ipv4 ip daddr 192.168.1.10 udp dport 5353 dnat ip to 10.244.1.5:53
add rule inet weft-cni hostports jump {chain} comment \"c1/eth0\"
"
        );
        assert_eq!(tx.render(), want);
    }

    #[test]
    fn v6_pods_get_v6_rules_and_skip_v4_host_ips() {
        let mut tx = Transaction::new();
        let pods: Vec<IpNet> = vec!["fd00::5/64".parse().unwrap()];
        let ports = vec![
            HostPort {
                host_port: 80,
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            HostPort {
                host_port: 81,
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_ip: Some("192.168.1.10".parse().unwrap()),
            },
        ];
        add_statements(&mut tx, &owner(), &pods, None, &ports);
        let s = tx.render();
        assert!(s.contains("dnat ip6 to [fd00::5]:8080"));
        assert!(!s.contains("dport 81"));
    }

    #[test]
    fn removal_targets_only_doomed_attachments() {
        let other = Attachment {
            container_id: "c2".into(),
            ifname: "eth0".into(),
        };
        let listed = ListedTable {
            chains: vec![
                "prerouting".into(),
                "hostports".into(),
                chain_name(&owner()),
                chain_name(&other),
                "hp-00000000000000aa".into(), // orphan
            ],
            rules: vec![
                ListedRule {
                    chain: "hostports".into(),
                    handle: 10,
                    comment: Some("c1/eth0".into()),
                    packets: None,
                },
                ListedRule {
                    chain: "hostports".into(),
                    handle: 11,
                    comment: Some("c2/eth0".into()),
                    packets: None,
                },
                ListedRule {
                    chain: "masq".into(),
                    handle: 12,
                    comment: Some("c1/eth0".into()),
                    packets: None,
                },
                ListedRule {
                    chain: "prerouting".into(),
                    handle: 1,
                    comment: None,
                    packets: None,
                },
            ],
        };
        let mut tx = Transaction::new();
        remove_statements(&mut tx, &listed, &|c| c == "c1/eth0");
        let s = tx.render();
        assert!(s.contains("delete rule inet weft-cni hostports handle 10"));
        assert!(s.contains("delete rule inet weft-cni masq handle 12"));
        assert!(!s.contains("handle 11"));
        assert!(s.contains(&format!(
            "delete chain inet weft-cni {}",
            chain_name(&owner())
        )));
        assert!(s.contains("delete chain inet weft-cni hp-00000000000000aa"));
        assert!(!s.contains(&chain_name(&other)));
    }

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn valid_short_attachments_are_tagged_verbatim_as_before() {
        // The format earlier versions wrote, so DEL/GC still find those rules.
        let hex64 = "0123456789abcdef".repeat(4);
        assert_eq!(tag(&att(&hex64, "eth0")), format!("{hex64}/eth0"));
        assert_eq!(tag(&owner()), "c1/eth0");
        assert_eq!(
            chain_name(&owner()),
            format!("hp-{:016x}", crate::fnv64(b"c1/eth0"))
        );
        let fits = "a".repeat(COMMENT_MAX - "/eth0".len());
        assert_eq!(tag(&att(&fits, "eth0")), format!("{fits}/eth0"));
    }

    #[test]
    fn stripped_characters_no_longer_make_tags_alike() {
        let quoted = tag(&att("a\"b", "eth0"));
        assert_ne!(quoted, tag(&att("ab", "eth0")));
        assert!(quoted.starts_with("h:"), "{quoted}");
        assert!(!quoted.contains('"') && !quoted.contains('/'), "{quoted}");
        // What nft is given (quoted, with `"` stripped) differs too.
        let rendered = |id: &str| {
            let mut tx = Transaction::new();
            let pods: Vec<IpNet> = vec!["10.244.1.5/24".parse().unwrap()];
            add_statements(&mut tx, &att(id, "eth0"), &pods, Some(&[]), &[]);
            tx.render()
        };
        assert_ne!(rendered("a\"b"), rendered("ab"));
        // Moving the separator cannot forge another attachment's tag either.
        assert_ne!(tag(&att("a/b", "c")), tag(&att("a", "b/c")));
        assert_ne!(tag(&att("a/b", "c")), "a/b/c");
    }

    #[test]
    fn long_ids_get_bounded_distinct_hashed_tags() {
        let long = "x".repeat(300);
        let a = tag(&att(&format!("{long}1"), "eth0"));
        let b = tag(&att(&format!("{long}2"), "eth0"));
        let c = tag(&att(&format!("{long}1"), "eth1"));
        for t in [&a, &b, &c] {
            assert!(t.len() <= COMMENT_MAX, "{} bytes", t.len());
            assert!(is_tag(t), "{t}");
            assert!(t.ends_with(&"x".repeat(READABLE_MAX)), "{t}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
        // Just over the limit is hashed too.
        let over = "a".repeat(COMMENT_MAX - "/eth0".len() + 1);
        assert!(tag(&att(&over, "eth0")).starts_with("h:"));
    }

    #[test]
    fn is_tag_knows_both_forms_and_nothing_else() {
        assert!(is_tag("c1/eth0"));
        assert!(is_tag(&tag(&att("bad id", "eth0"))));
        assert!(!is_tag("h:not-hex"));
        assert!(!is_tag("someone else's note"));
    }

    #[test]
    fn removal_keeps_the_chain_of_a_hashed_tag_that_stays() {
        let long = att(&"y".repeat(200), "eth0");
        let listed = ListedTable {
            chains: vec!["hostports".into(), chain_name(&long), chain_name(&owner())],
            rules: vec![
                ListedRule {
                    chain: "hostports".into(),
                    handle: 10,
                    comment: Some(tag(&long)),
                    packets: None,
                },
                ListedRule {
                    chain: "hostports".into(),
                    handle: 11,
                    comment: Some(tag(&owner())),
                    packets: None,
                },
            ],
        };
        let mut tx = Transaction::new();
        remove_statements(&mut tx, &listed, &|c| c == "c1/eth0");
        let s = tx.render();
        assert!(s.contains("handle 11"));
        assert!(!s.contains("handle 10"));
        assert!(!s.contains(&chain_name(&long)), "{s}");
    }

    #[test]
    fn base_is_idempotent_text() {
        let mut a = Transaction::new();
        base_statements(&mut a);
        assert!(a.render().contains("flush chain inet weft-cni prerouting"));
    }
}
