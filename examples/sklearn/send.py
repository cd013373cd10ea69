#!/usr/bin/python3
"""Sends the example's inputs through modelgate, as clients would.

    /usr/bin/python3 send.py --url http://127.0.0.1:8080/cancer -n 2000
    /usr/bin/python3 send.py --url http://127.0.0.1:8080/cancer --forever
    /usr/bin/python3 send.py --forever --rate 100

With --rate, requests start at that fixed rate (per second, over all
workers) instead of as fast as the workers can send them.

Each request is one KServe v1 prediction of one input, drawn exactly as
`server.py --agreement N` draws them (same seed, same order), so that what
modelgate reports can be checked against scikit-learn's own numbers. At the
end (or on Ctrl-C or SIGTERM) it prints how many answers each deployment gave, by
status.
"""

import argparse
import collections
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ beside the example
from server import draw_inputs  # noqa: E402


def main():
    p = argparse.ArgumentParser(description="Send the example's inputs through modelgate.")
    p.add_argument("--url", default="http://127.0.0.1:8080/cancer", help="the endpoint on modelgate's data plane")
    p.add_argument("--model", default="cancer", help="model name in the path (default cancer)")
    p.add_argument("-n", type=int, default=2000, help="inputs to send (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0, as server.py)")
    p.add_argument("--workers", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--forever", action="store_true", help="cycle through the inputs until interrupted")
    p.add_argument("--rate", type=float, default=0, help="requests per second over all workers (default 0: as fast as they can)")
    args = p.parse_args()

    inputs = draw_inputs(args.n, args.seed).tolist()
    url = "%s/v1/models/%s:predict" % (args.url.rstrip("/"), args.model)
    counts = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()
    next_i = iter(range(1 << 62))
    start = time.monotonic()

    def worker():
        while not stop.is_set():
            with lock:
                i = next(next_i)
            if i >= len(inputs) and not args.forever:
                return
            if args.rate > 0:  # request i is due at start + i/rate
                wait = start + i / args.rate - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
            body = json.dumps({"instances": [inputs[i % len(inputs)]]}).encode()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                    key = (resp.headers.get("X-Model-Deployment", "?"), resp.status)
            except urllib.error.HTTPError as e:
                key = (e.headers.get("X-Model-Deployment", "?"), e.code)
            except OSError as e:
                key = ("-", type(e).__name__)
            with lock:
                counts[key] += 1

    # Ctrl-C or kill: stop sending and print what was sent.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive() and not stop.is_set():
            t.join(0.5)
    total = sum(counts.values())
    print("sent %d requests: %s" % (total, ", ".join(
        "%s %s: %d" % (dep, status, n) for (dep, status), n in sorted(counts.items(), key=str))))


if __name__ == "__main__":
    main()
