//! weft's cluster DNS server, for the Kubernetes DNS-Based Service Discovery
//! specification 1.1.0 (kubernetes/dns `docs/specification.md`).
//!
//! Layers, top to bottom (DESIGN.md):
//! - [`zone`] — compile (pure): Services, EndpointSlices and Pods → an immutable
//!   [`zone::Zone`] snapshot (names lowercased, every record set built once).
//! - [`answer`] — pure: request bytes + zone → an [`answer::Action`]: the response
//!   bytes, or a question to forward upstream and how to finish the answer from
//!   the upstream's reply.
//! - [`cache`] / [`forward`] — names outside the cluster domain: a bounded cache
//!   honouring TTLs and negative answers (RFC 2308) in front of upstream servers.
//!
//! - [`server`] / [`daemon`] — the process: SO_REUSEPORT UDP sockets (a thread
//!   each) and TCP, the zone following the API through [`weft_kube`]'s
//!   watch layer, [`metrics`] and health on one HTTP port.
//!
//! The wire format is hickory-proto's throughout; nothing here parses DNS by hand.

pub mod answer;
#[cfg(feature = "daemon")]
mod args;
pub mod cache;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod forward;
#[cfg(feature = "daemon")]
pub mod metrics;
#[cfg(feature = "daemon")]
pub mod server;
pub mod zone;

#[cfg(feature = "daemon")]
pub use args::DnsArgs;
