//! Pod status from container states (pure): phase, conditions with
//! transition times, container statuses; and the restart backoff.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// First restart delay. Upstream kubelet starts at 10 s and doubles to 5 min;
/// the embedded cluster uses 1 s doubling to 30 s so broken pods recover fast
/// and tests do not wait minutes.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long before exiting restarts without delay and
/// resets its backoff (upstream resets after 2× the maximum backoff, too).
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Delay before the `failures`-th consecutive restart (1-based).
pub fn restart_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16);
    BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// Whether a container that exited with `exit_code` restarts under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not started (yet): reason such as ContainerCreating, NoCommand,
    /// CrashLoopBackOff, RunContainerError.
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

/// One container's runtime record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    pub state: RunState,
    /// The last termination, shown as `lastState` while restarting.
    pub last: Option<RunState>,
    pub ready: bool,
    pub restart_count: i32,
    pub pid: Option<u32>,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRuntime {
            name: name.to_string(),
            image: image.to_string(),
            state: RunState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            ready: false,
            restart_count: 0,
            pid: None,
        }
    }

    /// Waiting without ever having run.
    fn pending(&self) -> bool {
        matches!(self.state, RunState::Waiting { .. })
            && self.last.is_none()
            && self.restart_count == 0
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn k8s_state(s: &RunState, container_id: Option<String>) -> ContainerState {
    match s {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        RunState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id,
                exit_code: *exit_code,
                signal: *signal,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: started_at.map(time),
                finished_at: Some(time(*finished_at)),
            }),
            ..Default::default()
        },
    }
}

/// The pod phase (kubelet's `getPhase`, without init containers).
pub fn phase(restart_policy: &str, containers: &[ContainerRuntime]) -> &'static str {
    if containers.is_empty() || containers.iter().any(ContainerRuntime::pending) {
        return "Pending";
    }
    let running = containers
        .iter()
        .filter(|c| !matches!(c.state, RunState::Terminated { .. }))
        .count();
    if running > 0 {
        return "Running";
    }
    // Everything has terminated and will not be restarted (the runtime moves a
    // restarting container to Waiting/CrashLoopBackOff, counted as running).
    let failed = containers
        .iter()
        .any(|c| matches!(c.state, RunState::Terminated { exit_code, .. } if exit_code != 0));
    match (restart_policy, failed) {
        ("Always", _) => "Running",
        (_, false) => "Succeeded",
        ("OnFailure", true) => "Running",
        _ => "Failed",
    }
}

/// Inputs of a status computation besides the containers.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    pub restart_policy: &'a str,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    pub now: Timestamp,
    /// Whether the sandbox (netns + CNI) is ready; Pending until it is.
    pub sandbox_ready: bool,
    /// A sandbox error to show as the pod's message.
    pub message: Option<String>,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// The pod's status. Transition times of unchanged conditions are kept from
/// `previous` so that re-computing with a later `now` changes nothing.
pub fn pod_status(
    input: &StatusInput,
    containers: &[ContainerRuntime],
    previous: Option<&PodStatus>,
) -> PodStatus {
    let phase = if input.sandbox_ready {
        phase(input.restart_policy, containers)
    } else {
        "Pending"
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|c| {
            let cid = c.pid.map(|p| format!("weft://{p}"));
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: String::new(),
                container_id: cid.clone(),
                ready: c.ready && matches!(c.state, RunState::Running { .. }),
                started: Some(matches!(c.state, RunState::Running { .. })),
                restart_count: c.restart_count,
                state: Some(k8s_state(&c.state, cid.clone())),
                last_state: c.last.as_ref().map(|l| k8s_state(l, None)),
                ..Default::default()
            }
        })
        .collect();
    let all_ready = !containers.is_empty() && statuses.iter().all(|s| s.ready) && !terminal;
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let now = input.now;
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            input.sandbox_ready,
            None,
            previous,
            now,
        ),
        condition("Initialized", true, None, previous, now),
        condition("Ready", all_ready, Some(not_ready_reason), previous, now),
        condition(
            "ContainersReady",
            all_ready,
            Some(not_ready_reason),
            previous,
            now,
        ),
        condition("PodScheduled", true, None, previous, now),
    ];
    let pod_ip = if input.sandbox_ready {
        input.pod_ip.clone()
    } else {
        None
    };
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(input.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.clone(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: Some(time(input.start_time)),
        container_statuses: Some(statuses),
        message: input.message.clone(),
        qos_class: Some("BestEffort".to_string()),
        ..Default::default()
    }
}

/// The restart policy of a pod (default Always).
pub fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn running(name: &str, ready: bool) -> ContainerRuntime {
        ContainerRuntime {
            state: RunState::Running { started_at: ts(1) },
            ready,
            pid: Some(42),
            ..ContainerRuntime::new(name, "img")
        }
    }

    fn exited(name: &str, code: i32) -> ContainerRuntime {
        ContainerRuntime {
            state: RunState::Terminated {
                exit_code: code,
                signal: None,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message: None,
                started_at: Some(ts(1)),
                finished_at: ts(2),
            },
            ..ContainerRuntime::new(name, "img")
        }
    }

    fn input(now: i64) -> StatusInput<'static> {
        StatusInput {
            restart_policy: "Always",
            pod_ip: Some("10.244.0.5".into()),
            host_ip: "192.168.1.10".into(),
            start_time: ts(0),
            now: ts(now),
            sandbox_ready: true,
            message: None,
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_secs(1));
        assert_eq!(restart_delay(2), Duration::from_secs(2));
        assert_eq!(restart_delay(5), Duration::from_secs(16));
        assert_eq!(restart_delay(6), Duration::from_secs(30));
        assert_eq!(restart_delay(100), Duration::from_secs(30));
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn phases() {
        let new = ContainerRuntime::new("a", "img");
        assert_eq!(
            phase("Always", &[new.clone(), running("b", true)]),
            "Pending"
        );
        assert_eq!(
            phase("Always", &[running("a", false), running("b", true)]),
            "Running"
        );
        assert_eq!(
            phase("Never", &[exited("a", 0), running("b", true)]),
            "Running"
        );
        assert_eq!(
            phase("Never", &[exited("a", 0), exited("b", 0)]),
            "Succeeded"
        );
        assert_eq!(phase("Never", &[exited("a", 0), exited("b", 2)]), "Failed");
        assert_eq!(phase("OnFailure", &[exited("a", 0)]), "Succeeded");
        let mut backing_off = ContainerRuntime::new("a", "img");
        backing_off.state = RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        backing_off.restart_count = 1;
        assert_eq!(phase("Always", &[backing_off]), "Running");
        let mut no_command = ContainerRuntime::new("a", "img");
        no_command.state = RunState::Waiting {
            reason: "NoCommand".into(),
            message: Some("x".into()),
        };
        assert_eq!(phase("Always", &[no_command]), "Pending");
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn conditions_and_transition_times() {
        let s1 = pod_status(&input(10), &[running("a", false)], None);
        assert_eq!(s1.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s1, "Ready").status, "False");
        assert_eq!(
            cond(&s1, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(cond(&s1, "PodScheduled").status, "True");
        assert_eq!(cond(&s1, "Initialized").status, "True");
        assert_eq!(s1.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(s1.pod_ips.as_ref().unwrap()[0].ip, "10.244.0.5");
        assert_eq!(s1.host_ip.as_deref(), Some("192.168.1.10"));
        let cs = &s1.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("weft://42"));
        assert_eq!(cs.started, Some(true));
        assert!(!cs.ready);

        // Same state later: nothing changes (no status churn).
        let s2 = pod_status(&input(20), &[running("a", false)], Some(&s1));
        assert_eq!(s1, s2);
        // Becoming ready moves Ready's transition time only.
        let s3 = pod_status(&input(30), &[running("a", true)], Some(&s2));
        assert_eq!(cond(&s3, "Ready").status, "True");
        assert_eq!(cond(&s3, "Ready").last_transition_time, Some(Time(ts(30))));
        assert_eq!(
            cond(&s3, "PodScheduled").last_transition_time,
            Some(Time(ts(10)))
        );

        let mut i = input(40);
        i.restart_policy = "Never";
        let done = pod_status(&i, &[exited("a", 0)], Some(&s3));
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&done, "Ready").reason.as_deref(), Some("PodCompleted"));
        let term = done.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(term.exit_code, 0);
        assert_eq!(term.reason.as_deref(), Some("Completed"));

        let mut i = input(5);
        i.sandbox_ready = false;
        i.message = Some("CNI failed".into());
        let pending = pod_status(&i, &[ContainerRuntime::new("a", "img")], None);
        assert_eq!(pending.phase.as_deref(), Some("Pending"));
        assert_eq!(pending.pod_ip, None);
        assert_eq!(pending.message.as_deref(), Some("CNI failed"));
        let w = pending.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    }
}
