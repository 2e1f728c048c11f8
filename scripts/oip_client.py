#!/usr/bin/env python3
"""A minimal Open Inference Protocol v2 client, standard library only, for the demo.

Reads a float32 .npy input, sends it to `ward serve` over HTTPS with a bearer token (from
the WARD_TOKEN environment variable, so it never shows in a process listing) using the
binary tensor extension, prints the model's metadata and the top class of each row, and,
with --expect, checks the scores against a .npy of expected outputs.

    WARD_TOKEN=... python3 scripts/oip_client.py --url https://127.0.0.1:8443 \
        --ca tls/ca.pem --model resnet18_v1 --input data=input.npy --expect out.npy
"""
import argparse
import ast
import json
import os
import ssl
import struct
import sys
import urllib.error
import urllib.request


def read_npy(path):
    """Shape and float32 payload of a little-endian float32, C-order .npy (v1-v3)."""
    raw = open(path, "rb").read()
    if raw[:6] != b"\x93NUMPY":
        sys.exit(f"{path}: not a .npy file")
    if raw[6] == 1:
        (n,), start = struct.unpack("<H", raw[8:10]), 10
    else:
        (n,), start = struct.unpack("<I", raw[8:12]), 12
    header = ast.literal_eval(raw[start:start + n].decode("latin1"))
    if header["descr"] != "<f4" or header["fortran_order"]:
        sys.exit(f"{path}: only little-endian float32 in C order is handled here")
    return list(header["shape"]), raw[start + n:]


def call(url, ca, token, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    request.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    context = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="NAME=FILE.npy")
    p.add_argument("--expect", help="expected output .npy (first output)")
    p.add_argument("--tolerance", type=float, default=5e-4)
    args = p.parse_args()
    token = os.environ.get("WARD_TOKEN") or sys.exit("set WARD_TOKEN")

    status, _, body = call(f"{args.url}/v2/models/{args.model}", args.ca, token)
    if status != 200:
        sys.exit(f"metadata: HTTP {status}: {body!r}")
    meta = json.loads(body)
    print(f"model {meta['name']} versions {meta['versions']}: "
          f"inputs {[(i['name'], i['datatype'], i['shape']) for i in meta['inputs']]}, "
          f"outputs {[(o['name'], o['datatype'], o['shape']) for o in meta['outputs']]}")

    name, path = args.input.split("=", 1)
    shape, data = read_npy(path)
    head = json.dumps({
        "id": "demo-1",
        "inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)}}],
    }).encode()
    status, headers, body = call(f"{args.url}/v2/models/{args.model}/infer", args.ca, token,
                                 head + data, {"Inference-Header-Content-Length": str(len(head))})
    if status != 200:
        sys.exit(f"infer: HTTP {status}: {body!r}")
    response = json.loads(body)
    out = response["outputs"][0]
    rows = out["shape"][0] if out["shape"] else 1
    values = out["data"]
    width = len(values) // rows
    for r in range(rows):
        row = values[r * width:(r + 1) * width]
        best = max(range(width), key=row.__getitem__)
        print(f"id {response['id']}: row {r}: class {best} (score {row[best]})")

    if args.expect:
        eshape, edata = read_npy(args.expect)
        expected = struct.unpack(f"<{len(edata) // 4}f", edata)
        if eshape != out["shape"] or len(expected) != len(values):
            sys.exit(f"shape {out['shape']} differs from the expected {eshape}")
        worst = max(abs(a - b) for a, b in zip(values, expected))
        if worst > args.tolerance:
            sys.exit(f"the served scores differ from the expected ones by {worst}")
        print(f"served scores match ward predict (max difference {worst:.2g}, policy rounding included)")


if __name__ == "__main__":
    main()
