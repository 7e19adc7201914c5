//! Stable names for the per-Service chains and sets: a short hash of the
//! readable name in front of the readable name itself (kube-proxy's
//! `hashAndTruncate` style, `service-ULMVA6XW-ns1/svc1/tcp/p80`), so a human
//! can map a chain back to its Service and near-identical names still differ
//! at a glance.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use weft_nft::model::NAME_MAX;

/// Longest prefix (`service6-`, `source-ranges-` …) including its hyphen.
const PREFIX_MAX: usize = 16;
/// Longest hashed base, so that prefix + base fits nft's name limit.
const BASE_MAX: usize = NAME_MAX - PREFIX_MAX;

/// RFC 4648 base32 alphabet (what Go's `base32.StdEncoding` uses).
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The first 8 base32 characters of SHA-256(`name`), a `-`, then `name`,
/// cut to [`BASE_MAX`] bytes with a trailing `...` when too long.
pub fn hash_and_truncate(name: &str) -> String {
    hashed_name(name, name)
}

/// [`hash_and_truncate`]'s form with the hash of `hashed` in front of
/// `readable` (ASCII): for names whose readable part had to be cleaned, so
/// two names cleaned alike still differ.
pub fn hashed_name(hashed: &str, readable: &str) -> String {
    let digest = Sha256::digest(hashed.as_bytes());
    // 8 base32 characters hold exactly the first 40 bits (5 bytes).
    let bits = digest[..5]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = String::with_capacity(9 + readable.len());
    for i in (0..8).rev() {
        out.push(char::from(BASE32[((bits >> (i * 5)) & 31) as usize]));
    }
    out.push('-');
    out.push_str(readable);
    if out.len() > BASE_MAX {
        // Every readable part is ASCII (checked where Services are read,
        // cleaned where policies are), so any byte index is a character
        // boundary.
        out.truncate(BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

/// `HASH-ns/name/proto/portname`: the base of a service port's chains.
pub fn service_port_base(ns: &str, name: &str, proto: &str, port_name: &str) -> String {
    hash_and_truncate(&format!("{ns}/{name}/{proto}/{port_name}"))
}

/// `HASH-ns/name/proto/portname__ip/port`: the base of an endpoint's chain
/// and affinity set. IPv6 colons become dots (nft names cannot hold `:`).
pub fn endpoint_base(
    ns: &str,
    name: &str,
    proto: &str,
    port_name: &str,
    ip: IpAddr,
    port: u16,
) -> String {
    let ip = ip.to_string().replace(':', ".");
    hash_and_truncate(&format!("{ns}/{name}/{proto}/{port_name}__{ip}/{port}"))
}

/// Cuts a comment to nft's limit (inputs are ASCII, so bytes are characters).
pub fn comment(s: &str) -> String {
    let mut c: String = s.chars().filter(|c| *c != '"').collect();
    c.truncate(weft_nft::model::COMMENT_MAX);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_kube_proxys_service_chain_names() {
        // The names kube-proxy's own tests expect for these inputs.
        assert_eq!(
            service_port_base("ns1", "svc1", "tcp", "p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            endpoint_base(
                "ns1",
                "svc1",
                "tcp",
                "p80",
                "10.180.0.1".parse().unwrap(),
                80
            ),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    #[test]
    fn ipv6_endpoint_names_hold_no_colons() {
        let b = endpoint_base("a", "b", "tcp", "", "fd00::5".parse().unwrap(), 80);
        assert!(b.ends_with("-a/b/tcp/__fd00..5/80"), "{b}");
    }

    #[test]
    fn long_names_are_cut_to_fit_with_a_prefix() {
        let long = "x".repeat(300);
        let b = hash_and_truncate(&long);
        assert_eq!(b.len(), BASE_MAX);
        assert!(b.ends_with("..."));
        assert!(("affinity6-".len() + b.len()) <= NAME_MAX);
    }
}
