#!/usr/bin/env python3
"""A stand-in OIP v2 server for testing the attack client without ward (stdlib + numpy).

    .venv-mx/bin/python tools/extraction/stub_server.py --cert server.pem --key server.key \
        --token SECRET [--round 3] [--top-k 2] [--label-only] [--rate 100 --burst 200]

Answers `POST /v2/models/softmax/infer` from the true weights of the fixture, like
`ward serve` is specified to: bearer token (401), unknown model (404), bad input
(400), token-bucket rate limit (429 + Retry-After), output policy (rounding, top-k
zeros, label only).  Prints `listening on https://127.0.0.1:PORT` on stdout.
It is a test double for the client, not a model of ward's behaviour.
"""

import argparse
import json
import math
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MODEL_DIR, Truth  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--token-file", action="append", default=[], help="file with one token per line")
    ap.add_argument("--model", default="softmax")
    ap.add_argument("--truth", default=MODEL_DIR)
    ap.add_argument("--round", type=int, dest="round_to")
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--label-only", action="store_true")
    ap.add_argument("--rate", type=float, default=0.0, help="tokens per second (0 = unlimited)")
    ap.add_argument("--burst", type=float, default=1.0)
    args = ap.parse_args()

    truth = Truth(args.truth)
    tokens = set(args.token)
    for path in args.token_file:
        with open(path) as f:
            tokens.update(line.strip() for line in f if line.strip())
    bucket = {"level": args.burst, "t": time.monotonic()}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, status, doc, extra=None):
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in tokens:
                return self._send(401, {"error": "unauthorized"})
            if self.path != f"/v2/models/{args.model}/infer":
                return self._send(404, {"error": "unknown model"})
            if args.rate > 0:
                with lock:
                    now = time.monotonic()
                    bucket["level"] = min(args.burst, bucket["level"] + (now - bucket["t"]) * args.rate)
                    bucket["t"] = now
                    if bucket["level"] < 1:
                        wait = math.ceil((1 - bucket["level"]) / args.rate)
                        return self._send(429, {"error": "rate limited"}, {"Retry-After": str(wait)})
                    bucket["level"] -= 1
            try:
                req = json.loads(raw)
                inp = req["inputs"][0]
                shape = inp["shape"]
                if inp["name"] != "data" or inp["datatype"] != "FP32" or len(shape) != 2 or shape[1] != truth.d:
                    raise ValueError("bad input")
                x = np.array(inp["data"], dtype=np.float32).reshape(shape)
            except (ValueError, KeyError, TypeError, IndexError) as e:
                return self._send(400, {"error": f"bad request: {e}"})
            p = truth.proba32(x)
            if args.label_only:
                out = {"name": "label", "datatype": "INT64", "shape": [shape[0]],
                       "data": [int(v) for v in p.argmax(1)]}
            else:
                if args.top_k:
                    cut = np.argsort(-p, axis=1, kind="stable")[:, args.top_k:]
                    np.put_along_axis(p, cut, 0.0, axis=1)
                vals = [float(v) for v in p.ravel()]  # f32 -> shortest f64 repr is fine here
                if args.round_to is not None:
                    vals = [round(v, args.round_to) for v in vals]
                out = {"name": "softmax_output", "datatype": "FP32", "shape": list(p.shape), "data": vals}
            self._send(200, {"model_name": args.model, "model_version": "1", "outputs": [out]})

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"listening on https://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
