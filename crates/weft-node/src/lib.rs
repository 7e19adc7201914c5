//! Node runtime of the embedded cluster (being built).
