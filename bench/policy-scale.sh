#!/usr/bin/env bash
# NetworkPolicy at scale: weft's policy table (inet weft-policy, Snapshot +
# Model + compile + Syncer::sync, as the agent runs them) against the same
# policies as a chain-per-policy iptables ruleset (FORWARD -> one jump per
# policy and selected pod -> per-policy chain of one ACCEPT per peer and
# port -> per-pod DROP; loaded with iptables-restore), with 1,000 pods and N
# NetworkPolicies, all of them in the measured node's table. At each N:
#   (a) full sync time from an empty table (weft: snapshot + model, compile
#       and write apart; anchor: resolve + generate and iptables-restore),
#   (b) weft: time to apply a one-policy edit (peer selector or port;
#       median of CHANGES),
#   (c) size: chains, rules, sets, set elements, bytes of the listing,
#   (d) new TCP connections per second from a client pod to the server pod
#       through the node (forwarded: the policy tables are on the path), and
#       connect latency p50/p99, with: no table at all (none), a
#       conntrack-only table (ct: what every node with kube-proxy has),
#       weft's table (weft), the iptables anchor (ipt) — all four in the
#       same rounds; and the same four with bench/rr.py's rate client.
#
#   sudo bench/policy-scale.sh > result.md    # markdown on stdout, progress on stderr
#   sudo NS="1000 10000" RUNS=5 bench/policy-scale.sh
#
# Env: NS (policy counts, each at least 96; default "100 1000 10000"),
#      CHANGES (one-policy edits timed per N; default 20), RUNS (rate rounds
#      per N, median reported; default 3), RR_SECS (seconds per rate run;
#      default 3), MAX_CONNS (connections per driver rate run at most;
#      default 40000), STEP_TIMEOUT (seconds per step; default 1200), ANCHOR
#      (legacy or nft: the iptables backend; default legacy when
#      iptables-legacy-restore exists), BIN (a built policy_scale example:
#      skip the cargo build), CARGO_TARGET_DIR (default /var/tmp/weft-target),
#      ANCHOR_NS (the policy counts the anchor runs at; default NS), PYRR
#      (1: also measure with bench/rr.py; default 1).
#
# Topology, one copy per mode (m = none, ct, weft, ipt), nothing in the root
# netns:
#   weft-bench-pol-m-cli   the client pods: eth0 10.244.0.2/24 (+ one source
#                          address 10.244.0.10… per driver rate run, each a
#                          client pod of the model) --veth-- cli0 10.244.0.1/24
#   weft-bench-pol-m-node  node-1: holds the policy table, forwards
#   weft-bench-pol-m-srv   the server pod bench-5/server: eth0 10.244.1.2/24
#                          --veth-- srv0 10.244.1.1/24; accept loops on TCP 80
#                          (the driver's) and 81 (bench/rr.py's).
# The driver (crates/weft-policy/examples/policy_scale.rs, see there for the
# cluster and the policies) builds pods, namespaces and policies as
# k8s-openapi objects in memory and runs snapshot, model, compile and sync
# in-process, not behind an API server and the agent's watches. The server
# is selected by 10 of the N policies; the last of them admits the clients
# on TCP 80 and 81, so a new connection walks all ten; TCP 82 is admitted by
# none, and the script checks that a connection to it is dropped (weft, ipt)
# where it is refused without policy (none, ct).
#
# The driver's rate client connects one at a time from its own source port
# (every connection is new to conntrack and its first packet walks the
# policy rules), sends 1 byte, reads the echo and closes with a reset (no
# TIME_WAIT); bench/rr.py (64 B each way, server closes) is the repo's
# common rate tool, bounded by its Python interpreter. nf_conntrack_max is
# never changed here: MAX_CONNS keeps a run well below it.
#
# A full nft sync runs in one netlink batch the kernel processes in a single
# system call, which a signal cannot cut short; so a weft full sync whose
# time, predicted from the previous N (quadratically), exceeds STEP_TIMEOUT
# is not started and its row says so.
#
# Safety: the root network namespace is never touched (diffed at exit to
# prove it). The script creates only weft-bench-pol-* namespaces and removes
# them on any exit. Every step is bounded in time; processes it started are
# ended by pid.
set -euo pipefail

NS=${NS:-"100 1000 10000"}
CHANGES=${CHANGES:-20}
RUNS=${RUNS:-3}
RR_SECS=${RR_SECS:-3}
MAX_CONNS=${MAX_CONNS:-40000}
STEP_TIMEOUT=${STEP_TIMEOUT:-1200}
ANCHOR_NS=${ANCHOR_NS-$NS}
PYRR=${PYRR:-1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
MODES="none ct weft ipt"
SERVER=10.244.1.2
PORT=80        # the driver's accept loop
RR_PORT=81     # bench/rr.py's
DENIED_PORT=82 # admitted by no policy; nothing listens
RR=$REPO/bench/rr.py

log() { echo "policy-scale.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (creates network namespaces)"
for v in CHANGES RUNS RR_SECS MAX_CONNS STEP_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got ${!v})"
done
for n in $NS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "NS: $n is not a positive integer"
    ((n >= 96)) || die "NS: $n is below 96 (the server's ten policies are numbers 5, 15, …, 95)"
done
((MAX_CONNS <= 55000)) || die "MAX_CONNS must be at most 55000 (one source port each)"
[[ $PYRR == 0 || $PYRR == 1 ]] || die "PYRR must be 0 or 1 (got $PYRR)"

exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/policy-scale.sh run is in progress"

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
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi
if [[ $PYRR == 1 && -z $PY ]]; then
    log "no python3: bench/rr.py runs left out"
    PYRR=0
fi

# Debian's iptables is iptables-nft by default (update-alternatives);
# iptables-legacy is the classic one chain-per-policy implementations were
# written against.
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
    log "building the driver (cargo build --release --locked -p weft-policy --example policy_scale)"
    (cd "$REPO" && cargo build --release --locked -p weft-policy --example policy_scale >&2) \
        || die "cargo build failed (BIN=/path/to/policy_scale runs one built earlier)"
    BIN=$CARGO_TARGET_DIR/release/examples/policy_scale
else
    BIN=$CARGO_TARGET_DIR/release/examples/policy_scale
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

TMP=$(mktemp -d /tmp/weft-bench-pol.XXXXXX)
root_state >"$TMP/root.before" 2>&1
PIDS=()
ALL_NS=()
for m in $MODES; do ALL_NS+=("weft-bench-pol-$m-node" "weft-bench-pol-$m-cli" "weft-bench-pol-$m-srv"); done

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
SOURCES=$((n_ns * (RUNS + 2)))   # per N and mode: the deny check, the warm-up, RUNS rate runs
CLIENTS=$((SOURCES + 1))         # + 10.244.0.2 (bench/rr.py's source)
((CLIENTS <= 80)) || die "too many rate runs ($SOURCES source addresses; at most 79: fewer NS or RUNS)"

setup_mode() { # MODE
    local m=$1 node=weft-bench-pol-$1-node cli=weft-bench-pol-$1-cli srv=weft-bench-pol-$1-srv ns k
    log "$m: $cli (10.244.0.2, .10-.$((9 + SOURCES))) <-> $node <-> $srv ($SERVER, accept loops on :$PORT and :$RR_PORT)"
    for ns in "$node" "$cli" "$srv"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    # Made in the node namespace with the peer put straight into the other: never in the root netns.
    ip -n "$node" link add cli0 type veth peer name eth0 netns "$cli"
    ip -n "$node" link add srv0 type veth peer name eth0 netns "$srv"
    ip -n "$node" addr add 10.244.0.1/24 dev cli0
    ip -n "$node" addr add 10.244.1.1/24 dev srv0
    ip -n "$node" link set cli0 up
    ip -n "$node" link set srv0 up
    ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$cli" addr add 10.244.0.2/24 dev eth0
    for ((k = 0; k < SOURCES; k++)); do ip -n "$cli" addr add "10.244.0.$((10 + k))/24" dev eth0; done
    ip -n "$cli" link set eth0 up
    ip -n "$cli" route add default via 10.244.0.1
    ip -n "$srv" addr add "$SERVER/24" dev eth0
    ip -n "$srv" link set eth0 up
    ip -n "$srv" route add default via 10.244.1.1
    ip netns exec "$srv" "$BIN" serve --listen "0.0.0.0:$PORT" >"$TMP/serve-$m.log" 2>&1 &
    PIDS+=($!)
    if ((PYRR)); then
        ip netns exec "$srv" "$PY" "$RR" serve "$RR_PORT" >"$TMP/rr-serve-$m.log" 2>&1 &
        PIDS+=($!)
    fi
}
for m in $MODES; do setup_mode "$m"; done

# ct: conntrack only, with the first rule of weft's base chains — what a node
# has before any policy (kube-proxy's conntrack), so weft − ct is the policy
# lookups alone.
load_ct() {
    ip netns exec weft-bench-pol-ct-node nft -f - <<'EOF'
table inet weft-bench-ct {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
    }
}
EOF
}
load_ct || die "loading the conntrack-only table into weft-bench-pol-ct-node failed"

# --- measuring ----------------------------------------------------------------
declare -A RES NOTE RATES P50S P99S PYRATES DENY
declare -A NEXT_SRC=([none]=10 [ct]=10 [weft]=10 [ipt]=10)
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

next_src() { # MODE: the next unused source address of that mode's client namespace (in NEXT_SRC_IP)
    NEXT_SRC_IP=10.244.0.${NEXT_SRC[$1]}
    NEXT_SRC[$1]=$((NEXT_SRC[$1] + 1))
}

connect_run() { # MODE SOURCE PORT SECS MAX: one driver rate run; prints its JSON
    timeout -k 5 $(($4 + 60)) ip netns exec "weft-bench-pol-$1-cli" "$BIN" connect \
        --target "$SERVER:$3" --source "$2" --secs "$4" --max "$5" 2>>"$TMP/err"
}

rr_run() { # MODE: one bench/rr.py run; prints its JSON
    timeout -k 5 $((RR_SECS + 60)) ip netns exec "weft-bench-pol-$1-cli" "$PY" "$RR" client \
        "$SERVER" "$RR_PORT" "$RR_SECS" 2>>"$TMP/err"
}

flush_node() { # MODE: empty the node's policy table (not timed)
    local node=weft-bench-pol-$1-node
    case $1 in
        weft) ip netns exec "$node" nft delete table inet weft-policy 2>/dev/null || true ;;
        ipt) printf '*filter\nCOMMIT\n' | ip netns exec "$node" "$IPT_RESTORE" -w || log "ipt: flushing the filter table failed" ;;
    esac
}

active_at() { # N: the modes with a table at N (none and ct always)
    local m
    for m in $MODES; do
        case $m in
            none | ct) echo "$m" ;;
            *) [[ -n ${RES[$m,$1]:-} ]] && echo "$m" ;;
        esac
    done
    return 0
}

T_START=$(date +%s)
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
        log "weft N=$n: snapshot + model + compile + full sync, $CHANGES one-policy edits, size"
        if step "weft N=$n" "$TMP/weft-$n.json" "$BIN" weft --policies "$n" --clients "$CLIENTS" \
            --netns "/run/netns/weft-bench-pol-weft-node" --changes "$CHANGES"; then
            RES[weft,$n]=1
            prev_full=$(jq -r .full.sync_s "$TMP/weft-$n.json") prev_n=$n
            log "weft N=$n: full $(jq -r '.full.total_s' "$TMP/weft-$n.json") s (write $(jq -r '.full.sync_s' "$TMP/weft-$n.json") s), edit median $(jq -r '.change.total_median_s' "$TMP/weft-$n.json") s"
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
        log "ipt N=$n: resolve + generate + iptables-$ANCHOR-restore"
        if step "ipt N=$n" "$TMP/ipt-$n.json" "$BIN" iptables --policies "$n" --clients "$CLIENTS" \
            --netns "/run/netns/weft-bench-pol-ipt-node" --restore "$IPT_RESTORE" --save "$IPT_SAVE"; then
            RES[ipt,$n]=1
            log "ipt N=$n: full $(jq -r '.full.total_s' "$TMP/ipt-$n.json") s"
        else
            NOTE[ipt,$n]="failed or timed out (> $STEP_TIMEOUT s)"
        fi
    fi
    mapfile -t modes < <(active_at "$n")
    # Enforcement check: TCP 82 is admitted by no policy (dropped: a connect
    # timeout) and has no listener (refused where nothing drops it).
    for m in "${modes[@]}"; do
        next_src "$m"
        out=$(connect_run "$m" "$NEXT_SRC_IP" "$DENIED_PORT" 5 1) || out='{}'
        kind=$(jq -r '.first_error_kind // (if .conns > 0 then "Connected" else "?" end)' <<<"$out")
        case $m in none | ct) want=ConnectionRefused ;; *) want=TimedOut ;; esac
        DENY[$m,$n]=$kind
        if [[ $kind == "$want" ]]; then
            log "$m N=$n: TCP $DENIED_PORT: $kind, as expected"
        else
            log "$m N=$n: warning: TCP $DENIED_PORT: $kind, expected $want"
        fi
    done
    # (d): a short warm-up run (reachability, ARP), then RUNS rounds that visit every mode.
    active=()
    for m in "${modes[@]}"; do
        next_src "$m"
        out=$(connect_run "$m" "$NEXT_SRC_IP" "$PORT" 1 "$MAX_CONNS") || out='{}'
        if (($(jq -r '.conns // 0' <<<"$out") > 0)); then
            active+=("$m")
        else
            log "$m N=$n: $SERVER:$PORT unreachable from the client: $(jq -r '.first_error // empty' <<<"$out")"
            NOTE[$m,$n,d]="unreachable"
        fi
    done
    for ((r = 1; r <= RUNS; r++)); do
        for m in "${active[@]}"; do
            next_src "$m"
            if out=$(connect_run "$m" "$NEXT_SRC_IP" "$PORT" "$RR_SECS" "$MAX_CONNS"); then
                RATES[$m,$n]+="$(jq -r .rate <<<"$out") "
                P50S[$m,$n]+="$(jq -r .p50_us <<<"$out") "
                P99S[$m,$n]+="$(jq -r .p99_us <<<"$out") "
                log "$m N=$n: round $r: $(jq -r '"\(.rate | floor) conn/s, p50 \(.p50_us | floor) µs, p99 \(.p99_us | floor) µs, errors \(.connect_errors + .exchange_errors)"' <<<"$out")"
            else
                log "$m N=$n: rate round $r failed"
            fi
        done
        if ((PYRR)); then
            for m in "${active[@]}"; do
                if out=$(rr_run "$m"); then
                    PYRATES[$m,$n]+="$(jq -r .rate <<<"$out") "
                    log "$m N=$n: round $r: rr.py $(jq -r '"\(.rate | floor) trans/s, errors \(.errors)"' <<<"$out")"
                else
                    log "$m N=$n: rr.py round $r failed: $out"
                fi
            done
        fi
    done
    for m in $MODES; do flush_node "$m"; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)

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
or_note() { # VALUE MODE N: VALUE formatted as a rate, else why there is none
    if [[ -n ${1:-} ]]; then fmt %.0f "$1"; else echo "${NOTE[$2,$3,d]:-${NOTE[$2,$3]:-–}}"; fi
}
declare -A RATE P50 P99 PYRATE
for n in $NS; do
    for m in $MODES; do
        # shellcheck disable=SC2086  # word-split the space-separated samples
        RATE[$m,$n]=$(median ${RATES[$m,$n]:-})
        # shellcheck disable=SC2086
        P50[$m,$n]=$(median ${P50S[$m,$n]:-})
        # shellcheck disable=SC2086
        P99[$m,$n]=$(median ${P99S[$m,$n]:-})
        # shellcheck disable=SC2086
        PYRATE[$m,$n]=$(median ${PYRATES[$m,$n]:-})
    done
done

echo "## NetworkPolicy at scale: weft-policy vs a chain-per-policy iptables ruleset"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); the run took $((T_END - T_START)) s"
echo "- kernel: $(uname -r); nft: $(nft --version 2>&1); $("$IPT_RESTORE" --version 2>&1 | head -n1)"
echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- driver: $BIN (repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && echo ' + uncommitted changes'))"
echo "- anchor: iptables-$ANCHOR ($IPT_RESTORE); Debian's \`iptables\` here is $IPT_DEFAULT"
echo "- load average: $LOAD_START at the start, $LOAD_END at the end"
echo "- method: 1,000 pods (10 namespaces × 100, 100 of them on the measured node) and N NetworkPolicies built in memory as k8s-openapi objects, every policy selecting one pod of the measured node (all N in its table); weft = \`Snapshot::new\` + \`Model::build\` + \`compile\` + \`Syncer::sync\` in-process (no API server, no watches); (b) = median of $CHANGES edits of one policy each (peer selector / ipBlock, or port); (d) = median of $RUNS × ${RR_SECS} s (≤ $MAX_CONNS connections) of connect, 1 B request, 1 B echo, reset, one at a time, from a client pod to the server pod (isolated by 10 policies, admitted by the last), forwarded by the node; step timeout $STEP_TIMEOUT s"
echo
echo "(a) full sync from an empty table:"
echo
echo "| N | policies in the node's table | weft full sync (s) | snapshot + model | compile | write (Syncer::sync) | of which nft CPU user / sys | anchor full sync (s) | resolve + generate | iptables-restore |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    wt=$(j weft "$n" .full.total_s) at=$(j ipt "$n" .full.total_s)
    echo "| $n | $(j weft "$n" .policies_on_node || true) | $(if [[ -n $wt ]]; then fmt %.2f "$wt"; else echo "${NOTE[weft,$n]:-–}"; fi) | $(fmt %.2f "$(awk -v a="$(j weft "$n" .full.snapshot_s)" -v b="$(j weft "$n" .full.model_s)" 'BEGIN { if (a != "") print a + b }')") | $(fmt %.2f "$(j weft "$n" .full.compile_s)") | $(fmt %.2f "$(j weft "$n" .full.sync_s)") | $(fmt %.2f "$(j weft "$n" .full.nft_user_s)") / $(fmt %.2f "$(j weft "$n" .full.nft_sys_s)") | $(if [[ -n $at ]]; then fmt %.2f "$at"; else echo "${NOTE[ipt,$n]:-–}"; fi) | $(fmt %.2f "$(awk -v a="$(j ipt "$n" .full.resolve_s)" -v b="$(j ipt "$n" .full.generate_s)" 'BEGIN { if (a != "") print a + b }')") | $(fmt %.2f "$(j ipt "$n" .full.restore_s)") |"
done
echo
echo "(b) one-policy edit (weft; a chain-per-policy implementation rewrites the policy's chain, not measured here):"
echo
echo "| N | snapshot + model + compile + sync, median (ms) | max | snapshot + model | compile | sync | of which diff plan | nft CPU user / sys | statements |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    echo "| $n | $(fmt %.1f "$(j weft "$n" .change.total_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.total_max_s)" 1000) | $(fmt %.1f "$(awk -v a="$(j weft "$n" .change.snapshot_median_s)" -v b="$(j weft "$n" .change.model_median_s)" 'BEGIN { if (a != "") print a + b }')" 1000) | $(fmt %.1f "$(j weft "$n" .change.compile_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.sync_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.plan_median_s)" 1000) | $(fmt %.1f "$(j weft "$n" .change.nft_user_median_s)" 1000) / $(fmt %.1f "$(j weft "$n" .change.nft_sys_median_s)" 1000) | $(j weft "$n" '.change.statements | if length > 0 then (min | tostring) + "–" + (max | tostring) else empty end' || true) |"
done
echo
echo "(c) size:"
echo
echo "| N | weft chains | rules | sets | set/map elements | \`nft list table\` bytes | anchor chains | rules | \`iptables-save -t filter\` bytes |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    echo "| $n | $(j weft "$n" .size.chains || true) | $(j weft "$n" .size.rules || true) | $(j weft "$n" .size.sets || true) | $(j weft "$n" .size.elements || true) | $(j weft "$n" .size.list_bytes || true) | $(j ipt "$n" .size.chains || true) | $(j ipt "$n" .size.rules || true) | $(j ipt "$n" .size.list_bytes || true) |"
done
echo
echo "(d) new TCP connections from the client pod to the server pod (driver's client; ratios against no table):"
echo
echo "| N | none conn/s | p50 / p99 (µs) | ct conn/s | p50 / p99 | ct / none | weft conn/s | p50 / p99 | weft / none | weft / ct | anchor conn/s | p50 / p99 | anchor / none |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    r0=${RATE[none,$n]:-} rc=${RATE[ct,$n]:-} rw=${RATE[weft,$n]:-} ri=${RATE[ipt,$n]:-}
    lat() { echo "$(fmt %.0f "${P50[$1,$n]:-}") / $(fmt %.0f "${P99[$1,$n]:-}")"; }
    echo "| $n | $(or_note "$r0" none "$n") | $(lat none) | $(or_note "$rc" ct "$n") | $(lat ct) | $(ratio "$rc" "$r0") | $(or_note "$rw" weft "$n") | $(lat weft) | $(ratio "$rw" "$r0") | $(ratio "$rw" "$rc") | $(or_note "$ri" ipt "$n") | $(lat ipt) | $(ratio "$ri" "$r0") |"
done
if ((PYRR)); then
    echo
    echo "(d) the same with bench/rr.py ($("$PY" --version 2>&1); 64 B each way, the server closes; transactions/s):"
    echo
    echo "| N | none | ct | weft | anchor | ct / none | weft / none | anchor / none |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $NS; do
        p0=${PYRATE[none,$n]:-} pc=${PYRATE[ct,$n]:-} pw=${PYRATE[weft,$n]:-} pi=${PYRATE[ipt,$n]:-}
        echo "| $n | $(or_note "$p0" none "$n") | $(or_note "$pc" ct "$n") | $(or_note "$pw" weft "$n") | $(or_note "$pi" ipt "$n") | $(ratio "$pc" "$p0") | $(ratio "$pw" "$p0") | $(ratio "$pi" "$p0") |"
    done
fi
echo
echo "Enforcement check, TCP $DENIED_PORT (no policy admits it; nothing listens): $(for n in $NS; do printf 'N=%s: ' "$n"; for m in $MODES; do printf '%s %s; ' "$m" "${DENY[$m,$n]:-–}"; done; done)"
echo
echo "Rate runs (driver conn/s, in round order):"
echo
for n in $NS; do
    for m in $MODES; do
        [[ -n ${RATES[$m,$n]:-} ]] || continue
        echo "- $m N=$n: $(for r in ${RATES[$m,$n]}; do printf '%.0f ' "$r"; done)$(if [[ -n ${PYRATES[$m,$n]:-} ]]; then printf '(rr.py: '; for r in ${PYRATES[$m,$n]}; do printf '%.0f ' "$r"; done; printf ')'; fi)"
    done
done
