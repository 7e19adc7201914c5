//! The bounded-frequency sync runner: one loop per feature that runs its sync
//! function when something changed, never more often than a minimum interval, at
//! least every maximum interval, and again soon after a failure — kube-proxy's
//! `BoundedFrequencyRunner`, in tokio time (so tests run it with a paused clock).
//!
//! Intervals are measured from the end of a run to the start of the next, so a slow
//! sync cannot be followed at once by another. Any number of triggers that arrive
//! before a run starts are covered by that one run; a trigger that arrives while a
//! run is going on causes exactly one more run.

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::gate::Gate;
use crate::store::Changes;
use crate::Error;

/// The three intervals of a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Never start a run sooner than this after the previous one ended; triggers in
    /// between are coalesced into one run when it has passed.
    pub min_interval: Duration,
    /// Run at least this often, even with no trigger (converges from drift).
    pub max_interval: Duration,
    /// After a failed run, run again after this even with no trigger (still no
    /// sooner than `min_interval`).
    pub retry_interval: Duration,
}

impl Default for Bounds {
    /// 100 ms, 30 s, 1 s: what the node agent uses.
    fn default() -> Self {
        Bounds {
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Asks a runner for a run as soon as its minimum interval allows.
#[derive(Debug, Clone)]
pub struct Trigger(watch::Sender<u64>);

impl Trigger {
    pub fn trigger(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// What the runs of a runner came to, for logs and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Runs finished, successful or not.
    pub runs: u64,
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    pub last_success: Option<Instant>,
    /// The last failure's time and error (kept after a later success, for logs).
    pub last_error: Option<(Instant, String)>,
}

/// A runner's outcomes, shared with health endpoints.
#[derive(Debug, Clone)]
pub struct Health {
    outcomes: Arc<Mutex<Outcomes>>,
    since: Instant,
    max_interval: Duration,
}

impl Health {
    fn new(max_interval: Duration) -> Self {
        Health {
            outcomes: Arc::default(),
            since: Instant::now(),
            max_interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Outcomes> {
        // Outcomes are plain counters written under the lock in one step; a panic
        // elsewhere cannot leave them half-written.
        self.outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the outcomes so far.
    pub fn outcomes(&self) -> Outcomes {
        self.lock().clone()
    }

    /// Healthy while the last successful run (or, before the first one, the runner's
    /// creation) is at most twice the maximum interval before `now`.
    pub fn healthy(&self, now: Instant) -> bool {
        let last = self.lock().last_success.unwrap_or(self.since);
        now.saturating_duration_since(last) <= self.max_interval.saturating_mul(2)
    }

    fn record_success(&self, at: Instant) {
        let mut o = self.lock();
        o.runs += 1;
        o.consecutive_failures = 0;
        o.last_success = Some(at);
    }

    fn record_failure(&self, at: Instant, error: String) {
        let mut o = self.lock();
        o.runs += 1;
        o.failures += 1;
        o.consecutive_failures += 1;
        o.last_error = Some((at, error));
    }
}

/// One thing a runner follows: its own triggers or a store's changes.
struct Source {
    changes: watch::Receiver<u64>,
    name: String,
}

/// Runs one sync function within [`Bounds`]; see the module docs.
pub struct SyncRunner {
    name: String,
    bounds: Bounds,
    trigger: watch::Sender<u64>,
    sources: Vec<Source>,
    health: Health,
}

impl fmt::Debug for SyncRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncRunner")
            .field("name", &self.name)
            .field("bounds", &self.bounds)
            .field(
                "sources",
                &self.sources.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SyncRunner {
    /// A runner called `name` (in logs). A `max_interval` below `min_interval` is
    /// raised to it.
    pub fn new(name: impl Into<String>, bounds: Bounds) -> Self {
        let bounds = Bounds {
            max_interval: bounds.max_interval.max(bounds.min_interval),
            ..bounds
        };
        let (trigger, changes) = watch::channel(0);
        SyncRunner {
            name: name.into(),
            bounds,
            trigger,
            sources: vec![Source {
                changes,
                name: "trigger".to_string(),
            }],
            health: Health::new(bounds.max_interval),
        }
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// A handle that asks for a run.
    pub fn trigger(&self) -> Trigger {
        Trigger(self.trigger.clone())
    }

    /// Runs after every change of a store.
    pub fn follow(&mut self, changes: Changes) {
        let (changes, id) = changes.into_parts();
        self.sources.push(Source {
            changes,
            name: id.to_string(),
        });
    }

    /// This runner's outcomes, for health checks.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Waits for `gate`, then runs `sync` forever within the bounds. Returns only if
    /// the gate can never open.
    ///
    /// To spawn the returned future, give `sync` its state by value (`async move ||`
    /// over owned handles): a closure that borrows from its surroundings makes a
    /// future the compiler cannot prove `Send` for every borrow.
    pub async fn run<E: fmt::Display>(
        mut self,
        gate: &Gate,
        mut sync: impl AsyncFnMut() -> Result<(), E>,
    ) -> Result<Infallible, Error> {
        gate.wait().await?;
        tracing::debug!(runner = %self.name, "stores listed; first sync");
        let Bounds {
            min_interval,
            max_interval,
            retry_interval,
        } = self.bounds;
        loop {
            // Everything that happened so far is covered by this run.
            for source in &mut self.sources {
                source.changes.borrow_and_update();
            }
            let result = sync().await;
            let finished = Instant::now();
            let next = match result {
                Ok(()) => {
                    self.health.record_success(finished);
                    finished + max_interval
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    let retry = retry_interval.max(min_interval);
                    tracing::warn!(runner = %self.name, error = %error, retry_in = ?retry, "sync failed");
                    self.health.record_failure(finished, error);
                    finished + retry
                }
            };
            tokio::select! {
                () = sleep_until(next) => {}
                () = any_changed(&mut self.sources) => sleep_until(finished + min_interval).await,
            }
        }
    }
}

/// Resolves when any source has an unseen change. A source whose sender is gone (its
/// store's watcher was stopped) is dropped, with a warning, rather than busy-looping.
async fn any_changed(sources: &mut Vec<Source>) {
    loop {
        if sources.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, rest) =
            select_all(sources.iter_mut().map(|s| Box::pin(s.changes.changed()))).await;
        drop(rest);
        match result {
            Ok(()) => return,
            Err(_) => {
                let gone = sources.remove(index);
                tracing::warn!(source = %gone.name, "no longer following a closed source");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{feed, Selector};
    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::watcher::Event;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);
    const RETRY: Duration = Duration::from_secs(1);

    fn bounds() -> Bounds {
        Bounds {
            min_interval: MIN,
            max_interval: MAX,
            retry_interval: RETRY,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The start times of a spawned runner's runs, relative to the test's start.
    #[derive(Clone)]
    struct Runs {
        t0: Instant,
        starts: Arc<Mutex<Vec<Duration>>>,
    }

    impl Runs {
        fn starts(&self) -> Vec<Duration> {
            self.starts.lock().unwrap().clone()
        }
        fn count(&self) -> usize {
            self.starts.lock().unwrap().len()
        }
    }

    /// Spawns `runner` behind `gate`; run number `n` (from 0) fails when `fails(n)`.
    fn spawn(
        runner: SyncRunner,
        gate: Gate,
        fails: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> (Runs, tokio::task::JoinHandle<()>) {
        let runs = Runs {
            t0: Instant::now(),
            starts: Arc::default(),
        };
        let recorded = runs.clone();
        let task = tokio::spawn(async move {
            let result = runner
                .run(&gate, async move || -> Result<(), String> {
                    let n = {
                        let mut starts = recorded.starts.lock().unwrap();
                        starts.push(Instant::now() - recorded.t0);
                        starts.len() - 1
                    };
                    if fails(n) {
                        Err(format!("run {n} failed"))
                    } else {
                        Ok(())
                    }
                })
                .await;
            panic!("runner returned: {result:?}");
        });
        (runs, task)
    }

    async fn sleep_to(runs: &Runs, at: Duration) {
        sleep_until(runs.t0 + at).await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_run_starts_as_soon_as_the_gate_is_open() {
        let runner = SyncRunner::new("t", bounds());
        let (runs, _task) = spawn(runner, Gate::default(), |_| false);
        sleep_to(&runs, ms(1)).await;
        assert_eq!(runs.starts(), [ms(0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_run_before_the_gate_opens() {
        let (mut nodes, store) = feed::<Node>(Selector::all());
        let runner = SyncRunner::new("t", bounds());
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::new([store.readiness()]), |_| false);
        trigger.trigger();
        sleep_to(&runs, 3 * MAX).await;
        assert_eq!(
            runs.count(),
            0,
            "neither triggers nor the max interval pass a closed gate"
        );
        nodes.apply(&Event::Init);
        nodes.apply(&Event::InitDone);
        sleep_to(&runs, 3 * MAX + ms(1)).await;
        assert_eq!(runs.starts(), [3 * MAX]);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_triggers_within_min_interval_cause_one_extra_run() {
        let runner = SyncRunner::new("t", bounds());
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::default(), |_| false);
        for i in 1..=10 {
            sleep_to(&runs, ms(i * 5)).await;
            trigger.trigger();
        }
        sleep_to(&runs, MAX - ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), MIN]);
    }

    #[tokio::test(start_paused = true)]
    async fn triggered_run_waits_for_the_min_interval() {
        let runner = SyncRunner::new("t", bounds());
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::default(), |_| false);
        sleep_to(&runs, ms(10)).await;
        trigger.trigger();
        sleep_to(&runs, MIN - ms(1)).await;
        assert_eq!(runs.count(), 1, "no run before the min interval has passed");
        sleep_to(&runs, MIN + ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), MIN]);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_after_the_min_interval_runs_at_once() {
        let runner = SyncRunner::new("t", bounds());
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::default(), |_| false);
        sleep_to(&runs, ms(500)).await;
        trigger.trigger();
        sleep_to(&runs, ms(501)).await;
        assert_eq!(runs.starts(), [ms(0), ms(500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn runs_every_max_interval_without_triggers() {
        let runner = SyncRunner::new("t", bounds());
        let (runs, _task) = spawn(runner, Gate::default(), |_| false);
        sleep_to(&runs, 3 * MAX - ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), MAX, 2 * MAX]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_run_is_retried_after_the_retry_interval() {
        let runner = SyncRunner::new("t", bounds());
        let (runs, _task) = spawn(runner, Gate::default(), |n| n == 0);
        sleep_to(&runs, RETRY + ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), RETRY]);
        sleep_to(&runs, RETRY + MAX - ms(1)).await;
        assert_eq!(
            runs.count(),
            2,
            "after the retry succeeded, back to the max interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_respects_the_min_interval() {
        let runner = SyncRunner::new(
            "t",
            Bounds {
                retry_interval: ms(10),
                ..bounds()
            },
        );
        let (runs, _task) = spawn(runner, Gate::default(), |n| n == 0);
        sleep_to(&runs, MIN + ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), MIN]);
    }

    #[tokio::test(start_paused = true)]
    async fn store_change_triggers_a_run() {
        let (mut nodes, store) = feed::<Node>(Selector::all());
        nodes.apply(&Event::InitDone);
        let mut runner = SyncRunner::new("t", bounds());
        runner.follow(store.changes());
        let (runs, _task) = spawn(runner, Gate::new([store.readiness()]), |_| false);
        sleep_to(&runs, ms(500)).await;
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        nodes.apply(&Event::Apply(node));
        sleep_to(&runs, ms(501)).await;
        assert_eq!(runs.starts(), [ms(0), ms(500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_during_a_run_causes_one_more_run() {
        let runner = SyncRunner::new("t", bounds());
        let trigger = runner.trigger();
        let t0 = Instant::now();
        let starts: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let recorded = starts.clone();
        let _task = tokio::spawn(async move {
            let _ = runner
                .run(&Gate::default(), async move || -> Result<(), String> {
                    recorded.lock().unwrap().push(Instant::now() - t0);
                    // A slow sync, during which a change arrives.
                    tokio::time::sleep(ms(50)).await;
                    Ok(())
                })
                .await;
        });
        sleep_until(t0 + ms(20)).await;
        trigger.trigger();
        sleep_until(t0 + MAX - ms(1)).await;
        // Ended at 50 ms; the next starts a min interval later.
        assert_eq!(*starts.lock().unwrap(), [ms(0), ms(150)]);
    }

    #[tokio::test(start_paused = true)]
    async fn health_records_outcomes() {
        let runner = SyncRunner::new("t", bounds());
        let health = runner.health();
        let (runs, _task) = spawn(runner, Gate::default(), |n| n == 1);
        sleep_to(&runs, MAX + ms(1)).await;
        let o = health.outcomes();
        assert_eq!((o.runs, o.failures, o.consecutive_failures), (2, 1, 1));
        assert_eq!(o.last_success, Some(runs.t0));
        let (at, error) = o.last_error.unwrap();
        assert_eq!((at, error.as_str()), (runs.t0 + MAX, "run 1 failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_when_no_success_in_twice_the_max_interval() {
        let runner = SyncRunner::new("t", bounds());
        let health = runner.health();
        let (runs, _task) = spawn(runner, Gate::default(), |n| n > 0);
        sleep_to(&runs, ms(1)).await;
        assert!(health.healthy(Instant::now()));
        assert!(health.healthy(runs.t0 + 2 * MAX));
        assert!(!health.healthy(runs.t0 + 2 * MAX + ms(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_when_the_gate_never_opens() {
        let (_nodes, store) = feed::<Node>(Selector::all());
        let runner = SyncRunner::new("t", bounds());
        let health = runner.health();
        let t0 = Instant::now();
        let (_runs, _task) = spawn(runner, Gate::new([store.readiness()]), |_| false);
        assert!(health.healthy(t0 + 2 * MAX));
        assert!(!health.healthy(t0 + 2 * MAX + ms(1)));
    }
}
