#!/usr/bin/env python3
"""TCP connect + request/response rate (netperf TCP_CRR's shape), used by bench/overlay.sh.

  rr.py serve PORT [SIZE]              echo server: accept, read SIZE bytes, send them back, close
  rr.py client HOST PORT SECS [SIZE]   for SECS seconds, one connection at a time:
                                       connect, send SIZE bytes, read SIZE back, read EOF, close;
                                       prints {"transactions", "seconds", "rate", "errors"} as JSON

The server closes first (as an HTTP/1.0 server does), so TIME_WAIT stays on the
server side and the client never runs out of ephemeral ports.  Both ends are
single-threaded and identical on every path: the absolute rate is bounded by
the Python interpreter, the ratio between paths is what the bench reports.
"""
import json
import socket
import sys
import time


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("short read (%d of %d bytes)" % (len(buf), n))
        buf += chunk
    return buf


def serve(port, size):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1024)
    while True:
        c, _ = ls.accept()
        try:
            c.settimeout(5)
            c.sendall(read_exact(c, size))
        except OSError:
            pass
        finally:
            c.close()


def client(host, port, secs, size):
    msg = b"x" * size
    addr = (host, port)
    n = errors = 0
    start = time.monotonic()
    end = start + secs
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(addr)
            s.sendall(msg)
            read_exact(s, size)
            s.recv(1)  # the server's FIN
            n += 1
        except OSError:
            errors += 1
            if n == 0 and errors >= 3:
                break  # unreachable: stop early, the caller reports the failure
        finally:
            s.close()
        now = time.monotonic()
        if now >= end:
            break
    elapsed = now - start
    print(json.dumps({"transactions": n, "seconds": round(elapsed, 3),
                      "rate": round(n / elapsed, 1) if elapsed > 0 else 0.0,
                      "errors": errors}))
    return 0 if n > 0 else 1


def main(argv):
    if len(argv) >= 2 and argv[0] == "serve":
        serve(int(argv[1]), int(argv[2]) if len(argv) > 2 else 64)
        return 0
    if len(argv) >= 4 and argv[0] == "client":
        return client(argv[1], int(argv[2]), float(argv[3]),
                      int(argv[4]) if len(argv) > 4 else 64)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
