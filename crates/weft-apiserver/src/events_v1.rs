//! `events.k8s.io/v1` Events, served from the core/v1 Event store, and the
//! event TTL.
//!
//! kube-apiserver stores one Event object and converts between the two
//! shapes at the API edge (`pkg/apis/events/v1/conversion.go`); so do we:
//! requests to `/apis/events.k8s.io/v1/...` are turned into requests for the
//! core `events` resource (bodies, merge and strategic patches, JSON-patch
//! paths and field selectors renamed), and every object in the answer —
//! single objects, lists and watch lines — is turned back. The renames
//! (events.k8s.io ↔ core): `regarding` ↔ `involvedObject`, `note` ↔
//! `message`, `reportingController` ↔ `reportingComponent`,
//! `deprecatedSource` ↔ `source`, `deprecatedCount` ↔ `count`,
//! `deprecatedFirstTimestamp` ↔ `firstTimestamp`, `deprecatedLastTimestamp`
//! ↔ `lastTimestamp`; `eventTime`, `series`, `action`, `reason`, `type`,
//! `related` and `reportingInstance` are the same in both.
//!
//! Events expire [`EVENT_TTL`] after they were last written (kube-apiserver's
//! `--event-ttl`, 1 h, an etcd lease renewed on every write): the server
//! sweeps every [`SWEEP_EVERY`] and deletes Events whose newest time
//! (`series.lastObservedTime`, `lastTimestamp`, `eventTime`,
//! `firstTimestamp`, `metadata.creationTimestamp`) is older than that.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::{json, Map, Value};

use crate::http::{route_resource, BoxBody};
use crate::kinds::by_plural;
use crate::status::ApiError;
use crate::store::meta_str;
use crate::ApiServer;

pub(crate) const GROUP: &str = "events.k8s.io";
const API_VERSION: &str = "events.k8s.io/v1";
/// How long an Event lives after its last write (kube-apiserver's default).
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// How often expired Events are looked for.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Top-level field names, events.k8s.io/v1 first, core/v1 second.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
];

fn rename(obj: Value, to_core: bool) -> Value {
    let Value::Object(m) = obj else { return obj };
    let out: Map<String, Value> = m
        .into_iter()
        .map(|(k, v)| {
            let k = RENAMES
                .iter()
                .find(|(e, c)| k == if to_core { *e } else { *c })
                .map_or(k.clone(), |(e, c)| {
                    if to_core { *c } else { *e }.to_string()
                });
            let v = match (k.as_str(), v) {
                ("apiVersion", Value::String(s)) if to_core && s == API_VERSION => json!("v1"),
                ("apiVersion", Value::String(s)) if !to_core && s == "v1" => json!(API_VERSION),
                (_, v) => v,
            };
            (k, v)
        })
        .collect();
    Value::Object(out)
}

/// An events.k8s.io/v1 Event (or a partial one: a merge patch) in core/v1 shape.
pub fn to_core(obj: Value) -> Value {
    rename(obj, true)
}

/// A core/v1 Event in events.k8s.io/v1 shape.
pub fn from_core(obj: Value) -> Value {
    rename(obj, false)
}

/// A JSON patch's paths (`/note`, `/regarding/name`) in core/v1 terms.
fn json_patch_to_core(ops: Value) -> Value {
    let Value::Array(ops) = ops else { return ops };
    let path_to_core = |p: &str| -> String {
        let mut parts = p.splitn(3, '/');
        let (Some(""), Some(first)) = (parts.next(), parts.next()) else {
            return p.to_string();
        };
        let rest = parts.next();
        let first = RENAMES
            .iter()
            .find(|(e, _)| *e == first)
            .map_or(first, |(_, c)| *c);
        match rest {
            Some(r) => format!("/{first}/{r}"),
            None => format!("/{first}"),
        }
    };
    Value::Array(
        ops.into_iter()
            .map(|mut op| {
                for key in ["path", "from"] {
                    if let Some(p) = op.get(key).and_then(Value::as_str).map(path_to_core) {
                        op[key] = json!(p);
                    }
                }
                if op.get("path").and_then(Value::as_str) == Some("/apiVersion") {
                    if let Some(v) = op.get_mut("value") {
                        if v == API_VERSION {
                            *v = json!("v1");
                        }
                    }
                }
                op
            })
            .collect(),
    )
}

/// A field selector of events.k8s.io/v1 in core/v1 field names.
fn field_selector_to_core(s: &str) -> String {
    s.split(',')
        .map(|part| {
            let part = part.trim();
            if let Some(rest) = part.strip_prefix("regarding.") {
                format!("involvedObject.{rest}")
            } else if let Some(rest) = part.strip_prefix("reportingController") {
                format!("reportingComponent{rest}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One answer frame (a whole JSON document or one watch line) with every
/// core Event in it turned into events.k8s.io/v1.
fn answer_from_core(data: Bytes) -> Bytes {
    let newline = data.ends_with(b"\n");
    let Ok(mut v) = serde_json::from_slice::<Value>(&data) else {
        return data;
    };
    let is_event = |o: &Value| o.get("kind").and_then(Value::as_str) == Some("Event");
    if is_event(&v) {
        v = from_core(v);
    } else if v.get("kind").and_then(Value::as_str) == Some("EventList") {
        v["apiVersion"] = json!(API_VERSION);
        if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                *item = from_core(std::mem::take(item));
            }
        }
    } else if v.get("type").is_some() {
        if let Some(o) = v.get_mut("object").filter(|o| is_event(o)) {
            *o = from_core(std::mem::take(o));
        }
    } else {
        return data;
    }
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    if newline {
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
           "resources": [{"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                          "shortNames": ["ev"],
                          "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}]})
}

fn json_response(v: &Value) -> Response<BoxBody> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
            .boxed_unsync(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The newest time an Event says it was written at (seconds since the epoch).
fn last_written(obj: &Value) -> Option<i64> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| obj.pointer(p).and_then(Value::as_str))
    .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
    .map(|t| t.as_second())
    .max()
}

/// The Event has outlived the TTL at `now`.
pub fn expired(obj: &Value, now: jiff::Timestamp, ttl: Duration) -> bool {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    last_written(obj).is_some_and(|t| now.as_second().saturating_sub(t) > ttl)
}

impl ApiServer {
    /// Serves `/apis/events.k8s.io/...` (`rest` is the path after the group).
    pub(crate) fn events_v1(
        &self,
        req: Request<Bytes>,
        rest: &[&str],
    ) -> Result<Response<BoxBody>, ApiError> {
        let get = req.method() == Method::GET;
        match rest {
            [] if get => {
                let gv = json!({"groupVersion": API_VERSION, "version": "v1"});
                return Ok(json_response(
                    &json!({"kind": "APIGroup", "apiVersion": "v1",
                    "name": GROUP, "versions": [gv.clone()], "preferredVersion": gv}),
                ));
            }
            ["v1"] if get => return Ok(json_response(&resource_list())),
            ["v1", path @ ..] if !path.is_empty() => {}
            _ => return Err(ApiError::not_found_path(req.uri().path())),
        }
        let t = route_resource(&self.lock(), "", "v1", &rest[1..])?;
        if t.kind.plural != "events" || t.status || t.scale {
            return Err(ApiError::not_found_path(req.uri().path()));
        }
        let (mut parts, body) = req.into_parts();
        // The request in core/v1 terms.
        if let Some(q) = parts.uri.query() {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .map(|(k, v)| {
                    let v = if k == "fieldSelector" {
                        field_selector_to_core(&v)
                    } else {
                        v
                    };
                    (k, v)
                })
                .collect();
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            let pq = format!("{}?{query}", parts.uri.path());
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = pq.parse().ok();
            if let Ok(u) = http::Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
        let body = if body.is_empty() {
            body
        } else {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let v = crate::http::parse_bytes(&ct, &body)?;
            let v = if ct.starts_with("application/json-patch+json") {
                json_patch_to_core(v)
            } else {
                to_core(v)
            };
            parts.headers.remove(header::CONTENT_LENGTH);
            // Sent on as JSON; a patch keeps its type (an apply patch is
            // YAML, which JSON is).
            if !ct.contains("patch") {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
            }
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        };
        let resp = self.resource(Request::from_parts(parts, body), t)?;
        let (parts, body) = resp.into_parts();
        let body = body
            .map_frame(|f| match f.into_data() {
                Ok(d) => Frame::data(answer_from_core(d)),
                Err(f) => f,
            })
            .boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }

    /// Deletes every Event that has outlived [`EVENT_TTL`] at `now`; returns how many.
    pub fn expire_events(&self, now: jiff::Timestamp) -> usize {
        self.expire_events_older_than(now, EVENT_TTL)
    }

    pub(crate) fn expire_events_older_than(&self, now: jiff::Timestamp, ttl: Duration) -> usize {
        let Some(kind) = by_plural("events") else {
            return 0;
        };
        let mut st = self.lock();
        let victims: Vec<(String, String)> = st
            .list(kind, None)
            .filter(|o| expired(o, now, ttl))
            .map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut n = 0;
        for (ns, name) in victims {
            match self.remove(&mut st, kind, &ns, &name, false) {
                Ok(Some(_)) => n += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(namespace = %ns, name = %name, error = %e, "deleting an expired event failed")
                }
            }
        }
        if n > 0 {
            tracing::debug!(expired = n, "expired events deleted");
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000001Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "reportingController": "deployment-controller", "reportingInstance": "x",
            "action": "Scale", "reason": "ScalingReplicaSet", "type": "Normal",
            "note": "Scaled up replica set web-1 from 0 to 1",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "default", "uid": "u"},
            "related": {"kind": "ReplicaSet", "name": "web-1"},
            "deprecatedCount": 3, "deprecatedSource": {"component": "c"},
            "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2026-01-01T00:00:30Z",
        })
    }

    #[test]
    fn events_v1_converts_to_core_and_back() {
        let core = to_core(v1_event());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "Scaled up replica set web-1 from 0 to 1");
        assert_eq!(core["reportingComponent"], "deployment-controller");
        assert_eq!(core["reportingInstance"], "x");
        assert_eq!(core["count"], 3);
        assert_eq!(core["source"]["component"], "c");
        assert_eq!(core["firstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(core["lastTimestamp"], "2026-01-01T00:00:30Z");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(core["related"]["name"], "web-1");
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(from_core(core), v1_event());
    }

    #[test]
    fn json_patch_paths_and_field_selectors_use_core_names() {
        let ops = json_patch_to_core(json!([
            {"op": "replace", "path": "/note", "value": "x"},
            {"op": "replace", "path": "/series/count", "value": 3},
            {"op": "copy", "from": "/regarding/name", "path": "/deprecatedSource/host"},
        ]));
        assert_eq!(ops[0]["path"], "/message");
        assert_eq!(ops[1]["path"], "/series/count");
        assert_eq!(ops[2]["from"], "/involvedObject/name");
        assert_eq!(ops[2]["path"], "/source/host");
        assert_eq!(
            field_selector_to_core("regarding.name=web,reportingController!=x,type=Normal"),
            "involvedObject.name=web,reportingComponent!=x,type=Normal"
        );
    }

    #[test]
    fn answers_lists_and_watch_lines_are_converted() {
        let core = to_core(v1_event());
        let list = json!({"kind": "EventList", "apiVersion": "v1", "items": [core.clone()]});
        let out: Value =
            serde_json::from_slice(&answer_from_core(Bytes::from(list.to_string()))).unwrap();
        assert_eq!(out["apiVersion"], API_VERSION);
        assert_eq!(out["items"][0]["note"], v1_event()["note"]);
        let line = format!("{}\n", json!({"type": "ADDED", "object": core}));
        let out = answer_from_core(Bytes::from(line));
        assert!(out.ends_with(b"\n"));
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["object"]["regarding"]["kind"], "Deployment");
        let status = Bytes::from(json!({"kind": "Status", "code": 404}).to_string());
        assert_eq!(answer_from_core(status.clone()), status);
    }

    #[test]
    fn events_expire_an_hour_after_their_last_write() {
        let now: jiff::Timestamp = "2026-01-01T02:00:30Z".parse().unwrap();
        let mut e = to_core(v1_event());
        // Last written at 00:01:00 (the series): 1 h 59 m ago.
        assert!(expired(&e, now, EVENT_TTL));
        e["series"]["lastObservedTime"] = json!("2026-01-01T01:30:00.000000Z");
        assert!(!expired(&e, now, EVENT_TTL));
        assert!(!expired(&json!({"metadata": {}}), now, EVENT_TTL));
    }

    mod served {
        use super::*;
        use crate::tests_support::config;

        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        fn server(tag: &str) -> (std::sync::Arc<ApiServer>, Dir) {
            let d = std::env::temp_dir().join(format!("weft-api-ev-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            (ApiServer::open(config(&d)).unwrap(), Dir(d))
        }

        async fn call(
            api: &ApiServer,
            method: &str,
            uri: &str,
            content_type: &str,
            body: Option<Value>,
        ) -> (u16, Value) {
            let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, content_type)
                .body(b)
                .unwrap();
            let resp = api.handle(req).await;
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }

        const JSON: &str = "application/json";
        const V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
        const CORE: &str = "/api/v1/namespaces/default/events";

        #[tokio::test]
        async fn an_events_v1_event_is_one_core_event_and_series_patches_update_it() {
            let (api, _d) = server("one");
            let (code, created) = call(&api, "POST", V1, JSON, Some(v1_event())).await;
            assert_eq!(code, 201, "{created}");
            assert_eq!(created["apiVersion"], API_VERSION);
            assert_eq!(created["note"], v1_event()["note"]);

            let q = "?fieldSelector=involvedObject.kind%3DDeployment,involvedObject.name%3Dweb,involvedObject.namespace%3Ddefault,involvedObject.uid%3Du";
            let (code, list) = call(&api, "GET", &format!("{CORE}{q}"), JSON, None).await;
            assert_eq!(code, 200, "{list}");
            let items = list["items"].as_array().unwrap();
            assert_eq!(items.len(), 1);
            assert_eq!(items[0]["apiVersion"], "v1");
            assert_eq!(items[0]["message"], v1_event()["note"]);
            let (_, none) = call(
                &api,
                "GET",
                &format!("{CORE}?fieldSelector=involvedObject.name%3Dother"),
                JSON,
                None,
            )
            .await;
            assert_eq!(none["items"].as_array().unwrap().len(), 0);

            // kube-rs's Recorder patches the series with a merge patch.
            let patch = json!({"apiVersion": API_VERSION, "kind": "Event",
                               "series": {"count": 5, "lastObservedTime": "2026-01-01T00:05:00.000000Z"}});
            let (code, patched) = call(
                &api,
                "PATCH",
                &format!("{V1}/web.1"),
                "application/merge-patch+json",
                Some(patch),
            )
            .await;
            assert_eq!(code, 200, "{patched}");
            assert_eq!(patched["series"]["count"], 5);
            let (_, core) = call(&api, "GET", &format!("{CORE}/web.1"), JSON, None).await;
            assert_eq!(core["series"]["count"], 5);
            assert_eq!(core["involvedObject"]["name"], "web");

            let (_, listed) = call(
                &api,
                "GET",
                &format!("{V1}?fieldSelector=regarding.name%3Dweb"),
                JSON,
                None,
            )
            .await;
            assert_eq!(listed["kind"], "EventList");
            assert_eq!(listed["apiVersion"], API_VERSION);
            assert_eq!(listed["items"][0]["regarding"]["kind"], "Deployment");
        }

        #[tokio::test]
        async fn an_events_v1_watch_sees_core_events_in_its_shape() {
            let (api, _d) = server("watch");
            let req = Request::builder()
                .uri(format!("{V1}?watch=true"))
                .body(Bytes::new())
                .unwrap();
            let mut body = api.handle(req).await.into_body();
            let core = to_core(v1_event());
            assert_eq!(call(&api, "POST", CORE, JSON, Some(core)).await.0, 201);
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let line: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
            assert_eq!(line["type"], "ADDED");
            assert_eq!(line["object"]["apiVersion"], API_VERSION);
            assert_eq!(line["object"]["note"], v1_event()["note"]);
            assert_eq!(line["object"]["regarding"]["name"], "web");
        }

        #[tokio::test]
        async fn events_v1_is_discoverable_and_serves_only_events() {
            let (api, _d) = server("disc");
            let (_, groups) = call(&api, "GET", "/apis", JSON, None).await;
            assert!(groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == GROUP));
            let (code, list) = call(&api, "GET", "/apis/events.k8s.io/v1", JSON, None).await;
            assert_eq!(code, 200);
            assert_eq!(list["resources"][0]["name"], "events");
            let (code, _) = call(
                &api,
                "GET",
                "/apis/events.k8s.io/v1/namespaces/default/pods",
                JSON,
                None,
            )
            .await;
            assert_eq!(code, 404);
        }

        #[tokio::test]
        async fn expired_events_are_deleted_by_the_sweep() {
            let (api, _d) = server("ttl");
            // Both are created now; "fresh" is written again 90 minutes on.
            let created = jiff::Timestamp::now();
            let later = created + jiff::SignedDuration::from_mins(90);
            let mut fresh = v1_event();
            fresh["metadata"]["name"] = json!("fresh");
            fresh["series"]["lastObservedTime"] = json!(later.to_string());
            for e in [v1_event(), fresh] {
                assert_eq!(call(&api, "POST", V1, JSON, Some(e)).await.0, 201);
            }
            let mins = |m| created + jiff::SignedDuration::from_mins(m);
            assert_eq!(api.expire_events(mins(59)), 0);
            assert_eq!(api.expire_events(mins(70)), 1);
            let (_, list) = call(&api, "GET", CORE, JSON, None).await;
            let names: Vec<&str> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["metadata"]["name"].as_str())
                .collect();
            assert_eq!(names, ["fresh"]);
            assert_eq!(api.expire_events(mins(151)), 1);
        }
    }
}
