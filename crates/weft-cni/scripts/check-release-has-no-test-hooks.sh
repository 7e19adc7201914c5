#!/bin/sh
# Proves the release weft-cni binary carries no fault-injection hook: builds
# it as a user would (`cargo build --release -p weft-cni`, no features) and
# fails if the hook's variable name is in the binary. Also checks that the
# test build (which enables `test-stall`) does have it, so the check cannot
# pass just because the string moved.
set -eu
cd "$(dirname "$0")/../../.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p weft-cni --bin weft-cni
if grep -q WEFT_CNI_TEST_STALL "$target/release/weft-cni"; then
    echo "FAIL: $target/release/weft-cni contains WEFT_CNI_TEST_STALL" >&2
    exit 1
fi
echo "ok: release weft-cni has no WEFT_CNI_TEST_STALL"
cargo test -p weft-cni --no-run --quiet
if ! grep -q WEFT_CNI_TEST_STALL "$target/debug/weft-cni"; then
    echo "FAIL: test build $target/debug/weft-cni lacks WEFT_CNI_TEST_STALL" >&2
    exit 1
fi
echo "ok: test build of weft-cni has the hook"
