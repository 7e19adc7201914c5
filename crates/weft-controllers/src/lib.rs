//! Controllers of the embedded control plane (the stand-in for
//! kube-controller-manager and kube-scheduler): EndpointSlices, Deployments →
//! ReplicaSets → Pods, StatefulSets → Pods, DaemonSets → Pods, scheduling,
//! a garbage collector, and the Events they record (`events.k8s.io/v1`
//! through kube-rs's `Recorder`).
//!
//! Each controller is a pure plan function (objects in, desired objects and
//! writes out; `now` passed in) plus a thin loop (the private `runtime` module)
//! over the shared watch layer (`weft_kube`: one store per kind, a readiness
//! gate, a sync runner per controller that coalesces changes, resyncs and
//! retries) that runs the plan and writes the difference through the API.

pub mod daemonset;
pub mod deployment;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod replicaset;
mod runtime;
pub mod scheduler;
pub mod statefulset;
pub mod util;

#[cfg(test)]
mod testutil;

pub use runtime::{run, Error};
