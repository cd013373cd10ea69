#!/usr/bin/python3
"""A small, real scikit-learn model server for trying modelgate.

It trains one of two real models on scikit-learn's breast cancer data set
(569 tumours, 30 features, malignant = 0 / benign = 1):

  lr  a pipeline of StandardScaler and LogisticRegression
  rf  a RandomForestClassifier with a fixed seed

and serves it over two wire formats at once:

  KServe v1:  POST /v1/models/<name>:predict  {"instances": [[30 floats], ...]}
              -> {"predictions": [0 or 1, ...]}
  OIP v2:     POST /v2/models/<name>/infer    inputs[0]: FP32 or FP64, shape [n, 30]
              -> outputs[0]: name "predict", INT64, shape [n]
              GET  /v2/health/live, /v2/health/ready, /v2/models/<name>,
              /v2/models/<name>/ready; GET /v1/models/<name>

Flags make a version worse: --delay-ms adds latency to every prediction and
--error-rate answers that share of predictions with a 500.

    /usr/bin/python3 server.py --model lr --port 9001
    /usr/bin/python3 server.py --model rf --port 9002 --error-rate 0.2

With --agreement N it serves nothing: it draws N inputs (the data set's rows,
in a seeded random order, with small seeded noise), predicts them with both
models and prints how often they agree; --json prints the inputs and both
models' predictions too.

Only the standard library and Debian's python3-sklearn (with numpy) are used.
"""

import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = 30
MODELS = {
    "lr": "logistic regression (scaled)",
    "rf": "random forest",
}


def train(kind, seed, trees):
    """Trains model kind on 75% of the data set (split by seed) and returns
    it with its accuracy on the other 25%."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    if kind == "lr":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    elif kind == "rf":
        # n_jobs=1 keeps predictions cheap for one row and deterministic.
        model = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1)
    else:
        raise ValueError("unknown model %r: use lr or rf" % kind)
    model.fit(X_train, y_train)
    return model, float(model.score(X_test, y_test))


def draw_inputs(n, seed):
    """Returns n inputs: data set rows in a seeded random order (cycling),
    each feature moved by seeded noise of 10% of that feature's standard
    deviation, so that the inputs are realistic but not the training rows."""
    X, _ = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.permutation(len(X)) for _ in range(n // len(X) + 1)])[:n]
    noise = rng.normal(0.0, 0.1, size=(n, FEATURES)) * X.std(axis=0)
    return np.abs(X[rows] + noise)  # every feature of the data set is >= 0


def agreement(n, seed, trees, as_json):
    lr, lr_acc = train("lr", seed, trees)
    rf, rf_acc = train("rf", seed, trees)
    X = draw_inputs(n, seed)
    a, b = lr.predict(X), rf.predict(X)
    matched = int((a == b).sum())
    if as_json:
        json.dump({
            "n": n, "seed": seed, "trees": trees,
            "matched": matched, "agreement": matched / n,
            "accuracy": {"lr": lr_acc, "rf": rf_acc},
            "inputs": X.tolist(), "lr": a.tolist(), "rf": b.tolist(),
        }, sys.stdout)
        sys.stdout.write("\n")
    else:
        print("lr test accuracy %.4f, rf test accuracy %.4f" % (lr_acc, rf_acc))
        print("agreement of lr and rf on %d inputs (seed %d): %.4f (%d of %d)" % (n, seed, matched / n, matched, n))


class Model:
    """The served model and the ways it is made worse."""

    def __init__(self, args):
        self.name = args.name
        self.kind = args.model
        self.model, self.accuracy = train(args.model, args.seed, args.trees)
        self.delay = args.delay_ms / 1000.0
        self.error_rate = args.error_rate
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.ready = True

    def predict(self, X):
        """Returns the class of every row of X, or None for an injected
        failure."""
        if self.delay > 0:
            time.sleep(self.delay)
        with self.lock:
            fail = self.rng.random() < self.error_rate
        if fail:
            return None
        return self.model.predict(X)


class BadRequest(Exception):
    pass


def rows_of(value, what):
    try:
        X = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest("%s: want numbers" % what)
    if X.ndim == 1 and X.size == FEATURES:
        X = X.reshape(1, FEATURES)
    if X.ndim != 2 or X.shape[1] != FEATURES or X.shape[0] == 0:
        raise BadRequest("%s: want rows of %d features, got shape %s" % (what, FEATURES, list(X.shape)))
    return X


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as a gateway's connection pool expects.
    protocol_version = "HTTP/1.1"
    # Each answer leaves in one write, without waiting on Nagle's algorithm
    # (headers and body in separate segments cost a delayed ACK, ~40ms).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = "sklearn-server/1"
    model = None  # set by main

    def log_message(self, format, *args):
        pass  # one line per request would drown the output

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            return json.loads(raw)
        except ValueError as e:
            raise BadRequest("body is not JSON: %s" % e)

    def do_GET(self):
        m = self.model
        path = self.path.split("?", 1)[0]
        if path in ("/v2/health/live", "/v2/health/ready"):
            self.answer(200, {"live": True} if path.endswith("live") else {"ready": m.ready})
        elif path in ("/v2/models/%s/ready" % m.name, "/v1/models/%s" % m.name):
            self.answer(200, {"name": m.name, "ready": m.ready})
        elif path == "/v2/models/%s" % m.name:
            self.answer(200, {
                "name": m.name, "versions": [m.kind], "platform": "sklearn",
                "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, FEATURES]}],
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
            })
        else:
            self.answer(404, {"error": "no route %s" % path})

    def do_POST(self):
        m = self.model
        path = self.path.split("?", 1)[0]
        try:
            if path == "/v1/models/%s:predict" % m.name:
                doc = self.read_json()
                if not isinstance(doc, dict) or "instances" not in doc:
                    raise BadRequest('want {"instances": [[%d numbers], ...]}' % FEATURES)
                y = m.predict(rows_of(doc["instances"], "instances"))
                if y is None:
                    return self.answer(500, {"error": "injected failure (--error-rate)"})
                return self.answer(200, {"predictions": y.tolist()})
            if path == "/v2/models/%s/infer" % m.name:
                doc = self.read_json()
                inputs = doc.get("inputs") if isinstance(doc, dict) else None
                if not inputs or not isinstance(inputs[0], dict) or "data" not in inputs[0]:
                    raise BadRequest('want {"inputs": [{"name", "shape": [n, %d], "datatype": "FP32", "data": [...]}]}' % FEATURES)
                t = inputs[0]
                if t.get("datatype") not in ("FP32", "FP64"):
                    raise BadRequest("inputs[0].datatype %r: want FP32 or FP64" % t.get("datatype"))
                # Row-major data, nested or flat: trust the shape.
                shape = t.get("shape")
                try:
                    flat = np.asarray(t["data"], dtype=np.float64).reshape(-1)
                except (TypeError, ValueError):
                    raise BadRequest("inputs[0].data: want numbers")
                if not isinstance(shape, list) or len(shape) != 2 or shape[1] != FEATURES or shape[0] * FEATURES != flat.size:
                    raise BadRequest("inputs[0].shape %r: want [n, %d] matching %d values" % (shape, FEATURES, flat.size))
                X = rows_of(flat.reshape(shape[0], FEATURES), "inputs[0].data")
                if t["datatype"] == "FP32":
                    X = X.astype(np.float32).astype(np.float64)
                y = m.predict(X)
                if y is None:
                    return self.answer(500, {"error": "injected failure (--error-rate)"})
                out = {"model_name": m.name, "model_version": m.kind,
                       "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(y)], "data": y.tolist()}]}
                if "id" in doc:
                    out["id"] = doc["id"]
                return self.answer(200, out)
            self.answer(404, {"error": "no route %s" % path})
        except BadRequest as e:
            self.answer(400, {"error": str(e)})


def main(argv=None):
    p = argparse.ArgumentParser(description="Serve a real scikit-learn model over KServe v1 and OIP v2.")
    p.add_argument("--model", choices=sorted(MODELS), default="lr", help="which model to serve (default lr)")
    p.add_argument("--name", default="cancer", help="model name in the URLs (default cancer)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    p.add_argument("--delay-ms", type=float, default=0, help="extra latency of every prediction, ms (default 0)")
    p.add_argument("--error-rate", type=float, default=0, help="share of predictions answered 500, 0..1 (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split, the forest, the failures and the inputs (default 0)")
    p.add_argument("--trees", type=int, default=20, help="trees of the random forest (default 20)")
    p.add_argument("--agreement", type=int, metavar="N", help="print the agreement of lr and rf on N drawn inputs, then exit")
    p.add_argument("--json", action="store_true", help="with --agreement: print JSON with the inputs and both predictions")
    args = p.parse_args(argv)
    if not 0 <= args.error_rate <= 1:
        p.error("--error-rate must be between 0 and 1")
    if args.delay_ms < 0:
        p.error("--delay-ms must not be negative")

    if args.agreement is not None:
        if args.agreement <= 0:
            p.error("--agreement needs a positive count")
        agreement(args.agreement, args.seed, args.trees, args.json)
        return

    Handler.model = Model(args)
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    host, port = srv.server_address[:2]
    print("serving %s (%s, test accuracy %.4f) as %r on http://%s:%d, delay %gms, error rate %g" % (
        args.model, MODELS[args.model], Handler.model.accuracy, args.name, host, port, args.delay_ms, args.error_rate),
        flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
