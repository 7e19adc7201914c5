#!/usr/bin/env bash
# The main job: build weft, start the embedded 2-node demo cluster
# (examples/demo.yaml: frontend, backend ×3, database; Services), and show it
# working. Re-running it re-applies the manifest to the live cluster.
# Remove it with: weft down   (the binary is in $CARGO_TARGET_DIR/release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weft-target}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "building weft (release)"
cargo build --release --locked --bins 2>&1 | tail -1
WEFT=$CARGO_TARGET_DIR/release/weft
ln -sf "$WEFT" /usr/local/bin/weft 2>/dev/null || true

step "weft up -f examples/demo.yaml"
"$WEFT" up -f examples/demo.yaml

step "weft get svc,endpointslices"
"$WEFT" get svc
"$WEFT" get endpointslices

# A netexec pod on node-1 asks one on node-2 for its hostname over TCP and UDP
# (across the VXLAN overlay), and for the source address it saw.
read -r -a pods < <("$WEFT" get pods -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
web = [p for p in items if p["metadata"]["labels"].get("app") in ("frontend", "backend")]
pick = [next(p for p in web if p["spec"].get("nodeName") == n) for n in ("node-1", "node-2")]
print(" ".join(p["metadata"]["name"] + " " + p["status"]["podIP"] for p in pick))')
if ((${#pods[@]} >= 4)); then
    step "pod ${pods[0]} (${pods[1]}, node-1) dials pod ${pods[2]} (${pods[3]}, node-2) through netexec /dial"
    for proto in http udp; do
        port=8080; [[ $proto == udp ]] && port=8081
        echo -n "$proto: "
        "$WEFT" exec --node node-1 -- python3 -c "import urllib.request; print(urllib.request.urlopen('http://${pods[1]}:8080/dial?request=hostname&protocol=$proto&host=${pods[3]}&port=$port&tries=1', timeout=10).read().decode())"
    done
    echo -n "source seen by ${pods[2]}: "
    "$WEFT" exec --node node-1 -- python3 -c "import urllib.request; print(urllib.request.urlopen('http://${pods[1]}:8080/dial?request=clientip&protocol=http&host=${pods[3]}&port=8080&tries=1', timeout=10).read().decode())"
fi

# Services: every node's agent programs table inet weft-proxy (kube-proxy's job).
backend_ip=$("$WEFT" get svc backend -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
frontend=$("$WEFT" get pods -o json | python3 -c '
import json, sys
print(next(p["metadata"]["name"] for p in json.load(sys.stdin)["items"] if p["metadata"]["labels"].get("app") == "frontend"))')
step "pod $frontend → Service backend (ClusterIP $backend_ip:80), 6 new connections, DNATed to the 3 backends"
"$WEFT" exec "$frontend" -- python3 -c "
import urllib.request
for _ in range(6): print(urllib.request.urlopen('http://$backend_ip/hostname', timeout=5).read().decode())"
step "external client 198.51.100.5 → NodePort 30080 (Service frontend) on every node"
for ip in $("$WEFT" get nodes -o json | python3 -c '
import json, sys
for n in json.load(sys.stdin)["items"]:
    print(next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"))'); do
    echo -n "$ip:30080 → "
    "$WEFT" exec --external -- python3 -c "import urllib.request; print(urllib.request.urlopen('http://$ip:30080/hostname', timeout=5).read().decode())"
done
step "external client 198.51.100.5 → LoadBalancer 203.0.113.50 (Service my-app): the fabric asks who has it, one node answers (tcpdump -i fabric0 arp)"
"$WEFT" get svc my-app
fabric=weft-weft-fabric
ip netns exec "$fabric" ip neigh flush to 203.0.113.50 dev fabric0
capture_log=$(mktemp)
ip netns exec "$fabric" timeout 10 tcpdump -nn -l -c 2 -i fabric0 arp and host 203.0.113.50 2>"$capture_log" &
tcpdump_pid=$!
until grep -q "listening on" "$capture_log" || ! kill -0 "$tcpdump_pid" 2>/dev/null; do sleep 0.05; done
echo -n "client address seen by the backend: "
"$WEFT" exec --external -- curl -s -m 5 http://203.0.113.50/clientip; echo
wait "$tcpdump_pid" || true
rm -f "$capture_log"
step "node-1: where a packet to $backend_ip:80 goes (nft list map inet weft-proxy service-ips)"
"$WEFT" exec --node node-1 -- nft list map inet weft-proxy service-ips

step "inside pod database-0: hostname and /etc/resolv.conf"
"$WEFT" exec database-0 -- hostname
"$WEFT" exec database-0 -- cat /etc/resolv.conf

step "node-1: its links, and routes to the other nodes' pods over weft.vxlan"
"$WEFT" exec --node node-1 -- ip -br addr show
"$WEFT" exec --node node-1 -- ip route

echo
echo "The demo cluster is running. Try: weft get pods -A -o wide, kubectl --kubeconfig \$(weft kubeconfig) get all, weft down."
