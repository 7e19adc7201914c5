//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom
//! resources they define, served next to the static kinds.
//!
//! Behaviour follows kube-apiserver's apiextensions-apiserver: CRD
//! validation (`pkg/apis/apiextensions/validation`: `metadata.name` is
//! `<plural>.<group>`, one storage version, at least one served, structural
//! schemas, scale paths, printer columns), the status its controllers write
//! (`NamesAccepted` and `Established` true, `acceptedNames`,
//! `storedVersions`), and for custom objects the handler's order of prune,
//! default, validate ([`schema`]) and CEL rules ([`cel`]); strategic merge
//! patches are refused with 415 as upstream does for custom resources.
//! Several served versions share one storage version with conversion
//! strategy `None`: only `apiVersion` is rewritten, objects are kept at the
//! storage version and shown at the requested one, with that version's
//! defaults applied on read. Deleting a CRD removes its objects at once
//! (upstream's finalizer controller does it in the background).
//!
//! **How custom kinds get a `&'static Kind`.** The server passes kinds around
//! as `&'static Kind` (the static table of [`crate::kinds`]; events, watch
//! filters and store keys hold them). Custom kinds are interned: one leaked
//! `Kind` per distinct identity (group, version, names, scope, subresources),
//! shared by every server of the process, so re-applying or updating a CRD
//! without changing those fields leaks nothing new, and only a change of
//! identity leaks one small struct (bounded by the distinct definitions a
//! process ever sees). Which kinds a server serves, and their schemas,
//! printer columns and scale paths, are per server: [`Custom`] lives in the
//! store's state, is rebuilt from the stored CRDs on load and is kept in step
//! by the store's `put`/`remove` of CRDs. Moving `Kind` to an `Arc` instead
//! would have touched every signature of the store, registry and HTTP
//! front for no behaviour gained.

pub mod cel;
mod columns;
pub mod schema;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::status::{ApiError, Cause};
use crate::store::{meta_str, State};
use schema::Schema;

pub use columns::table;

/// The store key (and plural) of CustomResourceDefinitions.
pub const CRD_KEY: &str = "customresourcedefinitions";

/// What makes two custom kinds the same `Kind`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity {
    group: String,
    version: String,
    plural: String,
    singular: String,
    kind: String,
    namespaced: bool,
    short_names: Vec<String>,
    status_sub: bool,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The process-wide `&'static Kind` for an identity (leaked once).
fn intern(id: Identity) -> &'static Kind {
    static TABLE: OnceLock<Mutex<HashMap<Identity, &'static Kind>>> = OnceLock::new();
    let mut t = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(k) = t.get(&id) {
        return k;
    }
    let short: Vec<&'static str> = id.short_names.iter().map(|s| leak(s)).collect();
    let kind: &'static Kind = Box::leak(Box::new(Kind {
        group: leak(&id.group),
        version: leak(&id.version),
        plural: leak(&id.plural),
        singular: leak(&id.singular),
        kind: leak(&id.kind),
        namespaced: id.namespaced,
        short_names: Box::leak(short.into_boxed_slice()),
        status_sub: id.status_sub,
        has_spec: true,
        store_key: leak(&format!("{}.{}", id.plural, id.group)),
        custom: true,
    }));
    t.insert(id, kind);
    kind
}

/// `subresources.scale` of a version.
#[derive(Debug, Clone)]
pub struct Scale {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: String,
}

/// One served version of a custom resource.
#[derive(Debug)]
pub struct Version {
    pub kind: &'static Kind,
    pub storage: bool,
    pub schema: Option<Schema>,
    pub columns: Vec<columns::Column>,
    pub scale: Option<Scale>,
}

/// One custom resource (all its served versions).
#[derive(Debug)]
pub struct Resource {
    pub name: String,
    pub group: String,
    pub categories: Vec<String>,
    /// The kind of the storage version (served or not).
    pub storage: &'static Kind,
    /// Served versions, in kube's version priority order.
    pub versions: Vec<Arc<Version>>,
    /// The raw openAPIV3Schema of each served version.
    pub schemas: Vec<(String, Value)>,
}

/// The custom resources one server serves.
#[derive(Debug, Default)]
pub struct Custom {
    resources: BTreeMap<String, Arc<Resource>>,
}

/// kube's version priority: GA before beta before alpha, higher numbers
/// first; other names after, alphabetically.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..n].parse().ok()?;
        let tail = &rest[n..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (rank, num) = if let Some(t) = tail.strip_prefix("beta") {
            (1, t)
        } else if let Some(t) = tail.strip_prefix("alpha") {
            (2, t)
        } else {
            return None;
        };
        Some((rank, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.0.cmp(&y.0).then(y.1.cmp(&x.1)).then(y.2.cmp(&x.2)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

impl Custom {
    /// Serves the resource a stored (validated) CRD defines, replacing what
    /// an earlier version of it defined.
    pub fn register(&mut self, crd: &Value) {
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        if crd
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null())
        {
            return;
        }
        let group = s(crd, "/spec/group").to_string();
        let names = &crd["spec"]["names"];
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let singular = names["singular"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase());
        let namespaced = s(crd, "/spec/scope") != "Cluster";
        let mut versions = Vec::new();
        let mut schemas = Vec::new();
        let mut storage = None;
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let vname = v["name"].as_str().unwrap_or_default().to_string();
            let id = Identity {
                group: group.clone(),
                version: vname.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: strs(names.get("shortNames")),
                status_sub: v.pointer("/subresources/status").is_some(),
            };
            let k = intern(id);
            let is_storage = v["storage"].as_bool().unwrap_or(false);
            if is_storage {
                storage = Some(k);
            }
            if !v["served"].as_bool().unwrap_or(false) {
                continue;
            }
            let raw = v.pointer("/schema/openAPIV3Schema").cloned();
            let schema = raw.as_ref().map(|r| Schema::parse(r, "", &mut Vec::new()));
            if let Some(r) = raw {
                schemas.push((vname.clone(), r));
            }
            let scale = v.pointer("/subresources/scale").map(|sc| Scale {
                spec_replicas: s(sc, "/specReplicasPath").to_string(),
                status_replicas: s(sc, "/statusReplicasPath").to_string(),
                label_selector: s(sc, "/labelSelectorPath").to_string(),
            });
            versions.push(Arc::new(Version {
                kind: k,
                storage: is_storage,
                schema,
                columns: columns::Column::parse_all(v.get("additionalPrinterColumns")),
                scale,
            }));
        }
        let Some(storage) = storage else {
            self.resources.remove(&name);
            return;
        };
        versions.sort_by(|a, b| version_order(a.kind.version, b.kind.version));
        self.resources.insert(
            name.clone(),
            Arc::new(Resource {
                name,
                group,
                categories: strs(names.get("categories")),
                storage,
                versions,
                schemas,
            }),
        );
    }

    /// Stops serving the resource of CRD `name`.
    pub fn unregister(&mut self, name: &str) {
        self.resources.remove(name);
    }

    /// The resource of CRD `name`.
    pub fn resource(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    /// The storage kinds of every custom resource (what the store loads).
    pub fn storage_kinds(&self) -> Vec<&'static Kind> {
        self.resources.values().map(|r| r.storage).collect()
    }

    /// A served custom kind by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        self.resources
            .values()
            .filter(|r| r.group == group)
            .flat_map(|r| r.versions.iter())
            .find(|v| v.kind.version == version && v.kind.plural == plural)
            .map(|v| v.kind)
    }

    /// The served version a custom kind is.
    pub fn version(&self, kind: &Kind) -> Option<Arc<Version>> {
        if !kind.custom {
            return None;
        }
        self.resources
            .get(&format!("{}.{}", kind.plural, kind.group))?
            .versions
            .iter()
            .find(|v| v.kind.version == kind.version)
            .cloned()
    }

    /// The resource a custom kind belongs to.
    pub fn resource_of(&self, kind: &Kind) -> Option<&Arc<Resource>> {
        self.resources
            .get(&format!("{}.{}", kind.plural, kind.group))
    }

    /// The storage kind for a store key (`plural.group`).
    pub fn by_store_key(&self, key: &str) -> Option<&'static Kind> {
        self.resources.get(key).map(|r| r.storage)
    }

    /// Groups served by custom resources, each with its versions in
    /// priority order (the first is the preferred one).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.resources.values() {
            let vs = out.entry(r.group.clone()).or_default();
            for v in &r.versions {
                if !vs.iter().any(|x| x == v.kind.version) {
                    vs.push(v.kind.version.to_string());
                }
            }
        }
        out.into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by(|a, b| version_order(a, b));
                (g, vs)
            })
            .collect()
    }

    /// Discovery entries (`APIResource`s) of one group-version.
    pub fn discovery(&self, group: &str, version: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for r in self.resources.values().filter(|r| r.group == group) {
            let Some(v) = r.versions.iter().find(|v| v.kind.version == version) else {
                continue;
            };
            let k = v.kind;
            let mut e = json!({
                "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
                "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                "storageVersionHash": "",
            });
            if !k.short_names.is_empty() {
                e["shortNames"] = json!(k.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            out.push(e);
            if k.status_sub {
                out.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                                "kind": k.kind, "verbs": ["get", "patch", "update"]}));
            }
            if v.scale.is_some() {
                out.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
            }
        }
        out
    }

    /// The served custom kinds of one group-version for its `/openapi/v3`
    /// document, each with its version's `openAPIV3Schema` inline.
    pub fn openapi_kinds(&self, group: &str, version: &str) -> Vec<crate::openapi::DocKind> {
        let mut out = Vec::new();
        for r in self.resources.values().filter(|r| r.group == group) {
            let Some(v) = r.versions.iter().find(|v| v.kind.version == version) else {
                continue;
            };
            let schema = r
                .schemas
                .iter()
                .find(|(name, _)| name == version)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            out.push(crate::openapi::DocKind {
                kind: v.kind.kind.to_string(),
                plural: v.kind.plural.to_string(),
                namespaced: v.kind.namespaced,
                schema,
            });
        }
        out
    }

    /// The schemas of the custom resources, per group-version: `(kind,
    /// openAPIV3Schema)` for each served version (for `/openapi/v3`).
    pub fn openapi_schemas(&self) -> BTreeMap<String, Vec<(String, Value)>> {
        let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
        for r in self.resources.values() {
            for (v, sch) in &r.schemas {
                out.entry(format!("{}/{v}", r.group))
                    .or_default()
                    .push((r.storage.kind.to_string(), sch.clone()));
            }
        }
        out
    }
}

/// The object as the served version `kind` shows it: its `apiVersion`, and
/// that version's defaults applied (as upstream defaults on read).
pub fn present(st: &State, kind: &Kind, obj: &Value) -> Value {
    let mut out = obj.clone();
    view(st.custom.version(kind).as_deref(), kind, &mut out);
    out
}

/// [`present`] in place, given the version (for watch streams, which keep
/// the version rather than the store).
pub fn view(version: Option<&Version>, kind: &Kind, obj: &mut Value) {
    if !kind.custom {
        return;
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(kind.api_version()));
    }
    if let Some(sch) = version.and_then(|v| v.schema.as_ref()) {
        schema::apply_defaults(obj, sch);
    }
}

/// Validates and defaults a custom object for create (`old` None) or
/// update, and sets it to the storage version's `apiVersion`. Warnings (CEL
/// rules not checked, fields pruned) go to the response.
pub fn prepare_object(
    st: &State,
    kind: &'static Kind,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    // As upstream for custom resources: `<Kind>.<group> "<name>" is
    // invalid`, details naming the kind and group (kubectl prints
    // `The <Kind> "<name>" is invalid`).
    let invalid = |causes: Vec<Cause>| {
        let mut e = ApiError::invalid(
            &format!("{}.{}", kind.kind, kind.group),
            kind.plural,
            name,
            causes,
        );
        if let Some(d) = e.details.as_mut() {
            d["kind"] = json!(kind.kind);
            d["group"] = json!(kind.group);
        }
        e
    };
    let Some(version) = st.custom.version(kind) else {
        return Err(ApiError::not_found_path(kind.plural));
    };
    let Some(res) = st.custom.resource_of(kind) else {
        return Err(ApiError::not_found_path(kind.plural));
    };
    let causes = match &version.schema {
        Some(sch) => check_object(sch, obj, old),
        None => Vec::new(),
    };
    if !causes.is_empty() {
        return Err(invalid(causes));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(res.storage.api_version()));
    }
    Ok(())
}

/// Prunes, defaults and validates a custom object against a version's
/// schema (then its CEL rules, with `old` as `oldSelf`), in upstream's
/// order; the causes of refusal, empty when valid. Pruned fields and rules
/// not checked are recorded as warnings of the request. Pure; the fuzzing
/// entry point.
pub fn check_object(sch: &Schema, obj: &mut Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let pruned = schema::prune(obj, sch);
    for p in pruned {
        cel::warn(format!("unknown field \"{p}\""));
    }
    schema::apply_defaults(obj, sch);
    // metadata is ObjectMeta's to validate, not the schema's.
    let mut body = obj.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("metadata");
    }
    schema::validate(&body, sch, "", &mut causes);
    if causes.is_empty() {
        let mut old_body = old.cloned();
        if let Some(m) = old_body.as_mut().and_then(Value::as_object_mut) {
            m.remove("metadata");
        }
        cel::check(&body, old_body.as_ref(), sch, "", &mut causes);
    }
    causes
}

fn dns_subdomain(s: &str) -> bool {
    crate::validate::NameRule::Dns1123Subdomain
        .check(s)
        .is_empty()
}

fn dns_label(s: &str) -> bool {
    crate::validate::NameRule::Dns1123Label.check(s).is_empty()
}

/// Validates a CRD (create: `old` None) and writes its status: names
/// defaulted and accepted, `Established`, `storedVersions`.
pub fn validate_crd(obj: &mut Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    if let Err(e) = serde_path_to_error::deserialize::<_, CustomResourceDefinition>(&*obj) {
        let path = e.path().to_string();
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("{path}: {}", e.inner()),
            field: path,
        });
        return;
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let group = s(obj, "/spec/group").to_string();
    let plural = s(obj, "/spec/names/plural").to_string();
    let kind = s(obj, "/spec/names/kind").to_string();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !dns_subdomain(&group) || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            format!("{group:?}"),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else if !dns_label(&plural) {
        causes.push(Cause::invalid("spec.names.plural", format!("{plural:?}"), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    let singular = s(obj, "/spec/names/singular").to_string();
    if !singular.is_empty() && !dns_label(&singular) {
        causes.push(Cause::invalid("spec.names.singular", format!("{singular:?}"), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    for (i, sn) in strs(obj.pointer("/spec/names/shortNames"))
        .iter()
        .enumerate()
    {
        if !dns_label(sn) {
            causes.push(Cause::invalid(format!("spec.names.shortNames[{i}]"), format!("{sn:?}"), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
        }
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("{name:?}"),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = s(obj, "/spec/scope").to_string();
    if !matches!(scope.as_str(), "Namespaced" | "Cluster") {
        causes.push(Cause::unsupported(
            "spec.scope",
            &scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let versions = obj["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut storage = Vec::new();
    let mut served = 0;
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let vname = v["name"].as_str().unwrap_or_default().to_string();
        if !crate::validate::NameRule::Dns1035Label
            .check(&vname)
            .is_empty()
        {
            causes.push(Cause::invalid(format!("{at}.name"), format!("{vname:?}"), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"));
        }
        if seen.contains(&vname) {
            causes.push(Cause::duplicate(format!("{at}.name"), format!("{vname:?}")));
        }
        seen.push(vname.clone());
        if v["storage"].as_bool() == Some(true) {
            storage.push(vname.clone());
        }
        if v["served"].as_bool() == Some(true) {
            served += 1;
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(schema::required_why(
                format!("{at}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(raw) => {
                let sch = Schema::parse(raw, &format!("{at}.schema.openAPIV3Schema"), causes);
                for r in schema_rules(&sch) {
                    if let Some(e) = r.compile_error() {
                        cel::warn(format!(
                            "{at}: x-kubernetes-validations rule {:?} cannot be compiled by the embedded server and will not be checked: {e}",
                            r.rule
                        ));
                    }
                }
            }
        }
        if let Some(sc) = v.pointer("/subresources/scale") {
            let spec_path = s(sc, "/specReplicasPath");
            if !spec_path.starts_with(".spec.") {
                causes.push(Cause::invalid(
                    format!("{at}.subresources.scale.specReplicasPath"),
                    format!("{spec_path:?}"),
                    "should be a json path under .spec",
                ));
            }
            let status_path = s(sc, "/statusReplicasPath");
            if !status_path.starts_with(".status.") {
                causes.push(Cause::invalid(
                    format!("{at}.subresources.scale.statusReplicasPath"),
                    format!("{status_path:?}"),
                    "should be a json path under .status",
                ));
            }
        }
        for (j, c) in v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cat = format!("{at}.additionalPrinterColumns[{j}]");
            if c["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{cat}.name")));
            }
            let ty = c["type"].as_str().unwrap_or_default();
            if !matches!(ty, "integer" | "number" | "string" | "boolean" | "date") {
                causes.push(Cause::unsupported(
                    format!("{cat}.type"),
                    ty,
                    &["boolean", "date", "integer", "number", "string"],
                ));
            }
            if c["jsonPath"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{cat}.jsonPath")));
            }
        }
    }
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            format!("{:?}", seen),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.is_empty() && served == 0 {
        causes.push(Cause::invalid(
            "spec.versions",
            format!("{:?}", seen),
            "must have at least one version marked as served",
        ));
    }
    let mut stored: Vec<String> = old
        .map(|o| strs(o.pointer("/status/storedVersions")))
        .unwrap_or_default();
    if let Some(o) = old {
        if s(o, "/spec/group") != group {
            causes.push(Cause::invalid(
                "spec.group",
                format!("{group:?}"),
                "field is immutable",
            ));
        }
        if s(o, "/spec/scope") != scope {
            causes.push(Cause::invalid(
                "spec.scope",
                format!("{scope:?}"),
                "field is immutable",
            ));
        }
        for sv in &stored {
            if !seen.contains(sv) {
                causes.push(Cause::invalid(
                    "status.storedVersions",
                    format!("{stored:?}"),
                    &format!("must appear in spec.versions: {sv}"),
                ));
            }
        }
    }
    if !causes.is_empty() {
        return;
    }
    if let Some(sv) = storage.first() {
        if !stored.contains(sv) {
            stored.push(sv.clone());
        }
    }
    let names = &mut obj["spec"]["names"];
    if singular.is_empty() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names["listKind"].as_str().is_none_or(str::is_empty) {
        names["listKind"] = json!(format!("{kind}List"));
    }
    let accepted = names.clone();
    let now = crate::registry::now_rfc3339();
    let since = |t: &str| {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == t && c["status"] == "True"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(String::from)
            .unwrap_or_else(|| now.clone())
    };
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "storedVersions": stored,
    });
}

fn schema_rules(s: &Schema) -> Vec<&cel::Rule> {
    let mut out: Vec<&cel::Rule> = s.rules.iter().collect();
    for c in s.properties.values() {
        out.extend(schema_rules(c));
    }
    if let Some(i) = &s.items {
        out.extend(schema_rules(i));
    }
    if let schema::Additional::Schema(a) = &s.additional {
        out.extend(schema_rules(a));
    }
    out
}

/// The objects of the resource of CRD `name` (storage kind, namespace, name).
pub fn objects_of(st: &State, name: &str) -> Vec<(&'static Kind, String, String)> {
    let Some(r) = st.custom.resource(name) else {
        return Vec::new();
    };
    let kind = r.storage;
    st.list(kind, None)
        .map(|o| {
            (
                kind,
                meta_str(o, "namespace").unwrap_or_default().to_string(),
                meta_str(o, "name").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A simple JSON path (`.spec.replicas`) as a JSON pointer.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut p, seg| {
            p.push('/');
            p.push_str(&seg.replace('~', "~0").replace('/', "~1"));
            p
        })
}

/// The `autoscaling/v1` Scale of a custom object.
pub fn scale_of(sc: &Scale, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut m = json!({"name": meta["name"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
                       "creationTimestamp": meta["creationTimestamp"]});
    if let Some(ns) = meta.get("namespace") {
        m["namespace"] = ns.clone();
    }
    let spec = obj
        .pointer(&pointer(&sc.spec_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = obj
        .pointer(&pointer(&sc.status_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut st = json!({"replicas": status});
    if !sc.label_selector.is_empty() {
        if let Some(sel) = obj
            .pointer(&pointer(&sc.label_selector))
            .and_then(Value::as_str)
        {
            st["selector"] = json!(sel);
        }
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m,
           "spec": {"replicas": spec}, "status": st})
}

/// Writes a Scale's `spec.replicas` into the object at `specReplicasPath`.
pub fn apply_scale(sc: &Scale, obj: &mut Value, scale: &Value) -> Result<(), ApiError> {
    let Some(n) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return Err(ApiError::invalid(
            "Scale",
            "scale",
            meta_str(obj, "name").unwrap_or_default(),
            vec![Cause::required("spec.replicas")],
        ));
    };
    if n < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "scale",
            meta_str(obj, "name").unwrap_or_default(),
            vec![Cause::invalid(
                "spec.replicas",
                n,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut cur = obj;
    let segs: Vec<&str> = sc
        .spec_replicas
        .trim_start_matches('.')
        .split('.')
        .collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i + 1 == segs.len() {
            cur[*seg] = json!(n);
            return Ok(());
        }
        cur = &mut cur[*seg];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_ga_then_beta_then_alpha() {
        let mut v = vec!["v1alpha1", "v1beta1", "v1", "v2", "v2beta2", "foo"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["v2", "v1", "v2beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn the_same_definition_interns_to_the_same_kind() {
        let id = Identity {
            group: "example.com".into(),
            version: "v1".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            kind: "Widget".into(),
            namespaced: true,
            short_names: vec!["wd".into()],
            status_sub: true,
        };
        let a = intern(id.clone());
        let b = intern(id.clone());
        assert!(std::ptr::eq(a, b));
        let c = intern(Identity {
            status_sub: false,
            ..id
        });
        assert!(!std::ptr::eq(a, c));
        assert_eq!(a.store_key, "widgets.example.com");
    }
}
