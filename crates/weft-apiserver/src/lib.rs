//! The embedded control plane API server (being built).
