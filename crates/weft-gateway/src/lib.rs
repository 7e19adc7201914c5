//! `weft gateway`: Ingress (networking.k8s.io/v1) and the Gateway API
//! standard channel (GatewayClass, Gateway, HTTPRoute, TLSRoute,
//! ReferenceGrant, BackendTLSPolicy) served by one proxy.
//!
//! Layers, top to bottom (DESIGN.md):
//! - [`api`] — the Gateway API kinds as Rust types (weft's own, from the
//!   specification's field list, matching `deploy/gateway-api/`).
//! - [`host`] — hostname patterns (Ingress and Gateway API wildcard rules)
//!   and lookups by host or SNI.
//! - [`table`] — compile (pure): the API objects → an immutable
//!   [`table::Table`]: per port, listeners by hostname, each with its routes'
//!   rules in the specification's precedence order, backends resolved to
//!   ready endpoints; plus the status every object should carry.
//! - [`compile`] — the pure step: objects → [`table::Table`] + statuses.
//! - [`tls`] — certificates chosen by SNI from `kubernetes.io/tls` Secrets,
//!   and the client configurations for re-encryption to backends.
//!
//! - [`framing`] — HTTP/1 request framing followed along a connection, so
//!   a request with an ambiguous length is refused before hyper reads it.
//! - [`server`] — the proxy: ports follow the table, TLS by SNI (terminate or
//!   pass through), requests routed and forwarded over pooled connections;
//!   [`metrics`] and health on their own port.
//!
//! No user string is ever turned into configuration text: the table is data,
//! built from typed objects, and a change builds a new table that replaces
//! the old one whole.

pub mod api;
#[cfg(feature = "proxy")]
mod args;
pub mod compile;
#[cfg(feature = "proxy")]
pub mod daemon;
pub mod framing;
pub mod host;
#[cfg(feature = "proxy")]
pub mod metrics;
#[cfg(feature = "proxy")]
pub mod server;
pub mod table;
pub mod tls;

#[cfg(feature = "proxy")]
pub use args::GatewayArgs;
