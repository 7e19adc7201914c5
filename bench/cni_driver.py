#!/usr/bin/env python3
"""Timing driver for bench/cni.sh.

  cni_driver.py run --tag T --node-ns NS --plugin BIN --conf FILE --cni-path P
                    --seq N --conc C --out results.json
  cni_driver.py report RESULTS.json...      # markdown table

`run` enters the node netns once (so no `ip netns exec` cost is timed), then
times bare plugin invocations.  Pod netns are created and removed outside the
timed region.  Any failed plugin call aborts the run with the plugin's error.
"""

import argparse
import concurrent.futures
import ctypes
import json
import os
import statistics
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"


class PluginError(Exception):
    pass


def enter_netns(name):
    # Python 3.11 has no os.setns.  Must run before any thread exists: setns
    # only moves the calling thread, and later threads/children inherit it.
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)
    # Refuse to go on unless we really left the root netns: the plugins build
    # a bridge wherever they run.
    want = os.stat(os.path.join(NETNS_DIR, name))
    have = os.stat("/proc/thread-self/ns/net")
    if (want.st_dev, want.st_ino) != (have.st_dev, have.st_ino):
        raise RuntimeError(f"not inside netns {name} after setns")


def wait_quiet(max_busy=0.05, interval=0.25, timeout=20.0):
    """Wait until the CPUs are idle: netns/veth teardown finishes in kernel
    workers after the call returns and would otherwise bleed into the next
    timed phase (or the next setup)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    deadline = time.monotonic() + timeout
    a = snap()
    while time.monotonic() < deadline:
        time.sleep(interval)
        b = snap()
        if b[0] > a[0] and 1 - (b[1] - a[1]) / (b[0] - a[0]) <= max_busy:
            return
        a = b
    print(f"cni_driver: warning: CPU still busy after {timeout:.0f}s, timing anyway",
          file=sys.stderr)


def ip_batch(lines):
    # One `ip -batch` for many netns add/del keeps setup time reasonable.
    subprocess.run(["ip", "-batch", "-"], input="".join(l + "\n" for l in lines),
                   text=True, check=True)


class Runner:
    def __init__(self, args):
        self.plugin = args.plugin
        with open(args.conf) as f:
            self.conf = json.load(f)
        self.conf_bytes = json.dumps(self.conf).encode()
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                         "CNI_PATH": args.cni_path, "CNI_IFNAME": "eth0"}
        self.tag = args.tag
        self.results = {}  # container id -> ADD result, for DEL's prevResult

    def pod(self, i):
        return f"weft-bench-p-{self.tag}-{i}"

    def call(self, cmd, i):
        """One plugin invocation; returns elapsed ns of the subprocess only."""
        ns = self.pod(i)
        cid = f"{ns}-cid"
        env = dict(self.base_env, CNI_COMMAND=cmd, CNI_CONTAINERID=cid,
                   CNI_NETNS=os.path.join(NETNS_DIR, ns))
        stdin = self.conf_bytes
        if cmd == "DEL" and cid in self.results:
            # libcni passes the cached ADD result on DEL; do the same.
            stdin = json.dumps(dict(self.conf, prevResult=self.results[cid])).encode()
        t0 = time.perf_counter_ns()
        p = subprocess.run([self.plugin], input=stdin, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dt = time.perf_counter_ns() - t0
        out = p.stdout.decode(errors="replace").strip()
        if p.returncode != 0:
            raise PluginError(f"{self.tag}: {cmd} {ns} exited {p.returncode}\n"
                              f"stdout: {out}\nstderr: {p.stderr.decode(errors='replace').strip()}")
        try:
            res = json.loads(out) if out else None
        except json.JSONDecodeError as e:
            raise PluginError(f"{self.tag}: {cmd} {ns}: bad JSON on stdout ({e}): {out!r}")
        if cmd == "ADD":
            if not res or not res.get("ips"):
                raise PluginError(f"{self.tag}: ADD {ns}: result has no ips: {out}")
            self.results[cid] = res
        else:
            self.results.pop(cid, None)
        return dt

    def addr_of(self, i):
        return self.results[f"{self.pod(i)}-cid"]["ips"][0]["address"]

    def sequential(self, cmd, ids):
        return [self.call(cmd, i) for i in ids]

    def concurrent(self, cmd, ids):
        # The barrier releases all workers together so the calls really overlap.
        barrier = threading.Barrier(len(ids))

        def one(i):
            barrier.wait()
            return self.call(cmd, i)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ids)) as pool:
            t0 = time.perf_counter_ns()
            futs = [pool.submit(one, i) for i in ids]
            times = [f.result() for f in futs]  # re-raises the first failure
            wall = time.perf_counter_ns() - t0
        return times, wall

    def check_unique_ips(self, ids, phase):
        addrs = [self.addr_of(i) for i in ids]
        if len(set(addrs)) != len(addrs):
            dup = sorted({a for a in addrs if addrs.count(a) > 1})
            raise PluginError(f"{self.tag}: {phase}: duplicate IPs handed out: {dup}")


def cmd_run(args):
    enter_netns(args.node_ns)
    r = Runner(args)
    seq_ids = list(range(args.seq))
    conc_ids = list(range(args.seq, args.seq + args.conc))
    warm = args.seq + args.conc
    all_pods = [r.pod(i) for i in seq_ids + conc_ids + [warm]]
    # Pod netns creation is setup, not measured.
    ip_batch([f"netns add {p}" for p in all_pods])
    try:
        # Untimed warm-up: first ADD creates the bridge and IPAM state.
        r.call("ADD", warm)
        r.call("DEL", warm)

        out = {"tag": args.tag, "plugin": args.plugin}
        wait_quiet()
        out["seq_add"] = r.sequential("ADD", seq_ids)
        r.check_unique_ips(seq_ids, "sequential ADD")
        wait_quiet()
        out["seq_del"] = r.sequential("DEL", seq_ids)
        wait_quiet()
        out["conc_add"], out["conc_add_wall"] = r.concurrent("ADD", conc_ids)
        r.check_unique_ips(conc_ids, "concurrent ADD")
        wait_quiet()
        out["conc_del"], out["conc_del_wall"] = r.concurrent("DEL", conc_ids)
    finally:
        ip_batch([f"netns del {p}" for p in all_pods])
    with open(args.out, "w") as f:
        json.dump(out, f)


def pct(xs, q):
    # Nearest-rank percentile: with 50 samples p99 is the max, say so honestly.
    s = sorted(xs)
    k = max(0, min(len(s) - 1, -(-q * len(s) // 100) - 1))
    return s[k]


def ms(ns):
    return ns / 1e6


def cmd_report(args):
    # Several result files per tag (ROUNDS > 1) are pooled into one sample set.
    runs = {}
    for path in args.results:
        with open(path) as f:
            d = json.load(f)
        acc = runs.setdefault(d["tag"], {"rounds": 0})
        acc["rounds"] += 1
        for k, v in d.items():
            if isinstance(v, list):
                acc.setdefault(k, []).extend(v)
            elif k.endswith("_wall"):
                acc.setdefault(k, []).append(v)
    w, r = runs.get("weft"), runs.get("ref")

    def stats(d, key):
        if d is None:
            return None
        if key == "seq_both":
            xs = [a + b for a, b in zip(d["seq_add"], d["seq_del"])]
        else:
            xs = d[key]
        return statistics.median(xs), pct(xs, 99), len(xs)

    def f(v):
        return f"{ms(v):.2f}" if v is not None else "-"

    def ratio(a, b):
        return f"{b / a:.2f}x" if a and b else "-"

    rows = [("sequential ADD", "seq_add"), ("sequential DEL", "seq_del"),
            ("concurrent ADD", "conc_add"), ("concurrent DEL", "conc_del"),
            ("sequential ADD+DEL per pod", "seq_both")]
    hdr = ["operation", "n", "weft median ms", "weft p99 ms", "ref median ms",
           "ref p99 ms", "median ratio ref/weft", "p99 ratio ref/weft"]
    table = [hdr]
    for label, key in rows:
        sw, sr = stats(w, key), stats(r, key)
        n = (sw or sr)[2]
        table.append([label, str(n),
                      f(sw and sw[0]), f(sw and sw[1]), f(sr and sr[0]), f(sr and sr[1]),
                      ratio(sw and sw[0], sr and sr[0]), ratio(sw and sw[1], sr and sr[1])])
    widths = [max(len(row[c]) for row in table) for c in range(len(hdr))]

    def line(row):
        cells = [row[0].ljust(widths[0])] + [v.rjust(widths[c]) for c, v in enumerate(row) if c]
        return "| " + " | ".join(cells) + " |"

    print(line(table[0]))
    print("|" + "|".join(["-" * (widths[0] + 1) + "-"] +
                         ["-" * (x + 1) + ":" for x in widths[1:]]) + "|")
    for row in table[1:]:
        print(line(row))
    print()
    for tag, d in (("weft", w), ("ref", r)):
        if d:
            walls = lambda k: ", ".join(f"{ms(x):.1f}" for x in d[k])
            print(f"- {tag}: concurrent batch wall time (ms, per round): "
                  f"ADD {walls('conc_add_wall')}; DEL {walls('conc_del_wall')}")
    print("- ratio > 1 means weft-cni is faster; p99 is nearest-rank "
          "(with <= 100 samples it is the slowest call)")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--tag", required=True, choices=["weft", "ref"])
    run.add_argument("--node-ns", required=True)
    run.add_argument("--plugin", required=True)
    run.add_argument("--conf", required=True)
    run.add_argument("--cni-path", required=True)
    run.add_argument("--seq", type=int, required=True)
    run.add_argument("--conc", type=int, required=True)
    run.add_argument("--out", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("results", nargs="+")
    args = ap.parse_args()
    if args.cmd == "run":
        if not args.node_ns.startswith("weft-bench-"):
            sys.exit("refusing: node netns must be named weft-bench-*")
        if args.seq < 1 or args.conc < 1:
            sys.exit("--seq and --conc must be >= 1")
    try:
        (cmd_run if args.cmd == "run" else cmd_report)(args)
    except PluginError as e:
        sys.exit(f"plugin call failed, aborting bench:\n{e}")


if __name__ == "__main__":
    main()
