//! HTTP front: routing, discovery, verbs, watch streams and the hyper server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::Frame;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};

use crate::kinds::{self, Kind, KINDS};
use crate::patch;
use crate::registry::DeleteOpts;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{meta_str, Event, EventType};
use crate::{ApiServer, Error};

/// Response body: a full buffer or a watch stream.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// How often watches with allowWatchBookmarks get a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);
/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Watch timeout when the client gives none.
const DEFAULT_WATCH_TIMEOUT: u64 = 1800;

fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<BoxBody> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<BoxBody> {
    let mut resp = json_response(e.code, &e.to_status());
    if e.code == 429 {
        // As kube-apiserver's max-in-flight filter: retry after a second.
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

/// A `watch=true|1` request (its concurrency is capped separately).
fn is_watch(uri: &http::Uri) -> bool {
    flag(&parse_query(uri.query()), "watch")
}

fn text_response(s: &'static str) -> Response<BoxBody> {
    let mut resp = Response::new(full(s));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn success_status(kind: &Kind, name: &str, uid: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "kind": kind.plural, "uid": uid}})
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

fn parse_body(req: &Request<Bytes>) -> Result<Value, ApiError> {
    parse_bytes(&content_type(req), req.body())
}

/// Decodes a request body of media type `ct` (JSON unless it says YAML).
pub(crate) fn parse_bytes(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if ct == crate::protobuf::MEDIA_TYPE {
        return crate::protobuf::decode(body);
    }
    if ct.contains("yaml") {
        serde_yaml::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}

/// `kubectl get` asks for server-side printing with
/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
fn wants_table(req: &Request<Bytes>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn content_type(req: &Request<Bytes>) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A stored object as the request's version shows it (custom kinds).
fn shown(st: &crate::store::State, kind: &Kind, obj: Value) -> Value {
    if kind.custom {
        crate::crd::present(st, kind, &obj)
    } else {
        obj
    }
}

/// The Table of custom objects with their version's printer columns.
fn custom_table(st: &crate::store::State, kind: &Kind, items: &[&Value]) -> Value {
    let columns = st
        .custom
        .version(kind)
        .map(|v| v.columns.clone())
        .unwrap_or_default();
    crate::crd::table(&columns, items, st.rv)
}

/// A resource request after routing.
pub(crate) struct Target {
    pub(crate) kind: &'static Kind,
    pub(crate) ns: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) status: bool,
    /// The `scale` subresource (built-in kinds: [`crate::scale`]).
    pub(crate) scale: bool,
    /// The `scale` subresource of a custom resource: its paths.
    pub(crate) custom_scale: Option<crate::crd::Scale>,
}

pub(crate) fn route_resource(
    st: &crate::store::State,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let nf = || ApiError::not_found_path(&rest.join("/"));
    let find = |p: &str| {
        kinds::find(group, version, p)
            .or_else(|| st.custom.find(group, version, p))
            .ok_or_else(nf)
    };
    let namespaced_path =
        rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    let (kind, ns, name, sub) = if namespaced_path {
        let kind = find(rest[2])?;
        if !kind.namespaced {
            return Err(nf());
        }
        (
            kind,
            Some(rest[1]),
            rest.get(3).copied(),
            rest.get(4).copied(),
        )
    } else {
        let kind = find(rest[0])?;
        if rest.len() > 1 && kind.namespaced {
            return Err(nf());
        }
        (kind, None, rest.get(1).copied(), rest.get(2).copied())
    };
    if rest.len() > if namespaced_path { 5 } else { 3 } {
        return Err(nf());
    }
    let custom_scale = match sub {
        Some("scale") => st.custom.version(kind).and_then(|v| v.scale.clone()),
        _ => None,
    };
    let (status, scale) = match sub {
        None => (false, false),
        Some("status") if kind.status_sub => (true, false),
        Some("scale") if crate::scale::has_scale(kind) || custom_scale.is_some() => (false, true),
        Some("finalize") if kind.plural == "namespaces" => (false, false),
        Some(_) => return Err(nf()),
    };
    Ok(Target {
        kind,
        ns: ns.map(String::from),
        name: name.map(String::from),
        status,
        scale,
        custom_scale,
    })
}

fn resource_list(group: &str, version: &str, custom: Vec<Value>) -> Option<Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut r = json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        });
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if matches!(
            k.plural,
            "pods" | "services" | "deployments" | "statefulsets" | "replicasets" | "daemonsets"
        ) {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        if k.plural == "serviceaccounts" {
            resources.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                                  "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
        }
        if k.status_sub {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                                  "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if crate::scale::has_scale(k) {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    resources.extend(custom);
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Groups of the access-control endpoints (no stored kinds, create only).
const REVIEW_GROUPS: [&str; 2] = ["authentication.k8s.io", "authorization.k8s.io"];

/// Discovery of the review endpoints: kubectl needs them listed to use them.
fn review_resources(group: &str) -> Value {
    let r = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["create"]});
    let resources = if group == "authorization.k8s.io" {
        vec![
            r("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
            r("selfsubjectrulesreviews", "SelfSubjectRulesReview", false),
        ]
    } else {
        vec![r("selfsubjectreviews", "SelfSubjectReview", false)]
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/v1"), "resources": resources})
}

fn api_group(g: &str) -> Value {
    api_group_versions(g, &["v1".to_string()])
}

/// An APIGroup entry with `versions` in priority order (first preferred).
fn api_group_versions(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or_default();
    json!({"name": g, "versions": vs, "preferredVersion": preferred})
}

#[derive(Serialize)]
struct WatchLine<'a> {
    #[serde(rename = "type")]
    etype: &'a str,
    object: &'a Value,
}

fn watch_line(etype: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&WatchLine { etype, object }).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// What one watch (or list) selects.
#[derive(Clone)]
struct Filter {
    kind: &'static Kind,
    /// The served version of a custom kind (objects are shown at it).
    view: Option<Arc<crate::crd::Version>>,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.ns {
            if meta_str(obj, "namespace") != Some(ns.as_str()) {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watcher sees for a change, if any.
    fn line(&self, ev: &Event) -> Option<Bytes> {
        if ev.kind.store_key != self.kind.store_key {
            return None;
        }
        let now = self.matches(&ev.object);
        let etype = match ev.etype {
            EventType::Added | EventType::Deleted if now => ev.etype.as_str(),
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(self.watch_line(etype, &ev.object))
    }

    /// A watch line of an object as this watcher's version shows it.
    fn watch_line(&self, etype: &str, object: &Value) -> Bytes {
        if !self.kind.custom {
            return watch_line(etype, object);
        }
        let mut o = object.clone();
        crate::crd::view(self.view.as_deref(), self.kind, &mut o);
        watch_line(etype, &o)
    }
}

impl ApiServer {
    /// Takes a permit for a non-watch request (None for watches, which
    /// take theirs when the stream opens), or refuses with 429.
    pub(crate) fn admit(&self, uri: &http::Uri) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if is_watch(uri) {
            return Ok(None);
        }
        match self.requests.clone().try_acquire_owned() {
            Ok(p) => Ok(Some(p)),
            Err(_) => {
                tracing::warn!(
                    limit = self.limits.max_requests_in_flight,
                    "too many requests in flight"
                );
                Err(ApiError::too_many_requests())
            }
        }
    }

    fn body_too_large(&self) -> ApiError {
        ApiError::too_large(format!("limit is {}", self.limits.max_request_body_bytes))
    }

    /// Handles one request in-process; watch responses stream.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<BoxBody> {
        let _permit = match self.admit(req.uri()) {
            Ok(p) => p,
            Err(e) => return error_response(&e),
        };
        self.dispatch(req)
    }

    /// Handles one admitted request.
    fn dispatch(&self, req: Request<Bytes>) -> Response<BoxBody> {
        if req.body().len() > self.limits.max_request_body_bytes {
            return error_response(&self.body_too_large());
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let user = match self.who(&req) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%method, %path, error = %e, "unauthenticated");
                return error_response(&e);
            }
        };
        if let Some(u) = &user {
            if let Err(e) = self.authorize(&req, u) {
                return error_response(&e);
            }
        }
        crate::crd::cel::take_warnings();
        let routed = self.route(req, user.as_ref());
        let warnings = crate::crd::cel::take_warnings();
        let mut resp = match routed {
            Ok(r) => r,
            Err(e) => {
                if e.code >= 500 {
                    tracing::warn!(%method, %path, error = %e, "request failed");
                } else {
                    tracing::debug!(%method, %path, error = %e, "request refused");
                }
                error_response(&e)
            }
        };
        for w in warnings {
            // RFC 7234 warn-code 299 as kube-apiserver sends them; a text
            // that is not a valid header value is dropped, not sent broken.
            let text = format!("299 - {:?}", w.replace(['\r', '\n'], " "));
            if let Ok(v) = header::HeaderValue::from_str(&text) {
                resp.headers_mut().append(header::WARNING, v);
            }
        }
        resp
    }

    fn route(
        &self,
        req: Request<Bytes>,
        user: Option<&crate::rbac::UserInfo>,
    ) -> Result<Response<BoxBody>, ApiError> {
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = req.method() == Method::GET;
        let post = req.method() == Method::POST;
        match segs.as_slice() {
            ["api", "v1", "namespaces", ns, "serviceaccounts", name, "token"] if post => {
                let body = parse_body(&req)?;
                Ok(json_response(201, &self.token_request(ns, name, &body)?))
            }
            ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] if post => {
                let body = parse_body(&req)?;
                Ok(json_response(201, &self.access_review(user, &body)?))
            }
            ["apis", "authorization.k8s.io", "v1", "selfsubjectrulesreviews"] if post => {
                let body = parse_body(&req)?;
                Ok(json_response(201, &self.rules_review(user, &body)?))
            }
            ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] if post => {
                Ok(json_response(201, &self.self_review(user)))
            }
            ["apis", g @ ("authorization.k8s.io" | "authentication.k8s.io")] if get => {
                let mut v = api_group(g);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                Ok(json_response(200, &v))
            }
            ["apis", g @ ("authorization.k8s.io" | "authentication.k8s.io"), "v1"] if get => {
                Ok(json_response(200, &review_resources(g)))
            }
            ["healthz" | "readyz" | "livez", ..] => Ok(text_response("ok")),
            ["version"] => Ok(json_response(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-weft", "gitCommit": "",
                        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
                        "compiler": "gc", "platform": "linux/amd64"}),
            )),
            ["openapi", "v2"] if get => Ok(protobuf_response(crate::openapi_v2::document())),
            ["openapi", "v3"] if get => {
                let custom = self.lock().custom.groups();
                Ok(json_response(200, &crate::openapi::v3_root(&custom)))
            }
            ["openapi", "v3", "api", v] if get => crate::openapi::served_document("", v, &[])
                .map(|d| json_response(200, &d))
                .ok_or_else(|| ApiError::not_found_path(&path)),
            ["openapi", "v3", "apis", g, v] if get => {
                let custom = self.lock().custom.openapi_kinds(g, v);
                crate::openapi::served_document(g, v, &custom)
                    .map(|d| json_response(200, &d))
                    .ok_or_else(|| ApiError::not_found_path(&path))
            }
            ["api"] if get => Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:{}", self.config.kubernetes_endpoint.0, self.config.kubernetes_endpoint.1)}]}),
            )),
            ["apis"] if get => {
                let custom = self.lock().custom.groups();
                let groups: Vec<Value> = kinds::groups()
                    .into_iter()
                    .chain(REVIEW_GROUPS)
                    .chain([crate::events_v1::GROUP])
                    .map(api_group)
                    .chain(custom.iter().map(|(g, vs)| api_group_versions(g, vs)))
                    .collect();
                Ok(json_response(
                    200,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                ))
            }
            ["apis", crate::events_v1::GROUP, rest @ ..] => self.events_v1(req, rest),
            ["api", "v1"] if get => resource_list("", "v1", Vec::new())
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::not_found_path(&path)),
            ["apis", g] if get && kinds::groups().contains(g) => {
                let mut v = api_group(g);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                Ok(json_response(200, &v))
            }
            ["apis", g] if get => {
                let custom = self.lock().custom.groups();
                let (_, vs) = custom
                    .iter()
                    .find(|(cg, _)| cg == g)
                    .ok_or_else(|| ApiError::not_found_path(&path))?;
                let mut v = api_group_versions(g, vs);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                Ok(json_response(200, &v))
            }
            ["apis", g, v] if get => {
                let custom = self.lock().custom.discovery(g, v);
                resource_list(g, v, custom)
                    .map(|v| json_response(200, &v))
                    .ok_or_else(|| ApiError::not_found_path(&path))
            }
            ["api", "v1", rest @ ..] => {
                let t = route_resource(&self.lock(), "", "v1", rest)?;
                self.resource(req, t)
            }
            ["apis", g, v, rest @ ..] if !rest.is_empty() => {
                let t = route_resource(&self.lock(), g, v, rest)?;
                self.resource(req, t)
            }
            _ => Err(ApiError::not_found_path(&path)),
        }
    }

    pub(crate) fn resource(
        &self,
        req: Request<Bytes>,
        t: Target,
    ) -> Result<Response<BoxBody>, ApiError> {
        let q = parse_query(req.uri().query());
        if let (Some(sc), Some(name)) = (&t.custom_scale, t.name.as_deref()) {
            return self.custom_scale(&req, &t, sc, name, &q);
        }
        if t.scale {
            return self.scale(&req, &t, &q);
        }
        let kind = t.kind;
        let ns = t.ns.clone().unwrap_or_default();
        let method = req.method().clone();
        match (method, t.name.as_deref()) {
            (Method::GET, Some(name)) if flag(&q, "watch") => {
                let mut q = q;
                let fs = match q.get("fieldSelector") {
                    Some(f) if !f.is_empty() => format!("{f},metadata.name={name}"),
                    _ => format!("metadata.name={name}"),
                };
                q.insert("fieldSelector".into(), fs);
                self.watch(&t, &q)
            }
            (Method::GET, Some(name)) => {
                let st = self.lock();
                let o = st
                    .get(kind, &ns, name)
                    .ok_or_else(|| ApiError::not_found(kind.plural, name))?;
                if kind.custom {
                    let o = crate::crd::present(&st, kind, o);
                    if wants_table(&req) {
                        return Ok(json_response(200, &custom_table(&st, kind, &[&o])));
                    }
                    return Ok(json_response(200, &o));
                }
                if wants_table(&req) {
                    return Ok(json_response(200, &crate::table::table(kind, &[o], st.rv)));
                }
                Ok(json_response(200, o))
            }
            (Method::GET, None) if flag(&q, "watch") => self.watch(&t, &q),
            (Method::GET, None) => self.list(&t, &q, wants_table(&req)),
            (Method::POST, None) => {
                let mut obj = parse_body(&req)?;
                let warnings = field_validation(kind, &mut obj, &q)?;
                let ns = if kind.namespaced && t.ns.is_none() {
                    meta_str(&obj, "namespace")
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "{} must be created in a namespace",
                                kind.plural
                            ))
                        })?
                } else {
                    ns
                };
                let mut st = self.lock();
                let created = self.create(&mut st, kind, &ns, obj, dry_run(&q))?;
                Ok(warn(
                    json_response(201, &shown(&st, kind, created)),
                    &warnings,
                ))
            }
            (Method::PUT, Some(name)) => {
                let mut obj = parse_body(&req)?;
                let warnings = field_validation(kind, &mut obj, &q)?;
                let mut st = self.lock();
                let updated = self.update(&mut st, kind, &ns, name, obj, t.status, dry_run(&q))?;
                Ok(warn(
                    json_response(200, &shown(&st, kind, updated)),
                    &warnings,
                ))
            }
            (Method::PATCH, Some(name)) => self.patch(&req, &t, name, &q),
            (Method::DELETE, Some(name)) => {
                let opts = delete_opts(&req, &q)?;
                let mut st = self.lock();
                let out = self.delete(&mut st, kind, &ns, name, &opts)?;
                if out.is_null() {
                    return Ok(json_response(200, &success_status(kind, name, "")));
                }
                Ok(json_response(200, &out))
            }
            (Method::DELETE, None) => {
                let opts = delete_opts(&req, &q)?;
                let filter = self.filter(&t, &q)?;
                let mut st = self.lock();
                let names: Vec<(String, String)> = st
                    .list(kind, t.ns.as_deref())
                    .filter(|o| filter.matches(o))
                    .map(|o| {
                        (
                            meta_str(o, "namespace").unwrap_or_default().to_string(),
                            meta_str(o, "name").unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let mut items = Vec::new();
                for (n, name) in names {
                    match self.delete(&mut st, kind, &n, &name, &opts) {
                        Ok(o) => items.push(o),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(json_response(
                    200,
                    &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                ))
            }
            (m, _) => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m} {})",
                req.uri().path()
            ))),
        }
    }

    fn filter(&self, t: &Target, q: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            kind: t.kind,
            view: self.lock().custom.version(t.kind),
            ns: t.ns.clone(),
            labels: LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?,
            fields: FieldSelector::parse(
                q.get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
                t.kind.plural,
            )?,
        })
    }

    fn list(&self, t: &Target, q: &Query, table: bool) -> Result<Response<BoxBody>, ApiError> {
        let filter = self.filter(t, q)?;
        let st = self.lock();
        let items: Vec<&Value> = st
            .list(t.kind, t.ns.as_deref())
            .filter(|o| filter.matches(o))
            .collect();
        if t.kind.custom {
            let items: Vec<Value> = items
                .into_iter()
                .map(|o| crate::crd::present(&st, t.kind, o))
                .collect();
            if table {
                let refs: Vec<&Value> = items.iter().collect();
                return Ok(json_response(200, &custom_table(&st, t.kind, &refs)));
            }
            let list = json!({"kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version(),
                              "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
            return Ok(json_response(200, &list));
        }
        if table {
            return Ok(json_response(
                200,
                &crate::table::table(t.kind, &items, st.rv),
            ));
        }
        let list = json!({"kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version(),
                          "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
        Ok(json_response(200, &list))
    }

    fn patch(
        &self,
        req: &Request<Bytes>,
        t: &Target,
        name: &str,
        q: &Query,
    ) -> Result<Response<BoxBody>, ApiError> {
        let kind = t.kind;
        let ns = t.ns.clone().unwrap_or_default();
        let ct = content_type(req);
        let p = parse_body(req)?;
        let dry = dry_run(q);
        let mut st = self.lock();
        let old = st
            .get(kind, &ns, name)
            .map(|o| crate::crd::present(&st, kind, o));
        if ct == "application/apply-patch+yaml" {
            let mut obj = p;
            let warnings = field_validation(kind, &mut obj, q)?;
            if !obj.is_object() {
                return Err(ApiError::bad_request("the apply patch must be an object"));
            }
            match meta_str(&obj, "name") {
                Some(n) if n != name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )))
                }
                _ => obj["metadata"]["name"] = json!(name),
            }
            let Some(old) = old else {
                if t.status {
                    return Err(ApiError::not_found(kind.plural, name));
                }
                let created = self.create(&mut st, kind, &ns, obj, dry)?;
                return Ok(warn(
                    json_response(201, &shown(&st, kind, created)),
                    &warnings,
                ));
            };
            // Apply replaces the object (see the crate docs); it checks the
            // resourceVersion only when the applied object carries one.
            drop(old);
            let updated = self.update(&mut st, kind, &ns, name, obj, t.status, dry)?;
            return Ok(warn(
                json_response(200, &shown(&st, kind, updated)),
                &warnings,
            ));
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(kind.plural, name));
        };
        let mut new = old;
        if kind.custom && ct == "application/strategic-merge-patch+json" {
            // As upstream: custom resources have no patch strategies.
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format ({ct}); accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
            ));
        }
        apply_patch(&ct, &mut new, &p)?;
        let warnings = field_validation(kind, &mut new, q)?;
        let updated = self.update(&mut st, kind, &ns, name, new, t.status, dry)?;
        Ok(warn(
            json_response(200, &shown(&st, kind, updated)),
            &warnings,
        ))
    }

    /// GET, PUT and PATCH of `…/{name}/scale` (see [`crate::scale`]).
    fn scale(
        &self,
        req: &Request<Bytes>,
        t: &Target,
        q: &Query,
    ) -> Result<Response<BoxBody>, ApiError> {
        let kind = t.kind;
        let ns = t.ns.clone().unwrap_or_default();
        let Some(name) = t.name.as_deref() else {
            return Err(ApiError::not_found_path(req.uri().path()));
        };
        let scale_kind = &kinds::SCALE;
        match req.method().clone() {
            Method::GET => Ok(json_response(
                200,
                &self.get_scale(&self.lock(), kind, &ns, name)?,
            )),
            Method::PUT => {
                let mut scale = parse_body(req)?;
                let warnings = field_validation(scale_kind, &mut scale, q)?;
                let mut st = self.lock();
                let out = self.put_scale(&mut st, kind, &ns, name, &scale, dry_run(q))?;
                Ok(warn(json_response(200, &out), &warnings))
            }
            Method::PATCH => {
                let p = parse_body(req)?;
                let mut st = self.lock();
                let mut scale = self.get_scale(&st, kind, &ns, name)?;
                apply_patch(&content_type(req), &mut scale, &p)?;
                let warnings = field_validation(scale_kind, &mut scale, q)?;
                let out = self.put_scale(&mut st, kind, &ns, name, &scale, dry_run(q))?;
                Ok(warn(json_response(200, &out), &warnings))
            }
            m => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m} {})",
                req.uri().path()
            ))),
        }
    }

    /// The `scale` subresource of a custom object: GET, PUT and PATCH of an
    /// `autoscaling/v1` Scale, written through to `specReplicasPath`.
    fn custom_scale(
        &self,
        req: &Request<Bytes>,
        t: &Target,
        sc: &crate::crd::Scale,
        name: &str,
        q: &Query,
    ) -> Result<Response<BoxBody>, ApiError> {
        let kind = t.kind;
        let ns = t.ns.clone().unwrap_or_default();
        let mut st = self.lock();
        let current = st
            .get(kind, &ns, name)
            .map(|o| crate::crd::present(&st, kind, o))
            .ok_or_else(|| ApiError::not_found(kind.plural, name))?;
        let scale = crate::crd::scale_of(sc, &current);
        let wanted = match *req.method() {
            Method::GET => return Ok(json_response(200, &scale)),
            Method::PUT => parse_body(req)?,
            Method::PATCH => {
                let p = parse_body(req)?;
                let mut s = scale.clone();
                match content_type(req).as_str() {
                    "application/json-patch+json" => patch::json_patch(&mut s, &p)?,
                    _ => patch::merge_patch(&mut s, &p),
                }
                s
            }
            ref m => {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({m} {})",
                    req.uri().path()
                )))
            }
        };
        if let Some(rv) = wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty() && Some(rv) != meta_str(&current, "resourceVersion") {
                return Err(ApiError::conflict(kind.plural, name));
            }
        }
        let mut obj = current;
        crate::crd::apply_scale(sc, &mut obj, &wanted)?;
        let updated = self.update(&mut st, kind, &ns, name, obj, false, dry_run(q))?;
        let shown = crate::crd::present(&st, kind, &updated);
        Ok(json_response(200, &crate::crd::scale_of(sc, &shown)))
    }

    fn watch(&self, t: &Target, q: &Query) -> Result<Response<BoxBody>, ApiError> {
        let filter = self.filter(t, q)?;
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(
                limit = self.limits.max_watches_in_flight,
                "too many watches open"
            );
            ApiError::too_many_requests()
        })?;
        let bookmarks = flag(q, "allowWatchBookmarks");
        let send_initial = flag(q, "sendInitialEvents");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
        let kind = t.kind;
        let (brx, initial, start_rv, gone) = {
            let st = self.lock();
            let brx = st.tx.subscribe();
            let mut initial = Vec::new();
            let mut gone = false;
            if rv_param.is_empty() || rv_param == "0" || send_initial {
                for o in st.list(kind, t.ns.as_deref()).filter(|o| filter.matches(o)) {
                    initial.push(filter.watch_line("ADDED", o));
                }
                if send_initial {
                    let bm = json!({"kind": kind.kind, "apiVersion": kind.api_version(),
                                    "metadata": {"resourceVersion": st.rv.to_string(),
                                                 "annotations": {"k8s.io/initial-events-end": "true"}}});
                    initial.push(watch_line("BOOKMARK", &bm));
                }
            } else {
                let rv: u64 = rv_param.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"))
                })?;
                if rv < st.floor {
                    let e = ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        st.floor + 1
                    ));
                    initial.push(watch_line("ERROR", &e.to_status()));
                    gone = true;
                } else {
                    for ev in st.history.iter().filter(|e| e.rv > rv) {
                        if let Some(l) = filter.line(ev) {
                            initial.push(l);
                        }
                    }
                }
            }
            (brx, initial, st.rv, gone)
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        tokio::spawn(async move {
            run_watch(filter, brx, initial, start_rv, gone, bookmarks, timeout, tx).await;
            drop(permit);
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    }

    /// Serves HTTP/1.1 on the listener until the future is dropped (which
    /// also closes every connection it accepted). Call it once per listener.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<(), Error> {
        let mut conns = tokio::task::JoinSet::new();
        let mut event_ttl = tokio::time::interval(crate::events_v1::SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = event_ttl.tick() => {
                    self.expire_events(jiff::Timestamp::now());
                }
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let api = self.clone();
                    conns.spawn(async move {
                        let tls = api.security.as_ref().map(|s| s.tls.clone());
                        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let api = api.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                Ok::<_, Infallible>(api.serve_one(parts, body).await)
                            }
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        let served = match tls {
                            None => {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                http.serve_connection(io, svc).with_upgrades().await
                            }
                            Some(acceptor) => {
                                // A client that never finishes the handshake
                                // must not hold a task forever.
                                let hs = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                                match hs {
                                    Ok(Ok(s)) => {
                                        let io = hyper_util::rt::TokioIo::new(s);
                                        http.serve_connection(io, svc).with_upgrades().await
                                    }
                                    Ok(Err(e)) => {
                                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                }
                            }
                        };
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }
}

impl ApiServer {
    /// One request off a connection: admission first (so slow bodies count
    /// as in flight, as in kube-apiserver), then the body within its limit.
    async fn serve_one(
        &self,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
    ) -> Response<BoxBody> {
        let _permit = match self.admit(&parts.uri) {
            Ok(p) => p,
            Err(e) => return error_response(&e),
        };
        // Logs, exec, attach, port-forward: streamed to and from the node.
        if let Some((sub, ns, name)) = crate::streaming::route(&parts.method, parts.uri.path()) {
            return self.serve_streaming(sub, ns, name, parts, body).await;
        }
        let limit = self.limits.max_request_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return error_response(&self.body_too_large());
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return error_response(&self.body_too_large())
            }
            Err(e) => {
                let err = ApiError::bad_request(format!("reading the request body: {e}"));
                return error_response(&err);
            }
        };
        self.dispatch(Request::from_parts(parts, bytes))
    }
}

/// Applies a patch of media type `ct` (other than apply) to `obj`.
fn apply_patch(ct: &str, obj: &mut Value, p: &Value) -> Result<(), ApiError> {
    match ct {
        "application/merge-patch+json" => patch::merge_patch(obj, p),
        "application/strategic-merge-patch+json" => patch::strategic_merge(obj, p),
        "application/json-patch+json" => patch::json_patch(obj, p)?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format ({other}); accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
            ))
        }
    }
    Ok(())
}

/// The `fieldValidation` directive of a write applied to its object (see
/// [`crate::openapi`]): the warnings to send, or Strict's refusal.
fn field_validation(kind: &Kind, obj: &mut Value, q: &Query) -> Result<Vec<String>, ApiError> {
    let directive =
        crate::openapi::FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?;
    crate::openapi::validate_fields(kind, obj, directive)
}

/// Adds one `Warning: 299 - "…"` header per warning (RFC 7234, as
/// kube-apiserver sends them).
fn warn(mut resp: Response<BoxBody>, warnings: &[String]) -> Response<BoxBody> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn protobuf_response(body: Vec<u8>) -> Response<BoxBody> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        ),
    );
    resp
}

fn delete_opts(req: &Request<Bytes>, q: &Query) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        grace: q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()),
        orphan: q.get("propagationPolicy").is_some_and(|p| p == "Orphan")
            || q.get("orphanDependents").is_some_and(|p| p == "true"),
        dry_run: dry_run(q),
        ..DeleteOpts::default()
    };
    if !req.body().is_empty() {
        let b: Value = serde_json::from_slice(req.body())
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace = Some(g);
        }
        if b.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
            || b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        {
            o.orphan = true;
        }
        if b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
        o.precondition_rv = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        o.precondition_uid = b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
    }
    Ok(o)
}

#[allow(clippy::too_many_arguments)]
async fn run_watch(
    filter: Filter,
    mut brx: broadcast::Receiver<Arc<Event>>,
    initial: Vec<Bytes>,
    start_rv: u64,
    gone: bool,
    bookmarks: bool,
    timeout: u64,
    tx: mpsc::Sender<Bytes>,
) {
    for b in initial {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if gone {
        return;
    }
    let kind = filter.kind;
    let mut last_rv = start_rv;
    let deadline = tokio::time::sleep(Duration::from_secs(timeout));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(BOOKMARK_EVERY);
    loop {
        let line = tokio::select! {
            _ = tx.closed() => return,
            _ = &mut deadline => return,
            _ = tick.tick(), if bookmarks => {
                let bm = json!({"kind": kind.kind, "apiVersion": kind.api_version(),
                                "metadata": {"resourceVersion": last_rv.to_string()}});
                Some(watch_line("BOOKMARK", &bm))
            }
            r = brx.recv() => match r {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        None
                    } else {
                        last_rv = ev.rv;
                        filter.line(&ev)
                    }
                }
                // Too slow a reader: end the stream; the client resumes
                // from the last resourceVersion it saw (still in history).
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Some(line) = line {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}
