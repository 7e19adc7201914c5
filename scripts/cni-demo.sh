#!/usr/bin/env bash
# A CNI demonstration until `weft up` exists: a "node" namespace with the
# bridge cni0, two pods wired by weft-cni exactly as a container runtime would
# call it, traffic between them and from a neighbour host through a hostPort,
# then DEL and a clean exit. Everything lives in weft-demo-* namespaces, which
# are removed at the end (also on Ctrl-C or failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "building weft-cni"
cargo build --release --locked -p weft-cni 2>&1 | tail -1
CNI=$CARGO_TARGET_DIR/release/weft-cni

NODE=weft-demo-node
PODS=(weft-demo-pod-a weft-demo-pod-b)
NBR=weft-demo-client
STATE=$(mktemp -d /tmp/weft-demo.XXXXXX)
server_pid=

cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    for ns in "$NODE" "${PODS[@]}" "$NBR"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$STATE"
}
trap cleanup EXIT
cleanup_leftovers() { for ns in "$NODE" "${PODS[@]}" "$NBR"; do ip netns del "$ns" 2>/dev/null || true; done; }
cleanup_leftovers

step "a node (netns $NODE, eth0 192.168.1.10) and a neighbour host (192.168.1.100)"
ip netns add "$NODE"
ip netns add "$NBR"
ip -n "$NODE" link add eth0 type veth peer name eth0 netns "$NBR"
ip -n "$NODE" addr add 192.168.1.10/24 dev eth0 && ip -n "$NODE" link set eth0 up
ip -n "$NBR" addr add 192.168.1.100/24 dev eth0 && ip -n "$NBR" link set eth0 up

conf() { # $1: extra runtimeConfig JSON
    cat <<JSON
{"cniVersion": "1.1.0", "name": "podnet", "type": "weft-cni",
 "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "hairpinMode": true,
 "ipam": {"subnet": "10.244.1.0/24", "gateway": "10.244.1.1", "dataDir": "$STATE"},
 "capabilities": {"portMappings": true}, "runtimeConfig": ${1:-{\}}}
JSON
}
cni() { # $1 verb, $2 pod netns, $3 runtimeConfig
    conf "${3:-}" | ip netns exec "$NODE" env CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
        CNI_NETNS="/var/run/netns/$2" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$CNI"
}

declare -A ip_of
for pod in "${PODS[@]}"; do
    ip netns add "$pod"
    rc='{}'
    [[ $pod == weft-demo-pod-b ]] && rc='{"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}'
    step "CNI ADD $pod   (runtimeConfig: $rc)"
    result=$(cni ADD "$pod" "$rc")
    echo "$result" | python3 -m json.tool
    ip_of[$pod]=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])')
done
A=${ip_of[weft-demo-pod-a]} B=${ip_of[weft-demo-pod-b]}

step "inside pod-a: addresses and routes"
ip -n weft-demo-pod-a -br addr
ip -n weft-demo-pod-a route
step "on the node: the bridge and its ports"
ip -n "$NODE" -br addr show cni0
ip netns exec "$NODE" bridge link

step "pod-a ($A) pings pod-b ($B)"
ip netns exec weft-demo-pod-a ping -c 2 -W 2 "$B"

step "HTTP: pod-b serves on :80; pod-a and the neighbour (via hostPort 192.168.1.10:8080) fetch"
mkdir -p "$STATE/www" && echo "hello from pod-b ($B)" > "$STATE/www/index.html"
ip netns exec weft-demo-pod-b python3 -m http.server 80 --bind "$B" --directory "$STATE/www" >/dev/null 2>&1 &
server_pid=$!
fetch() { # $1 netns, $2 url
    ip netns exec "$1" python3 - "$2" <<'PY'
import sys, time, urllib.request
for attempt in range(50):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip()); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"could not fetch {sys.argv[1]}")
PY
}
echo -n "pod-a     → http://$B/           : "; fetch weft-demo-pod-a "http://$B/"
echo -n "neighbour → http://192.168.1.10:8080/ : "; fetch "$NBR" "http://192.168.1.10:8080/"
ip netns exec "$NODE" nft list chain inet weft-cni hostports

kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
server_pid=

for pod in "${PODS[@]}"; do
    step "CNI DEL $pod"
    rc='{}'
    [[ $pod == weft-demo-pod-b ]] && rc='{"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}'
    cni DEL "$pod" "$rc" && echo "ok"
done
step "after DEL: node ports and IPAM state"
ip netns exec "$NODE" bridge link | sed 's/^/  /'; echo "  (no ports left)"
ls "$STATE/podnet" | sed 's/^/  /'
echo
echo "weft-cni demo done: two pods wired, talking, reachable through a hostPort, and cleaned up."
