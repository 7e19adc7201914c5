//! The route table: what the proxy consults for every connection and
//! request. Built whole by [`crate::compile`] from the API objects, never
//! edited afterwards; a change builds a new table and the proxy swaps it in.
//!
//! Shape: port → listeners by hostname ([`HostMap`], most specific wins) →
//! for HTTP(S) listeners, the routes' hostnames ([`HostMap`] again) → rules
//! in precedence order ([`Rules`]); for passthrough listeners, SNI →
//! backends.
//!
//! Precedence (Gateway API, HTTPRouteRule): an Exact path match, then the
//! longest prefix, then a method match, then the most header matches, then
//! the most query parameter matches; ties go to the oldest route, then to
//! `namespace/name` in alphabetical order, then to the first rule and match
//! in list order. Ingress rules are ranked by the same key: Ingress's own
//! rule (the longest matching path, Exact before Prefix at equal length)
//! picks the same rule, because an Exact path that matches is never shorter
//! than a prefix that matches the same request.
//!
//! Hosts are matched strictly at both levels, as Envoy's virtual hosts and
//! nginx's server blocks are: the most specific listener for the request's
//! host is chosen, then the most specific route hostname within it; if no
//! rule there matches, the answer is 404 — a less specific hostname is not
//! tried.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::host::HostMap;

/// The whole table.
#[derive(Debug, Default)]
pub struct Table {
    pub ports: BTreeMap<u16, Port>,
}

impl Table {
    /// The listener serving `host` (a normalized Host header or SNI) on `port`.
    pub fn listener(&self, port: u16, host: Option<&str>) -> Option<&Listener> {
        self.ports.get(&port)?.listeners.get(host)
    }
}

/// What a port speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Cleartext HTTP/1.1 (and h2c prior knowledge).
    Http,
    /// TLS: terminated (HTTPS listeners) or passed through by SNI.
    Tls,
}

/// One listening port.
#[derive(Debug)]
pub struct Port {
    pub protocol: Protocol,
    pub listeners: HostMap<Listener>,
}

/// A listener hostname's share of a port: its certificate (terminating
/// listeners), its HTTP routes or its passthrough routes.
#[derive(Debug, Default)]
pub struct Listener {
    /// Who declared it: `Gateway ns/name listener` or `Ingress ns/name`.
    pub origin: String,
    /// Terminating TLS: the certificate for this hostname. Passthrough
    /// listeners and cleartext ones have none.
    pub certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Passthrough listeners: SNI (the route hostnames) → backends.
    pub passthrough: Option<HostMap<Arc<Action>>>,
    /// HTTP(S) listeners: route hostnames → rules.
    pub routes: HostMap<Rules>,
}

impl Listener {
    /// The rule for a request that arrived at this listener, if one matches.
    pub fn route(&self, host: Option<&str>, req: &Request<'_>) -> Option<&Rule> {
        self.routes.get(host)?.first_match(req)
    }

    /// A passthrough listener's backends for this SNI.
    pub fn passthrough(&self, sni: Option<&str>) -> Option<&Arc<Action>> {
        self.passthrough.as_ref()?.get(sni)
    }
}

/// What a request is matched on: the parts of an HTTP request the rules read.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path, without query, as normalized by the proxy ([`normalize_path`]).
    pub path: &'a str,
    /// The raw query (after `?`), if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// A path match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix, stored without a trailing slash ("" is "/").
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
        }
    }

    /// Characters that count for precedence ("/" counts as 1).
    pub fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) => p.len(),
            PathMatch::Prefix(p) => p.len().max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A header or query parameter value test.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    /// A regular expression that must match the whole value.
    Regex(regex::Regex),
}

impl ValueMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(want) => want == v,
            ValueMatch::Regex(re) => re.is_match(v),
        }
    }
}

/// One match of a rule: every part must hold.
#[derive(Debug, Clone)]
pub struct Match {
    pub path: PathMatch,
    pub method: Option<Method>,
    /// Header names are case-insensitive; any value of the header may match.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Query parameter names are case-sensitive; the first occurrence counts.
    pub query: Vec<(String, ValueMatch)>,
}

impl Match {
    pub fn matches(&self, req: &Request<'_>) -> bool {
        if !self.path.matches(req.path) {
            return false;
        }
        if let Some(m) = &self.method {
            if m != req.method {
                return false;
            }
        }
        for (name, want) in &self.headers {
            let any = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| want.matches(v)));
            if !any {
                return false;
            }
        }
        if !self.query.is_empty() {
            let pairs: Vec<(String, String)> = req
                .query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            for (name, want) in &self.query {
                match pairs.iter().find(|(n, _)| n == name) {
                    Some((_, v)) if want.matches(v) => {}
                    _ => return false,
                }
            }
        }
        true
    }
}

/// The precedence of a rule's match; smaller sorts first and wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// 0 Exact, 1 Prefix, 2 a default backend (Ingress `defaultBackend`).
    pub path_kind: u8,
    /// Longer paths first.
    pub path_len: std::cmp::Reverse<usize>,
    /// A method match first.
    pub no_method: bool,
    pub headers: std::cmp::Reverse<usize>,
    pub query: std::cmp::Reverse<usize>,
    /// The route's creation time (RFC 3339, so it sorts as text), oldest first;
    /// an object without one sorts last.
    pub created: String,
    pub namespace: String,
    pub name: String,
    /// Gateway API routes before Ingresses, if everything else ties.
    pub kind: u8,
    pub rule: usize,
    pub matched: usize,
}

impl Rank {
    pub fn of(m: &Match, origin: &Origin, rule: usize, matched: usize) -> Rank {
        Rank {
            path_kind: match m.path {
                PathMatch::Exact(_) => 0,
                PathMatch::Prefix(_) => 1,
            },
            path_len: std::cmp::Reverse(m.path.len()),
            no_method: m.method.is_none(),
            headers: std::cmp::Reverse(m.headers.len()),
            query: std::cmp::Reverse(m.query.len()),
            created: origin.created.clone().unwrap_or_else(|| "~".into()),
            namespace: origin.namespace.clone(),
            name: origin.name.clone(),
            kind: origin.kind as u8,
            rule,
            matched,
        }
    }
}

/// The object a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OriginKind {
    HttpRoute = 0,
    Ingress = 1,
}

/// Where a rule came from, for precedence, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub kind: OriginKind,
    pub namespace: String,
    pub name: String,
    pub created: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            OriginKind::HttpRoute => "httproute",
            OriginKind::Ingress => "ingress",
        };
        write!(f, "{kind}/{}/{}", self.namespace, self.name)
    }
}

/// One (match, action) entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub rank: Rank,
    pub matcher: Match,
    pub action: Arc<Action>,
    /// `httproute/ns/name` or `ingress/ns/name` and the rule's index: the
    /// route label of logs and metrics.
    pub route: Arc<str>,
}

/// The rules of one route hostname, indexed by path.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    /// Exact paths → rules in rank order.
    exact: HashMap<String, Vec<Rule>>,
    /// Prefixes → rules in rank order.
    prefix: HashMap<String, Vec<Rule>>,
    /// Prefix lengths present, longest first (to walk the request path's
    /// prefixes that can match at all).
    prefix_lens: Vec<usize>,
    /// Catch-all rules (Ingress default backends), in rank order.
    fallback: Vec<Rule>,
}

impl Rules {
    /// Builds the index; `rules` in any order.
    pub fn new(mut rules: Vec<Rule>, fallback: Vec<Rule>) -> Rules {
        rules.sort_by(|a, b| a.rank.cmp(&b.rank));
        let mut out = Rules {
            fallback,
            ..Rules::default()
        };
        out.fallback.sort_by(|a, b| a.rank.cmp(&b.rank));
        for r in rules {
            match &r.matcher.path {
                PathMatch::Exact(p) => out.exact.entry(p.clone()).or_default().push(r),
                PathMatch::Prefix(p) => out.prefix.entry(p.clone()).or_default().push(r),
            }
        }
        let mut lens: Vec<usize> = out.prefix.keys().map(|p| p.len()).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        out.prefix_lens = lens;
        out
    }

    /// Every rule, in rank order.
    pub fn all(&self) -> Vec<&Rule> {
        let mut v: Vec<&Rule> = self
            .exact
            .values()
            .chain(self.prefix.values())
            .flatten()
            .chain(self.fallback.iter())
            .collect();
        v.sort_by(|a, b| a.rank.cmp(&b.rank));
        v
    }

    pub fn len(&self) -> usize {
        self.exact
            .values()
            .chain(self.prefix.values())
            .map(Vec::len)
            .sum::<usize>()
            + self.fallback.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest-ranked rule whose match holds for `req`. Buckets are
    /// visited in rank order (exact path, then prefixes longest first, then
    /// fallbacks), and within a bucket rules are in rank order, so the
    /// first hit is the answer.
    pub fn first_match(&self, req: &Request<'_>) -> Option<&Rule> {
        let hit = |rules: &'_ [Rule]| -> Option<usize> {
            rules.iter().position(|r| r.matcher.matches(req))
        };
        if let Some(rules) = self.exact.get(req.path) {
            if let Some(i) = hit(rules) {
                return Some(&rules[i]);
            }
        }
        for &len in &self.prefix_lens {
            if len > req.path.len() {
                continue;
            }
            let candidate = &req.path[..len];
            if !req.path.is_char_boundary(len) {
                continue;
            }
            let Some(rules) = self.prefix.get(candidate) else {
                continue;
            };
            if let Some(i) = hit(rules) {
                return Some(&rules[i]);
            }
        }
        self.fallback.iter().find(|r| r.matcher.matches(req))
    }
}

/// What a matched rule does.
#[derive(Debug, Default)]
pub struct Action {
    pub request_headers: HeaderFilter,
    pub response_headers: HeaderFilter,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
    /// Weighted backends; a weight of 0 is never chosen.
    pub backends: Vec<Weighted>,
    pub timeouts: Timeouts,
}

impl Action {
    /// The backend for a draw `r` (uniform over u32): weights decide; no
    /// backend with a weight → [`Pick::Invalid`] (the spec's 500).
    pub fn pick(&self, r: u32) -> Pick<'_> {
        let total: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return Pick::Invalid;
        }
        let mut at = (u64::from(r) * total) >> 32;
        for b in &self.backends {
            let w = u64::from(b.weight);
            if at < w {
                return match &b.target {
                    Target::Backend(be) => Pick::Backend(be),
                    Target::Invalid(_) => Pick::Invalid,
                };
            }
            at -= w;
        }
        Pick::Invalid
    }
}

/// The outcome of [`Action::pick`].
#[derive(Debug)]
pub enum Pick<'a> {
    Backend(&'a Arc<Backend>),
    /// No valid backend for this share of requests: 500.
    Invalid,
}

/// A backend with its weight.
#[derive(Debug)]
pub struct Weighted {
    pub weight: u32,
    pub target: Target,
}

#[derive(Debug)]
pub enum Target {
    Backend(Arc<Backend>),
    /// A reference that did not resolve, and why (for logs): requests that
    /// would have gone there get 500.
    Invalid(String),
}

/// A resolved backend: a Service port and its ready endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`.
    pub name: String,
    /// Ready endpoints; empty → 503.
    pub endpoints: Vec<SocketAddr>,
    /// Speak h2c (the Service port's `appProtocol: kubernetes.io/h2c`).
    pub h2c: bool,
    /// Re-encrypt (BackendTLSPolicy).
    pub tls: Option<BackendTls>,
}

/// TLS from the gateway to a backend.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// The name the backend's certificate must carry (and the SNI sent).
    pub server_name: rustls_pki_types::ServerName<'static>,
    pub config: Arc<rustls::ClientConfig>,
}

/// Header edits (RequestHeaderModifier / ResponseHeaderModifier).
#[derive(Debug, Default, Clone)]
pub struct HeaderFilter {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderFilter {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits in the specification's order: set, add, remove.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }

    /// Merges another filter's edits after these (two filters of one type
    /// on one rule are refused by compile; backend-level filters follow the
    /// rule's).
    pub fn then(&self, other: &HeaderFilter) -> HeaderFilter {
        let mut out = self.clone();
        out.set.extend(other.set.iter().cloned());
        out.add.extend(other.add.iter().cloned());
        out.remove.extend(other.remove.iter().cloned());
        out
    }
}

/// A path rewrite (redirect or URLRewrite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    Full(String),
    /// Replace the matched prefix.
    Prefix(String),
}

impl PathModifier {
    /// The new path for `path`, which `matched` matched.
    pub fn apply(&self, path: &str, matched: &PathMatch) -> String {
        match self {
            PathModifier::Full(p) => p.clone(),
            PathModifier::Prefix(replacement) => {
                let rest = match matched {
                    PathMatch::Prefix(p) => &path[p.len().min(path.len())..],
                    PathMatch::Exact(_) => "",
                };
                let mut out = replacement.trim_end_matches('/').to_string();
                if rest.is_empty() || rest == "/" {
                    if out.is_empty() || rest == "/" {
                        out.push('/');
                    }
                } else {
                    out.push_str(rest);
                }
                out
            }
        }
    }
}

/// RequestRedirect.
#[derive(Debug, Clone, Default)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    /// 301, 302 (default), 303, 307 or 308.
    pub status: u16,
}

impl Redirect {
    /// The `Location` for a request: `scheme` and `port` are the request's,
    /// `host` its Host without port.
    pub fn location(
        &self,
        scheme: &str,
        host: &str,
        listener_port: u16,
        path: &str,
        query: Option<&str>,
        matched: &PathMatch,
    ) -> String {
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.hostname.as_deref().unwrap_or(host);
        // Gateway API: without a port, a redirect that sets the scheme goes
        // to that scheme's well-known port; otherwise to the listener's.
        let port = self.port.unwrap_or_else(|| match &self.scheme {
            Some(s) if s == "https" => 443,
            Some(_) => 80,
            None => listener_port,
        });
        let well_known = matches!((new_scheme, port), ("http", 80) | ("https", 443));
        let path = match &self.path {
            Some(m) => m.apply(path, matched),
            None => path.to_string(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let mut out = if well_known {
            format!("{new_scheme}://{host}{path}")
        } else {
            format!("{new_scheme}://{host}:{port}{path}")
        };
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// URLRewrite.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

/// HTTPRouteTimeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's start to the end of the response headers.
    pub request: Option<Duration>,
    /// One try to a backend.
    pub backend: Option<Duration>,
}

/// RFC 3986 §5.2.4 dot-segment removal, so `/a/../admin` is matched (and
/// forwarded) as `/admin`: a rule cannot be side-stepped by spelling a path
/// differently. Returns None for a path that does not start with '/'.
pub fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing = i == last,
            ".." => {
                out.pop();
                trailing = i == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || s.is_empty() {
        s.push('/');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_matches_whole_path_elements_only() {
        let p = PathMatch::Prefix("/foo".into());
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
        let root = PathMatch::Prefix(String::new());
        assert!(root.matches("/"));
        assert!(root.matches("/anything"));
    }

    #[test]
    fn dot_segments_are_removed_before_matching() {
        assert_eq!(normalize_path("/a/../admin").as_deref(), Some("/admin"));
        assert_eq!(normalize_path("/a/./b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize_path("/../../x").as_deref(), Some("/x"));
        assert_eq!(normalize_path("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("x"), None);
    }

    #[test]
    fn replace_prefix_match_keeps_the_rest_of_the_path() {
        let m = PathMatch::Prefix("/foo".into());
        let r = PathModifier::Prefix("/xyz".into());
        assert_eq!(r.apply("/foo/bar", &m), "/xyz/bar");
        assert_eq!(r.apply("/foo", &m), "/xyz");
        assert_eq!(r.apply("/foo/", &m), "/xyz/");
        let root = PathModifier::Prefix("/".into());
        assert_eq!(root.apply("/foo/bar", &m), "/bar");
        assert_eq!(root.apply("/foo", &m), "/");
    }

    #[test]
    fn a_redirect_to_https_goes_to_port_443_and_leaves_it_out() {
        let r = Redirect {
            scheme: Some("https".into()),
            status: 301,
            ..Redirect::default()
        };
        let m = PathMatch::Prefix(String::new());
        assert_eq!(
            r.location("http", "foo.com", 80, "/a", Some("b=1"), &m),
            "https://foo.com/a?b=1"
        );
        let r = Redirect {
            port: Some(8443),
            ..r
        };
        assert_eq!(
            r.location("http", "foo.com", 80, "/", None, &m),
            "https://foo.com:8443/"
        );
        let plain = Redirect {
            hostname: Some("bar.com".into()),
            status: 302,
            ..Redirect::default()
        };
        assert_eq!(
            plain.location("http", "foo.com", 8080, "/", None, &m),
            "http://bar.com:8080/"
        );
    }

    #[test]
    fn weights_split_draws_in_proportion_and_zero_weights_are_never_picked() {
        let be = |n: &str| {
            Target::Backend(Arc::new(Backend {
                name: n.into(),
                endpoints: vec![],
                h2c: false,
                tls: None,
            }))
        };
        let a = Action {
            backends: vec![
                Weighted {
                    weight: 80,
                    target: be("a"),
                },
                Weighted {
                    weight: 0,
                    target: be("never"),
                },
                Weighted {
                    weight: 20,
                    target: be("b"),
                },
            ],
            ..Action::default()
        };
        let mut counts: HashMap<String, u32> = HashMap::new();
        for i in 0..1000u32 {
            // Draws spread evenly over u32 (the middle of each thousandth).
            let r = ((2 * u64::from(i) + 1) * (1u64 << 32) / 2000) as u32;
            if let Pick::Backend(b) = a.pick(r) {
                *counts.entry(b.name.clone()).or_default() += 1;
            }
        }
        assert_eq!(counts.get("a"), Some(&800));
        assert_eq!(counts.get("b"), Some(&200));
        assert_eq!(counts.get("never"), None);
        let none = Action {
            backends: vec![Weighted {
                weight: 0,
                target: be("z"),
            }],
            ..Action::default()
        };
        assert!(matches!(none.pick(7), Pick::Invalid));
    }
}
