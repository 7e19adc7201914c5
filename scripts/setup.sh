#!/usr/bin/env bash
# Installs what weft's demo, tests and benchmarks need on a Debian machine
# (root), and checks the Rust toolchain. Idempotent: a second run installs nothing.
set -euo pipefail

log() { echo "setup: $*" >&2; }
[[ $EUID -eq 0 ]] || { log "run as root (weft creates network namespaces)"; exit 1; }

# command → Debian package
declare -A need=(
    [ip]=iproute2
    [nft]=nftables
    [ping]=iputils-ping
    [tcpdump]=tcpdump
    [dig]=dnsutils
    [iperf3]=iperf3
    [python3]=python3
    [flock]=util-linux
    [cc]=gcc
    [ethtool]=ethtool
    [conntrack]=conntrack
)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# The reference CNI plugins: chained in tests and the anchor of bench/cni.sh.
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/tuning ]] \
    || missing+=(containernetworking-plugins)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the machine's toolchain (rustup's, in ~/.cargo/bin), else Debian's.
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    log "no cargo found; installing Debian's cargo and rustc"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo rustc >/dev/null
fi
# Fuzzing (scripts/fuzz.sh): a nightly toolchain (the machines carry one) and cargo-fuzz.
if ! cargo +nightly --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
log "ready: $(cargo --version)"
