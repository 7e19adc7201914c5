#!/usr/bin/env bash
# Cluster DNS: `weft dns` against Knot DNS (knotd), NSD and dnsmasq, with dnsperf,
# on the same 10,000 Services in cluster.local.
#
#   sudo bench/dns.sh > result.md                       # markdown to stdout, progress to stderr
#   sudo DNS_BENCH_ONLY=knot,nsd,dnsmasq bench/dns.sh   # the anchors alone (no cluster)
#
# Env: DNS_BENCH_ONLY (comma list of weft,knot,nsd,dnsmasq; default all four),
#      DNS_BENCH_SECS (seconds of the throughput run; default 15),
#      DNS_BENCH_LAT_SECS / DNS_BENCH_LAT_QPS (the rate-limited latency run;
#      default 5 s at 5000 queries/s), DNS_BENCH_COUNT (Services; default
#      10000), DNS_BENCH_SEED (default 1), DNS_BENCH_CORES (taskset list for
#      every server and dnsperf; default 0-1), DNS_BENCH_CLIENTS / _THREADS /
#      _OUTSTANDING (dnsperf -c / -T / -q; default 4 / 2 / 100),
#      DNS_BENCH_APPLY_JOBS (parallel kubectl applies; default 2),
#      DNS_BENCH_AUTOPATH_N (lookups per autopath mode; default 200; 0 skips
#      the autopath row), DNS_BENCH_TIMEOUT (whole script, seconds; default
#      2400), WEFT (a built
#      weft binary: skip the cargo build), CARGO_TARGET_DIR.
#
# Data: bench/dns_zone.py --count N --seed S writes the Services and
# EndpointSlices (Kubernetes manifests, for weft), the equivalent zone files
# for cluster.local and 10.in-addr.arpa (knot, nsd), dnsmasq config lines and
# the dnsperf query file (60% A, 15% SRV, 10% PTR, 15% NXDOMAIN, shuffled),
# all deterministic.
#
# Servers, each alone in turn on 127.0.0.1 (loopback only), pinned with
# `taskset -c $DNS_BENCH_CORES`, with as many workers as cores where there is
# a knob:
#   knot     127.0.0.1:5301  udp-workers: 2 (own config and storage; the knot
#                            package's systemd service is not used)
#   nsd      127.0.0.1:5302  server-count: 2, reuseport, response rate
#                            limiting off (Debian's build has it on; the
#                            nsd package's systemd service is not used)
#   dnsmasq  127.0.0.1:5303  single-threaded, no knob.  Local data only:
#                            --no-resolv --no-hosts, the records as
#                            --host-record/--srv-host/--txt-record lines and
#                            --local=/cluster.local/ --local=/10.in-addr.arpa/,
#                            so it answers them from memory and NXDOMAINs the
#                            rest of both domains (not --auth-zone, which
#                            serves only on interfaces, with an auth-server).
#   weft     127.0.0.1:5300  `weft dns --kubeconfig K --listen 127.0.0.1:5300
#                            --metrics 127.0.0.1:5380`, watching a `weft up`
#                            cluster (bench-dns, state under /var/tmp) holding
#                            the generated Services.  Until weft has a `dns`
#                            subcommand its row reads n/a; the cluster, the
#                            apply (timed) and the count still run.
# dnsperf runs on the same cores: on 2 cores the server and the load
# generator share the CPUs, so QPS is the pair's, the same for every server.
#
# Before measuring, every server must answer dns-version.cluster.local TXT
# "1.1.0" and 9 sample names (A, SRV, PTR, headless A with 3 records, SRV of a
# StatefulSet-style Service, a hostname, its PTR, an NXDOMAIN) with exactly
# the records of the zone (rcode and sorted RRs); a mismatch fails the run.
# Each server then gets a throughput run (dnsperf -c -T -q -l, no rate limit:
# QPS, avg/min/max latency, lost) and a latency run (-Q rate limit with -v:
# p50/p99 per query, every rcode checked against the name's kind).  A run
# with 0 completed queries, or any rcode other than NOERROR/NXDOMAIN, fails.
#
# The autopath row: in the weft cluster, a pod with the default resolv.conf
# (ndots:5, three search domains) looks up N distinct outside names
# (q<i>.<mode>.example.test, `getent ahostsv4`, one process each) through
# kube-dns, with the weft-dns Deployment patched to forward to a dnsmasq on
# the cluster's external client (198.51.100.5, serving example.test), first
# without and then with --autopath. Counted: the queries the DNS pods
# answered (their weft_dns_queries_total, read from the pod) and the queries
# dnsmasq got, per lookup; timed: the loop inside the pod, per lookup.
#
# Everything the script starts (servers, weft up's cluster, kubectl) is
# ended on any exit, by pid; `weft down` removes the cluster.
set -euo pipefail

ONLY=${DNS_BENCH_ONLY:-weft,knot,nsd,dnsmasq}
SECS=${DNS_BENCH_SECS:-15}
LAT_SECS=${DNS_BENCH_LAT_SECS:-5}
LAT_QPS=${DNS_BENCH_LAT_QPS:-5000}
COUNT=${DNS_BENCH_COUNT:-10000}
SEED=${DNS_BENCH_SEED:-1}
CORES=${DNS_BENCH_CORES:-0-1}
CLIENTS=${DNS_BENCH_CLIENTS:-4}
THREADS=${DNS_BENCH_THREADS:-2}
OUTSTANDING=${DNS_BENCH_OUTSTANDING:-100}
AUTOPATH_N=${DNS_BENCH_AUTOPATH_N:-200}
APPLY_JOBS=${DNS_BENCH_APPLY_JOBS:-2}
TIMEOUT=${DNS_BENCH_TIMEOUT:-2400}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
CLUSTER=bench-dns
export WEFT_STATE_DIR=/var/tmp/weft-bench-dns
declare -A PORT=([weft]=5300 [knot]=5301 [nsd]=5302 [dnsmasq]=5303)
WEFT_METRICS=127.0.0.1:5380
ORDER=(knot nsd dnsmasq weft)   # knot first: it is the reference of the ratios

log() { echo "dns.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (weft up creates network namespaces)"
for v in SECS LAT_SECS LAT_QPS COUNT CLIENTS THREADS OUTSTANDING APPLY_JOBS TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "DNS_BENCH_$v must be a positive integer (is '${!v}')"
done
[[ $SEED =~ ^[0-9]+$ ]] || die "DNS_BENCH_SEED must be a non-negative integer"
declare -A WANT=()
IFS=, read -ra only_list <<<"$ONLY"
for s in "${only_list[@]}"; do
    [[ -n ${PORT[$s]:-} ]] || die "DNS_BENCH_ONLY: unknown server '$s' (weft, knot, nsd, dnsmasq)"
    WANT[$s]=1
done
((${#WANT[@]})) || die "DNS_BENCH_ONLY names no server"

# Two runs would share ports, cluster and state dir: lock the script file itself.
exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/dns.sh run is in progress"

deadline=$((SECONDS + TIMEOUT))
check_deadline() { ((SECONDS < deadline)) || die "DNS_BENCH_TIMEOUT ($TIMEOUT s) reached"; }
bounded() { # LIMIT CMD…: CMD under `timeout`, never past the script's deadline
    local limit=$1 l=$((deadline - SECONDS))
    shift
    ((l > 0)) || { log "DNS_BENCH_TIMEOUT ($TIMEOUT s) reached"; return 124; }
    ((limit < l)) || limit=$l
    timeout -k 5 "$limit" "$@"
}

# --- dependencies -----------------------------------------------------------
# command → Debian package (scripts/setup.sh has the same; the knot and nsd
# packages' own systemd services are not used: each server runs from a config
# written here, in a temporary directory)
declare -A need=([dnsperf]=dnsperf [knotd]=knot [nsd]=nsd [dnsmasq]=dnsmasq-base
    [dig]=dnsutils [taskset]=util-linux [python3]=python3 [ss]=iproute2)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [[ -n ${WANT[weft]:-} ]]; then
    command -v kubectl >/dev/null || die "kubectl not found (scripts/setup.sh installs it)"
    # shellcheck source=bench/lib.sh
    source "$REPO/bench/lib.sh"
    find_weft bounded 3600
fi
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

# Every port must be free before we start: a server answering there would be
# someone else's, and we would measure it.
for s in "${!WANT[@]}"; do
    [[ -z $(ss -Hlun "sport = :${PORT[$s]}") ]] || die "UDP port ${PORT[$s]} ($s) is already in use"
done

# --- cleanup ----------------------------------------------------------------
TMP=$(mktemp -d /tmp/weft-bench-dns.XXXXXX)
PIDS=()          # servers and kubectl runs we started, ended by pid on exit
CLUSTER_UP=0

forget_pid() { # PID: off the list once reaped (its number may be reused)
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() { # PID: TERM, wait up to 10 s, then KILL; only our own children
    local pid=$1 i c
    forget_pid "$pid"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    # Children first (nsd's workers, xargs' kubectl): by parent pid, ours.
    for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    if ((CLUSTER_UP)); then
        log "weft --name $CLUSTER down"
        timeout -k 5 120 "$WEFT" --name "$CLUSTER" down >&2 || { log "error: weft down failed"; rc=1; }
    fi
    if ((rc)) && [[ -d $TMP ]]; then
        for f in "$TMP"/*.log; do
            [[ -s $f ]] || continue
            log "--- last lines of $(basename "$f")"
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- data -------------------------------------------------------------------
DATA=$TMP/data
log "generating $COUNT Services (seed $SEED) into $DATA"
bounded 300 "$PY" "$REPO/bench/dns_zone.py" --count "$COUNT" --seed "$SEED" --out "$DATA" >&2 \
    || die "bench/dns_zone.py failed"
READY_NAME=$(awk -F'\t' '$1 == "ready" { print $2 }' "$DATA/samples.txt")
READY_IP=$(awk -F'\t' '$1 == "ready" { print $4 }' "$DATA/samples.txt")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- weft's cluster ---------------------------------------------------------
APPLY_NOTE="not run"
HAVE_DNS=0
KUBECONFIG_PATH=
kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

count_objects() { # RESOURCE: how many live in the team-* namespaces
    kc get "$1" -A --no-headers -o custom-columns=NS:.metadata.namespace 2>>"$TMP/kubectl.log" \
        | grep -c '^team-' || true
}

setup_cluster() {
    local dns_help start f pid done_pid n_svc n_eps t0 secs
    dns_help=$("$WEFT" dns --help 2>&1 || true)
    [[ $dns_help == *--listen* ]] && HAVE_DNS=1
    ((HAVE_DNS)) || log "weft has no 'dns' subcommand yet: the cluster and the apply run, weft's row reads n/a"
    timeout 120 "$WEFT" --name "$CLUSTER" down >/dev/null 2>&1 || true   # leftover of an interrupted run
    CLUSTER_UP=1
    log "weft --name $CLUSTER up --nodes 1 (WEFT_STATE_DIR=$WEFT_STATE_DIR)"
    t0=$(date +%s%N)
    bounded 300 "$WEFT" --name "$CLUSTER" up --nodes 1 >"$TMP/weft-up.log" 2>&1 \
        || die "weft up failed"
    log "cluster up in $(awk -v n=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", n / 1e9 }') s"
    KUBECONFIG_PATH=$("$WEFT" --name "$CLUSTER" kubeconfig)
    [[ -r $KUBECONFIG_PATH ]] || die "weft kubeconfig printed '$KUBECONFIG_PATH', not a readable file"

    # Server-side apply, the namespaces first, then one kubectl per namespace
    # file, APPLY_JOBS at a time (kubectl sends a file's objects one request
    # each, in sequence).  Each kubectl is ours, by pid.
    log "applying $COUNT Services + $COUNT EndpointSlices (server-side, $APPLY_JOBS kubectl at a time)"
    start=$(date +%s%N)
    bounded 300 kubectl --kubeconfig "$KUBECONFIG_PATH" apply --server-side --field-manager=dns-bench \
        -f "$DATA/manifests/00-namespaces.yaml" >"$TMP/kubectl.log" 2>&1 || die "applying the namespaces failed"
    local running=0
    for f in "$DATA"/manifests/ns-*.yaml; do
        if ((running >= APPLY_JOBS)); then
            wait -n -p done_pid || die "kubectl apply failed (see kubectl.log)"
            forget_pid "$done_pid"
            running=$((running - 1))
        fi
        bounded 900 kubectl --kubeconfig "$KUBECONFIG_PATH" apply --server-side \
            --field-manager=dns-bench -f "$f" >>"$TMP/kubectl.log" 2>&1 &
        PIDS+=("$!")
        running=$((running + 1))
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" || die "kubectl apply failed (see kubectl.log)"
        forget_pid "$pid"
    done
    secs=$(awk -v n=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", n / 1e9 }')
    log "applied in $secs s; waiting until the API lists them"
    t0=$SECONDS
    while :; do
        n_svc=$(count_objects services)
        n_eps=$(count_objects endpointslices)
        ((n_svc == COUNT && n_eps == COUNT)) && break
        ((SECONDS - t0 < 120)) || die "the API lists $n_svc Services and $n_eps EndpointSlices in team-*, not $COUNT"
        sleep 1
    done
    APPLY_SECS=$secs
    APPLY_TOTAL=$(awk -v n=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", n / 1e9 }')
    APPLY_NOTE="$COUNT Services + $COUNT EndpointSlices + $(grep -c '"Namespace"' "$DATA/manifests/00-namespaces.yaml") Namespaces: kubectl apply --server-side in $APPLY_SECS s ($APPLY_JOBS in parallel, one file per namespace), listed by the API after $APPLY_TOTAL s"
    log "$APPLY_NOTE"
}

# wait_quiet: the cluster's agent programs the Services into its node after
# the apply; wait (up to 180 s) until the machine's CPUs are mostly idle, so
# every server is measured against the same background.
QUIET_NOTE=
wait_quiet() {
    local t0=$SECONDS a b busy
    while ((SECONDS - t0 < 180)); do
        a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
        sleep 2
        b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
        busy=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2] + 1e-9) }')
        if ((busy < 20)); then
            QUIET_NOTE="CPUs ${busy}% busy when measuring started (waited $((SECONDS - t0)) s)"
            log "$QUIET_NOTE"
            return 0
        fi
        log "CPUs ${busy}% busy; waiting for the machine to settle"
    done
    QUIET_NOTE="the machine did not settle (CPUs ${busy}% busy after 180 s): figures taken on a busy machine"
    log "$QUIET_NOTE"
}

if [[ -n ${WANT[weft]:-} ]]; then
    setup_cluster
    wait_quiet
fi

# --- servers ----------------------------------------------------------------
start_knot() {
    local d=$TMP/knot
    mkdir -p "$d/db"
    cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    listen: 127.0.0.1@${PORT[knot]}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$d/db"
control:
    listen: "$d/knot.sock"
template:
  - id: default
    storage: "$DATA"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: cluster.local
  - domain: 10.in-addr.arpa
EOF
    taskset -c "$CORES" knotd -c "$d/knot.conf" >"$TMP/knot.log" 2>&1 &
    SERVER_PID=$!
}

start_nsd() {
    local d=$TMP/nsd
    mkdir -p "$d"
    cat >"$d/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@${PORT[nsd]}
    do-ip6: no
    server-count: 2
    reuseport: yes
    username: ""
    chroot: ""
    zonesdir: "$DATA"
    database: ""
    zonelistfile: "$d/zone.list"
    xfrdfile: "$d/xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd.pid"
    logfile: "$TMP/nsd.log"
    verbosity: 1
    # Debian's NSD has response rate limiting on (200 answers/s per /24 for
    # nxdomain and the like): off, as the other servers have none.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: cluster.local
    zonefile: cluster.local.zone
zone:
    name: 10.in-addr.arpa
    zonefile: 10.in-addr.arpa.zone
EOF
    nsd-checkconf "$d/nsd.conf" >&2 || die "nsd-checkconf refused the generated config"
    taskset -c "$CORES" nsd -d -c "$d/nsd.conf" >>"$TMP/nsd.log" 2>&1 &
    SERVER_PID=$!
}

start_dnsmasq() {
    # --conf-file replaces /etc/dnsmasq.conf; the data lines come from dns_zone.py.
    cat >"$TMP/dnsmasq.conf" <<EOF
port=${PORT[dnsmasq]}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
local=/cluster.local/
local=/10.in-addr.arpa/
local-ttl=5
pid-file=
log-facility=-
conf-file=$DATA/dnsmasq-data.conf
EOF
    taskset -c "$CORES" dnsmasq -k --conf-file="$TMP/dnsmasq.conf" >"$TMP/dnsmasq.log" 2>&1 &
    SERVER_PID=$!
}

start_weft() {
    taskset -c "$CORES" "$WEFT" dns --kubeconfig "$KUBECONFIG_PATH" \
        --listen "127.0.0.1:${PORT[weft]}" --metrics "$WEFT_METRICS" >"$TMP/weft-dns.log" 2>&1 &
    SERVER_PID=$!
}

dig_at() { # PORT NAME TYPE [dig options…]
    local p=$1 n=$2 t=$3
    shift 3
    dig @127.0.0.1 -p "$p" +time=1 +tries=1 "$@" "$n" "$t" 2>/dev/null
}

# wait_ready SERVER: until it answers dns-version TXT "1.1.0" and the ready
# name its address (weft: once its watches have listed the Services).
wait_ready() {
    local s=$1 p=${PORT[$1]} t0=$SECONDS limit=60
    [[ $s == weft ]] && limit=180
    while :; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$s exited before answering (see $s log below)"
        if [[ $(dig_at "$p" dns-version.cluster.local TXT +short) == '"1.1.0"' \
            && $(dig_at "$p" "$READY_NAME" A +short) == "$READY_IP" ]]; then
            log "$s answers on 127.0.0.1:$p after $((SECONDS - t0)) s"
            return 0
        fi
        ((SECONDS - t0 < limit)) || die "$s did not answer $READY_NAME A = $READY_IP within $limit s"
        sleep 0.2
    done
}

# answer_set PORT NAME TYPE: "RCODE rr|rr|…" as samples.txt writes it.
answer_set() {
    local out status rrs
    out=$(dig @127.0.0.1 -p "$1" +time=2 +tries=2 +noall +comments +answer "$2" "$3" 2>/dev/null) || return 1
    status=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out")
    rrs=$(grep -v '^;' <<<"$out" | awk 'NF { $2 = ""; $3 = ""; print tolower($0) }' | tr -s ' \t' ' ' \
        | LC_ALL=C sort | paste -sd'|')
    echo "$status $rrs"
}
answer_ttls() { # PORT NAME TYPE: the distinct TTLs of the answer
    dig @127.0.0.1 -p "$1" +time=2 +tries=2 +noall +answer "$2" "$3" 2>/dev/null | awk 'NF { print $2 }' | sort -u | paste -sd,
}

cross_check() { # SERVER: every sample answered exactly as the zone has it
    local s=$1 p=${PORT[$1]} kind name type want got bad=0 ttls
    while IFS=$'\t' read -r kind name type want; do
        [[ $kind == ready ]] && continue
        got=$(answer_set "$p" "$name" "$type") || got="(no answer)"
        if [[ $got != "$want" ]]; then
            log "MISMATCH $s: $kind $name $type"
            log "  zone:   $want"
            log "  $s: $got"
            bad=1
        fi
        ttls=$(answer_ttls "$p" "$name" "$type")
        [[ -z $ttls || $ttls == 5 ]] || log "warning: $s answers $name $type with TTL $ttls (zone: 5)"
    done <"$DATA/samples.txt"
    ((bad == 0)) || die "$s does not serve the same records as the zone (above)"
    log "$s: the 9 sample names match the zone"
}

run_dnsperf() { # SERVER OUT [extra dnsperf args…]
    local s=$1 out=$2 dpid
    shift 2
    bounded $((SECS + LAT_SECS + 60)) taskset -c "$CORES" dnsperf -s 127.0.0.1 -p "${PORT[$s]}" \
        -d "$DATA/queries.txt" -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -t 2 "$@" >"$out" 2>&1 &
    dpid=$!
    PIDS+=("$dpid")
    wait "$dpid" || die "dnsperf against $s failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    forget_pid "$dpid"
}

first_line() { # CMD…: the first line of its output (captured whole: with
    # pipefail, `| head -n1` closing the pipe early would fail the script)
    local out
    out=$("$@" 2>&1 || true)
    echo "${out%%$'\n'*}"
}
declare -A VERSION
VERSION[knot]=$(first_line knotd --version)
VERSION[nsd]=$(first_line nsd -v)
VERSION[dnsmasq]=$(first_line dnsmasq --version | sed 's/  Copyright.*//')
declare -A LABEL=([knot]="Knot DNS (udp-workers 2)" [nsd]="NSD (server-count 2)"
    [dnsmasq]="dnsmasq (1 thread)" [weft]="weft dns")
RESULTS=()

measure() { # SERVER
    local s=$1 tp lat
    log "$s: starting on 127.0.0.1:${PORT[$s]} (cores $CORES)"
    "start_$s"
    PIDS+=("$SERVER_PID")
    wait_ready "$s"
    cross_check "$s"
    log "$s: throughput run, $SECS s (dnsperf -c $CLIENTS -T $THREADS -q $OUTSTANDING)"
    run_dnsperf "$s" "$TMP/$s.throughput.out" -l "$SECS"
    tp=$("$PY" "$REPO/bench/dns_perf.py" throughput "$TMP/$s.throughput.out") \
        || die "$s: the throughput run did not give a figure"
    log "$s: $("$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.0f queries/s, avg %.3f ms, lost %.2f%%" % (r["qps"], r["avg_ms"], r["lost_pct"]))' "$tp")"
    log "$s: latency run, $LAT_SECS s at $LAT_QPS queries/s (dnsperf -v)"
    run_dnsperf "$s" "$TMP/$s.latency.out" -l "$LAT_SECS" -Q "$LAT_QPS" -v
    lat=$("$PY" "$REPO/bench/dns_perf.py" latency "$TMP/$s.latency.out") \
        || die "$s: the latency run failed its checks"
    "$PY" -c 'import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); a["server"]=sys.argv[3]; a["label"]=sys.argv[4]; print(json.dumps(a))' \
        "$tp" "$lat" "$s" "${LABEL[$s]}" >"$TMP/$s.result.json"
    RESULTS+=("$TMP/$s.result.json")
    stop_pid "$SERVER_PID"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -z $(ss -Hlun "sport = :${PORT[$s]}") ]] && break
        sleep 0.1
    done
    [[ -z $(ss -Hlun "sport = :${PORT[$s]}") ]] || die "$s still holds UDP ${PORT[$s]} after it was stopped"
}

for s in "${ORDER[@]}"; do
    [[ -n ${WANT[$s]:-} ]] || continue
    check_deadline
    if [[ $s == weft ]] && ((!HAVE_DNS)); then
        echo "{\"server\": \"weft\", \"label\": \"${LABEL[weft]}\", \"note\": \"n/a (no weft dns yet)\"}" >"$TMP/weft.result.json"
        RESULTS+=("$TMP/weft.result.json")
        continue
    fi
    measure "$s"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- autopath: an outside name from a pod with ndots:5 ----------------------
AUTOPATH_ROWS=()
dns_pod_queries() { # the sum of weft_dns_queries_total over the DNS pods, read from the resolver pod
    local ips ip sum=0 n
    ips=$(kc get pods -n kube-system -l k8s-app=kube-dns -o jsonpath='{.items[*].status.podIP}')
    [[ -n $ips ]] || die "autopath: no kube-dns pod IPs"
    for ip in $ips; do
        n=$(kc exec resolver -- curl -sf --max-time 5 "http://$ip:9153/metrics" \
            | awk '/^weft_dns_queries_total/ { s += $2 } END { printf "%d", s }') \
            || die "autopath: reading the metrics of $ip failed"
        sum=$((sum + n))
    done
    echo "$sum"
}
set_dns_args() { # EXTRA…: the weft-dns container's args with the upstream and EXTRA, rolled out
    local args patch t0
    args=$(kc get deployment weft-dns -n kube-system -o jsonpath='{.spec.template.spec.containers[0].args}')
    patch=$("$PY" -c 'import json,sys
a=[x for x in json.loads(sys.argv[1]) if not x.startswith(("--upstream", "--autopath"))]
a += ["--upstream=198.51.100.5"] + sys.argv[2:]
print(json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": a}]))' "$args" "$@")
    kc patch deployment weft-dns -n kube-system --type json -p "$patch" >/dev/null \
        || die "autopath: patching weft-dns failed"
    bounded 180 kubectl --kubeconfig "$KUBECONFIG_PATH" rollout status -n kube-system deployment/weft-dns --timeout=150s >&2 \
        || die "autopath: the weft-dns rollout did not finish"
    # The old pods gone: only the new ones answer (and are counted).
    t0=$SECONDS
    until [[ $(kc get pods -n kube-system -l k8s-app=kube-dns -o name | wc -l) -eq 2 ]]; do
        ((SECONDS - t0 < 60)) || die "autopath: old weft-dns pods still there after 60 s"
        sleep 0.5
    done
}
upstream_asked() { # MODE: the A queries for q<i>.MODE.example.test dnsmasq logged
    local n
    n=$(grep -c "query\[A\] q[0-9]*\.$1\.example\.test " "$TMP/upstream.log" 2>/dev/null) || true
    echo "${n:-0}"
}
autopath_row() { # MODE [EXTRA ARGS…]
    local mode=$1 before after up_before up_after out us
    shift
    set_dns_args "$@"
    # A first lookup must resolve, so the loop below measures answers.
    out=$(kc exec resolver -- getent ahostsv4 "probe.$mode.example.test" 2>&1 || true)
    [[ $out == 192.0.2.10* ]] || die "autopath $mode: probe.$mode.example.test did not resolve from the pod: $out"
    before=$(dns_pod_queries)
    up_before=$(upstream_asked "$mode")
    us=$(kc exec resolver -- sh -c 't0=$(date +%s%N); i=0
while [ $i -lt '"$AUTOPATH_N"' ]; do i=$((i + 1)); getent ahostsv4 q$i.'"$mode"'.example.test >/dev/null || { echo "lookup $i failed"; exit 1; }; done
echo $(( ($(date +%s%N) - t0) / 1000 ))') || die "autopath $mode: $us"
    after=$(dns_pod_queries)
    up_after=$(upstream_asked "$mode")
    AUTOPATH_ROWS+=("$("$PY" -c 'import sys
mode, n, q, up, us = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("| %s | %d | %.2f | %.2f | %.3f |" % (mode, n, q / n, up / n, us / n / 1000))' \
        "$mode" "$AUTOPATH_N" "$((after - before))" "$((up_after - up_before))" "$us")")
    log "autopath $mode: $((after - before)) queries to weft dns and $((up_after - up_before)) upstream for $AUTOPATH_N lookups in $((us / 1000)) ms"
}
if [[ -n ${WANT[weft]:-} ]] && ((HAVE_DNS && AUTOPATH_N > 0)); then
    check_deadline
    log "autopath: dnsmasq on the external client (198.51.100.5), a resolver pod, $AUTOPATH_N lookups per mode"
    ip netns exec "weft-$CLUSTER-client" dnsmasq --keep-in-foreground --no-resolv --no-hosts \
        --bind-interfaces --listen-address=198.51.100.5 --port=53 --address=/example.test/192.0.2.10 \
        --log-queries --log-facility="$TMP/upstream.log" --pid-file= --user=root >"$TMP/dnsmasq-upstream.log" 2>&1 &
    PIDS+=("$!")
    printf '%s\n' 'apiVersion: v1' 'kind: Pod' 'metadata: {name: resolver, namespace: default}' 'spec:' \
        '  containers:' '  - name: c' '    image: registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3' \
        '    command: [sleep, infinity]' >"$TMP/resolver.yaml"
    kc apply -f "$TMP/resolver.yaml" >/dev/null || die "autopath: creating the resolver pod failed"
    t0=$SECONDS
    until [[ $(kc get pod resolver -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
        ((SECONDS - t0 < 120)) || die "autopath: the resolver pod is not Ready after 120 s"
        sleep 0.5
    done
    autopath_row without
    autopath_row with --autopath
fi

# --- report -----------------------------------------------------------------
echo "## Cluster DNS: weft dns vs Knot DNS, NSD, dnsmasq"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -r)"
echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs)"
echo "- dnsperf: $(dnsperf -h 2>&1 | grep '^Version' || echo '?'); servers: ${VERSION[knot]}; ${VERSION[nsd]}; ${VERSION[dnsmasq]}"
if [[ -n ${WANT[weft]:-} ]]; then
    echo "- weft: $WEFT (sha256 $(sha256sum "$WEFT" | cut -c1-12), repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && echo ' + uncommitted changes')); weft dns: $(((HAVE_DNS)) && echo yes || echo 'not yet')"
    echo "- cluster: weft up --nodes 1 (bench-dns); $APPLY_NOTE"
    echo "- background: $QUIET_NOTE"
fi
echo "- data: bench/dns_zone.py --count $COUNT --seed $SEED: $(grep -c ' IN ' "$DATA/cluster.local.zone") forward + $(grep -c ' IN PTR ' "$DATA/10.in-addr.arpa.zone") PTR records, 100 namespaces, 80% ClusterIP (1-2 named ports), 20% headless (3 endpoints; half StatefulSet-style with hostnames); $(wc -l <"$DATA/queries.txt") queries: 60% A, 15% SRV, 10% PTR, 15% NXDOMAIN"
echo "- method: each server alone on 127.0.0.1, taskset -c $CORES (dnsperf on the same cores: $(nproc) CPUs shared by server and load); throughput = \`dnsperf -c $CLIENTS -T $THREADS -q $OUTSTANDING -l $SECS\` (QPS, avg/min/max latency); p50/p99 = \`dnsperf -Q $LAT_QPS -l $LAT_SECS -v\` per query (nearest rank), rcodes checked per query; answers to 9 sample names checked against the zone first"
echo "- load average: $LOAD_START at the start, $LOAD_END at the end"
echo
"$PY" "$REPO/bench/dns_perf.py" table "${RESULTS[@]}"
echo
if ((${#AUTOPATH_ROWS[@]})); then
    echo "An outside name from a pod with ndots:5 (\`getent ahostsv4\`, $AUTOPATH_N distinct names per row, through kube-dns to a dnsmasq upstream):"
    echo
    echo "| autopath | lookups | queries to weft dns / lookup | upstream queries / lookup | ms / lookup |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${AUTOPATH_ROWS[@]}"
    echo
fi
echo "Response codes (throughput run):"
echo
for f in "${RESULTS[@]}"; do
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))
if "rcodes" in r: print("- %s: %s; sent %d, completed %d, lost %d; latency stddev %.3f ms; p99.9 at the limited rate %.3f ms" % (r["label"], ", ".join("%s %d" % kv for kv in sorted(r["rcodes"].items())), r["sent"], r["completed"], r["lost"], r["stddev_ms"], r["p999_ms"]))' "$f"
done
echo
echo "Line for docs/benchmarks.md:"
echo
"$PY" -c 'import json,sys
rows=[json.load(open(p)) for p in sys.argv[2:]]
knot=next((r for r in rows if r["server"]=="knot" and "qps" in r), None)
parts=[]
for r in rows:
    if "qps" not in r: parts.append("%s %s" % (r["server"], r.get("note","n/a"))); continue
    x=r["qps"]/knot["qps"] if knot else 0
    ratio=(" (%sx knot)" % ("%.2f" % x if x >= 0.1 else "%.3g" % x)) if knot and r is not knot else ""
    parts.append("%s %.0f qps%s, p99 %.3f ms" % (r["server"], r["qps"], ratio, r["p99_ms"]))
print("- %s, %s Services, `bench/dns.sh` (%s s, dnsperf -c %s -T %s): %s" % (sys.argv[1].split()[0], sys.argv[1].split()[1], sys.argv[1].split()[2], sys.argv[1].split()[3], sys.argv[1].split()[4], "; ".join(parts)))' \
    "$(date -u +%F) $COUNT $SECS $CLIENTS $THREADS" "${RESULTS[@]}"
