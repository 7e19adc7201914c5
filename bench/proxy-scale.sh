#!/usr/bin/env bash
# Services at scale: weft's proxy table (inet weft-proxy, compile +
# Syncer::sync, as the agent runs them) against kube-proxy's iptables mode
# (KUBE-SERVICES -> KUBE-SVC-* with statistic random -> KUBE-SEP-* DNAT,
# loaded with iptables-restore), with N Services of 10 endpoints each.
# At each N:
#   (a) full sync time from an empty table (weft: compile and write apart;
#       anchor: generate and iptables-restore apart),
#   (b) weft: time to apply a one-endpoint change (median of CHANGES),
#   (c) size: chains, rules, set/map elements, bytes of the listing,
#   (d) new TCP connections per second through the measured Service's
#       ClusterIP from a pod, and connect latency p50/p99.
#
#   sudo bench/proxy-scale.sh > result.md    # markdown on stdout, progress on stderr
#   sudo NS="1000 10000" RUNS=5 bench/proxy-scale.sh
#
# Env: NS (Service counts; default "1000 10000 50000"), CHANGES (one-endpoint
#      changes timed per N; default 20), RUNS (rate runs per N and mode,
#      median reported; default 3), RR_SECS (seconds per rate run; default 3),
#      MAX_CONNS (connections per rate run at most; default 40000),
#      STEP_TIMEOUT (seconds per step; default 900), ANCHOR (legacy or nft:
#      the iptables backend; default legacy when iptables-legacy-restore
#      exists), BIN (a built proxy_scale example: skip the cargo build),
#      CARGO_TARGET_DIR (default /var/tmp/weft-target), ANCHOR_NS (the
#      Service counts the anchor runs at; default NS — e.g. ANCHOR_NS= to
#      measure weft alone).
#
# Topology, one copy per mode (m = weft, ipt), nothing in the root netns:
#   weft-bench-px-m-pod  eth0 10.244.0.2/24 (+ one source address per rate
#                        run) --veth-- pod0 10.244.0.1/24
#   weft-bench-px-m-node the node: holds the Services table, forwards
#   weft-bench-px-m-be   eth0 10.244.1.2-.11/24 --veth-- be0 10.244.1.1/24;
#                        one accept loop on 0.0.0.0:8080 answers for all ten
#                        endpoints of the measured Service (the one in the
#                        middle of the list; all other endpoints are
#                        addresses without processes).
# The driver (crates/weft-proxy/examples/proxy_scale.rs) builds the Services
# and EndpointSlices as k8s-openapi objects in memory and runs compile and
# sync in-process, not behind an API server and the agent's watches.
#
# The rate client connects one at a time from its own source port (so every
# connection is new to conntrack and its first packet walks the nat rules),
# sends 1 byte, reads the echo and closes with a reset (SO_LINGER 0: no
# TIME_WAIT). nf_conntrack_max cannot be raised inside a namespace on recent
# kernels and is never changed here: MAX_CONNS keeps a run well below it.
#
# A full nft sync runs in one netlink batch the kernel processes in a single
# system call, which a signal cannot cut short; so a weft full sync whose
# time, predicted from the previous N (quadratically), exceeds STEP_TIMEOUT
# is not started and its row says so.
#
# Safety: the root network namespace is never touched (diffed at exit to
# prove it). The script creates only weft-bench-px-* namespaces and removes
# them on any exit. Every step is bounded in time; processes it started are
# ended by pid.
set -euo pipefail

NS=${NS:-"1000 10000 50000"}
CHANGES=${CHANGES:-20}
RUNS=${RUNS:-3}
RR_SECS=${RR_SECS:-3}
MAX_CONNS=${MAX_CONNS:-40000}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
ANCHOR_NS=${ANCHOR_NS-$NS}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
MODES="weft ipt"
PORT=80

log() { echo "proxy-scale.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (creates network namespaces)"
for v in CHANGES RUNS RR_SECS MAX_CONNS STEP_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got ${!v})"
done
for n in $NS; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "NS: $n is not a positive integer"; done
((MAX_CONNS <= 55000)) || die "MAX_CONNS must be at most 55000 (one source port each)"

exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/proxy-scale.sh run is in progress"

# --- dependencies -----------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v iptables-restore >/dev/null || missing+=(iptables)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi

# Debian's iptables is iptables-nft by default (update-alternatives);
# iptables-legacy is the classic anchor kube-proxy was measured on.
IPT_DEFAULT=$(readlink -f "$(command -v iptables)" 2>/dev/null || echo '?')
if [[ -z ${ANCHOR:-} ]]; then
    if command -v iptables-legacy-restore >/dev/null; then ANCHOR=legacy; else ANCHOR=nft; fi
fi
case $ANCHOR in
    legacy | nft) ;;
    *) die "ANCHOR must be legacy or nft (got $ANCHOR)" ;;
esac
IPT_RESTORE=$(command -v "iptables-$ANCHOR-restore") || die "no iptables-$ANCHOR-restore"
IPT_SAVE=$(command -v "iptables-$ANCHOR-save") || die "no iptables-$ANCHOR-save"

if [[ -n ${BIN:-} ]]; then
    [[ -x $BIN ]] || die "BIN=$BIN is not an executable"
elif command -v cargo >/dev/null; then
    log "building the driver (cargo build --release --locked -p weft-proxy --example proxy_scale)"
    (cd "$REPO" && cargo build --release --locked -p weft-proxy --example proxy_scale >&2) \
        || die "cargo build failed (BIN=/path/to/proxy_scale runs one built earlier)"
    BIN=$CARGO_TARGET_DIR/release/examples/proxy_scale
else
    BIN=$CARGO_TARGET_DIR/release/examples/proxy_scale
    [[ -x $BIN ]] || die "no cargo on PATH and no $BIN (sudo drops PATH: try sudo env PATH=\$PATH …, or BIN=…)"
fi
BIN=$(realpath "$BIN")

# --- root netns snapshot + cleanup -----------------------------------------
root_state() {
    ip -o link
    ip -o addr | sed 's/ valid_lft.*//'   # lifetimes tick; not a change we made
    ip route show table all
    ip -6 route show table all
    ip rule; ip -6 rule
    nft list ruleset 2>/dev/null || true
    # (Save lists only tables that already exist: it creates none.)
    iptables-legacy-save 2>/dev/null | grep -v '^#' || true
    iptables-nft-save 2>/dev/null | grep -v '^#' || true
    sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.netfilter.nf_conntrack_max 2>/dev/null || true
}

TMP=$(mktemp -d /tmp/weft-bench-px.XXXXXX)
root_state >"$TMP/root.before" 2>&1
PIDS=()
ALL_NS=()
for m in $MODES; do ALL_NS+=("weft-bench-px-$m-node" "weft-bench-px-$m-pod" "weft-bench-px-$m-be"); done

have_ns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

cleanup() {
    local rc=$? pid ns
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${ALL_NS[@]}"; do
        if have_ns "$ns"; then ip netns del "$ns" || rc=1; fi
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

for ns in "${ALL_NS[@]}"; do
    if have_ns "$ns"; then
        log "removing leftover netns $ns from an earlier run"
        ip netns del "$ns"
    fi
done

# --- topology -----------------------------------------------------------------
n_ns=$(wc -w <<<"$NS")
SOURCES=$((n_ns * (RUNS + 1)))   # one source address per rate run of a mode
((SOURCES <= 200)) || die "too many rate runs ($SOURCES source addresses; at most 200)"

setup_mode() { # MODE
    local m=$1 node=weft-bench-px-$1-node pod=weft-bench-px-$1-pod be=weft-bench-px-$1-be ns k
    log "$m: $pod (10.244.0.2) <-> $node <-> $be (10.244.1.2-.11, accept loop on :8080)"
    for ns in "$node" "$pod" "$be"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    # Made in the node namespace with the peer put straight into the other: never in the root netns.
    ip -n "$node" link add pod0 type veth peer name eth0 netns "$pod"
    ip -n "$node" link add be0 type veth peer name eth0 netns "$be"
    ip -n "$node" addr add 10.244.0.1/24 dev pod0
    ip -n "$node" addr add 10.244.1.1/24 dev be0
    ip -n "$node" link set pod0 up
    ip -n "$node" link set be0 up
    ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$pod" addr add 10.244.0.2/24 dev eth0
    for ((k = 0; k < SOURCES; k++)); do ip -n "$pod" addr add "10.244.0.$((10 + k))/24" dev eth0; done
    ip -n "$pod" link set eth0 up
    ip -n "$pod" route add default via 10.244.0.1
    for ((k = 2; k <= 11; k++)); do ip -n "$be" addr add "10.244.1.$k/24" dev eth0; done
    ip -n "$be" link set eth0 up
    ip -n "$be" route add default via 10.244.1.1
    ip netns exec "$be" "$BIN" serve --listen 0.0.0.0:8080 >"$TMP/serve-$m.log" 2>&1 &
    PIDS+=($!)
}
for m in $MODES; do setup_mode "$m"; done

# --- measuring ----------------------------------------------------------------
declare -A RES NOTE RATES P50S P99S
declare -A NEXT_SRC=([weft]=10 [ipt]=10)
prev_n="" prev_full=""

# step NAME OUTFILE CMD…: one bounded step; its stdout (one JSON object) to OUTFILE.
step() {
    local what=$1 out=$2 rc=0
    shift 2
    timeout -k 10 "$STEP_TIMEOUT" "$@" >"$out" 2>>"$TMP/err" || rc=$?
    if ((rc != 0)); then
        if ((rc == 124 || rc == 137)); then log "$what: timed out after $STEP_TIMEOUT s"
        else log "$what: failed (exit $rc): $(tail -n 3 "$TMP/err" | tr '\n' ' ')"; fi
        return "$rc"
    fi
}

next_src() { # MODE: the next unused source address of that mode's pod (in NEXT_SRC_IP)
    NEXT_SRC_IP=10.244.0.${NEXT_SRC[$1]}
    NEXT_SRC[$1]=$((NEXT_SRC[$1] + 1))
}

rate_run() { # MODE N SOURCE: one rate run; prints its JSON
    timeout -k 5 $((RR_SECS + 60)) ip netns exec "weft-bench-px-$1-pod" "$BIN" connect \
        --target "${RES[$1,$2,cip]}:$PORT" --source "$3" --secs "$RR_SECS" --max "$MAX_CONNS" 2>>"$TMP/err"
}

flush_node() { # MODE: empty the node's Services table (not timed)
    local node=weft-bench-px-$1-node
    if [[ $1 == weft ]]; then
        ip netns exec "$node" nft delete table inet weft-proxy 2>/dev/null || true
    else
        printf '*nat\nCOMMIT\n' | ip netns exec "$node" "$IPT_RESTORE" -w || log "ipt: flushing the nat table failed"
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $NS; do
    # weft: (a) (b) (c).
    predicted=""
    if [[ -n $prev_full ]]; then
        predicted=$(awk -v t="$prev_full" -v a="$prev_n" -v b="$n" 'BEGIN { printf "%.0f", t * (b / a) ^ 2 }')
    fi
    if [[ -n $predicted ]] && ((predicted > STEP_TIMEOUT)); then
        log "weft N=$n: not started: full sync predicted at ~$predicted s from N=$prev_n (> STEP_TIMEOUT $STEP_TIMEOUT s; the kernel's batch cannot be interrupted)"
        NOTE[weft,$n]="not run: predicted ~$predicted s (> $STEP_TIMEOUT s)"
    else
        log "weft N=$n: compile + full sync, $CHANGES one-endpoint changes, size"
        if step "weft N=$n" "$TMP/weft-$n.json" "$BIN" weft --services "$n" \
            --netns "/run/netns/weft-bench-px-weft-node" --changes "$CHANGES"; then
            RES[weft,$n,cip]=$(jq -r .measured_cluster_ip "$TMP/weft-$n.json")
            prev_full=$(jq -r .full.total_s "$TMP/weft-$n.json") prev_n=$n
            log "weft N=$n: full $(jq -r '.full.total_s' "$TMP/weft-$n.json") s, change median $(jq -r '.change.total_median_s' "$TMP/weft-$n.json") s"
        else
            NOTE[weft,$n]="failed or timed out (> $STEP_TIMEOUT s)"
            prev_full=$STEP_TIMEOUT prev_n=$n
        fi
    fi
    # anchor: (a) (c).
    if [[ " $ANCHOR_NS " != *" $n "* ]]; then
        log "ipt N=$n: not run (ANCHOR_NS=$ANCHOR_NS)"
        NOTE[ipt,$n]="not run"
    else
    log "ipt N=$n: generate + iptables-$ANCHOR-restore"
    if step "ipt N=$n" "$TMP/ipt-$n.json" "$BIN" iptables --services "$n" \
        --netns "/run/netns/weft-bench-px-ipt-node" --restore "$IPT_RESTORE" --save "$IPT_SAVE"; then
        RES[ipt,$n,cip]=$(jq -r .measured_cluster_ip "$TMP/ipt-$n.json")
        log "ipt N=$n: full $(jq -r '.full.total_s' "$TMP/ipt-$n.json") s"
    else
        NOTE[ipt,$n]="failed or timed out (> $STEP_TIMEOUT s)"
    fi
    fi
    # (d): a short warm-up run (reachability, ARP), then RUNS rounds that visit both modes.
    active=()
    for m in $MODES; do
        [[ -n ${RES[$m,$n,cip]:-} ]] || continue
        next_src "$m"
        out=$(rate_run "$m" "$n" "$NEXT_SRC_IP") || out='{}'
        if (($(jq -r '.conns // 0' <<<"$out") > 0)); then
            active+=("$m")
        else
            log "$m N=$n: ${RES[$m,$n,cip]}:$PORT unreachable from the pod: $(jq -r '.first_error // empty' <<<"$out")"
            NOTE[$m,$n,d]="unreachable"
        fi
    done
    for ((r = 1; r <= RUNS; r++)); do
        for m in "${active[@]}"; do
            next_src "$m"
            if out=$(rate_run "$m" "$n" "$NEXT_SRC_IP"); then
                RATES[$m,$n]+="$(jq -r .rate <<<"$out") "
                P50S[$m,$n]+="$(jq -r .p50_us <<<"$out") "
                P99S[$m,$n]+="$(jq -r .p99_us <<<"$out") "
                log "$m N=$n: rate round $r: $(jq -r '"\(.rate | floor) conn/s, p50 \(.p50_us | floor) µs, p99 \(.p99_us | floor) µs, errors \(.connect_errors + .exchange_errors)"' <<<"$out")"
            else
                log "$m N=$n: rate round $r failed"
            fi
        done
    done
    for m in $MODES; do flush_node "$m"; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------
median() { # numbers… (empty if none)
    (($#)) || return 0
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
j() { # MODE N JQ-EXPR: a value from that step's JSON (empty when the step did not run)
    if [[ -s $TMP/$1-$2.json ]]; then jq -r "$3 // empty" "$TMP/$1-$2.json"; fi
}
fmt() { # PRINTF-FORMAT VALUE [SCALE]: formatted, or – when empty
    if [[ -n ${2:-} ]]; then awk -v v="$2" -v s="${3:-1}" -v f="$1" 'BEGIN { printf f, v * s }'; else echo "–"; fi
}
ratio() { # A B: A/B
    if [[ -n ${1:-} && -n ${2:-} ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "–"; fi
}
declare -A RATE P50 P99
for n in $NS; do
    for m in $MODES; do
        # shellcheck disable=SC2086  # word-split the space-separated samples
        RATE[$m,$n]=$(median ${RATES[$m,$n]:-})
        # shellcheck disable=SC2086
        P50[$m,$n]=$(median ${P50S[$m,$n]:-})
        # shellcheck disable=SC2086
        P99[$m,$n]=$(median ${P99S[$m,$n]:-})
    done
done

echo "## Services at scale: weft-proxy vs kube-proxy iptables mode"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -r); nft: $(nft --version 2>&1); $("$IPT_RESTORE" --version 2>&1 | head -n1)"
echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- driver: $BIN (repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && echo ' + uncommitted changes'))"
echo "- anchor: iptables-$ANCHOR ($IPT_RESTORE); Debian's \`iptables\` here is $IPT_DEFAULT"
echo "- load average: $LOAD_START at the start, $LOAD_END at the end"
echo "- method: N Services (ClusterIP, tcp/80 → 8080), 10 endpoints each, built in memory as k8s-openapi objects; weft = compile + \`Syncer::sync\` in-process (no API server, no watches); (b) = median of $CHANGES changes of one endpoint address of one Service each; (d) = median of $RUNS × ${RR_SECS} s (≤ $MAX_CONNS connections) of connect, 1 B request, 1 B echo, reset, one at a time, to the ClusterIP of the Service in the middle of the list; step timeout $STEP_TIMEOUT s"
echo
echo "(a) full sync from an empty table, and (c) size:"
echo
echo "| N | weft full sync (s) | compile | write (Syncer::sync) | of which nft CPU user / sys | anchor full sync (s) | generate | iptables-restore | anchor / weft |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    wt=$(j weft "$n" .full.total_s) at=$(j ipt "$n" .full.total_s)
    echo "| $n | $(if [[ -n $wt ]]; then fmt %.2f "$wt"; else echo "${NOTE[weft,$n]:-–}"; fi) | $(fmt %.2f "$(j weft "$n" .full.compile_s)") | $(fmt %.2f "$(j weft "$n" .full.sync_s)") | $(fmt %.2f "$(j weft "$n" .full.nft_user_s)") / $(fmt %.2f "$(j weft "$n" .full.nft_sys_s)") | $(if [[ -n $at ]]; then fmt %.2f "$at"; else echo "${NOTE[ipt,$n]:-–}"; fi) | $(fmt %.2f "$(j ipt "$n" .full.generate_s)") | $(fmt %.2f "$(j ipt "$n" .full.restore_s)") | $(ratio "$at" "$wt") |"
done
echo
echo "| N | weft chains | rules | set/map elements | \`nft list table\` bytes | anchor chains | rules | \`iptables-save -t nat\` bytes |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    echo "| $n | $(j weft "$n" .size.chains || true) | $(j weft "$n" .size.rules || true) | $(j weft "$n" .size.elements || true) | $(j weft "$n" .size.list_bytes || true) | $(j ipt "$n" .size.chains || true) | $(j ipt "$n" .size.rules || true) | $(j ipt "$n" .size.list_bytes || true) |"
done
echo
echo "(b) one-endpoint change (weft; the anchor rewrites its whole table on every sync):"
echo
echo "| N | compile + sync, median (ms) | max | compile (ms) | sync (ms) | of which diff plan (ms) | nft CPU user / sys (ms) | statements |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    echo "| $n | $(fmt %.1f "$(j weft "$n" .change.total_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.total_max_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.compile_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.sync_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.plan_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.nft_user_median_s)" 1000) / $(fmt %.1f "$(j weft "$n" .change.nft_sys_median_s)" 1000) | $(j weft "$n" '.change.statements[0]' || true) |"
done
echo
echo "(d) new TCP connections through one ClusterIP from a pod:"
echo
echo "| N | weft conn/s | p50 (µs) | p99 (µs) | anchor conn/s | p50 (µs) | p99 (µs) | weft / anchor conn/s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    wr=${RATE[weft,$n]:-} ar=${RATE[ipt,$n]:-}
    echo "| $n | $(if [[ -n $wr ]]; then fmt %.0f "$wr"; else echo "${NOTE[weft,$n,d]:-${NOTE[weft,$n]:-–}}"; fi) | $(fmt %.0f "${P50[weft,$n]:-}") | $(fmt %.0f "${P99[weft,$n]:-}") | $(if [[ -n $ar ]]; then fmt %.0f "$ar"; else echo "${NOTE[ipt,$n,d]:-${NOTE[ipt,$n]:-–}}"; fi) | $(fmt %.0f "${P50[ipt,$n]:-}") | $(fmt %.0f "${P99[ipt,$n]:-}") | $(ratio "$wr" "$ar") |"
done
first=${NS%% *} last=${NS##* }
echo
echo "(d) at N=$last relative to N=$first: weft $(ratio "${RATE[weft,$last]:-}" "${RATE[weft,$first]:-}"), anchor $(ratio "${RATE[ipt,$last]:-}" "${RATE[ipt,$first]:-}")"
echo
echo "Rate runs (conn/s, in round order):"
echo
for n in $NS; do
    for m in $MODES; do
        [[ -n ${RATES[$m,$n]:-} ]] || continue
        echo "- $m N=$n: $(for r in ${RATES[$m,$n]}; do printf '%.0f ' "$r"; done)"
    done
done
