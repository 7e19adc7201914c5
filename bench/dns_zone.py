#!/usr/bin/env python3
"""Deterministic cluster-DNS data set for bench/dns.sh.

    dns_zone.py --count 10000 --seed 1 --out DIR

Builds COUNT Services in the cluster domain cluster.local from SEED (same
arguments, same bytes out) and writes, into DIR:

  manifests/00-namespaces.yaml   the Namespaces (applied first)
  manifests/ns-NN.yaml           per namespace: Services (no selector, explicit
                                 spec.clusterIP from 10.96.0.0/12) and their
                                 EndpointSlices (kubernetes.io/service-name,
                                 addressType IPv4, ready=true, 10.244.0.0/16)
  cluster.local.zone             RFC 1035 master file of the forward zone
  10.in-addr.arpa.zone           the reverse zone (PTR of 10.96.0.0/12 and of
                                 the endpoint addresses the spec gives PTRs to)
  dnsmasq-data.conf              the same records as dnsmasq config lines
  queries.txt                    dnsperf input ("name TYPE" per line), shuffled
  samples.txt                    names for the servers' cross-check and the
                                 answers the zone gives them (see samples())

The records are the ones the Kubernetes DNS-Based Service Discovery
specification 1.1.0 (kubernetes/dns docs/specification.md) defines for them:

  ClusterIP Service:  <svc>.<ns>.svc.cluster.local A <clusterIP>;
                      _<port>._<proto>.<svc>.<ns>.svc.cluster.local
                        SRV 0 100 <port> <svc>.<ns>.svc.cluster.local.;
                      PTR of the clusterIP -> <svc>.<ns>.svc.cluster.local.
  headless Service:   <svc>.<ns>.svc.cluster.local A, one per ready endpoint;
                      with endpoint hostnames (StatefulSet style) also
                      <hostname>.<svc>.<ns>.svc.cluster.local A, SRV per
                      endpoint to that name and PTR of the endpoint address
                      to it.  Headless Services whose endpoints have no
                      hostname get no ports here, so that no record needs the
                      implementation's own name for an endpoint (section
                      2.4.2 leaves that identifier unspecified).
  dns-version.cluster.local TXT "1.1.0"; SOA and NS at the apex; TTL 5.

SRV priority 0, weight 100, for a ClusterIP Service and for each of the n
records of a headless Service (the spec leaves both to the server; equal
weights are weft's choice, CoreDNS gives floor(100 / n)).  Query mix: 60% A of existing names, 15% SRV,
10% PTR, 15% A of names that do not exist inside <ns>.svc.cluster.local
(NXDOMAIN).
"""

import argparse
import ipaddress
import json
import os
import random
import sys

DOMAIN = "cluster.local"
TTL = 5
NAMESPACES = 100
HEADLESS_SHARE = 0.20
QUERY_LINES = 100_000
# (share, record type) of the query file; the rest is NXDOMAIN names.
MIX = [(0.60, "A"), (0.15, "SRV"), (0.10, "PTR")]
# The service CIDR; .1 and .10 are the kubernetes and DNS Services' by convention.
SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")
RESERVED = {ipaddress.ip_address("10.96.0.1"), ipaddress.ip_address("10.96.0.10")}
POD_NET = ipaddress.ip_network("10.244.0.0/16")
WORDS = [
    "api", "auth", "billing", "cache", "cart", "catalog", "checkout", "config",
    "db", "events", "front", "gateway", "search", "inventory", "ledger", "mail",
    "media", "notify", "orders", "payments", "queue", "rank", "report", "session",
    "shipping", "stats", "store", "users", "web", "worker",
]
# Named ports of ClusterIP Services: (name, port, protocol).
PORTS = [
    ("http", 80, "TCP"), ("grpc", 9090, "TCP"), ("https", 443, "TCP"),
    ("metrics", 9100, "TCP"), ("syslog", 514, "UDP"),
]
STATEFUL_PORTS = [("peer", 2380, "TCP"), ("client", 2379, "TCP")]


def fail(msg):
    print(f"dns_zone.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def ptr_name(ip):
    """The in-addr.arpa owner name of an IPv4 address (RFC 1035 section 3.5)."""
    return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa"


def build(count, seed):
    rng = random.Random(seed)
    n_headless = round(count * HEADLESS_SHARE)
    headless_at = set(rng.sample(range(count), n_headless))
    # Unique addresses, drawn once: ClusterIPs from the service net, endpoints
    # from the pod net (network and broadcast addresses excluded).
    svc_pool = SERVICE_NET.num_addresses - 2 - len(RESERVED)
    if count > svc_pool:
        fail(f"--count {count}: at most {svc_pool} Services fit in {SERVICE_NET}")
    n_endpoints = 3 * n_headless + 2 * (count - n_headless)
    if n_endpoints > POD_NET.num_addresses - 2:
        fail(f"--count {count}: {n_endpoints} endpoints do not fit in {POD_NET}")
    base = int(SERVICE_NET.network_address)
    cluster_ips = []
    seen = set()
    while len(cluster_ips) < count - n_headless:
        ip = ipaddress.ip_address(base + rng.randrange(1, SERVICE_NET.num_addresses - 1))
        if ip in RESERVED or ip in seen:
            continue
        seen.add(ip)
        cluster_ips.append(ip)
    pod_base = int(POD_NET.network_address)
    endpoint_ips = [
        ipaddress.ip_address(pod_base + o)
        for o in rng.sample(range(1, POD_NET.num_addresses - 1), n_endpoints)
    ]

    services = []
    ci = ei = 0
    for i in range(count):
        ns = f"team-{i % NAMESPACES:02d}"
        name = f"{WORDS[rng.randrange(len(WORDS))]}-{i:05d}"
        if i in headless_at:
            stateful = rng.random() < 0.5
            eps = endpoint_ips[ei:ei + 3]
            ei += 3
            svc = {
                "ns": ns, "name": name, "headless": True,
                "ports": list(STATEFUL_PORTS[: rng.randint(1, 2)]) if stateful else [],
                "endpoints": [
                    (ip, f"{name}-{k}" if stateful else None) for k, ip in enumerate(eps)
                ],
            }
        else:
            eps = endpoint_ips[ei:ei + 2]
            ei += 2
            svc = {
                "ns": ns, "name": name, "headless": False, "ip": cluster_ips[ci],
                "ports": sorted(rng.sample(PORTS, rng.randint(1, 2)), key=lambda p: p[1]),
                "endpoints": [(ip, None) for ip in eps],
            }
            ci += 1
        services.append(svc)
    return services


def fqdn(svc):
    return f"{svc['name']}.{svc['ns']}.svc.{DOMAIN}"


def records(services):
    """(owner, type, rdata) of every record, forward and reverse, in file order."""
    fwd, rev = [], []
    for s in services:
        host = fqdn(s)
        if not s["headless"]:
            fwd.append((host, "A", str(s["ip"])))
            for pname, port, proto in s["ports"]:
                fwd.append((f"_{pname}._{proto.lower()}.{host}", "SRV", f"0 100 {port} {host}."))
            rev.append((ptr_name(s["ip"]), "PTR", f"{host}."))
            continue
        for ip, _ in s["endpoints"]:
            fwd.append((host, "A", str(ip)))
        named = [(ip, h) for ip, h in s["endpoints"] if h]
        for ip, h in named:
            fwd.append((f"{h}.{host}", "A", str(ip)))
            rev.append((ptr_name(ip), "PTR", f"{h}.{host}."))
        for pname, port, proto in s["ports"]:
            weight = 100
            for _, h in named:
                fwd.append((f"_{pname}._{proto.lower()}.{host}", "SRV", f"0 {weight} {port} {h}.{host}."))
    return fwd, rev


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def zone_file(origin, recs, extra):
    lines = [
        f"; generated by bench/dns_zone.py; do not edit",
        f"$ORIGIN {origin}.",
        f"$TTL {TTL}",
        f"@ IN SOA ns.dns.{DOMAIN}. hostmaster.{DOMAIN}. 1 7200 1800 86400 {TTL}",
        f"@ IN NS ns.dns.{DOMAIN}.",
    ]
    lines += extra
    lines += [f"{owner}. IN {rtype} {rdata}" for owner, rtype, rdata in recs]
    return "\n".join(lines) + "\n"


def manifests(services):
    """Per namespace, a multi-document YAML (JSON documents, which are YAML)."""
    by_ns = {}
    for s in services:
        by_ns.setdefault(s["ns"], []).append(s)
    files = {
        "00-namespaces.yaml": "".join(
            "---\n" + json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}) + "\n"
            for ns in sorted(by_ns)
        )
    }
    for ns, svcs in sorted(by_ns.items()):
        docs = []
        for s in svcs:
            spec = {
                "clusterIP": "None" if s["headless"] else str(s["ip"]),
                "ports": [
                    {"name": n, "port": p, "targetPort": p, "protocol": proto}
                    for n, p, proto in s["ports"]
                ],
            }
            if not spec["ports"]:
                del spec["ports"]
            docs.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": s["name"], "namespace": ns},
                "spec": spec,
            })
            endpoints = []
            for ip, h in s["endpoints"]:
                ep = {"addresses": [str(ip)], "conditions": {"ready": True}}
                if h:
                    ep["hostname"] = h
                endpoints.append(ep)
            slice_ = {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{s['name']}-bench",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": s["name"]},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in s["ports"]],
            }
            docs.append(slice_)
        files[f"ns-{ns.split('-')[1]}.yaml"] = "".join("---\n" + json.dumps(d) + "\n" for d in docs)
    return files


def dnsmasq_lines(services):
    """dnsmasq --host-record/--srv-host/--txt-record lines.

    host-record makes an A record and, for the first address of a name, a PTR
    (dnsmasq(8): "only the first address creates a PTR record"); an address
    already given a name keeps that PTR.  So a headless Service's hostnames
    come before the Service's own name: their endpoints' PTRs point at the
    hostnames, as in the zone file.  The endpoints of headless Services
    without hostnames get a PTR to the Service name from dnsmasq, which the
    zone file does not have; no query asks for them.
    """
    out = [
        "# generated by bench/dns_zone.py; do not edit",
        f"txt-record=dns-version.{DOMAIN},1.1.0",
    ]
    for s in services:
        host = fqdn(s)
        if not s["headless"]:
            out.append(f"host-record={host},{s['ip']},{TTL}")
            for pname, port, proto in s["ports"]:
                out.append(f"srv-host=_{pname}._{proto.lower()}.{host},{host},{port},0,100")
            continue
        named = [(ip, h) for ip, h in s["endpoints"] if h]
        for ip, h in named:
            out.append(f"host-record={h}.{host},{ip},{TTL}")
        for pname, port, proto in s["ports"]:
            weight = 100
            for _, h in named:
                out.append(f"srv-host=_{pname}._{proto.lower()}.{host},{h}.{host},{port},0,{weight}")
        for ip, _ in s["endpoints"]:
            out.append(f"host-record={host},{ip},{TTL}")
    return "\n".join(out) + "\n"


def queries(services, fwd, rev, rng):
    a_names = sorted({o for o, t, _ in fwd if t == "A"})
    srv_names = sorted({o for o, t, _ in fwd if t == "SRV"})
    ptr_names = sorted({o for o, _, _ in rev})
    existing = {o for o, _, _ in fwd}
    namespaces = sorted({s["ns"] for s in services})
    pools = {"A": a_names, "SRV": srv_names, "PTR": ptr_names}
    lines = []
    for share, rtype in MIX:
        pool = pools[rtype]
        if pool:
            lines += [f"{rng.choice(pool)} {rtype}" for _ in range(round(QUERY_LINES * share))]
    while len(lines) < QUERY_LINES:
        name = f"missing-{rng.randrange(10**6):06d}.{rng.choice(namespaces)}.svc.{DOMAIN}"
        if name not in existing:
            lines.append(f"{name} A")
    rng.shuffle(lines)
    return "\n".join(lines) + "\n"


def samples(services, fwd, rev):
    """One name per kind the cross-check compares across servers, with the
    answer the zone gives it: "KIND<TAB>NAME<TAB>TYPE<TAB>RCODE RR|RR|…", each
    RR as "owner. type rdata" in lower case, sorted bytewise (how dns.sh
    normalises dig's answer section).  The "ready" line names a ClusterIP
    Service and its address instead."""
    clusterip = next(s for s in services if not s["headless"])
    with_srv = next(s for s in services if not s["headless"] and s["ports"])
    stateful = next(s for s in services if s["headless"] and s["ports"])
    plain = next((s for s in services if s["headless"] and not s["ports"]), stateful)
    pname, _, proto = with_srv["ports"][0]
    spname, _, sproto = stateful["ports"][0]
    h0 = next(h for _, h in stateful["endpoints"] if h)
    every = fwd + rev + [(f"dns-version.{DOMAIN}", "TXT", '"1.1.0"')]

    def expect(name, rtype):
        rrs = sorted(f"{o}. {t.lower()} {r.lower()}" for o, t, r in every if o == name and t == rtype)
        exists = any(o == name or o.endswith("." + name) for o, _, _ in every)
        return ("NOERROR " if exists else "NXDOMAIN ") + "|".join(rrs)

    picks = [
        ("version", f"dns-version.{DOMAIN}", "TXT"),
        ("a", fqdn(clusterip), "A"),
        ("srv", f"_{pname}._{proto.lower()}.{fqdn(with_srv)}", "SRV"),
        ("ptr", ptr_name(clusterip["ip"]), "PTR"),
        ("headless", fqdn(plain), "A"),
        ("headless-srv", f"_{spname}._{sproto.lower()}.{fqdn(stateful)}", "SRV"),
        ("hostname", f"{h0}.{fqdn(stateful)}", "A"),
        ("hostname-ptr", ptr_name(stateful["endpoints"][0][0]), "PTR"),
        ("nxdomain", f"missing-x.{clusterip['ns']}.svc.{DOMAIN}", "A"),
    ]
    lines = [f"ready\t{fqdn(clusterip)}\tA\t{clusterip['ip']}"]
    lines += [f"{k}\t{n}\t{t}\t{expect(n, t)}" for k, n, t in picks]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, required=True, help="number of Services")
    p.add_argument("--seed", type=int, required=True, help="seed of every random choice")
    p.add_argument("--out", required=True, help="output directory (created)")
    a = p.parse_args()
    if a.count < 10:
        fail("--count must be at least 10 (every kind of Service must occur)")
    services = build(a.count, a.seed)
    fwd, rev = records(services)
    os.makedirs(os.path.join(a.out, "manifests"), exist_ok=True)
    for fname, text in manifests(services).items():
        write(os.path.join(a.out, "manifests", fname), text)
    write(os.path.join(a.out, "cluster.local.zone"), zone_file(
        DOMAIN, fwd, [f'dns-version.{DOMAIN}. IN TXT "1.1.0"', f"ns.dns.{DOMAIN}. IN A 10.96.0.10"]))
    write(os.path.join(a.out, "10.in-addr.arpa.zone"), zone_file("10.in-addr.arpa", rev, []))
    write(os.path.join(a.out, "dnsmasq-data.conf"), dnsmasq_lines(services))
    # The query mix has its own stream, so the data set does not shift with it.
    write(os.path.join(a.out, "queries.txt"), queries(services, fwd, rev, random.Random(a.seed + 1)))
    write(os.path.join(a.out, "samples.txt"), samples(services, fwd, rev))
    n_headless = sum(s["headless"] for s in services)
    print(
        f"dns_zone.py: {a.count} Services ({a.count - n_headless} ClusterIP, {n_headless} headless) "
        f"in {len({s['ns'] for s in services})} namespaces; {len(fwd)} forward and {len(rev)} "
        f"reverse records; {QUERY_LINES} queries -> {a.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
