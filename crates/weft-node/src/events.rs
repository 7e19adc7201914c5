//! The node runtime's Events (events.k8s.io/v1, through kube-rs's
//! `Recorder`, which folds repeats into a series), with kubelet's reasons
//! and message shapes (`pkg/kubelet/events/event.go`, the messages of
//! `kuberuntime_container.go`, `prober.go`, `volumemanager`): Created,
//! Started, Killing, Unhealthy, BackOff, FailedMount,
//! FailedCreatePodSandBox, NetworkNotReady. No Pulled: nothing is pulled.
//!
//! Recording never holds up a pod: each event is published on its own task
//! and a failure (an API without events.k8s.io answers 404) is a debug log.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// What kubelet calls itself in `reportingController`.
pub const REPORTING_CONTROLLER: &str = "kubelet";

/// The pod's reference, or one of its containers'
/// (`fieldPath: spec.containers{<name>}`, as kubelet sets it).
pub fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")),
    }
}

/// `name_namespace(uid)`: how kubelet names a pod in messages.
pub fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// One event as kubelet words it: (type, reason, action, note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl Note {
    pub fn created(container: &str) -> Note {
        Note::normal(
            "Created",
            "Create",
            format!("Created container: {container}"),
        )
    }

    pub fn started(container: &str) -> Note {
        Note::normal("Started", "Start", format!("Started container {container}"))
    }

    /// Killing, with kubelet's default message or the liveness one.
    pub fn killing(container: &str, why: Option<&str>) -> Note {
        let note = match why {
            Some(w) => w.to_string(),
            None => format!("Stopping container {container}"),
        };
        Note::normal("Killing", "Kill", note)
    }

    /// A failed probe: `probe` is "Liveness", "Readiness" or "Startup".
    pub fn unhealthy(probe: &str, output: &str) -> Note {
        Note::warning(
            "Unhealthy",
            "Probe",
            format!("{probe} probe failed: {output}"),
        )
    }

    pub fn back_off(container: &str, pod: &Pod) -> Note {
        Note::warning(
            "BackOff",
            "Start",
            format!(
                "Back-off restarting failed container {container} in pod {}",
                pod_label(pod)
            ),
        )
    }

    /// `message` is already kubelet's `MountVolume.SetUp failed …`.
    pub fn failed_mount(message: &str) -> Note {
        Note::warning("FailedMount", "Mount", message.to_string())
    }

    pub fn failed_sandbox(error: &str) -> Note {
        Note::warning(
            "FailedCreatePodSandBox",
            "CreatePodSandbox",
            format!("Failed to create pod sandbox: {error}"),
        )
    }

    pub fn network_not_ready() -> Note {
        Note::warning(
            "NetworkNotReady",
            "CreatePodSandbox",
            format!("network is not ready: {}", crate::node::NETWORK_NOT_READY),
        )
    }

    fn normal(reason: &'static str, action: &'static str, note: String) -> Note {
        Note {
            warning: false,
            reason,
            action,
            note,
        }
    }

    fn warning(reason: &'static str, action: &'static str, note: String) -> Note {
        Note {
            warning: true,
            ..Note::normal(reason, action, note)
        }
    }
}

/// Records the runtime's events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// Events reported as `kubelet` on instance `node`.
    pub fn new(client: kube::Client, node: &str) -> Events {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some(node.to_string()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes `note` about `pod` (or its `container`) in the background.
    pub fn record(&self, pod: &Pod, container: Option<&str>, note: Note) {
        let reference = reference(pod, container);
        let recorder = self.recorder.clone();
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.note),
            action: note.action.into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(
                    pod = %format!("{}/{}", reference.namespace.as_deref().unwrap_or_default(), reference.name.as_deref().unwrap_or_default()),
                    reason = %event.reason,
                    error = %e,
                    "recording an event failed"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("u-1".into());
        p
    }

    #[test]
    fn container_events_point_at_the_container_field() {
        let r = reference(&pod(), Some("app"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(reference(&pod(), None).field_path, None);
    }

    #[test]
    fn messages_have_kubelets_shapes() {
        assert_eq!(Note::created("app").note, "Created container: app");
        assert_eq!(Note::started("app").note, "Started container app");
        assert_eq!(Note::killing("app", None).note, "Stopping container app");
        let b = Note::back_off("app", &pod());
        assert!(b.warning);
        assert_eq!(b.reason, "BackOff");
        assert_eq!(
            b.note,
            "Back-off restarting failed container app in pod web-0_shop(u-1)"
        );
        assert_eq!(
            Note::unhealthy("Readiness", "HTTP probe failed with statuscode: 500").note,
            "Readiness probe failed: HTTP probe failed with statuscode: 500"
        );
        assert!(Note::network_not_ready()
            .note
            .starts_with("network is not ready: container runtime network not ready"));
        assert_eq!(
            Note::failed_sandbox("boom").note,
            "Failed to create pod sandbox: boom"
        );
    }
}
