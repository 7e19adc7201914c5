//! Registry semantics: create, update (main and status), delete with
//! graceful pod deletion, finalizers, ownerReference GC and namespace
//! termination. All run under the store lock.

use serde_json::{json, Value};

use crate::kinds::{by_plural, Kind, KINDS};
use crate::status::ApiError;
use crate::store::{meta_str, State};
use crate::validate::prepare;
use crate::{ApiServer, Error};

/// Namespaces that always exist and cannot be deleted.
pub const PROTECTED_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// DELETE options (query or DeleteOptions body).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub orphan: bool,
    pub dry_run: bool,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn rfc3339_in(secs: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random UUID v4 string.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to time + counter entropy; uniqueness is all we need.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = jiff::Timestamp::now().as_nanosecond() as u128;
        b = (t ^ (u128::from(n) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Just made an object above.
        _ => unreachable!("metadata is an object"),
    }
}

fn finalizers_empty(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty())
}

fn has_deletion(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Checks and fills apiVersion/kind of a request body.
pub fn check_type(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let av = kind.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )))
        }
        _ => obj["apiVersion"] = json!(av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != kind.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )))
        }
        _ => obj["kind"] = json!(kind.kind),
    }
    Ok(())
}

/// The store-independent part of a create: type, name (from generateName),
/// namespace and server-owned metadata filled in, status dropped where a
/// subresource owns it. Returns the name and the object.
fn fill_create(kind: &Kind, ns: &str, mut obj: Value) -> Result<(String, Value), ApiError> {
    check_type(kind, &mut obj)?;
    let meta = meta_mut(&mut obj);
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        if let Some(g) = meta.get("generateName").and_then(Value::as_str) {
            if !g.is_empty() {
                name = format!("{g}{}", random_suffix());
                meta.insert("name".into(), json!(name));
            }
        }
    }
    if kind.namespaced {
        namespace_matches(meta, ns)?;
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uuid_v4()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    if kind.has_spec {
        meta.insert("generation".into(), json!(1));
    }
    if kind.status_sub && !matches!(kind.plural, "nodes" | "namespaces") {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        if kind.plural == "pods" {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
    }
    Ok((name, obj))
}

/// A create's validation without a store lookup (no namespace or
/// existence checks): what [`crate::validate_create`] runs.
pub(crate) fn prepare_create(
    cfg: &crate::ApiServerConfig,
    st: &State,
    kind: &'static Kind,
    ns: &str,
    obj: Value,
) -> Result<Value, ApiError> {
    let ns = if kind.namespaced { ns } else { "" };
    let (name, mut obj) = fill_create(kind, ns, obj)?;
    prepare(cfg, st, kind, ns, &name, &mut obj, None)?;
    Ok(obj)
}

impl ApiServer {
    pub(crate) fn create_defaults(&self) -> Result<(), Error> {
        let mut st = self.lock();
        let fail = |what: &str, e: ApiError| Error::Defaults {
            what: what.to_string(),
            message: e.message,
        };
        for ns in PROTECTED_NAMESPACES {
            if st.get(kind("namespaces"), "", ns).is_none() {
                let obj = json!({"metadata": {"name": ns}});
                self.create(&mut st, kind("namespaces"), "", obj, false)
                    .map_err(|e| fail(ns, e))?;
            }
        }
        let (ep_ip, ep_port) = self.config.kubernetes_endpoint;
        let first = u32::from(self.config.service_cidr.network()) + 1;
        let kube_ip = std::net::Ipv4Addr::from(first).to_string();
        if st.get(kind("services"), "default", "kubernetes").is_none() {
            let obj = json!({
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": kube_ip,
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": ep_port}]}
            });
            self.create(&mut st, kind("services"), "default", obj, false)
                .map_err(|e| fail("service default/kubernetes", e))?;
        }
        if st
            .get(kind("endpointslices"), "default", "kubernetes")
            .is_none()
        {
            let obj = json!({
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ep_ip.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
                "ports": [{"name": "https", "port": ep_port, "protocol": "TCP"}]
            });
            self.create(&mut st, kind("endpointslices"), "default", obj, false)
                .map_err(|e| fail("endpointslice default/kubernetes", e))?;
        }
        let namespaces: Vec<String> = st
            .list(kind("namespaces"), None)
            .filter(|n| !has_deletion(n))
            .filter_map(|n| meta_str(n, "name").map(String::from))
            .collect();
        for ns in namespaces {
            self.namespace_defaults(&mut st, &ns)
                .map_err(|e| fail(&format!("defaults of namespace {ns}"), e))?;
        }
        if self.security.is_some() {
            for (plural, obj) in crate::rbac::default_objects() {
                let k = kind(plural);
                let name = meta_str(&obj, "name").unwrap_or_default().to_string();
                if st.get(k, "", &name).is_none() {
                    self.create(&mut st, k, "", obj, false)
                        .map_err(|e| fail(&format!("{plural} {name}"), e))?;
                }
            }
        }
        Ok(())
    }

    /// Creates an object in `ns` (ignored for cluster-scoped kinds).
    pub(crate) fn create(
        &self,
        st: &mut State,
        kind: &'static Kind,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let (name, mut obj) = fill_create(kind, ns, obj)?;
        if kind.namespaced {
            match st.get(by_plural_ok("namespaces"), "", ns) {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if has_deletion(n) => {
                    return Err(ApiError::forbidden(
                        kind.plural,
                        &name,
                        &format!("unable to create new content in namespace {ns} because it is being terminated"),
                    ))
                }
                Some(_) => {}
            }
        }
        if st.get(kind, ns, &name).is_some() {
            return Err(ApiError::already_exists(kind.plural, &name));
        }
        prepare(&self.config, st, kind, ns, &name, &mut obj, None)?;
        if kind.plural == "pods" {
            self.admit_service_account(st, ns, &name, &mut obj)?;
        }
        // As kube-apiserver's ResourceQuota admission: after validation, and
        // for dry runs too (a dry run answers what the create would).
        st.check_room(kind, ns, &name)?;
        if dry_run {
            return Ok(obj);
        }
        let created = st.put(kind, ns, &name, obj)?;
        if kind.plural == "namespaces" {
            self.namespace_defaults(st, &name)?;
        }
        Ok(created)
    }

    /// Replaces an object (main resource or status subresource).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        st: &mut State,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(kind, &mut obj)?;
        let Some(old) = st.get(kind, ns, name).cloned() else {
            return Err(ApiError::not_found(kind.plural, name));
        };
        {
            let meta = meta_mut(&mut obj);
            match meta.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )))
                }
                _ => {}
            }
            if kind.namespaced {
                namespace_matches(meta, ns)?;
            }
            if let Some(rv) = meta.get("resourceVersion").and_then(Value::as_str) {
                if !rv.is_empty() && Some(rv) != meta_str(&old, "resourceVersion") {
                    return Err(ApiError::conflict(kind.plural, name));
                }
            }
        }
        let mut new = if status {
            // Only .status changes through the status subresource.
            let mut n = old.clone();
            match obj.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            n
        } else {
            if kind.status_sub {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            obj
        };
        // Server-owned metadata is kept.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            meta.insert("name".into(), json!(name));
            if kind.namespaced {
                meta.insert("namespace".into(), json!(ns));
            }
            for key in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(key) {
                    Some(v) => {
                        meta.insert(key.into(), v.clone());
                    }
                    None => {
                        meta.remove(key);
                    }
                }
            }
            if has_deletion(&old) {
                // Finalizers may only be removed once deletion started.
                let old_f: Vec<Value> = old_meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(new_f) = meta.get("finalizers").and_then(Value::as_array) {
                    if new_f.iter().any(|f| !old_f.contains(f)) {
                        return Err(ApiError::invalid(
                            kind.kind,
                            kind.plural,
                            name,
                            vec![crate::status::Cause::forbidden(
                                "metadata.finalizers",
                                "no new finalizers can be added if the object is being deleted",
                            )],
                        ));
                    }
                }
            }
        }
        if kind.has_spec && old.get("spec") != new.get("spec") {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        prepare(&self.config, st, kind, ns, name, &mut new, Some(&old))?;
        // A no-op write does not bump the resourceVersion.
        let mut cmp = new.clone();
        cmp["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if cmp == old {
            return Ok(old);
        }
        if dry_run {
            return Ok(new);
        }
        if has_deletion(&new)
            && finalizers_empty(&new)
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
        {
            let stored = st.put(kind, ns, name, new)?;
            self.remove(st, kind, ns, name, false)?;
            return Ok(stored);
        }
        st.put(kind, ns, name, new)
    }

    /// DELETE of one object.
    pub(crate) fn delete(
        &self,
        st: &mut State,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let Some(old) = st.get(kind, ns, name).cloned() else {
            return Err(ApiError::not_found(kind.plural, name));
        };
        if let Some(rv) = &opts.precondition_rv {
            if Some(rv.as_str()) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(kind.plural, name));
            }
        }
        if let Some(uid) = &opts.precondition_uid {
            if Some(uid.as_str()) != meta_str(&old, "uid") {
                return Err(ApiError::conflict(kind.plural, name));
            }
        }
        if opts.dry_run {
            return Ok(old);
        }
        if kind.plural == "namespaces" {
            return self.delete_namespace(st, name, old);
        }
        let grace = if kind.plural == "pods" {
            let node = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let phase = old
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
                0
            } else {
                opts.grace
                    .or_else(|| {
                        old.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0)
            }
        } else {
            0
        };
        if grace > 0 {
            if has_deletion(&old) {
                return Ok(old);
            }
            let mut new = old;
            new["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            return st.put(kind, ns, name, new);
        }
        if !finalizers_empty(&old) {
            let already = has_deletion(&old)
                && old
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    == Some(0);
            if already {
                return Ok(old);
            }
            let mut new = old;
            if !has_deletion(&new) {
                new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            }
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return st.put(kind, ns, name, new);
        }
        self.remove(st, kind, ns, name, opts.orphan)
            .map(|o| o.unwrap_or_default())
    }

    fn delete_namespace(&self, st: &mut State, name: &str, old: Value) -> Result<Value, ApiError> {
        let nsk = kind("namespaces");
        if PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                "namespaces",
                name,
                "this namespace may not be deleted",
            ));
        }
        let mut cur = old;
        if !has_deletion(&cur) {
            cur["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            cur["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            cur["status"] = json!({"phase": "Terminating"});
            cur = st.put(nsk, "", name, cur)?;
        }
        let custom = st.custom.storage_kinds();
        let victims: Vec<(&'static Kind, String)> = KINDS
            .iter()
            .chain(custom)
            .filter(|k| k.namespaced)
            .flat_map(|k| {
                st.list(k, Some(name))
                    .filter_map(|o| meta_str(o, "name").map(String::from))
                    .map(|n| (k, n))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (k, n) in victims {
            match self.delete(st, k, name, &n, &DeleteOpts::default()) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        self.finish_namespace(st, name)?;
        Ok(st.get(nsk, "", name).cloned().unwrap_or(cur))
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&self, st: &mut State, name: &str) -> Result<(), ApiError> {
        let nsk = kind("namespaces");
        let Some(ns) = st.get(nsk, "", name) else {
            return Ok(());
        };
        if !has_deletion(ns) || !finalizers_empty(ns) {
            return Ok(());
        }
        let custom = st.custom.storage_kinds();
        let empty = KINDS
            .iter()
            .chain(custom)
            .filter(|k| k.namespaced)
            .all(|k| st.list(k, Some(name)).next().is_none());
        if empty {
            self.remove(st, nsk, "", name, false)?;
        }
        Ok(())
    }

    /// Removes an object for good, then its dependents (unless orphaned) and,
    /// if it was the last object of a terminating namespace, the namespace.
    pub(crate) fn remove(
        &self,
        st: &mut State,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        orphan: bool,
    ) -> Result<Option<Value>, ApiError> {
        if kind.store_key == crate::crd::CRD_KEY {
            // A CRD takes its objects with it (upstream's cleanup finalizer).
            for (k, n, nm) in crate::crd::objects_of(st, name) {
                self.remove(st, k, &n, &nm, orphan)?;
            }
        }
        let Some(removed) = st.remove(kind, ns, name)? else {
            return Ok(None);
        };
        let uid = meta_str(&removed, "uid").unwrap_or_default().to_string();
        if !uid.is_empty() {
            let dependents: Vec<(&'static Kind, String, String)> = st
                .objects
                .iter()
                .filter(|(_, o)| {
                    o.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter()
                                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid.as_str()))
                        })
                })
                .filter_map(|((p, n, nm), _)| {
                    let k = by_plural(p).or_else(|| st.custom.by_store_key(p))?;
                    Some((k, n.clone(), nm.clone()))
                })
                .collect();
            for (k, n, nm) in dependents {
                if orphan {
                    if let Some(mut o) = st.get(k, &n, &nm).cloned() {
                        if let Some(refs) = o
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            refs.retain(|r| {
                                r.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                            });
                        }
                        st.put(k, &n, &nm, o)?;
                    }
                    continue;
                }
                match self.delete(st, k, &n, &nm, &DeleteOpts::default()) {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(kind = k.plural, namespace = %n, name = %nm, error = %e, "garbage collection failed")
                    }
                }
            }
        }
        if kind.namespaced {
            self.finish_namespace(st, ns)?;
        }
        Ok(Some(removed))
    }
}

fn by_plural_ok(p: &str) -> &'static Kind {
    kind(p)
}

/// A kind from the static table (callers pass literal plurals that exist).
fn kind(plural: &str) -> &'static Kind {
    match by_plural(plural) {
        Some(k) => k,
        None => &KINDS[0],
    }
}

/// A body's `metadata.namespace`, when set, must be the request's (as
/// kube-apiserver checks on create and update alike).
fn namespace_matches(meta: &serde_json::Map<String, Value>, ns: &str) -> Result<(), ApiError> {
    match meta.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({n}) does not match the namespace sent on the request ({ns})"
        ))),
        _ => Ok(()),
    }
}
