//! The object store: JSON objects keyed by (resource, namespace, name), a
//! global resourceVersion, an in-memory event history for watches (bounded
//! by count and by bytes), and one file per object on disk (written
//! atomically: temp file + rename).
//!
//! On disk: `<state>/<kind storage name>/<namespace or _cluster>/<file>.json`.
//! The file is `<name>.json` while that fits comfortably in a file name; a
//! longer name (a DNS-1123 subdomain may have 253 characters, and most
//! filesystems allow 255 bytes per file name) is stored as
//! `<first 160 characters>~<sha256 prefix>.json`: `~` never occurs in a valid
//! name, so the two forms cannot collide. Loading reads the name from the
//! object itself, so either form (and any older file) loads.
//!
//! Object counts per kind per namespace and per kind are kept next to the
//! map, so the caps of [`ObjectCaps`] cost a lookup per create, not a scan.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::kinds::{Kind, KINDS};
use crate::status::ApiError;
use crate::Error;

/// Events kept for watches that resume from a resourceVersion.
pub const HISTORY_LEN: usize = 10_000;
/// Bytes (serialized objects, old and new) the history may hold.
pub const HISTORY_BYTES: usize = 64 << 20;
/// Largest stored object, serialized: etcd's default request limit
/// (`--max-request-bytes` 1.5 MiB), which a kube-apiserver object must fit.
pub const MAX_OBJECT_BYTES: usize = 1536 << 10;
/// Objects of one kind one namespace may hold (see `Limits`).
pub const MAX_OBJECTS_PER_NAMESPACE: usize = 10_000;
/// Objects of one kind the whole cluster may hold (see `Limits`).
pub const MAX_OBJECTS_PER_KIND: usize = 50_000;
/// Longest object name stored as `<name>.json` (the rest are hashed).
const PLAIN_NAME_MAX: usize = 200;
/// Characters of a long name kept in front of its hash.
const LONG_NAME_PREFIX: usize = 160;
/// Holds the resourceVersion counter as of the last deletion.
const RV_FILE: &str = "resource-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as seen by watchers.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: &'static Kind,
    pub etype: EventType,
    pub object: Arc<Value>,
    /// The object before a modification (to compute selector transitions).
    pub old: Option<Arc<Value>>,
    /// Serialized size of `object` and `old`, what the history accounts.
    pub bytes: usize,
}

/// (kind's `store_key`, namespace or "", name)
pub type Key = (&'static str, String, String);

/// How many objects of one kind the store takes (creates beyond → 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectCaps {
    /// In one namespace (namespaced kinds only).
    pub per_namespace: usize,
    /// In the whole cluster.
    pub per_kind: usize,
}

impl Default for ObjectCaps {
    fn default() -> ObjectCaps {
        ObjectCaps {
            per_namespace: MAX_OBJECTS_PER_NAMESPACE,
            per_kind: MAX_OBJECTS_PER_KIND,
        }
    }
}

/// Objects held, per (plural, namespace) and per plural.
#[derive(Debug, Default)]
struct Counts {
    per_namespace: BTreeMap<(&'static str, String), usize>,
    per_kind: BTreeMap<&'static str, usize>,
}

impl Counts {
    fn of(objects: &BTreeMap<Key, Value>) -> Counts {
        let mut c = Counts::default();
        for (key, ns, _) in objects.keys() {
            c.add(key, ns);
        }
        c
    }

    fn add(&mut self, plural: &'static str, ns: &str) {
        *self.per_kind.entry(plural).or_default() += 1;
        *self
            .per_namespace
            .entry((plural, ns.to_string()))
            .or_default() += 1;
    }

    fn sub(&mut self, plural: &'static str, ns: &str) {
        if let Some(n) = self.per_kind.get_mut(plural) {
            *n = n.saturating_sub(1);
        }
        let key = (plural, ns.to_string());
        if let Some(n) = self.per_namespace.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Deleted namespaces leave no entries behind.
                self.per_namespace.remove(&key);
            }
        }
    }
}

pub struct State {
    /// Written only through `put` and `remove` (they keep `counts`).
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// Every event with rv > floor is in `history`.
    pub floor: u64,
    pub dir: PathBuf,
    pub tx: broadcast::Sender<Arc<Event>>,
    /// Sum of `bytes` over `history`.
    pub history_bytes: usize,
    /// Bound of `history_bytes` (oldest events are dropped beyond it).
    pub history_max_bytes: usize,
    /// Bound of `history.len()`.
    pub history_max_len: usize,
    /// Largest serialized object `put` accepts.
    pub max_object_bytes: usize,
    /// Objects of one kind a create may add up to.
    pub caps: ObjectCaps,
    /// Bumped by every change to an RBAC object (the RBAC index cache key).
    pub rbac_generation: u64,
    /// The custom resources the stored CRDs define (kept by `put`/`remove`).
    pub custom: crate::crd::Custom,
    counts: Counts,
}

/// Bytes of `v` as compact JSON, without building the string.
pub fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The file name (without directory) an object named `name` is stored in.
pub fn file_name(name: &str) -> String {
    if name.len() <= PLAIN_NAME_MAX && !name.contains(['/', '~']) && !name.starts_with('.') {
        return format!("{name}.json");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let prefix: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(LONG_NAME_PREFIX)
        .collect();
    let prefix = prefix.trim_start_matches('.');
    format!("{prefix}~{hex}.json")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Reads the objects of one kind under `dir` into `objects`.
fn load_kind(
    dir: &Path,
    kind: &'static Kind,
    objects: &mut BTreeMap<Key, Value>,
    max_rv: &mut u64,
) -> Result<(), Error> {
    let kdir = dir.join(kind.storage_name());
    let Ok(nss) = std::fs::read_dir(&kdir) else {
        return Ok(());
    };
    for ns_entry in nss {
        let ns_entry = ns_entry.map_err(|e| io_err(&kdir, e))?;
        let ns_path = ns_entry.path();
        if !ns_path.is_dir() {
            continue;
        }
        let files = std::fs::read_dir(&ns_path).map_err(|e| io_err(&ns_path, e))?;
        for f in files {
            let f = f.map_err(|e| io_err(&ns_path, e))?;
            let p = f.path();
            let file_name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if file_name.starts_with('.') && file_name.ends_with(".tmp") {
                // A temp file left by a crash mid-write.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let data = std::fs::read(&p).map_err(|e| io_err(&p, e))?;
            let obj: Value = serde_json::from_slice(&data).map_err(|source| Error::Corrupt {
                path: p.clone(),
                source,
            })?;
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            let ns = if kind.namespaced {
                meta_str(&obj, "namespace").unwrap_or_default().to_string()
            } else {
                String::new()
            };
            if let Some(rv) = meta_str(&obj, "resourceVersion").and_then(|r| r.parse().ok()) {
                *max_rv = (*max_rv).max(rv);
            }
            objects.insert((kind.store_key, ns, name), obj);
        }
    }
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// Loads every object under `dir` (created if missing): the static
    /// kinds, then the custom resources of the CRDs found among them.
    pub fn load(dir: &Path) -> Result<State, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut objects = BTreeMap::new();
        let mut max_rv = 0u64;
        for kind in KINDS {
            load_kind(dir, kind, &mut objects, &mut max_rv)?;
        }
        let mut custom = crate::crd::Custom::default();
        for crd in objects
            .iter()
            .filter(|((key, _, _), _)| *key == crate::crd::CRD_KEY)
            .map(|(_, v)| v)
        {
            custom.register(crd);
        }
        for kind in custom.storage_kinds() {
            load_kind(dir, kind, &mut objects, &mut max_rv)?;
        }
        // Deletions bump the counter without leaving an object behind.
        let rv_path = dir.join(RV_FILE);
        if let Ok(s) = std::fs::read_to_string(&rv_path) {
            max_rv = max_rv.max(s.trim().parse().unwrap_or(0));
        }
        let mut st = State::new(dir, objects, max_rv);
        st.custom = custom;
        Ok(st)
    }

    fn new(dir: &Path, objects: BTreeMap<Key, Value>, rv: u64) -> State {
        let (tx, _) = broadcast::channel(4096);
        State {
            counts: Counts::of(&objects),
            caps: ObjectCaps::default(),
            rbac_generation: 0,
            custom: crate::crd::Custom::default(),
            objects,
            rv,
            history: VecDeque::new(),
            floor: rv,
            dir: dir.to_path_buf(),
            tx,
            history_bytes: 0,
            history_max_bytes: HISTORY_BYTES,
            history_max_len: HISTORY_LEN,
            max_object_bytes: MAX_OBJECT_BYTES,
        }
    }

    /// A store holding nothing, for validating without a server (it must
    /// not be written to: it has no directory).
    pub fn empty() -> State {
        State::new(Path::new(""), BTreeMap::new(), 0)
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        let ns = if kind.namespaced { ns } else { "" };
        self.objects
            .get(&(kind.store_key, ns.to_string(), name.to_string()))
    }

    /// Objects of one kind, optionally in one namespace, in key order.
    pub fn list<'a>(
        &'a self,
        kind: &'static Kind,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (
            kind.store_key,
            ns.unwrap_or_default().to_string(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((p, n, _), _)| *p == kind.store_key && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// Objects of `kind` held in `ns` (`None`: in the whole cluster).
    pub fn count(&self, kind: &Kind, ns: Option<&str>) -> usize {
        match ns {
            Some(ns) => {
                let ns = if kind.namespaced { ns } else { "" };
                self.counts
                    .per_namespace
                    .get(&(kind.store_key, ns.to_string()))
                    .copied()
                    .unwrap_or(0)
            }
            None => self
                .counts
                .per_kind
                .get(kind.store_key)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Refuses a create of `kind` `name` in `ns` that would take the store
    /// beyond its caps: 403 Forbidden with the message kube-apiserver's
    /// ResourceQuota admission gives (`<resource> "<name>" is forbidden:
    /// exceeded quota: <quota>, requested: <key>=1, used: <key>=<n>,
    /// limited: <key>=<n>`), the quota being the embedded cluster's own.
    pub fn check_room(&self, kind: &Kind, ns: &str, name: &str) -> Result<(), ApiError> {
        // Object-count quotas name the resource as `count/<resource>[.<group>]`.
        let key = format!("count/{}", kind.storage_name());
        let refuse = |quota: &str, used: usize, limit: usize, scope: &str| {
            ApiError::forbidden(
                kind.plural,
                name,
                &format!(
                    "exceeded quota: {quota}, requested: {key}=1, used: {key}={used}, limited: {key}={limit} (the embedded cluster holds at most {limit} {} {scope})",
                    kind.plural
                ),
            )
        };
        if kind.namespaced {
            let used = self.count(kind, Some(ns));
            if used >= self.caps.per_namespace {
                return Err(refuse(
                    "weft-objects-per-namespace",
                    used,
                    self.caps.per_namespace,
                    "per namespace",
                ));
            }
        }
        let used = self.count(kind, None);
        if used >= self.caps.per_kind {
            return Err(refuse(
                "weft-objects-per-cluster",
                used,
                self.caps.per_kind,
                "in the cluster",
            ));
        }
        Ok(())
    }

    fn path_for(&self, kind: &Kind, ns: &str, name: &str) -> PathBuf {
        let nsdir = if kind.namespaced && !ns.is_empty() {
            ns
        } else {
            "_cluster"
        };
        self.dir
            .join(kind.storage_name())
            .join(nsdir)
            .join(file_name(name))
    }

    /// Writes the serialized object atomically. The temp file's name does
    /// not grow with the object's name (one writer at a time: the store lock).
    fn write_file(&self, kind: &Kind, ns: &str, name: &str, data: &[u8]) -> Result<(), ApiError> {
        let path = self.path_for(kind, ns, name);
        let fail = |e: &dyn std::fmt::Display| {
            tracing::error!(path = %path.display(), error = %e, "persisting object failed");
            ApiError::internal(format!("persisting {}: {e}", path.display()))
        };
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| fail(&e))?;
        let tmp = parent.join(".write.tmp");
        std::fs::write(&tmp, data).map_err(|e| fail(&e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(&e))?;
        Ok(())
    }

    fn push_event(
        &mut self,
        kind: &'static Kind,
        etype: EventType,
        object: Value,
        old: Option<Value>,
        object_bytes: usize,
    ) {
        let bytes = object_bytes + old.as_ref().map_or(0, encoded_len);
        if kind.group == crate::rbac::GROUP {
            self.rbac_generation += 1;
        }
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            etype,
            object: Arc::new(object),
            old: old.map(Arc::new),
            bytes,
        });
        self.history_bytes += bytes;
        self.history.push_back(ev.clone());
        // Oldest first, until both bounds hold again; a single event larger
        // than the byte bound is not kept either (a resume from before it
        // gets 410 Gone and relists).
        while self.history.len() > self.history_max_len
            || self.history_bytes > self.history_max_bytes
        {
            let Some(e) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= e.bytes;
            self.floor = e.rv;
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// Stores `obj` (create or replace) with a new resourceVersion, persists
    /// it and emits an event. Returns the stored object.
    pub fn put(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let ns = if kind.namespaced { ns } else { "" };
        let next = self.rv + 1;
        obj["metadata"]["resourceVersion"] = Value::String(next.to_string());
        let data = serde_json::to_vec(&obj).map_err(|e| {
            ApiError::internal(format!("serializing {} {ns}/{name}: {e}", kind.kind))
        })?;
        if data.len() > self.max_object_bytes {
            return Err(ApiError::too_large(format!(
                "{} \"{name}\" is {} bytes when stored, limit is {} bytes (etcd's per-object request limit)",
                kind.kind,
                data.len(),
                self.max_object_bytes
            )));
        }
        self.write_file(kind, ns, name, &data)?;
        self.rv = next;
        let old = self.objects.insert(
            (kind.store_key, ns.to_string(), name.to_string()),
            obj.clone(),
        );
        if old.is_none() {
            self.counts.add(kind.store_key, ns);
        }
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        if kind.store_key == crate::crd::CRD_KEY {
            self.custom.register(&obj);
        }
        self.push_event(kind, etype, obj.clone(), old, data.len());
        Ok(obj)
    }

    /// Removes an object, deletes its file and emits DELETED.
    pub fn remove(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let ns = if kind.namespaced { ns } else { "" };
        let key = (kind.store_key, ns.to_string(), name.to_string());
        if !self.objects.contains_key(&key) {
            return Ok(None);
        }
        let path = self.path_for(kind, ns, name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "removing {}: {e}",
                    path.display()
                )))
            }
        }
        let Some(mut obj) = self.objects.remove(&key) else {
            return Ok(None);
        };
        self.counts.sub(kind.store_key, ns);
        if kind.store_key == crate::crd::CRD_KEY {
            self.custom.unregister(name);
        }
        self.rv += 1;
        let rv_path = self.dir.join(RV_FILE);
        let tmp = self.dir.join(format!(".{RV_FILE}.tmp"));
        if let Err(e) =
            std::fs::write(&tmp, self.rv.to_string()).and_then(|()| std::fs::rename(&tmp, &rv_path))
        {
            tracing::warn!(path = %rv_path.display(), error = %e, "persisting the resourceVersion counter failed");
        }
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let bytes = encoded_len(&obj);
        self.push_event(kind, EventType::Deleted, obj.clone(), None, bytes);
        Ok(Some(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_plural;
    use serde_json::json;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-api-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn history_is_bounded_by_bytes() {
        let dir = temp("histbytes");
        let cms = by_plural("configmaps").unwrap();
        let mut st = State::load(&dir).unwrap();
        st.history_max_bytes = 100_000;
        let big = "x".repeat(30_000);
        for i in 0..10 {
            let name = format!("c{i}");
            st.put(
                cms,
                "default",
                &name,
                json!({"metadata": {"name": name, "namespace": "default"}, "data": {"k": big}}),
            )
            .unwrap();
        }
        assert!(st.history_bytes <= 100_000, "{}", st.history_bytes);
        assert_eq!(
            st.history_bytes,
            st.history.iter().map(|e| e.bytes).sum::<usize>()
        );
        assert!(st.history.len() < 10);
        // Resumes from before the dropped events get 410 (floor moved).
        assert_eq!(st.floor, st.history.front().unwrap().rv - 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn pod(ns: &str, name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns}})
    }

    /// A store under `tag` with these caps and `pods` pods per namespace.
    fn capped(
        tag: &str,
        per_namespace: usize,
        per_kind: usize,
        pods: &[(&str, usize)],
    ) -> (State, PathBuf) {
        let dir = temp(tag);
        let mut st = State::load(&dir).unwrap();
        st.caps = ObjectCaps {
            per_namespace,
            per_kind,
        };
        let kind = by_plural("pods").unwrap();
        for (ns, n) in pods {
            for i in 0..*n {
                let name = format!("p{i}");
                st.put(kind, ns, &name, pod(ns, &name)).unwrap();
            }
        }
        (st, dir)
    }

    #[test]
    fn namespace_cap_refuses_one_more_in_that_namespace_only() {
        let (st, dir) = capped("capns", 2, 100, &[("a", 2)]);
        let pods = by_plural("pods").unwrap();
        let e = st.check_room(pods, "a", "web-1").unwrap_err();
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "pods \"web-1\" is forbidden: exceeded quota: weft-objects-per-namespace, \
             requested: count/pods=1, used: count/pods=2, limited: count/pods=2 \
             (the embedded cluster holds at most 2 pods per namespace)"
        );
        assert_eq!(e.details, Some(json!({"name": "web-1", "kind": "pods"})));
        assert!(st.check_room(pods, "b", "web-1").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cluster_cap_counts_every_namespace() {
        let (st, dir) = capped("capall", 10, 3, &[("a", 2), ("b", 1)]);
        let pods = by_plural("pods").unwrap();
        assert_eq!(st.count(pods, None), 3);
        let e = st.check_room(pods, "c", "x").unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message
                .contains("exceeded quota: weft-objects-per-cluster")
                && e.message.contains("at most 3 pods in the cluster"),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cluster_cap_applies_to_cluster_scoped_kinds() {
        let (mut st, dir) = capped("capnodes", 10, 1, &[]);
        let nodes = by_plural("nodes").unwrap();
        st.put(nodes, "", "n1", json!({"metadata": {"name": "n1"}}))
            .unwrap();
        let e = st.check_room(nodes, "", "n2").unwrap_err();
        assert!(e.message.contains("count/nodes=1"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deletes_free_room() {
        let (mut st, dir) = capped("capfree", 2, 100, &[("a", 2)]);
        let pods = by_plural("pods").unwrap();
        assert!(st.check_room(pods, "a", "x").is_err());
        st.remove(pods, "a", "p0").unwrap();
        assert_eq!(st.count(pods, Some("a")), 1);
        assert!(st.check_room(pods, "a", "x").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replacing_an_object_takes_no_room() {
        let (mut st, dir) = capped("capreplace", 2, 100, &[("a", 2)]);
        let pods = by_plural("pods").unwrap();
        st.put(pods, "a", "p0", pod("a", "p0")).unwrap();
        assert_eq!(st.count(pods, Some("a")), 2);
        assert_eq!(st.count(pods, None), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_kinds_are_unaffected_by_a_full_kind() {
        let (st, dir) = capped("capkinds", 2, 2, &[("a", 2)]);
        let cms = by_plural("configmaps").unwrap();
        assert!(st.check_room(by_plural("pods").unwrap(), "a", "x").is_err());
        assert!(st.check_room(cms, "a", "x").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_are_rebuilt_on_load() {
        let (st, dir) = capped("capload", 2, 100, &[("a", 2), ("b", 1)]);
        drop(st);
        let mut st = State::load(&dir).unwrap();
        st.caps.per_namespace = 2;
        let pods = by_plural("pods").unwrap();
        assert_eq!(st.count(pods, Some("a")), 2);
        assert_eq!(st.count(pods, None), 3);
        assert!(st.check_room(pods, "a", "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_names_get_short_distinct_file_names() {
        let a = "a".repeat(253);
        let b = format!("{}b", "a".repeat(252));
        assert!(file_name(&a).len() <= 200);
        assert_ne!(file_name(&a), file_name(&b));
        assert_eq!(file_name("web-1"), "web-1.json");
    }

    #[test]
    fn leftover_temp_files_are_removed_on_load() {
        let dir = temp("tmpfiles");
        let ns = dir.join("pods").join("default");
        std::fs::create_dir_all(&ns).unwrap();
        std::fs::write(ns.join(".write.tmp"), "{").unwrap();
        std::fs::write(ns.join(".old-style.json.tmp"), "{").unwrap();
        let st = State::load(&dir).unwrap();
        assert!(st.objects.is_empty());
        assert_eq!(std::fs::read_dir(&ns).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn persistence_round_trip() {
        let dir = std::env::temp_dir().join(format!("weft-api-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pods = by_plural("pods").unwrap();
        let nodes = by_plural("nodes").unwrap();
        {
            let mut st = State::load(&dir).unwrap();
            st.put(
                pods,
                "default",
                "a",
                json!({"metadata": {"name": "a", "namespace": "default"}}),
            )
            .unwrap();
            st.put(
                pods,
                "default",
                "b",
                json!({"metadata": {"name": "b", "namespace": "default"}}),
            )
            .unwrap();
            st.put(nodes, "", "n1", json!({"metadata": {"name": "n1"}}))
                .unwrap();
            st.remove(pods, "default", "b").unwrap();
            assert_eq!(st.rv, 4);
            assert_eq!(st.history.len(), 4);
        }
        let st = State::load(&dir).unwrap();
        assert_eq!(st.rv, 4);
        assert_eq!(st.objects.len(), 2);
        assert!(st.get(pods, "default", "a").is_some());
        assert!(st.get(pods, "default", "b").is_none());
        assert_eq!(st.list(pods, Some("default")).count(), 1);
        assert_eq!(st.list(pods, Some("other")).count(), 0);
        assert_eq!(st.list(nodes, None).count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
