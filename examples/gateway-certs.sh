#!/usr/bin/env bash
# Certificates for the gateway example (README "Ingress and Gateway API"):
# a throw-away CA and three leaves made with openssl in DIR, stored in the
# cluster as the Secrets and the ConfigMap examples/gateway-tls.yaml uses:
#   a-tls       a.example.com       (the gateway terminates TLS with it)
#   b-tls       b.example.com       (a second certificate, chosen by SNI)
#   secure-own  secure.default.svc  (the backend's own: passthrough and re-encryption)
#   test-ca     ConfigMap, ca.crt   (what the gateway trusts when it re-encrypts)
# Usage: examples/gateway-certs.sh DIR   (kubectl must reach the cluster:
# KUBECONFIG=$(weft kubeconfig) for the embedded one)
set -euo pipefail
dir=${1:?usage: gateway-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 30 -subj "/CN=weft example CA" 2>/dev/null
leaf() { # name dns
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" -addext "subjectAltName=DNS:$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -copy_extensions copyall -out "$1.crt" 2>/dev/null
}
leaf a a.example.com
leaf b b.example.com
leaf secure secure.default.svc
for s in a-tls:a b-tls:b secure-own:secure; do
    kubectl create secret tls "${s%%:*}" --cert "${s#*:}.crt" --key "${s#*:}.key" \
        --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
kubectl create configmap test-ca --from-file=ca.crt=ca.crt --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo "certificates in $dir; Secrets a-tls, b-tls, secure-own and ConfigMap test-ca applied"
