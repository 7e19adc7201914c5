#!/usr/bin/env bash
# weft gateway's proxy against nginx and haproxy (Debian packages), the same
# route and certificate for all three, on the same cores, one after the
# other in one run:
#   HTTP/1.1 keep-alive, HTTPS keep-alive, new TLS connections per second
#   (Connection: close, a full handshake each), and HTTP/2 over TLS (h2load).
# Requests/s and latency p50/p99 (wrk --latency; h2load gives the mean and
# its spread). Every proxy splits `/` between two backends (one static nginx
# on two ports) for the host bench.example.com, with its access log off.
#
#   sudo bench/gateway.sh > result.md     # markdown on stdout, progress on stderr
#   sudo SECS=20 CONNS=128 bench/gateway.sh
#
# Env: SECS (seconds per load run; default 10), CONNS (client connections;
# default 64), THREADS (wrk threads; default 2), STREAMS (h2load streams per
# connection; default 10), BIN (a built gateway_bench example: skip the cargo
# build), CARGO_TARGET_DIR (default /var/tmp/weft-target), WEFT_ARGS (more
# flags for gateway_bench, e.g. --per-core: one single-threaded proxy per CPU).
#
# Topology, nothing in the root netns (all removed on exit):
#   weft-bench-gw-cli  the client (wrk, h2load): eth0 10.88.0.2/24
#       --veth-- weft-bench-gw-px eth0 10.88.0.1/24: the proxy under test
#                (weft :80/:443, nginx :8080/:8443, haproxy :9080/:9443)
#   weft-bench-gw-px eth1 10.88.1.1/24 --veth-- weft-bench-gw-be eth0
#                10.88.1.2/24: the backends (nginx, :8081 and :8082)
# The client resolves bench.example.com through a hosts file bind-mounted
# over /etc/hosts in its own mount namespace (unshare -m), so TLS clients
# send the SNI the listeners are keyed on; the machine's /etc/hosts is not
# touched.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}
SECS=${SECS:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
STREAMS=${STREAMS:-10}
log() { echo "gateway.sh: $*" >&2; }
die() { log "$*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root (network namespaces)"

# --- dependencies -------------------------------------------------------------
declare -A need=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [h2load]=nghttp2-client [openssl]=openssl [ip]=iproute2)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]} (their services are kept from starting)"
    # No package's own service may start on the machine: policy-rc.d says no
    # to every start while we install (and is removed again).
    rcd=/usr/sbin/policy-rc.d
    had_rcd=0
    [[ -e $rcd ]] && had_rcd=1
    if ((!had_rcd)); then
        printf '#!/bin/sh\nexit 101\n' >"$rcd"
        chmod +x "$rcd"
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || { ((had_rcd)) || rm -f "$rcd"; die "apt-get install failed"; }
    ((had_rcd)) || rm -f "$rcd"
fi

if [[ -z ${BIN:-} ]]; then
    log "building the gateway_bench example (release)"
    (cd "$REPO" && cargo build --release --locked -p weft-gateway --example gateway_bench >&2) || die "cargo build failed"
    BIN=$CARGO_TARGET_DIR/release/examples/gateway_bench
fi
[[ -x $BIN ]] || die "no $BIN"

# --- topology and cleanup -----------------------------------------------------
CLI=weft-bench-gw-cli PX=weft-bench-gw-px BE=weft-bench-gw-be
TMP=$(mktemp -d /tmp/weft-bench-gw.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for n in $CLI $PX $BE; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
for n in $CLI $PX $BE; do
    ip netns del "$n" 2>/dev/null || true
    ip netns add "$n"
    ip -n "$n" link set lo up
done
ip -n $CLI link add eth0 type veth peer name eth0 netns $PX
ip -n $PX link add eth1 type veth peer name eth0 netns $BE
ip -n $CLI addr add 10.88.0.2/24 dev eth0
ip -n $PX addr add 10.88.0.1/24 dev eth0
ip -n $PX addr add 10.88.1.1/24 dev eth1
ip -n $BE addr add 10.88.1.2/24 dev eth0
for pair in "$CLI eth0" "$PX eth0" "$PX eth1" "$BE eth0"; do
    set -- $pair
    ip -n "$1" link set "$2" up
done
ip -n $BE route add default via 10.88.1.1
ip -n $CLI route add default via 10.88.0.1

# The certificate all three proxies serve.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$TMP/tls.key" -out "$TMP/tls.crt" -subj /CN=bench.example.com \
    -addext subjectAltName=DNS:bench.example.com 2>/dev/null
cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/haproxy.pem"
printf '127.0.0.1 localhost\n10.88.0.1 bench.example.com\n' >"$TMP/hosts"

in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
start() { # NETNS CMD… : in the background, remembered for cleanup
    local n=$1; shift
    ip netns exec "$n" "$@" >>"$TMP/servers.log" 2>&1 &
    PIDS+=($!)
}
wait_port() { # NETNS ADDR PORT
    for _ in $(seq 1 100); do
        in_ns "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $2:$3 in $1 (see below)"$'\n'"$(tail -20 "$TMP/servers.log")"
}

# --- servers ------------------------------------------------------------------
mkdir -p "$TMP/be" "$TMP/ng"
cat >"$TMP/be/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/be/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/be; proxy_temp_path $TMP/be; fastcgi_temp_path $TMP/be;
    uwsgi_temp_path $TMP/be; scgi_temp_path $TMP/be;
    keepalive_requests 1000000;
    server { listen 10.88.1.2:8081; listen 10.88.1.2:8082; location / { return 200 "ok\n"; } }
}
EOF
start $BE nginx -e "$TMP/be/error.log" -p "$TMP/be" -c "$TMP/be/nginx.conf" -g 'daemon off;'
cat >"$TMP/ng/nginx.conf" <<EOF
worker_processes 2;
pid $TMP/ng/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/ng; proxy_temp_path $TMP/ng; fastcgi_temp_path $TMP/ng;
    uwsgi_temp_path $TMP/ng; scgi_temp_path $TMP/ng;
    keepalive_requests 1000000;
    upstream backends { server 10.88.1.2:8081; server 10.88.1.2:8082; keepalive 128; }
    server {
        listen 10.88.0.1:8080;
        listen 10.88.0.1:8443 ssl http2;
        server_name bench.example.com;
        ssl_certificate $TMP/tls.crt;
        ssl_certificate_key $TMP/tls.key;
        ssl_session_cache shared:SSL:10m;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
start $PX nginx -e "$TMP/ng/error.log" -p "$TMP/ng" -c "$TMP/ng/nginx.conf" -g 'daemon off;'
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
frontend web
    bind 10.88.0.1:9080
    bind 10.88.0.1:9443 ssl crt $TMP/haproxy.pem alpn h2,http/1.1
    default_backend backends
backend backends
    balance roundrobin
    http-reuse always
    server a 10.88.1.2:8081
    server b 10.88.1.2:8082
EOF
start $PX haproxy -db -f "$TMP/haproxy.cfg"
# shellcheck disable=SC2086 # WEFT_ARGS is a list of flags
start $PX "$BIN" --bind 10.88.0.1 --backend 10.88.1.2:8081 --backend 10.88.1.2:8082 \
    --cert "$TMP/tls.crt" --key "$TMP/tls.key" ${WEFT_ARGS:-}
wait_port $BE 10.88.1.2 8081
for p in 80 443 8080 8443 9080 9443; do wait_port $PX 10.88.0.1 $p; done

# --- load ---------------------------------------------------------------------
client() { # CMD… in the client netns, with bench.example.com resolving to the proxy
    in_ns $CLI unshare -m sh -c 'mount --bind "$0" /etc/hosts && shift && exec "$@"' "$TMP/hosts" _ "$@"
}
# A check first: each proxy answers the backends' "ok" through both ports.
for pp in "weft 80 443" "nginx 8080 8443" "haproxy 9080 9443"; do
    set -- $pp
    out=$(client curl -sS -k --max-time 5 "http://bench.example.com:$2/" ; client curl -sS -k --max-time 5 "https://bench.example.com:$3/")
    [[ $out == $'ok\nok' ]] || die "$1 does not answer ok on $2/$3: $out"
done
log "every proxy answers; $SECS s per run, $CONNS connections, $THREADS wrk threads"

wrk_run() { # URL [wrk args…] → "req/s p50 p99" (ms)
    local url=$1; shift
    local out
    out=$(client wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>&1) || die "wrk $url: $out"
    local rps p50 p99 errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print $0}' <<<"$out" | tr '\n' ' ')
    [[ -n $rps ]] || die "wrk $url printed no rate: $out"
    echo "$rps $(ms "$p50") $(ms "$p99") ${errs:-}"
}
ms() { # wrk's 1.23ms / 456.00us / 1.2s → milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
h2_run() { # URL → "req/s mean sd" (ms)
    local out
    out=$(client h2load -c"$CONNS" -m"$STREAMS" -t"$THREADS" -D"$SECS" "$1" 2>&1) || die "h2load $1: $out"
    local rps mean sd
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    sd=$(awk '/^time for request:/ {print $7}' <<<"$out")
    local failed
    # requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout
    failed=$(awk '/^requests:/ {print $10}' <<<"$out")
    [[ -n $rps ]] || die "h2load $1 printed no rate: $out"
    echo "$rps $(ms "$mean") $(ms "$sd") failed=$failed"
}

declare -A R
for pp in "weft 80 443" "nginx 8080 8443" "haproxy 9080 9443"; do
    set -- $pp
    log "$1: HTTP/1.1 keep-alive"
    R[$1,http]=$(wrk_run "http://bench.example.com:$2/")
    log "$1: HTTPS keep-alive"
    R[$1,https]=$(wrk_run "https://bench.example.com:$3/")
    log "$1: new TLS connections"
    R[$1,newtls]=$(wrk_run "https://bench.example.com:$3/" -H "Connection: close")
    log "$1: HTTP/2"
    R[$1,h2]=$(h2_run "https://bench.example.com:$3/")
done

# --- report -------------------------------------------------------------------
field() { awk -v i="$2" '{print $i}' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "## Ingress/Gateway proxy — \`bench/gateway.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- kernel $(uname -r); $(nproc) CPUs; nginx $(nginx -v 2>&1 | sed 's/.*\///'); haproxy $(haproxy -v | awk 'NR==1 {print $3}'); wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'); h2load $(h2load --version | awk '{print $NF}')"
echo "- weft: $BIN ${WEFT_ARGS:-} (repo $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet || echo ' + uncommitted changes'))"
echo "- $SECS s per run, $CONNS connections, $THREADS client threads ($STREAMS streams per connection for HTTP/2); one route, two backends (a static nginx), access logs off; everything on the same $(nproc) CPUs"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | weft req/s | p50 / p99 (ms) | nginx req/s | p50 / p99 | haproxy req/s | p50 / p99 | weft / nginx | weft / haproxy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in http https newtls h2; do
    case $t in
        http) name="HTTP/1.1 keep-alive" ;;
        https) name="HTTPS keep-alive" ;;
        newtls) name="new TLS connection per request" ;;
        h2) name="HTTP/2 (TLS; mean ± sd, not p50/p99)" ;;
    esac
    w=${R[weft,$t]} n=${R[nginx,$t]} h=${R[haproxy,$t]}
    sep=" / "
    [[ $t == h2 ]] && sep=" ± "
    echo "| $name | $(field "$w" 1) | $(field "$w" 2)$sep$(field "$w" 3) | $(field "$n" 1) | $(field "$n" 2)$sep$(field "$n" 3) | $(field "$h" 1) | $(field "$h" 2)$sep$(field "$h" 3) | $(ratio "$(field "$w" 1)" "$(field "$n" 1)") | $(ratio "$(field "$w" 1)" "$(field "$h" 1)") |"
done
echo
echo "Errors or failed requests (empty: none):"
for k in "${!R[@]}"; do
    extra=$(awk '{for (i = 4; i <= NF; i++) printf "%s ", $i}' <<<"${R[$k]}")
    [[ -z ${extra// /} || $extra == "failed=0 " ]] || echo "- $k: $extra"
done
