#!/usr/bin/env bash
# The flow log's cost on new connections: connect + request/response rate
# (bench/rr.py, one connection at a time, netperf TCP_CRR's shape) from a
# client pod on node-2 to a server pod on node-1, through a NetworkPolicy
# (default deny + an allowing policy, so every connection is accepted by a
# policy rule that writes the connection mark), with the agents' flow log on
# and off (`--flow-log=false`, rolled out to the weft-agent DaemonSet) in
# alternating rounds on the same cluster. The anchor is the same path
# without the flow log; the ratio is what the log costs. Also prints how
# many records the logs held (the log really recorded the runs).
#
#   sudo bench/flows.sh            # ROUNDS=4 SECS=10 by default
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-10}
NAME=bench-flows
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
log() { echo "flows.sh: $*" >&2; }
die() { log "$*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS and SECS must be positive integers"
exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/flows.sh run is in progress"
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v conntrack >/dev/null || missing+=(conntrack)
if ((${#missing[@]})); then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
RR=$REPO/bench/rr.py
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
find_weft

TMP=$(mktemp -d /tmp/weft-bench-flows.XXXXXX)
cleanup() {
    "$WEFT" --name $NAME down >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
"$WEFT" --name $NAME down >/dev/null 2>&1 || true
log "starting a 2-node cluster"
"$WEFT" --name $NAME up >&2
KUBECONFIG=$("$WEFT" --name $NAME kubeconfig)
export KUBECONFIG
sed -e "s|@PYTHON@|$PY|" -e "s|@RR@|$RR|" "$REPO/bench/manifests/flows.yaml" >"$TMP/flows.yaml"
kubectl apply -f "$TMP/flows.yaml" >&2
kubectl -n bench-flows wait --for=condition=Ready pod/server pod/client --timeout=120s >&2
SERVER=$(kubectl -n bench-flows get pod server -o jsonpath='{.status.podIP}')

# Waits until every agent's /flows answers as asked (200: on, 404: off).
agents_flow_log() {
    local want=$1 deadline=$((SECONDS + 120)) node code ok
    while ((SECONDS < deadline)); do
        ok=1
        for node in node-1 node-2; do
            code=$("$WEFT" --name $NAME exec --node $node -- curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:9101/flows || true)
            [[ $code == "$want" ]] || ok=0
        done
        ((ok)) && return 0
        sleep 0.5
    done
    die "the agents' /flows never answered $want"
}
set_flow_log() {
    local on=$1
    kubectl -n weft-system get ds weft-agent -o json \
        | jq --argjson on "$on" '.spec.template.spec.containers |= map(if .name == "agent" then .args = ([.args[] | select(startswith("--flow-log") | not)] + (if $on then [] else ["--flow-log=false"] end)) else . end)' \
        | kubectl replace -f - >&2
    if [[ $on == true ]]; then agents_flow_log 200; else agents_flow_log 404; fi
    # The agents' policy tables are back before measuring.
    until "$WEFT" --name $NAME exec -n bench-flows client -- "$PY" -c "import socket; socket.create_connection(('$SERVER', 7777), timeout=1).close()" 2>/dev/null; do sleep 0.2; done
}
# Each run starts from empty conntrack tables on both nodes (inside the
# cluster's node namespaces): a run leaves ~20k TIME_WAIT entries behind,
# which would slow whichever run comes next.
flush() {
    local node
    for node in node-1 node-2; do
        "$WEFT" --name $NAME exec --node $node -- conntrack -F >/dev/null 2>&1 || true
    done
}
rate() {
    flush
    timeout -k 5 $((SECS + 30)) "$WEFT" --name $NAME exec -n bench-flows client -- "$PY" "$RR" client "$SERVER" 7777 "$SECS" | jq -r .rate
}
on=() off=()
measure_on() {
    set_flow_log true
    on+=("$(rate)")
    lost=$("$WEFT" --name $NAME flows -n bench-flows -o json | jq '[.lost[].bound] | add')
}
measure_off() {
    set_flow_log false
    off+=("$(rate)")
}
# Alternating order (on, off / off, on): what drifts over a run cancels.
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then measure_on; measure_off; else measure_off; measure_on; fi
    log "round $r: with flow log ${on[-1]}/s (records pushed out of the logs so far: $lost), without ${off[-1]}/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m_on=$(median "${on[@]}") m_off=$(median "${off[@]}")
echo "| path | connections/s (median of $ROUNDS × ${SECS} s) |"
echo "|---|---|"
echo "| pod → pod across nodes, policy allows, flow log on | $m_on |"
echo "| same, flow log off (anchor) | $m_off |"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "| ratio on/off | %.3f |\n", a / b }'
