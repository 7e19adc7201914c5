//! The runtime loop: watches this node's pods, runs one worker per pod
//! (sandbox, containers, probes, status), tears down what is deleted or
//! orphaned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, PodStatus, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use weft_linux::retry::{Backoff, Retryable};

use crate::events::{Events, Note};
use crate::plan;
use crate::probe::{self, ProbeAction, ProbeSpec, Tracker};
use crate::sandbox::{self, Launch, NodeEnv, Sandbox};
use crate::status::{self, ContainerRuntime, RunState, StatusInput};
use crate::volumes;
use crate::{CniConfig, NodeConfig};

/// How often leftover sandboxes (failed teardowns, pods gone while the
/// watch was down) are looked for.
const SWEEP: Duration = Duration::from_secs(30);

/// How often the node's CNI config dir is looked at for NetworkReady
/// (kubelet asks the runtime every 5 s).
const NETWORK_CHECK: Duration = Duration::from_secs(1);

/// How often configMap, secret, downwardAPI and projected volumes are
/// projected again while their pod runs (kubelet's sync period is 1 min;
/// the embedded cluster is for trying things).
const VOLUME_RESYNC: Duration = Duration::from_secs(5);

/// What every pod worker shares.
struct Ctx {
    client: kube::Client,
    env: NodeEnv,
    weft_bin: std::path::PathBuf,
    host_resolv: String,
    events: Events,
    /// Whether the node's network is ready (a CNI config exists).
    network: watch::Receiver<bool>,
    /// What the kubelet endpoint (exec) needs of running containers.
    registry: Arc<crate::kubelet::Registry>,
    /// The agent's endpoint for the NetworkPolicy gate.
    policy_gate: Option<String>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn ns(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Runs a blocking sandbox step on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

pub async fn run(client: kube::Client, config: NodeConfig) -> anyhow::Result<()> {
    let env = NodeEnv {
        layout: config.layout.clone(),
        node: config.node.clone(),
        cni_bin_dir: config.cni_bin_dir.clone(),
        node_netns: None,
        helper: config.weft_bin.clone(),
    };
    // The node's CNI config is written by `weft agent` (it knows the MTU the
    // datapath leaves) unless the runtime is told to write the default one;
    // sandboxes wait for it like kubelet waits for NetworkReady.
    if config.cni_config == CniConfig::WriteDefault {
        let e = env.clone();
        match blocking(move || e.ensure_conflist()).await? {
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(node = %config.node.name, error = %err, "writing the default CNI config failed")
            }
        }
    }
    let (network_tx, network) = {
        let e = env.clone();
        watch::channel(blocking(move || e.network_ready()).await?)
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        env,
        weft_bin: config.weft_bin.clone(),
        host_resolv: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        events: Events::new(client.clone(), &config.node.name),
        network: network.clone(),
        registry: Arc::new(crate::kubelet::Registry::default()),
        policy_gate: config.policy_gate.clone(),
    });
    let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
    {
        let kubelet = crate::kubelet::Kubelet {
            env: ctx.env.clone(),
            registry: ctx.registry.clone(),
        };
        let socket = config.layout.kubelet_socket(&config.node.name);
        tasks.spawn(async move {
            if let Err(e) = crate::kubelet::serve(kubelet, socket.clone()).await {
                tracing::error!(socket = %socket.display(), error = %e, "the kubelet endpoint stopped");
            }
            TaskEnd::Other
        });
    }
    {
        let api: Api<Node> = Api::all(client.clone());
        let node = config.node.clone();
        tasks.spawn(async move {
            crate::node::keep_registered(api, node, network).await;
            TaskEnd::Other
        });
        let env = ctx.env.clone();
        tasks.spawn(async move {
            watch_network(env, network_tx).await;
            TaskEnd::Other
        });
    }
    let mut restarts = WorkerRestarts::default();

    let pods: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.node.name);
    reconcile_on_start(&ctx, &pods, &selector).await;

    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(pods, watcher::Config::default().fields(&selector)),
    )
    .default_backoff()
    .boxed();
    let mut stream = stream;
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.tick().await;
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { anyhow::bail!("the pod watch of node {} ended", config.node.name) };
                match ev {
                    Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(uid(&pod));
                        }
                        if restarts.given_up(&uid(&pod)) {
                            // Its worker failed for good: only a deletion is still honoured.
                            if pod.metadata.deletion_timestamp.is_some() {
                                tasks.spawn(fail_pod(ctx.clone(), pod, None));
                            }
                        } else {
                            dispatch(&ctx, &mut tasks, &mut workers, pod);
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(w) = workers.get(&uid(&pod)) {
                            let _ = w.send(None);
                        }
                    }
                    Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(seen) = listing.take() {
                            for (u, w) in &workers {
                                if !seen.contains(u) {
                                    let _ = w.send(None);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(node = %config.node.name, error = %e, "pod watch failed; retrying"),
                }
            }
            done = tasks.join_next(), if !tasks.is_empty() => {
                match done {
                    Some(Ok(TaskEnd::Worker(u))) => {
                        workers.remove(&u);
                        restarts.forget(&u);
                    }
                    Some(Ok(TaskEnd::Panicked { uid: u, message })) => {
                        workers.remove(&u);
                        let latest = store.state().into_iter().find(|p| uid(p) == u);
                        let Some(pod) = latest else { continue };
                        let label = format!("{}/{}", ns(&pod), name(&pod));
                        match restarts.on_panic(&u) {
                            Recovery::Restart(n) => {
                                tracing::error!(pod = %label, panic = %message, restart = n, "a pod worker panicked; restarting it");
                                dispatch(&ctx, &mut tasks, &mut workers, (*pod).clone());
                            }
                            Recovery::GiveUp => {
                                tracing::error!(pod = %label, panic = %message, "a pod worker panicked again; marking the pod Failed");
                                tasks.spawn(fail_pod(ctx.clone(), (*pod).clone(), Some(message)));
                            }
                        }
                    }
                    Some(Ok(TaskEnd::Other)) | None => {}
                    Some(Err(e)) => tracing::error!(error = %e, "a node runtime task failed"),
                }
            }
            _ = sweep.tick() => {
                let live: HashSet<String> = store.state().iter().map(|p| uid(p)).chain(workers.keys().cloned()).collect();
                sweep_orphans(&ctx, &live).await;
            }
        }
    }
}

/// Keeps `tx` saying whether the node's network is ready, looking every
/// [`NETWORK_CHECK`].
async fn watch_network(env: NodeEnv, tx: watch::Sender<bool>) {
    loop {
        tokio::time::sleep(NETWORK_CHECK).await;
        let e = env.clone();
        let Ok(ready) = blocking(move || e.network_ready()).await else {
            continue;
        };
        let changed = tx.send_if_modified(|r| {
            let changed = *r != ready;
            *r = ready;
            changed
        });
        if changed {
            tracing::info!(node = %env.node.name, ready, "the node's network readiness changed");
        }
    }
}

/// How one of the runtime's tasks ended.
enum TaskEnd {
    /// A pod worker finished its pod's life here.
    Worker(String),
    /// A pod worker panicked: its pod would be stuck without a new one.
    Panicked { uid: String, message: String },
    /// Registration or a fail-safe teardown.
    Other,
}

/// How many times a pod's worker is restarted after panics before the pod
/// is marked Failed (a bug that panics on every try must not spin).
const MAX_WORKER_RESTARTS: u32 = 2;

/// What to do after a pod worker panicked.
#[derive(Debug, PartialEq, Eq)]
enum Recovery {
    /// Start a new worker (the n-th restart).
    Restart(u32),
    /// Stop trying: mark the pod Failed, tear down what it had.
    GiveUp,
}

/// Counts worker panics per pod UID (pure, so the policy is tested alone).
#[derive(Default)]
struct WorkerRestarts {
    panics: HashMap<String, u32>,
}

impl WorkerRestarts {
    fn on_panic(&mut self, uid: &str) -> Recovery {
        let n = self.panics.entry(uid.to_string()).or_insert(0);
        *n += 1;
        if *n <= MAX_WORKER_RESTARTS {
            Recovery::Restart(*n)
        } else {
            Recovery::GiveUp
        }
    }

    fn given_up(&self, uid: &str) -> bool {
        self.panics
            .get(uid)
            .is_some_and(|n| *n > MAX_WORKER_RESTARTS)
    }

    fn forget(&mut self, uid: &str) {
        self.panics.remove(uid);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The status of a pod whose worker failed for good.
fn failed_status(message: &str) -> serde_json::Value {
    json!({ "status": {
        "phase": "Failed",
        "reason": "NodeRuntimeError",
        "message": format!("the node runtime could not run this pod: {message}"),
        "conditions": [{ "type": "Ready", "status": "False", "reason": "NodeRuntimeError" }],
    }})
}

/// Fail-safe for a pod whose worker gave up: kill and tear down whatever
/// sandbox it has, mark it Failed (when `message` is given) and, if it is
/// being deleted, delete the object so it never hangs in Terminating.
async fn fail_pod(ctx: Arc<Ctx>, pod: Pod, message: Option<String>) -> TaskEnd {
    let (namespace, pod_name, pod_uid) = (ns(&pod), name(&pod), uid(&pod));
    let label = format!("{namespace}/{pod_name}");
    let env = ctx.env.clone();
    let u = pod_uid.clone();
    let torn = blocking(move || {
        for sb in Sandbox::list(&env)
            .into_iter()
            .filter(|s| s.record.uid == u)
        {
            for (_, pid) in sb.live_processes() {
                sandbox::signal_group(pid, Signal::SIGKILL);
            }
            sb.teardown()?;
        }
        Ok::<(), sandbox::SandboxError>(())
    })
    .await;
    if !matches!(torn, Ok(Ok(()))) {
        tracing::warn!(pod = %label, "tearing down a failed pod's sandbox failed; the sweep will retry");
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(message) = message {
        if let Err(e) = api
            .patch_status(
                &pod_name,
                &PatchParams::default(),
                &Patch::Merge(failed_status(&message)),
            )
            .await
        {
            tracing::warn!(pod = %label, error = %e, "marking the pod Failed failed");
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        delete_object(&api, &label, &pod_name, &pod_uid).await;
    }
    TaskEnd::Other
}

/// Deletes the pod object at once (its processes are gone), only if it is
/// still the same pod.
async fn delete_object(api: &Api<Pod>, label: &str, pod_name: &str, pod_uid: &str) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(pod_uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(pod_name, &dp).await {
        Ok(_) => tracing::info!(pod = %label, "pod deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %label, error = %e, "deleting the pod object failed"),
    }
}

fn dispatch(
    ctx: &Arc<Ctx>,
    tasks: &mut JoinSet<TaskEnd>,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    pod: Pod,
) {
    let u = uid(&pod);
    if u.is_empty() {
        return;
    }
    if let Some(w) = workers.get(&u) {
        let _ = w.send(Some(pod));
        return;
    }
    let (pod_ns, pod_name) = (ns(&pod), name(&pod));
    let (tx, rx) = watch::channel(Some(pod));
    workers.insert(u.clone(), tx);
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let registry = ctx.registry.clone();
        let ended = AssertUnwindSafe(pod_worker(ctx, rx)).catch_unwind().await;
        registry.forget(&pod_ns, &pod_name, &u);
        match ended {
            Ok(()) => TaskEnd::Worker(u),
            Err(p) => TaskEnd::Panicked {
                uid: u,
                message: panic_message(&*p),
            },
        }
    });
}

/// Before the watch starts: sandboxes of pods that no longer exist are torn
/// down, then CNI GC releases any address not held by a recorded sandbox.
async fn reconcile_on_start(ctx: &Arc<Ctx>, pods: &Api<Pod>, selector: &str) {
    let params = ListParams::default().fields(selector);
    let list = (|| pods.list(&params))
        .retry(Backoff::new(Duration::from_millis(500), Duration::from_secs(10)).builder())
        .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "listing this node's pods failed; retrying"))
        .await;
    // Unbounded retries end only with success.
    let Ok(list) = list else { return };
    let live: HashSet<String> = list.items.iter().map(uid).collect();
    sweep_orphans(ctx, &live).await;
    let env = ctx.env.clone();
    let gc = blocking(move || {
        let valid: Vec<String> = Sandbox::list(&env)
            .into_iter()
            .filter(|s| s.record.netns.is_some())
            .map(|s| s.record.container_id)
            .collect();
        sandbox::cni_gc(&env, &valid)
    })
    .await;
    match gc {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "CNI GC failed"),
        Err(e) => tracing::warn!(error = %e, "CNI GC failed"),
    }
}

/// Tears down every recorded sandbox whose pod is not in `live`.
async fn sweep_orphans(ctx: &Arc<Ctx>, live: &HashSet<String>) {
    let env = ctx.env.clone();
    let live = live.clone();
    let result = blocking(move || {
        for sb in Sandbox::list(&env) {
            if live.contains(&sb.record.uid) {
                continue;
            }
            tracing::info!(pod = %format!("{}/{}", sb.record.namespace, sb.record.name), "tearing down the sandbox of a pod that no longer exists");
            if let Err(e) = sb.teardown() {
                tracing::warn!(error = %e, "orphan sandbox teardown failed; will retry");
            }
        }
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "sweeping orphan sandboxes failed");
    }
}

/// Shared between a pod worker and its container tasks.
struct PodShared {
    sandbox: Sandbox,
    pod: Pod,
    pod_ip: String,
    /// Each volume's path on the machine and whether it is always read-only.
    volumes: BTreeMap<String, (std::path::PathBuf, bool)>,
    containers: Mutex<Vec<ContainerRuntime>>,
    changed: Notify,
    /// `Some(grace)`: stop the containers with that grace period.
    stop: watch::Receiver<Option<Duration>>,
    ctx: Arc<Ctx>,
}

impl PodShared {
    fn update(&self, index: usize, f: impl FnOnce(&mut ContainerRuntime)) {
        if let Ok(mut cs) = self.containers.lock() {
            if let Some(c) = cs.get_mut(index) {
                f(c);
            }
        }
        self.changed.notify_one();
    }

    fn snapshot(&self) -> Vec<ContainerRuntime> {
        self.containers
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

/// What ends a pod's life on this node.
enum End {
    /// The pod has a deletionTimestamp: stop, tear down, delete the object.
    Deleted(Pod),
    /// The pod is gone from the API: stop and tear down.
    Vanished(Pod),
}

/// Waits for the next pod update; `Err` when the pod's life here ends.
async fn next_update(rx: &mut watch::Receiver<Option<Pod>>, last: &Pod) -> Result<Pod, End> {
    if rx.changed().await.is_err() {
        return Err(End::Vanished(last.clone()));
    }
    let current = rx.borrow_and_update().clone();
    match current {
        None => Err(End::Vanished(last.clone())),
        Some(p) if p.metadata.deletion_timestamp.is_some() => Err(End::Deleted(p)),
        Some(p) => Ok(p),
    }
}

/// Waits out the restart backoff after `failures` failed attempts, or
/// less when the pod changes (`pod` is then the new one); `Err` when the
/// pod's life ends meanwhile.
async fn back_off(
    rx: &mut watch::Receiver<Option<Pod>>,
    pod: &mut Pod,
    failures: u32,
) -> Result<(), End> {
    tokio::select! {
        _ = tokio::time::sleep(status::restart_delay(failures)) => Ok(()),
        up = next_update(rx, pod) => {
            *pod = up?;
            Ok(())
        }
    }
}

struct StatusWriter {
    api: Api<Pod>,
    name: String,
    last: Option<PodStatus>,
}

impl StatusWriter {
    async fn write(&mut self, status: PodStatus) {
        if self.last.as_ref() == Some(&status) {
            return;
        }
        let mut patch = json!({ "status": status });
        if status.message.is_none() {
            patch["status"]["message"] = serde_json::Value::Null;
        }
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => self.last = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "patching pod status failed"),
        }
    }
}

/// The status of a pod whose sandbox is ready while its containers wait
/// (ContainerCreating, with `msg` saying for what).
fn creating_status(
    fresh: &[ContainerRuntime],
    msg: &str,
    policy: &str,
    pod_ip: &str,
    host_ip: &str,
    start_time: Timestamp,
    writer: &StatusWriter,
) -> PodStatus {
    let waiting: Vec<ContainerRuntime> = fresh
        .iter()
        .cloned()
        .map(|mut c| {
            c.state = RunState::Waiting {
                reason: "ContainerCreating".into(),
                message: Some(msg.to_string()),
            };
            c
        })
        .collect();
    let input = StatusInput {
        restart_policy: policy,
        pod_ip: Some(pod_ip.to_string()),
        host_ip: host_ip.to_string(),
        start_time,
        now: Timestamp::now(),
        sandbox_ready: true,
        message: None,
    };
    status::pod_status(&input, &waiting, writer.last.as_ref())
}

async fn pod_worker(ctx: Arc<Ctx>, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(first) = rx.borrow_and_update().clone() else {
        return;
    };
    let (namespace, pod_name, pod_uid) = (ns(&first), name(&first), uid(&first));
    let label = format!("{namespace}/{pod_name}");
    let host_net = plan::host_network(&first);
    let hostname = plan::hostname(&first, &ctx.env.node.name);
    let mut sb = Sandbox::new(
        &ctx.env, &namespace, &pod_name, &pod_uid, &hostname, host_net,
    );
    let mut writer = StatusWriter {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        name: pod_name.clone(),
        last: first.status.clone(),
    };
    let start_time = first
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let policy = status::restart_policy(&first);
    let host_ip = ctx.env.node.ip.to_string();
    let containers: Vec<Container> = first
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let fresh: Vec<ContainerRuntime> = containers
        .iter()
        .map(|c| {
            let mut rt = ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or_default());
            // A restarted runtime keeps counting where the last one stopped.
            rt.restart_count = first
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .find(|s| s.name == c.name)
                .map(|s| s.restart_count)
                .unwrap_or(0);
            rt
        })
        .collect();

    let mut pod = first.clone();
    let end = 'life: {
        if pod.metadata.deletion_timestamp.is_some() {
            break 'life End::Deleted(pod.clone());
        }
        if terminal(&pod) {
            // Finished before this runtime started: only release leftovers.
            if let Some(existing) = Sandbox::load(&ctx.env, &sb.dir) {
                sb = existing;
                release_network(&sb).await;
            }
            loop {
                match next_update(&mut rx, &pod).await {
                    Ok(p) => pod = p,
                    Err(end) => break 'life end,
                }
            }
        }

        // Like kubelet, no sandbox with its own network before NetworkReady.
        if !host_net {
            let mut network = ctx.network.clone();
            let mut told = false;
            while !*network.borrow_and_update() {
                if !told {
                    told = true;
                    tracing::info!(pod = %label, "waiting for the node's network to be ready");
                    ctx.events.record(&pod, None, Note::network_not_ready());
                    let input = StatusInput {
                        restart_policy: &policy,
                        pod_ip: None,
                        host_ip: host_ip.clone(),
                        start_time,
                        now: Timestamp::now(),
                        sandbox_ready: false,
                        message: Some(format!(
                            "network is not ready: {}",
                            crate::node::NETWORK_NOT_READY
                        )),
                    };
                    let status = status::pod_status(&input, &fresh, writer.last.as_ref());
                    writer.write(status).await;
                }
                tokio::select! {
                    r = network.changed() => if r.is_err() {
                        tokio::time::sleep(NETWORK_CHECK).await;
                    },
                    up = next_update(&mut rx, &pod) => match up {
                        Ok(p) => pod = p,
                        Err(end) => break 'life end,
                    }
                }
            }
        }

        // The sandbox, retried with backoff until it works or the pod goes.
        let mut failures = 0u32;
        loop {
            let mut attempt = sb.clone();
            let ports = plan::port_mappings(&pod);
            let made = blocking(move || attempt.create(&ports).map(|()| attempt)).await;
            let err = match made {
                Ok(Ok(made)) => {
                    sb = made;
                    break;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            failures += 1;
            tracing::warn!(pod = %label, error = %err, "creating the pod sandbox failed");
            ctx.events.record(&pod, None, Note::failed_sandbox(&err));
            let input = StatusInput {
                restart_policy: &policy,
                pod_ip: None,
                host_ip: host_ip.clone(),
                start_time,
                now: Timestamp::now(),
                sandbox_ready: false,
                message: Some(format!("creating the pod sandbox failed: {err}")),
            };
            let status = status::pod_status(&input, &fresh, writer.last.as_ref());
            writer.write(status).await;
            if let Err(end) = back_off(&mut rx, &mut pod, failures).await {
                break 'life end;
            }
        }
        let pod_ip = sb.pod_ip().unwrap_or_default();
        let resolv = plan::render_resolv_conf(&pod, &ctx.host_resolv);
        let hosts = plan::render_hosts(&pod, &pod_ip, &hostname);
        {
            let sb = sb.clone();
            match blocking(move || sb.write_files(&resolv, &hosts)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(pod = %label, error = %e, "writing pod files failed"),
                Err(e) => tracing::error!(pod = %label, error = %e, "writing pod files failed"),
            }
        }
        // The ServiceAccount volume and the pod's init (its PID, mount, UTS
        // and IPC namespaces), retried until they work or the pod goes; the
        // containers wait with the reason in their message.
        let automount = crate::serviceaccount::automount(&pod);
        let mut failures = 0u32;
        let (projection, pod_volumes) = loop {
            match prepare_pod(&ctx, &pod, &sb, automount).await {
                Ok(p) => break p,
                Err(msg) => {
                    failures += 1;
                    tracing::warn!(pod = %label, error = %msg, "preparing the pod failed");
                    if msg.starts_with("MountVolume.SetUp failed") {
                        ctx.events.record(&pod, None, Note::failed_mount(&msg));
                    }
                    let status = creating_status(
                        &fresh, &msg, &policy, &pod_ip, &host_ip, start_time, &writer,
                    );
                    writer.write(status).await;
                    if let Err(end) = back_off(&mut rx, &mut pod, failures).await {
                        break 'life end;
                    }
                }
            }
        };
        let mut refresher: JoinSet<()> = JoinSet::new();
        if let Some(p) = projection {
            refresher.spawn(refresh_token(ctx.clone(), pod.clone(), sb.clone(), p));
        }
        if volumes::has_projections(&pod) {
            refresher.spawn(resync_volumes(ctx.clone(), rx.clone(), sb.clone()));
        }
        tracing::info!(pod = %label, ip = %pod_ip, "pod sandbox ready");
        if let (Some(gate), false) = (ctx.policy_gate.clone(), host_net) {
            // The pod's address must reach the API (the agent learns it
            // there) before the agent can account for it.
            let msg = "waiting for the node's NetworkPolicy state";
            let status =
                creating_status(&fresh, msg, &policy, &pod_ip, &host_ip, start_time, &writer);
            writer.write(status).await;
            policy_gate(&gate, &pod_ip, &label).await;
        }

        let (stop_tx, stop_rx) = watch::channel(None);
        let shared = Arc::new(PodShared {
            sandbox: sb.clone(),
            pod: pod.clone(),
            pod_ip: pod_ip.clone(),
            volumes: pod_volumes,
            containers: Mutex::new(fresh.clone()),
            changed: Notify::new(),
            stop: stop_rx,
            ctx: ctx.clone(),
        });
        let mut running: JoinSet<()> = JoinSet::new();
        for (i, c) in containers.iter().enumerate() {
            running.spawn(container_loop(shared.clone(), i, c.clone(), policy.clone()));
        }
        let input = |now| StatusInput {
            restart_policy: &policy,
            pod_ip: Some(pod_ip.clone()),
            host_ip: host_ip.clone(),
            start_time,
            now,
            sandbox_ready: true,
            message: None,
        };
        let mut released = false;
        let end = loop {
            let snapshot = shared.snapshot();
            let st = status::pod_status(&input(Timestamp::now()), &snapshot, writer.last.as_ref());
            let done = matches!(st.phase.as_deref(), Some("Succeeded" | "Failed"));
            writer.write(st).await;
            if done && !released {
                // Like kubelet, a finished pod gives its address back at once.
                released = true;
                release_network(&sb).await;
            }
            tokio::select! {
                _ = shared.changed.notified() => {}
                up = next_update(&mut rx, &pod) => match up {
                    Ok(p) => pod = p,
                    Err(end) => break end,
                }
            }
        };
        let grace = match &end {
            End::Deleted(p) | End::Vanished(p) => grace_of(p),
        };
        let _ = stop_tx.send(Some(grace));
        while running.join_next().await.is_some() {}
        refresher.abort_all();
        let st = status::pod_status(
            &input(Timestamp::now()),
            &shared.snapshot(),
            writer.last.as_ref(),
        );
        if matches!(end, End::Deleted(_)) {
            writer.write(st).await;
        }
        end
    };

    // Teardown: whatever is left of the sandbox (also one a crashed runtime made).
    let sb = Sandbox::load(&ctx.env, &sb.dir).unwrap_or(sb);
    let mut tries = 0;
    loop {
        tries += 1;
        let s = sb.clone();
        let res = blocking(move || {
            for (_, pid) in s.live_processes() {
                sandbox::signal_group(pid, Signal::SIGKILL);
            }
            s.teardown()
        })
        .await;
        match res {
            Ok(Ok(())) => break,
            Ok(Err(e)) if tries < 3 => {
                tracing::warn!(pod = %label, error = %e, "sandbox teardown failed; retrying")
            }
            Err(e) if tries < 3 => {
                tracing::warn!(pod = %label, error = %e, "sandbox teardown failed; retrying")
            }
            Ok(Err(e)) => {
                tracing::error!(pod = %label, error = %e, "sandbox teardown failed; the sweep will retry");
                break;
            }
            Err(e) => {
                tracing::error!(pod = %label, error = %e, "sandbox teardown failed; the sweep will retry");
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let End::Deleted(_) = end {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        delete_object(&api, &label, &pod_name, &pod_uid).await;
    }
}

/// Each volume's path on the machine and whether it is always read-only.
type VolumeSources = BTreeMap<String, (std::path::PathBuf, bool)>;

/// Writes the pod's ServiceAccount files (when `automount`), sets up its
/// volumes and starts its init. `Ok` carries the token's projection, for
/// its refresh, and where the volumes are.
async fn prepare_pod(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    sb: &Sandbox,
    automount: bool,
) -> Result<(Option<crate::serviceaccount::Projection>, VolumeSources), String> {
    let projection = if automount {
        let p = crate::serviceaccount::fetch(&ctx.client, pod).await?;
        write_projection(pod, sb, &p).await?;
        Some(p)
    } else {
        None
    };
    let sources = set_up_volumes(ctx, pod, sb).await?;
    let s = sb.clone();
    blocking(move || s.start_init(automount))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((projection, sources))
}

/// The ConfigMaps and Secrets the pod's volumes project.
async fn fetch_objects(client: &kube::Client, pod: &Pod) -> Result<volumes::Objects, String> {
    let namespace = ns(pod);
    let (cms, secrets) = volumes::volume_refs(pod);
    let mut out = volumes::Objects::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for n in cms {
        let cm = cm_api
            .get_opt(&n)
            .await
            .map_err(|e| format!("get ConfigMap {namespace}/{n}: {e}"))?;
        out.config_maps.insert(n, cm);
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for n in secrets {
        let s = secret_api
            .get_opt(&n)
            .await
            .map_err(|e| format!("get Secret {namespace}/{n}: {e}"))?;
        out.secrets.insert(n, s);
    }
    Ok(out)
}

/// Sets up (or brings up to date) every volume of the pod.
async fn set_up_volumes(ctx: &Arc<Ctx>, pod: &Pod, sb: &Sandbox) -> Result<VolumeSources, String> {
    let objects = fetch_objects(&ctx.client, pod).await?;
    let env = ctx.env.clone();
    let pod = pod.clone();
    let dir = sb.dir.clone();
    blocking(move || volumes::set_up(&pod, &dir, &|p| env.host_path(p), &objects))
        .await
        .map_err(|e| e.to_string())?
}

/// Projects the pod's configMap, secret, downwardAPI and projected volumes
/// again every [`VOLUME_RESYNC`], from the latest pod (its labels and
/// annotations) and objects, for as long as the pod runs; the atomic writer
/// leaves unchanged ones alone. A failure keeps the last files.
async fn resync_volumes(ctx: Arc<Ctx>, rx: watch::Receiver<Option<Pod>>, sb: Sandbox) {
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep(VOLUME_RESYNC).await;
        let Some(pod) = rx.borrow().clone() else {
            return;
        };
        match set_up_volumes(&ctx, &pod, &sb).await {
            Ok(_) => last_error = None,
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(pod = %format!("{}/{}", ns(&pod), name(&pod)), error = %e, "updating the pod's volumes failed; its files stay as they were");
                    if e.starts_with("MountVolume.SetUp failed") {
                        ctx.events.record(&pod, None, Note::failed_mount(&e));
                    }
                }
                last_error = Some(e);
            }
        }
    }
}

async fn write_projection(
    pod: &Pod,
    sb: &Sandbox,
    p: &crate::serviceaccount::Projection,
) -> Result<(), String> {
    let (owner, mode) = crate::security::token_file_owner(pod);
    let dir = sb.dir.join(sandbox::SERVICE_ACCOUNT_DIR);
    let p = p.clone();
    blocking(move || {
        crate::serviceaccount::write_files(&dir, &p, owner, mode)
            .map_err(|e| format!("write the ServiceAccount files in {}: {e}", dir.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Renews the pod's token when 80% of its life has passed, for as long as
/// the pod runs; a failed renewal is retried every 10 s while the old token
/// still holds.
async fn refresh_token(
    ctx: Arc<Ctx>,
    pod: Pod,
    sb: Sandbox,
    current: crate::serviceaccount::Projection,
) {
    let label = format!("{}/{}", ns(&pod), name(&pod));
    let mut wait = crate::serviceaccount::refresh_in(&current, Timestamp::now());
    loop {
        tokio::time::sleep(wait).await;
        let renewed = match crate::serviceaccount::fetch(&ctx.client, &pod).await {
            Ok(p) => write_projection(&pod, &sb, &p).await.map(|()| p),
            Err(e) => Err(e),
        };
        wait = match renewed {
            Ok(p) => {
                tracing::debug!(pod = %label, "ServiceAccount token renewed");
                crate::serviceaccount::refresh_in(&p, Timestamp::now())
            }
            Err(e) => {
                tracing::warn!(pod = %label, error = %e, "renewing the ServiceAccount token failed; retrying");
                Duration::from_secs(10)
            }
        };
    }
}

/// CNI DEL and namespace removal for a finished pod; logs stay.
async fn release_network(sb: &Sandbox) {
    if sb.record.netns.is_none() {
        return;
    }
    let mut s = sb.clone();
    let res = blocking(move || {
        s.kill_all();
        s.release_network()
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing a finished pod's network failed"),
        Err(e) => tracing::warn!(error = %e, "releasing a finished pod's network failed"),
    }
}

/// A container's process: started by us, or adopted from an earlier runtime.
enum Proc {
    Child(tokio::process::Child),
    Adopted { pid: u32, started: u64 },
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Child(c) => c.id().unwrap_or(0),
            Proc::Adopted { pid, .. } => *pid,
        }
    }

    /// Waits for the exit: (exit code, signal, reason, message).
    async fn wait(&mut self) -> (i32, Option<i32>, String, Option<String>) {
        match self {
            Proc::Child(c) => match c.wait().await {
                Ok(st) => match (st.code(), st.signal()) {
                    (Some(0), _) => (0, None, "Completed".into(), None),
                    (Some(code), _) => (code, None, "Error".into(), None),
                    (None, Some(sig)) => (128 + sig, Some(sig), "Error".into(), None),
                    (None, None) => (255, None, "Error".into(), None),
                },
                Err(e) => (
                    255,
                    None,
                    "Error".into(),
                    Some(format!("waiting for the process failed: {e}")),
                ),
            },
            Proc::Adopted { pid, started } => {
                while sandbox::alive(*pid, *started) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (
                    137,
                    None,
                    "ContainerStatusUnknown".into(),
                    Some("the process was adopted after a runtime restart; its exit status is unknown".into()),
                )
            }
        }
    }
}

async fn fetch_refs(
    client: &kube::Client,
    namespace: &str,
    container: &Container,
) -> Result<plan::RefData, String> {
    let mut out = plan::RefData::new();
    for (kind, ref_name) in plan::env_refs(container) {
        let data: Option<BTreeMap<String, String>> = if kind == "ConfigMap" {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            api.get_opt(&ref_name)
                .await
                .map_err(|e| format!("get ConfigMap {namespace}/{ref_name}: {e}"))?
                .map(|cm| cm.data.unwrap_or_default())
        } else {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            api.get_opt(&ref_name)
                .await
                .map_err(|e| format!("get Secret {namespace}/{ref_name}: {e}"))?
                .map(|s| {
                    let mut d: BTreeMap<String, String> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    d.extend(s.string_data.unwrap_or_default());
                    d
                })
        };
        if let Some(d) = data {
            out.insert((kind, ref_name), d);
        }
    }
    Ok(out)
}

/// Terminates a process group: SIGTERM, up to `grace`, then SIGKILL.
async fn terminate(proc: &mut Proc, grace: Duration) -> (i32, Option<i32>, String, Option<String>) {
    let pid = proc.pid();
    sandbox::signal_group(pid, Signal::SIGTERM);
    match tokio::time::timeout(grace, proc.wait()).await {
        Ok(r) => {
            // The leader is reaped: only its group's members, if any remain.
            sandbox::signal_stragglers(pid, Signal::SIGKILL);
            r
        }
        Err(_) => {
            sandbox::signal_group(pid, Signal::SIGKILL);
            proc.wait().await
        }
    }
}

/// One container: start (or adopt), probe, wait, restart per policy with
/// backoff, until the pod stops.
async fn container_loop(
    shared: Arc<PodShared>,
    index: usize,
    container: Container,
    policy: String,
) {
    let mut stop = shared.stop.clone();
    let sb = &shared.sandbox;
    let pod = &shared.pod;
    let cname = container.name.clone();
    let readiness = container
        .readiness_probe
        .as_ref()
        .map(|p| probe::parse_probe(p, &container, "readinessProbe"));
    let liveness = container
        .liveness_probe
        .as_ref()
        .map(|p| probe::parse_probe(p, &container, "livenessProbe"));
    for bad in [&readiness, &liveness].into_iter().flatten() {
        if let Err(e) = bad {
            tracing::warn!(pod = %sb.record.name, container = %cname, error = %e, "probe ignored");
        }
    }
    let readiness = readiness.and_then(Result::ok);
    let liveness = liveness.and_then(Result::ok);
    let mut failures = 0u32;
    let mut adopt = sb
        .recorded_pid(&cname)
        .filter(|(pid, started)| sandbox::alive(*pid, *started));
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let hostname = sb.record.hostname.clone();
        // Environment and command, from the API's ConfigMaps/Secrets.
        let identity = crate::security::identity(pod, &container);
        let launch = match fetch_refs(&shared.ctx.client, &sb.record.namespace, &container)
            .await
            .and_then(|refs| identity.clone().map(|id| (refs, id)))
            .and_then(|(refs, identity)| {
                plan::build_env(
                    pod,
                    &container,
                    &shared.pod_ip,
                    &shared.ctx.env.node.ip.to_string(),
                    &hostname,
                    &shared.ctx.weft_bin,
                    &refs,
                )
                .map(|env| (env, identity))
            }) {
            Ok((env, identity)) => {
                match plan::resolve_command(&container, &shared.ctx.weft_bin, &env) {
                    Ok(argv) => Launch {
                        name: cname.clone(),
                        argv,
                        env,
                        working_dir: container.working_dir.clone(),
                        identity,
                    },
                    Err(msg) => {
                        shared.update(index, |c| {
                            c.state = RunState::Waiting {
                                reason: "NoCommand".into(),
                                message: Some(msg),
                            }
                        });
                        stopped(&mut stop).await;
                        return;
                    }
                }
            }
            Err(msg) => {
                failures += 1;
                shared.update(index, |c| {
                    c.state = RunState::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(msg),
                    }
                });
                tokio::select! {
                    _ = tokio::time::sleep(status::restart_delay(failures)) => continue,
                    _ = stopped(&mut stop) => return,
                }
            }
        };
        // The container's volume mounts, recorded for `pod-init run`.
        let mounts = volumes::container_mounts(&container, &shared.volumes, &launch.env)
            .and_then(|m| volumes::write_mounts(&sb.dir, &cname, &m));
        if let Err(msg) = mounts {
            failures += 1;
            shared.update(index, |c| {
                c.state = RunState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(msg),
                }
            });
            tokio::select! {
                _ = tokio::time::sleep(status::restart_delay(failures)) => continue,
                _ = stopped(&mut stop) => return,
            }
        }
        shared.ctx.registry.set_launch(sb, &launch);
        let mut proc = match adopt.take() {
            Some((pid, started)) => {
                tracing::info!(pod = %sb.record.name, container = %cname, pid, "adopted a running container");
                Proc::Adopted { pid, started }
            }
            None => {
                let spawned = sb
                    .container_command(&launch, plan::ContainerIo::of(&container))
                    .map_err(|e| e.to_string())
                    .and_then(|cmd| {
                        tokio::process::Command::from(cmd)
                            .spawn()
                            .map_err(|e| format!("start {:?}: {e}", launch.argv[0]))
                    });
                match spawned {
                    Ok(child) => {
                        shared
                            .ctx
                            .events
                            .record(pod, Some(&cname), Note::created(&cname));
                        shared
                            .ctx
                            .events
                            .record(pod, Some(&cname), Note::started(&cname));
                        let p = Proc::Child(child);
                        if let Err(e) = sb.record_pid(&cname, p.pid()) {
                            tracing::warn!(pod = %sb.record.name, container = %cname, error = %e, "recording the pid failed");
                        }
                        p
                    }
                    Err(msg) => {
                        failures += 1;
                        tracing::warn!(pod = %sb.record.name, container = %cname, error = %msg, "starting the container failed");
                        shared.update(index, |c| {
                            c.state = RunState::Waiting {
                                reason: "RunContainerError".into(),
                                message: Some(msg),
                            };
                        });
                        tokio::select! {
                            _ = tokio::time::sleep(status::restart_delay(failures)) => continue,
                            _ = stopped(&mut stop) => return,
                        }
                    }
                }
            }
        };
        let pid = proc.pid();
        let started_at = Timestamp::now();
        let started = Instant::now();
        shared.update(index, |c| {
            c.state = RunState::Running { started_at };
            c.pid = Some(pid);
            c.ready = readiness.is_none();
        });
        let mut probes: JoinSet<()> = JoinSet::new();
        let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<String>(1);
        if let Some(spec) = readiness.clone() {
            let shared = shared.clone();
            let launch = launch.clone();
            probes.spawn(async move {
                let mut t = Tracker::new(&spec, false);
                let events = shared.ctx.events.clone();
                let (p, c) = (shared.pod.clone(), launch.name.clone());
                run_probe(&shared, &spec, &launch, |result| {
                    if let Err(out) = &result {
                        events.record(&p, Some(&c), Note::unhealthy("Readiness", out));
                    }
                    if let Some(v) = t.observe(result.is_ok()) {
                        shared.update(index, |c| c.ready = v);
                    }
                    true
                })
                .await;
            });
        }
        if let Some(spec) = liveness.clone() {
            let shared = shared.clone();
            let launch = launch.clone();
            let kill_tx = kill_tx.clone();
            probes.spawn(async move {
                let mut t = Tracker::new(&spec, true);
                let events = shared.ctx.events.clone();
                let (p, c) = (shared.pod.clone(), launch.name.clone());
                run_probe(&shared, &spec, &launch, |result| {
                    if let Err(out) = &result {
                        events.record(&p, Some(&c), Note::unhealthy("Liveness", out));
                    }
                    if t.observe(result.is_ok()) == Some(false) {
                        let _ = kill_tx.try_send(format!(
                            "Container {c} failed liveness probe, will be restarted"
                        ));
                        return false;
                    }
                    true
                })
                .await;
            });
        }
        drop(kill_tx);
        let outcome = tokio::select! {
            r = proc.wait() => Some((r, None)),
            Some(msg) = kill_rx.recv() => {
                shared.ctx.events.record(pod, Some(&cname), Note::killing(&cname, Some(&msg)));
                let grace = Duration::from_secs(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64);
                Some((terminate(&mut proc, grace).await, Some(msg)))
            }
            _ = stopped(&mut stop) => None,
        };
        probes.abort_all();
        let Some(((code, signal, reason, message), why)) = outcome else {
            shared
                .ctx
                .events
                .record(pod, Some(&cname), Note::killing(&cname, None));
            let grace = stop.borrow().unwrap_or_default();
            let (code, signal, reason, message) = terminate(&mut proc, grace).await;
            let _ = std::fs::remove_file(sb.pid_file(&cname));
            shared.update(index, |c| {
                c.ready = false;
                c.state = RunState::Terminated {
                    exit_code: code,
                    signal,
                    reason,
                    message,
                    started_at: Some(started_at),
                    finished_at: Timestamp::now(),
                };
            });
            return;
        };
        // Whatever the main process left behind in its group goes with it
        // (the main process is reaped: never a group that is not ours).
        sandbox::signal_stragglers(pid, Signal::SIGKILL);
        let _ = std::fs::remove_file(sb.pid_file(&cname));
        let terminated = RunState::Terminated {
            exit_code: code,
            signal,
            reason,
            message: why.or(message),
            started_at: Some(started_at),
            finished_at: Timestamp::now(),
        };
        tracing::info!(pod = %sb.record.name, container = %cname, exit_code = code, "container exited");
        if !status::should_restart(&policy, code) {
            shared.update(index, |c| {
                c.ready = false;
                c.state = terminated;
            });
            stopped(&mut stop).await;
            return;
        }
        if started.elapsed() >= status::BACKOFF_RESET {
            failures = 0;
        }
        failures += 1;
        let delay = status::restart_delay(failures);
        shared
            .ctx
            .events
            .record(pod, Some(&cname), Note::back_off(&cname, pod));
        shared.update(index, |c| {
            c.ready = false;
            c.last = Some(terminated.clone());
            c.state = RunState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container={cname}",
                    delay.as_secs()
                )),
            };
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
        shared.update(index, |c| c.restart_count += 1);
    }
}

/// Runs a probe every period after the initial delay; `observe` gets each
/// result and returns false to stop probing.
async fn run_probe(
    shared: &PodShared,
    spec: &ProbeSpec,
    launch: &Launch,
    mut observe: impl FnMut(Result<(), String>) -> bool,
) {
    tokio::time::sleep(spec.initial_delay).await;
    let node_netns = shared
        .sandbox
        .env
        .node_netns
        .as_ref()
        .and_then(|p| weft_linux::Netns::open(p).ok())
        .map(Arc::new);
    loop {
        let result = match &spec.action {
            ProbeAction::Exec { command } => {
                exec_probe(&shared.sandbox, launch, command, spec.timeout).await
            }
            action => {
                probe::check_net(action, &shared.pod_ip, spec.timeout, node_netns.clone()).await
            }
        };
        if !observe(result) {
            return;
        }
        tokio::time::sleep(spec.period).await;
    }
}

/// The longest probe output kept for an Unhealthy event's message.
const PROBE_OUTPUT: usize = 512;

/// Runs an exec probe inside the pod's namespaces: success is exit 0 within
/// the timeout; `Err` is the command's output (kubelet's probe message) or
/// why it did not run.
async fn exec_probe(
    sb: &Sandbox,
    launch: &Launch,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let probe = Launch {
        name: launch.name.clone(),
        argv: command.to_vec(),
        env: launch.env.clone(),
        working_dir: launch.working_dir.clone(),
        identity: launch.identity.clone(),
    };
    let mut cmd = sb.command(&probe).map_err(|e| e.to_string())?;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start {:?}: {e}", command.first()))?;
    let pid = child.id().unwrap_or(0);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let text = text.trim_end();
            let cut = (0..=PROBE_OUTPUT.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            Err(text[..cut].to_string())
        }
        Ok(Err(e)) => Err(format!("wait for the probe: {e}")),
        Err(_) => {
            // The dropped future kills and reaps the helper; the group goes too.
            sandbox::signal_group(pid, Signal::SIGKILL);
            Err(format!("command {:?} timed out", command.join(" ")))
        }
    }
}

/// How long a pod's containers wait for the agent's NetworkPolicy state
/// before they start anyway (with a warning): an agent that is down must
/// not stop the node's pods for ever.
const POLICY_GATE_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until the agent at `gate` says its NetworkPolicy table accounts
/// for the pod at `ip` (200), polling while it says not yet (503). An agent
/// that does not enforce policy (404) or does not answer at all is not
/// waited for beyond its first refusal.
async fn policy_gate(gate: &str, ip: &str, pod: &str) {
    let url = format!("{}/policy/pods/{ip}", gate.trim_end_matches('/'));
    let started = Instant::now();
    let mut refused = 0;
    loop {
        match crate::probe::http_get_status(&url, Duration::from_secs(1)).await {
            Ok(200) => {
                tracing::debug!(
                    pod,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "policy state in place"
                );
                return;
            }
            Ok(503) => {}
            Ok(code) => {
                tracing::debug!(pod, code, "the agent does not gate pods on policy");
                return;
            }
            Err(e) => {
                // Not listening (yet): the agent may be starting; a few tries.
                refused += 1;
                if refused > 20 {
                    tracing::warn!(pod, error = %e, "no agent answers the NetworkPolicy gate; starting the containers");
                    return;
                }
            }
        }
        if started.elapsed() > POLICY_GATE_TIMEOUT {
            tracing::warn!(pod, "the agent's NetworkPolicy state did not account for the pod in time; starting the containers");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves once the pod's containers are told to stop.
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) {
    let _ = stop.wait_for(Option::is_some).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_worker_is_restarted_twice_then_the_pod_is_failed() {
        let mut r = WorkerRestarts::default();
        assert_eq!(r.on_panic("u1"), Recovery::Restart(1));
        assert!(!r.given_up("u1"));
        assert_eq!(r.on_panic("u1"), Recovery::Restart(2));
        assert_eq!(r.on_panic("u1"), Recovery::GiveUp);
        assert!(r.given_up("u1"));
        // Other pods are counted on their own.
        assert_eq!(r.on_panic("u2"), Recovery::Restart(1));
        // A worker that finished normally starts from zero again.
        r.forget("u1");
        assert!(!r.given_up("u1"));
        assert_eq!(r.on_panic("u1"), Recovery::Restart(1));
    }

    #[test]
    fn panic_message_reads_a_formatted_panic_payload() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let caught = rt.block_on(
            AssertUnwindSafe(async {
                let name = "é".repeat(40);
                // The old hostname cut: slicing mid-character panics.
                let _ = &name[..63];
            })
            .catch_unwind(),
        );
        let p = caught.unwrap_err();
        assert!(
            panic_message(&*p).contains("char boundary"),
            "{}",
            panic_message(&*p)
        );
    }

    #[test]
    fn a_failed_pod_status_is_failed_and_names_the_cause() {
        let v = failed_status("byte index 63 is not a char boundary");
        assert_eq!(v["status"]["phase"], "Failed");
        assert_eq!(v["status"]["reason"], "NodeRuntimeError");
        assert!(v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("char boundary"));
        assert_eq!(v["status"]["conditions"][0]["status"], "False");
    }
}
