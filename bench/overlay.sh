#!/usr/bin/env bash
# Pod data path: TCP throughput and TCP connect+request/response rate on
#   1. a raw veth pair between two namespaces (the limit on this machine),
#   2. pod <-> pod on one node (cluster ovx, vxlan backend),
#   3. pod <-> pod across nodes, --backend vxlan (cluster ovx),
#   4. pod <-> pod across nodes, --backend host-gw (cluster ohg),
#   4b. pod <-> pod across nodes, --backend wireguard (cluster owgb; weft's
#      userspace WireGuard, GotaTun),
#   and the anchors that bound any VXLAN CNI, on the same shape of underlay
#   as weft up's nodes (veth, bridge, veth, GRO on like weft up sets it):
#   5. bare kernel VXLAN between two namespaces: two vxlan devices, static
#      FDB/neighbour, no bridge and no pod veth behind them,
#   6. the same two namespaces without VXLAN (their underlay),
#   7. wireguard-go (Debian's) between the same two namespaces: one device in
#      each, peers of each other, configured with wg.
#   weft's vxlan path is reported against 5, host-gw against 6, wireguard
#   against 7.
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
# clusters ovx, ohg and owgb, and removes them on any exit (error, Ctrl-C).  Every
# load is bounded in time.  Processes it started are ended by pid.
set -euo pipefail

RUNS=${RUNS:-3}
SECS=${SECS:-5}
RR_SECS=${RR_SECS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
NS_A=weft-bench-ovl-a   # raw baseline: server side, 192.168.77.1
NS_B=weft-bench-ovl-b   # raw baseline: client side, 192.168.77.2
NS_F=weft-bench-ovl-f   # bare anchors: the bridge between NS_C and NS_D
NS_C=weft-bench-ovl-c   # bare anchors: server side, 192.168.78.1, vxlan 10.250.0.1
NS_D=weft-bench-ovl-d   # bare anchors: client side, 192.168.78.2, vxlan 10.250.0.2
CL_VX=ovx               # cluster, --backend vxlan (or default without --backend)
CL_HG=ohg               # cluster, --backend host-gw
CL_WG=owgb              # cluster, --backend wireguard
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
command -v jq >/dev/null || missing+=(jq)
command -v ethtool >/dev/null || missing+=(ethtool)
command -v wireguard-go >/dev/null || missing+=(wireguard-go)
command -v wg >/dev/null || missing+=(wireguard-tools)
[[ -x /usr/bin/python3 ]] || command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    # No recommends: wireguard-tools recommends a kernel image (for the module).
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
IPERF3=$(command -v iperf3)
# The same interpreter on every path (pods get /usr/bin on their PATH, not pyenv's).
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
RR=$REPO/bench/rr.py

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
find_weft

HAVE_BACKEND=0
# (Captured first: with pipefail, grep -q closing the pipe early would read as "no".)
up_help=$("$WEFT" up --help 2>&1 || true)
[[ $up_help == *--backend* ]] && HAVE_BACKEND=1

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
    for ns in "$NS_A" "$NS_B" "$NS_C" "$NS_D" "$NS_F"; do
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

for ns in "$NS_A" "$NS_B" "$NS_C" "$NS_D" "$NS_F"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        log "removing leftover netns $ns from an earlier run"
        ip netns del "$ns"
    fi
done

# --- setting up -------------------------------------------------------------
declare -A SERVER NOTE MTU
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# The raw baseline: two namespaces joined by a veth pair, servers in NS_A.
setup_raw() {
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
    SERVER[raw]=192.168.77.1
}

# The anchors: NS_C and NS_D on a bridge in NS_F (as nodes on fabric0),
# plus a vxlan device in each with static FDB and neighbour entries (no
# learning, as weft programs its own). Servers in NS_C on both addresses.
setup_bare() {
    log "bare anchors: $NS_C (192.168.78.1, vxlan 10.250.0.1) <-> bridge in $NS_F <-> $NS_D (192.168.78.2, vxlan 10.250.0.2)"
    local ns
    for ns in "$NS_F" "$NS_C" "$NS_D"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip -n "$NS_F" link add br0 type bridge
    ip -n "$NS_F" link set br0 up
    local i=1 other mac
    for ns in "$NS_C" "$NS_D"; do
        # Made in NS_F with the peer put straight into the node side: never in the root netns.
        ip -n "$NS_F" link add "p$i" mtu 1500 type veth peer name eth0 mtu 1500 netns "$ns"
        ip -n "$NS_F" link set "p$i" master br0 up
        ip -n "$ns" addr add "192.168.78.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip netns exec "$NS_F" ethtool -K "p$i" gro on >/dev/null 2>&1 || true
        ip netns exec "$ns" ethtool -K eth0 gro on >/dev/null 2>&1 || true
        ip -n "$ns" link add vx0 address "0e:57:00:00:00:0$i" mtu 1450 type vxlan id 42 \
            local "192.168.78.$i" dstport 4789 nolearning
        ip -n "$ns" addr add "10.250.0.$i/24" dev vx0
        ip -n "$ns" link set vx0 up
        i=$((i + 1))
    done
    for i in 1 2; do
        other=$((3 - i)) ns=$([[ $i == 1 ]] && echo "$NS_C" || echo "$NS_D")
        mac="0e:57:00:00:00:0$other"
        ip -n "$ns" neigh replace "10.250.0.$other" lladdr "$mac" dev vx0 nud permanent
        bridge -n "$ns" fdb append "$mac" dev vx0 dst "192.168.78.$other"
    done
    ip netns exec "$NS_C" "$IPERF3" -s -p "$IPERF_PORT" >"$TMP/bare-iperf3.log" 2>&1 &
    RAW_PIDS+=($!)
    ip netns exec "$NS_C" "$PY" "$RR" serve "$RR_PORT" >"$TMP/bare-rr.log" 2>&1 &
    RAW_PIDS+=($!)
    SERVER[bare]=192.168.78.1
    SERVER[barevx]=10.250.0.1
}

# The WireGuard anchor: wireguard-go in NS_C (wgc0, 10.251.0.1) and NS_D
# (wgd0, 10.251.0.2) over their 192.168.78.0/24 underlay, MTU 1420 as weft's
# pods get. Distinct device names: wireguard-go's control socket is
# /var/run/wireguard/NAME.sock, one path for the whole machine.
setup_barewg() {
    log "wireguard-go anchor: $NS_C wgc0 10.251.0.1 <-> $NS_D wgd0 10.251.0.2"
    local i ns dev other
    for i in 1 2; do
        ns=$([[ $i == 1 ]] && echo "$NS_C" || echo "$NS_D")
        dev=$([[ $i == 1 ]] && echo wgc0 || echo wgd0)
        (umask 077 && wg genkey >"$TMP/wg$i.key")
        wg pubkey <"$TMP/wg$i.key" >"$TMP/wg$i.pub"
        # (wireguard-go refuses to run on Linux unless told the kernel has no WireGuard.)
        WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 WG_PROCESS_FOREGROUND=1 \
            ip netns exec "$ns" wireguard-go -f "$dev" >"$TMP/wg$i.log" 2>&1 &
        RAW_PIDS+=($!)
    done
    for i in 1 2; do
        ns=$([[ $i == 1 ]] && echo "$NS_C" || echo "$NS_D")
        dev=$([[ $i == 1 ]] && echo wgc0 || echo wgd0)
        other=$((3 - i))
        local deadline=$((SECONDS + 10))
        until [[ -S /var/run/wireguard/$dev.sock ]]; do
            ((SECONDS < deadline)) || die "wireguard-go $dev did not start: $(cat "$TMP/wg$i.log")"
            sleep 0.1
        done
        ip netns exec "$ns" wg set "$dev" private-key "$TMP/wg$i.key" listen-port 51820 \
            peer "$(cat "$TMP/wg$other.pub")" endpoint "192.168.78.$other:51820" allowed-ips "10.251.0.$other/32"
        ip -n "$ns" addr add "10.251.0.$i/24" dev "$dev"
        ip -n "$ns" link set "$dev" mtu 1420 up
    done
    SERVER[barewg]=10.251.0.1
}

sed -e "s|@PYTHON@|$PY|g" -e "s|@RR@|$RR|g" "$REPO/bench/manifests/overlay.yaml" >"$TMP/overlay.yaml"

# pod_ips CLUSTER: "name ip node" per line once ovl-server, ovl-local and ovl-remote are Running.
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

# setup_cluster NAME BACKEND(empty: no flag) KEY… : weft up with the bench pods;
# every KEY (a path measured in this cluster) gets the server pod's IP.
setup_cluster() {
    local c=$1 backend=$2 ips server k
    shift 2
    "$WEFT" --name "$c" down >/dev/null 2>&1 || true   # a leftover of an interrupted run
    CLUSTERS+=("$c")
    log "cluster $c: weft up --nodes 2${backend:+ --backend $backend}"
    if ! "$WEFT" --name "$c" up -f "$TMP/overlay.yaml" --nodes 2 ${backend:+--backend "$backend"} >&2 \
        || ! ips=$(pod_ips "$c"); then
        for k in "$@"; do NOTE[$k]="weft up failed"; done
        return 0
    fi
    log "$c: pods: $(tr '\n' ';' <<<"$ips")"
    server=$(awk '$1 == "ovl-server" { print $2 }' <<<"$ips")
    for k in "$@"; do SERVER[$k]=$server; done
    MTU[$c]=$("$WEFT" --name "$c" exec ovl-local -- ip -o link show eth0 2>/dev/null \
        | grep -o 'mtu [0-9]*' | cut -d' ' -f2 || true)
}

# in_client KEY LIMIT CMD… : runs CMD in the client's namespaces of path KEY,
# killed after LIMIT seconds (a safety net: every CMD here bounds itself).
in_client() {
    local key=$1 limit=$2
    shift 2
    case $key in
        raw) timeout -k 5 "$limit" ip netns exec "$NS_B" "$@" ;;
        bare | barevx | barewg) timeout -k 5 "$limit" ip netns exec "$NS_D" "$@" ;;
        same) timeout -k 5 "$limit" "$WEFT" --name "$CL_VX" exec ovl-local -- "$@" ;;
        vxlan) timeout -k 5 "$limit" "$WEFT" --name "$CL_VX" exec ovl-remote -- "$@" ;;
        hostgw) timeout -k 5 "$limit" "$WEFT" --name "$CL_HG" exec ovl-remote -- "$@" ;;
        wg) timeout -k 5 "$limit" "$WEFT" --name "$CL_WG" exec ovl-remote -- "$@" ;;
        nodes) timeout -k 5 "$limit" "$WEFT" --name "$CL_HG" exec --node node-2 -- "$@" ;;
    esac
}

setup_raw
setup_bare
setup_barewg
if ((HAVE_BACKEND)); then
    setup_cluster "$CL_VX" vxlan same vxlan
    setup_cluster "$CL_HG" host-gw hostgw
    setup_cluster "$CL_WG" wireguard wg
    # Node to node over the fabric (veth, bridge, veth): the underlay the
    # cross-node pod paths ride on. Servers in node-1's namespace.
    if [[ -n ${SERVER[hostgw]:-} ]]; then
        ip netns exec "weft-$CL_HG-node-1" "$IPERF3" -s -p "$IPERF_PORT" -B 192.168.1.10 >"$TMP/nodes-iperf3.log" 2>&1 &
        RAW_PIDS+=($!)
        ip netns exec "weft-$CL_HG-node-1" "$PY" "$RR" serve "$RR_PORT" >"$TMP/nodes-rr.log" 2>&1 &
        RAW_PIDS+=($!)
        SERVER[nodes]=192.168.1.10
    fi
else
    log "weft up has no --backend yet: same-node only (cross-node rows: n/a)"
    setup_cluster "$CL_VX" "" same
    NOTE[vxlan]="n/a (no --backend)"
    NOTE[hostgw]="n/a (no --backend)"
fi

# --- measuring --------------------------------------------------------------
KEYS="raw bare barevx barewg nodes same vxlan hostgw wg"
# All paths stay up together and every round visits each of them once, so a
# busy moment on this shared machine spreads over the paths instead of biasing one.
declare -A TPUTS RATES RETR
active=()
for key in $KEYS; do
    [[ -n ${SERVER[$key]:-} ]] || continue
    # Reachability (and ARP / neighbour warm-up): a short untimed rate run.
    ok=0
    for try in 1 2 3; do
        if out=$(in_client "$key" 30 "$PY" "$RR" client "${SERVER[$key]}" "$RR_PORT" 1 2>>"$TMP/err") \
            && [[ $(jq -r .transactions <<<"$out" 2>/dev/null) -gt 0 ]]; then
            ok=1
            break
        fi
        sleep 1
    done
    if ((ok)); then
        active+=("$key")
    else
        log "$key: ${SERVER[$key]}:$RR_PORT unreachable from the client (${out:-no output}; $(tail -n1 "$TMP/err" 2>/dev/null))"
        NOTE[$key]="unreachable"
    fi
done

iperf_once() { # KEY ROUND: one iperf3 run, appended to TPUTS/RETR
    local key=$1 r=$2 try out bps
    for try in 1 2 3; do   # iperf3 -s serves one test at a time; the last may still be closing
        if out=$(in_client "$key" $((SECS + 30)) "$IPERF3" -c "${SERVER[$key]}" \
            -p "$IPERF_PORT" -t "$SECS" -J --connect-timeout 3000 2>>"$TMP/err"); then
            bps=$(jq -r .end.sum_received.bits_per_second <<<"$out")
            TPUTS[$key]+="$bps "
            RETR[$key]+="$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out") "
            log "$key: iperf3 round $r: $(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s"
            return 0
        fi
        log "$key: iperf3 round $r try $try failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)"
        sleep 1
    done
    NOTE[$key]="iperf3 failed"
}

rate_once() { # KEY ROUND: one rate run, appended to RATES
    local key=$1 r=$2 out rate
    if out=$(in_client "$key" $((RR_SECS + 30)) "$PY" "$RR" client \
        "${SERVER[$key]}" "$RR_PORT" "$RR_SECS" 2>>"$TMP/err"); then
        rate=$(jq -r .rate <<<"$out")
        RATES[$key]+="$rate "
        log "$key: rate round $r: $rate transactions/s (errors: $(jq -r .errors <<<"$out"))"
    else
        log "$key: rate round $r failed: $out"
        NOTE[$key]="rate run failed"
    fi
}

for ((r = 1; r <= RUNS; r++)); do
    for key in "${active[@]}"; do iperf_once "$key" "$r"; done
done
for ((r = 1; r <= RUNS; r++)); do
    for key in "${active[@]}"; do rate_once "$key" "$r"; sleep 1; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

median() { # numbers… (empty if none)
    (($#)) || return 0
    "$PY" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}
declare -A TPUT RATE
for key in "${active[@]}"; do
    # shellcheck disable=SC2086  # word-split the space-separated samples
    TPUT[$key]=$(median ${TPUTS[$key]:-})
    # shellcheck disable=SC2086
    RATE[$key]=$(median ${RATES[$key]:-})
done

# --- report -----------------------------------------------------------------
label() {
    case $1 in
        raw) echo "raw veth, netns <-> netns (MTU 1500)" ;;
        bare) echo "anchor: two namespaces over a bridge (veth, bridge, veth), no VXLAN" ;;
        barevx) echo "anchor: bare kernel VXLAN between the same two namespaces (MTU 1450)" ;;
        barewg) echo "anchor: wireguard-go between the same two namespaces (MTU 1420)" ;;
        nodes) echo "node <-> node over the fabric bridge (underlay)" ;;
        same) echo "pod <-> pod, same node$(((HAVE_BACKEND)) && echo ' (vxlan cluster)')" ;;
        vxlan) echo "pod <-> pod, across nodes, --backend vxlan" ;;
        hostgw) echo "pod <-> pod, across nodes, --backend host-gw" ;;
        wg) echo "pod <-> pod, across nodes, --backend wireguard (userspace, GotaTun)" ;;
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
echo "- load average: $LOAD_START at the start, $LOAD_END at the end"
echo "- method: throughput = median of $RUNS × \`iperf3 -c SERVER -t $SECS -J\` (1 TCP stream, end.sum_received); rate = median of $RUNS × ${RR_SECS} s; clients run in the pod with \`weft exec\`, server pod pinned to node-1; all paths up at once, each round visits every path once"
mtus=""
for c in "${!MTU[@]}"; do mtus+="$c ${MTU[$c]:-?}, "; done
[[ -z $mtus ]] || echo "- pod eth0 MTU: ${mtus%, }"
echo
echo "| path | throughput (Gbit/s) | vs raw | connect+RR (trans/s) | vs raw |"
echo "|---|---:|---:|---:|---:|"
for key in $KEYS; do
    note=${NOTE[$key]:-n/a}
    if [[ -n ${TPUT[$key]:-} ]]; then
        t=$(awk -v b="${TPUT[$key]}" 'BEGIN { printf "%.2f", b / 1e9 }') tr=$(ratio "${TPUT[$key]}" "${TPUT[raw]:-}")
    else
        t=$note tr=
    fi
    if [[ -n ${RATE[$key]:-} ]]; then
        q=$(awk -v r="${RATE[$key]}" 'BEGIN { printf "%.0f", r }') qr=$(ratio "${RATE[$key]}" "${RATE[raw]:-}")
    else
        q=$note qr=
    fi
    echo "| $(label "$key") | $t | $tr | $q | $qr |"
done
echo
echo "Against the anchors (same run):"
echo
echo "| weft path | anchor | throughput ratio | connect+RR ratio |"
echo "|---|---|---:|---:|"
echo "| --backend vxlan, pod <-> pod across nodes | bare kernel VXLAN | $(ratio "${TPUT[vxlan]:-}" "${TPUT[barevx]:-}") | $(ratio "${RATE[vxlan]:-}" "${RATE[barevx]:-}") |"
echo "| --backend host-gw, pod <-> pod across nodes | the same underlay without VXLAN | $(ratio "${TPUT[hostgw]:-}" "${TPUT[bare]:-}") | $(ratio "${RATE[hostgw]:-}" "${RATE[bare]:-}") |"
echo "| --backend wireguard, pod <-> pod across nodes | wireguard-go between the same two namespaces | $(ratio "${TPUT[wg]:-}" "${TPUT[barewg]:-}") | $(ratio "${RATE[wg]:-}" "${RATE[barewg]:-}") |"
echo "| node <-> node (weft up's underlay) | the same underlay without VXLAN | $(ratio "${TPUT[nodes]:-}" "${TPUT[bare]:-}") | $(ratio "${RATE[nodes]:-}" "${RATE[bare]:-}") |"
echo
echo "Runs (in round order):"
echo
for key in $KEYS; do
    [[ -n ${TPUTS[$key]:-}${RATES[$key]:-} ]] || continue
    gbps=$(for b in ${TPUTS[$key]:-}; do awk -v b="$b" 'BEGIN { printf "%.2f ", b / 1e9 }'; done)
    echo "- $(label "$key"): Gbit/s ${gbps:-–} (retransmits $(echo ${RETR[$key]:-–})); trans/s $(echo ${RATES[$key]:-–})" | tr -s ' ' 
done
