#!/usr/bin/env python3
"""MXNet 1.9.1's element-wise and broadcast operators over each element type.

Every operator ward imports that computes element by element (the `elemwise_*`,
`broadcast_*`, `_maximum`-style binaries, every `_*_scalar`, the unary functions, `clip`,
`Cast`) runs in MXNet on float32, float16, int32, int64, uint8 and int8 data. On
integers MXNet computes in the integer type: `broadcast_div` truncates, a scalar operand
is first converted to the data's type (2.5 is 2), `sqrt` truncates its result, uint8
arithmetic wraps. Writes `tests/fixtures/dtypes/cases.json`: per case the symbol JSON,
the inputs (name, dtype, shape, values) and MXNet's output (dtype, shape, values), values
as JSON numbers (NaN and infinities as the strings "nan", "inf", "-inf").

    .venv-mx/bin/python tools/make_dtype_fixtures.py

Inputs stay where MXNet's integer results are defined: no integer overflow past int32
(MXNet wraps, ward's integers are exact only to 2^24 in its float32 plans), no integer
division or mod by zero (MXNet's process dies of SIGFPE on `_div_scalar` by 0).
Determinism: fixed seeds; MXNet on the NaiveEngine, one thread, no subgraph fusion (its
oneDNN pass computes wrong numbers on some fused patterns).
"""

import json
import math
import os

os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dtypes")

DTYPES = ["float32", "float16", "int32", "int64", "uint8", "int8"]

BINARY = ["add", "sub", "mul", "div", "mod", "power", "maximum", "minimum", "hypot",
          "equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal",
          "logical_and", "logical_or", "logical_xor"]
# Same-shape names where MXNet's differs from `_<stem>`.
ELEMWISE = {"add": "elemwise_add", "sub": "elemwise_sub", "mul": "elemwise_mul",
            "div": "elemwise_div"}
SCALAR = ["plus", "minus", "rminus", "mul", "div", "rdiv", "mod", "rmod", "power",
          "rpower", "maximum", "minimum", "hypot", "equal", "not_equal", "greater",
          "greater_equal", "lesser", "lesser_equal", "logical_and", "logical_or",
          "logical_xor"]
UNARY = ["abs", "negative", "square", "sqrt", "sign", "floor", "relu_op", "exp", "sigmoid",
         "reciprocal"]


def is_int(dtype):
    return dtype.startswith("int") or dtype.startswith("uint")


def data_values(rng, dtype, shape, role):
    """Values for an operand: `role` is "lhs", "rhs" or "data"."""
    if dtype == "uint8":
        lo, hi = (1, 12) if role == "rhs" else (0, 15)
        return rng.randint(lo, hi + 1, size=shape)
    if dtype == "int8":
        if role == "rhs":
            return rng.choice([-4, -3, -2, -1, 1, 2, 3, 4], size=shape)
        return rng.randint(-11, 12, size=shape)
    if is_int(dtype):
        if role == "rhs":
            return rng.choice([-7, -3, -2, -1, 1, 2, 3, 5, 9], size=shape)
        return rng.randint(-60, 61, size=shape)
    if role == "rhs":
        return rng.uniform(0.5, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return rng.normal(0, 3.0, size=shape)


def exponent_values(rng, dtype, shape):
    if is_int(dtype):
        return rng.randint(0, 4, size=shape)
    return rng.uniform(-2.0, 3.0, size=shape)


def base_values(rng, dtype, shape):
    if dtype == "uint8":
        return rng.randint(0, 6, size=shape)
    if is_int(dtype):
        return rng.randint(-4, 5, size=shape)
    return rng.uniform(0.2, 3.0, size=shape)


def encode(values):
    out = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1).tolist():
        if math.isnan(v):
            out.append("nan")
        elif math.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        elif float(v).is_integer() and abs(v) < 2 ** 62:
            out.append(int(v))
        else:
            out.append(v)
    return out


def run(name, sym, inputs):
    """Binds `sym`, runs it on `inputs` [(name, dtype, array)] and records the case."""
    args = {n: mx.nd.array(a, dtype=dt) for n, dt, a in inputs}
    exe = sym.bind(mx.cpu(), args=args, grad_req="null")
    out = exe.forward(is_train=False)[0]
    node = json.loads(sym.tojson())["nodes"][-1]
    return {
        "name": name,
        "op": node["op"],
        "symbol": sym.tojson(),
        "inputs": [{"name": n, "dtype": dt, "shape": list(a.shape),
                    "values": encode(np.asarray(a).astype(dt))} for n, dt, a in inputs],
        "output": {"dtype": np.dtype(out.dtype).name, "shape": list(out.shape),
                   "values": encode(out.asnumpy())},
    }


def main():
    rng = np.random.RandomState(2041)
    cases = []
    lhs, rhs, data = mx.sym.var("lhs"), mx.sym.var("rhs"), mx.sym.var("data")
    for dtype in DTYPES:
        for stem in BINARY:
            for broadcast in (False, True):
                a_shape, b_shape = ((2, 3, 1), (1, 4)) if broadcast else ((2, 5), (2, 5))
                if stem == "power":
                    a = base_values(rng, dtype, a_shape)
                    b = exponent_values(rng, dtype, b_shape)
                else:
                    a = data_values(rng, dtype, a_shape, "lhs")
                    b = data_values(rng, dtype, b_shape, "rhs")
                if broadcast:
                    op = getattr(mx.sym, "broadcast_" + stem)
                elif stem in ELEMWISE:
                    op = getattr(mx.sym, ELEMWISE[stem])
                else:
                    op = getattr(mx.sym._internal, "_" + stem)
                sym = op(lhs, rhs, name="op")
                kind = "broadcast" if broadcast else "same"
                cases.append(run("%s_%s_%s" % (stem, kind, dtype), sym,
                                 [("lhs", dtype, a), ("rhs", dtype, b)]))
        for stem in SCALAR:
            for scalar in (2.5, -1.5):
                reverse = stem in ("rminus", "rdiv", "rmod", "rpower")
                if stem in ("power",):
                    x = base_values(rng, dtype, (2, 4))
                    scalar = 2.0 if scalar > 0 else 3.0
                elif stem == "rpower":
                    x = exponent_values(rng, dtype, (2, 4))
                elif reverse and stem in ("rdiv", "rmod"):
                    x = data_values(rng, dtype, (2, 4), "rhs")
                else:
                    x = data_values(rng, dtype, (2, 4), "data")
                if is_int(dtype) and stem in ("div", "mod") and abs(scalar) < 1:
                    continue
                op = getattr(mx.sym._internal, "_%s_scalar" % stem)
                sym = op(data, scalar=scalar, name="op")
                cases.append(run("%s_scalar_%s_%s" % (stem, "neg" if scalar < 0 else "pos",
                                                       dtype), sym, [("data", dtype, x)]))
        for stem in UNARY:
            if stem == "relu_op":
                sym = mx.sym.relu(data, name="op")
                stem = "relu"
            else:
                sym = getattr(mx.sym, stem)(data, name="op")
            if stem in ("sqrt", "reciprocal") and is_int(dtype):
                x = data_values(rng, dtype, (2, 4), "rhs")
                x = np.abs(x)
            elif stem == "exp":
                x = base_values(rng, dtype, (2, 4))
            else:
                x = data_values(rng, dtype, (2, 4), "data")
            cases.append(run("%s_%s" % (stem, dtype), sym, [("data", dtype, x)]))
        x = data_values(rng, dtype, (2, 4), "data")
        cases.append(run("clip_%s" % dtype, mx.sym.clip(data, a_min=-2.5, a_max=6.5, name="op"),
                         [("data", dtype, x)]))
        for to in DTYPES:
            if to == dtype:
                continue
            x = data_values(rng, dtype, (2, 3), "data")
            if dtype.startswith("float"):
                x = x * 20.0
            cases.append(run("cast_%s_to_%s" % (dtype, to), mx.sym.Cast(data, dtype=to, name="op"),
                             [("data", dtype, x)]))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generated_by": "tools/make_dtype_fixtures.py", "mxnet": mx.__version__,
                   "cases": cases}, f, indent=0, sort_keys=True)
        f.write("\n")
    print("%d cases" % len(cases))


if __name__ == "__main__":
    main()
