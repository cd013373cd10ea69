#!/usr/bin/env python3
"""Traffic for examples/cluster: POSTs a prediction to HOST:PORT/fraud/predict
over keep-alive connections, at about RATE requests a second in all, and
counts the answers by status and by the deployment that served them
(X-Model-Deployment). Standard library only.

    python3 load.py HOST:PORT RATE            until SIGTERM or SIGINT, then a summary
    python3 load.py HOST:PORT RATE COUNT      COUNT requests, then the summary

The summary is one line: "requests=N ok=N failed=N unanswered=N blue=N
green=N red_failed=N ...": failed counts every request without a 2xx answer;
unanswered those of them that got no answer or one that names no deployment
(the gateway's or the load balancer's own errors); DEP=N the 2xx answers
of each deployment, DEP_failed=N the others it gave. A request that got no
answer is not retried: the load balancer in front is expected to hide a
replica that went away.
"""
import http.client
import signal
import sys
import threading
import time
from collections import Counter

host, port = sys.argv[1].rsplit(":", 1)
rate = float(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
conns = 4 if rate >= 40 else 1
body = b'{"instances": [[1, 2]]}'
headers = {"Content-Type": "application/json"}

stop = threading.Event()
lock = threading.Lock()
counts = Counter()
sent = 0


def take():
    """Claims one request of COUNT; False once all are claimed."""
    global sent
    with lock:
        if count and sent >= count:
            return False
        sent += 1
        return True


def worker():
    conn = None
    gap = conns / rate
    next_at = time.monotonic()
    while not stop.is_set() and take():
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        key = "unanswered"
        try:
            conn.request("POST", "/fraud/predict", body, headers)
            resp = conn.getresponse()
            resp.read()
            dep = resp.getheader("X-Model-Deployment")
            if dep:
                key = dep if 200 <= resp.status < 300 else dep + "_failed"
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = None
        with lock:
            counts[key] += 1
        if not count:
            next_at += gap
            wait = next_at - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            else:
                next_at = time.monotonic()
    if conn is not None:
        conn.close()


def on_signal(*_):
    stop.set()


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    while t.is_alive():
        t.join(0.2)
unanswered = counts.pop("unanswered", 0)
failed = unanswered + sum(v for k, v in counts.items() if k.endswith("_failed"))
total = unanswered + sum(counts.values())
print(" ".join([f"requests={total}", f"ok={total - failed}", f"failed={failed}", f"unanswered={unanswered}"] +
               [f"{k}={v}" for k, v in sorted(counts.items())]), flush=True)
