#!/usr/bin/env bash
# Time from `weft trace` to its answer, against the bare connection it
# makes: N (default 50) traces of a frontend pod to Service backend on the
# demo cluster (2 nodes), and N plain connects of the same path from the
# same pod (python's socket.create_connection through `weft exec`, which
# pays the same process and namespace entry costs). Prints p50/p99 of both
# and their ratio. The anchor is the connection itself: what tracing adds
# (tracer tables in every namespace, listeners, stitching) is the ratio.
#
#   sudo bench/trace.sh            # prints a markdown table
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-50}
NAME=bench-trace
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
[[ $EUID -eq 0 ]] || { echo "trace.sh: run as root" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "trace.sh: N must be a positive count" >&2; exit 1; }
cargo build --release --locked --bins >&2
WEFT=$CARGO_TARGET_DIR/release/weft
trap '"$WEFT" --name $NAME down >/dev/null 2>&1 || true' EXIT
"$WEFT" --name $NAME down >/dev/null 2>&1 || true
"$WEFT" --name $NAME up -f examples/demo.yaml >&2
frontend=$("$WEFT" --name $NAME get pods -o json | python3 -c '
import json, sys
print(next(p["metadata"]["name"] for p in json.load(sys.stdin)["items"] if p["metadata"]["labels"].get("app") == "frontend"))')
ip=$("$WEFT" --name $NAME get svc backend -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')

ms() { echo $(( ($2 - $1) / 1000000 )); }
traces=() connects=()
for i in $(seq 1 "$N"); do
    s=$(date +%s%N)
    "$WEFT" --name $NAME trace "pod/$frontend" svc/backend >/dev/null \
        || { echo "trace.sh: trace $i was not delivered" >&2; exit 1; }
    m=$(date +%s%N)
    "$WEFT" --name $NAME exec "$frontend" -- python3 -c "import socket; socket.create_connection(('$ip', 80), timeout=2).close()"
    e=$(date +%s%N)
    traces+=("$(ms "$s" "$m")") connects+=("$(ms "$m" "$e")")
    (( i % 10 == 0 )) && echo "trace.sh: $i/$N" >&2
done
pct() { printf '%s\n' "$@" | sort -n | awk -v p="$P" '{ a[NR] = $1 } END { i = int((NR - 1) * p / 100) + 1; print a[i] }'; }
P=50 t50=$(pct "${traces[@]}"); P=99 t99=$(pct "${traces[@]}")
P=50 c50=$(pct "${connects[@]}"); P=99 c99=$(pct "${connects[@]}")
echo "## weft trace: pod → Service across the demo cluster, $N runs ($(date -u +%F), $(nproc) CPUs, $(uname -r))"
echo
echo "| | p50 (ms) | p99 (ms) |"
echo "|---|---:|---:|"
echo "| weft trace | $t50 | $t99 |"
echo "| bare connect (weft exec + python) | $c50 | $c99 |"
awk -v a="$t50" -v b="$c50" -v c="$t99" -v d="$c99" 'BEGIN { printf "| ratio trace/connect | %.2f× | %.2f× |\n", a / b, c / d }'
