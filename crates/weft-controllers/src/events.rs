//! Recording Events (`events.k8s.io/v1`) for the controllers and the
//! scheduler through kube-rs's [`Recorder`], which creates an Event the first
//! time and patches its `series` when the same one happens again.
//!
//! kube-rs deduplicates by reason, action, regarding and related object, not
//! by note, and patches the series with the note it first sent: so that
//! "Scaled up replica set web-1 from 1 to 2" does not show as a repeat of
//! "…from 0 to 1", every distinct note gets a recorder (and series) of its
//! own, as upstream's core/v1 recorder keys by message. The recorders are
//! forgotten past [`MAX_RECORDERS`] (a repeat then starts a new Event).
//! Publishing never fails a sync: an Event the API refuses is logged and
//! dropped, as upstream's broadcaster drops them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tracing::debug;

/// Distinct (regarding, reason, note) recorders kept.
const MAX_RECORDERS: usize = 4096;

/// One component's Events.
pub struct Events {
    client: Client,
    reporter: Reporter,
    recorders: HashMap<String, Recorder>,
}

/// What happened, to whom.
pub struct Record<'a> {
    pub regarding: ObjectReference,
    pub related: Option<ObjectReference>,
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl Events {
    /// Events reported as `controller` (e.g. `replicaset-controller`).
    pub fn new(client: Client, controller: &str) -> Events {
        Events {
            client,
            reporter: Reporter {
                controller: controller.into(),
                instance: Some(format!("{controller}-weft")),
            },
            recorders: HashMap::new(),
        }
    }

    pub async fn publish(&mut self, r: Record<'_>) {
        let key = format!(
            "{}\0{}\0{}\0{}\0{}",
            r.regarding.uid.as_deref().unwrap_or(""),
            r.regarding.name.as_deref().unwrap_or(""),
            r.reason,
            r.action,
            r.note
        );
        if self.recorders.len() >= MAX_RECORDERS && !self.recorders.contains_key(&key) {
            self.recorders.clear();
        }
        let recorder = self
            .recorders
            .entry(key)
            .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()));
        let event = Event {
            type_: if r.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: r.reason.into(),
            note: Some(r.note),
            action: r.action.into(),
            secondary: r.related,
        };
        if let Err(e) = recorder.publish(&event, &r.regarding).await {
            debug!(reason = r.reason, object = ?r.regarding.name, error = %e, "event not recorded");
        }
    }
}

/// A reference to `obj` for an Event's `regarding` or `related`.
pub fn reference<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}
