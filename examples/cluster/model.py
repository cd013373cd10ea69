#!/usr/bin/env python3
"""A stand-in model server for examples/cluster: answers every POST with a
fixed prediction as JSON, its version in X-Model-Version, and an error
rate of its own (to try a rollback). Standard library only.

    python3 model.py PORT VERSION [ERROR_RATE]
"""
import json
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, version = int(sys.argv[1]), sys.argv[2]
error_rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The status line and headers go out in one write and the body in
    # another: without TCP_NODELAY the body waits for the gateway's delayed
    # ACK (40 ms a request).
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if random.random() < error_rate:
            body, status = b'{"error": "model failed"}', 500
        else:
            body, status = json.dumps({"predictions": [[0.12, 0.88]], "model": version}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Model-Version", version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # The gateways open their connections to a model at once (a rollout's
    # first stage warms the canary's): room for them beyond the default 5.
    request_queue_size = 128


Server(("127.0.0.1", port), Handler).serve_forever()
