//! The one retry policy of weft's daemons: exponential backoff with jitter,
//! built on `backon`, so restarts and retried requests of many processes
//! never fall into step.
//!
//! It lives here because weft-linux is the runtime crate the daemons and the
//! CLI already link (agent, node runtime, CNI, overlay, `weft`), while
//! weft-cluster stays pure (no clocks, no randomness). Use
//! [`Backoff::builder`] with backon's `Retryable` / `BlockingRetryable`
//! (re-exported) to retry one operation, and [`Backoff::delays`] for loops
//! that restart something forever (a supervisor).

use std::time::Duration;

pub use backon::{BackoffBuilder, BlockingRetryable, ExponentialBuilder, Retryable};

/// Exponential backoff from `min` doubling up to `max`, each delay with a
/// random jitter of up to its own length added; unbounded unless
/// [`Backoff::with_max_times`] says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub max_times: Option<usize>,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            max_times: None,
        }
    }

    /// Gives up after `times` retries.
    pub const fn with_max_times(mut self, times: usize) -> Self {
        self.max_times = Some(times);
        self
    }

    /// The backon builder for `op.retry(backoff.builder())`.
    pub fn builder(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(self.min)
            .with_max_delay(self.max);
        match self.max_times {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        }
    }

    /// The successive delays (an iterator that ends only with `max_times`).
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        self.builder().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_stay_under_twice_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = b.delays().take(8).collect();
        assert_eq!(delays.len(), 8, "unbounded by default");
        // Jitter adds up to one delay's length: each is in [base, 2*base).
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(200));
        assert!(
            delays.iter().all(|d| *d < Duration::from_secs(2)),
            "{delays:?}"
        );
        assert!(
            delays[7] >= Duration::from_secs(1),
            "reaches the cap: {delays:?}"
        );
    }

    #[test]
    fn max_times_bounds_the_retries() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2)).with_max_times(3);
        assert_eq!(b.delays().count(), 3);
    }

    #[test]
    fn blocking_retry_returns_the_first_success() {
        let mut calls = 0;
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2)).with_max_times(5);
        let out: Result<u32, &str> = (|| {
            calls += 1;
            if calls < 3 {
                Err("not yet")
            } else {
                Ok(calls)
            }
        })
        .retry(b.builder())
        .call();
        assert_eq!(out, Ok(3));
    }
}
