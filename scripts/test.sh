#!/usr/bin/env bash
# The whole test suite: unit tests, and the network-namespace tests that need
# root (every test makes and removes its own weft-t* namespaces). Lint first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
# Outside the clone, so fresh clones (CI) reuse the build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
