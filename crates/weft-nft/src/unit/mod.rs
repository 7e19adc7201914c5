//! Unit tests of the typed layer: model, diff, fake, tracer.

mod diff;
mod fake;
mod model;
mod prop;
mod trace;
