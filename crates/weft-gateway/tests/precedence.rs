//! Property: whatever the rules and the request, the table answers with the
//! highest-precedence rule that matches, precedence as the Gateway API's
//! HTTPRouteRule documentation states it (Exact path; longest prefix;
//! method; most headers; most query parameters; oldest route; namespace/
//! name; rule order). The oracle below scans every rule with that order
//! written out independently of the table's index and rank.

use std::cmp::Reverse;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use weft_gateway::table::{
    Action, Match, Origin, OriginKind, PathMatch, Rank, Request, Rule, Rules, ValueMatch,
};

#[derive(Debug, Clone)]
struct Spec {
    exact: bool,
    path: String,
    method: Option<&'static str>,
    headers: Vec<&'static str>,
    query: Vec<&'static str>,
    created: &'static str,
    name: &'static str,
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "ab"]), 0..4)
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        path(),
        prop::option::of(prop::sample::select(vec!["GET", "POST"])),
        prop::sample::subsequence(vec!["x-a", "x-b"], 0..=2),
        prop::sample::subsequence(vec!["q", "r"], 0..=2),
        prop::sample::select(vec!["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]),
        prop::sample::select(vec!["r1", "r2", "r3"]),
    )
        .prop_map(
            |(exact, path, method, headers, query, created, name)| Spec {
                exact,
                path,
                method,
                headers,
                query,
                created,
                name,
            },
        )
}

#[derive(Debug, Clone)]
struct Req {
    path: String,
    method: &'static str,
    headers: Vec<&'static str>,
    query: Vec<&'static str>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        path(),
        prop::sample::select(vec!["GET", "POST", "PUT"]),
        prop::sample::subsequence(vec!["x-a", "x-b"], 0..=2),
        prop::sample::subsequence(vec!["q", "r"], 0..=2),
    )
        .prop_map(|(path, method, headers, query)| Req {
            path,
            method,
            headers,
            query,
        })
}

fn to_rule(i: usize, s: &Spec) -> Rule {
    let matcher = Match {
        path: if s.exact {
            PathMatch::Exact(s.path.clone())
        } else {
            PathMatch::Prefix(s.path.trim_end_matches('/').to_string())
        },
        method: s.method.map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        headers: s
            .headers
            .iter()
            .map(|h| (HeaderName::from_static(h), ValueMatch::Exact("1".into())))
            .collect(),
        query: s
            .query
            .iter()
            .map(|q| (q.to_string(), ValueMatch::Exact("1".into())))
            .collect(),
    };
    let origin = Origin {
        kind: OriginKind::HttpRoute,
        namespace: "default".into(),
        name: s.name.into(),
        created: Some(s.created.into()),
    };
    Rule {
        rank: Rank::of(&matcher, &origin, i, 0),
        matcher,
        action: Arc::new(Action::default()),
        route: Arc::from(format!("rule-{i}")),
    }
}

/// The spec's matching, written out: element-wise prefixes.
fn oracle_matches(s: &Spec, r: &Req) -> bool {
    let path_ok = if s.exact {
        s.path == r.path
    } else {
        let p = s.path.trim_end_matches('/');
        r.path == p || r.path.starts_with(&format!("{p}/")) || p.is_empty()
    };
    path_ok
        && s.method.is_none_or(|m| m == r.method)
        && s.headers.iter().all(|h| r.headers.contains(h))
        && s.query.iter().all(|q| r.query.contains(q))
}

type Key = (
    u8,
    Reverse<usize>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    &'static str,
    &'static str,
    usize,
);

fn oracle_key(i: usize, s: &Spec) -> Key {
    let len = if s.exact {
        s.path.len()
    } else {
        s.path.trim_end_matches('/').len().max(1)
    };
    (
        if s.exact { 0 } else { 1 },
        Reverse(len),
        if s.method.is_some() { 0 } else { 1 },
        Reverse(s.headers.len()),
        Reverse(s.query.len()),
        s.created,
        s.name,
        i,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_highest_precedence_matching_rule_answers(specs in prop::collection::vec(spec(), 0..12), r in req()) {
        let rules = Rules::new(specs.iter().enumerate().map(|(i, s)| to_rule(i, s)).collect(), Vec::new());
        let mut headers = HeaderMap::new();
        for h in &r.headers {
            headers.insert(HeaderName::from_static(h), HeaderValue::from_static("1"));
        }
        let query = r.query.iter().map(|q| format!("{q}=1")).collect::<Vec<_>>().join("&");
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let request = Request {
            method: &method,
            path: &r.path,
            query: (!query.is_empty()).then_some(query.as_str()),
            headers: &headers,
        };
        let got = rules.first_match(&request).map(|rule| rule.route.to_string());
        let want = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| oracle_matches(s, &r))
            .min_by_key(|(i, s)| oracle_key(*i, s))
            .map(|(i, _)| format!("rule-{i}"));
        prop_assert_eq!(got, want);
    }
}
