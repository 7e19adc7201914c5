//! Controllers of the embedded control plane (being built).
