#!/usr/bin/env bash
# The whole test suite: lint, unit tests, the network-namespace and end-to-end
# tests that need root (every test makes and removes its own weft-t*
# namespaces), and a short run of every fuzz target. Exactly what CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
# Outside the clone, so fresh clones (CI) reuse the build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
# Tests that skip (no root, a missing tool) write a line here (weft_linux::testns::skip).
export WEFT_TEST_SKIP_LOG
WEFT_TEST_SKIP_LOG=$(mktemp)
trap 'rm -f "$log" "$WEFT_TEST_SKIP_LOG"' EXIT
status=0
# Doc tests are off (no doc examples yet); the summary adds up every binary.
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --workspace --locked --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
skipped=$(wc -l <"$WEFT_TEST_SKIP_LOG")
if ((skipped)); then
    echo "skipped checks:"
    sed 's/^/  /' "$WEFT_TEST_SKIP_LOG"
    if [[ $EUID -eq 0 ]]; then
        echo "a run as root must skip nothing: the checks above did not run" >&2
        status=1
    fi
fi
# The release plugin carries no fault-injection hook (and the test build does).
sh crates/weft-cni/scripts/check-release-has-no-test-hooks.sh 2>&1 | tee -a "$log" || status=$?
if [[ ${WEFT_FUZZ_SECONDS:-30} != 0 ]]; then
    bash scripts/fuzz.sh "${WEFT_FUZZ_SECONDS:-30}" 2>&1 | tee -a "$log" || status=$?
fi
awk -v skipped="$skipped" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     /^fuzz: .* failed$/ || /^FAIL: / { f += 1 } /^fuzz: .* passed$/ || /^ok: / { p += 1 }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s + skipped }' "$log"
# A failure with no failed test in the count (a target that is not a test
# harness, a build, the release check) must still say so.
((status == 0)) || echo "the suite FAILED (exit $status): a step above did not succeed" >&2
exit "$status"
