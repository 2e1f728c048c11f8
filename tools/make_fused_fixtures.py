#!/usr/bin/env python3
"""Model fixtures saved after MXNet 1.9.1's oneDNN subgraph pass, for issue 20 item 5.

    .venv-mx/bin/python tools/make_fused_fixtures.py

`HybridBlock.optimize_for(x, backend="MKLDNN")` replaces runs of operators with fused
nodes (`_sg_mkldnn_conv`, `_sg_mkldnn_fully_connected`, `_sg_mkldnn_selfatt_qk`,
`_sg_mkldnn_selfatt_valatt`) that keep the operators they fused as a subgraph; a model
exported after it holds those nodes. For each network below this writes
`tests/fixtures/models/<name>/` in the layout of `make_model_fixtures.py`
(`model-symbol.json` and `model-0000.params` as exported after the pass, `input-*.npy`,
`output-<k>.npy`, `meta.json` with MXNet's `list_outputs()` of the saved symbol).

The reference outputs are those of the same network before the pass, run with
`MXNET_SUBGRAPH_BACKEND=NONE`: the fused nodes are defined as their subgraphs, and
MXNet's own fused convolution computes wrong numbers on convolution + BatchNorm with
fan-out (issue 20), so its output is not the reference. What MXNet's fused kernels give
when they run the saved files is recorded in `meta.json` (`mxnet_fused_max_diff`) for
comparison. The script checks that every fused op it is meant to produce is present.

It also writes `tests/fixtures/fused/quantized-symbol.json` and
`quantized-0000.params`, a convolution + dense network quantized by `quantize_net`
(int8, naive calibration), which ward must refuse by name.
"""

import json
import os
import shutil

os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
FUSED = os.path.join(ROOT, "tests", "fixtures", "fused")


class ResidualBlocks(nn.HybridBlock):
    """Every convolution fusion the pass makes: conv + act, conv + BN, conv + BN + sum
    (+ the activation after the sum), conv + BN with fan-out, and dense + act."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.stem = nn.Conv2D(8, 3, padding=1, activation="relu")
            self.c1 = nn.Conv2D(8, 3, padding=1, use_bias=False)
            self.bn1 = nn.BatchNorm()
            self.c2 = nn.Conv2D(8, 3, strides=1, padding=1)
            self.bn2 = nn.BatchNorm()
            self.c3 = nn.Conv2D(4, 1, strides=2, groups=2)
            self.fc = nn.Dense(16, activation="relu")
            self.head = nn.Dense(5)

    def hybrid_forward(self, F, x):
        a = self.stem(x)
        # The pass fuses Activation, not the standalone relu.
        b = F.Activation(self.bn1(self.c1(a)), act_type="relu")   # conv + BN + act; fans out
        c = F.Activation(self.bn2(self.c2(b)) + b, act_type="relu")  # + sum + post-sum act
        d = self.c3(c)                             # grouped strided conv alone
        h = self.fc(d)
        return self.head(h), F.sigmoid(b.mean(axis=(2, 3)))


class Attention(nn.HybridBlock):
    """BERT's interleaved attention products and dense layers on 3-D data."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.qkv = nn.Dense(18, flatten=False)
            self.out = nn.Dense(6, flatten=False)

    def hybrid_forward(self, F, x):
        qkv = self.qkv(x)                                          # (T, B, 3 * 6)
        scores = F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=2)
        att = F.softmax(scores, axis=-1)
        ctx = F.contrib.interleaved_matmul_selfatt_valatt(qkv, att, heads=2)
        return self.out(ctx)


CASES = [
    # name, block, input shape, fused ops the saved symbol must hold
    ("fused_residual", ResidualBlocks, (2, 3, 10, 10),
     {"_sg_mkldnn_conv": 4, "_sg_mkldnn_fully_connected": 2}),
    ("fused_attention", Attention, (5, 2, 4),
     {"_sg_mkldnn_selfatt_qk": 1, "_sg_mkldnn_selfatt_valatt": 1,
      "_sg_mkldnn_fully_connected": 2}),
]


def randomize(net, rng):
    """Random weights and BatchNorm statistics (not the identity a fresh net has)."""
    for name, p in sorted(net.collect_params().items()):
        shape = p.shape
        if name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, shape)))
        elif name.endswith(("gamma", "running_mean", "beta", "bias")):
            p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, shape) + (1.0 if name.endswith("gamma") else 0.0)))
        else:
            p.set_data(mx.nd.array(rng.normal(0, 0.3, shape)))


def census(sym_json):
    out = {}
    for n in sym_json["nodes"]:
        out[n["op"]] = out.get(n["op"], 0) + 1
    return out


def make(name, block, shape, expected, seed):
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    net = block(prefix=name + "_")
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(rng.uniform(-1, 1, shape).astype(np.float32))
    net(x)
    randomize(net, rng)
    net.hybridize()
    reference = [o.asnumpy() for o in as_list(net(x))]

    net.optimize_for(x, backend="MKLDNN")
    outdir = os.path.join(MODELS, name)
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    prefix = os.path.join(outdir, "model")
    net.export(prefix, epoch=0)
    sym_file = prefix + "-symbol.json"
    with open(sym_file) as f:
        saved = json.load(f)
    found = census(saved)
    missing = {op: n for op, n in expected.items() if found.get(op, 0) != n}
    assert not missing, (name, "fused ops", missing, found)

    # What MXNet's own fused kernels make of the saved files.
    reloaded = mx.gluon.SymbolBlock.imports(sym_file, ["data"], prefix + "-0000.params")
    fused = [o.asnumpy() for o in as_list(reloaded(x))]
    fused_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(reference, fused))

    np.save(os.path.join(outdir, "input-data.npy"), x.asnumpy())
    for k, o in enumerate(reference):
        np.save(os.path.join(outdir, "output-%d.npy" % k), o.astype(np.float32))
    meta = {
        "inputs": [{"name": "data", "dtype": "float32", "shape": list(shape)}],
        "outputs": mx.sym.load(sym_file).list_outputs(),
        "mxnet_version": mx.__version__,
        "fused_ops": {k: v for k, v in sorted(found.items()) if k.startswith("_sg_")},
        "mxnet_fused_max_diff": fused_diff,
        "notes": "exported after optimize_for(backend='MKLDNN'); outputs of the network "
                 "before the pass with MXNET_SUBGRAPH_BACKEND=NONE",
    }
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print("%-16s %s  MXNet's fused kernels differ by %.3g" % (name, meta["fused_ops"], fused_diff))


def make_quantized(seed):
    from mxnet.contrib import quantization

    rng = np.random.RandomState(seed)
    net = nn.HybridSequential(prefix="quantized_")
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, padding=1, activation="relu"), nn.Dense(3))
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(rng.uniform(0, 1, (2, 3, 6, 6)).astype(np.float32))
    net.hybridize()
    net(x)
    calib = mx.gluon.data.DataLoader(
        mx.gluon.data.ArrayDataset(mx.nd.array(rng.uniform(0, 1, (4, 3, 6, 6))), mx.nd.zeros((4,))),
        batch_size=2)
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "MKLDNN"
    qnet = quantization.quantize_net(net, quantized_dtype="auto", calib_mode="naive",
                                     calib_data=calib, num_calib_examples=4, ctx=mx.cpu())
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    os.makedirs(FUSED, exist_ok=True)
    qnet.export(os.path.join(FUSED, "quantized"), epoch=0)
    with open(os.path.join(FUSED, "quantized-symbol.json")) as f:
        ops = census(json.load(f))
    assert "_contrib_quantize_v2" in ops and "_sg_mkldnn_conv" in ops, ops
    print("quantized        %s" % {k: v for k, v in sorted(ops.items()) if k != "null"})


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def main():
    for k, (name, block, shape, expected) in enumerate(CASES):
        make(name, block, shape, expected, seed=2000 + k)
    make_quantized(seed=2100)


if __name__ == "__main__":
    main()
