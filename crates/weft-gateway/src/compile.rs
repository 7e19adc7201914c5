//! Compile (pure): the API objects → a [`Table`] and the status every
//! object this gateway serves should carry.
//!
//! Order of work: GatewayClasses (ours are the ones whose `controllerName`
//! is [`Config::controller_name`]), their Gateways' listeners (validated,
//! conflicts found, certificates loaded), HTTPRoutes and TLSRoutes attached
//! to those listeners (parentRefs, allowedRoutes, hostname intersection,
//! ReferenceGrants for cross-namespace references), Ingresses of our
//! IngressClasses; then every backend reference resolved to a Service
//! port's ready endpoints (EndpointSlices), with BackendTLSPolicy for
//! re-encryption.
//!
//! Gateways of one class share the proxy: listeners of several Gateways on
//! one port are merged by hostname (the oldest Gateway's certificate wins
//! a hostname both declare). Ingresses are served on ports 80 and 443 as
//! listeners without hostname (80) and per `tls` host (443), merged the
//! same way with Gateway listeners there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde_json::{json, Value};

use crate::api::{
    self, BackendTLSPolicy, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute,
};
use crate::host::{HostMap, HostPattern};
use crate::table::{
    Action, Backend, BackendTls, HeaderFilter, Listener, Match, Origin, OriginKind, PathMatch,
    PathModifier, Port, Protocol, Rank, Redirect, Rewrite, Rule, Rules, Table, Target, Timeouts,
    ValueMatch, Weighted,
};

/// What compile is told besides the objects.
#[derive(Debug, Clone)]
pub struct Config {
    /// GatewayClasses and IngressClasses naming this controller are ours.
    pub controller_name: String,
    /// The addresses clients reach the gateway at, written into Gateway and
    /// Ingress status.
    pub addresses: Vec<String>,
    /// Where Ingresses are served.
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    /// The time written into conditions that change now.
    pub now: Time,
}

/// Every object compile reads, as the watch stores hold them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inputs<'a> {
    pub gateway_classes: &'a [Arc<GatewayClass>],
    pub gateways: &'a [Arc<Gateway>],
    pub http_routes: &'a [Arc<HTTPRoute>],
    pub tls_routes: &'a [Arc<TLSRoute>],
    pub reference_grants: &'a [Arc<ReferenceGrant>],
    pub backend_tls_policies: &'a [Arc<BackendTLSPolicy>],
    pub ingress_classes: &'a [Arc<IngressClass>],
    pub ingresses: &'a [Arc<Ingress>],
    pub services: &'a [Arc<Service>],
    pub slices: &'a [Arc<EndpointSlice>],
    pub secrets: &'a [Arc<Secret>],
    pub config_maps: &'a [Arc<ConfigMap>],
    pub namespaces: &'a [Arc<Namespace>],
}

/// A status to write: the whole `status` of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// `GatewayClass`, `Gateway`, `HTTPRoute`, `TLSRoute`, `BackendTLSPolicy`, `Ingress`.
    pub kind: &'static str,
    /// None for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    pub status: Value,
}

/// The result of a compile.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: Table,
    pub statuses: Vec<StatusUpdate>,
    /// Problems with objects that have no status conditions to carry them
    /// (Ingresses), one line each naming the object.
    pub warnings: Vec<String>,
}

/// The annotation that opts an Ingress host with TLS out of the redirect
/// from HTTP to HTTPS (on by default, as ingress-nginx does).
pub const SSL_REDIRECT_ANNOTATION: &str = "weft.dev/ssl-redirect";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Listener indexes a parentRef attaches to, each with the effective hostnames.
type Attachments = Vec<(usize, Vec<HostPattern>)>;

/// A problem with a reference: the condition reason and a message.
#[derive(Debug, Clone)]
struct RefError {
    reason: &'static str,
    message: String,
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn created(meta: &ObjectMeta) -> Option<String> {
    meta.creation_timestamp.as_ref().map(|t| t.0.to_string())
}

/// Objects in precedence order: oldest first, then namespace/name.
fn ordered<T>(objs: &[Arc<T>], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&Arc<T>> {
    let mut v: Vec<&Arc<T>> = objs.iter().collect();
    v.sort_by_cached_key(|o| {
        let m = meta(o);
        (created(m).unwrap_or_else(|| "~".into()), key(m))
    });
    v
}

/// A condition, keeping the old transition time when the status did not change.
fn condition(
    old: &[Condition],
    now: &Time,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// Listener being built: several declarations may merge into one.
#[derive(Default)]
struct ListenerBuild {
    origin: String,
    certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    passthrough: Option<HostMap<Vec<Weighted>>>,
    routes: HostMap<Vec<Rule>>,
    fallback: Vec<Rule>,
    /// An Ingress contributes to it (its default backend applies here).
    ingress: bool,
}

struct PortBuild {
    protocol: Protocol,
    listeners: HostMap<ListenerBuild>,
}

/// A validated Gateway listener.
struct GatewayListener {
    gateway: (String, String),
    name: String,
    port: u16,
    protocol: Protocol,
    hostname: HostPattern,
    /// HTTPRoute, TLSRoute allowed here.
    kinds: Vec<&'static str>,
    namespaces: AllowedNamespaces,
    /// Installed (valid and without conflict).
    ready: bool,
    attached: i32,
    conditions: Vec<Condition>,
}

enum AllowedNamespaces {
    Same,
    All,
    Selector(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector),
}

struct Ctx<'a> {
    config: &'a Config,
    inputs: Inputs<'a>,
    services: HashMap<(String, String), &'a Service>,
    slices: HashMap<(String, String), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(String, String), &'a Secret>,
    config_maps: HashMap<(String, String), &'a ConfigMap>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    backends: HashMap<(String, String, i32), Result<Arc<Backend>, RefError>>,
    ports: BTreeMap<u16, PortBuild>,
    statuses: Vec<StatusUpdate>,
    warnings: Vec<String>,
}

/// Builds the table and the statuses from `inputs`.
pub fn compile(config: &Config, inputs: Inputs<'_>) -> Compiled {
    let mut cx = Ctx {
        config,
        inputs,
        services: inputs
            .services
            .iter()
            .map(|s| (key(&s.metadata), &**s))
            .collect(),
        slices: HashMap::new(),
        secrets: inputs
            .secrets
            .iter()
            .map(|s| (key(&s.metadata), &**s))
            .collect(),
        config_maps: inputs
            .config_maps
            .iter()
            .map(|c| (key(&c.metadata), &**c))
            .collect(),
        namespace_labels: inputs
            .namespaces
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect(),
        backends: HashMap::new(),
        ports: BTreeMap::new(),
        statuses: Vec::new(),
        warnings: Vec::new(),
    };
    for s in inputs.slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        cx.slices.entry((ns, svc.clone())).or_default().push(s);
    }

    let classes = cx.gateway_classes();
    let mut listeners = cx.gateways(&classes);
    cx.http_routes(&mut listeners);
    cx.tls_routes(&mut listeners);
    cx.gateway_statuses(&classes, &listeners);
    cx.ingresses();
    cx.backend_tls_policy_statuses();

    let table = Table {
        ports: std::mem::take(&mut cx.ports)
            .into_iter()
            .map(|(port, p)| (port, finish_port(p)))
            .collect(),
    };
    Compiled {
        table,
        statuses: cx.statuses,
        warnings: cx.warnings,
    }
}

fn finish_port(p: PortBuild) -> Port {
    let mut listeners = HostMap::new();
    for (pattern, l) in p.listeners.iter_owned() {
        let mut routes = HostMap::new();
        for (host, rules) in l.routes.iter_owned() {
            routes.insert(&host, Rules::new(rules, l.fallback.clone()));
        }
        // A fallback (Ingress default backend) also answers hosts that have
        // no rule of their own.
        if !l.fallback.is_empty() && routes.get(None).is_none() {
            routes.insert(
                &HostPattern::Any,
                Rules::new(Vec::new(), l.fallback.clone()),
            );
        }
        let passthrough = l.passthrough.map(|m| {
            let mut out = HostMap::new();
            for (host, backends) in m.iter_owned() {
                out.insert(
                    &host,
                    Arc::new(Action {
                        backends,
                        ..Action::default()
                    }),
                );
            }
            out
        });
        listeners.insert(
            &pattern,
            Listener {
                origin: l.origin,
                certificate: l.certificate,
                passthrough,
                routes,
            },
        );
    }
    Port {
        protocol: p.protocol,
        listeners,
    }
}

impl<'a> Ctx<'a> {
    fn now(&self) -> &Time {
        &self.config.now
    }

    /// Our GatewayClasses, with their status.
    fn gateway_classes(&mut self) -> HashSet<String> {
        let mut ours = HashSet::new();
        for gc in self.inputs.gateway_classes {
            if gc.spec.controller_name != self.config.controller_name {
                continue;
            }
            let name = gc.metadata.name.clone().unwrap_or_default();
            ours.insert(name.clone());
            let old = gc
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let accepted = condition(
                &old,
                self.now(),
                gc.metadata.generation,
                "Accepted",
                true,
                "Accepted",
                format!("served by {}", self.config.controller_name),
            );
            self.statuses.push(StatusUpdate {
                kind: "GatewayClass",
                namespace: None,
                name,
                status: json!({ "conditions": [accepted] }),
            });
        }
        ours
    }

    fn granted(&self, from: (&str, &str, &str), to: (&str, &str, &str, &str)) -> bool {
        let (from_group, from_kind, from_ns) = from;
        let (to_group, to_kind, to_ns, to_name) = to;
        if from_ns == to_ns {
            return true;
        }
        self.inputs.reference_grants.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(to_ns)
                && g.spec
                    .from
                    .iter()
                    .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
    }

    /// Validates every listener of our Gateways and installs the valid ones.
    fn gateways(&mut self, classes: &HashSet<String>) -> Vec<GatewayListener> {
        let mut out = Vec::new();
        let gateways = ordered(self.inputs.gateways, |g| &g.metadata);
        for gw in gateways {
            if !classes.contains(&gw.spec.gateway_class_name) {
                continue;
            }
            let gkey = key(&gw.metadata);
            let mut seen: HashSet<(u16, HostPattern)> = HashSet::new();
            for l in &gw.spec.listeners {
                let mut problems: Vec<(&'static str, &'static str, String)> = Vec::new();
                let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
                let hostname = match l.hostname.as_deref().map(HostPattern::gateway) {
                    None => Some(HostPattern::Any),
                    Some(Ok(h)) => Some(h),
                    Some(Err(e)) => {
                        problems.push(("Accepted", "UnsupportedValue", e.to_string()));
                        None
                    }
                };
                let mode = l
                    .tls
                    .as_ref()
                    .and_then(|t| t.mode.as_deref())
                    .unwrap_or("Terminate");
                let (protocol, kind) = match (l.protocol.as_str(), mode) {
                    ("HTTP", _) => (Some(Protocol::Http), "HTTPRoute"),
                    ("HTTPS", "Terminate") => (Some(Protocol::Tls), "HTTPRoute"),
                    ("TLS", "Passthrough") => (Some(Protocol::Tls), "TLSRoute"),
                    (p, m) => {
                        let why = if p == "HTTPS" || p == "TLS" {
                            format!("protocol {p} with TLS mode {m} is not supported (HTTPS terminates, TLS passes through)")
                        } else {
                            format!("protocol {p} is not supported (HTTP, HTTPS and TLS are)")
                        };
                        problems.push(("Accepted", "UnsupportedProtocol", why));
                        (None, "")
                    }
                };
                if port.is_none() {
                    problems.push((
                        "Accepted",
                        "PortUnavailable",
                        format!("port {} is not a TCP port", l.port),
                    ));
                }
                // Route kinds.
                let mut kinds = Vec::new();
                match &l.allowed_routes {
                    Some(a) if !a.kinds.is_empty() => {
                        for k in &a.kinds {
                            let group = k.group.as_deref().unwrap_or(api::GROUP);
                            if group == api::GROUP && k.kind == kind && !kind.is_empty() {
                                kinds.push(kind);
                            } else {
                                problems.push((
                                    "ResolvedRefs",
                                    "InvalidRouteKinds",
                                    format!(
                                        "route kind {group}/{} cannot attach to a {} listener",
                                        k.kind, l.protocol
                                    ),
                                ));
                            }
                        }
                    }
                    _ if !kind.is_empty() => kinds.push(kind),
                    _ => {}
                }
                let namespaces = match l
                    .allowed_routes
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref())
                {
                    None => AllowedNamespaces::Same,
                    Some(n) => match n.from.as_deref().unwrap_or("Same") {
                        "All" => AllowedNamespaces::All,
                        "Selector" => match &n.selector {
                            Some(s) => AllowedNamespaces::Selector(s.clone()),
                            None => {
                                problems.push((
                                    "Accepted",
                                    "UnsupportedValue",
                                    "allowedRoutes.namespaces.from is Selector but no selector is given"
                                        .into(),
                                ));
                                AllowedNamespaces::Same
                            }
                        },
                        _ => AllowedNamespaces::Same,
                    },
                };
                // Certificates.
                let mut certificate = None;
                if protocol == Some(Protocol::Tls) && kind == "HTTPRoute" {
                    match self.listener_certificate(gw, l) {
                        Ok(c) => certificate = Some(c),
                        Err(e) => problems.push(("ResolvedRefs", e.reason, e.message)),
                    }
                }
                // Conflicts.
                let mut conflict = None;
                if let (Some(port), Some(h), Some(p)) = (port, &hostname, protocol) {
                    if !seen.insert((port, h.clone())) {
                        conflict = Some((
                            "HostnameConflict",
                            format!(
                                "another listener of this Gateway has port {port} and hostname {h}"
                            ),
                        ));
                    } else if let Some(existing) = self.ports.get(&port) {
                        if existing.protocol != p {
                            conflict = Some((
                                "ProtocolConflict",
                                format!("port {port} already serves another protocol"),
                            ));
                        }
                    }
                }
                let old = gw
                    .status
                    .as_ref()
                    .and_then(|s| s.listeners.iter().find(|x| x.name == l.name))
                    .map(|x| x.conditions.clone())
                    .unwrap_or_default();
                let generation = gw.metadata.generation;
                let accepted_problem = problems.iter().find(|p| p.0 == "Accepted");
                let refs_problem = problems.iter().find(|p| p.0 == "ResolvedRefs");
                let ready =
                    accepted_problem.is_none() && refs_problem.is_none() && conflict.is_none();
                let now = self.now().clone();
                let mut conds = vec![
                    match accepted_problem {
                        Some((_, r, m)) => {
                            condition(&old, &now, generation, "Accepted", false, r, m.clone())
                        }
                        None => condition(
                            &old,
                            &now,
                            generation,
                            "Accepted",
                            true,
                            "Accepted",
                            "listener accepted",
                        ),
                    },
                    match refs_problem {
                        Some((_, r, m)) => {
                            condition(&old, &now, generation, "ResolvedRefs", false, r, m.clone())
                        }
                        None => condition(
                            &old,
                            &now,
                            generation,
                            "ResolvedRefs",
                            true,
                            "ResolvedRefs",
                            "references resolved",
                        ),
                    },
                    match &conflict {
                        Some((r, m)) => {
                            condition(&old, &now, generation, "Conflicted", true, r, m.clone())
                        }
                        None => condition(
                            &old,
                            &now,
                            generation,
                            "Conflicted",
                            false,
                            "NoConflicts",
                            "no conflicts",
                        ),
                    },
                ];
                conds.push(if ready {
                    condition(
                        &old,
                        &now,
                        generation,
                        "Programmed",
                        true,
                        "Programmed",
                        "listener serving",
                    )
                } else {
                    condition(
                        &old,
                        &now,
                        generation,
                        "Programmed",
                        false,
                        "Invalid",
                        "listener not serving: see its other conditions",
                    )
                });
                let gl = GatewayListener {
                    gateway: gkey.clone(),
                    name: l.name.clone(),
                    port: port.unwrap_or(0),
                    protocol: protocol.unwrap_or(Protocol::Http),
                    hostname: hostname.unwrap_or(HostPattern::Any),
                    kinds,
                    namespaces,
                    ready,
                    attached: 0,
                    conditions: conds,
                };
                if ready {
                    let origin = format!("gateway/{}/{} listener {}", gkey.0, gkey.1, l.name);
                    let pb = self.ports.entry(gl.port).or_insert_with(|| PortBuild {
                        protocol: gl.protocol,
                        listeners: HostMap::new(),
                    });
                    let lb = pb.listeners.entry(&gl.hostname, || ListenerBuild {
                        origin,
                        ..ListenerBuild::default()
                    });
                    if lb.certificate.is_none() {
                        lb.certificate = certificate;
                    }
                    if kind == "TLSRoute" && lb.passthrough.is_none() {
                        lb.passthrough = Some(HostMap::new());
                    }
                }
                out.push(gl);
            }
        }
        out
    }

    fn listener_certificate(
        &self,
        gw: &Gateway,
        l: &api::Listener,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, RefError> {
        let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
        let refs = l
            .tls
            .as_ref()
            .map(|t| t.certificate_refs.as_slice())
            .unwrap_or_default();
        let Some(r) = refs.first() else {
            return Err(RefError {
                reason: "InvalidCertificateRef",
                message: "an HTTPS listener needs tls.certificateRefs".into(),
            });
        };
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err(RefError {
                reason: "InvalidCertificateRef",
                message: format!(
                    "certificateRef {group}/{kind} {}: only core Secrets are supported",
                    r.name
                ),
            });
        }
        let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.clone());
        if !self.granted(
            (api::GROUP, "Gateway", &gw_ns),
            ("", "Secret", &ns, &r.name),
        ) {
            return Err(RefError {
                reason: "RefNotPermitted",
                message: format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant there allows Gateways from {gw_ns}",
                    r.name
                ),
            });
        }
        let Some(secret) = self.secrets.get(&(ns.clone(), r.name.clone())) else {
            return Err(RefError {
                reason: "InvalidCertificateRef",
                message: format!("Secret {ns}/{} not found", r.name),
            });
        };
        crate::tls::certified_key_from_secret(secret).map_err(|e| RefError {
            reason: "InvalidCertificateRef",
            message: e.to_string(),
        })
    }

    fn namespace_allowed(&self, l: &GatewayListener, route_ns: &str) -> bool {
        match &l.namespaces {
            AllowedNamespaces::Same => route_ns == l.gateway.0,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => {
                let labels = self
                    .namespace_labels
                    .get(route_ns)
                    .cloned()
                    .unwrap_or_default();
                selector_matches(sel, &labels)
            }
        }
    }

    /// The listeners of our Gateways a parentRef of a route of `kind` in
    /// `route_ns` with `hostnames` attaches to, with the effective hostnames
    /// on each; or why it attaches to none. None: the parentRef is not ours.
    fn attach(
        &self,
        listeners: &[GatewayListener],
        parent: &api::ParentReference,
        route_ns: &str,
        kind: &str,
        hostnames: &[HostPattern],
    ) -> Option<Result<Attachments, RefError>> {
        if parent.group_or_default() != api::GROUP || parent.kind_or_default() != "Gateway" {
            return None;
        }
        let ns = parent
            .namespace
            .clone()
            .unwrap_or_else(|| route_ns.to_string());
        let gkey = (ns, parent.name.clone());
        let of_gateway: Vec<usize> = (0..listeners.len())
            .filter(|i| listeners[*i].gateway == gkey)
            .collect();
        if of_gateway.is_empty() {
            return None;
        }
        let named: Vec<usize> = of_gateway
            .into_iter()
            .filter(|i| {
                let l = &listeners[*i];
                parent.section_name.as_deref().is_none_or(|s| s == l.name)
                    && parent.port.is_none_or(|p| i32::from(l.port) == p)
            })
            .collect();
        if named.is_empty() {
            return Some(Err(RefError {
                reason: "NoMatchingParent",
                message: "no listener of the Gateway has this sectionName/port".into(),
            }));
        }
        let allowed: Vec<usize> = named
            .into_iter()
            .filter(|i| {
                let l = &listeners[*i];
                l.ready && l.kinds.contains(&kind) && self.namespace_allowed(l, route_ns)
            })
            .collect();
        if allowed.is_empty() {
            return Some(Err(RefError {
                reason: "NotAllowedByListeners",
                message: format!(
                    "no listener allows a {kind} from namespace {route_ns} (allowedRoutes, protocol, or the listener is invalid)"
                ),
            }));
        }
        let mut out = Vec::new();
        for i in allowed {
            let l = &listeners[i];
            let effective: Vec<HostPattern> = if hostnames.is_empty() {
                vec![l.hostname.clone()]
            } else {
                hostnames
                    .iter()
                    .filter_map(|h| h.intersect(&l.hostname))
                    .collect()
            };
            if !effective.is_empty() {
                out.push((i, effective));
            }
        }
        if out.is_empty() {
            return Some(Err(RefError {
                reason: "NoMatchingListenerHostname",
                message: "no hostname of the route matches a listener's hostname".into(),
            }));
        }
        Some(Ok(out))
    }

    /// A Service backend reference → a backend (cached per Service port).
    fn service_backend(
        &mut self,
        from: (&str, &str),
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        port: Option<i32>,
    ) -> Result<Arc<Backend>, RefError> {
        let (from_kind, from_ns) = from;
        if !group.is_empty() || kind != "Service" {
            return Err(RefError {
                reason: "InvalidKind",
                message: format!(
                    "backendRef {group}/{kind} {name}: only core Services are supported"
                ),
            });
        }
        let Some(port) = port else {
            return Err(RefError {
                reason: "UnsupportedValue",
                message: format!("backendRef Service {name} needs a port"),
            });
        };
        if !self.granted(
            (api::GROUP, from_kind, from_ns),
            ("", "Service", namespace, name),
        ) {
            return Err(RefError {
                reason: "RefNotPermitted",
                message: format!(
                    "Service {namespace}/{name} is in another namespace and no ReferenceGrant there allows {from_kind}s from {from_ns}"
                ),
            });
        }
        let k = (namespace.to_string(), name.to_string(), port);
        if let Some(b) = self.backends.get(&k) {
            return b.clone();
        }
        let r = self.resolve_service(namespace, name, ServicePortRef::Number(port));
        self.backends.insert(k, r.clone());
        r
    }

    fn resolve_service(
        &self,
        namespace: &str,
        name: &str,
        port: ServicePortRef<'_>,
    ) -> Result<Arc<Backend>, RefError> {
        let not_found = |message: String| RefError {
            reason: "BackendNotFound",
            message,
        };
        let Some(svc) = self
            .services
            .get(&(namespace.to_string(), name.to_string()))
        else {
            return Err(not_found(format!("Service {namespace}/{name} not found")));
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Err(RefError {
                reason: "UnsupportedValue",
                message: format!("Service {namespace}/{name} is an ExternalName Service; those are not supported as backends"),
            });
        }
        let sp = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| match port {
                ServicePortRef::Number(n) => p.port == n,
                ServicePortRef::Name(s) => p.name.as_deref() == Some(s),
            });
        let Some(sp) = sp else {
            return Err(not_found(format!(
                "Service {namespace}/{name} has no port {port}"
            )));
        };
        if sp.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return Err(RefError {
                reason: "UnsupportedProtocol",
                message: format!("Service {namespace}/{name} port {} is not TCP", sp.port),
            });
        }
        let port_name = sp.name.clone().unwrap_or_default();
        let mut endpoints: Vec<SocketAddr> = Vec::new();
        for slice in self
            .slices
            .get(&(namespace.to_string(), name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(target) = slice.ports.iter().flatten().find(|p| {
                p.name.clone().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            }) else {
                continue;
            };
            let Some(target_port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.clone().unwrap_or_default();
                if !c.ready.unwrap_or(true) || c.terminating.unwrap_or(false) {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        endpoints.push(SocketAddr::new(ip, target_port));
                    }
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
        let tls = self.backend_tls(namespace, name, &port_name)?;
        Ok(Arc::new(Backend {
            name: format!("{namespace}/{name}:{}", sp.port),
            endpoints,
            h2c: sp.app_protocol.as_deref() == Some("kubernetes.io/h2c"),
            tls,
        }))
    }

    /// The BackendTLSPolicy for a Service port, if one targets it; an
    /// invalid policy makes the backend invalid (never plaintext instead).
    fn backend_tls(
        &self,
        namespace: &str,
        service: &str,
        port_name: &str,
    ) -> Result<Option<BackendTls>, RefError> {
        let Some(policy) = self.policy_for(namespace, service, port_name) else {
            return Ok(None);
        };
        backend_tls_of(policy, &self.config_maps).map(Some)
    }

    fn policy_for(
        &self,
        namespace: &str,
        service: &str,
        port_name: &str,
    ) -> Option<&'a BackendTLSPolicy> {
        let mut candidates: Vec<&Arc<BackendTLSPolicy>> = self
            .inputs
            .backend_tls_policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                p.spec.target_refs.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == "Service"
                        && t.name == service
                        && t.section_name.as_deref().is_none_or(|s| s == port_name)
                })
            })
            .collect();
        // Oldest first, a policy naming the port before one for the whole Service.
        candidates.sort_by_cached_key(|p| {
            let names_port = p.spec.target_refs.iter().any(|t| t.section_name.is_some());
            (!names_port, created(&p.metadata), key(&p.metadata))
        });
        candidates.first().map(|p| &***p)
    }

    /// HTTPRoutes: rules compiled once per route, attached to every listener
    /// their parentRefs reach.
    fn http_routes(&mut self, listeners: &mut [GatewayListener]) {
        for route in ordered(self.inputs.http_routes, |r| &r.metadata) {
            let (ns, name) = key(&route.metadata);
            let origin = Origin {
                kind: OriginKind::HttpRoute,
                namespace: ns.clone(),
                name: name.clone(),
                created: created(&route.metadata),
            };
            let hostnames: Result<Vec<HostPattern>, String> = route
                .spec
                .hostnames
                .iter()
                .map(|h| HostPattern::gateway(h).map_err(|e| e.to_string()))
                .collect();
            let rules = hostnames
                .clone()
                .and_then(|_| self.http_rules(route, &origin));
            let mut parents = Vec::new();
            for parent in &route.spec.parent_refs {
                let hosts = hostnames.clone().unwrap_or_default();
                let Some(attached) = self.attach(listeners, parent, &ns, "HTTPRoute", &hosts)
                else {
                    continue;
                };
                let rejected = match (&attached, &rules) {
                    (_, Err(e)) => Some(("UnsupportedValue", e.clone())),
                    (Err(e), _) => Some((e.reason, e.message.clone())),
                    _ => None,
                };
                let unresolved = match &rules {
                    Ok((_, Some(e))) => Some(e),
                    _ => None,
                };
                parents.push(self.parent_status(
                    route.status.as_ref(),
                    route.metadata.generation,
                    parent,
                    rejected,
                    unresolved,
                ));
                let (Ok(attached), Ok((compiled, _))) = (attached, &rules) else {
                    continue;
                };
                for (li, hosts) in attached {
                    listeners[li].attached += 1;
                    let l = &listeners[li];
                    let Some(lb) = self
                        .ports
                        .get_mut(&l.port)
                        .and_then(|p| p.listeners.get_exact_mut(&l.hostname))
                    else {
                        continue;
                    };
                    for h in hosts {
                        lb.routes
                            .entry(&h, Vec::new)
                            .extend(compiled.iter().cloned());
                    }
                }
            }
            if !parents.is_empty() {
                self.push_route_status("HTTPRoute", route.status.as_ref(), &ns, &name, parents);
            }
        }
    }

    /// One parent's entry in a route's status: Accepted (false with the
    /// reason and message of `rejected`) and ResolvedRefs (false with the
    /// first unresolved reference), transition times kept from `status`.
    fn parent_status(
        &self,
        status: Option<&api::RouteStatus>,
        generation: Option<i64>,
        parent: &api::ParentReference,
        rejected: Option<(&str, String)>,
        unresolved: Option<&RefError>,
    ) -> Value {
        let old = old_parent_conditions(status, parent);
        let now = self.now();
        let accepted = match rejected {
            Some((reason, message)) => {
                condition(&old, now, generation, "Accepted", false, reason, message)
            }
            None => condition(
                &old, now, generation, "Accepted", true, "Accepted", "attached",
            ),
        };
        let refs = match unresolved {
            Some(e) => condition(
                &old,
                now,
                generation,
                "ResolvedRefs",
                false,
                e.reason,
                e.message.clone(),
            ),
            None => condition(
                &old,
                now,
                generation,
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved",
            ),
        };
        json!({
            "parentRef": parent,
            "controllerName": self.config.controller_name,
            "conditions": [accepted, refs],
        })
    }

    fn push_route_status(
        &mut self,
        kind: &'static str,
        old: Option<&api::RouteStatus>,
        ns: &str,
        name: &str,
        mut parents: Vec<Value>,
    ) {
        // Entries other controllers wrote stay.
        if let Some(old) = old {
            for p in &old.parents {
                if p.controller_name != self.config.controller_name {
                    parents.push(serde_json::to_value(p).unwrap_or(Value::Null));
                }
            }
        }
        self.statuses.push(StatusUpdate {
            kind,
            namespace: Some(ns.to_string()),
            name: name.to_string(),
            status: json!({ "parents": parents }),
        });
    }

    /// The rules of an HTTPRoute, and the first backend problem if any (the
    /// rules still compile: an unresolved reference becomes a 500 share).
    #[allow(clippy::type_complexity)]
    fn http_rules(
        &mut self,
        route: &HTTPRoute,
        origin: &Origin,
    ) -> Result<(Vec<Rule>, Option<RefError>), String> {
        let mut out = Vec::new();
        let mut problem = None;
        let label: Arc<str> = Arc::from(origin.to_string());
        for (ri, rule) in route.spec.rules.iter().enumerate() {
            let at = |e: String| format!("spec.rules[{ri}]: {e}");
            let mut action = Action::default();
            let mut seen_filters = HashSet::new();
            for f in &rule.filters {
                if !seen_filters.insert(f.type_.clone()) {
                    return Err(at(format!("filter {} appears twice", f.type_)));
                }
                apply_filter(&mut action, f).map_err(at)?;
            }
            if action.redirect.is_some() && action.rewrite.is_some() {
                return Err(at(
                    "RequestRedirect and URLRewrite cannot be combined".into()
                ));
            }
            if action.redirect.is_some() && !rule.backend_refs.is_empty() {
                return Err(at(
                    "RequestRedirect and backendRefs cannot be combined".into()
                ));
            }
            action.timeouts = match &rule.timeouts {
                Some(t) => Timeouts {
                    request: t
                        .request
                        .as_deref()
                        .map(parse_duration)
                        .transpose()
                        .map_err(at)?
                        .flatten(),
                    backend: t
                        .backend_request
                        .as_deref()
                        .map(parse_duration)
                        .transpose()
                        .map_err(at)?
                        .flatten(),
                },
                None => Timeouts::default(),
            };
            for b in &rule.backend_refs {
                let weight = b.weight.unwrap_or(1).max(0) as u32;
                let ns = b
                    .namespace
                    .clone()
                    .unwrap_or_else(|| origin.namespace.clone());
                if !b.filters.is_empty() {
                    return Err(at("filters on a backendRef are not supported".into()));
                }
                let target = match self.service_backend(
                    ("HTTPRoute", &origin.namespace),
                    b.group.as_deref().unwrap_or(""),
                    b.kind.as_deref().unwrap_or("Service"),
                    &ns,
                    &b.name,
                    b.port,
                ) {
                    Ok(be) => Target::Backend(be),
                    Err(e) => {
                        let why = e.message.clone();
                        problem.get_or_insert(e);
                        Target::Invalid(why)
                    }
                };
                action.backends.push(Weighted { weight, target });
            }
            let action = Arc::new(action);
            let matches = if rule.matches.is_empty() {
                vec![api::HTTPRouteMatch::default()]
            } else {
                rule.matches.clone()
            };
            for (mi, m) in matches.iter().enumerate() {
                let matcher = compile_match(m).map_err(|e| at(format!("matches[{mi}]: {e}")))?;
                out.push(Rule {
                    rank: Rank::of(&matcher, origin, ri, mi),
                    matcher,
                    action: action.clone(),
                    route: label.clone(),
                });
            }
        }
        Ok((out, problem))
    }

    fn tls_routes(&mut self, listeners: &mut [GatewayListener]) {
        for route in ordered(self.inputs.tls_routes, |r| &r.metadata) {
            let (ns, name) = key(&route.metadata);
            let hostnames: Result<Vec<HostPattern>, String> = route
                .spec
                .hostnames
                .iter()
                .map(|h| HostPattern::gateway(h).map_err(|e| e.to_string()))
                .collect();
            let mut backends = Vec::new();
            let mut problem = None;
            for rule in &route.spec.rules {
                for b in &rule.backend_refs {
                    let bns = b.namespace.clone().unwrap_or_else(|| ns.clone());
                    let target = match self.service_backend(
                        ("TLSRoute", &ns),
                        b.group.as_deref().unwrap_or(""),
                        b.kind.as_deref().unwrap_or("Service"),
                        &bns,
                        &b.name,
                        b.port,
                    ) {
                        Ok(be) => Target::Backend(be),
                        Err(e) => {
                            let why = e.message.clone();
                            problem.get_or_insert(e);
                            Target::Invalid(why)
                        }
                    };
                    backends.push((b.weight.unwrap_or(1).max(0) as u32, target));
                }
            }
            let mut parents = Vec::new();
            for parent in &route.spec.parent_refs {
                let hosts = hostnames.clone().unwrap_or_default();
                let Some(attached) = self.attach(listeners, parent, &ns, "TLSRoute", &hosts) else {
                    continue;
                };
                let rejected = match (&attached, &hostnames) {
                    (_, Err(e)) => Some(("UnsupportedValue", e.clone())),
                    (Err(e), _) => Some((e.reason, e.message.clone())),
                    _ => None,
                };
                parents.push(self.parent_status(
                    route.status.as_ref(),
                    route.metadata.generation,
                    parent,
                    rejected,
                    problem.as_ref(),
                ));
                let (Ok(attached), Ok(_)) = (attached, &hostnames) else {
                    continue;
                };
                for (li, hosts) in attached {
                    listeners[li].attached += 1;
                    let l = &listeners[li];
                    let Some(lb) = self
                        .ports
                        .get_mut(&l.port)
                        .and_then(|p| p.listeners.get_exact_mut(&l.hostname))
                    else {
                        continue;
                    };
                    let Some(pt) = lb.passthrough.as_mut() else {
                        continue;
                    };
                    for h in hosts {
                        // The oldest route keeps an SNI both claim.
                        if pt.get_exact_mut(&h).is_none() {
                            pt.insert(
                                &h,
                                backends
                                    .iter()
                                    .map(|(w, t)| Weighted {
                                        weight: *w,
                                        target: clone_target(t),
                                    })
                                    .collect(),
                            );
                        }
                    }
                }
            }
            if !parents.is_empty() {
                self.push_route_status("TLSRoute", route.status.as_ref(), &ns, &name, parents);
            }
        }
    }

    fn gateway_statuses(&mut self, classes: &HashSet<String>, listeners: &[GatewayListener]) {
        for gw in self.inputs.gateways {
            if !classes.contains(&gw.spec.gateway_class_name) {
                continue;
            }
            let gkey = key(&gw.metadata);
            let old = gw
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let now = self.now().clone();
            let generation = gw.metadata.generation;
            let mine: Vec<&GatewayListener> =
                listeners.iter().filter(|l| l.gateway == gkey).collect();
            let any_ready = mine.iter().any(|l| l.ready);
            let all_ready = mine.iter().all(|l| l.ready);
            let mut listener_status = Vec::new();
            for l in &mine {
                let conds = &l.conditions;
                listener_status.push(json!({
                    "name": l.name,
                    "supportedKinds": l.kinds.iter().map(|k| json!({"group": api::GROUP, "kind": k})).collect::<Vec<_>>(),
                    "attachedRoutes": l.attached,
                    "conditions": conds,
                }));
            }
            let accepted = condition(
                &old,
                &now,
                generation,
                "Accepted",
                true,
                "Accepted",
                "gateway accepted",
            );
            let programmed = if any_ready {
                let msg = if all_ready {
                    "every listener serving"
                } else {
                    "some listeners are invalid: see their conditions"
                };
                condition(
                    &old,
                    &now,
                    generation,
                    "Programmed",
                    true,
                    "Programmed",
                    msg,
                )
            } else {
                condition(
                    &old,
                    &now,
                    generation,
                    "Programmed",
                    false,
                    "Invalid",
                    "no listener is serving",
                )
            };
            let addresses: Vec<Value> = self
                .config
                .addresses
                .iter()
                .map(|a| {
                    let t = if a.parse::<IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    };
                    json!({"type": t, "value": a})
                })
                .collect();
            self.statuses.push(StatusUpdate {
                kind: "Gateway",
                namespace: Some(gkey.0.clone()),
                name: gkey.1.clone(),
                status: json!({
                    "addresses": addresses,
                    "conditions": [accepted, programmed],
                    "listeners": listener_status,
                }),
            });
        }
    }

    /// Policy status: Accepted and ResolvedRefs for every policy targeting
    /// a Service of its namespace, with our GatewayClass's controller as
    /// the one writing it (ancestor: each of our Gateways).
    fn backend_tls_policy_statuses(&mut self) {
        let gateways: Vec<(String, String)> = self
            .statuses
            .iter()
            .filter(|s| s.kind == "Gateway")
            .map(|s| (s.namespace.clone().unwrap_or_default(), s.name.clone()))
            .collect();
        if gateways.is_empty() {
            return;
        }
        for p in self.inputs.backend_tls_policies {
            let (ns, name) = key(&p.metadata);
            let result = backend_tls_of(p, &self.config_maps);
            let old: Vec<Condition> = p
                .status
                .as_ref()
                .and_then(|s| {
                    s.ancestors
                        .iter()
                        .find(|a| a.controller_name == self.config.controller_name)
                })
                .map(|a| a.conditions.clone())
                .unwrap_or_default();
            let now = self.now().clone();
            let g = p.metadata.generation;
            let conds = match &result {
                Ok(_) => vec![
                    condition(
                        &old,
                        &now,
                        g,
                        "Accepted",
                        true,
                        "Accepted",
                        "policy accepted",
                    ),
                    condition(
                        &old,
                        &now,
                        g,
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "CA certificates resolved",
                    ),
                ],
                Err(e) => vec![
                    condition(
                        &old,
                        &now,
                        g,
                        "Accepted",
                        false,
                        "NoValidCACertificate",
                        e.message.clone(),
                    ),
                    condition(
                        &old,
                        &now,
                        g,
                        "ResolvedRefs",
                        false,
                        e.reason,
                        e.message.clone(),
                    ),
                ],
            };
            let mut ancestors: Vec<Value> = gateways
                .iter()
                .map(|(gns, gname)| {
                    json!({
                        "ancestorRef": {"group": api::GROUP, "kind": "Gateway", "namespace": gns, "name": gname},
                        "controllerName": self.config.controller_name,
                        "conditions": conds,
                    })
                })
                .collect();
            if let Some(s) = &p.status {
                for a in &s.ancestors {
                    if a.controller_name != self.config.controller_name {
                        ancestors.push(serde_json::to_value(a).unwrap_or(Value::Null));
                    }
                }
            }
            self.statuses.push(StatusUpdate {
                kind: "BackendTLSPolicy",
                namespace: Some(ns),
                name,
                status: json!({ "ancestors": ancestors }),
            });
        }
    }

    /// Ingresses of our classes: rules on the HTTP port (a redirect to HTTPS
    /// for hosts with TLS unless opted out), the same rules on the HTTPS port
    /// for hosts with TLS, default backends as fallbacks.
    fn ingresses(&mut self) {
        let ours: Vec<&IngressClass> = self
            .inputs
            .ingress_classes
            .iter()
            .filter(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(self.config.controller_name.as_str())
            })
            .map(|c| &**c)
            .collect();
        let names: HashSet<String> = ours
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let default_is_ours = ours.iter().any(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        });
        let mut fallback_http: Option<Rule> = None;
        let mut fallback_https: Option<Rule> = None;
        for ing in ordered(self.inputs.ingresses, |i| &i.metadata) {
            let spec = ing.spec.clone().unwrap_or_default();
            let class = spec.ingress_class_name.clone().or_else(|| {
                ing.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned())
            });
            let served = match &class {
                Some(c) => names.contains(c),
                None => default_is_ours,
            };
            if !served {
                continue;
            }
            let (ns, name) = key(&ing.metadata);
            let origin = Origin {
                kind: OriginKind::Ingress,
                namespace: ns.clone(),
                name: name.clone(),
                created: created(&ing.metadata),
            };
            let label: Arc<str> = Arc::from(origin.to_string());
            let redirect_on = ing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SSL_REDIRECT_ANNOTATION))
                .is_none_or(|v| v != "false");
            let warn = |cx: &mut Ctx, what: String| {
                cx.warnings.push(format!("Ingress {ns}/{name}: {what}"))
            };
            // TLS hosts → certificates.
            let mut tls: Vec<(HostPattern, Arc<rustls::sign::CertifiedKey>)> = Vec::new();
            for (ti, t) in spec.tls.iter().flatten().enumerate() {
                let Some(secret_name) = &t.secret_name else {
                    warn(self, format!("spec.tls[{ti}] has no secretName"));
                    continue;
                };
                let cert = match self.secrets.get(&(ns.clone(), secret_name.clone())) {
                    None => {
                        warn(
                            self,
                            format!("spec.tls[{ti}]: Secret {ns}/{secret_name} not found"),
                        );
                        continue;
                    }
                    Some(s) => match crate::tls::certified_key_from_secret(s) {
                        Ok(c) => c,
                        Err(e) => {
                            warn(self, format!("spec.tls[{ti}]: {e}"));
                            continue;
                        }
                    },
                };
                let hosts = t.hosts.clone().unwrap_or_default();
                if hosts.is_empty() {
                    tls.push((HostPattern::Any, cert));
                } else {
                    for h in hosts {
                        match HostPattern::ingress(&h) {
                            Ok(p) => tls.push((p, cert.clone())),
                            Err(e) => warn(self, format!("spec.tls[{ti}]: {e}")),
                        }
                    }
                }
            }
            // Rules.
            let mut http_rules: Vec<(HostPattern, Rule)> = Vec::new();
            let mut https_rules: Vec<(HostPattern, HostPattern, Rule)> = Vec::new();
            for (ri, rule) in spec.rules.iter().flatten().enumerate() {
                let host = match HostPattern::ingress(rule.host.as_deref().unwrap_or("")) {
                    Ok(h) => h,
                    Err(e) => {
                        warn(self, format!("spec.rules[{ri}]: {e}"));
                        continue;
                    }
                };
                let paths = rule
                    .http
                    .as_ref()
                    .map(|h| h.paths.clone())
                    .unwrap_or_default();
                for (pi, p) in paths.iter().enumerate() {
                    let raw = p.path.clone().unwrap_or_else(|| "/".into());
                    if !raw.starts_with('/') {
                        warn(self, format!("spec.rules[{ri}].http.paths[{pi}]: path {raw:?} must start with '/'"));
                        continue;
                    }
                    let path = match p.path_type.as_str() {
                        "Exact" => PathMatch::Exact(raw),
                        "Prefix" | "ImplementationSpecific" => {
                            PathMatch::Prefix(raw.trim_end_matches('/').to_string())
                        }
                        other => {
                            warn(self, format!("spec.rules[{ri}].http.paths[{pi}]: pathType {other:?} is not Exact, Prefix or ImplementationSpecific"));
                            continue;
                        }
                    };
                    let matcher = Match {
                        path,
                        method: None,
                        headers: Vec::new(),
                        query: Vec::new(),
                    };
                    let forward = Arc::new(self.ingress_action(
                        &ns,
                        &p.backend,
                        &format!("spec.rules[{ri}].http.paths[{pi}]"),
                        &origin,
                    ));
                    let rank = Rank::of(&matcher, &origin, ri, pi);
                    let covering: Vec<HostPattern> = tls
                        .iter()
                        .filter_map(|(t, _)| t.intersect(&host).map(|_| t.clone()))
                        .collect();
                    let http_action = if redirect_on && !covering.is_empty() {
                        Arc::new(Action {
                            redirect: Some(Redirect {
                                scheme: Some("https".into()),
                                port: Some(self.config.ingress_https_port),
                                status: 308,
                                ..Redirect::default()
                            }),
                            ..Action::default()
                        })
                    } else {
                        forward.clone()
                    };
                    let make = |action: Arc<Action>| Rule {
                        rank: rank.clone(),
                        matcher: matcher.clone(),
                        action,
                        route: label.clone(),
                    };
                    http_rules.push((host.clone(), make(http_action)));
                    for t in covering {
                        let h = t.intersect(&host).unwrap_or(HostPattern::Any);
                        https_rules.push((t, h, make(forward.clone())));
                    }
                }
            }
            if let Some(b) = &spec.default_backend {
                let action = Arc::new(self.ingress_action(&ns, b, "spec.defaultBackend", &origin));
                let matcher = Match {
                    path: PathMatch::Prefix(String::new()),
                    method: None,
                    headers: Vec::new(),
                    query: Vec::new(),
                };
                let mut rank = Rank::of(&matcher, &origin, usize::MAX, 0);
                rank.path_kind = 2;
                let rule = Rule {
                    rank,
                    matcher,
                    action,
                    route: label.clone(),
                };
                fallback_http.get_or_insert_with(|| rule.clone());
                fallback_https.get_or_insert(rule);
            }
            // Install.
            let http_port = self.config.ingress_http_port;
            let https_port = self.config.ingress_https_port;
            if !http_rules.is_empty() {
                match self.ingress_listener(http_port, Protocol::Http, &HostPattern::Any, &origin, None) {
                    Some(lb) => {
                        for (h, r) in http_rules {
                            lb.routes.entry(&h, Vec::new).push(r);
                        }
                    }
                    None => warn(self, format!("port {http_port} serves TLS for a Gateway; the Ingress's HTTP rules are not served")),
                }
            }
            for (t, cert) in &tls {
                if self
                    .ingress_listener(https_port, Protocol::Tls, t, &origin, Some(cert.clone()))
                    .is_none()
                {
                    warn(self, format!("port {https_port} serves cleartext HTTP for a Gateway; the Ingress's TLS hosts are not served"));
                    break;
                }
            }
            for (t, h, r) in https_rules {
                if let Some(lb) =
                    self.ingress_listener(https_port, Protocol::Tls, &t, &origin, None)
                {
                    lb.routes.entry(&h, Vec::new).push(r);
                }
            }
            let lb_ingress: Vec<Value> = self
                .config
                .addresses
                .iter()
                .map(|a| {
                    if a.parse::<IpAddr>().is_ok() {
                        json!({"ip": a})
                    } else {
                        json!({"hostname": a})
                    }
                })
                .collect();
            self.statuses.push(StatusUpdate {
                kind: "Ingress",
                namespace: Some(ns.clone()),
                name: name.clone(),
                status: json!({"loadBalancer": {"ingress": lb_ingress}}),
            });
        }
        // Default backends answer what no rule of an Ingress listener matched.
        for (port, fallback) in [
            (self.config.ingress_http_port, fallback_http),
            (self.config.ingress_https_port, fallback_https),
        ] {
            let Some(rule) = fallback else { continue };
            let Some(p) = self.ports.get_mut(&port) else {
                if port == self.config.ingress_http_port {
                    let origin = format!("ingress default backend ({})", rule.route);
                    let mut listeners = HostMap::new();
                    listeners.insert(
                        &HostPattern::Any,
                        ListenerBuild {
                            origin,
                            fallback: vec![rule],
                            ..ListenerBuild::default()
                        },
                    );
                    self.ports.insert(
                        port,
                        PortBuild {
                            protocol: Protocol::Http,
                            listeners,
                        },
                    );
                }
                continue;
            };
            for l in p.listeners.values_mut() {
                if l.ingress {
                    l.fallback.push(rule.clone());
                }
            }
        }
    }

    /// The listener an Ingress contributes to on `port` (made if absent);
    /// None if the port speaks the other protocol.
    fn ingress_listener(
        &mut self,
        port: u16,
        protocol: Protocol,
        host: &HostPattern,
        origin: &Origin,
        certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    ) -> Option<&mut ListenerBuild> {
        let p = self.ports.entry(port).or_insert_with(|| PortBuild {
            protocol,
            listeners: HostMap::new(),
        });
        if p.protocol != protocol {
            return None;
        }
        let lb = p.listeners.entry(host, || ListenerBuild {
            origin: origin.to_string(),
            ..ListenerBuild::default()
        });
        lb.ingress = true;
        if lb.certificate.is_none() {
            lb.certificate = certificate;
        }
        Some(lb)
    }

    fn ingress_action(
        &mut self,
        ns: &str,
        b: &IngressBackend,
        at: &str,
        origin: &Origin,
    ) -> Action {
        let target = match &b.service {
            None => Target::Invalid(format!("{at}: only Service backends are supported")),
            Some(s) => {
                let port = s.port.as_ref();
                let r = match (
                    port.and_then(|p| p.number),
                    port.and_then(|p| p.name.as_deref()),
                ) {
                    (Some(n), _) => self.resolve_service(ns, &s.name, ServicePortRef::Number(n)),
                    (None, Some(name)) => {
                        self.resolve_service(ns, &s.name, ServicePortRef::Name(name))
                    }
                    (None, None) => Err(RefError {
                        reason: "UnsupportedValue",
                        message: format!("{at}: the Service backend has no port"),
                    }),
                };
                match r {
                    Ok(be) => Target::Backend(be),
                    Err(e) => {
                        self.warnings.push(format!(
                            "Ingress {}/{}: {at}: {}",
                            origin.namespace, origin.name, e.message
                        ));
                        Target::Invalid(e.message)
                    }
                }
            }
        };
        Action {
            backends: vec![Weighted { weight: 1, target }],
            ..Action::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ServicePortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for ServicePortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServicePortRef::Number(n) => write!(f, "{n}"),
            ServicePortRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

fn clone_target(t: &Target) -> Target {
    match t {
        Target::Backend(b) => Target::Backend(b.clone()),
        Target::Invalid(s) => Target::Invalid(s.clone()),
    }
}

fn old_parent_conditions(
    status: Option<&api::RouteStatus>,
    parent: &api::ParentReference,
) -> Vec<Condition> {
    status
        .and_then(|s| s.parents.iter().find(|p| &p.parent_ref == parent))
        .map(|p| p.conditions.clone())
        .unwrap_or_default()
}

fn backend_tls_of(
    policy: &BackendTLSPolicy,
    config_maps: &HashMap<(String, String), &ConfigMap>,
) -> Result<BackendTls, RefError> {
    let ns = policy.metadata.namespace.clone().unwrap_or_default();
    let pname = policy.metadata.name.clone().unwrap_or_default();
    let v = &policy.spec.validation;
    let invalid = |reason: &'static str, message: String| RefError {
        reason,
        message: format!("BackendTLSPolicy {ns}/{pname}: {message}"),
    };
    if v.ca_certificate_refs.is_empty() {
        return Err(invalid(
            "InvalidCACertificateRef",
            match &v.well_known_ca_certificates {
                Some(w) => format!("wellKnownCACertificates {w:?} is not supported; name a ConfigMap in caCertificateRefs"),
                None => "no caCertificateRefs".into(),
            },
        ));
    }
    let mut pems: Vec<Vec<u8>> = Vec::new();
    for r in &v.ca_certificate_refs {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            return Err(invalid(
                "InvalidKind",
                format!(
                    "caCertificateRef {}/{} {}: only ConfigMaps are supported",
                    r.group, r.kind, r.name
                ),
            ));
        }
        let Some(cm) = config_maps.get(&(ns.clone(), r.name.clone())) else {
            return Err(invalid(
                "InvalidCACertificateRef",
                format!("ConfigMap {ns}/{} not found", r.name),
            ));
        };
        let Some(ca) = cm.data.as_ref().and_then(|d| d.get("ca.crt")) else {
            return Err(invalid(
                "InvalidCACertificateRef",
                format!("ConfigMap {ns}/{} has no key ca.crt", r.name),
            ));
        };
        pems.push(ca.as_bytes().to_vec());
    }
    let server_name = rustls_pki_types::ServerName::try_from(v.hostname.clone()).map_err(|_| {
        invalid(
            "UnsupportedValue",
            format!("hostname {:?} is not a DNS name", v.hostname),
        )
    })?;
    let refs: Vec<&[u8]> = pems.iter().map(Vec::as_slice).collect();
    let config = crate::tls::backend_client_config(&refs, false)
        .map_err(|e| invalid("InvalidCACertificateRef", e.to_string()))?;
    Ok(BackendTls {
        server_name,
        config,
    })
}

/// matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist).
fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Gateway API durations (GEP-2257): up to four `<number><unit>` parts,
/// units h, m, s, ms; "0s" (any zero) means no timeout (None).
pub fn parse_duration(s: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("duration {s:?} is not like 1h30m, 10s or 500ms");
    let mut rest = s;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
    }
    if parts == 0 {
        return Err(bad());
    }
    Ok((!total.is_zero()).then_some(total))
}

fn header_name(n: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a valid header name"))
}

fn header_value(v: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(v).map_err(|_| format!("{v:?} is not a valid header value"))
}

fn header_filter(f: &api::HTTPHeaderFilter) -> Result<HeaderFilter, String> {
    let pair =
        |h: &api::HTTPHeader| Ok::<_, String>((header_name(&h.name)?, header_value(&h.value)?));
    Ok(HeaderFilter {
        set: f.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: f.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: f
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?,
    })
}

fn path_modifier(m: &api::HTTPPathModifier) -> Result<PathModifier, String> {
    let valid = |p: &str| {
        if p.starts_with('/') {
            Ok(p.to_string())
        } else {
            Err(format!("path {p:?} must start with '/'"))
        }
    };
    match m.type_.as_str() {
        "ReplaceFullPath" => Ok(PathModifier::Full(valid(
            m.replace_full_path.as_deref().unwrap_or("/"),
        )?)),
        "ReplacePrefixMatch" => Ok(PathModifier::Prefix(valid(
            m.replace_prefix_match.as_deref().unwrap_or("/"),
        )?)),
        t => Err(format!(
            "path modifier type {t:?} is not ReplaceFullPath or ReplacePrefixMatch"
        )),
    }
}

fn apply_filter(action: &mut Action, f: &api::HTTPRouteFilter) -> Result<(), String> {
    let missing = |field: &str| format!("filter {} needs {field}", f.type_);
    match f.type_.as_str() {
        "RequestHeaderModifier" => {
            action.request_headers = header_filter(f.request_header_modifier.as_ref().ok_or_else(|| missing("requestHeaderModifier"))?)?;
        }
        "ResponseHeaderModifier" => {
            action.response_headers = header_filter(f.response_header_modifier.as_ref().ok_or_else(|| missing("responseHeaderModifier"))?)?;
        }
        "RequestRedirect" => {
            let r = f.request_redirect.as_ref().ok_or_else(|| missing("requestRedirect"))?;
            let status = r.status_code.unwrap_or(302);
            if ![301, 302, 303, 307, 308].contains(&status) {
                return Err(format!("redirect statusCode {status} is not 301, 302, 303, 307 or 308"));
            }
            if let Some(s) = &r.scheme {
                if s != "http" && s != "https" {
                    return Err(format!("redirect scheme {s:?} is not http or https"));
                }
            }
            if let Some(h) = &r.hostname {
                HostPattern::gateway(h).map_err(|e| e.to_string())?;
            }
            action.redirect = Some(Redirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port: r
                    .port
                    .map(|p| u16::try_from(p).map_err(|_| format!("redirect port {p} is not a port")))
                    .transpose()?,
                path: r.path.as_ref().map(path_modifier).transpose()?,
                status: status as u16,
            });
        }
        "URLRewrite" => {
            let r = f.url_rewrite.as_ref().ok_or_else(|| missing("urlRewrite"))?;
            action.rewrite = Some(Rewrite {
                hostname: r.hostname.as_deref().map(header_value).transpose()?,
                path: r.path.as_ref().map(path_modifier).transpose()?,
            });
        }
        t => return Err(format!("filter type {t:?} is not supported (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite are)")),
    }
    Ok(())
}

/// Regular expressions from routes: whole-value matches, size-bounded so a
/// route cannot make the proxy build a huge automaton.
fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("regular expression {pattern:?}: {e}"))
}

fn value_match(type_: Option<&str>, value: &str) -> Result<ValueMatch, String> {
    match type_.unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(value.to_string())),
        "RegularExpression" => Ok(ValueMatch::Regex(regex(value)?)),
        t => Err(format!(
            "match type {t:?} is not Exact or RegularExpression"
        )),
    }
}

fn compile_match(m: &api::HTTPRouteMatch) -> Result<Match, String> {
    let (ptype, pvalue) = match &m.path {
        Some(p) => (
            p.type_.as_deref().unwrap_or("PathPrefix"),
            p.value.as_deref().unwrap_or("/"),
        ),
        None => ("PathPrefix", "/"),
    };
    if !pvalue.starts_with('/') {
        return Err(format!("path {pvalue:?} must start with '/'"));
    }
    let path = match ptype {
        "Exact" => PathMatch::Exact(pvalue.to_string()),
        "PathPrefix" => PathMatch::Prefix(pvalue.trim_end_matches('/').to_string()),
        t => {
            return Err(format!(
                "path match type {t:?} is not supported (Exact, PathPrefix are)"
            ))
        }
    };
    let method = m
        .method
        .as_deref()
        .map(|s| {
            Method::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not an HTTP method"))
        })
        .transpose()?;
    let mut headers = Vec::new();
    let mut seen = HashSet::new();
    for h in &m.headers {
        let name = header_name(&h.name)?;
        // The spec: a later match of the same (case-insensitive) name is ignored.
        if seen.insert(name.clone()) {
            headers.push((name, value_match(h.type_.as_deref(), &h.value)?));
        }
    }
    let mut query = Vec::new();
    let mut seen = HashSet::new();
    for q in &m.query_params {
        if seen.insert(q.name.clone()) {
            query.push((q.name.clone(), value_match(q.type_.as_deref(), &q.value)?));
        }
    }
    Ok(Match {
        path,
        method,
        headers,
        query,
    })
}
