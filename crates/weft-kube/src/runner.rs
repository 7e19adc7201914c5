//! The bounded-frequency sync runner: one loop per feature that runs its sync
//! function when something changed, never more often than a minimum interval, at
//! least every maximum interval, and again soon after a failure — kube-proxy's
//! `BoundedFrequencyRunner`, in tokio time (so tests run it with a paused clock).
//!
//! Intervals are measured from the end of a run to the start of the next, so a slow
//! sync cannot be followed at once by another. Any number of triggers that arrive
//! before a run starts are covered by that one run; a trigger that arrives while a
//! run is going on causes exactly one more run.
//!
//! Failures back off: the first retry comes `retry_interval` after a failed run, and
//! each further consecutive failure doubles the delay, up to `retry_max_interval`;
//! a success starts again from `retry_interval`. Each delay is shortened by a random
//! jitter of up to a quarter of it (never above the cap, never below
//! `min_interval`), so runners that fail together — every controller while the API
//! server is down — do not retry in step.
//!
//! A trigger cuts a backoff short, as in kube-proxy: a change runs the sync after
//! `min_interval` whatever the backoff, because a change (a store relisting after the
//! API server came back) is the best hint that the next run may succeed. It does not
//! reset the backoff; only a success does, so a triggered run that fails again waits
//! longer still.
//!
//! A sync function run by [`SyncRunner::run_classified`] can also say that a run
//! should be retried quietly ([`SyncError::Quiet`], e.g. a 409 Conflict from a stale
//! cache): it runs again after `retry_interval`, without backoff, logged at debug and
//! counted as a quiet retry rather than a failure.
//!
//! Logs stay readable while something is down: the first failure of a streak is a
//! warning, and so is one whose error differs from the last warned one or that comes
//! `retry_max_interval` after it; the others are logged at debug. [`Outcomes`]
//! count every failure either way.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::gate::Gate;
use crate::store::Changes;
use crate::Error;

/// The intervals of a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Never start a run sooner than this after the previous one ended; triggers in
    /// between are coalesced into one run when it has passed.
    pub min_interval: Duration,
    /// Run at least this often, even with no trigger (converges from drift).
    pub max_interval: Duration,
    /// After a failed run, run again after this even with no trigger (still no
    /// sooner than `min_interval`); each further consecutive failure doubles it.
    pub retry_interval: Duration,
    /// The longest retry delay that doubling reaches (raised to `retry_interval` if
    /// below it). It may exceed `max_interval`: a resync would fail just the same.
    pub retry_max_interval: Duration,
}

impl Default for Bounds {
    /// 100 ms, 30 s, 1 s doubling up to 30 s: what the node agent uses.
    fn default() -> Self {
        Bounds {
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            retry_max_interval: Duration::from_secs(30),
        }
    }
}

impl Bounds {
    /// The retry delay after the `failures`-th consecutive failure (from 1), before
    /// jitter: `retry_interval` doubled `failures - 1` times, at most
    /// `retry_max_interval`.
    pub fn backoff(&self, failures: u64) -> Duration {
        let doublings = u32::try_from(failures.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(31);
        self.retry_interval
            .saturating_mul(1 << doublings)
            .min(self.retry_max_interval.max(self.retry_interval))
    }
}

/// The largest share of a retry delay that jitter takes off.
const JITTER: f64 = 0.25;

/// `delay` shortened by `JITTER * fraction` of itself (`fraction` in [0, 1); any
/// other value counts as 0).
fn jittered(delay: Duration, fraction: f64) -> Duration {
    let fraction = if (0.0..1.0).contains(&fraction) {
        fraction
    } else {
        0.0
    };
    // At most a quarter of `delay`, so the product cannot overflow.
    delay.saturating_sub(delay.mul_f64(JITTER * fraction))
}

/// A fraction in [0, 1) that differs from call to call and process to process:
/// std's randomly keyed hasher over a counter. Jitter needs no better randomness.
fn random_fraction() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    // The top 53 bits, exactly representable in an f64's mantissa.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// How a run failed, for a sync function run by [`SyncRunner::run_classified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncError<E> {
    /// An expected, transient outcome (a 409 Conflict because the cache was stale):
    /// run again after `retry_interval`, without backoff; logged at debug, counted in
    /// [`Outcomes::quiet_retries`], not as a failure.
    Quiet(E),
    /// A failure: retried with backoff, warned about (see the module docs), counted.
    Failed(E),
}

impl<E> From<E> for SyncError<E> {
    /// A plain error is a failure, so `?` works in a classified sync function.
    fn from(e: E) -> Self {
        SyncError::Failed(e)
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
    /// Runs finished: successful, failed or retried quietly.
    pub runs: u64,
    /// Every failed run, whether it was logged at warn or at debug.
    pub failures: u64,
    /// Failures since the last success (what the retry backoff follows).
    pub consecutive_failures: u64,
    /// Runs that ended in [`SyncError::Quiet`]: neither success nor failure.
    pub quiet_retries: u64,
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

    /// Records a success; returns how many failures in a row it ended.
    fn record_success(&self, at: Instant) -> u64 {
        let mut o = self.lock();
        o.runs += 1;
        o.last_success = Some(at);
        std::mem::take(&mut o.consecutive_failures)
    }

    /// Records a failure; returns how many failures in a row there now are.
    fn record_failure(&self, at: Instant, error: String) -> u64 {
        let mut o = self.lock();
        o.runs += 1;
        o.failures += 1;
        o.consecutive_failures += 1;
        o.last_error = Some((at, error));
        o.consecutive_failures
    }

    fn record_quiet_retry(&self) {
        let mut o = self.lock();
        o.runs += 1;
        o.quiet_retries += 1;
    }
}

/// Which failures of a streak are worth a warning: the first, one whose error text
/// differs from the last warned one, and one `every` after the last warning. The
/// others go to debug, so a runner retrying a down API server for an hour warns a
/// few times an hour, not at every retry.
#[derive(Debug, Default)]
struct FailureLog {
    last_warning: Option<(Instant, String)>,
}

impl FailureLog {
    /// Whether the failure `error` at `at` is to be warned about (and if so, it
    /// becomes the last warning).
    fn warn(&mut self, at: Instant, error: &str, every: Duration) -> bool {
        let due = match &self.last_warning {
            None => true,
            Some((last_at, last_error)) => {
                last_error != error || at.saturating_duration_since(*last_at) >= every
            }
        };
        if due {
            self.last_warning = Some((at, error.to_string()));
        }
        due
    }

    /// A success ended the streak: the next failure is a first one again.
    fn clear(&mut self) {
        self.last_warning = None;
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
    /// The jitter fraction of each retry delay (in [0, 1)); fixed in tests.
    jitter: fn() -> f64,
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
    /// raised to it, and a `retry_max_interval` below `retry_interval` to that.
    pub fn new(name: impl Into<String>, bounds: Bounds) -> Self {
        let bounds = Bounds {
            max_interval: bounds.max_interval.max(bounds.min_interval),
            retry_max_interval: bounds.retry_max_interval.max(bounds.retry_interval),
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
            jitter: random_fraction,
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

    /// Waits for `gate`, then runs `sync` forever within the bounds; every error is
    /// a failure (retried with backoff). Returns only if the gate can never open.
    ///
    /// To spawn the returned future, give `sync` its state by value (`async move ||`
    /// over owned handles): a closure that borrows from its surroundings makes a
    /// future the compiler cannot prove `Send` for every borrow.
    pub async fn run<E: fmt::Display>(
        self,
        gate: &Gate,
        sync: impl AsyncFnMut() -> Result<(), E>,
    ) -> Result<Infallible, Error> {
        self.run_inner(gate, sync, SyncError::Failed).await
    }

    /// Like [`run`](Self::run), for a sync function that says which of its
    /// errors are to be retried quietly ([`SyncError::Quiet`]).
    pub async fn run_classified<E: fmt::Display>(
        self,
        gate: &Gate,
        sync: impl AsyncFnMut() -> Result<(), SyncError<E>>,
    ) -> Result<Infallible, Error> {
        self.run_inner(gate, sync, |e| e).await
    }

    async fn run_inner<R, E: fmt::Display>(
        mut self,
        gate: &Gate,
        mut sync: impl AsyncFnMut() -> Result<(), R>,
        classify: impl Fn(R) -> SyncError<E>,
    ) -> Result<Infallible, Error> {
        gate.wait().await?;
        tracing::debug!(runner = %self.name, "stores listed; first sync");
        let bounds = self.bounds;
        let mut log = FailureLog::default();
        loop {
            // Everything that happened so far is covered by this run.
            for source in &mut self.sources {
                source.changes.borrow_and_update();
            }
            let result = sync().await.map_err(&classify);
            let finished = Instant::now();
            let delay = match result {
                Ok(()) => {
                    let failures = self.health.record_success(finished);
                    if failures > 0 {
                        tracing::info!(runner = %self.name, failures, "sync succeeded again");
                    }
                    log.clear();
                    bounds.max_interval
                }
                Err(SyncError::Failed(e)) => {
                    let error = format!("{e:#}");
                    let failures = self.health.record_failure(finished, error.clone());
                    let retry_in = jittered(bounds.backoff(failures), (self.jitter)())
                        .max(bounds.min_interval);
                    if log.warn(finished, &error, bounds.retry_max_interval) {
                        tracing::warn!(runner = %self.name, error = %error, failures, ?retry_in, "sync failed");
                    } else {
                        tracing::debug!(runner = %self.name, error = %error, failures, ?retry_in, "sync failed again");
                    }
                    retry_in
                }
                Err(SyncError::Quiet(e)) => {
                    self.health.record_quiet_retry();
                    let retry_in = bounds.retry_interval.max(bounds.min_interval);
                    tracing::debug!(runner = %self.name, reason = %format!("{e:#}"), ?retry_in, "sync to be retried");
                    retry_in
                }
            };
            tokio::select! {
                () = sleep_until(finished + delay) => {}
                // Cuts a retry backoff short too (see the module docs).
                () = any_changed(&mut self.sources) => sleep_until(finished + bounds.min_interval).await,
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
    const RETRY_MAX: Duration = Duration::from_secs(8);

    fn bounds() -> Bounds {
        Bounds {
            min_interval: MIN,
            max_interval: MAX,
            retry_interval: RETRY,
            retry_max_interval: RETRY_MAX,
        }
    }

    /// A runner without jitter, so retries come exactly at their backoff.
    fn exact(bounds: Bounds) -> SyncRunner {
        let mut runner = SyncRunner::new("t", bounds);
        runner.jitter = || 0.0;
        runner
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The start times of a spawned runner's runs, relative to the test's start.
    #[derive(Clone)]
    struct Runs {
        t0: Instant,
        starts: Arc<Mutex<Vec<Duration>>>,
    }

    impl Runs {
        fn new() -> Self {
            Runs {
                t0: Instant::now(),
                starts: Arc::default(),
            }
        }
        /// Records a run starting now; returns its number (from 0).
        fn record(&self) -> usize {
            let mut starts = self.starts.lock().unwrap();
            starts.push(Instant::now() - self.t0);
            starts.len() - 1
        }
        fn starts(&self) -> Vec<Duration> {
            self.starts.lock().unwrap().clone()
        }
        fn count(&self) -> usize {
            self.starts.lock().unwrap().len()
        }
    }

    /// Spawns `runner` behind `gate` with [`SyncRunner::run`]; run number `n` (from
    /// 0) fails when `fails(n)`, each with its own error text.
    fn spawn(
        runner: SyncRunner,
        gate: Gate,
        fails: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> (Runs, tokio::task::JoinHandle<()>) {
        let runs = Runs::new();
        let recorded = runs.clone();
        let task = tokio::spawn(async move {
            let result = runner
                .run(&gate, async move || -> Result<(), String> {
                    let n = recorded.record();
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

    /// Spawns `runner` with [`SyncRunner::run_classified`]; run number `n` ends in
    /// `outcome(n)`.
    fn spawn_classified(
        runner: SyncRunner,
        outcome: impl Fn(usize) -> Result<(), SyncError<String>> + Send + Sync + 'static,
    ) -> (Runs, tokio::task::JoinHandle<()>) {
        let runs = Runs::new();
        let recorded = runs.clone();
        let task = tokio::spawn(async move {
            let result = runner
                .run_classified(&Gate::default(), async move || outcome(recorded.record()))
                .await;
            panic!("runner returned: {result:?}");
        });
        (runs, task)
    }

    fn quiet() -> Result<(), SyncError<String>> {
        Err(SyncError::Quiet("409 Conflict".into()))
    }

    fn failed(error: &str) -> Result<(), SyncError<String>> {
        Err(SyncError::Failed(error.into()))
    }

    async fn sleep_to(runs: &Runs, at: Duration) {
        sleep_until(runs.t0 + at).await;
    }

    /// What runners log, as text: one process-wide subscriber (set once, so
    /// no test depends on tracing's per-thread dispatch and its callsite
    /// interest cache, which made thread-local capture flaky under parallel
    /// tests), read back per runner name — each capturing test names its
    /// runner uniquely.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The logs of runner `name`.
    struct RunnerLogs {
        all: Logs,
        name: &'static str,
    }

    impl Logs {
        fn capture(name: &'static str) -> RunnerLogs {
            static GLOBAL: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
            let all = GLOBAL
                .get_or_init(|| {
                    let logs = Logs::default();
                    let writer = logs.clone();
                    let subscriber = tracing_subscriber::fmt()
                        .with_writer(move || writer.clone())
                        .with_max_level(tracing::Level::DEBUG)
                        .with_ansi(false)
                        .without_time()
                        .finish();
                    // Only this module sets a global subscriber.
                    let _ = tracing::subscriber::set_global_default(subscriber);
                    logs
                })
                .clone();
            RunnerLogs { all, name }
        }
    }

    impl RunnerLogs {
        /// The lines of this runner at `level` (`WARN`, `DEBUG`) that contain `text`.
        fn lines(&self, level: &str, text: &str) -> Vec<String> {
            let bytes = self.all.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let runner = format!("runner={} ", self.name);
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| l.trim_start().starts_with(level) && l.contains(text))
                .filter(|l| l.contains(&runner))
                .map(str::to_string)
                .collect()
        }
    }

    fn exact_named(name: &'static str, bounds: Bounds) -> SyncRunner {
        let mut runner = SyncRunner::new(name, bounds);
        runner.jitter = || 0.0;
        runner
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
        let (runs, _task) = spawn(exact(bounds()), Gate::default(), |n| n == 0);
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
    async fn consecutive_failures_double_the_retry_delay() {
        let (runs, _task) = spawn(exact(bounds()), Gate::default(), |_| true);
        sleep_to(&runs, secs(7) + ms(1)).await;
        assert_eq!(runs.starts(), [secs(0), secs(1), secs(3), secs(7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_delay_stops_growing_at_retry_max_interval() {
        let (runs, _task) = spawn(exact(bounds()), Gate::default(), |_| true);
        sleep_to(&runs, secs(31) + ms(1)).await;
        // 1, 2, 4, 8, then RETRY_MAX (8 s) for good.
        let starts = [0, 1, 3, 7, 15, 23, 31].map(secs);
        assert_eq!(runs.starts(), starts);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_retry_delay() {
        let (runs, _task) = spawn(exact(bounds()), Gate::default(), |n| n != 3);
        sleep_to(&runs, secs(38) + ms(1)).await;
        // Fails at 0, 1, 3; succeeds at 7; the resync at 37 fails and is retried
        // after RETRY again, not after the 8 s the streak had reached.
        assert_eq!(runs.starts(), [0, 1, 3, 7, 37, 38].map(secs));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_shortens_retry_delays_by_at_most_a_quarter() {
        let b = Bounds {
            retry_interval: ms(100),
            retry_max_interval: secs(2),
            ..bounds()
        };
        let (runs, _task) = spawn(SyncRunner::new("t", b), Gate::default(), |_| true);
        sleep_to(&runs, secs(30)).await;
        let starts = runs.starts();
        assert!(starts.len() > 10, "{starts:?}");
        let mut shortened = 0;
        for (i, pair) in starts.windows(2).enumerate() {
            let (delay, backoff) = (pair[1] - pair[0], b.backoff(i as u64 + 1));
            assert!(
                delay <= backoff && delay >= backoff.mul_f64(0.75),
                "retry {i}: {delay:?} for a backoff of {backoff:?}"
            );
            shortened += usize::from(delay < backoff);
        }
        assert!(shortened > 0, "no delay was jittered: {starts:?}");
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
    async fn trigger_cuts_a_backoff_short_without_resetting_it() {
        let runner = exact(Bounds {
            retry_max_interval: secs(64),
            ..bounds()
        });
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::default(), |_| true);
        // Failures at 0, 1, 3, 7: the next retry is due at 15.
        sleep_to(&runs, ms(7500)).await;
        trigger.trigger();
        sleep_to(&runs, ms(7501)).await;
        assert_eq!(
            runs.count(),
            5,
            "the trigger ran at once: {:?}",
            runs.starts()
        );
        // The triggered run was the 5th failure: 16 s to the next retry.
        sleep_to(&runs, ms(7500) + secs(16) - ms(1)).await;
        assert_eq!(runs.count(), 5);
        sleep_to(&runs, ms(7500) + secs(16) + ms(1)).await;
        assert_eq!(runs.count(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_during_a_backoff_still_waits_for_the_min_interval() {
        let runner = exact(bounds());
        let trigger = runner.trigger();
        let (runs, _task) = spawn(runner, Gate::default(), |_| true);
        // Failed at 0 and 1 s; the next retry is due at 3 s.
        sleep_to(&runs, RETRY + ms(10)).await;
        trigger.trigger();
        sleep_to(&runs, RETRY + MIN - ms(1)).await;
        assert_eq!(runs.count(), 2);
        sleep_to(&runs, RETRY + MIN + ms(1)).await;
        assert_eq!(runs.starts(), [ms(0), RETRY, RETRY + MIN]);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_retry_runs_again_after_the_retry_interval_without_backoff() {
        let (runs, _task) =
            spawn_classified(exact(bounds()), |n| if n < 4 { quiet() } else { Ok(()) });
        sleep_to(&runs, MAX).await;
        assert_eq!(runs.starts(), [0, 1, 2, 3, 4].map(secs));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_retry_is_counted_apart_from_failures() {
        let runner = exact(bounds());
        let health = runner.health();
        let (runs, _task) = spawn_classified(runner, |n| if n < 2 { quiet() } else { Ok(()) });
        sleep_to(&runs, secs(2) + ms(1)).await;
        let o = health.outcomes();
        assert_eq!(
            (o.runs, o.failures, o.consecutive_failures, o.quiet_retries),
            (3, 0, 0, 2)
        );
        assert_eq!(o.last_error, None);
        assert_eq!(o.last_success, Some(runs.t0 + secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_retry_keeps_the_failure_backoff() {
        let (runs, _task) = spawn_classified(exact(bounds()), |n| match n {
            2 => quiet(),
            _ => failed("down"),
        });
        sleep_to(&runs, secs(8) + ms(1)).await;
        // Failures 1 and 2 (retries after 1 s and 2 s), a quiet retry (1 s), then
        // failure 3 waits 4 s.
        assert_eq!(runs.starts(), [0, 1, 3, 4, 8].map(secs));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_retry_is_logged_at_debug_not_as_a_warning() {
        let logs = Logs::capture("quiet-debug");
        let (runs, _task) = spawn_classified(exact_named("quiet-debug", bounds()), |_| quiet());
        sleep_to(&runs, secs(3) + ms(1)).await;
        assert_eq!(runs.count(), 4);
        assert_eq!(logs.lines("WARN", ""), Vec::<String>::new());
        assert_eq!(logs.lines("DEBUG", "sync to be retried").len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failure_is_warned_once_but_counted_every_time() {
        let logs = Logs::capture("repeated-failure");
        let runner = exact_named("repeated-failure", bounds());
        let health = runner.health();
        let (runs, _task) = spawn_classified(runner, |_| failed("connection refused"));
        sleep_to(&runs, secs(7) + ms(1)).await;
        assert_eq!(health.outcomes().failures, 4);
        let warned = logs.lines("WARN", "sync failed");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("connection refused"), "{warned:?}");
        assert_eq!(logs.lines("DEBUG", "sync failed again").len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn changed_failure_is_warned_again() {
        let logs = Logs::capture("changed-failure");
        let (runs, _task) =
            spawn_classified(exact_named("changed-failure", bounds()), |n| match n {
                0 | 1 => failed("connection refused"),
                _ => failed("403 Forbidden"),
            });
        sleep_to(&runs, secs(3) + ms(1)).await;
        assert_eq!(runs.count(), 3);
        let warned = logs.lines("WARN", "sync failed");
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(warned[1].contains("403 Forbidden"), "{warned:?}");
    }

    #[test]
    fn same_failure_is_warned_again_after_the_interval() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert!(log.warn(t0, "down", RETRY_MAX));
        assert!(!log.warn(t0 + RETRY_MAX - ms(1), "down", RETRY_MAX));
        assert!(log.warn(t0 + RETRY_MAX, "down", RETRY_MAX));
        assert!(!log.warn(t0 + RETRY_MAX + ms(1), "down", RETRY_MAX));
    }

    #[test]
    fn first_failure_after_a_success_is_warned() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert!(log.warn(t0, "down", RETRY_MAX));
        log.clear();
        assert!(log.warn(t0 + ms(1), "down", RETRY_MAX));
    }

    #[test]
    fn backoff_doubles_from_the_retry_interval_up_to_the_cap() {
        let b = bounds();
        let delays: Vec<Duration> = (1..=6).map(|n| b.backoff(n)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8].map(secs));
        assert_eq!(b.backoff(u64::MAX), RETRY_MAX, "no overflow");
    }

    #[test]
    fn retry_max_interval_below_the_retry_interval_is_raised_to_it() {
        let runner = SyncRunner::new(
            "t",
            Bounds {
                retry_max_interval: ms(1),
                ..bounds()
            },
        );
        assert_eq!(runner.bounds().retry_max_interval, RETRY);
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
