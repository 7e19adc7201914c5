//! agnhost-compatible test commands (being built).
