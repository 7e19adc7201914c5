#!/usr/bin/env python3
"""Reads dnsperf 2.10 output for bench/dns.sh and prints its table.

    dns_perf.py throughput OUT      -> JSON: the final statistics of one run
    dns_perf.py latency OUT         -> JSON: p50/p99 from a `dnsperf -v` run, and
                                       every answer's rcode against the name's
                                       kind (names "missing-*" must be NXDOMAIN,
                                       all others NOERROR)
    dns_perf.py table RESULT.json…  -> the markdown table (ratios to knot)

dnsperf 2.10 has no latency histogram option, so percentiles come from the
per-query lines `-v` prints ("> RCODE NAME TYPE SECONDS"); that run is rate
limited (-Q), the throughput run is not.  Exit status 1 when a run did not
parse, completed no query, or answered a query with the wrong rcode.
"""

import json
import re
import sys


def fail(msg):
    print(f"dns_perf.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def field(text, pattern, path):
    m = re.search(pattern, text, re.M)
    if not m:
        fail(f"{path}: no match for {pattern!r} in dnsperf's output")
    return m


def throughput(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    sent = int(field(text, r"^\s*Queries sent:\s+(\d+)", path).group(1))
    completed = int(field(text, r"^\s*Queries completed:\s+(\d+)", path).group(1))
    lost_m = field(text, r"^\s*Queries lost:\s+(\d+) \(([\d.]+)%\)", path)
    if completed == 0:
        fail(f"{path}: dnsperf completed 0 queries (sent {sent})")
    rcodes = {}
    m = re.search(r"^\s*Response codes:\s+(.*)$", text, re.M)
    if m:
        for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
            rcodes[code] = int(n)
    qps = float(field(text, r"^\s*Queries per second:\s+([\d.]+)", path).group(1))
    lat = field(text, r"^\s*Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", path)
    sd = field(text, r"^\s*Latency StdDev \(s\):\s+([\d.]+)", path)
    runtime = float(field(text, r"^\s*Run time \(s\):\s+([\d.]+)", path).group(1))
    out = {
        "sent": sent, "completed": completed, "lost": int(lost_m.group(1)),
        "lost_pct": float(lost_m.group(2)), "qps": qps, "runtime_s": runtime,
        "avg_ms": float(lat.group(1)) * 1e3, "min_ms": float(lat.group(2)) * 1e3,
        "max_ms": float(lat.group(3)) * 1e3, "stddev_ms": float(sd.group(1)) * 1e3,
        "rcodes": rcodes,
    }
    other = {k: v for k, v in rcodes.items() if k not in ("NOERROR", "NXDOMAIN")}
    if other:
        fail(f"{path}: answers other than NOERROR/NXDOMAIN: {other}")
    print(json.dumps(out))


def nearest_rank(sorted_vals, q):
    k = max(1, -(-len(sorted_vals) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_vals[int(k) - 1]


def latency(path):
    lats = []
    wrong = {}
    line_re = re.compile(r"^> (\S+) (\S+) (\S+) ([\d.]+)$")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = line_re.match(line.rstrip("\n"))
            if not m:
                continue
            rcode, name, rtype, secs = m.groups()
            want = "NXDOMAIN" if name.startswith("missing-") else "NOERROR"
            if rcode != want:
                key = f"{rtype} {name}: {rcode}, want {want}"
                wrong[key] = wrong.get(key, 0) + 1
            lats.append(float(secs) * 1e3)
    if not lats:
        fail(f"{path}: no answered query in the -v output")
    if wrong:
        shown = "; ".join(f"{k} (x{n})" for k, n in sorted(wrong.items())[:10])
        fail(f"{path}: {sum(wrong.values())} answers with the wrong rcode, e.g. {shown}")
    lats.sort()
    print(json.dumps({
        "answered": len(lats), "p50_ms": nearest_rank(lats, 50),
        "p99_ms": nearest_rank(lats, 99), "p999_ms": nearest_rank(lats, 99.9),
    }))


def fmt_ratio(x):
    """Two decimals; three significant digits below 0.1, so a small ratio is not 0.00."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3g}"


def table(paths):
    rows = [json.load(open(p, encoding="utf-8")) for p in paths]
    knot = next((r for r in rows if r["server"] == "knot" and "qps" in r), None)
    print("| server | QPS | avg ms | min ms | max ms | p50 ms @Q | p99 ms @Q | lost % | QPS / knot |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "qps" not in r:
            print(f"| {r['label']} | {r.get('note', 'n/a')} | | | | | | | |")
            continue
        ratio = fmt_ratio(r["qps"] / knot["qps"]) if knot else "–"
        print(
            f"| {r['label']} | {r['qps']:.0f} | {r['avg_ms']:.3f} | {r['min_ms']:.3f} | "
            f"{r['max_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['lost_pct']:.2f} | {ratio} |"
        )


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("throughput", "latency", "table"):
        fail("usage: dns_perf.py throughput OUT | latency OUT | table RESULT.json…")
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "table":
        table(args)
    elif len(args) != 1:
        fail(f"{cmd} takes one file")
    elif cmd == "throughput":
        throughput(args[0])
    else:
        latency(args[0])


if __name__ == "__main__":
    main()
