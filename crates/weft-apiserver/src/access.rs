//! Access control on the request path of a secured server: authenticate
//! (static and ServiceAccount tokens, the latter checked live against the
//! store), turn the request into RBAC attributes (kube's RequestInfo rules),
//! authorize against the cached RBAC index; and the API endpoints of
//! access control itself: TokenRequest (`serviceaccounts/<name>/token`),
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
//! (`kubectl auth can-i --list`) and SelfSubjectReview (`kubectl auth
//! whoami`). ServiceAccount admission (a pod's `serviceAccountName`
//! defaults to `default` and must exist) and the per-namespace defaults
//! (ServiceAccount `default`, ConfigMap `kube-root-ca.crt`) live here too.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request};
use serde_json::{json, Value};

use crate::auth::{self, Authenticated, ObjectRef};
use crate::kinds::{by_plural, Kind};
use crate::rbac::{self, Attributes, RbacIndex, UserInfo};
use crate::status::{ApiError, Cause};
use crate::store::{meta_str, State};
use crate::ApiServer;

/// Paths anyone may GET without credentials (kube-apiserver's anonymous
/// defaults for health and version).
fn is_public(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    matches!(first, "healthz" | "livez" | "readyz") || path.trim_end_matches('/') == "/version"
}

pub(crate) fn unauthorized(why: &str) -> ApiError {
    ApiError::new(401, "Unauthorized", format!("Unauthorized: {why}"))
}

/// The RBAC kinds, in [`RbacIndex::build`]'s argument order.
const RBAC_PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// kube's RequestInfo: what a request asks for, as RBAC sees it.
pub(crate) fn attributes(method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = || Attributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (g, rest),
        _ => return non_resource(),
    };
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, res, tail @ ..] if !matches!(*res, "status" | "finalize") => (
            ns.to_string(),
            res.to_string(),
            tail.first().copied().unwrap_or(""),
            tail.get(1..).map(|t| t.join("/")).unwrap_or_default(),
        ),
        // A namespace object is in its own namespace (kube's RequestInfo).
        ["namespaces", ns, tail @ ..] => (
            ns.to_string(),
            "namespaces".to_string(),
            *ns,
            tail.join("/"),
        ),
        [res, tail @ ..] => (
            String::new(),
            res.to_string(),
            tail.first().copied().unwrap_or(""),
            tail.get(1..).map(|t| t.join("/")).unwrap_or_default(),
        ),
        [] => (String::new(), String::new(), "", String::new()),
    };
    let watch = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        // A method the API has no verb for: authorized as its own verb on
        // the path (no rule grants it but `*`); routing answers 405.
        _ => return non_resource(),
    };
    Attributes::Resource {
        verb: verb.into(),
        api_group: group.into(),
        resource,
        subresource,
        namespace,
        name: name.into(),
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn kind_of(plural: &str) -> Result<&'static Kind, ApiError> {
    by_plural(plural).ok_or_else(|| ApiError::internal(format!("no kind {plural}")))
}

impl ApiServer {
    /// Who sent `req`: `Ok(None)` on an open (unsecured) server.
    pub(crate) fn who(&self, req: &Request<Bytes>) -> Result<Option<UserInfo>, ApiError> {
        let Some(sec) = &self.security else {
            return Ok(None);
        };
        let header = match req.headers().get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| unauthorized("the Authorization header is not ASCII"))?,
            ),
        };
        match sec
            .authn
            .authenticate(header)
            .map_err(|e| unauthorized(&e.0))?
        {
            Authenticated::Anonymous if is_public(req.uri().path()) => {
                Ok(Some(auth::anonymous_user()))
            }
            Authenticated::Anonymous => Err(unauthorized(
                "no credentials: send a bearer token (weft kubeconfig has the admin's)",
            )),
            Authenticated::User(u) => Ok(Some(u)),
            Authenticated::ServiceAccount {
                user,
                namespace,
                serviceaccount,
                pod,
            } => {
                let st = self.lock();
                let live = |plural: &str, r: &ObjectRef| -> Result<(), ApiError> {
                    let obj = st.get(kind_of(plural)?, &namespace, &r.name);
                    match obj.and_then(|o| meta_str(o, "uid")) {
                        Some(uid) if uid == r.uid => Ok(()),
                        Some(_) => Err(unauthorized(&format!(
                            "the token's {} {namespace}/{} was deleted and recreated",
                            kind_of(plural)?.singular,
                            r.name
                        ))),
                        None => Err(unauthorized(&format!(
                            "the token's {} {namespace}/{} no longer exists",
                            kind_of(plural)?.singular,
                            r.name
                        ))),
                    }
                };
                live("serviceaccounts", &serviceaccount)?;
                if let Some(p) = &pod {
                    live("pods", p)?;
                }
                Ok(Some(user))
            }
        }
    }

    /// The RBAC index for the current RBAC objects (rebuilt only after one
    /// of them changed).
    fn rbac_index(&self) -> Result<Arc<RbacIndex>, ApiError> {
        let st = self.lock();
        let mut cache = self.rbac.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, idx)) = cache.as_ref() {
            if *generation == st.rbac_generation {
                return Ok(idx.clone());
            }
        }
        let [r, cr, rb, crb] = RBAC_PLURALS.map(kind_of);
        let idx = Arc::new(RbacIndex::build(
            st.list(r?, None),
            st.list(cr?, None),
            st.list(rb?, None),
            st.list(crb?, None),
        ));
        *cache = Some((st.rbac_generation, idx.clone()));
        Ok(idx)
    }

    /// 403 unless RBAC allows `user` what `req` asks.
    pub(crate) fn authorize(&self, req: &Request<Bytes>, user: &UserInfo) -> Result<(), ApiError> {
        if is_public(req.uri().path()) && req.method() == Method::GET {
            return Ok(());
        }
        let attrs = attributes(req.method(), req.uri().path(), req.uri().query());
        let d = self.rbac_index()?.authorize(user, &attrs);
        if d.allowed {
            Ok(())
        } else {
            tracing::debug!(user = %user.name, ?attrs, "forbidden");
            Err(rbac::forbidden_error(user, &attrs, &d.reason))
        }
    }

    /// `POST .../serviceaccounts/<name>/token` (TokenRequest).
    pub(crate) fn token_request(
        &self,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let Some(sec) = &self.security else {
            return Err(ApiError::not_found_path(
                "serviceaccounts/token (the server runs without authentication)",
            ));
        };
        let invalid =
            |c: Cause| ApiError::invalid("TokenRequest", "serviceaccounts", name, vec![c]);
        let st = self.lock();
        let sa = st
            .get(kind_of("serviceaccounts")?, ns, name)
            .ok_or_else(|| ApiError::not_found("serviceaccounts", name))?;
        let sa_ref = ObjectRef {
            name: name.to_string(),
            uid: meta_str(sa, "uid").unwrap_or_default().to_string(),
        };
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let seconds = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => 3600,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(Cause::invalid(
                    "spec.expirationSeconds",
                    v,
                    "must be a number of seconds",
                ))
            })?,
        };
        if seconds < auth::MIN_EXPIRATION_SECONDS {
            return Err(invalid(Cause::invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 10 minutes",
            )));
        }
        let seconds = seconds.min(auth::MAX_EXPIRATION_SECONDS);
        let audiences: Vec<String> = match spec.get("audiences") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str().map(String::from).ok_or_else(|| {
                        invalid(Cause::invalid("spec.audiences", x, "must be strings"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(invalid(Cause::invalid(
                    "spec.audiences",
                    v,
                    "must be a list of strings",
                )))
            }
        };
        let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
        let pod = match bound {
            None => None,
            Some(b) => {
                let kind = str_at(b, "/kind");
                if kind != "Pod" {
                    return Err(invalid(Cause::unsupported(
                        "spec.boundObjectRef.kind",
                        kind,
                        &["Pod"],
                    )));
                }
                let pname = str_at(b, "/name");
                let p = st
                    .get(kind_of("pods")?, ns, pname)
                    .ok_or_else(|| ApiError::not_found("pods", pname))?;
                let uid = meta_str(p, "uid").unwrap_or_default();
                let want = str_at(b, "/uid");
                if !want.is_empty() && want != uid {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("the UID in the bound object reference ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
                    ));
                }
                Some(ObjectRef {
                    name: pname.to_string(),
                    uid: uid.to_string(),
                })
            }
        };
        drop(st);
        let now = jiff::Timestamp::now().as_second();
        let token = sec
            .authn
            .issue(ns, sa_ref, pod, audiences.clone(), now, seconds)
            .map_err(|e| ApiError::internal(e.0))?;
        let expires = jiff::Timestamp::from_second(now + seconds)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let mut out_spec = spec;
        out_spec["expirationSeconds"] = json!(seconds);
        out_spec["audiences"] = json!(if audiences.is_empty() {
            vec![auth::ISSUER.to_string()]
        } else {
            audiences
        });
        Ok(json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": crate::registry::now_rfc3339()},
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
    pub(crate) fn access_review(
        &self,
        user: Option<&UserInfo>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let res = spec.get("resourceAttributes").filter(|v| v.is_object());
        let non = spec.get("nonResourceAttributes").filter(|v| v.is_object());
        let attrs = match (res, non) {
            (Some(r), None) => Attributes::Resource {
                verb: str_at(r, "/verb").into(),
                api_group: str_at(r, "/group").into(),
                resource: str_at(r, "/resource").into(),
                subresource: str_at(r, "/subresource").into(),
                namespace: str_at(r, "/namespace").into(),
                name: str_at(r, "/name").into(),
            },
            (None, Some(n)) => Attributes::NonResource {
                verb: str_at(n, "/verb").into(),
                path: str_at(n, "/path").into(),
            },
            _ => {
                return Err(ApiError::invalid(
                    "SelfSubjectAccessReview",
                    "selfsubjectaccessreviews",
                    "",
                    vec![Cause::required(
                        "spec.resourceAttributes: exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                ))
            }
        };
        let status = match user {
            None => json!({"allowed": true, "reason": "the server runs without authorization"}),
            Some(u) => {
                let d = self.rbac_index()?.authorize(u, &attrs);
                let mut s = json!({"allowed": d.allowed});
                if !d.reason.is_empty() {
                    s["reason"] = json!(d.reason);
                }
                s
            }
        };
        Ok(json!({
            "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null}, "spec": spec, "status": status,
        }))
    }

    /// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`.
    pub(crate) fn rules_review(
        &self,
        user: Option<&UserInfo>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let ns = str_at(body, "/spec/namespace");
        let (resource_rules, non_resource_rules) = match user {
            None => (
                vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
                vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
            ),
            Some(u) => self.rbac_index()?.rules_for(u, ns),
        };
        Ok(json!({
            "kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null}, "spec": {"namespace": ns},
            "status": {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false},
        }))
    }

    /// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
    pub(crate) fn self_review(&self, user: Option<&UserInfo>) -> Value {
        let u = user.cloned().unwrap_or_else(auth::anonymous_user);
        json!({
            "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": u.name, "uid": u.uid, "groups": u.groups}},
        })
    }

    /// ServiceAccount admission for a pod being created: `serviceAccountName`
    /// defaults to `default` and must exist (kube's ServiceAccount admission
    /// plugin; its message).
    pub(crate) fn admit_service_account(
        &self,
        st: &State,
        ns: &str,
        name: &str,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.get("serviceAccount")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("default")
            .to_string();
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
        if st.get(kind_of("serviceaccounts")?, ns, &sa).is_none() {
            return Err(ApiError::forbidden(
                "pods",
                name,
                &format!(
                    "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
                ),
            ));
        }
        Ok(())
    }

    /// What every namespace has (kube's serviceaccounts-controller and
    /// root-ca-cert-publisher, done at once so a pod created right after
    /// its namespace finds its ServiceAccount).
    pub(crate) fn namespace_defaults(&self, st: &mut State, ns: &str) -> Result<(), ApiError> {
        let sa = kind_of("serviceaccounts")?;
        if st.get(sa, ns, "default").is_none() {
            self.create(
                st,
                sa,
                ns,
                json!({"metadata": {"name": "default", "namespace": ns}}),
                false,
            )?;
        }
        if let Some(sec) = &self.security {
            let cm = kind_of("configmaps")?;
            let want = json!({"ca.crt": sec.ca_pem});
            match st.get(cm, ns, "kube-root-ca.crt") {
                Some(o) if o.get("data") == Some(&want) => {}
                Some(o) => {
                    let mut o = o.clone();
                    o["data"] = want;
                    self.update(st, cm, ns, "kube-root-ca.crt", o, false, false)?;
                }
                None => {
                    self.create(
                        st,
                        cm,
                        ns,
                        json!({"metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                                            "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                               "data": want}),
                        false,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        m: Method,
        path: &str,
        q: Option<&str>,
    ) -> (String, String, String, String, String, String) {
        match attributes(&m, path, q) {
            Attributes::Resource {
                verb,
                api_group,
                resource,
                subresource,
                namespace,
                name,
            } => (verb, api_group, resource, subresource, namespace, name),
            a => panic!("not a resource request: {a:?}"),
        }
    }

    fn t(v: [&str; 6]) -> (String, String, String, String, String, String) {
        let [a, b, c, d, e, f] = v.map(String::from);
        (a, b, c, d, e, f)
    }

    #[test]
    fn request_paths_map_to_kube_request_attributes() {
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/b/secrets", None),
            t(["list", "", "secrets", "", "b", ""])
        );
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/b/pods/web/log", None),
            t(["get", "", "pods", "log", "b", "web"])
        );
        assert_eq!(
            res(Method::GET, "/apis/apps/v1/deployments", Some("watch=true")),
            t(["watch", "apps", "deployments", "", "", ""])
        );
        assert_eq!(
            res(Method::DELETE, "/api/v1/namespaces/b/pods", None),
            t(["deletecollection", "", "pods", "", "b", ""])
        );
        assert_eq!(
            res(
                Method::POST,
                "/api/v1/namespaces/b/serviceaccounts/default/token",
                None
            ),
            t(["create", "", "serviceaccounts", "token", "b", "default"])
        );
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/b", None),
            t(["get", "", "namespaces", "", "b", "b"])
        );
        assert_eq!(
            res(Method::PUT, "/api/v1/namespaces/b/finalize", None),
            t(["update", "", "namespaces", "finalize", "b", "b"])
        );
        assert_eq!(
            res(Method::PATCH, "/api/v1/nodes/node-1/status", None),
            t(["patch", "", "nodes", "status", "", "node-1"])
        );
    }

    #[test]
    fn discovery_and_health_are_non_resource_requests() {
        for p in [
            "/api",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v3",
        ] {
            assert!(
                matches!(attributes(&Method::GET, p, None), Attributes::NonResource { ref verb, ref path } if verb == "get" && path == p),
                "{p}"
            );
        }
    }

    #[test]
    fn only_health_and_version_are_public() {
        for p in [
            "/healthz",
            "/livez",
            "/readyz",
            "/readyz/ping",
            "/version",
            "/version/",
        ] {
            assert!(is_public(p), "{p}");
        }
        for p in [
            "/api",
            "/apis",
            "/api/v1/pods",
            "/versions",
            "/metrics",
            "/",
        ] {
            assert!(!is_public(p), "{p}");
        }
    }
}
