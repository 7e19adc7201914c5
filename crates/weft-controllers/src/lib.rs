//! Controllers of the embedded control plane (the stand-in for
//! kube-controller-manager and kube-scheduler): EndpointSlices, Deployments →
//! Pods, StatefulSets → Pods, scheduling, and a pod garbage collector.
//!
//! Each controller is a pure plan function (objects in, desired objects and
//! writes out; `now` passed in) plus a thin loop (the private `runtime` module)
//! over the shared watch layer (`weft_kube`: one store per kind, a readiness
//! gate, a sync runner per controller that coalesces changes, resyncs and
//! retries) that runs the plan and writes the difference through the API.

pub mod deployment;
pub mod endpointslice;
pub mod gc;
mod runtime;
pub mod scheduler;
pub mod statefulset;
pub mod util;

#[cfg(test)]
mod testutil;

pub use runtime::{run, Error};
