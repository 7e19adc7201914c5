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

/// A resource request after routing.
struct Target {
    kind: &'static Kind,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route_resource(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let nf = || ApiError::not_found_path(&rest.join("/"));
    let find = |p: &str| kinds::find(group, version, p).ok_or_else(nf);
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
    let status = match sub {
        None => false,
        Some("status") if kind.status_sub => true,
        Some("finalize") if kind.plural == "namespaces" => false,
        Some(_) => return Err(nf()),
    };
    Ok(Target {
        kind,
        ns: ns.map(String::from),
        name: name.map(String::from),
        status,
    })
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
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
            "pods" | "services" | "deployments" | "statefulsets" | "replicasets"
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
    }
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The OpenAPI v3 discovery root: one entry per group-version.
///
/// kubectl (1.32) refuses `create -f`/`apply -f` with the default
/// `--validate=strict` unless it can either check that the server supports
/// the `fieldValidation` query parameter (OpenAPI v3) or download the full
/// OpenAPI v2 schema. The minimal answer is this root plus, per
/// group-version, a document whose PATCH operations carry the
/// `x-kubernetes-group-version-kind` extension and a `fieldValidation`
/// query parameter; kubectl then validates server-side (we decode into the
/// k8s-openapi types and accept unknown fields, i.e. behave like
/// `fieldValidation=Ignore`).
fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
    );
    for g in kinds::groups() {
        paths.insert(
            format!("apis/{g}/v1"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/v1")}),
        );
    }
    json!({"paths": paths})
}

fn openapi_v3_gv(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("{prefix}/{}/{{name}}", k.plural)
        };
        let param = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let op = json!({
            "operationId": format!("patch{}", k.kind),
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": k.kind},
            "parameters": [param],
            "responses": {"200": {"description": "OK"}}
        });
        paths.insert(path, json!({"patch": op.clone(), "put": op}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths})
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
    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
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
        if ev.kind.plural != self.kind.plural {
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
        Some(watch_line(etype, &ev.object))
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
        match self.route(req, user.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                if e.code >= 500 {
                    tracing::warn!(%method, %path, error = %e, "request failed");
                } else {
                    tracing::debug!(%method, %path, error = %e, "request refused");
                }
                error_response(&e)
            }
        }
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
            ["openapi", "v3"] if get => Ok(json_response(200, &openapi_v3_root())),
            ["openapi", "v3", "api", "v1"] if get => {
                Ok(json_response(200, &openapi_v3_gv("", "v1")))
            }
            ["openapi", "v3", "apis", g, v] if get && kinds::groups().contains(g) => {
                Ok(json_response(200, &openapi_v3_gv(g, v)))
            }
            ["api"] if get => Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:{}", self.config.kubernetes_endpoint.0, self.config.kubernetes_endpoint.1)}]}),
            )),
            ["apis"] if get => {
                let groups: Vec<Value> = kinds::groups()
                    .into_iter()
                    .chain(REVIEW_GROUPS)
                    .map(api_group)
                    .collect();
                Ok(json_response(
                    200,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                ))
            }
            ["api", "v1"] if get => resource_list("", "v1")
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::not_found_path(&path)),
            ["apis", g] if get && kinds::groups().contains(g) => {
                let mut v = api_group(g);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                Ok(json_response(200, &v))
            }
            ["apis", g, v] if get => resource_list(g, v)
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::not_found_path(&path)),
            ["api", "v1", rest @ ..] => {
                let t = route_resource("", "v1", rest)?;
                self.resource(req, t)
            }
            ["apis", g, v, rest @ ..] if !rest.is_empty() => {
                let t = route_resource(g, v, rest)?;
                self.resource(req, t)
            }
            _ => Err(ApiError::not_found_path(&path)),
        }
    }

    fn resource(&self, req: Request<Bytes>, t: Target) -> Result<Response<BoxBody>, ApiError> {
        let q = parse_query(req.uri().query());
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
                if wants_table(&req) {
                    return Ok(json_response(200, &crate::table::table(kind, &[o], st.rv)));
                }
                Ok(json_response(200, o))
            }
            (Method::GET, None) if flag(&q, "watch") => self.watch(&t, &q),
            (Method::GET, None) => self.list(&t, &q, wants_table(&req)),
            (Method::POST, None) => {
                let obj = parse_body(&req)?;
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
                Ok(json_response(201, &created))
            }
            (Method::PUT, Some(name)) => {
                let obj = parse_body(&req)?;
                let mut st = self.lock();
                let updated = self.update(&mut st, kind, &ns, name, obj, t.status, dry_run(&q))?;
                Ok(json_response(200, &updated))
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
        let old = st.get(kind, &ns, name).cloned();
        if ct == "application/apply-patch+yaml" {
            let mut obj = p;
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
                return Ok(json_response(201, &created));
            };
            // Apply replaces the object (see the crate docs); it checks the
            // resourceVersion only when the applied object carries one.
            drop(old);
            let updated = self.update(&mut st, kind, &ns, name, obj, t.status, dry)?;
            return Ok(json_response(200, &updated));
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(kind.plural, name));
        };
        let mut new = old;
        match ct.as_str() {
            "application/merge-patch+json" => patch::merge_patch(&mut new, &p),
            "application/strategic-merge-patch+json" => patch::strategic_merge(&mut new, &p),
            "application/json-patch+json" => patch::json_patch(&mut new, &p)?,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format ({other}); accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
                ))
            }
        }
        let updated = self.update(&mut st, kind, &ns, name, new, t.status, dry)?;
        Ok(json_response(200, &updated))
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
                    initial.push(watch_line("ADDED", o));
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
        loop {
            tokio::select! {
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
