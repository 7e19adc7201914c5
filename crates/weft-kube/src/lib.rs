//! The shared watch layer of every weft process that follows the Kubernetes API:
//! one reflector store per (kind, selector) per process, shared by every consumer
//! ([`Watches`], [`Store`]); a readiness gate that holds the first sync until every
//! store it names has listed ([`Gate`], kube-proxy's `isInitialized()`); and a
//! bounded-frequency sync runner ([`SyncRunner`]: coalesced triggers, minimum and
//! maximum intervals, retries with jittered exponential backoff and quiet retries
//! for expected conflicts, modelled on kube-proxy's `BoundedFrequencyRunner`).
//!
//! A feature (overlay, proxy, policy …) asks the process's [`Watches`] for the stores
//! it reads, makes a [`SyncRunner`] that follows their [`Changes`], and runs its
//! sync function behind a [`Gate`] over their [`Readiness`]:
//!
//! ```no_run
//! # async fn feature(client: kube::Client) -> Result<(), weft_kube::Error> {
//! use k8s_openapi::api::core::v1::Node;
//! use weft_kube::{Bounds, Gate, Selector, SyncRunner, Watches};
//!
//! let watches = Watches::new(client);
//! let nodes = watches.store::<Node>(Selector::all());
//! let mut runner = SyncRunner::new("overlay", Bounds::default());
//! runner.follow(nodes.changes());
//! let gate = Gate::new([nodes.readiness()]);
//! runner
//!     .run(&gate, async || -> Result<(), std::io::Error> {
//!         let _snapshot = nodes.state();
//!         Ok(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

mod client;
mod gate;
pub mod http;
mod runner;
mod store;
mod watches;

pub use client::{in_pod, ClientFlags};
pub use gate::{wait_ready, Gate};
pub use runner::{Bounds, Health, Outcomes, SyncError, SyncRunner, Trigger};
pub use store::{feed, Changes, Feed, Kind, Readiness, Selector, Store, StoreId};
pub use watches::Watches;

/// What the watch layer can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store's watcher task ended (aborted or panicked), so the store will never
    /// list or change again.
    #[error("the {store} store's watcher stopped: {what}")]
    StoreClosed {
        /// The store, as kind and selector (`Node`, `Pod{fields=spec.nodeName=n1}`).
        store: String,
        /// What was being waited for.
        what: &'static str,
    },
}
