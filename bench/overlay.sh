#!/usr/bin/env bash
# Pod data path: TCP throughput and TCP connect+request/response rate on
#   1. a raw veth pair between two namespaces (the limit on this machine),
#   2. pod <-> pod on one node (cluster ovx, vxlan backend),
#   3. pod <-> pod across nodes, --backend vxlan (cluster ovx),
#   4. pod <-> pod across nodes, --backend host-gw (cluster ohg).
#
#   sudo bench/overlay.sh > result.md      # markdown to stdout, progress to stderr
#   sudo RUNS=5 SECS=10 bench/overlay.sh
#
# Env: RUNS (runs per measurement, median reported; default 3), SECS (iperf3
#      -t; default 5), RR_SECS (seconds per rate run; default 3), WEFT (a built
#      weft binary: skip the cargo build), CARGO_TARGET_DIR (default
#      /var/tmp/weft-target).
#
# Throughput: iperf3 -c SERVER -t SECS -J, end.sum_received.bits_per_second
# (one TCP stream).  Rate: bench/rr.py (Python; netperf is not in Debian main):
# one connection at a time, connect, 64 B request, 64 B echo, close.
# If `weft up --help` has no --backend yet, the cross-node rows read
# "n/a (no --backend)" and the same-node row runs on the default cluster.
#
# Safety: the root network namespace is never touched (it is diffed at exit to
# prove it).  The script creates the namespaces weft-bench-ovl-a/-b and the
# clusters ovx and ohg, and removes them on any exit (error, Ctrl-C).  Every
# load is bounded in time.  Processes it started are ended by pid.
set -euo pipefail

RUNS=${RUNS:-3}
SECS=${SECS:-5}
RR_SECS=${RR_SECS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
NS_A=weft-bench-ovl-a   # raw baseline: server side, 192.168.77.1
NS_B=weft-bench-ovl-b   # raw baseline: client side, 192.168.77.2
CL_VX=ovx               # cluster, --backend vxlan (or default without --backend)
CL_HG=ohg               # cluster, --backend host-gw
IPERF_PORT=5201
RR_PORT=7777

log() { echo "overlay.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (creates network namespaces and clusters)"
[[ $RUNS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ && $RR_SECS =~ ^[1-9][0-9]*$ ]] \
    || die "RUNS, SECS and RR_SECS must be positive integers"

# Two runs would share namespace and cluster names: lock the script file itself.
exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/overlay.sh run is in progress"

# --- dependencies -----------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v iperf3 >/dev/null || missing+=(iperf3)
[[ -x /usr/bin/python3 ]] || command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
IPERF3=$(command -v iperf3)
# The same interpreter on every path (pods get /usr/bin on their PATH, not pyenv's).
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
RR=$REPO/bench/rr.py

if [[ -n ${WEFT:-} ]]; then
    [[ -x $WEFT ]] || die "WEFT=$WEFT is not an executable"
elif command -v cargo >/dev/null; then
    log "building weft (cargo build --release --locked --bins, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --locked --bins >&2) \
        || die "cargo build failed (WEFT=/path/to/weft runs a binary built earlier)"
    WEFT=$CARGO_TARGET_DIR/release/weft
else
    WEFT=$CARGO_TARGET_DIR/release/weft
    [[ -x $WEFT ]] || die "no cargo on PATH and no $WEFT (sudo drops PATH: try sudo env PATH=\$PATH …, or WEFT=…)"
    log "no cargo on PATH: using the existing $WEFT"
fi
WEFT=$(realpath "$WEFT")

HAVE_BACKEND=0
"$WEFT" up --help 2>/dev/null | grep -q -- '--backend' && HAVE_BACKEND=1

# --- root netns snapshot + cleanup -----------------------------------------
root_state() {
    ip -o link
    ip -o addr | sed 's/ valid_lft.*//'   # lifetimes tick; not a change we made
    ip route show table all
    ip -6 route show table all
    ip rule; ip -6 rule
    nft list ruleset 2>/dev/null || true
    sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding
}

TMP=$(mktemp -d /tmp/weft-bench-ovl.XXXXXX)
root_state >"$TMP/root.before" 2>&1
RAW_PIDS=()
CLUSTERS=()

cleanup() {
    local rc=$? pid ns c
    trap - EXIT INT TERM
    for pid in "${RAW_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "$NS_A" "$NS_B"; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then ip netns del "$ns" || rc=1; fi
    done
    for c in "${CLUSTERS[@]}"; do
        log "weft --name $c down"
        "$WEFT" --name "$c" down >&2 || { log "error: weft --name $c down failed"; rc=1; }
    done
    root_state >"$TMP/root.after" 2>&1
    if ! diff -u "$TMP/root.before" "$TMP/root.after" >&2; then
        log "error: root network namespace changed during the bench (diff above)"
        rc=1
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

for ns in "$NS_A" "$NS_B"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        log "removing leftover netns $ns from an earlier run"
        ip netns del "$ns"
    fi
done

# --- measuring --------------------------------------------------------------
declare -A TPUT RATE NOTE DETAIL

median() { "$PY" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# measure KEY SERVER_IP RUNNER… : the runner (e.g. `ip netns exec NS` or
# `weft exec POD --`) runs iperf3 and rr.py in the client's namespaces.
measure() {
    local key=$1 ip=$2 out bps rate r try tputs=() rates=() retr=()
    shift 2
    # Reachability (and ARP / neighbour warm-up): a short untimed rate run.
    if ! out=$(timeout -k 5 30 "$@" "$PY" "$RR" client "$ip" "$RR_PORT" 1 2>>"$TMP/err") \
        || [[ $(jq -r .transactions <<<"$out" 2>/dev/null) == 0 ]]; then
        log "$key: $ip:$RR_PORT unreachable from the client (${out:-no output}; $(tail -n1 "$TMP/err" 2>/dev/null))"
        NOTE[$key]="unreachable"
        return 0
    fi
    for ((r = 1; r <= RUNS; r++)); do
        for try in 1 2 3; do   # iperf3 -s serves one test at a time; the last may still be closing
            out=$(timeout -k 5 $((SECS + 30)) "$@" "$IPERF3" -c "$ip" -p "$IPERF_PORT" \
                -t "$SECS" -J --connect-timeout 3000 2>>"$TMP/err") && break
            log "$key: iperf3 run $r try $try failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)"
            out=
            sleep 1
        done
        [[ -n $out ]] || { NOTE[$key]="iperf3 failed"; return 0; }
        bps=$(jq -r .end.sum_received.bits_per_second <<<"$out")
        tputs+=("$bps")
        retr+=("$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out")")
        log "$key: iperf3 run $r: $(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s"
    done
    for ((r = 1; r <= RUNS; r++)); do
        out=$(timeout -k 5 $((RR_SECS + 30)) "$@" "$PY" "$RR" client "$ip" "$RR_PORT" "$RR_SECS" 2>>"$TMP/err") \
            || { log "$key: rate run $r failed: $out"; NOTE[$key]="rate run failed"; return 0; }
        rate=$(jq -r .rate <<<"$out")
        rates+=("$rate")
        log "$key: rate run $r: $rate transactions/s (errors: $(jq -r .errors <<<"$out"))"
        sleep 1
    done
    TPUT[$key]=$(median "${tputs[@]}")
    RATE[$key]=$(median "${rates[@]}")
    DETAIL[$key]="Gbit/s $(for b in "${tputs[@]}"; do awk -v b="$b" 'BEGIN { printf "%.2f ", b / 1e9 }'; done)(retransmits ${retr[*]}); trans/s ${rates[*]}"
}

# 1. raw veth ---------------------------------------------------------------
raw() {
    log "raw veth: $NS_A (192.168.77.1) <-> $NS_B (192.168.77.2), MTU 1500"
    ip netns add "$NS_A"
    ip netns add "$NS_B"
    ip -n "$NS_A" link set lo up
    ip -n "$NS_B" link set lo up
    # Created inside NS_A with its peer put straight into NS_B: never in the root netns.
    ip -n "$NS_A" link add ovl0 mtu 1500 type veth peer name ovl0 mtu 1500 netns "$NS_B"
    ip -n "$NS_A" addr add 192.168.77.1/24 dev ovl0
    ip -n "$NS_B" addr add 192.168.77.2/24 dev ovl0
    ip -n "$NS_A" link set ovl0 up
    ip -n "$NS_B" link set ovl0 up
    ip netns exec "$NS_A" "$IPERF3" -s -p "$IPERF_PORT" -B 192.168.77.1 >"$TMP/raw-iperf3.log" 2>&1 &
    RAW_PIDS+=($!)
    ip netns exec "$NS_A" "$PY" "$RR" serve "$RR_PORT" >"$TMP/raw-rr.log" 2>&1 &
    RAW_PIDS+=($!)
    sleep 1
    measure raw 192.168.77.1 ip netns exec "$NS_B"
    local pid
    for pid in "${RAW_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    RAW_PIDS=()
    ip netns del "$NS_A"
    ip netns del "$NS_B"
}

# 2.-4. clusters --------------------------------------------------------------
sed -e "s|@PYTHON@|$PY|g" -e "s|@RR@|$RR|g" "$REPO/bench/manifests/overlay.yaml" >"$TMP/overlay.yaml"

# pod_ips CLUSTER: "name ip" per line once ovl-server, ovl-local and ovl-remote are Running.
pod_ips() {
    local c=$1 deadline=$((SECONDS + 90)) out
    while ((SECONDS < deadline)); do
        out=$("$WEFT" --name "$c" get pods -o json 2>>"$TMP/err" | jq -r '
            (if type == "array" then . else .items end)[]
            | select(.status.phase == "Running" and (.status.podIP // "") != "")
            | "\(.metadata.name) \(.status.podIP) \(.spec.nodeName)"' 2>/dev/null || true)
        if [[ $(grep -cE '^ovl-(server|local|remote) ' <<<"$out") == 3 ]]; then
            echo "$out"
            return 0
        fi
        sleep 1
    done
    log "$c: pods not Running after 90 s: $("$WEFT" --name "$c" get pods -o wide 2>&1 | tr '\n' ';')"
    return 1
}

# cluster NAME BACKEND(empty: no flag) KEY_SAME(or -) KEY_CROSS(or -)
cluster() {
    local c=$1 backend=$2 same=$3 cross=$4 ips server k
    "$WEFT" --name "$c" down >/dev/null 2>&1 || true   # a leftover of an interrupted run
    CLUSTERS+=("$c")
    log "cluster $c: weft up --nodes 2${backend:+ --backend $backend}"
    if ! "$WEFT" --name "$c" up -f "$TMP/overlay.yaml" --nodes 2 ${backend:+--backend "$backend"} >&2 \
        || ! ips=$(pod_ips "$c"); then
        for k in "$same" "$cross"; do [[ $k == - ]] || NOTE[$k]="weft up failed"; done
    else
        log "$c: pods: $(tr '\n' ';' <<<"$ips")"
        server=$(awk '$1 == "ovl-server" { print $2 }' <<<"$ips")
        MTU[$c]=$("$WEFT" --name "$c" exec ovl-local -- ip -o link show eth0 2>/dev/null \
            | grep -o 'mtu [0-9]*' | cut -d' ' -f2 || true)
        [[ $same == - ]] || measure "$same" "$server" "$WEFT" --name "$c" exec ovl-local --
        [[ $cross == - ]] || measure "$cross" "$server" "$WEFT" --name "$c" exec ovl-remote --
    fi
    log "cluster $c: weft down"
    "$WEFT" --name "$c" down >&2 || die "weft --name $c down failed"
    local kept=()
    for k in "${CLUSTERS[@]}"; do [[ $k == "$c" ]] || kept+=("$k"); done
    CLUSTERS=("${kept[@]}")
}

declare -A MTU
raw
if ((HAVE_BACKEND)); then
    cluster "$CL_VX" vxlan same vxlan
    cluster "$CL_HG" host-gw - hostgw
else
    log "weft up has no --backend yet: same-node only (cross-node rows: n/a)"
    cluster "$CL_VX" "" same -
    NOTE[vxlan]="n/a (no --backend)"
    NOTE[hostgw]="n/a (no --backend)"
fi

# --- report -----------------------------------------------------------------
label() {
    case $1 in
        raw) echo "raw veth, netns <-> netns (MTU 1500)" ;;
        same) echo "pod <-> pod, same node$(((HAVE_BACKEND)) && echo ' (vxlan cluster)')" ;;
        vxlan) echo "pod <-> pod, across nodes, --backend vxlan" ;;
        hostgw) echo "pod <-> pod, across nodes, --backend host-gw" ;;
    esac
}
ratio() { # value raw
    if [[ -n $1 && -n $2 ]]; then awk -v v="$1" -v r="$2" 'BEGIN { printf "%.2f", v / r }'; else echo "–"; fi
}

echo "## Pod data path: raw veth vs weft pod <-> pod"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -r)"
echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs)"
echo "- iperf3: $("$IPERF3" --version 2>&1 | head -n1)"
echo "- rate tool: bench/rr.py ($("$PY" --version 2>&1)), one connection at a time: connect, 64 B request, 64 B echo, server closes (netperf TCP_CRR's shape; netperf is not in Debian main)"
echo "- weft: $WEFT (sha256 $(sha256sum "$WEFT" | cut -c1-12), repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && echo ' + uncommitted changes')); --backend: $(((HAVE_BACKEND)) && echo yes || echo 'not yet')"
echo "- method: throughput = median of $RUNS × \`iperf3 -c SERVER -t $SECS -J\` (1 TCP stream, end.sum_received); rate = median of $RUNS × ${RR_SECS} s; clients run in the pod with \`weft exec\`, server pod pinned to node-1"
mtus=""
for c in "${!MTU[@]}"; do mtus+="$c ${MTU[$c]:-?}, "; done
[[ -z $mtus ]] || echo "- pod eth0 MTU: ${mtus%, }"
echo
echo "| path | throughput (Gbit/s) | vs raw | connect+RR (trans/s) | vs raw |"
echo "|---|---:|---:|---:|---:|"
for key in raw same vxlan hostgw; do
    if [[ -n ${TPUT[$key]:-} ]]; then
        printf '| %s | %s | %s | %s | %s |\n' "$(label $key)" \
            "$(awk -v b="${TPUT[$key]}" 'BEGIN { printf "%.2f", b / 1e9 }')" \
            "$(ratio "${TPUT[$key]}" "${TPUT[raw]:-}")" \
            "$(awk -v r="${RATE[$key]}" 'BEGIN { printf "%.0f", r }')" \
            "$(ratio "${RATE[$key]}" "${RATE[raw]:-}")"
    else
        printf '| %s | %s | | %s | |\n' "$(label $key)" "${NOTE[$key]:-n/a}" "${NOTE[$key]:-n/a}"
    fi
done
echo
echo "Runs:"
echo
for key in raw same vxlan hostgw; do
    [[ -z ${DETAIL[$key]:-} ]] || echo "- $(label $key): ${DETAIL[$key]}"
done
