//! The route table compiled from API objects: every precedence rule of
//! Ingress (networking.k8s.io/v1 IngressRule/HTTPIngressPath docs) and of
//! the Gateway API (HTTPRouteRule precedence, hostname matching, listener
//! selection, attachment, ReferenceGrant, BackendTLSPolicy), checked by
//! routing requests through the compiled table. Fixtures are weft's own.

mod common;

use common::*;
use weft_gateway::table::Pick;

#[test]
fn ingress_exact_path_beats_a_prefix_of_the_same_length() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- host: foo.com
  http:
    paths:
    - {path: /app, pathType: Prefix, backend: {service: {name: prefix, port: {number: 80}}}}
    - {path: /app, pathType: Exact, backend: {service: {name: exact, port: {number: 80}}}}
"#,
    );
    let t = w.compile();
    assert_eq!(t.backend(80, "foo.com", "GET", "/app"), "default/exact:80");
    assert_eq!(
        t.backend(80, "foo.com", "GET", "/app/x"),
        "default/prefix:80"
    );
}

#[test]
fn ingress_longest_matching_prefix_wins() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- http:
    paths:
    - {path: /, pathType: Prefix, backend: {service: {name: root, port: {number: 80}}}}
    - {path: /a/b, pathType: Prefix, backend: {service: {name: ab, port: {number: 80}}}}
    - {path: /a, pathType: ImplementationSpecific, backend: {service: {name: a, port: {number: 80}}}}
"#,
    );
    let t = w.compile();
    assert_eq!(t.backend(80, "any.host", "GET", "/a/b/c"), "default/ab:80");
    assert_eq!(t.backend(80, "any.host", "GET", "/a/bc"), "default/a:80");
    assert_eq!(t.backend(80, "any.host", "GET", "/ab"), "default/root:80");
}

#[test]
fn ingress_prefix_matches_whole_path_elements_and_ignores_a_trailing_slash() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- http:
    paths:
    - {path: /foo/, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}
"#,
    );
    let t = w.compile();
    assert_eq!(t.backend(80, "h.com", "GET", "/foo"), "default/foo:80");
    assert_eq!(t.backend(80, "h.com", "GET", "/foo/bar"), "default/foo:80");
    assert_eq!(t.outcome(80, "h.com", "GET", "/foobar"), Outcome::NotFound);
}

#[test]
fn ingress_wildcard_host_matches_one_label_and_an_exact_host_beats_it() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- host: "*.foo.com"
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: wild, port: {number: 80}}}}]}
- host: bar.foo.com
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: bar, port: {number: 80}}}}]}
"#,
    );
    let t = w.compile();
    assert_eq!(t.backend(80, "bar.foo.com", "GET", "/"), "default/bar:80");
    assert_eq!(t.backend(80, "baz.foo.com", "GET", "/"), "default/wild:80");
    assert_eq!(
        t.outcome(80, "a.baz.foo.com", "GET", "/"),
        Outcome::NotFound
    );
    assert_eq!(t.outcome(80, "foo.com", "GET", "/"), Outcome::NotFound);
}

#[test]
fn ingress_default_backend_answers_requests_no_rule_matches() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
defaultBackend: {service: {name: fallback, port: {number: 80}}}
rules:
- host: foo.com
  http: {paths: [{path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]}
"#,
    );
    let t = w.compile();
    assert_eq!(t.backend(80, "foo.com", "GET", "/api/v1"), "default/api:80");
    assert_eq!(
        t.backend(80, "foo.com", "GET", "/other"),
        "default/fallback:80"
    );
    assert_eq!(
        t.backend(80, "elsewhere.org", "GET", "/"),
        "default/fallback:80"
    );
}

#[test]
fn the_oldest_ingress_wins_a_host_and_path_two_ingresses_claim() {
    let rule = |svc: &str| {
        format!(
            "rules:\n- host: foo.com\n  http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    let w = World::new()
        .ingress("newer", "2026-02-01T00:00:00Z", &rule("new"))
        .ingress("older", "2026-01-01T00:00:00Z", &rule("old"));
    assert_eq!(
        w.compile().backend(80, "foo.com", "GET", "/"),
        "default/old:80"
    );
}

#[test]
fn only_ingresses_of_a_weft_class_or_of_the_default_class_are_served() {
    let rules = "rules:\n- http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}]}\n";
    let other = World::new()
        .with_ingress_class("other", "example.com/other", false)
        .ingress_with_class("x", Some("other"), rules);
    // Port 80 is served (the Gateway's listener), the Ingress is not.
    assert_eq!(
        other.compile().outcome(80, "h.com", "GET", "/"),
        Outcome::NotFound
    );
    let no_class_no_default = World::new().ingress_with_class("x", None, rules);
    assert_eq!(
        no_class_no_default
            .compile()
            .outcome(80, "h.com", "GET", "/"),
        Outcome::NotFound
    );
    let default = World::bare()
        .with_ingress_class("weft", weft_gateway::api::CONTROLLER_NAME, true)
        .services()
        .ingress_with_class("x", None, rules);
    assert_eq!(
        default.compile().backend(80, "h.com", "GET", "/"),
        "default/a:80"
    );
}

#[test]
fn an_ingress_host_with_tls_redirects_http_to_https_and_is_served_on_443_with_its_certificate() {
    let w = World::new().tls_secret("foo-tls", &["foo.com"]).ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
tls: [{hosts: [foo.com], secretName: foo-tls}]
rules:
- host: foo.com
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}]}
- host: plain.com
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}]}
"#,
    );
    let t = w.compile();
    assert_eq!(
        t.outcome(80, "foo.com", "GET", "/x?y=1"),
        Outcome::Redirect(308, "https://foo.com/x?y=1".into())
    );
    assert_eq!(t.backend(80, "plain.com", "GET", "/"), "default/b:80");
    assert!(
        t.certificate(443, Some("foo.com")),
        "no certificate for foo.com on 443"
    );
    assert_eq!(t.backend(443, "foo.com", "GET", "/"), "default/a:80");
    assert_eq!(t.outcome(443, "plain.com", "GET", "/"), Outcome::NoListener);
}

#[test]
fn the_ssl_redirect_annotation_false_serves_a_tls_host_on_http_too() {
    let mut w = World::new().tls_secret("foo-tls", &["foo.com"]).ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
tls: [{hosts: [foo.com], secretName: foo-tls}]
rules:
- host: foo.com
  http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}]}
"#,
    );
    let mut ing = (*w.ingresses[0]).clone();
    ing.metadata.annotations = Some(
        [(
            weft_gateway::compile::SSL_REDIRECT_ANNOTATION.to_string(),
            "false".to_string(),
        )]
        .into(),
    );
    w.ingresses[0] = std::sync::Arc::new(ing);
    let t = w.compile();
    assert_eq!(t.backend(80, "foo.com", "GET", "/"), "default/a:80");
    assert_eq!(t.backend(443, "foo.com", "GET", "/"), "default/a:80");
}

#[test]
fn a_backend_without_ready_endpoints_is_503_and_a_missing_service_is_500() {
    let w = World::new().ingress(
        "web",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- http:
    paths:
    - {path: /idle, pathType: Prefix, backend: {service: {name: idle, port: {number: 80}}}}
    - {path: /gone, pathType: Prefix, backend: {service: {name: nosuch, port: {number: 80}}}}
"#,
    );
    let c = w.compile_full();
    let t = Compiled(c.table);
    assert_eq!(t.outcome(80, "h", "GET", "/idle"), Outcome::NoEndpoints);
    assert_eq!(t.outcome(80, "h", "GET", "/gone"), Outcome::Invalid);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("Ingress default/web") && w.contains("nosuch")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn ready_endpoints_only_and_the_slice_port_of_the_service_port() {
    let w = World::new();
    let t = w
        .route(
            ROUTE_NS,
            "r",
            "2026-01-01T00:00:00Z",
            "rules: [{backendRefs: [{name: a, port: 80}]}]",
        )
        .compile();
    let eps = t.endpoints(80, "h", "GET", "/");
    // Service a: 10.1.0.1 ready, 10.1.0.2 not ready, 10.1.0.3 terminating; port http → 8080.
    assert_eq!(eps, vec!["10.1.0.1:8080".parse().unwrap()]);
}

// --- HTTPRoute precedence ---------------------------------------------------

#[test]
fn httproute_exact_path_beats_any_prefix() {
    let t = World::new()
        .route(
            ROUTE_NS,
            "r",
            "2026-01-01T00:00:00Z",
            r#"
rules:
- matches: [{path: {type: PathPrefix, value: /a}}]
  backendRefs: [{name: a, port: 80}]
- matches: [{path: {type: Exact, value: /a/b}}]
  backendRefs: [{name: b, port: 80}]
"#,
        )
        .compile();
    assert_eq!(t.backend(80, "h", "GET", "/a/b"), "default/b:80");
    assert_eq!(t.backend(80, "h", "GET", "/a/bc"), "default/a:80");
}

#[test]
fn httproute_longest_prefix_wins_across_routes() {
    let t = World::new()
        .route(
            ROUTE_NS,
            "short",
            "2026-01-01T00:00:00Z",
            "rules: [{matches: [{path: {value: /}}], backendRefs: [{name: a, port: 80}]}]",
        )
        .route(
            ROUTE_NS,
            "long",
            "2026-03-01T00:00:00Z",
            "rules: [{matches: [{path: {value: /api/v2}}], backendRefs: [{name: b, port: 80}]}]",
        )
        .compile();
    assert_eq!(t.backend(80, "h", "GET", "/api/v2/x"), "default/b:80");
    assert_eq!(t.backend(80, "h", "GET", "/api/v3"), "default/a:80");
}

#[test]
fn httproute_method_match_beats_no_method_on_the_same_path() {
    let t = World::new()
        .route(
            ROUTE_NS,
            "r",
            "2026-01-01T00:00:00Z",
            r#"
rules:
- matches: [{path: {value: /x}}]
  backendRefs: [{name: a, port: 80}]
- matches: [{path: {value: /x}, method: POST}]
  backendRefs: [{name: b, port: 80}]
"#,
        )
        .compile();
    assert_eq!(t.backend(80, "h", "POST", "/x"), "default/b:80");
    assert_eq!(t.backend(80, "h", "GET", "/x"), "default/a:80");
}

#[test]
fn httproute_more_header_matches_win_then_more_query_matches() {
    let t = World::new()
        .route(ROUTE_NS, "r", "2026-01-01T00:00:00Z", r#"
rules:
- matches: [{headers: [{name: env, value: canary}]}]
  backendRefs: [{name: a, port: 80}]
- matches: [{headers: [{name: env, value: canary}, {name: X-User, type: RegularExpression, value: "adm.*"}]}]
  backendRefs: [{name: b, port: 80}]
- matches: [{headers: [{name: env, value: canary}], queryParams: [{name: debug, value: "1"}]}]
  backendRefs: [{name: c, port: 80}]
"#)
        .compile();
    assert_eq!(
        t.backend_with(
            80,
            "h",
            "GET",
            "/",
            &[("env", "canary"), ("x-user", "admin")]
        ),
        "default/b:80"
    );
    assert_eq!(
        t.backend_with(80, "h", "GET", "/?debug=1", &[("Env", "canary")]),
        "default/c:80"
    );
    assert_eq!(
        t.backend_with(
            80,
            "h",
            "GET",
            "/",
            &[("env", "canary"), ("x-user", "xadmin")]
        ),
        "default/a:80"
    );
    assert_eq!(
        t.outcome_with(80, "h", "GET", "/", &[("env", "prod")]),
        Outcome::NotFound
    );
}

#[test]
fn httproute_ties_go_to_the_oldest_route_then_namespace_and_name_then_rule_order() {
    let one = "rules: [{matches: [{path: {value: /}}], backendRefs: [{name: NAME, port: 80}]}]";
    let t = World::new()
        .route(
            ROUTE_NS,
            "young",
            "2026-05-01T00:00:00Z",
            &one.replace("NAME", "a"),
        )
        .route(
            ROUTE_NS,
            "old",
            "2026-01-01T00:00:00Z",
            &one.replace("NAME", "b"),
        )
        .compile();
    assert_eq!(t.backend(80, "h", "GET", "/"), "default/b:80");
    let t = World::new()
        .route(
            ROUTE_NS,
            "zeta",
            "2026-01-01T00:00:00Z",
            &one.replace("NAME", "a"),
        )
        .route(
            ROUTE_NS,
            "alpha",
            "2026-01-01T00:00:00Z",
            &one.replace("NAME", "b"),
        )
        .compile();
    assert_eq!(t.backend(80, "h", "GET", "/"), "default/b:80");
    let t = World::new()
        .route(
            ROUTE_NS,
            "r",
            "2026-01-01T00:00:00Z",
            r#"
rules:
- matches: [{path: {value: /}}]
  backendRefs: [{name: a, port: 80}]
- matches: [{path: {value: /}}]
  backendRefs: [{name: b, port: 80}]
"#,
        )
        .compile();
    assert_eq!(t.backend(80, "h", "GET", "/"), "default/a:80");
}

#[test]
fn a_route_hostname_exact_beats_wildcard_and_hostnames_must_intersect_the_listener() {
    let w = World::new()
        .gateway_listeners(r#"
- {name: web, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}}
"#)
        .route(ROUTE_NS, "wild", "2026-01-01T00:00:00Z", r#"
hostnames: ["*.example.com"]
rules: [{backendRefs: [{name: a, port: 80}]}]
"#)
        .route(ROUTE_NS, "foo", "2026-02-01T00:00:00Z", r#"
hostnames: [foo.example.com]
rules: [{backendRefs: [{name: b, port: 80}]}]
"#)
        .route(ROUTE_NS, "other", "2026-02-01T00:00:00Z", r#"
hostnames: [other.org]
rules: [{backendRefs: [{name: c, port: 80}]}]
"#);
    let c = w.compile_full();
    let t = Compiled(c.table);
    assert_eq!(t.backend(80, "foo.example.com", "GET", "/"), "default/b:80");
    assert_eq!(t.backend(80, "a.b.example.com", "GET", "/"), "default/a:80");
    assert_eq!(t.outcome(80, "other.org", "GET", "/"), Outcome::NoListener);
    let s = route_status(&c.statuses, "other");
    assert_eq!(
        cond(&s, "Accepted"),
        ("False".into(), "NoMatchingListenerHostname".into())
    );
    let s = route_status(&c.statuses, "foo");
    assert_eq!(cond(&s, "Accepted"), ("True".into(), "Accepted".into()));
}

#[test]
fn the_most_specific_listener_takes_the_request_even_if_only_a_broader_one_has_a_matching_route() {
    let w = World::new()
        .gateway_listeners(r#"
- {name: any, port: 80, protocol: HTTP}
- {name: foo, port: 80, protocol: HTTP, hostname: foo.com}
"#)
        .route(ROUTE_NS, "to-any", "2026-01-01T00:00:00Z", "parentRefs: [{name: gw, sectionName: any}]\nrules: [{backendRefs: [{name: a, port: 80}]}]")
        .route(ROUTE_NS, "to-foo", "2026-01-01T00:00:00Z", "parentRefs: [{name: gw, sectionName: foo}]\nrules: [{matches: [{path: {type: Exact, value: /only}}], backendRefs: [{name: b, port: 80}]}]");
    let t = w.compile();
    assert_eq!(t.backend(80, "foo.com", "GET", "/only"), "default/b:80");
    assert_eq!(t.outcome(80, "foo.com", "GET", "/other"), Outcome::NotFound);
    assert_eq!(t.backend(80, "bar.com", "GET", "/other"), "default/a:80");
}

#[test]
fn allowed_routes_same_namespace_keeps_routes_of_other_namespaces_out() {
    let w = World::new()
        .gateway_listeners("- {name: web, port: 80, protocol: HTTP}\n")
        .route("team-b", "r", "2026-01-01T00:00:00Z", "parentRefs: [{name: gw, namespace: default}]\nrules: [{backendRefs: [{name: a, port: 80}]}]");
    let c = w.compile_full();
    let s = route_status(&c.statuses, "r");
    assert_eq!(
        cond(&s, "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    assert_eq!(
        Compiled(c.table).outcome(80, "h", "GET", "/"),
        Outcome::NotFound
    );
}

#[test]
fn a_cross_namespace_backend_needs_a_reference_grant() {
    let route = "rules: [{backendRefs: [{name: a, namespace: default, port: 80}]}]";
    let w = World::new().route("team-b", "r", "2026-01-01T00:00:00Z", route);
    let c = w.compile_full();
    assert_eq!(
        cond(&route_status(&c.statuses, "r"), "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    assert_eq!(
        Compiled(c.table).outcome(80, "h", "GET", "/"),
        Outcome::Invalid
    );
    let granted = World::new()
        .route("team-b", "r", "2026-01-01T00:00:00Z", route)
        .grant("default", "HTTPRoute", "team-b", "Service");
    let c = granted.compile_full();
    assert_eq!(
        cond(&route_status(&c.statuses, "r"), "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    assert_eq!(
        Compiled(c.table).backend(80, "h", "GET", "/"),
        "default/a:80"
    );
}

#[test]
fn weighted_backends_split_by_weight_and_an_unresolved_share_is_500() {
    let t = World::new()
        .route(ROUTE_NS, "r", "2026-01-01T00:00:00Z", "rules: [{backendRefs: [{name: a, port: 80, weight: 80}, {name: nosuch, port: 80, weight: 20}]}]")
        .compile();
    let action = t.action(80, "h", "GET", "/");
    let mut ok = 0;
    let mut invalid = 0;
    for i in 0..1000u64 {
        match action.pick((((2 * i + 1) << 32) / 2000) as u32) {
            Pick::Backend(_) => ok += 1,
            Pick::Invalid => invalid += 1,
        }
    }
    assert_eq!((ok, invalid), (800, 200));
}

#[test]
fn filters_are_compiled_and_a_bad_filter_rejects_the_route_with_its_reason() {
    let w = World::new().route(ROUTE_NS, "r", "2026-01-01T00:00:00Z", r#"
rules:
- filters:
  - type: RequestHeaderModifier
    requestHeaderModifier: {set: [{name: X-A, value: "1"}], add: [{name: X-B, value: "2"}], remove: [x-c]}
  - type: URLRewrite
    urlRewrite: {hostname: internal.svc, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
  backendRefs: [{name: a, port: 80}]
"#);
    let t = w.compile();
    let a = t.action(80, "h", "GET", "/x");
    assert_eq!(a.request_headers.set.len(), 1);
    assert!(a.rewrite.as_ref().is_some_and(|r| r.hostname.is_some()));
    let bad = World::new().route(
        ROUTE_NS,
        "r",
        "2026-01-01T00:00:00Z",
        r#"
rules:
- filters: [{type: RequestRedirect, requestRedirect: {statusCode: 418}}]
"#,
    );
    let c = bad.compile_full();
    let s = route_status(&c.statuses, "r");
    let (status, reason) = cond(&s, "Accepted");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "UnsupportedValue")
    );
    assert!(cond_message(&s, "Accepted").contains("418"), "{s}");
}

#[test]
fn an_https_listener_without_its_secret_is_not_programmed_and_says_why() {
    let w = World::new().gateway_listeners(
        r#"
- {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}
- {name: http, port: 80, protocol: HTTP}
"#,
    );
    let c = w.compile_full();
    let gw = gateway_status(&c.statuses);
    let l = listener_status(&gw, "https");
    assert_eq!(
        cond(&l, "ResolvedRefs"),
        ("False".into(), "InvalidCertificateRef".into())
    );
    assert_eq!(cond(&l, "Programmed"), ("False".into(), "Invalid".into()));
    assert_eq!(
        cond(&listener_status(&gw, "http"), "Programmed"),
        ("True".into(), "Programmed".into())
    );
    assert!(!c.table.ports.contains_key(&443));
}

#[test]
fn listeners_on_one_port_with_different_protocols_conflict() {
    let w = World::new()
        .tls_secret("cert", &["a.com"])
        .gateway_listeners(r#"
- {name: plain, port: 8000, protocol: HTTP}
- {name: secure, port: 8000, protocol: HTTPS, hostname: a.com, tls: {certificateRefs: [{name: cert}]}}
"#);
    let c = w.compile_full();
    let gw = gateway_status(&c.statuses);
    assert_eq!(
        cond(&listener_status(&gw, "secure"), "Conflicted"),
        ("True".into(), "ProtocolConflict".into())
    );
    assert_eq!(
        cond(&listener_status(&gw, "plain"), "Conflicted"),
        ("False".into(), "NoConflicts".into())
    );
}

#[test]
fn attached_routes_are_counted_per_listener() {
    let w = World::new()
        .route(
            ROUTE_NS,
            "r1",
            "2026-01-01T00:00:00Z",
            "rules: [{backendRefs: [{name: a, port: 80}]}]",
        )
        .route(
            ROUTE_NS,
            "r2",
            "2026-01-01T00:00:00Z",
            "rules: [{backendRefs: [{name: a, port: 80}]}]",
        );
    let c = w.compile_full();
    let gw = gateway_status(&c.statuses);
    assert_eq!(listener_status(&gw, "web")["attachedRoutes"], 2);
    assert_eq!(
        cond(&gw, "Programmed"),
        ("True".into(), "Programmed".into())
    );
}

#[test]
fn a_tls_passthrough_listener_sends_each_sni_to_its_tlsroute_backend() {
    let w = World::new()
        .gateway_listeners(
            r#"
- {name: pass, port: 8443, protocol: TLS, tls: {mode: Passthrough}}
"#,
        )
        .tls_route(
            "secure",
            r#"
parentRefs: [{name: gw}]
hostnames: [secure.example.com]
rules: [{backendRefs: [{name: a, port: 80}]}]
"#,
        );
    let t = w.compile();
    let l =
        t.0.listener(8443, Some("secure.example.com"))
            .expect("listener");
    let action = l
        .passthrough(Some("secure.example.com"))
        .expect("backends for the SNI");
    match action.pick(0) {
        Pick::Backend(b) => assert_eq!(b.name, "default/a:80"),
        Pick::Invalid => panic!("invalid"),
    }
    assert!(l.passthrough(Some("other.example.com")).is_none());
}

#[test]
fn a_backend_tls_policy_makes_the_backend_re_encrypt_and_a_missing_ca_makes_it_invalid() {
    let route = "rules: [{backendRefs: [{name: a, port: 80}]}]";
    let w = World::new()
        .ca_config_map("ca", true)
        .policy("a", "ca", "a.default.svc")
        .route(ROUTE_NS, "r", "2026-01-01T00:00:00Z", route);
    let t = w.compile();
    match t.action(80, "h", "GET", "/").pick(0) {
        Pick::Backend(b) => assert!(b.tls.is_some(), "no TLS to the backend"),
        Pick::Invalid => panic!("invalid"),
    }
    let w = World::new()
        .ca_config_map("ca", false)
        .policy("a", "ca", "a.default.svc")
        .route(ROUTE_NS, "r", "2026-01-01T00:00:00Z", route);
    let c = w.compile_full();
    assert_eq!(
        Compiled(c.table).outcome(80, "h", "GET", "/"),
        Outcome::Invalid
    );
}

#[test]
fn gateways_of_other_classes_are_left_alone() {
    let w = World::new().foreign_gateway();
    let c = w.compile_full();
    assert!(
        c.statuses.iter().all(|s| s.name != "foreign"),
        "{:?}",
        c.statuses
    );
}
