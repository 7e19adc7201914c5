#!/usr/bin/env bash
# CNI ADD/DEL latency: weft-cni vs the reference bridge + host-local plugins.
#
#   sudo bench/cni.sh                  # both setups, N=200 sequential, CONC=50
#   sudo N=10 CONC=5 ONLY=ref bench/cni.sh
#
# Env: N (sequential pods), CONC (concurrent pods), ONLY=weft|ref (default both),
#      ROUNDS (default 1; >1 alternates which setup goes first and pools samples),
#      WEFT_CNI=/path/to/weft-cni (skip the cargo build), WEFT_CONF=/path/conf.json
#      (override the weft-cni network config), CARGO_TARGET_DIR.
#
# Every plugin runs inside its own weft-bench-node-* netns (plugins create a
# bridge wherever they run); the root netns is never touched, and is diffed at
# exit to prove it.  Report (markdown) goes to stdout, progress to stderr.
set -euo pipefail

N=${N:-200}
CONC=${CONC:-50}
ROUNDS=${ROUNDS:-1}
ONLY=${ONLY:-both}
REF_DIR=/usr/lib/cni
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}

log() { echo "cni.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (creates network namespaces)"
case $ONLY in both|weft|ref) ;; *) die "ONLY must be weft, ref or both" ;; esac
[[ $N =~ ^[1-9][0-9]*$ && $CONC =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] \
    || die "N, CONC and ROUNDS must be positive integers"

# Cleanup below removes every weft-bench-* netns, so two runs must not overlap.
# Lock the script file itself, so no lock file is left behind.
exec 9<"${BASH_SOURCE[0]}"
flock -n 9 || die "another bench/cni.sh run is in progress"

# --- dependencies -----------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v python3 >/dev/null || missing+=(python3)
[[ -x $REF_DIR/bridge && -x $REF_DIR/host-local ]] || missing+=(containernetworking-plugins)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi

if [[ $ONLY != ref ]]; then
    if [[ -z ${WEFT_CNI:-} ]]; then
        log "building weft-cni (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$REPO" && cargo build --release -p weft-cni >&2) \
            || die "cargo build -p weft-cni failed (use ONLY=ref to bench the reference plugins alone)"
        WEFT_CNI=$CARGO_TARGET_DIR/release/weft-cni
    fi
    [[ -x $WEFT_CNI ]] || die "weft-cni binary not found or not executable: $WEFT_CNI
  build it (cargo build --release -p weft-cni), point WEFT_CNI at it, or run with ONLY=ref"
    WEFT_CNI=$(realpath "$WEFT_CNI")
fi

# --- root netns snapshot + cleanup -----------------------------------------
root_state() {
    ip -o link
    ip -o addr | sed 's/ valid_lft.*//'   # lifetimes tick; not a change we made
    ip route show table all
    ip -6 route show table all
    ip rule; ip -6 rule
    nft list ruleset
    sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding
}

TMP=$(mktemp -d /tmp/weft-bench-cni.XXXXXX)
root_state >"$TMP/root.before" 2>&1
DRIVER_PID=

bench_netns() { ip netns list | awk '{print $1}' | grep '^weft-bench-' || true; }

cleanup() {
    local rc=$? ns
    trap - EXIT INT TERM
    if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    # Deleting a node netns also takes its bridge, veths and nft state with it.
    for ns in $(bench_netns); do ip netns del "$ns" || rc=1; done
    root_state >"$TMP/root.after" 2>&1
    if ! diff -u "$TMP/root.before" "$TMP/root.after" >&2; then
        log "error: root network namespace changed during the bench (diff above)"
        rc=1
    fi
    [[ -z $(bench_netns) ]] || { log "error: weft-bench-* netns left behind"; rc=1; }
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

stale=$(bench_netns)
if [[ -n $stale ]]; then
    log "removing leftover netns from an earlier run: $(echo $stale)"
    for ns in $stale; do ip netns del "$ns"; done
fi

# --- network configs --------------------------------------------------------
# Same features on both sides: bridge, gateway on the bridge, default route in
# the pod, no masquerade, no hairpin (both default off).  Separate node netns
# and bridge names keep the two setups from seeing each other.
if [[ -n ${WEFT_CONF:-} ]]; then
    cp "$WEFT_CONF" "$TMP/weft.json"
else
    cat >"$TMP/weft.json" <<EOF
{"cniVersion":"1.0.0","name":"benchnet","type":"weft-cni","bridge":"weft0",
 "isGateway":true,"isDefaultGateway":true,
 "ipam":{"subnet":"10.244.0.0/16","gateway":"10.244.0.1","dataDir":"$TMP/weft-ipam"}}
EOF
fi
cat >"$TMP/ref.json" <<EOF
{"cniVersion":"1.0.0","name":"benchnet","type":"bridge","bridge":"ref0",
 "isGateway":true,"isDefaultGateway":true,
 "ipam":{"type":"host-local","subnet":"10.244.0.0/16","gateway":"10.244.0.1",
         "dataDir":"$TMP/ref-ipam"}}
EOF

# --- run --------------------------------------------------------------------
run_setup() { # tag round
    local tag=$1 node=weft-bench-node-$1 plugin cni_path
    if [[ $tag == weft ]]; then
        plugin=$WEFT_CNI cni_path=$(dirname "$WEFT_CNI"):$REF_DIR
    else
        plugin=$REF_DIR/bridge cni_path=$REF_DIR
    fi
    rm -rf "${TMP:?}/$tag-ipam" && mkdir "$TMP/$tag-ipam"   # fresh IPAM state per round
    ip netns add "$node"
    ip -n "$node" link set lo up
    log "round $2/$ROUNDS $tag: $N sequential + $CONC concurrent pods in netns $node"
    # Backgrounded + wait so the EXIT trap can stop it on failure or Ctrl-C.
    python3 "$REPO/bench/cni_driver.py" run --tag "$tag" --node-ns "$node" \
        --plugin "$plugin" --conf "$TMP/$tag.json" --cni-path "$cni_path" \
        --seq "$N" --conc "$CONC" --out "$TMP/$tag.$2.result.json" &
    DRIVER_PID=$!
    wait "$DRIVER_PID" || die "$tag run failed"
    DRIVER_PID=
    ip netns del "$node"
    results+=("$TMP/$tag.$2.result.json")
}

results=()
for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate who goes first so neither setup always gets the quieter slot.
    case $ONLY in
        weft) order=(weft) ;;
        ref) order=(ref) ;;
        *) if ((round % 2)); then order=(weft ref); else order=(ref weft); fi ;;
    esac
    for tag in "${order[@]}"; do run_setup "$tag" "$round"; done
done

# --- report -----------------------------------------------------------------
ref_ver=$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
weft_ver=unknown
if [[ $ONLY != ref ]]; then
    weft_ver="$WEFT_CNI (sha256 $(sha256sum "$WEFT_CNI" | cut -c1-12), repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
fi
echo "## CNI ADD/DEL latency: weft-cni vs reference bridge + host-local"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -r)"
echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs)"
echo "- weft-cni: $([[ $ONLY == ref ]] && echo 'not run' || echo "$weft_ver")"
echo "- reference: containernetworking-plugins $([[ $ONLY == weft ]] && echo 'not run' || echo "$ref_ver") (bridge + host-local)"
echo "- pods: $N sequential (all ADDs, then all DELs), $CONC concurrent (ADDs at once, then DELs at once), x$ROUNDS round(s) pooled; cniVersion 1.0.0; one untimed warm-up pod per setup and round"
echo "- timed: the plugin subprocess only (driver already inside the node netns; pod netns pre-created)"
echo
python3 "$REPO/bench/cni_driver.py" report "${results[@]}"
