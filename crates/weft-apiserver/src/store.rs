//! The object store: JSON objects keyed by (resource, namespace, name), a
//! global resourceVersion, an in-memory event history for watches, and
//! one file per object on disk (written atomically: temp file + rename).

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
}

/// (plural, namespace or "", name)
pub type Key = (&'static str, String, String);

pub struct State {
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// Every event with rv > floor is in `history`.
    pub floor: u64,
    pub dir: PathBuf,
    pub tx: broadcast::Sender<Arc<Event>>,
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// Loads every object under `dir` (created if missing).
    pub fn load(dir: &Path) -> Result<State, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut objects = BTreeMap::new();
        let mut max_rv = 0u64;
        for kind in KINDS {
            let kdir = dir.join(kind.storage_name());
            let Ok(nss) = std::fs::read_dir(&kdir) else {
                continue;
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
                    if p.extension().and_then(|e| e.to_str()) != Some("json") {
                        continue;
                    }
                    let file_name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if file_name.starts_with('.') {
                        // A temp file left by a crash mid-write.
                        let _ = std::fs::remove_file(&p);
                        continue;
                    }
                    let data = std::fs::read(&p).map_err(|e| io_err(&p, e))?;
                    let obj: Value =
                        serde_json::from_slice(&data).map_err(|source| Error::Corrupt {
                            path: p.clone(),
                            source,
                        })?;
                    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
                    let ns = if kind.namespaced {
                        meta_str(&obj, "namespace").unwrap_or_default().to_string()
                    } else {
                        String::new()
                    };
                    if let Some(rv) = meta_str(&obj, "resourceVersion").and_then(|r| r.parse().ok())
                    {
                        max_rv = max_rv.max(rv);
                    }
                    objects.insert((kind.plural, ns, name), obj);
                }
            }
        }
        // Deletions bump the counter without leaving an object behind.
        let rv_path = dir.join(RV_FILE);
        if let Ok(s) = std::fs::read_to_string(&rv_path) {
            max_rv = max_rv.max(s.trim().parse().unwrap_or(0));
        }
        let (tx, _) = broadcast::channel(4096);
        Ok(State {
            objects,
            rv: max_rv,
            history: VecDeque::new(),
            floor: max_rv,
            dir: dir.to_path_buf(),
            tx,
        })
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        let ns = if kind.namespaced { ns } else { "" };
        self.objects
            .get(&(kind.plural, ns.to_string(), name.to_string()))
    }

    /// Objects of one kind, optionally in one namespace, in key order.
    pub fn list<'a>(
        &'a self,
        kind: &'static Kind,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (
            kind.plural,
            ns.unwrap_or_default().to_string(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((p, n, _), _)| *p == kind.plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
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
            .join(format!("{name}.json"))
    }

    fn write_file(&self, kind: &Kind, ns: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
        let path = self.path_for(kind, ns, name);
        let fail = |e: &dyn std::fmt::Display| {
            tracing::error!(path = %path.display(), error = %e, "persisting object failed");
            ApiError::internal(format!("persisting {}: {e}", path.display()))
        };
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| fail(&e))?;
        let tmp = parent.join(format!(".{name}.json.tmp"));
        let data = serde_json::to_vec(obj).map_err(|e| fail(&e))?;
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
    ) {
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            etype,
            object: Arc::new(object),
            old: old.map(Arc::new),
        });
        if self.history.len() >= HISTORY_LEN {
            if let Some(e) = self.history.pop_front() {
                self.floor = e.rv;
            }
        }
        self.history.push_back(ev.clone());
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
        self.write_file(kind, ns, name, &obj)?;
        self.rv = next;
        let old = self
            .objects
            .insert((kind.plural, ns.to_string(), name.to_string()), obj.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.push_event(kind, etype, obj.clone(), old);
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
        let key = (kind.plural, ns.to_string(), name.to_string());
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
        self.rv += 1;
        let rv_path = self.dir.join(RV_FILE);
        let tmp = self.dir.join(format!(".{RV_FILE}.tmp"));
        if let Err(e) =
            std::fs::write(&tmp, self.rv.to_string()).and_then(|()| std::fs::rename(&tmp, &rv_path))
        {
            tracing::warn!(path = %rv_path.display(), error = %e, "persisting the resourceVersion counter failed");
        }
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.push_event(kind, EventType::Deleted, obj.clone(), None);
        Ok(Some(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_plural;
    use serde_json::json;

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
