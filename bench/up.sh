#!/usr/bin/env bash
# Time to a working cluster: `weft up` of 2 nodes and 10 pods (all Ready),
# then `weft down`, ROUNDS times (default 3). There is no anchor that runs
# here (kind needs Docker); the issue's target is < 20 s.
#
#   sudo bench/up.sh            # prints a markdown table
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-3}
NAME=bench
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
[[ $EUID -eq 0 ]] || { echo "up.sh: run as root" >&2; exit 1; }
cargo build --release --locked --bins >&2
WEFT=$CARGO_TARGET_DIR/release/weft
trap '"$WEFT" --name $NAME down >/dev/null 2>&1 || true' EXIT
"$WEFT" --name $NAME down >/dev/null 2>&1 || true

ups=() downs=()
for r in $(seq 1 "$ROUNDS"); do
    s=$(date +%s%N)
    "$WEFT" --name $NAME up --nodes 2 -f bench/manifests/ten-pods.yaml >&2
    m=$(date +%s%N)
    "$WEFT" --name $NAME down >&2
    e=$(date +%s%N)
    ups+=("$(( (m - s) / 1000000 ))") downs+=("$(( (e - m) / 1000000 ))")
done
echo "## weft up: 2 nodes, 10 pods Ready ($(date -u +%F), $(nproc) CPUs, $(uname -r))"
echo
echo "| round | weft up (s) | weft down (s) |"
echo "|------:|------------:|--------------:|"
for i in "${!ups[@]}"; do
    awk -v r="$((i + 1))" -v u="${ups[$i]}" -v d="${downs[$i]}" 'BEGIN { printf "| %d | %.2f | %.2f |\n", r, u / 1000, d / 1000 }'
done
