#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace (crates/*/fuzz) for a bounded
# time each: `scripts/fuzz.sh [SECONDS]` (default 30). The corpus kept in the
# repo (crates/<crate>/fuzz/corpus/<target>) seeds each run; what a run finds
# goes to a temporary directory, so the tree stays clean. A crash fails the
# run and leaves its input under crates/<crate>/fuzz/artifacts/<target>/.
# Built with debug assertions (-a: integer overflow panics, the class of bug
# these parsers had) and without a sanitizer (-s none: safe Rust gains
# little from ASan, and it doubles build and run time), in 16 codegen units
# (cargo-fuzz defaults to 1: each CI run rebuilds the workspace crates from
# a fresh clone, and one unit leaves one of the two CPUs idle).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-30}
export CARGO_TARGET_DIR=${WEFT_FUZZ_TARGET_DIR:-/var/tmp/weft-fuzz-target}
status=0
for dir in crates/*/fuzz; do
    [[ -f $dir/Cargo.toml ]] || continue
    ( cd "$dir" && cargo +nightly fuzz build -s none -a --codegen-units 16 ) || { echo "fuzz: build of $dir failed"; status=1; continue; }
    for target in $(cd "$dir" && cargo +nightly fuzz list); do
        found=$(mktemp -d)
        echo "fuzz: $target ($dir) for ${seconds}s"
        if ( cd "$dir" && cargo +nightly fuzz run -s none -a --codegen-units 16 "$target" "$found" "corpus/$target" -- \
                -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 ) >"$found.log" 2>&1; then
            echo "fuzz: $target ($(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$found.log" | tail -1)s) passed"
        else
            tail -40 "$found.log"
            echo "fuzz: $target failed"
            status=1
        fi
        rm -rf "$found" "$found.log"
    done
done
exit "$status"
