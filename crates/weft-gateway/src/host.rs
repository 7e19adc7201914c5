//! Hostnames: the patterns listeners, routes and Ingress rules carry, and
//! the lookup of a request's host (or a TLS client's SNI) among them.
//!
//! Two wildcard rules exist and both are kept apart here:
//! - Ingress (`networking.k8s.io/v1` IngressRule.host): `*.foo.com` matches
//!   exactly one label: `bar.foo.com`, not `baz.bar.foo.com`, not `foo.com`.
//! - Gateway API (Listener.hostname, HTTPRoute.hostnames): `*.example.com`
//!   is a suffix match: `test.example.com` and `foo.test.example.com`, not
//!   `example.com`.
//!
//! Precedence among patterns that match one host: an exact name, then the
//! wildcard with the longest suffix, then "any host" (no hostname).

use std::collections::HashMap;
use std::fmt;

/// A hostname pattern, lowercased and validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// One name.
    Exact(String),
    /// `*.` + suffix; `suffix` is stored with its leading dot (".foo.com").
    Wildcard { suffix: String, one_label: bool },
    /// No hostname: every host.
    Any,
}

/// Why a hostname was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hostname {host:?}: {why}")]
pub struct BadHostname {
    pub host: String,
    pub why: &'static str,
}

fn bad(host: &str, why: &'static str) -> BadHostname {
    BadHostname {
        host: host.to_string(),
        why,
    }
}

/// RFC 1123 subdomain check of a name without wildcard (lowercase letters,
/// digits, '-', labels of 1..=63 not starting or ending with '-', ≤ 253).
fn check_name(whole: &str, name: &str) -> Result<(), BadHostname> {
    if name.is_empty() {
        return Err(bad(whole, "is empty"));
    }
    if name.len() > 253 {
        return Err(bad(whole, "is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(bad(whole, "has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad(whole, "has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(
                whole,
                "may hold only lowercase letters, digits, '-' and '.'",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(whole, "has a label starting or ending with '-'"));
        }
    }
    Ok(())
}

impl HostPattern {
    fn parse(raw: &str, one_label: bool) -> Result<Self, BadHostname> {
        let lower = raw.to_ascii_lowercase();
        if lower.is_empty() {
            return Ok(HostPattern::Any);
        }
        if let Some(rest) = lower.strip_prefix("*.") {
            check_name(raw, rest)?;
            return Ok(HostPattern::Wildcard {
                suffix: format!(".{rest}"),
                one_label,
            });
        }
        if lower.contains('*') {
            return Err(bad(raw, "may hold '*' only as its whole first label"));
        }
        if lower.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad(raw, "is an IP address, not a name"));
        }
        check_name(raw, &lower)?;
        Ok(HostPattern::Exact(lower))
    }

    /// An Ingress rule's host ("" = any host; `*.` = one label).
    pub fn ingress(raw: &str) -> Result<Self, BadHostname> {
        Self::parse(raw, true)
    }

    /// A Gateway API hostname (`*.` = any number of labels).
    pub fn gateway(raw: &str) -> Result<Self, BadHostname> {
        Self::parse(raw, false)
    }

    /// Whether `host` (already [`normalize`]d) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard { suffix, one_label } => match host.strip_suffix(suffix.as_str())
            {
                Some(head) => !head.is_empty() && (!*one_label || !head.contains('.')),
                None => false,
            },
        }
    }

    /// Greater is more specific: exact, then longer wildcard suffixes, then any.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            HostPattern::Exact(name) => (2, name.len()),
            HostPattern::Wildcard { suffix, .. } => (1, suffix.len()),
            HostPattern::Any => (0, 0),
        }
    }

    /// The hosts both patterns match, as a pattern (Gateway API: a route's
    /// hostnames intersected with its listener's), or None if they share none.
    /// Of two wildcards the longer one is the intersection; an exact name
    /// survives when the other pattern matches it.
    pub fn intersect(&self, other: &HostPattern) -> Option<HostPattern> {
        use HostPattern::*;
        match (self, other) {
            (Any, p) | (p, Any) => Some(p.clone()),
            (Exact(a), p) | (p, Exact(a)) => p.matches(a).then(|| Exact(a.clone())),
            (
                Wildcard {
                    suffix: a,
                    one_label: oa,
                },
                Wildcard {
                    suffix: b,
                    one_label: ob,
                },
            ) => {
                if a == b {
                    Some(Wildcard {
                        suffix: a.clone(),
                        one_label: *oa || *ob,
                    })
                } else if a.ends_with(b.as_str()) && !ob {
                    Some(self.clone())
                } else if b.ends_with(a.as_str()) && !oa {
                    Some(other.clone())
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard { suffix, .. } => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// A request's `Host` (or `:authority`, or SNI) as patterns are matched
/// against it: the port dropped, lowercased, one trailing dot dropped. None
/// when nothing is left or the value cannot be a hostname (bytes outside
/// RFC 1123's alphabet); an IP literal comes back as is (it matches only
/// "any host").
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        return Some(rest[..end].to_ascii_lowercase());
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Values keyed by hostname pattern, looked up by a host with the
/// precedence above: exact, then the most specific wildcard, then any.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    /// Most specific first.
    wildcards: Vec<(HostPattern, T)>,
    any: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: HashMap::new(),
            wildcards: Vec::new(),
            any: None,
        }
    }
}

impl<T> HostMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under exactly this pattern, made with `make` if absent.
    pub fn entry(&mut self, pattern: &HostPattern, make: impl FnOnce() -> T) -> &mut T {
        match pattern {
            HostPattern::Exact(name) => self.exact.entry(name.clone()).or_insert_with(make),
            HostPattern::Any => self.any.get_or_insert_with(make),
            HostPattern::Wildcard { .. } => {
                let at = match self.wildcards.iter().position(|(p, _)| p == pattern) {
                    Some(i) => i,
                    None => {
                        // Keep most specific first; equal specificity by pattern
                        // order so lookups never depend on insertion order.
                        let key = (std::cmp::Reverse(pattern.specificity()), pattern.clone());
                        let i = self.wildcards.partition_point(|(p, _)| {
                            (std::cmp::Reverse(p.specificity()), p.clone()) < key
                        });
                        self.wildcards.insert(i, (pattern.clone(), make()));
                        i
                    }
                };
                &mut self.wildcards[at].1
            }
        }
    }

    /// Sets the value under a pattern, replacing what was there.
    pub fn insert(&mut self, pattern: &HostPattern, value: T) {
        let mut value = Some(value);
        let slot = self.entry(pattern, || value.take().expect("value present"));
        if let Some(v) = value {
            *slot = v;
        }
    }

    /// The value whose pattern matches `host` ([`normalize`]d) with the
    /// highest precedence; `None` host (no SNI, no Host) finds "any" only.
    pub fn get(&self, host: Option<&str>) -> Option<&T> {
        if let Some(host) = host {
            if let Some(v) = self.exact.get(host) {
                return Some(v);
            }
            if let Some((_, v)) = self.wildcards.iter().find(|(p, _)| p.matches(host)) {
                return Some(v);
            }
        }
        self.any.as_ref()
    }

    /// Every (pattern, value), exact names first.
    pub fn iter(&self) -> impl Iterator<Item = (HostPattern, &T)> {
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        exact
            .into_iter()
            .map(|(n, v)| (HostPattern::Exact(n.clone()), v))
            .chain(self.wildcards.iter().map(|(p, v)| (p.clone(), v)))
            .chain(self.any.iter().map(|v| (HostPattern::Any, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty() && self.any.is_none()
    }

    /// The value under exactly this pattern (no matching).
    pub fn get_exact_mut(&mut self, pattern: &HostPattern) -> Option<&mut T> {
        match pattern {
            HostPattern::Exact(name) => self.exact.get_mut(name),
            HostPattern::Any => self.any.as_mut(),
            HostPattern::Wildcard { .. } => self
                .wildcards
                .iter_mut()
                .find(|(p, _)| p == pattern)
                .map(|(_, v)| v),
        }
    }

    /// Every (pattern, value), consumed, in the order of [`HostMap::iter`].
    pub fn iter_owned(self) -> impl Iterator<Item = (HostPattern, T)> {
        let mut exact: Vec<_> = self.exact.into_iter().collect();
        exact.sort_by(|a, b| a.0.cmp(&b.0));
        exact
            .into_iter()
            .map(|(n, v)| (HostPattern::Exact(n), v))
            .chain(self.wildcards)
            .chain(self.any.map(|v| (HostPattern::Any, v)))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.exact
            .values_mut()
            .chain(self.wildcards.iter_mut().map(|(_, v)| v))
            .chain(self.any.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> HostPattern {
        HostPattern::gateway(s).unwrap()
    }
    fn i(s: &str) -> HostPattern {
        HostPattern::ingress(s).unwrap()
    }

    #[test]
    fn ingress_wildcard_matches_exactly_one_label() {
        let p = i("*.foo.com");
        assert!(p.matches("bar.foo.com"));
        assert!(!p.matches("baz.bar.foo.com"));
        assert!(!p.matches("foo.com"));
    }

    #[test]
    fn gateway_wildcard_is_a_suffix_match_of_one_or_more_labels() {
        let p = g("*.example.com");
        assert!(p.matches("test.example.com"));
        assert!(p.matches("foo.test.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
    }

    #[test]
    fn hostnames_are_lowercased_and_bad_ones_refused_with_the_reason() {
        assert_eq!(
            g("Foo.Example.COM"),
            HostPattern::Exact("foo.example.com".into())
        );
        assert!(g("").eq(&HostPattern::Any));
        for (bad, why) in [
            ("a.*.com", "'*'"),
            ("*", "first label"),
            ("foo..com", "empty label"),
            ("-a.com", "'-'"),
            ("10.0.0.1", "IP address"),
            ("a b.com", "only lowercase"),
        ] {
            let e = HostPattern::gateway(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_request_host_is_normalized_before_matching() {
        assert_eq!(normalize("Foo.COM:8080").as_deref(), Some("foo.com"));
        assert_eq!(normalize("foo.com.").as_deref(), Some("foo.com"));
        assert_eq!(normalize("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(normalize("foo.com:http"), None);
        assert_eq!(normalize("foo/bar"), None);
        assert_eq!(normalize(""), None);
    }

    #[test]
    fn lookup_prefers_exact_then_longest_wildcard_then_any() {
        let mut m = HostMap::new();
        m.insert(&HostPattern::Any, "any");
        m.insert(&g("*.com"), "com");
        m.insert(&g("*.example.com"), "example");
        m.insert(&g("foo.example.com"), "foo");
        assert_eq!(m.get(Some("foo.example.com")), Some(&"foo"));
        assert_eq!(m.get(Some("bar.example.com")), Some(&"example"));
        assert_eq!(m.get(Some("a.b.example.com")), Some(&"example"));
        assert_eq!(m.get(Some("other.com")), Some(&"com"));
        assert_eq!(m.get(Some("other.org")), Some(&"any"));
        assert_eq!(m.get(None), Some(&"any"));
    }

    #[test]
    fn intersection_keeps_the_narrower_pattern() {
        assert_eq!(
            g("*.example.com").intersect(&g("foo.example.com")),
            Some(g("foo.example.com"))
        );
        assert_eq!(
            g("*.example.com").intersect(&g("*.foo.example.com")),
            Some(g("*.foo.example.com"))
        );
        assert_eq!(
            g("*.example.com").intersect(&HostPattern::Any),
            Some(g("*.example.com"))
        );
        assert_eq!(g("foo.example.com").intersect(&g("bar.example.com")), None);
        assert_eq!(g("*.example.com").intersect(&g("*.example.org")), None);
    }
}
